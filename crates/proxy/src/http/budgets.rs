//! LiteLLM's named budgets: `POST /budget/new`, `/budget/update`, `/budget/delete` (proxy
//! admins), `POST /budget/info` (any key), `GET /budget/list` and `/budget/settings` (those
//! who read everything). End users and organizations follow one with `budget_id`
//! (`/customer/new|update`, `/organization/new|update`); a change here reaches every follower
//! at once. `tpd_limit`, `model_max_budget` and
//! `budget_reset_at` are named as ignored: per-model budgets and daily token limits are not
//! kept on named budgets, and each follower's window starts when it begins to follow.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, Uri};
use idlehands_store::budget_table::{BudgetRequest, BudgetRow};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::keys::{FieldRules, Mgmt, Shared, bad_request, ignored_fields, query, tri};
use super::roles::{caller_role, require_admin, require_reader};
use crate::ledger::seams::store_error;

pub(super) const FIELDS: FieldRules = FieldRules {
    entity: "budget",
    acted: &[
        "budget_id",
        "max_budget",
        "soft_budget",
        "budget_duration",
        "tpm_limit",
        "rpm_limit",
        "max_parallel_requests",
    ],
    inert: &[
        (
            "tpd_limit",
            "daily token limits are not kept on named budgets; ignored",
        ),
        (
            "model_max_budget",
            "per-model budgets are not kept on named budgets (set them on keys); ignored",
        ),
        (
            "budget_reset_at",
            "each follower's window starts when it begins to follow (or when the duration changes); ignored",
        ),
    ],
};

pub(crate) fn routes(state: Arc<Mgmt>) -> Router {
    Router::new()
        .route(
            "/budget/new",
            post(|State(m): Shared, h: HeaderMap, b: Bytes| write(m, h, b, Change::New)),
        )
        .route(
            "/budget/update",
            post(|State(m): Shared, h: HeaderMap, b: Bytes| write(m, h, b, Change::Update)),
        )
        .route(
            "/budget/delete",
            post(|State(m): Shared, h: HeaderMap, b: Bytes| delete(m, h, b)),
        )
        .route(
            "/budget/info",
            post(|State(m): Shared, h: HeaderMap, b: Bytes| info(m, h, b)),
        )
        .route(
            "/budget/list",
            get(|State(m): Shared, h: HeaderMap| list(m, h)),
        )
        .route(
            "/budget/settings",
            get(|State(m): Shared, h: HeaderMap, u: Uri| settings(m, h, u)),
        )
        .with_state(state)
}

/// A named budget as LiteLLM's `LiteLLM_BudgetTable` row.
pub(crate) fn row_json(r: &BudgetRow) -> Value {
    let usd = |n: Option<i64>| n.map(idlehands_store::money::nanos_to_usd);
    let l = &r.limits;
    json!({
        "budget_id": r.budget_id,
        "max_budget": usd(l.max_budget),
        "soft_budget": usd(l.soft_budget),
        "max_parallel_requests": l.max_parallel_requests,
        "tpm_limit": l.tpm_limit,
        "rpm_limit": l.rpm_limit,
        "tpd_limit": Value::Null,
        "model_max_budget": Value::Null,
        "budget_duration": l.budget_duration,
        "budget_reset_at": Value::Null,
        "created_at": idlehands_store::py_isoformat(&r.created_at),
        "created_by": r.created_by,
        "updated_at": idlehands_store::py_isoformat(&r.updated_at),
        "updated_by": r.updated_by,
    })
}

fn body_of<T: serde::de::DeserializeOwned>(bytes: &Bytes) -> Result<T, crate::error::ProxyError> {
    serde_json::from_slice(bytes).map_err(|e| bad_request(format!("Invalid body: {e}"), "body"))
}

#[derive(Clone, Copy, PartialEq)]
enum Change {
    New,
    Update,
}

async fn write(m: Arc<Mgmt>, headers: HeaderMap, bytes: Bytes, change: Change) -> Response {
    let route = match change {
        Change::New => "/budget/new",
        Change::Update => "/budget/update",
    };
    let by = tri!(require_admin(&m, &headers, route).await);
    let req: BudgetRequest = tri!(body_of(&bytes));
    let ignored = ignored_fields(&FIELDS, route, &bytes);
    let row = match change {
        Change::New => m.ledger.new_named_budget(&req, by.as_deref()).await,
        Change::Update => m.ledger.update_named_budget(&req, by.as_deref()).await,
    };
    let row = tri!(row.map_err(|e| store_error(&e)));
    if change == Change::Update {
        // Tags that follow it hold their calls to its new max_budget at once.
        crate::ledger::tag_budgets::changed(&m.app, &m.ledger).await;
    }
    let mut out = row_json(&row);
    if !ignored.is_empty() {
        out["ignored_fields"] = Value::Object(ignored);
    }
    axum::Json(out).into_response()
}

#[derive(Deserialize)]
struct DeleteAsk {
    id: String,
}

async fn delete(m: Arc<Mgmt>, headers: HeaderMap, bytes: Bytes) -> Response {
    tri!(require_admin(&m, &headers, "/budget/delete").await);
    let ask: DeleteAsk = tri!(body_of(&bytes));
    let before = tri!(
        m.ledger
            .store()
            .budget_row(&ask.id)
            .await
            .map_err(|e| store_error(&e))
    );
    tri!(
        m.ledger
            .delete_named_budget(&ask.id)
            .await
            .map_err(|e| store_error(&e))
    );
    // LiteLLM answers with the row deleted.
    match &before {
        Some(r) => axum::Json(row_json(r)).into_response(),
        None => axum::Json(Value::Null).into_response(),
    }
}

#[derive(Deserialize)]
struct InfoAsk {
    budgets: Vec<String>,
}

async fn info(m: Arc<Mgmt>, headers: HeaderMap, bytes: Bytes) -> Response {
    tri!(caller_role(&m, &headers).await);
    let ask: InfoAsk = tri!(body_of(&bytes));
    if ask.budgets.is_empty() {
        return bad_request(
            "Specify list of budget id's to query. Passed in=[]",
            "budgets",
        )
        .into_response();
    }
    let rows = tri!(
        m.ledger
            .store()
            .budget_rows(Some(&ask.budgets))
            .await
            .map_err(|e| store_error(&e))
    );
    axum::Json(rows.iter().map(row_json).collect::<Vec<_>>()).into_response()
}

async fn list(m: Arc<Mgmt>, headers: HeaderMap) -> Response {
    tri!(require_reader(&m, &headers, "/budget/list").await);
    let rows = tri!(
        m.ledger
            .store()
            .budget_rows(None)
            .await
            .map_err(|e| store_error(&e))
    );
    axum::Json(rows.iter().map(row_json).collect::<Vec<_>>()).into_response()
}

#[derive(Deserialize, Default)]
struct SettingsAsk {
    budget_id: Option<String>,
}

/// The fields the dashboard may set on a named budget, with their values (LiteLLM's
/// `ConfigList` items).
async fn settings(m: Arc<Mgmt>, headers: HeaderMap, uri: Uri) -> Response {
    tri!(require_reader(&m, &headers, "/budget/settings").await);
    let ask: SettingsAsk = tri!(query(&uri));
    let Some(id) = ask.budget_id else {
        return bad_request("budget_id is required", "budget_id").into_response();
    };
    let row = tri!(
        m.ledger
            .store()
            .budget_row(&id)
            .await
            .map_err(|e| store_error(&e))
    );
    let current: Map<String, Value> = match row.as_ref().map(row_json) {
        Some(Value::Object(o)) => o,
        _ => Map::new(),
    };
    let fields = [
        (
            "max_budget",
            "Float",
            "USD the follower may spend in a window; calls over it are refused.",
        ),
        (
            "soft_budget",
            "Float",
            "USD at which a budget alert is due; calls go on.",
        ),
        (
            "max_parallel_requests",
            "Integer",
            "Calls a follower may have running at once.",
        ),
        (
            "tpm_limit",
            "Integer",
            "Tokens a follower may use per minute.",
        ),
        (
            "rpm_limit",
            "Integer",
            "Calls a follower may make per minute.",
        ),
        (
            "budget_duration",
            "String",
            "How long a window lasts before spend starts again at 0 (30s, 1h, 1d, 30d, 1mo).",
        ),
    ];
    let out: Vec<Value> = fields
        .iter()
        .map(|(name, kind, about)| {
            json!({
                "field_name": name,
                "field_type": kind,
                "field_description": about,
                "field_value": current.get(*name).cloned().unwrap_or(Value::Null),
                "stored_in_db": true,
                "field_default_value": Value::Null,
            })
        })
        .collect();
    axum::Json(out).into_response()
}
