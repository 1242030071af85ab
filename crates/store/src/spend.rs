//! The spend-log row (`LiteLLM_SpendLogs`): one per request, success or failure.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::money::{de_usd, ser_usd};
use crate::types::{JsonObjectText, iso, iso_opt};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SpendLogRow {
    /// Primary key: the gateway's own call id (`x-litellm-call-id`), unique per call. Not the
    /// upstream's response id: upstreams reuse those (Ollama draws them from a few hundred
    /// numbers, some servers send a fixed one), and a second row under one key is refused.
    pub request_id: String,
    /// The upstream's response id (`chatcmpl-...`), when it sent one; not unique.
    pub upstream_response_id: Option<String>,
    /// `acompletion`, `aembedding`, `anthropic_messages`, ...
    pub call_type: String,
    /// sha256 hex of the virtual key (never the `sk-` plaintext); the key whose spend grows.
    pub api_key: String,
    /// USD in JSON, nano-USD here.
    #[serde(serialize_with = "ser_usd", deserialize_with = "de_usd")]
    pub spend: i64,
    pub total_tokens: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    #[serde(rename = "startTime", serialize_with = "iso")]
    pub start_time: DateTime<Utc>,
    #[serde(rename = "endTime", serialize_with = "iso")]
    pub end_time: DateTime<Utc>,
    #[serde(rename = "completionStartTime", serialize_with = "iso_opt")]
    pub completion_start_time: Option<DateTime<Utc>>,
    pub request_duration_ms: Option<i64>,
    /// The deployment's model.
    pub model: String,
    pub model_id: Option<String>,
    /// The public model name the client asked for.
    pub model_group: Option<String>,
    pub custom_llm_provider: Option<String>,
    pub api_base: Option<String>,
    pub user: Option<String>,
    pub team_id: Option<String>,
    /// The key's team's organization (or the key's own), for organization spend.
    pub organization_id: Option<String>,
    pub end_user: Option<String>,
    pub requester_ip_address: Option<String>,
    pub session_id: Option<String>,
    /// Kept as JSON text: the proxy writes it once per request and the database stores text.
    pub metadata: JsonObjectText,
    /// `"True"` / `"False"`, as LiteLLM writes it.
    pub cache_hit: Option<String>,
    pub cache_key: Option<String>,
    pub request_tags: Vec<String>,
    pub messages: Option<Value>,
    pub response: Option<Value>,
    /// `success` or `failure`.
    pub status: String,
    pub litellm_call_id: Option<String>,
    /// The upstream reported no usage: the token counts are the gateway's estimate.
    pub usage_estimated: bool,
    /// The key's `model_max_budget` entry the call counted against, so that the commit adds
    /// its spend there too; not a column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_budget: Option<String>,
    /// The call counts against the proxy-wide budget (`litellm_settings.max_budget`): the
    /// commit adds its spend to that budget's user too; not a column.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub proxy_budget: bool,
    /// The route budgets (`crate::route_budgets`) the call counted against, by entity: the
    /// commit adds its spend to each too; not a column.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route_budgets: Vec<String>,
}

pub const STATUS_SUCCESS: &str = "success";
pub const STATUS_FAILURE: &str = "failure";

/// What to group spend by in [`crate::Store::spend_by`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpendGroup {
    Key,
    Model,
    User,
    /// UTC day, `YYYY-MM-DD`.
    Day,
}

/// One group of [`crate::Store::spend_by`].
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SpendAggregate {
    /// The key hash, model group, user or day; empty when the rows had none.
    pub group: String,
    #[serde(serialize_with = "ser_usd")]
    pub spend: i64,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
}
