//! The sums of a key-model report per key-model id (store migration 11), shared by the SQLite
//! and Postgres readers (`sqlite_reads`, `pg_reads`), which read the cells outside SQL.

use std::collections::HashMap;

use crate::error::StoreError;
use crate::spend_db::{KeyModelSpend, wide_sum_i128};

/// A report row from a pair's names and sums. The two parts of each measure were added apart,
/// then are joined (as `SUM(..._hi)`, `SUM(..._lo)` and `wide_sum` did), in `i128`: parts SQL
/// would have overflowed on saturate.
pub(crate) fn spend(api_key: String, model: String, s: &[i128; 6]) -> KeyModelSpend {
    KeyModelSpend {
        api_key,
        model,
        spend: wide_sum_i128(s[0], s[1]),
        prompt_tokens: wide_sum_i128(s[2], s[3]),
        completion_tokens: wide_sum_i128(s[4], s[5]),
    }
}

/// The sums per key-model id: a slot per id where ids are dense (both stores hand them out in
/// order and none is ever deleted; Postgres skips one where two instances race), a map where
/// they are not (ids written by hand).
pub(crate) enum Sums {
    Dense {
        sums: Vec<[i128; 6]>,
        seen: Vec<bool>,
        len: usize,
    },
    Sparse(HashMap<i64, [i128; 6]>),
}

impl Sums {
    pub(crate) fn new(count: i64, max_id: i64) -> Self {
        match usize::try_from(max_id) {
            Ok(max) if max_id <= count.saturating_mul(2).saturating_add(1024) => Sums::Dense {
                sums: vec![[0; 6]; max + 1],
                seen: vec![false; max + 1],
                len: 0,
            },
            _ => Sums::Sparse(HashMap::new()),
        }
    }

    /// The slot of `id`. Every id of the snapshot's cells is at most its largest pair id: one
    /// past it is a cell without a pair, which could not be named, so the report fails.
    pub(crate) fn slot(&mut self, id: i64) -> Result<&mut [i128; 6], StoreError> {
        match self {
            Sums::Dense { sums, seen, len } => {
                let i = usize::try_from(id).ok();
                match (
                    i.and_then(|i| sums.get_mut(i)),
                    i.and_then(|i| seen.get_mut(i)),
                ) {
                    (Some(slot), Some(s)) => {
                        if !*s {
                            *s = true;
                            *len += 1;
                        }
                        Ok(slot)
                    }
                    _ => Err(unnamed(id)),
                }
            }
            Sums::Sparse(map) => Ok(map.entry(id).or_default()),
        }
    }

    pub(crate) fn get(&self, id: i64) -> Option<&[i128; 6]> {
        match self {
            Sums::Dense { sums, seen, .. } => {
                let i = usize::try_from(id).ok()?;
                if seen.get(i).copied().unwrap_or(false) {
                    sums.get(i)
                } else {
                    None
                }
            }
            Sums::Sparse(map) => map.get(&id),
        }
    }

    /// Adds other sums in (another reader's, or kept ones).
    pub(crate) fn absorb(&mut self, other: &Sums) -> Result<(), StoreError> {
        match other {
            Sums::Dense { sums, seen, .. } => {
                for (id, (add, seen)) in sums.iter().zip(seen).enumerate() {
                    if *seen {
                        let slot = self.slot(i64::try_from(id).unwrap_or(i64::MAX))?;
                        for (s, a) in slot.iter_mut().zip(add) {
                            *s += a;
                        }
                    }
                }
            }
            Sums::Sparse(map) => {
                for (id, add) in map {
                    for (s, a) in self.slot(*id)?.iter_mut().zip(add) {
                        *s += a;
                    }
                }
            }
        }
        Ok(())
    }

    /// Fails unless `named` pairs account for every summed id: a summed id without its pair
    /// (only a hand-edited store has one) is said, rather than its spend left out.
    pub(crate) fn all_named(&self, named: usize) -> Result<(), StoreError> {
        match self.len().checked_sub(named) {
            Some(0) => Ok(()),
            missing => Err(StoreError::Internal(format!(
                "key and model report: {} summed key-model ids have no pair in \
                 idlehands_key_models",
                missing.unwrap_or_default()
            ))),
        }
    }

    /// The ids summed so far.
    pub(crate) fn ids(&self) -> impl Iterator<Item = i64> + '_ {
        let (dense, sparse) = match self {
            Sums::Dense { seen, .. } => (Some(seen), None),
            Sums::Sparse(map) => (None, Some(map)),
        };
        let dense = dense.into_iter().flat_map(|seen| {
            seen.iter()
                .enumerate()
                .filter(|(_, s)| **s)
                .map(|(i, _)| i64::try_from(i).unwrap_or(i64::MAX))
        });
        dense.chain(sparse.into_iter().flat_map(|m| m.keys().copied()))
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Sums::Dense { len, .. } => *len,
            Sums::Sparse(map) => map.len(),
        }
    }
}

fn unnamed(id: i64) -> StoreError {
    StoreError::Internal(format!(
        "key and model report: spend cells name key-model id {id}, which \
         idlehands_key_models lacks"
    ))
}
