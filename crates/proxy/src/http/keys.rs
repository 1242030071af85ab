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
    BlockKeyRequest, DeleteKeysRequest, GenerateKeyRequest, KeyListQuery, Ledger,
    RegenerateKeyRequest, UpdateKeyRequest, parse_json,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::auth::Principal;
use crate::error::ProxyError;
use crate::gateway::Gateway;
use crate::ledger::seams::store_error;

/// LiteLLM's user id for the master key (`litellm_proxy_admin_name`).
const ADMIN_USER: &str = "default_user_id";

pub(crate) struct Mgmt {
    pub gw: Gateway,
    pub ledger: Ledger,
}

pub(crate) type Shared = State<Arc<Mgmt>>;

pub(crate) fn routes(state: Arc<Mgmt>) -> Router {
    Router::new()
        .route("/key/generate", post(generate))
        .route("/key/info", get(info))
        .route("/key/list", get(list))
        .route("/key/update", post(update))
        .route("/key/delete", post(delete))
        .route("/key/regenerate", post(regenerate))
        .route("/key/{key}/regenerate", post(regenerate_path))
        .route("/key/block", post(block))
        .route("/key/unblock", post(unblock))
        .with_state(state)
}

pub(crate) fn is_admin(p: &Principal) -> bool {
    matches!(p, Principal::Master { .. } | Principal::Anonymous)
}

/// The caller, authenticated like any request to the gateway.
pub(crate) async fn caller(m: &Mgmt, headers: &HeaderMap) -> Result<Principal, ProxyError> {
    m.gw.authenticate(headers).await
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

/// The caller, who must be the proxy admin (master key).
pub(crate) async fn admin(
    m: &Mgmt,
    headers: &HeaderMap,
    route: &str,
) -> Result<Option<&'static str>, ProxyError> {
    let p = caller(m, headers).await?;
    if is_admin(&p) {
        return Ok(Some(ADMIN_USER));
    }
    Err(forbidden(format!(
        "Only proxy admin can be used to generate, delete, update info for new keys/users/teams. Route={route}. Your role=internal_user"
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
const KEY_FIELDS_ACTED: [&str; 18] = [
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
];

/// LiteLLM key fields kept or ignored here without acting, and why.
const KEY_FIELDS_INERT: [(&str, &str); 12] = [
    (
        "soft_budget",
        "stored and shown; no alert is sent when it is crossed",
    ),
    ("config", "stored and shown; not applied to calls"),
    ("permissions", "stored and shown; not enforced"),
    ("tags", "not stored; spend rows carry no request tags"),
    ("guardrails", "not stored; guardrails are not run"),
    (
        "model_max_budget",
        "not stored; only the key's own max_budget is enforced",
    ),
    (
        "model_rpm_limit",
        "not stored; only the key's own rpm_limit is enforced",
    ),
    (
        "model_tpm_limit",
        "not stored; only the key's own tpm_limit is enforced",
    ),
    (
        "allowed_routes",
        "not stored; a key may call every model route",
    ),
    (
        "enforced_params",
        "not stored; requests are not checked for them",
    ),
    (
        "allowed_cache_controls",
        "not stored; responses are not cached",
    ),
    ("send_invite_email", "not stored; no e-mail is sent"),
];

/// The body's fields that change nothing here, each with the reason, so a LiteLLM client is
/// told instead of finding out later (the answer's `ignored_fields`, and a warning in the log).
fn ignored_key_fields(route: &str, bytes: &[u8]) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice::<serde_json::Value>(bytes)
    else {
        return out;
    };
    for (name, value) in &fields {
        if value.is_null() || KEY_FIELDS_ACTED.contains(&name.as_str()) {
            continue;
        }
        let why = KEY_FIELDS_INERT
            .iter()
            .find(|(f, _)| f == name)
            .map_or("not a key field this gateway knows; ignored", |(_, why)| {
                why
            });
        tracing::warn!(
            route,
            field = name.as_str(),
            "key field has no effect here: {why}"
        );
        out.insert(name.clone(), why.into());
    }
    out
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

async fn generate(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    let by = tri!(admin(&m, &headers, "/key/generate").await);
    let req: GenerateKeyRequest = tri!(body(&bytes));
    warn_unserved_models(&m, "/key/generate", req.models.as_deref());
    let ignored = ignored_key_fields("/key/generate", &bytes);
    reply_noting(m.ledger.generate_key(req, by).await, ignored)
}

/// LiteLLM stores any name in a key's `models` (a model may be added later). Stored here too,
/// but an entry that names nothing this proxy serves is logged: it grants no model, and a typo
/// would otherwise go unnoticed.
fn warn_unserved_models(m: &Mgmt, route: &str, models: Option<&[String]>) {
    let Some(models) = models else { return };
    let rt = m.gw.app.runtime.load();
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
    if info.is_ok()
        && let Principal::VirtualKey(vk) = &p
        && token_of(&key) != vk.token_hash
    {
        return forbidden(
            "You are not allowed to access this key's info. Your role=internal_user".to_string(),
        )
        .into_response();
    }
    reply(info)
}

async fn list(State(m): Shared, headers: HeaderMap, uri: Uri) -> Response {
    tri!(admin(&m, &headers, "/key/list").await);
    let q: KeyListQuery = tri!(query(&uri));
    reply(m.ledger.list_keys(&q).await)
}

async fn update(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    let by = tri!(admin(&m, &headers, "/key/update").await);
    let req: UpdateKeyRequest = tri!(body(&bytes));
    warn_unserved_models(&m, "/key/update", req.models.as_deref());
    let ignored = ignored_key_fields("/key/update", &bytes);
    reply_noting(m.ledger.update_key(req, by).await, ignored)
}

async fn delete(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    let by = tri!(admin(&m, &headers, "/key/delete").await);
    let req: DeleteKeysRequest = tri!(body(&bytes));
    reply(m.ledger.delete_keys(req, by).await)
}

async fn regenerate(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    let by = tri!(admin(&m, &headers, "/key/regenerate").await);
    let req: RegenerateKeyRequest = tri!(body(&bytes));
    let ignored = ignored_key_fields("/key/regenerate", &bytes);
    reply_noting(m.ledger.regenerate_key(None, req, by).await, ignored)
}

async fn regenerate_path(
    State(m): Shared,
    Path(key): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let by = tri!(admin(&m, &headers, "/key/{key}/regenerate").await);
    let req: RegenerateKeyRequest = tri!(body(&bytes));
    let ignored = ignored_key_fields("/key/{key}/regenerate", &bytes);
    reply_noting(m.ledger.regenerate_key(Some(&key), req, by).await, ignored)
}

async fn block(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    let by = tri!(admin(&m, &headers, "/key/block").await);
    let req: BlockKeyRequest = tri!(body(&bytes));
    reply(m.ledger.set_blocked(req, true, by).await)
}

async fn unblock(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    let by = tri!(admin(&m, &headers, "/key/unblock").await);
    let req: BlockKeyRequest = tri!(body(&bytes));
    reply(m.ledger.set_blocked(req, false, by).await)
}
