//! Budget reservations and rpm/tpm/parallel limits per key. [`Limiter`] is the seam for a
//! shared (Redis) implementation in fleets; [`LocalLimiter`] keeps the counters in memory for
//! one instance, each key behind its own mutex so a check and its reservation are one step.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use parking_lot::{Mutex, RwLock};

use crate::duration::LlmDuration;
use crate::error::{AccessError, LimitKind};
use crate::spend::SpendLogRow;
use crate::spend_db::BatchItem;
use crate::types::KeyRecord;
use crate::writer::SpendWriter;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// LiteLLM's rpm/tpm window (`LITELLM_RATE_LIMIT_WINDOW_SIZE`).
pub const RATE_WINDOW: Duration = Duration::from_secs(60);

/// What admission needs from a key's record.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyLimits {
    pub token: String,
    pub key_alias: Option<String>,
    pub key_name: String,
    /// Spend in the database when the record was read; seeds the counters once.
    pub spend: i64,
    pub max_budget: Option<i64>,
    pub budget_duration: Option<LlmDuration>,
    pub budget_reset_at: Option<DateTime<Utc>>,
    pub rpm_limit: Option<u64>,
    pub tpm_limit: Option<u64>,
    pub max_parallel_requests: Option<u64>,
}

impl KeyLimits {
    pub fn from_record(k: &KeyRecord) -> KeyLimits {
        let nonneg = |v: Option<i64>| v.map(|v| v.max(0) as u64);
        KeyLimits {
            token: k.token.clone(),
            key_alias: k.key_alias.clone(),
            key_name: k.key_name.clone(),
            spend: k.spend,
            max_budget: k.max_budget,
            budget_duration: k.budget_duration.as_deref().and_then(LlmDuration::parse),
            budget_reset_at: k.budget_reset_at,
            rpm_limit: nonneg(k.rpm_limit),
            tpm_limit: nonneg(k.tpm_limit),
            max_parallel_requests: nonneg(k.max_parallel_requests),
        }
    }
}

/// A key's spend as enforced: settled spend and what calls in progress hold, nano-USD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LiveSpend {
    pub spend: i64,
    pub reserved: i64,
}

/// An admitted request's hold on a key's budget and limits.
#[derive(Debug)]
pub struct Ticket {
    pub token: String,
    pub estimate_nanos: i64,
    pub estimate_tokens: u64,
    /// The key's budget window at admission, so settling after a boundary can roll it over.
    pub budget_window: Option<LlmDuration>,
    pub id: u64,
    /// Requests left in the rpm window after this one (when the key has an rpm limit).
    pub remaining_requests: Option<u64>,
    /// Tokens left in the tpm window, counting reservations (when the key has a tpm limit).
    pub remaining_tokens: Option<u64>,
}

impl Ticket {
    /// What the row of the ticket's call names as its key: none for a JWT's call, whose
    /// ticket is held under a made-up token (`crate::ledger_jwt::jwt_token`).
    pub(crate) fn row_api_key(&self) -> String {
        if self.token.starts_with(crate::JWT_TOKEN_PREFIX) {
            String::new()
        } else {
            self.token.clone()
        }
    }
}

/// Budget and rate-limit accounting shared by all requests of a key.
pub trait Limiter: Send + Sync + 'static {
    /// Checks blocked-by-limit conditions and reserves `estimate_*` in one atomic step.
    fn admit<'a>(
        &'a self,
        key: &'a KeyLimits,
        estimate_nanos: i64,
        estimate_tokens: u64,
    ) -> BoxFuture<'a, Result<Ticket, AccessError>>;
    /// Replaces the reservation by the row's actual `spend` and `total_tokens`, queues the row
    /// for the writer, and returns the key's spend including it.
    fn settle(&self, ticket: Ticket, row: SpendLogRow) -> BoxFuture<'_, i64>;
    /// [`Limiter::settle`] for the counters alone: a budget level above the key (team, user,
    /// ...) whose call's row the key's settlement logs. Returns the level's spend.
    fn settle_counters(&self, ticket: Ticket, spend: i64, tokens: i64) -> BoxFuture<'_, i64>;
    /// Gives back a reservation that will not be settled (the client went away).
    fn release(&self, ticket: Ticket);
    /// The key's current spend (settled, committed or not), if tracked.
    fn spend(&self, token: &str) -> Option<i64>;
    /// The key's spend and in-flight reservations as the limiter that enforces them sees
    /// them (for a fleet: the shared counters, the same on every instance); `None` when it
    /// does not track the key.
    fn live<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Option<LiveSpend>>;
    /// The key's limits changed; with `spend_overwritten` its spend was set by an admin.
    fn reconfigure(&self, key: &KeyLimits, spend_overwritten: bool);
    /// The key is gone (deleted or regenerated).
    fn forget(&self, token: &str);
    /// Rolls over due budget windows. Returns the keys this limiter tracks; the database sweep
    /// leaves those alone.
    fn tick(&self, now: DateTime<Utc>) -> HashSet<String>;
    /// The key (or budget entity) was changed elsewhere in the fleet: drop whatever was kept
    /// from its old limits (a lease on its budget).
    fn invalidated(&self, _token: &str) {}
    /// The instance is stopping, its calls finished: give back what is held for calls to
    /// come (a fleet's leases), and wait until that is done.
    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

struct Counters {
    limits: KeyLimits,
    spend: i64,
    reserved: i64,
    reserved_tokens: u64,
    in_flight: u64,
    requests: VecDeque<Instant>,
    tokens: VecDeque<(Instant, u64)>,
    token_sum: u64,
}

impl Counters {
    fn new(limits: &KeyLimits) -> Counters {
        Counters {
            limits: limits.clone(),
            spend: limits.spend,
            reserved: 0,
            reserved_tokens: 0,
            in_flight: 0,
            requests: VecDeque::new(),
            tokens: VecDeque::new(),
            token_sum: 0,
        }
    }

    /// Starts a new budget window if the current one has ended.
    fn roll_budget(&mut self, now: DateTime<Utc>) -> Option<BatchItem> {
        let due = self.limits.budget_reset_at.is_some_and(|at| at <= now);
        let duration = self.limits.budget_duration?;
        if !due {
            return None;
        }
        let next = duration.next_reset(now);
        self.spend = 0;
        self.limits.budget_reset_at = Some(next);
        Some(BatchItem::Reset {
            token: self.limits.token.clone(),
            budget_reset_at: next,
        })
    }

    fn prune(&mut self, now: Instant) {
        while self
            .requests
            .front()
            .is_some_and(|t| now.duration_since(*t) >= RATE_WINDOW)
        {
            self.requests.pop_front();
        }
        while let Some((t, n)) = self.tokens.front().copied() {
            if now.duration_since(t) < RATE_WINDOW {
                break;
            }
            self.token_sum = self.token_sum.saturating_sub(n);
            self.tokens.pop_front();
        }
    }
}

fn rate_limited(token: &str, kind: LimitKind, limit: u64, wait: Duration) -> AccessError {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let secs = secs.max(1);
    AccessError::RateLimited {
        scope: "api_key",
        key_hash: token.to_owned(),
        kind,
        limit,
        reset_at: Utc::now() + chrono::Duration::seconds(secs as i64),
        retry_after_secs: secs,
    }
}

/// In-memory limiter for a single instance.
pub struct LocalLimiter {
    keys: RwLock<HashMap<String, Arc<Mutex<Counters>>, foldhash::fast::RandomState>>,
    writer: SpendWriter,
    budget_exceeded_status: u16,
    next_id: AtomicU64,
    /// Judges budget windows.
    clock: Arc<dyn crate::clock::Clock>,
}

impl LocalLimiter {
    pub fn new(
        writer: SpendWriter,
        budget_exceeded_status: u16,
        clock: Arc<dyn crate::clock::Clock>,
    ) -> LocalLimiter {
        LocalLimiter {
            keys: RwLock::new(HashMap::default()),
            writer,
            budget_exceeded_status,
            next_id: AtomicU64::new(1),
            clock,
        }
    }

    fn counters(&self, limits: &KeyLimits) -> Arc<Mutex<Counters>> {
        if let Some(c) = self.keys.read().get(&limits.token) {
            return c.clone();
        }
        self.keys
            .write()
            .entry(limits.token.clone())
            .or_insert_with(|| Arc::new(Mutex::new(Counters::new(limits))))
            .clone()
    }

    fn existing(&self, token: &str) -> Option<Arc<Mutex<Counters>>> {
        self.keys.read().get(token).cloned()
    }

    /// Hands items to the writer; when its channel is full, waits outside any lock.
    async fn deliver(&self, overflow: Option<BatchItem>) {
        if let Some(item) = overflow {
            self.writer.send_item(item).await;
        }
    }

    fn queue(&self, item: BatchItem) -> Option<BatchItem> {
        self.writer.try_item(item).err()
    }

    fn admit_now(
        &self,
        key: &KeyLimits,
        estimate_nanos: i64,
        estimate_tokens: u64,
    ) -> (Result<Ticket, AccessError>, Option<BatchItem>) {
        let counters = self.counters(key);
        let mut c = counters.lock();
        // Rate limits as the caller read them now (a key's or team's cached record, a model's
        // limit from the key or its team): the shared limiter takes them per call too.
        c.limits.rpm_limit = key.rpm_limit;
        c.limits.tpm_limit = key.tpm_limit;
        c.limits.max_parallel_requests = key.max_parallel_requests;
        let overflow = c.roll_budget(self.clock.now()).and_then(|i| self.queue(i));
        let now = Instant::now();
        c.prune(now);
        let token = key.token.as_str();
        if let Some(limit) = c.limits.max_parallel_requests
            && c.in_flight >= limit
        {
            return (
                Err(rate_limited(
                    token,
                    LimitKind::Parallel,
                    limit,
                    Duration::from_secs(1),
                )),
                overflow,
            );
        }
        if let Some(limit) = c.limits.rpm_limit
            && c.requests.len() as u64 >= limit
        {
            let wait = c
                .requests
                .front()
                .map(|t| RATE_WINDOW.saturating_sub(now.duration_since(*t)))
                .unwrap_or(RATE_WINDOW);
            return (
                Err(rate_limited(token, LimitKind::Requests, limit, wait)),
                overflow,
            );
        }
        if let Some(limit) = c.limits.tpm_limit
            && c.token_sum + c.reserved_tokens >= limit
        {
            let wait = c
                .tokens
                .front()
                .map(|(t, _)| RATE_WINDOW.saturating_sub(now.duration_since(*t)))
                .unwrap_or(Duration::from_secs(1));
            return (
                Err(rate_limited(token, LimitKind::Tokens, limit, wait)),
                overflow,
            );
        }
        // Admit while spend plus what is already reserved is under the budget, like LiteLLM's
        // `spend >= max_budget` check but counting requests in flight: concurrent requests can
        // then overshoot by at most the last admitted one.
        if let Some(max) = c.limits.max_budget
            && c.spend.saturating_add(c.reserved) >= max
        {
            return (
                Err(AccessError::BudgetExceeded {
                    key_alias: c.limits.key_alias.clone(),
                    key_name: c.limits.key_name.clone(),
                    spend_nanos: c.spend,
                    max_budget_nanos: max,
                    reserved_nanos: c.reserved,
                    status: self.budget_exceeded_status,
                }),
                overflow,
            );
        }
        let estimate_nanos = estimate_nanos.max(0);
        c.reserved = c.reserved.saturating_add(estimate_nanos);
        c.reserved_tokens = c.reserved_tokens.saturating_add(estimate_tokens);
        c.in_flight += 1;
        if c.limits.rpm_limit.is_some() {
            c.requests.push_back(now);
        }
        let remaining_requests = c
            .limits
            .rpm_limit
            .map(|l| l.saturating_sub(c.requests.len() as u64));
        let remaining_tokens = c
            .limits
            .tpm_limit
            .map(|l| l.saturating_sub(c.token_sum + c.reserved_tokens));
        let ticket = Ticket {
            token: key.token.clone(),
            estimate_nanos,
            estimate_tokens,
            budget_window: c.limits.budget_duration,
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            remaining_requests,
            remaining_tokens,
        };
        (Ok(ticket), overflow)
    }

    fn unreserve(c: &mut Counters, ticket: &Ticket) {
        c.reserved = (c.reserved - ticket.estimate_nanos).max(0);
        c.reserved_tokens = c.reserved_tokens.saturating_sub(ticket.estimate_tokens);
        c.in_flight = c.in_flight.saturating_sub(1);
    }
}

impl Limiter for LocalLimiter {
    fn admit<'a>(
        &'a self,
        key: &'a KeyLimits,
        estimate_nanos: i64,
        estimate_tokens: u64,
    ) -> BoxFuture<'a, Result<Ticket, AccessError>> {
        Box::pin(async move {
            let (result, overflow) = self.admit_now(key, estimate_nanos, estimate_tokens);
            self.deliver(overflow).await;
            result
        })
    }

    fn settle(&self, ticket: Ticket, mut row: SpendLogRow) -> BoxFuture<'_, i64> {
        Box::pin(async move {
            row.api_key = ticket.row_api_key();
            let Some(counters) = self.existing(&ticket.token) else {
                // The key was deleted meanwhile: keep the log row all the same.
                self.writer.log(row).await;
                return 0;
            };
            let (spend, overflow) = {
                let mut c = counters.lock();
                let reset = c.roll_budget(self.clock.now());
                Self::unreserve(&mut c, &ticket);
                c.spend = c.spend.saturating_add(row.spend.max(0));
                if c.limits.tpm_limit.is_some() && row.total_tokens > 0 {
                    let n = row.total_tokens as u64;
                    c.tokens.push_back((Instant::now(), n));
                    c.token_sum = c.token_sum.saturating_add(n);
                }
                // Queue under the lock so the writer sees resets and spend in the same order.
                let mut overflow = Vec::new();
                if let Some(item) = reset.and_then(|i| self.queue(i)) {
                    overflow.push(item);
                }
                if let Some(item) = self.queue(BatchItem::Row(Box::new(row))) {
                    overflow.push(item);
                }
                (c.spend, overflow)
            };
            for item in overflow {
                self.writer.send_item(item).await;
            }
            spend
        })
    }

    fn settle_counters(&self, ticket: Ticket, spend: i64, tokens: i64) -> BoxFuture<'_, i64> {
        Box::pin(async move {
            let Some(counters) = self.existing(&ticket.token) else {
                return 0;
            };
            let (spend, overflow) = {
                let mut c = counters.lock();
                let reset = c.roll_budget(self.clock.now());
                Self::unreserve(&mut c, &ticket);
                c.spend = c.spend.saturating_add(spend.max(0));
                if c.limits.tpm_limit.is_some() && tokens > 0 {
                    let n = tokens as u64;
                    c.tokens.push_back((Instant::now(), n));
                    c.token_sum = c.token_sum.saturating_add(n);
                }
                (c.spend, reset.and_then(|i| self.queue(i)))
            };
            self.deliver(overflow).await;
            spend
        })
    }

    fn release(&self, ticket: Ticket) {
        if let Some(counters) = self.existing(&ticket.token) {
            Self::unreserve(&mut counters.lock(), &ticket);
        }
    }

    fn spend(&self, token: &str) -> Option<i64> {
        self.existing(token).map(|c| c.lock().spend)
    }

    fn live<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Option<LiveSpend>> {
        let live = self.existing(token).map(|c| {
            let c = c.lock();
            LiveSpend {
                spend: c.spend,
                reserved: c.reserved,
            }
        });
        Box::pin(async move { live })
    }

    fn reconfigure(&self, key: &KeyLimits, spend_overwritten: bool) {
        let Some(counters) = self.existing(&key.token) else {
            return;
        };
        let mut c = counters.lock();
        let window_changed = c.limits.budget_duration != key.budget_duration;
        let reset_at = if window_changed {
            key.budget_reset_at
        } else {
            c.limits.budget_reset_at
        };
        c.limits = KeyLimits {
            budget_reset_at: reset_at,
            ..key.clone()
        };
        if spend_overwritten {
            c.spend = key.spend;
        }
    }

    fn forget(&self, token: &str) {
        self.keys.write().remove(token);
    }

    fn tick(&self, now: DateTime<Utc>) -> HashSet<String> {
        let keys: Vec<(String, Arc<Mutex<Counters>>)> = self
            .keys
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut overflow = Vec::new();
        for (_, counters) in &keys {
            let mut c = counters.lock();
            if let Some(item) = c.roll_budget(now).and_then(|i| self.queue(i)) {
                overflow.push(item);
            }
        }
        if !overflow.is_empty() {
            let writer = self.writer.clone();
            tokio::spawn(async move {
                for item in overflow {
                    writer.send_item(item).await;
                }
            });
        }
        keys.into_iter().map(|(k, _)| k).collect()
    }
}
