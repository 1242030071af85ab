//! Leases: a slice of a key's budget that one instance of a fleet reserves in Redis ahead of
//! its calls (a holding like a call's estimate, see the batch script's grant), so that most
//! calls of a busy key are admitted here without waiting for Redis. A call is admitted
//! against the lease only while its estimate fits in what the lease has left, so the fleet's
//! reservations never exceed the budget on its account; when it does not fit, the call goes
//! to Redis as before (and a new lease is asked for). Only keys whose sole limit is a budget
//! are leased (rpm, tpm and parallel limits are counted per call in Redis); a key with no
//! limit at all gets an unbounded lease that holds nothing, once Redis has seeded its
//! counters. This is the bookkeeping; the Redis side is in `redis_limiter`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::limiter::KeyLimits;

/// Ticket ids of calls admitted against a lease carry this bit, and the lease's generation.
pub(crate) const LEASED: u64 = 1 << 62;
/// ...and this one when the lease held budget in Redis (so the call gives back its estimate
/// if the lease is gone by the time it ends).
const HELD: u64 = 1 << 61;
const GENERATION: u64 = HELD - 1;

/// A lease asks for this many calls' worth of the estimate (granted only when that is at
/// most an eighth of what the budget has left, so a key is leased only while its budget has
/// room for more than 512 such calls).
pub(crate) const LEASE_CALLS: i64 = 64;

/// A lease with no call for this long is given back.
pub(crate) const LEASE_IDLE: Duration = Duration::from_secs(2);

/// After a grant of nothing (a tight budget), no new one is asked for this long, so that a
/// key near its budget costs Redis one operation per call, not two.
const REFUSED_WAIT: Duration = Duration::from_secs(1);

const UNBOUNDED: i64 = i64::MAX / 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A budget and no other limit: the lease holds part of it in Redis.
    Budget,
    /// No limit at all: nothing to hold.
    Unbounded,
}

/// Whether calls of `key` may be admitted against a lease.
pub(crate) fn kind_of(key: &KeyLimits) -> Option<Kind> {
    if key.rpm_limit.is_some() || key.tpm_limit.is_some() || key.max_parallel_requests.is_some() {
        return None;
    }
    Some(if key.max_budget.is_some() {
        Kind::Budget
    } else {
        Kind::Unbounded
    })
}

struct Lease {
    generation: u64,
    /// The budget it was granted under: a lease is dropped when that changes.
    max_budget: Option<i64>,
    /// Nanos granted and not yet spent.
    capacity: i64,
    kind: Kind,
    /// Estimates of the calls admitted against it that have not ended.
    in_flight: i64,
    /// A grant is on its way.
    asking: bool,
    /// No grant is asked for before this (the last one granted nothing).
    quiet_until: Option<Instant>,
    last_used: Instant,
}

impl Lease {
    /// Whether what it was granted is held in Redis (a budget's lease).
    fn held(&self) -> bool {
        self.kind == Kind::Budget
    }

    /// What it has left for new calls.
    fn free(&self) -> i64 {
        self.capacity - self.in_flight
    }

    /// What goes back to Redis when it is dropped: what it has left beyond its calls in
    /// flight (they give back their own), nothing for an unbounded one.
    fn rest(&self) -> i64 {
        if self.held() { self.free().max(0) } else { 0 }
    }
}

/// This instance's leases, by limiter token.
#[derive(Default)]
pub(crate) struct Leases {
    map: Mutex<HashMap<String, Lease>>,
    next: AtomicU64,
}

impl Leases {
    /// Admits a call with `estimate` nanos against the key's lease: its ticket id, or `None`
    /// when it does not fit (the call goes to Redis).
    pub(crate) fn take(&self, token: &str, estimate: i64) -> Option<u64> {
        let mut map = self.map.lock();
        let l = map.get_mut(token)?;
        if l.capacity <= 0 || l.free() < estimate {
            return None;
        }
        l.in_flight += estimate;
        l.last_used = Instant::now();
        Some(LEASED | if l.held() { HELD } else { 0 } | l.generation)
    }

    /// After Redis admitted a call of a leasable key: an unbounded key gets its lease now; for
    /// a budget, the generation of the lease to ask a grant for, unless one is on its way.
    pub(crate) fn after_admission(&self, key: &KeyLimits, kind: Kind) -> Option<u64> {
        let token = key.token.as_str();
        let mut map = self.map.lock();
        if let Some(l) = map.get_mut(token) {
            if l.asking || !l.held() || l.quiet_until.is_some_and(|t| Instant::now() < t) {
                return None;
            }
            l.asking = true;
            return Some(l.generation);
        }
        let generation = self.next.fetch_add(1, Ordering::Relaxed) & GENERATION;
        let held = kind == Kind::Budget;
        map.insert(
            token.to_owned(),
            Lease {
                generation,
                max_budget: key.max_budget,
                capacity: if held { 0 } else { UNBOUNDED },
                kind,
                in_flight: 0,
                asking: held,
                quiet_until: None,
                last_used: Instant::now(),
            },
        );
        held.then_some(generation)
    }

    /// A grant's answer (`None`: it failed). Returns nanos to give back: all of a grant whose
    /// lease was dropped meanwhile.
    pub(crate) fn granted(&self, token: &str, generation: u64, nanos: Option<i64>) -> i64 {
        let nanos = nanos.unwrap_or(0).max(0);
        let mut map = self.map.lock();
        match map.get_mut(token) {
            Some(l) if l.generation == generation => {
                l.asking = false;
                l.capacity += nanos;
                l.quiet_until = (nanos == 0).then(|| Instant::now() + REFUSED_WAIT);
                0
            }
            _ => nanos,
        }
    }

    /// A call admitted against a lease ends, having spent `actual` (`None`: released, nothing
    /// spent). Returns the nanos it gives back of this instance's holding in Redis: what it
    /// spent while its lease lives (that much of the lease turns into spend), its whole
    /// estimate once the lease is gone (the rest of the lease was given back without it), and
    /// nothing for an unbounded lease.
    pub(crate) fn settled(&self, token: &str, id: u64, estimate: i64, actual: Option<i64>) -> i64 {
        let mut map = self.map.lock();
        match map.get_mut(token) {
            Some(l) if l.generation == id & GENERATION => {
                l.in_flight -= estimate;
                match actual {
                    Some(a) if l.held() => {
                        l.capacity -= a;
                        a
                    }
                    _ => 0,
                }
            }
            _ if id & HELD != 0 => estimate,
            _ => 0,
        }
    }

    /// Drops the key's lease (its limits changed, or it is gone): nanos to give back (see
    /// `Lease::rest`).
    pub(crate) fn drop_lease(&self, token: &str) -> i64 {
        self.map.lock().remove(token).map_or(0, |l| l.rest())
    }

    /// The key's record was read again (`spend_overwritten`: an admin set its spend): its lease
    /// is dropped when its limits changed (see [`Leases::drop_lease`]); a re-read that changed
    /// nothing keeps it.
    pub(crate) fn reconfigured(&self, key: &KeyLimits, spend_overwritten: bool) -> i64 {
        let changed = self.map.lock().get(&key.token).is_some_and(|l| {
            spend_overwritten || l.max_budget != key.max_budget || kind_of(key) != Some(l.kind)
        });
        if changed {
            self.drop_lease(&key.token)
        } else {
            0
        }
    }

    /// Removes the leases unused for [`LEASE_IDLE`] with no call in flight: each held one's
    /// token and the nanos to give back.
    pub(crate) fn idle(&self) -> Vec<(String, i64)> {
        let mut back = Vec::new();
        self.map.lock().retain(|token, l| {
            let keep = l.in_flight > 0 || l.asking || l.last_used.elapsed() < LEASE_IDLE;
            if !keep && l.rest() > 0 {
                back.push((token.clone(), l.rest()));
            }
            keep
        });
        back
    }

    /// Removes every lease (the instance is stopping): each held one's token and the nanos to
    /// give back (calls still in flight give back their own).
    pub(crate) fn drain(&self) -> Vec<(String, i64)> {
        self.map
            .lock()
            .drain()
            .map(|(token, l)| (token, l.rest()))
            .filter(|(_, nanos)| *nanos > 0)
            .collect()
    }

    /// What the key's lease has left for new calls, if it has one.
    pub(crate) fn left(&self, token: &str) -> Option<i64> {
        self.map.lock().get(token).map(Lease::free)
    }

    /// Forgets every lease without giving anything back (Redis restarted: what they held is
    /// gone with its counters).
    pub(crate) fn clear(&self) {
        self.map.lock().clear();
    }
}

pub(crate) fn is_leased(id: u64) -> bool {
    id & LEASED != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(budget: Option<i64>, rpm: Option<u64>) -> KeyLimits {
        KeyLimits {
            token: "t".to_owned(),
            key_alias: None,
            key_name: "t".to_owned(),
            spend: 0,
            max_budget: budget,
            budget_duration: None,
            budget_reset_at: None,
            rpm_limit: rpm,
            tpm_limit: None,
            max_parallel_requests: None,
        }
    }

    /// A lease of `nanos` on key "t" (budget 1000), as a grant gives it.
    fn lease(leases: &Leases, nanos: i64) {
        let g = leases
            .after_admission(&key(Some(1000), None), Kind::Budget)
            .expect("asks");
        assert_eq!(leases.granted("t", g, Some(nanos)), 0);
    }

    #[test]
    fn only_keys_limited_by_budget_alone_or_nothing_are_leased() {
        assert_eq!(kind_of(&key(Some(5), None)), Some(Kind::Budget));
        assert_eq!(kind_of(&key(None, None)), Some(Kind::Unbounded));
        assert_eq!(kind_of(&key(Some(5), Some(10))), None);
        assert_eq!(kind_of(&key(None, Some(10))), None);
    }

    /// Whatever happens to a lease, this instance gives back in Redis exactly what it was
    /// granted less what its calls spent while it lived.
    #[test]
    fn a_lease_gives_back_what_it_was_granted_less_what_was_spent() {
        let leases = Leases::default();
        assert_eq!(
            leases.take("t", 10),
            None,
            "no lease before Redis admitted a call"
        );
        let generation = leases
            .after_admission(&key(Some(1000), None), Kind::Budget)
            .expect("asks");
        assert_eq!(
            leases.after_admission(&key(Some(1000), None), Kind::Budget),
            None,
            "one grant at a time"
        );
        assert_eq!(leases.take("t", 0), None, "nothing granted yet");
        assert_eq!(leases.granted("t", generation, Some(100)), 0);

        let a = leases.take("t", 40).expect("fits");
        let b = leases.take("t", 40).expect("fits");
        assert_eq!(leases.take("t", 40), None, "100 granted, 80 in flight");
        let mut back = leases.settled("t", a, 40, Some(25));
        assert_eq!(
            back, 25,
            "spent while the lease lives: that much turns into spend"
        );
        let c = leases.take("t", 30).expect("75 left, 40 in flight");
        back += leases.settled("t", c, 30, None);
        // The key changed: what is left beyond the call in flight goes back now, the call's
        // estimate when it ends.
        back += leases.drop_lease("t");
        back += leases.settled("t", b, 40, Some(35));
        assert_eq!(
            back, 100,
            "granted 100: 25 spent + 35 spent + the rest given back"
        );
        assert_eq!(leases.take("t", 1), None);
        assert_eq!(
            leases.granted("t", generation, Some(7)),
            7,
            "a late grant goes back"
        );
    }

    #[test]
    fn unbounded_leases_hold_nothing() {
        let leases = Leases::default();
        assert_eq!(
            leases.after_admission(
                &KeyLimits {
                    token: "u".to_owned(),
                    ..key(None, None)
                },
                Kind::Unbounded
            ),
            None
        );
        let id = leases.take("u", 1_000_000).expect("unbounded");
        assert_eq!(leases.settled("u", id, 1_000_000, Some(5)), 0);
        let id = leases.take("u", 3).expect("unbounded");
        assert_eq!(leases.drop_lease("u"), 0);
        assert_eq!(leases.settled("u", id, 3, Some(3)), 0);
    }

    #[test]
    fn a_re_read_drops_the_lease_only_when_the_limits_changed() {
        let leases = Leases::default();
        lease(&leases, 50);
        assert_eq!(leases.reconfigured(&key(Some(1000), None), false), 0);
        assert!(leases.take("t", 10).is_some(), "kept");
        assert_eq!(leases.reconfigured(&key(Some(1000), None), true), 40);
        let g = leases
            .after_admission(&key(Some(1000), None), Kind::Budget)
            .expect("asks again");
        leases.granted("t", g, Some(50));
        assert_eq!(leases.reconfigured(&key(Some(900), None), false), 50);
        let g = leases
            .after_admission(&key(Some(1000), None), Kind::Budget)
            .expect("asks again");
        leases.granted("t", g, Some(50));
        assert_eq!(leases.reconfigured(&key(Some(1000), Some(5)), false), 50);
    }

    #[test]
    fn a_grant_of_nothing_is_not_asked_again_at_once() {
        let leases = Leases::default();
        let k = key(Some(1000), None);
        let g = leases.after_admission(&k, Kind::Budget).expect("asks");
        assert_eq!(leases.granted("t", g, Some(0)), 0);
        assert_eq!(leases.after_admission(&k, Kind::Budget), None);
        leases.map.lock().get_mut("t").expect("lease").quiet_until = Some(Instant::now());
        assert!(
            leases.after_admission(&k, Kind::Budget).is_some(),
            "asks again later"
        );
    }

    #[test]
    fn a_stop_gives_back_every_leases_rest() {
        let leases = Leases::default();
        lease(&leases, 50);
        let id = leases.take("t", 10).expect("fits");
        leases.after_admission(
            &KeyLimits {
                token: "u".to_owned(),
                ..key(None, None)
            },
            Kind::Unbounded,
        );
        assert_eq!(leases.drain(), vec![("t".to_owned(), 40)]);
        assert_eq!(
            leases.settled("t", id, 10, Some(10)),
            10,
            "its call gives back its own"
        );
        assert_eq!(leases.left("u"), None);
    }

    #[test]
    fn idle_leases_go_back_whole() {
        let leases = Leases::default();
        lease(&leases, 50);
        let id = leases.take("t", 10).expect("fits");
        leases.map.lock().get_mut("t").expect("lease").last_used = Instant::now() - LEASE_IDLE * 2;
        assert!(leases.idle().is_empty(), "a call is in flight");
        assert_eq!(leases.settled("t", id, 10, Some(10)), 10);
        leases.map.lock().get_mut("t").expect("lease").last_used = Instant::now() - LEASE_IDLE * 2;
        assert_eq!(leases.idle(), vec![("t".to_owned(), 40)]);
        assert_eq!(leases.take("t", 1), None);
    }
}
