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
use crate::state::App;

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

/// The notice a reload sends the rest of the fleet.
const NOTICE: &str = "model_cost_map_reloaded";

/// Every other instance of the fleet reloads its prices when one reloads (each from its own
/// source, as the announcer did: the same URL or built-in copy when configured alike).
pub(crate) fn follow_fleet(app: &Arc<App>, ledger: &idlehands_store::Ledger) {
    let app = Arc::downgrade(app);
    ledger.on_notice(NOTICE, move || {
        let Some(app) = app.upgrade() else { return };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        handle.spawn(async move {
            match reload_here(&app).await {
                Ok(s) => tracing::info!(
                    models = s.model_count,
                    "prices reloaded, as another instance did"
                ),
                Err(e) => tracing::warn!(
                    error = %e,
                    "another instance reloaded its prices; this one could not, and keeps its own"
                ),
            }
        });
    });
}

/// Reloads the prices of this instance.
async fn reload_here(app: &App) -> Result<cost_map::Source, ProxyError> {
    let (prices, source) = cost_map::load(&app.client, &app.models.config.price_origin())
        .await
        .map_err(|why| ProxyError::Custom {
            status: 502,
            kind: "bad_gateway".to_string(),
            message: format!(
                "Failed to reload model cost map: {why}. Current pricing data was kept."
            ),
            param: None,
            headers: Vec::new(),
        })?;
    app.set_prices(prices, source.clone())?;
    Ok(source)
}

async fn reload(m: Arc<Mgmt>, headers: HeaderMap) -> Response {
    tri!(require_admin(&m, &headers, "/reload/model_cost_map").await);
    let source = match reload_here(&m.app).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "model cost map reload failed; the current prices are kept");
            return e.into_response();
        }
    };
    m.ledger.announce_notice(NOTICE);
    let count = source.model_count;
    tracing::info!(models = count, "model cost map reloaded");
    axum::Json(json!({
        "message": format!("Price data reloaded successfully! {count} models updated."),
        "status": "success",
        "models_count": count,
        "timestamp": source.loaded_at.to_rfc3339(),
        "source": source.source,
        "url": source.url,
        "etag": source.etag,
        "source_revision": null,
    }))
    .into_response()
}

async fn source(m: Arc<Mgmt>, headers: HeaderMap) -> Response {
    tri!(require_reader(&m, &headers, "/model/cost_map/source").await);
    let s = m.app.models.price_source();
    let mut v = json!(s);
    v["loaded_at"] = json!(s.loaded_at.to_rfc3339());
    v["source_revision"] = json!(null);
    axum::Json(v).into_response()
}
