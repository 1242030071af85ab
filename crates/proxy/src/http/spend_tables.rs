//! LiteLLM's `GET /spend/keys` (the key rows, most spend first) and `GET /spend/users?user_id=`
//! (the user rows, or one). Admins read all; an internal user their own keys and their own
//! user (another `user_id` is a 403); a key without a user reads nothing (`[]`), as in LiteLLM.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, Uri};
use idlehands_store::KeyObject;
use serde::Deserialize;
use serde_json::{Value, json};

use super::keys::{Mgmt, Shared, forbidden, query, tri};
use super::roles::{Role, caller_role};
use crate::ledger::seams::store_error;

// Every key or user at once: on the admin runtime (`offload`).
pub(crate) fn routes(state: Arc<Mgmt>) -> Router {
    Router::new()
        .route(
            "/spend/keys",
            get(|State(m): Shared, h: HeaderMap| crate::offload::run(keys(m, h))),
        )
        .route(
            "/spend/users",
            get(|State(m): Shared, h: HeaderMap, u: Uri| crate::offload::run(users(m, h, u))),
        )
        .with_state(state)
}

/// Whose rows: `Ok(None)` all, `Ok(Some(u))` one user's; `Err(())` none (a key without a user).
fn reader(role: &Role) -> Result<Option<&str>, ()> {
    if role.reads_all() {
        return Ok(None);
    }
    role.own_user().map(Some).ok_or(())
}

async fn keys(m: Arc<Mgmt>, headers: HeaderMap) -> Response {
    let (_, role) = tri!(caller_role(&m, &headers).await);
    let Ok(user) = reader(&role) else {
        return axum::Json(json!([])).into_response();
    };
    let mut records = tri!(
        m.ledger
            .store()
            .all_keys()
            .await
            .map_err(|e| store_error(&e))
    );
    if let Some(u) = user {
        records.retain(|k| k.user_id.as_deref() == Some(u));
    }
    records.sort_by(|a, b| b.spend.cmp(&a.spend).then_with(|| a.token.cmp(&b.token)));
    let out: Vec<KeyObject> = records
        .into_iter()
        .map(|record| KeyObject {
            token: record.token.clone(),
            record,
        })
        .collect();
    axum::Json(out).into_response()
}

#[derive(Deserialize, Default)]
struct UserAsk {
    user_id: Option<String>,
}

async fn users(m: Arc<Mgmt>, headers: HeaderMap, uri: Uri) -> Response {
    let (_, role) = tri!(caller_role(&m, &headers).await);
    let ask: UserAsk = tri!(query(&uri));
    let Ok(own) = reader(&role) else {
        return axum::Json(json!([])).into_response();
    };
    let wanted = match (own, ask.user_id.as_deref()) {
        (Some(me), Some(other)) if me != other => {
            return forbidden("Not authorized to view spend for another user.".to_owned())
                .into_response();
        }
        (Some(me), _) => Some(me),
        (None, asked) => asked,
    };
    let out: Vec<Value> = match wanted {
        // One user: LiteLLM answers `[null]` for an unknown id.
        Some(id) => {
            let user = tri!(
                m.ledger
                    .user_with_teams(id)
                    .await
                    .map_err(|e| store_error(&e))
            );
            vec![user.map_or(Value::Null, |u| json!(u))]
        }
        None => {
            let mut all = tri!(
                m.ledger
                    .users_with_teams()
                    .await
                    .map_err(|e| store_error(&e))
            );
            all.sort_by(|a, b| {
                b.budget
                    .spend
                    .cmp(&a.budget.spend)
                    .then_with(|| a.user_id.cmp(&b.user_id))
            });
            all.into_iter().map(|u| json!(u)).collect()
        }
    };
    axum::Json(out).into_response()
}
