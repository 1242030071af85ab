//! LiteLLM's `POST /reload/model_cost_map` (proxy admins) and `GET /model/cost_map/source`
//! (those who read everything): the prices reloaded from LiteLLM's list (see
//! `pricing::cost_map`) and every deployment repriced at once, or where the prices in use came
//! from. A reload applies to the instance that answers it.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::HeaderMap;
use serde_json::json;

use super::keys::{Mgmt, Shared, tri};
use super::roles::{require_admin, require_reader};
use crate::error::ProxyError;
use crate::pricing::cost_map;

pub(crate) fn routes(state: Arc<Mgmt>) -> Router {
    Router::new()
        .route(
            "/reload/model_cost_map",
            post(|State(m): Shared, h: HeaderMap| reload(m, h)),
        )
        .route(
            "/model/cost_map/source",
            get(|State(m): Shared, h: HeaderMap| source(m, h)),
        )
        .with_state(state)
}

async fn reload(m: Arc<Mgmt>, headers: HeaderMap) -> Response {
    tri!(require_admin(&m, &headers, "/reload/model_cost_map").await);
    let (prices, source) = match cost_map::load(&m.app.client, &m.app.models.config).await {
        Ok(loaded) => loaded,
        Err(why) => {
            tracing::warn!(
                reason = why.as_str(),
                "model cost map reload failed; the current prices are kept"
            );
            return ProxyError::Custom {
                status: 502,
                kind: "bad_gateway".to_string(),
                message: format!(
                    "Failed to reload model cost map: {why}. Current pricing data was kept."
                ),
                param: None,
                headers: Vec::new(),
            }
            .into_response();
        }
    };
    let count = source.model_count;
    let at = source.loaded_at;
    let answer = json!({
        "message": format!("Price data reloaded successfully! {count} models updated."),
        "status": "success",
        "models_count": count,
        "timestamp": at.to_rfc3339(),
        "source": source.source,
        "url": source.url,
        "etag": source.etag,
        "source_revision": null,
    });
    tri!(m.app.set_prices(prices, source));
    tracing::info!(models = count, "model cost map reloaded");
    axum::Json(answer).into_response()
}

async fn source(m: Arc<Mgmt>, headers: HeaderMap) -> Response {
    tri!(require_reader(&m, &headers, "/model/cost_map/source").await);
    let s = m.app.models.price_source();
    let mut v = json!(s);
    v["loaded_at"] = json!(s.loaded_at.to_rfc3339());
    v["source_revision"] = json!(null);
    axum::Json(v).into_response()
}
