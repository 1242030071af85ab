//! `POST /v1/responses` to a model group whose deployments speak the Responses API themselves
//! (`openai/` and `azure/`, as LiteLLM sends them): the request goes on as it came (the model
//! name swapped for the deployment's), with the gateway's duties of a chat call (keys, budgets,
//! limits, routing, retries, fallbacks within the group, spend row with the answer's usage),
//! and the answer, plain or streamed, is relayed unchanged. The answer is also kept in the
//! gateway's response store (unless `store: false`), so `GET /v1/responses/{id}` and
//! `previous_response_id` work as they do for translated backends.

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use chrono::Utc;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::attempts::{Attempts, CallOptions, plan_options, within};
use super::chat::{Early, Routed, route, token_usage};
use super::passthrough::Relay;
use super::usage_scan::{Framing, UsageScan};
use crate::auth::Principal;
use crate::error::ProxyError;
use crate::providers::Deployment;
use crate::router::ModelGroup;
use crate::state::App;

/// LiteLLM's default `api-version` for Azure's Responses API.
const AZURE_DEFAULT_API_VERSION: &str = "preview";

/// Whether a deployment answers the Responses API itself.
fn native(d: &Deployment) -> bool {
    d.mock_response.is_none() && matches!(d.provider.as_str(), "openai" | "azure")
}

/// Whether every deployment of the group does: a group that mixes in a translated backend is
/// translated throughout, so that a retry or fallback never changes the answer's shape.
pub(crate) fn native_group(group: &ModelGroup) -> bool {
    !group.deployments.is_empty() && group.deployments.iter().all(|d| native(d))
}

/// The deployment's Responses URL and credentials.
fn request(
    client: &reqwest::Client,
    d: &Deployment,
    options: &CallOptions,
    body: Bytes,
) -> Result<reqwest::RequestBuilder, ProxyError> {
    let base = d.api_base.as_deref().unwrap_or("https://api.openai.com/v1");
    let bad = |e: String| ProxyError::UpstreamUnreachable {
        label: d.provider.clone(),
        message: e,
    };
    let mut url =
        reqwest::Url::parse(base).map_err(|e| bad(format!("api_base is not a URL: {e}")))?;
    let azure = d.provider == "azure";
    let path = if azure {
        // The resource endpoint, whatever deployment path the base carries.
        let p = url.path();
        let root = p
            .find("/openai")
            .map_or(p, |i| &p[..i])
            .trim_end_matches('/');
        format!("{root}/openai/responses")
    } else {
        format!("{}/responses", url.path().trim_end_matches('/'))
    };
    url.set_path(&path);
    if azure {
        let version = d
            .api_version
            .as_deref()
            .unwrap_or(AZURE_DEFAULT_API_VERSION);
        url.set_query(None);
        url.query_pairs_mut().append_pair("api-version", version);
    }
    let mut req = client
        .post(url)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body);
    if let Some(k) = &d.api_key {
        req = if azure {
            req.header("api-key", k.expose())
        } else {
            req.bearer_auth(k.expose())
        };
    }
    Ok(req.headers(options.headers_for(d)))
}

/// The upstream's refusal as the chat pipeline reports one (retried, fallen back, recorded).
async fn refusal(d: &Deployment, resp: reqwest::Response) -> ProxyError {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp.bytes().await.unwrap_or_default();
    let label = if d.provider == "azure" {
        "AzureException"
    } else {
        "OpenAIException"
    };
    crate::providers::openai_compat::upstream_error(label, status, &body, retry_after)
}

/// Runs the call; `keep` stores the finished `response` object.
pub(crate) async fn handle(
    app: Arc<App>,
    headers: HeaderMap,
    pre: Principal,
    bytes: Bytes,
    keep: Option<Box<dyn FnOnce(serde_json::Value) + Send>>,
) -> Response {
    let Routed {
        body,
        mut trace,
        group,
    } = match route(
        &app,
        None,
        &headers,
        Some(pre),
        &bytes,
        super::responses::CALL_TYPE,
        "model",
    )
    .await
    {
        Ok(r) => r,
        Err(Early::Done(resp)) => return resp,
        Err(Early::Models(_)) => {
            return trace_less(ProxyError::Internal("unexpected model list".to_string()));
        }
    };
    let max_output = body
        .raw("max_output_tokens")
        .and_then(|r| r.get().parse::<u64>().ok());
    if let Err(e) = trace.pre_call(max_output).await {
        return trace.error_response(e);
    }
    let options = match CallOptions::from_request(&body, &headers, &trace.app, &trace.model_group) {
        Ok(o) => o,
        Err(e) => return trace.error_response(e),
    };
    let stream = body.stream;
    let mut attempts = Attempts::new(&group, plan_options(&body, &headers), &trace)
        .with_caller_timeout(options.sets_timeout());
    let body = &body;
    let options = &options;
    let client = &app.client;
    let won = attempts
        .run(&mut trace, |d| {
            let d = options.deployment(d);
            let req = if native(&d) {
                request(client, &d, options, body.rewrite_keeping_metadata(&d.upstream_model))
            } else {
                // A fallback to another group can land here.
                Err(crate::providers::needs_openai_compatible(
                    "/v1/responses (passed through)",
                    &d,
                    "does not speak the Responses API; a group of openai/ or azure/ deployments falls back only to such groups",
                ))
            };
            let limit = if stream { d.stream_timeout } else { d.timeout };
            async move {
                let req = req?;
                within(limit, &d, async {
                    let resp = req.send().await.map_err(|e| ProxyError::UpstreamUnreachable {
                        label: d.provider.clone(),
                        message: format!(
                            "Connection error talking to {}: {}",
                            d.api_base.as_deref().unwrap_or(""),
                            e.without_url()
                        ),
                    })?;
                    if !resp.status().is_success() {
                        return Err(refusal(&d, resp).await);
                    }
                    Ok(resp)
                })
                .await
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
    let upstream = won.value;
    let framing = Framing::of(
        upstream
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    );
    let mut h = HeaderMap::new();
    for (k, v) in upstream.headers() {
        if k.as_str().starts_with("x-ratelimit-") || k.as_str() == "openai-processing-ms" {
            h.append(k.clone(), v.clone());
        }
    }
    if framing == Framing::Sse {
        trace.stream = true;
        trace.headers(&mut h, None);
        attempts.headers(&mut h);
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        let (pick, started, slot) = (won.pick, won.started, won.slot);
        let relay = Relay::new(upstream, framing, trace).on_end(Box::new(move |seen| {
            // The deployment's slot is held until the stream has ended.
            drop(slot);
            pick.success(started.elapsed(), token_usage(seen.usage.as_ref()));
            if let (Some(keep), Some(done)) = (keep, seen.completed.clone()) {
                keep(done);
            }
        }));
        let mut resp = Response::new(Body::from_stream(relay));
        *resp.status_mut() = StatusCode::OK;
        *resp.headers_mut() = h;
        return resp;
    }
    let limit = app.runtime.load().body_limit.max(64 * 1024 * 1024);
    let bytes = match within(trace.deployment.timeout, &trace.deployment.clone(), async {
        upstream
            .bytes()
            .await
            .map_err(|e| ProxyError::UpstreamUnreachable {
                label: "OpenAIException".to_string(),
                message: format!("the answer broke off: {}", e.without_url()),
            })
    })
    .await
    {
        Ok(b) if b.len() <= limit => b,
        Ok(_) => {
            return trace.error_response(ProxyError::Internal(
                "the upstream answer is larger than the gateway relays".to_string(),
            ));
        }
        Err(e) => return trace.error_response(e),
    };
    let mut scan = UsageScan::new(Framing::Json);
    scan.feed(&bytes);
    let seen = scan.finish();
    won.pick
        .success(won.started.elapsed(), token_usage(seen.usage.as_ref()));
    if seen.model.is_some() {
        trace.response_model = seen.model.clone();
    }
    let cost = trace.cost(seen.usage.as_ref());
    if let (Some(keep), Some(done)) = (keep, seen.completed.clone()) {
        keep(done);
    }
    if let Some(c) = trace.capture.as_mut() {
        c.response(&bytes);
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    trace.headers(&mut h, Some(cost));
    attempts.headers(&mut h);
    trace.finish(seen.usage.as_ref(), seen.id, Some(Utc::now()), None, 200);
    let mut resp = Response::new(Body::from(bytes));
    *resp.headers_mut() = h;
    resp
}

fn trace_less(e: ProxyError) -> Response {
    axum::response::IntoResponse::into_response(e)
}
