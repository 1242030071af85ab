//! POST /v1/chat/completions and its aliases, and the legacy POST /v1/completions (the same
//! pipeline: OpenAI's two completion endpoints differ only in the prompt field and the answer's
//! shape, which OpenAI-compatible upstreams produce themselves).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use bytes::Bytes;
use chrono::Utc;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use futures_util::StreamExt;
use idlehands_routing::TokenUsage;

use super::attempts::{Attempts, CallOptions, MockFailure, plan_options, within};
use super::body::{RawBody, RequestBody};
use super::guard::Pre;
use super::stream::ClientStream;
use super::trace::{Peek, Trace, early_error};
use crate::auth;
use crate::error::ProxyError;
use crate::providers::{ChatCall, ChatReply, Endpoint, MockProvider, Provider};
use crate::response_cache::Kind as CacheKind;
use crate::state::App;

/// LiteLLM's `call_type` for `/v1/completions`.
pub(crate) const TEXT_COMPLETION: &str = "atext_completion";
use crate::router::ModelGroup;

/// 429 when `general_settings.global_max_parallel_requests` calls are already in flight, worded
/// like LiteLLM's other parallel-limit refusals.
fn global_parallel_limit(limit: u32) -> ProxyError {
    ProxyError::Custom {
        status: 429,
        kind: "rate_limit_error".to_string(),
        message: format!(
            "Rate limit exceeded for global: global_max_parallel_requests. Limit type: max_parallel_requests. Current limit: {limit}, Remaining: 0."
        ),
        param: None,
        headers: vec![(header::RETRY_AFTER, HeaderValue::from_static("1"))],
    }
}

pub(crate) async fn chat(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Pre(pre): Pre,
    RawBody(body): RawBody,
) -> Response {
    handle(app, None, headers, pre, body, "acompletion").await
}

pub(crate) async fn chat_with_path_model(
    State(app): State<Arc<App>>,
    Path(model): Path<String>,
    headers: HeaderMap,
    Pre(pre): Pre,
    RawBody(body): RawBody,
) -> Response {
    handle(app, Some(model), headers, pre, body, "acompletion").await
}

pub(crate) async fn completions(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Pre(pre): Pre,
    RawBody(body): RawBody,
) -> Response {
    handle(app, None, headers, pre, body, TEXT_COMPLETION).await
}

pub(crate) async fn completions_with_path_model(
    State(app): State<Arc<App>>,
    Path(model): Path<String>,
    headers: HeaderMap,
    Pre(pre): Pre,
    RawBody(body): RawBody,
) -> Response {
    handle(app, Some(model), headers, pre, body, TEXT_COMPLETION).await
}

/// What every model call starts with: a call id, auth, the body read once, the model group
/// resolved (forced model, then path model, then body model) and a deployment picked.
pub(crate) struct Routed<'b> {
    pub body: RequestBody<'b>,
    pub trace: Trace,
    /// Where the attempts go (see `attempts`); `trace.deployment` is a first guess until then.
    pub group: Arc<ModelGroup>,
}

/// Why [`route`] did not produce a routed call.
pub(crate) enum Early {
    /// Answered already (an error).
    Done(Response),
    /// `model: "a,b"` names several groups: LiteLLM runs the call on each (chat only).
    Models(Vec<String>),
}

impl From<Response> for Early {
    fn from(r: Response) -> Self {
        Early::Done(r)
    }
}

pub(crate) async fn route<'b>(
    app: &Arc<App>,
    path_model: Option<String>,
    headers: &HeaderMap,
    pre: Option<auth::Principal>,
    bytes: &'b Bytes,
    call_type: &'static str,
    required: &'static str,
) -> Result<Routed<'b>, Early> {
    let started = Instant::now();
    let start_time = Utc::now();
    // Time-ordered: spend-log indexes on the call id then grow at one end instead of all over.
    let call_id = uuid::Uuid::now_v7().to_string();
    crate::logging::record_call_id(&call_id);
    let call_id_header =
        HeaderValue::from_str(&call_id).unwrap_or_else(|_| HeaderValue::from_static("unknown"));
    let rt = app.runtime.load_full();
    let early = |e: ProxyError| early_error(app, e, &call_id_header, started);
    let principal = match pre {
        Some(p) => p,
        None => auth::authenticate(&rt.auth, app.resolver.as_ref(), headers)
            .await
            .map_err(early)?,
    };
    let parallel_permit = match &app.parallel {
        None => None,
        Some((places, limit)) => Some(
            places
                .clone()
                .try_acquire_owned()
                .map_err(|_| {
                    app.parallel_refused.fetch_add(1, Ordering::Relaxed);
                    global_parallel_limit(*limit)
                })
                .map_err(early)?,
        ),
    };
    let body = RequestBody::parse(bytes).map_err(early)?;
    check_user_and_sizes(&body, &rt).map_err(early)?;
    let model = rt
        .forced_model
        .clone()
        .or(path_model)
        .or_else(|| body.model.clone())
        .ok_or(ProxyError::MissingParam("model"))
        .map_err(early)?;
    let present = if required == "messages" {
        body.has_list(required)
    } else {
        body.has(required)
    };
    if !present {
        return Err(early(ProxyError::MissingParam(required)).into());
    }
    // As LiteLLM, before any routing (a wildcard group would otherwise take "a,b" whole).
    if call_type == "acompletion" && model.contains(',') && !rt.router.has_exact(&model) {
        let models: Vec<String> = model
            .split(',')
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty())
            .collect();
        if models.len() > 1 {
            return Err(Early::Models(models));
        }
    }
    // A key alias sends the request to its target; the key's access is checked before the
    // model is looked up, so a key limited to some models gets a 403 for any other name, as
    // in LiteLLM, whether or not the proxy serves it.
    let dispatched = principal.alias_target(&model).map(str::to_owned);
    let group = rt.router.group_for(
        dispatched.as_deref().unwrap_or(&model),
        principal.team_id(),
        principal.is_master(),
    );
    principal
        .check_model(&model, dispatched.as_deref(), group.as_deref(), &rt.router)
        .map_err(early)?;
    let group = group
        .ok_or_else(|| {
            let model = dispatched.unwrap_or(model);
            if rt.router.is_blocked(&model) {
                model_blocked()
            } else {
                ProxyError::UnknownModel { call_type, model }
            }
        })
        .map_err(early)?;
    let deployment = group.pick().clone();
    let mut trace = Trace::new(
        app.clone(),
        principal,
        deployment,
        call_id,
        call_id_header,
        call_type,
        group.name.clone(),
        started,
        start_time,
    );
    trace.parallel_permit = parallel_permit;
    if app.otel.is_some() {
        trace.otel = Some(crate::otel::TraceContext::for_call(
            headers.get("traceparent"),
        ));
    }
    trace.metadata = body
        .raw("metadata")
        .and_then(|r| serde_json::from_str(r.get()).ok());
    if rt.reject_client_tags
        && let Some(e) = super::tags::client_tags_refused(&body, trace.metadata.as_ref(), headers)
    {
        return Err(trace.error_response(e).into());
    }
    trace.end_user = match trace.principal.jwt_end_user() {
        Some(signed) => Some(signed.to_owned()),
        None => super::end_user::of(
            &body,
            trace.metadata.as_ref(),
            headers,
            &rt.end_user_headers,
        ),
    };
    trace.acting_user = super::end_user::acting_user(headers, rt.internal_user_header.as_ref());
    // Also when it came from a header: it is the spend row's `end_user`.
    if let Some(e) = trace
        .end_user
        .as_deref()
        .and_then(|u| user_too_long(u, rt.user_limit))
    {
        return Err(trace.error_response(e).into());
    }
    let mut tags = super::tags::of(&body, trace.metadata.as_ref(), headers, &trace.principal);
    if group.table.router.routes_by_tags() {
        trace.route_tags = Some(Arc::new(idlehands_routing::RequestTags {
            tags: tags.clone(),
            user_agent: super::tags::user_agent(headers).map(str::to_owned),
        }));
    }
    if rt.user_agent_tags {
        super::tags::add_user_agent(&mut tags, headers);
    }
    trace.request_tags = tags;
    trace.session_id = super::session::of(Some(&body), trace.metadata.as_ref(), headers);
    // The serving thread's shared copy of the peer's address: no allocation.
    trace.requester_ip = super::guard::requester_ip(&rt, headers, || {
        trace.request.as_ref().and_then(|r| r.client_ip.clone())
    });
    trace.stream = body.stream;
    trace.capture = app.payloads.capture(bytes);
    // Everything the model reads: a chat's tool definitions weigh as much as its messages.
    let fields: &[&str] = if required == "messages" {
        &super::estimate::PROMPT_FIELDS
    } else {
        &[required]
    };
    let prompt_chars: usize = fields
        .iter()
        .filter_map(|f| body.raw(f))
        .map(|r| super::estimate::json_chars(r.get()))
        .sum();
    trace.prompt_estimate = super::estimate::tokens_for_chars(prompt_chars);
    Ok(Routed { body, trace, group })
}

/// `metadata` and `user` are kept in every spend row (`metadata`, `end_user`): bounded,
/// so that a client cannot grow the store by megabytes a call. With `enforce_user_param`,
/// a call without `user` is refused (LiteLLM's 401 and words).
fn check_user_and_sizes(
    body: &RequestBody<'_>,
    rt: &crate::state::Runtime,
) -> Result<(), ProxyError> {
    if rt.enforce_user_param && !body.has("user") {
        return Err(ProxyError::Custom {
            status: 401,
            kind: "auth_error".to_string(),
            message: "Authentication Error, 'user' param not passed in. 'enforce_user_param'=True"
                .to_string(),
            param: None,
            headers: Vec::new(),
        });
    }
    if let Some(m) = body.raw("metadata")
        && m.get().len() > rt.metadata_limit
    {
        return Err(ProxyError::InvalidParam {
            param: "metadata",
            message: format!(
                "{} bytes of JSON, more than the {} allowed (general_settings.max_request_metadata_size_kb)",
                m.get().len(),
                rt.metadata_limit
            ),
        });
    }
    match body
        .user
        .as_deref()
        .and_then(|u| user_too_long(u, rt.user_limit))
    {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A call to a model whose every deployment is blocked (`/model/block`), as LiteLLM refuses it.
fn model_blocked() -> ProxyError {
    ProxyError::Custom {
        status: 403,
        kind: "auth_error".to_string(),
        message: "litellm.PermissionDeniedError: Model is blocked".to_string(),
        param: None,
        headers: Vec::new(),
    }
}

/// The refusal of an end user id over `max_request_user_length` characters.
fn user_too_long(user: &str, limit: usize) -> Option<ProxyError> {
    let n = user.chars().count();
    (n > limit).then(|| ProxyError::InvalidParam {
        param: "user",
        message: format!(
            "{n} characters, more than the {limit} allowed (general_settings.max_request_user_length)"
        ),
    })
}

/// The whole chat pipeline for an OpenAI-format body; other front doors (`/v1/messages`)
/// convert their request into one and call this with their own `call_type`.
pub(crate) async fn handle(
    app: Arc<App>,
    path_model: Option<String>,
    headers: HeaderMap,
    pre: Option<auth::Principal>,
    bytes: Bytes,
    call_type: &'static str,
) -> Response {
    let (endpoint, prompt_field) = if call_type == TEXT_COMPLETION {
        (Endpoint::TextCompletion, "prompt")
    } else {
        (Endpoint::Chat, "messages")
    };
    let Routed {
        body,
        mut trace,
        group,
    } = match route(
        &app,
        path_model,
        &headers,
        pre,
        &bytes,
        call_type,
        prompt_field,
    )
    .await
    {
        Ok(r) => r,
        Err(Early::Done(resp)) => return resp,
        Err(Early::Models(models)) => {
            return super::multi::run(app, headers, bytes, models, call_type).await;
        }
    };
    if let Err(e) = trace.pre_call(body.max_tokens).await {
        return trace.error_response(e);
    }
    let options = match CallOptions::from_request(&body, &headers, &trace.app, &trace.model_group) {
        Ok(o) => o,
        Err(e) => return trace.error_response(e),
    };
    let stream = body.stream;
    // Usage is always asked of the upstream when streaming, for cost; the client sees the
    // usage chunk only if it asked too.
    let force_usage = stream && !body.include_usage;
    let keep_usage_chunk = body.include_usage || app.runtime.load().always_include_stream_usage;
    let asked = super::cache::Asked {
        call_type,
        body: &body,
        headers: &headers,
        group: &group,
        keep_usage_chunk,
    };
    let cache_plan = match super::cache::consult(&mut trace, asked).await {
        Ok(plan) => plan,
        Err(answered) => return answered.respond(trace),
    };
    let drop_params = app.runtime.load().drop_params;
    let mock_response = body
        .raw("mock_response")
        .and_then(|r| serde_json::from_str::<String>(r.get()).ok());
    let mock_failure = MockFailure::from_body(&body);
    let mut attempts = Attempts::new(&group, plan_options(&body, &headers), &trace)
        .with_caller_timeout(options.sets_timeout());
    let requested = group.name.as_str();
    let body = &body;
    let options = &options;
    let mut rate_limit_pending = options.mock_rate_limit;
    let won = attempts
        .run(&mut trace, |d| {
            let mut failed = mock_failure.error(d, requested);
            if rate_limit_pending && failed.is_none() && d.model_name == requested {
                rate_limit_pending = false;
                failed = Some(CallOptions::rate_limit_error(requested));
            }
            if failed.is_none()
                && endpoint == Endpoint::TextCompletion
                && mock_response.is_none()
                && !d.adapter.text_completions()
            {
                failed = Some(crate::providers::needs_openai_compatible(
                    "/v1/completions",
                    d,
                    "has no text completions API. Use /v1/chat/completions for it.",
                ));
            }
            let failed = match failed {
                Some(e) => Err(e),
                None => body.for_deployment(&bytes, d, force_usage, drop_params),
            };
            let d = options.deployment(d);
            let limit = if stream { d.stream_timeout } else { d.timeout };
            let reply = failed.map(|upstream_body| {
                let call = ChatCall {
                    body: upstream_body,
                    stream,
                    endpoint,
                    mock_response: mock_response.clone(),
                    extra_headers: options.headers_for(&d),
                    extra_body: d.params.extra_body.clone(),
                };
                if options.mock_timeout {
                    // LiteLLM's mock timeout: wait out the timeout, then fail as it would.
                    Box::pin(async move {
                        tokio::time::sleep(limit).await;
                        Err(CallOptions::timeout_error())
                    })
                } else if call.mock_response.is_some() {
                    MockProvider.chat(&app.client, &d, call)
                } else {
                    d.adapter.chat(&app.client, &d, call)
                }
            });
            async move {
                let reply = reply?;
                match within(limit, &d, reply).await? {
                    full @ ChatReply::Full { .. } => Ok((full, None)),
                    // Nothing has reached the client yet: a stream that fails before its first
                    // byte is one more failed attempt, retried or fallen back like any other.
                    ChatReply::Stream {
                        mut frames,
                        headers,
                    } => {
                        let first = within(limit, &d, async {
                            match frames.next().await {
                                Some(r) => r,
                                None => Err(ProxyError::UpstreamUnreachable {
                                    label: d.provider.clone(),
                                    message: "the stream ended before any data".to_string(),
                                }),
                            }
                        })
                        .await?;
                        Ok((ChatReply::Stream { frames, headers }, Some(first)))
                    }
                }
            }
        })
        .await;
    let won = match won {
        Ok(w) => w,
        Err(e) => {
            let mut resp = trace.error_response(e);
            attempts.headers(resp.headers_mut());
            return resp;
        }
    };
    let (reply, first) = won.value;
    match reply {
        ChatReply::Full {
            body,
            headers,
            peek,
        } => {
            let mut peek: Peek =
                peek.unwrap_or_else(|| serde_json::from_slice(&body).unwrap_or_default());
            if peek.usage.is_none() {
                peek.usage = Some(super::estimate::usage(
                    trace.prompt_estimate,
                    super::estimate::answer_chars(&body),
                ));
                trace.usage_estimated = true;
            }
            won.pick
                .success(won.started.elapsed(), token_usage(peek.usage.as_ref()));
            trace.response_model = peek.model.take();
            let cost = trace.cost(peek.usage.as_ref());
            if let Some(c) = trace.capture.as_mut() {
                c.response(&body);
            }
            if let Some(plan) = &cache_plan {
                plan.store(CacheKind::Full, body.clone());
            }
            let mut resp = Response::new(Body::from(body));
            *resp.headers_mut() = headers;
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            trace.headers(resp.headers_mut(), Some(cost));
            attempts.headers(resp.headers_mut());
            let now = Utc::now();
            trace.finish(peek.usage.as_ref(), peek.id, Some(now), None, 200);
            resp
        }
        ChatReply::Stream { frames, headers } => {
            let mut h = headers;
            trace.headers(&mut h, None);
            attempts.headers(&mut h);
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            let client = ClientStream::new(frames, keep_usage_chunk, trace)
                .with_first(first)
                .with_pick(won.pick, won.started)
                .with_slot(won.slot)
                .with_recorder(cache_plan.as_ref().and_then(super::cache::Plan::recorder));
            let mut resp = Response::new(Body::from_stream(client));
            *resp.status_mut() = StatusCode::OK;
            *resp.headers_mut() = h;
            resp
        }
    }
}

/// Token counts for usage-based routing.
pub(crate) fn token_usage(u: Option<&idlehands_wire::Usage>) -> TokenUsage {
    u.map(|u| TokenUsage {
        input_tokens: u.prompt_tokens,
        output_tokens: u.completion_tokens,
    })
    .unwrap_or_default()
}
