//! A fleet's shared limits: budgets and rpm/tpm/parallel counters in Redis (one Lua script per
//! check-and-reserve), key changes broadcast to every instance. What happens when Redis cannot
//! be reached is chosen by `general_settings.redis_failure_mode`:
//!
//! - `closed` (default): the proxy refuses to start without Redis, and while Redis is down
//!   every virtual-key request is refused with 503 (master-key requests still pass). Limits are
//!   never enforced per instance behind the operator's back.
//! - `open`: requests are admitted against this instance's own counters (budgets and limits
//!   then hold per instance, not per fleet) and every such admission is logged at warn level;
//!   Redis is used again as soon as it answers. Starting without Redis is allowed, with an
//!   error logged, and stays per-instance until a restart.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};
use idlehands_store::limiter::BoxFuture;
use idlehands_store::{
    AccessError, KeyLimits, Ledger, LedgerConfig, Limiter, LocalLimiter, RedisLimiter,
    SpendLogRow, SpendWriter, Store, StoreError, Ticket, subscribe_invalidations,
};
use tokio::task::JoinHandle;

use super::RedisSettings;

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

/// Tickets from the local fallback carry this bit in their id, so settling finds their
/// limiter.
const LOCAL_TICKET: u64 = 1 << 63;

/// `open` mode: Redis first, this instance's counters when Redis fails.
struct FailOpen {
    redis: Option<RedisLimiter>,
    local: LocalLimiter,
    /// Epoch seconds of the last "Redis down" warning, so an outage logs once a second.
    last_warning: AtomicI64,
}

impl FailOpen {
    fn warn(&self) {
        let now = Utc::now().timestamp();
        if self.last_warning.swap(now, Ordering::Relaxed) != now {
            tracing::warn!(
                "redis unreachable: admitting against this instance's own counters (general_settings.redis_failure_mode: open)"
            );
        }
    }
}

impl Limiter for FailOpen {
    fn admit<'a>(
        &'a self,
        key: &'a KeyLimits,
        estimate_nanos: i64,
        estimate_tokens: u64,
    ) -> BoxFuture<'a, Result<Ticket, AccessError>> {
        Box::pin(async move {
            if let Some(redis) = &self.redis {
                match redis.admit(key, estimate_nanos, estimate_tokens).await {
                    Err(AccessError::Unavailable) => {}
                    other => return other,
                }
            }
            self.warn();
            let mut ticket = self
                .local
                .admit(key, estimate_nanos, estimate_tokens)
                .await?;
            ticket.id |= LOCAL_TICKET;
            Ok(ticket)
        })
    }

    fn settle(&self, mut ticket: Ticket, row: SpendLogRow) -> BoxFuture<'_, i64> {
        match &self.redis {
            Some(redis) if ticket.id & LOCAL_TICKET == 0 => redis.settle(ticket, row),
            _ => {
                ticket.id &= !LOCAL_TICKET;
                self.local.settle(ticket, row)
            }
        }
    }

    fn release(&self, mut ticket: Ticket) {
        match &self.redis {
            Some(redis) if ticket.id & LOCAL_TICKET == 0 => redis.release(ticket),
            _ => {
                ticket.id &= !LOCAL_TICKET;
                self.local.release(ticket)
            }
        }
    }

    fn spend(&self, token: &str) -> Option<i64> {
        self.redis
            .as_ref()
            .and_then(|r| r.spend(token))
            .or_else(|| self.local.spend(token))
    }

    fn reconfigure(&self, key: &KeyLimits, spend_overwritten: bool) {
        if let Some(r) = &self.redis {
            r.reconfigure(key, spend_overwritten);
        }
        self.local.reconfigure(key, spend_overwritten);
    }

    fn forget(&self, token: &str) {
        if let Some(r) = &self.redis {
            r.forget(token);
        }
        self.local.forget(token);
    }

    fn tick(&self, now: DateTime<Utc>) -> HashSet<String> {
        self.local.tick(now)
    }
}

/// The ledger for a Redis-backed fleet, and the invalidation listener when there is one.
pub(super) async fn start(
    store: Store,
    cfg: LedgerConfig,
    redis: &RedisSettings,
) -> Result<(Ledger, Option<JoinHandle<()>>), StoreError> {
    match redis.failure_mode {
        RedisFailureMode::Closed => {
            let (ledger, listener) =
                Ledger::start_with_redis(store, cfg, &redis.url, &redis.prefix)
                    .await
                    .map_err(|e| {
                        StoreError::Internal(format!(
                            "cannot reach Redis ({e}); general_settings.redis_failure_mode is `closed`, so the proxy does not start without it (set it to `open` to run with per-instance limits while Redis is down)"
                        ))
                    })?;
            Ok((ledger, Some(listener)))
        }
        RedisFailureMode::Open => {
            let writer = SpendWriter::start(store.clone(), cfg.writer.clone());
            let shared = match RedisLimiter::connect(
                &redis.url,
                &redis.prefix,
                writer.clone(),
                cfg.budget_exceeded_status,
            )
            .await
            {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::error!(
                        error = %e,
                        "cannot reach Redis at start-up: budgets and limits are per instance until a restart (general_settings.redis_failure_mode: open)"
                    );
                    None
                }
            };
            let connected = shared.is_some();
            let limiter = Arc::new(FailOpen {
                redis: shared,
                local: LocalLimiter::new(writer.clone(), cfg.budget_exceeded_status),
                last_warning: AtomicI64::new(0),
            });
            let ledger = Ledger::with_limiter(store, writer, limiter, cfg);
            let listener = if connected {
                match subscribe_invalidations(
                    &ledger,
                    &redis.url,
                    &format!("{}invalidate", redis.prefix),
                )
                .await
                {
                    Ok(l) => Some(l),
                    Err(e) => {
                        tracing::error!(error = %e, "key invalidations from other instances are off");
                        None
                    }
                }
            } else {
                None
            };
            Ok((ledger, listener))
        }
    }
}
