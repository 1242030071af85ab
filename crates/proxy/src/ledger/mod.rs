//! The gateway on top of `idlehands-store`: where the database is (`--db`, then
//! `general_settings.database_url`, then env `DATABASE_URL`, then an embedded SQLite file),
//! whether budgets and limits are shared through Redis, and the seams that connect the store's
//! [`Ledger`] to the request path ([`StoreSeams`]) and to `/key/*`, `/spend/*`
//! ([`StoreHandle::routes`]).
//!
//! ```ignore
//! let settings = StoreSettings::from_config(&cfg, &process_env)?;
//! let store = StoreHandle::open(&settings).await?;
//! let gw = store.install(Gateway::builder(cfg)).build()?;
//! let gw = gw.clone().with_routes(store.routes(&gw));
//! serve(gw, listener, shutdown).await?;
//! store.shutdown().await; // commits every queued spend row
//! ```

mod model_budgets;
pub(crate) mod model_sync;
mod redis_mode;
pub(crate) mod seams;
pub(crate) mod tag_budgets;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use idlehands_store::duration::LlmDuration;
use idlehands_store::{Ledger, LedgerConfig, ProxyBudget, Store, StoreError, StoreOptions};
use tokio::task::JoinHandle;

pub use crate::state::RedisState;
pub use model_sync::{DEFAULT_MODEL_RELOAD, ModelStoreSettings, ModelSync};
pub use redis_mode::{RedisFailureMode, RedisStatus};
pub use seams::StoreSeams;

use crate::config::{ConfigError, ProxyConfig, invalid};
use crate::hooks::ResponseStore;
use crate::models::ApiModel;
use crate::state::{App, DbProbe, RedisProbe, SpendProbe};

/// The store's seams, probes, stored responses and deployments, as the gateway takes them.
pub(crate) struct GatewayParts {
    pub api_models: Vec<ApiModel>,
    pub responses: Arc<dyn ResponseStore>,
    pub health_log: Arc<dyn crate::hooks::HealthLog>,
    pub seams: Arc<StoreSeams>,
    pub db_probe: DbProbe,
    pub spend_probe: SpendProbe,
    pub redis_probe: Option<RedisProbe>,
    /// The store's clock, which the router judges cooldowns and minutes by too.
    pub clock: Arc<dyn idlehands_clock::Clock>,
}

/// File name of the embedded database inside the state directory.
pub const DEFAULT_DB_FILE: &str = "proxy.db";

/// Where keys and spend live, and how a fleet shares limits. Built from the config and the
/// environment once, at start-up.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// `postgresql://...`, `sqlite://...` or a file path.
    pub database_url: String,
    /// Where the URL came from, for the start-up line (never the URL itself: it may hold a
    /// password).
    pub database_source: &'static str,
    /// Postgres schema (tests isolate themselves with one); `None`: the server's default.
    pub pg_schema: Option<String>,
    pub redis: Option<RedisSettings>,
    pub ledger: LedgerConfig,
    /// `general_settings.database_connection_pool_limit`.
    pub pool_limit: Option<u32>,
    /// `general_settings.database_connection_timeout` (seconds in the file).
    pub connect_timeout: Option<Duration>,
    /// `general_settings.maximum_spend_logs_retention_period`: older spend rows are deleted.
    pub retention: Option<LlmDuration>,
    /// Postgres: the local file for spend rows a stop could not commit (replayed at the next
    /// start), in the state directory, named after the database so that stores never mix.
    pub pg_spill: Option<PathBuf>,
    /// `store_model_in_db`: deployments added over the API are kept in the store.
    pub models: Option<ModelStoreSettings>,
}

/// How often spend rows past the retention period are deleted (and once at start-up).
const RETENTION_SWEEP: Duration = Duration::from_secs(3600);

#[derive(Clone)]
pub struct RedisSettings {
    pub url: String,
    /// Every Redis key and the invalidation channel start with this (`idlehands:`).
    pub prefix: String,
    pub failure_mode: RedisFailureMode,
    /// How long another instance may go without a heartbeat before this one takes back what
    /// that one's unfinished calls held (`general_settings.redis_instance_timeout`, seconds).
    pub instance_timeout: Duration,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &"<redacted>")
            .field("prefix", &self.prefix)
            .field("failure_mode", &self.failure_mode)
            .field("instance_timeout", &self.instance_timeout)
            .finish()
    }
}

/// `litellm_settings.max_budget` (above 0, as LiteLLM reads it) with the `budget_duration`
/// LiteLLM requires beside it.
fn proxy_budget(cfg: &ProxyConfig) -> Result<Option<ProxyBudget>, ConfigError> {
    let ls = &cfg.file.litellm_settings;
    let Some(max) = ls.max_budget else {
        return Ok(None);
    };
    if !max.is_finite() || max < 0.0 {
        return Err(invalid(
            cfg,
            "litellm_settings.max_budget",
            format!("{max} is not a non-negative number of USD"),
        ));
    }
    if max == 0.0 {
        return Ok(None);
    }
    let Some(duration) = ls.budget_duration.as_deref().map(str::trim) else {
        return Err(invalid(
            cfg,
            "litellm_settings.budget_duration",
            "is required with litellm_settings.max_budget (the proxy-wide budget's window, e.g. 30d), as in LiteLLM".to_string(),
        ));
    };
    if let Err(e) = LlmDuration::parse_field(duration, "budget_duration") {
        return Err(invalid(
            cfg,
            "litellm_settings.budget_duration",
            e.to_string(),
        ));
    }
    Ok(Some(ProxyBudget {
        max_budget: max,
        budget_duration: duration.to_owned(),
    }))
}

fn extra_str<'c>(
    map: &'c std::collections::BTreeMap<String, serde_json::Value>,
    key: &str,
) -> Option<&'c str> {
    map.get(key).and_then(|v| v.as_str()).map(str::trim)
}

fn is_postgres(url: &str) -> bool {
    let u = url.trim();
    u.starts_with("postgres://") || u.starts_with("postgresql://")
}

/// `$IDLEHANDS_STATE_DIR/proxy.db`, else `$HOME/.idlehands/proxy.db` (the agent's state
/// directory), else `./.idlehands/proxy.db`.
pub fn default_database_path(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    let nonempty = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    let dir = match nonempty("IDLEHANDS_STATE_DIR") {
        Some(d) => PathBuf::from(d),
        None => nonempty("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".idlehands"),
    };
    dir.join(DEFAULT_DB_FILE)
}

impl StoreSettings {
    /// Reads the storage, Redis and budget settings; `env` stands in for the environment
    /// (`DATABASE_URL`, `REDIS_URL`/`REDIS_HOST`/`REDIS_PORT`/`REDIS_PASSWORD`,
    /// `IDLEHANDS_STATE_DIR`, `HOME`).
    pub fn from_config(
        cfg: &ProxyConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<StoreSettings, ConfigError> {
        let gs = &cfg.file.general_settings;
        let nonempty = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let (database_url, database_source) = if let Some(p) = &cfg.database_path {
            (p.display().to_string(), "--db")
        } else if let Some(u) = gs
            .database_url
            .as_ref()
            .map(|s| s.expose().trim().to_string())
            .filter(|s| !s.is_empty())
        {
            (u, "general_settings.database_url")
        } else if let Some(u) = nonempty("DATABASE_URL") {
            (u, "DATABASE_URL")
        } else {
            (default_database_path(env).display().to_string(), "default")
        };

        let mut ledger = LedgerConfig::default();
        if let Some(code) = cfg.file.litellm_settings.budget_exceeded_status_code {
            if !(400..=599).contains(&code) {
                return Err(invalid(
                    cfg,
                    "litellm_settings.budget_exceeded_status_code",
                    format!("{code} is not an HTTP error status (400-599)"),
                ));
            }
            ledger.budget_exceeded_status = code;
        }
        if let Some(v) = cfg.file.litellm_settings.extra.get("max_end_user_budget") {
            let nanos = v
                .as_f64()
                .filter(|usd| *usd >= 0.0)
                .and_then(idlehands_store::money::usd_to_nanos)
                .ok_or_else(|| {
                    invalid(
                        cfg,
                        "litellm_settings.max_end_user_budget",
                        format!("{v} is not a non-negative number of USD"),
                    )
                })?;
            ledger.max_end_user_budget = Some(nanos);
        }
        ledger.proxy_budget = proxy_budget(cfg)?;
        if let Some(v) = cfg
            .file
            .litellm_settings
            .extra
            .get("disable_end_user_cost_tracking")
        {
            let off = crate::config::loose_bool(v).ok_or_else(|| {
                invalid(
                    cfg,
                    "litellm_settings.disable_end_user_cost_tracking",
                    format!("{v} is not true or false"),
                )
            })?;
            ledger.end_user_cost_tracking = !off;
        }
        if let Some(ttl) = gs.user_api_key_cache_ttl.filter(|t| *t >= 0.0) {
            ledger.cache_ttl = Duration::from_secs_f64(ttl);
        }
        if let Some(secs) = gs.proxy_batch_write_at.filter(|t| *t > 0.0) {
            ledger.writer.flush_interval = Duration::from_secs_f64(secs);
        }
        ledger.writer.store_rows = gs.disable_spend_logs != Some(true);

        let rs = &cfg.file.router_settings;
        let redis_url = rs
            .redis_url
            .as_ref()
            .map(|s| s.expose().trim().to_string())
            .filter(|s| !s.is_empty())
            .or_else(|| {
                let host = rs.redis_host.clone().or_else(|| nonempty("REDIS_HOST"))?;
                let port = rs
                    .redis_port
                    .map(|p| p.to_string())
                    .or_else(|| nonempty("REDIS_PORT"))
                    .unwrap_or_else(|| "6379".to_string());
                let password = rs
                    .redis_password
                    .as_ref()
                    .map(|p| p.expose().to_string())
                    .or_else(|| nonempty("REDIS_PASSWORD"));
                // An address that does not parse is refused by the client later, naming it.
                Some(
                    crate::config::redis_address(&host, &port, "", password.as_deref())
                        .unwrap_or_else(|| format!("redis://{host}:{port}")),
                )
            })
            .or_else(|| nonempty("REDIS_URL"));
        let failure_mode = match extra_str(&gs.extra, "redis_failure_mode") {
            None => RedisFailureMode::Closed,
            Some(v) => RedisFailureMode::parse(v).ok_or_else(|| {
                invalid(
                    cfg,
                    "general_settings.redis_failure_mode",
                    format!("{v:?} is not one of: closed, open"),
                )
            })?,
        };
        let prefix = extra_str(&gs.extra, "redis_key_prefix")
            .unwrap_or("idlehands:")
            .to_string();
        let instance_timeout = match gs.extra.get("redis_instance_timeout") {
            None | Some(serde_json::Value::Null) => idlehands_store::INSTANCE_TIMEOUT,
            Some(v) => {
                let secs = crate::config::loose_number(v)
                    .filter(|t: &f64| t.is_finite() && *t >= 0.5 && *t <= 86_400.0);
                match secs {
                    Some(t) => Duration::from_secs_f64(t),
                    None => {
                        return Err(invalid(
                            cfg,
                            "general_settings.redis_instance_timeout",
                            format!("{v} is not a number of seconds from 0.5 to 86400"),
                        ));
                    }
                }
            }
        };
        let redis = redis_url.map(|url| RedisSettings {
            url,
            prefix,
            failure_mode,
            instance_timeout,
        });
        let pool_limit = match gs.database_connection_pool_limit {
            Some(0) => {
                return Err(invalid(
                    cfg,
                    "general_settings.database_connection_pool_limit",
                    "must be at least 1".to_string(),
                ));
            }
            n => n,
        };
        let connect_timeout = match gs.database_connection_timeout {
            Some(t) if !(t > 0.0 && t.is_finite()) => {
                return Err(invalid(
                    cfg,
                    "general_settings.database_connection_timeout",
                    format!("{t} is not a positive number of seconds"),
                ));
            }
            t => t.map(Duration::from_secs_f64),
        };
        let retention = match gs
            .maximum_spend_logs_retention_period
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            None => None,
            Some(t) => Some(LlmDuration::parse(t).ok_or_else(|| {
                invalid(
                    cfg,
                    "general_settings.maximum_spend_logs_retention_period",
                    format!(
                        "{t:?} is not a duration: use a number followed by s, m, h, d, w or mo (e.g. 30d)"
                    ),
                )
            })?),
        };
        let pg_spill = is_postgres(&database_url).then(|| {
            use sha2::Digest;
            let id = hex::encode(sha2::Sha256::digest(database_url.trim().as_bytes()));
            let dir = default_database_path(env)
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            dir.join(format!("postgres-{}.spill.jsonl", &id[..16]))
        });
        let models = if cfg.store_model_in_db {
            let signing_key = cfg
                .salt_key
                .clone()
                .or_else(|| cfg.master_key.clone())
                .ok_or_else(|| {
                    invalid(
                        cfg,
                        "general_settings.store_model_in_db",
                        "needs a master key or LITELLM_SALT_KEY, which encrypts the secrets of stored models".to_string(),
                    )
                })?;
            Some(ModelStoreSettings {
                signing_key,
                reload_every: DEFAULT_MODEL_RELOAD,
                credentials: cfg.credentials.clone(),
            })
        } else {
            None
        };
        Ok(StoreSettings {
            models,
            pg_spill,
            database_url,
            database_source,
            pg_schema: extra_str(&gs.extra, "database_schema").map(str::to_string),
            redis,
            ledger,
            pool_limit,
            connect_timeout,
            retention,
        })
    }

    /// `sqlite`, or `postgres` (never the URL: it may carry a password).
    pub fn backend_name(&self) -> &'static str {
        let u = self.database_url.trim();
        if u.starts_with("postgres://") || u.starts_with("postgresql://") {
            "postgres"
        } else {
            "sqlite"
        }
    }

    /// The SQLite file, when the backend is SQLite.
    pub fn sqlite_path(&self) -> Option<&Path> {
        (self.backend_name() == "sqlite").then(|| {
            Path::new(
                self.database_url
                    .strip_prefix("sqlite://")
                    .unwrap_or(&self.database_url),
            )
        })
    }
}

/// The opened store and its background tasks; cheap to clone.
#[derive(Clone)]
pub struct StoreHandle {
    pub ledger: Ledger,
    seams: Arc<StoreSeams>,
    db_state: Arc<AtomicU8>,
    tasks: Arc<parking_lot::Mutex<Vec<JoinHandle<()>>>>,
    redis_mode: Option<RedisFailureMode>,
    redis_status: Option<RedisStatus>,
    /// `store_model_in_db`: the stored deployments, and how often they are re-read.
    models: Option<(Arc<ModelSync>, Duration)>,
    /// The stored deployments read at open, handed to the gateway by [`Self::install`].
    initial_models: Arc<parking_lot::Mutex<Vec<crate::models::ApiModel>>>,
    /// The stored tags read at open, put in force by [`Self::routes`].
    initial_tags: Arc<parking_lot::Mutex<Option<tag_budgets::TagRows>>>,
    /// How often stored tags are re-read when no change was announced.
    tag_reload: Duration,
}

const DB_UNKNOWN: u8 = 0;
const DB_UP: u8 = 1;
const DB_DOWN: u8 = 2;

impl StoreHandle {
    /// Opens (and migrates) the database, connects Redis when configured, loads every key into
    /// the cache, and starts the readiness pinger.
    pub async fn open(settings: &StoreSettings) -> Result<StoreHandle, StoreError> {
        let mut opts = StoreOptions::new(settings.database_url.clone());
        opts.pg_schema = settings.pg_schema.clone();
        opts.pg_spill = settings.pg_spill.clone();
        if let Some(dir) = settings.pg_spill.as_deref().and_then(Path::parent) {
            // Made now, so that a failing final commit has somewhere to put its rows.
            let _ = std::fs::create_dir_all(dir);
        }
        if let Some(n) = settings.pool_limit {
            opts.max_connections = n;
        }
        if let Some(t) = settings.connect_timeout {
            opts.connect_timeout = t;
        }
        let store = Store::open_with(opts).await?;
        let (models, initial_models) = match &settings.models {
            Some(m) => {
                let redis = settings
                    .redis
                    .as_ref()
                    .map(|r| (r.url.as_str(), r.prefix.as_str()));
                let sync = Arc::new(ModelSync::new(store.clone(), m, redis)?);
                let initial = sync.initial().await?;
                (Some((sync, m.reload_every)), initial)
            }
            None => (None, Vec::new()),
        };
        let initial_tags = tag_budgets::read(&store).await?;
        let mut tasks = Vec::new();
        let (ledger, redis_mode, redis_status) = match &settings.redis {
            None => (
                Ledger::start(store.clone(), settings.ledger.clone()),
                None,
                None,
            ),
            Some(r) => {
                let (ledger, status, background) =
                    redis_mode::start(store.clone(), settings.ledger.clone(), r).await?;
                tasks.extend(background);
                (ledger, Some(r.failure_mode), Some(status))
            }
        };
        ledger.ensure_proxy_budget().await?;
        if let Err(e) = ledger.warm().await {
            tracing::warn!(error = %e, "could not preload keys; they load on first use");
        }
        if let Some(period) = settings.retention {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(RETENTION_SWEEP);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let cutoff = period.before(chrono::Utc::now());
                    match store.delete_spend_logs_before(cutoff).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(deleted = n, "spend-log rows past the retention period deleted"),
                        Err(e) => tracing::warn!(error = %e, "spend-log retention sweep failed; retried in an hour"),
                    }
                    // Stored /v1/responses answers follow the spend log's retention.
                    match store.delete_responses_before(cutoff).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(deleted = n, "stored responses past the retention period deleted"),
                        Err(e) => tracing::warn!(error = %e, "stored-response retention sweep failed; retried in an hour"),
                    }
                }
            }));
        }
        let db_state = Arc::new(AtomicU8::new(DB_UP));
        let weak_state = Arc::downgrade(&db_state);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let ok = tokio::time::timeout(Duration::from_secs(5), store.readiness())
                    .await
                    .is_ok_and(|r| r.is_ok());
                let Some(state) = weak_state.upgrade() else {
                    return;
                };
                state.store(if ok { DB_UP } else { DB_DOWN }, Ordering::Relaxed);
            }
        }));
        Ok(StoreHandle {
            seams: Arc::new(StoreSeams::new(ledger.clone())),
            ledger,
            db_state,
            tasks: Arc::new(parking_lot::Mutex::new(tasks)),
            redis_mode,
            redis_status,
            models,
            initial_models: Arc::new(parking_lot::Mutex::new(initial_models)),
            initial_tags: Arc::new(parking_lot::Mutex::new(Some(initial_tags))),
            tag_reload: settings
                .models
                .as_ref()
                .map_or(DEFAULT_MODEL_RELOAD, |m| m.reload_every),
        })
    }

    /// The Redis failure mode in force, when Redis is configured.
    pub fn redis_mode(&self) -> Option<RedisFailureMode> {
        self.redis_mode
    }

    /// Whether limits are shared, per instance or refused right now, when Redis is configured.
    pub fn redis_state(&self) -> Option<RedisState> {
        self.redis_status.as_ref().map(RedisStatus::get)
    }

    pub fn seams(&self) -> Arc<StoreSeams> {
        self.seams.clone()
    }

    /// What [`StoreHandle::install`] hands the gateway (that method is `gateway`'s: the
    /// store sits below it).
    pub(crate) fn gateway_parts(&self) -> GatewayParts {
        let state = self.db_state.clone();
        let db_probe: DbProbe = Arc::new(move || match state.load(Ordering::Relaxed) {
            DB_UNKNOWN => None,
            s => Some(s == DB_UP),
        });
        let writer = self.ledger.writer().clone();
        let spend_probe: SpendProbe = Arc::new(move || writer.problem());
        let redis_probe: Option<RedisProbe> = match (&self.redis_status, self.redis_mode) {
            (Some(status), Some(mode)) => {
                let status = status.clone();
                Some(Arc::new(move || (mode.as_str(), status.get())))
            }
            _ => None,
        };
        GatewayParts {
            api_models: std::mem::take(&mut *self.initial_models.lock()),
            responses: Arc::new(DbResponses(self.ledger.store().clone())),
            health_log: Arc::new(DbHealthLog(
                self.ledger.store().clone(),
                self.ledger.clock(),
            )),
            seams: self.seams.clone(),
            db_probe,
            spend_probe,
            redis_probe,
            clock: self.ledger.clock(),
        }
    }

    /// With `store_model_in_db`: `app` follows the stored deployments from now on (see
    /// `model_sync`); the sync, for the model routes.
    /// Puts the stored tags' budgets in force on `app` and follows their changes (once).
    pub(crate) fn follow_tags(&self, app: &Arc<App>) {
        if let Some(initial) = self.initial_tags.lock().take() {
            let task = tag_budgets::follow(app, &self.ledger, &initial, self.tag_reload);
            self.tasks.lock().push(task);
        }
    }

    pub(crate) fn follow_models(&self, app: &Arc<App>) -> Option<Arc<ModelSync>> {
        self.models.as_ref().map(|(sync, every)| {
            sync.attach(app);
            self.tasks.lock().extend(sync.start(*every));
            sync.clone()
        })
    }

    /// After the server has drained: settles what in-flight calls left, commits every queued
    /// spend row and stops background work.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        self.seams.drain(Duration::from_secs(10)).await;
        let tasks = std::mem::take(&mut *self.tasks.lock());
        for t in tasks {
            t.abort();
        }
        self.ledger.shutdown().await
    }
}

/// Health-check results in the key and spend database.
struct DbHealthLog(idlehands_store::Store, Arc<dyn idlehands_clock::Clock>);

impl crate::hooks::HealthLog for DbHealthLog {
    fn record(
        &self,
        checks: Vec<crate::hooks::HealthCheck>,
        only_changes: bool,
    ) -> futures_util::future::BoxFuture<'static, Result<(), String>> {
        use idlehands_store::health_checks::{HealthCheckRow, changed_or_stale};
        let store = self.0.clone();
        // The store's clock: a test's fake clock moves the hourly refresh too.
        let now = self.1.now();
        Box::pin(async move {
            let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
            let mut rows: Vec<HealthCheckRow> = checks
                .iter()
                .map(|c| {
                    HealthCheckRow::new(
                        &c.model_name,
                        c.model_id.as_deref(),
                        (count(c.healthy), count(c.unhealthy)),
                        c.error.as_deref(),
                        c.response_time_ms,
                        c.checked_by.as_deref(),
                        now,
                    )
                })
                .collect();
            if only_changes {
                let latest = store
                    .latest_health_checks()
                    .await
                    .map_err(|e| e.to_string())?;
                rows = changed_or_stale(rows, &latest);
            }
            store
                .add_health_checks(&rows)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// Stored `/v1/responses` answers in the key and spend database.
struct DbResponses(idlehands_store::Store);

impl crate::hooks::ResponseStore for DbResponses {
    fn put(
        &self,
        r: crate::hooks::StoredResponse,
    ) -> futures_util::future::BoxFuture<'static, Result<(), String>> {
        let store = self.0.clone();
        Box::pin(async move {
            let row = idlehands_store::StoredResponseRow {
                id: r.id,
                owner: r.owner,
                created_at: r.created_at,
                input_items: r.input_items.to_string(),
                response: r.response.to_string(),
            };
            store.put_response(&row).await.map_err(|e| e.to_string())
        })
    }

    fn get(
        &self,
        id: &str,
        owner: &str,
    ) -> futures_util::future::BoxFuture<
        'static,
        Result<Option<crate::hooks::StoredResponse>, String>,
    > {
        let (store, id, owner) = (self.0.clone(), id.to_string(), owner.to_string());
        Box::pin(async move {
            let Some(row) = store
                .get_response(&id, &owner)
                .await
                .map_err(|e| e.to_string())?
            else {
                return Ok(None);
            };
            let json = |text: &str| {
                serde_json::from_str(text).map_err(|e| format!("stored response {id}: {e}"))
            };
            Ok(Some(crate::hooks::StoredResponse {
                input_items: json(&row.input_items)?,
                response: json(&row.response)?,
                id: row.id,
                owner: row.owner,
                created_at: row.created_at,
            }))
        })
    }

    fn delete(
        &self,
        id: &str,
        owner: &str,
    ) -> futures_util::future::BoxFuture<'static, Result<bool, String>> {
        let (store, id, owner) = (self.0.clone(), id.to_string(), owner.to_string());
        Box::pin(async move {
            store
                .delete_response(&id, &owner)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> ProxyConfig {
        let yaml = format!("general_settings:\n  master_key: sk-unit-master-1\n{yaml}");
        ProxyConfig::from_yaml(&yaml, "config.yaml", &|_| None).expect("config")
    }

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn pool_timeout_and_retention_settings_are_read_and_checked() {
        let e = env(&[]);
        let s = StoreSettings::from_config(
            &cfg("  database_connection_pool_limit: 25\n  database_connection_timeout: 2.5\n  maximum_spend_logs_retention_period: 30d\n"),
            &e,
        )
        .expect("settings");
        assert_eq!(s.pool_limit, Some(25));
        assert_eq!(s.connect_timeout, Some(Duration::from_millis(2500)));
        assert_eq!(s.retention, LlmDuration::parse("30d"));
        let d = StoreSettings::from_config(&cfg(""), &e).expect("settings");
        assert_eq!(
            (d.pool_limit, d.connect_timeout, d.retention),
            (None, None, None)
        );

        for (yaml, path) in [
            (
                "  database_connection_pool_limit: 0\n",
                "database_connection_pool_limit",
            ),
            (
                "  database_connection_timeout: -1\n",
                "database_connection_timeout",
            ),
            (
                "  maximum_spend_logs_retention_period: forever\n",
                "maximum_spend_logs_retention_period",
            ),
        ] {
            let err = StoreSettings::from_config(&cfg(yaml), &e).expect_err(yaml);
            let text = err.to_string();
            assert!(text.contains(&format!("general_settings.{path}")), "{text}");
            assert!(text.contains("config.yaml"), "{text}");
        }
    }

    #[test]
    fn database_precedence() {
        let e = env(&[
            ("DATABASE_URL", "postgresql://env/db"),
            ("IDLEHANDS_STATE_DIR", "/state"),
        ]);
        let s = StoreSettings::from_config(&cfg(""), &e).expect("settings");
        assert_eq!(s.database_url, "postgresql://env/db");
        assert_eq!(s.backend_name(), "postgres");
        assert!(s.sqlite_path().is_none());
        // Postgres spills a failed stop's rows into the state directory, named after the
        // database by a hash (the URL may hold a password).
        let spill = s.pg_spill.expect("a spill file for Postgres");
        assert_eq!(spill.parent(), Some(Path::new("/state")));
        let name = spill
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        assert!(
            name.starts_with("postgres-") && name.ends_with(".spill.jsonl"),
            "{name}"
        );
        assert!(!name.contains("env"), "{name}");

        let c = cfg("  database_url: /data/from-config.db\n");
        let s = StoreSettings::from_config(&c, &e).expect("settings");
        assert_eq!(s.database_source, "general_settings.database_url");
        assert_eq!(s.sqlite_path(), Some(Path::new("/data/from-config.db")));

        let mut c = cfg("  database_url: postgresql://cfg/db\n");
        c.database_path = Some(PathBuf::from("/flag.db"));
        let s = StoreSettings::from_config(&c, &e).expect("settings");
        assert_eq!(s.database_url, "/flag.db");

        let s = StoreSettings::from_config(&cfg(""), &env(&[("IDLEHANDS_STATE_DIR", "/state")]))
            .expect("settings");
        assert_eq!(s.database_url, "/state/proxy.db");
        let s =
            StoreSettings::from_config(&cfg(""), &env(&[("HOME", "/home/u")])).expect("settings");
        assert_eq!(s.database_url, "/home/u/.idlehands/proxy.db");
        assert!(s.redis.is_none());
    }

    #[test]
    fn store_model_in_db_needs_a_key_to_seal_secrets() {
        let s = StoreSettings::from_config(&cfg("  store_model_in_db: true\n"), &|_| None)
            .expect("settings");
        let m = s.models.expect("models kept in the store");
        assert_eq!(m.signing_key.expose(), "sk-unit-master-1");
        assert_eq!(m.reload_every, DEFAULT_MODEL_RELOAD);
        assert!(!format!("{m:?}").contains("sk-unit-master-1"));
        assert!(
            StoreSettings::from_config(&cfg(""), &|_| None)
                .expect("settings")
                .models
                .is_none()
        );

        // The environment turns it on too, and a salt key wins over the master key.
        let mut c =
            ProxyConfig::from_yaml("model_list: []\n", "config.yaml", &|_| None).expect("config");
        c.read_env(&env(&[
            ("STORE_MODEL_IN_DB", "True"),
            ("LITELLM_SALT_KEY", "salt-0001"),
        ]));
        let m = StoreSettings::from_config(&c, &|_| None)
            .expect("settings")
            .models
            .expect("models kept in the store");
        assert_eq!(m.signing_key.expose(), "salt-0001");

        // Neither: nothing to seal secrets with, so start-up stops naming the setting.
        let mut c =
            ProxyConfig::from_yaml("model_list: []\n", "config.yaml", &|_| None).expect("config");
        c.read_env(&env(&[("STORE_MODEL_IN_DB", "true")]));
        let err = StoreSettings::from_config(&c, &|_| None).expect_err("no key");
        assert!(
            err.to_string()
                .contains("general_settings.store_model_in_db: needs a master key"),
            "{err}"
        );
    }

    #[test]
    fn max_end_user_budget_is_read_and_checked() {
        let c = cfg("litellm_settings:\n  max_end_user_budget: 2.5\n");
        let s = StoreSettings::from_config(&c, &|_| None).expect("settings");
        assert_eq!(s.ledger.max_end_user_budget, Some(2_500_000_000));
        for bad in ["-1", "lots"] {
            let c = cfg(&format!(
                "litellm_settings:\n  max_end_user_budget: {bad}\n"
            ));
            let e = StoreSettings::from_config(&c, &|_| None).expect_err(bad);
            assert!(
                e.to_string()
                    .contains("litellm_settings.max_end_user_budget"),
                "{e}"
            );
        }
    }

    #[test]
    fn the_proxy_wide_budget_needs_its_window() {
        let c = cfg("litellm_settings:\n  max_budget: 10\n  budget_duration: 30d\n");
        let s = StoreSettings::from_config(&c, &|_| None).expect("settings");
        assert_eq!(
            s.ledger.proxy_budget,
            Some(ProxyBudget {
                max_budget: 10.0,
                budget_duration: "30d".to_string()
            })
        );
        // 0 is LiteLLM's "none".
        let c = cfg("litellm_settings:\n  max_budget: 0\n");
        let s = StoreSettings::from_config(&c, &|_| None).expect("zero");
        assert_eq!(s.ledger.proxy_budget, None);
        for (yaml, field) in [
            ("  max_budget: 10\n", "litellm_settings.budget_duration"),
            (
                "  max_budget: 10\n  budget_duration: sometimes\n",
                "litellm_settings.budget_duration",
            ),
            ("  max_budget: -1\n", "litellm_settings.max_budget"),
        ] {
            let c = cfg(&format!("litellm_settings:\n{yaml}"));
            let e = StoreSettings::from_config(&c, &|_| None).expect_err(yaml);
            assert!(e.to_string().contains(field), "{yaml}: {e}");
        }
    }

    #[test]
    fn disable_end_user_cost_tracking_is_read_and_checked() {
        let on = StoreSettings::from_config(&cfg(""), &|_| None).expect("settings");
        assert!(on.ledger.end_user_cost_tracking);
        for off in ["true", "\"True\""] {
            let c = cfg(&format!(
                "litellm_settings:\n  disable_end_user_cost_tracking: {off}\n"
            ));
            let s = StoreSettings::from_config(&c, &|_| None).expect(off);
            assert!(!s.ledger.end_user_cost_tracking, "{off}");
        }
        let c = cfg("litellm_settings:\n  disable_end_user_cost_tracking: sometimes\n");
        let e = StoreSettings::from_config(&c, &|_| None).expect_err("sometimes");
        assert!(
            e.to_string()
                .contains("litellm_settings.disable_end_user_cost_tracking"),
            "{e}"
        );
    }

    #[test]
    fn redis_settings() {
        let c = cfg(
            "router_settings:\n  redis_host: cache.local\n  redis_port: 6380\n  redis_password: pw\n",
        );
        let s = StoreSettings::from_config(&c, &|_| None).expect("settings");
        let r = s.redis.expect("redis");
        assert_eq!(r.url, "redis://:pw@cache.local:6380");
        assert_eq!(r.failure_mode, RedisFailureMode::Closed);
        assert_eq!(r.prefix, "idlehands:");
        assert!(!format!("{r:?}").contains("pw"), "the URL is redacted");

        let c = cfg("  redis_failure_mode: open\nrouter_settings:\n  redis_url: redis://r:6379\n");
        let r = StoreSettings::from_config(&c, &|_| None)
            .expect("settings")
            .redis
            .expect("redis");
        assert_eq!(r.url, "redis://r:6379");
        assert_eq!(r.failure_mode, RedisFailureMode::Open);
        assert_eq!(r.instance_timeout, idlehands_store::INSTANCE_TIMEOUT);

        let c =
            cfg("  redis_instance_timeout: 2.5\nrouter_settings:\n  redis_url: redis://r:6379\n");
        let r = StoreSettings::from_config(&c, &|_| None)
            .expect("settings")
            .redis
            .expect("redis");
        assert_eq!(r.instance_timeout, Duration::from_millis(2500));
        for bad in ["soon", "0", "-3", "100000"] {
            let c = cfg(&format!(
                "  redis_instance_timeout: {bad}\nrouter_settings:\n  redis_url: redis://r:6379\n"
            ));
            let err = StoreSettings::from_config(&c, &|_| None)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                err.contains("general_settings.redis_instance_timeout")
                    && err.contains("is not a number of seconds"),
                "{bad}: {err:?}"
            );
        }

        let s =
            StoreSettings::from_config(&cfg(""), &env(&[("REDIS_HOST", "h")])).expect("settings");
        assert_eq!(s.redis.expect("redis").url, "redis://h:6379");

        let c = cfg("litellm_settings:\n  budget_exceeded_status_code: 200\n");
        let err = StoreSettings::from_config(&c, &|_| None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("is not an HTTP error status"), "{err:?}");
        let c = cfg("litellm_settings:\n  budget_exceeded_status_code: 429\n");
        let s = StoreSettings::from_config(&c, &|_| None).expect("settings");
        assert_eq!(s.ledger.budget_exceeded_status, 429);
    }
}
