//! The rest of LiteLLM's dashboard spend routes, each a sum over the daily rollups
//! (`idlehands_store::spend_slices`), on the admin runtime:
//! - `GET /global/spend/logs?api_key=`: spend per day over the last 30 days (`[{date, spend}]`,
//!   with `api_key` also per that key); an internal user gets their own per day and key
//!   (`[{date, spend, api_key, user}]`).
//! - `GET /global/spend/teams`: per day and team alias (`Unassigned` without one), rounded to
//!   cents as LiteLLM rounds them, the aliases, and the ten teams of most spend.
//! - `POST /global/spend/end_users` `{api_key, startTime, endTime}`: the 100 end users of most
//!   spend in the range (default the last 30 days), `[{end_user, total_count, total_spend}]`.
//! - `GET /global/spend/provider?start_date&end_date`: spend per provider over whole days
//!   (`[{provider, spend}]`; an internal user their own calls).
//! - `POST /global/spend/reset`: every key's and team's spend to 0, the logs kept.
//!
//! LiteLLM serves the first four to any key; here they are for admins (and, where LiteLLM has an
//! internal-user answer, for internal users), as the other global routes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Utc};
use http::{HeaderMap, Uri};
use idlehands_store::keygen::token_of;
use idlehands_store::money::nanos_to_usd;
use idlehands_store::spend_slices::{Dim, Slice, SliceQuery};
use serde::Deserialize;
use serde_json::{Value, json};

use super::global_spend::month_start;
use super::keys::{Mgmt, Shared, bad_request, body, query, tri};
use super::roles::{caller_role, not_allowed, require_admin};
use crate::error::ProxyError;
use crate::ledger::seams::store_error;

pub(crate) fn routes(state: Arc<Mgmt>) -> Router {
    Router::new()
        .route(
            "/global/spend/logs",
            get(|State(m): Shared, h: HeaderMap, u: Uri| crate::offload::run(daily(m, h, u))),
        )
        .route(
            "/global/spend/teams",
            get(|State(m): Shared, h: HeaderMap| crate::offload::run(teams(m, h))),
        )
        .route(
            "/global/spend/end_users",
            post(|State(m): Shared, h: HeaderMap, b: Bytes| {
                crate::offload::run(end_users(m, h, b))
            }),
        )
        .route(
            "/global/spend/provider",
            get(|State(m): Shared, h: HeaderMap, u: Uri| crate::offload::run(providers(m, h, u))),
        )
        .route(
            "/global/spend/reset",
            post(|State(m): Shared, h: HeaderMap| reset(m, h)),
        )
        .with_state(state)
}

async fn slices(m: &Mgmt, q: SliceQuery) -> Result<Vec<Slice>, ProxyError> {
    m.ledger
        .store()
        .spend_slices(&q)
        .await
        .map_err(|e| store_error(&e))
}

fn part(s: &Slice, i: usize) -> Option<&str> {
    s.parts.get(i).and_then(|p| p.as_deref())
}

#[derive(Deserialize, Default)]
struct KeyFilter {
    api_key: Option<String>,
}

async fn daily(m: Arc<Mgmt>, headers: HeaderMap, uri: Uri) -> Response {
    let (_, role) = tri!(caller_role(&m, &headers).await);
    let f: KeyFilter = tri!(query(&uri));
    let user = tri!(role.reads_as("/global/spend/logs")).map(str::to_owned);
    let by = match (&user, &f.api_key) {
        (Some(_), _) => vec![Dim::Day, Dim::Key, Dim::User],
        (None, Some(_)) => vec![Dim::Day, Dim::Key],
        (None, None) => vec![Dim::Day],
    };
    let mut rows = tri!(
        slices(
            &m,
            SliceQuery {
                by,
                start: Some(month_start(Utc::now())),
                end: None,
                api_key: f.api_key.clone(),
                user: user.clone(),
            },
        )
        .await
    );
    rows.sort_by(|a, b| a.parts.cmp(&b.parts));
    let out: Vec<Value> = rows
        .iter()
        .map(|s| {
            let mut o = json!({"date": part(s, 0), "spend": nanos_to_usd(s.spend)});
            if user.is_some() || f.api_key.is_some() {
                o["api_key"] = json!(part(s, 1));
            }
            if user.is_some() {
                o["user"] = json!(part(s, 2));
            }
            o
        })
        .collect();
    axum::Json(out).into_response()
}

/// Python's `round(x, 2)`: both round the exact binary value half to even.
fn cents(usd: f64) -> f64 {
    format!("{usd:.2}").parse().unwrap_or(usd)
}

async fn teams(m: Arc<Mgmt>, headers: HeaderMap) -> Response {
    let (_, role) = tri!(caller_role(&m, &headers).await);
    if !role.reads_all() {
        return not_allowed("/global/spend/teams", &role).into_response();
    }
    let rows = tri!(
        slices(
            &m,
            SliceQuery {
                by: vec![Dim::Day, Dim::Team],
                start: Some(month_start(Utc::now())),
                ..SliceQuery::default()
            },
        )
        .await
    );
    let aliases: HashMap<String, Option<String>> = tri!(
        m.ledger
            .store()
            .list_teams(None)
            .await
            .map_err(|e| store_error(&e))
    )
    .into_iter()
    .map(|t| (t.team_id, t.team_alias))
    .collect();
    // LiteLLM groups by the alias (teams without one, and calls without a team, together).
    let mut per_day: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for s in &rows {
        let Some(day) = part(s, 0) else { continue };
        let alias = part(s, 1)
            .and_then(|t| aliases.get(t).cloned().flatten())
            .unwrap_or_else(|| "Unassigned".to_owned());
        let cell = per_day
            .entry(day.to_owned())
            .or_default()
            .entry(alias)
            .or_default();
        *cell = cell.saturating_add(s.spend);
    }
    let mut totals: BTreeMap<&str, f64> = BTreeMap::new();
    let mut daily = Vec::with_capacity(per_day.len());
    for (day, teams) in &per_day {
        let mut o = serde_json::Map::new();
        o.insert("date".into(), json!(day));
        for (alias, spend) in teams {
            let usd = cents(nanos_to_usd(*spend));
            o.insert(alias.clone(), json!(usd));
            *totals.entry(alias.as_str()).or_default() += usd;
        }
        daily.push(Value::Object(o));
    }
    let names: BTreeSet<&str> = totals.keys().copied().collect();
    let mut top: Vec<(&str, f64)> = totals.into_iter().collect();
    top.sort_by(|a, b| b.1.total_cmp(&a.1));
    top.truncate(10);
    let top: Vec<Value> = top
        .into_iter()
        .map(|(t, s)| json!({"team_id": t, "total_spend": s}))
        .collect();
    axum::Json(json!({"daily_spend": daily, "teams": names, "total_spend_per_team": top}))
        .into_response()
}

#[derive(Deserialize, Default)]
struct EndUsersAsk {
    api_key: Option<String>,
    #[serde(rename = "startTime")]
    start_time: Option<String>,
    #[serde(rename = "endTime")]
    end_time: Option<String>,
}

/// A datetime as pydantic reads one: ISO 8601 with or without a zone (UTC without), or a date.
fn instant(text: &str, field: &str) -> Result<DateTime<Utc>, ProxyError> {
    let t = text.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(d.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(d) = NaiveDateTime::parse_from_str(t, f) {
            return Ok(d.and_utc());
        }
    }
    if let Some(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
    {
        return Ok(d.and_utc());
    }
    Err(bad_request(
        format!("{field} must be a datetime (YYYY-MM-DDTHH:MM:SS) or a date, got {t:?}"),
        field,
    ))
}

async fn end_users(m: Arc<Mgmt>, headers: HeaderMap, bytes: Bytes) -> Response {
    let (_, role) = tri!(caller_role(&m, &headers).await);
    if !role.reads_all() {
        return not_allowed("/global/spend/end_users", &role).into_response();
    }
    let ask: EndUsersAsk = tri!(body(&bytes));
    let now = Utc::now();
    let start = match ask.start_time.as_deref() {
        Some(t) => tri!(instant(t, "startTime")),
        None => now - Duration::days(30),
    };
    let end = match ask.end_time.as_deref() {
        Some(t) => tri!(instant(t, "endTime")),
        None => now,
    };
    let mut rows = tri!(
        slices(
            &m,
            SliceQuery {
                by: vec![Dim::EndUser],
                start: Some(start),
                end: Some(end),
                api_key: ask.api_key.as_deref().map(token_of),
                user: None,
            },
        )
        .await
    );
    rows.sort_by(|a, b| b.spend.cmp(&a.spend).then_with(|| a.parts.cmp(&b.parts)));
    rows.truncate(100);
    let out: Vec<Value> = rows
        .iter()
        .map(|s| {
            json!({
                "end_user": part(s, 0),
                "total_count": s.requests,
                "total_spend": nanos_to_usd(s.spend),
            })
        })
        .collect();
    axum::Json(out).into_response()
}

#[derive(Deserialize, Default)]
struct Days {
    start_date: Option<String>,
    end_date: Option<String>,
}

async fn providers(m: Arc<Mgmt>, headers: HeaderMap, uri: Uri) -> Response {
    let (_, role) = tri!(caller_role(&m, &headers).await);
    let user = tri!(role.reads_as("/global/spend/provider")).map(str::to_owned);
    let d: Days = tri!(query(&uri));
    let (Some(start), Some(end)) = (d.start_date.as_deref(), d.end_date.as_deref()) else {
        return bad_request("Please provide start_date and end_date", "start_date").into_response();
    };
    let start = tri!(super::spend::date(Some(start), "start_date").map_err(|e| store_error(&e)))
        .unwrap_or_default();
    let end = tri!(super::spend::date(Some(end), "end_date").map_err(|e| store_error(&e)))
        .unwrap_or_default();
    let midnight = |d: NaiveDate| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    let mut rows = tri!(
        slices(
            &m,
            SliceQuery {
                by: vec![Dim::Provider],
                start: Some(midnight(start)),
                // The end date's whole day, as LiteLLM adds a day to it.
                end: Some(midnight(end) + Duration::days(1)),
                api_key: None,
                user,
            },
        )
        .await
    );
    // Calls that reached no deployment have no provider; LiteLLM leaves them out too.
    rows.retain(|s| part(s, 0).is_some_and(|p| !p.is_empty()));
    rows.sort_by(|a, b| b.spend.cmp(&a.spend).then_with(|| a.parts.cmp(&b.parts)));
    let out: Vec<Value> = rows
        .iter()
        .map(|s| json!({"provider": part(s, 0), "spend": nanos_to_usd(s.spend)}))
        .collect();
    axum::Json(out).into_response()
}

async fn reset(m: Arc<Mgmt>, headers: HeaderMap) -> Response {
    tri!(require_admin(&m, &headers, "/global/spend/reset").await);
    tri!(
        m.ledger
            .reset_global_spend()
            .await
            .map_err(|e| store_error(&e))
    );
    axum::Json(json!({
        "message": "Spend for all API Keys and Teams reset successfully",
        "status": "success",
    }))
    .into_response()
}
