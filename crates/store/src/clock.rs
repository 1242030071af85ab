//! Wall-clock time for the store's dated decisions (key expiry, grace periods, budget windows),
//! behind a seam so that tests move time instead of sleeping through it.

use std::fmt::Debug;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

pub trait Clock: Send + Sync + Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that starts at the system's time and moves only when a test moves it, so a key's
/// expiry or a budget window's end falls exactly where the test puts it, however slow the
/// machine. Background ticks still run; they see this clock's time.
#[derive(Debug)]
pub struct ManualClock {
    now_ms: AtomicI64,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self {
            now_ms: AtomicI64::new(Utc::now().timestamp_millis()),
        }
    }
}

impl ManualClock {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.now_ms.load(Ordering::SeqCst)).unwrap_or_default()
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
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(c.now(), start);
        c.advance(Duration::from_millis(1500));
        assert_eq!(c.now() - start, chrono::Duration::milliseconds(1500));
    }
}
