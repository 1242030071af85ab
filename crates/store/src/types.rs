//! Request and response bodies of `/key/*` and `/spend/logs`, with LiteLLM's field names.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::error::StoreError;
use crate::money::{ser_usd, ser_usd_opt};

pub type JsonMap = Map<String, Value>;

/// A JSON object held as its text. Spend-log metadata is written once per request and stored
/// as text: building a map and serializing it again cost more than the rest of the row.
#[derive(Debug, Clone)]
pub struct JsonObjectText(String);

impl JsonObjectText {
    /// `None` unless `text` is one JSON object.
    pub fn from_text(text: String) -> Option<Self> {
        match serde_json::from_str::<&serde_json::value::RawValue>(&text) {
            Ok(raw) if raw.get().starts_with('{') => Some(Self(text)),
            _ => None,
        }
    }

    /// Text that serde_json wrote from an object, taken without parsing it again (checked in
    /// debug builds).
    pub fn from_serialized_object(text: String) -> Self {
        debug_assert!(
            Self::from_text(text.clone()).is_some(),
            "not an object: {text}"
        );
        Self(text)
    }

    pub fn from_map(map: &JsonMap) -> Self {
        Self(serde_json::to_string(map).unwrap_or_else(|_| "{}".to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn to_map(&self) -> JsonMap {
        serde_json::from_str(&self.0).unwrap_or_default()
    }
}

impl Default for JsonObjectText {
    fn default() -> Self {
        Self("{}".to_string())
    }
}

impl PartialEq for JsonObjectText {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0 || self.to_map() == other.to_map()
    }
}

impl Serialize for JsonObjectText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match serde_json::from_str::<&serde_json::value::RawValue>(&self.0) {
            Ok(raw) => raw.serialize(s),
            Err(_) => JsonMap::new().serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for JsonObjectText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        JsonMap::deserialize(d).map(|m| Self::from_map(&m))
    }
}

/// Parses a JSON body; a wrong type answers 400 naming the field (`max_budget`, `models[2]`).
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, StoreError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            StoreError::BadRequest {
                message: format!("Invalid request body: {inner}"),
                param: None,
            }
        } else {
            StoreError::bad_request(format!("Invalid value for '{path}': {inner}"), path)
        }
    })
}

/// Python's `datetime.isoformat()` for UTC, as LiteLLM's JSON shows times:
/// `2026-12-01T00:00:00+00:00`, with `.ffffff` only when there are microseconds. Clients
/// parsing with Python < 3.11 `fromisoformat` reject the `Z` suffix.
pub fn py_isoformat(t: &DateTime<Utc>) -> String {
    if t.timestamp_subsec_micros() == 0 {
        t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
    }
}

pub(crate) fn iso<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&py_isoformat(t))
}

pub(crate) fn iso_opt<S: serde::Serializer>(
    t: &Option<DateTime<Utc>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&py_isoformat(t)),
        None => s.serialize_none(),
    }
}

/// A field of an update: absent (unchanged), `null` (cleared) or a value.
pub type Patch<T> = Option<Option<T>>;

pub(crate) fn patch<'de, D, T>(d: D) -> Result<Patch<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `POST /key/generate` (`GenerateKeyRequest`). Fields LiteLLM has and IdleHands does not use
/// are not stored; the gateway names them in the answer's `ignored_fields`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GenerateKeyRequest {
    pub key: Option<String>,
    pub key_alias: Option<String>,
    pub user_id: Option<String>,
    pub team_id: Option<String>,
    pub organization_id: Option<String>,
    pub duration: Option<String>,
    pub spend: Option<f64>,
    pub max_budget: Option<f64>,
    pub soft_budget: Option<f64>,
    pub budget_duration: Option<String>,
    pub models: Option<Vec<String>>,
    pub aliases: Option<JsonMap>,
    pub config: Option<JsonMap>,
    pub permissions: Option<JsonMap>,
    pub metadata: Option<JsonMap>,
    pub tpm_limit: Option<i64>,
    pub rpm_limit: Option<i64>,
    pub max_parallel_requests: Option<i64>,
    pub blocked: Option<bool>,
    pub allowed_routes: Option<Vec<String>>,
    pub key_type: Option<String>,
    pub model_max_budget: Option<JsonMap>,
    pub allowed_cache_controls: Option<Vec<String>>,
    /// The named budget (`/budget/new`) the key follows: its limits where the key sets none.
    pub budget_id: Option<String>,
    /// Kept in `metadata`, as LiteLLM keeps them.
    pub model_rpm_limit: Option<JsonMap>,
    pub model_tpm_limit: Option<JsonMap>,
}

/// `POST /key/update`: `key` (plaintext or hash) or `key_alias` names the key; every other
/// field present changes, `null` clears it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UpdateKeyRequest {
    pub key: Option<String>,
    #[serde(default, deserialize_with = "patch")]
    pub key_alias: Patch<String>,
    #[serde(default, deserialize_with = "patch")]
    pub user_id: Patch<String>,
    #[serde(default, deserialize_with = "patch")]
    pub team_id: Patch<String>,
    #[serde(default, deserialize_with = "patch")]
    pub organization_id: Patch<String>,
    #[serde(default, deserialize_with = "patch")]
    pub duration: Patch<String>,
    pub spend: Option<f64>,
    #[serde(default, deserialize_with = "patch")]
    pub max_budget: Patch<f64>,
    #[serde(default, deserialize_with = "patch")]
    pub soft_budget: Patch<f64>,
    #[serde(default, deserialize_with = "patch")]
    pub budget_duration: Patch<String>,
    pub models: Option<Vec<String>>,
    pub aliases: Option<JsonMap>,
    pub config: Option<JsonMap>,
    pub permissions: Option<JsonMap>,
    pub metadata: Option<JsonMap>,
    /// LiteLLM keeps a key's `tags` as its `metadata.tags` (over the metadata given beside
    /// them, else the key's own).
    pub tags: Option<Vec<Value>>,
    #[serde(default, deserialize_with = "patch")]
    pub tpm_limit: Patch<i64>,
    #[serde(default, deserialize_with = "patch")]
    pub rpm_limit: Patch<i64>,
    #[serde(default, deserialize_with = "patch")]
    pub max_parallel_requests: Patch<i64>,
    pub blocked: Option<bool>,
    #[serde(default, deserialize_with = "patch")]
    pub allowed_routes: Patch<Vec<String>>,
    #[serde(default, deserialize_with = "patch")]
    pub key_type: Patch<String>,
    #[serde(default, deserialize_with = "patch")]
    pub model_max_budget: Patch<JsonMap>,
    #[serde(default, deserialize_with = "patch")]
    pub allowed_cache_controls: Patch<Vec<String>>,
    #[serde(default, deserialize_with = "patch")]
    pub budget_id: Patch<String>,
    #[serde(default, deserialize_with = "patch")]
    pub model_rpm_limit: Patch<JsonMap>,
    #[serde(default, deserialize_with = "patch")]
    pub model_tpm_limit: Patch<JsonMap>,
}

/// `POST /key/regenerate` and `/key/{key}/regenerate`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RegenerateKeyRequest {
    /// A custom value for the new key (must start with `sk-`).
    pub new_key: Option<String>,
    /// How long the old key keeps working (e.g. `24h`); absent means it dies at once.
    pub grace_period: Option<String>,
    /// `key` names the old key; other fields change like `/key/update`.
    #[serde(flatten)]
    pub changes: UpdateKeyRequest,
}

/// `POST /key/delete`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DeleteKeysRequest {
    pub keys: Option<Vec<String>>,
    pub key_aliases: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeleteKeysResponse {
    pub deleted_keys: Vec<String>,
}

/// `POST /key/block` and `/key/unblock`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BlockKeyRequest {
    pub key: String,
}

/// A stored virtual key as LiteLLM returns it. The token hash is not part of this object's JSON;
/// [`KeyObject`] adds it where LiteLLM shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KeyRecord {
    #[serde(skip)]
    pub token: String,
    pub key_name: String,
    pub key_alias: Option<String>,
    #[serde(serialize_with = "ser_usd")]
    pub spend: i64,
    #[serde(serialize_with = "ser_usd_opt")]
    pub max_budget: Option<i64>,
    #[serde(serialize_with = "ser_usd_opt")]
    pub soft_budget: Option<i64>,
    pub budget_duration: Option<String>,
    #[serde(serialize_with = "iso_opt")]
    pub budget_reset_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "iso_opt")]
    pub expires: Option<DateTime<Utc>>,
    pub models: Vec<String>,
    pub aliases: JsonMap,
    pub config: JsonMap,
    pub permissions: JsonMap,
    pub metadata: JsonMap,
    pub user_id: Option<String>,
    pub team_id: Option<String>,
    pub organization_id: Option<String>,
    pub tpm_limit: Option<i64>,
    pub rpm_limit: Option<i64>,
    pub max_parallel_requests: Option<i64>,
    pub blocked: bool,
    #[serde(serialize_with = "iso")]
    pub created_at: DateTime<Utc>,
    pub created_by: Option<String>,
    #[serde(serialize_with = "iso")]
    pub updated_at: DateTime<Utc>,
    pub updated_by: Option<String>,
    /// LiteLLM's `allowed_routes`: the routes the key may call (paths, `/prefix/*` patterns
    /// and route groups such as `llm_api_routes`); empty means every route its role allows.
    pub allowed_routes: Vec<String>,
    /// LiteLLM's `key_type` (`llm_api`, `management`, `read_only`, `default`), which chose
    /// `allowed_routes` when the key was made.
    pub key_type: Option<String>,
    /// LiteLLM's `model_max_budget`: `{"<model, access group or glob>": {"budget_limit": USD,
    /// "time_period": "1d"}}`, a budget of the key's calls to those models per window.
    pub model_max_budget: JsonMap,
    /// LiteLLM's `allowed_cache_controls`: the response-cache controls (`no-cache`,
    /// `no-store`, ...) the key's calls may send; empty means any.
    pub allowed_cache_controls: Vec<String>,
    /// LiteLLM's `budget_id`: the named budget (a rate-limit tier) whose `max_budget`,
    /// `soft_budget`, `tpm_limit`, `rpm_limit` and `max_parallel_requests` apply where the key
    /// sets none of its own.
    pub budget_id: Option<String>,
}

impl KeyRecord {
    pub fn status(&self, now: DateTime<Utc>) -> KeyStatus {
        if self.blocked {
            KeyStatus::Revoked
        } else if self.expires.is_some_and(|e| e < now) {
            KeyStatus::Expired
        } else {
            KeyStatus::Active
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Active,
    Expired,
    Revoked,
    Deleted,
}

/// A key row with its hash (`token`), as `/key/list?return_full_object=true` and
/// `/key/update` return it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KeyObject {
    pub token: String,
    #[serde(flatten)]
    pub record: KeyRecord,
}

/// `/key/generate` and `/key/regenerate` response: the plaintext `key`, shown once.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GenerateKeyResponse {
    pub key: String,
    pub token_id: String,
    /// The hash again on `/key/generate` (LiteLLM copies `token_id` into it); `null` on
    /// `/key/regenerate`, as LiteLLM answers there.
    pub token: Option<String>,
    #[serde(flatten)]
    pub record: KeyRecord,
}

/// `/key/info` response.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KeyInfoResponse {
    /// The key as the caller passed it.
    pub key: String,
    pub info: KeyInfo,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KeyInfo {
    #[serde(flatten)]
    pub record: KeyRecord,
    pub status: KeyStatus,
    /// USD held by calls in progress (their estimates), not part of `spend`; not a LiteLLM
    /// field.
    #[serde(serialize_with = "ser_usd")]
    pub reserved_spend: i64,
    /// LiteLLM's `model_max_budget_usage`: each entry's spend in its open window, limit,
    /// period and end (only for a key with per-model budgets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_max_budget_usage: Option<JsonMap>,
}

/// `GET /key/list` query.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct KeyListQuery {
    pub page: Option<u32>,
    pub size: Option<u32>,
    pub user_id: Option<String>,
    pub team_id: Option<String>,
    pub organization_id: Option<String>,
    pub key_alias: Option<String>,
    pub key_hash: Option<String>,
    pub return_full_object: Option<bool>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
pub enum KeyListEntry {
    Hash(String),
    Full(Box<KeyObject>),
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KeyListResponse {
    pub keys: Vec<KeyListEntry>,
    pub total_count: u64,
    pub current_page: u32,
    pub total_pages: u64,
}

/// `GET /spend/logs` query.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SpendLogsQuery {
    pub api_key: Option<String>,
    /// Matches the row's key (the call id), `litellm_call_id` or the upstream's response id
    /// (several rows when the upstream reused it).
    pub request_id: Option<String>,
    pub user_id: Option<String>,
    pub team_id: Option<String>,
    pub organization_id: Option<String>,
    /// The request's `user` (LiteLLM's end user / customer).
    pub end_user: Option<String>,
    /// `YYYY-MM-DD`, inclusive.
    pub start_date: Option<String>,
    /// `YYYY-MM-DD`, inclusive (the whole day).
    pub end_date: Option<String>,
    pub summarize: Option<bool>,
    pub page: Option<u32>,
    pub page_size: Option<u32>,
}

/// One day of `/spend/logs?summarize=true`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DailySpend {
    #[serde(rename = "startTime")]
    pub start_time: String,
    pub spend: f64,
    pub users: std::collections::BTreeMap<String, f64>,
    pub models: std::collections::BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
pub enum SpendLogsResponse {
    Rows(Vec<crate::spend::SpendLogRow>),
    Summary(Vec<DailySpend>),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The spend-row writers store metadata without the NUL pass other text gets
    /// (`spend_db::text`): JSON text cannot hold a raw NUL, so neither can this.
    #[test]
    fn json_object_text_never_holds_a_nul_byte() {
        assert!(JsonObjectText::from_text("{\"a\":\"x\0y\"}".to_string()).is_none());
        let mut map = JsonMap::new();
        map.insert("k\0".to_string(), Value::String("v\0".to_string()));
        let text = JsonObjectText::from_map(&map);
        assert!(!text.as_str().contains('\0'));
        assert_eq!(text.to_map(), map);
        let kept = JsonObjectText::from_text("{\"a\":\"x\\u0000y\"}".to_string()).unwrap();
        assert!(!kept.as_str().contains('\0'));
    }
}
