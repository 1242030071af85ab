//! LiteLLM's `GET /health/history` (kept health-check results, newest first, by model name and
//! status, pages of 1-1000) and `GET /health/latest` (the newest result of each model, keyed
//! by deployment id, else model name). Proxy admins and admin viewers: the rows name every
//! model and its errors.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, Uri};
use idlehands_store::health_checks::HealthCheckRow;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::keys::{Mgmt, Shared, bad_request, query, tri};
use super::roles::require_reader;
use crate::ledger::seams::store_error;

pub(crate) fn routes(state: Arc<Mgmt>) -> Router {
    Router::new()
        .route(
            "/health/history",
            get(|State(m): Shared, h: HeaderMap, u: Uri| history(m, h, u)),
        )
        .route(
            "/health/latest",
            get(|State(m): Shared, h: HeaderMap| latest(m, h)),
        )
        .with_state(state)
}

#[derive(Deserialize, Default)]
struct HistoryAsk {
    model: Option<String>,
    status_filter: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// A row as LiteLLM's `convert_health_check_to_dict` shows it (`details` is never kept there
/// either; `created_at` is when it was checked).
fn row_json(r: &HealthCheckRow) -> Value {
    let at = idlehands_store::py_isoformat(&r.checked_at);
    json!({
        "health_check_id": r.health_check_id,
        "model_name": r.model_name,
        "model_id": r.model_id,
        "status": r.status,
        "healthy_count": r.healthy_count,
        "unhealthy_count": r.unhealthy_count,
        "error_message": r.error_message,
        "response_time_ms": r.response_time_ms,
        "details": Value::Null,
        "checked_by": r.checked_by,
        "checked_at": at,
        "created_at": at,
    })
}

async fn history(m: Arc<Mgmt>, headers: HeaderMap, uri: Uri) -> Response {
    tri!(require_reader(&m, &headers, "/health/history").await);
    let ask: HistoryAsk = tri!(query(&uri));
    let limit = ask.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return bad_request("limit must be between 1 and 1000", "limit").into_response();
    }
    let offset = ask.offset.unwrap_or(0);
    if offset < 0 {
        return bad_request("offset must be >= 0", "offset").into_response();
    }
    let rows = tri!(
        m.ledger
            .store()
            .health_check_history(
                ask.model.as_deref().filter(|s| !s.is_empty()),
                ask.status_filter.as_deref().filter(|s| !s.is_empty()),
                limit,
                offset,
            )
            .await
            .map_err(|e| store_error(&e))
    );
    let list: Vec<Value> = rows.iter().map(row_json).collect();
    axum::Json(json!({
        "health_checks": list,
        "total_records": list.len(),
        "limit": limit,
        "offset": offset,
    }))
    .into_response()
}

async fn latest(m: Arc<Mgmt>, headers: HeaderMap) -> Response {
    tri!(require_reader(&m, &headers, "/health/latest").await);
    let rows = tri!(
        m.ledger
            .store()
            .latest_health_checks()
            .await
            .map_err(|e| store_error(&e))
    );
    // By deployment id, else name; where a name was checked both ways the newer row wins.
    let mut by_key: Map<String, Value> = Map::new();
    let mut newest: std::collections::HashMap<String, chrono::DateTime<chrono::Utc>> =
        std::collections::HashMap::new();
    for r in &rows {
        let key = r.model_key().to_string();
        if newest.get(&key).is_some_and(|t| *t > r.checked_at) {
            continue;
        }
        newest.insert(key.clone(), r.checked_at);
        by_key.insert(key, row_json(r));
    }
    axum::Json(json!({
        "total_models": by_key.len(),
        "latest_health_checks": by_key,
    }))
    .into_response()
}
