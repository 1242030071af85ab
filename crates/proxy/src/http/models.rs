//! GET /v1/models, /v1/models/{id}: the model groups this key may call.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use serde_json::{Value, json};

use crate::auth;
use crate::error::ProxyError;
use crate::gateway::App;

/// LiteLLM's fixed `created` for every listed model.
const CREATED: u64 = 1_677_610_602;

fn card(id: &str, owned_by: &str) -> Value {
    json!({"id": id, "object": "model", "created": CREATED, "owned_by": owned_by})
}

pub(crate) async fn list(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let rt = app.runtime.load_full();
    let principal = match auth::authenticate(&rt.auth, app.resolver.as_ref(), &headers).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let data: Vec<Value> = match rt.forced_model.as_deref().and_then(|m| rt.router.group(m)) {
        // `--model` mode lists just that model.
        Some(g) => vec![card(&g.name, g.owned_by())],
        None => rt
            .router
            .groups()
            .iter()
            .filter(|g| principal.allows_model(&g.name))
            .map(|g| card(&g.name, g.owned_by()))
            .chain(
                rt.router
                    .wildcard_names()
                    .filter(|n| principal.allows_model(n))
                    .map(|n| card(n, "openai")),
            )
            .collect(),
    };
    Json(json!({"object": "list", "data": data})).into_response()
}

pub(crate) async fn one(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let rt = app.runtime.load_full();
    let principal = match auth::authenticate(&rt.auth, app.resolver.as_ref(), &headers).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    match rt.router.group(&id) {
        Some(g) if principal.allows_model(&g.name) => {
            Json(card(&g.name, g.owned_by())).into_response()
        }
        _ => ProxyError::ModelNotFound(id).into_response(),
    }
}
