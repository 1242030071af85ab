//! The spend-log writer: rows (and the key spend they add) go into a channel and a background
//! task group-commits them every `flush_interval` or when a batch is full, in one transaction.
//!
//! Durability: a graceful stop ([`SpendWriter::shutdown`], which the proxy calls on SIGTERM and
//! SIGINT) commits everything queued. A `kill -9` loses what was queued since the last commit:
//! at most one flush window (`flush_interval`, plus the time a commit takes). A commit that
//! returned is durable against a process crash (SQLite WAL, Postgres commit).
//!
//! Backpressure: the channel is large (`channel_capacity`, default 100 000 rows). While it has
//! room, logging never waits. When it is full (the database has been down or slow for a long
//! while), [`SpendWriter::log`] waits for room rather than dropping spend: losing money records
//! silently is worse than slowing the requests that produce them. If a commit fails the batch is
//! kept and retried; while a large backlog cannot be committed the writer stops taking new rows,
//! so memory stays bounded by the channel plus that backlog. A flush, asked on a channel of
//! its own, is still answered then (with why the rows wait); a stop takes every row again,
//! those of senders still waiting for room included. A row the database refuses (a
//! constraint, a value too big) is committed apart from the others, logged as an error and kept
//! for another try with a growing pause (1 s up to 1 min).
//!
//! A stop that still cannot commit (a full disk, a database gone) spills what it holds to a
//! file next to the SQLite database (`<db>.spill.jsonl`, mode 0600, one JSON object a line);
//! the next start replays it before anything else and removes it once committed. A replayed
//! row that is already stored (its commit went through but its answer was lost) is recognised
//! by its `request_id` and not counted twice. While commits fail, [`SpendWriter::problem`]
//! says why (`/health/readiness` answers 503 with it).

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::db::Store;
use crate::error::StoreError;
use crate::spend::SpendLogRow;
use crate::spend_db::BatchItem;

#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Group-commit period: LiteLLM's `proxy_batch_write_at`. Also the kill -9 loss window.
    pub flush_interval: Duration,
    /// Commit early once this many items wait.
    pub max_batch: usize,
    pub channel_capacity: usize,
    /// `false` under LiteLLM's `disable_spend_logs`: keys' spend and the daily rollups still
    /// grow, but no spend-log row is stored.
    pub store_rows: bool,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            flush_interval: Duration::from_secs(1),
            // Large: rows keyed by provider response ids land on random index pages, and each
            // commit writes every page it touched once, so fewer, larger commits write less.
            max_batch: 10_000,
            channel_capacity: 100_000,
            store_rows: true,
        }
    }
}

enum Msg {
    Item(BatchItem),
    Sweep {
        now: DateTime<Utc>,
        skip: HashSet<String>,
    },
    /// Behind the rows: senders waiting for room when the stop was asked get theirs in first
    /// (the channel serves waiting senders in order).
    Shutdown(oneshot::Sender<Result<(), String>>),
}

/// Asked on a channel of its own: a writer that takes no rows (a backlog it cannot commit
/// fills the row channel) still answers it, so a flush never waits behind rows.
enum Ctl {
    Flush(oneshot::Sender<Result<(), String>>),
}

/// Handle to the writer task; clones share it.
#[derive(Clone)]
pub struct SpendWriter {
    tx: mpsc::Sender<Msg>,
    ctl: mpsc::UnboundedSender<Ctl>,
    /// Rings the writer early: a batch is full, or a sweep or shutdown waits.
    wake: Arc<Notify>,
    /// Set by [`SpendWriter::shutdown`]: the writer takes rows again even while a backlog
    /// it cannot commit would otherwise keep it from doing so, so that shutdown ends.
    closing: Arc<AtomicBool>,
    max_batch: usize,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
    /// Why rows cannot be written right now; `None` while commits go through.
    problem: Arc<Mutex<Option<String>>>,
}

impl SpendWriter {
    /// Starts the writer task (inside a tokio runtime).
    pub fn start(store: Store, cfg: WriterConfig) -> SpendWriter {
        let (tx, rx) = mpsc::channel(cfg.channel_capacity.max(1));
        let (ctl, ctl_rx) = mpsc::unbounded_channel();
        let wake = Arc::new(Notify::new());
        let max_batch = cfg.max_batch.max(1);
        let problem = Arc::new(Mutex::new(None));
        let closing = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(run(
            store,
            cfg,
            rx,
            ctl_rx,
            wake.clone(),
            closing.clone(),
            problem.clone(),
        ));
        SpendWriter {
            tx,
            ctl,
            wake,
            closing,
            max_batch,
            task: Arc::new(Mutex::new(Some(task))),
            problem,
        }
    }

    /// Why spend-log rows cannot be written right now (the latest commit failed, or the
    /// database refuses some rows); `None` while they can.
    pub fn problem(&self) -> Option<String> {
        self.problem.lock().clone()
    }

    /// Queues a spend-log row (its `spend` is added to key `api_key`); waits only when the
    /// channel is full.
    pub async fn log(&self, row: SpendLogRow) {
        self.send_item(BatchItem::Row(Box::new(row))).await;
    }

    pub(crate) fn try_item(&self, item: BatchItem) -> Result<(), BatchItem> {
        match self.tx.try_send(Msg::Item(item)) {
            Ok(()) => {
                if self.queued() >= self.max_batch {
                    self.wake.notify_one();
                }
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(Msg::Item(i)))
            | Err(mpsc::error::TrySendError::Closed(Msg::Item(i))) => Err(i),
            Err(_) => Ok(()),
        }
    }

    pub(crate) async fn send_item(&self, item: BatchItem) {
        let item = match self.try_item(item) {
            Ok(()) => return,
            Err(item) => item,
        };
        // Full (or closed): have the writer drain now rather than at its next tick.
        self.wake.notify_one();
        if let Err(e) = self.tx.send(Msg::Item(item)).await
            && let Msg::Item(BatchItem::Row(row)) = e.0
        {
            tracing::error!(request_id = %row.request_id, "spend writer stopped; spend-log row dropped");
        }
    }

    pub(crate) fn sweep(&self, now: DateTime<Utc>, skip: HashSet<String>) {
        // A missed sweep is retried on the next tick.
        let _ = self.tx.try_send(Msg::Sweep { now, skip });
        self.wake.notify_one();
    }

    /// Commits everything queued so far. While a backlog the database will not take keeps
    /// the writer from taking rows, answers at once with why, without taking more.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        self.ctl
            .send(Ctl::Flush(done))
            .map_err(|_| StoreError::Internal("spend writer stopped".to_owned()))?;
        wait.await
            .map_err(|_| StoreError::Internal("spend writer stopped".to_owned()))?
            .map_err(StoreError::Internal)
    }

    /// Commits everything queued and stops the task. Rows logged afterwards are refused.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        self.closing.store(true, Ordering::Release);
        self.wake.notify_one();
        let sent = self.tx.send(Msg::Shutdown(done)).await.is_ok();
        self.wake.notify_one();
        let result = if sent {
            wait.await
                .unwrap_or_else(|_| Err("spend writer stopped".to_owned()))
                .map_err(StoreError::Internal)
        } else {
            Ok(())
        };
        let task = self.task.lock().take();
        if let Some(task) = task {
            let _ = task.await;
        }
        result
    }

    /// Items queued in the channel (not counting a batch being committed).
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

/// First wait before rows the database refused are tried again; doubled after every refusal,
/// up to [`REFUSED_RETRY_MAX`].
const REFUSED_RETRY_FIRST: Duration = Duration::from_secs(1);
const REFUSED_RETRY_MAX: Duration = Duration::from_secs(60);

struct Batch {
    items: Vec<BatchItem>,
    first_at: Option<Instant>,
    failing: bool,
    store_rows: bool,
    /// Items the database refused one by one (a constraint, a value too big). Never dropped:
    /// each refusal is logged at error level and the items are tried again after
    /// `refused_backoff`, so a fixed database (or a transient cause) still gets every row.
    refused: Vec<BatchItem>,
    refused_retry_at: Option<Instant>,
    refused_backoff: Duration,
    /// The latest refusal, for flush and shutdown answers.
    refused_error: Option<String>,
    /// The latest failed commit's error, while commits fail.
    commit_error: Option<String>,
}

impl Batch {
    fn new(store_rows: bool) -> Self {
        Batch {
            items: Vec::new(),
            first_at: None,
            failing: false,
            store_rows,
            refused: Vec::new(),
            refused_retry_at: None,
            refused_backoff: REFUSED_RETRY_FIRST,
            refused_error: None,
            commit_error: None,
        }
    }

    /// Why rows are not being written, if they are not.
    fn problem(&self) -> Option<String> {
        if self.failing {
            let e = self.commit_error.as_deref().unwrap_or("commit failed");
            return Some(format!(
                "spend-log rows cannot be written ({} waiting): {e}",
                self.items.len()
            ));
        }
        if !self.refused.is_empty() {
            let e = self.refused_error.as_deref().unwrap_or("refused");
            return Some(format!(
                "{} spend-log rows refused by the database: {e}",
                self.refused.len()
            ));
        }
        None
    }

    fn push(&mut self, item: BatchItem) {
        if self.items.is_empty() {
            self.first_at = Some(Instant::now());
        }
        self.items.push(item);
    }

    async fn commit(&mut self, store: &Store) -> Result<(), String> {
        if self.items.is_empty() {
            return Ok(());
        }
        let (items, result) = store
            .write_batch_owned(std::mem::take(&mut self.items), self.store_rows)
            .await;
        self.items = items;
        match result {
            Ok(()) => {
                self.items.clear();
                self.first_at = None;
                self.failing = false;
                self.commit_error = None;
                Ok(())
            }
            Err(e) if e.is_refusal() => {
                // The database refused the batch (not a lost connection): one bad row must not
                // hold back every other, so commit them one by one and hold back what is refused.
                tracing::error!(error = %e, rows = self.items.len(), "spend-log batch refused; committing rows one by one");
                let items = std::mem::take(&mut self.items);
                let result = self.one_by_one(store, items).await;
                self.failing = result.is_err();
                if self.items.is_empty() {
                    self.first_at = None;
                }
                result
            }
            Err(e) => {
                if !self.failing {
                    tracing::error!(error = %e, pending = self.items.len(), "spend-log commit failed; will retry");
                }
                self.failing = true;
                self.commit_error = Some(e.to_string());
                Err(e.to_string())
            }
        }
    }

    /// Commits `items` one per transaction. Refused ones go to `refused`; on a transient
    /// failure the one that failed and the rest go back to `items`.
    async fn one_by_one(&mut self, store: &Store, items: Vec<BatchItem>) -> Result<(), String> {
        let mut rest = items.into_iter();
        while let Some(item) = rest.next() {
            let (mut back, result) = store.write_batch_owned(vec![item], self.store_rows).await;
            match result {
                Ok(()) => {}
                Err(e) if e.is_refusal() => {
                    for item in back {
                        self.hold_refused(store, item, &e).await;
                    }
                }
                Err(e) => {
                    self.items.append(&mut back);
                    self.items.extend(rest);
                    return Err(e.to_string());
                }
            }
        }
        if !self.refused.is_empty() && self.refused_retry_at.is_none() {
            self.refused_retry_at = Some(Instant::now() + self.refused_backoff);
        }
        Ok(())
    }

    async fn hold_refused(&mut self, store: &Store, item: BatchItem, e: &StoreError) {
        if let BatchItem::Row(row) = &item {
            // Refused as a duplicate of itself: an earlier commit of this row went through
            // though its answer was lost (a dropped connection). Its spend went with it.
            if self.store_rows && matches!(store.spend_row_exists(&row.request_id).await, Ok(true))
            {
                tracing::warn!(request_id = %row.request_id, "spend-log row was already committed; not written twice");
                return;
            }
            tracing::error!(error = %e, request_id = %row.request_id, api_key = %row.api_key, spend_nanos = row.spend, "spend-log row refused by the database; kept and retried");
        } else {
            tracing::error!(error = %e, "budget reset refused by the database; kept and retried");
        }
        self.refused_error = Some(e.to_string());
        self.refused.push(item);
    }

    /// Tries the refused items again when their backoff is over (or now, with `force`); `Err`
    /// while some are still refused.
    async fn retry_refused(&mut self, store: &Store, force: bool) -> Result<(), String> {
        if self.refused.is_empty() {
            return Ok(());
        }
        let due = self.refused_retry_at.is_none_or(|at| Instant::now() >= at);
        if force || due {
            let held = std::mem::take(&mut self.refused);
            self.refused_retry_at = None;
            let result = self.one_by_one(store, held).await;
            if self.refused.is_empty() {
                self.refused_backoff = REFUSED_RETRY_FIRST;
                self.refused_error = None;
                return result;
            }
            self.refused_backoff = (self.refused_backoff * 2).min(REFUSED_RETRY_MAX);
            self.refused_retry_at = Some(Instant::now() + self.refused_backoff);
        }
        Err(format!(
            "{} spend-log rows refused by the database, kept and retried: {}",
            self.refused.len(),
            self.refused_error.as_deref().unwrap_or("refused")
        ))
    }

    /// Commits what is queued and tries refused items again: what a flush answers.
    async fn commit_all(&mut self, store: &Store) -> Result<(), String> {
        self.commit(store).await?;
        self.retry_refused(store, true).await
    }
}

/// The writer task's state.
struct Task {
    store: Store,
    flush_interval: Duration,
    max_batch: usize,
    /// Past this many items held back (a failing commit's backlog, or refused rows), the
    /// writer takes no more rows until some are committed; senders wait on the channel.
    backlog_limit: usize,
    rx: mpsc::Receiver<Msg>,
    batch: Batch,
    spill: Option<PathBuf>,
    /// The spill file, while rows replayed from it wait to be committed.
    replaying: Option<PathBuf>,
    ctl_rx: mpsc::UnboundedReceiver<Ctl>,
    closing: Arc<AtomicBool>,
    /// What [`SpendWriter::problem`] reads.
    problem: Arc<Mutex<Option<String>>>,
}

/// How draining the row channel ended.
enum Drained {
    /// It is empty, or the backlog is over its limit.
    Paused,
    /// Every handle is gone.
    Gone,
    /// A shutdown came, behind every row sent before it.
    Stop(oneshot::Sender<Result<(), String>>),
}

impl Task {
    fn report(&self) {
        *self.problem.lock() = self.batch.problem();
    }

    /// Whether the backlog keeps the writer from taking rows (never once closing).
    fn holding(&self) -> bool {
        !self.closing.load(Ordering::Acquire)
            && ((self.batch.failing && self.batch.items.len() >= self.backlog_limit)
                || self.batch.refused.len() >= self.backlog_limit)
    }

    /// Takes what the row channel holds, committing full batches, until it is empty, the
    /// backlog is over its limit, or a shutdown comes.
    async fn drain(&mut self) -> Drained {
        while !self.holding() {
            match self.rx.try_recv() {
                Ok(Msg::Item(item)) => {
                    self.batch.push(item);
                    if self.batch.items.len() >= self.max_batch {
                        let _ = self.batch.commit(&self.store).await;
                    }
                }
                Ok(Msg::Sweep { now, skip }) => {
                    let _ = self.batch.commit(&self.store).await;
                    if let Err(e) = self.store.sweep_budget_resets(now, &skip).await {
                        tracing::warn!(error = %e, "budget reset sweep failed");
                    }
                }
                Ok(Msg::Shutdown(done)) => return Drained::Stop(done),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return Drained::Gone,
            }
        }
        Drained::Paused
    }

    /// Commits everything, every row the channel holds included; what cannot be committed
    /// is spilled (or named lost). The stop's answer.
    async fn stop(&mut self) -> Result<(), String> {
        self.rx.close();
        while let Ok(msg) = self.rx.try_recv() {
            if let Msg::Item(item) = msg {
                self.batch.push(item);
            }
        }
        let mut result = self.batch.commit_all(&self.store).await;
        for _ in 0..5 {
            if result.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            result = self.batch.commit_all(&self.store).await;
        }
        match &result {
            Err(e) => {
                let replace = self.replaying.is_some();
                result = Err(spill_or_lose(
                    self.spill.as_deref(),
                    replace,
                    &mut self.batch,
                    e,
                ));
            }
            Ok(()) => {
                if let Some(path) = self.replaying.take() {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        result
    }

    /// Stops, answering `waiting` (a shutdown, a flush) and every flush still queued.
    async fn finish(&mut self, mut waiting: Vec<oneshot::Sender<Result<(), String>>>) {
        self.ctl_rx.close();
        let result = self.stop().await;
        self.report();
        while let Ok(Ctl::Flush(ack)) = self.ctl_rx.try_recv() {
            waiting.push(ack);
        }
        for ack in waiting {
            let _ = ack.send(result.clone());
        }
    }

    /// Answers a flush: everything queued so far committed, or why not. While the backlog
    /// holds the writer, the rows behind it stay in the channel (taking them would lift the
    /// memory bound) and the answer says why they wait, unless this try commits the backlog.
    /// `Next::Stop` when a shutdown came meanwhile (`None`: every handle is gone).
    async fn control(&mut self, ctl: Option<Ctl>) -> Next {
        let Some(Ctl::Flush(done)) = ctl else {
            self.finish(Vec::new()).await;
            return Next::Stop;
        };
        if self.holding()
            && let Err(e) = self.batch.commit_all(&self.store).await
        {
            self.report();
            let _ = done.send(Err(e));
            return Next::Go;
        }
        match self.drain().await {
            Drained::Paused => {
                let result = self.batch.commit_all(&self.store).await;
                self.report();
                let _ = done.send(result);
                Next::Go
            }
            Drained::Gone => {
                self.finish(vec![done]).await;
                Next::Stop
            }
            // The flush asked first: its answer is the stop's, which commits it all.
            Drained::Stop(stop) => {
                self.finish(vec![done, stop]).await;
                Next::Stop
            }
        }
    }
}

/// Whether the task goes on after a control message.
enum Next {
    Go,
    Stop,
}

async fn run(
    store: Store,
    cfg: WriterConfig,
    rx: mpsc::Receiver<Msg>,
    ctl_rx: mpsc::UnboundedReceiver<Ctl>,
    wake: Arc<Notify>,
    closing: Arc<AtomicBool>,
    problem: Arc<Mutex<Option<String>>>,
) {
    let mut batch = Batch::new(cfg.store_rows);
    let spill = store.spill_path().map(Path::to_path_buf);
    let replaying = match &spill {
        Some(path) => replay(path, &mut batch),
        None => None,
    };
    let max_batch = cfg.max_batch.max(1);
    let mut task = Task {
        store,
        flush_interval: cfg.flush_interval,
        max_batch,
        backlog_limit: max_batch.saturating_mul(10),
        rx,
        batch,
        spill,
        replaying,
        ctl_rx,
        closing,
        problem,
    };
    let mut tick = tokio::time::interval(cfg.flush_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    if task.replaying.is_some() {
        let _ = task.batch.commit_all(&task.store).await;
    }
    loop {
        task.report();
        if task.batch.items.is_empty()
            && task.batch.refused.is_empty()
            && let Some(path) = task.replaying.take()
        {
            // Every replayed row is in the database now (or was already).
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::error!(error = %e, path = %path.display(), "cannot remove the replayed spill file; its rows would be recognised as stored at the next start");
            }
        }
        if task.holding() {
            // Take no rows until the backlog is committed (or a shutdown asks for them);
            // flushes are answered meanwhile.
            tokio::select! {
                _ = tokio::time::sleep(task.flush_interval) => {
                    let _ = task.batch.commit(&task.store).await;
                    let _ = task.batch.retry_refused(&task.store, false).await;
                }
                _ = wake.notified() => {}
                ctl = task.ctl_rx.recv() => {
                    if let Next::Stop = task.control(ctl).await {
                        return;
                    }
                }
            }
            continue;
        }
        // Rows do not wake this task one by one (a wake-up per request showed in profiles):
        // it runs on the tick, or when a sender rings (see `SpendWriter::wake`).
        let ticked = tokio::select! {
            _ = tick.tick() => true,
            _ = wake.notified() => false,
            ctl = task.ctl_rx.recv() => {
                if let Next::Stop = task.control(ctl).await {
                    return;
                }
                false
            }
        };
        match task.drain().await {
            Drained::Paused => {}
            Drained::Gone => {
                task.finish(Vec::new()).await;
                return;
            }
            Drained::Stop(done) => {
                task.finish(vec![done]).await;
                return;
            }
        }
        let due = task
            .batch
            .first_at
            .is_some_and(|t| t.elapsed() >= task.flush_interval);
        if ticked || due {
            let _ = task.batch.commit(&task.store).await;
        }
        if ticked {
            let _ = task.batch.retry_refused(&task.store, false).await;
        }
    }
}

/// One spilled item. Times and spend are kept exactly here: the row's own JSON is its API
/// shape (Python-style times, USD).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Spilled {
    Row {
        spend_nanos: i64,
        start_time: DateTime<Utc>,
        end_time: DateTime<Utc>,
        completion_start_time: Option<DateTime<Utc>>,
        row: Value,
    },
    Reset {
        token: String,
        budget_reset_at: DateTime<Utc>,
    },
}

fn spill_line(item: &BatchItem) -> Result<String, serde_json::Error> {
    let spilled = match item {
        BatchItem::Row(row) => Spilled::Row {
            spend_nanos: row.spend,
            start_time: row.start_time,
            end_time: row.end_time,
            completion_start_time: row.completion_start_time,
            row: serde_json::to_value(row)?,
        },
        BatchItem::Reset {
            token,
            budget_reset_at,
        } => Spilled::Reset {
            token: token.clone(),
            budget_reset_at: *budget_reset_at,
        },
    };
    serde_json::to_string(&spilled)
}

fn unspill(line: &str) -> Result<BatchItem, serde_json::Error> {
    Ok(match serde_json::from_str::<Spilled>(line)? {
        Spilled::Row {
            spend_nanos,
            start_time,
            end_time,
            completion_start_time,
            mut row,
        } => {
            if let Some(o) = row.as_object_mut() {
                // Stand-ins that parse; the exact values are set below.
                o.insert("spend".into(), Value::from(0));
                o.insert("startTime".into(), serde_json::to_value(start_time)?);
                o.insert("endTime".into(), serde_json::to_value(end_time)?);
                o.insert(
                    "completionStartTime".into(),
                    serde_json::to_value(completion_start_time)?,
                );
            }
            let mut row: SpendLogRow = serde_json::from_value(row)?;
            row.spend = spend_nanos;
            row.start_time = start_time;
            row.end_time = end_time;
            row.completion_start_time = completion_start_time;
            BatchItem::Row(Box::new(row))
        }
        Spilled::Reset {
            token,
            budget_reset_at,
        } => BatchItem::Reset {
            token,
            budget_reset_at,
        },
    })
}

/// Writes every item the writer still holds to `path` (0600). With `replace`, the file this
/// writer replayed is replaced (its rows not yet committed are among those held); otherwise
/// the items are appended, keeping whatever an earlier stop left there that could not be read.
fn write_spill(path: &Path, replace: bool, batch: &Batch) -> std::io::Result<usize> {
    let mut text = String::new();
    let mut n = 0;
    for item in batch.items.iter().chain(&batch.refused) {
        text.push_str(&spill_line(item).map_err(std::io::Error::other)?);
        text.push('\n');
        n += 1;
    }
    let mut open = std::fs::OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    if !replace {
        let mut f = open.append(true).create(true).open(path)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        return Ok(n);
    }
    let tmp = path.with_extension("jsonl.tmp");
    let mut f = open.write(true).create(true).truncate(true).open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    Ok(n)
}

/// The stop could not commit: spill what is held, or say it is lost. The shutdown's answer.
fn spill_or_lose(path: Option<&Path>, replace: bool, batch: &mut Batch, e: &str) -> String {
    let held = batch.items.len() + batch.refused.len();
    match path.map(|p| (p, write_spill(p, replace, batch))) {
        Some((p, Ok(n))) => {
            tracing::error!(error = %e, spilled = n, path = %p.display(), "spend writer stopped with uncommitted rows; spilled, replayed at the next start");
            batch.items.clear();
            batch.refused.clear();
            format!(
                "{e}; {n} spend-log rows spilled to {}, replayed at the next start",
                p.display()
            )
        }
        Some((p, Err(io))) => {
            tracing::error!(error = %e, spill_error = %io, lost = held, path = %p.display(), "spend writer stopped with uncommitted rows; spilling them failed too");
            format!(
                "{e}; {held} spend-log rows lost (spilling to {} failed: {io})",
                p.display()
            )
        }
        None => {
            tracing::error!(error = %e, lost = held, "spend writer stopped with uncommitted rows");
            format!("{e}; {held} spend-log rows lost")
        }
    }
}

/// Loads the rows a previous stop spilled; the file, when there was one to replay.
fn replay(path: &Path, batch: &mut Batch) -> Option<PathBuf> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::error!(error = %e, path = %path.display(), "cannot read the spend-log spill file; left in place");
            return None;
        }
    };
    let mut bad = 0usize;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match unspill(line) {
            Ok(item) => batch.push(item),
            Err(e) => {
                bad += 1;
                tracing::error!(error = %e, line = i + 1, path = %path.display(), "unreadable line in the spend-log spill file");
            }
        }
    }
    tracing::warn!(rows = batch.items.len(), path = %path.display(), "replaying spend-log rows spilled at the last stop");
    if bad > 0 {
        // Kept aside, not removed with the rows that did replay: someone has to look at it.
        let aside = path.with_extension("jsonl.unreadable");
        if let Err(e) = std::fs::rename(path, &aside) {
            tracing::error!(error = %e, "cannot set the spill file aside");
        }
        return None;
    }
    Some(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::db::Db;

    fn row(id: &str) -> SpendLogRow {
        SpendLogRow {
            request_id: id.to_owned(),
            call_type: "acompletion".to_owned(),
            model: "gpt-4o".to_owned(),
            status: "success".to_owned(),
            ..SpendLogRow::default()
        }
    }

    async fn sqlite_store(dir: &tempfile::TempDir) -> (Store, sqlx::SqlitePool) {
        let store = Store::open(&dir.path().join("w.db").display().to_string())
            .await
            .unwrap();
        let Db::Sqlite(pool, _) = &store.db else {
            panic!("a path opens SQLite")
        };
        let pool = pool.clone();
        (store, pool)
    }

    /// The database refuses every spend-log row from now on, as a full disk would.
    async fn refuse_every_row(pool: &sqlx::SqlitePool) {
        sqlx::query(
            "CREATE TRIGGER refuse BEFORE INSERT ON idlehands_spend_logs \
             BEGIN SELECT RAISE(ABORT, 'no'); END",
        )
        .execute(pool)
        .await
        .unwrap();
    }

    async fn ids(pool: &sqlx::SqlitePool) -> Vec<String> {
        sqlx::query_scalar("SELECT request_id FROM idlehands_spend_logs ORDER BY request_id")
            .fetch_all(pool)
            .await
            .unwrap()
    }

    /// The SQLite row thread frees committed rows itself and hands the emptied vector back
    /// for the next batch; rows it could not commit come back whole, for the retry.
    #[tokio::test]
    async fn committed_batches_come_back_empty_and_failed_ones_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (store, pool) = sqlite_store(&dir).await;
        let items: Vec<BatchItem> = (0..500)
            .map(|i| BatchItem::Row(Box::new(row(&format!("r{i:03}")))))
            .collect();
        let (back, result) = store.write_batch_owned(items, true).await;
        result.unwrap();
        assert!(back.is_empty());
        assert!(back.capacity() >= 500, "the vector is kept for reuse");
        assert_eq!(ids(&pool).await.len(), 500);

        refuse_every_row(&pool).await;
        let items: Vec<BatchItem> = (0..3)
            .map(|i| BatchItem::Row(Box::new(row(&format!("s{i}")))))
            .collect();
        let (back, result) = store.write_batch_owned(items, true).await;
        assert!(result.is_err());
        let back: Vec<String> = back
            .iter()
            .map(|b| match b {
                BatchItem::Row(r) => r.request_id.clone(),
                _ => String::new(),
            })
            .collect();
        assert_eq!(back, ["s0", "s1", "s2"]);
    }

    #[tokio::test]
    async fn a_refused_row_is_kept_and_committed_once_the_database_takes_it() {
        let dir = tempfile::tempdir().unwrap();
        let (store, pool) = sqlite_store(&dir).await;
        // A trigger stands in for a row the database will not take (SQLITE_CONSTRAINT).
        sqlx::query(
            "CREATE TRIGGER refuse BEFORE INSERT ON idlehands_spend_logs \
             WHEN NEW.request_id = 'bad' BEGIN SELECT RAISE(ABORT, 'no'); END",
        )
        .execute(&pool)
        .await
        .unwrap();
        let writer = SpendWriter::start(store.clone(), WriterConfig::default());
        for id in ["a", "bad", "b"] {
            writer.log(row(id)).await;
        }
        let err = writer.flush().await.unwrap_err().to_string();
        assert!(
            err.contains("1 spend-log rows refused by the database, kept and retried"),
            "{err}"
        );
        assert_eq!(ids(&pool).await, ["a", "b"], "the others are not held back");
        // Still held after another try, not dropped.
        let err = writer
            .flush()
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("refused by the database, kept and retried"),
            "{err:?}"
        );

        sqlx::query("DROP TRIGGER refuse")
            .execute(&pool)
            .await
            .unwrap();
        writer.flush().await.unwrap();
        assert_eq!(ids(&pool).await, ["a", "b", "bad"]);
        writer.shutdown().await.unwrap();
        store.close().await;
    }

    #[test]
    fn a_spilled_row_reads_back_exactly() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let mut r = row("spilled");
        r.spend = 1_234_567_891;
        r.api_key = "hash".to_owned();
        r.start_time = t("2026-12-05T13:00:00.123456789Z");
        r.end_time = t("2026-12-05T13:00:01.5Z");
        r.completion_start_time = Some(t("2026-12-05T13:00:00.9Z"));
        r.metadata = crate::types::JsonObjectText::from_text(
            r#"{"status":"failure","error_information":{"error_message":"x"}}"#.to_owned(),
        )
        .unwrap();
        r.usage_estimated = true;
        let line = spill_line(&BatchItem::Row(Box::new(r.clone()))).unwrap();
        assert!(!line.contains('\n'));
        let BatchItem::Row(back) = unspill(&line).unwrap() else {
            panic!("a row spills as a row")
        };
        assert_eq!(*back, r);
        let reset = BatchItem::Reset {
            token: "tok".to_owned(),
            budget_reset_at: t("2026-12-06T00:00:00Z"),
        };
        let BatchItem::Reset {
            token,
            budget_reset_at,
        } = unspill(&spill_line(&reset).unwrap()).unwrap()
        else {
            panic!("a reset spills as a reset")
        };
        assert_eq!(
            (token.as_str(), budget_reset_at),
            ("tok", t("2026-12-06T00:00:00Z"))
        );
    }

    #[tokio::test]
    async fn a_row_committed_before_is_not_written_twice() {
        let dir = tempfile::tempdir().unwrap();
        let (store, pool) = sqlite_store(&dir).await;
        let writer = SpendWriter::start(store.clone(), WriterConfig::default());
        writer.log(row("once")).await;
        writer.flush().await.unwrap();
        // The same row again, as after a commit whose answer was lost.
        writer.log(row("once")).await;
        writer.log(row("next")).await;
        writer.flush().await.unwrap();
        assert_eq!(ids(&pool).await, ["next", "once"]);
        writer.shutdown().await.unwrap();
        store.close().await;
    }

    #[tokio::test]
    async fn shutdown_ends_and_says_so_while_a_row_is_still_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (store, pool) = sqlite_store(&dir).await;
        refuse_every_row(&pool).await;
        let writer = SpendWriter::start(store.clone(), WriterConfig::default());
        writer.log(row("never")).await;
        let err = writer.shutdown().await.unwrap_err().to_string();
        assert!(err.contains("refused by the database"), "{err}");
        store.close().await;
    }

    /// A writer held by its backlog: the database refuses every row, the backlog limit is 10
    /// (one-row batches), and of 12 rows logged ten were taken and refused while the last two
    /// wait in the channel (of 2), which is full.
    async fn held_writer(dir: &tempfile::TempDir) -> (Store, sqlx::SqlitePool, SpendWriter) {
        let (store, pool) = sqlite_store(dir).await;
        refuse_every_row(&pool).await;
        let cfg = WriterConfig {
            flush_interval: Duration::from_millis(50),
            max_batch: 1,
            channel_capacity: 2,
            store_rows: true,
        };
        let writer = SpendWriter::start(store.clone(), cfg);
        for i in 0..12 {
            writer.log(row(&format!("r{i}"))).await;
        }
        (store, pool, writer)
    }

    /// A row whose sender still waits for room when the stop is asked is taken too: the
    /// stop comes behind it.
    #[tokio::test]
    async fn shutdown_takes_the_rows_of_senders_still_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let (store, pool, writer) = held_writer(&dir).await;
        // The thirteenth waits for room.
        let waiting = {
            let writer = writer.clone();
            tokio::spawn(async move { writer.log(row("r12")).await })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished(), "the channel is full");
        let err = writer.shutdown().await.unwrap_err().to_string();
        assert!(err.contains("13 spend-log rows spilled"), "{err}");
        waiting.await.unwrap();
        let spilled = std::fs::read_to_string(store.spill_path().unwrap()).unwrap();
        assert_eq!(spilled.lines().count(), 13);
        assert!(spilled.contains("\"r12\""), "{spilled}");
        assert!(ids(&pool).await.is_empty());
        store.close().await;
    }

    #[tokio::test]
    async fn shutdown_ends_while_refused_rows_fill_the_backlog() {
        let dir = tempfile::tempdir().unwrap();
        let (store, pool, writer) = held_writer(&dir).await;
        // Answered though the writer takes no rows, without taking the two that wait.
        let err = writer
            .flush()
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("10 spend-log rows refused by the database"),
            "{err:?}"
        );
        assert_eq!(writer.queued(), 2);
        // The stop takes them too: all twelve are refused again and spilled.
        let err = writer.shutdown().await.unwrap_err().to_string();
        assert!(
            err.contains("12 spend-log rows refused by the database")
                && err.contains("12 spend-log rows spilled"),
            "{err}"
        );
        assert!(ids(&pool).await.is_empty());
        store.close().await;
    }
}
