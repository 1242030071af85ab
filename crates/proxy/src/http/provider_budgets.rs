//! `GET /provider/budgets` (any key): each budget of `router_settings.provider_budget_config`
//! with the spend of its open window (a fleet's shared count) and when the window ends, as
//! LiteLLM answers it. Without provider budgets it is a 400 in LiteLLM's words (LiteLLM
//! answers that with a 500).

use std::sync::Arc;

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::HeaderMap;
use serde_json::{Map, Value, json};

use super::keys::{Mgmt, Shared, bad_request, tri};
use super::roles::caller_role;
use crate::ledger::seams::store_error;

pub(crate) fn routes(state: Arc<Mgmt>) -> Router {
    Router::new()
        .route(
            "/provider/budgets",
            get(|axum::extract::State(m): Shared, h: HeaderMap| budgets(m, h)),
        )
        .with_state(state)
}

async fn budgets(m: Arc<Mgmt>, headers: HeaderMap) -> Response {
    tri!(caller_role(&m, &headers).await);
    let configured = &m.app.models.config.route_budgets.providers;
    if configured.is_empty() {
        return bad_request(
            "No provider budget config found. Please set a provider budget config in the router settings. https://docs.litellm.ai/docs/proxy/provider_budget_routing",
            "provider_budget_config",
        )
        .into_response();
    }
    let mut providers = Map::new();
    for b in configured {
        let (spend, reset_at) = tri!(m.ledger.route_usage(b).await.map_err(|e| store_error(&e)));
        let usd = idlehands_store::money::nanos_to_usd;
        providers.insert(
            b.name.clone(),
            json!({
                "budget_limit": b.max_budget.map(usd),
                "time_period": b.budget_duration,
                "spend": usd(spend),
                "budget_reset_at": reset_at.map(|t| idlehands_store::py_isoformat(&t)),
            }),
        );
    }
    axum::Json(json!({ "providers": Value::Object(providers) })).into_response()
}
