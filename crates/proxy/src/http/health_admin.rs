//! LiteLLM's admin diagnostics: `GET /health/readiness/details` (readiness with the log level,
//! callbacks and version), `GET /health/backlog` (requests being answered now, and the
//! `global_max_parallel_requests` admissions), `GET /active/callbacks` and its older name
//! `GET /settings` (the logging callbacks and alerting as configured, plus the names this
//! gateway does not act on). Proxy admins and admin viewers, as in LiteLLM. For any key:
//! `GET /health/shared-status` (background checks are not coordinated across instances: each
//! runs its own, as LiteLLM's default) and `GET /health/license` (there is no license: nothing
//! here is gated by one).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::HeaderMap;
use serde_json::json;

use super::keys::{Mgmt, Shared, tri};
use super::roles::require_reader;

pub(crate) fn routes(state: Arc<Mgmt>) -> Router {
    Router::new()
        .route(
            "/health/readiness/details",
            get(|State(m): Shared, h: HeaderMap| details(m, h)),
        )
        .route(
            "/health/backlog",
            get(|State(m): Shared, h: HeaderMap| backlog(m, h)),
        )
        .route(
            "/active/callbacks",
            get(|State(m): Shared, h: HeaderMap| callbacks(m, h, "/active/callbacks")),
        )
        .route(
            "/settings",
            get(|State(m): Shared, h: HeaderMap| callbacks(m, h, "/settings")),
        )
        .route(
            "/health/shared-status",
            get(|State(m): Shared, h: HeaderMap| shared_status(m, h)),
        )
        .route(
            "/health/license",
            get(|State(m): Shared, h: HeaderMap| license(m, h)),
        )
        .with_state(state)
}

async fn details(m: Arc<Mgmt>, headers: HeaderMap) -> Response {
    tri!(require_reader(&m, &headers, "/health/readiness/details").await);
    let (status, body) = super::health::readiness_details(&m.app);
    (status, axum::Json(body)).into_response()
}

async fn backlog(m: Arc<Mgmt>, headers: HeaderMap) -> Response {
    tri!(require_reader(&m, &headers, "/health/backlog").await);
    // Model calls holding one of `global_max_parallel_requests`' places; calls over it are
    // refused at once (429), never queued.
    let admitted = m.app.parallel.as_ref().map_or(0, |(places, limit)| {
        (*limit as usize).saturating_sub(places.available_permits())
    });
    axum::Json(json!({
        "in_flight_requests": crate::diagnostics::requests_in_flight(),
        "admitted_requests": admitted,
        "queued_requests": 0,
        "rejected_requests": m.app.parallel_refused.load(Ordering::Relaxed),
    }))
    .into_response()
}

async fn callbacks(m: Arc<Mgmt>, headers: HeaderMap, route: &'static str) -> Response {
    tri!(require_reader(&m, &headers, route).await);
    axum::Json(m.app.diagnostics.active_callbacks()).into_response()
}

async fn shared_status(m: Arc<Mgmt>, headers: HeaderMap) -> Response {
    tri!(super::roles::caller_role(&m, &headers).await);
    axum::Json(json!({
        "shared_health_check_enabled": false,
        "message": "Shared health check is not enabled",
    }))
    .into_response()
}

async fn license(m: Arc<Mgmt>, headers: HeaderMap) -> Response {
    tri!(super::roles::caller_role(&m, &headers).await);
    axum::Json(json!({
        "has_license": false,
        "license_type": "community",
        "expiration_date": null,
        "allowed_features": [],
        "limits": {"max_users": null, "max_teams": null},
    }))
    .into_response()
}
