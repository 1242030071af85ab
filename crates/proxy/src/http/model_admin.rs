//! `/model/new`, `/model/update` (and `PATCH /model/{id}/update`), `/model/delete`: the proxy
//! admin adds, edits and removes deployments without a restart. With `store_model_in_db`
//! they are kept in the store and every instance of a fleet follows (see
//! `ledger::model_sync`); without it LiteLLM's 500 says how to turn it on. Deployments from
//! config.yaml cannot be edited or deleted here, as in LiteLLM.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{patch, post};
use chrono::{SecondsFormat, Utc};
use http::HeaderMap;
use idlehands_store::{ProxyModelRow, StoreError};
use serde_json::{Map, Value, json};

use crate::config::process_env;
use crate::error::ProxyError;
use crate::ledger::ModelSync;
use crate::ledger::seams::store_error;
use crate::models::ApiModel;
use crate::models::secrets::redact_params;
use crate::state::App;

pub(crate) struct ModelAdmin {
    pub app: Arc<App>,
    /// For the caller's role (a `proxy_admin` user's key may change models too).
    pub mgmt: Arc<super::keys::Mgmt>,
    /// `None` without `store_model_in_db`.
    pub sync: Option<Arc<ModelSync>>,
}

type Shared = State<Arc<ModelAdmin>>;

pub(crate) fn routes(state: Arc<ModelAdmin>) -> Router {
    Router::new()
        .route("/model/new", post(new_model))
        .route("/model/update", post(update_model))
        .route("/model/{id}/update", patch(patch_model))
        .route("/model/delete", post(delete_model))
        .route(
            "/model/block",
            post(|s: Shared, h: HeaderMap, b: Bytes| block(s, h, b, true)),
        )
        .route(
            "/model/unblock",
            post(|s: Shared, h: HeaderMap, b: Bytes| block(s, h, b, false)),
        )
        .with_state(state)
}

pub(super) fn error(status: u16, kind: &str, message: String, param: Option<&str>) -> ProxyError {
    ProxyError::Custom {
        status,
        kind: kind.to_string(),
        message,
        param: param.map(str::to_string),
        headers: Vec::new(),
    }
}

fn bad(message: String, param: Option<&str>) -> ProxyError {
    error(400, "bad_request_error", message, param)
}

/// LiteLLM's answer when models (and credentials) are not kept in the database.
pub(super) fn not_enabled() -> ProxyError {
    error(
        500,
        "auth_error",
        "Set `'STORE_MODEL_IN_DB='True'` in your env to enable this feature.".to_string(),
        None,
    )
}

/// The caller's user id when it is a proxy admin (the master key, or a `proxy_admin` user's
/// key); the model routes are admin only.
async fn admin(s: &ModelAdmin, headers: &HeaderMap, route: &str) -> Result<String, ProxyError> {
    let (_, role) = super::roles::caller_role(&s.mgmt, headers).await?;
    match role {
        super::roles::Role::Admin(user) => Ok(user),
        other => Err(super::keys::forbidden(format!(
            "Only proxy admin can add, update or delete models. Route={route}. Your role={}",
            other.name()
        ))),
    }
}

pub(super) fn json_body(bytes: &[u8]) -> Result<Map<String, Value>, ProxyError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(bad("the body must be a JSON object".to_string(), None)),
        Err(e) => Err(bad(format!("the body is not valid JSON: {e}"), None)),
    }
}

pub(super) fn object_field(
    body: &Map<String, Value>,
    field: &str,
) -> Result<Option<Map<String, Value>>, ProxyError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m.clone())),
        Some(_) => Err(bad(format!("{field}: must be an object"), Some(field))),
    }
}

fn string_field(body: &Map<String, Value>, field: &str) -> Result<Option<String>, ProxyError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(bad(
            format!("{field}: must be a non-empty string"),
            Some(field),
        )),
    }
}

fn iso(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// LiteLLM's model-table row, `litellm_params` as answers show them.
fn row_json(row: &ProxyModelRow, plain_params: &Value) -> Value {
    json!({
        "model_id": row.model_id,
        "model_name": row.model_name,
        "litellm_params": redact_params(plain_params),
        "model_info": serde_json::from_str::<Value>(&row.model_info).unwrap_or(Value::Null),
        "created_at": iso(row.created_at),
        "created_by": row.created_by,
        "updated_at": iso(row.updated_at),
        "updated_by": row.updated_by,
    })
}

/// Checks a deployment before it is stored: it must load exactly as it will on every
/// instance.
fn check(
    sync: &ModelSync,
    id: &str,
    name: &str,
    params: &Value,
    info: &Value,
) -> Result<ApiModel, ProxyError> {
    ApiModel::from_parts(
        id,
        name,
        params.clone(),
        info.clone(),
        &sync.credentials(),
        &process_env,
    )
    .map_err(|b| bad(b.to_string(), Some(&b.path)))
}

/// The stored credential (`/credentials`, not config.yaml's) `params` names, if any: the write
/// holds it so that it is not deleted meanwhile.
fn stored_credential<'a>(
    credentials: &crate::config::Credentials,
    params: &'a Map<String, Value>,
) -> Option<&'a str> {
    params
        .get("litellm_credential_name")
        .and_then(Value::as_str)
        .filter(|n| !credentials.is_config(n))
}

/// Applies a stored change here and announces it; the row is committed either way, and a
/// failure here is retried by the periodic reload.
pub(super) async fn announce(sync: &ModelSync) {
    if let Err(e) = sync.changed().await {
        tracing::warn!(error = %e, "a stored model or credential change is applied at the next periodic reload");
    }
}

async fn new_model(State(s): Shared, headers: HeaderMap, body: Bytes) -> Response {
    match add(&s, &headers, &body).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn add(s: &ModelAdmin, headers: &HeaderMap, body: &[u8]) -> Result<Value, ProxyError> {
    let who = admin(s, headers, "/model/new").await?;
    let Some(sync) = &s.sync else {
        return Err(not_enabled());
    };
    let body = json_body(body)?;
    let name = string_field(&body, "model_name")?
        .ok_or_else(|| bad("model_name: field required".to_string(), Some("model_name")))?;
    let params = object_field(&body, "litellm_params")?.ok_or_else(|| {
        bad(
            "litellm_params: field required".to_string(),
            Some("litellm_params"),
        )
    })?;
    let mut info = object_field(&body, "model_info")?.unwrap_or_default();
    let id = match info.get("id") {
        None | Some(Value::Null) => uuid::Uuid::new_v4().to_string(),
        Some(Value::String(id)) if !id.trim().is_empty() => id.clone(),
        Some(_) => {
            return Err(bad(
                "model_info.id: must be a non-empty string".to_string(),
                Some("model_info.id"),
            ));
        }
    };
    info.insert("id".to_string(), Value::String(id.clone()));
    // A team's deployment, as LiteLLM stores it: a unique internal name, the given one kept as
    // the team's public name, which joins the team's models.
    let team = team_field(&info)?;
    let name = match &team {
        Some(team) => {
            team_must_exist(s, team).await?;
            info.insert("team_public_model_name".to_string(), Value::String(name));
            internal_name(team)
        }
        None => name,
    };
    let params = Value::Object(params);
    let info = Value::Object(info);
    check(sync, &id, &name, &params, &info)?;
    if s.app.runtime.load().catalog.config_ids.contains(&id) {
        return Err(bad(
            format!("A model with id={id} already exists (in config.yaml)"),
            Some("model_info.id"),
        ));
    }
    let now = Utc::now();
    let row = ProxyModelRow {
        model_id: id,
        model_name: name,
        litellm_params: sync.cipher.seal_params(&params).to_string(),
        model_info: info.to_string(),
        created_at: now,
        created_by: Some(who.clone()),
        updated_at: now,
        updated_by: Some(who),
    };
    let named = params
        .as_object()
        .and_then(|p| stored_credential(&sync.credentials(), p));
    sync.store
        .insert_model(&row, named)
        .await
        .map_err(|e| store_error(&e))?;
    if let Some(team) = &team {
        join_team_models(s, team, &info, row.created_by.as_deref()).await?;
    }
    announce(sync).await;
    Ok(row_json(&row, &params))
}

/// `model_info.team_id`, when set.
fn team_field(info: &Map<String, Value>) -> Result<Option<String>, ProxyError> {
    match info.get("team_id") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(t)) if !t.trim().is_empty() => Ok(Some(t.clone())),
        Some(_) => Err(bad(
            "model_info.team_id: must be a non-empty string".to_string(),
            Some("model_info.team_id"),
        )),
    }
}

/// LiteLLM's internal name of a team deployment: unique, so that no other key reaches it by
/// name.
fn internal_name(team: &str) -> String {
    format!("model_name_{team}_{}", uuid::Uuid::new_v4())
}

async fn team_must_exist(s: &ModelAdmin, team: &str) -> Result<(), ProxyError> {
    let exists = s
        .mgmt
        .ledger
        .team_exists(team)
        .await
        .map_err(|e| store_error(&e))?;
    if exists {
        Ok(())
    } else {
        Err(bad(
            format!("Team id={team} does not exist in db"),
            Some("model_info.team_id"),
        ))
    }
}

/// Adds the deployment's public name to its team's models (LiteLLM's `team_model_add`), so
/// the team's keys may call it.
async fn join_team_models(
    s: &ModelAdmin,
    team: &str,
    info: &Value,
    by: Option<&str>,
) -> Result<(), ProxyError> {
    let Some(public) = info.get("team_public_model_name").and_then(Value::as_str) else {
        return Ok(());
    };
    let req = idlehands_store::teams::TeamModelsRequest {
        team_id: team.to_string(),
        models: vec![public.to_string()],
    };
    s.mgmt
        .ledger
        .team_models(req, true, by)
        .await
        .map_err(|e| store_error(&e))?;
    Ok(())
}

async fn update_model(State(s): Shared, headers: HeaderMap, body: Bytes) -> Response {
    let r = async {
        let body = json_body(&body)?;
        let id = object_field(&body, "model_info")?
            .and_then(|i| i.get("id").and_then(Value::as_str).map(str::to_string))
            .ok_or_else(|| {
                bad(
                    "model_info.id not provided".to_string(),
                    Some("model_info.id"),
                )
            })?;
        update(&s, &headers, &id, &body, "/model/update").await
    };
    match r.await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn patch_model(
    State(s): Shared,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = async {
        let body = json_body(&body)?;
        update(&s, &headers, &id, &body, "/model/{model_id}/update").await
    };
    match r.await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Merges the given `model_name`, `litellm_params` (a null value keeps the stored one) and
/// `model_info` fields into the stored deployment `id`.
async fn update(
    s: &ModelAdmin,
    headers: &HeaderMap,
    id: &str,
    body: &Map<String, Value>,
    route: &str,
) -> Result<Value, ProxyError> {
    let who = admin(s, headers, route).await?;
    update_as(s, &who, id, body).await
}

/// [`update`] for a caller already known to be the proxy admin `who`.
async fn update_as(
    s: &ModelAdmin,
    who: &str,
    id: &str,
    body: &Map<String, Value>,
) -> Result<Value, ProxyError> {
    let Some(sync) = &s.sync else {
        return Err(not_enabled());
    };
    let new_name = string_field(body, "model_name")?;
    let new_params = object_field(body, "litellm_params")?.unwrap_or_default();
    let new_info = object_field(body, "model_info")?.unwrap_or_default();
    if let Some(team) = team_field(&new_info)? {
        team_must_exist(s, &team).await?;
    }
    let cipher = sync.cipher.clone();
    let credentials = sync.credentials();
    let named = stored_credential(&credentials, &new_params);
    let mut plain_after = Value::Null;
    let mut info_after = Value::Null;
    let written = sync
        .store
        .update_model(id, Some(who), named, |cur| {
            let sealed: Value = serde_json::from_str(&cur.litellm_params)
                .map_err(|e| StoreError::Internal(format!("stored litellm_params: {e}")))?;
            let mut params = cipher
                .open_params(&sealed)
                .map_err(|e| StoreError::Internal(e.to_string()))?;
            if let Value::Object(p) = &mut params {
                for (k, v) in &new_params {
                    if !v.is_null() {
                        p.insert(k.clone(), v.clone());
                    }
                }
            }
            let mut info: Value = serde_json::from_str(&cur.model_info).unwrap_or(json!({}));
            let before = info
                .get("team_id")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if let Value::Object(i) = &mut info {
                for (k, v) in &new_info {
                    i.insert(k.clone(), v.clone());
                }
                i.insert("id".to_string(), Value::String(cur.model_id.clone()));
            }
            let name = match info
                .get("team_id")
                .and_then(Value::as_str)
                .map(str::to_owned)
            {
                // A team's deployment keeps an internal name; a new name given is its public
                // name. Moved to another team, it gets a new internal name (as in LiteLLM).
                Some(team) => {
                    let internal = format!("model_name_{team}_");
                    let public = new_name
                        .clone()
                        .filter(|n| !n.starts_with(&internal))
                        .or_else(|| {
                            info.get("team_public_model_name")
                                .and_then(Value::as_str)
                                .map(str::to_owned)
                        })
                        .unwrap_or_else(|| cur.model_name.clone());
                    if let Value::Object(i) = &mut info {
                        i.insert("team_public_model_name".to_string(), Value::String(public));
                    }
                    if before.as_deref() == Some(team.as_str()) {
                        cur.model_name.clone()
                    } else {
                        internal_name(&team)
                    }
                }
                None => new_name.clone().unwrap_or_else(|| cur.model_name.clone()),
            };
            ApiModel::from_parts(
                &cur.model_id,
                &name,
                params.clone(),
                info.clone(),
                &credentials,
                &process_env,
            )
            .map_err(|b| StoreError::BadRequest {
                message: b.to_string(),
                param: Some(b.path),
            })?;
            let next = ProxyModelRow {
                model_name: name,
                litellm_params: cipher.seal_params(&params).to_string(),
                model_info: info.to_string(),
                ..cur.clone()
            };
            plain_after = params;
            info_after = info;
            Ok(next)
        })
        .await
        .map_err(|e| store_error(&e))?;
    let Some(row) = written else {
        if s.app.runtime.load().catalog.config_ids.contains(id) {
            return Err(bad(
                "Can't edit model. Model in config. Store model in db via `/model/new`. to edit."
                    .to_string(),
                Some("model_info.id"),
            ));
        }
        return Err(bad(
            format!("Model with id={id} not found in db"),
            Some("model_info.id"),
        ));
    };
    if let Some(team) = info_after.get("team_id").and_then(Value::as_str) {
        join_team_models(s, team, &info_after, Some(who)).await?;
    }
    announce(sync).await;
    Ok(row_json(&row, &plain_after))
}

/// `POST /model/block` and `/model/unblock` `{"model_id": ...}` (proxy admins, stored
/// deployments): a blocked deployment keeps its place in the store and in `/model/info`
/// (`model_info.blocked`) but serves nothing; a model all of whose deployments are blocked is
/// refused with 403 and left out of `/v1/models`. Applied fleet-wide as any model change.
async fn block(State(s): Shared, headers: HeaderMap, body: Bytes, blocked: bool) -> Response {
    let r = async {
        let (_, role) = super::roles::caller_role(&s.mgmt, &headers).await?;
        let super::roles::Role::Admin(who) = role else {
            return Err(error(
                403,
                "auth_error",
                "Only proxy admins can change a model's blocked flag.".to_string(),
                Some("blocked"),
            ));
        };
        let Some(sync) = &s.sync else {
            return Err(bad(
                "Model updates only supported for DB-stored models".to_string(),
                None,
            ));
        };
        let body = json_body(&body)?;
        let Some(id) = string_field(&body, "model_id")? else {
            return Err(bad("model_id is required".to_string(), Some("model_id")));
        };
        if sync
            .store
            .get_model(&id)
            .await
            .map_err(|e| store_error(&e))?
            .is_none()
        {
            if s.app.runtime.load().catalog.config_ids.contains(&id) {
                return Err(bad(
                    "Cannot edit config-based model. Store model in DB via /model/new first."
                        .to_string(),
                    None,
                ));
            }
            return Err(error(
                404,
                "not_found_error",
                format!("Model {id} not found on proxy."),
                None,
            ));
        }
        let mut change = Map::new();
        change.insert("model_info".to_string(), json!({ "blocked": blocked }));
        update_as(&s, &who, &id, &change).await
    };
    match r.await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn delete_model(State(s): Shared, headers: HeaderMap, body: Bytes) -> Response {
    let r = async {
        admin(&s, &headers, "/model/delete").await?;
        let Some(sync) = &s.sync else {
            return Err(not_enabled());
        };
        let body = json_body(&body)?;
        let id = string_field(&body, "id")?
            .ok_or_else(|| bad("id: field required".to_string(), Some("id")))?;
        let gone = sync
            .store
            .delete_model(&id)
            .await
            .map_err(|e| store_error(&e))?;
        if gone.is_none() {
            return Err(bad(
                format!("Model with id={id} not found in db"),
                Some("id"),
            ));
        }
        announce(sync).await;
        Ok(json!({ "message": format!("Model: {id} deleted successfully") }))
    };
    match r.await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}
