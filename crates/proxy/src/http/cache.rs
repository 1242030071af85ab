//! What a model call asks of the response cache (see `crate::response_cache`), the answers a
//! hit gives, and LiteLLM's `/cache/*` admin routes.
//!
//! A call is looked up after its key's checks and budget hold, as in LiteLLM (the cache sits
//! in front of the model, not of the gateway): a hit is answered from the cache, costs
//! nothing, and leaves a spend row with `cache_hit` `True`. A call's controls are LiteLLM's
//! `cache: {no-cache, no-store, ttl, s-maxage, namespace, use-cache}` in the body (plus
//! `caching: false`, and a `Cache-Control: s-maxage=N` header, which LiteLLM reads as the TTL
//! of what the call stores). Every answer the cache was asked about carries
//! `x-litellm-cache-key`, the key `/cache/delete` takes.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use chrono::Utc;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Map, Value, json};

use super::body::RequestBody;
use super::keys::{Mgmt, Shared, tri};
use super::roles::require_admin;
use super::stream::ClientStream;
use super::trace::{Peek, Trace};
use crate::auth::Principal;
use crate::error::ProxyError;
use crate::response_cache::{Entry, Kind, ResponseCache};
use crate::router::ModelGroup;
use crate::state::App;

/// What one call does with the cache.
pub(crate) struct Plan {
    pub cache: Arc<ResponseCache>,
    pub key: String,
    /// Looked up (not `no-cache`).
    read: bool,
    /// Kept when answered (not `no-store`).
    write: bool,
    /// The call's own TTL for what it stores.
    ttl: Option<Duration>,
    /// The call's `s-maxage`: older entries are misses.
    max_age: Option<Duration>,
}

/// A call's `cache` controls.
#[derive(Default, Debug, PartialEq)]
struct Controls {
    no_cache: bool,
    no_store: bool,
    ttl: Option<Duration>,
    max_age: Option<Duration>,
    namespace: Option<String>,
    use_cache: bool,
    /// The controls the call sent, by their canonical names.
    sent: Vec<String>,
}

const CONTROL_NAMES: &str = "no-cache, no-store, ttl, s-maxage, namespace, use-cache";

fn bad_control(message: String) -> ProxyError {
    ProxyError::InvalidParam {
        param: "cache",
        message,
    }
}

fn controls(raw: Option<&serde_json::value::RawValue>) -> Result<Controls, ProxyError> {
    let mut c = Controls::default();
    let Some(raw) = raw else { return Ok(c) };
    let map: Map<String, Value> = match serde_json::from_str(raw.get()) {
        Ok(Value::Object(m)) => m,
        Ok(Value::Null) => return Ok(c),
        _ => {
            return Err(bad_control(format!(
                "must be an object of cache controls ({CONTROL_NAMES})"
            )));
        }
    };
    let flag = |name: &str, v: &Value| {
        crate::config::loose_bool(v)
            .ok_or_else(|| bad_control(format!("{name}: {v} is not true or false")))
    };
    let secs = |name: &str, v: &Value| {
        crate::config::loose_number(v)
            .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 10.0 * 365.0 * 86_400.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| bad_control(format!("{name}: {v} is not a number of seconds")))
    };
    for (name, v) in &map {
        match name.as_str() {
            "no-cache" => c.no_cache = flag(name, v)?,
            "no-store" => c.no_store = flag(name, v)?,
            "use-cache" => c.use_cache = flag(name, v)?,
            "ttl" => c.ttl = Some(secs(name, v)?),
            "s-maxage" | "s-max-age" => c.max_age = Some(secs(name, v)?),
            "namespace" => {
                c.namespace = match v {
                    Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
                    Value::Null => None,
                    _ => return Err(bad_control(format!("namespace: {v} is not a name"))),
                }
            }
            other => {
                return Err(bad_control(format!(
                    "{other:?} is not a cache control ({CONTROL_NAMES})"
                )));
            }
        }
        let canonical = if name == "s-max-age" {
            "s-maxage"
        } else {
            name
        };
        c.sent.push(canonical.to_string());
    }
    Ok(c)
}

/// `Cache-Control: s-maxage=N` (LiteLLM's reading: the TTL of what this call stores).
fn header_ttl(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(header::CACHE_CONTROL)?.to_str().ok()?;
    v.split(',').find_map(|d| {
        let (k, n) = d.trim().split_once('=')?;
        (k.trim() == "s-maxage")
            .then(|| n.trim().parse::<f64>().ok())
            .flatten()
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(Duration::from_secs_f64)
    })
}

/// The number of messages LiteLLM's `max_messages` counts (chat `messages`).
fn message_count(body: &RequestBody<'_>) -> usize {
    body.raw("messages")
        .and_then(|r| serde_json::from_str::<Vec<&serde_json::value::RawValue>>(r.get()).ok())
        .map_or(0, |m| m.len())
}

/// LiteLLM's check of a key's `allowed_cache_controls` (made whether or not a cache is on):
/// a control the list leaves out is a 403.
fn check_allowed(c: &Controls, principal: &Principal) -> Result<(), ProxyError> {
    let Principal::VirtualKey(k) = principal else {
        return Ok(());
    };
    if k.allowed_cache_controls.is_empty() {
        return Ok(());
    }
    match c
        .sent
        .iter()
        .find(|n| !k.allowed_cache_controls.contains(n))
    {
        None => Ok(()),
        Some(n) => Err(ProxyError::Custom {
            status: 403,
            kind: "auth_error".to_string(),
            message: format!(
                "Not allowed to set {n} as a cache control. Contact admin to change permissions."
            ),
            param: None,
            headers: Vec::new(),
        }),
    }
}

/// A model call as the cache sees it.
pub(crate) struct Asked<'a, 'b> {
    pub call_type: &'static str,
    pub body: &'a RequestBody<'b>,
    pub headers: &'a HeaderMap,
    pub group: &'a Arc<ModelGroup>,
    /// For a streamed hit: the client asked for the usage chunk.
    pub keep_usage_chunk: bool,
}

/// The call is answered without the model: from the cache, or with the refusal of its
/// controls.
pub(crate) struct Answered {
    outcome: Result<Entry, ProxyError>,
    keep_usage_chunk: bool,
}

impl Answered {
    pub fn respond(self, trace: Trace) -> Response {
        match self.outcome {
            Err(e) => trace.error_response(e),
            Ok(hit) if hit.kind == Kind::Stream => {
                answer_stream(trace, hit.body, self.keep_usage_chunk)
            }
            Ok(hit) => answer_full(trace, hit.body),
        }
    }
}

/// Before the model is called: the call's plan (its key put on `trace`), or how it is
/// answered instead.
pub(crate) async fn consult(
    trace: &mut Trace,
    asked: Asked<'_, '_>,
) -> Result<Option<Plan>, Answered> {
    let answered = |outcome| Answered {
        outcome,
        keep_usage_chunk: asked.keep_usage_chunk,
    };
    let plan = match plan(
        &trace.app,
        asked.call_type,
        asked.body,
        asked.headers,
        asked.group,
        &trace.principal,
    ) {
        Ok(Some(p)) => p,
        Ok(None) => return Ok(None),
        Err(e) => return Err(answered(Err(e))),
    };
    trace.cache_key = Some(plan.key.clone());
    let kind = if asked.body.stream {
        Kind::Stream
    } else {
        Kind::Full
    };
    match plan.lookup(kind).await {
        None => Ok(Some(plan)),
        Some(hit) => Err(answered(Ok(hit))),
    }
}

/// What the call does with the cache: `None` when it is not cached at all.
fn plan(
    app: &App,
    call_type: &str,
    body: &RequestBody<'_>,
    headers: &HeaderMap,
    group: &Arc<ModelGroup>,
    principal: &Principal,
) -> Result<Option<Plan>, ProxyError> {
    let c = controls(body.raw("cache"))?;
    check_allowed(&c, principal)?;
    let Some(cache) = &app.response_cache else {
        return Ok(None);
    };
    let s = &cache.settings;
    if !s.calls.includes(call_type)
        || body
            .raw("caching")
            .and_then(|r| serde_json::from_str::<Value>(r.get()).ok())
            .and_then(|v| crate::config::loose_bool(&v))
            == Some(false)
        || (!cache.default_on() && !c.use_cache)
        || message_count(body) > s.max_messages
    {
        return Ok(None);
    }
    let redis_namespace = || {
        let m: Value = serde_json::from_str(body.raw("metadata")?.get()).ok()?;
        Some(m.get("redis_namespace")?.as_str()?.to_string())
    };
    let namespace = c.namespace.clone().or_else(redis_namespace);
    let key = cache.key(&scope_of(app, group), body.fields(), namespace.as_deref());
    Ok(Some(Plan {
        cache: cache.clone(),
        key,
        read: !c.no_cache,
        write: !c.no_store,
        ttl: c.ttl.or_else(|| header_ttl(headers)),
        max_age: c.max_age,
    }))
}

/// What a key is scoped to: the model group's name, as LiteLLM keys by its model group, for
/// a group of the proxy; for a group of one team's own deployments (which another team may
/// name alike) the name with those deployments' ids, so that no team is answered from another
/// team's models.
fn scope_of<'g>(app: &App, group: &'g Arc<ModelGroup>) -> Cow<'g, str> {
    let global = app.runtime.load().router.group(&group.name);
    if global.is_some_and(|g| Arc::ptr_eq(&g, group)) {
        return Cow::Borrowed(&group.name);
    }
    let mut ids: Vec<&str> = group.deployments.iter().map(|d| d.id.as_str()).collect();
    ids.sort_unstable();
    Cow::Owned(format!("{} deployments: {}", group.name, ids.join(",")))
}

impl Plan {
    /// The cached answer of the right kind, if there is one young enough.
    pub async fn lookup(&self, kind: Kind) -> Option<Entry> {
        if !self.read {
            return None;
        }
        let e = self.cache.get(&self.key).await?;
        if e.kind != kind || self.max_age.is_some_and(|m| e.older_than(m)) {
            return None;
        }
        Some(e)
    }

    /// Keeps an answer (unless the call said `no-store`).
    pub fn store(&self, kind: Kind, body: Bytes) {
        if self.write {
            self.cache.put(self.key.clone(), kind, body, self.ttl);
        }
    }

    /// For a stream that is still being answered: kept at its end if it completes.
    pub fn recorder(&self) -> Option<Recorder> {
        self.write.then(|| Recorder {
            cache: self.cache.clone(),
            key: self.key.clone(),
            ttl: self.ttl,
            buf: Vec::new(),
            bytes: 0,
            over: false,
        })
    }
}

/// The upstream bytes of a stream, gathered while it passes to the client.
pub(crate) struct Recorder {
    cache: Arc<ResponseCache>,
    key: String,
    ttl: Option<Duration>,
    buf: Vec<Bytes>,
    bytes: usize,
    /// Larger than an entry may be: nothing is kept.
    over: bool,
}

impl Recorder {
    pub fn push(&mut self, b: &Bytes) {
        if self.over {
            return;
        }
        self.bytes += b.len();
        if self.bytes > self.cache.settings.max_item_bytes {
            self.over = true;
            self.buf = Vec::new();
            return;
        }
        self.buf.push(b.clone());
    }

    /// The stream completed: keep it.
    pub fn finish(self) {
        if self.over {
            return;
        }
        let mut all = Vec::with_capacity(self.bytes);
        for b in &self.buf {
            all.extend_from_slice(b);
        }
        self.cache
            .put(self.key, Kind::Stream, Bytes::from(all), self.ttl);
    }
}

/// A hit on a JSON answer: sent as stored, at no cost.
fn answer_full(mut trace: Trace, body: Bytes) -> Response {
    let peek: Peek = serde_json::from_slice(&body).unwrap_or_default();
    trace.cache_hit = true;
    trace.fixed_cost = Some(0);
    trace.response_model = peek.model;
    let mut resp = Response::new(Body::from(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    trace.headers(resp.headers_mut(), Some(0));
    trace.finish(peek.usage.as_ref(), peek.id, Some(Utc::now()), None, 200);
    resp
}

/// A hit on a stream: the stored upstream events go through the stream pipeline again, so
/// the client gets them as it asked (usage chunk or not), with a cost of 0.
fn answer_stream(mut trace: Trace, body: Bytes, keep_usage_chunk: bool) -> Response {
    trace.cache_hit = true;
    trace.fixed_cost = Some(0);
    let mut h = HeaderMap::new();
    trace.headers(&mut h, None);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    let frames = futures_util::stream::once(async move { Ok(body) }).boxed();
    let client = ClientStream::new(frames, keep_usage_chunk, trace);
    let mut resp = Response::new(Body::from_stream(client));
    *resp.status_mut() = StatusCode::OK;
    *resp.headers_mut() = h;
    resp
}

pub(crate) fn routes(state: Arc<Mgmt>) -> Router {
    Router::new()
        .route(
            "/cache/ping",
            get(|State(m): Shared, h: HeaderMap| ping(m, h)),
        )
        .route(
            "/cache/delete",
            post(|State(m): Shared, h: HeaderMap, b: Bytes| delete(m, h, b)),
        )
        .route(
            "/cache/flushall",
            post(|State(m): Shared, h: HeaderMap| flushall(m, h)),
        )
        .route(
            "/cache/redis/info",
            get(|State(m): Shared, h: HeaderMap| redis_info(m, h)),
        )
        .with_state(state)
}

fn unavailable(message: String) -> ProxyError {
    ProxyError::Custom {
        status: 503,
        kind: "cache_ping_error".to_string(),
        message,
        param: Some("cache_ping".to_string()),
        headers: Vec::new(),
    }
}

fn server_error(message: String) -> ProxyError {
    ProxyError::Custom {
        status: 500,
        kind: "internal_server_error".to_string(),
        message,
        param: None,
        headers: Vec::new(),
    }
}

fn no_cache() -> ProxyError {
    unavailable("Cache not initialized. litellm.cache is None".to_string())
}

/// The cache's settings as `/cache/ping` shows them (no address: it may hold a password).
fn params(c: &ResponseCache) -> Value {
    let s = &c.settings;
    let calls: Vec<&str> = [
        s.calls.chat.then_some("acompletion"),
        s.calls.text.then_some("atext_completion"),
        s.calls.embedding.then_some("aembedding"),
    ]
    .into_iter()
    .flatten()
    .collect();
    json!({
        "type": c.type_name(),
        "namespace": s.namespace,
        "ttl": s.ttl.map(|t| t.as_secs_f64()),
        "mode": if c.default_on() { "default_on" } else { "default_off" },
        "supported_call_types": calls,
        "max_messages": s.max_messages,
    })
}

async fn ping(m: Arc<Mgmt>, headers: HeaderMap) -> Response {
    tri!(require_admin(&m, &headers, "/cache/ping").await);
    let Some(c) = &m.app.response_cache else {
        return no_cache().into_response();
    };
    let shown = params(c).to_string();
    if let Err(e) = c.ping().await {
        tracing::warn!(error = %e, "/cache/ping: the cache does not answer");
        return unavailable(
            json!({"message": "Service Unhealthy", "litellm_cache_params": shown}).to_string(),
        )
        .into_response();
    }
    let mut out = json!({
        "status": "healthy",
        "cache_type": c.type_name(),
        "litellm_cache_params": shown,
    });
    if c.type_name() == "redis" {
        out["ping_response"] = json!(true);
        out["set_cache_response"] = json!("success");
    }
    axum::Json(out).into_response()
}

async fn delete(m: Arc<Mgmt>, headers: HeaderMap, body: Bytes) -> Response {
    tri!(require_admin(&m, &headers, "/cache/delete").await);
    let Some(c) = &m.app.response_cache else {
        return no_cache().into_response();
    };
    #[derive(serde::Deserialize)]
    struct Ask {
        #[serde(default)]
        keys: Option<Vec<String>>,
    }
    let ask: Ask = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => {
            return ProxyError::InvalidParam {
                param: "keys",
                message: format!("expected {{\"keys\": [\"<x-litellm-cache-key>\", ...]}}: {e}"),
            }
            .into_response();
        }
    };
    let Some(keys) = ask.keys else {
        return ProxyError::MissingParam("keys").into_response();
    };
    match c.delete(&keys).await {
        Ok(n) => axum::Json(json!({"status": "success", "deleted": n})).into_response(),
        Err(e) => server_error(format!("Cache Delete Failed({e})")).into_response(),
    }
}

async fn flushall(m: Arc<Mgmt>, headers: HeaderMap) -> Response {
    tri!(require_admin(&m, &headers, "/cache/flushall").await);
    let Some(c) = &m.app.response_cache else {
        return no_cache().into_response();
    };
    match c.flush().await {
        Ok(n) => {
            tracing::info!(entries = n, "response cache flushed");
            axum::Json(json!({"status": "success", "deleted": n})).into_response()
        }
        Err(e) => unavailable(format!("Service Unhealthy ({e})")).into_response(),
    }
}

async fn redis_info(m: Arc<Mgmt>, headers: HeaderMap) -> Response {
    tri!(require_admin(&m, &headers, "/cache/redis/info").await);
    let Some(c) = &m.app.response_cache else {
        return no_cache().into_response();
    };
    match c.redis_info().await {
        None => server_error(format!(
            "Cache type {} does not support redis info",
            c.type_name()
        ))
        .into_response(),
        Some(Err(e)) => unavailable(format!("Service Unhealthy ({e})")).into_response(),
        Some(Ok(info)) => {
            let clients = info
                .iter()
                .find(|(k, _)| k == "connected_clients")
                .and_then(|(_, v)| v.parse::<i64>().ok())
                .unwrap_or(-1);
            let info: Map<String, Value> = info
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            axum::Json(json!({"num_clients": clients, "info": info})).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<serde_json::value::RawValue> {
        serde_json::value::RawValue::from_string(s.to_string()).unwrap()
    }

    #[test]
    fn controls_read_litellms_names_and_refuse_others() {
        let c = controls(Some(&raw(
            r#"{"no-cache": true, "no-store": "false", "ttl": 30, "s-maxage": 5, "namespace": "ns", "use-cache": true}"#,
        )))
        .unwrap();
        assert_eq!(
            c,
            Controls {
                no_cache: true,
                no_store: false,
                ttl: Some(Duration::from_secs(30)),
                max_age: Some(Duration::from_secs(5)),
                namespace: Some("ns".into()),
                use_cache: true,
                sent: [
                    "namespace",
                    "no-cache",
                    "no-store",
                    "s-maxage",
                    "ttl",
                    "use-cache"
                ]
                .map(String::from)
                .to_vec(),
            }
        );
        assert_eq!(controls(None).unwrap(), Controls::default());
        for bad in [
            r#"{"no-cahce": true}"#,
            r#"{"ttl": "soon"}"#,
            r#"[1]"#,
            r#"{"no-store": 3}"#,
        ] {
            let e = controls(Some(&raw(bad))).unwrap_err().to_string();
            assert!(e.contains("cache") || e.contains("no-store"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_cache_control_header_sets_the_ttl_of_what_is_stored() {
        let mut h = HeaderMap::new();
        assert_eq!(header_ttl(&h), None);
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-transform, s-maxage=42"),
        );
        assert_eq!(header_ttl(&h), Some(Duration::from_secs(42)));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        assert_eq!(header_ttl(&h), None);
    }
}
