//! The request-path front of the store: a cache of keys (hash -> record, with a negative
//! cache), the checks LiteLLM makes before a call (blocked, expired, model, budget, limits),
//! reservations, and the key-management operations that keep the cache honest.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use chrono::Utc;

use crate::clock::{Clock, SystemClock};
use parking_lot::{Mutex, RwLock};
use tokio::task::JoinHandle;

use crate::budgets::{Budget, BudgetPatch};
use crate::customers::EndUserView;
use crate::db::Store;
use crate::duration::LlmDuration;
use crate::error::{AccessError, BudgetLevel, StoreError};
use crate::keygen::{abbreviate, hash_key, new_key, token_of};
use crate::limiter::{KeyLimits, Limiter, LocalLimiter, Ticket};
use crate::money::usd_string;
use crate::organizations::OrgRecord;
use crate::spend::SpendLogRow;
use crate::teams::TeamView;
use crate::types::{
    BlockKeyRequest, DeleteKeysRequest, DeleteKeysResponse, GenerateKeyRequest,
    GenerateKeyResponse, KeyInfo, KeyInfoResponse, KeyListEntry, KeyListQuery, KeyListResponse,
    KeyObject, KeyRecord, KeyStatus, RegenerateKeyRequest, SpendLogsQuery, SpendLogsResponse,
    UpdateKeyRequest,
};
use crate::users::{NewUserRequest, UpdateUserRequest, UserRecord};
use crate::validate::{apply_update, new_key_record, validate_custom_key};
use crate::writer::{SpendWriter, WriterConfig};

/// The user whose budget is the proxy-wide one (LiteLLM's `litellm_proxy_budget_name`).
pub const PROXY_BUDGET_USER: &str = "litellm-proxy-budget";

/// `litellm_settings.max_budget` with its `budget_duration`: one budget every call counts
/// against, kept as the budget of the user [`PROXY_BUDGET_USER`] (as LiteLLM keeps it).
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyBudget {
    /// USD, as configured.
    pub max_budget: f64,
    pub budget_duration: String,
}

#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// After this long a cached key is re-read from the database in the background (LiteLLM's
    /// `user_api_key_cache_ttl`, 60 s); requests keep using the cached copy meanwhile.
    pub cache_ttl: Duration,
    /// How long an unknown key is remembered as unknown.
    pub negative_ttl: Duration,
    /// `litellm_settings.budget_exceeded_status_code` (LiteLLM 1.104+: 422).
    pub budget_exceeded_status: u16,
    /// How often budget windows are checked for rollover (besides on every request).
    pub reset_tick: Duration,
    /// `litellm_settings.max_end_user_budget` (nano-USD): the budget of every end user (the
    /// request's `user`) without one of their own.
    pub max_end_user_budget: Option<i64>,
    /// `litellm_settings.disable_end_user_cost_tracking`: an end user's calls are still
    /// refused when they are blocked or over their budget and still count against their rate
    /// limits, but their spend is no longer added up (the caller leaves `end_user` off the
    /// spend rows, which is where a customer's stored spend comes from).
    pub end_user_cost_tracking: bool,
    /// `litellm_settings.max_budget`: every call counts against it, and none is admitted
    /// once it is spent ([`Ledger::ensure_proxy_budget`] keeps its user).
    pub proxy_budget: Option<ProxyBudget>,
    pub writer: WriterConfig,
    /// The time key expiry, grace periods and budget windows are judged by.
    pub clock: Arc<dyn Clock>,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            cache_ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(60),
            budget_exceeded_status: 422,
            reset_tick: Duration::from_secs(1),
            max_end_user_budget: None,
            end_user_cost_tracking: true,
            proxy_budget: None,
            writer: WriterConfig::default(),
            clock: Arc::new(SystemClock),
        }
    }
}

/// Read on every request from every serving thread: nothing here takes a lock to read, so the
/// threads do not pass a lock's cache line back and forth.
struct Cached {
    record: ArcSwap<KeyRecord>,
    /// When `record` was read from the database: ms since [`Cached::epoch`].
    loaded_ms: AtomicU64,
    refreshing: AtomicBool,
}

impl Cached {
    fn new(record: Arc<KeyRecord>) -> Cached {
        let cached = Cached {
            record: ArcSwap::new(record),
            loaded_ms: AtomicU64::new(0),
            refreshing: AtomicBool::new(false),
        };
        cached.mark_loaded();
        cached
    }

    fn epoch() -> Instant {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        *EPOCH.get_or_init(Instant::now)
    }

    fn now_ms() -> u64 {
        u64::try_from(Cached::epoch().elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn mark_loaded(&self) {
        self.loaded_ms.store(Cached::now_ms(), Ordering::Release);
    }

    fn age(&self) -> Duration {
        let loaded = self.loaded_ms.load(Ordering::Acquire);
        Duration::from_millis(Cached::now_ms().saturating_sub(loaded))
    }
}

type InvalidationHook = Arc<dyn Fn(&str) + Send + Sync>;
type NoticeHandler = Arc<dyn Fn() + Send + Sync>;
/// How a notice travels among invalidations: no cached record's name starts so.
const NOTICE: &str = "notice:";
pub(crate) type TeamCache = HashMap<String, (Instant, Option<Arc<TeamView>>)>;
pub(crate) type UserCache = HashMap<String, (Instant, Option<Arc<UserRecord>>)>;
pub(crate) type CustomerCache = HashMap<String, (Instant, Arc<EndUserView>)>;
/// Keys' per-model budgets by entity (`keymodel:<token>:<entry>`), each with when it was read.
pub(crate) type KeyModelCache = HashMap<String, (Instant, Budget)>;
/// Entity -> the route budget as configured when its row was read, and that row.
pub(crate) type RouteCache = HashMap<String, (crate::route_budgets::RouteBudget, Budget)>;
/// Entity -> when the route budget last refused a hold here, and its limit then (nano-USD).
pub(crate) type RouteRefusals = HashMap<String, (chrono::DateTime<Utc>, Option<i64>)>;
pub(crate) type OrgCache = HashMap<String, (Instant, Option<Arc<OrgRecord>>)>;

struct Inner {
    store: Store,
    writer: SpendWriter,
    limiter: Arc<dyn Limiter>,
    keys: RwLock<HashMap<String, Arc<Cached>, foldhash::fast::RandomState>>,
    negative: Mutex<HashMap<String, Instant>>,
    /// Old token -> (new token, end of grace period) for regenerated keys.
    aliases: RwLock<HashMap<String, (String, chrono::DateTime<Utc>)>>,
    hooks: RwLock<Vec<InvalidationHook>>,
    /// What other instances' notices (`notice:<name>@<instance>` on the invalidation
    /// channel) start here.
    notices: RwLock<Vec<(String, NoticeHandler)>>,
    /// This instance in its notices: Redis delivers a publisher its own messages too.
    instance: String,
    /// Teams as keys in them need them, each with when it was read (`None`: no such team).
    teams: RwLock<TeamCache>,
    users: RwLock<UserCache>,
    customers: RwLock<CustomerCache>,
    /// Whether any end user was created (here, or announced by another instance): until one
    /// is, and without `max_end_user_budget`, a request's `user` costs no lookup.
    customers_exist: AtomicBool,
    orgs: RwLock<OrgCache>,
    key_models: RwLock<KeyModelCache>,
    /// Route budgets as last read (`crate::route_budgets`), by entity.
    routes: RwLock<RouteCache>,
    /// When each route budget last refused a hold here, by entity (see
    /// `Ledger::route_refused_lately`).
    routes_refused: RwLock<RouteRefusals>,
    cfg: LedgerConfig,
    ticker: Mutex<Option<JoinHandle<()>>>,
}

/// Cheap to clone; one per proxy process.
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

/// A key that passed authentication.
#[derive(Debug, Clone)]
pub struct AuthedKey {
    /// sha256 hex of the key: the spend-log `api_key`.
    pub token: String,
    pub record: Arc<KeyRecord>,
    /// The key's team, when it has one.
    pub team: Option<Arc<TeamView>>,
    /// The key's user, when it has one that exists.
    pub user: Option<Arc<UserRecord>>,
    /// The organization of the key's team (or the key's own), when it exists.
    pub org: Option<Arc<OrgRecord>>,
}

impl AuthedKey {
    /// LiteLLM's model access check: `[]` allows all; otherwise the exact name, `*`,
    /// `all-proxy-models`, or a `prefix/*` wildcard.
    pub fn check_model(&self, model: &str) -> Result<(), AccessError> {
        self.check_model_with(model, |_, _| false)
    }

    /// Like [`AuthedKey::check_model`]; `in_group(entry, model)` says whether a key's model
    /// entry is an access group that contains `model`.
    pub fn check_model_with(
        &self,
        model: &str,
        in_group: impl Fn(&str, &str) -> bool,
    ) -> Result<(), AccessError> {
        let models = &self.record.models;
        let allowed = models.is_empty()
            || models.iter().any(|m| {
                m == model
                    || m == "*"
                    || m == "all-proxy-models"
                    || m.strip_suffix('*')
                        .is_some_and(|p| !p.is_empty() && model.starts_with(p))
                    || in_group(m, model)
            });
        if allowed {
            Ok(())
        } else {
            Err(AccessError::ModelDenied {
                model: model.to_owned(),
            })
        }
    }
}

/// A call's model and what the key allows on it, for [`Ledger::reserve_for`].
#[derive(Debug, Clone, Copy)]
pub struct CallModel<'a> {
    /// The model group asked for.
    pub name: &'a str,
    /// The key's `model_max_budget` entry that governs it.
    pub budget_entry: Option<&'a str>,
    /// The key's `model_rpm_limit` / `model_tpm_limit` for it.
    pub rpm_limit: Option<u64>,
    pub tpm_limit: Option<u64>,
}

/// A request's hold on its key's budget and limits. Settle it with the spend-log row; dropping
/// it unsettled (client disconnect, panic) gives the hold back and logs nothing.
pub struct Reservation {
    ticket: Option<Ticket>,
    /// Holds on the budgets above the key's (team, team member, ...).
    levels: Vec<Ticket>,
    /// The hold on the end user's budget, and whether their spend is added up
    /// ([`LedgerConfig::end_user_cost_tracking`]).
    end_user: Option<(Ticket, bool)>,
    /// The organization the call's spend also counts for.
    organization_id: Option<String>,
    /// The key's `model_max_budget` entry the call counts against.
    model_budget: Option<String>,
    /// Holds on the route budgets of the deployment that takes the call
    /// (`Ledger::hold_routes`), and their entities, for the row.
    pub(crate) routes: Vec<Ticket>,
    pub(crate) route_entities: Vec<String>,
    limiter: Arc<dyn Limiter>,
    max_budget: Option<i64>,
    rpm_limit: Option<u64>,
    tpm_limit: Option<u64>,
    /// For a call without a key (the master key's), where no key ticket logs the row.
    writer: Option<SpendWriter>,
}

/// The key's state after a settled request, for `x-litellm-key-spend` / `-max-budget`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settled {
    /// Spend including this request, nano-USD.
    pub key_spend: i64,
    pub max_budget: Option<i64>,
}

impl Settled {
    /// `x-litellm-key-spend` value.
    pub fn spend_header(&self) -> String {
        usd_string(self.key_spend)
    }

    /// `x-litellm-key-max-budget` value (absent when the key has no budget).
    pub fn max_budget_header(&self) -> Option<String> {
        self.max_budget.map(usd_string)
    }
}

impl Reservation {
    /// LiteLLM's success headers for the key's limits:
    /// `x-ratelimit-api_key-{remaining,limit}-{requests,tokens}`, for the limits the key has.
    pub fn rate_limit_headers(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(t) = &self.ticket {
            if let (Some(left), Some(limit)) = (t.remaining_requests, self.rpm_limit) {
                out.push(("x-ratelimit-api_key-remaining-requests", left.to_string()));
                out.push(("x-ratelimit-api_key-limit-requests", limit.to_string()));
            }
            if let (Some(left), Some(limit)) = (t.remaining_tokens, self.tpm_limit) {
                out.push(("x-ratelimit-api_key-remaining-tokens", left.to_string()));
                out.push(("x-ratelimit-api_key-limit-tokens", limit.to_string()));
            }
        }
        out
    }

    /// Records the request: `row.spend` (actual cost, nano-USD) and `row.total_tokens` replace
    /// the estimate; the row is queued for the spend log with `api_key` set to the key's hash.
    /// Use it for failures too (spend 0, status `failure`).
    pub async fn settle(mut self, mut row: SpendLogRow) -> Settled {
        for level in std::mem::take(&mut self.levels)
            .into_iter()
            .chain(std::mem::take(&mut self.routes))
        {
            self.limiter
                .settle_counters(level, row.spend, row.total_tokens)
                .await;
        }
        if row.route_budgets.is_empty() {
            row.route_budgets = std::mem::take(&mut self.route_entities);
        }
        if let Some((level, tracked)) = self.end_user.take() {
            let spend = if tracked { row.spend } else { 0 };
            self.limiter
                .settle_counters(level, spend, row.total_tokens)
                .await;
        }
        if row.organization_id.is_none() {
            row.organization_id = self.organization_id.take();
        }
        if row.model_budget.is_none() {
            row.model_budget = self.model_budget.take();
        }
        let key_spend = match (self.ticket.take(), self.writer.take()) {
            (Some(ticket), _) => self.limiter.settle(ticket, row).await,
            (None, Some(writer)) => {
                writer.log(row).await;
                0
            }
            (None, None) => 0,
        };
        Settled {
            key_spend,
            max_budget: self.max_budget,
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.limiter.release(ticket);
        }
        for level in std::mem::take(&mut self.levels)
            .into_iter()
            .chain(std::mem::take(&mut self.routes))
        {
            self.limiter.release(level);
        }
        if let Some((level, _)) = self.end_user.take() {
            self.limiter.release(level);
        }
    }
}

/// The budgets a call of `key` counts against besides the key's own: its team's, the key's
/// user's budget within the team when the member has one, and the user's own budget.
/// Drops repeats, keeping each first occurrence where it was: a delete naming one id twice
/// would otherwise find it gone the second time and fail whole.
pub(crate) fn unique_in_order(ids: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    ids.retain(|id| seen.insert(id.clone()));
}

fn levels_of(key: &AuthedKey) -> Vec<(&Budget, BudgetLevel, &str)> {
    let mut out = Vec::new();
    if let Some(team) = &key.team {
        let team_id = team.record.team_id.as_str();
        out.push((&team.record.budget, BudgetLevel::Team, team_id));
        if let Some(user) = key.record.user_id.as_deref()
            && let Some(b) = team.member_budgets.get(user)
        {
            out.push((b, BudgetLevel::TeamMember(team_id.to_owned()), user));
        }
    }
    if let Some(user) = &key.user
        && user.budget.limits_calls()
    {
        out.push((&user.budget, BudgetLevel::User, user.user_id.as_str()));
    }
    if let Some(org) = &key.org
        && org.litellm_budget_table.limits_calls()
    {
        out.push((
            &org.litellm_budget_table,
            BudgetLevel::Organization,
            org.organization_id.as_str(),
        ));
    }
    out
}

/// A level's refusal in LiteLLM's words for that level.
fn level_error(e: AccessError, level: BudgetLevel, id: &str) -> AccessError {
    match e {
        AccessError::BudgetExceeded {
            spend_nanos,
            max_budget_nanos,
            reserved_nanos,
            status,
            ..
        } => AccessError::LevelBudgetExceeded {
            level,
            id: id.to_owned(),
            spend_nanos,
            max_budget_nanos,
            reserved_nanos,
            status,
        },
        AccessError::RateLimited {
            kind,
            limit,
            reset_at,
            retry_after_secs,
            ..
        } => AccessError::RateLimited {
            scope: level.scope(),
            key_hash: id.to_owned(),
            kind,
            limit,
            reset_at,
            retry_after_secs,
        },
        other => other,
    }
}

impl Ledger {
    /// Starts the spend writer and the budget-reset ticker (inside a tokio runtime).
    pub fn start(store: Store, cfg: LedgerConfig) -> Ledger {
        let writer = SpendWriter::start(store.clone(), cfg.writer.clone());
        let limiter = Arc::new(LocalLimiter::new(
            writer.clone(),
            cfg.budget_exceeded_status,
            cfg.clock.clone(),
        ));
        Ledger::with_limiter(store, writer, limiter, cfg)
    }

    /// With another limiter (e.g. one shared through Redis).
    pub fn with_limiter(
        store: Store,
        writer: SpendWriter,
        limiter: Arc<dyn Limiter>,
        cfg: LedgerConfig,
    ) -> Ledger {
        let inner = Arc::new(Inner {
            store,
            writer,
            limiter,
            keys: RwLock::new(HashMap::default()),
            negative: Mutex::new(HashMap::new()),
            aliases: RwLock::new(HashMap::new()),
            hooks: RwLock::new(Vec::new()),
            notices: RwLock::new(Vec::new()),
            instance: uuid::Uuid::new_v4().simple().to_string(),
            teams: RwLock::new(HashMap::new()),
            users: RwLock::new(HashMap::new()),
            customers: RwLock::new(HashMap::new()),
            key_models: RwLock::new(HashMap::new()),
            routes: RwLock::new(HashMap::new()),
            routes_refused: RwLock::new(HashMap::new()),
            customers_exist: AtomicBool::new(true),
            orgs: RwLock::new(HashMap::new()),
            cfg,
            ticker: Mutex::new(None),
        });
        let weak = Arc::downgrade(&inner);
        let period = inner.cfg.reset_tick;
        let ticker = tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let now = inner.cfg.clock.now();
                let tracked = inner.limiter.tick(now);
                inner.writer.sweep(now, tracked);
            }
        });
        *inner.ticker.lock() = Some(ticker);
        Ledger { inner }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub(crate) fn teams_cache(&self) -> &RwLock<TeamCache> {
        &self.inner.teams
    }

    pub(crate) fn users_cache(&self) -> &RwLock<UserCache> {
        &self.inner.users
    }

    pub(crate) fn customers_cache(&self) -> &RwLock<CustomerCache> {
        &self.inner.customers
    }

    pub(crate) fn orgs_cache(&self) -> &RwLock<OrgCache> {
        &self.inner.orgs
    }

    pub(crate) fn key_models_cache(&self) -> &RwLock<KeyModelCache> {
        &self.inner.key_models
    }

    pub(crate) fn routes_cache(&self) -> &RwLock<RouteCache> {
        &self.inner.routes
    }

    pub(crate) fn routes_refused(&self) -> &RwLock<RouteRefusals> {
        &self.inner.routes_refused
    }

    /// Whether end users' spend is added up (see [`LedgerConfig::end_user_cost_tracking`]).
    pub fn end_user_cost_tracking(&self) -> bool {
        self.inner.cfg.end_user_cost_tracking
    }

    pub(crate) fn config(&self) -> &LedgerConfig {
        &self.inner.cfg
    }

    /// The clock this ledger judges expiry and budget windows by, for the gateway's router to
    /// share.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.inner.cfg.clock.clone()
    }

    pub(crate) fn limiter(&self) -> &Arc<dyn Limiter> {
        &self.inner.limiter
    }

    pub fn writer(&self) -> &SpendWriter {
        &self.inner.writer
    }

    /// Loads every key into the cache so first requests do not wait on the database.
    pub async fn warm(&self) -> Result<usize, StoreError> {
        let any = self.inner.store.any_customer().await?;
        self.inner.customers_exist.store(any, Ordering::Release);
        let keys = self.inner.store.all_keys().await?;
        let keys = self.with_tiers(keys).await?;
        let n = keys.len();
        for k in keys {
            self.cache_insert(k);
        }
        Ok(n)
    }

    /// Commits queued spend rows and stops background work: call on SIGTERM/SIGINT.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        let ticker = self.inner.ticker.lock().take();
        if let Some(t) = ticker {
            t.abort();
        }
        self.inner.limiter.shutdown().await;
        self.inner.writer.shutdown().await
    }

    /// Called with the token of every key changed here (update, delete, block, regenerate);
    /// a fleet publishes these so other instances can [`Ledger::invalidate`].
    pub fn on_invalidate(&self, hook: impl Fn(&str) + Send + Sync + 'static) {
        self.inner.hooks.write().push(Arc::new(hook));
    }

    /// Runs `handler` when another instance announces `name` ([`Ledger::announce_notice`]):
    /// fleet-wide events that are not a cached record's change (prices reloaded, ...).
    pub fn on_notice(&self, name: &str, handler: impl Fn() + Send + Sync + 'static) {
        self.inner
            .notices
            .write()
            .push((name.to_owned(), Arc::new(handler)));
    }

    /// Tells every other instance of the fleet `name` happened here (on the invalidation
    /// channel; nothing without one). Not run here: the announcer has done it already.
    pub fn announce_notice(&self, name: &str) {
        let token = format!("{NOTICE}{name}@{}", self.inner.instance);
        let hooks = self.inner.hooks.read().clone();
        for hook in hooks {
            hook(&token);
        }
    }

    /// Drops the cached record of `token` (its counters stay); the next request re-reads it.
    /// Another instance's notice runs its handlers instead.
    pub fn invalidate(&self, token: &str) {
        if let Some(notice) = token.strip_prefix(NOTICE) {
            let (name, from) = notice.rsplit_once('@').unwrap_or((notice, ""));
            if from == self.inner.instance {
                return;
            }
            let handlers: Vec<NoticeHandler> = self
                .inner
                .notices
                .read()
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, h)| h.clone())
                .collect();
            for h in handlers {
                h();
            }
            return;
        }
        self.inner.limiter.invalidated(token);
        if let Some(team_id) = token.strip_prefix("team:") {
            self.inner.teams.write().remove(team_id);
            return;
        }
        if let Some(user_id) = token.strip_prefix("user:") {
            self.inner.users.write().remove(user_id);
            return;
        }
        if let Some(id) = token.strip_prefix("customer:") {
            self.inner.customers_exist.store(true, Ordering::Release);
            self.inner.customers.write().remove(id);
            return;
        }
        if let Some(id) = token.strip_prefix("org:") {
            self.inner.orgs.write().remove(id);
            return;
        }
        if token.starts_with(crate::key_model_budgets::PREFIX) {
            self.inner.key_models.write().remove(token);
            return;
        }
        self.inner.keys.write().remove(token);
        self.inner.negative.lock().remove(token);
        let own = crate::key_model_budgets::entity(token, "");
        let mut models = self.inner.key_models.write();
        if !models.is_empty() {
            models.retain(|entity, _| !entity.starts_with(&own));
        }
    }

    /// Re-reads every key from the database, replacing the whole cache, and forgets every
    /// refused key and grace alias: for when invalidations may have been missed (the
    /// subscription was down).
    pub async fn reload_all(&self) {
        self.inner.negative.lock().clear();
        self.inner.aliases.write().clear();
        self.inner.teams.write().clear();
        self.inner.users.write().clear();
        self.inner.customers.write().clear();
        // An end user may have been created meanwhile: look them up again.
        self.inner.customers_exist.store(true, Ordering::Release);
        self.inner.orgs.write().clear();
        let keys = match self.inner.store.all_keys().await {
            Ok(keys) => self.with_tiers(keys).await,
            Err(e) => Err(e),
        };
        match keys {
            Ok(keys) => {
                let old = self.inner.keys.read().clone();
                let fresh = keys
                    .into_iter()
                    .map(|k| {
                        let limits = KeyLimits::from_record(&k);
                        // Only changed keys: a fleet has many, each one a Redis call.
                        // (Spend moves all the time and is not reconfigured here.)
                        let changed = old.get(&k.token).is_none_or(|c| {
                            let before = KeyLimits::from_record(&c.record.load());
                            KeyLimits {
                                spend: limits.spend,
                                ..before
                            } != limits
                        });
                        if changed {
                            self.inner.limiter.reconfigure(&limits, false);
                        }
                        (k.token.clone(), Arc::new(Cached::new(Arc::new(k))))
                    })
                    .collect();
                // One swap, so a request never sees an empty cache in between.
                *self.inner.keys.write() = fresh;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not re-read the keys; they are read again on next use");
                self.inner.keys.write().clear();
            }
        }
    }

    pub(crate) fn invalidate_and_announce(&self, token: &str) {
        self.invalidate(token);
        let hooks = self.inner.hooks.read().clone();
        for hook in hooks {
            hook(token);
        }
    }

    /// After a delete: the limiter drops each key's or entity's counters, and every instance
    /// its cached copy.
    pub(crate) fn forget_and_announce<S: AsRef<str>>(&self, ids: impl IntoIterator<Item = S>) {
        for id in ids {
            self.inner.limiter.forget(id.as_ref());
            self.invalidate_and_announce(id.as_ref());
        }
    }

    fn cache_insert(&self, record: KeyRecord) -> Arc<KeyRecord> {
        let token = record.token.clone();
        let record = Arc::new(record);
        let cached = Arc::new(Cached::new(record.clone()));
        self.inner.keys.write().insert(token.clone(), cached);
        self.inner.negative.lock().remove(&token);
        record
    }

    fn refresh_in_background(&self, token: String, cached: Arc<Cached>) {
        let ledger = self.clone();
        tokio::spawn(async move {
            let read = match ledger.inner.store.get_key(&token).await {
                Ok(Some(record)) => ledger.with_tier(record).await.map(Some),
                other => other,
            };
            match read {
                Ok(Some(record)) => {
                    ledger
                        .inner
                        .limiter
                        .reconfigure(&KeyLimits::from_record(&record), false);
                    cached.record.store(Arc::new(record));
                    cached.mark_loaded();
                }
                Ok(None) => {
                    ledger.invalidate(&token);
                    ledger.inner.limiter.forget(&token);
                }
                Err(e) => tracing::warn!(error = %e, "key refresh failed; keeping the cached copy"),
            }
            cached.refreshing.store(false, Ordering::Release);
        });
    }

    /// Resolves a virtual key (plaintext `sk-...`) and checks it is usable: 401 unknown,
    /// blocked or expired. The database is asked only on a cache miss.
    pub async fn authenticate(&self, api_key: &str) -> Result<AuthedKey, AccessError> {
        self.authenticate_hashed(api_key, hash_key(api_key)).await
    }

    /// [`Ledger::authenticate`] for a caller that already holds `hash_key(api_key)`.
    pub async fn authenticate_hashed(
        &self,
        api_key: &str,
        token: String,
    ) -> Result<AuthedKey, AccessError> {
        let invalid = || AccessError::InvalidKey {
            masked: abbreviate(api_key),
            hash: token.clone(),
        };
        let now = self.inner.cfg.clock.now();
        let (token, record) = match self.lookup(&token).await? {
            Some(record) => (token.clone(), record),
            None if self.known_unknown(&token) => return Err(invalid()),
            None => match self.grace_alias(&token, now).await? {
                // A regenerated key's old value, still in its grace period.
                Some(active) => match self.lookup(&active).await? {
                    Some(record) => (active, record),
                    None => return Err(invalid()),
                },
                None => {
                    let mut negative = self.inner.negative.lock();
                    if negative.len() > 100_000 {
                        negative.clear();
                    }
                    // A refusal never extends the entry: a key created elsewhere must start
                    // working after `negative_ttl` at the latest, however often it is retried.
                    negative.entry(token.clone()).or_insert_with(Instant::now);
                    return Err(invalid());
                }
            },
        };
        if record.blocked {
            return Err(AccessError::Blocked);
        }
        if let Some(expires) = record.expires
            && expires < now
        {
            return Err(AccessError::ExpiredKey { expires, now });
        }
        let team = match record.team_id.as_deref() {
            Some(team_id) => match self.team_view(team_id).await? {
                Some(team) => Some(team),
                None => {
                    return Err(AccessError::TeamNotFound {
                        team_id: team_id.to_owned(),
                    });
                }
            },
            None => None,
        };
        if let Some(t) = &team
            && t.record.blocked
        {
            return Err(AccessError::TeamBlocked {
                team_id: t.record.team_id.clone(),
            });
        }
        let user = match record.user_id.as_deref() {
            Some(user_id) => self.user_view(user_id).await?,
            None => None,
        };
        let org_id = match &team {
            Some(t) => t.record.organization_id.as_deref(),
            None => record.organization_id.as_deref(),
        };
        let org = match org_id {
            Some(id) => self.org_view(id).await?,
            None => None,
        };
        Ok(AuthedKey {
            token,
            record,
            team,
            user,
            org,
        })
    }

    /// The cached record (refreshed in the background when stale), or the database's on a
    /// miss; `None` for keys known or found to be unknown.
    async fn lookup(&self, token: &str) -> Result<Option<Arc<KeyRecord>>, AccessError> {
        let cached = self.inner.keys.read().get(token).cloned();
        if let Some(cached) = cached {
            let stale = cached.age() >= self.inner.cfg.cache_ttl;
            if stale && !cached.refreshing.swap(true, Ordering::AcqRel) {
                self.refresh_in_background(token.to_owned(), cached.clone());
            }
            return Ok(Some(cached.record.load_full()));
        }
        if self.known_unknown(token) {
            return Ok(None);
        }
        let read = match self.inner.store.get_key(token).await {
            Ok(Some(record)) => self.with_tier(record).await.map(Some),
            other => other,
        };
        match read {
            Ok(Some(record)) => {
                // Read again after its tier changed (`Ledger::tier_changed`): the counters
                // take the tier's new limits.
                if record.budget_id.is_some() {
                    self.inner
                        .limiter
                        .reconfigure(&KeyLimits::from_record(&record), false);
                }
                Ok(Some(self.cache_insert(record)))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                tracing::warn!(error = %e, "key lookup failed");
                Err(AccessError::Unavailable)
            }
        }
    }

    /// Whether `token` was refused as unknown less than `negative_ttl` ago.
    fn known_unknown(&self, token: &str) -> bool {
        let mut negative = self.inner.negative.lock();
        match negative.get(token) {
            Some(t) if t.elapsed() < self.inner.cfg.negative_ttl => true,
            Some(_) => {
                negative.remove(token);
                false
            }
            None => false,
        }
    }

    async fn grace_alias(
        &self,
        token: &str,
        now: chrono::DateTime<Utc>,
    ) -> Result<Option<String>, AccessError> {
        let known = self.inner.aliases.read().get(token).cloned();
        if let Some((active, until)) = known {
            if until > now {
                return Ok(Some(active));
            }
            self.inner.aliases.write().remove(token);
            return Ok(None);
        }
        match self.inner.store.deprecated_token(token, now).await {
            Ok(Some((active, until))) => {
                self.inner
                    .aliases
                    .write()
                    .insert(token.to_owned(), (active.clone(), until));
                Ok(Some(active))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                tracing::warn!(error = %e, "key lookup failed");
                Err(AccessError::Unavailable)
            }
        }
    }

    /// `key` as the call made for `user_id` sees it (LiteLLM's `user_header_mappings` to
    /// `internal_user`): that user's budget and limits, and its member budget in the key's
    /// team, hold the call in place of the key's user's, as that user is the one its spend row
    /// names. A user without a row holds nothing.
    pub async fn acting_as(
        &self,
        key: &AuthedKey,
        user_id: &str,
    ) -> Result<AuthedKey, AccessError> {
        if key.record.user_id.as_deref() == Some(user_id) {
            return Ok(key.clone());
        }
        let user = self.user_view(user_id).await?;
        let mut record = KeyRecord::clone(&key.record);
        record.user_id = Some(user_id.to_owned());
        Ok(AuthedKey {
            token: key.token.clone(),
            record: Arc::new(record),
            team: key.team.clone(),
            user,
            org: key.org.clone(),
        })
    }

    /// Checks the budget and rpm/tpm/parallel limits and reserves the estimate: call after
    /// authentication and the model check, before forwarding upstream.
    pub async fn reserve(
        &self,
        key: &AuthedKey,
        estimate_nanos: i64,
        estimate_tokens: u64,
    ) -> Result<Reservation, AccessError> {
        self.reserve_for(key, None, None, estimate_nanos, estimate_tokens)
            .await
    }

    /// A call without a key (the master key's) on behalf of `end_user`: a blocked end user is
    /// refused and their budget reserved as for a key's call (LiteLLM checks end users before
    /// it looks at the key). `None` when there is nothing to hold; the reservation's
    /// [`Reservation::settle`] logs the row itself.
    /// `estimate` (nano-USD, tokens) is asked only when there is a budget to hold it against.
    /// `acting_user` (a `user_header_mappings` user) is held like a key's user.
    pub async fn reserve_end_user(
        &self,
        end_user: Option<&str>,
        acting_user: Option<&str>,
        estimate: impl FnOnce() -> (i64, u64),
    ) -> Result<Option<Reservation>, AccessError> {
        let bounded = self.inner.cfg.max_end_user_budget.is_some()
            || self.inner.customers_exist.load(Ordering::Acquire);
        let end_user = match end_user.filter(|u| bounded && !u.is_empty()) {
            Some(id) => {
                let view = self.end_user_view(id).await?;
                if view.record.as_ref().is_some_and(|c| c.blocked) {
                    return Err(AccessError::EndUserBlocked { id: id.to_owned() });
                }
                view.budget.is_some().then_some((id, view))
            }
            None => None,
        };
        let user = match acting_user.filter(|u| !u.is_empty()) {
            Some(id) => self
                .user_view(id)
                .await?
                .filter(|u| u.budget.limits_calls()),
            None => None,
        };
        let proxy = self.proxy_budget_user().await?;
        if end_user.is_none() && proxy.is_none() && user.is_none() {
            return Ok(None);
        }
        let (estimate_nanos, estimate_tokens) = estimate();
        let mut reservation = self.keyless_reservation();
        if let Some(u) = &user {
            let ticket = self
                .hold(
                    &u.budget,
                    BudgetLevel::User,
                    &u.user_id,
                    estimate_nanos,
                    estimate_tokens,
                )
                .await?;
            reservation.levels.push(ticket);
        }
        let estimate = (estimate_nanos, estimate_tokens);
        self.hold_outer(
            &mut reservation,
            end_user.as_ref(),
            proxy.as_deref(),
            estimate,
        )
        .await?;
        Ok(Some(reservation))
    }

    /// A reservation of a call without a key that holds nothing yet; its
    /// [`Reservation::settle`] logs the row itself.
    pub fn keyless_reservation(&self) -> Reservation {
        Reservation {
            ticket: None,
            levels: Vec::new(),
            end_user: None,
            organization_id: None,
            model_budget: None,
            routes: Vec::new(),
            route_entities: Vec::new(),
            limiter: self.inner.limiter.clone(),
            max_budget: None,
            rpm_limit: None,
            tpm_limit: None,
            writer: Some(self.inner.writer.clone()),
        }
    }

    /// Checks and reserves a call's estimate on one level above the key, refused in that
    /// level's words.
    async fn hold(
        &self,
        budget: &Budget,
        level: BudgetLevel,
        id: &str,
        estimate_nanos: i64,
        estimate_tokens: u64,
    ) -> Result<Ticket, AccessError> {
        self.inner
            .limiter
            .admit(&budget.key_limits(), estimate_nanos, estimate_tokens)
            .await
            .map_err(|e| level_error(e, level, id))
    }

    /// The holds every call ends with: its end user's budget (charged unless end-user cost
    /// tracking is off), then the proxy-wide budget.
    async fn hold_outer(
        &self,
        reservation: &mut Reservation,
        end_user: Option<&(&str, Arc<EndUserView>)>,
        proxy: Option<&UserRecord>,
        (estimate_nanos, estimate_tokens): (i64, u64),
    ) -> Result<(), AccessError> {
        if let Some((id, view)) = end_user
            && let Some(budget) = &view.budget
        {
            let ticket = self
                .hold(
                    budget,
                    BudgetLevel::EndUser,
                    id,
                    estimate_nanos,
                    estimate_tokens,
                )
                .await?;
            reservation.end_user = Some((ticket, self.inner.cfg.end_user_cost_tracking));
        }
        if let Some(user) = proxy {
            let ticket = self
                .hold(
                    &user.budget,
                    BudgetLevel::Proxy,
                    PROXY_BUDGET_USER,
                    estimate_nanos,
                    estimate_tokens,
                )
                .await?;
            reservation.levels.push(ticket);
        }
        Ok(())
    }

    /// The proxy-wide budget's user, when `litellm_settings.max_budget` is set (cached like
    /// other users).
    async fn proxy_budget_user(&self) -> Result<Option<Arc<UserRecord>>, AccessError> {
        if self.inner.cfg.proxy_budget.is_none() {
            return Ok(None);
        }
        Ok(self
            .user_view(PROXY_BUDGET_USER)
            .await?
            .filter(|u| u.budget.limits_calls()))
    }

    /// Whether calls count against a proxy-wide budget (their rows say so, see
    /// [`SpendLogRow::proxy_budget`]).
    pub fn counts_proxy_budget(&self) -> bool {
        self.inner.cfg.proxy_budget.is_some()
    }

    /// The proxy-wide budget, USD, as configured (`None`: there is none).
    pub fn proxy_max_budget(&self) -> Option<f64> {
        self.inner.cfg.proxy_budget.as_ref().map(|p| p.max_budget)
    }

    /// Makes the proxy-wide budget's user hold the configured budget: created at the first
    /// start, its limits brought in line after a config change. Its window is not moved when
    /// only `max_budget` changed, nor on a plain restart (as LiteLLM's upsert). Instances of a
    /// fleet starting together may both try to create it; the one that loses reads it.
    pub async fn ensure_proxy_budget(&self) -> Result<(), StoreError> {
        let Some(want) = self.inner.cfg.proxy_budget.clone() else {
            return Ok(());
        };
        let duration = Some(Some(want.budget_duration.clone()));
        let existing = match self.store().get_user(PROXY_BUDGET_USER).await? {
            Some(u) => u,
            None => {
                let made = self
                    .new_user(
                        NewUserRequest {
                            user_id: Some(PROXY_BUDGET_USER.to_owned()),
                            auto_create_key: Some(false),
                            budget: BudgetPatch {
                                max_budget: Some(Some(want.max_budget)),
                                budget_duration: duration.clone(),
                                ..BudgetPatch::default()
                            },
                            ..NewUserRequest::default()
                        },
                        None,
                    )
                    .await;
                match made {
                    Ok(_) => return Ok(()),
                    Err(e) => match self.store().get_user(PROXY_BUDGET_USER).await? {
                        Some(u) => u,
                        None => return Err(e),
                    },
                }
            }
        };
        let b = &existing.budget;
        let max = crate::money::usd_to_nanos(want.max_budget);
        let same_window = b.budget_duration.as_deref() == Some(want.budget_duration.as_str())
            && b.budget_reset_at.is_some();
        if b.max_budget == max && same_window {
            return Ok(());
        }
        self.apply_user_update(UpdateUserRequest {
            user_id: Some(PROXY_BUDGET_USER.to_owned()),
            budget: BudgetPatch {
                max_budget: Some(Some(want.max_budget)),
                budget_duration: if same_window { None } else { duration },
                ..BudgetPatch::default()
            },
            ..UpdateUserRequest::default()
        })
        .await?;
        Ok(())
    }

    /// [`Ledger::reserve`] for a call on behalf of `end_user` (the request's `user`): a
    /// blocked end user is refused, and their budget counts like the others.
    /// `model` names the call's model and the key's limits for it (its `model_max_budget`
    /// entry, `model_rpm_limit`, `model_tpm_limit`): each counts like the other levels.
    pub async fn reserve_for(
        &self,
        key: &AuthedKey,
        end_user: Option<&str>,
        model: Option<CallModel<'_>>,
        estimate_nanos: i64,
        estimate_tokens: u64,
    ) -> Result<Reservation, AccessError> {
        let bounded = self.inner.cfg.max_end_user_budget.is_some()
            || self.inner.customers_exist.load(Ordering::Acquire);
        let end_user = match end_user.filter(|u| bounded && !u.is_empty()) {
            Some(id) => {
                let view = self.end_user_view(id).await?;
                if view.record.as_ref().is_some_and(|c| c.blocked) {
                    return Err(AccessError::EndUserBlocked { id: id.to_owned() });
                }
                Some((id, view))
            }
            None => None,
        };
        let proxy = self.proxy_budget_user().await?;
        let limits = KeyLimits::from_record(&key.record);
        let ticket = self
            .inner
            .limiter
            .admit(&limits, estimate_nanos, estimate_tokens)
            .await?;
        let mut reservation = Reservation {
            ticket: Some(ticket),
            levels: Vec::new(),
            end_user: None,
            organization_id: key
                .team
                .as_ref()
                .and_then(|t| t.record.organization_id.clone())
                .or_else(|| key.record.organization_id.clone()),
            model_budget: None,
            routes: Vec::new(),
            route_entities: Vec::new(),
            limiter: self.inner.limiter.clone(),
            max_budget: key.record.max_budget,
            rpm_limit: limits.rpm_limit,
            tpm_limit: limits.tpm_limit,
            writer: None,
        };
        // Each level is checked and reserved in one step like the key; a refusal drops the
        // reservation, which gives back what the levels before it hold.
        for (budget, level, id) in levels_of(key) {
            let ticket = self
                .hold(budget, level, id, estimate_nanos, estimate_tokens)
                .await?;
            reservation.levels.push(ticket);
        }
        let estimate = (estimate_nanos, estimate_tokens);
        self.hold_outer(
            &mut reservation,
            end_user.as_ref(),
            proxy.as_deref(),
            estimate,
        )
        .await?;
        let Some(model) = model else {
            return Ok(reservation);
        };
        if model.rpm_limit.is_some() || model.tpm_limit.is_some() {
            let id = format!("{}:{}", key.token, model.name);
            let limits =
                crate::key_model_budgets::rate_limits(&id, model.rpm_limit, model.tpm_limit);
            let ticket = self
                .inner
                .limiter
                .admit(&limits, estimate_nanos, estimate_tokens)
                .await
                .map_err(|e| level_error(e, BudgetLevel::ModelPerKey, &id))?;
            reservation.levels.push(ticket);
        }
        if let Some(entry) = model.budget_entry
            && let Some(budget) = self.key_model_budget(&key.record, entry).await?
        {
            let level = BudgetLevel::KeyModel {
                model: model.name.to_owned(),
                entry: entry.to_owned(),
                key_alias: key.record.key_alias.clone(),
            };
            let ticket = self
                .inner
                .limiter
                .admit(&budget.key_limits(), estimate_nanos, estimate_tokens)
                .await
                .map_err(|e| level_error(e, level, &key.token))?;
            reservation.levels.push(ticket);
            reservation.model_budget = Some(entry.to_owned());
        }
        Ok(reservation)
    }

    /// Logs a request that has no reservation (e.g. refused before one was made).
    pub async fn log(&self, row: SpendLogRow) {
        self.inner.writer.log(row).await;
    }

    /// The key's live spend (nano-USD), including spend not yet committed.
    pub fn key_spend(&self, token: &str) -> Option<i64> {
        self.inner.limiter.spend(token)
    }

    // ---- key management (`/key/*`) ----

    /// `/key/generate`.
    pub async fn generate_key(
        &self,
        req: GenerateKeyRequest,
        created_by: Option<&str>,
    ) -> Result<GenerateKeyResponse, StoreError> {
        let plaintext = match &req.key {
            Some(k) => {
                validate_custom_key(k, "key")?;
                k.clone()
            }
            None => new_key(),
        };
        let mut record = new_key_record(&req, &plaintext, created_by, self.inner.cfg.clock.now())?;
        let tier_window = self.check_tier(record.budget_id.as_deref()).await?;
        if record.budget_duration.is_none() {
            record.budget_reset_at = tier_window;
        }
        self.inner.store.insert_key(&record).await?;
        // Another instance may have refused this value already (a client retrying before
        // the key existed): its negative entry goes too.
        self.invalidate_and_announce(&record.token);
        Ok(GenerateKeyResponse {
            key: plaintext,
            token_id: record.token.clone(),
            token: Some(record.token.clone()),
            record,
        })
    }

    async fn resolve(&self, key: Option<&str>, alias: Option<&str>) -> Result<String, StoreError> {
        match (key, alias) {
            (Some(k), _) => Ok(token_of(k)),
            (None, Some(alias)) => match self.inner.store.get_key_by_alias(alias).await? {
                Some(record) => Ok(record.token),
                None => Err(StoreError::key_not_found()),
            },
            (None, None) => Err(StoreError::bad_request(
                "Either `key` or `key_alias` is required to identify the key",
                "key",
            )),
        }
    }

    /// `/key/info`: `key_or_hash` is the `?key=` value, or the caller's own key.
    /// `spend` is what the enforcing limiter counts (in a fleet: the shared counters, so every
    /// instance answers alike), else the database's; `reserved_spend` what calls in progress
    /// hold against the budget.
    pub async fn key_info(&self, key_or_hash: &str) -> Result<KeyInfoResponse, StoreError> {
        let token = token_of(key_or_hash);
        let Some(mut record) = self.inner.store.get_key(&token).await? else {
            return Err(StoreError::key_info_not_found());
        };
        let mut reserved = 0;
        if let Some(live) = self.inner.limiter.live(&token).await {
            record.spend = live.spend;
            reserved = live.reserved;
        }
        let status = record.status(self.inner.cfg.clock.now());
        let model_max_budget_usage = self.model_budget_usage(&record).await?;
        Ok(KeyInfoResponse {
            key: key_or_hash.to_owned(),
            info: KeyInfo {
                record,
                status,
                reserved_spend: reserved,
                model_max_budget_usage,
            },
        })
    }

    /// `/key/list`.
    pub async fn list_keys(&self, q: &KeyListQuery) -> Result<KeyListResponse, StoreError> {
        let page = q.page.unwrap_or(1);
        let size = q.size.unwrap_or(10);
        if page == 0 {
            return Err(StoreError::bad_request("page must be >= 1", "page"));
        }
        if size == 0 || size > 100 {
            return Err(StoreError::bad_request(
                "size must be between 1 and 100",
                "size",
            ));
        }
        let (records, total) = self.inner.store.list_keys(q, page, size).await?;
        let full = q.return_full_object.unwrap_or(false);
        let keys = records
            .into_iter()
            .map(|record| {
                if full {
                    KeyListEntry::Full(Box::new(KeyObject {
                        token: record.token.clone(),
                        record,
                    }))
                } else {
                    KeyListEntry::Hash(record.token)
                }
            })
            .collect();
        Ok(KeyListResponse {
            keys,
            total_count: total,
            current_page: page,
            total_pages: total.div_ceil(u64::from(size)),
        })
    }

    /// `/key/update`: only the fields present change.
    pub async fn update_key(
        &self,
        req: UpdateKeyRequest,
        updated_by: Option<&str>,
    ) -> Result<KeyObject, StoreError> {
        let alias_as_id = match (&req.key, &req.key_alias) {
            (None, Some(Some(alias))) => Some(alias.clone()),
            _ => None,
        };
        let token = self
            .resolve(req.key.as_deref(), alias_as_id.as_deref())
            .await?;
        if req.spend.is_some() {
            // Increments queued before the new spend must not land on top of it.
            self.inner.writer.flush().await?;
        }
        let tier_window = match &req.budget_id {
            Some(Some(id)) => self.check_tier(Some(id)).await?,
            _ => None,
        };
        let now = self.inner.cfg.clock.now();
        let record = self
            .inner
            .store
            .update_key_with(&token, |k| {
                let was_following = k.budget_id.clone();
                let mut scope = apply_update(k, &req, updated_by, now)?;
                // Beginning to follow a windowed budget without a window of its own: the key's
                // window starts now.
                if k.budget_duration.is_none() && k.budget_id != was_following {
                    k.budget_reset_at = tier_window;
                    scope.budget_reset_at = true;
                }
                Ok(scope)
            })
            .await?;
        self.after_change(&record, req.spend.is_some());
        Ok(KeyObject {
            token: record.token.clone(),
            record,
        })
    }

    /// LiteLLM's `/key/{key}/reset_spend`: the key's spend set to `reset_to` USD, which must
    /// be at least 0 and at most both its spend and its `max_budget` (so it can only lower a
    /// spend, never hand out budget). Checked and written in one transaction, after the spend
    /// already queued is committed. Gives the key and the spend it had, in nano-USD.
    pub async fn reset_key_spend(
        &self,
        token: &str,
        reset_to: f64,
        updated_by: Option<&str>,
    ) -> Result<(KeyRecord, i64), StoreError> {
        let field = "reset_to";
        if !reset_to.is_finite() || reset_to < 0.0 {
            return Err(StoreError::bad_request("reset_to must be >= 0", field));
        }
        let nanos = crate::money::usd_to_nanos(reset_to)
            .ok_or_else(|| StoreError::bad_request("reset_to must be a float", field))?;
        // Increments queued before the reset must not land on top of it.
        self.inner.writer.flush().await?;
        let now = self.inner.cfg.clock.now();
        let mut previous = 0;
        let record = self
            .inner
            .store
            .update_key_with(token, |k| {
                previous = k.spend;
                crate::budgets::check_lowering(nanos, k.spend, k.max_budget, reset_to)?;
                k.spend = nanos;
                k.updated_at = now;
                k.updated_by = updated_by.map(str::to_owned);
                Ok(crate::keys_db::UpdateScope {
                    spend: true,
                    budget_reset_at: false,
                })
            })
            .await?;
        self.after_change(&record, true);
        Ok((record, previous))
    }

    /// `/global/spend/reset`: every key's and team's spend to 0 (LiteLLM's reset; the spend
    /// rows and rollups stay), after the queued spend is committed; the limiter's counters (a
    /// fleet's shared ones too) follow, and every instance re-reads the keys and teams.
    pub async fn reset_global_spend(&self) -> Result<(), StoreError> {
        self.inner.writer.flush().await?;
        let (keys, teams) = self.inner.store.zero_key_and_team_spend().await?;
        for k in &keys {
            self.after_change(k, true);
        }
        for t in &teams {
            self.inner.limiter.reconfigure(&t.key_limits(), true);
            self.invalidate_and_announce(&t.entity);
        }
        Ok(())
    }

    fn after_change(&self, record: &KeyRecord, spend_overwritten: bool) {
        self.inner
            .limiter
            .reconfigure(&KeyLimits::from_record(record), spend_overwritten);
        self.invalidate_and_announce(&record.token);
        self.model_budgets_changed(record);
    }

    /// `/key/delete`: all named keys or none (404 if one is missing).
    pub async fn delete_keys(
        &self,
        req: DeleteKeysRequest,
        deleted_by: Option<&str>,
    ) -> Result<DeleteKeysResponse, StoreError> {
        let keys = req.keys.unwrap_or_default();
        let aliases = req.key_aliases.unwrap_or_default();
        if keys.is_empty() && aliases.is_empty() {
            return Err(StoreError::bad_request(
                "Either `keys` or `key_aliases` must list at least one key",
                "keys",
            ));
        }
        let mut tokens: Vec<String> = keys.iter().map(|k| token_of(k)).collect();
        for alias in &aliases {
            tokens.push(self.resolve(None, Some(alias)).await?);
        }
        unique_in_order(&mut tokens);
        self.inner.store.delete_keys(&tokens, deleted_by).await?;
        self.forget_and_announce(&tokens);
        let mut deleted_keys = keys;
        deleted_keys.extend(aliases);
        Ok(DeleteKeysResponse { deleted_keys })
    }

    /// `/key/regenerate` (`path_key` from `/key/{key}/regenerate`): a new key replaces the old
    /// one, which stops working at once or, with `grace_period`, works as the new key until the
    /// period ends; spend and settings carry over.
    pub async fn regenerate_key(
        &self,
        path_key: Option<&str>,
        req: RegenerateKeyRequest,
        by: Option<&str>,
    ) -> Result<GenerateKeyResponse, StoreError> {
        let now = self.inner.cfg.clock.now();
        let grace_until = match &req.grace_period {
            Some(g) => Some(LlmDuration::parse_field(g, "grace_period")?.after(now)),
            None => None,
        };
        let key = path_key
            .map(str::to_owned)
            .or_else(|| req.changes.key.clone());
        let alias_as_id = match (&key, &req.changes.key_alias) {
            (None, Some(Some(alias))) => Some(alias.clone()),
            _ => None,
        };
        let old_token = self.resolve(key.as_deref(), alias_as_id.as_deref()).await?;
        let plaintext = match &req.new_key {
            Some(k) => {
                validate_custom_key(k, "new_key")?;
                k.clone()
            }
            None => new_key(),
        };
        let Some(mut record) = self.inner.store.get_key(&old_token).await? else {
            return Err(StoreError::key_not_found());
        };
        apply_update(&mut record, &req.changes, by, now)?;
        record.token = hash_key(&plaintext);
        record.key_name = abbreviate(&plaintext);
        // Spend queued for the old token must land before its row is replaced.
        self.inner.writer.flush().await?;
        self.inner
            .store
            .replace_key(&old_token, &record, by, grace_until)
            .await?;
        {
            let mut aliases = self.inner.aliases.write();
            for (active, _) in aliases.values_mut() {
                if *active == old_token {
                    *active = record.token.clone();
                }
            }
            if let Some(until) = grace_until {
                aliases.insert(old_token.clone(), (record.token.clone(), until));
            }
        }
        self.inner.limiter.forget(&old_token);
        self.invalidate_and_announce(&old_token);
        self.invalidate_and_announce(&record.token);
        let record = self
            .inner
            .store
            .get_key(&record.token)
            .await?
            .ok_or_else(StoreError::key_not_found)?;
        Ok(GenerateKeyResponse {
            key: plaintext,
            token_id: record.token.clone(),
            token: None,
            record,
        })
    }

    /// `/key/block` (`blocked = true`) and `/key/unblock`.
    pub async fn set_blocked(
        &self,
        req: BlockKeyRequest,
        blocked: bool,
        by: Option<&str>,
    ) -> Result<KeyObject, StoreError> {
        let token = token_of(&req.key);
        let now = self.inner.cfg.clock.now();
        let record = self
            .inner
            .store
            .update_key_with(&token, |k| {
                k.blocked = blocked;
                k.updated_at = now;
                k.updated_by = by.map(str::to_owned);
                Ok(Default::default())
            })
            .await?;
        self.after_change(&record, false);
        Ok(KeyObject {
            token: record.token.clone(),
            record,
        })
    }

    /// `/spend/logs`.
    pub async fn spend_logs(&self, q: &SpendLogsQuery) -> Result<SpendLogsResponse, StoreError> {
        self.inner.store.spend_logs(q).await
    }

    /// Whether `token` names a deleted key (for `/key/info` status of archived keys).
    pub async fn deleted_status(&self, key_or_hash: &str) -> Result<Option<KeyStatus>, StoreError> {
        let deleted = self.inner.store.was_deleted(&token_of(key_or_hash)).await?;
        Ok(deleted.then_some(KeyStatus::Deleted))
    }
}
