//! `POST /key/bulk_update` `{"keys": [{key, max_budget, team_id, tags, budget_id,
//! object_permission}, ...]}` (at most 500): `/key/update` of each key on its own, the ones that
//! fail listed with the reason and the key as it stands. LiteLLM's item fields only; others in
//! an item are named in its `ignored_fields`. Proxy admins only.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::HeaderMap;
use idlehands_store::keygen::token_of;
use idlehands_store::{StoreError, UpdateKeyRequest};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::keys::{Mgmt, Shared, apply_update, body, forbidden, ignored_change_fields, tri};
use super::roles::{Role, caller_role};
use crate::error::ProxyError;
use crate::ledger::seams::store_error;

const ROUTE: &str = "/key/bulk_update";
const MAX_KEYS: usize = 500;
/// The fields an item may change (LiteLLM's `BulkUpdateKeyRequestItem`).
const ITEM_FIELDS: [&str; 6] = [
    "key",
    "budget_id",
    "max_budget",
    "team_id",
    "tags",
    "object_permission",
];

pub(crate) fn routes(state: Arc<Mgmt>) -> Router {
    Router::new()
        .route(ROUTE, post(bulk_update))
        .with_state(state)
}

#[derive(Deserialize)]
struct Bulk {
    keys: Option<Vec<Map<String, Value>>>,
}

fn bad(message: String) -> Response {
    store_error(&StoreError::bad_request(message, "keys")).into_response()
}

/// The message a failed update is listed with.
fn reason(e: &ProxyError) -> String {
    match e {
        ProxyError::Custom { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

async fn bulk_update(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    let (_, role) = tri!(caller_role(&m, &headers).await);
    if !matches!(role, Role::Admin(_)) {
        return forbidden("Only proxy admins can perform bulk key updates".into()).into_response();
    }
    let asked: Bulk = tri!(body(&bytes));
    let items = asked.keys.unwrap_or_default();
    if items.is_empty() {
        return bad("No keys provided for update".into());
    }
    if items.len() > MAX_KEYS {
        return bad(format!(
            "Maximum {MAX_KEYS} keys can be updated at once. Found {} keys.",
            items.len()
        ));
    }
    let mut done = Vec::new();
    let mut failed = Vec::new();
    let total = items.len();
    for item in items {
        let Some(key) = item.get("key").and_then(Value::as_str).map(str::to_owned) else {
            failed.push(json!({
                "key": item.get("key"),
                "key_info": null,
                "failed_reason": "key must be a string",
            }));
            continue;
        };
        let (fields, extra): (Map<String, Value>, Map<String, Value>) = item
            .into_iter()
            .partition(|(name, _)| ITEM_FIELDS.contains(&name.as_str()));
        let change = Value::Object(fields);
        let outcome = match serde_json::from_value::<UpdateKeyRequest>(change.clone()) {
            Ok(req) => {
                let bytes = serde_json::to_vec(&change).unwrap_or_default();
                let mut ignored = ignored_change_fields(ROUTE, &bytes, &req);
                for (name, _) in extra {
                    ignored.insert(
                        name,
                        "not a field of a bulk update item (key, budget_id, max_budget, team_id, tags, object_permission); ignored".into(),
                    );
                }
                apply_update(&m, &role, req, ROUTE)
                    .await
                    .map(|updated| (updated, ignored))
            }
            Err(e) => Err(store_error(&StoreError::bad_request(e.to_string(), "keys"))),
        };
        match outcome {
            Ok((updated, ignored)) => {
                let mut entry = json!({"key": key, "key_info": updated});
                if !ignored.is_empty() {
                    entry["ignored_fields"] = Value::Object(ignored);
                }
                done.push(entry);
            }
            Err(e) => {
                let info = m
                    .ledger
                    .store()
                    .get_key(&token_of(&key))
                    .await
                    .ok()
                    .flatten();
                failed.push(json!({"key": key, "key_info": info, "failed_reason": reason(&e)}));
            }
        }
    }
    axum::Json(json!({
        "total_requested": total,
        "successful_updates": done,
        "failed_updates": failed,
    }))
    .into_response()
}
