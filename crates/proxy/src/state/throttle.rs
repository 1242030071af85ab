//! Failed sign-ins and wrong keys per client address (the checks that count and refuse them
//! are `http/guard.rs`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Failed attempts an address may make per window before it is refused.
const MAX_FAILURES: u32 = 10;
const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most; past it, finished windows are forgotten first.
const MAX_TRACKED: usize = 16_384;

/// Failed sign-ins and wrong keys per client address, in fixed windows.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl Throttle {
    /// Seconds until `ip` may try again, if it is refused now.
    pub fn retry_after(&self, ip: IpAddr) -> Option<u64> {
        let now = Instant::now();
        let map = self.failures.lock();
        let (start, n) = map.get(&ip)?;
        let ends = *start + WINDOW;
        (*n >= MAX_FAILURES && ends > now).then(|| (ends - now).as_secs().max(1))
    }

    pub fn failed(&self, ip: IpAddr) {
        let now = Instant::now();
        let mut map = self.failures.lock();
        if map.len() >= MAX_TRACKED && !map.contains_key(&ip) {
            map.retain(|_, (start, _)| *start + WINDOW > now);
            if map.len() >= MAX_TRACKED {
                // Spread over that many addresses, counting is no longer useful per address.
                map.clear();
            }
        }
        let entry = map.entry(ip).or_insert((now, 0));
        if entry.0 + WINDOW <= now {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_refused_after_its_failures_until_the_window_ends() {
        let t = Throttle::default();
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        for _ in 0..MAX_FAILURES - 1 {
            t.failed(a);
        }
        assert_eq!(t.retry_after(a), None);
        t.failed(a);
        let after = t.retry_after(a);
        assert!(after.is_some_and(|s| (1..=60).contains(&s)), "{after:?}");
        assert_eq!(t.retry_after(b), None);
        // A window that has ended starts again from zero.
        if let (Some(e), Some(past)) = (
            t.failures.lock().get_mut(&a),
            Instant::now().checked_sub(WINDOW),
        ) {
            e.0 = past;
        }
        assert_eq!(t.retry_after(a), None);
        t.failed(a);
        assert_eq!(t.failures.lock().get(&a).map(|e| e.1), Some(1));
    }
}
