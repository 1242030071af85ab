//! Daily spend rollups: per UTC day and dimensions (key, model, model group, provider, user,
//! team, organization, end user) the sums of the spend-log rows, written in the commit that
//! writes the rows. Aggregating routes (`/global/spend/report`, the `/spend/logs` daily
//! summary) read these instead of scanning every row of their range: with millions of rows a
//! month, a 30-day report read them all.
//!
//! Two tables of the same shape: `idlehands_daily_spend_by_key` has every dimension;
//! `idlehands_daily_spend` leaves the key out, so a report by model or user over a fleet of
//! many keys reads one row per day, model and user instead of one per key as well (LiteLLM
//! likewise keeps a `DailyGlobalSpend` next to its per-user/team/key tables).
//!
//! Exact: the measures are the same two-part sums the scans added up (see
//! [`crate::spend_db::wide_sum`]), so a rollup answer equals the scan's to the nano-dollar and
//! token. A dimension the row did not have (NULL) is stored as `''` with its bit set in
//! `null_dims`: a primary key cannot hold NULLs on both backends, and `''` alone could not tell
//! a missing team from an empty one. Rows deleted by the retention sweep stay counted: the
//! rollups keep the history (as LiteLLM's daily tables outlive its spend-log retention).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use crate::spend::{STATUS_FAILURE, STATUS_SUCCESS, SpendLogRow};
use crate::spend_db::text;

pub(crate) const DAY_MS: i64 = 86_400_000;

/// The two rollup tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Rollup {
    /// Every dimension, the key included.
    ByKey,
    /// Every dimension but the key.
    AllKeys,
}

impl Rollup {
    pub(crate) fn table(self) -> &'static str {
        match self {
            Rollup::ByKey => "idlehands_daily_spend_by_key",
            Rollup::AllKeys => "idlehands_daily_spend",
        }
    }

    fn dims(self) -> &'static [&'static str] {
        match self {
            Rollup::ByKey => &DIMS,
            Rollup::AllKeys => &DIMS[1..],
        }
    }
}

/// The dimensions, in primary-key order. The first two are never NULL in a spend row.
const DIMS: [&str; 8] = [
    "api_key",
    "model",
    "model_group",
    "custom_llm_provider",
    "user_id",
    "team_id",
    "organization_id",
    "end_user",
];
/// The nullable dimensions (all but the first two), bit `1 << i` of `null_dims` for
/// `NULLABLE[i]`.
const NULLABLE: &[&str] = DIMS.split_at(2).1;
/// The measures, each a sum over the rows (`_hi` / `_lo`: the two parts of
/// [`crate::spend_db::wide_sum`]).
const MEASURES: [&str; 11] = [
    "spend_hi",
    "spend_lo",
    "prompt_tokens_hi",
    "prompt_tokens_lo",
    "completion_tokens_hi",
    "completion_tokens_lo",
    "total_tokens_hi",
    "total_tokens_lo",
    "requests",
    "successful_requests",
    "failed_requests",
];

/// One rollup row's identity: the day and the dimensions, text as stored (NULs dropped).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Cell<'a> {
    pub day: i64,
    /// `None` in [`Rollup::AllKeys`].
    pub api_key: Option<Cow<'a, str>>,
    pub model: Cow<'a, str>,
    /// [`NULLABLE`], in order.
    pub nullable: [Option<Cow<'a, str>>; 6],
}

impl Cell<'_> {
    fn null_dims(&self) -> i64 {
        self.nullable
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_none())
            .map(|(i, _)| 1i64 << i)
            .sum()
    }
}

/// What one commit adds to a cell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Delta(pub [i64; 11]);

impl Delta {
    fn add(&mut self, row: &SpendLogRow) {
        let parts = [
            row.spend,
            row.prompt_tokens,
            row.completion_tokens,
            row.total_tokens,
        ];
        for (i, v) in parts.into_iter().enumerate() {
            // Rust's `/` and `%` truncate as SQLite's and Postgres' do: per row these are the
            // very parts the scans summed.
            self.0[2 * i] = self.0[2 * i].saturating_add(v / 1_000_000_000);
            self.0[2 * i + 1] = self.0[2 * i + 1].saturating_add(v % 1_000_000_000);
        }
        self.0[8] += 1;
        self.0[9] += i64::from(row.status == STATUS_SUCCESS);
        self.0[10] += i64::from(row.status == STATUS_FAILURE);
    }
}

/// The UTC day of a start time in ms, as the scans grouped it (`start_time / 86400000`).
/// Truncated, not floored: a row started before 1970 (the gateway writes none) would count in
/// day 0 of the rollups but not in a row scan from 1970-01-01.
pub(crate) fn day_of_ms(ms: i64) -> i64 {
    ms / DAY_MS
}

/// Each cell the rows touch, in both tables, with what they add: sorted (table, then cell), so
/// that concurrent writers (fleet instances) lock rollup rows in one order and cannot deadlock.
pub(crate) fn cells<'a>(rows: &[&'a SpendLogRow]) -> Vec<(Rollup, Cell<'a>, Delta)> {
    let mut out: BTreeMap<(Rollup, Cell<'a>), Delta> = BTreeMap::new();
    for row in rows {
        let nullable = [
            row.model_group.as_deref().map(text),
            row.custom_llm_provider.as_deref().map(text),
            row.user.as_deref().map(text),
            row.team_id.as_deref().map(text),
            row.organization_id.as_deref().map(text),
            row.end_user.as_deref().map(text),
        ];
        let by_key = Cell {
            day: day_of_ms(row.start_time.timestamp_millis()),
            api_key: Some(text(&row.api_key)),
            model: text(&row.model),
            nullable,
        };
        let all_keys = Cell {
            api_key: None,
            ..by_key.clone()
        };
        out.entry((Rollup::ByKey, by_key)).or_default().add(row);
        out.entry((Rollup::AllKeys, all_keys)).or_default().add(row);
    }
    out.into_iter().map(|((r, c), d)| (r, c, d)).collect()
}

/// `INSERT ... ON CONFLICT DO UPDATE` adding a [`Delta`] to a cell: `$1` day, then the
/// dimensions ([`upsert_params`]), `null_dims`, the measures. Built once per table.
pub(crate) fn upsert_sql(rollup: Rollup) -> &'static str {
    static SQL: [OnceLock<String>; 2] = [const { OnceLock::new() }; 2];
    SQL[usize::from(rollup == Rollup::AllKeys)].get_or_init(|| {
        let table = rollup.table();
        let key: Vec<&str> = std::iter::once("day")
            .chain(rollup.dims().iter().copied())
            .chain(std::iter::once("null_dims"))
            .collect();
        let cols: Vec<&str> = key.iter().copied().chain(MEASURES).collect();
        let params = crate::db::placeholders(1, cols.len());
        let sets: Vec<String> = MEASURES
            .iter()
            .map(|m| format!("{m} = {table}.{m} + excluded.{m}"))
            .collect();
        format!(
            "INSERT INTO {table} ({}) VALUES ({params}) ON CONFLICT ({}) DO UPDATE SET {}",
            cols.join(", "),
            key.join(", "),
            sets.join(", ")
        )
    })
}

/// The text values of a cell's dimensions in [`upsert_sql`] order (after `$1`, the day): a
/// missing one as `''` (its `null_dims` bit says it was missing).
pub(crate) fn upsert_texts<'c>(cell: &'c Cell<'_>) -> impl Iterator<Item = &'c str> {
    cell.api_key
        .as_deref()
        .into_iter()
        .chain(std::iter::once(cell.model.as_ref()))
        .chain(cell.nullable.iter().map(|v| v.as_deref().unwrap_or("")))
}

/// The integers after the texts: `null_dims`, then the measures.
pub(crate) fn upsert_numbers(cell: &Cell<'_>, delta: &Delta) -> [i64; 12] {
    let mut out = [0; 12];
    out[0] = cell.null_dims();
    out[1..].copy_from_slice(&delta.0);
    out
}

/// Where an aggregate reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// A rollup table; the range bounds are whole days.
    Rollup(Rollup),
    /// The spend-log rows themselves, one "cell" per row: any range, and any filter on the
    /// row (`extra`, written against `idlehands_spend_logs`' columns).
    Rows,
}

/// A relation `r` with the columns `day`, the [`DIMS`] (NULL where missing) and the
/// [`MEASURES`], over `[lo, hi)` (SQL expressions: placeholders such as `$1`, or literals):
/// days for a rollup, ms of `start_time` for the rows. `extra` (rows only) is ANDed into the
/// rows' filter.
pub(crate) fn relation(source: Source, lo: &str, hi: &str, extra: &str) -> String {
    match source {
        Source::Rollup(rollup) => {
            let dims: Vec<String> = rollup
                .dims()
                .iter()
                .map(|d| match NULLABLE.iter().position(|n| n == d) {
                    Some(bit) => format!(
                        "CASE WHEN (null_dims & {}) <> 0 THEN NULL ELSE {d} END AS {d}",
                        1 << bit
                    ),
                    None => (*d).to_owned(),
                })
                .collect();
            format!(
                "(SELECT day, {}, {} FROM {} WHERE day >= {lo} AND day < {hi}) r",
                dims.join(", "),
                MEASURES.join(", "),
                rollup.table()
            )
        }
        Source::Rows => {
            let parts: Vec<String> = [
                "spend",
                "prompt_tokens",
                "completion_tokens",
                "total_tokens",
            ]
            .iter()
            .map(|c| format!("{c} / 1000000000 AS {c}_hi, {c} % 1000000000 AS {c}_lo"))
            .collect();
            format!(
                "(SELECT start_time / {DAY_MS} AS day, {}, {}, 1 AS requests, \
                 CASE WHEN status = '{STATUS_SUCCESS}' THEN 1 ELSE 0 END AS successful_requests, \
                 CASE WHEN status = '{STATUS_FAILURE}' THEN 1 ELSE 0 END AS failed_requests \
                 FROM idlehands_spend_logs WHERE start_time >= {lo} AND start_time < {hi}{extra}) r",
                DIMS.join(", "),
                parts.join(", ")
            )
        }
    }
}

/// `SUM` of a measure's two parts, as `{alias}_hi` and `{alias}_lo` (add them with
/// [`crate::spend_db::wide_sum`]).
pub(crate) fn sum_parts(measure: &str, alias: &str) -> String {
    format!(
        "CAST(SUM({measure}_hi) AS BIGINT) AS {alias}_hi, \
         CAST(SUM({measure}_lo) AS BIGINT) AS {alias}_lo"
    )
}

/// The source for `[lo_ms, hi_ms)` (`None`: unbounded) and the bounds to bind: the rollup when
/// both ends are whole UTC days, else the rows.
pub(crate) fn source_for(
    rollup: Rollup,
    lo_ms: Option<i64>,
    hi_ms: Option<i64>,
) -> (Source, i64, i64) {
    let whole = |ms: Option<i64>| ms.is_none_or(|ms| ms.rem_euclid(DAY_MS) == 0);
    if whole(lo_ms) && whole(hi_ms) {
        (
            Source::Rollup(rollup),
            lo_ms.map_or(i64::MIN, day_of_ms),
            hi_ms.map_or(i64::MAX, day_of_ms),
        )
    } else {
        (
            Source::Rows,
            lo_ms.unwrap_or(i64::MIN),
            hi_ms.unwrap_or(i64::MAX),
        )
    }
}

/// The lengths in days of the cells of `idlehands_spend_by_key_model` (store migration 10),
/// each starting on a multiple of its length. A range of days is read as whole cells of the
/// longest spans that fit and days at its ends (see [`spans_for`]). With many keys, a key and
/// model has a cell in most 4-day spans, so a 30-day range read about 2.4 times the distinct
/// (key, model) pairs instead of 13 times (one cell per day); levels of 1, 2, 4, 8 and 16 read
/// 1.9 times but cost each commit five writes per pair instead of three.
pub(crate) const SPANS: [i64; 3] = [1, 4, 16];

/// The first day of the `span` that holds `day`.
pub(crate) fn span_start(day: i64, span: i64) -> i64 {
    day - day.rem_euclid(span)
}

/// The sums one commit adds to a (span, first day, key, model) cell of
/// `idlehands_spend_by_key_model`: spend, prompt and completion tokens, each in two parts.
pub(crate) type KeyModelCell<'a> = (KeyModelId<'a>, [i64; 6]);

/// A cell of `idlehands_spend_by_key_model`: span, first day, key, model.
pub(crate) type KeyModelId<'a> = (i64, i64, Cow<'a, str>, Cow<'a, str>);

/// Each key-model cell the rows touch, with the sums the rows add to it. (The commit writes
/// them in [`cells_by_id`]'s order, once it knows the pairs' ids.)
pub(crate) fn key_model_cells<'a>(daily: &[(Rollup, Cell<'a>, Delta)]) -> Vec<KeyModelCell<'a>> {
    let mut out: BTreeMap<KeyModelId<'a>, [i64; 6]> = BTreeMap::new();
    for (rollup, cell, delta) in daily {
        let (Rollup::ByKey, Some(key)) = (rollup, &cell.api_key) else {
            continue;
        };
        for span in SPANS {
            let sums = out
                .entry((
                    span,
                    span_start(cell.day, span),
                    key.clone(),
                    cell.model.clone(),
                ))
                .or_default();
            for (s, d) in sums.iter_mut().zip(&delta.0[..6]) {
                *s = s.saturating_add(*d);
            }
        }
    }
    out.into_iter().collect()
}

/// The distinct (key, model) pairs of the cells, sorted: each commit looks their ids up (and
/// makes the missing ones) in this order, so that concurrent writers never wait on each other
/// in a circle.
pub(crate) fn key_model_pairs<'c>(cells: &'c [KeyModelCell<'_>]) -> Vec<(&'c str, &'c str)> {
    let mut pairs: Vec<(&str, &str)> = cells
        .iter()
        .map(|((_, _, key, model), _)| (key.as_ref(), model.as_ref()))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    pairs
}

/// The cells as rows of `idlehands_spend_by_key_model`: (span, day, key-model id, sums),
/// sorted (the lock order). A pair missing from `ids` cannot happen (the commit looked every
/// pair up); its cells would be left out.
pub(crate) fn cells_by_id(
    cells: &[KeyModelCell<'_>],
    ids: &HashMap<(&str, &str), i64>,
) -> Vec<(i64, i64, i64, [i64; 6])> {
    let mut out: Vec<(i64, i64, i64, [i64; 6])> = cells
        .iter()
        .filter_map(|((span, day, key, model), sums)| {
            let id = ids.get(&(key.as_ref(), model.as_ref()))?;
            Some((*span, *day, *id, *sums))
        })
        .collect();
    out.sort_unstable_by_key(|(span, day, id, _)| (*span, *day, *id));
    out
}

/// The cells among `cells` (rows of [`cells_by_id`]) whose days had all passed by `now_ms`:
/// their (span, first day), once each, sorted (the lock order). A commit counts its writes to
/// them in `idlehands_key_model_late` ([`LATE_WRITE`]).
pub(crate) fn late_cells(cells: &[(i64, i64, i64, [i64; 6])], now_ms: i64) -> Vec<(i64, i64)> {
    let today = now_ms.div_euclid(DAY_MS);
    let mut out: Vec<(i64, i64)> = cells
        .iter()
        .filter(|(span, day, _, _)| day.saturating_add(*span) <= today)
        .map(|(span, day, _, _)| (*span, *day))
        .collect();
    out.dedup();
    out
}

/// Counts a late write to the cell of span `$1` starting on day `$2` (see [`late_cells`]).
pub(crate) const LATE_WRITE: &str = "INSERT INTO idlehands_key_model_late (span, day, writes) \
    VALUES ($1, $2, 1) ON CONFLICT (span, day) DO UPDATE SET \
    writes = idlehands_key_model_late.writes + 1";

/// The (span, day) under which `idlehands_key_model_late` counts rebuilds of every cell
/// ([`LATE_WRITE`] bound to it): no cell has span 0.
pub(crate) const REBUILDS: (i64, i64) = (0, 0);

/// The id of the (key, model) pair `$1`, `$2` in `idlehands_key_models`.
pub(crate) const KEY_MODEL_ID: &str =
    "SELECT id FROM idlehands_key_models WHERE api_key = $1 AND model = $2";

/// Makes the id of a pair [`KEY_MODEL_ID`] did not find. No row back: another instance made it
/// meanwhile (the insert waited for its commit), so look again.
pub(crate) const NEW_KEY_MODEL_ID: &str = "INSERT INTO idlehands_key_models (api_key, model) \
    VALUES ($1, $2) ON CONFLICT (api_key, model) DO NOTHING RETURNING id";

/// Adds a row of [`cells_by_id`] to its cell: `$1` span, `$2` day, `$3` key-model id, the sums.
pub(crate) const KEY_MODEL_UPSERT: &str = "INSERT INTO idlehands_spend_by_key_model (span, day, \
    key_model_id, spend_hi, spend_lo, prompt_tokens_hi, prompt_tokens_lo, completion_tokens_hi, \
    completion_tokens_lo) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
    ON CONFLICT (span, day, key_model_id) DO UPDATE SET \
    spend_hi = idlehands_spend_by_key_model.spend_hi + excluded.spend_hi, \
    spend_lo = idlehands_spend_by_key_model.spend_lo + excluded.spend_lo, \
    prompt_tokens_hi = idlehands_spend_by_key_model.prompt_tokens_hi + excluded.prompt_tokens_hi, \
    prompt_tokens_lo = idlehands_spend_by_key_model.prompt_tokens_lo + excluded.prompt_tokens_lo, \
    completion_tokens_hi = idlehands_spend_by_key_model.completion_tokens_hi \
        + excluded.completion_tokens_hi, \
    completion_tokens_lo = idlehands_spend_by_key_model.completion_tokens_lo \
        + excluded.completion_tokens_lo";

/// The first day at or after `$2` and before `$3` with a cell of span `$1` in
/// `idlehands_spend_by_key_model`: one seek in its primary key. The cells a range reads are
/// found so, one by one, each then read alone in (key, model) order (see
/// `Store::spend_by_key_and_model_in`).
pub(crate) const NEXT_KEY_MODEL_DAY: &str = "SELECT day FROM idlehands_spend_by_key_model \
    WHERE span = $1 AND day >= $2 AND day < $3 ORDER BY day LIMIT 1";

/// The sums per key-model id of the cell of span `$1` starting on day `$2`.
pub(crate) const KEY_MODEL_CELL: &str = "SELECT key_model_id, spend_hi, spend_lo, \
    prompt_tokens_hi, prompt_tokens_lo, completion_tokens_hi, completion_tokens_lo \
    FROM idlehands_spend_by_key_model WHERE span = $1 AND day = $2";

/// Every (key, model) pair with its id, in (key, model) order (the unique index's).
pub(crate) const KEY_MODELS_IN_ORDER: &str =
    "SELECT id, api_key, model FROM idlehands_key_models ORDER BY api_key, model";

/// The days `[lo, hi)` as runs of whole cells, `(span, first cell's day, end)`: the longest
/// spans that fit in the middle, shorter ones towards the ends. At most two runs per span
/// after the longest (each span divides the next), so always `2 * SPANS.len() - 1` runs, the
/// unused ones empty: one statement shape.
pub(crate) fn spans_for(lo: i64, hi: i64) -> Vec<(i64, i64, i64)> {
    fn split(lo: i64, hi: i64, spans: &[i64], out: &mut Vec<(i64, i64, i64)>) {
        let Some((&span, shorter)) = spans.split_last() else {
            return;
        };
        // The first whole cell at or after lo, and the end of the last one before hi.
        let first = span_start(lo.saturating_add(span - 1), span);
        let end = span_start(hi, span);
        if first >= end || lo >= hi {
            split(lo, hi, shorter, out);
            return;
        }
        out.push((span, first, end));
        split(lo, first, shorter, out);
        split(end, hi, shorter, out);
    }
    let mut out = Vec::with_capacity(2 * SPANS.len() - 1);
    split(lo, hi, &SPANS, &mut out);
    out.resize(2 * SPANS.len() - 1, (1, 0, 0));
    out
}

#[cfg(test)]
mod tests {
    //! The rollups answer as the row scans do: on random rows (NULL and empty dimensions, both
    //! statuses, amounts past `i64::MAX` in sum, rows not stored), every aggregate read from a
    //! rollup equals the same aggregate read from the rows, order included, on SQLite and
    //! Postgres; and the migration's backfill makes the same rollups as the commits did.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use chrono::{TimeZone, Utc};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::spend_db::{BatchItem, ReportGroup};
    use crate::test_postgres::{drop_schema, postgres_schema};
    use crate::{SpendGroup, SpendLogsQuery, Store, StoreOptions};

    const DAY0: i64 = 20_500; // 2026-02-16

    fn pick(rng: &mut StdRng, from: &[Option<&str>]) -> Option<String> {
        from[rng.random_range(0..from.len())].map(str::to_owned)
    }

    fn random_row(rng: &mut StdRng, i: usize) -> SpendLogRow {
        // Most rows in six days; some over 40, so that ranges span whole 4- and 16-day cells of
        // the key-model table with days left at both ends.
        let days = if rng.random_bool(0.3) { 40 } else { 6 };
        let start = (DAY0 + rng.random_range(0..days)) * DAY_MS + rng.random_range(0..DAY_MS);
        let amount = |rng: &mut StdRng| match rng.random_range(0..300) {
            // A few sums pass `i64::MAX` (and saturate), most do not.
            0 => i64::MAX / 3,
            1..=9 => 0,
            _ => rng.random_range(0..5_000_000_000),
        };
        let total = amount(rng);
        SpendLogRow {
            request_id: format!("r{i}"),
            call_type: "acompletion".into(),
            api_key: pick(rng, &[Some("k1"), Some("k2"), Some("k3"), Some("")]).unwrap(),
            spend: amount(rng),
            prompt_tokens: amount(rng),
            completion_tokens: amount(rng),
            total_tokens: total,
            start_time: Utc.timestamp_millis_opt(start).unwrap(),
            end_time: Utc.timestamp_millis_opt(start + 10).unwrap(),
            model: pick(rng, &[Some("gpt-4o"), Some("claude"), Some("")]).unwrap(),
            model_group: pick(rng, &[None, Some(""), Some("fast"), Some("gpt-4o")]),
            // NULs are dropped from stored text, in the rollups as in the rows.
            custom_llm_provider: pick(rng, &[None, Some("openai"), Some(""), Some("open\0ai")]),
            user: pick(rng, &[None, Some(""), Some("u1"), Some("u2")]),
            team_id: pick(rng, &[None, Some(""), Some("t1"), Some("t2")]),
            organization_id: pick(rng, &[None, Some("o1")]),
            end_user: pick(
                rng,
                &[None, Some(""), Some("c1"), Some("c2"), Some("c\u{0}3")],
            ),
            status: pick(rng, &[Some("success"), Some("failure")]).unwrap(),
            ..Default::default()
        }
    }

    /// Whole-day ranges in days: each bound, open ends, an empty range.
    fn day_ranges() -> Vec<(i64, i64)> {
        let mut out = vec![(i64::MIN, i64::MAX), (DAY0 + 3, DAY0 + 3)];
        for lo in DAY0 - 1..DAY0 + 7 {
            for hi in [lo + 1, lo + 2, DAY0 + 7] {
                out.push((lo, hi));
            }
        }
        out
    }

    /// The key-and-model sums of the rows in `[rows.0, rows.1)` (ms) and of the cells of the
    /// days `[days.0, days.1)` agree.
    async fn same_key_model_sums(store: &Store, rows: (i64, i64), days: (i64, i64)) {
        let from_rows = store
            .spend_by_key_and_model_in(Source::Rows, rows.0, rows.1)
            .await
            .unwrap();
        let from_cells = store
            .spend_by_key_and_model_in(Source::Rollup(Rollup::ByKey), days.0, days.1)
            .await
            .unwrap();
        assert_eq!(from_cells, from_rows, "key and model {days:?}");
    }

    /// The ms bounds of the rows of the days `[lo, hi)` (an open end stays open).
    fn rows_of_days(lo: i64, hi: i64) -> (i64, i64) {
        let ms = |d: i64| d.saturating_mul(DAY_MS);
        (
            if lo == i64::MIN { i64::MIN } else { ms(lo) },
            if hi == i64::MAX { i64::MAX } else { ms(hi) },
        )
    }

    async fn same_answers(store: &Store) {
        let ms = |d: i64| d.saturating_mul(DAY_MS);
        for (lo, hi) in day_ranges() {
            let (rows_lo, rows_hi) = rows_of_days(lo, hi);
            for group in [
                SpendGroup::Key,
                SpendGroup::Model,
                SpendGroup::User,
                SpendGroup::Day,
            ] {
                let rows = store
                    .spend_by_in(Source::Rows, group, rows_lo, rows_hi, None)
                    .await;
                for rollup in [Rollup::ByKey, Rollup::AllKeys] {
                    if rollup == Rollup::AllKeys && group == SpendGroup::Key {
                        continue;
                    }
                    let r = store
                        .spend_by_in(Source::Rollup(rollup), group, lo, hi, None)
                        .await;
                    assert_eq!(r.unwrap(), *rows.as_ref().unwrap(), "{group:?} {lo}..{hi}");
                }
            }
            for group in [ReportGroup::Team, ReportGroup::Customer] {
                let rows = store
                    .spend_by_day_and_in(Source::Rows, group, rows_lo, rows_hi)
                    .await
                    .unwrap();
                let r = store
                    .spend_by_day_and_in(Source::Rollup(Rollup::ByKey), group, lo, hi)
                    .await
                    .unwrap();
                assert_eq!(
                    r.collect::<Vec<_>>(),
                    rows.collect::<Vec<_>>(),
                    "{group:?} {lo}..{hi}"
                );
            }
            same_key_model_sums(store, (rows_lo, rows_hi), (lo, hi)).await;
            let filters = [
                SpendLogsQuery::default(),
                SpendLogsQuery {
                    user_id: Some("u1".into()),
                    ..Default::default()
                },
                SpendLogsQuery {
                    user_id: Some(String::new()),
                    team_id: Some("t1".into()),
                    ..Default::default()
                },
                SpendLogsQuery {
                    end_user: Some("c2".into()),
                    organization_id: Some("o1".into()),
                    ..Default::default()
                },
            ];
            for q in filters {
                let rows = store
                    .daily_summary(Source::Rows, rows_lo, rows_hi, &q)
                    .await;
                for rollup in [Rollup::ByKey, Rollup::AllKeys] {
                    let r = store
                        .daily_summary(Source::Rollup(rollup), lo, hi, &q)
                        .await;
                    assert_eq!(r.unwrap(), *rows.as_ref().unwrap(), "{q:?} {lo}..{hi}");
                }
            }
        }
        // The key-model spans: every range over the 40 days (and past their ends).
        for lo in (DAY0 - 3..DAY0 + 42).step_by(2) {
            for hi in lo..DAY0 + 44 {
                same_key_model_sums(store, (ms(lo), ms(hi)), (lo, hi)).await;
            }
        }
        // A key filter is the key's text, hashed as the rows' `api_key` is.
        let q = SpendLogsQuery {
            api_key: Some("k1".into()),
            ..Default::default()
        };
        let rows = store
            .daily_summary(Source::Rows, i64::MIN, i64::MAX, &q)
            .await;
        let r = store
            .daily_summary(Source::Rollup(Rollup::ByKey), i64::MIN, i64::MAX, &q)
            .await;
        assert_eq!(r.unwrap(), rows.unwrap());
    }

    /// Every rollup row, in key order.
    async fn rollup_rows(store: &Store) -> Vec<String> {
        let mut out = Vec::new();
        for rollup in [Rollup::ByKey, Rollup::AllKeys] {
            let dims = rollup.dims().join(" || '|' || ");
            let sql = format!(
                "SELECT CAST(day AS TEXT) || '|' || {dims} || '|' || CAST(null_dims AS TEXT) \
                 || '|' || {} FROM {} ORDER BY 1",
                MEASURES
                    .iter()
                    .map(|m| format!("CAST({m} AS TEXT)"))
                    .collect::<Vec<_>>()
                    .join(" || '|' || "),
                rollup.table()
            );
            let rows: Vec<String> = crate::db::on_db!(&store.db, pool => {
                sqlx::query_scalar(&sql).fetch_all(pool).await.unwrap()
            });
            out.extend(rows);
        }
        let rows: Vec<String> = crate::db::on_db!(&store.db, pool => {
            sqlx::query_scalar(
                "SELECT CAST(span AS TEXT) || '|' || CAST(day AS TEXT) || '|' || api_key || '|' \
                 || model || '|' || CAST(spend_hi AS TEXT) || '|' || CAST(spend_lo AS TEXT) \
                 || '|' || CAST(prompt_tokens_hi AS TEXT) || '|' \
                 || CAST(prompt_tokens_lo AS TEXT) || '|' || CAST(completion_tokens_hi AS TEXT) \
                 || '|' || CAST(completion_tokens_lo AS TEXT) \
                 FROM idlehands_spend_by_key_model JOIN idlehands_key_models \
                 ON id = key_model_id ORDER BY 1",
            )
            .fetch_all(pool)
            .await
            .unwrap()
        });
        out.extend(rows);
        out
    }

    /// `count` group commits of 1 to 39 random rows each.
    fn random_batches(seed: u64, count: usize) -> Vec<Vec<BatchItem>> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut n = 0;
        (0..count)
            .map(|_| {
                (0..rng.random_range(1..40))
                    .map(|_| {
                        n += 1;
                        BatchItem::Row(Box::new(random_row(&mut rng, n)))
                    })
                    .collect()
            })
            .collect()
    }

    async fn scenario(opts: StoreOptions, seed: u64) {
        let store = Store::open_with(opts.clone()).await.unwrap();
        for batch in random_batches(seed, 25) {
            store.write_batch(&batch, true).await.unwrap();
        }
        assert!(store.count_spend_logs().await.unwrap() > 100);
        same_answers(&store).await;

        // A call id is no rollup dimension: the summary for one reads its row.
        let crate::SpendLogsResponse::Rows(stored) =
            store.spend_logs(&SpendLogsQuery::default()).await.unwrap()
        else {
            panic!("rows expected")
        };
        let row = stored.iter().find(|r| r.spend > 0).unwrap();
        let day = row.start_time.date_naive().format("%Y-%m-%d").to_string();
        let q = SpendLogsQuery {
            request_id: Some(row.request_id.clone()),
            start_date: Some(day.clone()),
            end_date: Some(day.clone()),
            ..Default::default()
        };
        let crate::SpendLogsResponse::Summary(days) = store.spend_logs(&q).await.unwrap() else {
            panic!("a summary expected")
        };
        assert_eq!(days.len(), 1);
        assert_eq!(days[0].start_time, day);
        assert_eq!(days[0].spend, crate::money::nanos_to_usd(row.spend));

        // A rebuild from the rows makes the rollups the commits made...
        let written = rollup_rows(&store).await;
        assert!(written.len() > 100, "{}", written.len());
        store.rebuild_daily_spend().await.unwrap();
        assert_eq!(rollup_rows(&store).await, written);

        // ... and so do migrations 9 to 12 on a store that had only the rows (11 converting
        // what 10 made).
        let _one_upgrade = crate::db::UPGRADE_TESTS.lock().await;
        store.roll_back_to_before(9).await.unwrap();
        store.close().await;
        let store = Store::open_with(opts).await.unwrap();
        assert_eq!(
            store.schema_versions().await.unwrap(),
            (1..=21).collect::<Vec<i64>>()
        );
        assert_eq!(rollup_rows(&store).await, written);
        store.close().await;
    }

    async fn key_model_report(
        store: &Store,
    ) -> Result<Vec<crate::spend_db::KeyModelSpend>, crate::StoreError> {
        store
            .spend_by_key_and_model_in(Source::Rollup(Rollup::ByKey), i64::MIN, i64::MAX)
            .await
    }

    async fn pairs_stored(store: &Store) -> usize {
        let n: i64 = crate::db::on_db!(&store.db, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM idlehands_key_models")
                .fetch_one(pool)
                .await
                .unwrap()
        });
        usize::try_from(n).unwrap()
    }

    async fn exec(store: &Store, sql: &str) {
        crate::db::on_db!(&store.db, pool => {
            sqlx::raw_sql(sql).execute(pool).await.unwrap();
        });
    }

    /// The SQLite report sums by id in a slot per id; ids far apart (written by hand) are
    /// summed in a map, with the same answer; a cell whose pair is gone fails the report
    /// instead of leaving its spend out.
    #[tokio::test]
    async fn sqlite_key_model_ids_far_apart_or_missing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("ids.db").display().to_string())
            .await
            .unwrap();
        let mut rng = StdRng::seed_from_u64(5);
        let batch: Vec<BatchItem> = (0..300)
            .map(|i| BatchItem::Row(Box::new(random_row(&mut rng, i))))
            .collect();
        store.write_batch(&batch, true).await.unwrap();
        let from_rows = store
            .spend_by_key_and_model_in(Source::Rows, i64::MIN, i64::MAX)
            .await
            .unwrap();
        assert!(from_rows.len() > 6, "{from_rows:?}");
        assert_eq!(key_model_report(&store).await.unwrap(), from_rows);

        exec(
            &store,
            "UPDATE idlehands_key_models SET id = id * 1000000007; \
             UPDATE idlehands_spend_by_key_model SET key_model_id = key_model_id * 1000000007",
        )
        .await;
        assert_eq!(key_model_report(&store).await.unwrap(), from_rows);

        exec(
            &store,
            "DELETE FROM idlehands_key_models WHERE id = \
             (SELECT MIN(id) FROM idlehands_key_models)",
        )
        .await;
        let err = key_model_report(&store).await.unwrap_err().to_string();
        assert!(err.contains("idlehands_key_models"), "{err}");
        store.close().await;
    }

    /// Two instances committing the same new (key, model) pairs at once on one Postgres: each
    /// pair gets one id, and every commit's sums land on it.
    #[tokio::test]
    async fn postgres_instances_make_each_pair_once() {
        let (pool, opts, schema) = postgres_schema().await;
        let a = Store::open_with(opts.clone()).await.unwrap();
        let b = Store::open_with(opts).await.unwrap();
        let mut n = 0;
        for round in 0..8 {
            let mut rng = StdRng::seed_from_u64(round);
            let mut batch = |rng: &mut StdRng| -> Vec<BatchItem> {
                (0..30)
                    .map(|_| {
                        n += 1;
                        let mut row = random_row(rng, n);
                        // New pairs every round, the same ones on both instances.
                        row.api_key = format!("{}-{round}", row.api_key);
                        BatchItem::Row(Box::new(row))
                    })
                    .collect()
            };
            let (x, y) = (batch(&mut rng), batch(&mut rng));
            let (ra, rb) = tokio::join!(a.write_batch(&x, true), b.write_batch(&y, true));
            ra.unwrap();
            rb.unwrap();
        }
        let from_rows = a
            .spend_by_key_and_model_in(Source::Rows, i64::MIN, i64::MAX)
            .await
            .unwrap();
        assert_eq!(key_model_report(&b).await.unwrap(), from_rows);
        assert_eq!(pairs_stored(&a).await, from_rows.len());
        a.close().await;
        b.close().await;
        drop_schema(&pool, &schema).await;
    }

    /// A Postgres report keeps the sums of its range's closed cells (their days over a day
    /// ago) for the next report of that range, and reads them again once any instance wrote
    /// to one of them (a late row) or rebuilt them; the open cells it reads every time.
    #[tokio::test]
    async fn postgres_report_keeps_closed_cells_until_they_change() {
        let (pool, opts, schema) = postgres_schema().await;
        let a = Store::open_with(opts.clone()).await.unwrap();
        let b = Store::open_with(opts).await.unwrap();
        let now = Utc::now();
        let today = now.timestamp_millis().div_euclid(DAY_MS);
        let (lo, hi) = (today - 29, today + 1);
        let mut rng = StdRng::seed_from_u64(9);
        let mut n = 0;
        let mut rows_at = |rng: &mut StdRng, ages: std::ops::Range<i64>, count: usize| {
            (0..count)
                .map(|_| {
                    n += 1;
                    let mut row = random_row(rng, n);
                    let age = rng.random_range(ages.clone()) * DAY_MS + rng.random_range(0..DAY_MS);
                    row.start_time = now - chrono::Duration::milliseconds(age);
                    row.end_time = row.start_time;
                    BatchItem::Row(Box::new(row))
                })
                .collect::<Vec<_>>()
        };
        a.write_batch(&rows_at(&mut rng, 0..40, 400), true)
            .await
            .unwrap();
        let truth = |s: Store| async move {
            s.spend_by_key_and_model_in(Source::Rows, lo * DAY_MS, hi * DAY_MS)
                .await
                .unwrap()
        };
        let report = |s: Store| async move {
            s.spend_by_key_and_model_in(Source::Rollup(Rollup::ByKey), lo, hi)
                .await
                .unwrap()
        };
        let first = report(a.clone()).await;
        assert!(first.len() > 6, "{first:?}");
        assert_eq!(first, truth(a.clone()).await);

        // A hand edit of the closed cells, which no commit counts, is not seen: the kept sums
        // answer (unless the day turned meanwhile, and nothing was kept for this day).
        let closed_cells = format!("WHERE day + span < {today}");
        exec(
            &a,
            &format!(
                "UPDATE idlehands_spend_by_key_model SET spend_lo = spend_lo + 1000 {closed_cells}"
            ),
        )
        .await;
        let again = report(a.clone()).await;
        if Utc::now().timestamp_millis().div_euclid(DAY_MS) == today {
            assert_eq!(again, first);
        }
        exec(
            &a,
            &format!(
                "UPDATE idlehands_spend_by_key_model SET spend_lo = spend_lo - 1000 {closed_cells}"
            ),
        )
        .await;

        // Rows of today (open cells) and late rows from the other instance, for known and new
        // keys (closed cells), are all in the next report.
        b.write_batch(&rows_at(&mut rng, 0..1, 20), true)
            .await
            .unwrap();
        assert_eq!(report(a.clone()).await, truth(a.clone()).await);
        let mut late = rows_at(&mut rng, 5..25, 30);
        if let Some(BatchItem::Row(row)) = late.first_mut() {
            row.api_key = "a-new-key".into();
        }
        b.write_batch(&late, true).await.unwrap();
        let after_late = report(a.clone()).await;
        assert_eq!(after_late, truth(a.clone()).await);
        assert!(after_late.iter().any(|r| r.api_key.contains("a-new-key")));
        // Every pair named once: the first report read them all, later ones the new pairs.
        assert_eq!(a.pair_names.len(), pairs_stored(&a).await);
        assert_ne!(after_late, first);

        // Ranges ending today, yesterday and before, from every start: each read twice (the
        // second from its kept sums) agrees with the rows.
        for from in (today - 40..=today).step_by(3) {
            for to in [today - 3, today - 1, today, today + 1] {
                let rows = a
                    .spend_by_key_and_model_in(Source::Rows, from * DAY_MS, to * DAY_MS)
                    .await
                    .unwrap();
                for _ in 0..2 {
                    let cells = a
                        .spend_by_key_and_model_in(Source::Rollup(Rollup::ByKey), from, to)
                        .await
                        .unwrap();
                    assert_eq!(cells, rows, "{from}..{to}");
                }
            }
        }

        // A rebuild after the retention sweep drops the swept days' history, and the next
        // report shows that.
        b.delete_spend_logs_before(now - chrono::Duration::days(20))
            .await
            .unwrap();
        b.rebuild_daily_spend().await.unwrap();
        let rebuilt = report(a.clone()).await;
        assert_eq!(rebuilt, truth(a.clone()).await);
        assert_ne!(rebuilt, after_late);
        a.close().await;
        b.close().await;
        drop_schema(&pool, &schema).await;
    }

    /// The runs cover `[lo, hi)` exactly, each of whole cells of its span.
    #[test]
    fn spans_cover_the_range_once() {
        for lo in -40..40 {
            for hi in lo - 1..lo + 70 {
                let runs = spans_for(lo, hi);
                assert_eq!(runs.len(), 2 * SPANS.len() - 1);
                let mut covered = Vec::new();
                for (span, first, end) in runs {
                    assert!(SPANS.contains(&span));
                    assert_eq!(first.rem_euclid(span), 0, "{lo}..{hi}: {first} of {span}");
                    assert_eq!(end.rem_euclid(span), 0, "{lo}..{hi}: {end} of {span}");
                    covered.extend(first..end);
                }
                covered.sort_unstable();
                assert_eq!(covered, (lo..hi).collect::<Vec<_>>(), "{lo}..{hi}");
            }
        }
        // Open ends (the whole table) cover without overflowing.
        let runs = spans_for(i64::MIN, i64::MAX);
        assert_eq!(runs[0], (16, i64::MIN, span_start(i64::MAX, 16)));
    }

    /// `disable_spend_logs`: the rows are not stored, and the rollups are the same as a
    /// store that kept them has (LiteLLM keeps its daily tables without its spend logs).
    async fn unlogged_rows_still_count(quiet: StoreOptions, logged: StoreOptions) {
        let quiet = Store::open_with(quiet).await.unwrap();
        let logged = Store::open_with(logged).await.unwrap();
        for batch in random_batches(3, 10) {
            quiet.write_batch(&batch, false).await.unwrap();
            logged.write_batch(&batch, true).await.unwrap();
        }
        assert_eq!(quiet.count_spend_logs().await.unwrap(), 0);
        let kept = rollup_rows(&logged).await;
        assert!(kept.len() > 50, "{}", kept.len());
        assert_eq!(rollup_rows(&quiet).await, kept);
        let report = quiet
            .spend_by_key_and_model_in(Source::Rollup(Rollup::ByKey), DAY0 - 1, DAY0 + 41)
            .await
            .unwrap();
        let rows = logged
            .spend_by_key_and_model_in(Source::Rows, (DAY0 - 1) * DAY_MS, (DAY0 + 41) * DAY_MS)
            .await
            .unwrap();
        assert!(!rows.is_empty());
        assert_eq!(report, rows);
        quiet.close().await;
        logged.close().await;
    }

    #[tokio::test]
    async fn sqlite_unlogged_rows_still_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).display().to_string();
        unlogged_rows_still_count(
            StoreOptions::new(path("q.db")),
            StoreOptions::new(path("l.db")),
        )
        .await;
    }

    #[tokio::test]
    async fn postgres_unlogged_rows_still_count() {
        let (pool, quiet, quiet_schema) = postgres_schema().await;
        let (_, logged, logged_schema) = postgres_schema().await;
        unlogged_rows_still_count(quiet, logged).await;
        drop_schema(&pool, &quiet_schema).await;
        drop_schema(&pool, &logged_schema).await;
    }

    #[tokio::test]
    async fn sqlite_rollups_answer_as_the_rows_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db").display().to_string();
        scenario(StoreOptions::new(path), 7).await;
    }

    #[tokio::test]
    async fn postgres_rollups_answer_as_the_rows_do() {
        let (pool, opts, schema) = postgres_schema().await;
        scenario(opts, 11).await;
        drop_schema(&pool, &schema).await;
    }

    /// The team and customer reports are read by different code on each store (rusqlite
    /// rows, Postgres's binary `COPY`): the same rows give the same parts, in the same order
    /// (byte order, calls without a group first), from the rows and from the rollup.
    #[tokio::test]
    async fn team_and_customer_reports_agree_across_stores() {
        let dir = tempfile::tempdir().unwrap();
        let lite = Store::open_with(StoreOptions::new(
            dir.path().join("a.db").display().to_string(),
        ))
        .await
        .unwrap();
        let (pool, opts, schema) = postgres_schema().await;
        let pg = Store::open_with(opts).await.unwrap();
        for batch in random_batches(5, 25) {
            lite.write_batch(&batch, true).await.unwrap();
            pg.write_batch(&batch, true).await.unwrap();
        }
        let mut parts = 0;
        for (lo, hi) in day_ranges() {
            let rows = rows_of_days(lo, hi);
            for group in [ReportGroup::Team, ReportGroup::Customer] {
                for (source, lo, hi) in [
                    (Source::Rows, rows.0, rows.1),
                    (Source::Rollup(Rollup::ByKey), lo, hi),
                ] {
                    let want = lite
                        .spend_by_day_and_in(source, group, lo, hi)
                        .await
                        .unwrap()
                        .collect::<Vec<_>>();
                    let got: Vec<_> = pg
                        .spend_by_day_and_in(source, group, lo, hi)
                        .await
                        .unwrap()
                        .collect();
                    assert_eq!(got, want, "{group:?} {source:?} {lo}..{hi}");
                    parts += want.len();
                }
            }
        }
        // Every kind of part was compared: no group, an empty one, sums past 10^9.
        let all = lite
            .spend_by_day_and_in(Source::Rows, ReportGroup::Team, i64::MIN, i64::MAX)
            .await
            .unwrap()
            .collect::<Vec<_>>();
        assert!(parts > 1000, "{parts}");
        assert!(all.iter().any(|p| p.group.is_none()));
        assert!(all.iter().any(|p| p.group.as_deref() == Some("")));
        assert!(all.iter().any(|p| p.spend > 1_000_000_000));
        lite.close().await;
        pg.close().await;
        drop_schema(&pool, &schema).await;
    }
}
