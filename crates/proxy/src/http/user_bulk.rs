//! LiteLLM's `POST /user/bulk_update` (proxy admins, as `/user/update` is here): `users`, a list
//! of `/user/update` bodies (1 to 500), each applied on its own, or `all_users: true` with one
//! `user_updates` body for every user (up to 500 users). Answered per user (`results`: success,
//! the error, the user as updated) with the counts; fields `/user/update` does not act on are
//! named per user.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::HeaderMap;
use idlehands_store::users::UpdateUserRequest;
use serde_json::{Map, Value, json};

use super::keys::{Mgmt, Shared, admin, bad_request, ignored_fields, tri};
use crate::error::ProxyError;
use crate::ledger::seams::store_error;

const ROUTE: &str = "/user/bulk_update";
const MAX_USERS: usize = 500;

pub(crate) fn routes(state: Arc<Mgmt>) -> Router {
    Router::new()
        .route(
            ROUTE,
            post(|State(m): Shared, h: HeaderMap, b: Bytes| bulk_update(m, h, b)),
        )
        .with_state(state)
}

async fn bulk_update(m: Arc<Mgmt>, headers: HeaderMap, bytes: Bytes) -> Response {
    tri!(admin(&m, &headers, ROUTE).await);
    let body: Map<String, Value> = match serde_json::from_slice(&bytes) {
        Ok(Value::Object(o)) => o,
        _ => return bad_request("the body must be a JSON object", "body").into_response(),
    };
    let all = body.get("all_users").and_then(Value::as_bool) == Some(true);
    // Each item as its own `/user/update` body.
    let items: Vec<Value> = if all {
        let Some(Value::Object(updates)) = body.get("user_updates") else {
            return bad_request(
                "Must specify either 'users' for individual updates or 'all_users=True' with 'user_updates' for bulk updates",
                "user_updates",
            )
            .into_response();
        };
        if updates.contains_key("password") {
            return bad_request(
                "Setting one password for all users is not supported. Use per-user updates via the 'users' list instead.",
                "user_updates",
            )
            .into_response();
        }
        let users = tri!(
            m.ledger
                .store()
                .all_users()
                .await
                .map_err(|e| store_error(&e))
        );
        if users.is_empty() {
            return bad_request("No users found to update", "all_users").into_response();
        }
        if users.len() > MAX_USERS {
            return bad_request(
                format!(
                    "Maximum {MAX_USERS} users can be updated at once. Found {} users.",
                    users.len()
                ),
                "all_users",
            )
            .into_response();
        }
        users
            .into_iter()
            .map(|u| {
                let mut one = updates.clone();
                one.remove("user_email");
                one.insert("user_id".into(), json!(u.user_id));
                Value::Object(one)
            })
            .collect()
    } else {
        match body.get("users") {
            Some(Value::Array(list)) if !list.is_empty() => list.clone(),
            _ => {
                return bad_request(
                    "Must specify either 'users' for individual updates or 'all_users=True' with 'user_updates' for bulk updates",
                    "users",
                )
                .into_response();
            }
        }
    };
    if items.len() > MAX_USERS {
        return bad_request(
            format!("Maximum {MAX_USERS} users can be updated at once."),
            "users",
        )
        .into_response();
    }
    let mut results = Vec::with_capacity(items.len());
    let mut ok = 0usize;
    for item in items {
        let user_id = item.get("user_id").cloned().unwrap_or(Value::Null);
        let user_email = item.get("user_email").cloned().unwrap_or(Value::Null);
        let raw = item.to_string();
        let outcome = match serde_json::from_value::<UpdateUserRequest>(item) {
            Ok(req) => m.ledger.update_user(req).await.map_err(|e| store_error(&e)),
            Err(e) => Err(bad_request(format!("Invalid user update: {e}"), "users")),
        };
        let mut result = json!({"user_id": user_id, "user_email": user_email});
        match outcome {
            Ok(user) => {
                ok += 1;
                result["success"] = json!(true);
                result["error"] = Value::Null;
                result["updated_user"] = tri!(
                    serde_json::to_value(&user).map_err(|e| ProxyError::Internal(e.to_string()))
                );
                let ignored = ignored_fields(&super::users::FIELDS, ROUTE, raw.as_bytes());
                if !ignored.is_empty() {
                    result["ignored_fields"] = Value::Object(ignored);
                }
            }
            Err(e) => {
                result["success"] = json!(false);
                result["error"] = json!(e.to_string());
                result["updated_user"] = Value::Null;
            }
        }
        results.push(result);
    }
    let total = results.len();
    axum::Json(json!({
        "results": results,
        "total_requested": total,
        "successful_updates": ok,
        "failed_updates": total - ok,
    }))
    .into_response()
}
