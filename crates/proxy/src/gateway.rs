//! The gateway object: built once from a [`ProxyConfig`], it owns the HTTP client, the model
//! groups, the prices and the seams (key resolver, call hooks, call sink), and serves until a
//! shutdown future resolves. What it builds is the shared state of `crate::state`; the routes
//! (`crate::http`) and the store (`crate::ledger`) reach that state without this module, which
//! sits above them and wires them together ([`StoreHandle::install`] and
//! [`StoreHandle::routes`] are here for that reason).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::auth::{AuthConfig, KeyResolver, NoVirtualKeys, Principal, hash_key};
use crate::config::{ConfigError, ProxyConfig};
use crate::error::ProxyError;
use crate::hooks::{CallHooks, CallSink, NoopSink};
use crate::ledger::StoreHandle;
use crate::pricing::{PriceTable, load_litellm_price_file};
use crate::state::{
    App, ConnLimits, DbProbe, Latest, RedisProbe, Runtime, Sessions, SpendProbe, Throttle,
};

/// Master keys everyone knows: LiteLLM's docs use the first three, and the last was this
/// project's own published quick-start key. Refused like an unset key.
const WEAK_MASTER_KEYS: &[&str] = &[
    "sk-1234",
    "sk-12345",
    "sk-123456",
    "sk-idlehands-quickstart",
];

/// Shorter master keys are refused: a guessable key on a gateway listening on 0.0.0.0.
pub const MIN_MASTER_KEY_CHARS: usize = 16;

/// Why `key` may not be the master key, if it may not.
fn weak_master_key(key: &str) -> Option<&'static str> {
    if WEAK_MASTER_KEYS.contains(&key) {
        Some("the master key is a publicly known example key")
    } else if key.chars().count() < MIN_MASTER_KEY_CHARS {
        Some("the master key is shorter than 16 characters")
    } else {
        None
    }
}

/// `max_request_metadata_size_kb`'s default: room for tags, trace ids and a few dozen fields.
pub(crate) const DEFAULT_METADATA_LIMIT: usize = 16 * 1024;
/// `max_request_user_length`'s default.
pub(crate) const DEFAULT_USER_LIMIT: usize = 256;

/// uvicorn's `timeout_keep_alive` default, which LiteLLM keeps.
pub(crate) const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(5);

/// A built gateway; cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    pub(crate) app: Arc<App>,
    extra_routes: Option<axum::Router>,
}

pub struct GatewayBuilder {
    config: ProxyConfig,
    prices: Option<PriceTable>,
    resolver: Arc<dyn KeyResolver>,
    hooks: Option<Arc<dyn CallHooks>>,
    sink: Arc<dyn CallSink>,
    responses: Option<Arc<dyn crate::hooks::ResponseStore>>,
    health_log: Option<Arc<dyn crate::hooks::HealthLog>>,
    extra_routes: Option<axum::Router>,
    db_probe: Option<DbProbe>,
    spend_probe: Option<SpendProbe>,
    redis_probe: Option<RedisProbe>,
    api_models: Vec<crate::models::ApiModel>,
    clock: Arc<dyn idlehands_clock::Clock>,
}

impl Gateway {
    pub fn builder(config: ProxyConfig) -> GatewayBuilder {
        GatewayBuilder {
            config,
            prices: None,
            resolver: Arc::new(NoVirtualKeys),
            hooks: None,
            sink: Arc::new(NoopSink),
            responses: None,
            health_log: None,
            extra_routes: None,
            db_probe: None,
            spend_probe: None,
            redis_probe: None,
            api_models: Vec::new(),
            clock: Arc::new(idlehands_clock::SystemClock),
        }
    }

    /// The axum router with every route; for embedding in another server or for tests.
    pub fn router(&self) -> axum::Router {
        crate::http::router(self.app.clone(), self.extra_routes.clone())
    }

    /// Add routes after building, so that their handlers can hold this gateway (for
    /// [`Gateway::authenticate`]). Same rules as [`GatewayBuilder::routes`]; replaces any
    /// routes given before.
    pub fn with_routes(mut self, routes: axum::Router) -> Self {
        self.extra_routes = Some(routes);
        self
    }

    /// The gateway's auth (master key, then the key resolver), for routes added with
    /// [`GatewayBuilder::routes`] such as key management.
    /// A live dashboard session cookie counts as the master key here.
    pub async fn authenticate(&self, headers: &http::HeaderMap) -> Result<Principal, ProxyError> {
        crate::http::ui::authenticate_admin(&self.app, headers).await
    }

    /// The Prometheus metrics (`/metrics`), e.g. to attach the router's deployment state.
    pub fn metrics(&self) -> Arc<crate::metrics::Metrics> {
        self.app.metrics.clone()
    }

    /// Each configured deployment's routing state as the router sees it now (cooldown, this
    /// minute's usage): what `/metrics` reads, for tests that wait on a fleet's router to
    /// catch up.
    pub fn routing_snapshot(&self) -> Vec<idlehands_routing::DeploymentSnapshot> {
        let rt = self.app.runtime.load();
        rt.router
            .routing()
            .map(|r| r.snapshot())
            .unwrap_or_default()
    }

    /// Model group names, in config order.
    pub fn model_names(&self) -> Vec<String> {
        let rt = self.app.runtime.load();
        rt.router.groups().iter().map(|g| g.name.clone()).collect()
    }

    /// `/health/liveliness` answers 503 from now on.
    pub fn start_draining(&self) {
        self.app.draining.store(true, Ordering::SeqCst);
    }

    /// The drain is over: every call still running ends now with an error (a stream with a
    /// final `data: {"error":...}` event), and is recorded with what it used so far, while the
    /// spend writer still takes rows.
    pub fn cut_off(&self) {
        self.app.cut_off();
    }
}

impl GatewayBuilder {
    /// Use this price table instead of the built-in one plus the configured price file.
    pub fn prices(mut self, prices: PriceTable) -> Self {
        self.prices = Some(prices);
        self
    }

    /// SEAM: virtual-key resolution (the store).
    pub fn key_resolver(mut self, r: Arc<dyn KeyResolver>) -> Self {
        self.resolver = r;
        self
    }

    /// SEAM: budget / rate-limit reservation before, settlement after each call.
    pub fn hooks(mut self, h: Arc<dyn CallHooks>) -> Self {
        self.hooks = Some(h);
        self
    }

    /// SEAM: more routes (`/key/*`, `/spend/*`, ...), served next to the gateway's own. Their
    /// paths must not repeat the gateway's (axum refuses overlapping routes at start-up), and
    /// they must not set a fallback.
    pub fn routes(mut self, routes: axum::Router) -> Self {
        self.extra_routes = Some(routes);
        self
    }

    /// SEAM: database state for `/health/readiness`.
    pub fn db_probe(mut self, probe: DbProbe) -> Self {
        self.db_probe = Some(probe);
        self
    }

    /// SEAM: whether spend-log rows are being written, for `/health/readiness`.
    pub fn spend_probe(mut self, probe: SpendProbe) -> Self {
        self.spend_probe = Some(probe);
        self
    }

    /// SEAM: Redis state for `/health/readiness` (fleet mode).
    pub fn redis_probe(mut self, probe: RedisProbe) -> Self {
        self.redis_probe = Some(probe);
        self
    }

    /// Deployments kept in the store (`store_model_in_db`), served after the config's.
    pub fn api_models(mut self, models: Vec<crate::models::ApiModel>) -> Self {
        self.api_models = models;
        self
    }

    /// SEAM: the clock router cooldowns and per-minute rpm/tpm limits are judged by (the
    /// system's by default). [`crate::ledger::StoreHandle::install`] gives the store's, so
    /// that one clock decides for keys, budgets and routing alike.
    pub fn clock(mut self, clock: Arc<dyn idlehands_clock::Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// SEAM: where finished-call records go (the spend-log writer).
    pub fn sink(mut self, s: Arc<dyn CallSink>) -> Self {
        self.sink = s;
        self
    }

    /// Where stored `/v1/responses` answers go (default: memory, bounded).
    pub fn responses(mut self, r: Arc<dyn crate::hooks::ResponseStore>) -> Self {
        self.responses = Some(r);
        self
    }

    /// Where health-check results are kept (`/health/history`, `/health/latest`).
    pub fn health_log(mut self, h: Arc<dyn crate::hooks::HealthLog>) -> Self {
        self.health_log = Some(h);
        self
    }

    pub fn build(self) -> Result<Gateway, ConfigError> {
        let cfg = self.config;
        let master_key = cfg.master_key.as_ref().map(|k| k.expose().to_string());
        match &master_key {
            None if !cfg.permit_weak_or_unset_master_key => {
                return Err(ConfigError::Startup(
                    "refusing to start: no master key is set; set general_settings.master_key or LITELLM_MASTER_KEY (or LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY=true to run without auth)".to_string(),
                ));
            }
            Some(k) if !cfg.permit_weak_or_unset_master_key && weak_master_key(k).is_some() => {
                let why = weak_master_key(k).unwrap_or_default();
                return Err(ConfigError::Startup(format!(
                    "refusing to start: {why}; choose a long random one, e.g. sk- and 32 hex digits (or set LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY=true)"
                )));
            }
            Some(k) if !k.starts_with("sk-") => {
                tracing::warn!("the master key should start with `sk-`");
            }
            _ => {}
        }
        if master_key.is_none() {
            tracing::warn!("no master key: every request is accepted without auth");
        }
        let prices = match self.prices {
            Some(p) => p,
            None => {
                let mut p = PriceTable::builtin();
                if let Some(path) = &cfg.model_cost_map_path {
                    p.merge(load_litellm_price_file(path)?);
                }
                p
            }
        };
        let gs = &cfg.file.general_settings;
        let custom_header = gs
            .litellm_key_header_name
            .as_deref()
            .map(|name| {
                crate::config::header_name(&cfg, "general_settings.litellm_key_header_name", name)
            })
            .transpose()?;
        let body_limit = gs
            .max_request_size_mb
            .filter(|mb| *mb > 0.0)
            .map(|mb| (mb * 1024.0 * 1024.0) as usize)
            .unwrap_or(256 * 1024 * 1024);
        let admin_body_limit = gs
            .max_admin_request_size_mb
            .map(|mb| (mb * 1024.0 * 1024.0) as usize)
            .unwrap_or(1024 * 1024);
        let conn_limits = ConnLimits {
            keepalive: gs
                .keepalive_timeout
                .map_or(DEFAULT_KEEPALIVE, Duration::from_secs_f64),
            max_connections: gs.limit_concurrency.map(|n| n as usize),
        };
        let pass_through = Arc::new(crate::passthrough::build(&cfg, &prices)?);
        let models = crate::models::ModelsBase::new(cfg.clone(), prices, self.clock);
        let (router, catalog) = models.build(self.api_models, None);
        let forward_headers =
            crate::forward_headers::ForwardHeaders::from_config(&cfg, custom_header.clone())?
                .map(Arc::new);
        let mapped = crate::http::end_user::configured_headers(&cfg)?;
        let mut runtime = Runtime {
            catalog: Arc::new(catalog),
            auth: AuthConfig {
                master_hash: hash_key(master_key.as_deref().unwrap_or("")).into(),
                master_key,
                custom_header,
                jwt: None,
            },
            router,
            forced_model: cfg
                .cli_model
                .clone()
                .or_else(|| gs.completion_model.clone()),
            always_include_stream_usage: gs.always_include_stream_usage.unwrap_or(false),
            body_limit,
            drop_params: cfg.file.litellm_settings.drop_params == Some(true),
            admin_body_limit,
            metadata_limit: gs
                .max_request_metadata_size_kb
                .map_or(DEFAULT_METADATA_LIMIT, |kb| (kb * 1024.0) as usize),
            user_limit: gs
                .max_request_user_length
                .map_or(DEFAULT_USER_LIMIT, |n| n as usize),
            pass_through,
            user_agent_tags: cfg
                .file
                .litellm_settings
                .disable_add_user_agent_to_request_tags
                != Some(true),
            allowed_ips: crate::allowed_ips::AllowedIps::from_config(gs, &cfg.source)?
                .map(Arc::new),
            enforce_user_param: gs.enforce_user_param == Some(true),
            forward_headers,
            end_user_headers: mapped.end_user.into(),
            internal_user_header: mapped.internal_user,
            log_requester_ip: gs.disable_requester_ip_address_logging != Some(true),
            use_x_forwarded_for: gs.use_x_forwarded_for == Some(true),
            reject_client_tags: gs.reject_clientside_metadata_tags == Some(true),
        };
        let client = upstream_tls(reqwest::Client::builder(), &cfg)?
            .pool_max_idle_per_host(1024)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(30))
            // Providers answer, they do not redirect; LiteLLM (httpx) does not follow either,
            // and the redirect layer parsed URLs on every call.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                // A bundle's certificate the TLS library refuses surfaces only here.
                let bundle = match &cfg.upstream_tls {
                    crate::config::UpstreamTls::CaBundle { path, from } => {
                        format!(" (the CA bundle {} from {from})", path.display())
                    }
                    _ => String::new(),
                };
                ConfigError::Startup(format!("cannot build the HTTP client{bundle}: {e}"))
            })?;
        let payloads = crate::logging::PayloadLog::from_config(&cfg)?;
        let metrics = Arc::new(crate::metrics::Metrics::new());
        // As LiteLLM: `disable_end_user_cost_tracking` takes end users off the metrics too.
        let ls = &cfg.file.litellm_settings.extra;
        let flag = |name: &str| {
            ls.get(name)
                .and_then(crate::config::loose_bool)
                .unwrap_or(false)
        };
        metrics.set_end_user_labels(
            flag("enable_end_user_cost_tracking_prometheus_only")
                && !flag("disable_end_user_cost_tracking"),
        );
        if let Some(source) = crate::metrics::routing_source(&runtime.router) {
            metrics.set_deployment_source(source);
        }
        let provider_budgets = cfg.route_budgets.providers.clone();
        if let (false, Some(hooks)) = (provider_budgets.is_empty(), self.hooks.clone()) {
            metrics.set_provider_budget_source(Arc::new(move || {
                provider_budgets
                    .iter()
                    .map(|b| {
                        let spend = hooks.route_spend(b).unwrap_or(0);
                        (
                            b.name.clone(),
                            (b.max_budget.unwrap_or(0) - spend) as f64 / 1e9,
                        )
                    })
                    .collect()
            }));
        }
        let otel = match crate::otel::OtelSettings::from_config(&cfg) {
            None => None,
            Some(Ok(s)) => Some(crate::otel::Otel::new(s, client.clone())),
            Some(Err(why)) => {
                tracing::warn!(
                    "litellm_settings callback \"otel\" is not acted on: {why}; traces are not exported"
                );
                None
            }
        };
        let generic_api = match crate::generic_api::GenericApiSettings::from_config(&cfg) {
            None => None,
            Some(Ok(s)) => Some(Arc::new(crate::generic_api::GenericApiLogger::new(
                s,
                client.clone(),
            ))),
            Some(Err(why)) => {
                tracing::warn!(
                    "litellm_settings callback \"generic_api\" is not acted on: {why}; call logs are not sent"
                );
                None
            }
        };
        let alerting = match crate::alerting::AlertingSettings::from_config(&cfg) {
            None => None,
            Some(Ok(s)) => Some(crate::alerting::Alerting::new(s, client.clone())),
            Some(Err(why)) => {
                tracing::warn!(
                    "general_settings.alerting is not acted on: {why}; no alerts are sent"
                );
                None
            }
        };
        let response_cache = match crate::config::cache::from_config(&cfg)?.0 {
            Some(s) => Some(Arc::new(crate::response_cache::ResponseCache::new(
                s,
                &cfg.source,
            )?)),
            None => None,
        };
        let key_bounds = crate::key_bounds::KeyBounds::from_config(&cfg)?;
        let key_generation = crate::key_generation::KeyGenerationRules::from_config(&cfg)?;
        let user_defaults = crate::user_defaults::UserDefaults::from_config(&cfg)?;
        let jwt = crate::jwt::JwtSettings::from_config(&cfg)?;
        for (field, list) in jwt.iter().flat_map(|s| s.route_lists()) {
            if let Some(unknown) = crate::route_access::unknown_entry(list) {
                tracing::warn!(
                    "{}: general_settings.{field}: `{unknown}` names no route this gateway serves; it allows nothing (route groups: {})",
                    cfg.source,
                    crate::route_access::group_names().join(", ")
                );
            }
        }
        runtime.auth.jwt = jwt.map(|s| crate::jwt::JwtAuth::new(s, client.clone(), &user_defaults));
        let team_defaults = crate::team_defaults::TeamDefaults::from_config(&cfg)?;
        let metrics_need_auth = !cfg
            .file
            .litellm_settings
            .extra
            .get("require_auth_for_metrics_endpoint")
            .is_some_and(|v| v == false || v.as_str().is_some_and(|s| s.trim() == "false"));
        Ok(Gateway {
            extra_routes: self.extra_routes,
            app: Arc::new(App {
                runtime: ArcSwap::from_pointee(runtime),
                key_bounds,
                key_generation,
                user_defaults,
                team_defaults,
                models,
                client,
                resolver: self.resolver,
                hooks: self.hooks,
                sink: self.sink,
                responses: self
                    .responses
                    .unwrap_or_else(|| Arc::new(crate::hooks::MemoryResponses::default())),
                draining: AtomicBool::new(false),
                version: http::HeaderValue::from_static(env!("CARGO_PKG_VERSION")),
                db_probe: self.db_probe,
                spend_probe: self.spend_probe,
                cut: tokio::sync::watch::Sender::new(false),
                redis_probe: self.redis_probe,
                allow_without_db: cfg
                    .file
                    .general_settings
                    .allow_requests_on_db_unavailable
                    .unwrap_or(false),
                metrics,
                metrics_need_auth,
                otel,
                generic_api,
                alerting,
                payloads,
                sessions: Sessions::default(),
                parallel: cfg
                    .file
                    .general_settings
                    .global_max_parallel_requests
                    .map(|n| (Arc::new(tokio::sync::Semaphore::new(n as usize)), n)),
                background_health: (cfg.file.general_settings.background_health_checks
                    == Some(true))
                .then(|| {
                    let every = cfg
                        .file
                        .general_settings
                        .health_check_interval
                        .map_or(DEFAULT_HEALTH_INTERVAL, Duration::from_secs_f64);
                    (every, Latest::default())
                }),
                health_log: self.health_log,
                diagnostics: crate::diagnostics::Diagnostics::from_config(&cfg),
                parallel_refused: std::sync::atomic::AtomicU64::new(0),
                conn_limits,
                throttle: Throttle::default(),
                response_cache,
                // Only a real `true`, as LiteLLM (a quoted value never starts hiding models).
                model_list_healthy_only: cfg
                    .file
                    .general_settings
                    .extra
                    .get("model_list_healthy_only")
                    == Some(&serde_json::Value::Bool(true)),
                budget_exceeded_status: cfg
                    .file
                    .litellm_settings
                    .budget_exceeded_status_code
                    .filter(|c| (400..=599).contains(c))
                    .unwrap_or(422),
                tag_budgets: ArcSwap::from_pointee(Default::default()),
            }),
        })
    }
}

/// LiteLLM's `health_check_interval` default.
const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(300);

impl StoreHandle {
    /// Installs the key resolver, the budget/limit hooks, the spend-log sink, stored responses
    /// and deployments, and the readiness probes.
    pub fn install(&self, builder: GatewayBuilder) -> GatewayBuilder {
        let parts = self.gateway_parts();
        let builder = builder
            .clock(parts.clock)
            .api_models(parts.api_models)
            .responses(parts.responses)
            .health_log(parts.health_log)
            .key_resolver(parts.seams.clone())
            .hooks(parts.seams.clone())
            .sink(parts.seams)
            .db_probe(parts.db_probe)
            .spend_probe(parts.spend_probe);
        match parts.redis_probe {
            Some(probe) => builder.redis_probe(probe),
            None => builder,
        }
    }

    /// `/key/*`, `/spend/logs`, `/global/spend/report` and `/model/new|update|delete`,
    /// served by `gw` (for its auth). With `store_model_in_db`, stored deployments are
    /// followed from now on (see `ledger::model_sync`).
    pub fn routes(&self, gw: &Gateway) -> axum::Router {
        let sync = self.follow_models(&gw.app);
        self.follow_tags(&gw.app);
        crate::http::management_routes(gw.app.clone(), self.ledger.clone(), sync)
    }
}

/// `ssl_verify` and `force_ipv4` on the client that calls providers.
fn upstream_tls(
    mut b: reqwest::ClientBuilder,
    cfg: &ProxyConfig,
) -> Result<reqwest::ClientBuilder, ConfigError> {
    if cfg.force_ipv4 {
        b = b.local_address(Some(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)));
    }
    match &cfg.upstream_tls {
        crate::config::UpstreamTls::Verify => Ok(b),
        crate::config::UpstreamTls::Off => {
            tracing::warn!(
                "ssl_verify is off: upstream TLS certificates are not checked (anyone between the gateway and a provider can read and change its calls)"
            );
            Ok(b.danger_accept_invalid_certs(true))
        }
        crate::config::UpstreamTls::CaBundle { path, from } => {
            let bad = |why: String| ConfigError::Invalid {
                file: cfg.source.clone(),
                path: from.to_string(),
                message: format!("{}: {why}", path.display()),
            };
            let pem = std::fs::read(path).map_err(|e| bad(format!("cannot read: {e}")))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| bad(format!("not a PEM certificate bundle: {e}")))?;
            if certs.is_empty() {
                return Err(bad("holds no certificate".to_string()));
            }
            // As httpx's `verify=<bundle>`: these roots instead of the built-in ones.
            b = b.tls_built_in_root_certs(false);
            for c in certs {
                b = b.add_root_certificate(c);
            }
            Ok(b)
        }
    }
}
