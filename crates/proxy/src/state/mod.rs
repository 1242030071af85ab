//! What a running gateway shares: the [`App`] every handler, background task and seam reads,
//! and the [`Runtime`] inside it that model-list changes swap whole. Built by `gateway`; read
//! by `http`, `ledger`, `serving` and the watchers. It sits below all of them, so that none of
//! them needs the gateway (or the routes) to reach the state.

mod sessions;
mod throttle;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::auth::{AuthConfig, KeyResolver};
use crate::error::ProxyError;
use crate::hooks::{CallHooks, CallSink};
use crate::providers::Deployment;
use crate::router::Router;

pub(crate) use sessions::{SESSION_TTL, Sessions};
pub(crate) use throttle::Throttle;

/// What a request reads; swapped whole (arc-swap), never locked.
pub(crate) struct Runtime {
    pub auth: AuthConfig,
    pub router: Router,
    /// Every deployment as `/model/info` shows it; built with `router`.
    pub catalog: Arc<crate::models::Catalog>,
    /// `--model`, else `general_settings.completion_model`: overrides the request's model.
    pub forced_model: Option<String>,
    pub always_include_stream_usage: bool,
    /// Model routes' body limit (`max_request_size_mb`).
    pub body_limit: usize,
    /// `litellm_settings.drop_params`: parameters a provider cannot take are left out of every
    /// call instead of refused.
    pub drop_params: bool,
    /// Management routes' body limit (`max_admin_request_size_mb`).
    pub admin_body_limit: usize,
    /// A model call's `metadata` at most, bytes of JSON (`max_request_metadata_size_kb`).
    pub metadata_limit: usize,
    /// A model call's `user` at most, characters (`max_request_user_length`).
    pub user_limit: usize,
    /// The pass-through routes' targets and credentials.
    pub pass_through: Arc<crate::passthrough::PassThrough>,
    /// Spend rows carry `User-Agent: ...` tags (LiteLLM's default; off with
    /// `litellm_settings.disable_add_user_agent_to_request_tags`).
    pub user_agent_tags: bool,
    /// `general_settings.allowed_ips`: who may call at all.
    pub allowed_ips: Option<Arc<crate::allowed_ips::AllowedIps>>,
    /// `general_settings.enforce_user_param`: model calls must name their `user`.
    pub enforce_user_param: bool,
    /// Which calls take the caller's `x-*` headers upstream (`forward_client_headers_to_llm_api`).
    pub forward_headers: Option<Arc<crate::forward_headers::ForwardHeaders>>,
    /// Headers that name a call's end user (`user_header_mappings`, `user_header_name`).
    pub end_user_headers: Arc<[http::HeaderName]>,
    /// The header that names the call's user (`user_header_mappings` to `internal_user`).
    pub internal_user_header: Option<http::HeaderName>,
    /// Spend rows record the caller's address (not `disable_requester_ip_address_logging`).
    pub log_requester_ip: bool,
    /// `use_x_forwarded_for`: the caller's address is `X-Forwarded-For`'s last entry.
    pub use_x_forwarded_for: bool,
    /// `reject_clientside_metadata_tags`: calls may not set their own tags.
    pub reject_client_tags: bool,
}

impl Runtime {
    /// This runtime with another model list.
    fn with_models(&self, router: Router, catalog: crate::models::Catalog) -> Runtime {
        Runtime {
            auth: self.auth.clone(),
            router,
            catalog: Arc::new(catalog),
            forced_model: self.forced_model.clone(),
            always_include_stream_usage: self.always_include_stream_usage,
            body_limit: self.body_limit,
            drop_params: self.drop_params,
            admin_body_limit: self.admin_body_limit,
            metadata_limit: self.metadata_limit,
            user_limit: self.user_limit,
            pass_through: self.pass_through.clone(),
            user_agent_tags: self.user_agent_tags,
            allowed_ips: self.allowed_ips.clone(),
            enforce_user_param: self.enforce_user_param,
            forward_headers: self.forward_headers.clone(),
            end_user_headers: self.end_user_headers.clone(),
            internal_user_header: self.internal_user_header.clone(),
            log_requester_ip: self.log_requester_ip,
            use_x_forwarded_for: self.use_x_forwarded_for,
            reject_client_tags: self.reject_client_tags,
        }
    }
}

/// How client connections are served (see serving.rs).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnLimits {
    /// From a connection's start or its last answer's end to the next request's complete
    /// headers; after it the connection is closed.
    pub keepalive: Duration,
    /// Open connections at most; `None`: as many as file descriptors allow (see serving).
    pub max_connections: Option<usize>,
}

/// SEAM: the store's database state for `/health/readiness`: `None` when no database is
/// configured, else whether it is reachable right now. Called per probe; keep it cheap.
pub type DbProbe = Arc<dyn Fn() -> Option<bool> + Send + Sync>;
/// Fleet state for `/health/readiness`: the configured `redis_failure_mode` and what the
/// instance does right now.
pub type RedisProbe = Arc<dyn Fn() -> (&'static str, RedisState) + Send + Sync>;

/// SEAM: why spend-log rows cannot be written right now (`None` while they can), for
/// `/health/readiness`. Called per probe; keep it cheap.
pub type SpendProbe = Arc<dyn Fn() -> Option<String> + Send + Sync>;

impl App {
    /// Serves the config's deployments plus `api` from now on: a new router and catalog are
    /// built and swapped in whole. Calls already routed finish on the deployments they
    /// started with; routing state (cooldowns, usage) starts afresh for the new list.
    pub(crate) fn set_api_models(&self, api: Vec<crate::models::ApiModel>) {
        let _one_at_a_time = self.models.apply.lock();
        let now = self.runtime.load();
        let (router, catalog) = self.models.build(api, Some(&now.router));
        let next = now.with_models(router, catalog);
        if let Some(source) = crate::metrics::routing_source(&next.router) {
            self.metrics.set_deployment_source(source);
        }
        self.runtime.store(Arc::new(next));
    }

    /// Prices every call by `prices` from now on: the router, the catalog and the
    /// pass-through routes are rebuilt with them and swapped in whole, as after a model
    /// change (calls already routed finish on what they started with).
    pub(crate) fn set_prices(
        &self,
        prices: crate::pricing::PriceTable,
        source: crate::pricing::cost_map::Source,
    ) -> Result<(), ProxyError> {
        let _one_at_a_time = self.models.apply.lock();
        let pass_through = crate::passthrough::build(&self.models.config, &prices)
            .map_err(|e| ProxyError::Internal(format!("the pass-through routes: {e}")))?;
        let now = self.runtime.load();
        let (router, catalog) = self.models.reprice(prices, source, &now.router);
        let mut next = now.with_models(router, catalog);
        next.pass_through = Arc::new(pass_through);
        if let Some(source) = crate::metrics::routing_source(&next.router) {
            self.metrics.set_deployment_source(source);
        }
        self.runtime.store(Arc::new(next));
        Ok(())
    }

    pub(crate) fn cut_off(&self) {
        self.cut.send_replace(true);
    }

    /// Resolves once the drain is over (see `Gateway::cut_off`).
    pub(crate) fn cut_signal(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.cut.subscribe();
        async move {
            // An error means the gateway is gone, and with it every call.
            let _ = rx.wait_for(|cut| *cut).await;
        }
    }

    /// The error a call still running at the end of the drain ends with.
    pub(crate) fn cut_error() -> ProxyError {
        ProxyError::Custom {
            status: 503,
            kind: "service_unavailable".to_string(),
            message: "The gateway is shutting down: this call was still running when the \
                      shutdown drain ended (GRACEFUL_SHUTDOWN_TIMEOUT)"
                .to_string(),
            param: None,
            headers: Vec::new(),
        }
    }
}

/// The budgets of tags made over the API, by tag.
pub(crate) type TagBudgets = std::collections::HashMap<String, idlehands_store::RouteBudget>;

pub(crate) struct App {
    pub runtime: ArcSwap<Runtime>,
    /// `default_key_generate_params` and `upperbound_key_generate_params`.
    pub key_bounds: crate::key_bounds::KeyBounds,
    /// `key_generation_settings`: who may create team and personal keys.
    pub key_generation: crate::key_generation::KeyGenerationRules,
    /// What `/user/new` fills in (`default_internal_user_params`, ...).
    pub user_defaults: crate::user_defaults::UserDefaults,
    /// What `/team/new` fills in (`default_team_params`, ...).
    pub team_defaults: crate::team_defaults::TeamDefaults,
    /// What the router is rebuilt from when stored deployments change.
    pub models: crate::models::ModelsBase,
    pub client: reqwest::Client,
    pub resolver: Arc<dyn KeyResolver>,
    pub hooks: Option<Arc<dyn CallHooks>>,
    pub sink: Arc<dyn CallSink>,
    /// Stored `/v1/responses` answers.
    pub responses: Arc<dyn crate::hooks::ResponseStore>,
    pub draining: AtomicBool,
    pub version: http::HeaderValue,
    pub db_probe: Option<DbProbe>,
    pub spend_probe: Option<SpendProbe>,
    /// Set when the drain is over: calls still running end now, with an error (see
    /// `Gateway::cut_off`).
    pub cut: tokio::sync::watch::Sender<bool>,
    pub redis_probe: Option<RedisProbe>,
    /// `general_settings.allow_requests_on_db_unavailable`: stay ready without the database.
    pub allow_without_db: bool,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// `litellm_settings.require_auth_for_metrics_endpoint` (default true).
    pub metrics_need_auth: bool,
    /// OpenTelemetry export, when `otel` is among the callbacks and configured.
    pub otel: Option<Arc<crate::otel::Otel>>,
    /// LiteLLM's `generic_api` logging callback, when listed and configured.
    pub generic_api: Option<Arc<crate::generic_api::GenericApiLogger>>,
    /// `general_settings.alerting` (slack, webhook), when configured.
    pub alerting: Option<Arc<crate::alerting::Alerting>>,
    pub payloads: crate::logging::PayloadLog,
    /// Dashboard sign-ins.
    pub sessions: Sessions,
    /// `general_settings.global_max_parallel_requests`: model calls in flight at once.
    pub parallel: Option<(Arc<tokio::sync::Semaphore>, u32)>,
    /// `general_settings.background_health_checks`: how often, and the latest results that
    /// `/health` answers with instead of calling every deployment.
    pub background_health: Option<(Duration, Latest)>,
    /// What the diagnostic routes report and obey.
    pub diagnostics: crate::diagnostics::Diagnostics,
    /// Model calls refused by `global_max_parallel_requests` since start-up.
    pub parallel_refused: std::sync::atomic::AtomicU64,
    /// Where health-check results are kept, when there is a database.
    pub health_log: Option<Arc<dyn crate::hooks::HealthLog>>,
    pub conn_limits: ConnLimits,
    /// Failed sign-ins and wrong keys per client address.
    pub throttle: Throttle,
    /// `litellm_settings.cache`, when on.
    pub response_cache: Option<Arc<crate::response_cache::ResponseCache>>,
    /// `general_settings.model_list_healthy_only`: the model listings leave out groups whose
    /// every deployment failed the latest background health check.
    pub model_list_healthy_only: bool,
    /// `litellm_settings.budget_exceeded_status_code` (422 unless set).
    pub budget_exceeded_status: u16,
    /// The budgets of tags made over the API (`/tag/new`), held as `tag_budget_config`'s are
    /// (see `ledger::tag_budgets`), by tag; a tag config.yaml budgets is not among them.
    pub tag_budgets: ArcSwap<TagBudgets>,
}

impl App {
    /// Why the database cannot take writes right now, if it cannot (for alerts).
    pub(crate) fn db_problem(&self) -> Option<String> {
        match (&self.db_probe, &self.spend_probe) {
            (Some(p), _) if p() == Some(false) => {
                Some("the database cannot be reached".to_string())
            }
            (_, Some(s)) => s(),
            _ => None,
        }
    }

    /// Under `general_settings.alerting`, watches for cooldowns and database failures until
    /// the gateway is gone.
    pub(crate) fn spawn_alert_watcher(self: &Arc<Self>) {
        let Some(alerting) = self.alerting.clone() else {
            return;
        };
        let weak: Weak<App> = Arc::downgrade(self);
        crate::alerting::spawn_watcher(alerting, move || {
            let app = weak.upgrade()?;
            let deployments = app
                .runtime
                .load()
                .router
                .routing()
                .map(|r| r.snapshot())
                .unwrap_or_default();
            Some((deployments, app.db_problem()))
        });
    }
}

/// What `/health/readiness` reports about Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisState {
    /// Redis answers: limits are shared by the fleet.
    Shared,
    /// Redis is down and the mode is `open`: limits hold per instance.
    PerInstance,
    /// Redis is down and the mode is `closed`: virtual-key requests are refused.
    Refusing,
}

impl RedisState {
    pub fn as_str(self) -> &'static str {
        match self {
            RedisState::Shared => "shared",
            RedisState::PerInstance => "per_instance",
            RedisState::Refusing => "refusing",
        }
    }

    pub(crate) fn from_u8(v: u8) -> RedisState {
        match v {
            0 => RedisState::Shared,
            1 => RedisState::PerInstance,
            _ => RedisState::Refusing,
        }
    }
}

/// The latest background check of every deployment: each with its error if unhealthy.
pub(crate) type Latest = Arc<parking_lot::RwLock<Option<Checked>>>;

pub(crate) type Checked = Vec<(Arc<Deployment>, Option<String>)>;
