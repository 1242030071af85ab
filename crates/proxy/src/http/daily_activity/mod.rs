//! LiteLLM's daily activity (the dashboard's Usage page): `/user/daily/activity`,
//! `/team/daily/activity`, `/organization/daily/activity` and `/customer/daily/activity`
//! (`/end_user/daily/activity`), and each one's `/aggregated` (the whole range in one answer,
//! the key breakdowns cut to the `api_key_limit` keys of most spend: what LiteLLM's Usage page
//! reads now). Per UTC day, newest first: the sums and their breakdown by model, model group,
//! provider, key and entity, read from the daily rollups (see
//! `idlehands_store::daily_activity`), in LiteLLM's shape and with its rules of who sees
//! what. Cache tokens, response times and the MCP, endpoint and guardrail breakdowns are not
//! in the rollups: they answer 0 and `{}` (the README says so).

mod by_tag;
mod render;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use http::{HeaderMap, Uri};
use idlehands_store::StoreError;
use idlehands_store::daily_activity::{ActivityEntity, ActivityQuery};
use serde::Deserialize;
use serde_json::{Value, json};

use super::keys::{Mgmt, Shared, bad_request, forbidden, query, tri};
use super::roles::{Role, caller_role};
use crate::error::ProxyError;
use crate::ledger::seams::store_error;
use render::{Days, Meta, Names, render};

pub(crate) fn routes(state: Arc<Mgmt>) -> Router {
    use ActivityEntity::{EndUser, Organization, Team, User};
    let mut r = Router::new();
    for (prefix, entity) in [
        ("/user", User),
        ("/team", Team),
        ("/organization", Organization),
        ("/customer", EndUser),
        ("/end_user", EndUser),
    ] {
        // The paged answer, and the whole range in one (what LiteLLM's Usage page reads now).
        r = r
            .route(&format!("{prefix}/daily/activity"), handler(entity, false))
            .route(
                &format!("{prefix}/daily/activity/aggregated"),
                handler(entity, true),
            );
    }
    r.route("/tag/daily/activity", by_tag::handler(false))
        .route("/tag/daily/activity/aggregated", by_tag::handler(true))
        .with_state(state)
}

/// Runs on the admin runtime (`offload`), as `/spend/logs` does.
fn handler(entity: ActivityEntity, aggregated: bool) -> MethodRouter<Arc<Mgmt>> {
    get(move |State(m): Shared, headers: HeaderMap, uri: Uri| {
        crate::offload::run(answer(m, headers, uri, entity, aggregated))
    })
}

/// The largest page.
const MAX_PAGE_SIZE: u32 = 1000;
/// The aggregated routes' longest range, in days, and their key breakdowns' default and
/// largest number of keys (LiteLLM's).
const MAX_ALL_DAYS: i64 = 400;
const KEY_LIMIT_DEFAULT: usize = 100;
const KEY_LIMIT_MAX: usize = 1000;

/// An aggregated route's checks (no pages bound its work, so ranges wider than the dashboard
/// asks are refused) and its number of keys to break down.
fn whole_range_limits(
    p: &Params,
    first_day: NaiveDate,
    last_day: NaiveDate,
) -> Result<usize, ProxyError> {
    if (last_day - first_day).num_days() > MAX_ALL_DAYS {
        return Err(bad_request(
            format!("Date range must be at most {MAX_ALL_DAYS} days"),
            "start_date",
        ));
    }
    let key_limit = p.api_key_limit.unwrap_or(KEY_LIMIT_DEFAULT);
    if !(1..=KEY_LIMIT_MAX).contains(&key_limit) {
        return Err(bad_request(
            format!("api_key_limit must be between 1 and {KEY_LIMIT_MAX}"),
            "api_key_limit",
        ));
    }
    Ok(key_limit)
}

#[derive(Deserialize, Default)]
struct Params {
    start_date: Option<String>,
    end_date: Option<String>,
    model: Option<String>,
    api_key: Option<String>,
    page: Option<u32>,
    page_size: Option<u32>,
    user_id: Option<String>,
    team_ids: Option<String>,
    exclude_team_ids: Option<String>,
    organization_ids: Option<String>,
    exclude_organization_ids: Option<String>,
    end_user_ids: Option<String>,
    exclude_end_user_ids: Option<String>,
    /// Minutes west of UTC, as JavaScript's `getTimezoneOffset` (user route only).
    timezone: Option<i64>,
    include_current_utc_day: Option<bool>,
    /// Aggregated routes: the key breakdowns list this many keys, those of most spend.
    api_key_limit: Option<usize>,
    /// `/tag/daily/activity`: comma-separated tags (none: every tag).
    tags: Option<String>,
}

fn not_found(message: String, param: Option<&'static str>) -> ProxyError {
    store_error(&StoreError::NotFound { message, param })
}

/// `YYYY-MM-DD` exactly (LiteLLM refuses spellings a parser would normalise).
fn canonical(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .filter(|d| d.format("%Y-%m-%d").to_string() == s)
}

/// The range's days, both included.
fn days(
    p: &Params,
    user_route: bool,
    now: DateTime<Utc>,
) -> Result<(NaiveDate, NaiveDate), ProxyError> {
    let (Some(start), Some(end)) = (p.start_date.as_deref(), p.end_date.as_deref()) else {
        return Err(bad_request(
            "Please provide start_date and end_date",
            "start_date",
        ));
    };
    let (Some(first), Some(mut last)) = (canonical(start), canonical(end)) else {
        return Err(bad_request(
            "start_date and end_date must be valid YYYY-MM-DD dates",
            "start_date",
        ));
    };
    if last < first {
        return Err(bad_request(
            "end_date must be on or after start_date",
            "end_date",
        ));
    }
    // A caller west of UTC asking up to its today also gets today's UTC day, written after
    // its local midnight.
    if let (true, Some(tz), Some(true)) = (user_route, p.timezone, p.include_current_utc_day) {
        let local_today = (now - Duration::minutes(tz)).date_naive();
        if last >= local_today {
            last = last.max(now.date_naive());
        }
    }
    Ok((first, last))
}

/// The page asked for (from 1) and its size (up to [`MAX_PAGE_SIZE`], else `default_size`).
fn pages(p: &Params, default_size: u32) -> Result<(u32, u32), ProxyError> {
    let page = p.page.unwrap_or(1);
    let page_size = p.page_size.unwrap_or(default_size);
    if page < 1 {
        return Err(bad_request("page must be >= 1", "page"));
    }
    if !(1..=MAX_PAGE_SIZE).contains(&page_size) {
        return Err(bad_request(
            format!("page_size must be between 1 and {MAX_PAGE_SIZE}"),
            "page_size",
        ));
    }
    Ok((page, page_size))
}

/// A comma-separated list; empty items name nothing (a missing entity is stored as `''`).
fn list(v: Option<&str>) -> Option<Vec<String>> {
    v.filter(|s| !s.is_empty()).map(|s| {
        s.split(',')
            .filter(|i| !i.is_empty())
            .map(str::to_owned)
            .collect()
    })
}

/// The `api_key` filter: a key hash (or the key itself); `unattributed` and LiteLLM's `raw:`
/// escape as it reads them.
fn key_filter(v: Option<&str>) -> Option<String> {
    let v = v.filter(|s| !s.is_empty())?;
    let raw = match v {
        "unattributed" => "",
        v => v.strip_prefix("raw:").unwrap_or(v),
    };
    Some(idlehands_store::keygen::token_of(raw))
}

/// Which entities and keys the caller may see.
struct Scope {
    ids: Option<Vec<String>>,
    api_keys: Option<Vec<String>>,
}

async fn scope(
    m: &Mgmt,
    role: &Role,
    entity: ActivityEntity,
    p: &Params,
) -> Result<Scope, ProxyError> {
    let admin = role.reads_all();
    let key = key_filter(p.api_key.as_deref()).map(|k| vec![k]);
    match entity {
        ActivityEntity::User => {
            let wanted = p.user_id.clone().filter(|u| !u.is_empty());
            let ids = if admin {
                wanted.map(|u| vec![u])
            } else {
                let Some(own) = role.own_user() else {
                    return Err(forbidden(
                        "Service-account keys cannot query user analytics. Use a user-bound key, or call as a proxy admin."
                            .to_owned(),
                    ));
                };
                if wanted.as_deref().is_some_and(|u| u != own) {
                    return Err(forbidden(
                        "Non-admin users can only view their own spend data.".to_owned(),
                    ));
                }
                Some(vec![own.to_owned()])
            };
            Ok(Scope { ids, api_keys: key })
        }
        ActivityEntity::Team => {
            let mut ids = list(p.team_ids.as_deref());
            let mut api_keys = key;
            if !admin {
                let own = role.own_user().unwrap_or("None");
                let info = m.ledger.user_info(own).await.map_err(|e| match e {
                    StoreError::NotFound { .. } => {
                        not_found(format!("User= {own} not found"), None)
                    }
                    e => store_error(&e),
                })?;
                let mine: Vec<String> = info.teams.iter().map(|t| t.team_id.clone()).collect();
                let asked = ids.get_or_insert_with(|| mine.clone());
                if let Some(other) = asked.iter().find(|t| !mine.contains(t)) {
                    return Err(not_found(
                        format!(
                            "User does not belong to Team= {other}. Call `/user/info` to see user's teams"
                        ),
                        Some("team_ids"),
                    ));
                }
                // An admin of every team asked sees the teams' keys; anyone else their own.
                let admin_of_all = asked.iter().all(|t| {
                    info.teams
                        .iter()
                        .any(|r| &r.team_id == t && r.admins.iter().any(|a| a == own))
                });
                if !asked.is_empty() && !admin_of_all {
                    let own_keys: Vec<String> = info.keys.iter().map(|k| k.token.clone()).collect();
                    api_keys = Some(match api_keys {
                        Some(k) => k.into_iter().filter(|k| own_keys.contains(k)).collect(),
                        None => own_keys,
                    });
                }
            }
            Ok(Scope { ids, api_keys })
        }
        ActivityEntity::Organization => {
            let mut ids = list(p.organization_ids.as_deref());
            if !admin {
                let own = role.own_user().unwrap_or_default();
                let orgs = m.ledger.list_orgs().await.map_err(|e| store_error(&e))?;
                let admin_of: Vec<String> = orgs
                    .iter()
                    .filter(|o| {
                        o.members.iter().any(|mb| {
                            mb.user_id.as_deref() == Some(own) && mb.user_role == "org_admin"
                        })
                    })
                    .map(|o| o.organization_id.clone())
                    .collect();
                let asked = ids.get_or_insert_with(|| admin_of.clone());
                if let Some(other) = asked.iter().find(|o| !admin_of.contains(o)) {
                    return Err(forbidden(format!(
                        "User is not org_admin for Organization= {other}."
                    )));
                }
            }
            Ok(Scope { ids, api_keys: key })
        }
        ActivityEntity::EndUser => {
            if !admin {
                return Err(ProxyError::Custom {
                    status: 401,
                    kind: "auth_error".to_owned(),
                    message: format!("Admin-only endpoint. Your user role={}", role.name()),
                    param: None,
                    headers: Vec::new(),
                });
            }
            Ok(Scope {
                ids: list(p.end_user_ids.as_deref()),
                api_keys: key,
            })
        }
    }
}

/// Each user's e-mail and alias, looked up once, found or not.
async fn user_names<'a>(
    store: &idlehands_store::Store,
    ids: impl Iterator<Item = &'a str>,
) -> HashMap<String, (Option<String>, Option<String>)> {
    let mut users = HashMap::new();
    let mut asked: HashSet<&str> = HashSet::new();
    for id in ids {
        if asked.insert(id)
            && let Ok(Some(u)) = store.get_user(id).await
        {
            users.insert(id.to_owned(), (u.user_email, u.user_alias));
        }
    }
    users
}

async fn answer(
    m: Arc<Mgmt>,
    headers: HeaderMap,
    uri: Uri,
    entity: ActivityEntity,
    aggregated: bool,
) -> Response {
    let (_, role) = tri!(caller_role(&m, &headers).await);
    let p: Params = tri!(query(&uri));
    let (first_day, last_day) = tri!(days(&p, entity == ActivityEntity::User, Utc::now()));
    let key_limit = if aggregated {
        tri!(whole_range_limits(&p, first_day, last_day))
    } else {
        KEY_LIMIT_DEFAULT
    };
    let default_size = if entity == ActivityEntity::User {
        50
    } else {
        10
    };
    let (page, page_size) = tri!(pages(&p, default_size));
    let scope = tri!(scope(&m, &role, entity, &p).await);
    let exclude = match entity {
        ActivityEntity::Team => list(p.exclude_team_ids.as_deref()),
        ActivityEntity::Organization => list(p.exclude_organization_ids.as_deref()),
        ActivityEntity::EndUser => list(p.exclude_end_user_ids.as_deref()),
        ActivityEntity::User => None,
    }
    .unwrap_or_default();
    let q = ActivityQuery {
        entity,
        ids: scope.ids,
        exclude,
        first_day,
        last_day,
        model: p.model.clone().filter(|s| !s.is_empty()),
        api_keys: scope.api_keys,
        page,
        page_size,
    };
    let store = m.ledger.store();
    let mut days = Days::default();
    // Rows naming keys, and rows naming entities.
    let (keyed, entities, meta) = if aggregated {
        let all = match store.daily_activity_all(&q, key_limit).await {
            Ok(a) => a,
            Err(e) => return store_error(&e).into_response(),
        };
        for r in &all.sums {
            days.add_sums(r);
        }
        for r in &all.top_keys {
            days.add_keyed(r);
        }
        let per_entity = all
            .entity_keys
            .iter()
            .map(|(e, n)| (e.clone().unwrap_or_else(|| "Unassigned".to_owned()), *n))
            .collect();
        let meta = Meta {
            page: 1,
            total_pages: 1,
            has_more: false,
            api_key_limit: Some(key_limit),
            total_api_keys: Some(all.total_keys),
            entity_total_api_keys: Some(per_entity),
        };
        (all.top_keys, all.sums, meta)
    } else {
        let found = match store.daily_activity(&q).await {
            Ok(f) => f,
            Err(e) => return store_error(&e).into_response(),
        };
        for r in &found.rows {
            days.add_row(r);
        }
        let meta = Meta::page(page, page_size, found.total);
        (found.rows, Vec::new(), meta)
    };
    let named = || keyed.iter().chain(&entities);
    let mut tokens: Vec<String> = keyed.iter().map(|r| r.api_key.clone()).collect();
    tokens.sort_unstable();
    tokens.dedup();
    let keys = match store.key_facts(&tokens).await {
        Ok(k) => k,
        Err(e) => return store_error(&e).into_response(),
    };
    // Users named on the page (entities of the user route, keys' owners): e-mail and alias.
    let user_ids = keys.values().filter_map(|k| k.user_id.as_deref()).chain(
        named()
            .filter(|_| entity == ActivityEntity::User)
            .filter_map(|r| r.entity.as_deref()),
    );
    let users = user_names(store, user_ids).await;
    // The page's entities by name: users by e-mail, teams and organizations by alias.
    let mut metadata: HashMap<String, Value> = HashMap::new();
    let mut named_once: HashSet<&str> = HashSet::new();
    for id in named().filter_map(|r| r.entity.as_deref()) {
        if !named_once.insert(id) {
            continue;
        }
        let named = match entity {
            ActivityEntity::User => users
                .get(id)
                .map(|(email, alias)| json!({ "user_email": email, "user_alias": alias })),
            ActivityEntity::Team => store
                .get_team(id)
                .await
                .ok()
                .flatten()
                .map(|t| json!({ "team_alias": t.team_alias })),
            ActivityEntity::Organization => store
                .get_org(id)
                .await
                .ok()
                .flatten()
                .map(|o| json!({ "organization_alias": o.organization_alias })),
            ActivityEntity::EndUser => None,
        };
        if let Some(named) = named {
            metadata.insert(id.to_owned(), named);
        }
    }
    let names = Names {
        keys: &keys,
        users: &users,
        entities: &metadata,
    };
    let body = render(&days, &names, &meta);
    axum::Json(body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(start: &str, end: &str) -> Params {
        Params {
            start_date: Some(start.to_owned()),
            end_date: Some(end.to_owned()),
            ..Params::default()
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn only_the_canonical_spelling_is_a_date() {
        assert_eq!(canonical("2026-01-05"), Some(date("2026-01-05")));
        for s in ["2026-1-05", "20260105", "2026-01-05 ", "2026-02-30", ""] {
            assert_eq!(canonical(s), None, "{s:?}");
        }
    }

    #[test]
    fn a_caller_west_of_utc_gets_todays_utc_day_only_when_asking_up_to_its_today() {
        // 02:00 UTC on the 6th is still the 5th in UTC-8 (offset +480).
        let now = at("2026-12-06T02:00:00Z");
        let mut p = params("2026-12-01", "2026-12-05");
        p.timezone = Some(480);
        p.include_current_utc_day = Some(true);
        let (_, last) = days(&p, true, now).map_err(|_| ()).unwrap();
        assert_eq!(last, date("2026-12-06"));
        // An earlier range is history: unchanged.
        let mut old = params("2026-12-01", "2026-12-04");
        old.timezone = Some(480);
        old.include_current_utc_day = Some(true);
        let (_, last) = days(&old, true, now).map_err(|_| ()).unwrap();
        assert_eq!(last, date("2026-12-04"));
        // Not asked for, or not the user route: unchanged.
        p.include_current_utc_day = None;
        let (_, last) = days(&p, true, now).map_err(|_| ()).unwrap();
        assert_eq!(last, date("2026-12-05"));
        p.include_current_utc_day = Some(true);
        let (_, last) = days(&p, false, now).map_err(|_| ()).unwrap();
        assert_eq!(last, date("2026-12-05"));
    }

    #[test]
    fn keys_are_named_as_litellm_names_them() {
        assert_eq!(render::key_bucket(""), "unattributed");
        assert_eq!(render::key_bucket("unattributed"), "raw:unattributed");
        assert_eq!(render::key_bucket("raw:x"), "raw:raw:x");
        assert_eq!(render::key_bucket("abc"), "abc");
        // And read back from a filter.
        assert_eq!(
            key_filter(Some("raw:unattributed")).as_deref(),
            Some("unattributed")
        );
        assert_eq!(key_filter(Some("unattributed")).as_deref(), Some(""));
        assert_eq!(key_filter(Some("")), None);
        assert_eq!(
            key_filter(Some("sk-1234")),
            Some(idlehands_store::keygen::hash_key("sk-1234"))
        );
    }
}
