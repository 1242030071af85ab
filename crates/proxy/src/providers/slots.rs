//! A deployment's `max_parallel_requests` (LiteLLM's per-deployment concurrency limit): an
//! attempt holds one of its slots while the upstream works on it (a stream until it ends); an
//! attempt that finds every slot taken fails at once with LiteLLM's 429, without reaching the
//! upstream, and the call is retried or falls back like any failed attempt. The limit is
//! LiteLLM's: `max_parallel_requests`, else the deployment's `rpm`, else its `tpm` / 1000 * 6,
//! else `router_settings.default_max_parallel_requests`.
//!
//! A deployment's count of calls in flight outlives the router that made it: a router built
//! after a model or price change, and a wildcard model expanded again, take the count their
//! predecessor kept for the same deployment id ([`SlotRegistry`]), so the calls still running
//! on the old one go on counting against the limit, whatever the limit is now.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::ProxyError;

/// The words LiteLLM starts its refusal with (also how attempts tell it from an upstream 429).
pub const SLOTS_FULL: &str = "Deployment has all max_parallel_requests slots in use.";

pub struct ParallelSlots {
    max: u32,
    /// Shared with the deployment's slots in earlier and later routers.
    in_flight: Arc<AtomicU32>,
    model_id: String,
    model_group: String,
}

impl std::fmt::Debug for ParallelSlots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParallelSlots")
            .field("max", &self.max)
            .field("in_flight", &self.in_flight.load(Ordering::Relaxed))
            .finish()
    }
}

/// LiteLLM's `calculate_max_parallel_requests`: `max_parallel_requests` > `rpm` > `tpm` (Azure's
/// 6 requests a minute per 1000 tokens, at least 1) > the router's default.
pub fn limit_of(
    max_parallel_requests: Option<u32>,
    rpm: Option<u64>,
    tpm: Option<u64>,
    default: Option<u32>,
) -> Option<u32> {
    let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    match (max_parallel_requests, rpm, tpm) {
        (Some(n), _, _) => Some(n),
        (None, Some(r), _) => Some(clamp(r)),
        (None, None, Some(t)) => Some(clamp((t / 1000 * 6).max(1))),
        (None, None, None) => default,
    }
    // LiteLLM treats 0 as no limit (`if calculated_max_parallel_requests:`).
    .filter(|n| *n > 0)
}

impl ParallelSlots {
    pub fn new(max: u32, model_id: &str, model_group: &str) -> ParallelSlots {
        ParallelSlots {
            max,
            in_flight: Arc::new(AtomicU32::new(0)),
            model_id: model_id.to_string(),
            model_group: model_group.to_string(),
        }
    }

    pub fn max(&self) -> u32 {
        self.max
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// A slot, or LiteLLM's 429 when all are taken.
    pub fn acquire(self: &Arc<Self>) -> Result<SlotGuard, ProxyError> {
        let taken = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            });
        match taken {
            Ok(_) => Ok(SlotGuard(self.clone())),
            Err(_) => Err(ProxyError::Upstream {
                status: 429,
                message: format!(
                    "litellm.RateLimitError: {SLOTS_FULL} Deployment model_group={}, id={} already has max_parallel_requests={} requests in flight. Raise max_parallel_requests (or the rpm/tpm it is derived from) for this deployment",
                    self.model_group, self.model_id, self.max
                ),
                kind: None,
                retry_after: None,
            }),
        }
    }
}

/// The counts of calls in flight of every deployment with a limit, by deployment id, handed
/// from each router to the next.
#[derive(Debug, Default)]
pub struct SlotRegistry(parking_lot::Mutex<HashMap<String, Arc<AtomicU32>>>);

impl SlotRegistry {
    /// `fresh` (a newly built deployment's slots) counting on its id's count so far.
    pub fn adopt(&self, fresh: Option<Arc<ParallelSlots>>) -> Option<Arc<ParallelSlots>> {
        let fresh = fresh?;
        let count = self
            .0
            .lock()
            .entry(fresh.model_id.clone())
            .or_insert_with(|| fresh.in_flight.clone())
            .clone();
        Some(Arc::new(ParallelSlots {
            max: fresh.max,
            in_flight: count,
            model_id: fresh.model_id.clone(),
            model_group: fresh.model_group.clone(),
        }))
    }

    /// Forgets the counts of deployments no longer served (`live` are) that have nothing in
    /// flight; a busy one is kept until its calls end and a later rebuild finds it idle.
    pub fn retain(&self, live: &HashSet<&str>) {
        self.0
            .lock()
            .retain(|id, n| live.contains(id.as_str()) || n.load(Ordering::Acquire) > 0);
    }
}

/// One slot, given back when dropped.
#[derive(Debug)]
pub struct SlotGuard(Arc<ParallelSlots>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_litellms() {
        assert_eq!(limit_of(Some(3), Some(100), Some(1), Some(9)), Some(3));
        assert_eq!(
            limit_of(None, Some(100), Some(1_000_000), Some(9)),
            Some(100)
        );
        assert_eq!(limit_of(None, None, Some(10_000), Some(9)), Some(60));
        assert_eq!(limit_of(None, None, Some(10), None), Some(1));
        assert_eq!(limit_of(None, None, None, Some(9)), Some(9));
        assert_eq!(limit_of(None, None, None, None), None);
        assert_eq!(limit_of(Some(0), None, None, Some(9)), None);
    }

    #[test]
    fn slots_are_held_until_dropped_and_the_refusal_is_litellms() {
        let s = Arc::new(ParallelSlots::new(2, "d1", "g"));
        let a = s.acquire().unwrap();
        let _b = s.acquire().unwrap();
        let e = s.acquire().unwrap_err();
        assert_eq!(e.status(), 429);
        let text = e.to_string();
        assert!(
            text.contains(SLOTS_FULL)
                && text.contains("model_group=g, id=d1")
                && text.contains("max_parallel_requests=2"),
            "{text}"
        );
        drop(a);
        assert_eq!(s.in_flight(), 1);
        assert!(s.acquire().is_ok());
        assert_eq!(s.in_flight(), 1, "the guard above was dropped at once");
    }

    #[test]
    fn a_rebuilt_deployment_counts_the_calls_its_predecessor_has_in_flight() {
        let registry = SlotRegistry::default();
        let old = registry
            .adopt(Some(Arc::new(ParallelSlots::new(2, "d1", "g"))))
            .unwrap();
        let held = old.acquire().unwrap();
        // Rebuilt with a lower limit: the call still running on the old one counts.
        let new = registry
            .adopt(Some(Arc::new(ParallelSlots::new(1, "d1", "g"))))
            .unwrap();
        assert_eq!(new.in_flight(), 1);
        assert!(new.acquire().is_err());
        // Another deployment counts on its own.
        let other = registry
            .adopt(Some(Arc::new(ParallelSlots::new(1, "d2", "g"))))
            .unwrap();
        assert!(other.acquire().is_ok());
        drop(held);
        let again = new.acquire().unwrap();
        // No longer served: a busy deployment's count is kept, an idle one's forgotten.
        registry.retain(&HashSet::new());
        assert_eq!(registry.0.lock().len(), 1);
        drop(again);
        registry.retain(&HashSet::new());
        assert!(registry.0.lock().is_empty());
    }
}
