//! LiteLLM's `POST /health/test_connection` (proxy admins): one probe call to a deployment,
//! as `/health` makes it, answered with `{"status": "success"|"error", "result": ...}`.
//!
//! `litellm_params` naming a configured model (its group name, or its `litellm_params.model`)
//! with nothing else, or `model_info.id` naming a deployment, tests that deployment as
//! configured. Params that say more (an `api_base`, a key, ...) describe a connection of their
//! own: it is built from them alone, and nothing is taken from the configuration or the
//! environment, so a test can never carry a configured key to another address. `os.environ/`
//! references in the request are refused, as in LiteLLM. Modes `chat` and `embedding`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::HeaderMap;
use serde_json::{Map, Value, json};

use super::keys::{Mgmt, Shared, bad_request, tri};
use super::roles::{Role, caller_role, not_allowed};
use crate::models::ApiModel;
use crate::providers::Deployment;

const ROUTE: &str = "/health/test_connection";

pub(crate) fn routes(state: Arc<Mgmt>) -> Router {
    Router::new()
        .route(
            ROUTE,
            post(|State(m): Shared, h: HeaderMap, b: Bytes| test_connection(m, h, b)),
        )
        .with_state(state)
}

/// Whether any string in `v` is an `os.environ/` reference.
fn names_env(v: &Value) -> bool {
    match v {
        Value::String(s) => s.starts_with("os.environ/"),
        Value::Array(a) => a.iter().any(names_env),
        Value::Object(o) => o.values().any(names_env),
        _ => false,
    }
}

fn object<'a>(
    body: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a Map<String, Value>>, crate::error::ProxyError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err(bad_request(format!("{field} must be an object"), field)),
    }
}

/// The deployment to probe, and whether it is a configured one.
fn target(
    m: &Mgmt,
    params: &Map<String, Value>,
    info: Option<&Map<String, Value>>,
) -> Result<Arc<Deployment>, crate::error::ProxyError> {
    let rt = m.app.runtime.load();
    let model = params.get("model").and_then(Value::as_str);
    if let Some(id) = info.and_then(|i| i.get("id")).and_then(Value::as_str)
        && let Some(d) = rt.router.deployments().find(|d| d.id == id)
    {
        return Ok(d.clone());
    }
    let only_names = params.keys().all(|k| k == "model" || k == "mode");
    if only_names && let Some(model) = model {
        let found = rt
            .router
            .deployments()
            .find(|d| d.model_name == model)
            .or_else(|| rt.router.deployments().find(|d| d.model == model));
        if let Some(d) = found {
            return Ok(d.clone());
        }
    }
    // A connection of its own: from the request alone (no environment, no configured key).
    let mut own = params.clone();
    own.remove("mode");
    let built = ApiModel::from_parts(
        "test_connection",
        "test_model",
        Value::Object(own),
        info.map_or(Value::Null, |i| Value::Object(i.clone())),
        &m.models.as_ref().map_or_else(
            || m.app.models.config.credentials.clone(),
            |s| s.credentials(),
        ),
        &|_| None,
    )
    .map_err(|b| {
        bad_request(
            format!("litellm_params: {b}"),
            b.path.rsplit('.').next().unwrap_or("litellm_params"),
        )
    })?;
    Ok(Arc::new(Deployment::build(
        usize::MAX,
        &built.entry,
        &m.app.models.config,
        &m.app.models.prices(),
    )))
}

async fn test_connection(m: Arc<Mgmt>, headers: HeaderMap, bytes: Bytes) -> Response {
    let (_, role) = tri!(caller_role(&m, &headers).await);
    // LiteLLM also lets a team admin test the team's own models; here it is the proxy
    // admin's tool (it can reach any address).
    if !matches!(role, Role::Admin(_)) {
        return not_allowed(ROUTE, &role).into_response();
    }
    let body: Map<String, Value> = match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(o)) => o,
        _ => return bad_request("the body must be a JSON object", "body").into_response(),
    };
    let params = tri!(object(&body, "litellm_params"))
        .cloned()
        .unwrap_or_default();
    let info = tri!(object(&body, "model_info"));
    if names_env(&Value::Object(params.clone()))
        || info.is_some_and(|i| names_env(&Value::Object(i.clone())))
    {
        return bad_request(
            "Environment variable references are not permitted in request parameters.",
            "litellm_params",
        )
        .into_response();
    }
    let mode = match body.get("mode").or_else(|| params.get("mode")) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return bad_request("mode must be a string", "mode").into_response(),
    };
    if let Some(mode) = &mode
        && !matches!(mode.as_str(), "chat" | "embedding")
    {
        return bad_request(
            format!("mode {mode:?} cannot be tested here: chat and embedding can"),
            "mode",
        )
        .into_response();
    }
    if params.get("model").is_none() && info.and_then(|i| i.get("id")).is_none() {
        return bad_request(
            "litellm_params.model (or model_info.id) names the deployment to test",
            "litellm_params",
        )
        .into_response();
    }
    let d = tri!(target(&m, &params, info));
    let d = match mode {
        Some(mode) if d.mode.as_deref() != Some(mode.as_str()) => {
            let mut changed = (*d).clone();
            changed.mode = Some(mode);
            Arc::new(changed)
        }
        _ => d,
    };
    let mut result = super::health::describe(&d);
    let status = match super::health::probe(m.app.clone(), d).await {
        Ok(()) => "success",
        Err(e) => {
            result["error"] = json!(crate::logging::redact_str(&e));
            "error"
        }
    };
    axum::Json(json!({"status": status, "result": result})).into_response()
}
