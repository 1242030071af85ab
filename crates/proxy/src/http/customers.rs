//! `/customer/*` (and LiteLLM's `/end_user/*` aliases): end users on the store. Changes need a
//! proxy admin; a proxy admin viewer reads them.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, Uri};
use idlehands_store::customers::{CustomerIdsRequest, NewCustomerRequest, UpdateCustomerRequest};

use super::keys::{Mgmt, Shared, admin, body, query, reply, reply_noting, tri};
use super::roles::require_reader;
use crate::ledger::seams::store_error;

pub(crate) fn routes(state: Arc<Mgmt>) -> Router {
    let mut r = Router::new();
    for base in ["/customer", "/end_user"] {
        r = r
            .route(&format!("{base}/new"), post(new))
            .route(&format!("{base}/info"), get(info))
            .route(&format!("{base}/update"), post(update))
            .route(&format!("{base}/delete"), post(delete))
            .route(&format!("{base}/block"), post(block))
            .route(&format!("{base}/unblock"), post(unblock))
            .route(&format!("{base}/list"), get(list));
    }
    r.with_state(state)
}

const CUSTOMER_FIELDS_ACTED: [&str; 11] = [
    "user_id",
    "budget_id",
    "alias",
    "blocked",
    "metadata",
    "max_budget",
    "budget_duration",
    "tpm_limit",
    "rpm_limit",
    "max_parallel_requests",
    "user_ids",
];

pub(super) const FIELDS: super::keys::FieldRules = super::keys::FieldRules {
    entity: "end-user",
    acted: &CUSTOMER_FIELDS_ACTED,
    inert: &[
        (
            "allowed_model_region",
            "not stored; requests are routed as if it were unset",
        ),
        (
            "default_model",
            "not stored; requests are routed as if it were unset",
        ),
        (
            "soft_budget",
            "stored and shown; no alert is sent when it is crossed",
        ),
    ],
};

fn ignored(route: &str, bytes: &[u8]) -> serde_json::Map<String, serde_json::Value> {
    super::keys::ignored_fields(&FIELDS, route, bytes)
}

async fn new(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    tri!(admin(&m, &headers, "/customer/new").await);
    let req: NewCustomerRequest = tri!(body(&bytes));
    reply_noting(
        m.ledger.new_customer(req).await,
        ignored("/customer/new", &bytes),
    )
}

#[derive(serde::Deserialize)]
struct InfoQuery {
    end_user_id: Option<String>,
}

async fn info(State(m): Shared, headers: HeaderMap, uri: Uri) -> Response {
    tri!(require_reader(&m, &headers, "/customer/info").await);
    let q: InfoQuery = tri!(query(&uri));
    let Some(id) = q.end_user_id.filter(|u| !u.trim().is_empty()) else {
        let e = idlehands_store::StoreError::bad_request(
            "Malformed request. No end_user_id passed in.",
            "end_user_id",
        );
        return store_error(&e).into_response();
    };
    reply(m.ledger.customer_info(&id).await)
}

async fn update(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    tri!(admin(&m, &headers, "/customer/update").await);
    let req: UpdateCustomerRequest = tri!(body(&bytes));
    reply_noting(
        m.ledger.update_customer(req).await,
        ignored("/customer/update", &bytes),
    )
}

async fn delete(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    tri!(admin(&m, &headers, "/customer/delete").await);
    let req: CustomerIdsRequest = tri!(body(&bytes));
    reply(m.ledger.delete_customers(req).await)
}

async fn block(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    tri!(admin(&m, &headers, "/customer/block").await);
    let req: CustomerIdsRequest = tri!(body(&bytes));
    reply(m.ledger.set_customers_blocked(req, true).await)
}

async fn unblock(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    tri!(admin(&m, &headers, "/customer/unblock").await);
    let req: CustomerIdsRequest = tri!(body(&bytes));
    reply(m.ledger.set_customers_blocked(req, false).await)
}

async fn list(State(m): Shared, headers: HeaderMap) -> Response {
    tri!(require_reader(&m, &headers, "/customer/list").await);
    reply(m.ledger.list_customers().await)
}
