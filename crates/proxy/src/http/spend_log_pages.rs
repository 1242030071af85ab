//! LiteLLM's paged spend log: `GET /spend/logs/v2` (the public API) and `/spend/logs/ui` (what
//! its dashboard's Logs page reads, each row with its session's totals), and
//! `/spend/logs/ui/{request_id}` (one call's request and answer). Filters, sorts, the date
//! formats and the refusals are LiteLLM's; the count of matches stops at 10,000
//! (`total_is_capped`). Admins read every row; a team's admin reads the team's with `team_id`;
//! an internal user reads their own calls and those of teams they administer; a key without a
//! user its own calls (LiteLLM shows it none).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use http::{HeaderMap, Uri};
use idlehands_store::money::{nanos_to_usd, usd_to_nanos};
use idlehands_store::spend_log_pages::{
    CallPayload, LogPage, LogPageQuery, LogScope, LogSort, SessionTotals, SpanType,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::keys::{Mgmt, Shared, bad_request, forbidden, query, tri};
use super::roles::{Role, caller_role};
use crate::auth::Principal;
use crate::error::ProxyError;
use crate::ledger::seams::store_error;

/// Rows a page holds at most (LiteLLM's `page_size` bound).
const MAX_PAGE_SIZE: i64 = 1000;

// Pages of a big store are long reads: on the admin runtime (`offload`).
pub(crate) fn routes(state: Arc<Mgmt>) -> Router {
    Router::new()
        .route(
            "/spend/logs/v2",
            get(|State(m): Shared, h: HeaderMap, u: Uri| {
                crate::offload::run(page(m, h, u, Route::V2))
            }),
        )
        .route(
            "/spend/logs/ui",
            get(|State(m): Shared, h: HeaderMap, u: Uri| {
                crate::offload::run(page(m, h, u, Route::Ui))
            }),
        )
        .route(
            "/spend/logs/session/ui",
            get(|State(m): Shared, h: HeaderMap, u: Uri| crate::offload::run(session(m, h, u))),
        )
        .route(
            "/spend/logs/ui/{request_id}",
            get(|State(m): Shared, h: HeaderMap, Path(id): Path<String>| {
                crate::offload::run(payload(m, h, id))
            }),
        )
        .with_state(state)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    V2,
    Ui,
}

#[derive(Deserialize, Default)]
struct PageQuery {
    api_key: Option<String>,
    user_id: Option<String>,
    request_id: Option<String>,
    session_id: Option<String>,
    team_id: Option<String>,
    min_spend: Option<f64>,
    max_spend: Option<f64>,
    start_date: Option<String>,
    end_date: Option<String>,
    page: Option<i64>,
    page_size: Option<i64>,
    status_filter: Option<String>,
    cache_hit_filter: Option<String>,
    used_client_oauth_token: Option<bool>,
    span_type: Option<String>,
    model: Option<String>,
    model_id: Option<String>,
    model_group: Option<String>,
    key_alias: Option<String>,
    end_user: Option<String>,
    error_code: Option<String>,
    error_message: Option<String>,
    sort_by: Option<String>,
    sort_order: Option<String>,
    /// Rows of LiteLLM's own health checks (its service-account key); this gateway's health
    /// checks write no spend rows, so there is nothing to leave out.
    #[expect(
        dead_code,
        reason = "accepted for LiteLLM's clients; nothing to exclude here"
    )]
    exclude_internal_health_checks: Option<bool>,
    group_by_session: Option<bool>,
    session_cursor: Option<String>,
    search: Option<String>,
}

/// LiteLLM's date forms: `YYYY-MM-DD HH:MM:SS` (UTC), and on v2 also `YYYY-MM-DD` (midnight).
fn date_of(text: &str, route: Route) -> Result<DateTime<Utc>, ProxyError> {
    let t = text.trim();
    if let Ok(d) = NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S") {
        return Ok(d.and_utc());
    }
    if route == Route::V2
        && let Some(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    {
        return Ok(d.and_utc());
    }
    let expected = match route {
        Route::V2 => "'YYYY-MM-DD' or 'YYYY-MM-DD HH:MM:SS'",
        Route::Ui => "'YYYY-MM-DD HH:MM:SS'",
    };
    Err(bad_request(
        format!("Invalid date format: {t}. Expected: {expected}"),
        "start_date",
    ))
}

fn spend_of(v: Option<f64>, param: &str) -> Result<Option<i64>, ProxyError> {
    v.map(|usd| {
        usd_to_nanos(usd).ok_or_else(|| bad_request(format!("{param} must be a number"), param))
    })
    .transpose()
}

/// The store's query from LiteLLM's parameters, checked as LiteLLM checks them.
fn page_query(q: PageQuery, route: Route) -> Result<LogPageQuery, ProxyError> {
    let sort_name = q.sort_by.as_deref().unwrap_or("startTime");
    let sort = LogSort::parse(sort_name).ok_or_else(|| {
        bad_request(
            format!(
                "Invalid sort_by: {sort_name}. Must be one of: {}",
                LogSort::NAMES.join(", ")
            ),
            "sort_by",
        )
    })?;
    let ascending = match q.sort_order.as_deref().map(str::to_lowercase).as_deref() {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(_) => {
            return Err(bad_request(
                format!(
                    "Invalid sort_order: {}. Must be one of: asc, desc",
                    q.sort_order.as_deref().unwrap_or_default()
                ),
                "sort_order",
            ));
        }
    };
    let cache_hit = match q.cache_hit_filter.as_deref() {
        None => None,
        Some("hit") => Some(true),
        Some("miss") => Some(false),
        Some(other) => {
            return Err(bad_request(
                format!("Invalid cache_hit_filter: {other}. Must be one of: hit, miss"),
                "cache_hit_filter",
            ));
        }
    };
    let span_type = match q.span_type.as_deref() {
        None => None,
        Some(s) => Some(SpanType::parse(s).ok_or_else(|| {
            bad_request(
                format!("Invalid span_type: {s}. Must be one of: llm, agent, mcp, batch"),
                "span_type",
            )
        })?),
    };
    if q.group_by_session == Some(true) || q.session_cursor.is_some() {
        return Err(bad_request(
            "group_by_session is not supported by this gateway: page over calls and filter by \
             session_id",
            "group_by_session",
        ));
    }
    let page = q.page.unwrap_or(1);
    if page < 1 {
        return Err(bad_request("page must be >= 1", "page"));
    }
    let page_size = q.page_size.unwrap_or(50);
    if !(1..=MAX_PAGE_SIZE).contains(&page_size) {
        return Err(bad_request(
            format!("page_size must be between 1 and {MAX_PAGE_SIZE}"),
            "page_size",
        ));
    }
    // The Logs page looks a call up by id over all time; every other ask needs a window.
    let id_lookup = route == Route::Ui && q.request_id.is_some() && q.search.is_none();
    let window = if id_lookup {
        None
    } else {
        match (q.start_date.as_deref(), q.end_date.as_deref()) {
            (Some(s), Some(e)) => Some((date_of(s, route)?, date_of(e, route)?)),
            _ => {
                return Err(bad_request(
                    "Start date and end date are required",
                    "start_date",
                ));
            }
        }
    };
    // On the Logs page a search owns the window (the call id matches outside it).
    let search_owns_window = q.search.is_some() && route == Route::Ui;
    let (start, end) = match window {
        Some((s, e)) if !search_owns_window => (Some(s), Some(e)),
        _ => (None, None),
    };
    Ok(LogPageQuery {
        start,
        end,
        api_key: q.api_key,
        user_id: q.user_id,
        team_id: q.team_id,
        request_id: q.request_id,
        session_id: q.session_id,
        session_exact: None,
        model: q.model,
        model_id: q.model_id,
        model_group: q.model_group,
        end_user: q.end_user,
        key_alias: q.key_alias,
        error_code: q.error_code,
        error_message: q.error_message,
        status: q.status_filter,
        cache_hit,
        used_client_oauth_token: q.used_client_oauth_token,
        span_type,
        min_spend: spend_of(q.min_spend, "min_spend")?,
        max_spend: spend_of(q.max_spend, "max_spend")?,
        search: q.search,
        search_window: window,
        sort,
        ascending,
        page: u32::try_from(page).unwrap_or(u32::MAX),
        page_size: u32::try_from(page_size).unwrap_or(1),
        scope: LogScope::All,
    })
}

/// The teams `user` administers.
async fn teams_administered(m: &Mgmt, user: &str) -> Result<Vec<String>, ProxyError> {
    let teams = m
        .ledger
        .store()
        .list_teams(None)
        .await
        .map_err(|e| store_error(&e))?;
    Ok(teams
        .into_iter()
        .filter(|t| t.admins.iter().any(|a| a == user))
        .map(|t| t.team_id)
        .collect())
}

/// Whose rows the caller reads.
async fn scope_of(
    m: &Mgmt,
    p: &Principal,
    role: &Role,
    team_id: Option<&str>,
) -> Result<LogScope, ProxyError> {
    if role.reads_all() {
        return Ok(LogScope::All);
    }
    if let Some(team) = team_id {
        let admin = match role.own_user() {
            Some(u) => super::roles::admin_of_team(m, team, u).await?,
            None => false,
        };
        if !admin {
            return Err(forbidden(format!(
                "Not authorized to view team spend for team_id={team}"
            )));
        }
        return Ok(LogScope::All);
    }
    Ok(match (role.own_user(), p) {
        (Some(u), _) => LogScope::Owned {
            user: Some(u.to_owned()),
            teams: teams_administered(m, u).await?,
            key: None,
        },
        (None, Principal::VirtualKey(vk)) => LogScope::Owned {
            user: None,
            teams: Vec::new(),
            key: Some(vk.token_hash.clone()),
        },
        (None, _) => LogScope::Owned {
            user: None,
            teams: Vec::new(),
            key: None,
        },
    })
}

async fn page(m: Arc<Mgmt>, headers: HeaderMap, uri: Uri, route: Route) -> Response {
    let (p, role) = tri!(caller_role(&m, &headers).await);
    let raw: PageQuery = tri!(query(&uri));
    let mut q = tri!(page_query(raw, route));
    q.scope = tri!(scope_of(&m, &p, &role, q.team_id.as_deref()).await);
    let store = m.ledger.store();
    // The Logs page's lookup of one call, by someone who does not read everything: a 403
    // unless a row with that id is theirs (LiteLLM's rule, also when no row exists), whatever
    // the other filters say.
    if route == Route::Ui
        && !role.reads_all()
        && let Some(id) = q.request_id.clone()
    {
        let rows = tri!(store.call_payloads(&id).await.map_err(|e| store_error(&e)));
        let scope = tri!(scope_of(&m, &p, &role, None).await);
        if own_row(&scope, &rows).is_none() {
            return not_theirs(&id).into_response();
        }
    }
    let found: LogPage = tri!(store.spend_log_page(&q).await.map_err(|e| store_error(&e)));
    let sessions = if route == Route::Ui {
        let pairs: Vec<(String, String)> = found
            .rows
            .iter()
            .filter_map(|r| {
                let s = r.session_id.as_deref().filter(|s| !s.is_empty())?;
                Some((s.to_owned(), r.api_key.clone()))
            })
            .collect();
        tri!(
            store
                .session_totals(&pairs)
                .await
                .map_err(|e| store_error(&e))
        )
    } else {
        HashMap::new()
    };
    let mut data = Vec::with_capacity(found.rows.len());
    for row in &found.rows {
        let mut v = tri!(listed(row));
        if route == Route::Ui
            && let Some(o) = v.as_object_mut()
        {
            let key = row
                .session_id
                .as_ref()
                .map(|s| (s.clone(), row.api_key.clone()));
            session_fields(o, key.and_then(|k| sessions.get(&k)));
        }
        data.push(v);
    }
    let size = u64::from(q.page_size);
    axum::Json(json!({
        "data": data,
        "total": found.total,
        "page": q.page,
        "page_size": q.page_size,
        "total_pages": found.total.div_ceil(size),
        "total_is_capped": found.capped,
    }))
    .into_response()
}

#[derive(Deserialize)]
struct SessionQuery {
    session_id: Option<String>,
    page: Option<i64>,
    page_size: Option<i64>,
}

/// LiteLLM's `GET /spend/logs/session/ui?session_id=&page=&page_size=` (1-100, default 50):
/// one session's calls over all time, newest first, without their payloads; whose rows as on
/// the Logs page.
async fn session(m: Arc<Mgmt>, headers: HeaderMap, uri: Uri) -> Response {
    let (p, role) = tri!(caller_role(&m, &headers).await);
    let ask: SessionQuery = tri!(query(&uri));
    let Some(session_id) = ask.session_id.filter(|s| !s.is_empty()) else {
        return bad_request("session_id is required", "session_id").into_response();
    };
    let page = ask.page.unwrap_or(1);
    if page < 1 {
        return bad_request("page must be >= 1", "page").into_response();
    }
    let page_size = ask.page_size.unwrap_or(50);
    if !(1..=100).contains(&page_size) {
        return bad_request("page_size must be between 1 and 100", "page_size").into_response();
    }
    let q = LogPageQuery {
        session_exact: Some(session_id),
        sort: LogSort::StartTime,
        ascending: false,
        page: u32::try_from(page).unwrap_or(u32::MAX),
        page_size: u32::try_from(page_size).unwrap_or(1),
        scope: tri!(scope_of(&m, &p, &role, None).await),
        ..LogPageQuery::default()
    };
    let found: LogPage = tri!(
        m.ledger
            .store()
            .spend_log_page(&q)
            .await
            .map_err(|e| store_error(&e))
    );
    let mut data = Vec::with_capacity(found.rows.len());
    for row in &found.rows {
        data.push(tri!(listed(row)));
    }
    axum::Json(json!({
        "data": data,
        "total": found.total,
        "page": q.page,
        "page_size": q.page_size,
        "total_pages": found.total.div_ceil(u64::from(q.page_size)),
        "total_is_capped": found.capped,
    }))
    .into_response()
}

/// A row as the lists show it: without the payloads (LiteLLM's lists leave them out too: the
/// detail route reads them), with a duration where none was recorded.
fn listed(row: &idlehands_store::SpendLogRow) -> Result<Value, ProxyError> {
    let mut v = serde_json::to_value(row).map_err(|e| ProxyError::Internal(e.to_string()))?;
    if let Some(o) = v.as_object_mut() {
        o.remove("messages");
        o.remove("response");
        if row.request_duration_ms.is_none() {
            let ms = (row.end_time - row.start_time).num_milliseconds();
            o.insert("request_duration_ms".into(), json!(ms));
        }
    }
    Ok(v)
}

/// LiteLLM's session columns on the Logs page: a call outside a session counts 1.
fn session_fields(o: &mut serde_json::Map<String, Value>, t: Option<&SessionTotals>) {
    let Some(t) = t else {
        o.insert("session_total_count".into(), json!(1));
        return;
    };
    o.insert("session_total_count".into(), json!(t.calls));
    o.insert("session_total_spend".into(), json!(nanos_to_usd(t.spend)));
    o.insert("session_total_duration_ms".into(), json!(t.duration_ms));
    if t.mcp_calls > 0 {
        o.insert("mcp_tool_call_count".into(), json!(t.mcp_calls));
        o.insert(
            "mcp_tool_call_spend".into(),
            json!(nanos_to_usd(t.mcp_spend)),
        );
    }
    o.insert("session_cache_hit_count".into(), json!(t.cache_hits));
    o.insert("session_llm_count".into(), json!(t.llm_calls));
    o.insert("session_agent_count".into(), json!(t.agent_calls));
    o.insert("session_total_prompt_tokens".into(), json!(t.prompt_tokens));
    o.insert(
        "session_total_completion_tokens".into(),
        json!(t.completion_tokens),
    );
    o.insert("session_total_tokens".into(), json!(t.total_tokens));
    // LiteLLM lists at most 20 models, each cut to 64 characters.
    let models: Vec<String> = t
        .models
        .iter()
        .take(SESSION_MODELS)
        .map(|m| m.chars().take(64).collect())
        .collect();
    o.insert("session_models".into(), json!(models));
    o.insert(
        "session_models_truncated".into(),
        json!(t.models.len() > SESSION_MODELS),
    );
}

const SESSION_MODELS: usize = 20;

/// One call's request and answer; `null` when no row has that id. A non-admin must own one of
/// the rows the id names (their user's, a team's they administer, or their key's).
/// The first of a call's rows (several when a client repeated its call id) that `scope` may
/// read: its user's, a team's of theirs, or its key's.
fn own_row<'a>(scope: &LogScope, rows: &'a [CallPayload]) -> Option<&'a CallPayload> {
    match scope {
        LogScope::All => rows.first(),
        LogScope::Owned { user, teams, key } => rows.iter().find(|r| {
            (user.is_some() && r.user == *user)
                || r.team_id.as_ref().is_some_and(|t| teams.contains(t))
                || key.as_deref() == Some(r.api_key.as_str())
        }),
    }
}

fn not_theirs(id: &str) -> ProxyError {
    forbidden(format!(
        "Not authorized to view spend log for request_id={id}"
    ))
}

async fn payload(m: Arc<Mgmt>, headers: HeaderMap, id: String) -> Response {
    let (p, role) = tri!(caller_role(&m, &headers).await);
    let rows = tri!(
        m.ledger
            .store()
            .call_payloads(&id)
            .await
            .map_err(|e| store_error(&e))
    );
    let visible = if role.reads_all() {
        rows.first()
    } else {
        let scope = tri!(scope_of(&m, &p, &role, None).await);
        match own_row(&scope, &rows) {
            Some(r) => Some(r),
            None => return not_theirs(&id).into_response(),
        }
    };
    match visible {
        Some(r) => axum::Json(json!({
            "messages": r.messages,
            "response": r.response,
            // The request as the proxy received it is not stored here.
            "proxy_server_request": Value::Null,
        }))
        .into_response(),
        None => axum::Json(Value::Null).into_response(),
    }
}
