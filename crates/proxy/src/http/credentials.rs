//! `/credentials`: named sets of provider fields (`api_key`, `api_base`, ...) that stored
//! deployments take by `litellm_credential_name`, kept in the store beside config.yaml's
//! `credential_list` (LiteLLM's credential endpoints). Proxy admins write, admins and admin
//! viewers read; values are always shown masked. A change reaches every instance as a model
//! change does (`ledger::model_sync`), and the deployments naming the credential are rebuilt
//! with its new values. Better than LiteLLM: an edit or a delete that would leave a stored
//! deployment without what it needs is refused (LiteLLM keeps serving it and the calls fail).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::Utc;
use http::HeaderMap;
use idlehands_store::{CredentialRow, StoreError};
use serde_json::{Map, Value, json};

use super::keys::{FieldRules, Mgmt, Shared, ignored_fields, tri};
use super::model_admin::{announce, error, json_body, not_enabled, object_field};
use super::roles::{require_admin, require_reader};
use crate::config::{Credentials, StoredCredential, process_env};
use crate::error::ProxyError;
use crate::ledger::ModelSync;
use crate::ledger::seams::store_error;
use crate::models::ApiModel;

pub(crate) fn routes(state: Arc<Mgmt>) -> Router {
    Router::new()
        .route("/credentials", get(list).post(create))
        .route("/credentials/by_name/{*name}", get(by_name))
        .route("/credentials/by_model/{model_id}", get(by_model))
        .route(
            "/credentials/{*name}",
            axum::routing::patch(update).delete(delete),
        )
        .with_state(state)
}

/// Key names whose values are masked (LiteLLM's list; a key matches when it contains one).
const SENSITIVE: [&str; 8] = [
    "authorization",
    "token",
    "key",
    "secret",
    "vertex_credentials",
    "credentials",
    "password",
    "passwd",
];
/// Characters shown of a masked value, half at each end.
const SHOWN: usize = 4;
const STARS: &str = "****";
const SHORT_MASK: &str = "*****";
/// Nested objects are masked (and read back) this deep, as LiteLLM.
const MAX_DEPTH: usize = 20;
const DISPLAY_NAME_MAX: usize = 255;

/// The `litellm_params` fields a credential taken from a deployment (`model_id`) holds.
const CREDENTIAL_FIELDS: [&str; 28] = [
    "api_key",
    "api_base",
    "api_version",
    "azure_ad_token",
    "tenant_id",
    "client_id",
    "client_secret",
    "azure_scope",
    "azure_username",
    "azure_password",
    "vertex_project",
    "vertex_location",
    "vertex_credentials",
    "region_name",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "aws_region_name",
    "aws_session_name",
    "aws_profile_name",
    "aws_role_name",
    "aws_web_identity_token",
    "aws_sts_endpoint",
    "aws_external_id",
    "aws_bedrock_runtime_endpoint",
    "s3_bucket_name",
    "s3_region_name",
    "watsonx_region_name",
];

fn sensitive(key: &str) -> bool {
    let lower = key.to_lowercase();
    SENSITIVE.iter().any(|k| lower.contains(k))
}

fn mask_value(v: &Value, depth: usize) -> Value {
    match v {
        Value::Object(m) if depth < MAX_DEPTH => Value::Object(masked(m, depth + 1)),
        Value::String(s) => {
            let chars: Vec<char> = s.chars().collect();
            if chars.len() <= SHOWN {
                return Value::String(SHORT_MASK.to_string());
            }
            let head: String = chars[..SHOWN / 2].iter().collect();
            let tail: String = chars[chars.len() - SHOWN / 2..].iter().collect();
            Value::String(format!("{head}{STARS}{tail}"))
        }
        other => other.clone(),
    }
}

/// Values as answers show them: under a secret-looking key, a string keeps its first and last
/// two characters around four stars (five stars when it is that short); objects are masked
/// the same way inside.
fn masked(values: &Map<String, Value>, depth: usize) -> Map<String, Value> {
    values
        .iter()
        .map(|(k, v)| {
            let shown = if sensitive(k) {
                mask_value(v, depth)
            } else {
                v.clone()
            };
            (k.clone(), shown)
        })
        .collect()
}

/// Whether `v` is a masked value read back from an answer (a client editing what it was
/// shown), not a new secret.
fn is_masked_read_back(v: &Value) -> bool {
    let Value::String(s) = v else {
        return false;
    };
    if s == SHORT_MASK {
        return true;
    }
    let chars: Vec<char> = s.chars().collect();
    chars.len() == SHOWN + STARS.len()
        && chars[SHOWN / 2..chars.len() - SHOWN / 2]
            .iter()
            .all(|c| *c == '*')
}

/// `requested` with masked read-backs under secret-looking keys replaced by the stored
/// value (or left out when nothing is stored there), at any depth.
fn without_masked_read_backs(
    requested: &Map<String, Value>,
    stored: &Map<String, Value>,
    depth: usize,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in requested {
        if !sensitive(k) {
            out.insert(k.clone(), v.clone());
            continue;
        }
        if let Value::Object(inner) = v
            && depth < MAX_DEPTH
        {
            let empty = Map::new();
            let stored_inner = stored.get(k).and_then(Value::as_object).unwrap_or(&empty);
            out.insert(
                k.clone(),
                Value::Object(without_masked_read_backs(inner, stored_inner, depth + 1)),
            );
        } else if !is_masked_read_back(v) {
            out.insert(k.clone(), v.clone());
        } else if let Some(kept) = stored.get(k) {
            out.insert(k.clone(), kept.clone());
        }
    }
    out
}

/// LiteLLM's plain HTTP errors (`HTTPException`) carry this type.
fn invalid(status: u16, message: String) -> ProxyError {
    error(status, "invalid_request_error", message, None)
}

fn validation(status: u16, message: String, param: &str) -> ProxyError {
    error(status, "validation_error", message, Some(param))
}

fn sync_of(m: &Mgmt) -> Result<&Arc<ModelSync>, ProxyError> {
    m.models.as_ref().ok_or_else(not_enabled)
}

fn string_field(body: &Map<String, Value>, field: &str) -> Result<Option<String>, ProxyError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(error(
            400,
            "invalid_request_error",
            format!("{field}: must be a string"),
            Some(field),
        )),
    }
}

/// Format characters (Unicode `Cf`) and line and paragraph separators, which a display name
/// may not hold (besides control characters).
fn formatting(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{0600}'..='\u{0605}' | '\u{061C}' | '\u{06DD}' | '\u{070F}'
        | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFB}')
}

fn display_name(raw: Option<String>) -> Result<Option<String>, ProxyError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let trimmed = raw.trim();
    let refuse = |message: String| validation(400, message, "display_name");
    if trimmed.is_empty() {
        return Err(refuse(
            "display_name cannot be blank. Send null to clear it or omit the field to leave it unchanged.".to_string(),
        ));
    }
    if trimmed.chars().count() > DISPLAY_NAME_MAX {
        return Err(refuse(format!(
            "display_name cannot be longer than {DISPLAY_NAME_MAX} characters."
        )));
    }
    if trimmed.chars().any(|c| c.is_control() || formatting(c)) {
        return Err(refuse(
            "display_name cannot contain control, formatting, or line separator characters."
                .to_string(),
        ));
    }
    Ok(Some(trimmed.to_string()))
}

fn without_nulls(values: Map<String, Value>) -> Map<String, Value> {
    values.into_iter().filter(|(_, v)| !v.is_null()).collect()
}

/// The credential fields of deployment `model_id` (config.yaml's or a stored one), as it
/// calls with them; LiteLLM's 404 when there is no such deployment.
fn deployment_credentials(
    m: &Mgmt,
    model_id: &str,
) -> Result<(String, Map<String, Value>), ProxyError> {
    let rt = m.app.runtime.load();
    let not_found = || invalid(404, "Model not found".to_string());
    let entry = rt.catalog.by_id(model_id).ok_or_else(not_found)?;
    let params = match rt.catalog.api_model(model_id) {
        Some(api) => crate::models::params_json(&api.entry.litellm_params),
        None => {
            let config = &m.app.models.config.file.model_list;
            let found = config
                .iter()
                .enumerate()
                .find(|(i, e)| crate::providers::deployment_id(*i, e) == model_id)
                .map(|(_, e)| e)
                .ok_or_else(not_found)?;
            crate::models::params_json(&found.litellm_params)
        }
    };
    let Value::Object(params) = params else {
        return Err(not_found());
    };
    let values = params
        .into_iter()
        .filter(|(k, v)| CREDENTIAL_FIELDS.contains(&k.as_str()) && !v.is_null())
        .collect();
    Ok((entry.model_name.clone(), values))
}

fn view_json(v: &crate::config::CredentialView<'_>) -> Value {
    json!({
        "credential_name": v.name,
        "display_name": v.display_name,
        "credential_values": Value::Object(masked(v.values, 0)),
        "credential_info": Value::Object(v.info.clone()),
        "source": v.source,
    })
}

/// The credentials deployments may name: the stored ones with config.yaml's, or config.yaml's
/// alone without `store_model_in_db`.
fn all_credentials(m: &Mgmt) -> Credentials {
    m.models.as_ref().map_or_else(
        || m.app.models.config.credentials.clone(),
        |s| s.credentials(),
    )
}

async fn list(State(m): Shared, headers: HeaderMap) -> Response {
    tri!(require_reader(&m, &headers, "/credentials").await);
    let all = all_credentials(&m);
    let credentials: Vec<Value> = all.views().map(|v| view_json(&v)).collect();
    axum::Json(json!({"success": true, "credentials": credentials})).into_response()
}

async fn by_name(State(m): Shared, Path(name): Path<String>, headers: HeaderMap) -> Response {
    tri!(require_reader(&m, &headers, "/credentials/by_name").await);
    let all = all_credentials(&m);
    match all.view(&name) {
        Some(v) => axum::Json(view_json(&v)).into_response(),
        None => invalid(
            404,
            format!("Credential not found. Got credential name: {name}"),
        )
        .into_response(),
    }
}

async fn by_model(State(m): Shared, Path(model_id): Path<String>, headers: HeaderMap) -> Response {
    tri!(require_reader(&m, &headers, "/credentials/by_model").await);
    let (model_name, values) = tri!(deployment_credentials(&m, &model_id));
    axum::Json(json!({
        "credential_name": format!("{model_name}-credential-{model_id}"),
        "display_name": null,
        "credential_values": Value::Object(masked(&values, 0)),
        "credential_info": {},
    }))
    .into_response()
}

/// Refuses `credentials` when a served stored deployment naming `name` could not be built
/// with them (a field it needed was deleted, or a value is of the wrong kind).
fn check_users(m: &Mgmt, name: &str, credentials: &Credentials) -> Result<(), StoreError> {
    let rt = m.app.runtime.load();
    for api in &rt.catalog.api {
        let names_it = api
            .params
            .get("litellm_credential_name")
            .and_then(Value::as_str)
            .is_some_and(|n| n.trim() == name);
        if !names_it {
            continue;
        }
        let id = api.entry.model_info.id.as_deref().unwrap_or_default();
        if let Err(b) = ApiModel::from_parts(
            id,
            &api.entry.model_name,
            api.params.clone(),
            api.info.clone(),
            credentials,
            &process_env,
        ) {
            return Err(StoreError::bad_request(
                format!("Credential '{name}' would leave stored model {id} unable to serve: {b}"),
                "credential_values",
            ));
        }
    }
    Ok(())
}

/// The fields `PATCH /credentials/<name>` acts on; `POST /credentials` all but the last.
const FIELDS: [&str; 6] = [
    "credential_name",
    "credential_values",
    "credential_info",
    "display_name",
    "model_id",
    "credential_values_to_delete",
];

const CREATE_FIELDS: FieldRules = FieldRules {
    entity: "credential",
    acted: FIELDS.split_at(FIELDS.len() - 1).0,
    inert: &[],
};

const UPDATE_FIELDS: FieldRules = FieldRules {
    entity: "credential",
    acted: &FIELDS,
    inert: &[],
};

/// LiteLLM's answer, with the body's fields that changed nothing named (`ignored_fields`).
fn success(message: &str, ignored: Map<String, Value>) -> Response {
    let mut answer = json!({"success": true, "message": message});
    if !ignored.is_empty() {
        answer["ignored_fields"] = Value::Object(ignored);
    }
    axum::Json(answer).into_response()
}

async fn create(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    let who = tri!(require_admin(&m, &headers, "/credentials").await);
    let sync = tri!(sync_of(&m));
    let body = tri!(json_body(&bytes));
    let name = match tri!(string_field(&body, "credential_name")) {
        Some(n) if !n.trim().is_empty() => n,
        _ => {
            return error(
                400,
                "invalid_request_error",
                "credential_name: field required".to_string(),
                Some("credential_name"),
            )
            .into_response();
        }
    };
    let values = match tri!(string_field(&body, "model_id")) {
        Some(id) => tri!(deployment_credentials(&m, &id)).1,
        None => match tri!(object_field(&body, "credential_values")) {
            Some(v) if !v.is_empty() => v,
            _ => {
                return invalid(
                    400,
                    "Either credential_values or model_id must be set".to_string(),
                )
                .into_response();
            }
        },
    };
    let info = tri!(object_field(&body, "credential_info")).unwrap_or_default();
    let display = tri!(display_name(tri!(string_field(&body, "display_name"))));
    if sync.config_credentials().is_config(&name) {
        return validation(
            409,
            format!("Credential '{name}' is defined in config. Edit config.yaml to change it."),
            "credential_name",
        )
        .into_response();
    }
    let values = without_nulls(values);
    let now = Utc::now();
    let row = CredentialRow {
        credential_name: name.clone(),
        display_name: display,
        credential_values: sync.cipher.seal_params(&Value::Object(values)).to_string(),
        credential_info: Value::Object(info).to_string(),
        created_at: now,
        created_by: who.clone(),
        updated_at: now,
        updated_by: who,
    };
    let inserted = tri!(
        sync.store
            .insert_credential(&row)
            .await
            .map_err(|e| store_error(&e))
    );
    if !inserted {
        return invalid(
            409,
            format!(
                "Credential '{name}' already exists. Update it with PATCH /credentials/{name}, or delete it first."
            ),
        )
        .into_response();
    }
    announce(sync).await;
    success(
        "Credential created successfully",
        ignored_fields(&CREATE_FIELDS, "/credentials", &bytes),
    )
}

/// What a `PATCH` asks for.
struct Patch {
    display_name: Option<Option<String>>,
    values: Map<String, Value>,
    info: Map<String, Value>,
    delete: Vec<String>,
}

fn patch_of(m: &Mgmt, name: &str, body: &Map<String, Value>) -> Result<Patch, ProxyError> {
    if let Some(given) = string_field(body, "credential_name")?
        && !given.is_empty()
        && given != name
    {
        return Err(validation(
            400,
            "credential_name is immutable. Set display_name to change how the credential is labeled."
                .to_string(),
            "credential_name",
        ));
    }
    let display = if body.contains_key("display_name") {
        Some(display_name(string_field(body, "display_name")?)?)
    } else {
        None
    };
    let delete: Vec<String> = match body.get("credential_values_to_delete") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                error(
                    400,
                    "invalid_request_error",
                    "credential_values_to_delete: must be a list of field names".to_string(),
                    Some("credential_values_to_delete"),
                )
            })?,
        Some(_) => {
            return Err(error(
                400,
                "invalid_request_error",
                "credential_values_to_delete: must be a list of field names".to_string(),
                Some("credential_values_to_delete"),
            ));
        }
    };
    let values = match string_field(body, "model_id")? {
        Some(id) => deployment_credentials(m, &id)?.1,
        None => object_field(body, "credential_values")?.unwrap_or_default(),
    };
    let mut overlap: Vec<&str> = delete
        .iter()
        .filter(|k| values.contains_key(k.as_str()))
        .map(String::as_str)
        .collect();
    if !overlap.is_empty() {
        overlap.sort_unstable();
        overlap.dedup();
        let listed: Vec<String> = overlap.iter().map(|k| format!("'{k}'")).collect();
        return Err(invalid(
            400,
            format!(
                "credential_values_to_delete overlaps credential_values for key(s): [{}]",
                listed.join(", ")
            ),
        ));
    }
    Ok(Patch {
        display_name: display,
        values,
        info: object_field(body, "credential_info")?.unwrap_or_default(),
        delete,
    })
}

async fn update(
    State(m): Shared,
    Path(name): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let who = tri!(require_admin(&m, &headers, "/credentials").await);
    let sync = tri!(sync_of(&m));
    let body = tri!(json_body(&bytes));
    let patch = tri!(patch_of(&m, &name, &body));
    // Merged inside the row's transaction: two edits at once never lose one another's change.
    let written = sync
        .store
        .update_credential(&name, who.as_deref(), |cur| {
            let opened = sync.open_credential(cur).ok_or_else(|| {
                StoreError::Internal(format!(
                    "credential '{name}' cannot be opened with this instance's salt key"
                ))
            })?;
            let merged = merge(opened, &patch);
            // The deployments checked name this credential alone: it is the one they need.
            let (with_merged, _) = sync.config_credentials().with_stored(vec![merged.clone()]);
            check_users(&m, &name, &with_merged)?;
            Ok(CredentialRow {
                display_name: merged.display_name,
                credential_values: sync
                    .cipher
                    .seal_params(&Value::Object(merged.values))
                    .to_string(),
                credential_info: Value::Object(merged.info).to_string(),
                ..cur.clone()
            })
        })
        .await;
    match tri!(written.map_err(|e| store_error(&e))) {
        Some(_) => {
            announce(sync).await;
            success(
                "Credential updated successfully",
                ignored_fields(&UPDATE_FIELDS, "/credentials", &bytes),
            )
        }
        None => missing(sync, &name, "Credential not found in DB.".to_string()).into_response(),
    }
}

/// The stored credential with `patch` applied, as LiteLLM merges: new values over the old
/// (a null or a masked read-back keeps the old), then the listed fields deleted; info merged.
fn merge(current: StoredCredential, patch: &Patch) -> StoredCredential {
    let mut values = current.values;
    let incoming = without_masked_read_backs(&patch.values, &values, 0);
    for (k, v) in incoming {
        if !v.is_null() {
            values.insert(k, v);
        }
    }
    for k in &patch.delete {
        values.remove(k);
    }
    let mut info = current.info;
    for (k, v) in &patch.info {
        info.insert(k.clone(), v.clone());
    }
    StoredCredential {
        name: current.name,
        display_name: match &patch.display_name {
            Some(d) => d.clone(),
            None => current.display_name,
        },
        values,
        info,
    }
}

/// A name not in the store: config.yaml's (LiteLLM's 405, read only) or unknown (404).
fn missing(sync: &ModelSync, name: &str, not_found: String) -> ProxyError {
    if sync.config_credentials().is_config(name) {
        return ProxyError::Custom {
            status: 405,
            kind: "validation_error".to_string(),
            message: format!(
                "Credential '{name}' is defined in config and cannot be edited from the API or UI."
            ),
            param: Some("credential_name".to_string()),
            headers: vec![(http::header::ALLOW, http::HeaderValue::from_static("GET"))],
        };
    }
    invalid(404, not_found)
}

async fn delete(State(m): Shared, Path(name): Path<String>, headers: HeaderMap) -> Response {
    tri!(require_admin(&m, &headers, "/credentials").await);
    let sync = tri!(sync_of(&m));
    let cipher = sync.cipher.clone();
    let target = name.clone();
    let deleted = sync
        .store
        .delete_credential(&name, move |models| {
            let users: Vec<&str> = models
                .iter()
                .filter(|row| {
                    let params = serde_json::from_str::<Value>(&row.litellm_params)
                        .ok()
                        .and_then(|p| cipher.open_params(&p).ok());
                    params
                        .as_ref()
                        .and_then(|p| p.get("litellm_credential_name"))
                        .and_then(Value::as_str)
                        .is_some_and(|n| n.trim() == target)
                })
                .map(|row| row.model_id.as_str())
                .collect();
            if users.is_empty() {
                return Ok(());
            }
            Err(StoreError::bad_request(
                format!(
                    "Credential '{target}' is used by stored model(s) {}: change or delete them first.",
                    users.join(", ")
                ),
                "credential_name",
            ))
        })
        .await;
    match tri!(deleted.map_err(|e| store_error(&e))) {
        Some(_) => {
            announce(sync).await;
            success("Credential deleted successfully", Map::new())
        }
        None => missing(
            sync,
            &name,
            format!("Credential not found. Got credential name: {name}"),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn secrets_are_masked_as_litellm_masks_them() {
        let shown = masked(
            &map(json!({
                "api_key": "sk-abcdefgh",
                "api_base": "https://example.test/v1",
                "aws_secret_access_key": "abc",
                "vertex_credentials": {"private_key": "-----BEGIN-----", "project_id": "p"},
                "max_tokens": 5,
                "Authorization": "Bearer é-token-ü",
            })),
            0,
        );
        assert_eq!(
            Value::Object(shown),
            json!({
                "api_key": "sk****gh",
                "api_base": "https://example.test/v1",
                "aws_secret_access_key": "*****",
                "vertex_credentials": {"private_key": "--****--", "project_id": "p"},
                "max_tokens": 5,
                "Authorization": "Be****-ü",
            })
        );
    }

    #[test]
    fn masked_values_read_back_keep_what_is_stored() {
        let stored = map(json!({
            "api_key": "sk-stored-secret",
            "api_base": "https://old.test",
            "vertex_credentials": {"private_key": "pk-stored", "client_email": "a@b"},
        }));
        let requested = map(json!({
            "api_key": "sk****et",
            "api_base": "https://new.test",
            "vertex_credentials": {"private_key": "*****", "client_email": "c@d"},
            "client_secret": "cl****et",
            "azure_ad_token": "a-real-new-token",
        }));
        let kept = without_masked_read_backs(&requested, &stored, 0);
        assert_eq!(
            Value::Object(kept),
            json!({
                "api_key": "sk-stored-secret",
                "api_base": "https://new.test",
                "vertex_credentials": {"private_key": "pk-stored", "client_email": "c@d"},
                "azure_ad_token": "a-real-new-token",
            })
        );
    }

    #[test]
    fn a_patch_merges_values_deletes_fields_and_keeps_or_clears_the_display_name() {
        let current = StoredCredential {
            name: "c".into(),
            display_name: Some("Old".into()),
            values: map(json!({"api_key": "sk-1", "api_base": "https://a", "api_version": "v1"})),
            info: map(json!({"custom_llm_provider": "azure", "team": "x"})),
        };
        let patch = Patch {
            display_name: None,
            values: map(json!({"api_base": "https://b", "api_key": null})),
            info: map(json!({"team": "y"})),
            delete: vec!["api_version".into()],
        };
        let merged = merge(current.clone(), &patch);
        assert_eq!(merged.display_name.as_deref(), Some("Old"));
        assert_eq!(
            Value::Object(merged.values),
            json!({"api_key": "sk-1", "api_base": "https://b"})
        );
        assert_eq!(
            Value::Object(merged.info),
            json!({"custom_llm_provider": "azure", "team": "y"})
        );
        let clear = Patch {
            display_name: Some(None),
            values: Map::new(),
            info: Map::new(),
            delete: Vec::new(),
        };
        assert_eq!(merge(current, &clear).display_name, None);
    }

    #[test]
    fn display_names_are_trimmed_and_checked() {
        assert_eq!(
            display_name(Some("  Prod  ".into())).ok(),
            Some(Some("Prod".into()))
        );
        assert_eq!(display_name(None).ok(), Some(None));
        for bad in ["   ", "a\u{0007}b", "a\u{200B}b", "a\u{2028}b"] {
            assert!(display_name(Some(bad.into())).is_err(), "{bad:?}");
        }
        assert!(display_name(Some("x".repeat(256))).is_err());
        assert!(display_name(Some("é".repeat(255))).is_ok());
    }
}
