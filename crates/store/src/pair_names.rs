//! The names of the key-model pairs (store migration 11), kept by the Postgres key-model report
//! (`pg_reads`) across calls. A pair's id never changes, is never reused and its row is never
//! deleted, so a name read once stays right for the life of the store: a report reads only the
//! ids it has not named before. Reading all 500,000 pairs of a 100,000-key store was a third of
//! a report's time once the closed cells' sums were kept (0.22-0.27 s of 0.67-0.70 s).
//!
//! Token hashes (64 lowercase hex characters, the keys a gateway writes) are kept as their 32
//! bytes and models once each, about 40 bytes a pair with its place in the name order.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Mutex;

use crate::interner::Interner;
use crate::key_model_sums::{self, Sums};
use crate::spend_db::KeyModelSpend;

/// Ids below this many times the names held (plus a margin) are kept in a vector slot by id;
/// any other (ids written by hand) in a map.
const DENSE_SPREAD: usize = 4;
const DENSE_MARGIN: usize = 4096;

#[derive(Default)]
pub(crate) struct PairNames(Mutex<Names>);

impl std::fmt::Debug for PairNames {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PairNames")
    }
}

#[derive(Default)]
struct Names {
    /// By id, where ids are dense: the pair, and its place in `order`.
    dense: Vec<Option<Pair>>,
    dense_rank: Vec<u32>,
    /// Any other id (written by hand): the same.
    sparse: HashMap<i64, (Pair, u32)>,
    models: Interner,
    /// Every named id, in (key, model) byte order, as reports list them.
    order: Vec<i64>,
}

struct Pair {
    key: Key,
    model: u32,
}

enum Key {
    /// A token hash: 64 lowercase hex characters as bytes.
    Hash([u8; 32]),
    Text(Box<str>),
}

impl Key {
    fn new(text: &str) -> Key {
        let b = text.as_bytes();
        let mut out = [0u8; 32];
        if b.len() == 64 {
            let mut ok = true;
            for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
                match (nibble(pair[0]), nibble(pair[1])) {
                    (Some(hi), Some(lo)) => *o = hi << 4 | lo,
                    _ => {
                        ok = false;
                        break;
                    }
                }
            }
            if ok {
                return Key::Hash(out);
            }
        }
        Key::Text(text.into())
    }

    /// The key's text into `buf` (a hash's 64 characters) or as it is.
    fn text<'a>(&'a self, buf: &'a mut [u8; 64]) -> &'a [u8] {
        match self {
            Key::Hash(bytes) => {
                for (pair, b) in buf.chunks_exact_mut(2).zip(bytes) {
                    pair[0] = HEX[usize::from(b >> 4)];
                    pair[1] = HEX[usize::from(b & 15)];
                }
                buf.as_slice()
            }
            Key::Text(t) => t.as_bytes(),
        }
    }

    fn owned_text(&self) -> String {
        let mut buf = [0u8; 64];
        // Hex digits, or a str's own bytes: UTF-8 either way.
        std::str::from_utf8(self.text(&mut buf))
            .unwrap_or_default()
            .to_owned()
    }

    fn cmp(&self, other: &Key) -> Ordering {
        match (self, other) {
            // Lowercase hex sorts as the bytes it spells.
            (Key::Hash(a), Key::Hash(b)) => a.cmp(b),
            _ => {
                let (mut x, mut y) = ([0u8; 64], [0u8; 64]);
                self.text(&mut x).cmp(other.text(&mut y))
            }
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Pairs read from the store, kept compact as they arrive (a first report reads 500,000).
#[derive(Default)]
pub(crate) struct ReadPairs {
    pairs: Vec<(i64, Pair)>,
    models: Interner,
}

impl ReadPairs {
    pub(crate) fn push(&mut self, id: i64, key: &str, model: &str) {
        let model = self.models.index(model);
        self.pairs.push((
            id,
            Pair {
                key: Key::new(key),
                model,
            },
        ));
    }
}

impl PairNames {
    fn names(&self) -> std::sync::MutexGuard<'_, Names> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The ids of `sums` not named yet.
    pub(crate) fn missing(&self, sums: &Sums) -> Vec<i64> {
        let names = self.names();
        sums.ids().filter(|id| names.get(*id).is_none()).collect()
    }

    /// Names read from the store (the ids already named are skipped).
    pub(crate) fn add(&self, read: ReadPairs) {
        let mut names = self.names();
        let models: Vec<u32> = read.models.names().map(|m| names.models.index(m)).collect();
        let mut new: Vec<(i64, Pair)> = Vec::with_capacity(read.pairs.len());
        for (id, mut pair) in read.pairs {
            if names.get(id).is_none() {
                pair.model = models.get(pair.model as usize).copied().unwrap_or(u32::MAX);
                new.push((id, pair));
            }
        }
        if new.is_empty() {
            return;
        }
        // Sorted where they lie (a hash compares inline), then each merged in at the place a
        // binary search over the names already in order finds.
        new.sort_unstable_by(|(_, a), (_, b)| names.cmp_pairs(a, b));
        new.dedup_by_key(|(id, _)| *id);
        let old = std::mem::take(&mut names.order);
        let mut order = Vec::with_capacity(old.len() + new.len());
        let mut from = 0;
        for (id, pair) in &new {
            let rest = old.get(from..).unwrap_or_default();
            let at = from
                + rest.partition_point(|&o| {
                    names
                        .get(o)
                        .is_some_and(|(p, _)| names.cmp_pairs(p, pair) != Ordering::Greater)
                });
            order.extend_from_slice(old.get(from..at).unwrap_or_default());
            order.push(*id);
            from = at;
        }
        order.extend_from_slice(old.get(from..).unwrap_or_default());
        let dense_below = (order.len() + DENSE_MARGIN).saturating_mul(DENSE_SPREAD);
        for (id, pair) in new {
            names.put(id, pair, dense_below);
        }
        for (rank, &id) in order.iter().enumerate() {
            names.set_rank(id, u32::try_from(rank).unwrap_or(u32::MAX));
        }
        names.order = order;
    }

    /// The report rows of `sums` in (key, model) byte order; ids without a name are left
    /// out (the caller checks that every summed id was named).
    pub(crate) fn report(&self, sums: &Sums) -> Vec<KeyModelSpend> {
        let names = self.names();
        // Made in id order, as the sums and names lie in memory, then moved into name order
        // in place. Walking the name order instead (three scattered reads a row) took a
        // quarter of a 500,000-pair report's time.
        let mut rows = Vec::with_capacity(sums.len());
        let mut ranks: Vec<(u32, u32)> = Vec::with_capacity(sums.len());
        for id in sums.ids() {
            let (Some(s), Some((pair, rank))) = (sums.get(id), names.get(id)) else {
                continue;
            };
            let model = names.models.name(pair.model).to_owned();
            let at = u32::try_from(rows.len()).unwrap_or(u32::MAX);
            ranks.push((rank, at));
            rows.push(key_model_sums::spend(pair.key.owned_text(), model, s));
        }
        drop(names);
        ranks.sort_unstable();
        // `to[i]`: where row i goes.
        let mut to = vec![0u32; rows.len()];
        for (place, (_, at)) in ranks.iter().enumerate() {
            if let Some(t) = to.get_mut(*at as usize) {
                *t = u32::try_from(place).unwrap_or(u32::MAX);
            }
        }
        permute(&mut rows, &mut to);
        rows
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.names().order.len()
    }
}

impl Names {
    /// An id lives in one place, the vector or the map (where it went when it was named,
    /// though the vector may have grown past it since).
    fn get(&self, id: i64) -> Option<(&Pair, u32)> {
        if let Ok(i) = usize::try_from(id)
            && let Some(Some(pair)) = self.dense.get(i)
        {
            return Some((pair, self.dense_rank.get(i).copied().unwrap_or(u32::MAX)));
        }
        self.sparse.get(&id).map(|(p, r)| (p, *r))
    }

    fn put(&mut self, id: i64, pair: Pair, dense_below: usize) {
        match usize::try_from(id) {
            Ok(i) if i < dense_below => {
                if i >= self.dense.len() {
                    self.dense.resize_with(i + 1, || None);
                    self.dense_rank.resize(i + 1, u32::MAX);
                }
                if let Some(slot) = self.dense.get_mut(i) {
                    *slot = Some(pair);
                }
            }
            _ => {
                self.sparse.insert(id, (pair, u32::MAX));
            }
        }
    }

    fn set_rank(&mut self, id: i64, rank: u32) {
        if let Ok(i) = usize::try_from(id)
            && let Some(Some(_)) = self.dense.get(i)
            && let Some(r) = self.dense_rank.get_mut(i)
        {
            *r = rank;
        } else if let Some((_, r)) = self.sparse.get_mut(&id) {
            *r = rank;
        }
    }

    /// Byte order of (key, model), as sorting the texts gives.
    fn cmp_pairs(&self, a: &Pair, b: &Pair) -> Ordering {
        a.key.cmp(&b.key).then_with(|| {
            let name = |p: &Pair| self.models.name(p.model).as_bytes();
            name(a).cmp(name(b))
        })
    }
}

/// Moves `rows[i]` to `rows[to[i]]` for every i (`to` a permutation), following its cycles.
fn permute<T>(rows: &mut [T], to: &mut [u32]) {
    for i in 0..rows.len() {
        while let Some(&t) = to.get(i) {
            let t = t as usize;
            if t == i || t >= rows.len() {
                break;
            }
            rows.swap(i, t);
            to.swap(i, t);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn hash(i: u32) -> String {
        format!("{:064x}", u128::from(i) * 0x9e37_79b9_7f4a_7c15)
    }

    /// Names arrive in any order and in several reads, hashes and other keys mixed; the report
    /// lists the summed ones in byte order of (key, model), as sorting their texts would.
    #[test]
    fn names_read_in_parts_report_in_byte_order() {
        let names = PairNames::default();
        let read = |part: &[(i64, String, String)]| {
            let mut r = ReadPairs::default();
            for (id, key, model) in part {
                r.push(*id, key, model);
            }
            r
        };
        let mut pairs: Vec<(i64, String, String)> = Vec::new();
        for i in 0..300u32 {
            let key = match i % 7 {
                0 => format!("sk-plain-{i}"),
                1 => hash(i).to_uppercase(), // not lowercase hex: kept as text
                _ => hash(i / 2),            // two models of one key
            };
            let model = ["gpt-4o", "gpt-4o-mini", "claude"][(i % 3) as usize].to_string();
            pairs.push((i64::from(i) * 30 + 1, key, model));
        }
        // Far-apart ids too, as a hand-edited store has.
        pairs.push((1_000_000_007, hash(9999), "m".into()));
        let mut sums = Sums::new(400, 1_000_000_007);
        for (id, ..) in &pairs {
            sums.slot(*id).unwrap()[0] = i128::from(*id);
        }
        // Read in three parts, the last one repeating ids already named.
        let mut shuffled = pairs.clone();
        shuffled.reverse();
        names.add(read(&shuffled[..100]));
        assert_eq!(names.missing(&sums).len(), pairs.len() - 100);
        names.add(read(&shuffled[100..250]));
        names.add(read(&shuffled[50..]));
        assert!(names.missing(&sums).is_empty());
        assert_eq!(names.len(), pairs.len());
        assert_eq!(names.names().sparse.len(), 1, "only the far id in a map");

        let got: Vec<(String, String, i64)> = names
            .report(&sums)
            .into_iter()
            .map(|r| (r.api_key, r.model, r.spend))
            .collect();
        let mut want: Vec<(String, String, i64)> = pairs
            .iter()
            .map(|(id, k, m)| {
                let s = key_model_sums::spend(k.clone(), m.clone(), sums.get(*id).unwrap());
                (s.api_key, s.model, s.spend)
            })
            .collect();
        want.sort_by(|a, b| {
            (a.0.as_bytes(), a.1.as_bytes()).cmp(&(b.0.as_bytes(), b.1.as_bytes()))
        });
        assert_eq!(got, want);
    }

    /// An id named while the vector did not reach it stays in the map, and is still found
    /// (not named twice) once the vector has grown past it.
    #[test]
    fn an_id_in_the_map_is_found_after_the_vector_grows_past_it() {
        let names = PairNames::default();
        let mut read = ReadPairs::default();
        read.push(20_000, &hash(1), "m");
        names.add(read);
        assert_eq!(names.names().sparse.len(), 1);
        let mut read = ReadPairs::default();
        for i in 0..1000 {
            read.push(20_001 + i64::from(i), &hash(i + 2), "m");
        }
        names.add(read);
        assert!(names.names().dense.len() > 20_000);
        let mut sums = Sums::new(2000, 21_000);
        sums.slot(20_000).unwrap()[1] = 7;
        sums.slot(20_001).unwrap()[1] = 8;
        assert!(names.missing(&sums).is_empty());
        let got = names.report(&sums);
        assert_eq!(got.len(), 2);
        assert!(got.iter().any(|r| r.api_key == hash(1) && r.spend == 7));
        let mut again = ReadPairs::default();
        again.push(20_000, &hash(1), "m");
        names.add(again);
        assert_eq!(names.len(), 1001);
    }

    /// Only summed ids are reported; a named id without sums is not.
    #[test]
    fn unsummed_names_are_not_reported() {
        let names = PairNames::default();
        let mut read = ReadPairs::default();
        read.push(1, &hash(1), "a");
        read.push(2, &hash(2), "a");
        read.push(3, "k", "b");
        names.add(read);
        let mut sums = Sums::new(3, 3);
        sums.slot(2).unwrap()[0] = 5;
        let got = names.report(&sums);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].api_key, hash(2));
        assert_eq!(got[0].model, "a");
    }
}
