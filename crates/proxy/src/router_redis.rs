//! Router state shared by a fleet of gateways through Redis (`router_settings.redis_url`, or
//! `redis_host`/`redis_port`/`redis_password`): cooldowns and per-minute request/token counts.
//!
//! The routing crate asks its state synchronously on every pick, so nothing here waits on
//! Redis: answers come from local atomics, and a background task (every
//! [`SYNC_INTERVAL`]) pushes this instance's increments and cooldowns and reads back the
//! fleet's. Other instances' cooldowns and usage are therefore seen up to one interval late,
//! which is what LiteLLM's in-memory-plus-Redis cache does too. Outcome counts (failure rates)
//! stay per instance. If Redis is unreachable the gateway keeps routing on local state.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use idlehands_clock::Clock;
use idlehands_routing::{DeploymentKey, InMemoryState, MinuteOutcomes, RouterState};

/// How often this instance exchanges state with Redis.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(200);
/// Usage keys outlive their minute by this much.
const USAGE_TTL_SECS: i64 = 120;
const PREFIX: &str = "idlehands:router:";

/// A count that belongs to one minute: minute (low 24 bits) in the top 24 bits, count in the
/// low 40, so reading and bumping is one atomic operation.
#[derive(Default)]
struct Tagged(AtomicU64);

const COUNT_BITS: u32 = 40;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

fn tag(minute: u64) -> u64 {
    (minute & ((1 << (64 - COUNT_BITS)) - 1)) << COUNT_BITS
}

impl Tagged {
    fn get(&self, minute: u64) -> u64 {
        let v = self.0.load(Ordering::Acquire);
        if v & !COUNT_MASK == tag(minute) {
            v & COUNT_MASK
        } else {
            0
        }
    }

    fn set(&self, minute: u64, n: u64) {
        self.0
            .store(tag(minute) | n.min(COUNT_MASK), Ordering::Release);
    }

    fn add(&self, minute: u64, n: u64) {
        let t = tag(minute);
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                let count = if cur & !COUNT_MASK == t {
                    cur & COUNT_MASK
                } else {
                    0
                };
                Some(t | count.saturating_add(n).min(COUNT_MASK))
            });
    }

    /// Take what was counted for `minute` (0 if the value is from another minute).
    fn take(&self, minute: u64) -> u64 {
        let v = self.0.swap(tag(minute), Ordering::AcqRel);
        if v & !COUNT_MASK == tag(minute) {
            v & COUNT_MASK
        } else {
            0
        }
    }
}

#[derive(Default)]
struct Slot {
    /// Cooldown end announced by any instance.
    fleet_cooldown: AtomicU64,
    /// Cooldown end decided here and not yet published.
    unpublished_cooldown: AtomicU64,
    /// Other instances' counts this minute, as of the last sync.
    others_requests: Tagged,
    others_tokens: Tagged,
    /// This instance's counts not yet added to Redis.
    pending_requests: Tagged,
    pending_tokens: Tagged,
    /// This instance's counts already added to Redis this minute.
    sent_requests: Tagged,
    sent_tokens: Tagged,
}

struct Shared {
    ids: Box<[String]>,
    slots: Box<[Slot]>,
    /// The router's clock: the minute published to is the minute the router counts in.
    clock: Arc<dyn Clock>,
}

/// A [`RouterState`] whose cooldowns and usage are shared through Redis.
pub struct RedisRouterState {
    local: InMemoryState,
    shared: Arc<Shared>,
    sync: tokio::task::JoinHandle<()>,
}

impl Drop for RedisRouterState {
    fn drop(&mut self) {
        self.sync.abort();
    }
}

impl RedisRouterState {
    /// State for deployments with these ids (in router slot order). Connects in the background,
    /// so it must be called inside a Tokio runtime; `None` outside one.
    pub fn start(
        client: redis::Client,
        ids: Vec<String>,
        clock: Arc<dyn Clock>,
    ) -> Option<RedisRouterState> {
        let rt = tokio::runtime::Handle::try_current().ok()?;
        let shared = Arc::new(Shared {
            slots: ids.iter().map(|_| Slot::default()).collect(),
            ids: ids.into_boxed_slice(),
            clock,
        });
        let sync = rt.spawn(sync_loop(client, shared.clone()));
        Some(RedisRouterState {
            local: InMemoryState::new(shared.ids.len()),
            shared,
            sync,
        })
    }

    fn slot(&self, d: DeploymentKey<'_>) -> Option<&Slot> {
        self.shared.slots.get(d.slot)
    }
}

impl RouterState for RedisRouterState {
    fn cooldown_until_ms(&self, d: DeploymentKey<'_>) -> u64 {
        let fleet = self
            .slot(d)
            .map_or(0, |s| s.fleet_cooldown.load(Ordering::Acquire));
        self.local.cooldown_until_ms(d).max(fleet)
    }

    fn extend_cooldown(&self, d: DeploymentKey<'_>, until_ms: u64) {
        self.local.extend_cooldown(d, until_ms);
        if let Some(s) = self.slot(d) {
            s.unpublished_cooldown.fetch_max(until_ms, Ordering::AcqRel);
        }
    }

    fn rpm_used(&self, d: DeploymentKey<'_>, minute: u64) -> u64 {
        let others = self.slot(d).map_or(0, |s| s.others_requests.get(minute));
        self.local.rpm_used(d, minute).saturating_add(others)
    }

    fn tpm_used(&self, d: DeploymentKey<'_>, minute: u64) -> u64 {
        let others = self.slot(d).map_or(0, |s| s.others_tokens.get(minute));
        self.local.tpm_used(d, minute).saturating_add(others)
    }

    fn try_acquire_request(&self, d: DeploymentKey<'_>, minute: u64, limit: Option<u64>) -> bool {
        let Some(s) = self.slot(d) else {
            return false;
        };
        let others = s.others_requests.get(minute);
        let limit = limit.map(|l| l.saturating_sub(others));
        if !self.local.try_acquire_request(d, minute, limit) {
            return false;
        }
        s.pending_requests.add(minute, 1);
        true
    }

    fn add_tokens(&self, d: DeploymentKey<'_>, minute: u64, tokens: u64) {
        self.local.add_tokens(d, minute, tokens);
        if let Some(s) = self.slot(d) {
            s.pending_tokens.add(minute, tokens);
        }
    }

    fn record_outcome(&self, d: DeploymentKey<'_>, minute: u64, success: bool) -> MinuteOutcomes {
        self.local.record_outcome(d, minute, success)
    }

    fn outcomes(&self, d: DeploymentKey<'_>, minute: u64) -> MinuteOutcomes {
        self.local.outcomes(d, minute)
    }
}

fn cooldown_key(id: &str) -> String {
    format!("{PREFIX}{{{id}}}:cooldown")
}

fn usage_key(id: &str, what: &str, minute: u64) -> String {
    format!("{PREFIX}{{{id}}}:{what}:{minute}")
}

async fn sync_loop(client: redis::Client, shared: Arc<Shared>) {
    let mut conn = None;
    let mut warned = false;
    let mut tick = tokio::time::interval(SYNC_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if conn.is_none() {
            match client.get_connection_manager().await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    if !warned {
                        tracing::warn!(error = %e, "router state: Redis unreachable; routing on this instance's state alone");
                        warned = true;
                    }
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        match sync_once(c, &shared).await {
            Ok(()) => warned = false,
            Err(e) => {
                if !warned {
                    tracing::warn!(error = %e, "router state: Redis sync failed; routing on this instance's state alone");
                    warned = true;
                }
            }
        }
    }
}

/// One exchange: publish cooldowns and increments, then read the fleet's totals back, in one
/// pipelined round trip.
async fn sync_once(
    conn: &mut redis::aio::ConnectionManager,
    shared: &Shared,
) -> redis::RedisResult<()> {
    let now = shared.clock.now_ms();
    let minute = now / 60_000;
    let mut pipe = redis::pipe();
    let mut sent = Vec::new();
    for (i, (id, s)) in shared.ids.iter().zip(shared.slots.iter()).enumerate() {
        let until = s.unpublished_cooldown.swap(0, Ordering::AcqRel);
        if until > now {
            pipe.cmd("SET")
                .arg(cooldown_key(id))
                .arg(until)
                .arg("PX")
                .arg(until - now)
                .ignore();
        }
        for (what, pending) in [("rpm", &s.pending_requests), ("tpm", &s.pending_tokens)] {
            let n = pending.take(minute);
            if n > 0 {
                let key = usage_key(id, what, minute);
                pipe.cmd("INCRBY").arg(&key).arg(n).ignore();
                pipe.cmd("EXPIRE").arg(&key).arg(USAGE_TTL_SECS).ignore();
                sent.push((i, what, n));
            }
        }
        pipe.cmd("GET").arg(cooldown_key(id));
        pipe.cmd("GET").arg(usage_key(id, "rpm", minute));
        pipe.cmd("GET").arg(usage_key(id, "tpm", minute));
    }
    let values: Vec<Option<u64>> = pipe.query_async(conn).await?;
    for (i, what, n) in sent {
        let s = &shared.slots[i];
        match what {
            "rpm" => s.sent_requests.add(minute, n),
            _ => s.sent_tokens.add(minute, n),
        }
    }
    for (s, v) in shared.slots.iter().zip(values.chunks(3)) {
        let [cooldown, requests, tokens] = v else {
            continue;
        };
        s.fleet_cooldown
            .store(cooldown.unwrap_or(0), Ordering::Release);
        let others = |total: &Option<u64>, mine: &Tagged| {
            total.unwrap_or(0).saturating_sub(mine.get(minute))
        };
        s.others_requests
            .set(minute, others(requests, &s.sent_requests));
        s.others_tokens.set(minute, others(tokens, &s.sent_tokens));
    }
    Ok(())
}

/// The Redis URL from `router_settings`: `redis_url`, else `redis_host` (+ `redis_port`,
/// `redis_password`).
pub fn redis_url(rs: &crate::config::RouterSettings) -> Option<String> {
    if let Some(u) = &rs.redis_url {
        return Some(u.expose().to_string());
    }
    let host = rs.redis_host.as_deref()?;
    let port = rs.redis_port.unwrap_or(6379);
    let password = rs.redis_password.as_ref().map(|p| p.expose());
    Some(
        crate::config::redis_address(host, &port.to_string(), "", password)
            .unwrap_or_else(|| format!("redis://{host}:{port}")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_counts_reset_with_the_minute() {
        let t = Tagged::default();
        t.add(7, 3);
        t.add(7, 2);
        assert_eq!(t.get(7), 5);
        assert_eq!(t.get(8), 0);
        t.add(8, 1);
        assert_eq!(t.get(8), 1);
        assert_eq!(t.take(8), 1);
        assert_eq!(t.get(8), 0);
        t.set(9, 4);
        assert_eq!((t.get(9), t.take(10)), (4, 0));
    }

    #[test]
    fn redis_url_from_router_settings() {
        use crate::config::{RouterSettings, Secret};
        let mut rs = RouterSettings::default();
        assert_eq!(redis_url(&rs), None);
        rs.redis_host = Some("cache".into());
        assert_eq!(redis_url(&rs).as_deref(), Some("redis://cache:6379"));
        rs.redis_port = Some(6380);
        rs.redis_password = Some(Secret::new("pw"));
        assert_eq!(redis_url(&rs).as_deref(), Some("redis://:pw@cache:6380"));
        rs.redis_url = Some(Secret::new("redis://other:1"));
        assert_eq!(redis_url(&rs).as_deref(), Some("redis://other:1"));
    }
}
