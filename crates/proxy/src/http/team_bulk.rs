//! LiteLLM's `POST /team/bulk_member_add`: `/team/member_add` for a list of members (1 to 500)
//! or, for proxy admins, `all_users: true`, answered per member (`results`, the counts) with the
//! team as it stands after. All are added in one change or none (the first refusal is the
//! answer), as LiteLLM's bulk route runs one member_add.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::HeaderMap;
use idlehands_store::teams::{OneOrMany, TeamMember, TeamMemberAddRequest};
use serde::Deserialize;
use serde_json::{Value, json};

use super::keys::{Mgmt, Shared, bad_request, body, forbidden, tri};
use super::roles::{Role, caller_role};
use crate::error::ProxyError;
use crate::ledger::seams::store_error;

const ROUTE: &str = "/team/bulk_member_add";
const MAX_MEMBERS: usize = 500;

pub(crate) fn routes(state: Arc<Mgmt>) -> Router {
    Router::new()
        .route(
            ROUTE,
            post(|State(m): Shared, h: HeaderMap, b: Bytes| bulk_add(m, h, b)),
        )
        .with_state(state)
}

#[derive(Deserialize)]
struct BulkAdd {
    team_id: String,
    #[serde(default)]
    members: Vec<TeamMember>,
    #[serde(default)]
    all_users: bool,
    max_budget_in_team: Option<f64>,
}

async fn bulk_add(m: Arc<Mgmt>, headers: HeaderMap, bytes: Bytes) -> Response {
    let req: BulkAdd = tri!(body(&bytes));
    let mut members = req.members;
    if req.all_users {
        let (_, role) = tri!(caller_role(&m, &headers).await);
        if !matches!(role, Role::Admin(_)) {
            return forbidden(
                "`all_users=true` is restricted to PROXY_ADMIN. Org/team admins must specify explicit member lists."
                    .to_string(),
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
        members = users
            .into_iter()
            .map(|u| TeamMember {
                user_id: Some(u.user_id),
                user_email: u.user_email,
                role: "user".to_string(),
            })
            .collect();
    }
    if members.is_empty() {
        return bad_request("At least one member is required", "members").into_response();
    }
    if members.len() > MAX_MEMBERS {
        return bad_request(
            format!("Maximum {MAX_MEMBERS} members can be added at once"),
            "members",
        )
        .into_response();
    }
    // The same rights as `/team/member_add`: proxy admins and the team's admins.
    let by = tri!(super::teams::member_manager(&m, &headers, ROUTE, &req.team_id).await);
    let add = TeamMemberAddRequest {
        team_id: req.team_id.clone(),
        member: OneOrMany(members.clone()),
        max_budget_in_team: req.max_budget_in_team,
        budget_duration: None,
    };
    let added = tri!(
        m.ledger
            .team_member_add(add, by.as_deref())
            .await
            .map_err(|e| store_error(&e))
    );
    let team = tri!(serde_json::to_value(&added).map_err(|e| ProxyError::Internal(e.to_string())));
    let memberships: &[Value] = team["updated_team_memberships"]
        .as_array()
        .map_or(&[], Vec::as_slice);
    let results: Vec<Value> = members
        .iter()
        .map(|mem| {
            let membership = mem.user_id.as_deref().and_then(|u| {
                memberships
                    .iter()
                    .find(|t| t["user_id"].as_str() == Some(u))
                    .cloned()
            });
            json!({
                "user_id": mem.user_id,
                "user_email": mem.user_email,
                "success": true,
                "error": Value::Null,
                "updated_team_membership": membership,
            })
        })
        .collect();
    axum::Json(json!({
        "team_id": req.team_id,
        "results": results,
        "total_requested": members.len(),
        "successful_additions": members.len(),
        "failed_additions": 0,
        "updated_team": team,
    }))
    .into_response()
}
