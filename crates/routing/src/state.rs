//! Router state that may be shared between gateway instances: cooldowns and per-minute usage.
//! In-flight counts and latency averages stay local to each instance (see `router.rs`).
//!
//! The trait is synchronous on purpose: it sits on the pick path. A fleet-wide implementation
//! is expected to answer from local atomics and reconcile with Redis in the background, the way
//! LiteLLM's dual cache does.

use std::sync::atomic::{AtomicU64, Ordering};

/// Which deployment a call is about: `slot` is its index in the router's deployment list (dense,
/// for array-backed stores), `id` its stable id (for keyed stores such as Redis).
#[derive(Clone, Copy, Debug)]
pub struct DeploymentKey<'a> {
    pub slot: usize,
    pub id: &'a str,
}

/// Successes and failures recorded in one minute bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MinuteOutcomes {
    pub successes: u64,
    pub failures: u64,
}

impl MinuteOutcomes {
    pub fn total(&self) -> u64 {
        self.successes.saturating_add(self.failures)
    }
}

/// Minutes are whole minutes since the Unix epoch; times are Unix milliseconds.
pub trait RouterState: Send + Sync + 'static {
    /// End of the deployment's cooldown (0 when it never cooled down).
    fn cooldown_until_ms(&self, d: DeploymentKey<'_>) -> u64;
    /// Extend the cooldown to at least `until_ms`.
    fn extend_cooldown(&self, d: DeploymentKey<'_>, until_ms: u64);
    /// Requests started this minute.
    fn rpm_used(&self, d: DeploymentKey<'_>, minute: u64) -> u64;
    /// Tokens consumed this minute.
    fn tpm_used(&self, d: DeploymentKey<'_>, minute: u64) -> u64;
    /// Count one request this minute unless that would exceed `limit`; false when full.
    fn try_acquire_request(&self, d: DeploymentKey<'_>, minute: u64, limit: Option<u64>) -> bool;
    fn add_tokens(&self, d: DeploymentKey<'_>, minute: u64, tokens: u64);
    /// Record one outcome and return this minute's totals including it.
    fn record_outcome(&self, d: DeploymentKey<'_>, minute: u64, success: bool) -> MinuteOutcomes;
    fn outcomes(&self, d: DeploymentKey<'_>, minute: u64) -> MinuteOutcomes;
}

/// A counter that resets itself when the minute changes: minute (low 24 bits) in the top 24
/// bits, count in the low 40, so reading and bumping is one CAS with no lock and no reset race.
#[derive(Debug, Default)]
pub(crate) struct MinuteCounter(AtomicU64);

const COUNT_BITS: u32 = 40;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
const MINUTE_MASK: u64 = (1 << (64 - COUNT_BITS)) - 1;

impl MinuteCounter {
    fn tag(minute: u64) -> u64 {
        (minute & MINUTE_MASK) << COUNT_BITS
    }

    pub(crate) fn get(&self, minute: u64) -> u64 {
        let v = self.0.load(Ordering::Acquire);
        if v & !COUNT_MASK == Self::tag(minute) {
            v & COUNT_MASK
        } else {
            0
        }
    }

    /// Add `n` unless the result would exceed `limit`; returns the new count on success.
    pub(crate) fn add_within(&self, minute: u64, n: u64, limit: Option<u64>) -> Option<u64> {
        let tag = Self::tag(minute);
        let mut cur = self.0.load(Ordering::Acquire);
        loop {
            let count = if cur & !COUNT_MASK == tag {
                cur & COUNT_MASK
            } else {
                0
            };
            let next = count.saturating_add(n).min(COUNT_MASK);
            if limit.is_some_and(|l| next > l) {
                return None;
            }
            match self
                .0
                .compare_exchange_weak(cur, tag | next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(next),
                Err(actual) => cur = actual,
            }
        }
    }

    pub(crate) fn add(&self, minute: u64, n: u64) -> u64 {
        self.add_within(minute, n, None).unwrap_or(COUNT_MASK)
    }
}

/// Cache-line aligned so neighbouring deployments' counters do not contend.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Slot {
    cooldown_until: AtomicU64,
    requests: MinuteCounter,
    tokens: MinuteCounter,
    successes: MinuteCounter,
    failures: MinuteCounter,
}

/// Process-local state: one cache-friendly slot of atomics per deployment.
#[derive(Debug)]
pub struct InMemoryState {
    slots: Box<[Slot]>,
}

impl InMemoryState {
    pub fn new(deployments: usize) -> InMemoryState {
        InMemoryState {
            slots: (0..deployments).map(|_| Slot::default()).collect(),
        }
    }

    fn slot(&self, d: DeploymentKey<'_>) -> Option<&Slot> {
        self.slots.get(d.slot)
    }
}

impl RouterState for InMemoryState {
    fn cooldown_until_ms(&self, d: DeploymentKey<'_>) -> u64 {
        self.slot(d)
            .map_or(0, |s| s.cooldown_until.load(Ordering::Acquire))
    }

    fn extend_cooldown(&self, d: DeploymentKey<'_>, until_ms: u64) {
        if let Some(s) = self.slot(d) {
            s.cooldown_until.fetch_max(until_ms, Ordering::AcqRel);
        }
    }

    fn rpm_used(&self, d: DeploymentKey<'_>, minute: u64) -> u64 {
        self.slot(d).map_or(0, |s| s.requests.get(minute))
    }

    fn tpm_used(&self, d: DeploymentKey<'_>, minute: u64) -> u64 {
        self.slot(d).map_or(0, |s| s.tokens.get(minute))
    }

    fn try_acquire_request(&self, d: DeploymentKey<'_>, minute: u64, limit: Option<u64>) -> bool {
        self.slot(d)
            .is_some_and(|s| s.requests.add_within(minute, 1, limit).is_some())
    }

    fn add_tokens(&self, d: DeploymentKey<'_>, minute: u64, tokens: u64) {
        if let Some(s) = self.slot(d) {
            s.tokens.add(minute, tokens);
        }
    }

    fn record_outcome(&self, d: DeploymentKey<'_>, minute: u64, success: bool) -> MinuteOutcomes {
        let Some(s) = self.slot(d) else {
            return MinuteOutcomes::default();
        };
        if success {
            MinuteOutcomes {
                successes: s.successes.add(minute, 1),
                failures: s.failures.get(minute),
            }
        } else {
            MinuteOutcomes {
                successes: s.successes.get(minute),
                failures: s.failures.add(minute, 1),
            }
        }
    }

    fn outcomes(&self, d: DeploymentKey<'_>, minute: u64) -> MinuteOutcomes {
        self.slot(d)
            .map_or_else(MinuteOutcomes::default, |s| MinuteOutcomes {
                successes: s.successes.get(minute),
                failures: s.failures.get(minute),
            })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn minute_counter_resets_when_the_minute_changes() {
        let c = MinuteCounter::default();
        assert_eq!(c.add(100, 3), 3);
        assert_eq!(c.add(100, 2), 5);
        assert_eq!(c.get(100), 5);
        assert_eq!(c.get(101), 0);
        assert_eq!(c.add(101, 1), 1);
        assert_eq!(c.get(100), 0);
    }

    #[test]
    fn minute_counter_refuses_past_the_limit() {
        let c = MinuteCounter::default();
        assert_eq!(c.add_within(7, 1, Some(2)), Some(1));
        assert_eq!(c.add_within(7, 1, Some(2)), Some(2));
        assert_eq!(c.add_within(7, 1, Some(2)), None);
        assert_eq!(c.get(7), 2);
        assert_eq!(c.add_within(8, 1, Some(2)), Some(1));
    }

    #[test]
    fn unknown_slots_read_as_empty_instead_of_panicking() {
        let s = InMemoryState::new(1);
        let k = DeploymentKey { slot: 5, id: "x" };
        assert_eq!(s.cooldown_until_ms(k), 0);
        assert!(!s.try_acquire_request(k, 1, None));
        s.extend_cooldown(k, 10);
        assert_eq!(s.record_outcome(k, 1, false), MinuteOutcomes::default());
    }

    #[test]
    fn cooldowns_only_extend() {
        let s = InMemoryState::new(1);
        let k = DeploymentKey { slot: 0, id: "a" };
        s.extend_cooldown(k, 500);
        s.extend_cooldown(k, 300);
        assert_eq!(s.cooldown_until_ms(k), 500);
    }
}
