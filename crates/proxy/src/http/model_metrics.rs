//! LiteLLM's `GET /model/metrics` (the dashboard's model latency chart): for one model group
//! (`_selected_model_group`), the average seconds per completion token of each deployment per
//! day, over `startTime`..`endTime` (default the last 30 days), optionally of one `api_key` and
//! one `customer`; cache hits and calls without completion tokens are not counted. A deployment
//! is named by its model, or by its `https://` API base (up to `/openai/`) as LiteLLM names it.
//! Answered as `{"data": [{"date", <name>: seconds a token, ...}], "all_api_bases": [...]}`.
//! `GET /model/metrics/slow_responses` (same filters): per API base, the calls and those that
//! took `alerting_threshold` (default 300 s) or longer. Admins and admin viewers; read from
//! the spend rows, on the admin runtime.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Utc};
use http::{HeaderMap, Uri};
use idlehands_store::model_metrics::{LatencyQuery, LatencyRow};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::keys::{Mgmt, Shared, bad_request, query, tri};
use super::roles::require_reader;
use crate::error::ProxyError;
use crate::ledger::seams::store_error;

const ROUTE: &str = "/model/metrics";

pub(crate) fn routes(state: Arc<Mgmt>) -> Router {
    Router::new()
        .route(
            ROUTE,
            get(|State(m): Shared, h: HeaderMap, u: Uri| crate::offload::run(metrics(m, h, u))),
        )
        .route(
            "/model/metrics/slow_responses",
            get(|State(m): Shared, h: HeaderMap, u: Uri| {
                crate::offload::run(slow_responses(m, h, u))
            }),
        )
        .with_state(state)
}

#[derive(Deserialize, Default)]
struct Ask {
    _selected_model_group: Option<String>,
    #[serde(rename = "startTime")]
    start_time: Option<String>,
    #[serde(rename = "endTime")]
    end_time: Option<String>,
    api_key: Option<String>,
    customer: Option<String>,
}

/// A time as the dashboard sends it: `YYYY-MM-DD`, with ` HH:MM:SS` or `THH:MM:SS` (UTC), or
/// RFC 3339.
fn time_of(text: &str, param: &str) -> Result<DateTime<Utc>, ProxyError> {
    let t = text.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(d.with_timezone(&Utc));
    }
    for form in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
    ] {
        if let Ok(d) = NaiveDateTime::parse_from_str(t, form) {
            return Ok(d.and_utc());
        }
    }
    NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
        .ok_or_else(|| bad_request(format!("{param} must be a date or a time, UTC"), param))
}

/// The name LiteLLM gives a deployment in the chart.
fn name_of(r: &LatencyRow) -> String {
    let name = match r.api_base.as_deref() {
        Some(base) if base.contains("https://") => base,
        _ => r.model.as_str(),
    };
    short_base(name).to_string()
}

/// `"null"` and `"undefined"` are the dashboard's "none".
fn given(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty() && s != "null" && s != "undefined")
}

/// The calls a chart reads, from the query string.
fn calls_of(uri: &Uri) -> Result<LatencyQuery, ProxyError> {
    let ask: Ask = query(uri)?;
    let group = given(ask._selected_model_group)
        .ok_or_else(|| bad_request("_selected_model_group is required", "_selected_model_group"))?;
    let now = Utc::now();
    let start = match ask.start_time.as_deref() {
        Some(t) => time_of(t, "startTime")?,
        None => now - Duration::days(30),
    };
    let end = match ask.end_time.as_deref() {
        Some(t) => time_of(t, "endTime")?,
        None => now,
    };
    Ok(LatencyQuery {
        model_group: group,
        start,
        end,
        api_key: given(ask.api_key),
        end_user: given(ask.customer),
    })
}

/// An API base as LiteLLM shows it: up to `/openai/`.
fn short_base(base: &str) -> &str {
    base.split("/openai/").next().unwrap_or(base)
}

async fn slow_responses(m: Arc<Mgmt>, headers: HeaderMap, uri: Uri) -> Response {
    tri!(require_reader(&m, &headers, "/model/metrics/slow_responses").await);
    let q = tri!(calls_of(&uri));
    let rows = tri!(
        m.ledger
            .store()
            .slow_calls(&q, m.app.diagnostics.slow_call)
            .await
            .map_err(|e| store_error(&e))
    );
    let out: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "api_base": short_base(r.api_base.as_deref().unwrap_or("")),
                "total_count": r.total_count,
                "slow_count": r.slow_count,
            })
        })
        .collect();
    axum::Json(out).into_response()
}

async fn metrics(m: Arc<Mgmt>, headers: HeaderMap, uri: Uri) -> Response {
    tri!(require_reader(&m, &headers, ROUTE).await);
    let q = tri!(calls_of(&uri));
    let rows = tri!(
        m.ledger
            .store()
            .latency_per_token(&q)
            .await
            .map_err(|e| store_error(&e))
    );
    let mut days: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut names = BTreeSet::new();
    for r in &rows {
        let name = name_of(r);
        names.insert(name.clone());
        days.entry(r.day.clone())
            .or_default()
            .insert(name, json!(r.avg_latency_per_token));
    }
    let data: Vec<Value> = days
        .into_iter()
        .map(|(day, mut entry)| {
            entry.insert("date".into(), json!(day));
            Value::Object(entry)
        })
        .collect();
    axum::Json(json!({"data": data, "all_api_bases": names.into_iter().collect::<Vec<_>>()}))
        .into_response()
}
