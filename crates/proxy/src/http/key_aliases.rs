//! `GET /key/aliases?page&size&search&team_id`: LiteLLM's list of key aliases for the
//! dashboard's filters (`{aliases, total_count, current_page, total_pages, size}`, `size` up to
//! 100, default 50). Admins see every key's; an internal user those of their own keys and of
//! their teams' keys; callers without a user are refused.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, Uri};
use idlehands_store::StoreError;
use idlehands_store::key_aliases::AliasQuery;
use serde::Deserialize;
use serde_json::json;

use super::keys::{Mgmt, Shared, query, tri};
use super::roles::caller_role;
use crate::ledger::seams::store_error;

const ROUTE: &str = "/key/aliases";

pub(crate) fn routes(state: Arc<Mgmt>) -> Router {
    Router::new()
        .route(
            ROUTE,
            get(|State(m): Shared, h: HeaderMap, u: Uri| crate::offload::run(aliases(m, h, u))),
        )
        .with_state(state)
}

#[derive(Deserialize)]
struct Params {
    page: Option<u32>,
    size: Option<u32>,
    search: Option<String>,
    team_id: Option<String>,
}

async fn aliases(m: Arc<Mgmt>, headers: HeaderMap, uri: Uri) -> Response {
    let (_, role) = tri!(caller_role(&m, &headers).await);
    let p: Params = tri!(query(&uri));
    let page = p.page.unwrap_or(1);
    let size = p.size.unwrap_or(50);
    if page < 1 {
        return store_error(&StoreError::bad_request("page must be >= 1", "page")).into_response();
    }
    if !(1..=100).contains(&size) {
        return store_error(&StoreError::bad_request(
            "size must be between 1 and 100",
            "size",
        ))
        .into_response();
    }
    let visible_to = match tri!(role.reads_as(ROUTE)) {
        None => None,
        Some(own) => {
            let info = tri!(m.ledger.user_info(own).await.map_err(|e| store_error(&e)));
            let teams = info.teams.iter().map(|t| t.team_id.clone()).collect();
            Some((own.to_owned(), teams))
        }
    };
    let q = AliasQuery {
        search: p.search,
        team_id: p.team_id.filter(|t| !t.is_empty()),
        visible_to,
        page,
        size,
    };
    let (aliases, total) = tri!(
        m.ledger
            .store()
            .key_aliases(&q)
            .await
            .map_err(|e| store_error(&e))
    );
    let size_n = i64::from(size);
    axum::Json(json!({
        "aliases": aliases,
        "total_count": total,
        "current_page": page,
        "total_pages": (total + size_n - 1) / size_n,
        "size": size,
    }))
    .into_response()
}
