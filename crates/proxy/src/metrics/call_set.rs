//! The series one finished call counts into, kept per serving thread for the next call.
//!
//! A call touches about ten families (requests, latencies, tokens, spend) under the same
//! labels, and consecutive calls on a thread usually carry the same key, model and client.
//! Each family remembering its own last series (`series::Family::get`) still built, found and
//! compared the label values once per family; here the sixteen values are compared once per
//! call and the series are taken as they are. Under callgrind that saved about 5% of a
//! virtual-key request's instructions (bench/profile.sh).

use std::cell::RefCell;
use std::sync::Arc;

use super::Inner;
use super::series::{Count, Family, Histogram, PerToken, Series, Usd};

/// How many call values a label can take (`super::call_slot`).
pub(super) const SLOTS: usize = 16;

thread_local! {
    static LAST: RefCell<Option<CallSet>> = const { RefCell::new(None) };
}

/// The series of one call's labels; the optional ones are looked up when a call first needs
/// them (latencies only for answered calls, time to first token only for streams).
pub(super) struct CallSet {
    /// Which `Metrics` the series belong to (`Inner::id`).
    owner: u64,
    failed: bool,
    values: [Box<str>; SLOTS],
    pub total: Arc<Series<Count>>,
    /// `requests` for an answered call, `failed_requests` for a failed one.
    pub outcome: Arc<Series<Count>>,
    /// Input, output and total tokens.
    pub tokens: [Arc<Series<Count>>; 3],
    pub spend: Arc<Series<Usd>>,
    latency: Option<[Arc<Series<Histogram>>; 3]>,
    first_token: Option<Arc<Series<Histogram>>>,
    per_token: Option<Arc<Series<PerToken>>>,
}

/// The series of `family` for a call's label values (by slot), touched `now`.
pub(super) fn series_of<V: Default + Send + Sync + 'static>(
    family: &Family<V>,
    values: &[&str; SLOTS],
    now: u64,
) -> Option<Arc<Series<V>>> {
    let mut buf: [&str; 24] = [super::NONE; 24];
    let n = family.slots.len().min(buf.len());
    for (value, slot) in buf.iter_mut().zip(family.slots.iter()) {
        *value = slot
            .and_then(|s| values.get(usize::from(s)).copied())
            .unwrap_or(super::NONE);
    }
    family.get(buf.get(..n)?, now)
}

/// Stamps a series the set may not have looked up yet (see `Series::touch`).
fn touch_if_any<V>(s: &Option<Arc<Series<V>>>, now: u64) -> bool {
    s.as_ref().is_none_or(|s| s.touch(now))
}

impl CallSet {
    /// The series for a call with these label values: this thread's last set when it has
    /// the same owner, outcome and values and no series of it is being dropped, else a set
    /// looked up in the families. None only if a family refuses the values (it cannot with
    /// `SLOTS` values).
    pub fn take(inner: &Inner, failed: bool, values: &[&str; SLOTS], now: u64) -> Option<Self> {
        let kept = LAST
            .with(|last| last.try_borrow_mut().ok().and_then(|mut l| l.take()))
            .filter(|set| {
                set.owner == inner.id
                    && set.failed == failed
                    && set.values.iter().zip(values).all(|(a, b)| **a == **b)
                    && set.touch(now)
            });
        kept.or_else(|| Self::find(inner, failed, values, now))
    }

    /// Keeps this set for the thread's next call.
    pub fn keep(self) {
        LAST.with(|last| {
            if let Ok(mut last) = last.try_borrow_mut() {
                *last = Some(self);
            }
        });
    }

    fn touch(&self, now: u64) -> bool {
        // Every series is stamped, even after one fails, so none of them reads as idle.
        let mut ok = self.total.touch(now) & self.outcome.touch(now) & self.spend.touch(now);
        for s in &self.tokens {
            ok &= s.touch(now);
        }
        for s in self.latency.iter().flatten() {
            ok &= s.touch(now);
        }
        ok & touch_if_any(&self.first_token, now) & touch_if_any(&self.per_token, now)
    }

    fn find(inner: &Inner, failed: bool, values: &[&str; SLOTS], now: u64) -> Option<Self> {
        let outcome = if failed {
            &inner.failed_requests
        } else {
            &inner.requests
        };
        Some(Self {
            owner: inner.id,
            failed,
            values: values.map(Box::from),
            total: series_of(&inner.total_requests, values, now)?,
            outcome: series_of(outcome, values, now)?,
            tokens: [
                series_of(&inner.input_tokens, values, now)?,
                series_of(&inner.output_tokens, values, now)?,
                series_of(&inner.total_tokens, values, now)?,
            ],
            spend: series_of(&inner.spend, values, now)?,
            latency: None,
            first_token: None,
            per_token: None,
        })
    }

    fn values(&self) -> [&str; SLOTS] {
        std::array::from_fn(|i| self.values.get(i).map_or(super::NONE, |v| &**v))
    }

    /// Total, upstream and overhead latency.
    pub fn latency(&mut self, inner: &Inner, now: u64) -> Option<&[Arc<Series<Histogram>>; 3]> {
        if self.latency.is_none() {
            let v = self.values();
            self.latency = Some([
                series_of(&inner.total_latency, &v, now)?,
                series_of(&inner.api_latency, &v, now)?,
                series_of(&inner.overhead, &v, now)?,
            ]);
        }
        self.latency.as_ref()
    }

    pub fn first_token(&mut self, inner: &Inner, now: u64) -> Option<&Arc<Series<Histogram>>> {
        if self.first_token.is_none() {
            self.first_token = series_of(&inner.first_token, &self.values(), now);
        }
        self.first_token.as_ref()
    }

    pub fn per_token(&mut self, inner: &Inner, now: u64) -> Option<&Arc<Series<PerToken>>> {
        if self.per_token.is_none() {
            self.per_token = series_of(&inner.per_token, &self.values(), now);
        }
        self.per_token.as_ref()
    }
}
