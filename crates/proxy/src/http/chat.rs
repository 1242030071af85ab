//! POST /v1/chat/completions and its aliases.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use bytes::Bytes;
use chrono::Utc;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::body::{RawBody, RequestBody};
use super::stream::ClientStream;
use super::trace::{Peek, Trace, early_error};
use crate::auth;
use crate::error::ProxyError;
use crate::gateway::App;
use crate::providers::{ChatCall, ChatReply, MockProvider, Provider};

pub(crate) async fn chat(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    handle(app, None, headers, body).await
}

pub(crate) async fn chat_with_path_model(
    State(app): State<Arc<App>>,
    Path(model): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    handle(app, Some(model), headers, body).await
}

/// What every model call starts with: a call id, auth, the body read once, the model group
/// resolved (forced model, then path model, then body model) and a deployment picked.
pub(crate) struct Routed<'b> {
    pub body: RequestBody<'b>,
    pub trace: Trace,
}

pub(crate) async fn route<'b>(
    app: &Arc<App>,
    path_model: Option<String>,
    headers: &HeaderMap,
    bytes: &'b Bytes,
    call_type: &'static str,
    required: &'static str,
) -> Result<Routed<'b>, Response> {
    let started = Instant::now();
    let start_time = Utc::now();
    let call_id = uuid::Uuid::new_v4().to_string();
    crate::logging::record_call_id(&call_id);
    let call_id_header =
        HeaderValue::from_str(&call_id).unwrap_or_else(|_| HeaderValue::from_static("unknown"));
    let rt = app.runtime.load_full();
    let early = |e: ProxyError| early_error(app, e, &call_id_header, started);
    let principal = auth::authenticate(&rt.auth, app.resolver.as_ref(), headers)
        .await
        .map_err(early)?;
    let body = RequestBody::parse(bytes).map_err(early)?;
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
        return Err(early(ProxyError::MissingParam(required)));
    }
    let group = rt
        .router
        .group(&model)
        .ok_or_else(|| ProxyError::UnknownModel {
            call_type,
            model: model.clone(),
        })
        .map_err(early)?;
    principal.check_model(&group.name).map_err(early)?;
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
    trace.end_user = body.user.clone();
    trace.metadata = body
        .raw("metadata")
        .and_then(|r| serde_json::from_str(r.get()).ok());
    trace.stream = body.stream;
    trace.capture = app.payloads.capture(bytes);
    let prompt_bytes = body
        .raw(required)
        .map(|r| r.get().len())
        .unwrap_or_default();
    trace.prompt_estimate = super::estimate::tokens_for_chars(prompt_bytes);
    Ok(Routed { body, trace })
}

async fn handle(
    app: Arc<App>,
    path_model: Option<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let Routed { body, mut trace } = match route(
        &app,
        path_model,
        &headers,
        &bytes,
        "acompletion",
        "messages",
    )
    .await
    {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if let Err(e) = trace.pre_call(body.max_tokens).await {
        return trace.error_response(e);
    }
    let d = trace.deployment.clone();
    let stream = body.stream;
    // Usage is always asked of the upstream when streaming, for cost; the client sees the
    // usage chunk only if it asked too.
    let force_usage = stream && !body.include_usage;
    let same_model = body.model.as_deref() == Some(d.upstream_model.as_str());
    let upstream_body = if same_model && !force_usage && !body.has_gateway_only_fields() {
        bytes.clone()
    } else {
        body.rewrite(&d.upstream_model, stream)
    };
    let keep_usage_chunk = body.include_usage || app.runtime.load().always_include_stream_usage;
    let mock_response = body
        .raw("mock_response")
        .and_then(|r| serde_json::from_str::<String>(r.get()).ok());
    drop(body);
    let sent = Instant::now();
    let call = ChatCall {
        body: upstream_body,
        stream,
        mock_response,
    };
    let reply = if call.mock_response.is_some() {
        MockProvider.chat(&app.client, &d, call).await
    } else {
        d.adapter.chat(&app.client, &d, call).await
    };
    trace.upstream = sent.elapsed();
    match reply {
        Err(e) => trace.error_response(e),
        Ok(ChatReply::Full { body, headers }) => {
            let mut peek: Peek = serde_json::from_slice(&body).unwrap_or_default();
            if peek.usage.is_none() {
                let text = String::from_utf8_lossy(&body);
                peek.usage = Some(super::estimate::usage(
                    trace.prompt_estimate,
                    super::estimate::generated_chars(&text),
                ));
            }
            let cost = trace.cost(peek.usage.as_ref());
            if let Some(c) = trace.capture.as_mut() {
                c.response(&body);
            }
            let mut resp = Response::new(Body::from(body));
            *resp.headers_mut() = headers;
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            trace.headers(resp.headers_mut(), Some(cost));
            let now = Utc::now();
            trace.finish(peek.usage.as_ref(), peek.id, Some(now), None, 200);
            resp
        }
        Ok(ChatReply::Stream { frames, headers }) => {
            let mut h = headers;
            trace.headers(&mut h, None);
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            let client = ClientStream::new(frames, keep_usage_chunk, trace);
            let mut resp = Response::new(Body::from_stream(client));
            *resp.status_mut() = StatusCode::OK;
            *resp.headers_mut() = h;
            resp
        }
    }
}
