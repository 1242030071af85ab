//! One call from routing to its record: the x-litellm-* headers, the cost, the post-call hook
//! and the [`CallRecord`] for the sink, produced exactly once (a stream that is dropped early
//! still produces it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderName, HeaderValue};
use idlehands_wire::Usage;

use crate::auth::Principal;
use crate::error::ProxyError;
use crate::hooks::{CallRecord, CallStatus, PreCall, Reservation};
use crate::pricing::{Nanos, nanos_to_usd_string};
use crate::providers::Deployment;
use crate::state::App;

pub(crate) static CALL_ID: HeaderName = HeaderName::from_static("x-litellm-call-id");
static MODEL_ID: HeaderName = HeaderName::from_static("x-litellm-model-id");
static MODEL_GROUP: HeaderName = HeaderName::from_static("x-litellm-model-group");
static API_BASE: HeaderName = HeaderName::from_static("x-litellm-model-api-base");
static COST: HeaderName = HeaderName::from_static("x-litellm-response-cost");
static CACHE_KEY: HeaderName = HeaderName::from_static("x-litellm-cache-key");
static OVERHEAD: HeaderName = HeaderName::from_static("x-litellm-overhead-duration-ms");
static DURATION: HeaderName = HeaderName::from_static("x-litellm-response-duration-ms");
static VERSION: HeaderName = HeaderName::from_static("x-litellm-version");

pub(crate) use crate::providers::Peek;

fn ms(d: Duration) -> HeaderValue {
    crate::header_values::number(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Headers for a response where the deployment may not be known yet (auth errors).
pub(crate) fn base_headers(h: &mut HeaderMap, app: &App, call_id: &HeaderValue, started: Instant) {
    h.insert(CALL_ID.clone(), call_id.clone());
    h.insert(VERSION.clone(), app.version.clone());
    h.insert(DURATION.clone(), ms(started.elapsed()));
}

/// An error answer before routing (auth, body, unknown model).
pub(crate) fn early_error(
    app: &App,
    e: ProxyError,
    call_id: &HeaderValue,
    started: Instant,
) -> Response {
    let mut resp = e.into_response();
    base_headers(resp.headers_mut(), app, call_id, started);
    resp
}

/// An error answer before the call has an id of its own (the gate in front of the handler).
pub(crate) fn refused(app: &App, e: ProxyError) -> Response {
    let call_id = uuid::Uuid::now_v7().to_string();
    let call_id =
        HeaderValue::from_str(&call_id).unwrap_or_else(|_| HeaderValue::from_static("unknown"));
    early_error(app, e, &call_id, Instant::now())
}

pub(crate) struct Trace {
    pub app: Arc<App>,
    pub principal: Principal,
    pub deployment: Arc<Deployment>,
    pub call_id: String,
    pub call_id_header: HeaderValue,
    pub call_type: &'static str,
    pub model_group: String,
    pub end_user: Option<String>,
    /// The user the call is made for, from `user_header_mappings`' `internal_user` header:
    /// the spend row's `user` and the user whose budget holds the call.
    pub acting_user: Option<String>,
    pub metadata: Option<serde_json::Value>,
    /// The spend row's `request_tags` (see `super::tags`).
    pub request_tags: Vec<String>,
    pub session_id: Option<String>,
    /// The spend row's `requester_ip_address` (see `super::chat::route`).
    pub requester_ip: Option<Arc<str>>,
    /// The tags routing reads, where the gateway routes by tags (see `super::tags`).
    pub route_tags: Option<Arc<idlehands_routing::RequestTags>>,
    pub stream: bool,
    pub started: Instant,
    pub start_time: DateTime<Utc>,
    /// Time spent waiting on the upstream, for the overhead header.
    pub upstream: Duration,
    /// Prompt tokens guessed from the request size, used only when the upstream reports none.
    pub prompt_estimate: u64,
    /// The model the upstream says answered, which prices the call when the config does not.
    pub response_model: Option<String>,
    /// The usage handed to `finish` is the gateway's estimate (the upstream reported none).
    pub usage_estimated: bool,
    reservation: Option<Reservation>,
    /// The client's `max_tokens`, for the estimates held on budgets.
    max_tokens: Option<u64>,
    /// Request and response bodies, only while payload logging is on (`crate::logging`).
    pub capture: Option<Box<crate::logging::Capture>>,
    /// A place under `global_max_parallel_requests`, held until the call (or its stream) ends.
    pub parallel_permit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The route, user agent and client address the model-route gate saw (metric labels).
    pub request: Option<Arc<crate::metrics::RequestFacts>>,
    /// The call's place in a trace, when OpenTelemetry export is on.
    pub otel: Option<crate::otel::TraceContext>,
    /// The upstream attempts so far, for their child spans (only with `otel`).
    pub attempt_spans: Vec<crate::otel::AttemptSpan>,
    /// A price per call that replaces the token price (a pass-through route's
    /// `cost_per_request`).
    pub fixed_cost: Option<Nanos>,
    /// The response cache's key for this call, when the cache was asked (`http::cache`).
    pub cache_key: Option<String>,
    /// Answered from the response cache.
    pub cache_hit: bool,
    done: bool,
}

impl Trace {
    #[expect(clippy::too_many_arguments)]
    pub fn new(
        app: Arc<App>,
        principal: Principal,
        deployment: Arc<Deployment>,
        call_id: String,
        call_id_header: HeaderValue,
        call_type: &'static str,
        model_group: String,
        started: Instant,
        start_time: DateTime<Utc>,
    ) -> Self {
        Self {
            app,
            principal,
            deployment,
            call_id,
            call_id_header,
            call_type,
            model_group,
            end_user: None,
            acting_user: None,
            metadata: None,
            request_tags: Vec::new(),
            session_id: None,
            requester_ip: None,
            route_tags: None,
            stream: false,
            started,
            start_time,
            upstream: Duration::ZERO,
            prompt_estimate: 0,
            response_model: None,
            usage_estimated: false,
            reservation: None,
            max_tokens: None,
            capture: None,
            parallel_permit: None,
            request: crate::metrics::current_request(),
            otel: None,
            attempt_spans: Vec::new(),
            fixed_cost: None,
            cache_key: None,
            cache_hit: false,
            done: false,
        }
    }

    /// SEAM: the pre-call hook (budgets, rate limits), when one is installed.
    pub async fn pre_call(&mut self, max_tokens: Option<u64>) -> Result<(), ProxyError> {
        self.max_tokens = max_tokens;
        let Some(hooks) = self.app.hooks.clone() else {
            return Ok(());
        };
        let call = self.pre_call_on(&self.deployment);
        let r = hooks.pre_call(&call).await?;
        self.reservation = Some(r);
        Ok(())
    }

    /// What the seam knows of the call on `d`.
    fn pre_call_on<'a>(&'a self, d: &'a Deployment) -> PreCall<'a> {
        PreCall {
            principal: &self.principal,
            call_id: &self.call_id,
            call_type: self.call_type,
            model_group: &self.model_group,
            model_id: &d.id,
            access_groups: &d.access_groups,
            end_user: self.end_user.as_deref(),
            acting_user: self.acting_user.as_deref(),
            max_tokens: self.max_tokens,
            prompt_tokens_estimate: self.prompt_estimate,
            price: d.price.as_ref(),
        }
    }

    /// SEAM: holds the call on `budgets` (the route budgets of `d`, the deployment it is about
    /// to be tried on, and the call's tags'), with the estimate of a call on `d`.
    pub async fn hold_routes(
        &mut self,
        d: &Deployment,
        budgets: &[&idlehands_store::RouteBudget],
    ) -> Result<(), idlehands_store::RouteRefusal> {
        let Some(hooks) = self.app.hooks.clone() else {
            return Ok(());
        };
        let mut reservation = self.reservation.take().unwrap_or_default();
        let held = hooks
            .hold_routes(&mut reservation, &self.pre_call_on(d), budgets)
            .await;
        self.reservation = Some(reservation);
        held
    }

    /// Gives back what [`Trace::hold_routes`] held, for an attempt that failed.
    pub fn release_routes(&mut self) {
        if let (Some(hooks), Some(r)) = (&self.app.hooks, self.reservation.as_mut()) {
            hooks.release_routes(r);
        }
    }

    /// What the call costs, by the price LiteLLM would pick (see `pricing::CallPricing`); the
    /// header, the stream's `usage.cost` and the spend row all take it from here.
    pub fn cost(&self, usage: Option<&Usage>) -> Nanos {
        if let Some(c) = self.fixed_cost {
            return c;
        }
        let bounded = usage.and_then(Usage::clamped);
        self.deployment
            .pricing
            .cost(bounded.as_ref().or(usage), self.response_model.as_deref())
    }

    /// Every x-litellm-* header we know for this call.
    pub fn headers(&self, h: &mut HeaderMap, cost: Option<Nanos>) {
        let d = &self.deployment;
        let total = self.started.elapsed();
        // Room for all of them at once instead of the map growing twice on the way.
        let _ = h.try_reserve(16);
        h.insert(CALL_ID.clone(), self.call_id_header.clone());
        h.insert(MODEL_ID.clone(), d.header_id.clone());
        h.insert(MODEL_GROUP.clone(), d.header_group.clone());
        if let Some(b) = &d.header_api_base {
            h.insert(API_BASE.clone(), b.clone());
        }
        if let Some(c) = cost
            && let Some(v) = crate::header_values::owned(nanos_to_usd_string(c))
        {
            h.insert(COST.clone(), v);
        }
        h.insert(DURATION.clone(), ms(total));
        h.insert(OVERHEAD.clone(), ms(total.saturating_sub(self.upstream)));
        h.insert(VERSION.clone(), self.app.version.clone());
        if let Some(v) = self
            .cache_key
            .as_deref()
            .and_then(|k| HeaderValue::from_str(k).ok())
        {
            h.insert(CACHE_KEY.clone(), v);
        }
        if let (Some(hooks), Some(r)) = (&self.app.hooks, &self.reservation) {
            hooks.response_headers(r, cost, h);
        }
    }

    pub fn error_response(mut self, e: ProxyError) -> Response {
        self.finish(None, None, None, Some(&e), e.status());
        let mut resp = e.into_response();
        self.headers(resp.headers_mut(), None);
        resp
    }

    /// Produce the record, settle, and hand the record to the sink. Runs once.
    pub fn finish(
        &mut self,
        usage: Option<&Usage>,
        response_id: Option<String>,
        first_byte: Option<DateTime<Utc>>,
        error: Option<&ProxyError>,
        http_status: u16,
    ) {
        self.finish_with(
            usage,
            response_id,
            first_byte,
            error.map(ToString::to_string),
            http_status,
        );
    }

    pub fn finish_with(
        &mut self,
        usage: Option<&Usage>,
        response_id: Option<String>,
        first_byte: Option<DateTime<Utc>>,
        error: Option<String>,
        http_status: u16,
    ) {
        if self.done {
            return;
        }
        self.done = true;
        let d = &self.deployment;
        let (vk_user, vk_team) = match &self.principal {
            Principal::VirtualKey(k) => (k.user_id.clone(), k.team_id.clone()),
            _ => (None, None),
        };
        let mut u = usage.cloned().unwrap_or_default();
        if u.clamp() {
            // An upstream bug or a hostile server; the call is still answered and recorded.
            tracing::warn!(
                call_id = %self.call_id,
                model = %d.model,
                api_base = d.api_base.as_deref().unwrap_or(""),
                reported = ?usage,
                ceiling = idlehands_wire::MAX_USAGE_TOKENS,
                "upstream reported absurd usage; token counts clamped to the ceiling"
            );
        }
        let end_time = Utc::now();
        // For a stream, time after the first byte is the provider's, not ours.
        let overhead = match first_byte.filter(|_| self.stream) {
            Some(fb) => (fb - self.start_time).to_std().unwrap_or_default(),
            None => self.started.elapsed(),
        }
        .saturating_sub(self.upstream);
        let mut record = CallRecord {
            response_id,
            requester_ip: self.requester_ip.take(),
            call_id: self.call_id.clone(),
            call_type: self.call_type,
            api_key_hash: self.principal.key_hash().map(str::to_string),
            key_alias: self.principal.key_alias().map(str::to_string),
            user_id: self
                .acting_user
                .take()
                .or(vk_user)
                .or_else(|| self.principal.jwt_admin_user().map(str::to_owned)),
            team_id: vk_team,
            end_user: self.end_user.take(),
            metadata: self.metadata.take(),
            request_tags: std::mem::take(&mut self.request_tags),
            session_id: self.session_id.take(),
            model: d.model.clone(),
            model_id: d.id.clone(),
            model_group: self.model_group.clone(),
            api_base: d.api_base.clone(),
            custom_llm_provider: d.provider.clone(),
            stream: self.stream,
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: if u.total_tokens > 0 {
                u.total_tokens
            } else {
                u.prompt_tokens.saturating_add(u.completion_tokens)
            },
            cost_nanos: self.cost(usage),
            usage_estimated: self.usage_estimated && usage.is_some(),
            start_time: self.start_time,
            end_time,
            completion_start_time: first_byte,
            status: if error.is_none() {
                CallStatus::Success
            } else {
                CallStatus::Failure
            },
            error_message: error,
            http_status,
            overhead,
            messages: None,
            response: None,
            cache_key: self.cache_key.take(),
            cache_hit: self.cache_hit,
            cache_off: self.app.response_cache.is_none(),
        };
        self.app.payloads.finish(&mut record, self.capture.take());
        if let (Some(hooks), Some(r)) = (&self.app.hooks, self.reservation.take()) {
            hooks.post_call(&self.principal, r, &record);
        }
        self.app
            .metrics
            .observe(&record, &self.principal, self.request.as_deref());
        if let Some(a) = &self.app.alerting {
            a.on_call(&record, &self.principal);
        }
        if let Some(g) = &self.app.generic_api {
            g.record(&record, self.request.as_deref());
        }
        if let (Some(otel), Some(ctx)) = (&self.app.otel, &self.otel) {
            otel.record(&record, ctx, std::mem::take(&mut self.attempt_spans));
        }
        self.app.sink.record(record);
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        // Only reached when a call was abandoned (a client gone before its answer was sent).
        self.finish_with(
            None,
            None,
            None,
            Some("client_disconnected: the client closed the connection before the response was complete".to_string()),
            499,
        );
    }
}
