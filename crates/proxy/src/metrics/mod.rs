//! Prometheus metrics with LiteLLM's names, types, labels and buckets, served at `/metrics`
//! (the handler is http/metrics.rs).
//!
//! A finished call is counted into series kept in [`series`]; a scrape encodes them with the
//! `prometheus-client` crate's OpenMetrics text encoder. Series that carry a key hash and have
//! not been touched for [`IDLE_SERIES_TTL`] are dropped, so keys that stopped calling do not
//! grow memory and scrapes for ever. Money is summed in integer nano-dollars.

mod call_set;
mod labels;
mod series;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::registry::Registry;

use crate::auth::Principal;
use crate::hooks::{CallRecord, CallStatus};
use call_set::CallSet;
pub(crate) use labels::exception_class;
use labels::{Def, NONE};
use series::{Count, Family, Histogram, Labels, Level, PerToken, Usd};

/// Content type of the OpenMetrics text format, which the encoder writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How long a series with a key hash may go untouched before it is dropped. A dropped counter
/// that comes back starts again from zero, which Prometheus' `rate()` reads as a reset.
pub const IDLE_SERIES_TTL: Duration = Duration::from_secs(3600);

/// How often recording checks for idle series (a scrape always does).
const SWEEP_EVERY_SECS: u64 = 60;

/// Client-supplied text (user agents) is cut here before it becomes a label value.
const MAX_LABEL_CHARS: usize = 256;

/// What the model-route gate knows about a request that the handler does not see: its path,
/// user agent and client address (LiteLLM's `route`, `user_agent` and `client_ip` labels).
#[derive(Debug, Default, Clone)]
pub struct RequestFacts {
    pub route: String,
    pub user_agent: Option<String>,
    pub client_ip: Option<Arc<str>>,
}

impl RequestFacts {
    /// The facts of a request, shared with the previous request of this serving thread when
    /// they are the same (its keep-alive connections mostly send one route from one client):
    /// building them took four allocations and formatting the address a request.
    pub(crate) fn of(
        route: &str,
        user_agent: Option<&str>,
        ip: Option<std::net::IpAddr>,
    ) -> Arc<RequestFacts> {
        type Last = Option<(Option<std::net::IpAddr>, Arc<RequestFacts>)>;
        thread_local! {
            static LAST: std::cell::RefCell<Last> = const { std::cell::RefCell::new(None) };
        }
        let build = || {
            Arc::new(RequestFacts {
                route: route.to_string(),
                user_agent: user_agent.map(str::to_string),
                client_ip: ip.map(|ip| Arc::from(ip.to_string())),
            })
        };
        LAST.with(|last| {
            let Ok(mut last) = last.try_borrow_mut() else {
                return build();
            };
            match &*last {
                Some((kept_ip, facts))
                    if *kept_ip == ip
                        && facts.route == route
                        && facts.user_agent.as_deref() == user_agent =>
                {
                    Arc::clone(facts)
                }
                _ => {
                    let facts = build();
                    *last = Some((ip, Arc::clone(&facts)));
                    facts
                }
            }
        })
    }
}

tokio::task_local! {
    static REQUEST: Arc<RequestFacts>;
}

/// Run `f` (a model route's handler) with `facts` readable through [`current_request`].
/// Not an `async fn`: that would keep `f` as its argument beside the scope that holds it,
/// doubling the size of a call's future (two copies of a chat call's, some 5 KB each).
pub(crate) fn with_request<F: Future>(
    facts: Arc<RequestFacts>,
    f: F,
) -> tokio::task::futures::TaskLocalFuture<Arc<RequestFacts>, F> {
    REQUEST.scope(facts, f)
}

/// The facts of the request being handled, when the model-route gate set them.
pub(crate) fn current_request() -> Option<Arc<RequestFacts>> {
    REQUEST.try_with(Arc::clone).ok()
}

/// One deployment's state at scrape time, for `litellm_deployment_*` (see
/// [`Metrics::set_deployment_source`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeploymentGauge {
    /// The deployment's `litellm_params.model`.
    pub litellm_model_name: String,
    pub model_id: String,
    pub model_group: String,
    pub api_base: String,
    pub api_provider: String,
    /// 0 healthy, 1 partial outage, 2 complete outage (cooling down), as LiteLLM.
    pub state: u8,
    /// Times the deployment was put into cooldown since start.
    pub cooled_down_total: u64,
    pub success_responses_total: u64,
    pub failure_responses_total: u64,
}

/// Reads the router's per-deployment state; called once per scrape.
/// `(provider, remaining USD)` for each provider budget, read at scrape time (see
/// [`Metrics::set_provider_budget_source`]).
pub type ProviderBudgetSource = Arc<dyn Fn() -> Vec<(String, f64)> + Send + Sync>;

pub type DeploymentSource = Arc<dyn Fn() -> Vec<DeploymentGauge> + Send + Sync>;

/// A fallback from one model group to another, for the `litellm_deployment_*_fallbacks`
/// counters.
#[derive(Debug, Clone, Copy)]
pub struct Fallback<'a> {
    pub requested_model: &'a str,
    pub fallback_model: &'a str,
    /// The fallback deployment's id.
    pub model_id: &'a str,
    pub succeeded: bool,
    /// The status and provider of the failure that made the gateway fall back.
    pub cause: Option<(u16, &'a str)>,
}

/// Tells gateways' metrics apart for the serving threads' kept series (`call_set`).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

struct Inner {
    id: u64,
    epoch: Instant,
    idle_ttl: Duration,
    next_sweep: AtomicU64,
    /// `litellm_settings.enable_end_user_cost_tracking_prometheus_only`: without it LiteLLM
    /// leaves `end_user` unset, to keep the series count down.
    end_user_labels: AtomicBool,
    total_requests: Family<Count>,
    failed_requests: Family<Count>,
    requests: Family<Count>,
    total_latency: Family<Histogram>,
    api_latency: Family<Histogram>,
    first_token: Family<Histogram>,
    overhead: Family<Histogram>,
    per_token: Family<PerToken>,
    spend: Family<Usd>,
    total_tokens: Family<Count>,
    input_tokens: Family<Count>,
    output_tokens: Family<Count>,
    remaining_budget: Family<Level>,
    max_budget: Family<Level>,
    fallbacks_ok: Family<Count>,
    fallbacks_failed: Family<Count>,
    cache_hits: Family<Count>,
    cache_misses: Family<Count>,
    cached_tokens: Family<Count>,
    deployments: RwLock<Option<DeploymentSource>>,
    providers: RwLock<Option<ProviderBudgetSource>>,
}

/// The gateway's metrics. One per gateway; reach it with `Gateway::metrics`.
pub struct Metrics {
    inner: Arc<Inner>,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Metrics")
    }
}

/// The label values of one call, looked up by LiteLLM's label names.
struct CallLabels<'a> {
    end_user: &'a str,
    user: &'a str,
    hashed_api_key: &'a str,
    api_key_alias: &'a str,
    team: &'a str,
    requested_model: &'a str,
    model: &'a str,
    model_id: &'a str,
    api_base: &'a str,
    api_provider: &'a str,
    route: &'a str,
    client_ip: &'a str,
    user_agent: &'a str,
    status: &'a str,
    exception_class: &'a str,
    fallback_model: &'a str,
}

/// Which of [`CallLabels`]' values a label of LiteLLM's takes, as a number: each family works
/// its labels out once (see `Family::slots`) instead of matching label names on every call.
pub(crate) fn call_slot(label: &str) -> Option<u8> {
    Some(match label {
        "end_user" => 0,
        "user" => 1,
        "hashed_api_key" => 2,
        "api_key_alias" => 3,
        "team" => 4,
        "requested_model" | "model_group" => 5,
        "model" | "litellm_model_name" => 6,
        "model_id" => 7,
        "api_base" => 8,
        "api_provider" => 9,
        "route" => 10,
        "client_ip" => 11,
        "user_agent" => 12,
        "status_code" | "exception_status" => 13,
        "exception_class" => 14,
        "fallback_model" => 15,
        // team_alias, user_email, org_id, org_alias, service_tier: not known here.
        _ => return None,
    })
}

impl<'a> CallLabels<'a> {
    fn value(&self, slot: Option<u8>) -> &'a str {
        match slot {
            Some(0) => self.end_user,
            Some(1) => self.user,
            Some(2) => self.hashed_api_key,
            Some(3) => self.api_key_alias,
            Some(4) => self.team,
            Some(5) => self.requested_model,
            Some(6) => self.model,
            Some(7) => self.model_id,
            Some(8) => self.api_base,
            Some(9) => self.api_provider,
            Some(10) => self.route,
            Some(11) => self.client_ip,
            Some(12) => self.user_agent,
            Some(13) => self.status,
            Some(14) => self.exception_class,
            Some(15) => self.fallback_model,
            _ => NONE,
        }
    }

    /// Every value, by slot.
    fn values(&self) -> [&'a str; call_set::SLOTS] {
        std::array::from_fn(|i| self.value(u8::try_from(i).ok()))
    }

    /// The series of `family` for these labels, touched `now`.
    fn series<V: Default + Send + Sync + 'static>(
        &self,
        family: &Family<V>,
        now: u64,
    ) -> Option<Arc<series::Series<V>>> {
        call_set::series_of(family, &self.values(), now)
    }
}

fn or_none(v: Option<&str>) -> &str {
    v.filter(|s| !s.is_empty()).unwrap_or(NONE)
}

fn cut(v: &str) -> &str {
    match v.char_indices().nth(MAX_LABEL_CHARS) {
        Some((i, _)) => v.get(..i).unwrap_or(v),
        None => v,
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self::with_idle_ttl(IDLE_SERIES_TTL)
    }

    /// Metrics whose per-key series are dropped after `idle_ttl` without a call.
    pub fn with_idle_ttl(idle_ttl: Duration) -> Self {
        let inner = Arc::new(Inner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            epoch: Instant::now(),
            idle_ttl,
            next_sweep: AtomicU64::new(SWEEP_EVERY_SECS),
            end_user_labels: AtomicBool::new(false),
            total_requests: Family::new(&labels::PROXY_TOTAL_REQUESTS),
            failed_requests: Family::new(&labels::PROXY_FAILED_REQUESTS),
            requests: Family::new(&labels::REQUESTS),
            total_latency: Family::new(&labels::REQUEST_TOTAL_LATENCY),
            api_latency: Family::new(&labels::LLM_API_LATENCY),
            first_token: Family::new(&labels::TIME_TO_FIRST_TOKEN),
            overhead: Family::new(&labels::OVERHEAD_LATENCY),
            per_token: Family::new(&labels::LATENCY_PER_OUTPUT_TOKEN),
            spend: Family::new(&labels::SPEND),
            total_tokens: Family::new(&labels::TOTAL_TOKENS),
            input_tokens: Family::new(&labels::INPUT_TOKENS),
            output_tokens: Family::new(&labels::OUTPUT_TOKENS),
            remaining_budget: Family::new(&labels::REMAINING_KEY_BUDGET),
            max_budget: Family::new(&labels::KEY_MAX_BUDGET),
            fallbacks_ok: Family::new(&labels::SUCCESSFUL_FALLBACKS),
            fallbacks_failed: Family::new(&labels::FAILED_FALLBACKS),
            cache_hits: Family::new(&labels::CACHE_HITS),
            cache_misses: Family::new(&labels::CACHE_MISSES),
            cached_tokens: Family::new(&labels::CACHED_TOKENS),
            deployments: RwLock::new(None),
            providers: RwLock::new(None),
        });
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Exposition(inner.clone())));
        Self { inner, registry }
    }

    /// `litellm_settings.enable_end_user_cost_tracking_prometheus_only`: label series with
    /// the body's `user` (LiteLLM leaves `end_user` "None" otherwise).
    pub fn set_end_user_labels(&self, on: bool) {
        self.inner.end_user_labels.store(on, Ordering::Relaxed);
    }

    fn secs(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.inner.epoch).as_secs()
    }

    /// Count a finished call (the gateway calls this once per [`CallRecord`]); `request` is
    /// what the model-route gate saw (see [`current_request`]).
    pub fn observe(
        &self,
        record: &CallRecord,
        principal: &Principal,
        request: Option<&RequestFacts>,
    ) {
        let inner = &*self.inner;
        let now = self.secs(Instant::now());
        self.sweep_if_due(now);
        let failed = record.status == CallStatus::Failure;
        // The status code's text without an allocation (any u16 a record holds is in range;
        // one that is not gets its digits written).
        let (code, written);
        let status = match http::StatusCode::from_u16(record.http_status) {
            Ok(c) => {
                code = c;
                code.as_str()
            }
            Err(_) => {
                written = record.http_status.to_string();
                &written
            }
        };
        let class = if failed {
            labels::exception_class(&record.custom_llm_provider, record.http_status)
        } else {
            String::new()
        };
        let end_user = if inner.end_user_labels.load(Ordering::Relaxed) {
            cut(or_none(record.end_user.as_deref()))
        } else {
            NONE
        };
        let l = CallLabels {
            end_user,
            user: or_none(record.user_id.as_deref()),
            hashed_api_key: or_none(record.api_key_hash.as_deref()),
            api_key_alias: or_none(record.key_alias.as_deref()),
            team: or_none(record.team_id.as_deref()),
            requested_model: or_none(Some(&record.model_group)),
            model: or_none(Some(&record.model)),
            model_id: or_none(Some(&record.model_id)),
            api_base: or_none(record.api_base.as_deref()),
            api_provider: or_none(Some(&record.custom_llm_provider)),
            route: or_none(request.map(|r| r.route.as_str())),
            client_ip: or_none(request.and_then(|r| r.client_ip.as_deref())),
            user_agent: cut(or_none(request.and_then(|r| r.user_agent.as_deref()))),
            status,
            exception_class: or_none(Some(&class)),
            fallback_model: NONE,
        };
        match CallSet::take(inner, failed, &l.values(), now) {
            Some(mut set) => {
                Self::count(inner, &mut set, record, failed, now);
                set.keep();
            }
            None => tracing::warn!("a call's metrics were not recorded: no series for its labels"),
        }
        // Only calls the response cache was asked about, as LiteLLM counts them.
        if record.cache_key.is_some() {
            let family = if record.cache_hit {
                &inner.cache_hits
            } else {
                &inner.cache_misses
            };
            if let Some(s) = l.series(family, now) {
                s.value.add(1);
            }
            if record.cache_hit
                && let Some(s) = l.series(&inner.cached_tokens, now)
            {
                s.value.add(record.total_tokens);
            }
        }
        self.set_key_budget(principal, record.cost_nanos, now);
    }

    fn count(inner: &Inner, set: &mut CallSet, record: &CallRecord, failed: bool, now: u64) {
        set.total.value.add(1);
        set.outcome.value.add(1);
        if !failed {
            // As LiteLLM: latencies are those of answered calls.
            let total = record.duration();
            let overhead = record.overhead.min(total);
            let api = total - overhead;
            if let Some(latency) = set.latency(inner, now) {
                for (s, d) in latency.iter().zip([total, api, overhead]) {
                    s.value.observe_secs(d.as_secs_f64());
                }
            }
            if record.stream
                && let Some(first) = record.completion_start_time
                && let Ok(ttft) = (first - record.start_time).to_std()
                && let Some(s) = set.first_token(inner, now)
            {
                s.value.observe_secs(ttft.as_secs_f64());
            }
            if record.completion_tokens > 0
                && let Some(s) = set.per_token(inner, now)
            {
                s.value
                    .0
                    .observe_secs(api.as_secs_f64() / record.completion_tokens as f64);
            }
        }
        // Counted for failed calls too: a stream cut short still used (and was charged) tokens.
        let tokens = [
            record.prompt_tokens,
            record.completion_tokens,
            record.total_tokens,
        ];
        for (s, n) in set.tokens.iter().zip(tokens) {
            s.value.add(n);
        }
        set.spend.value.add_nanos(record.cost_nanos);
    }

    /// `litellm_remaining_api_key_budget_metric` and `litellm_api_key_max_budget_metric`: the
    /// key's spend as resolved at auth plus this call, as LiteLLM reports too, without a
    /// database read per request. No budget reads `+Inf`, and LiteLLM labels these two with
    /// an empty alias, not "None", when the key has none.
    fn set_key_budget(&self, principal: &Principal, cost_nanos: u64, now: u64) {
        let Some(hash) = principal.key_hash() else {
            return;
        };
        let alias = principal.key_alias().unwrap_or("");
        let (remaining, max) = match principal {
            Principal::VirtualKey(k) => match k.max_budget_nanos {
                Some(max) => {
                    let spent = k.spend_nanos.saturating_add(cost_nanos);
                    ((max as f64 - spent as f64) / 1e9, Some(max as f64 / 1e9))
                }
                None => (f64::INFINITY, None),
            },
            _ => (f64::INFINITY, None),
        };
        if let Some(s) = self.inner.remaining_budget.get(&[hash, alias], now) {
            s.value.set(remaining);
        }
        if let Some(max) = max
            && let Some(s) = self.inner.max_budget.get(&[hash, alias], now)
        {
            s.value.set(max);
        }
    }

    /// Count a fallback (for the routing loop).
    pub fn record_fallback(&self, f: &Fallback<'_>, principal: &Principal) {
        let now = self.secs(Instant::now());
        let (status, class) = match f.cause {
            Some((code, provider)) => (code.to_string(), labels::exception_class(provider, code)),
            None => (NONE.to_string(), NONE.to_string()),
        };
        let (team, user) = match principal {
            Principal::VirtualKey(k) => (k.team_id.as_deref(), k.user_id.as_deref()),
            _ => (None, None),
        };
        let l = CallLabels {
            end_user: NONE,
            user: or_none(user),
            hashed_api_key: or_none(principal.key_hash()),
            api_key_alias: or_none(principal.key_alias()),
            team: or_none(team),
            requested_model: or_none(Some(f.requested_model)),
            model: NONE,
            model_id: or_none(Some(f.model_id)),
            api_base: NONE,
            api_provider: NONE,
            route: NONE,
            client_ip: NONE,
            user_agent: NONE,
            status: &status,
            exception_class: &class,
            fallback_model: or_none(Some(f.fallback_model)),
        };
        let family = if f.succeeded {
            &self.inner.fallbacks_ok
        } else {
            &self.inner.fallbacks_failed
        };
        if let Some(s) = l.series(family, now) {
            s.value.add(1);
        }
    }

    /// Where `litellm_deployment_state`, `litellm_deployment_cooled_down` and the deployment
    /// response counters come from (the router's snapshot). Without one, they are absent.
    pub fn set_deployment_source(&self, source: DeploymentSource) {
        *self.inner.deployments.write() = Some(source);
    }

    /// Where `litellm_provider_remaining_budget_metric` comes from (the provider budgets as
    /// this instance knows their spend). Without one, it is absent.
    pub fn set_provider_budget_source(&self, source: ProviderBudgetSource) {
        *self.inner.providers.write() = Some(source);
    }

    fn sweep_if_due(&self, now: u64) {
        let due = self.inner.next_sweep.load(Ordering::Relaxed);
        if now >= due
            && self
                .inner
                .next_sweep
                .compare_exchange(
                    due,
                    now + SWEEP_EVERY_SECS,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            self.evict_idle_at_secs(now);
        }
    }

    /// Drop every per-key series last touched more than the idle TTL before `at`; returns
    /// how many went. Recording and scrapes call this on their own; `at` lets a test move
    /// the clock instead of waiting.
    pub fn evict_idle_at(&self, at: Instant) -> usize {
        self.evict_idle_at_secs(self.secs(at))
    }

    fn evict_idle_at_secs(&self, now: u64) -> usize {
        let Some(cutoff) = now.checked_sub(self.inner.idle_ttl.as_secs()) else {
            return 0;
        };
        let i = &*self.inner;
        [
            i.total_requests.evict_idle(cutoff),
            i.failed_requests.evict_idle(cutoff),
            i.requests.evict_idle(cutoff),
            i.total_latency.evict_idle(cutoff),
            i.api_latency.evict_idle(cutoff),
            i.first_token.evict_idle(cutoff),
            i.overhead.evict_idle(cutoff),
            i.per_token.evict_idle(cutoff),
            i.spend.evict_idle(cutoff),
            i.total_tokens.evict_idle(cutoff),
            i.input_tokens.evict_idle(cutoff),
            i.output_tokens.evict_idle(cutoff),
            i.remaining_budget.evict_idle(cutoff),
            i.max_budget.evict_idle(cutoff),
            i.fallbacks_ok.evict_idle(cutoff),
            i.fallbacks_failed.evict_idle(cutoff),
            i.cache_hits.evict_idle(cutoff),
            i.cache_misses.evict_idle(cutoff),
            i.cached_tokens.evict_idle(cutoff),
        ]
        .iter()
        .sum()
    }

    /// The OpenMetrics text exposition (ends with `# EOF`).
    pub fn render(&self) -> String {
        self.evict_idle_at(Instant::now());
        let mut out = String::with_capacity(16 * 1024);
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            // Only a failing `fmt::Write`, which a String never is.
            tracing::error!(error = %e, "encoding /metrics failed");
        }
        out
    }
}

/// The registry's view of the series: encoded on each scrape.
struct Exposition(Arc<Inner>);

impl fmt::Debug for Exposition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Exposition")
    }
}

fn encode_family<V: EncodeMetric + Default + Send + Sync + 'static>(
    encoder: &mut DescriptorEncoder,
    family: &Family<V>,
) -> fmt::Result {
    let def = family.def;
    let mut metric = encoder.encode_descriptor(def.name, def.help, None, def.kind)?;
    for s in family.sorted() {
        let labels = Labels {
            names: def.labels,
            values: &s.values,
        };
        s.value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A family read from the router at scrape time.
fn encode_snapshot<V: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    def: &'static Def,
    rows: &[(Box<[Box<str>]>, V)],
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(def.name, def.help, None, def.kind)?;
    for (values, v) in rows {
        let labels = Labels {
            names: def.labels,
            values,
        };
        v.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn count(n: u64) -> Count {
    let c = Count::default();
    c.add(n);
    c
}

impl Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let i = &*self.0;
        encode_family(&mut encoder, &i.total_requests)?;
        encode_family(&mut encoder, &i.failed_requests)?;
        encode_family(&mut encoder, &i.requests)?;
        encode_family(&mut encoder, &i.total_latency)?;
        encode_family(&mut encoder, &i.api_latency)?;
        encode_family(&mut encoder, &i.first_token)?;
        encode_family(&mut encoder, &i.overhead)?;
        encode_family(&mut encoder, &i.per_token)?;
        encode_family(&mut encoder, &i.total_tokens)?;
        encode_family(&mut encoder, &i.input_tokens)?;
        encode_family(&mut encoder, &i.output_tokens)?;
        encode_family(&mut encoder, &i.spend)?;
        encode_family(&mut encoder, &i.remaining_budget)?;
        encode_family(&mut encoder, &i.max_budget)?;
        encode_family(&mut encoder, &i.fallbacks_ok)?;
        encode_family(&mut encoder, &i.fallbacks_failed)?;
        encode_family(&mut encoder, &i.cache_hits)?;
        encode_family(&mut encoder, &i.cache_misses)?;
        encode_family(&mut encoder, &i.cached_tokens)?;
        let providers = i.providers.read().clone();
        if let Some(providers) = providers {
            let rows: Vec<_> = providers()
                .into_iter()
                .map(|(provider, remaining)| {
                    let l = Level::default();
                    l.set(remaining);
                    (Box::new([Box::from(provider)]) as Box<[Box<str>]>, l)
                })
                .collect();
            encode_snapshot(&mut encoder, &labels::PROVIDER_REMAINING_BUDGET, &rows)?;
        }
        let source = i.deployments.read().clone();
        let Some(source) = source else {
            return Ok(());
        };
        let mut deps = source();
        deps.sort_by(|a, b| (&a.model_group, &a.model_id).cmp(&(&b.model_group, &b.model_id)));
        let text = |v: &str| -> Box<str> { Box::from(or_none(Some(v))) };
        let short = |d: &DeploymentGauge| -> Box<[Box<str>]> {
            Box::new([
                text(&d.litellm_model_name),
                text(&d.model_id),
                text(&d.api_base),
                text(&d.api_provider),
            ])
        };
        let long = |d: &DeploymentGauge| -> Box<[Box<str>]> {
            Box::new([
                text(&d.model_group),
                text(&d.litellm_model_name),
                text(&d.model_id),
                text(&d.api_base),
                text(&d.api_provider),
            ])
        };
        let state: Vec<_> = deps
            .iter()
            .map(|d| {
                let l = Level::default();
                l.set(f64::from(d.state));
                (short(d), l)
            })
            .collect();
        encode_snapshot(&mut encoder, &labels::DEPLOYMENT_STATE, &state)?;
        let cooled: Vec<_> = deps
            .iter()
            .map(|d| (short(d), count(d.cooled_down_total)))
            .collect();
        encode_snapshot(&mut encoder, &labels::DEPLOYMENT_COOLED_DOWN, &cooled)?;
        for (def, pick) in [
            (
                &labels::DEPLOYMENT_SUCCESS,
                (|d| d.success_responses_total) as fn(&DeploymentGauge) -> u64,
            ),
            (&labels::DEPLOYMENT_FAILURE, |d| d.failure_responses_total),
            (&labels::DEPLOYMENT_TOTAL, |d| {
                d.success_responses_total
                    .saturating_add(d.failure_responses_total)
            }),
        ] {
            let rows: Vec<_> = deps.iter().map(|d| (long(d), count(pick(d)))).collect();
            encode_snapshot(&mut encoder, def, &rows)?;
        }
        Ok(())
    }
}

/// The routing crate's per-deployment state, labelled with each deployment's model, base URL
/// and provider; `None` when the model list has no exact deployment.
pub(crate) fn routing_source(router: &crate::router::Router) -> Option<DeploymentSource> {
    let routing = router.routing()?.clone();
    // The snapshot lists deployments in slot order; slots index these labels.
    let mut labels: Vec<Option<(String, String, String)>> = Vec::new();
    for d in router.deployments() {
        if labels.len() <= d.slot {
            labels.resize(d.slot + 1, None);
        }
        labels[d.slot] = Some((
            d.model.clone(),
            d.api_base.clone().unwrap_or_default(),
            d.provider.clone(),
        ));
    }
    Some(Arc::new(move || {
        routing
            .snapshot()
            .into_iter()
            .enumerate()
            .map(|(slot, s)| {
                let (model, api_base, provider) =
                    labels.get(slot).cloned().flatten().unwrap_or_default();
                DeploymentGauge {
                    litellm_model_name: model,
                    model_id: s.id,
                    model_group: s.model_group,
                    api_base,
                    api_provider: provider,
                    state: s.health.metric_value(),
                    cooled_down_total: s.cooldowns_total,
                    success_responses_total: s.successes_total,
                    failure_responses_total: s.failures_total,
                }
            })
            .collect()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request's facts are its own: the previous request's are reused only when route,
    /// user agent and address are all the same.
    #[test]
    fn request_facts_follow_the_request() {
        let a: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        let b: std::net::IpAddr = "::1".parse().unwrap();
        let cases = [
            ("/v1/chat/completions", Some("curl"), Some(a)),
            ("/v1/chat/completions", Some("curl"), Some(a)),
            ("/v1/chat/completions", Some("curl"), Some(b)),
            ("/chat/completions", Some("curl"), Some(b)),
            ("/chat/completions", None, Some(b)),
            ("/chat/completions", Some("curl"), Some(b)),
            ("/chat/completions", Some("curl"), None),
        ];
        let mut last: Option<Arc<RequestFacts>> = None;
        for (i, (route, ua, ip)) in cases.into_iter().enumerate() {
            let facts = RequestFacts::of(route, ua, ip);
            assert_eq!(facts.route, route);
            assert_eq!(facts.user_agent.as_deref(), ua);
            assert_eq!(
                facts.client_ip.as_deref(),
                ip.map(|ip| ip.to_string()).as_deref()
            );
            if let Some(prev) = &last {
                assert_eq!(Arc::ptr_eq(prev, &facts), i == 1, "case {i}");
            }
            last = Some(facts);
        }
    }

    #[test]
    fn deployment_source_is_rendered_when_set() {
        let m = Metrics::new();
        assert!(!m.render().contains("litellm_deployment_state"));
        m.set_deployment_source(Arc::new(|| {
            vec![DeploymentGauge {
                litellm_model_name: "openai/gpt-4o".into(),
                model_id: "d1".into(),
                model_group: "gpt-4o".into(),
                state: 2,
                cooled_down_total: 3,
                ..Default::default()
            }]
        }));
        let text = m.render();
        assert!(text.contains("litellm_deployment_state{litellm_model_name=\"openai/gpt-4o\",model_id=\"d1\",api_base=\"None\",api_provider=\"None\"} 2.0\n"), "{text}");
        assert!(text.contains("litellm_deployment_cooled_down_total{litellm_model_name=\"openai/gpt-4o\",model_id=\"d1\",api_base=\"None\",api_provider=\"None\"} 3.0\n"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.set_deployment_source(Arc::new(|| {
            vec![DeploymentGauge {
                litellm_model_name: "a\"b\\c\nd\re".into(),
                model_id: "d1".into(),
                ..Default::default()
            }]
        }));
        let text = m.render();
        assert!(
            text.contains("litellm_model_name=\"a\\\"b\\\\c\\nde\""),
            "{text}"
        );
    }

    fn call(key: &str, status: CallStatus, stream: bool) -> CallRecord {
        let base = CallRecord::for_test();
        let now = base.start_time;
        CallRecord {
            api_key_hash: Some(key.into()),
            stream,
            cost_nanos: 5,
            end_time: now + chrono::Duration::milliseconds(20),
            completion_start_time: stream.then(|| now + chrono::Duration::milliseconds(5)),
            http_status: if status == CallStatus::Failure {
                429
            } else {
                200
            },
            status,
            ..base
        }
    }

    /// The family's count for `key`, over every series of that key.
    fn of<V>(family: &Family<V>, key: &str, read: impl Fn(&V) -> u64) -> u64
    where
        V: Default + Send + Sync + 'static,
    {
        let at = family.def.key_label().unwrap();
        family
            .sorted()
            .iter()
            .filter(|s| &*s.values[at] == key)
            .map(|s| read(&s.value))
            .sum()
    }

    fn observe(m: &Metrics, key: &str, status: CallStatus, stream: bool) {
        m.observe(&call(key, status, stream), &Principal::Anonymous, None);
    }

    #[test]
    fn each_call_counts_into_the_series_of_its_own_labels() {
        let m = Metrics::new();
        let ok = CallStatus::Success;
        for (key, status, stream) in [
            ("a", ok, false),
            ("a", ok, false),
            ("b", ok, false),
            ("a", CallStatus::Failure, false),
            ("a", ok, true),
            ("a", ok, false),
        ] {
            observe(&m, key, status, stream);
        }
        let i = &*m.inner;
        let count = |c: &Count| c.get();
        assert_eq!(of(&i.total_requests, "a", count), 5);
        assert_eq!(of(&i.total_requests, "b", count), 1);
        assert_eq!(of(&i.requests, "a", count), 4);
        assert_eq!(of(&i.failed_requests, "a", count), 1);
        assert_eq!(of(&i.failed_requests, "b", count), 0);
        assert_eq!(of(&i.input_tokens, "a", count), 15);
        assert_eq!(of(&i.output_tokens, "b", count), 4);
        assert_eq!(of(&i.total_tokens, "a", count), 35);
        let text = m.render();
        let count_line = |name: &str, key: &str| {
            text.lines()
                .find(|l| l.starts_with(name) && l.contains(&format!("hashed_api_key=\"{key}\"")))
                .map(|l| l.rsplit(' ').next().unwrap().to_string())
        };
        // Latencies of answered calls only; time to first token of the one stream.
        assert_eq!(
            count_line("litellm_request_total_latency_metric_count", "a").as_deref(),
            Some("4")
        );
        assert_eq!(
            count_line("litellm_llm_api_time_to_first_token_metric_count", "a").as_deref(),
            Some("1")
        );
        assert_eq!(
            count_line("litellm_spend_metric_total", "a").as_deref(),
            Some("2.5e-8")
        );
    }

    #[test]
    fn a_kept_series_that_was_swept_is_not_counted_into() {
        let m = Metrics::with_idle_ttl(Duration::from_secs(1));
        observe(&m, "a", CallStatus::Success, false);
        // The thread keeps the call's series; they go idle and are swept.
        assert!(m.evict_idle_at(Instant::now() + Duration::from_secs(10)) > 0);
        assert!(m.inner.total_requests.sorted().is_empty());
        // The next call with the same labels must count into series the scrape sees.
        observe(&m, "a", CallStatus::Success, false);
        observe(&m, "a", CallStatus::Success, false);
        let count = |c: &Count| c.get();
        assert_eq!(of(&m.inner.total_requests, "a", count), 2);
        assert_eq!(of(&m.inner.requests, "a", count), 2);
        assert_eq!(of(&m.inner.input_tokens, "a", count), 6);
    }

    #[test]
    fn two_gateways_on_one_thread_keep_their_counts_apart() {
        let (m, n) = (Metrics::new(), Metrics::new());
        for _ in 0..3 {
            observe(&m, "a", CallStatus::Success, false);
            observe(&n, "a", CallStatus::Success, false);
        }
        observe(&m, "a", CallStatus::Success, false);
        let count = |c: &Count| c.get();
        assert_eq!(of(&m.inner.total_requests, "a", count), 4);
        assert_eq!(of(&n.inner.total_requests, "a", count), 3);
    }

    #[test]
    fn long_client_text_is_cut() {
        let long = "x".repeat(1000);
        assert_eq!(cut(&long).len(), MAX_LABEL_CHARS);
        assert_eq!(cut("short"), "short");
        assert_eq!(cut(&"é".repeat(300)).chars().count(), MAX_LABEL_CHARS);
    }
}
