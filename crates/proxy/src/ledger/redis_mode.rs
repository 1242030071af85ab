//! A fleet's shared limits: budgets and rpm/tpm/parallel counters in Redis (one Lua script per
//! check-and-reserve), key changes broadcast to every instance. What happens when Redis cannot
//! be reached is chosen by `general_settings.redis_failure_mode`:
//!
//! - `closed` (default): the proxy refuses to start when Redis does not answer within 3 s, and
//!   while Redis is down every virtual-key request is refused at once with 503
//!   `service_unavailable` (master-key requests still pass). Limits are never enforced per
//!   instance behind the operator's back.
//! - `open`: requests are admitted against this instance's own counters (budgets and limits
//!   then hold per instance, not per fleet), logged at warn level once a second; Redis is
//!   used again as soon as it answers. Starting without Redis is allowed, with an error
//!   logged; limits are per instance until Redis answers (retried every second or two).
//!
//! A failed Redis command marks Redis down; from then on requests do not wait on it, and a
//! probe PINGs it every [`PROBE_EVERY`] until it answers again.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use idlehands_store::limiter::BoxFuture;
use idlehands_store::{
    AccessError, KeyLimits, Ledger, LedgerConfig, Limiter, LiveSpend, LocalLimiter, RedisLimiter,
    SpendLogRow, SpendWriter, Store, StoreError, Ticket, subscribe_invalidations,
};
use tokio::task::JoinHandle;

use super::RedisSettings;
use crate::state::RedisState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisFailureMode {
    Closed,
    Open,
}

impl RedisFailureMode {
    pub fn parse(s: &str) -> Option<RedisFailureMode> {
        match s.to_ascii_lowercase().as_str() {
            "closed" | "fail_closed" | "fail-closed" => Some(RedisFailureMode::Closed),
            "open" | "fail_open" | "fail-open" => Some(RedisFailureMode::Open),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RedisFailureMode::Closed => "closed",
            RedisFailureMode::Open => "open",
        }
    }
}

/// How long start-up waits for Redis, and a request for its admission script, before Redis
/// counts as down. (The client's own reconnect backoff would otherwise hold a request or the
/// start-up for minutes.)
const REDIS_WAIT: Duration = Duration::from_secs(3);

/// How often a Redis marked down is asked again (and a healthy one checked).
pub(super) const PROBE_EVERY: Duration = Duration::from_millis(250);

/// The instance's current [`RedisState`], kept by the probe.
#[derive(Clone)]
pub struct RedisStatus(Arc<AtomicU8>);

impl RedisStatus {
    pub fn get(&self) -> RedisState {
        RedisState::from_u8(self.0.load(Ordering::Relaxed))
    }
}

/// Tickets from the local fallback carry this bit in their id, so settling finds their
/// limiter.
const LOCAL_TICKET: u64 = 1 << 63;

/// Redis first; when it fails, refuse (`closed`) or use this instance's counters (`open`).
struct Shared {
    /// Set at start-up, or later in `open` mode when Redis was down at start-up.
    redis: std::sync::OnceLock<RedisLimiter>,
    /// `open` mode only.
    local: Option<LocalLimiter>,
    /// Epoch seconds of the last "Redis down" log line, so an outage logs once a second.
    last_warning: AtomicI64,
}

impl Shared {
    fn warn(&self) {
        let now = Utc::now().timestamp();
        if self.last_warning.swap(now, Ordering::Relaxed) != now {
            if self.local.is_some() {
                tracing::warn!(
                    "redis unreachable: admitting against this instance's own counters (general_settings.redis_failure_mode: open)"
                );
            } else {
                tracing::error!(
                    "redis unreachable: refusing virtual-key requests with 503 (general_settings.redis_failure_mode: closed)"
                );
            }
        }
    }
}

impl Limiter for Shared {
    fn admit<'a>(
        &'a self,
        key: &'a KeyLimits,
        estimate_nanos: i64,
        estimate_tokens: u64,
    ) -> BoxFuture<'a, Result<Ticket, AccessError>> {
        Box::pin(async move {
            // Known down: no wait at all, until the probe sees Redis answer.
            if let Some(redis) = self.redis.get().filter(|r| r.is_up()) {
                let admitted = tokio::time::timeout(
                    REDIS_WAIT,
                    redis.admit(key, estimate_nanos, estimate_tokens),
                )
                .await;
                match admitted {
                    Ok(Err(AccessError::Unavailable)) | Err(_) => redis.mark_down(),
                    Ok(other) => return other,
                }
            }
            self.warn();
            let Some(local) = &self.local else {
                return Err(AccessError::Unavailable);
            };
            let mut ticket = local.admit(key, estimate_nanos, estimate_tokens).await?;
            ticket.id |= LOCAL_TICKET;
            Ok(ticket)
        })
    }

    fn settle(&self, mut ticket: Ticket, row: SpendLogRow) -> BoxFuture<'_, i64> {
        match (self.redis.get(), &self.local) {
            (_, Some(local)) if ticket.id & LOCAL_TICKET != 0 => {
                ticket.id &= !LOCAL_TICKET;
                local.settle(ticket, row)
            }
            (Some(redis), _) => redis.settle(ticket, row),
            (None, Some(local)) => local.settle(ticket, row),
            (None, None) => Box::pin(async { 0 }),
        }
    }

    fn settle_counters(&self, mut ticket: Ticket, spend: i64, tokens: i64) -> BoxFuture<'_, i64> {
        match (self.redis.get(), &self.local) {
            (_, Some(local)) if ticket.id & LOCAL_TICKET != 0 => {
                ticket.id &= !LOCAL_TICKET;
                local.settle_counters(ticket, spend, tokens)
            }
            (Some(redis), _) => redis.settle_counters(ticket, spend, tokens),
            (None, Some(local)) => local.settle_counters(ticket, spend, tokens),
            (None, None) => Box::pin(async { 0 }),
        }
    }

    fn release(&self, mut ticket: Ticket) {
        match (self.redis.get(), &self.local) {
            (_, Some(local)) if ticket.id & LOCAL_TICKET != 0 => {
                ticket.id &= !LOCAL_TICKET;
                local.release(ticket)
            }
            (Some(redis), _) => redis.release(ticket),
            (None, Some(local)) => local.release(ticket),
            (None, None) => {}
        }
    }

    fn spend(&self, token: &str) -> Option<i64> {
        self.redis
            .get()
            .and_then(|r| r.spend(token))
            .or_else(|| self.local.as_ref().and_then(|l| l.spend(token)))
    }

    fn live<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Option<LiveSpend>> {
        Box::pin(async move {
            if let Some(r) = self.redis.get()
                && let Some(live) = r.live(token).await
            {
                return Some(live);
            }
            match &self.local {
                Some(l) => l.live(token).await,
                None => None,
            }
        })
    }

    fn reconfigure(&self, key: &KeyLimits, spend_overwritten: bool) {
        if let Some(r) = self.redis.get() {
            r.reconfigure(key, spend_overwritten);
        }
        if let Some(l) = &self.local {
            l.reconfigure(key, spend_overwritten);
        }
    }

    fn forget(&self, token: &str) {
        if let Some(r) = self.redis.get() {
            r.forget(token);
        }
        if let Some(l) = &self.local {
            l.forget(token);
        }
    }

    fn tick(&self, now: DateTime<Utc>) -> HashSet<String> {
        self.local.as_ref().map(|l| l.tick(now)).unwrap_or_default()
    }

    fn invalidated(&self, token: &str) {
        if let Some(r) = self.redis.get() {
            r.invalidated(token);
        }
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(r) = self.redis.get().filter(|r| r.is_up()) {
                let _ = tokio::time::timeout(REDIS_WAIT, r.shutdown()).await;
            }
        })
    }
}

async fn within<T>(
    what: &str,
    work: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(REDIS_WAIT, work).await {
        Ok(r) => r,
        Err(_) => Err(StoreError::Internal(format!(
            "{what}: no answer within {}s",
            REDIS_WAIT.as_secs()
        ))),
    }
}

/// The ledger for a Redis-backed fleet, its Redis state, and its background tasks (the
/// invalidation listener and the Redis probe).
pub(super) async fn start(
    store: Store,
    cfg: LedgerConfig,
    redis: &RedisSettings,
) -> Result<(Ledger, RedisStatus, Vec<JoinHandle<()>>), StoreError> {
    let open = redis.failure_mode == RedisFailureMode::Open;
    let writer = SpendWriter::start(store.clone(), cfg.writer.clone());
    let connected = within(
        "connecting to Redis",
        RedisLimiter::connect(
            &redis.url,
            &redis.prefix,
            writer.clone(),
            cfg.budget_exceeded_status,
            cfg.clock.clone(),
        ),
    )
    .await
    .map(|r| r.with_instance_timeout(redis.instance_timeout));
    let shared = match connected {
        Ok(r) => Some(r),
        Err(e) if open => {
            tracing::error!(
                error = %e,
                "cannot reach Redis at start-up: budgets and limits are per instance until it answers; retrying (general_settings.redis_failure_mode: open)"
            );
            None
        }
        Err(e) => {
            let _ = writer.shutdown().await;
            return Err(StoreError::Internal(format!(
                "cannot reach Redis ({e}); general_settings.redis_failure_mode is `closed`, so the proxy does not start without it (set it to `open` to run with per-instance limits while Redis is down)"
            )));
        }
    };
    let has_redis = shared.is_some();
    let down = if open {
        RedisState::PerInstance
    } else {
        RedisState::Refusing
    };
    let status = RedisStatus(Arc::new(AtomicU8::new(if has_redis {
        RedisState::Shared as u8
    } else {
        down as u8
    })));
    let limiter = Arc::new(Shared {
        redis: std::sync::OnceLock::new(),
        local: open.then(|| {
            LocalLimiter::new(
                writer.clone(),
                cfg.budget_exceeded_status,
                cfg.clock.clone(),
            )
        }),
        last_warning: AtomicI64::new(0),
    });
    if let Some(r) = shared {
        let _ = limiter.redis.set(r);
    }
    let mut tasks = Vec::new();
    let weak = Arc::downgrade(&limiter);
    let probe_status = status.clone();
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(PROBE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(limiter) = weak.upgrade() else {
                return;
            };
            // Not connected yet (open mode, Redis down at start-up): still per instance.
            let Some(redis) = limiter.redis.get() else {
                continue;
            };
            let state = if redis.probe().await {
                RedisState::Shared
            } else {
                down
            };
            probe_status.0.store(state as u8, Ordering::Relaxed);
        }
    }));
    let ledger = Ledger::with_limiter(store, writer.clone(), limiter.clone(), cfg.clone());
    let channel = format!("{}invalidate", redis.prefix);
    if has_redis {
        match within(
            "subscribing to key invalidations",
            subscribe_invalidations(&ledger, &redis.url, &channel),
        )
        .await
        {
            Ok(l) => tasks.push(l),
            Err(e) if open => {
                tracing::error!(error = %e, "cannot subscribe to key invalidations; retrying every second, until then key changes on other instances reach this one after the cache ttl");
                let (ledger, url) = (ledger.clone(), redis.url.clone());
                tasks.push(tokio::spawn(late_subscription(ledger, url, channel)));
            }
            Err(e) => {
                let _ = ledger.shutdown().await;
                return Err(e);
            }
        }
    } else {
        // `open` mode without Redis at start-up: keep trying, and share limits once it answers.
        let (ledger, settings) = (ledger.clone(), redis.clone());
        let budget_status = cfg.budget_exceeded_status;
        let clock = cfg.clock.clone();
        tasks.push(tokio::spawn(async move {
            let mut wait = Duration::from_millis(500);
            let connected = loop {
                tokio::time::sleep(wait).await;
                let attempt = within(
                    "connecting to Redis",
                    RedisLimiter::connect(
                        &settings.url,
                        &settings.prefix,
                        writer.clone(),
                        budget_status,
                        clock.clone(),
                    ),
                )
                .await
                .map(|r| r.with_instance_timeout(settings.instance_timeout));
                match attempt {
                    Ok(r) => break r,
                    Err(_) => wait = (wait * 2).min(LATE_RETRY_MAX),
                }
            };
            let _ = limiter.redis.set(connected);
            drop(limiter);
            tracing::info!("redis answers: budgets and limits are shared by the fleet from now on");
            late_subscription(ledger, settings.url, channel).await;
        }));
    }
    Ok((ledger, status, tasks))
}

/// Longest wait between two tries to reach Redis after it was down at start-up.
const LATE_RETRY_MAX: Duration = Duration::from_secs(2);

/// Subscribes to key invalidations, retrying until Redis lets it, then re-reads every key
/// (changes announced before were missed) and listens until aborted.
async fn late_subscription(ledger: Ledger, url: String, channel: String) {
    let mut wait = Duration::from_millis(500);
    let listener = loop {
        tokio::time::sleep(wait).await;
        match within(
            "subscribing to key invalidations",
            subscribe_invalidations(&ledger, &url, &channel),
        )
        .await
        {
            Ok(l) => break l,
            Err(_) => wait = (wait * 2).min(LATE_RETRY_MAX),
        }
    };
    ledger.reload_all().await;
    tracing::info!("subscribed to key invalidations; every key was re-read");
    // Aborting this task (shutdown) stops the listener too.
    struct AbortOnDrop(JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let mut guard = AbortOnDrop(listener);
    let _ = (&mut guard.0).await;
}
