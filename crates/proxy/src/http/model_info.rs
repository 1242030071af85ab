//! `GET /model/info` (`/v1/model/info`), `/v2/model/info` and `/model_group/info`: the
//! deployments and model groups the caller may use, in LiteLLM's shapes, secrets redacted.
//! Any valid key (or the dashboard session) may ask; a virtual key sees only what its
//! `models` list (names, wildcards, access groups) lets it call.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Uri};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Principal;
use crate::error::ProxyError;
use crate::models::CatalogEntry;
use crate::models::usd;
use crate::state::{App, Runtime};

fn visible<'r>(p: &'r Principal, rt: &'r Runtime) -> impl Fn(&&CatalogEntry) -> bool + 'r {
    move |e| p.allows_name(&e.model_name, &e.access_groups, &rt.router)
}

fn bad_query(e: impl std::fmt::Display) -> ProxyError {
    ProxyError::Custom {
        status: 400,
        kind: "bad_request_error".to_string(),
        message: format!("Invalid query parameters: {e}"),
        param: None,
        headers: Vec::new(),
    }
}

fn query<T: serde::de::DeserializeOwned>(uri: &Uri) -> Result<T, ProxyError> {
    axum::extract::Query::<T>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| bad_query(e.body_text()))
}

#[derive(Deserialize)]
struct V1Query {
    litellm_model_id: Option<String>,
}

/// `/model/info`: `{"data": [deployment]}`; with `litellm_model_id`, just that one.
pub(crate) async fn v1(State(app): State<Arc<App>>, headers: HeaderMap, uri: Uri) -> Response {
    let principal = match super::ui::authenticate_admin(&app, &headers).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let q: V1Query = match query(&uri) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let rt = app.runtime.load_full();
    let allowed = visible(&principal, &rt);
    let data: Vec<Value> = match &q.litellm_model_id {
        Some(id) => match rt.catalog.by_id(id).filter(|e| allowed(e)) {
            Some(e) => vec![e.to_json()],
            None => {
                return ProxyError::Custom {
                    status: 400,
                    kind: "bad_request_error".to_string(),
                    message: format!("Model id = {id} not found on litellm proxy"),
                    param: Some("litellm_model_id".to_string()),
                    headers: Vec::new(),
                }
                .into_response();
            }
        },
        None => rt
            .catalog
            .entries
            .iter()
            .filter(&allowed)
            .map(CatalogEntry::to_json)
            .collect(),
    };
    Json(json!({ "data": data })).into_response()
}

#[derive(Deserialize)]
struct V2Query {
    model: Option<String>,
    search: Option<String>,
    #[serde(rename = "modelId")]
    model_id: Option<String>,
    page: Option<usize>,
    size: Option<usize>,
}

/// `/v2/model/info`: the same rows, filtered (`model`, `search`, `modelId`) and paged
/// (`page` from 1, `size`, default 50).
pub(crate) async fn v2(State(app): State<Arc<App>>, headers: HeaderMap, uri: Uri) -> Response {
    let principal = match super::ui::authenticate_admin(&app, &headers).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let q: V2Query = match query(&uri) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let page = q.page.unwrap_or(1);
    let size = q.size.unwrap_or(50);
    if page < 1 || size < 1 {
        return bad_query("page and size must be at least 1").into_response();
    }
    let rt = app.runtime.load_full();
    let allowed = visible(&principal, &rt);
    let search = q.search.as_deref().map(str::to_lowercase);
    let rows: Vec<&CatalogEntry> = rt
        .catalog
        .entries
        .iter()
        .filter(&allowed)
        .filter(|e| q.model.as_deref().is_none_or(|m| e.model_name == m))
        .filter(|e| q.model_id.as_deref().is_none_or(|id| e.id == id))
        .filter(|e| {
            search
                .as_deref()
                .is_none_or(|s| e.model_name.to_lowercase().contains(s))
        })
        .collect();
    let total = rows.len();
    let data: Vec<Value> = rows
        .into_iter()
        .skip((page - 1).saturating_mul(size))
        .take(size)
        .map(CatalogEntry::to_json)
        .collect();
    Json(json!({
        "data": data,
        "total_count": total,
        "current_page": page,
        "total_pages": total.div_ceil(size),
        "size": size,
    }))
    .into_response()
}

#[derive(Deserialize)]
struct GroupQuery {
    model_group: Option<String>,
}

fn max_opt<T: PartialOrd + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y > x { y } else { x }),
        (x, None) => x,
        (None, y) => y,
    }
}

fn sum_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.saturating_add(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// `/model_group/info`: one row per model group the caller may call, its deployments'
/// providers, limits and prices together (`?model_group=` for one).
pub(crate) async fn groups(State(app): State<Arc<App>>, headers: HeaderMap, uri: Uri) -> Response {
    let principal = match super::ui::authenticate_admin(&app, &headers).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let q: GroupQuery = match query(&uri) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let rt = app.runtime.load_full();
    let allowed = visible(&principal, &rt);
    let mut order: Vec<&str> = Vec::new();
    let mut members: std::collections::HashMap<&str, Vec<&CatalogEntry>> = Default::default();
    for e in rt.catalog.entries.iter().filter(&allowed) {
        if q.model_group.as_deref().is_some_and(|g| g != e.model_name) {
            continue;
        }
        let list = members.entry(e.model_name.as_str()).or_default();
        if list.is_empty() {
            order.push(&e.model_name);
        }
        list.push(e);
    }
    let data: Vec<Value> = order
        .iter()
        .map(|name| group_json(name, &members[name]))
        .collect();
    Json(json!({ "data": data })).into_response()
}

fn group_json(name: &str, ds: &[&CatalogEntry]) -> Value {
    let mut providers: Vec<&str> = Vec::new();
    let mut params: Vec<&str> = Vec::new();
    let (mut max_in, mut max_out, mut cost_in, mut cost_out) = (None, None, None, None);
    let (mut tpm, mut rpm, mut mode) = (None, None, None);
    // LiteLLM's group flags: true when any deployment of the group has the capability.
    let mut flags: Vec<(&str, bool)> = GROUP_SUPPORTS.iter().map(|f| (*f, false)).collect();
    for d in ds {
        if let Some(p) = &d.price {
            for (name, on) in &mut flags {
                *on |= p.supports.iter().any(|(n, v)| n == name && *v);
            }
        }
        if !providers.contains(&d.provider.as_str()) {
            providers.push(&d.provider);
        }
        if let Some(p) = &d.price {
            max_in = max_opt(max_in, p.max_input_tokens);
            max_out = max_opt(max_out, p.max_output_tokens);
            cost_in = max_opt(cost_in, Some(usd(p.input)));
            cost_out = max_opt(cost_out, Some(usd(p.output)));
        }
        tpm = sum_opt(tpm, d.tpm);
        rpm = sum_opt(rpm, d.rpm);
        if mode.is_none() {
            mode = d.mode.clone();
        }
        for p in d.supported_params().unwrap_or_default() {
            if !params.contains(&p) {
                params.push(p);
            }
        }
    }
    let mut out = json!({
        "model_group": name,
        "providers": providers,
        "max_input_tokens": max_in,
        "max_output_tokens": max_out,
        "input_cost_per_token": cost_in,
        "output_cost_per_token": cost_out,
        "mode": mode.unwrap_or_else(|| "chat".to_string()),
        "tpm": tpm,
        "rpm": rpm,
        "supported_openai_params": params,
    });
    for (name, on) in flags {
        out[format!("supports_{name}")] = json!(on);
    }
    out
}

/// The capability flags of LiteLLM's `/model_group/info` rows.
const GROUP_SUPPORTS: [&str; 6] = [
    "parallel_function_calling",
    "vision",
    "function_calling",
    "web_search",
    "url_context",
    "reasoning",
];
