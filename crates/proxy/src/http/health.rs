//! /health (auth; a real call to every deployment) and the unauthenticated probes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::auth;
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
    (status, Json(body)).into_response()
}

async fn probe(app: Arc<App>, d: Arc<Deployment>) -> Result<(), String> {
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

fn describe(d: &Deployment) -> Value {
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
            let results = check_all(&app, all).await;
            let bad = results.iter().filter(|(_, e)| e.is_some()).count();
            if bad > 0 {
                tracing::warn!(unhealthy = bad, "background health check");
            }
            *latest.write() = Some(results);
        }
    }))
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
            check_all(&app, list).await
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
