//! POST /v1/embeddings, and the other OpenAI-format JSON endpoints (`/v1/rerank`,
//! `/v1/images/generations`, `/v1/moderations`): passed through to the deployment with the
//! gateway's duties (keys, limits, routing, retries, spend row), costed from usage when the
//! answer reports it.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::Utc;
use http::{HeaderMap, HeaderValue, header};

use super::attempts::{Attempts, CallOptions, plan_options, within};
use super::body::RawBody;
use super::chat::{Routed, route, token_usage};
use super::guard::Pre;
use super::trace::Peek;
use crate::providers::JsonRoute;
use crate::state::App;

/// Which endpoint a call is for: its LiteLLM `call_type`, the field it cannot do without,
/// and the upstream route (`None`: embeddings, which every provider adapter translates).
#[derive(Clone, Copy)]
pub(crate) struct Kind {
    call_type: &'static str,
    required: &'static str,
    route: Option<JsonRoute>,
}

const EMBEDDINGS: Kind = Kind {
    call_type: "aembedding",
    required: "input",
    route: None,
};

pub(crate) async fn embeddings(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Pre(pre): Pre,
    RawBody(body): RawBody,
) -> Response {
    handle(app, None, headers, pre, body, EMBEDDINGS).await
}

/// `/v1/embeddings` for a caller that authenticated and read the body itself
/// (`super::direct`).
pub(crate) async fn embed(
    app: Arc<App>,
    headers: HeaderMap,
    pre: crate::auth::Principal,
    body: Bytes,
) -> Response {
    handle(app, None, headers, Some(pre), body, EMBEDDINGS).await
}

pub(crate) async fn embeddings_with_path_model(
    State(app): State<Arc<App>>,
    Path(model): Path<String>,
    headers: HeaderMap,
    Pre(pre): Pre,
    RawBody(body): RawBody,
) -> Response {
    handle(app, Some(model), headers, pre, body, EMBEDDINGS).await
}

pub(crate) const RERANK: Kind = Kind {
    call_type: "arerank",
    required: "query",
    route: Some(JsonRoute::Rerank),
};

pub(crate) const IMAGES: Kind = Kind {
    call_type: "aimage_generation",
    required: "prompt",
    route: Some(JsonRoute::Images),
};

pub(crate) const MODERATIONS: Kind = Kind {
    call_type: "amoderation",
    required: "input",
    route: Some(JsonRoute::Moderations),
};

/// The POST route for one of the forwarded JSON endpoints.
pub(crate) fn forward(kind: Kind) -> axum::routing::MethodRouter<Arc<App>> {
    axum::routing::post(
        move |State(app): State<Arc<App>>,
              headers: HeaderMap,
              Pre(pre): Pre,
              RawBody(body): RawBody| async move {
            handle(app, None, headers, pre, body, kind).await
        },
    )
}

async fn handle(
    app: Arc<App>,
    path_model: Option<String>,
    headers: HeaderMap,
    pre: Option<crate::auth::Principal>,
    bytes: Bytes,
    kind: Kind,
) -> Response {
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
        kind.call_type,
        kind.required,
    )
    .await
    {
        Ok(r) => r,
        Err(super::chat::Early::Done(resp)) => return resp,
        // Only chat calls split a comma-separated model.
        Err(super::chat::Early::Models(_)) => {
            return crate::error::ProxyError::Internal("unexpected model list".to_string())
                .into_response();
        }
    };
    if let Err(e) = trace.pre_call(None).await {
        return trace.error_response(e);
    }
    // The caller's timeouts apply here too (its extra_headers and mock aids are chat's).
    let options = match CallOptions::from_request(&body, &headers, &trace.app, &trace.model_group) {
        Ok(o) => o,
        Err(e) => return trace.error_response(e),
    };
    let asked = super::cache::Asked {
        call_type: kind.call_type,
        body: &body,
        headers: &headers,
        group: &group,
        keep_usage_chunk: false,
    };
    let cache_plan = match super::cache::consult(&mut trace, asked).await {
        Ok(plan) => plan,
        Err(answered) => return answered.respond(trace),
    };
    let verbatim = !body.has_gateway_only_fields();
    let mut attempts = Attempts::new(&group, plan_options(&body, &headers), &trace)
        .with_caller_timeout(options.timeout.is_some());
    let body = &body;
    let options = &options;
    let won = attempts
        .run(&mut trace, |d| {
            let upstream_body =
                if verbatim && body.model.as_deref() == Some(d.upstream_model.as_str()) {
                    bytes.clone()
                } else {
                    body.rewrite(&d.upstream_model, false)
                };
            let d = options.deployment(d);
            let call = match kind.route {
                None => d.adapter.embeddings(&app.client, &d, upstream_body),
                Some(r) => d.adapter.forward_json(&app.client, &d, r, upstream_body),
            };
            async move { within(d.timeout, &d, call).await }
        })
        .await;
    let reply = match won {
        Ok(won) => {
            let r = won.value;
            let mut peek: Peek = serde_json::from_slice(&r.body).unwrap_or_default();
            if peek.usage.is_none() {
                peek.usage = Some(super::estimate::usage(trace.prompt_estimate, 0));
                trace.usage_estimated = true;
            }
            won.pick
                .success(won.started.elapsed(), token_usage(peek.usage.as_ref()));
            Ok((r, peek))
        }
        Err(e) => Err(e),
    };
    match reply {
        Err(e) => {
            let mut resp = trace.error_response(e);
            attempts.headers(resp.headers_mut());
            resp
        }
        Ok((r, peek)) => {
            trace.response_model = peek.model;
            let cost = trace.cost(peek.usage.as_ref());
            if let Some(plan) = &cache_plan {
                plan.store(crate::response_cache::Kind::Full, r.body.clone());
            }
            let mut resp = Response::new(Body::from(r.body));
            *resp.headers_mut() = r.headers;
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            trace.headers(resp.headers_mut(), Some(cost));
            attempts.headers(resp.headers_mut());
            trace.finish(peek.usage.as_ref(), None, Some(Utc::now()), None, 200);
            resp
        }
    }
}
