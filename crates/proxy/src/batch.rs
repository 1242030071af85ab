//! A bounded queue drained by a background task in batches: how the log and trace exporters
//! stay off the request path. Pushing never waits; a full queue drops the item and counts it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::mpsc;

type Worker = Pin<Box<dyn Future<Output = ()> + Send>>;

pub(crate) struct BatchQueue<T> {
    tx: mpsc::Sender<T>,
    /// The draining task, spawned by the first push (the gateway may be built outside a
    /// runtime).
    worker: Mutex<Option<Worker>>,
    dropped: Arc<AtomicU64>,
    what: &'static str,
}

impl<T: Send + 'static> BatchQueue<T> {
    /// A queue of at most `capacity` items, sent by `send` in batches of at most `max_batch`
    /// once a batch is full or its oldest item has waited `delay`.
    pub fn new<F, Fut>(
        what: &'static str,
        capacity: usize,
        max_batch: usize,
        delay: Duration,
        send: F,
    ) -> Self
    where
        F: FnMut(Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        Self {
            tx,
            worker: Mutex::new(Some(Box::pin(drain(rx, max_batch.max(1), delay, send)))),
            dropped: Arc::new(AtomicU64::new(0)),
            what,
        }
    }

    /// Queue `item`; never waits. `false` when the queue was full and the item dropped.
    pub fn push(&self, item: T) -> bool {
        if self.worker.lock().is_some()
            && tokio::runtime::Handle::try_current().is_ok()
            && let Some(w) = self.worker.lock().take()
        {
            tokio::spawn(w);
        }
        if self.tx.try_send(item).is_ok() {
            return true;
        }
        let before = self.dropped.fetch_add(1, Ordering::Relaxed);
        // Said once per thousand, not per call: a dead receiver must not flood the log.
        if before.is_multiple_of(1000) {
            tracing::warn!(
                dropped_total = before + 1,
                "{}: the queue is full (receiver down or slow); entries dropped",
                self.what
            );
        }
        false
    }

    /// Items dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn drain<T, F, Fut>(mut rx: mpsc::Receiver<T>, max_batch: usize, delay: Duration, mut send: F)
where
    F: FnMut(Vec<T>) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut batch: Vec<T> = Vec::new();
    let mut oldest: Option<Instant> = None;
    loop {
        let wait = oldest.map_or(Duration::from_secs(3600), |t| {
            delay.saturating_sub(t.elapsed())
        });
        let closed = match tokio::time::timeout(wait, rx.recv()).await {
            Ok(Some(item)) => {
                oldest.get_or_insert_with(Instant::now);
                batch.push(item);
                if batch.len() < max_batch {
                    continue;
                }
                false
            }
            Ok(None) => true,
            Err(_) => false,
        };
        while !batch.is_empty() {
            let take = batch.len().min(max_batch);
            let chunk: Vec<T> = batch.drain(..take).collect();
            send(chunk).await;
        }
        oldest = None;
        if closed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn full_batches_go_at_once_and_a_full_queue_drops() {
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Vec<u32>>();
        let q = BatchQueue::new("test", 4, 2, Duration::from_secs(3600), move |b| {
            let out_tx = out_tx.clone();
            async move {
                let _ = out_tx.send(b);
            }
        });
        assert!(q.push(1));
        assert!(q.push(2));
        // A full batch is sent without waiting for the (hour-long) delay.
        assert_eq!(out_rx.recv().await.unwrap(), vec![1, 2]);
        assert_eq!(q.dropped(), 0);
    }

    #[tokio::test]
    async fn a_stuck_sender_never_blocks_a_push() {
        let (gate_tx, gate_rx) = tokio::sync::watch::channel(false);
        let q = BatchQueue::new(
            "test",
            2,
            1,
            Duration::from_millis(1),
            move |_b: Vec<u32>| {
                let mut gate = gate_rx.clone();
                async move {
                    let _ = gate.wait_for(|open| *open).await;
                }
            },
        );
        let mut accepted = 0;
        for i in 0..50 {
            if q.push(i) {
                accepted += 1;
            }
        }
        // The worker holds at most one batch and the queue two more.
        assert!(accepted <= 4, "{accepted}");
        assert_eq!(q.dropped(), 50 - accepted);
        drop(gate_tx);
    }
}
