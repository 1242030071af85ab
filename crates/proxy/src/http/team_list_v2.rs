//! LiteLLM's `GET /v2/team/list`: a page of teams with filters (`user_id`, `organization_id`,
//! `team_id`, `team_alias` as any part, `search` over the id (exact, or `prefix` with
//! `search_team_id_match`) and the alias), a sort (`sort_by` team_id, team_alias, created_at,
//! updated_at, spend, max_budget, tpm_limit, rpm_limit; `sort_order`), `page` and `page_size`
//! (1-100, default 10), each team with `members_count` and `keys_count`. Admins and admin
//! viewers list any teams; an organization's admins its teams and their own; anyone else only
//! their own teams (another `user_id` is LiteLLM's 401). Deleted teams are not kept here, so
//! `status=deleted` is a 400 saying so.

use std::cmp::Ordering;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, Uri};
use idlehands_store::teams::{TeamListQuery, TeamRecord};
use serde::Deserialize;
use serde_json::{Value, json};

use super::keys::{Mgmt, Shared, bad_request, query, tri};
use super::roles::{Role, caller_role};
use crate::error::ProxyError;
use crate::ledger::seams::store_error;

const ROUTE: &str = "/v2/team/list";
const SORTS: [&str; 8] = [
    "team_id",
    "team_alias",
    "created_at",
    "updated_at",
    "spend",
    "max_budget",
    "tpm_limit",
    "rpm_limit",
];

pub(crate) fn routes(state: Arc<Mgmt>) -> Router {
    Router::new()
        .route(
            ROUTE,
            get(|State(m): Shared, h: HeaderMap, u: Uri| list(m, h, u)),
        )
        .with_state(state)
}

#[derive(Deserialize, Default)]
struct Ask {
    user_id: Option<String>,
    organization_id: Option<String>,
    team_id: Option<String>,
    team_alias: Option<String>,
    search: Option<String>,
    search_team_id_match: Option<String>,
    page: Option<i64>,
    page_size: Option<i64>,
    sort_by: Option<String>,
    sort_order: Option<String>,
    status: Option<String>,
}

fn unauthorized(role: &Role) -> ProxyError {
    ProxyError::Custom {
        status: 401,
        kind: "auth_error".to_string(),
        message: format!(
            "Only admin users can query all teams/other teams. Your user role={}",
            role.name()
        ),
        param: None,
        headers: Vec::new(),
    }
}

/// Orders two optional numbers with nulls last (ascending) or first (descending), as LiteLLM.
fn nullable(a: Option<i64>, b: Option<i64>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.cmp(&b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

fn by(sort: &str, a: &TeamRecord, b: &TeamRecord) -> Ordering {
    match sort {
        "team_id" => a.team_id.cmp(&b.team_id),
        "team_alias" => a.team_alias.cmp(&b.team_alias),
        "updated_at" => a.updated_at.cmp(&b.updated_at),
        "spend" => a.budget.spend.cmp(&b.budget.spend),
        "max_budget" => nullable(a.budget.max_budget, b.budget.max_budget),
        "tpm_limit" => nullable(a.budget.tpm_limit, b.budget.tpm_limit),
        "rpm_limit" => nullable(a.budget.rpm_limit, b.budget.rpm_limit),
        _ => a.created_at.cmp(&b.created_at),
    }
}

async fn list(m: Arc<Mgmt>, headers: HeaderMap, uri: Uri) -> Response {
    let (_, role) = tri!(caller_role(&m, &headers).await);
    let ask: Ask = tri!(query(&uri));
    match ask.status.as_deref() {
        None => {}
        Some("deleted") => {
            return bad_request(
                "status=deleted: deleted teams are not kept by this gateway",
                "status",
            )
            .into_response();
        }
        Some(_) => {
            return bad_request(
                "Invalid status value. Currently only 'deleted' is supported.",
                "status",
            )
            .into_response();
        }
    }
    let page = ask.page.unwrap_or(1);
    if page < 1 {
        return bad_request("page must be >= 1", "page").into_response();
    }
    let size = ask.page_size.unwrap_or(10);
    if !(1..=100).contains(&size) {
        return bad_request("page_size must be between 1 and 100", "page_size").into_response();
    }
    let prefix = match ask.search_team_id_match.as_deref() {
        None | Some("exact") => false,
        Some("prefix") => true,
        Some(_) => {
            return bad_request(
                "search_team_id_match must be 'exact' or 'prefix'",
                "search_team_id_match",
            )
            .into_response();
        }
    };
    if let Some(s) = ask.sort_by.as_deref()
        && !SORTS.contains(&s)
    {
        return bad_request(
            format!("sort_by must be one of {}", SORTS.join(", ")),
            "sort_by",
        )
        .into_response();
    }
    let descending = match ask.sort_order.as_deref() {
        Some(o) => o.eq_ignore_ascii_case("desc"),
        // LiteLLM's default: newest first when no sort is asked for, else ascending.
        None => ask.sort_by.is_none(),
    };

    // Who may see which teams: everyone's, an organization admin's organizations' and their
    // own, or only their own.
    let mut q = TeamListQuery {
        organization_id: ask.organization_id.clone(),
        user_id: ask.user_id.clone(),
    };
    let mut org_scope: Option<(Vec<String>, String)> = None;
    if !role.reads_all() {
        let Some(me) = role.own_user().map(str::to_owned) else {
            return unauthorized(&role).into_response();
        };
        let orgs = tri!(m.ledger.list_orgs().await.map_err(|e| store_error(&e)));
        let admin_of: Vec<String> = orgs
            .iter()
            .filter(|o| {
                o.members
                    .iter()
                    .any(|mem| mem.user_id.as_deref() == Some(&me) && mem.user_role == "org_admin")
            })
            .map(|o| o.organization_id.clone())
            .collect();
        if admin_of.is_empty() {
            if ask.user_id.as_deref().is_some_and(|u| u != me) {
                return unauthorized(&role).into_response();
            }
            q.user_id = Some(me);
        } else {
            if let Some(org) = &ask.organization_id
                && !admin_of.contains(org)
            {
                return super::keys::forbidden(
                    "You can only view teams within your organizations.".to_string(),
                )
                .into_response();
            }
            if ask.user_id.as_deref().is_none_or(|u| u == me) {
                // Their organizations' teams and their own.
                q.user_id = None;
                org_scope = Some((admin_of, me));
            } else {
                org_scope = Some((admin_of, String::new()));
            }
        }
    }
    let mut teams = tri!(m.ledger.list_teams(&q).await.map_err(|e| store_error(&e)));
    if let Some((orgs, me)) = &org_scope {
        teams.retain(|t| {
            t.organization_id.as_ref().is_some_and(|o| orgs.contains(o))
                || (!me.is_empty() && t.members.iter().any(|u| u == me))
        });
    }
    let lower = |s: &str| s.to_lowercase();
    if let Some(id) = ask.team_id.as_deref() {
        teams.retain(|t| t.team_id == id);
    }
    if let Some(alias) = ask.team_alias.as_deref().map(lower) {
        teams.retain(|t| {
            t.team_alias
                .as_deref()
                .is_some_and(|a| lower(a).contains(&alias))
        });
    }
    if let Some(s) = ask.search.as_deref().filter(|s| !s.is_empty()) {
        let needle = lower(s);
        teams.retain(|t| {
            let id_hit = if prefix {
                t.team_id.starts_with(s)
            } else {
                t.team_id == s
            };
            id_hit
                || t.team_alias
                    .as_deref()
                    .is_some_and(|a| lower(a).contains(&needle))
        });
    }
    let sort = ask.sort_by.as_deref().unwrap_or("created_at");
    teams.sort_by(|a, b| {
        let o = by(sort, a, b);
        let o = if descending { o.reverse() } else { o };
        o.then_with(|| a.team_id.cmp(&b.team_id))
    });
    let total = teams.len() as i64;
    let start = usize::try_from((page - 1).saturating_mul(size)).unwrap_or(usize::MAX);
    let page_teams: Vec<&TeamRecord> = teams.iter().skip(start).take(size as usize).collect();
    let ids: Vec<String> = page_teams.iter().map(|t| t.team_id.clone()).collect();
    let counts = tri!(
        m.ledger
            .store()
            .key_counts_of_teams(&ids)
            .await
            .map_err(|e| store_error(&e))
    );
    let mut out = Vec::with_capacity(page_teams.len());
    for t in page_teams {
        let mut v = tri!(serde_json::to_value(t).map_err(|e| ProxyError::Internal(e.to_string())));
        if let Some(o) = v.as_object_mut() {
            o.insert("members_count".into(), json!(t.members_with_roles.len()));
            o.insert(
                "keys_count".into(),
                json!(counts.get(&t.team_id).copied().unwrap_or(0)),
            );
        }
        out.push(v);
    }
    axum::Json(json!({
        "teams": Value::Array(out),
        "total": total,
        "page": page,
        "page_size": size,
        "total_pages": (total + size - 1) / size,
    }))
    .into_response()
}
