//! `/tag/daily/activity`: LiteLLM's daily activity by request tag (its Usage page's tag view),
//! in the same shape as the entity routes, each tag an entity. Read from the spend rows (see
//! `idlehands_store::tag_spend`): a call with several tags counts under each of them, in the
//! days' sums too, as LiteLLM's daily tag table counts it. Admins see every key; an internal
//! user the calls of their own keys; other callers are refused.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use chrono::Utc;
use http::{HeaderMap, Uri};
use idlehands_store::TagActivityQuery;

use super::render::{Days, Meta, Names, render};
use super::{Params, days, key_filter, list, pages, user_names};
use crate::http::keys::{Mgmt, Shared, query, tri};
use crate::http::roles::caller_role;
use crate::ledger::seams::store_error;

const ROUTE: &str = "/tag/daily/activity";

/// Scans the rows of the range: on the admin runtime (`offload`).
pub(super) fn handler() -> MethodRouter<Arc<Mgmt>> {
    get(|State(m): Shared, headers: HeaderMap, uri: Uri| {
        crate::offload::run(answer(m, headers, uri))
    })
}

async fn answer(m: Arc<Mgmt>, headers: HeaderMap, uri: Uri) -> Response {
    let (_, role) = tri!(caller_role(&m, &headers).await);
    let p: Params = tri!(query(&uri));
    let (first_day, last_day) = tri!(days(&p, false, Utc::now()));
    let (page, page_size) = tri!(pages(&p, 10));
    let asked = key_filter(p.api_key.as_deref()).map(|k| vec![k]);
    let api_keys = if let Some(own) = tri!(role.reads_as(ROUTE)) {
        let info = tri!(m.ledger.user_info(own).await.map_err(|e| store_error(&e)));
        let mine: Vec<String> = info.keys.iter().map(|k| k.token.clone()).collect();
        Some(match asked {
            Some(k) => k.into_iter().filter(|k| mine.contains(k)).collect(),
            None => mine,
        })
    } else {
        asked
    };
    let q = TagActivityQuery {
        tags: list(p.tags.as_deref()),
        first_day,
        last_day,
        model: p.model.clone().filter(|s| !s.is_empty()),
        api_keys,
        page,
        page_size,
    };
    let store = m.ledger.store();
    let found = tri!(store.tag_activity(&q).await.map_err(|e| store_error(&e)));
    let mut all = Days::default();
    for r in &found.rows {
        all.add_row(r);
    }
    let mut tokens: Vec<String> = found.rows.iter().map(|r| r.api_key.clone()).collect();
    tokens.sort_unstable();
    tokens.dedup();
    let keys = tri!(store.key_facts(&tokens).await.map_err(|e| store_error(&e)));
    // Keys' owners by e-mail, as the entity routes name them; tags carry no metadata.
    let users = user_names(store, keys.values().filter_map(|k| k.user_id.as_deref())).await;
    let names = Names {
        keys: &keys,
        users: &users,
        entities: &HashMap::new(),
    };
    let meta = Meta::page(page, page_size, found.total);
    axum::Json(render(&all, &names, &meta)).into_response()
}
