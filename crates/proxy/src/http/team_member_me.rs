//! LiteLLM's `GET /team/{team_id}/members/me`: the caller's own membership of a team (role,
//! spend in the team, the member budget), without the other members'. The caller is the user
//! of the key (a key without a user is a 400); someone who is not a member gets a 404, proxy
//! admins included (`/team/info` shows them every member), as in LiteLLM.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::HeaderMap;
use serde_json::{Value, json};

use super::keys::{Mgmt, Shared, bad_request, not_found, tri};
use super::roles::{Role, caller_role};
use crate::error::ProxyError;
use crate::ledger::seams::store_error;

pub(crate) fn routes(state: Arc<Mgmt>) -> Router {
    Router::new()
        .route(
            "/team/{team_id}/members/me",
            get(|State(m): Shared, Path(team_id): Path<String>, h: HeaderMap| me(m, team_id, h)),
        )
        .with_state(state)
}

async fn me(m: Arc<Mgmt>, team_id: String, headers: HeaderMap) -> Response {
    let (_, role) = tri!(caller_role(&m, &headers).await);
    let user = match &role {
        Role::Admin(u) | Role::AdminViewer(u) | Role::Internal(u) | Role::InternalViewer(u) => {
            u.clone()
        }
        Role::KeyOnly => {
            return bad_request(
                "API key has no associated user_id; cannot resolve 'me' for team membership.",
                "user_id",
            )
            .into_response();
        }
    };
    let (team, mut membership) = tri!(
        m.ledger
            .team_and_member(&team_id, &user)
            .await
            .map_err(|e| store_error(&e))
    );
    let email = tri!(
        m.ledger
            .store()
            .get_user(&user)
            .await
            .map_err(|e| store_error(&e))
    )
    .and_then(|u| u.user_email);
    // A member added by email only is the caller when the emails match.
    let Some(member) = team.members_with_roles.iter().find(|mem| {
        mem.user_id.as_deref() == Some(user.as_str())
            || (mem.user_id.is_none()
                && email.is_some()
                && mem.user_email.as_deref() == email.as_deref())
    }) else {
        return not_found(
            format!("User user_id={user} is not a member of team_id={team_id}."),
            "team_id",
        )
        .into_response();
    };
    // Such a member's budget is kept under their email.
    if member.user_id.is_none()
        && let Some(id) = member.id()
    {
        membership = tri!(
            m.ledger
                .team_and_member(&team_id, id)
                .await
                .map_err(|e| store_error(&e))
        )
        .1;
    }
    let (spend, budget) = match &membership {
        Some(t) => (
            idlehands_store::money::nanos_to_usd(t.spend),
            tri!(
                serde_json::to_value(&t.litellm_budget_table)
                    .map_err(|e| ProxyError::Internal(e.to_string()))
            ),
        ),
        None => (0.0, Value::Null),
    };
    axum::Json(json!({
        "user_id": user,
        "team_id": team_id,
        "team_alias": team.team_alias,
        "role": member.role,
        "user_email": email,
        "spend": spend,
        "total_spend": spend,
        "budget_id": Value::Null,
        "litellm_budget_table": budget,
    }))
    .into_response()
}
