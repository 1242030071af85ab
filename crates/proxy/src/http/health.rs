//! /health (auth; a real call to every deployment) and the unauthenticated probes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::auth;
use crate::hooks::HealthCheck;
use crate::providers::Deployment;
use crate::providers::{ChatCall, ChatReply};
use crate::state::{App, Checked};

/// A health probe never waits longer than this, whatever the deployment's timeout.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) async fn liveliness(State(app): State<Arc<App>>) -> Response {
    if app.draining.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "shutting_down"})),
        )
            .into_response();
    }
    Json(json!("I'm alive!")).into_response()
}

pub(crate) async fn readiness(State(app): State<Arc<App>>) -> Response {
    // A draining instance is out of rotation, as LiteLLM's readiness says once shutdown began.
    if app.draining.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "shutting_down"})),
        )
            .into_response();
    }
    if app.diagnostics.public_readiness_details {
        let (status, body) = readiness_details(&app);
        return (status, Json(body)).into_response();
    }
    let (status, body) = ready_state(&app);
    (status, Json(body)).into_response()
}

/// What `/health/readiness/details` answers (and `/health/readiness` under
/// `general_settings.allow_public_health_readiness_details`): the readiness state with
/// LiteLLM's diagnostic fields.
pub(crate) fn readiness_details(app: &App) -> (StatusCode, Value) {
    let (status, mut body) = ready_state(app);
    let level = tracing::level_filters::LevelFilter::current();
    // Python's level names, as LiteLLM's `logging.getLevelName`.
    let level_name = match level.into_level() {
        Some(tracing::Level::TRACE | tracing::Level::DEBUG) => "DEBUG",
        Some(tracing::Level::INFO) => "INFO",
        Some(tracing::Level::WARN) => "WARNING",
        Some(tracing::Level::ERROR) => "ERROR",
        None => "CRITICAL",
    };
    let extra = json!({
        // LiteLLM's `litellm.cache.type`: null when responses are not cached.
        "cache": app.response_cache.as_ref().map(|c| c.type_name()),
        "litellm_version": env!("CARGO_PKG_VERSION"),
        "success_callbacks": app.diagnostics.success_callbacks(),
        "use_aiohttp_transport": false,
        "log_level": level_name,
        "is_detailed_debug": level >= tracing::level_filters::LevelFilter::DEBUG,
        // Redis is what keeps several instances' limits together; without it a fleet's
        // limits hold per instance (LiteLLM warns when it runs several workers without it).
        "show_no_redis_warning": false,
        "show_env_credential_login_warning": false,
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    (status, body)
}

/// `/health/readiness`'s status and body.
fn ready_state(app: &App) -> (StatusCode, Value) {
    let (mut status, mut body) = match app.db_probe.as_ref().and_then(|p| p()) {
        None => (
            StatusCode::OK,
            json!({"status": "healthy", "db": "Not connected"}),
        ),
        Some(true) => (
            StatusCode::OK,
            json!({"status": "healthy", "db": "connected"}),
        ),
        Some(false) if app.allow_without_db => (
            StatusCode::OK,
            json!({"status": "healthy", "db": "Not connected"}),
        ),
        Some(false) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "unhealthy", "db": "Not connected"}),
        ),
    };
    // Fleet mode: whether limits are shared, per instance (`open`, Redis down) or refused
    // (`closed`, Redis down: virtual-key calls get 503, so the instance is not ready).
    if let Some(probe) = &app.redis_probe {
        let (mode, state) = probe();
        body["redis"] = json!(if state == crate::state::RedisState::Shared {
            "connected"
        } else {
            "Not connected"
        });
        body["redis_failure_mode"] = json!(mode);
        body["limits"] = json!(state.as_str());
        if state == crate::state::RedisState::Refusing {
            status = StatusCode::SERVICE_UNAVAILABLE;
            body["status"] = json!("unhealthy");
        }
    }
    // Spend rows that cannot be written (they wait in memory, retried) are not ready, unless
    // `allow_requests_on_db_unavailable` asks to serve through database trouble; the reason
    // is in the answer either way.
    if let Some(reason) = app.spend_probe.as_ref().and_then(|p| p()) {
        body["spend_logs"] = json!(reason);
        if !app.allow_without_db {
            status = StatusCode::SERVICE_UNAVAILABLE;
            body["status"] = json!("unhealthy");
        }
    }
    (status, body)
}

/// How often `/health/drain` looks at the requests still being answered.
const DRAIN_POLL: Duration = Duration::from_millis(50);

/// LiteLLM's `GET /health/drain` for a Kubernetes `preStop` hook (public, as the kubelet
/// sends no key): off (404) unless `general_settings.enable_drain_endpoint`; with
/// `drain_endpoint_token` (or `DRAIN_ENDPOINT_TOKEN`) set, the `X-Drain-Token` header must
/// carry it (401 otherwise, with no effect). It takes this instance out of rotation (liveness
/// and readiness answer 503) and answers once the other requests have been answered, or
/// after `GRACEFUL_SHUTDOWN_TIMEOUT`.
pub(crate) async fn drain(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let Some(token) = &app.diagnostics.drain else {
        return (StatusCode::NOT_FOUND, Json(json!({"detail": "Not Found"}))).into_response();
    };
    if let Some(want) = token {
        let got = headers
            .get("x-drain-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !super::ui::same_key(got, want) {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"detail": "Invalid or missing X-Drain-Token"})),
            )
                .into_response();
        }
    }
    app.draining.store(true, Ordering::SeqCst);
    // This request is one of those in flight.
    let others = || crate::diagnostics::requests_in_flight().saturating_sub(1);
    let before = others();
    let deadline = Instant::now() + app.diagnostics.drain_timeout;
    while others() > 0 && Instant::now() < deadline {
        tokio::time::sleep(DRAIN_POLL).await;
    }
    Json(json!({"status": "drained", "drained_requests": before.saturating_sub(others())}))
        .into_response()
}

/// LiteLLM's deprecated `GET /test` (public): the route asked for.
pub(crate) async fn test_route(uri: http::Uri) -> Response {
    Json(json!({"route": uri.path()})).into_response()
}

pub(crate) async fn probe(app: Arc<App>, d: Arc<Deployment>) -> Result<(), String> {
    if d.mock_response.is_some() {
        return Ok(());
    }
    let embedding = d.mode.as_deref() == Some("embedding");
    let timeout = d.timeout.min(PROBE_TIMEOUT);
    let work = async {
        if embedding {
            let body = json!({"model": d.upstream_model, "input": ["ping"]});
            d.adapter
                .embeddings(&app.client, &d, Bytes::from(body.to_string()))
                .await
                .map(|_| ())
        } else {
            let body = json!({"model": d.upstream_model, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1});
            let reply = d
                .adapter
                .chat(
                    &app.client,
                    &d,
                    // The deployment's headers go too: a gateway in front of it may need them.
                    ChatCall {
                        extra_headers: d.params.headers.clone(),
                        ..ChatCall::plain(Bytes::from(body.to_string()), false)
                    },
                )
                .await?;
            if let ChatReply::Stream { mut frames, .. } = reply {
                while let Some(f) = frames.next().await {
                    f?;
                }
            }
            Ok(())
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!(
            "health check timed out after {}s",
            timeout.as_secs()
        )),
    }
}

pub(crate) fn describe(d: &Deployment) -> Value {
    json!({"model": d.model, "model_name": d.model_name, "model_id": d.id, "api_base": d.api_base})
}

/// Checks the deployments, in parallel.
async fn check_all(app: &Arc<App>, wanted: Vec<Arc<Deployment>>) -> Checked {
    let results =
        futures_util::future::join_all(wanted.iter().map(|d| probe(app.clone(), d.clone()))).await;
    wanted
        .into_iter()
        .zip(results)
        .map(|(d, r)| (d, r.err()))
        .collect()
}

/// Under `background_health_checks`, checks every deployment now and then every
/// `health_check_interval`, keeping the latest results for `/health`.
pub(crate) fn spawn_background(app: &Arc<App>) -> Option<tokio::task::JoinHandle<()>> {
    let (every, latest) = app.background_health.clone()?;
    let weak = Arc::downgrade(app);
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(app) = weak.upgrade() else {
                return;
            };
            let all: Vec<Arc<Deployment>> = app
                .runtime
                .load_full()
                .router
                .deployments()
                .cloned()
                .collect();
            let started = Instant::now();
            let results = check_all(&app, all).await;
            let bad = results.iter().filter(|(_, e)| e.is_some()).count();
            if bad > 0 {
                tracing::warn!(unhealthy = bad, "background health check");
            }
            if let Some(log) = &app.health_log {
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                let checks = results
                    .iter()
                    .map(|(d, e)| HealthCheck {
                        model_name: d.model_name.clone(),
                        model_id: Some(d.id.clone()),
                        healthy: usize::from(e.is_none()),
                        unhealthy: usize::from(e.is_some()),
                        error: e.as_deref().map(crate::logging::redact_str),
                        response_time_ms: ms,
                        checked_by: Some(BACKGROUND_CHECKER.to_string()),
                    })
                    .collect();
                if let Err(e) = log.record(checks, true).await {
                    tracing::warn!(error = %e, "background health check results not kept");
                }
            }
            *latest.write() = Some(results);
        }
    }))
}

/// The model groups a listing hides (`healthy_only=true`, or
/// `general_settings.model_list_healthy_only`): those whose every deployment failed the latest
/// background health check. Presentation only, and failing open as LiteLLM's: no results yet,
/// or no background checks, hides nothing, and a hidden group stays callable.
pub(crate) fn hidden_unhealthy(app: &App, asked: Option<bool>) -> HashSet<String> {
    if asked != Some(true) && !app.model_list_healthy_only {
        return HashSet::new();
    }
    let Some((_, latest)) = &app.background_health else {
        return HashSet::new();
    };
    let latest = latest.read();
    let Some(results) = latest.as_ref() else {
        return HashSet::new();
    };
    let mut all_failed: HashMap<&str, bool> = HashMap::new();
    for (d, error) in results {
        let e = all_failed.entry(d.model_name.as_str()).or_insert(true);
        *e = *e && error.is_some();
    }
    all_failed
        .into_iter()
        .filter(|(_, failed)| *failed)
        .map(|(name, _)| name.to_string())
        .collect()
}

/// Who background checks are recorded as (LiteLLM's name for a single instance).
const BACKGROUND_CHECKER: &str = "background_health_check";

/// Keeps the result of a check that named a model: one row for the model group (the
/// deployment's when `model_id` named one), counting its deployments.
async fn keep_named_check(
    app: &App,
    principal: &auth::Principal,
    q: &HashMap<String, String>,
    results: &Checked,
    started: Instant,
) {
    let (Some(log), Some((first, _))) = (&app.health_log, results.first()) else {
        return;
    };
    let unhealthy = results.iter().filter(|(_, e)| e.is_some()).count();
    let check = HealthCheck {
        model_name: first.model_name.clone(),
        model_id: q.get("model_id").cloned(),
        healthy: results.len() - unhealthy,
        unhealthy,
        error: results
            .iter()
            .find_map(|(_, e)| e.as_deref().map(crate::logging::redact_str)),
        response_time_ms: started.elapsed().as_secs_f64() * 1000.0,
        checked_by: match principal {
            auth::Principal::Master { .. } => Some(super::keys::ADMIN_USER.to_string()),
            auth::Principal::VirtualKey(k) => k.user_id.clone(),
            auth::Principal::JwtAdmin(a) => a
                .user_id
                .clone()
                .or_else(|| Some(super::keys::ADMIN_USER.to_string())),
            auth::Principal::Anonymous => None,
        },
    };
    if let Err(e) = log.record(vec![check], false).await {
        tracing::warn!(error = %e, "health check result not kept");
    }
}

pub(crate) async fn health(
    State(app): State<Arc<App>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let rt = app.runtime.load_full();
    let principal = match auth::authenticate(&rt.auth, app.resolver.as_ref(), &headers).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let wanted = |d: &Deployment| {
        q.get("model")
            .is_none_or(|m| *m == d.model_name || *m == d.model)
            && q.get("model_id").is_none_or(|id| *id == d.id)
    };
    // A check is an upstream call the caller is not charged for, and its answer names every
    // `api_base`: a virtual key may only ask about models it may call.
    if let Some(d) = rt
        .router
        .deployments()
        .filter(|d| wanted(d))
        .find(|d| !principal.allows_name(&d.model_name, &d.access_groups, &rt.router))
    {
        return crate::error::ProxyError::ModelNotAllowed {
            model: d.model_name.clone(),
        }
        .into_response();
    }
    let cached = app
        .background_health
        .as_ref()
        .and_then(|(_, latest)| latest.read().clone());
    let results = match cached {
        Some(all) => all.into_iter().filter(|(d, _)| wanted(d)).collect(),
        // No background run has finished yet (or none is configured): check now.
        None => {
            let list = rt
                .router
                .deployments()
                .filter(|d| wanted(d))
                .cloned()
                .collect();
            let started = Instant::now();
            let results = check_all(&app, list).await;
            // A check of a named model is kept (LiteLLM's rule), before the answer, so that
            // `/health/history` shows it at once.
            if q.contains_key("model") || q.contains_key("model_id") {
                keep_named_check(&app, &principal, &q, &results, started).await;
            }
            results
        }
    };
    let mut healthy = Vec::new();
    let mut unhealthy = Vec::new();
    for (d, err) in results {
        let mut v = describe(&d);
        match err {
            None => healthy.push(v),
            Some(e) => {
                v["error"] = json!(e);
                unhealthy.push(v);
            }
        }
    }
    Json(json!({
        "healthy_count": healthy.len(),
        "unhealthy_count": unhealthy.len(),
        "healthy_endpoints": healthy,
        "unhealthy_endpoints": unhealthy,
    }))
    .into_response()
}
