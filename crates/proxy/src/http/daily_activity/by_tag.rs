//! `/tag/daily/activity`: LiteLLM's daily activity by request tag (its Usage page's tag view),
//! in the same shape as the entity routes, each tag an entity. Read from the spend rows (see
//! `idlehands_store::tag_spend`): a call with several tags counts under each of them, in the
//! days' sums too, as LiteLLM's daily tag table counts it. Admins see every key; an internal
//! user the calls of their own keys; other callers are refused. `/tag/daily/activity/aggregated`
//! answers the whole range at once, as the entity routes' `/aggregated`: every tag's sums, the
//! key breakdowns cut to the `api_key_limit` keys of most spend, and the keys counted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use chrono::Utc;
use http::{HeaderMap, Uri};
use idlehands_store::TagActivityQuery;
use idlehands_store::daily_activity::ActivityRow;

use super::render::{Days, Meta, Names, render};
use super::{
    KEY_LIMIT_DEFAULT, Params, days, key_filter, list, pages, user_names, whole_range_limits,
};
use crate::http::keys::{Mgmt, Shared, query, tri};
use crate::http::roles::caller_role;
use crate::ledger::seams::store_error;

const ROUTE: &str = "/tag/daily/activity";

/// Scans the rows of the range: on the admin runtime (`offload`).
pub(super) fn handler(aggregated: bool) -> MethodRouter<Arc<Mgmt>> {
    get(move |State(m): Shared, headers: HeaderMap, uri: Uri| {
        crate::offload::run(answer(m, headers, uri, aggregated))
    })
}

async fn answer(m: Arc<Mgmt>, headers: HeaderMap, uri: Uri, aggregated: bool) -> Response {
    let (_, role) = tri!(caller_role(&m, &headers).await);
    let p: Params = tri!(query(&uri));
    let (first_day, last_day) = tri!(days(&p, false, Utc::now()));
    let key_limit = if aggregated {
        tri!(whole_range_limits(&p, first_day, last_day))
    } else {
        KEY_LIMIT_DEFAULT
    };
    let (page, page_size) = if aggregated {
        (1, u32::MAX)
    } else {
        tri!(pages(&p, 10))
    };
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
    let meta = if aggregated {
        let (top, meta) = top_keys(&found.rows, key_limit);
        for r in &found.rows {
            all.add_sums(r);
            if top.contains(r.api_key.as_str()) {
                all.add_keyed(r);
            }
        }
        meta
    } else {
        for r in &found.rows {
            all.add_row(r);
        }
        Meta::page(page, page_size, found.total)
    };
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
    axum::Json(render(&all, &names, &meta)).into_response()
}

/// The `limit` keys of most spend over the rows (ties by hash), and the aggregated answer's
/// key counts: overall and per tag.
fn top_keys(rows: &[ActivityRow], limit: usize) -> (HashSet<&str>, Meta) {
    let mut spend: HashMap<&str, i64> = HashMap::new();
    let mut per_tag: BTreeMap<String, HashSet<&str>> = BTreeMap::new();
    for r in rows {
        let s = spend.entry(r.api_key.as_str()).or_default();
        *s = s.saturating_add(r.spend);
        let tag = r.entity.clone().unwrap_or_else(|| "Unassigned".to_owned());
        per_tag.entry(tag).or_default().insert(r.api_key.as_str());
    }
    let mut ranked: Vec<(&str, i64)> = spend.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let total = i64::try_from(ranked.len()).unwrap_or(i64::MAX);
    let top = ranked.into_iter().take(limit).map(|(k, _)| k).collect();
    let meta = Meta {
        page: 1,
        total_pages: 1,
        has_more: false,
        api_key_limit: Some(limit),
        total_api_keys: Some(total),
        entity_total_api_keys: Some(
            per_tag
                .into_iter()
                .map(|(t, keys)| (t, i64::try_from(keys.len()).unwrap_or(i64::MAX)))
                .collect(),
        ),
    };
    (top, meta)
}
