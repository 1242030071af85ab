//! Cached responses in Redis, under `{redis_key_prefix}cache:{key}`: shared by every instance
//! pointed at the same Redis. Each command waits at most [`WAIT`]; a failure is a miss (or a
//! response not kept) and is logged once per outage, not once per call. After a failure the
//! calls skip Redis for [`RETRY_AFTER`] (one probe then), so an unreachable Redis costs them
//! nothing rather than a wait each.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use idlehands_clock::{Clock, SystemClock};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// A cache lookup sits in front of the upstream call: it must never cost more than a miss.
const WAIT: Duration = Duration::from_millis(500);
/// How long calls go uncached after Redis failed before it is asked again.
const RETRY_AFTER: Duration = Duration::from_secs(5);

pub(super) struct RedisStore {
    client: redis::Client,
    conn: tokio::sync::OnceCell<ConnectionManager>,
    prefix: String,
    /// An outage was logged and Redis has not answered since.
    failing: AtomicBool,
    /// Until when (unix ms) calls skip Redis after a failure.
    skip_until_ms: AtomicU64,
}

impl RedisStore {
    pub fn new(url: &str, prefix: &str) -> Result<RedisStore, String> {
        let client = redis::Client::open(url).map_err(|e| format!("{:?}", e.kind()))?;
        Ok(RedisStore {
            client,
            conn: tokio::sync::OnceCell::new(),
            prefix: format!("{prefix}cache:"),
            failing: AtomicBool::new(false),
            skip_until_ms: AtomicU64::new(0),
        })
    }

    fn redis_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    async fn conn(&self) -> Result<ConnectionManager, String> {
        let make = || async {
            let config = ConnectionManagerConfig::new()
                .set_number_of_retries(1)
                .set_connection_timeout(WAIT)
                .set_response_timeout(WAIT);
            self.client
                .get_connection_manager_with_config(config)
                .await
                .map_err(|e| e.to_string())
        };
        self.conn.get_or_try_init(make).await.cloned()
    }

    /// Runs `cmd`, bounded by [`WAIT`]; logs the first failure of an outage.
    async fn run<T: redis::FromRedisValue>(&self, cmd: redis::Cmd, what: &str) -> Option<T> {
        let now = SystemClock.now_ms();
        if now < self.skip_until_ms.load(Ordering::Relaxed) {
            return None;
        }
        let out = tokio::time::timeout(WAIT, async {
            let mut conn = self.conn().await?;
            cmd.query_async::<T>(&mut conn)
                .await
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} ms", WAIT.as_millis())));
        match out {
            Ok(v) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("response cache: Redis answers again");
                }
                Some(v)
            }
            Err(e) => {
                let retry = u64::try_from(RETRY_AFTER.as_millis()).unwrap_or(u64::MAX);
                self.skip_until_ms.store(
                    SystemClock.now_ms().saturating_add(retry),
                    Ordering::Relaxed,
                );
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "response cache: Redis {what} failed; calls go to the model uncached until it answers");
                }
                None
            }
        }
    }

    pub async fn get(&self, key: &str) -> Option<Bytes> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.redis_key(key));
        self.run::<Option<Vec<u8>>>(cmd, "lookup")
            .await
            .flatten()
            .map(Bytes::from)
    }

    pub async fn put(&self, key: &str, value: Bytes, ttl: Option<Duration>) {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.redis_key(key)).arg(value.as_ref());
        if let Some(t) = ttl {
            cmd.arg("PX")
                .arg(u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1));
        }
        let _: Option<()> = self.run(cmd, "store").await;
    }

    pub async fn delete(&self, keys: &[String]) -> Result<u64, String> {
        if keys.is_empty() {
            return Ok(0);
        }
        let mut cmd = redis::cmd("DEL");
        for k in keys {
            cmd.arg(self.redis_key(k));
        }
        self.run::<u64>(cmd, "delete")
            .await
            .ok_or_else(|| "Redis did not answer".to_string())
    }

    /// Deletes the cache's keys only (`SCAN` over the prefix), never `FLUSHALL`: the same
    /// Redis holds the fleet's budgets and rate limits.
    pub async fn flush(&self) -> Result<u64, String> {
        let mut conn = self.conn().await?;
        let pattern = format!("{}*", self.prefix);
        let mut cursor: u64 = 0;
        let mut deleted = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(500)
                .query_async(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            if !keys.is_empty() {
                let n: u64 = redis::cmd("DEL")
                    .arg(&keys)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                deleted += n;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    pub async fn ping(&self) -> Result<(), String> {
        let pong: String = tokio::time::timeout(WAIT, async {
            let mut conn = self.conn().await?;
            redis::cmd("PING")
                .query_async(&mut conn)
                .await
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|_| format!("no answer within {} ms", WAIT.as_millis()))??;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(format!("PING answered {pong:?}"))
        }
    }

    pub async fn info(&self) -> Result<Vec<(String, String)>, String> {
        let mut conn = self.conn().await?;
        let text: String = redis::cmd("INFO")
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect())
    }
}
