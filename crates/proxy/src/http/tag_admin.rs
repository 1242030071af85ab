//! LiteLLM's tag management: `POST /tag/new`, `/tag/update`, `/tag/delete` (proxy admins),
//! `POST /tag/info` (admins and admin viewers), `GET /tag/list` (those, every tag; an internal
//! user the tags their own keys' calls carried). A tag has a description, the models it was
//! given to, and a named budget (`/budget/*`): `budget_id`, or budget fields that make one.
//! The budget's `max_budget` (with its `budget_duration`, or for good without one),
//! `rpm_limit`, `tpm_limit` and `max_parallel_requests` hold every call carrying the tag,
//! exactly and fleet-wide (`ledger::tag_budgets`).
//!
//! `models` (model ids or model names) adds the tag to those stored deployments' `tags`, for
//! tag routing, as LiteLLM does; a config.yaml deployment among them is refused before
//! anything is written (LiteLLM writes the tag, then answers 500). Differences from LiteLLM,
//! each for the user: a taken name and a missing tag are 400 and 404 (LiteLLM wraps them in
//! 500); `/tag/update` leaves fields it is not sent (LiteLLM clears the description and
//! models); `budget_id` with budget fields is refused (LiteLLM drops the fields); `spend` is
//! not set (a tag's spend is the sum of its calls' rows) and `soft_budget` sends no alert:
//! both named in `ignored_fields`. LiteLLM does not hold a tag's `max_parallel_requests`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::NaiveDate;
use http::{HeaderMap, Uri};
use idlehands_store::budget_table::{BudgetRequest, BudgetRow};
use idlehands_store::{StoreError, TagRow};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::keys::{FieldRules, Mgmt, Shared, bad_request, ignored_fields, query, tri};
use super::model_admin::{announce, error, json_body};
use super::roles::{caller_role, require_admin, require_reader};
use crate::error::ProxyError;
use crate::ledger::seams::store_error;
use crate::ledger::tag_budgets;

pub(crate) fn routes(state: Arc<Mgmt>) -> Router {
    Router::new()
        .route("/tag/new", post(new_tag))
        .route("/tag/update", post(update_tag))
        .route("/tag/info", post(info))
        .route("/tag/list", get(list))
        .route("/tag/delete", post(delete))
        .with_state(state)
}

const NOT_ENFORCED: &str = "kept on the tag's budget; no alert is sent when it is crossed";

const FIELDS: FieldRules = FieldRules {
    entity: "tag",
    acted: &[
        "name",
        "description",
        "models",
        "budget_id",
        "max_budget",
        "budget_duration",
        "tpm_limit",
        "rpm_limit",
        "max_parallel_requests",
    ],
    inert: &[
        ("soft_budget", NOT_ENFORCED),
        ("model_info", MODEL_INFO),
        ("model_max_budget", MODEL_MAX_BUDGET),
        ("spend", SPEND),
    ],
};

const MODEL_INFO: &str = "made from `models` (each stored deployment id's model name); not set";
const MODEL_MAX_BUDGET: &str =
    "per-model budgets are not kept on named budgets (set them on keys); ignored";
const SPEND: &str = "a tag's spend is the sum of its calls' spend rows; not set";

/// The body's fields that change nothing or are not enforced, with the reason (`soft_budget`
/// is kept on the budget, so named though stored).
fn ignored(route: &str, bytes: &[u8]) -> Map<String, Value> {
    ignored_fields(&FIELDS, route, bytes)
}

fn not_found(message: String) -> ProxyError {
    error(404, "not_found_error", message, None)
}

/// The tag's name: required, not blank.
fn name_of(body: &Map<String, Value>) -> Result<String, ProxyError> {
    match body.get("name") {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            Err(bad_request("name is required", "name"))
        }
        Some(_) => Err(bad_request("name must be a string", "name")),
    }
}

/// A field absent (`None`), `null` (`Some(None)`) or set.
fn string_patch(
    body: &Map<String, Value>,
    field: &str,
) -> Result<Option<Option<String>>, ProxyError> {
    match body.get(field) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
        Some(_) => Err(bad_request(format!("{field} must be a string"), field)),
    }
}

fn models_patch(body: &Map<String, Value>) -> Result<Option<Vec<String>>, ProxyError> {
    match body.get("models") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(Vec::new())),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad_request("models must be a list of strings", "models"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(bad_request("models must be a list of strings", "models")),
    }
}

/// The budget fields of the body (`budget_id` and the limits).
fn budget_request(bytes: &[u8]) -> Result<BudgetRequest, ProxyError> {
    serde_json::from_slice(bytes).map_err(|e| bad_request(format!("Invalid body: {e}"), "body"))
}

fn both_refused() -> ProxyError {
    bad_request(
        "Send either budget_id (a budget made with /budget/new) or budget fields (max_budget, budget_duration, ...), not both",
        "budget_id",
    )
}

/// The tag as LiteLLM's `TagConfig` shows it, with its budget's row when it has one.
fn tag_json(t: &TagRow, budget: Option<&BudgetRow>) -> Value {
    let model_info: Value = serde_json::from_str(&t.model_info).unwrap_or_else(|_| json!({}));
    let mut out = json!({
        "name": t.tag_name,
        "description": t.description,
        "models": t.models,
        "model_info": model_info,
        "created_at": idlehands_store::py_isoformat(&t.created_at),
        "updated_at": idlehands_store::py_isoformat(&t.updated_at),
        "created_by": t.created_by,
    });
    if let Some(b) = budget {
        out["litellm_budget_table"] = super::budgets::row_json(b);
    }
    out
}

/// The stored deployments `models` names (by id, else by model name), checked before any
/// write: a config.yaml deployment among them is refused. Returns the stored ids to tag and
/// the model info (stored id -> model name, for the entries that are stored ids).
async fn stored_targets(
    m: &Mgmt,
    models: &[String],
) -> Result<(Vec<String>, Map<String, Value>), ProxyError> {
    let runtime = m.app.runtime.load();
    let mut targets: Vec<String> = Vec::new();
    let mut info = Map::new();
    for entry in models {
        let by_id: Vec<_> = runtime
            .router
            .deployments()
            .filter(|d| d.id == *entry)
            .collect();
        let matching: Vec<_> = if by_id.is_empty() {
            runtime
                .router
                .deployments()
                .filter(|d| d.model_name == *entry)
                .collect()
        } else {
            by_id
        };
        for d in matching {
            let row = match &m.models {
                Some(sync) => sync
                    .store
                    .get_model(&d.id)
                    .await
                    .map_err(|e| store_error(&e))?,
                None => None,
            };
            let Some(row) = row else {
                return Err(bad_request(
                    format!(
                        "Model {} (model_name {}) is defined in config.yaml: give it the tag there (litellm_params.tags); only deployments added with /model/new are tagged here",
                        d.id, d.model_name
                    ),
                    "models",
                ));
            };
            if row.model_id == *entry {
                info.insert(row.model_id.clone(), Value::String(row.model_name.clone()));
            }
            if !targets.contains(&row.model_id) {
                targets.push(row.model_id);
            }
        }
    }
    Ok((targets, info))
}

/// Adds `tag` to the `tags` of the stored deployments `ids` (secrets stay sealed: only `tags`
/// is touched), then rebuilds the router here and on the fleet.
async fn tag_deployments(
    m: &Mgmt,
    tag: &str,
    ids: &[String],
    by: Option<&str>,
) -> Result<(), ProxyError> {
    let Some(sync) = &m.models else {
        return Ok(());
    };
    if ids.is_empty() {
        return Ok(());
    }
    for id in ids {
        sync.store
            .update_model(id, by, None, |cur| {
                let mut params: Value = serde_json::from_str(&cur.litellm_params)
                    .map_err(|e| StoreError::Internal(format!("stored litellm_params: {e}")))?;
                if let Value::Object(p) = &mut params {
                    let tags = p.entry("tags").or_insert_with(|| json!([]));
                    if !tags.is_array() {
                        *tags = json!([]);
                    }
                    if let Value::Array(list) = tags
                        && !list.iter().any(|t| t.as_str() == Some(tag))
                    {
                        list.push(Value::String(tag.to_string()));
                    }
                }
                let mut next = cur.clone();
                next.litellm_params = params.to_string();
                Ok(next)
            })
            .await
            .map_err(|e| store_error(&e))?;
    }
    announce(sync).await;
    Ok(())
}

async fn budget_of(m: &Mgmt, t: &TagRow) -> Result<Option<BudgetRow>, ProxyError> {
    match &t.budget_id {
        Some(id) => m
            .ledger
            .store()
            .budget_row(id)
            .await
            .map_err(|e| store_error(&e)),
        None => Ok(None),
    }
}

fn answer(
    message: String,
    t: &TagRow,
    budget: Option<&BudgetRow>,
    ignored: Map<String, Value>,
) -> Response {
    let mut out = json!({ "message": message, "tag": tag_json(t, budget) });
    if !ignored.is_empty() {
        out["ignored_fields"] = Value::Object(ignored);
    }
    axum::Json(out).into_response()
}

async fn new_tag(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    let by = tri!(require_admin(&m, &headers, "/tag/new").await);
    let body = tri!(json_body(&bytes));
    let name = tri!(name_of(&body));
    let description = tri!(string_patch(&body, "description")).flatten();
    let models = tri!(models_patch(&body)).unwrap_or_default();
    let req = tri!(budget_request(&bytes));
    let budget_id = req.budget_id.clone().filter(|s| !s.trim().is_empty());
    if budget_id.is_some() && req.limits.sets_any() {
        return both_refused().into_response();
    }
    let store = m.ledger.store();
    if tri!(store.get_tag(&name).await.map_err(|e| store_error(&e))).is_some() {
        return bad_request(format!("Tag {name} already exists"), "name").into_response();
    }
    let (targets, model_info) = tri!(stored_targets(&m, &models).await);
    // A budget made for this tag alone is deleted again if the tag is not written.
    let made = if req.limits.sets_any() {
        let limits = BudgetRequest {
            budget_id: None,
            limits: req.limits.clone(),
        };
        Some(tri!(
            m.ledger
                .new_named_budget(&limits, by.as_deref())
                .await
                .map_err(|e| store_error(&e))
        ))
    } else {
        None
    };
    // As stored: whole milliseconds.
    let now = chrono::DateTime::from_timestamp_millis(chrono::Utc::now().timestamp_millis())
        .unwrap_or_else(chrono::Utc::now);
    let row = TagRow {
        tag_name: name.clone(),
        description,
        models,
        model_info: Value::Object(model_info).to_string(),
        budget_id: made.as_ref().map(|b| b.budget_id.clone()).or(budget_id),
        created_at: now,
        created_by: by.clone(),
        updated_at: now,
    };
    let written = store.insert_tag(&row).await;
    if !matches!(written, Ok(true))
        && let Some(b) = &made
        && let Err(e) = m.ledger.delete_named_budget(&b.budget_id).await
    {
        tracing::warn!(error = %e, budget = b.budget_id.as_str(), "a budget made for a tag that was not written could not be deleted");
    }
    match written {
        Ok(true) => {}
        Ok(false) => {
            return bad_request(format!("Tag {name} already exists"), "name").into_response();
        }
        Err(e) => return store_error(&e).into_response(),
    }
    tri!(tag_deployments(&m, &name, &targets, by.as_deref()).await);
    tag_budgets::changed(&m.app, &m.ledger).await;
    let budget = tri!(budget_of(&m, &row).await);
    answer(
        format!("Tag {name} created successfully"),
        &row,
        budget.as_ref(),
        ignored("/tag/new", &bytes),
    )
}

async fn update_tag(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    let by = tri!(require_admin(&m, &headers, "/tag/update").await);
    let body = tri!(json_body(&bytes));
    let name = tri!(name_of(&body));
    let description = tri!(string_patch(&body, "description"));
    let models = tri!(models_patch(&body));
    let relink = tri!(string_patch(&body, "budget_id"));
    let req = tri!(budget_request(&bytes));
    if matches!(relink, Some(Some(_))) && req.limits.sets_any() {
        return both_refused().into_response();
    }
    let store = m.ledger.store();
    let Some(current) = tri!(store.get_tag(&name).await.map_err(|e| store_error(&e))) else {
        return not_found(format!("Tag {name} not found")).into_response();
    };
    let (targets, model_info) = match &models {
        Some(list) => {
            let (t, i) = tri!(stored_targets(&m, list).await);
            (t, Some(i))
        }
        None => (Vec::new(), None),
    };
    // Budget fields change the budget the tag follows (shared with whoever else follows it,
    // as LiteLLM), or make one when it follows none (or stops following one here).
    let keep = match &relink {
        Some(None) => None,
        _ => current.budget_id.clone(),
    };
    let mut made: Option<String> = None;
    if req.limits.sets_any() {
        match &keep {
            Some(id) => {
                let change = BudgetRequest {
                    budget_id: Some(id.clone()),
                    limits: req.limits.clone(),
                };
                tri!(
                    m.ledger
                        .update_named_budget(&change, by.as_deref())
                        .await
                        .map_err(|e| store_error(&e))
                );
            }
            None => {
                let limits = BudgetRequest {
                    budget_id: None,
                    limits: req.limits.clone(),
                };
                let row = tri!(
                    m.ledger
                        .new_named_budget(&limits, by.as_deref())
                        .await
                        .map_err(|e| store_error(&e))
                );
                made = Some(row.budget_id);
            }
        }
    }
    let budget_id = match (made, relink) {
        (Some(id), _) => Some(id),
        (None, Some(Some(id))) if !id.trim().is_empty() => Some(id),
        (None, Some(_)) => None,
        (None, None) => current.budget_id.clone(),
    };
    let written = store
        .update_tag(&name, |cur| {
            let mut next = cur.clone();
            if let Some(d) = description {
                next.description = d;
            }
            if let (Some(list), Some(info)) = (models, model_info) {
                next.models = list;
                next.model_info = Value::Object(info).to_string();
            }
            next.budget_id = budget_id;
            Ok(next)
        })
        .await;
    let row = match written {
        Ok(Some(row)) => row,
        Ok(None) => return not_found(format!("Tag {name} not found")).into_response(),
        Err(e) => return store_error(&e).into_response(),
    };
    tri!(tag_deployments(&m, &name, &targets, by.as_deref()).await);
    tag_budgets::changed(&m.app, &m.ledger).await;
    let budget = tri!(budget_of(&m, &row).await);
    answer(
        format!("Tag {name} updated successfully"),
        &row,
        budget.as_ref(),
        ignored("/tag/update", &bytes),
    )
}

async fn info(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    tri!(require_reader(&m, &headers, "/tag/info").await);
    let body = tri!(json_body(&bytes));
    let names: Vec<String> = match body.get("names") {
        Some(Value::Array(a)) => tri!(
            a.iter()
                .map(|v| v
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad_request("names must be a list of strings", "names")))
                .collect::<Result<Vec<_>, _>>()
        ),
        None | Some(Value::Null) => {
            return bad_request("names is required", "names").into_response();
        }
        Some(_) => return bad_request("names must be a list of strings", "names").into_response(),
    };
    let rows = tri!(
        tag_budgets::read(m.ledger.store())
            .await
            .map_err(|e| store_error(&e))
    );
    let missing: Vec<String> = names
        .iter()
        .filter(|n| !rows.tags.iter().any(|t| &t.tag_name == *n))
        .cloned()
        .collect();
    if !missing.is_empty() {
        let missing = crate::diagnostics::py_list(&missing);
        return not_found(format!("Tags not found: {missing}")).into_response();
    }
    let mut out = Map::new();
    for t in rows.tags.iter().filter(|t| names.contains(&t.tag_name)) {
        out.insert(t.tag_name.clone(), tag_json(t, rows.budget_of(t)));
    }
    axum::Json(Value::Object(out)).into_response()
}

#[derive(Deserialize)]
struct ListQuery {
    start_date: Option<String>,
    end_date: Option<String>,
}

/// LiteLLM's checks of `/tag/list`'s dates: both or neither, `YYYY-MM-DD`, in order.
fn list_days(q: &ListQuery) -> Result<Option<(NaiveDate, NaiveDate)>, ProxyError> {
    let (start, end) = match (&q.start_date, &q.end_date) {
        (None, None) => return Ok(None),
        (Some(s), Some(e)) => (s, e),
        _ => {
            return Err(bad_request(
                "start_date and end_date must be provided together",
                "start_date",
            ));
        }
    };
    let day = |s: &str| {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|e| {
            bad_request(
                format!("Invalid date format, expected YYYY-MM-DD: {e}"),
                "start_date",
            )
        })
    };
    let (start, end) = (day(start)?, day(end)?);
    if start > end {
        return Err(bad_request(
            "start_date must be on or before end_date",
            "start_date",
        ));
    }
    Ok(Some((start, end)))
}

const DYNAMIC: &str = "This is just a spend tag that was passed dynamically in a request. It does not control any LLM models.";

async fn list(State(m): Shared, headers: HeaderMap, uri: Uri) -> Response {
    const ROUTE: &str = "/tag/list";
    let (_, role) = tri!(caller_role(&m, &headers).await);
    let q: ListQuery = tri!(query(&uri));
    let days = tri!(list_days(&q));
    // An internal user sees the tags their own keys' calls carried (and the stored ones among
    // them), as LiteLLM scopes the list.
    let scope = match tri!(role.reads_as(ROUTE)) {
        None => None,
        Some(user) => {
            let info = tri!(m.ledger.user_info(user).await.map_err(|e| store_error(&e)));
            // The caller's key is among them: the role is its user's.
            Some(
                info.keys
                    .iter()
                    .map(|k| k.token.clone())
                    .collect::<Vec<_>>(),
            )
        }
    };
    let store = m.ledger.store();
    let seen = tri!(
        store
            .tags_seen(scope.as_deref(), days)
            .await
            .map_err(|e| store_error(&e))
    );
    if scope.is_some() && seen.is_empty() {
        return axum::Json(json!([])).into_response();
    }
    let mut tags = tri!(store.list_tags().await.map_err(|e| store_error(&e)));
    if scope.is_some() {
        tags.retain(|t| seen.iter().any(|s| s.tag == t.tag_name));
    }
    let rows = tri!(
        tag_budgets::TagRows::with_budgets(store, tags)
            .await
            .map_err(|e| store_error(&e))
    );
    let mut out: Vec<Value> = rows
        .tags
        .iter()
        .map(|t| tag_json(t, rows.budget_of(t)))
        .collect();
    for s in seen
        .iter()
        .filter(|s| !rows.tags.iter().any(|t| t.tag_name == s.tag))
    {
        out.push(json!({
            "name": s.tag,
            "description": DYNAMIC,
            "models": Value::Null,
            "created_at": idlehands_store::py_isoformat(&s.first),
            "updated_at": idlehands_store::py_isoformat(&s.last),
        }));
    }
    axum::Json(Value::Array(out)).into_response()
}

async fn delete(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    tri!(require_admin(&m, &headers, "/tag/delete").await);
    let body = tri!(json_body(&bytes));
    let name = tri!(name_of(&body));
    match m.ledger.store().delete_tag(&name).await {
        Ok(Some(_)) => {}
        Ok(None) => return not_found(format!("Tag {name} not found")).into_response(),
        Err(e) => return store_error(&e).into_response(),
    }
    tag_budgets::changed(&m.app, &m.ledger).await;
    axum::Json(json!({ "message": format!("Tag {name} deleted successfully") })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: Option<&str>, e: Option<&str>) -> ListQuery {
        ListQuery {
            start_date: s.map(str::to_string),
            end_date: e.map(str::to_string),
        }
    }

    #[test]
    fn list_dates_are_checked_as_litellm_checks_them() {
        assert!(list_days(&q(None, None)).unwrap().is_none());
        let one = |s, e| list_days(&q(s, e)).unwrap_err().to_string();
        assert!(one(Some("2026-01-01"), None).contains("must be provided together"));
        assert!(one(Some("2026-1-x"), Some("2026-01-02")).contains("Invalid date format"));
        assert!(one(Some("2026-01-03"), Some("2026-01-02")).contains("on or before"));
        let (a, b) = list_days(&q(Some("2026-01-01"), Some("2026-01-01")))
            .unwrap()
            .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn inert_and_unenforced_fields_are_named() {
        let bytes = br#"{"name":"t","soft_budget":5,"tpm_limit":5,"spend":3,"model_info":{},"max_budget":1,"rpm_limit":null}"#;
        let out = ignored("/tag/update", bytes);
        assert_eq!(out["soft_budget"], NOT_ENFORCED);
        assert!(!out.contains_key("tpm_limit"));
        assert_eq!(out["spend"], SPEND);
        assert_eq!(out["model_info"], MODEL_INFO);
        assert!(!out.contains_key("max_budget"));
        assert!(!out.contains_key("rpm_limit"));
    }
}
