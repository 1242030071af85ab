//! Reads of a Postgres store that go around SQL's aggregation and sqlx's per-row decoding,
//! where the answer is too big for them.
//!
//! `/global/spend/report?group_by=api_key` over 30 days adds up, on 10 million rows and
//! 100,000 keys, 2.2 million key-model cells into 500,000 sums. Summed by id in SQL, Postgres's
//! executor spent most of the time grouping and sorting (a hash aggregate, a sort, a join and
//! another sort). Here the cells and the pairs are read out with binary `COPY` (8 bytes per
//! number, no text to parse) and summed and sorted in Rust, as on SQLite (`sqlite_reads`).
//!
//! The team and customer reports' rows (hundreds of thousands over a month) are read the same
//! way and summed in Rust (`day_group_sums`): through sqlx each row was decoded column by
//! column, by name, after `fetch_all` had held them all, and Postgres's `GROUP BY` sorted them
//! on disk first.

use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use sqlx::PgPool;

use crate::daily_spend::{self, DAY_MS};
use crate::day_group_sums::{DayGroupParts, DayGroupSums};
use crate::error::StoreError;
use crate::key_model_sums::Sums;
use crate::pair_names::{PairNames, ReadPairs};
use crate::spend_db::KeyModelSpend;

/// The sums of the closed cells of the last report, kept for the next one of the same range.
/// A cell is closed once its last day ended a full day ago: at 10 million rows a 30-day range
/// reads 2 million cells, nine in ten of them closed, and a dashboard asks for the same range
/// again and again. Kept sums are used only while every count they were read with is
/// unchanged: a commit that writes to a cell whose days had passed counts it in
/// `idlehands_key_model_late` (store migration 12), in the same transaction, and so does a
/// rebuild of all the cells. One range is kept (about 100 bytes per key-model pair).
#[derive(Default)]
pub(crate) struct ClosedCells(Mutex<Option<Arc<Closed>>>);

impl std::fmt::Debug for ClosedCells {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClosedCells")
    }
}

struct Closed {
    of: ClosedOf,
    sums: Sums,
}

/// What kept sums are of: the range, the last closed day, and the late-write counts of the
/// range's cells (with the rebuild count) when they were read.
#[derive(PartialEq, Eq)]
struct ClosedOf {
    lo: i64,
    hi: i64,
    closed_before: i64,
    late: Vec<(i64, i64, i64)>,
}

impl ClosedCells {
    fn get(&self, of: &ClosedOf) -> Option<Arc<Closed>> {
        let kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        kept.as_ref().filter(|c| c.of == *of).cloned()
    }

    fn keep(&self, closed: Closed) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(closed));
    }
}

/// Up to this many pairs not yet named are read by id; more (a first report) read the table.
const PAIRS_BY_ID: usize = 20_000;

/// The columns of a cell the report sums, after its key-model id.
const CELL_SUMS: &str = "spend_hi, spend_lo, prompt_tokens_hi, prompt_tokens_lo, \
    completion_tokens_hi, completion_tokens_lo";

/// [`crate::Store::spend_by_key_and_model`] from the key-model cells of the days `[lo, hi)`,
/// in (key, model) byte order, as of `now_ms`: the cells that closed before its day (see
/// [`ClosedCells`]) from `kept` where it holds them, the pairs' names from `names` where it
/// has them.
pub(crate) async fn spend_by_key_and_model(
    pool: &PgPool,
    kept: &ClosedCells,
    names: &PairNames,
    lo: i64,
    hi: i64,
    now_ms: i64,
) -> Result<Vec<KeyModelSpend>, StoreError> {
    // A cell starting on `day` is closed when `day + span < closed_before`: its last day
    // ended at least a day before today, so any commit still writing to it (built before the
    // snapshot below, or after it) judges it past by a clock less than a day off, and counts
    // the write.
    let closed_before = now_ms.div_euclid(DAY_MS);
    let runs: Vec<(i64, i64, i64)> = daily_spend::spans_for(lo, hi)
        .into_iter()
        .filter(|(_, first, end)| first < end)
        .collect();
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    // The numbers are ours (days and spans), not the caller's text: `COPY` takes no parameters.
    // Each run split at its first open cell: the first start of a cell of its span at or after
    // `closed_before - span`.
    let open_from = |span: i64, first: i64| {
        first.max(daily_spend::span_start(
            closed_before.saturating_sub(1),
            span,
        ))
    };
    let clause = |span: i64, from: i64, to: i64| {
        (from < to).then(|| format!("(span = {span} AND day >= {from} AND day < {to})"))
    };
    let all: Vec<String> = runs
        .iter()
        .filter_map(|&(span, first, end)| clause(span, first, end))
        .collect();
    let open: Vec<String> = runs
        .iter()
        .filter_map(|&(span, first, end)| clause(span, open_from(span, first), end))
        .collect();
    let has_closed = runs
        .iter()
        .any(|&(span, first, end)| first < open_from(span, first).min(end));

    let mut tx = pool.begin().await?;
    // Every read from one snapshot, as one statement would have read them.
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let (count, max_id): (i64, Option<i64>) =
        sqlx::query_as("SELECT COUNT(*), MAX(id) FROM idlehands_key_models")
            .fetch_one(&mut *tx)
            .await?;
    let mut sums = Sums::new(count, max_id.unwrap_or(0));
    let of = if has_closed {
        // The closed cells' counts only: yesterday's cells take late writes every night
        // (calls that crossed midnight), and the kept sums hold none of them.
        let late: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT span, day, writes FROM idlehands_key_model_late \
             WHERE (span = $4 AND day = $5) \
             OR (day >= $1 AND day < $2 AND day + span < $3) ORDER BY span, day",
        )
        .bind(lo)
        .bind(hi)
        .bind(closed_before)
        .bind(daily_spend::REBUILDS.0)
        .bind(daily_spend::REBUILDS.1)
        .fetch_all(&mut *tx)
        .await?;
        Some(ClosedOf {
            lo,
            hi,
            closed_before,
            late,
        })
    } else {
        None
    };
    match of.as_ref().and_then(|of| kept.get(of)) {
        Some(closed) => {
            sums.absorb(&closed.sums)?;
            if !open.is_empty() {
                let cells = format!(
                    "COPY (SELECT key_model_id, {CELL_SUMS} FROM idlehands_spend_by_key_model \
                     WHERE {}) TO STDOUT (FORMAT binary)",
                    open.join(" OR ")
                );
                copy_out(&mut tx, &cells, |fields| add_cell(&mut sums, fields)).await?;
            }
        }
        None => {
            // One read of every cell, each marked closed or not, the closed summed apart.
            let mut closed = Sums::new(count, max_id.unwrap_or(0));
            let cells = format!(
                "COPY (SELECT day + span < {closed_before}, key_model_id, {CELL_SUMS} \
                 FROM idlehands_spend_by_key_model WHERE {}) TO STDOUT (FORMAT binary)",
                all.join(" OR ")
            );
            copy_out(&mut tx, &cells, |fields| {
                let [is_closed, cell @ ..] = fields else {
                    return Err(malformed("a cell without its columns"));
                };
                match is_closed {
                    Some([1]) => add_cell(&mut closed, cell),
                    Some([0]) => add_cell(&mut sums, cell),
                    _ => Err(malformed("a closed flag that is not a boolean")),
                }
            })
            .await?;
            sums.absorb(&closed)?;
            if let Some(of) = of {
                kept.keep(Closed { of, sums: closed });
            }
        }
    }
    let missing = names.missing(&sums);
    if !missing.is_empty() {
        // A first report reads every pair; later ones only those first summed since.
        let which = if missing.len() > PAIRS_BY_ID {
            String::new()
        } else {
            let ids: Vec<String> = missing.iter().map(i64::to_string).collect();
            format!(" WHERE id = ANY('{{{}}}'::bigint[])", ids.join(","))
        };
        let pairs = format!(
            "COPY (SELECT id, api_key, model FROM idlehands_key_models{which}) \
             TO STDOUT (FORMAT binary)"
        );
        let mut read = ReadPairs::default();
        copy_out(&mut tx, &pairs, |fields| {
            let [id, key, model] = fields else {
                return Err(malformed("a pair without its columns"));
            };
            read.push(int8(*id)?, text(*key)?, text(*model)?);
            Ok(())
        })
        .await?;
        names.add(read);
    }
    tx.rollback().await?;
    // In byte order, as SQLite's BINARY collation gives it (a key's models together).
    let out = names.report(&sums);
    sums.all_named(out.len())?;
    Ok(out)
}

/// [`crate::Store::spend_by_day_and`]'s parts from `sql`, a statement without parameters
/// whose rows are a day, group, model and key and the spend and total tokens' parts.
pub(crate) async fn spend_by_day_and(
    pool: &PgPool,
    sql: &str,
) -> Result<DayGroupParts, StoreError> {
    let mut conn = pool.acquire().await?;
    let mut sums = DayGroupSums::default();
    copy_out(
        &mut conn,
        &format!("COPY ({sql}) TO STDOUT (FORMAT binary)"),
        |fields| {
            let [day, group, model, key, parts @ ..] = fields else {
                return Err(malformed("a report row without its columns"));
            };
            let [s_hi, s_lo, t_hi, t_lo] = parts else {
                return Err(malformed("a report row without its sums"));
            };
            sums.push(
                int8(*day)?,
                group.map(|g| text(Some(g))).transpose()?,
                text(*model)?,
                text(*key)?,
                [int8(*s_hi)?, int8(*s_lo)?, int8(*t_hi)?, int8(*t_lo)?],
            );
            Ok(())
        },
    )
    .await?;
    Ok(sums.parts())
}

/// Adds a cell's sums (its id, then [`CELL_SUMS`]) to its slot.
fn add_cell(sums: &mut Sums, fields: &[Option<&[u8]>]) -> Result<(), StoreError> {
    let [id, parts @ ..] = fields else {
        return Err(malformed("a cell without its columns"));
    };
    let slot = sums.slot(int8(*id)?)?;
    for (s, part) in slot.iter_mut().zip(parts) {
        *s += i128::from(int8(*part)?);
    }
    Ok(())
}

/// Runs a binary `COPY ... TO STDOUT` and hands each row's fields (`None` for NULL) to `row`.
async fn copy_out(
    conn: &mut sqlx::PgConnection,
    statement: &str,
    mut row: impl FnMut(&[Option<&[u8]>]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut stream = conn.copy_out_raw(statement).await?;
    let mut reader = CopyReader::default();
    while let Some(chunk) = stream.next().await {
        reader.feed(&chunk?, &mut row)?;
    }
    if reader.done {
        Ok(())
    } else {
        Err(malformed("the data ended before its trailer"))
    }
}

/// PostgreSQL's binary `COPY` format, read as it arrives: chunks may split a row anywhere.
#[derive(Default)]
struct CopyReader {
    buf: Vec<u8>,
    header: bool,
    done: bool,
}

/// The signature a binary `COPY` stream starts with.
const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// The most fields a row of ours has.
const MAX_FIELDS: usize = 8;

impl CopyReader {
    fn feed(
        &mut self,
        chunk: &[u8],
        row: &mut impl FnMut(&[Option<&[u8]>]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        // Postgres sends a message per row: most chunks are whole rows, read where they lie.
        if self.buf.is_empty() {
            let used = parse(chunk, &mut self.header, &mut self.done, row)?;
            self.buf
                .extend_from_slice(chunk.get(used..).unwrap_or_default());
        } else {
            self.buf.extend_from_slice(chunk);
            let used = parse(&self.buf, &mut self.header, &mut self.done, row)?;
            self.buf.drain(..used);
        }
        Ok(())
    }
}

/// Reads the header (once) and the whole rows at the start of `buf`; how many bytes it used.
fn parse(
    buf: &[u8],
    header: &mut bool,
    done: &mut bool,
    row: &mut impl FnMut(&[Option<&[u8]>]) -> Result<(), StoreError>,
) -> Result<usize, StoreError> {
    let mut at = 0;
    if !*header {
        // Signature, flags, then the length of a header extension to skip.
        let Some(ext) = be_i32(buf, SIGNATURE.len() + 4) else {
            return Ok(0);
        };
        if buf.get(..SIGNATURE.len()) != Some(SIGNATURE.as_slice()) {
            return Err(malformed("no binary COPY signature"));
        }
        let ext = usize::try_from(ext).map_err(|_| malformed("a negative header length"))?;
        let end = SIGNATURE.len() + 8 + ext;
        if buf.len() < end {
            return Ok(0);
        }
        *header = true;
        at = end;
    }
    let mut fields: [Option<&[u8]>; MAX_FIELDS] = [None; MAX_FIELDS];
    while !*done {
        let Some(n) = be_i16(buf, at) else { break };
        if n == -1 {
            *done = true;
            at += 2;
            break;
        }
        let n = usize::try_from(n)
            .ok()
            .filter(|&n| n <= MAX_FIELDS)
            .ok_or_else(|| malformed("a row with too many fields"))?;
        let mut next = at + 2;
        let mut whole = true;
        for field in fields.iter_mut().take(n) {
            let Some(len) = be_i32(buf, next) else {
                whole = false;
                break;
            };
            next += 4;
            if len < 0 {
                *field = None;
                continue;
            }
            let end = next.saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
            let Some(bytes) = buf.get(next..end) else {
                whole = false;
                break;
            };
            *field = Some(bytes);
            next = end;
        }
        if !whole {
            break;
        }
        row(fields.get(..n).unwrap_or_default())?;
        at = next;
    }
    Ok(at)
}

fn be_i16(buf: &[u8], at: usize) -> Option<i16> {
    let bytes = buf.get(at..at.checked_add(2)?)?;
    Some(i16::from_be_bytes(bytes.try_into().ok()?))
}

fn be_i32(buf: &[u8], at: usize) -> Option<i32> {
    let bytes = buf.get(at..at.checked_add(4)?)?;
    Some(i32::from_be_bytes(bytes.try_into().ok()?))
}

fn int8(field: Option<&[u8]>) -> Result<i64, StoreError> {
    field
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(i64::from_be_bytes)
        .ok_or_else(|| malformed("a number that is not 8 bytes"))
}

fn text(field: Option<&[u8]>) -> Result<&str, StoreError> {
    let bytes = field.ok_or_else(|| malformed("a NULL name"))?;
    std::str::from_utf8(bytes).map_err(|_| malformed("a name that is not UTF-8"))
}

fn malformed(what: &str) -> StoreError {
    StoreError::Internal(format!("Postgres report: COPY sent {what}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A stream with a header extension, a NULL, a text and numbers, fed whole and split at
    /// every byte, gives the same rows.
    #[test]
    fn rows_come_whole_however_the_stream_is_split() {
        let mut data = SIGNATURE.to_vec();
        data.extend(0i32.to_be_bytes());
        data.extend(3i32.to_be_bytes());
        data.extend(b"ext");
        for (id, name) in [(7i64, Some("k1")), (-2, None)] {
            data.extend(2i16.to_be_bytes());
            data.extend(8i32.to_be_bytes());
            data.extend(id.to_be_bytes());
            match name {
                Some(n) => {
                    data.extend(i32::try_from(n.len()).unwrap().to_be_bytes());
                    data.extend(n.as_bytes());
                }
                None => data.extend((-1i32).to_be_bytes()),
            }
        }
        data.extend((-1i16).to_be_bytes());
        let read = |split: usize| {
            let mut reader = CopyReader::default();
            let mut rows = Vec::new();
            let mut row = |f: &[Option<&[u8]>]| {
                rows.push((int8(f[0]).unwrap(), f[1].map(|b| b.to_vec())));
                Ok(())
            };
            for chunk in data.chunks(split) {
                reader.feed(chunk, &mut row).unwrap();
            }
            assert!(reader.done, "split {split}");
            rows
        };
        let whole = read(data.len());
        assert_eq!(whole, vec![(7, Some(b"k1".to_vec())), (-2, None)]);
        for split in 1..data.len() {
            assert_eq!(read(split), whole, "split {split}");
        }
    }

    #[test]
    fn a_stream_without_the_signature_is_refused() {
        let mut reader = CopyReader::default();
        let err = reader
            .feed(b"COPY 1\n\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", &mut |_| {
                Ok(())
            })
            .unwrap_err();
        assert!(err.to_string().contains("signature"), "{err}");
    }
}
