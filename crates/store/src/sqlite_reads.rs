//! Reads of a SQLite store that go through rusqlite instead of sqlx, where the answer is too
//! big for sqlx's per-row cost or for SQLite's own `GROUP BY`.
//!
//! `/global/spend/report?group_by=api_key` over 30 days adds up, on 10 million rows and
//! 100,000 keys, 2.2 million cells of `idlehands_spend_by_key_model` into 500,000 (key, model)
//! sums. As one `GROUP BY`, SQLite sorted the 2.2 million rows by 64-character key hashes in a
//! temporary B-tree and sqlx decoded every result row column by column, by name: 7 s through
//! the gateway, of which counting the cells was 0.18 s. Each cell (a span and its first day)
//! is already stored in (key, model) order, so here every cell of the range is read in that
//! order from the primary key, all from one snapshot, and the ordered streams are merged: no
//! sort, and the keys are compared and copied as borrowed text.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rusqlite::{Connection, OptionalExtension, Rows, params};

use crate::daily_spend;
use crate::db::SQLITE_BUSY_TIMEOUT;
use crate::error::StoreError;
use crate::spend_db::{KeyModelSpend, wide_sum_i128};

/// [`crate::Store::spend_by_key_and_model`] from the key-model cells of the days `[lo, hi)`,
/// in (key, model) order, on a connection of its own on the blocking pool. Each cell's rows
/// come in SQLite's `BINARY` collation, the byte order Rust's `str` compares in.
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
    move |e| StoreError::Internal(format!("SQLite key and model report ({what}): {e}"))
}

fn read_key_model(path: &str, lo: i64, hi: i64) -> Result<Vec<KeyModelSpend>, StoreError> {
    let mut conn = Connection::open(path).map_err(failed("open"))?;
    conn.busy_timeout(SQLITE_BUSY_TIMEOUT)
        .map_err(failed("busy_timeout"))?;
    conn.pragma_update(None, "query_only", true)
        .map_err(failed("query_only"))?;
    // One read transaction: every cell from the snapshot its first read saw, as one statement
    // would have read them.
    let tx = conn.transaction().map_err(failed("begin"))?;
    let mut cells = Vec::new();
    {
        let mut next = tx
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
    let mut stmts = Vec::with_capacity(cells.len());
    for _ in &cells {
        stmts.push(
            tx.prepare(daily_spend::KEY_MODEL_CELL)
                .map_err(failed("prepare"))?,
        );
    }
    let mut streams = Vec::with_capacity(cells.len());
    for (stmt, (span, day)) in stmts.iter_mut().zip(&cells) {
        streams.push(stmt.query(params![span, day]).map_err(failed("query"))?);
    }
    merge(&mut streams)
}

/// A stream's current cell. Ordered by key and model first: the heap yields the smallest.
#[derive(Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Head {
    api_key: String,
    model: String,
    stream: usize,
    sums: [i64; 6],
}

/// Reads the stream's next cell into `head`, reusing its strings; false at its end.
fn advance(rows: &mut Rows<'_>, head: &mut Head) -> Result<bool, StoreError> {
    let Some(row) = rows.next().map_err(failed("read"))? else {
        return Ok(false);
    };
    let text = |i: usize| -> Result<&str, StoreError> {
        row.get_ref(i)
            .map_err(failed("read"))?
            .as_str()
            .map_err(|e| StoreError::Internal(format!("SQLite key and model report: {e}")))
    };
    head.api_key.clear();
    head.api_key.push_str(text(0)?);
    head.model.clear();
    head.model.push_str(text(1)?);
    for (i, s) in head.sums.iter_mut().enumerate() {
        *s = row.get(2 + i).map_err(failed("read"))?;
    }
    Ok(true)
}

/// Merges streams each in (key, model) order into one sum per (key, model), in that order.
/// The two parts of each measure are added apart, then joined (as `SUM(..._hi)`,
/// `SUM(..._lo)` and `wide_sum` did), in `i128`: parts SQL would have overflowed on saturate.
fn merge(streams: &mut [Rows<'_>]) -> Result<Vec<KeyModelSpend>, StoreError> {
    let mut heap = BinaryHeap::with_capacity(streams.len());
    for (stream, rows) in streams.iter_mut().enumerate() {
        let mut head = Head {
            stream,
            ..Head::default()
        };
        if advance(rows, &mut head)? {
            heap.push(Reverse(head));
        }
    }
    let mut out = Vec::new();
    let mut current: Option<(String, String, [i128; 6])> = None;
    let finish = |(api_key, model, s): (String, String, [i128; 6])| KeyModelSpend {
        api_key,
        model,
        spend: wide_sum_i128(s[0], s[1]),
        prompt_tokens: wide_sum_i128(s[2], s[3]),
        completion_tokens: wide_sum_i128(s[4], s[5]),
    };
    while let Some(Reverse(mut head)) = heap.pop() {
        let same = current
            .as_ref()
            .is_some_and(|(k, m, _)| *k == head.api_key && *m == head.model);
        if !same {
            out.extend(current.take().map(finish));
        }
        let (_, _, sums) =
            current.get_or_insert_with(|| (head.api_key.clone(), head.model.clone(), [0; 6]));
        for (s, v) in sums.iter_mut().zip(head.sums) {
            *s += i128::from(v);
        }
        let stream = head.stream;
        if let Some(rows) = streams.get_mut(stream)
            && advance(rows, &mut head)?
        {
            heap.push(Reverse(head));
        }
    }
    out.extend(current.map(finish));
    Ok(out)
}
