//! `GET /model/info` (`/v1/model/info`), `/v2/model/info` and `/model_group/info`: the
//! deployments and model groups the caller may use, in LiteLLM's shapes, secrets redacted.
//! Any valid key (or the dashboard session) may ask; a virtual key sees only what its
//! `models` list (names, wildcards, access groups) lets it call, and a team's own deployments
//! only when it is of that team. With the store, rows carry how the caller reaches them
//! (`access_via_team_ids`, `direct_access`; see `models::team_access`); wildcard deployments
//! are listed as the price map's models of their provider (see `models::wildcards`).

use std::collections::HashSet;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Uri};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Principal;
use crate::error::ProxyError;
use crate::ledger::seams::store_error;
use crate::models::CatalogEntry;
use crate::models::team_access::{Access, Direct, TeamGrant, grants};
use crate::models::usd;
use crate::state::{App, Runtime};

fn visible<'r>(
    p: &'r Principal,
    rt: &'r Runtime,
    access: Option<&'r Access>,
) -> impl Fn(&&CatalogEntry) -> bool + 'r {
    move |e| {
        access.is_none_or(|a| a.sees(e))
            && p.allows_name(e.shown_name(), &e.access_groups, &rt.router)
    }
}

/// The caller's teams and grant, read from the store; `None` without one (LiteLLM fills the
/// fields only with its database).
async fn access_of(app: &App, p: &Principal) -> Result<Option<Access>, ProxyError> {
    let Some(ledger) = app.resolver.ledger() else {
        return Ok(None);
    };
    let store = ledger.store();
    let grant = |t: idlehands_store::teams::TeamRecord| TeamGrant {
        team_id: t.team_id,
        models: t.models,
    };
    let admin = || async {
        let teams = store.list_teams(None).await.map_err(|e| store_error(&e))?;
        Ok::<_, ProxyError>(Access {
            teams: Some(teams.into_iter().map(grant).collect()),
            direct: Direct::All,
            visible_teams: None,
            admin: true,
            user_teams: Vec::new(),
        })
    };
    let vk = match p {
        Principal::VirtualKey(vk) => vk,
        _ => return admin().await.map(Some),
    };
    let user = match &vk.user_id {
        Some(id) => store.get_user(id).await.map_err(|e| store_error(&e))?,
        None => None,
    };
    if user
        .as_ref()
        .is_some_and(|u| ["proxy_admin", "proxy_admin_viewer"].contains(&u.user_role.as_str()))
    {
        return admin().await.map(Some);
    }
    let mut visible_teams: HashSet<String> = vk.team_id.iter().cloned().collect();
    let Some(user) = user else {
        return Ok(Some(Access {
            teams: None,
            direct: Direct::Nothing,
            visible_teams: Some(visible_teams),
            admin: false,
            user_teams: Vec::new(),
        }));
    };
    // The user's teams are the teams that list the user as a member.
    let mut teams = store.list_teams(None).await.map_err(|e| store_error(&e))?;
    teams.retain(|t| t.members.contains(&user.user_id));
    let user_teams: Vec<String> = teams.iter().map(|t| t.team_id.clone()).collect();
    visible_teams.extend(user_teams.iter().cloned());
    Ok(Some(Access {
        teams: Some(teams.into_iter().map(grant).collect()),
        direct: Direct::Grants {
            user: user.models,
            key: vk.models.clone(),
        },
        visible_teams: Some(visible_teams),
        admin: false,
        user_teams,
    }))
}

/// LiteLLM's 500 for the team filters without a database.
fn no_database() -> ProxyError {
    ProxyError::Custom {
        status: 500,
        kind: "internal_server_error".to_string(),
        message: "DB not connected. This endpoint needs a database; set DATABASE_URL to a \
                  PostgreSQL connection string (postgresql://...) to enable it. \
                  See https://docs.litellm.ai/docs/proxy/virtual_keys"
            .to_string(),
        param: None,
        headers: Vec::new(),
    }
}

/// `teamId`: the team's models, when the caller may ask (a proxy admin, or a member of the
/// team); `None` when the team is not there (nothing matches).
async fn team_filter(
    app: &App,
    access: &Access,
    team_id: &str,
) -> Result<Option<TeamGrant>, ProxyError> {
    if !access.admin && !access.user_teams.iter().any(|t| t == team_id) {
        return Err(super::keys::forbidden(
            "Not authorized to view this team's models".to_string(),
        ));
    }
    let Some(ledger) = app.resolver.ledger() else {
        return Err(no_database());
    };
    let team = ledger
        .store()
        .get_team(team_id)
        .await
        .map_err(|e| store_error(&e))?;
    Ok(team.map(|t| TeamGrant {
        team_id: t.team_id,
        models: t.models,
    }))
}

/// Whether `e` is among `team`'s models (its own deployments included).
fn of_team(team: &TeamGrant, e: &CatalogEntry, rt: &Runtime) -> bool {
    e.team
        .as_ref()
        .is_some_and(|(owner, _)| *owner == team.team_id)
        || grants(&team.models, e, &rt.router, Some(&team.team_id))
}

/// The team query parameters LiteLLM's model info takes.
struct TeamQuery {
    include_team_models: Option<bool>,
    team_id: Option<String>,
}

/// What the team parameters leave of `rows` (each a deployment and its row): with
/// `include_team_models` those the caller can use, with `teamId` those of that team;
/// `annotate` adds both access fields to every row.
async fn team_rows<'c>(
    app: &App,
    rt: &Runtime,
    access: Option<&Access>,
    q: &TeamQuery,
    annotate: bool,
    rows: Vec<(&'c CatalogEntry, Value)>,
) -> Result<Vec<(&'c CatalogEntry, Value)>, ProxyError> {
    let include = q.include_team_models.unwrap_or(false);
    let team_id = q
        .team_id
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(access) = access else {
        if include || team_id.is_some() {
            return Err(no_database());
        }
        return Ok(rows);
    };
    let team = match team_id {
        Some(t) => Some(team_filter(app, access, t).await?),
        None => None,
    };
    let mut out = Vec::with_capacity(rows.len());
    for (e, mut row) in rows {
        if include && !access.usable(e, &rt.router) {
            continue;
        }
        match &team {
            Some(None) => continue,
            Some(Some(t)) if !of_team(t, e, rt) => continue,
            _ => {}
        }
        if annotate || include {
            access.annotate(&mut row, e, &rt.router);
        }
        out.push((e, row));
    }
    Ok(out)
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
    include_team_models: Option<bool>,
    healthy_only: Option<bool>,
    #[serde(rename = "teamId")]
    team_id: Option<String>,
}

/// `/model/info`: `{"data": [deployment]}`; with `litellm_model_id`, just that one. A
/// wildcard deployment is one row per model it stands for (its id on each).
pub(crate) async fn v1(State(app): State<Arc<App>>, headers: HeaderMap, uri: Uri) -> Response {
    match v1_rows(&app, &headers, &uri).await {
        Ok(data) => Json(json!({ "data": data })).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn v1_rows(app: &App, headers: &HeaderMap, uri: &Uri) -> Result<Vec<Value>, ProxyError> {
    let principal = super::ui::authenticate_admin(app, headers).await?;
    let q: V1Query = query(uri)?;
    let rt = app.runtime.load_full();
    let access = access_of(app, &principal).await?;
    let allowed = visible(&principal, &rt, access.as_ref());
    let rows: Vec<(&CatalogEntry, Value)> = match &q.litellm_model_id {
        Some(id) => match rt.catalog.by_id(id).filter(|e| allowed(e)) {
            Some(e) => vec![(e, e.to_json())],
            None => {
                return Err(ProxyError::Custom {
                    status: 400,
                    kind: "bad_request_error".to_string(),
                    message: format!("Model id = {id} not found on litellm proxy"),
                    param: Some("litellm_model_id".to_string()),
                    headers: Vec::new(),
                });
            }
        },
        None => {
            let mut rows = Vec::new();
            for e in &rt.catalog.entries {
                if e.info_expansion.is_empty() {
                    if allowed(&e) {
                        rows.push((e, e.to_json()));
                    }
                    continue;
                }
                // Access is the deployment's: the expanded rows are its rows.
                for x in e.info_expansion.iter().filter(&allowed) {
                    rows.push((e, x.to_json()));
                }
            }
            rows
        }
    };
    let team = TeamQuery {
        include_team_models: q.include_team_models,
        team_id: q.team_id,
    };
    let rows = team_rows(app, &rt, access.as_ref(), &team, true, rows).await?;
    let hidden = super::health::hidden_unhealthy(app, q.healthy_only);
    Ok(rows
        .into_iter()
        .filter(|(e, _)| !hidden.contains(&e.model_name))
        .map(|(_, row)| row)
        .collect())
}

#[derive(Deserialize)]
struct V2Query {
    model: Option<String>,
    search: Option<String>,
    #[serde(rename = "modelId")]
    model_id: Option<String>,
    page: Option<usize>,
    size: Option<usize>,
    include_team_models: Option<bool>,
    #[serde(rename = "teamId")]
    team_id: Option<String>,
}

/// `/v2/model/info`: the same rows (wildcards as configured), filtered (`model`, `search`,
/// `modelId`, `include_team_models`, `teamId`) and paged (`page` from 1, `size`, default
/// 50). As in LiteLLM, the access fields are filled only with `include_team_models`.
pub(crate) async fn v2(State(app): State<Arc<App>>, headers: HeaderMap, uri: Uri) -> Response {
    match v2_page(&app, &headers, &uri).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn v2_page(app: &App, headers: &HeaderMap, uri: &Uri) -> Result<Value, ProxyError> {
    let principal = super::ui::authenticate_admin(app, headers).await?;
    let q: V2Query = query(uri)?;
    let page = q.page.unwrap_or(1);
    let size = q.size.unwrap_or(50);
    if page < 1 || size < 1 {
        return Err(bad_query("page and size must be at least 1"));
    }
    let rt = app.runtime.load_full();
    let access = access_of(app, &principal).await?;
    let allowed = visible(&principal, &rt, access.as_ref());
    let search = q.search.as_deref().map(str::to_lowercase);
    let rows: Vec<(&CatalogEntry, Value)> = rt
        .catalog
        .entries
        .iter()
        .filter(&allowed)
        .filter(|e| {
            q.model
                .as_deref()
                .is_none_or(|m| e.model_name == m || e.shown_name() == m)
        })
        .filter(|e| q.model_id.as_deref().is_none_or(|id| e.id == id))
        .filter(|e| {
            search.as_deref().is_none_or(|s| {
                e.model_name.to_lowercase().contains(s) || e.shown_name().to_lowercase().contains(s)
            })
        })
        .map(|e| (e, e.to_json()))
        .collect();
    let team = TeamQuery {
        include_team_models: q.include_team_models,
        team_id: q.team_id.clone(),
    };
    let rows = team_rows(app, &rt, access.as_ref(), &team, false, rows).await?;
    let total = rows.len();
    let data: Vec<Value> = rows
        .into_iter()
        .skip((page - 1).saturating_mul(size))
        .take(size)
        .map(|(_, row)| row)
        .collect();
    Ok(json!({
        "data": data,
        "total_count": total,
        "current_page": page,
        "total_pages": total.div_ceil(size),
        "size": size,
    }))
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
    let access = match access_of(&app, &principal).await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let allowed = visible(&principal, &rt, access.as_ref());
    let mut order: Vec<&str> = Vec::new();
    let mut members: std::collections::HashMap<&str, Vec<&CatalogEntry>> = Default::default();
    // As LiteLLM: the groups, then what each wildcard stands for (the wildcard itself is not
    // a group to list).
    let exact = rt.catalog.entries.iter().filter(|e| !e.wildcard);
    let groups: HashSet<&str> = exact.clone().map(CatalogEntry::shown_name).collect();
    // A name a group of its own serves is that group's.
    let expanded = rt
        .catalog
        .entries
        .iter()
        .filter(|e| e.wildcard)
        .flat_map(|e| e.listed_expansion.iter())
        .filter(|x| !groups.contains(x.model_name.as_str()));
    for e in exact.chain(expanded).filter(&allowed) {
        let name = e.shown_name();
        if q.model_group.as_deref().is_some_and(|g| g != name) {
            continue;
        }
        let list = members.entry(name).or_default();
        if list.is_empty() {
            order.push(name);
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
