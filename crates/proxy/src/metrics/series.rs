//! Where the series live between scrapes: per metric family, a sharded map from label values
//! to a value, each stamped with when it was last touched so that idle per-key series can be
//! dropped. The values encode themselves through `prometheus-client`'s typed encoder.
//!
//! Recording finds an existing series under a shard's read lock without allocating (the label
//! values are encoded into a reused buffer), so finished calls never queue on one lock. Before
//! that, each serving thread remembers the series it last used per family: consecutive calls
//! of one key, model and client share every label, and comparing the values is a fraction of
//! encoding, hashing and looking them up (a dozen families per call showed as 8% of a
//! virtual-key request's instructions under callgrind).

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

// Series are looked up several times per request by labels that include a 64-character
// key hash: SipHash showed up in profiles, foldhash does not.
use foldhash::fast::RandomState;
use parking_lot::RwLock;
use prometheus_client::encoding::{
    EncodeLabel, EncodeLabelSet, EncodeMetric, LabelSetEncoder, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;

use super::labels::Def;

const SHARDS: usize = 16;

/// One series: its label values (in the family's label order), when it was last touched
/// (seconds on the metrics' clock) and its value.
pub(crate) struct Series<V> {
    pub values: Box<[Box<str>]>,
    last_seen: AtomicU64,
    /// Set while a sweep decides to drop this series: a recorder holding it from its thread's
    /// memory stamps `last_seen` first and reads this after, so it either sees the flag (and
    /// goes through the map) or the sweep sees its stamp and keeps the series.
    evicted: AtomicBool,
    pub value: V,
}

impl<V> Series<V> {
    /// Stamps the series `now` for a recorder that kept it from an earlier call; false when
    /// a sweep is dropping it, and the recorder must look it up in its family again.
    pub fn touch(&self, now: u64) -> bool {
        self.last_seen.store(now, Ordering::SeqCst);
        !self.evicted.load(Ordering::SeqCst)
    }
}

/// Families are told apart by a number no other family (of any `Metrics`) ever had, not by
/// address: a test process makes and drops many gateways, and a freed family's address can
/// come back for a new one.
static NEXT_FAMILY: AtomicU64 = AtomicU64::new(1);

/// Families one thread remembers a series for, at most (see `Family::remember`).
const MAX_REMEMBERED: usize = 64;

thread_local! {
    /// Per family id, the series this thread recorded to last.
    static LAST: RefCell<Vec<(u64, Arc<dyn Any + Send + Sync>)>> = const { RefCell::new(Vec::new()) };
}

type Shard<V> = RwLock<HashMap<Box<[u8]>, Arc<Series<V>>, RandomState>>;

pub(crate) struct Family<V> {
    pub def: &'static Def,
    /// Per label of `def`, which call value it takes (`super::call_slot`).
    pub slots: Box<[Option<u8>]>,
    id: u64,
    hasher: RandomState,
    shards: Box<[Shard<V>]>,
}

impl<V: Default + Send + Sync + 'static> Family<V> {
    pub fn new(def: &'static Def) -> Self {
        Self {
            def,
            slots: def.labels.iter().map(|l| super::call_slot(l)).collect(),
            id: NEXT_FAMILY.fetch_add(1, Ordering::Relaxed),
            hasher: RandomState::default(),
            shards: (0..SHARDS)
                .map(|_| RwLock::new(HashMap::with_hasher(RandomState::default())))
                .collect(),
        }
    }

    /// The series for `values` (one per label of the family, in order), made the first time
    /// and stamped `now` while the shard is locked, so a sweep never drops a series that a
    /// recorder is about to add to.
    pub fn get(&self, values: &[&str], now: u64) -> Option<Arc<Series<V>>> {
        if values.len() != self.def.labels.len() {
            return None;
        }
        if let Some(s) = self.remembered(values)
            && s.touch(now)
        {
            return Some(s);
        }
        let s = self.find(values, now)?;
        self.remember(&s);
        Some(s)
    }

    /// This thread's last series of this family, when it has exactly these label values.
    fn remembered(&self, values: &[&str]) -> Option<Arc<Series<V>>> {
        LAST.with(|last| {
            let last = last.try_borrow().ok()?;
            let (_, any) = last.iter().find(|(id, _)| *id == self.id)?;
            let s = Arc::clone(any).downcast::<Series<V>>().ok()?;
            let same = s.values.len() == values.len()
                && s.values.iter().zip(values).all(|(a, b)| **a == **b);
            same.then_some(s)
        })
    }

    fn remember(&self, s: &Arc<Series<V>>) {
        LAST.with(|last| {
            let Ok(mut last) = last.try_borrow_mut() else {
                return;
            };
            let any: Arc<dyn Any + Send + Sync> = s.clone();
            match last.iter_mut().find(|(id, _)| *id == self.id) {
                Some(slot) => slot.1 = any,
                None => {
                    // A gateway has a few dozen families; only a process that makes many
                    // (tests) gets past this, and forgetting is always safe here.
                    if last.len() >= MAX_REMEMBERED {
                        last.clear();
                    }
                    last.push((self.id, any));
                }
            }
        });
    }

    /// The series in the map, made if missing.
    fn find(&self, values: &[&str], now: u64) -> Option<Arc<Series<V>>> {
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BUF.with(|buf| {
            let mut buf = buf.try_borrow_mut().ok()?;
            buf.clear();
            for v in values {
                // Length-prefixed, so no label text can make two label sets encode alike.
                buf.extend_from_slice(&(v.len() as u64).to_le_bytes());
                buf.extend_from_slice(v.as_bytes());
            }
            let i = (self.hasher.hash_one(buf.as_slice()) as usize) % SHARDS;
            let shard = self.shards.get(i)?;
            {
                let read = shard.read();
                if let Some(s) = read.get(buf.as_slice()) {
                    s.last_seen.store(now, Ordering::Relaxed);
                    return Some(s.clone());
                }
            }
            let mut w = shard.write();
            let s = w.entry(Box::from(buf.as_slice())).or_insert_with(|| {
                Arc::new(Series {
                    values: values.iter().map(|v| Box::from(*v)).collect(),
                    last_seen: AtomicU64::new(now),
                    evicted: AtomicBool::new(false),
                    value: V::default(),
                })
            });
            s.last_seen.store(now, Ordering::Relaxed);
            Some(s.clone())
        })
    }

    /// Drop the series that carry a key hash and were last touched before `cutoff`: a key
    /// that stopped calling stops costing memory and scrape size. Returns how many went.
    pub fn evict_idle(&self, cutoff: u64) -> usize {
        if self.def.key_label().is_none() {
            return 0;
        }
        let mut gone = 0;
        for shard in self.shards.iter() {
            let mut w = shard.write();
            let before = w.len();
            w.retain(|_, s| {
                if s.last_seen.load(Ordering::SeqCst) >= cutoff {
                    return true;
                }
                // Flag first, then look again: a recorder that took this series from its
                // thread's memory has stamped it before reading the flag (see `evicted`).
                s.evicted.store(true, Ordering::SeqCst);
                let keep = s.last_seen.load(Ordering::SeqCst) >= cutoff;
                if keep {
                    s.evicted.store(false, Ordering::SeqCst);
                }
                keep
            });
            gone += before - w.len();
        }
        gone
    }

    /// Every series, sorted by label values so scrapes are stable.
    pub fn sorted(&self) -> Vec<Arc<Series<V>>> {
        let mut all: Vec<Arc<Series<V>>> = self
            .shards
            .iter()
            .flat_map(|s| s.read().values().cloned().collect::<Vec<_>>())
            .collect();
        all.sort_by(|a, b| a.values.cmp(&b.values));
        all
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }
}

/// A series' labels for the encoder: the family's names with this series' values, escaped.
pub(crate) struct Labels<'a> {
    pub names: &'static [&'static str],
    pub values: &'a [Box<str>],
}

impl EncodeLabelSet for Labels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        for (name, value) in self.names.iter().zip(self.values.iter()) {
            (*name, Escaped(value)).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

/// A label value escaped as the exposition format requires. The crate's text encoder writes
/// values verbatim, and values here come from clients (`user`, model names, user agents): a
/// quote or newline in one would otherwise break the whole scrape.
struct Escaped<'a>(&'a str);

impl prometheus_client::encoding::EncodeLabelValue for Escaped<'_> {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder,
    ) -> Result<(), std::fmt::Error> {
        use std::fmt::Write as _;
        let mut rest = self.0;
        while let Some(i) = rest.find(['\\', '"', '\n', '\r']) {
            let (plain, tail) = rest.split_at(i);
            encoder.write_str(plain)?;
            let mut chars = tail.chars();
            match chars.next() {
                Some('\\') => encoder.write_str("\\\\")?,
                Some('"') => encoder.write_str("\\\"")?,
                Some('\n') => encoder.write_str("\\n")?,
                // LiteLLM drops carriage returns from label values.
                _ => {}
            }
            rest = chars.as_str();
        }
        encoder.write_str(rest)
    }
}

/// A count, encoded as a float as LiteLLM's client prints it (`1.0`).
#[derive(Default)]
pub(crate) struct Count(AtomicU64);

impl Count {
    /// Saturates: a wrapped counter would read as a reset to Prometheus and lose the series'
    /// history, and usage near the ceilings adds up to `u64::MAX` in a few thousand calls.
    pub fn add(&self, n: u64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_add(n))
            });
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl EncodeMetric for Count {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, f64, f64>(&(self.get() as f64), None)
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// Money summed exactly in integer nano-dollars, exposed in USD.
#[derive(Default)]
pub(crate) struct Usd(Count);

impl Usd {
    pub fn add_nanos(&self, n: u64) {
        self.0.add(n);
    }
}

impl EncodeMetric for Usd {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let usd = self.0.get() as f64 / 1e9;
        encoder.encode_counter::<NoLabelSet, f64, f64>(&usd, None)
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// A float gauge (bits in an atomic).
#[derive(Default)]
pub(crate) struct Level(AtomicU64);

impl Level {
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

impl EncodeMetric for Level {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&self.get())
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

/// A histogram over fixed buckets, counted per bucket (the encoder makes them cumulative)
/// with an exact integer sum in nanoseconds.
pub(crate) struct Histogram {
    bounds: &'static [f64],
    /// Per bucket; the last one is `+Inf`.
    counts: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn with_buckets(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe_secs(&self, secs: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(self.bounds.len());
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = (secs.max(0.0) * 1e9) as u64;
        let _ = self
            .sum_nanos
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_add(nanos))
            });
    }
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = self
            .counts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                // The crate writes `+Inf` for `f64::MAX`.
                let bound = self.bounds.get(i).copied().unwrap_or(f64::MAX);
                (bound, c.load(Ordering::Relaxed))
            })
            .collect();
        let count = buckets.iter().map(|(_, c)| c).sum();
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Over LiteLLM's latency buckets.
impl Default for Histogram {
    fn default() -> Self {
        Self::with_buckets(super::labels::LATENCY_BUCKETS)
    }
}

/// Histograms over the Python client's default buckets.
pub(crate) struct PerToken(pub Histogram);

impl Default for PerToken {
    fn default() -> Self {
        Self(Histogram::with_buckets(super::labels::DEFAULT_BUCKETS))
    }
}

impl EncodeMetric for PerToken {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::labels::{KEY_MAX_BUDGET, REMAINING_KEY_BUDGET};

    #[test]
    fn label_sets_that_join_alike_are_different_series() {
        let f: Family<Count> = Family::new(&REMAINING_KEY_BUDGET);
        f.get(&["a:1", ""], 0).unwrap().value.add(1);
        f.get(&["a", "1:"], 0).unwrap().value.add(5);
        f.get(&["a", "1:"], 0).unwrap().value.add(1);
        let counts: Vec<(Vec<String>, u64)> = f
            .sorted()
            .iter()
            .map(|s| {
                (
                    s.values.iter().map(|v| v.to_string()).collect(),
                    s.value.get(),
                )
            })
            .collect();
        assert_eq!(
            counts,
            vec![
                (vec!["a".to_string(), "1:".to_string()], 6),
                (vec!["a:1".to_string(), String::new()], 1)
            ]
        );
    }

    #[test]
    fn a_wrong_number_of_values_finds_no_series() {
        let f: Family<Count> = Family::new(&KEY_MAX_BUDGET);
        assert!(f.get(&["only-one"], 0).is_none());
        assert_eq!(f.len(), 0);
    }

    #[test]
    fn only_series_idle_since_the_cutoff_are_evicted() {
        let f: Family<Count> = Family::new(&REMAINING_KEY_BUDGET);
        f.get(&["old", "a"], 10).unwrap().value.add(1);
        f.get(&["fresh", "b"], 10).unwrap().value.add(1);
        // Touched again later: stays.
        f.get(&["fresh", "b"], 100).unwrap().value.add(1);
        assert_eq!(f.evict_idle(50), 1);
        let left: Vec<String> = f.sorted().iter().map(|s| s.values[0].to_string()).collect();
        assert_eq!(left, vec!["fresh".to_string()]);
        assert_eq!(f.evict_idle(50), 0);
    }

    fn counts_of(f: &Family<Count>) -> Vec<(String, u64)> {
        f.sorted()
            .iter()
            .map(|s| (s.values[0].to_string(), s.value.get()))
            .collect()
    }

    #[test]
    fn a_remembered_series_that_was_evicted_is_not_recorded_to() {
        let f: Family<Count> = Family::new(&REMAINING_KEY_BUDGET);
        // This thread now remembers the series ...
        f.get(&["k", "a"], 10).unwrap().value.add(1);
        // ... which goes idle and is swept.
        assert_eq!(f.evict_idle(50), 1);
        assert!(counts_of(&f).is_empty());
        // The next call with the same labels must land in the map, not in the dropped series.
        f.get(&["k", "a"], 60).unwrap().value.add(2);
        assert_eq!(counts_of(&f), vec![("k".to_string(), 2)]);
        f.get(&["k", "a"], 61).unwrap().value.add(3);
        assert_eq!(counts_of(&f), vec![("k".to_string(), 5)]);
    }

    #[test]
    fn remembered_series_follow_the_labels_and_the_family() {
        let f: Family<Count> = Family::new(&REMAINING_KEY_BUDGET);
        let g: Family<Count> = Family::new(&REMAINING_KEY_BUDGET);
        for (k, n) in [("a", 1), ("b", 10), ("a", 100), ("a", 1000)] {
            f.get(&[k, "x"], 1).unwrap().value.add(n);
        }
        g.get(&["a", "x"], 1).unwrap().value.add(7);
        assert_eq!(
            counts_of(&f),
            vec![("a".to_string(), 1101), ("b".to_string(), 10)]
        );
        assert_eq!(counts_of(&g), vec![("a".to_string(), 7)]);
        // Another thread records into the same series through the map.
        std::thread::scope(|s| {
            s.spawn(|| f.get(&["a", "x"], 2).unwrap().value.add(5));
        });
        assert_eq!(counts_of(&f)[0], ("a".to_string(), 1106));
    }

    #[test]
    fn more_families_than_a_thread_remembers_still_count_exactly() {
        let families: Vec<Family<Count>> = (0..MAX_REMEMBERED + 6)
            .map(|_| Family::new(&REMAINING_KEY_BUDGET))
            .collect();
        for round in 0..3 {
            for f in &families {
                f.get(&["k", "a"], round).unwrap().value.add(1);
            }
        }
        for f in &families {
            assert_eq!(counts_of(f), vec![("k".to_string(), 3)]);
        }
    }

    #[test]
    fn histogram_sum_is_exact_to_the_nanosecond() {
        let h = Histogram::default();
        h.observe_secs(0.003);
        h.observe_secs(0.07);
        h.observe_secs(400.0);
        assert_eq!(h.sum_nanos.load(Ordering::Relaxed), 400_073_000_000);
        let counts: Vec<u64> = h.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        assert_eq!(counts.iter().sum::<u64>(), 3);
        // 0.003 in the first bucket (0.005), 400 s in the 420 s one.
        assert_eq!(counts[0], 1);
        assert_eq!(counts[15], 1);
    }
}
