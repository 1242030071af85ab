//! Wall-clock time for dated decisions (key expiry, grace periods, budget windows, router
//! cooldowns and per-minute rpm/tpm buckets), behind one seam that the store and the router
//! share, so that a test moves one clock instead of sleeping through real time.
//!
//! Wall-clock, not monotonic: expiry dates are stored, and per-minute buckets must line up
//! across the instances of a fleet.

use std::fmt::Debug;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

pub trait Clock: Send + Sync + Debug + 'static {
    fn now(&self) -> DateTime<Utc>;

    /// Milliseconds since the Unix epoch (0 before it).
    fn now_ms(&self) -> u64 {
        u64::try_from(self.now().timestamp_millis()).unwrap_or(0)
    }
}

/// The system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when a test moves it, so a key's expiry, a budget window's end, a
/// cooldown's end or a minute boundary falls exactly where the test puts it, however slow the
/// machine. Background ticks still run; they see this clock's time.
#[derive(Debug)]
pub struct ManualClock {
    now_ms: AtomicI64,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::at_ms(Utc::now().timestamp_millis().max(0).unsigned_abs())
    }
}

impl ManualClock {
    /// Starting at the system's time.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starting at `ms` since the Unix epoch.
    pub fn at_ms(ms: u64) -> Self {
        Self {
            now_ms: AtomicI64::new(i64::try_from(ms).unwrap_or(i64::MAX)),
        }
    }

    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
    }

    pub fn set_ms(&self, ms: u64) {
        self.now_ms
            .store(i64::try_from(ms).unwrap_or(i64::MAX), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.now_ms.load(Ordering::SeqCst)).unwrap_or_default()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.now_ms.load(Ordering::SeqCst)).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let c = ManualClock::new();
        let start = c.now();
        assert!((Utc::now() - start).num_seconds().abs() < 60);
        // Real time passes (the point of this sleep), and this clock does not move.
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(c.now(), start);
        c.advance(Duration::from_millis(1500));
        assert_eq!(c.now() - start, chrono::Duration::milliseconds(1500));
        assert_eq!(
            c.now_ms(),
            u64::try_from(start.timestamp_millis()).unwrap_or(0) + 1500
        );
    }

    #[test]
    fn both_readings_agree() {
        let c = ManualClock::at_ms(1_700_000_040_123);
        assert_eq!(c.now_ms(), 1_700_000_040_123);
        assert_eq!(c.now().timestamp_millis(), 1_700_000_040_123);
        c.set_ms(60_000);
        assert_eq!(c.now_ms(), 60_000);
        assert_eq!(c.now().timestamp(), 60);
    }
}
