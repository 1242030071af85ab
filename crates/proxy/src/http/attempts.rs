//! The retry/fallback loop around upstream calls. The routing crate's [`Plan`] decides which
//! deployment takes each attempt, whether a failure is retried (and after how long) and which
//! fallback group comes next; this module makes the calls, sleeps, and turns the outcome into
//! the response headers LiteLLM sends (`x-litellm-attempted-retries`, ...).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue};
use idlehands_routing::{
    Exclude, Failure, Fallbacks, FinalError, NoDeployment, NoDeploymentReason, Pick, PickContext,
    Plan, PlanOptions, Step, parse_retry_after,
};
use idlehands_store::RouteRefusal;

use super::body::RequestBody;
use super::trace::Trace;
use crate::error::ProxyError;
use crate::metrics::Fallback;
use crate::providers::Deployment;
use crate::providers::slots::{SLOTS_FULL, SlotGuard};
use crate::router::{ModelGroup, RoutingTable};

static ATTEMPTED_RETRIES: HeaderName = HeaderName::from_static("x-litellm-attempted-retries");
static ATTEMPTED_FALLBACKS: HeaderName = HeaderName::from_static("x-litellm-attempted-fallbacks");
static MAX_RETRIES: HeaderName = HeaderName::from_static("x-litellm-max-retries");
static NUM_RETRIES_HEADER: HeaderName = HeaderName::from_static("x-litellm-num-retries");
static TIMEOUT_HEADER: HeaderName = HeaderName::from_static("x-litellm-timeout");
static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static STREAM_TIMEOUT_HEADER: HeaderName = HeaderName::from_static("x-litellm-stream-timeout");

/// The text every mock failure (`mock_testing_*`, `mock_timeout`) carries.
const MOCK_MARK: &str = "This is a mock";

/// How routing sees a failed call (a mock failure is the caller's doing).
pub(crate) fn failure_of(e: &ProxyError) -> Failure {
    failure_of_call(e, false)
}

/// How routing sees a failed attempt. `caller_timeout`: the request set its own timeout, so a
/// timeout says nothing about the deployment; mock failures never do either.
pub(crate) fn failure_of_call(e: &ProxyError, caller_timeout: bool) -> Failure {
    let f = failure_from(e);
    let by_caller = match e {
        ProxyError::UpstreamTimeout { .. } => caller_timeout,
        // A deployment's own slots full: the gateway's limit, not the deployment's health.
        ProxyError::Upstream { message, .. } => {
            message.contains(MOCK_MARK) || message.contains(SLOTS_FULL)
        }
        _ => false,
    };
    if by_caller { f.by_caller() } else { f }
}

fn failure_from(e: &ProxyError) -> Failure {
    match e {
        ProxyError::UpstreamTimeout { .. } => Failure::timeout(),
        ProxyError::UpstreamUnreachable { .. } => Failure::connection(),
        ProxyError::Upstream {
            status,
            message,
            retry_after,
            ..
        } => {
            let hint = retry_after
                .as_deref()
                .and_then(|r| parse_retry_after(None, Some(r), SystemTime::now()));
            Failure::from_response(*status, message, hint)
        }
        other => Failure::from_response(other.status(), &other.to_string(), None),
    }
}

/// The error a client gets when a group had nothing to offer: LiteLLM's 429 "No deployments
/// available for selected model, Try again in N seconds. Passed model=..." (with `retry-after`),
/// or a 400 when waiting would not help.
pub(crate) fn no_deployment_error(nd: &NoDeployment) -> ProxyError {
    let status = nd.status();
    let mut headers = Vec::new();
    let kind = if status == 429 {
        headers.push((
            http::header::RETRY_AFTER,
            HeaderValue::from(nd.retry_after_secs),
        ));
        "rate_limit_error"
    } else if nd.reason == NoDeploymentReason::Tags {
        // LiteLLM's words exactly: the router's error keeps the type of a 500 while the
        // proxy answers it as 401.
        "internal_server_error"
    } else {
        "invalid_request_error"
    };
    ProxyError::Custom {
        status,
        kind: kind.to_string(),
        message: nd.to_string(),
        param: matches!(nd.reason, NoDeploymentReason::UnknownGroup).then(|| "model".to_string()),
        headers,
    }
}

/// The route budgets could not be checked (the database or a fleet's Redis is down).
fn budgets_unavailable() -> ProxyError {
    ProxyError::Custom {
        status: 503,
        kind: "service_unavailable".to_string(),
        message: "Provider, deployment and tag budgets cannot be checked: the store is unreachable"
            .to_string(),
        param: None,
        headers: Vec::new(),
    }
}

/// Per-request routing overrides: `num_retries`, `fallbacks`, `context_window_fallbacks`,
/// `content_policy_fallbacks` and `disable_fallbacks` in the body, `x-litellm-num-retries`.
/// Unreadable values are ignored, as LiteLLM ignores what it cannot use.
pub(crate) fn plan_options(body: &RequestBody<'_>, headers: &HeaderMap) -> PlanOptions {
    let mut o = PlanOptions::default();
    let num = |s: &str| s.trim().trim_matches('"').parse::<u32>().ok();
    o.num_retries = body
        .raw("num_retries")
        .and_then(|r| num(r.get()))
        .or_else(|| {
            headers
                .get(&NUM_RETRIES_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(num)
        });
    let table = |k: &str| {
        body.raw(k)
            .and_then(|r| serde_json::from_str::<Fallbacks>(r.get()).ok())
    };
    o.fallbacks = table("fallbacks");
    o.context_window_fallbacks = table("context_window_fallbacks");
    o.content_policy_fallbacks = table("content_policy_fallbacks");
    o.disable_fallbacks = body
        .raw("disable_fallbacks")
        .is_some_and(|r| r.get().trim() == "true");
    o
}

/// LiteLLM's testing aids (`mock_testing_fallbacks: true`, ...): the requested group fails with
/// the named error so fallbacks can be tried without a broken upstream.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) enum MockFailure {
    #[default]
    None,
    InternalServer,
    ContextWindow,
    ContentPolicy,
}

impl MockFailure {
    pub fn from_body(body: &RequestBody<'_>) -> MockFailure {
        let on = |k: &str| body.raw(k).is_some_and(|r| r.get().trim() == "true");
        if on("mock_testing_fallbacks") {
            MockFailure::InternalServer
        } else if on("mock_testing_context_fallbacks") {
            MockFailure::ContextWindow
        } else if on("mock_testing_content_policy_fallbacks") {
            MockFailure::ContentPolicy
        } else {
            MockFailure::None
        }
    }

    /// The error for an attempt on `d`, when it is in the requested group.
    pub fn error(self, d: &Deployment, requested: &str) -> Option<ProxyError> {
        if d.model_name != requested {
            return None;
        }
        let (status, message) = match self {
            MockFailure::None => return None,
            MockFailure::InternalServer => (
                500,
                "litellm.InternalServerError: This is a mock exception for model fallbacks.",
            ),
            MockFailure::ContextWindow => (
                400,
                "litellm.ContextWindowExceededError: This is a mock exception: maximum context length exceeded.",
            ),
            MockFailure::ContentPolicy => (
                400,
                "litellm.ContentPolicyViolationError: This is a mock exception: content_policy_violation.",
            ),
        };
        Some(ProxyError::Upstream {
            status,
            message: message.to_string(),
            kind: None,
            retry_after: None,
        })
    }
}

/// Per-request call settings beyond routing: the caller's timeouts (`timeout` /
/// `request_timeout` / `stream_timeout` in the body, `x-litellm-timeout` /
/// `x-litellm-stream-timeout` headers, which win), `extra_headers`, and LiteLLM's
/// `mock_timeout` and `mock_testing_rate_limit_error` testing aids.
#[derive(Default)]
pub(crate) struct CallOptions {
    pub timeout: Option<Duration>,
    pub stream_timeout: Option<Duration>,
    pub extra_headers: HeaderMap,
    /// Every attempt waits out its timeout, then fails with LiteLLM's mock `Timeout`.
    pub mock_timeout: bool,
    /// The first attempt on the requested group fails with LiteLLM's mock `RateLimitError`.
    pub mock_rate_limit: bool,
}

/// Seconds as a positive number, or a string holding one.
fn seconds(param: &'static str, raw: &str) -> Result<Option<Duration>, ProxyError> {
    let raw = raw.trim();
    if raw == "null" {
        return Ok(None);
    }
    let bad = || ProxyError::InvalidParam {
        param,
        message: "expected a positive number of seconds".to_string(),
    };
    let n: f64 = raw.trim_matches('"').trim().parse().map_err(|_| bad())?;
    if !(n > 0.0 && n.is_finite()) {
        return Err(bad());
    }
    Duration::try_from_secs_f64(n).map(Some).map_err(|_| bad())
}

impl CallOptions {
    /// The caller's options for a call to `group` (whose client headers may go upstream).
    pub fn from_request(
        body: &RequestBody<'_>,
        headers: &HeaderMap,
        app: &crate::state::App,
        group: &str,
    ) -> Result<Self, ProxyError> {
        let mut o = CallOptions::default();
        if let Some(f) = &app.runtime.load().forward_headers
            && f.applies_to(group)
        {
            f.add(headers, &mut o.extra_headers);
        }
        let field = |k: &'static str| -> Result<Option<Duration>, ProxyError> {
            body.raw(k).map_or(Ok(None), |r| seconds(k, r.get()))
        };
        let header = |h: &HeaderName, k: &'static str| -> Result<Option<Duration>, ProxyError> {
            match headers.get(h) {
                None => Ok(None),
                Some(v) => seconds(k, v.to_str().unwrap_or("")),
            }
        };
        o.timeout = header(&TIMEOUT_HEADER, "x-litellm-timeout")?
            .or(field("timeout")?)
            .or(field("request_timeout")?);
        o.stream_timeout = header(&STREAM_TIMEOUT_HEADER, "x-litellm-stream-timeout")?
            .or(field("stream_timeout")?);
        if let Some(raw) = body.raw("extra_headers") {
            let map: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(raw.get()).map_err(|_| ProxyError::InvalidParam {
                    param: "extra_headers",
                    message: "expected a map of header names to values".to_string(),
                })?;
            let mut lp = crate::config::LitellmParams::default();
            lp.extra
                .insert("extra_headers".to_string(), serde_json::Value::Object(map));
            let parsed = crate::providers::params::from_litellm_params(&lp, None).map_err(|b| {
                ProxyError::InvalidParam {
                    param: "extra_headers",
                    message: b.message,
                }
            })?;
            // The body's own extra_headers win over forwarded ones of the same name.
            for (name, value) in parsed.headers {
                if let Some(name) = name {
                    o.extra_headers.insert(name, value);
                }
            }
        }
        let on = |k: &str| body.raw(k).is_some_and(|r| r.get().trim() == "true");
        o.mock_timeout = on("mock_timeout");
        o.mock_rate_limit = on("mock_testing_rate_limit_error");
        Ok(o)
    }

    /// Whether the caller chose the timeouts (their expiry is then not the deployment's fault).
    pub fn sets_timeout(&self) -> bool {
        self.timeout.is_some() || self.stream_timeout.is_some()
    }

    /// The deployment as this call sees it: with the caller's timeouts, when it set any. For
    /// a stream, `stream_timeout` wins, else `timeout`.
    pub fn deployment(&self, d: &Arc<Deployment>) -> Arc<Deployment> {
        if !self.sets_timeout() {
            return d.clone();
        }
        let timeout = self.timeout.unwrap_or(d.timeout);
        let stream_timeout = self
            .stream_timeout
            .or(self.timeout)
            .unwrap_or(d.stream_timeout);
        Arc::new(Deployment {
            timeout,
            stream_timeout,
            ..Deployment::clone(d)
        })
    }

    /// The headers an attempt on `d` adds: the deployment's, then the request's.
    /// With tracing on, the attempt's `traceparent` too (the caller's own `extra_headers`
    /// win).
    pub fn headers_for(&self, d: &Deployment) -> HeaderMap {
        let tp = crate::otel::upstream_traceparent();
        if self.extra_headers.is_empty() && tp.is_none() {
            return d.params.headers.clone();
        }
        let mut h = d.params.headers.clone();
        if let Some(tp) = tp {
            h.insert(TRACEPARENT.clone(), tp);
        }
        for (k, v) in &self.extra_headers {
            h.insert(k.clone(), v.clone());
        }
        h
    }

    /// LiteLLM's mock `RateLimitError` for `group`.
    pub fn rate_limit_error(group: &str) -> ProxyError {
        ProxyError::Upstream {
            status: 429,
            message: format!(
                "litellm.RateLimitError: {MOCK_MARK} exception for model={group}, to trigger a rate limit error."
            ),
            kind: None,
            retry_after: None,
        }
    }

    /// LiteLLM's mock `Timeout`.
    pub fn timeout_error() -> ProxyError {
        ProxyError::Upstream {
            status: 408,
            message: format!("litellm.Timeout: {MOCK_MARK} timeout error"),
            kind: None,
            retry_after: None,
        }
    }
}

/// A successful attempt: what it produced, the routing pick to report the outcome on, and how
/// long the attempt took.
pub(crate) struct Won<T> {
    pub value: T,
    pub pick: Pick,
    pub started: Instant,
    /// The deployment's `max_parallel_requests` slot: held while the answer is relayed.
    pub slot: Option<SlotGuard>,
}

/// One request's attempts over one model group and its fallbacks.
pub(crate) struct Attempts {
    table: Arc<RoutingTable>,
    plan: Plan<ProxyError>,
    ctx: PickContext,
    /// The caller set the timeouts (see [`failure_of`]).
    caller_timeout: bool,
    /// Route budgets, when any are configured (see [`RouteGate`]).
    gate: Option<RouteGate>,
}

/// LiteLLM's provider budget routing for one call: deployments whose provider's, own or the
/// call's tags' budget is spent are passed over; routing's first look passes over those whose
/// budget refused a hold in the last second, and the hold before each attempt decides.
struct RouteGate {
    /// The call's tags' budgets, held on whichever deployment takes it.
    tags: Vec<idlehands_store::RouteBudget>,
    /// Deployments whose hold was refused during this call, by index.
    refused: Arc<parking_lot::Mutex<Vec<usize>>>,
    /// What each refusal said, in LiteLLM's words, one line each.
    said: Vec<String>,
}

impl RouteGate {
    fn new(trace: &Trace, table: &Arc<RoutingTable>) -> Option<(RouteGate, Exclude)> {
        let app = &trace.app;
        let configured = &app.models.config.route_budgets;
        let stored = app.tag_budgets.load();
        if configured.tags.is_empty() && stored.is_empty() && !table.route_budgets {
            return None;
        }
        // A call carries a few tags; a fleet may have thousands stored: looked up by name.
        let tags: Vec<_> = configured
            .tags
            .iter()
            .filter(|b| trace.request_tags.contains(&b.name))
            .chain(trace.request_tags.iter().filter_map(|t| stored.get(t)))
            .cloned()
            .collect();
        if tags.is_empty() && !table.route_budgets {
            return None;
        }
        let hooks = app.hooks.clone()?;
        let refused = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let spent_tags = tags.iter().any(|b| hooks.route_refused_lately(b));
        let (seen, deployments) = (refused.clone(), table.clone());
        let exclude = Exclude(Arc::new(move |slot| {
            spent_tags
                || seen.lock().contains(&slot)
                || deployments.deployments.get(slot).is_some_and(|d| {
                    d.route_budgets
                        .iter()
                        .any(|b| hooks.route_refused_lately(b))
                })
        }));
        let gate = RouteGate {
            tags,
            refused,
            said: Vec::new(),
        };
        Some((gate, exclude))
    }

    /// The budgets a call on `d` counts against.
    fn budgets_for<'a>(&'a self, d: &'a Deployment) -> Vec<&'a idlehands_store::RouteBudget> {
        d.route_budgets.iter().chain(&self.tags).collect()
    }

    /// The refusal when no deployment was left: LiteLLM's words, with a line per refused hold
    /// and per budget of the requested group's deployments passed over at the first look.
    fn error(&self, trace: &Trace, table: &RoutingTable, nd: &NoDeployment) -> ProxyError {
        let mut lines = self.said.clone();
        if let Some(hooks) = &trace.app.hooks {
            // A stored tag's budget refuses the call whatever the deployment.
            if let Some(b) = self
                .tags
                .iter()
                .find(|b| b.stored && hooks.route_refused_lately(b))
            {
                let spend = hooks.route_spend(b).or(b.max_budget).unwrap_or(0);
                return stored_tag_refusal(b, spend, trace.app.budget_exceeded_status);
            }
            for d in table
                .deployments
                .iter()
                .filter(|d| d.model_name == nd.model)
            {
                for b in self.budgets_for(d) {
                    if hooks.route_refused_lately(b) {
                        let spend = hooks.route_spend(b).or(b.max_budget).unwrap_or(0);
                        lines.push(refusal_line(b, d, spend));
                    }
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        lines.retain(|l| seen.insert(l.clone()));
        ProxyError::Custom {
            status: trace.app.budget_exceeded_status,
            kind: "budget_exceeded".to_string(),
            message: format!("{nd}: {}", lines.join("\n")),
            param: None,
            headers: Vec::new(),
        }
    }
}

/// USD as LiteLLM prints it in refusals: Python's float repr (1e-05, 0.5).
fn usd(nanos: i64) -> String {
    idlehands_store::money::py_float(idlehands_store::money::nanos_to_usd(nanos))
}

/// A stored tag's budget is spent: LiteLLM's words for it (its auth check, not its router's).
fn stored_tag_refusal(b: &idlehands_store::RouteBudget, spend: i64, status: u16) -> ProxyError {
    ProxyError::Custom {
        status,
        kind: "budget_exceeded".to_string(),
        message: format!(
            "Budget has been exceeded! Tag={} Current cost: {}, Max budget: {}",
            b.name,
            usd(spend),
            usd(b.max_budget.unwrap_or(0))
        ),
        param: None,
        headers: Vec::new(),
    }
}

/// One budget that has no room for a call on `d`, as LiteLLM words it (its deployment line
/// shows the limit where LiteLLM prints the window by mistake).
fn refusal_line(b: &idlehands_store::RouteBudget, d: &Deployment, spend: i64) -> String {
    let (spend, max) = (usd(spend), usd(b.max_budget.unwrap_or(0)));
    match b.kind {
        idlehands_store::RouteKind::Provider => {
            format!("Exceeded budget for provider {}: {spend} >= {max}", b.name)
        }
        idlehands_store::RouteKind::Deployment => format!(
            "Exceeded budget for deployment model_name: {}, litellm_params.model: {}, model_id: {}: {spend} >= {max}",
            d.model_name, d.model, d.id
        ),
        idlehands_store::RouteKind::Tag => format!(
            "Exceeded budget for tag='{}', tag_spend={spend}, tag_budget_limit={max}",
            b.name
        ),
    }
}

impl Attempts {
    /// Attempts for `trace`'s call: its prompt estimate and tags go to every pick.
    pub fn new(group: &ModelGroup, options: PlanOptions, trace: &Trace) -> Self {
        let table = group.table.clone();
        let plan = table.router.plan(&group.name, options);
        let (gate, exclude) = match RouteGate::new(trace, &table) {
            Some((gate, exclude)) => (Some(gate), Some(exclude)),
            None => (None, None),
        };
        Attempts {
            table,
            plan,
            ctx: PickContext {
                estimated_input_tokens: trace.prompt_estimate,
                tags: trace.route_tags.clone(),
                exclude,
            },
            caller_timeout: false,
            gate,
        }
    }

    /// Timeouts of these attempts are the caller's choice, not a sign of a slow deployment.
    pub fn with_caller_timeout(mut self, on: bool) -> Self {
        self.caller_timeout = on;
        self
    }

    /// Call `attempt` on each deployment the plan picks until one succeeds or the plan gives
    /// up. `trace.deployment` follows the attempts, so records and headers name the
    /// deployment that answered (or failed last).
    pub async fn run<T, F, Fut>(
        &mut self,
        trace: &mut Trace,
        mut attempt: F,
    ) -> Result<Won<T>, ProxyError>
    where
        F: FnMut(&Arc<Deployment>) -> Fut,
        Fut: Future<Output = Result<T, ProxyError>>,
    {
        // A call still waiting on its upstream when the shutdown drain ends fails then, so
        // that its row is written before the spend writer stops.
        let cut = trace.app.cut_signal();
        tokio::pin!(cut);
        // The last failure's status and provider: what a fallback is counted under.
        let mut cause: Option<(u16, String)> = None;
        loop {
            let pick = match self.plan.next(&self.ctx) {
                Step::Attempt(p) => p,
                Step::GiveUp(FinalError::Upstream(e)) => return Err(e),
                Step::GiveUp(FinalError::NoDeployment(nd)) => {
                    return Err(match &self.gate {
                        Some(gate) if nd.reason == NoDeploymentReason::Budget => {
                            gate.error(trace, &self.table, &nd)
                        }
                        _ => no_deployment_error(&nd),
                    });
                }
            };
            let Some(d) = self.table.deployments.get(pick.index()) else {
                return Err(ProxyError::Internal(
                    "routing picked an unknown deployment".to_string(),
                ));
            };
            if let Some(gate) = &mut self.gate {
                let budgets = gate.budgets_for(d);
                if !budgets.is_empty() {
                    match trace.hold_routes(d, &budgets).await {
                        Ok(()) => {}
                        Err(RouteRefusal::Spent {
                            index, spend_nanos, ..
                        }) if budgets[index].stored => {
                            return Err(stored_tag_refusal(
                                budgets[index],
                                spend_nanos,
                                trace.app.budget_exceeded_status,
                            ));
                        }
                        Err(RouteRefusal::Spent {
                            index, spend_nanos, ..
                        }) => {
                            // Passed over for the rest of this call, as if it had been spent
                            // at the first look.
                            let line = refusal_line(budgets[index], d, spend_nanos);
                            gate.said.push(line);
                            gate.refused.lock().push(pick.index());
                            continue;
                        }
                        Err(RouteRefusal::Limited(e)) => {
                            return Err(crate::ledger::seams::api_error(&e));
                        }
                        Err(RouteRefusal::Unavailable) => return Err(budgets_unavailable()),
                    }
                }
            }
            if !Arc::ptr_eq(&trace.deployment, d) {
                trace.deployment = d.clone();
            }
            let started = Instant::now();
            // With tracing on: the attempt's span, named in its upstream `traceparent`.
            let span = trace.otel.map(|ctx| {
                let id = crate::otel::span_id();
                (id, ctx.traceparent_for(id), chrono::Utc::now())
            });
            let tp = span.as_ref().and_then(|s| s.1.clone());
            // A deployment with every `max_parallel_requests` slot taken fails the attempt
            // without being called.
            let result = match d.parallel.as_ref().map(|s| s.acquire()).transpose() {
                Err(full) => Err(full),
                Ok(slot) => {
                    let fut = crate::otel::with_traceparent(tp.clone(), || attempt(d));
                    tokio::select! {
                        r = crate::otel::scoped(tp, fut) => r.map(|v| (v, slot)),
                        () = &mut cut => {
                            trace.upstream += started.elapsed();
                            return Err(crate::state::App::cut_error());
                        }
                    }
                }
            };
            trace.upstream += started.elapsed();
            if let Some((span_id, _, start)) = span {
                trace.attempt_spans.push(crate::otel::AttemptSpan {
                    span_id,
                    model: d.model.clone(),
                    model_id: d.id.clone(),
                    provider: d.provider.clone(),
                    api_base: d.api_base.clone(),
                    start,
                    end: chrono::Utc::now(),
                    error: result.as_ref().err().map(|e| (e.status(), e.to_string())),
                });
            }
            match result {
                Ok((value, slot)) => {
                    if self.plan.attempted_fallbacks() > 0 {
                        trace.app.metrics.record_fallback(
                            &Fallback {
                                requested_model: self.plan.requested_group(),
                                fallback_model: &d.model_name,
                                model_id: &d.id,
                                succeeded: true,
                                cause: cause.as_ref().map(|(s, p)| (*s, p.as_str())),
                            },
                            &trace.principal,
                        );
                    }
                    return Ok(Won {
                        value,
                        pick,
                        started,
                        slot,
                    });
                }
                Err(e) => {
                    tracing::debug!(
                        deployment = d.id.as_str(),
                        group = d.model_name.as_str(),
                        status = e.status(),
                        "upstream attempt failed"
                    );
                    // Counted per failed attempt on a fallback group.
                    if d.model_name != self.plan.requested_group() {
                        trace.app.metrics.record_fallback(
                            &Fallback {
                                requested_model: self.plan.requested_group(),
                                fallback_model: &d.model_name,
                                model_id: &d.id,
                                succeeded: false,
                                cause: Some((e.status(), d.provider.as_str())),
                            },
                            &trace.principal,
                        );
                    }
                    cause = Some((e.status(), d.provider.clone()));
                    // A failed attempt costs nothing; the next one holds its own budgets.
                    if self.gate.is_some() {
                        trace.release_routes();
                    }
                    let failure = failure_of_call(&e, self.caller_timeout);
                    let delay = self.plan.failed(pick, failure, e).delay();
                    if !delay.is_zero() {
                        let slept = Instant::now();
                        tokio::time::sleep(delay).await;
                        trace.upstream += slept.elapsed();
                    }
                }
            }
        }
    }

    /// `x-litellm-attempted-retries` (always), `x-litellm-max-retries` (once a retry was made)
    /// and `x-litellm-attempted-fallbacks` (once a fallback was tried).
    pub fn headers(&self, h: &mut HeaderMap) {
        let retries = self.plan.attempted_retries();
        h.insert(
            ATTEMPTED_RETRIES.clone(),
            crate::header_values::number(retries.into()),
        );
        if retries > 0 {
            h.insert(
                MAX_RETRIES.clone(),
                HeaderValue::from(self.plan.max_retries()),
            );
        }
        let fallbacks = self.plan.attempted_fallbacks();
        if fallbacks > 0 {
            h.insert(ATTEMPTED_FALLBACKS.clone(), HeaderValue::from(fallbacks));
        }
    }
}

/// An attempt that must finish within `limit`, whatever the adapter does about timeouts.
pub(crate) async fn within<T>(
    limit: Duration,
    d: &Deployment,
    fut: impl Future<Output = Result<T, ProxyError>>,
) -> Result<T, ProxyError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r,
        Err(_) => Err(d.timed_out(limit)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use idlehands_routing::ErrorClass;

    #[test]
    fn proxy_errors_map_to_routing_failures() {
        let timeout = ProxyError::UpstreamTimeout {
            secs: 1.0,
            model: "m".into(),
        };
        let f = failure_of_call(&timeout, false);
        assert_eq!((f.class, f.status), (ErrorClass::Timeout, 408));
        assert!(!f.caller_caused);
        assert!(failure_of_call(&timeout, true).caller_caused);
        let f = failure_of(&CallOptions::rate_limit_error("g"));
        assert_eq!((f.class, f.caller_caused), (ErrorClass::RateLimit, true));
        let f = failure_of(&CallOptions::timeout_error());
        assert_eq!((f.class, f.caller_caused), (ErrorClass::Timeout, true));
        let f = failure_of(&ProxyError::UpstreamUnreachable {
            label: "OpenAIException".into(),
            message: "Connection error".into(),
        });
        assert_eq!(f.class, ErrorClass::Connection);
        let f = failure_of(&ProxyError::Upstream {
            status: 429,
            message: "slow down".into(),
            kind: None,
            retry_after: Some("2".into()),
        });
        assert_eq!(f.class, ErrorClass::RateLimit);
        assert_eq!(f.retry_after, Some(Duration::from_secs(2)));
        let f = failure_of(&ProxyError::Upstream {
            status: 400,
            message: "This model's maximum context length is 8192 tokens".into(),
            kind: None,
            retry_after: None,
        });
        assert_eq!(f.class, ErrorClass::ContextWindowExceeded);
    }

    #[test]
    fn no_deployment_is_a_429_with_retry_after() {
        let nd = NoDeployment {
            model: "gpt-4o".into(),
            reason: NoDeploymentReason::CoolingDown,
            retry_after_secs: 4,
            cooldown_list: vec!["a".into()],
            pre_call_checks: false,
            estimated_input_tokens: 0,
            tags: Vec::new(),
        };
        let e = no_deployment_error(&nd);
        assert_eq!(e.status(), 429);
        assert!(e.to_string().contains("Passed model=gpt-4o"));
        let ProxyError::Custom { headers, .. } = e else {
            panic!("custom error expected")
        };
        assert_eq!(headers[0].1, HeaderValue::from(4u64));
    }
}
