//! `/user/*`: internal users on the store, with LiteLLM's routes, bodies and statuses. Only a
//! proxy admin creates, changes or deletes users (so nobody raises their own role); a proxy
//! admin viewer reads them all, an internal user their own.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, Uri};
use idlehands_store::users::{DeleteUserRequest, NewUserRequest, UpdateUserRequest, UserListQuery};

use super::keys::{Mgmt, Shared, admin, body, forbidden, query, reply, reply_noting, tri};
use super::roles::{caller_role, require_reader};
use crate::ledger::seams::store_error;

pub(crate) fn routes(state: Arc<Mgmt>) -> Router {
    Router::new()
        .route("/user/new", post(new))
        .route("/user/info", get(info))
        .route("/user/update", post(update))
        .route("/user/delete", post(delete))
        .route("/user/list", get(list))
        .route("/user/available_roles", get(available_roles))
        .with_state(state)
}

/// User fields that act here.
const USER_FIELDS_ACTED: [&str; 15] = [
    "user_id",
    "user_email",
    "user_alias",
    "user_role",
    "models",
    "metadata",
    "teams",
    "auto_create_key",
    "key_alias",
    "max_budget",
    "budget_duration",
    "tpm_limit",
    "rpm_limit",
    "max_parallel_requests",
    "user_ids",
];

pub(super) const FIELDS: super::keys::FieldRules = super::keys::FieldRules {
    entity: "user",
    acted: &USER_FIELDS_ACTED,
    inert: &[
        (
            "soft_budget",
            "stored and shown; no alert is sent when it is crossed",
        ),
        ("send_invite_email", "no e-mail is sent"),
    ],
};

fn ignored_user_fields(route: &str, bytes: &[u8]) -> serde_json::Map<String, serde_json::Value> {
    super::keys::ignored_fields(&FIELDS, route, bytes)
}

async fn new(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    let by = tri!(admin(&m, &headers, "/user/new").await);
    let req: NewUserRequest = tri!(super::keys::body_with_defaults(&bytes, |asked| {
        m.app.user_defaults.apply(asked)
    }));
    let ignored = ignored_user_fields("/user/new", &bytes);
    reply_noting(m.ledger.new_user(req, by.as_deref()).await, ignored)
}

#[derive(serde::Deserialize)]
struct InfoQuery {
    user_id: Option<String>,
}

async fn info(State(m): Shared, headers: HeaderMap, uri: Uri) -> Response {
    let (_, role) = tri!(caller_role(&m, &headers).await);
    let q: InfoQuery = tri!(query(&uri));
    // Without `user_id`, the caller's own user.
    let user_id = match q.user_id.filter(|u| !u.trim().is_empty()) {
        Some(u) => u,
        None => match role.own_user().or(role.by()) {
            Some(u) => u.to_owned(),
            None => {
                let e = idlehands_store::StoreError::bad_request(
                    "Malformed request. No user_id passed in.",
                    "user_id",
                );
                return store_error(&e).into_response();
            }
        },
    };
    if !role.reads_all() && role.own_user() != Some(user_id.as_str()) {
        return forbidden(format!(
            "User={} is not allowed to view user_id={user_id}. Your role={}",
            role.by().unwrap_or("None"),
            role.name()
        ))
        .into_response();
    }
    reply(m.ledger.user_info(&user_id).await)
}

async fn update(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    tri!(admin(&m, &headers, "/user/update").await);
    let req: UpdateUserRequest = tri!(body(&bytes));
    let ignored = ignored_user_fields("/user/update", &bytes);
    reply_noting(m.ledger.update_user(req).await, ignored)
}

async fn delete(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    let by = tri!(admin(&m, &headers, "/user/delete").await);
    let req: DeleteUserRequest = tri!(body(&bytes));
    reply(m.ledger.delete_users(req, by.as_deref()).await)
}

/// LiteLLM's `GET /user/available_roles` (any key): the roles a user can be given, with a
/// description and a label for a form.
async fn available_roles(State(m): Shared, headers: HeaderMap) -> Response {
    tri!(super::roles::caller_role(&m, &headers).await);
    axum::Json(serde_json::json!({
        "proxy_admin": {
            "description": "Manages everything: keys, users, teams, models and spend",
            "ui_label": "Admin (all permissions)",
        },
        "proxy_admin_viewer": {
            "description": "Reads every key, user, team and spend row; changes nothing",
            "ui_label": "Admin (view only)",
        },
        "internal_user": {
            "description": "Creates, changes and deletes their own keys; reads their own user, teams and spend",
            "ui_label": "Internal user (create, delete, view)",
        },
        "internal_user_viewer": {
            "description": "Reads their own keys, user, teams and spend",
            "ui_label": "Internal user (view only)",
        },
    }))
    .into_response()
}

async fn list(State(m): Shared, headers: HeaderMap, uri: Uri) -> Response {
    tri!(require_reader(&m, &headers, "/user/list").await);
    let q: UserListQuery = tri!(query(&uri));
    reply(m.ledger.list_users(&q).await)
}
