//! `stream_timeout` between the chunks of an upstream stream. A `tokio::time::timeout` per
//! chunk put a timer into the runtime's wheel and took it out again for every chunk, the
//! commonest event of a long stream (callgrind: about a twentieth of the gateway's
//! instructions per relayed chunk). Here one timer serves the whole stream: a chunk only notes
//! when it came, and the timer, when it fires, is moved to that time plus the limit unless the
//! limit has really passed. The stream ends, as before, at most `limit` after its last chunk
//! (give or take the timer's millisecond resolution).

use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_util::Stream;
use tokio::time::{Instant, Sleep};

/// Nothing came from the upstream for the stream's `stream_timeout`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Stalled;

pub(crate) struct IdleTimeout<S> {
    inner: S,
    limit: Duration,
    timer: Pin<Box<Sleep>>,
    last: Instant,
    /// The waker the pending timer will wake: polling the timer again for the same task only
    /// re-checks what it already knows, so between chunks it is looked at, not polled.
    armed: Option<Waker>,
    stalled: bool,
}

impl<S> IdleTimeout<S> {
    pub(crate) fn new(inner: S, limit: Duration) -> Self {
        let now = Instant::now();
        Self {
            inner,
            limit,
            timer: Box::pin(tokio::time::sleep_until(now + limit)),
            last: now,
            armed: None,
            stalled: false,
        }
    }
}

impl<S: Stream + Unpin> Stream for IdleTimeout<S> {
    /// An item of the inner stream, or [`Stalled`] once (the stream ends after it).
    type Item = Result<S::Item, Stalled>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.stalled {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(item)) => {
                this.last = Instant::now();
                return Poll::Ready(Some(Ok(item)));
            }
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        loop {
            if this.armed.as_ref().is_some_and(|w| w.will_wake(cx.waker()))
                && !this.timer.is_elapsed()
            {
                return Poll::Pending;
            }
            if this.timer.as_mut().poll(cx).is_pending() {
                this.armed = Some(cx.waker().clone());
                return Poll::Pending;
            }
            this.armed = None;
            let due = this.last + this.limit;
            if Instant::now() >= due {
                this.stalled = true;
                return Poll::Ready(Some(Err(Stalled)));
            }
            // Chunks came since the timer was set: wait out the rest from the last one.
            this.timer.as_mut().reset(due);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use futures_util::StreamExt;
    use futures_util::stream::{self, BoxStream};
    use tokio::sync::mpsc;

    use super::*;

    fn channel() -> (
        mpsc::UnboundedSender<u32>,
        IdleTimeout<BoxStream<'static, u32>>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let rx = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
        (tx, IdleTimeout::new(rx.boxed(), Duration::from_secs(10)))
    }

    #[tokio::test(start_paused = true)]
    async fn chunks_closer_than_the_limit_keep_the_stream_going_past_it() {
        let (tx, mut s) = channel();
        let start = Instant::now();
        for i in 0..5 {
            tokio::time::sleep(Duration::from_secs(6)).await;
            tx.send(i).unwrap();
            assert_eq!(s.next().await, Some(Ok(i)));
        }
        // 30 s in, past three times the limit, and nothing stalled.
        assert!(start.elapsed() >= Duration::from_secs(30));
        drop(tx);
        assert_eq!(s.next().await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stall_ends_the_stream_the_limit_after_the_last_chunk() {
        let (tx, mut s) = channel();
        tokio::time::sleep(Duration::from_secs(7)).await;
        tx.send(1).unwrap();
        assert_eq!(s.next().await, Some(Ok(1)));
        let last = Instant::now();
        // The first timer fires at 10 s, is moved to 17 s, and fires there.
        assert_eq!(s.next().await, Some(Err(Stalled)));
        let waited = last.elapsed();
        assert!(
            waited >= Duration::from_secs(10) && waited < Duration::from_millis(10_010),
            "stalled after {waited:?}"
        );
        assert_eq!(s.next().await, None, "the stream ends after the stall");
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_that_never_sends_stalls_at_the_limit() {
        let (_tx, mut s) = channel();
        let start = Instant::now();
        assert_eq!(s.next().await, Some(Err(Stalled)));
        assert_eq!(start.elapsed().as_secs(), 10);
    }
}
