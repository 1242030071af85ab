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
use crate::gateway::App;
use crate::providers::{ChatCall, ChatReply};
use crate::router::Deployment;

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
    match app.db_probe.as_ref().and_then(|p| p()) {
        None => Json(json!({"status": "healthy", "db": "Not connected"})).into_response(),
        Some(true) => Json(json!({"status": "healthy", "db": "connected"})).into_response(),
        Some(false) if app.allow_without_db => {
            Json(json!({"status": "healthy", "db": "Not connected"})).into_response()
        }
        Some(false) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unhealthy", "db": "Not connected"})),
        )
            .into_response(),
    }
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
                    ChatCall {
                        body: Bytes::from(body.to_string()),
                        stream: false,
                        mock_response: None,
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

pub(crate) async fn health(
    State(app): State<Arc<App>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let rt = app.runtime.load_full();
    if let Err(e) = auth::authenticate(&rt.auth, app.resolver.as_ref(), &headers).await {
        return e.into_response();
    }
    let wanted: Vec<Arc<Deployment>> = rt
        .router
        .deployments()
        .filter(|d| {
            q.get("model")
                .is_none_or(|m| *m == d.model_name || *m == d.model)
                && q.get("model_id").is_none_or(|id| *id == d.id)
        })
        .cloned()
        .collect();
    let results =
        futures_util::future::join_all(wanted.iter().map(|d| probe(app.clone(), d.clone()))).await;
    let mut healthy = Vec::new();
    let mut unhealthy = Vec::new();
    for (d, r) in wanted.iter().zip(results) {
        let mut v = describe(d);
        match r {
            Ok(()) => healthy.push(v),
            Err(e) => {
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
