//! `POST /key/health`: LiteLLM's check of the calling key's own logging callbacks
//! (`metadata.logging`). This gateway logs every key through the proxy-wide callbacks and
//! has no per-key ones, so a key without `metadata.logging` is healthy, and one that asks
//! for them is reported unhealthy with the reason (its logs do not go where it says).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::HeaderMap;
use serde_json::{Value, json};

use super::keys::{Mgmt, Shared, caller, tri};
use crate::auth::Principal;

pub(crate) fn routes(state: Arc<Mgmt>) -> Router {
    Router::new()
        .route("/key/health", post(key_health))
        .with_state(state)
}

async fn key_health(State(m): Shared, headers: HeaderMap) -> Response {
    let p = tri!(caller(&m, &headers).await);
    // The resolved key carries its metadata: no read of the store.
    let logging = match &p {
        Principal::VirtualKey(vk) => vk.metadata.get("logging").cloned(),
        _ => None,
    };
    let Some(logging) = logging.filter(|l| !l.is_null()) else {
        return axum::Json(json!({"key": "healthy", "logging_callbacks": null})).into_response();
    };
    let callbacks: Vec<Value> = logging
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.get("callback_name").cloned())
                .collect()
        })
        .unwrap_or_default();
    axum::Json(json!({
        "key": "unhealthy",
        "logging_callbacks": {
            "callbacks": callbacks,
            "status": "unhealthy",
            "details": "key-based logging (metadata.logging) is not supported by this gateway: this key's calls are logged only through the proxy's own callbacks",
        },
    }))
    .into_response()
}
