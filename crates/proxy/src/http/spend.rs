//! `/spend/logs` (LiteLLM's filters, pages and daily summary) and `/global/spend/report`
//! (spend per day and key, model or user, for the dashboard).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{Duration, NaiveDate, TimeZone, Utc};
use http::{HeaderMap, Uri};
use idlehands_store::{KeyModelSpend, ReportGroup, SpendGroup, SpendLogsQuery, StoreError};
use serde::{Deserialize, Serialize};

use super::keys::{Mgmt, Shared, caller, query, reply, tri};
use crate::auth::Principal;
use crate::ledger::seams::store_error;

/// The longest `/global/spend/report` range, in days.
const MAX_REPORT_DAYS: i64 = 366;

pub(crate) fn routes(state: Arc<Mgmt>) -> Router {
    Router::new()
        .route("/spend/logs", get(logs))
        .route("/global/spend/report", get(report))
        .with_state(state)
}

// Both run on the admin runtime (`offload`): a big page or a month's report must not stall
// the other connections of the serving thread that took the request.
async fn logs(State(m): Shared, headers: HeaderMap, uri: Uri) -> Response {
    crate::offload::run(logs_here(m, headers, uri)).await
}

async fn report(State(m): Shared, headers: HeaderMap, uri: Uri) -> Response {
    crate::offload::run(report_here(m, headers, uri)).await
}

async fn logs_here(m: Arc<Mgmt>, headers: HeaderMap, uri: Uri) -> Response {
    let p = tri!(caller(&m, &headers).await);
    let mut q: SpendLogsQuery = tri!(query(&uri));
    let role = tri!(super::roles::role_of(&m, &p).await);
    if !role.reads_all() {
        match (role.own_user(), &p) {
            // An internal user sees their own user's calls; a key without a user its own.
            (Some(u), _) => q.user_id = Some(u.to_owned()),
            (None, Principal::VirtualKey(vk)) => q.api_key = Some(vk.token_hash.clone()),
            (None, _) => {}
        }
    }
    reply(m.ledger.spend_logs(&q).await)
}

#[derive(Deserialize)]
struct ReportQuery {
    start_date: Option<String>,
    end_date: Option<String>,
    group_by: Option<String>,
}

#[derive(Serialize)]
struct ReportRow {
    date: String,
    group: Option<String>,
    spend: f64,
    requests: i64,
    total_tokens: i64,
}

pub(super) fn date(v: Option<&str>, field: &str) -> Result<Option<NaiveDate>, StoreError> {
    v.map(|s| {
        NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").map_err(|_| {
            StoreError::bad_request(format!("{field} must be a date as YYYY-MM-DD"), field)
        })
    })
    .transpose()
}

fn bad(e: StoreError) -> Response {
    store_error(&e).into_response()
}

async fn report_here(m: Arc<Mgmt>, headers: HeaderMap, uri: Uri) -> Response {
    tri!(super::roles::require_reader(&m, &headers, "/global/spend/report").await);
    let q: ReportQuery = tri!(query(&uri));
    let group = match q.group_by.as_deref().unwrap_or("api_key") {
        // Ours, per day (the dashboard's chart); `api_key` answers in LiteLLM's shape.
        "key" => SpendGroup::Key,
        "api_key" => return key_report(&m, &q).await,
        "model" => SpendGroup::Model,
        "user" => SpendGroup::User,
        "team" => return litellm_report(&m, &q, ReportGroup::Team).await,
        "customer" => return litellm_report(&m, &q, ReportGroup::Customer).await,
        other => {
            return bad(StoreError::bad_request(
                format!(
                    "group_by must be one of: team, customer, api_key, key, model, user (got {other:?})"
                ),
                "group_by",
            ));
        }
    };
    let (start, end) = match report_range(&q) {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    let store = m.ledger.store();
    let mut days = Vec::new();
    let mut day = start;
    while day <= end {
        let from = Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).unwrap_or_default());
        let to = from + Duration::days(1);
        match store.spend_by(group, Some(from), Some(to)).await {
            Ok(g) => days.push((day, g)),
            Err(e) => return bad(e),
        }
        day += Duration::days(1);
    }
    // Keys are named by alias (else key name) in one lookup for all of them.
    let labels: HashMap<String, String> = if group == SpendGroup::Key {
        let mut tokens: Vec<String> = days
            .iter()
            .flat_map(|(_, g)| g.iter().map(|a| a.group.clone()))
            .filter(|t| !t.is_empty())
            .collect();
        tokens.sort_unstable();
        tokens.dedup();
        match store.key_labels(&tokens).await {
            Ok(l) => l,
            Err(e) => return bad(e),
        }
    } else {
        HashMap::new()
    };
    let mut out = Vec::new();
    for (day, groups) in days {
        let date = day.format("%Y-%m-%d").to_string();
        for g in groups {
            let label = match group {
                _ if g.group.is_empty() => None,
                SpendGroup::Key => Some(labels.get(&g.group).cloned().unwrap_or(g.group)),
                _ => Some(g.group),
            };
            out.push(ReportRow {
                date: date.clone(),
                group: label,
                spend: idlehands_store::money::nanos_to_usd(g.spend),
                requests: g.requests,
                total_tokens: g.prompt_tokens.saturating_add(g.completion_tokens),
            });
        }
    }
    axum::Json(out).into_response()
}

/// One key of the `group_by=api_key` report. Fields in name order: the bytes are those
/// `serde_json::json!` (sorted maps) wrote before, written straight from the store's rows (no
/// map, struct or copied string per key and model: 100,000 keys on five models are half a
/// million of them).
#[derive(Serialize)]
struct KeyReportRow<'a> {
    api_key: &'a str,
    model_details: KeyModelDetails<'a>,
    total_cost: f64,
    total_input_tokens: i64,
    total_output_tokens: i64,
}

/// A key's models: its run of the store's rows, in model order.
struct KeyModelDetails<'a>(&'a [KeyModelSpend]);

impl Serialize for KeyModelDetails<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|r| KeyModelDetail {
            model: &r.model,
            total_cost: idlehands_store::money::nanos_to_usd(r.spend),
            total_input_tokens: r.prompt_tokens,
            total_output_tokens: r.completion_tokens,
        }))
    }
}

#[derive(Serialize)]
struct KeyModelDetail<'a> {
    model: &'a str,
    total_cost: f64,
    total_input_tokens: i64,
    total_output_tokens: i64,
}

/// A key's run of rows and its sums over them.
struct KeyTotals {
    rows: std::ops::Range<usize>,
    nanos: i64,
    input: i64,
    output: i64,
}

/// The keys of the report, biggest spend first, in LiteLLM's shape.
struct KeyReport<'a> {
    rows: &'a [KeyModelSpend],
    keys: &'a [KeyTotals],
}

impl Serialize for KeyReport<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.keys.iter().filter_map(|k| {
            let models = self.rows.get(k.rows.clone())?;
            Some(KeyReportRow {
                api_key: &models.first()?.api_key,
                model_details: KeyModelDetails(models),
                total_cost: idlehands_store::money::nanos_to_usd(k.nanos),
                total_input_tokens: k.input,
                total_output_tokens: k.output,
            })
        }))
    }
}

/// `group_by=api_key` in LiteLLM's shape: one row per key over the whole range, biggest spend
/// first, with its spend per model.
async fn key_report(m: &Mgmt, q: &ReportQuery) -> Response {
    let (start, end) = match report_range(q) {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    let from = Utc.from_utc_datetime(&start.and_hms_opt(0, 0, 0).unwrap_or_default());
    let to =
        Utc.from_utc_datetime(&end.and_hms_opt(0, 0, 0).unwrap_or_default()) + Duration::days(1);
    let rows = match m.ledger.store().spend_by_key_and_model(from, to).await {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    // Rows come in key order: a key's models are one run.
    let mut keys: Vec<KeyTotals> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let same = keys
            .last()
            .and_then(|k| rows.get(k.rows.start))
            .is_some_and(|first| first.api_key == r.api_key);
        if !same {
            keys.push(KeyTotals {
                rows: i..i,
                nanos: 0,
                input: 0,
                output: 0,
            });
        }
        if let Some(k) = keys.last_mut() {
            k.rows.end = i + 1;
            k.nanos = k.nanos.saturating_add(r.spend);
            k.input = k.input.saturating_add(r.prompt_tokens);
            k.output = k.output.saturating_add(r.completion_tokens);
        }
    }
    let key_of = |k: &KeyTotals| rows.get(k.rows.start).map(|r| r.api_key.as_str());
    keys.sort_by(|a, b| {
        b.nanos
            .cmp(&a.nanos)
            .then_with(|| key_of(a).cmp(&key_of(b)))
    });
    // About the size of the answer, so that a month's report (69 MB at 100,000 keys) is not
    // copied into ever bigger buffers as it is written.
    let mut body = Vec::with_capacity(rows.len().saturating_mul(120) + keys.len() * 160);
    if let Err(e) = serde_json::to_writer(
        &mut body,
        &KeyReport {
            rows: &rows,
            keys: &keys,
        },
    ) {
        return bad(StoreError::Internal(format!("writing the key report: {e}")));
    }
    ([(http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The report's date range: `end_date` (default today) back to `start_date` (default 29 days
/// before), at most [`MAX_REPORT_DAYS`].
fn report_range(q: &ReportQuery) -> Result<(NaiveDate, NaiveDate), StoreError> {
    let end = date(q.end_date.as_deref(), "end_date")?.unwrap_or_else(|| Utc::now().date_naive());
    let start = date(q.start_date.as_deref(), "start_date")?.unwrap_or(end - Duration::days(29));
    if start > end {
        return Err(StoreError::bad_request(
            "start_date must not be after end_date",
            "start_date",
        ));
    }
    if (end - start).num_days() >= MAX_REPORT_DAYS {
        return Err(StoreError::bad_request(
            format!("the report covers at most {MAX_REPORT_DAYS} days"),
            "start_date",
        ));
    }
    Ok((start, end))
}

/// `group_by=team|customer` in LiteLLM's shape: per day, per team (its alias, else its id,
/// else `Unassigned Team`) or end user, the total and each model and key's part. A month of a
/// big store is millions of parts and an answer near a gigabyte: it is written a day at a time
/// by a task of the admin runtime while the client reads, not built whole first.
async fn litellm_report(m: &Mgmt, q: &ReportQuery, group: ReportGroup) -> Response {
    let (start, end) = match report_range(q) {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    let from = Utc.from_utc_datetime(&start.and_hms_opt(0, 0, 0).unwrap_or_default());
    let to =
        Utc.from_utc_datetime(&end.and_hms_opt(0, 0, 0).unwrap_or_default()) + Duration::days(1);
    let parts = match m.ledger.store().spend_by_day_and(group, from, to).await {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    // A few days' JSON in flight at most.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(2);
    tokio::spawn(write_report(m.ledger.clone(), group, parts, tx));
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let mut resp = Response::new(axum::body::Body::from_stream(body));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// Writes the report's JSON array to `tx` a day at a time (parts come in day order), until it
/// ends or the client goes.
async fn write_report(
    ledger: idlehands_store::Ledger,
    group: ReportGroup,
    mut parts: idlehands_store::DayGroupParts,
    tx: tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>,
) {
    let store = ledger.store();
    // Each group's name once (a team's alias, else its id), by group and by text: two teams
    // of one alias are one entry, as in LiteLLM's answer.
    let mut name_of: HashMap<Option<String>, usize> = HashMap::new();
    let mut name_ids: HashMap<String, usize> = HashMap::new();
    let mut names: Vec<String> = Vec::new();
    let mut next = parts.next();
    let mut first = true;
    while let Some(day_ms) = next.as_ref().map(|p| p.day_ms) {
        // The day's groups: (name, total, parts), in the order they first come.
        let mut groups: Vec<(String, i64, Vec<ReportPart>)> = Vec::new();
        let mut places: HashMap<usize, usize> = HashMap::new();
        while let Some(r) = next.take_if(|p| p.day_ms == day_ms) {
            let name = match name_of.get(&r.group) {
                Some(&n) => n,
                None => {
                    let text = match (group, &r.group) {
                        (ReportGroup::Team, Some(id)) => match store.get_team(id).await {
                            Ok(Some(t)) => t.team_alias.unwrap_or_else(|| id.clone()),
                            _ => id.clone(),
                        },
                        (ReportGroup::Team, None) => "Unassigned Team".to_string(),
                        (ReportGroup::Customer, g) => g.clone().unwrap_or_default(),
                    };
                    let n = *name_ids.entry(text.clone()).or_insert_with(|| {
                        names.push(text);
                        names.len() - 1
                    });
                    name_of.insert(r.group.clone(), n);
                    n
                }
            };
            let place = *places.entry(name).or_insert_with(|| {
                groups.push((names.get(name).cloned().unwrap_or_default(), 0, Vec::new()));
                groups.len() - 1
            });
            if let Some((_, total, parts)) = groups.get_mut(place) {
                *total = total.saturating_add(r.spend);
                parts.push(ReportPart {
                    api_key: r.api_key,
                    model: r.model,
                    spend: idlehands_store::money::nanos_to_usd(r.spend),
                    total_tokens: r.total_tokens,
                });
            }
            next = parts.next();
        }
        let mut chunk = if first { b"[".to_vec() } else { b",".to_vec() };
        first = false;
        let written = match group {
            ReportGroup::Team => serde_json::to_writer(&mut chunk, &team_day(day_ms, groups)),
            ReportGroup::Customer => {
                serde_json::to_writer(&mut chunk, &customer_day(day_ms, groups))
            }
        };
        if let Err(e) = written {
            // Not expected of plain structs. The error ends the body: the client sees the
            // answer cut off, not a shorter one that parses.
            tracing::error!(error = %e, "the spend report could not be written");
            let _ = tx.send(Err(std::io::Error::other(e))).await;
            return;
        }
        if tx.send(Ok(chunk.into())).await.is_err() {
            return;
        }
    }
    let end: &[u8] = if first { b"[]" } else { b"]" };
    let _ = tx.send(Ok(bytes::Bytes::from_static(end))).await;
}

fn day_text(day_ms: i64) -> String {
    idlehands_store::py_isoformat(
        &Utc.timestamp_millis_opt(day_ms)
            .single()
            .unwrap_or_default(),
    )
}

fn team_day(day_ms: i64, groups: Vec<(String, i64, Vec<ReportPart>)>) -> TeamDay {
    TeamDay {
        group_by_day: day_text(day_ms),
        teams: groups
            .into_iter()
            .map(|(team_name, total, metadata)| TeamPart {
                metadata,
                team_name,
                total_spend: idlehands_store::money::nanos_to_usd(total),
            })
            .collect(),
    }
}

fn customer_day(day_ms: i64, groups: Vec<(String, i64, Vec<ReportPart>)>) -> CustomerDay {
    CustomerDay {
        customers: groups
            .into_iter()
            .map(|(customer, total, metadata)| CustomerPart {
                customer,
                metadata,
                total_spend: idlehands_store::money::nanos_to_usd(total),
            })
            .collect(),
        group_by_day: day_text(day_ms),
    }
}

// The team and customer reports' JSON, fields in name order (the order `serde_json::json!`
// maps wrote), typed: a month with many keys has a part per day, key and model, millions of
// maps otherwise.
#[derive(Serialize)]
struct ReportPart {
    api_key: String,
    model: String,
    spend: f64,
    total_tokens: i64,
}

#[derive(Serialize)]
struct TeamPart {
    metadata: Vec<ReportPart>,
    team_name: String,
    total_spend: f64,
}

#[derive(Serialize)]
struct TeamDay {
    group_by_day: String,
    teams: Vec<TeamPart>,
}

#[derive(Serialize)]
struct CustomerPart {
    customer: String,
    metadata: Vec<ReportPart>,
    total_spend: f64,
}

#[derive(Serialize)]
struct CustomerDay {
    customers: Vec<CustomerPart>,
    group_by_day: String,
}
