//! LiteLLM's dashboard totals over the last 30 days (from midnight UTC 30 days ago): `GET
//! /global/spend` (`{spend, max_budget}`, the budget `litellm_settings.max_budget`, else 0.0), `/global/spend/keys?limit=` (the keys of most spend,
//! `[{api_key, key_alias, key_name, total_spend}]`) and `/global/spend/models?limit=` (default
//! 10, `[{model, total_spend}]`, by model group). Read from the daily rollups. An internal user
//! gets the keys and models of their own calls over all time, as LiteLLM answers them (with
//! `total_tokens` for models); the total is for admins only (LiteLLM shows it to any key).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Duration, Utc};
use http::{HeaderMap, Uri};
use idlehands_store::money::nanos_to_usd;
use idlehands_store::{SpendAggregate, SpendGroup, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};

use super::keys::{Mgmt, Shared, query, tri};
use super::roles::{Role, caller_role, not_allowed};
use crate::error::ProxyError;
use crate::ledger::seams::store_error;

// A month of a big store's rollups is a long read: on the admin runtime (`offload`).
pub(crate) fn routes(state: Arc<Mgmt>) -> Router {
    Router::new()
        .route(
            "/global/spend",
            get(|State(m): Shared, h: HeaderMap| crate::offload::run(total(m, h))),
        )
        .route(
            "/global/spend/keys",
            get(|State(m): Shared, h: HeaderMap, u: Uri| crate::offload::run(keys(m, h, u))),
        )
        .route(
            "/global/spend/models",
            get(|State(m): Shared, h: HeaderMap, u: Uri| crate::offload::run(models(m, h, u))),
        )
        .with_state(state)
}

#[derive(Deserialize, Default)]
struct Limit {
    limit: Option<i64>,
}

/// Midnight UTC 30 days ago: LiteLLM's views read from `CURRENT_DATE - 30 days`.
pub(super) fn month_start(now: DateTime<Utc>) -> DateTime<Utc> {
    let day = now.date_naive() - Duration::days(30);
    day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

/// Whose calls: every call of the last 30 days for a reader of everything, all of an
/// internal user's own; anyone else is refused.
fn scope(role: &Role, route: &str) -> Result<(Option<DateTime<Utc>>, Option<String>), ProxyError> {
    Ok(match role.reads_as(route)? {
        None => (Some(month_start(Utc::now())), None),
        Some(u) => (None, Some(u.to_owned())),
    })
}

fn limit_of(l: Option<i64>) -> Result<Option<usize>, ProxyError> {
    match l {
        None => Ok(None),
        Some(n) if n >= 1 => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
        Some(n) => Err(store_error(&StoreError::bad_request(
            format!("Invalid limit: {n}, error: Limit must be greater than 0"),
            "limit",
        ))),
    }
}

async fn grouped(
    m: &Mgmt,
    group: SpendGroup,
    start: Option<DateTime<Utc>>,
    user: Option<&str>,
) -> Result<Vec<SpendAggregate>, ProxyError> {
    m.ledger
        .store()
        .spend_of_user_by(group, start, None, user)
        .await
        .map_err(|e| store_error(&e))
}

async fn total(m: Arc<Mgmt>, headers: HeaderMap) -> Response {
    let (_, role) = tri!(caller_role(&m, &headers).await);
    if !role.reads_all() {
        return not_allowed("/global/spend", &role).into_response();
    }
    let days = tri!(grouped(&m, SpendGroup::Day, Some(month_start(Utc::now())), None).await);
    let spend = days.iter().fold(0i64, |a, d| a.saturating_add(d.spend));
    // LiteLLM answers 0.0 when no proxy-wide budget is set.
    let max_budget = m.ledger.proxy_max_budget().unwrap_or(0.0);
    axum::Json(json!({ "spend": nanos_to_usd(spend), "max_budget": max_budget })).into_response()
}

async fn keys(m: Arc<Mgmt>, headers: HeaderMap, uri: Uri) -> Response {
    let (_, role) = tri!(caller_role(&m, &headers).await);
    let (start, user) = tri!(scope(&role, "/global/spend/keys"));
    let l: Limit = tri!(query(&uri));
    let limit = tri!(limit_of(l.limit));
    let mut rows = tri!(grouped(&m, SpendGroup::Key, start, user.as_deref()).await);
    rows.truncate(limit.unwrap_or(usize::MAX));
    let tokens: Vec<String> = rows.iter().map(|r| r.group.clone()).collect();
    let facts = tri!(
        m.ledger
            .store()
            .key_facts(&tokens)
            .await
            .map_err(|e| store_error(&e))
    );
    let out: Vec<Value> = rows
        .iter()
        .map(|r| {
            let k = facts.get(&r.group);
            json!({
                "api_key": r.group,
                "key_alias": k.and_then(|k| k.key_alias.clone()),
                "key_name": k.map(|k| k.key_name.clone()),
                "total_spend": nanos_to_usd(r.spend),
            })
        })
        .collect();
    axum::Json(out).into_response()
}

async fn models(m: Arc<Mgmt>, headers: HeaderMap, uri: Uri) -> Response {
    let (_, role) = tri!(caller_role(&m, &headers).await);
    let (start, user) = tri!(scope(&role, "/global/spend/models"));
    let l: Limit = tri!(query(&uri));
    let limit = tri!(limit_of(Some(l.limit.unwrap_or(10)))).unwrap_or(10);
    let rows = tri!(grouped(&m, SpendGroup::Model, start, user.as_deref()).await);
    let out: Vec<Value> = rows
        .iter()
        .filter(|r| !r.group.is_empty())
        .take(limit)
        .map(|r| {
            let mut row = json!({ "model": r.group, "total_spend": nanos_to_usd(r.spend) });
            if user.is_some() {
                row["total_tokens"] = json!(r.prompt_tokens.saturating_add(r.completion_tokens));
            }
            row
        })
        .collect();
    axum::Json(out).into_response()
}
