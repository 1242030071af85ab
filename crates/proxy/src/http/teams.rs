//! `/team/*`: teams on the store, with LiteLLM's routes, bodies and statuses. Changes need the
//! master key; a key of the team may read its own team's `/team/info`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, Uri};
use idlehands_store::teams::{
    BlockTeamRequest, DeleteTeamRequest, NewTeamRequest, TeamListQuery, TeamMemberAddRequest,
    TeamMemberDeleteRequest, TeamMemberUpdateRequest, TeamModelsRequest, UpdateTeamRequest,
};

use super::keys::{Mgmt, Shared, admin, body, caller, forbidden, query, reply, tri};
use crate::auth::Principal;

pub(crate) fn routes(state: Arc<Mgmt>) -> Router {
    Router::new()
        .route("/team/new", post(new))
        .route("/team/info", get(info))
        .route("/team/list", get(list))
        .route("/team/update", post(update))
        .route("/team/delete", post(delete))
        .route("/team/block", post(block))
        .route("/team/unblock", post(unblock))
        .route("/team/member_add", post(member_add))
        .route("/team/available", get(available))
        .route("/team/member_delete", post(member_delete))
        .route("/team/member_update", post(member_update))
        .route("/team/model/add", post(model_add))
        .route("/team/model/delete", post(model_delete))
        .route(
            "/team/{team_id}/member/{user_id}/reset_spend",
            post(reset_member_spend),
        )
        .route("/team/{team_id}", axum::routing::patch(patch_team))
        .with_state(state)
}

#[derive(serde::Deserialize)]
struct ResetSpend {
    reset_to: serde_json::Value,
}

/// LiteLLM's `POST /team/{team_id}/member/{user_id}/reset_spend` `{"reset_to": USD}`: proxy
/// admins, or the team's admins for another member (a team admin resetting their own spend
/// could spend the team's budget past their own cap: a proxy admin must).
async fn reset_member_spend(
    State(m): Shared,
    headers: HeaderMap,
    axum::extract::Path((team_id, user_id)): axum::extract::Path<(String, String)>,
    bytes: Bytes,
) -> Response {
    let route = "/team/{team_id}/member/{user_id}/reset_spend";
    let (_, role) = tri!(super::roles::caller_role(&m, &headers).await);
    tri!(manager_by_role(&m, &role, route, &team_id).await);
    if let super::roles::Role::Internal(me) = &role
        && *me == user_id
    {
        return forbidden("Cannot reset your own spend. Ask a proxy admin.".to_string())
            .into_response();
    }
    let ask: ResetSpend = tri!(body(&bytes));
    let Some(reset_to) = ask.reset_to.as_f64() else {
        return super::keys::bad_request("reset_to must be a float", "reset_to").into_response();
    };
    reply(
        m.ledger
            .reset_team_member_spend(&team_id, &user_id, reset_to)
            .await
            .map(|(b, previous)| {
                serde_json::json!({
                    "team_id": team_id,
                    "user_id": user_id,
                    "spend": idlehands_store::money::nanos_to_usd(b.spend),
                    "previous_spend": idlehands_store::money::nanos_to_usd(previous),
                    "max_budget": b.max_budget.map(idlehands_store::money::nanos_to_usd),
                })
            }),
    )
}

/// Team fields that act here: stored and enforced, or shown and filterable.
const TEAM_FIELDS_ACTED: [&str; 13] = [
    "team_id",
    "team_alias",
    "organization_id",
    "models",
    "metadata",
    "members_with_roles",
    "blocked",
    "max_budget",
    "budget_duration",
    "tpm_limit",
    "rpm_limit",
    "max_parallel_requests",
    "team_ids",
];

/// The body's fields this gateway does not act on, named in the answer's `ignored_fields`
/// (and logged) so a LiteLLM client is told instead of finding out later.
pub(super) const FIELDS: super::keys::FieldRules = super::keys::FieldRules {
    entity: "team",
    acted: &TEAM_FIELDS_ACTED,
    inert: &[(
        "soft_budget",
        "stored and shown; no alert is sent when it is crossed",
    )],
};

fn ignored_team_fields(route: &str, bytes: &[u8]) -> serde_json::Map<String, serde_json::Value> {
    super::keys::ignored_fields(&FIELDS, route, bytes)
}

async fn new(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    let by = tri!(admin(&m, &headers, "/team/new").await);
    let req: NewTeamRequest = tri!(super::keys::body_with_defaults(&bytes, |asked| {
        m.app.team_defaults.apply(asked)
    }));
    let ignored = ignored_team_fields("/team/new", &bytes);
    super::keys::reply_noting(m.ledger.new_team(req, by.as_deref()).await, ignored)
}

#[derive(serde::Deserialize)]
struct InfoQuery {
    team_id: Option<String>,
}

async fn info(State(m): Shared, headers: HeaderMap, uri: Uri) -> Response {
    let p = tri!(caller(&m, &headers).await);
    let q: InfoQuery = tri!(query(&uri));
    let Some(team_id) = q.team_id.filter(|t| !t.trim().is_empty()) else {
        let e = idlehands_store::StoreError::bad_request(
            "Malformed request. No team id passed in.",
            "team_id",
        );
        return crate::ledger::seams::store_error(&e).into_response();
    };
    let role = tri!(super::roles::role_of(&m, &p).await);
    if !role.reads_all() {
        let own_key = match &p {
            Principal::VirtualKey(vk) => vk.team_id.as_deref() == Some(team_id.as_str()),
            _ => false,
        };
        let member = match role.own_user() {
            Some(u) => match m.ledger.store().get_team(&team_id).await {
                Ok(t) => t.is_some_and(|t| t.members.iter().any(|x| x == u)),
                Err(e) => return crate::ledger::seams::store_error(&e).into_response(),
            },
            None => false,
        };
        if !own_key && !member {
            return forbidden(format!(
                "Call not allowed. User not proxy admin OR team admin. route=/team/info, team_id={team_id}"
            ))
            .into_response();
        }
    }
    reply(m.ledger.team_info(&team_id).await)
}

async fn list(State(m): Shared, headers: HeaderMap, uri: Uri) -> Response {
    let (_, role) = tri!(super::roles::caller_role(&m, &headers).await);
    let mut q: TeamListQuery = tri!(query(&uri));
    // An internal user lists the teams they are in.
    if let Some(u) = tri!(role.reads_as("/team/list")) {
        q.user_id = Some(u.to_owned());
    }
    reply(m.ledger.list_teams(&q).await)
}

async fn update(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    let by = tri!(admin(&m, &headers, "/team/update").await);
    let req: UpdateTeamRequest = tri!(body(&bytes));
    let ignored = ignored_team_fields("/team/update", &bytes);
    super::keys::reply_noting(m.ledger.update_team(req, by.as_deref()).await, ignored)
}

/// LiteLLM's `PATCH /team/{team_id}`: `/team/update` of the team the path names (a `team_id`
/// in the body must be the same), with `metadata` merged into the stored one as RFC 7386 says
/// (a key set to `null` is removed, objects merge key by key, anything else replaces).
async fn patch_team(
    State(m): Shared,
    headers: HeaderMap,
    axum::extract::Path(team_id): axum::extract::Path<String>,
    bytes: Bytes,
) -> Response {
    let route = "/team/{team_id}";
    let by = tri!(admin(&m, &headers, route).await);
    let mut fields = tri!(super::keys::body_for_path(&bytes, "team_id", &team_id));
    if let Some(change) = fields.get("metadata").cloned() {
        let Some(team) = tri!(
            m.ledger
                .store()
                .get_team(&team_id)
                .await
                .map_err(|e| crate::ledger::seams::store_error(&e))
        ) else {
            return super::keys::not_found(
                format!("Team not found, passed team_id={team_id}"),
                "team_id",
            )
            .into_response();
        };
        let mut merged = serde_json::Value::Object(team.metadata.clone());
        merge_patch(&mut merged, &change);
        if !merged.is_object() {
            merged = serde_json::Value::Object(serde_json::Map::new());
        }
        fields.insert("metadata".into(), merged);
    }
    let merged_body = serde_json::Value::Object(fields).to_string();
    let req: UpdateTeamRequest = tri!(body(merged_body.as_bytes()));
    let ignored = ignored_team_fields(route, merged_body.as_bytes());
    super::keys::reply_noting(m.ledger.update_team(req, by.as_deref()).await, ignored)
}

/// RFC 7386 JSON merge patch of `target` by `patch`.
fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    let serde_json::Value::Object(changes) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = serde_json::Value::Object(serde_json::Map::new());
    }
    if let serde_json::Value::Object(t) = target {
        for (k, v) in changes {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(serde_json::Value::Null), v);
            }
        }
    }
}

async fn delete(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    let by = tri!(admin(&m, &headers, "/team/delete").await);
    let req: DeleteTeamRequest = tri!(body(&bytes));
    let deleted = m.ledger.delete_teams(req, by.as_deref()).await;
    // The teams' deployments were deleted with them: every instance drops them now.
    if deleted.is_ok()
        && let Some(sync) = &m.models
        && let Err(e) = sync.changed().await
    {
        tracing::warn!(error = %e, "deleted teams' models are dropped at the next periodic reload");
    }
    reply(deleted)
}

async fn block(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    let by = tri!(admin(&m, &headers, "/team/block").await);
    let req: BlockTeamRequest = tri!(body(&bytes));
    reply(m.ledger.set_team_blocked(req, true, by.as_deref()).await)
}

async fn unblock(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    let by = tri!(admin(&m, &headers, "/team/unblock").await);
    let req: BlockTeamRequest = tri!(body(&bytes));
    reply(m.ledger.set_team_blocked(req, false, by.as_deref()).await)
}

/// Who may change a team's members: a proxy admin, or (as in LiteLLM) an internal user who is
/// an `admin` member of that team. Returns who the change is recorded as.
pub(super) async fn member_manager(
    m: &Mgmt,
    headers: &HeaderMap,
    route: &str,
    team_id: &str,
) -> Result<Option<String>, crate::error::ProxyError> {
    let (_, role) = super::roles::caller_role(m, headers).await?;
    manager_by_role(m, &role, route, team_id).await
}

/// [`member_manager`] for a caller whose role is known already.
async fn manager_by_role(
    m: &Mgmt,
    role: &super::roles::Role,
    route: &str,
    team_id: &str,
) -> Result<Option<String>, crate::error::ProxyError> {
    match role {
        super::roles::Role::Admin(u) => Ok(Some(u.clone())),
        super::roles::Role::Internal(u) => {
            if super::roles::admin_of_team(m, team_id, u).await? {
                Ok(Some(u.clone()))
            } else {
                Err(forbidden(format!(
                    "Call not allowed. User not proxy admin OR team admin. route={route}, team_id={team_id}"
                )))
            }
        }
        _ => Err(super::roles::not_allowed(route, role)),
    }
}

async fn member_add(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    let req: TeamMemberAddRequest = tri!(body(&bytes));
    let route = "/team/member_add";
    let (_, role) = tri!(super::roles::caller_role(&m, &headers).await);
    let by = match manager_by_role(&m, &role, route, &req.team_id).await {
        Ok(by) => by,
        Err(refused) => match &role {
            super::roles::Role::Internal(me)
                if m.app.user_defaults.available_teams().contains(&req.team_id) =>
            {
                tri!(self_join(me, &req));
                Some(me.clone())
            }
            _ => return refused.into_response(),
        },
    };
    reply(m.ledger.team_member_add(req, by.as_deref()).await)
}

/// LiteLLM's self-join of an available team (`default_internal_user_params.available_teams`):
/// an internal user may add only themselves, as a plain member, without the per-member budget
/// or models (those stay with the team's and the proxy's admins).
fn self_join(me: &str, req: &TeamMemberAddRequest) -> Result<(), crate::error::ProxyError> {
    if req.max_budget_in_team.is_some() || req.budget_duration.is_some() {
        return Err(forbidden(
            "Available-team self-join cannot set per-member budget or model controls (max_budget_in_team, budget_duration, allowed_models); these are admin-only.".to_string(),
        ));
    }
    for member in &req.member.0 {
        if member.role != "user" {
            return Err(forbidden(
                "Available-team self-join cannot assign 'admin' role. Only proxy/team/org admins can add admins to a team.".to_string(),
            ));
        }
        if member.user_id.as_deref() != Some(me) {
            return Err(forbidden(
                "Available-team self-join can only add the caller (user_id must match the authenticated user's user_id).".to_string(),
            ));
        }
    }
    Ok(())
}

/// LiteLLM's `GET /team/available`: the available teams (see [`self_join`]) the caller's user
/// is not in yet; none configured, an empty list; a caller without a user row, LiteLLM's 404.
async fn available(State(m): Shared, headers: HeaderMap) -> Response {
    let (_, role) = tri!(super::roles::caller_role(&m, &headers).await);
    let ids = m.app.user_defaults.available_teams();
    if ids.is_empty() {
        return axum::Json(serde_json::json!([])).into_response();
    }
    let store = m.ledger.store();
    let user = match role.by() {
        Some(u) => tri!(
            store
                .get_user(u)
                .await
                .map_err(|e| crate::ledger::seams::store_error(&e))
        ),
        None => None,
    };
    let Some(user) = user else {
        return crate::error::ProxyError::Custom {
            status: 404,
            kind: "not_found_error".to_string(),
            message: "User not found".to_string(),
            param: None,
            headers: Vec::new(),
        }
        .into_response();
    };
    let mut teams = Vec::new();
    for id in ids {
        let team = tri!(
            store
                .get_team(id)
                .await
                .map_err(|e| crate::ledger::seams::store_error(&e))
        );
        // Membership is kept on the team rows (the store's user row lists none).
        if let Some(t) = team
            && !t.members.contains(&user.user_id)
        {
            teams.push(t);
        }
    }
    axum::Json(teams).into_response()
}

async fn member_delete(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    let req: TeamMemberDeleteRequest = tri!(body(&bytes));
    let by = tri!(member_manager(&m, &headers, "/team/member_delete", &req.team_id).await);
    reply(m.ledger.team_member_delete(req, by.as_deref()).await)
}

async fn member_update(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    let req: TeamMemberUpdateRequest = tri!(body(&bytes));
    let by = tri!(member_manager(&m, &headers, "/team/member_update", &req.team_id).await);
    reply(m.ledger.team_member_update(req, by.as_deref()).await)
}

async fn model_add(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    let by = tri!(admin(&m, &headers, "/team/model/add").await);
    let req: TeamModelsRequest = tri!(body(&bytes));
    reply(m.ledger.team_models(req, true, by.as_deref()).await)
}

async fn model_delete(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    let by = tri!(admin(&m, &headers, "/team/model/delete").await);
    let req: TeamModelsRequest = tri!(body(&bytes));
    reply(m.ledger.team_models(req, false, by.as_deref()).await)
}

#[cfg(test)]
mod tests {
    use super::merge_patch;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        // The RFC's own examples (appendix A), a few of them.
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                json!({"b": "c"}),
            ),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (mut target, patch, want) in cases {
            merge_patch(&mut target, &patch);
            assert_eq!(target, want, "{patch}");
        }
    }
}
