//! LiteLLM's dashboard activity charts: `GET /global/activity` (requests and tokens per day) and
//! `GET /global/activity/model` (the same per model group, the ten busiest), over
//! `start_date`..`end_date` (`YYYY-MM-DD`, both days whole, both required). Admins and admin
//! viewers count every call, an internal user their own; days read the daily rollups, so the
//! retention sweep does not shorten them. Days come in calendar order (LiteLLM sorts its
//! `Jan 22` labels as text, so a range over a month's end comes out of order there).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{Duration, NaiveDate};
use http::{HeaderMap, Uri};
use idlehands_store::spend_slices::{Dim, Slice, SliceQuery};
use serde::Deserialize;
use serde_json::{Value, json};

use super::keys::{Mgmt, Shared, bad_request, query, tri};
use super::roles::caller_role;
use crate::error::ProxyError;
use crate::ledger::seams::store_error;

/// One model group's chart: its days, and its requests and tokens in all.
#[derive(Default)]
struct ModelChart {
    daily: Vec<Value>,
    requests: i64,
    tokens: i64,
}

/// The busiest model groups the per-model chart shows (LiteLLM's cut).
const TOP_MODELS: usize = 10;

pub(crate) fn routes(state: Arc<Mgmt>) -> Router {
    Router::new()
        .route(
            "/global/activity",
            get(|State(m): Shared, h: HeaderMap, u: Uri| {
                crate::offload::run(activity(m, h, u, false))
            }),
        )
        .route(
            "/global/activity/model",
            get(|State(m): Shared, h: HeaderMap, u: Uri| {
                crate::offload::run(activity(m, h, u, true))
            }),
        )
        .with_state(state)
}

#[derive(Deserialize, Default)]
struct Range {
    start_date: Option<String>,
    end_date: Option<String>,
}

fn day(text: &str, param: &str) -> Result<NaiveDate, ProxyError> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| bad_request(format!("{param} must be a date, YYYY-MM-DD"), param))
}

/// A day's point: LiteLLM's `Jan 22` label, requests and tokens.
fn point(date: &str, requests: i64, tokens: i64) -> Value {
    let label = NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .map_or_else(|_| date.to_string(), |d| d.format("%b %d").to_string());
    json!({"date": label, "api_requests": requests, "total_tokens": tokens})
}

async fn activity(m: Arc<Mgmt>, headers: HeaderMap, uri: Uri, per_model: bool) -> Response {
    let (_, role) = tri!(caller_role(&m, &headers).await);
    let route = if per_model {
        "/global/activity/model"
    } else {
        "/global/activity"
    };
    let user = tri!(role.reads_as(route)).map(str::to_owned);
    let r: Range = tri!(query(&uri));
    let (Some(start), Some(end)) = (r.start_date.as_deref(), r.end_date.as_deref()) else {
        return bad_request("Please provide start_date and end_date", "start_date").into_response();
    };
    let (start, end) = (tri!(day(start, "start_date")), tri!(day(end, "end_date")));
    let by = if per_model {
        vec![Dim::ModelGroup, Dim::Day]
    } else {
        vec![Dim::Day]
    };
    let q = SliceQuery {
        by,
        start: start.and_hms_opt(0, 0, 0).map(|t| t.and_utc()),
        end: (end + Duration::days(1))
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc()),
        api_key: None,
        user,
    };
    let mut rows: Vec<Slice> = tri!(
        m.ledger
            .store()
            .spend_slices(&q)
            .await
            .map_err(|e| store_error(&e))
    );
    rows.sort_by(|a, b| a.parts.cmp(&b.parts));
    let part = |s: &Slice, i: usize| s.parts.get(i).cloned().flatten().unwrap_or_default();
    if !per_model {
        let daily: Vec<Value> = rows
            .iter()
            .map(|s| point(&part(s, 0), s.requests, s.total_tokens))
            .collect();
        return axum::Json(json!({
            "daily_data": daily,
            "sum_api_requests": rows.iter().map(|s| s.requests).sum::<i64>(),
            "sum_total_tokens": rows.iter().map(|s| s.total_tokens).sum::<i64>(),
        }))
        .into_response();
    }
    let mut models: BTreeMap<String, ModelChart> = BTreeMap::new();
    for s in &rows {
        let model = part(s, 0);
        let chart = models.entry(model.clone()).or_default();
        let mut p = point(&part(s, 1), s.requests, s.total_tokens);
        p["model_group"] = json!(model);
        chart.daily.push(p);
        chart.requests += s.requests;
        chart.tokens += s.total_tokens;
    }
    let mut ranked: Vec<(String, ModelChart)> = models.into_iter().collect();
    // Busiest first; equal counts by name, so the answer does not change between calls.
    ranked.sort_by(|a, b| b.1.requests.cmp(&a.1.requests).then_with(|| a.0.cmp(&b.0)));
    let out: Vec<Value> = ranked
        .into_iter()
        .take(TOP_MODELS)
        .map(|(model, chart)| {
            json!({
                "model": model,
                "daily_data": chart.daily,
                "sum_api_requests": chart.requests,
                "sum_total_tokens": chart.tokens,
            })
        })
        .collect();
    axum::Json(out).into_response()
}
