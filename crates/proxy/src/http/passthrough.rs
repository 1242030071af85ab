//! The pass-through routes (`crate::passthrough` says where each goes): the request is sent
//! on as it came, with the gateway's key swapped for the provider's credential, and the answer
//! relayed byte for byte as it arrives (a stream is never held back). The gateway's duties
//! stay: the key is checked, budgets and rate limits apply, and each call leaves one spend row
//! with the usage the answer reports (JSON, SSE or NDJSON) priced from the price table.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::any;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::Stream;
use futures_util::stream::BoxStream;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde_json::Value;

use super::trace::{Trace, early_error, refused};
use super::usage_scan::{Framing, UsageScan};
use crate::auth::Principal;
use crate::error::ProxyError;
use crate::passthrough::{Credential, CustomRoute, ProviderRoute};
use crate::pricing::Nanos;
use crate::providers::Deployment;
use crate::state::App;

/// LiteLLM's `call_type` for pass-through calls.
const CALL_TYPE: &str = "pass_through_endpoint";

/// Upstream error text kept for the spend row, at most.
const ERROR_EXCERPT: usize = 512;

pub(crate) fn routes() -> Router<Arc<App>> {
    let mut r = Router::new();
    for name in ["openai", "anthropic", "gemini", "vllm", "ollama"] {
        let handler =
            move |State(app): State<Arc<App>>, req: Request| provider_call(app, name, req);
        r = r
            .route(&format!("/{name}/{{*endpoint}}"), any(handler))
            .route(&format!("/{name}"), any(handler));
    }
    r
}

/// Headers that describe one hop, never sent on (either way).
fn is_hop_header(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "host"
            | "content-length"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authorization"
            | "proxy-authenticate"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Caller headers that carry the gateway key (or could carry any credential): never sent on.
fn is_credential_header(name: &HeaderName, custom: Option<&HeaderName>) -> bool {
    custom == Some(name)
        || matches!(
            name.as_str(),
            "authorization"
                | "x-api-key"
                | "api-key"
                | "x-goog-api-key"
                | "x-litellm-api-key"
                | "ocp-apim-subscription-key"
                | "cookie"
        )
}

/// The caller's headers that go upstream: `only` lists them, else all but credentials. The
/// answer is relayed as the upstream encodes it, so no compression is asked for (the usage
/// in it could not be read).
fn caller_headers(
    headers: &HeaderMap,
    only: Option<&[&str]>,
    custom: Option<&HeaderName>,
) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (k, v) in headers {
        let wanted = match only {
            Some(list) => list.contains(&k.as_str()),
            None => !is_hop_header(k) && !is_credential_header(k, custom) && k != "accept-encoding",
        };
        if wanted {
            out.append(k.clone(), v.clone());
        }
    }
    out
}

/// `endpoint` under `base`'s path, refusing `..` (the route must not reach outside its base).
fn join(base: &str, endpoint: &str) -> Result<reqwest::Url, ProxyError> {
    if endpoint
        .split('/')
        .any(|s| s == ".." || s == "." || s.eq_ignore_ascii_case("%2e%2e"))
    {
        return Err(ProxyError::InvalidParam {
            param: "path",
            message: "a pass-through path may not contain . or .. segments".to_string(),
        });
    }
    let mut url = reqwest::Url::parse(base).map_err(|e| {
        ProxyError::Internal(format!("the pass-through base URL is not a URL: {e}"))
    })?;
    let path = format!(
        "{}/{}",
        url.path().trim_end_matches('/'),
        endpoint.trim_start_matches('/')
    );
    url.set_path(&path);
    Ok(url)
}

/// The model a Gemini path names: `v1beta/models/gemini-2.5-flash:generateContent`.
fn gemini_path_model(endpoint: &str) -> Option<String> {
    let after = endpoint.split("models/").nth(1)?;
    let m = after.split([':', '/']).next()?;
    (!m.is_empty()).then(|| m.to_string())
}

/// What the body says about the call: its model and whether it streams.
fn body_facts(headers: &HeaderMap, body: &[u8]) -> (Option<String>, bool) {
    let json = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.contains("json"));
    if !json || body.is_empty() {
        return (None, false);
    }
    let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(body) else {
        return (None, false);
    };
    let model = m
        .get("model")
        .and_then(Value::as_str)
        .map(str::to_string)
        .filter(|s| !s.is_empty());
    (model, m.get("stream") == Some(&Value::Bool(true)))
}

fn query_pairs(uri: &http::Uri) -> Vec<(String, String)> {
    uri.query()
        .and_then(|q| reqwest::Url::parse(&format!("http://q/?{q}")).ok())
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

/// One call on its way out.
struct Outgoing {
    method: Method,
    url: reqwest::Url,
    headers: HeaderMap,
    body: Bytes,
    deployment: Arc<Deployment>,
    model: Option<String>,
    /// The call goes to a served group's deployment: recorded as that deployment.
    own_deployment: bool,
    stream: bool,
    fixed_cost: Option<Nanos>,
    timeout: Duration,
}

async fn read_body(app: &App, body: Body) -> Result<Bytes, ProxyError> {
    let limit = app.runtime.load().body_limit;
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| super::guard::too_large(limit))
}

async fn provider_call(app: Arc<App>, name: &'static str, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let rt = app.runtime.load_full();
    let Some(route) = rt.pass_through.provider(name) else {
        return refused(&app, ProxyError::Internal(format!("no {name} route")));
    };
    let query = query_pairs(&parts.uri);
    // Gemini clients send their key as `?key=` (LiteLLM reads the gateway key there too).
    let mut key_headers = parts.headers.clone();
    if name == "gemini"
        && !key_headers.contains_key("x-goog-api-key")
        && let Some((_, k)) = query.iter().find(|(k, _)| k == "key")
        && let Ok(v) = HeaderValue::from_str(k)
    {
        key_headers.insert("x-goog-api-key", v);
    }
    let principal = match super::guard::check_key(&app, &key_headers, &parts).await {
        Ok(p) => p,
        Err(e) => return refused(&app, e),
    };
    let endpoint = parts
        .uri
        .path()
        .strip_prefix(&format!("/{name}"))
        .unwrap_or("")
        .to_string();
    let out = match outgoing_for_provider(&app, route, &parts, &endpoint, query, body).await {
        Ok(o) => o,
        Err(e) => return refused(&app, e),
    };
    let ip = caller_ip(&app, &parts);
    relay(app, principal, out, ip).await
}

async fn outgoing_for_provider(
    app: &App,
    route: &ProviderRoute,
    parts: &http::request::Parts,
    endpoint: &str,
    mut query: Vec<(String, String)>,
    body: Body,
) -> Result<Outgoing, ProxyError> {
    let body = read_body(app, body).await?;
    let (model, body_stream) = body_facts(&parts.headers, &body);
    // As LiteLLM: a vLLM call naming a served model group goes to that group's deployment.
    if route.name == "vllm"
        && let Some(m) = &model
        && let Some(d) = vllm_deployment(app, m)
    {
        return routed_vllm(app, route, parts, endpoint, query, body, m, d, body_stream);
    }
    let base = route.base.as_deref().ok_or_else(|| ProxyError::Custom {
        status: 404,
        kind: "not_found_error".to_string(),
        message: format!(
            "Provider {} api base not found: set {}_API_BASE for /{}/ pass-through calls",
            route.name,
            route.name.to_ascii_uppercase(),
            route.name
        ),
        param: None,
        headers: Vec::new(),
    })?;
    let credential = match (&route.credential, route.missing_key) {
        (Some(c), _) => Some(c),
        (None, Some(why)) => {
            return Err(ProxyError::Custom {
                status: 500,
                kind: "internal_server_error".to_string(),
                message: why.to_string(),
                param: None,
                headers: Vec::new(),
            });
        }
        (None, None) => None,
    };
    let mut url = join(base, endpoint)?;
    // As LiteLLM: OpenAI's own host serves under /v1, which a caller may leave out.
    if route.name == "openai"
        && url.host_str() == Some("api.openai.com")
        && !url.path().starts_with("/v1/")
    {
        let path = format!("/v1{}", url.path());
        url.set_path(&path);
    }
    let custom = app.runtime.load().auth.custom_header.clone();
    let mut headers = caller_headers(&parts.headers, route.forwards, custom.as_ref());
    match credential {
        Some(Credential::Headers(hs)) => {
            for (k, v) in hs {
                headers.insert(k.clone(), v.clone());
            }
        }
        Some(Credential::Query(k)) => {
            query.retain(|(name, _)| name != "key");
            query.push(("key".to_string(), k.clone()));
        }
        None => {}
    }
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(&query);
    }
    let model = model.or_else(|| {
        (route.name == "gemini")
            .then(|| gemini_path_model(endpoint))
            .flatten()
    });
    let stream = body_stream || endpoint.contains("stream");
    Ok(Outgoing {
        method: parts.method.clone(),
        url,
        headers,
        body,
        deployment: route.deployment.clone(),
        model,
        own_deployment: false,
        stream,
        fixed_cost: None,
        timeout: app.runtime.load().pass_through.timeout,
    })
}

/// The served group's deployment for a `/vllm/*` call, if `model` names a group served by
/// a vLLM deployment.
fn vllm_deployment(app: &App, model: &str) -> Option<Arc<Deployment>> {
    let rt = app.runtime.load();
    let group = rt.router.group(model)?;
    let d = group.pick();
    (matches!(d.provider.as_str(), "hosted_vllm" | "vllm") && d.api_base.is_some())
        .then(|| d.clone())
}

/// A `/vllm/*` call for a served group: its deployment's base URL and key, the body's model
/// swapped for the deployment's.
#[expect(clippy::too_many_arguments)]
fn routed_vllm(
    app: &App,
    route: &ProviderRoute,
    parts: &http::request::Parts,
    endpoint: &str,
    query: Vec<(String, String)>,
    body: Bytes,
    group: &str,
    d: Arc<Deployment>,
    stream: bool,
) -> Result<Outgoing, ProxyError> {
    let base = d.api_base.as_deref().unwrap_or_default();
    let mut url = join(base, endpoint)?;
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(&query);
    }
    let custom = app.runtime.load().auth.custom_header.clone();
    let mut headers = caller_headers(&parts.headers, route.forwards, custom.as_ref());
    if let Some(k) = &d.api_key
        && let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {}", k.expose()))
    {
        v.set_sensitive(true);
        headers.insert(http::header::AUTHORIZATION, v);
    }
    let body = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(mut m)) => {
            m.insert("model".to_string(), Value::String(d.upstream_model.clone()));
            Bytes::from(serde_json::to_vec(&m).unwrap_or_default())
        }
        _ => body,
    };
    Ok(Outgoing {
        method: parts.method.clone(),
        url,
        headers,
        body,
        deployment: d,
        model: Some(group.to_string()),
        own_deployment: true,
        stream,
        fixed_cost: None,
        timeout: app.runtime.load().pass_through.timeout,
    })
}

/// Requests no route took: a `pass_through_endpoints` route, else 404.
pub(crate) async fn fallback(State(app): State<Arc<App>>, req: Request) -> Response {
    let rt = app.runtime.load_full();
    let Some((route, rest)) = rt.pass_through.custom_for(req.method(), req.uri().path()) else {
        return super::not_found(req.uri());
    };
    let (parts, body) = req.into_parts();
    let principal = if route.auth {
        match super::guard::check_key(&app, &parts.headers, &parts).await {
            Ok(p) => p,
            Err(e) => return refused(&app, e),
        }
    } else {
        Principal::Anonymous
    };
    let out = match outgoing_for_custom(&app, route, &parts, &rest, body).await {
        Ok(o) => o,
        Err(e) => return refused(&app, e),
    };
    let ip = caller_ip(&app, &parts);
    relay(app, principal, out, ip).await
}

async fn outgoing_for_custom(
    app: &App,
    route: &CustomRoute,
    parts: &http::request::Parts,
    rest: &str,
    body: Body,
) -> Result<Outgoing, ProxyError> {
    let mut url = if rest.is_empty() {
        reqwest::Url::parse(&route.target).map_err(|e| {
            ProxyError::Internal(format!("the pass-through target is not a URL: {e}"))
        })?
    } else {
        join(&route.target, rest)?
    };
    let mut query = query_pairs(&parts.uri);
    for (k, v) in &route.default_query {
        if !query.iter().any(|(q, _)| q == k) {
            query.push((k.clone(), v.clone()));
        }
    }
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(&query);
    }
    let custom = app.runtime.load().auth.custom_header.clone();
    let only: Option<&[&str]> = if route.forward_headers {
        None
    } else {
        Some(&["content-type", "accept"])
    };
    let mut headers = caller_headers(&parts.headers, only, custom.as_ref());
    for (k, v) in &route.headers {
        headers.insert(k.clone(), v.clone());
    }
    let body = read_body(app, body).await?;
    let (model, stream) = body_facts(&parts.headers, &body);
    Ok(Outgoing {
        method: parts.method.clone(),
        url,
        headers,
        body,
        deployment: route.deployment.clone(),
        model,
        own_deployment: false,
        stream,
        fixed_cost: route.cost_per_request,
        timeout: route.timeout,
    })
}

/// The spend row's `requester_ip_address`, as the model routes record it.
fn caller_ip(app: &App, parts: &http::request::Parts) -> Option<Arc<str>> {
    super::guard::requester_ip(&app.runtime.load(), &parts.headers, || {
        super::guard::client_ip(&parts.extensions).map(|ip| ip.to_string().into())
    })
}

async fn relay(
    app: Arc<App>,
    principal: Principal,
    out: Outgoing,
    requester_ip: Option<Arc<str>>,
) -> Response {
    let started = Instant::now();
    let start_time = Utc::now();
    let call_id = uuid::Uuid::now_v7().to_string();
    crate::logging::record_call_id(&call_id);
    let call_id_header =
        HeaderValue::from_str(&call_id).unwrap_or_else(|_| HeaderValue::from_static("unknown"));
    if let Some(m) = &out.model {
        // A key limited to some models may pass through only for those (as LiteLLM's auth
        // checks the body's model on every route).
        let rt = app.runtime.load_full();
        let group = rt.router.group(m);
        if let Err(e) = principal.check_model(m, None, group.as_deref(), &rt.router) {
            return early_error(&app, e, &call_id_header, started);
        }
    }
    // The row names the model the body asked for, under the route's provider.
    let deployment = match &out.model {
        Some(_) if out.own_deployment => out.deployment.clone(),
        Some(m) => {
            let mut d = (*out.deployment).clone();
            d.model = format!("{}/{m}", d.provider);
            d.upstream_model = m.clone();
            Arc::new(d)
        }
        None => out.deployment.clone(),
    };
    let label = deployment.provider.clone();
    let mut trace = Trace::new(
        app.clone(),
        principal,
        deployment,
        call_id,
        call_id_header,
        CALL_TYPE,
        out.model.clone().unwrap_or_default(),
        started,
        start_time,
    );
    trace.stream = out.stream;
    trace.requester_ip = requester_ip;
    // The caller's headers as they go on (credentials left out) say the session.
    trace.session_id = super::session::of(None, None, &out.headers);
    trace.fixed_cost = out.fixed_cost;
    trace.response_model = out.model.clone();
    trace.prompt_estimate = super::estimate::tokens_for_chars(out.body.len());
    trace.capture = app.payloads.capture(&out.body);
    if let Err(e) = trace.pre_call(None).await {
        return trace.error_response(e);
    }
    let request = app
        .client
        .request(out.method, out.url)
        .headers(out.headers)
        .body(out.body);
    let sent_at = Instant::now();
    let resp = match tokio::time::timeout(out.timeout, request.send()).await {
        Err(_) => {
            let model = out.model.unwrap_or_default();
            return trace.error_response(ProxyError::UpstreamTimeout {
                secs: out.timeout.as_secs_f64(),
                model,
            });
        }
        // Without the URL: a Gemini URL carries the key.
        Ok(Err(e)) => {
            return trace.error_response(ProxyError::UpstreamUnreachable {
                label,
                message: e.without_url().to_string(),
            });
        }
        Ok(Ok(r)) => r,
    };
    trace.upstream = sent_at.elapsed();
    let status = resp.status();
    let mut headers = HeaderMap::new();
    for (k, v) in resp.headers() {
        if !is_hop_header(k) {
            headers.append(k.clone(), v.clone());
        }
    }
    let framing = Framing::of(
        headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    );
    if framing == Framing::Sse {
        trace.stream = true;
    }
    trace.headers(&mut headers, out.fixed_cost);
    let relay = Relay::new(resp, framing, trace);
    let mut answer = Response::new(Body::from_stream(relay));
    *answer.status_mut() = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    *answer.headers_mut() = headers;
    answer
}

/// What to do once a relayed body has ended well, with what it said.
pub(crate) type OnEnd = Box<dyn FnOnce(&super::usage_scan::Seen) + Send>;

/// The upstream body on its way to the client, read for usage as it passes; the spend row is
/// written when it ends (or, through the trace's drop, when the client leaves early).
pub(crate) struct Relay {
    inner: BoxStream<'static, Result<Bytes, reqwest::Error>>,
    scan: Option<UsageScan>,
    trace: Option<Trace>,
    status: u16,
    first_byte: Option<DateTime<Utc>>,
    /// The start of an error answer, for the spend row's message.
    head: Vec<u8>,
    on_end: Option<OnEnd>,
}

impl Relay {
    pub fn new(resp: reqwest::Response, framing: Framing, trace: Trace) -> Self {
        Relay {
            status: resp.status().as_u16(),
            inner: Box::pin(futures_util::StreamExt::map(resp.bytes_stream(), |r| {
                r.map_err(|e| e.without_url())
            })),
            scan: Some(UsageScan::new(framing)),
            trace: Some(trace),
            first_byte: None,
            head: Vec::new(),
            on_end: None,
        }
    }

    pub fn on_end(mut self, f: OnEnd) -> Self {
        self.on_end = Some(f);
        self
    }

    fn finish(&mut self, broke: Option<String>) {
        let (Some(mut trace), Some(scan)) = (self.trace.take(), self.scan.take()) else {
            return;
        };
        let seen = scan.finish();
        if broke.is_none()
            && self.status < 400
            && let Some(f) = self.on_end.take()
        {
            f(&seen);
        }
        if seen.model.is_some() {
            trace.response_model = seen.model;
        }
        let error = broke.or_else(|| {
            (self.status >= 400).then(|| {
                format!(
                    "the upstream answered {}: {}",
                    self.status,
                    String::from_utf8_lossy(&self.head)
                )
            })
        });
        let status = if error.is_some() && self.status < 400 {
            502
        } else {
            self.status
        };
        trace.finish_with(seen.usage.as_ref(), seen.id, self.first_byte, error, status);
    }
}

impl Stream for Relay {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(b))) => {
                if this.first_byte.is_none() {
                    this.first_byte = Some(Utc::now());
                }
                if let Some(s) = this.scan.as_mut() {
                    s.feed(&b);
                }
                if this.status >= 400 && this.head.len() < ERROR_EXCERPT {
                    let take = (ERROR_EXCERPT - this.head.len()).min(b.len());
                    this.head.extend_from_slice(&b[..take]);
                }
                Poll::Ready(Some(Ok(b)))
            }
            Poll::Ready(Some(Err(e))) => {
                let msg = format!("the upstream stream broke: {e}");
                this.finish(Some(msg.clone()));
                Poll::Ready(Some(Err(std::io::Error::other(msg))))
            }
            Poll::Ready(None) => {
                this.finish(None);
                Poll::Ready(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn join_keeps_the_base_path_and_refuses_climbing_out() {
        let u = join("http://h:1/base/", "/v1/messages").unwrap();
        assert_eq!(u.as_str(), "http://h:1/base/v1/messages");
        let u = join("https://api.anthropic.com", "/v1/messages").unwrap();
        assert_eq!(u.as_str(), "https://api.anthropic.com/v1/messages");
        assert!(join("http://h:1/base", "/../admin").is_err());
        assert!(join("http://h:1/base", "/a/%2E%2E/b").is_err());
    }

    #[test]
    fn gemini_model_comes_from_the_path() {
        assert_eq!(
            gemini_path_model("/v1beta/models/gemini-2.5-flash:streamGenerateContent").as_deref(),
            Some("gemini-2.5-flash")
        );
        assert_eq!(gemini_path_model("/v1beta/files"), None);
    }

    #[test]
    fn credentials_never_go_upstream() {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer sk-gw"));
        h.insert("x-api-key", HeaderValue::from_static("sk-gw"));
        h.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
        h.insert("host", HeaderValue::from_static("gw"));
        h.insert("accept-encoding", HeaderValue::from_static("gzip"));
        let out = caller_headers(&h, None, None);
        assert_eq!(out.len(), 1);
        assert_eq!(out["anthropic-version"], "2023-06-01");
        let only = caller_headers(&h, Some(&["x-api-key"]), None);
        assert_eq!(only.len(), 1);
    }
}
