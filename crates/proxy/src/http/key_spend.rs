//! `POST /key/{key}/reset_spend` (`{"reset_to": USD}`): LiteLLM's way to lower a key's spend
//! (to 0 to give its budget back), for a proxy admin or an admin of the key's team. The
//! value must be a number from 0 up to both the key's spend and its `max_budget`. Answers
//! LiteLLM's `{key_hash, spend, previous_spend, max_budget, budget_reset_at}`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::HeaderMap;
use idlehands_store::StoreError;
use idlehands_store::keygen::token_of;
use idlehands_store::money::nanos_to_usd;
use serde_json::{Value, json};

use super::keys::{Mgmt, Shared, forbidden, tri};
use super::roles::{Role, admin_of_team, caller_role, not_allowed};
use crate::error::ProxyError;
use crate::ledger::seams::store_error;

const ROUTE: &str = "/key/{key}/reset_spend";

pub(crate) fn routes(state: Arc<Mgmt>) -> Router {
    Router::new()
        .route(ROUTE, post(reset_spend))
        .with_state(state)
}

fn bad(message: &str) -> ProxyError {
    store_error(&StoreError::bad_request(message, "reset_to"))
}

async fn reset_spend(
    State(m): Shared,
    Path(key): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let (_, role) = tri!(caller_role(&m, &headers).await);
    let body: Value =
        tri!(serde_json::from_slice(&bytes).map_err(|_| bad("reset_to must be a float")));
    // A number, not a boolean or a numeric string (LiteLLM refuses those too).
    let Some(reset_to) = body.get("reset_to").and_then(Value::as_f64) else {
        return bad("reset_to must be a float").into_response();
    };
    let token = token_of(&key);
    let record = tri!(
        m.ledger
            .store()
            .get_key(&token)
            .await
            .map_err(|e| store_error(&e))
    );
    let Some(record) = record else {
        return store_error(&StoreError::NotFound {
            message: "Key not found.".to_owned(),
            param: Some("key"),
        })
        .into_response();
    };
    let by = match &role {
        Role::Admin(u) => u.clone(),
        Role::Internal(u) => {
            let admin = match record.team_id.as_deref() {
                Some(t) => tri!(admin_of_team(&m, t, u).await),
                None => false,
            };
            if !admin {
                return forbidden(
                    "Only proxy admins or team admins of the key's team can reset its spend."
                        .to_owned(),
                )
                .into_response();
            }
            u.clone()
        }
        _ => return not_allowed(ROUTE, &role).into_response(),
    };
    let (key, previous) = tri!(
        m.ledger
            .reset_key_spend(&token, reset_to, Some(&by))
            .await
            .map_err(|e| store_error(&e))
    );
    axum::Json(json!({
        "key_hash": key.token,
        "spend": nanos_to_usd(key.spend),
        "previous_spend": nanos_to_usd(previous),
        "max_budget": key.max_budget.map(nanos_to_usd),
        "budget_reset_at": key.budget_reset_at,
    }))
    .into_response()
}
