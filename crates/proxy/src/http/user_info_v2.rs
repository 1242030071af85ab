//! LiteLLM's `GET /v2/user/info?user_id=`: one user without their keys and team objects (team
//! ids only). Without `user_id`, the caller's own user. Proxy admins and admin viewers read
//! any user, a team's admins the team's members, anyone else only themselves; a user the caller
//! may not read is the same 404 as one that does not exist, as in LiteLLM.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, Uri};
use serde::Deserialize;
use serde_json::{Value, json};

use super::keys::{Mgmt, Shared, bad_request, not_found, query, tri};
use super::roles::{admin_of_team, caller_role};
use crate::error::ProxyError;
use crate::ledger::seams::store_error;

pub(crate) fn routes(state: Arc<Mgmt>) -> Router {
    Router::new()
        .route(
            "/v2/user/info",
            get(|State(m): Shared, h: HeaderMap, u: Uri| info(m, h, u)),
        )
        .with_state(state)
}

#[derive(Deserialize, Default)]
struct Ask {
    user_id: Option<String>,
}

fn user_not_found(id: &str) -> Response {
    not_found(format!("User not found: {id}"), "user_id").into_response()
}

async fn info(m: Arc<Mgmt>, headers: HeaderMap, uri: Uri) -> Response {
    let (_, role) = tri!(caller_role(&m, &headers).await);
    let ask: Ask = tri!(query(&uri));
    let Some(user_id) = ask
        .user_id
        .filter(|u| !u.trim().is_empty())
        .or_else(|| role.own_user().or(role.by()).map(str::to_owned))
    else {
        return bad_request(
            "user_id is required. Either pass it as a query parameter or authenticate with a user-bound key.",
            "user_id",
        )
        .into_response();
    };
    let Some(user) = tri!(
        m.ledger
            .user_v2(&user_id)
            .await
            .map_err(|e| store_error(&e))
    ) else {
        return user_not_found(&user_id);
    };
    let allowed = role.reads_all()
        || role.own_user() == Some(user_id.as_str())
        || match role.own_user() {
            Some(me) => {
                let mut admin = false;
                for team in &user.teams {
                    if tri!(admin_of_team(&m, team, me).await) {
                        admin = true;
                        break;
                    }
                }
                admin
            }
            None => false,
        };
    if !allowed {
        return user_not_found(&user_id);
    }
    let full = tri!(serde_json::to_value(&user).map_err(|e| ProxyError::Internal(e.to_string())));
    let field = |name: &str| full.get(name).cloned().unwrap_or(Value::Null);
    axum::Json(json!({
        "user_id": user.user_id,
        "user_email": field("user_email"),
        "user_alias": field("user_alias"),
        "user_role": field("user_role"),
        "spend": field("spend"),
        "max_budget": field("max_budget"),
        "tpm_limit": field("tpm_limit"),
        "rpm_limit": field("rpm_limit"),
        "models": field("models"),
        "budget_duration": field("budget_duration"),
        "budget_reset_at": field("budget_reset_at"),
        "metadata": field("metadata"),
        "created_at": field("created_at"),
        "updated_at": field("updated_at"),
        "sso_user_id": Value::Null,
        "teams": user.teams,
        "object_permission": Value::Null,
        "model_max_budget": Value::Null,
    }))
    .into_response()
}
