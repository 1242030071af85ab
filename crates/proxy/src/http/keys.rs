//! `/key/*`: virtual-key management on the store, with LiteLLM's routes, bodies and statuses.
//! Everything but `/key/info` on one's own key needs the master key.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, Uri};
use idlehands_store::keygen::token_of;
use idlehands_store::{
    BlockKeyRequest, DeleteKeysRequest, GenerateKeyRequest, KeyListQuery, KeyObject, Ledger,
    RegenerateKeyRequest, UpdateKeyRequest, parse_json,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::roles::{Role, caller_role, not_allowed};
use crate::auth::Principal;
use crate::error::ProxyError;
use crate::ledger::seams::store_error;
use crate::state::App;

/// LiteLLM's user id for the master key (`litellm_proxy_admin_name`).
pub(crate) const ADMIN_USER: &str = "default_user_id";

pub(crate) struct Mgmt {
    pub app: Arc<App>,
    pub ledger: Ledger,
    /// Stored deployments (`store_model_in_db`): a team's go with the team.
    pub models: Option<Arc<crate::ledger::ModelSync>>,
}

pub(crate) type Shared = State<Arc<Mgmt>>;

pub(crate) fn routes(state: Arc<Mgmt>) -> Router {
    Router::new()
        .route("/key/generate", post(generate))
        .route("/key/info", get(info))
        .route("/v2/key/info", post(info_v2))
        .route("/key/list", get(list))
        .route("/key/update", post(update))
        .route("/key/delete", post(delete))
        .route("/key/regenerate", post(regenerate))
        .route("/key/{key}/regenerate", post(regenerate_path))
        .route("/key/block", post(block))
        .route("/key/unblock", post(unblock))
        .with_state(state)
}

/// The caller, authenticated like any request to the gateway.
pub(crate) async fn caller(m: &Mgmt, headers: &HeaderMap) -> Result<Principal, ProxyError> {
    super::ui::authenticate_admin(&m.app, headers).await
}

pub(crate) fn forbidden(message: String) -> ProxyError {
    ProxyError::Custom {
        status: 403,
        kind: "auth_error".to_string(),
        message,
        param: None,
        headers: Vec::new(),
    }
}

/// A 404 in the error envelope naming the field.
pub(crate) fn not_found(message: impl Into<String>, param: &str) -> ProxyError {
    ProxyError::Custom {
        status: 404,
        kind: "not_found_error".to_string(),
        message: message.into(),
        param: Some(param.to_string()),
        headers: Vec::new(),
    }
}

/// A 400 in the error envelope naming the field.
pub(crate) fn bad_request(message: impl Into<String>, param: &str) -> ProxyError {
    store_error(&idlehands_store::StoreError::bad_request(message, param))
}

/// The caller, who must be a proxy admin (the master key, or a key of a `proxy_admin` user);
/// returns who the change is recorded as.
pub(crate) async fn admin(
    m: &Mgmt,
    headers: &HeaderMap,
    route: &str,
) -> Result<Option<String>, ProxyError> {
    super::roles::require_admin(m, headers, route).await
}

/// Who may change keys: a proxy admin any key, an internal user only keys of their own
/// (every key the request names, by value or alias). Returns the caller's role.
async fn key_changer(
    m: &Mgmt,
    headers: &HeaderMap,
    route: &str,
    named: &[Option<&str>],
    aliases: &[Option<&str>],
) -> Result<Role, ProxyError> {
    let (_, role) = caller_role(m, headers).await?;
    match &role {
        Role::Admin(_) => Ok(role),
        Role::Internal(u) => {
            for key in named.iter().flatten() {
                let record = m
                    .ledger
                    .store()
                    .get_key(&token_of(key))
                    .await
                    .map_err(|e| store_error(&e))?;
                if record.is_some_and(|k| k.user_id.as_deref() != Some(u)) {
                    return Err(not_own_key(route));
                }
            }
            for alias in aliases.iter().flatten() {
                let record = m
                    .ledger
                    .store()
                    .get_key_by_alias(alias)
                    .await
                    .map_err(|e| store_error(&e))?;
                if record.is_some_and(|k| k.user_id.as_deref() != Some(u)) {
                    return Err(not_own_key(route));
                }
            }
            Ok(role.clone())
        }
        _ => Err(not_allowed(route, &role)),
    }
}

fn not_own_key(route: &str) -> ProxyError {
    forbidden(format!(
        "You can only change keys of your own user. Route={route}. Your role=internal_user"
    ))
}

/// An internal user may not move a key to another user, nor into a team they are not in.
async fn no_escalation(
    m: &Mgmt,
    own: Option<&str>,
    user_id: Option<&str>,
    team_id: Option<&str>,
) -> Result<(), ProxyError> {
    let Some(own) = own else { return Ok(()) };
    if user_id.is_some_and(|u| u != own) {
        return Err(forbidden(format!(
            "User={own} cannot create or change keys of another user (user_id={}). Your role=internal_user",
            user_id.unwrap_or_default()
        )));
    }
    if let Some(team_id) = team_id {
        let team = m
            .ledger
            .store()
            .get_team(team_id)
            .await
            .map_err(|e| store_error(&e))?;
        if !team.is_some_and(|t| t.members.iter().any(|x| x == own)) {
            return Err(forbidden(format!(
                "User={own} is not a member of team_id={team_id}; only its members may create keys in it. Your role=internal_user"
            )));
        }
    }
    Ok(())
}

/// LiteLLM lets only a proxy admin create a key for a team id that names no team (such a key
/// is then refused on every call, see `AccessError::TeamNotFound`).
async fn team_must_exist(m: &Mgmt, team_id: &str) -> Result<(), ProxyError> {
    let exists = m
        .ledger
        .team_exists(team_id)
        .await
        .map_err(|e| store_error(&e))?;
    if exists {
        return Ok(());
    }
    Err(store_error(&idlehands_store::StoreError::bad_request(
        format!(
            "Team not found for team_id={team_id}. Non-admin users cannot create keys for non-existent teams."
        ),
        "team_id",
    )))
}

/// A JSON body through the store's parser (400s name the field); an empty body is `{}`.
pub(crate) fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ProxyError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    parse_json(bytes).map_err(|e| store_error(&e))
}

/// A create body with configured defaults filled in by `fill` (`/user/new`, `/team/new`): the
/// request's own errors first, worded as for every body, then the filled body, whose defaults
/// were checked against `T` at start-up.
pub(crate) fn body_with_defaults<T: DeserializeOwned>(
    bytes: &[u8],
    fill: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) -> Result<T, ProxyError> {
    let _: T = body(bytes)?;
    let mut asked: serde_json::Map<String, serde_json::Value> = body(bytes)?;
    fill(&mut asked);
    body(&serde_json::to_vec(&asked).unwrap_or_default())
}

/// The body of a route that names its object in the path (LiteLLM's `PATCH /team/{team_id}`,
/// `/v2/organization/{organization_id}`): a JSON object whose `field`, if given, is `id`, with
/// `field` set to `id`.
pub(crate) fn body_for_path(
    bytes: &[u8],
    field: &str,
    id: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, ProxyError> {
    let Ok(serde_json::Value::Object(mut fields)) = serde_json::from_slice(bytes) else {
        return Err(bad_request("the body must be a JSON object", "body"));
    };
    if let Some(named) = fields.get(field)
        && named.as_str() != Some(id)
    {
        return Err(bad_request(
            format!("{field} in the body ({named}) must match the path ({id})"),
            field,
        ));
    }
    fields.insert(field.to_owned(), id.into());
    Ok(fields)
}

/// A query string, with a 400 in the error envelope when a value has the wrong type.
pub(crate) fn query<T: DeserializeOwned>(uri: &Uri) -> Result<T, ProxyError> {
    Query::<T>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| ProxyError::Custom {
            status: 400,
            kind: "bad_request_error".to_string(),
            message: format!("Invalid query parameters: {}", e.body_text()),
            param: None,
            headers: Vec::new(),
        })
}

pub(crate) fn reply<T: Serialize>(r: Result<T, idlehands_store::StoreError>) -> Response {
    match r {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => store_error(&e).into_response(),
    }
}

/// Key fields that act here: stored and enforced, or shown and filterable.
const KEY_FIELDS_ACTED: [&str; 26] = [
    "soft_budget",
    "budget_id",
    "key",
    "key_alias",
    "user_id",
    "team_id",
    "organization_id",
    "duration",
    "spend",
    "max_budget",
    "budget_duration",
    "models",
    "aliases",
    "metadata",
    "tpm_limit",
    "rpm_limit",
    "max_parallel_requests",
    "blocked",
    "new_key",
    "grace_period",
    "allowed_routes",
    "key_type",
    "model_max_budget",
    "model_rpm_limit",
    "model_tpm_limit",
    "allowed_cache_controls",
];

/// LiteLLM key fields kept or ignored here without acting, and why.
const KEY_FIELDS_INERT: [(&str, &str); 6] = [
    ("config", "stored and shown; not applied to calls"),
    ("permissions", "stored and shown; not enforced"),
    ("tags", "not a list of tags (a list becomes metadata.tags)"),
    ("guardrails", "not stored; guardrails are not run"),
    (
        "enforced_params",
        "not stored; requests are not checked for them",
    ),
    ("send_invite_email", "not stored; no e-mail is sent"),
];

/// Which fields of an admin body an entity's routes act on, and why the known others do not.
pub(crate) struct FieldRules {
    /// `key`, `team`, `user`, ... as the log and the default reason name it.
    pub entity: &'static str,
    pub acted: &'static [&'static str],
    pub inert: &'static [(&'static str, &'static str)],
}

/// The body's fields that change nothing here, each with the reason, so a LiteLLM client is
/// told instead of finding out later (the answer's `ignored_fields`, and a warning in the log).
pub(crate) fn ignored_fields(
    rules: &FieldRules,
    route: &str,
    bytes: &[u8],
) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice::<serde_json::Value>(bytes)
    else {
        return out;
    };
    for (name, value) in &fields {
        if value.is_null() || rules.acted.contains(&name.as_str()) {
            continue;
        }
        let why = rules.inert.iter().find(|(f, _)| f == name).map_or_else(
            || format!("not a {} field this gateway acts on; ignored", rules.entity),
            |(_, why)| (*why).to_string(),
        );
        tracing::warn!(
            route,
            field = name.as_str(),
            entity = rules.entity,
            "field has no effect here: {why}"
        );
        out.insert(name.clone(), why.into());
    }
    out
}

pub(super) const KEY_FIELDS: FieldRules = FieldRules {
    entity: "key",
    acted: &KEY_FIELDS_ACTED,
    inert: &KEY_FIELDS_INERT,
};

pub(crate) fn ignored_key_fields(
    route: &str,
    bytes: &[u8],
) -> serde_json::Map<String, serde_json::Value> {
    ignored_fields(&KEY_FIELDS, route, bytes)
}

/// [`ignored_key_fields`] of an update or regeneration, whose list of `tags` (when it had
/// one) went into `metadata.tags`.
pub(crate) fn ignored_change_fields(
    route: &str,
    bytes: &[u8],
    changes: &UpdateKeyRequest,
) -> serde_json::Map<String, serde_json::Value> {
    let mut ignored = ignored_key_fields(route, bytes);
    if changes.tags.is_some() {
        ignored.remove("tags");
    }
    ignored
}

/// [`reply`], with `ignored_fields` added to a successful answer when there are any.
pub(crate) fn reply_noting<T: Serialize>(
    r: Result<T, idlehands_store::StoreError>,
    ignored: serde_json::Map<String, serde_json::Value>,
) -> Response {
    if ignored.is_empty() {
        return reply(r);
    }
    match r.map(|v| serde_json::to_value(v)) {
        Ok(Ok(serde_json::Value::Object(mut answer))) => {
            answer.insert("ignored_fields".into(), serde_json::Value::Object(ignored));
            axum::Json(answer).into_response()
        }
        Ok(Ok(other)) => axum::Json(other).into_response(),
        Ok(Err(e)) => ProxyError::Internal(format!("cannot write the answer: {e}")).into_response(),
        Err(e) => store_error(&e).into_response(),
    }
}

macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return axum::response::IntoResponse::into_response(e),
        }
    };
}
pub(crate) use tri;

/// LiteLLM's refusal of a route restriction a caller may not set.
fn routes_reserved() -> ProxyError {
    forbidden(
        "Only proxy admins can set `allowed_routes` on a key. Use `key_type` to pick a preset route bucket instead."
            .to_owned(),
    )
}

/// The route groups a non-admin may give a key (through `key_type`).
const SAFE_ROUTE_PRESETS: [&str; 2] = ["llm_api_routes", "info_routes"];

/// A key's new `allowed_routes` and `key_type`: every entry must be something this gateway
/// can match (a typo would otherwise lock the key out of everything, or of nothing); only a
/// proxy admin sets routes of its own choosing, others pick the `llm_api` or `read_only`
/// preset, and may not widen a read-only key (`existing`: the key's routes now).
pub(crate) fn check_routes_change(
    role: &Role,
    routes: Option<&[String]>,
    key_type: Option<&str>,
    existing: &[String],
) -> Result<(), ProxyError> {
    if let Some(bad) = routes.and_then(crate::route_access::unknown_entry) {
        return Err(store_error(&idlehands_store::StoreError::bad_request(
            format!(
                "allowed_routes entry {bad:?} is neither a path (starting with '/') nor a route group this gateway knows ({})",
                crate::route_access::group_names().join(", ")
            ),
            "allowed_routes",
        )));
    }
    if matches!(role, Role::Admin(_)) || (routes.is_none() && key_type.is_none()) {
        return Ok(());
    }
    if routes.is_some() {
        return Err(routes_reserved());
    }
    let safe = |r: &[String]| r.iter().all(|e| SAFE_ROUTE_PRESETS.contains(&e.as_str()));
    let new: &[&str] = match key_type {
        Some("llm_api") => &["llm_api_routes"],
        Some("read_only") => &["info_routes"],
        Some("default") | None => &[],
        // `management` (or a value the store refuses with its own message).
        Some(_) => return Err(routes_reserved()),
    };
    let read_only = existing.len() == 1 && existing[0] == "info_routes";
    if !safe(existing) || (read_only && new != ["info_routes"]) {
        return Err(routes_reserved());
    }
    Ok(())
}

async fn generate(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    let (_, role) = tri!(caller_role(&m, &headers).await);
    let mut req: GenerateKeyRequest = tri!(body(&bytes));
    // Before the caller's checks, which then judge the defaulted fields too (a default
    // team_id is a team the caller must be in).
    tri!(
        m.app
            .key_bounds
            .apply_to_new(&mut req)
            .map_err(|e| store_error(&e))
    );
    tri!(check_routes_change(
        &role,
        req.allowed_routes.as_deref(),
        req.key_type.as_deref(),
        &[]
    ));
    match &role {
        Role::Admin(_) => {}
        Role::Internal(u) => {
            if let Some(team_id) = &req.team_id {
                tri!(team_must_exist(&m, team_id).await);
            }
            tri!(no_escalation(&m, Some(u), req.user_id.as_deref(), req.team_id.as_deref()).await);
            req.user_id = Some(u.clone());
        }
        _ => return not_allowed("/key/generate", &role).into_response(),
    }
    tri!(may_generate(&m, &role, &req, &bytes).await);
    warn_unserved_models(&m, "/key/generate", req.models.as_deref());
    let tagged = tags_into_metadata(&bytes, &mut req.metadata);
    let mut ignored = ignored_key_fields("/key/generate", &bytes);
    if tagged {
        ignored.remove("tags");
    }
    reply_noting(m.ledger.generate_key(req, role.by()).await, ignored)
}

/// `key_generation_settings`: whether the caller may create this team or personal key.
async fn may_generate(
    m: &Mgmt,
    role: &Role,
    req: &GenerateKeyRequest,
    bytes: &[u8],
) -> Result<(), ProxyError> {
    let body: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(bytes).unwrap_or_default();
    let present = |f: &str| body.get(f).is_some_and(|v| !v.is_null());
    let rules = &m.app.key_generation;
    let checked = match (&req.team_id, role) {
        (Some(_), Role::Admin(_)) => rules.check_team_key(true, "", &present),
        (Some(team_id), _) => {
            let user = role.own_user().unwrap_or_default();
            let team_role = if super::roles::admin_of_team(m, team_id, user).await? {
                "admin"
            } else {
                "user"
            };
            rules.check_team_key(false, team_role, &present)
        }
        (None, _) => rules.check_personal_key(role.name(), &present),
    };
    checked.map_err(|e| store_error(&e))
}

/// LiteLLM keeps a new key's `tags` as its `metadata.tags` (every call of the key is tagged
/// with them, see `super::tags`). Whether the body had a tag list.
pub(crate) fn tags_into_metadata(
    bytes: &[u8],
    metadata: &mut Option<idlehands_store::JsonMap>,
) -> bool {
    let tags = serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|mut v| v.get_mut("tags").map(serde_json::Value::take))
        .filter(serde_json::Value::is_array);
    match tags {
        Some(t) => {
            metadata
                .get_or_insert_default()
                .insert("tags".to_string(), t);
            true
        }
        None => false,
    }
}

/// LiteLLM stores any name in a key's `models` (a model may be added later). Stored here too,
/// but an entry that names nothing this proxy serves is logged: it grants no model, and a typo
/// would otherwise go unnoticed.
pub(crate) fn warn_unserved_models(m: &Mgmt, route: &str, models: Option<&[String]>) {
    let Some(models) = models else { return };
    let rt = m.app.runtime.load();
    let router = &rt.router;
    for entry in models {
        let served = entry.contains('*')
            || ["all-proxy-models", "all-team-models"].contains(&entry.as_str())
            || router.group(entry).is_some()
            || router.is_access_group(entry);
        if !served {
            tracing::warn!(
                route,
                model = entry.as_str(),
                "a key's models entry names no model group, alias or access group of this proxy; it grants nothing"
            );
        }
    }
}

#[derive(serde::Deserialize)]
struct InfoQuery {
    key: Option<String>,
}

async fn info(State(m): Shared, headers: HeaderMap, uri: Uri) -> Response {
    let p = tri!(caller(&m, &headers).await);
    let q: InfoQuery = tri!(query(&uri));
    let own = || {
        crate::auth::extract_key(&headers, None)
            .ok()
            .map(str::to_string)
    };
    let key = match q.key.filter(|k| !k.trim().is_empty()).or_else(own) {
        Some(k) => k,
        None => return ProxyError::NoApiKey.into_response(),
    };
    // LiteLLM looks the key up before it checks who may read it: an unknown key is a 404
    // for every caller.
    let info = m.ledger.key_info(&key).await;
    if let Ok(found) = &info
        && let Principal::VirtualKey(vk) = &p
        && token_of(&key) != vk.token_hash
    {
        let role = tri!(super::roles::role_of(&m, &p).await);
        if !role.reads_key(&found.info.record) {
            return forbidden(format!(
                "You are not allowed to access this key's info. Your role={}",
                role.name()
            ))
            .into_response();
        }
    }
    // A key following a named budget shows it, as LiteLLM joins it in.
    let tier = match info
        .as_ref()
        .ok()
        .and_then(|i| i.info.record.budget_id.clone())
    {
        Some(id) => tri!(
            m.ledger
                .store()
                .budget_row(&id)
                .await
                .map_err(|e| store_error(&e))
        ),
        None => None,
    };
    match (info, tier) {
        (Ok(found), Some(row)) => {
            let mut v = serde_json::to_value(&found).unwrap_or_default();
            v["info"]["litellm_budget_table"] = super::budgets::row_json(&row);
            axum::Json(v).into_response()
        }
        (info, _) => reply(info),
    }
}

/// `POST /v2/key/info` `{"keys": [...], "key_aliases": [...]}`: `/key/info` for several keys
/// at once (`{"key": keys, "info": [...]}`), leaving out unknown keys and those the caller may
/// not read (an admin reads all, an internal user their own).
async fn info_v2(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    #[derive(serde::Deserialize)]
    struct Asked {
        keys: Option<Vec<String>>,
        key_aliases: Option<Vec<String>>,
    }
    let (_, role) = tri!(caller_role(&m, &headers).await);
    let asked: Asked = tri!(body(&bytes));
    if asked.keys.is_none() && asked.key_aliases.is_none() {
        return store_error(&idlehands_store::StoreError::bad_request(
            "Malformed request. No keys passed in.",
            "keys",
        ))
        .into_response();
    }
    let mut tokens: Vec<String> = asked.keys.iter().flatten().map(|k| token_of(k)).collect();
    for alias in asked.key_aliases.iter().flatten() {
        let found = tri!(
            m.ledger
                .store()
                .get_key_by_alias(alias)
                .await
                .map_err(|e| store_error(&e))
        );
        tokens.extend(found.map(|k| k.token));
    }
    // Each key once, as LiteLLM's one query for all of them answers.
    let mut seen = std::collections::HashSet::new();
    tokens.retain(|t| seen.insert(t.clone()));
    let mut info = Vec::new();
    for token in &tokens {
        let Ok(found) = m.ledger.key_info(token).await else {
            continue;
        };
        if role.reads_key(&found.info.record) {
            info.push(found.info);
        }
    }
    axum::Json(serde_json::json!({ "key": asked.keys, "info": info })).into_response()
}

async fn list(State(m): Shared, headers: HeaderMap, uri: Uri) -> Response {
    let (_, role) = tri!(caller_role(&m, &headers).await);
    let mut q: KeyListQuery = tri!(query(&uri));
    // An internal user lists their own keys only.
    if let Some(u) = tri!(role.reads_as("/key/list")) {
        q.user_id = Some(u.to_owned());
    }
    reply(m.ledger.list_keys(&q).await)
}

/// `Some(Some(x))` of an update field, the value it sets.
fn set(v: &Option<Option<String>>) -> Option<&str> {
    v.as_ref().and_then(|v| v.as_deref())
}

async fn update(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    let req: UpdateKeyRequest = tri!(body(&bytes));
    let alias = if req.key.is_none() {
        set(&req.key_alias)
    } else {
        None
    };
    let role =
        tri!(key_changer(&m, &headers, "/key/update", &[req.key.as_deref()], &[alias]).await);
    let ignored = ignored_change_fields("/key/update", &bytes, &req);
    let updated = tri!(apply_update(&m, &role, req, "/key/update").await);
    reply_noting(Ok::<_, idlehands_store::StoreError>(updated), ignored)
}

/// `/key/update`'s change once the caller may make it (`key_changer`): the new team must
/// exist, an internal user may not give the key to another user or a team they are not in.
pub(crate) async fn apply_update(
    m: &Mgmt,
    role: &Role,
    req: UpdateKeyRequest,
    route: &str,
) -> Result<KeyObject, ProxyError> {
    m.app
        .key_bounds
        .check_change(&req)
        .map_err(|e| store_error(&e))?;
    // LiteLLM looks the new team up first, for every caller: a 404 when it is not there.
    if let Some(team_id) = set(&req.team_id)
        && !m
            .ledger
            .team_exists(team_id)
            .await
            .map_err(|e| store_error(&e))?
    {
        let missing = idlehands_store::AccessError::TeamNotFound {
            team_id: team_id.to_string(),
        };
        return Err(not_found(missing.to_string(), "team_id"));
    }
    no_escalation(m, role.own_user(), set(&req.user_id), set(&req.team_id)).await?;
    check_changed_routes(m, role, &req).await?;
    warn_unserved_models(m, route, req.models.as_deref());
    m.ledger
        .update_key(req, role.by())
        .await
        .map_err(|e| store_error(&e))
}

/// [`check_routes_change`] for an update or regeneration of the key `req` names.
async fn check_changed_routes(
    m: &Mgmt,
    role: &Role,
    req: &UpdateKeyRequest,
) -> Result<(), ProxyError> {
    let routes = req
        .allowed_routes
        .as_ref()
        .map(|r| r.as_deref().unwrap_or_default());
    let key_type = req
        .key_type
        .as_ref()
        .map(|t| t.as_deref().unwrap_or("default"));
    if routes.is_none() && key_type.is_none() {
        return Ok(());
    }
    let store = m.ledger.store();
    let found = match (&req.key, set(&req.key_alias)) {
        (Some(k), _) => store.get_key(&token_of(k)).await,
        (None, Some(alias)) => store.get_key_by_alias(alias).await,
        (None, None) => Ok(None),
    }
    .map_err(|e| store_error(&e))?;
    let existing = found.map(|k| k.allowed_routes).unwrap_or_default();
    check_routes_change(role, routes, key_type, &existing)
}

async fn delete(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    let req: DeleteKeysRequest = tri!(body(&bytes));
    let keys: Vec<Option<&str>> = req
        .keys
        .iter()
        .flatten()
        .map(|k| Some(k.as_str()))
        .collect();
    let aliases: Vec<Option<&str>> = req
        .key_aliases
        .iter()
        .flatten()
        .map(|k| Some(k.as_str()))
        .collect();
    let role = tri!(key_changer(&m, &headers, "/key/delete", &keys, &aliases).await);
    reply(m.ledger.delete_keys(req, role.by()).await)
}

async fn regenerate(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    let req: RegenerateKeyRequest = tri!(body(&bytes));
    let alias = if req.changes.key.is_none() {
        set(&req.changes.key_alias)
    } else {
        None
    };
    let role = tri!(
        key_changer(
            &m,
            &headers,
            "/key/regenerate",
            &[req.changes.key.as_deref()],
            &[alias]
        )
        .await
    );
    tri!(
        no_escalation(
            &m,
            role.own_user(),
            set(&req.changes.user_id),
            set(&req.changes.team_id)
        )
        .await
    );
    tri!(check_changed_routes(&m, &role, &req.changes).await);
    tri!(
        m.app
            .key_bounds
            .check_change(&req.changes)
            .map_err(|e| store_error(&e))
    );
    let ignored = ignored_change_fields("/key/regenerate", &bytes, &req.changes);
    reply_noting(m.ledger.regenerate_key(None, req, role.by()).await, ignored)
}

async fn regenerate_path(
    State(m): Shared,
    Path(key): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let req: RegenerateKeyRequest = tri!(body(&bytes));
    let role = tri!(key_changer(&m, &headers, "/key/{key}/regenerate", &[Some(&key)], &[]).await);
    tri!(
        no_escalation(
            &m,
            role.own_user(),
            set(&req.changes.user_id),
            set(&req.changes.team_id)
        )
        .await
    );
    let mut changes = req.changes.clone();
    changes.key = Some(key.clone());
    tri!(check_changed_routes(&m, &role, &changes).await);
    tri!(
        m.app
            .key_bounds
            .check_change(&changes)
            .map_err(|e| store_error(&e))
    );
    let ignored = ignored_change_fields("/key/{key}/regenerate", &bytes, &req.changes);
    reply_noting(
        m.ledger.regenerate_key(Some(&key), req, role.by()).await,
        ignored,
    )
}

async fn block(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    let req: BlockKeyRequest = tri!(body(&bytes));
    let role = tri!(key_changer(&m, &headers, "/key/block", &[Some(&req.key)], &[]).await);
    reply(m.ledger.set_blocked(req, true, role.by()).await)
}

async fn unblock(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    let req: BlockKeyRequest = tri!(body(&bytes));
    let role = tri!(key_changer(&m, &headers, "/key/unblock", &[Some(&req.key)], &[]).await);
    reply(m.ledger.set_blocked(req, false, role.by()).await)
}
