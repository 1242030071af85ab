//! The team and customer reports' parts (`/global/spend/report?group_by=team|customer`), one
//! per day, group, model and key, summed outside SQL from the rows of the range as the store
//! hands them over.
//!
//! The by-key rollup already holds nearly one row per part (its other dimensions, such as the
//! user, rarely split one): on a 1M-row, 10,000-key store a month is 690,000 rollup rows and
//! 636,000 parts. SQL's `GROUP BY` was mostly a sort of all of them by long text keys, spilled
//! to disk on Postgres (external merge, 90 MB); here each name is kept once, rows are sorted
//! by the names' ranks, and neighbours are added up.

use crate::daily_spend::DAY_MS;
use crate::interner::Interner;
use crate::spend_db::{DayGroupSpend, wide_sum_i128};

/// A group (team or end user) that is absent: first, as SQLite orders NULL.
const NO_GROUP: u32 = u32::MAX;

#[derive(Default)]
pub(crate) struct DayGroupSums {
    names: Interner,
    rows: Vec<Row>,
}

struct Row {
    day: i64,
    group: u32,
    model: u32,
    key: u32,
    /// Spend's and total tokens' parts above and below 10^9, as the rollups keep them.
    sums: [i64; 4],
}

/// What a row sorts by: its day, then its names' ranks (the absent group first).
type Order = (i64, u32, u32, u32);

impl DayGroupSums {
    /// A row of the range: its day, group, model, key and `[spend_hi, spend_lo, total_tokens_hi,
    /// total_tokens_lo]`.
    pub(crate) fn push(
        &mut self,
        day: i64,
        group: Option<&str>,
        model: &str,
        key: &str,
        sums: [i64; 4],
    ) {
        let group = group.map_or(NO_GROUP, |g| self.names.index(g));
        let model = self.names.index(model);
        let key = self.names.index(key);
        self.rows.push(Row {
            day,
            group,
            model,
            key,
            sums,
        });
    }

    /// The parts, each row of the same day, group, model and key added up, in (day, group,
    /// model, key) order with names in byte order and the absent group first. Made one at a
    /// time as they are taken: a month of a big store has millions, and an answer can be
    /// written day by day.
    pub(crate) fn parts(mut self) -> DayGroupParts {
        let rank = self.names.ranks();
        let rank_of = |i: u32| rank.get(i as usize).copied().unwrap_or(u32::MAX);
        self.rows.sort_unstable_by_key(|r| -> Order {
            let group = if r.group == NO_GROUP {
                0
            } else {
                rank_of(r.group).saturating_add(1)
            };
            (r.day, group, rank_of(r.model), rank_of(r.key))
        });
        DayGroupParts {
            names: self.names,
            rows: self.rows,
            at: 0,
        }
    }
}

/// [`crate::Store::spend_by_day_and`]'s parts, in order, each made when it is taken.
pub struct DayGroupParts {
    names: Interner,
    /// Sorted: the rows of a part lie together.
    rows: Vec<Row>,
    at: usize,
}

impl std::fmt::Debug for DayGroupParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DayGroupParts({} rows left)", self.rows.len() - self.at)
    }
}

impl Iterator for DayGroupParts {
    type Item = DayGroupSpend;

    fn next(&mut self) -> Option<DayGroupSpend> {
        let first = self.rows.get(self.at)?;
        let part = |r: &Row| (r.day, r.group, r.model, r.key);
        let mut sums = first.sums.map(i128::from);
        let mut end = self.at + 1;
        while let Some(next) = self.rows.get(end).filter(|r| part(r) == part(first)) {
            for (s, n) in sums.iter_mut().zip(next.sums) {
                *s += i128::from(n);
            }
            end += 1;
        }
        self.at = end;
        let [s_hi, s_lo, t_hi, t_lo] = sums;
        Some(DayGroupSpend {
            day_ms: first.day.saturating_mul(DAY_MS),
            group: (first.group != NO_GROUP).then(|| self.names.name(first.group).to_owned()),
            model: self.names.name(first.model).to_owned(),
            api_key: self.names.name(first.key).to_owned(),
            spend: wide_sum_i128(s_hi, s_lo),
            total_tokens: wide_sum_i128(t_hi, t_lo),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_a_part_are_added_up_and_parts_come_in_order() {
        let mut sums = DayGroupSums::default();
        sums.push(2, Some("t"), "m", "k", [1, 2, 3, 4]);
        sums.push(1, Some("t"), "m", "k", [0, 5, 0, 6]);
        sums.push(1, None, "m", "k", [0, 1, 0, 1]);
        sums.push(1, Some(""), "m", "k", [0, 1, 0, 1]);
        sums.push(1, Some("t"), "m", "b", [0, 7, 0, 8]);
        sums.push(1, Some("t"), "m", "k", [1, 999_999_999, 0, 1]);
        sums.push(1, Some("T"), "m", "k", [0, 1, 0, 1]);
        // A sum past `i64::MAX` saturates.
        sums.push(3, None, "m", "k", [i64::MAX, 0, 0, 0]);
        sums.push(3, None, "m", "k", [i64::MAX, 0, 0, 0]);
        let got: Vec<_> = sums
            .parts()
            .map(|p| {
                (
                    p.day_ms,
                    p.group,
                    p.api_key,
                    p.model,
                    p.spend,
                    p.total_tokens,
                )
            })
            .collect();
        let part = |day: i64, g: Option<&str>, k: &str, spend: i64, tokens: i64| {
            (
                day * DAY_MS,
                g.map(str::to_owned),
                k.to_owned(),
                "m".to_owned(),
                spend,
                tokens,
            )
        };
        assert_eq!(
            got,
            [
                part(1, None, "k", 1, 1),
                part(1, Some(""), "k", 1, 1),
                part(1, Some("T"), "k", 1, 1),
                part(1, Some("t"), "b", 7, 8),
                part(1, Some("t"), "k", 2_000_000_004, 7),
                part(2, Some("t"), "k", 1_000_000_002, 3_000_000_004),
                part(3, None, "k", i64::MAX, 0),
            ]
        );
    }
}
