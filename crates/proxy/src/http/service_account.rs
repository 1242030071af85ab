//! `POST /key/service-account/generate`: LiteLLM's key that belongs to a team and no user (it
//! outlives any member, and the team's limits apply rather than a member's). The body is
//! `/key/generate`'s; `team_id` is required and must name a team; a `user_id` is dropped (and
//! named in `ignored_fields`); `metadata.service_account_id` is set to the alias (else a new
//! UUID) unless given. Proxy admins and the team's admins may make one.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::HeaderMap;
use idlehands_store::{GenerateKeyRequest, StoreError};
use serde_json::Value;

use super::keys::{
    Mgmt, Shared, body, check_routes_change, forbidden, ignored_key_fields, reply_noting,
    tags_into_metadata, tri, warn_unserved_models,
};
use super::roles::{Role, admin_of_team, caller_role, not_allowed};
use crate::ledger::seams::store_error;

const ROUTE: &str = "/key/service-account/generate";

pub(crate) fn routes(state: Arc<Mgmt>) -> Router {
    Router::new().route(ROUTE, post(generate)).with_state(state)
}

fn bad(message: &str) -> Response {
    store_error(&StoreError::bad_request(message, "team_id")).into_response()
}

async fn generate(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    let (_, role) = tri!(caller_role(&m, &headers).await);
    let mut req: GenerateKeyRequest = tri!(body(&bytes));
    let Some(team_id) = req.team_id.clone() else {
        return bad(
            "team_id is required for service account keys. Please specify `team_id` in the request body.",
        );
    };
    let exists = tri!(
        m.ledger
            .team_exists(&team_id)
            .await
            .map_err(|e| store_error(&e))
    );
    if !exists {
        return bad(
            "team_id does not exist in the database. Please specify a valid `team_id` in the request body.",
        );
    }
    match &role {
        Role::Admin(_) => {}
        Role::Internal(u) => {
            if !tri!(admin_of_team(&m, &team_id, u).await) {
                return forbidden(format!(
                    "User={u} is not an admin of team_id={team_id}; only its admins may create its service account keys. Your role=internal_user"
                ))
                .into_response();
            }
        }
        _ => return not_allowed(ROUTE, &role).into_response(),
    }
    tri!(check_routes_change(
        &role,
        req.allowed_routes.as_deref(),
        req.key_type.as_deref(),
        &[]
    ));
    warn_unserved_models(&m, ROUTE, req.models.as_deref());
    let tagged = tags_into_metadata(&bytes, &mut req.metadata);
    let mut ignored = ignored_key_fields(ROUTE, &bytes);
    if tagged {
        ignored.remove("tags");
    }
    if req.user_id.take().is_some() {
        ignored.insert(
            "user_id".into(),
            "a service account key belongs to its team, not a user".into(),
        );
    }
    let metadata = req.metadata.get_or_insert_default();
    if metadata
        .get("service_account_id")
        .is_none_or(Value::is_null)
    {
        let id = req
            .key_alias
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        metadata.insert("service_account_id".into(), Value::String(id));
    }
    reply_noting(m.ledger.generate_key(req, role.by()).await, ignored)
}
