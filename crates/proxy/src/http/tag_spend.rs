//! Spend by request tag (see `super::tags` for what a call is tagged with), in LiteLLM's two
//! shapes: `GET /spend/tags?start_date&end_date` (a row per tag: `individual_request_tag`,
//! `log_count`, `total_spend`; admins see every call, an internal user their own) and
//! `GET /global/spend/tags?start_date&end_date&tags=a,b` (the dashboard's: `{"spend_per_tag":
//! [{name, spend, log_count}]}`, biggest spend first, both dates required, admins only).
//! Dates are UTC days, both ends included.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Duration, Utc};
use http::{HeaderMap, Uri};
use idlehands_store::money::nanos_to_usd;
use idlehands_store::{StoreError, TagSpend};
use serde::Deserialize;
use serde_json::json;

use super::keys::{Mgmt, Shared, query, tri};
use super::roles::{caller_role, require_reader};
use crate::ledger::seams::store_error;

pub(crate) fn routes(state: Arc<Mgmt>) -> Router {
    Router::new()
        .route("/spend/tags", get(spend_tags))
        .route("/global/spend/tags", get(global_spend_tags))
        .route("/global/spend/all_tag_names", get(all_tag_names))
        .route("/global/all_end_users", get(all_end_users))
        .with_state(state)
}

/// `GET /global/spend/all_tag_names` (those who read everything): `{"tag_names": [...]}`, every
/// tag a call was logged with. A scan of the rows, on the admin runtime.
async fn all_tag_names(State(m): Shared, headers: HeaderMap) -> Response {
    crate::offload::run(async move {
        tri!(require_reader(&m, &headers, "/global/spend/all_tag_names").await);
        let tags = tri!(
            m.ledger
                .store()
                .all_tag_names()
                .await
                .map_err(|e| store_error(&e))
        );
        axum::Json(json!({"tag_names": tags})).into_response()
    })
    .await
}

/// `GET /global/all_end_users` (those who read everything): `{"end_users": [...]}`, every end
/// user (`user` of a call) a call was logged for. A scan of the rows, on the admin runtime.
async fn all_end_users(State(m): Shared, headers: HeaderMap) -> Response {
    crate::offload::run(async move {
        tri!(require_reader(&m, &headers, "/global/all_end_users").await);
        let users = tri!(
            m.ledger
                .store()
                .all_end_users()
                .await
                .map_err(|e| store_error(&e))
        );
        axum::Json(json!({"end_users": users})).into_response()
    })
    .await
}

#[derive(Deserialize)]
struct TagQuery {
    start_date: Option<String>,
    end_date: Option<String>,
    /// `/global/spend/tags` only: the tags to answer for (`all-tags` or none: every tag).
    tags: Option<String>,
}

// Both scan the rows of the range: run on the admin runtime (`offload`).
async fn spend_tags(State(m): Shared, headers: HeaderMap, uri: Uri) -> Response {
    crate::offload::run(spend_tags_here(m, headers, uri)).await
}

async fn global_spend_tags(State(m): Shared, headers: HeaderMap, uri: Uri) -> Response {
    crate::offload::run(global_here(m, headers, uri)).await
}

async fn spend_tags_here(m: Arc<Mgmt>, headers: HeaderMap, uri: Uri) -> Response {
    let (_, role) = tri!(caller_role(&m, &headers).await);
    let user = tri!(role.reads_as("/spend/tags")).map(str::to_owned);
    let q: TagQuery = tri!(query(&uri));
    let (start, end) = tri!(range(&q, false).map_err(|e| store_error(&e)));
    let rows = tri!(
        m.ledger
            .store()
            .spend_by_tag(start, end, user.as_deref())
            .await
            .map_err(|e| store_error(&e))
    );
    let out: Vec<_> = rows
        .iter()
        .map(|t| {
            json!({
                "individual_request_tag": t.tag,
                "log_count": t.requests,
                "total_spend": nanos_to_usd(t.spend),
            })
        })
        .collect();
    axum::Json(out).into_response()
}

async fn global_here(m: Arc<Mgmt>, headers: HeaderMap, uri: Uri) -> Response {
    tri!(require_reader(&m, &headers, "/global/spend/tags").await);
    let q: TagQuery = tri!(query(&uri));
    let (start, end) = tri!(range(&q, true).map_err(|e| store_error(&e)));
    let rows = tri!(
        m.ledger
            .store()
            .spend_by_tag(start, end, None)
            .await
            .map_err(|e| store_error(&e))
    );
    let wanted: Option<Vec<&str>> = q
        .tags
        .as_deref()
        .filter(|t| !t.is_empty())
        .map(|t| t.split(',').collect())
        .filter(|t: &Vec<&str>| !t.contains(&"all-tags"));
    let out: Vec<_> = rows
        .iter()
        .filter(|t| wanted.as_ref().is_none_or(|w| w.contains(&t.tag.as_str())))
        .map(|t: &TagSpend| {
            json!({
                "name": t.tag,
                "spend": (nanos_to_usd(t.spend) * 10_000.0).round() / 10_000.0,
                "log_count": t.requests,
            })
        })
        .collect();
    axum::Json(json!({ "spend_per_tag": out })).into_response()
}

/// A range's ends; `None`: unbounded.
type Range = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// `[start, end)` from the query's days (the end day included); `required`: both must be given.
fn range(q: &TagQuery, required: bool) -> Result<Range, StoreError> {
    if required && (q.start_date.is_none() || q.end_date.is_none()) {
        return Err(StoreError::bad_request(
            "Please provide start_date and end_date",
            "start_date",
        ));
    }
    // LiteLLM takes a date or a date-time; the day is what counts.
    let day = |v: Option<&str>, field: &str| -> Result<Option<DateTime<Utc>>, StoreError> {
        let v = v.map(|s| {
            let s = s.trim();
            s.get(..10).unwrap_or(s)
        });
        Ok(super::spend::date(v, field)?.map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc()))
    };
    let start = day(q.start_date.as_deref(), "start_date")?;
    let end = day(q.end_date.as_deref(), "end_date")?.map(|d| d + Duration::days(1));
    Ok((start, end))
}
