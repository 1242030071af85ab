//! Reads of a SQLite store that go through rusqlite instead of sqlx, where the answer is too
//! big for sqlx's per-row cost or for SQLite's own `GROUP BY`.
//!
//! `/global/spend/report?group_by=api_key` over 30 days adds up, on 10 million rows and
//! 100,000 keys, 2.2 million cells of `idlehands_spend_by_key_model` into 500,000 (key, model)
//! sums. As one `GROUP BY` on text keys, SQLite sorted the 2.2 million rows by 64-character key
//! hashes in a temporary B-tree and sqlx decoded every result row column by column, by name
//! (7 s through the gateway); merging the cells' ordered streams by text took 1.9 s. The cells
//! now name their pair by an integer id (store migration 11), so each cell of the range is read
//! straight from the primary key and summed into a slot per id, in any order; the pairs are then
//! read once, in (key, model) order from their unique index, and each summed one is named.

use std::sync::atomic::{AtomicUsize, Ordering};

use rusqlite::{Connection, OptionalExtension, params};

use crate::daily_spend;
use crate::day_group_sums::{DayGroupParts, DayGroupSums};
use crate::db::SQLITE_BUSY_TIMEOUT;
use crate::error::StoreError;
use crate::key_model_sums::Sums;
use crate::spend_db::KeyModelSpend;

/// [`crate::Store::spend_by_key_and_model`] from the key-model cells of the days `[lo, hi)`,
/// in (key, model) order, on a connection of its own on the blocking pool. The pairs come in
/// SQLite's `BINARY` collation, byte order.
pub(crate) async fn spend_by_key_and_model(
    path: &str,
    lo: i64,
    hi: i64,
) -> Result<Vec<KeyModelSpend>, StoreError> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || read_key_model(&path, lo, hi))
        .await
        .map_err(|e| StoreError::Internal(format!("the key and model report stopped: {e}")))?
}

fn failed(what: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| StoreError::Internal(format!("SQLite report ({what}): {e}"))
}

/// A read-only connection of its own, outside the pool.
fn reader(path: &str) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(failed("open"))?;
    conn.busy_timeout(SQLITE_BUSY_TIMEOUT)
        .map_err(failed("busy_timeout"))?;
    conn.pragma_update(None, "query_only", true)
        .map_err(failed("query_only"))?;
    Ok(conn)
}

/// How many threads read the cells: each cell is independent, and a month's report spends
/// most of its time stepping through them. At most one per core, four, or cell.
fn readers_for(cells: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    cores.min(4).min(cells).max(1)
}

fn read_key_model(path: &str, lo: i64, hi: i64) -> Result<Vec<KeyModelSpend>, StoreError> {
    let conn = reader(path)?;
    // All reads from one snapshot, as one statement would have read them: this connection's
    // read transaction, and the helpers' begun while a write lock keeps every commit out, so
    // that all of them see the same one (a commit waits for the lock that long).
    let lock = if readers_for(usize::MAX) > 1 {
        let lock = Connection::open(path).map_err(failed("open"))?;
        lock.busy_timeout(SQLITE_BUSY_TIMEOUT)
            .map_err(failed("busy_timeout"))?;
        lock.execute_batch("BEGIN IMMEDIATE")
            .map_err(failed("write lock"))?;
        Some(lock)
    } else {
        None
    };
    conn.execute_batch("BEGIN").map_err(failed("begin"))?;
    let mut cells = Vec::new();
    {
        let mut next = conn
            .prepare(daily_spend::NEXT_KEY_MODEL_DAY)
            .map_err(failed("prepare"))?;
        for (span, first, end) in daily_spend::spans_for(lo, hi) {
            let mut from = first;
            while from < end {
                let day = next
                    .query_row(params![span, from, end], |r| r.get::<_, i64>(0))
                    .optional()
                    .map_err(failed("cells"))?;
                let Some(day) = day else { break };
                cells.push((span, day));
                from = day.saturating_add(span);
            }
        }
    }
    let mut helpers = Vec::new();
    for _ in 1..readers_for(cells.len()) {
        let helper = reader(path)?;
        helper.execute_batch("BEGIN").map_err(failed("begin"))?;
        // A read begins the snapshot.
        helper
            .query_row("SELECT COUNT(*) FROM sqlite_schema", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(failed("begin"))?;
        helpers.push(helper);
    }
    if let Some(lock) = lock {
        lock.execute_batch("ROLLBACK")
            .map_err(failed("write lock"))?;
    }
    let (count, max_id): (i64, Option<i64>) = conn
        .query_row(
            "SELECT COUNT(*), MAX(id) FROM idlehands_key_models",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(failed("count"))?;
    let max_id = max_id.unwrap_or(0);
    // The longest spans first (the biggest cells), each reader taking the next cell left.
    cells.sort_by_key(|(span, day)| (std::cmp::Reverse(*span), *day));
    let next = AtomicUsize::new(0);
    let read = |conn: &Connection| -> Result<Sums, StoreError> {
        let mut sums = Sums::new(count, max_id);
        let mut cell = conn
            .prepare(daily_spend::KEY_MODEL_CELL)
            .map_err(failed("prepare"))?;
        while let Some((span, day)) = cells.get(next.fetch_add(1, Ordering::Relaxed)) {
            let mut rows = cell.query(params![span, day]).map_err(failed("query"))?;
            while let Some(row) = rows.next().map_err(failed("read"))? {
                let slot = sums.slot(row.get(0).map_err(failed("read"))?)?;
                for (i, s) in slot.iter_mut().enumerate() {
                    *s += i128::from(row.get::<_, i64>(1 + i).map_err(failed("read"))?);
                }
            }
        }
        Ok(sums)
    };
    let read = &read;
    let (mine, theirs) = std::thread::scope(|scope| {
        let running: Vec<_> = helpers
            .into_iter()
            .map(|helper| scope.spawn(move || read(&helper)))
            .collect();
        let mine = read(&conn);
        let theirs: Vec<_> = running
            .into_iter()
            .map(|t| {
                t.join().unwrap_or_else(|_| {
                    Err(StoreError::Internal(
                        "SQLite key and model report: a reader thread stopped".into(),
                    ))
                })
            })
            .collect();
        (mine, theirs)
    });
    let mut sums = mine?;
    for other in theirs {
        sums.absorb(&other?)?;
    }
    if sums.len() == 0 {
        return Ok(Vec::new());
    }
    let mut out = Vec::with_capacity(sums.len());
    let mut pairs = conn
        .prepare(daily_spend::KEY_MODELS_IN_ORDER)
        .map_err(failed("prepare"))?;
    let mut rows = pairs.query([]).map_err(failed("pairs"))?;
    while let Some(row) = rows.next().map_err(failed("pairs"))? {
        let Some(s) = sums.get(row.get(0).map_err(failed("pairs"))?) else {
            continue;
        };
        out.push(crate::key_model_sums::spend(
            row.get(1).map_err(failed("pairs"))?,
            row.get(2).map_err(failed("pairs"))?,
            s,
        ));
    }
    sums.all_named(out.len())?;
    Ok(out)
}

/// [`crate::Store::spend_by_day_and`]'s parts from `sql`'s rows (a day, group, model and key
/// and the spend and total tokens' parts; the days bound as `$1` and `$2`), read on a
/// connection of its own on the blocking pool and summed by `day_group_sums`. A month of a
/// 100,000-key store is millions of rows: through sqlx each went from its SQLite thread to the
/// runtime on a channel and was decoded column by column by name.
pub(crate) async fn spend_by_day_and(
    path: &str,
    sql: String,
    lo: i64,
    hi: i64,
) -> Result<DayGroupParts, StoreError> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let conn = reader(&path)?;
        let mut stmt = conn.prepare(&sql).map_err(failed("prepare"))?;
        let mut rows = stmt
            .query(rusqlite::named_params! {"$1": lo, "$2": hi})
            .map_err(failed("query"))?;
        let mut sums = DayGroupSums::default();
        while let Some(r) = rows.next().map_err(failed("read"))? {
            let int = |i: usize| r.get::<_, i64>(i).map_err(failed("read"));
            // Borrowed where they lie: most names repeat, and are kept once.
            let text = |i: usize| -> Result<Option<&str>, StoreError> {
                let value = r.get_ref(i).map_err(failed("read"))?;
                value.as_str_or_null().map_err(|e| failed("read")(e.into()))
            };
            let named = |i: usize| {
                text(i)?.ok_or_else(|| StoreError::Internal("SQLite report: a NULL name".into()))
            };
            sums.push(
                int(0)?,
                text(1)?,
                named(2)?,
                named(3)?,
                [int(4)?, int(5)?, int(6)?, int(7)?],
            );
        }
        Ok(sums.parts())
    })
    .await
    .map_err(|e| StoreError::Internal(format!("the day and group report stopped: {e}")))?
}
