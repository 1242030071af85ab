//! The keep-alive bound of a client connection (`keepalive_timeout`): from the connection's
//! start, or its last answer's end, to the next complete request head. Idle and half-open
//! connections are closed after it.
//!
//! hyper's own `header_read_timeout` arms a fresh timer for every request head, and tokio's
//! timer wheel wakes the runtime's driver through its eventfd whenever a new timer is due
//! before every other one, even when the timer is set on the runtime's own thread: on a
//! kept-alive connection that was one `write` system call and one more `epoll_wait` turn per
//! request (`strace -c`, bench/). Here one timer per connection does it, moved only when it
//! fires: to the idle start plus the bound while no request is in flight, a whole bound
//! ahead while one is.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// What a connection is doing, for its keep-alive bound and for a graceful stop.
pub(crate) struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    /// Nanoseconds from `start` to the end of the last answer, while none is in flight.
    idle_since: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Activity {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
        })
    }

    /// Requests whose answer has not been sent in full yet.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    fn idle_since(&self) -> Instant {
        self.start + Duration::from_nanos(self.idle_since.load(Ordering::Relaxed))
    }
}

/// A request counted in its connection's [`Activity`] until dropped (its answer sent, or the
/// connection gone).
pub(crate) struct InFlight(Arc<Activity>);

impl InFlight {
    pub(crate) fn enter(conn: &Arc<Activity>) -> Self {
        conn.in_flight.fetch_add(1, Ordering::Relaxed);
        crate::diagnostics::count_in_flight(1);
        InFlight(conn.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let conn = &self.0;
        if conn.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            let idle = u64::try_from(conn.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
            conn.idle_since.store(idle, Ordering::Relaxed);
        }
        crate::diagnostics::count_in_flight(-1);
    }
}

/// Resolves once `conn` has had no request in flight for `bound`.
pub(crate) async fn idle_for(conn: &Activity, bound: Duration) {
    let sleep = tokio::time::sleep(bound);
    tokio::pin!(sleep);
    loop {
        sleep.as_mut().await;
        let now = Instant::now();
        let next = if conn.in_flight() > 0 {
            now + bound
        } else {
            let due = conn.idle_since() + bound;
            if due <= now {
                return;
            }
            due
        };
        sleep.as_mut().reset(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_only_once_its_last_answer_is_a_bound_old() {
        let bound = Duration::from_secs(5);
        let conn = Activity::new();
        let start = Instant::now();
        // Nothing ever asked: idle from the start.
        idle_for(&conn, bound).await;
        assert_eq!(start.elapsed(), bound);

        // A request in flight across the first expiry, finished at 7 s: idle until 12 s.
        let conn = Activity::new();
        let start = Instant::now();
        let call = InFlight::enter(&conn);
        let watch = tokio::spawn({
            let conn = conn.clone();
            async move { idle_for(&conn, bound).await }
        });
        tokio::time::sleep(Duration::from_secs(7)).await;
        assert_eq!(conn.in_flight(), 1);
        drop(call);
        assert_eq!(conn.in_flight(), 0);
        watch.await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(12));

        // Two requests at once: idle from when the second of them ends.
        let conn = Activity::new();
        let start = Instant::now();
        let (a, b) = (InFlight::enter(&conn), InFlight::enter(&conn));
        let watch = tokio::spawn({
            let conn = conn.clone();
            async move { idle_for(&conn, bound).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(a);
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(b);
        watch.await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(8));
    }
}
