//! config.yaml as LiteLLM users write it. Every section tolerates keys we do not use yet (kept
//! in `extra` and logged at debug); numbers and booleans may be written as strings.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::lenient;

/// A secret from the config (API key, master key, database URL). Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Secret(s)),
            Value::Number(n) => Ok(Secret(n.to_string())),
            // The value itself is never echoed: it may be a key.
            _ => Err(D::Error::custom("expected a string (value not shown)")),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct FileConfig {
    pub model_list: Vec<ModelEntry>,
    pub litellm_settings: LitellmSettings,
    pub router_settings: RouterSettings,
    pub general_settings: GeneralSettings,
    /// Exported at load: `os.environ/` references and provider defaults see these first.
    pub environment_variables: BTreeMap<String, Value>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// One deployment. Entries sharing a `model_name` form a model group.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelEntry {
    pub model_name: String,
    pub litellm_params: LitellmParams,
    #[serde(default)]
    pub model_info: ModelInfo,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CostFields {
    #[serde(deserialize_with = "lenient::opt_f64")]
    pub input_cost_per_token: Option<f64>,
    #[serde(deserialize_with = "lenient::opt_f64")]
    pub output_cost_per_token: Option<f64>,
    #[serde(deserialize_with = "lenient::opt_f64")]
    pub cache_read_input_token_cost: Option<f64>,
    #[serde(deserialize_with = "lenient::opt_f64")]
    pub cache_creation_input_token_cost: Option<f64>,
    #[serde(deserialize_with = "lenient::opt_f64")]
    pub output_cost_per_reasoning_token: Option<f64>,
    #[serde(deserialize_with = "lenient::opt_f64")]
    pub input_cost_per_token_above_200k_tokens: Option<f64>,
    #[serde(deserialize_with = "lenient::opt_f64")]
    pub output_cost_per_token_above_200k_tokens: Option<f64>,
    #[serde(deserialize_with = "lenient::opt_f64")]
    pub input_cost_per_second: Option<f64>,
    #[serde(deserialize_with = "lenient::opt_f64")]
    pub output_cost_per_second: Option<f64>,
    /// Speech: USD per character of input (`/v1/audio/speech`).
    #[serde(deserialize_with = "lenient::opt_f64")]
    pub input_cost_per_character: Option<f64>,
}

impl CostFields {
    /// The audio rates among these fields.
    pub fn audio(&self) -> crate::pricing::audio::AudioOverride {
        crate::pricing::audio::AudioOverride {
            input_cost_per_second: self.input_cost_per_second,
            output_cost_per_second: self.output_cost_per_second,
            input_cost_per_character: self.input_cost_per_character,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct LitellmParams {
    /// `<provider>/<provider model>`, or a bare model name.
    pub model: String,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub api_base: Option<String>,
    #[serde(default)]
    pub api_key: Option<Secret>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub api_version: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub organization: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub custom_llm_provider: Option<String>,
    /// Seconds, whole request.
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub timeout: Option<f64>,
    /// Seconds, for `stream: true` requests.
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub stream_timeout: Option<f64>,
    #[serde(default, deserialize_with = "lenient::opt_u32")]
    pub max_retries: Option<u32>,
    /// Canned answer: no upstream call.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub mock_response: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub rpm: Option<u64>,
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub tpm: Option<u64>,
    /// Calls in flight at once on this deployment (LiteLLM's; see `providers::slots`).
    #[serde(default, deserialize_with = "lenient::opt_u32")]
    pub max_parallel_requests: Option<u32>,
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub weight: Option<f64>,
    #[serde(default, deserialize_with = "lenient::opt_u32")]
    pub order: Option<u32>,
    #[serde(default, deserialize_with = "lenient::string_list")]
    pub tags: Vec<String>,
    /// Tag routing: patterns matched against `User-Agent: <the caller's agent>`.
    #[serde(default, deserialize_with = "lenient::string_list")]
    pub tag_regex: Vec<String>,
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub max_budget: Option<f64>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub budget_duration: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub drop_params: Option<bool>,
    /// Bedrock: region and credentials; else `AWS_REGION` and the `AWS_*` env, read at load.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub aws_region_name: Option<String>,
    #[serde(default)]
    pub aws_access_key_id: Option<Secret>,
    #[serde(default)]
    pub aws_secret_access_key: Option<Secret>,
    #[serde(default)]
    pub aws_session_token: Option<Secret>,
    /// A `credential_list` entry whose values filled the unset fields at load (kept to be
    /// shown, as LiteLLM shows it).
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub litellm_credential_name: Option<String>,
    #[serde(flatten)]
    pub cost: CostFields,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ModelInfo {
    #[serde(deserialize_with = "lenient::opt_string")]
    pub id: Option<String>,
    /// Model name used for pricing when the deployment's own name is custom.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub base_model: Option<String>,
    /// chat, embedding, completion, ... (used by `/health`).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub mode: Option<String>,
    /// Model access groups this deployment belongs to: a key whose `models` names one of
    /// them may call this deployment's model group.
    #[serde(deserialize_with = "lenient::string_list")]
    pub access_groups: Vec<String>,
    /// Tag routing for this deployment's group, over `router_settings.enable_tag_filtering`.
    #[serde(deserialize_with = "lenient::opt_bool")]
    pub enable_tag_filtering: Option<bool>,
    #[serde(flatten)]
    pub cost: CostFields,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// `[{"gpt-4o": ["claude-sonnet"]}]`
pub type FallbackList = Vec<BTreeMap<String, Vec<String>>>;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LitellmSettings {
    #[serde(deserialize_with = "lenient::opt_bool")]
    pub drop_params: Option<bool>,
    #[serde(deserialize_with = "lenient::opt_u32")]
    pub num_retries: Option<u32>,
    /// Seconds; the default upstream timeout when a deployment sets none.
    #[serde(deserialize_with = "lenient::opt_f64")]
    pub request_timeout: Option<f64>,
    pub fallbacks: FallbackList,
    pub context_window_fallbacks: FallbackList,
    pub content_policy_fallbacks: FallbackList,
    #[serde(deserialize_with = "lenient::string_list")]
    pub default_fallbacks: Vec<String>,
    #[serde(deserialize_with = "lenient::string_list")]
    pub callbacks: Vec<String>,
    #[serde(deserialize_with = "lenient::string_list")]
    pub success_callback: Vec<String>,
    #[serde(deserialize_with = "lenient::string_list")]
    pub failure_callback: Vec<String>,
    #[serde(deserialize_with = "lenient::opt_bool")]
    pub cache: Option<bool>,
    pub cache_params: Option<Value>,
    #[serde(deserialize_with = "lenient::opt_f64")]
    pub max_budget: Option<f64>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub budget_duration: Option<String>,
    #[serde(deserialize_with = "lenient::opt_u16")]
    pub budget_exceeded_status_code: Option<u16>,
    #[serde(deserialize_with = "lenient::opt_bool")]
    pub turn_off_message_logging: Option<bool>,
    #[serde(deserialize_with = "lenient::opt_bool")]
    pub set_verbose: Option<bool>,
    #[serde(deserialize_with = "lenient::opt_bool")]
    pub json_logs: Option<bool>,
    /// LiteLLM tags every spend row with the caller's `User-Agent` unless this is true.
    #[serde(deserialize_with = "lenient::opt_bool")]
    pub disable_add_user_agent_to_request_tags: Option<bool>,
    /// Ours (not LiteLLM's): a price file in LiteLLM's JSON format, loaded at start-up on top
    /// of the built-in table. Env `LITELLM_MODEL_COST_MAP_PATH` does the same.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub model_cost_map_path: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoutingStrategy {
    #[default]
    SimpleShuffle,
    LeastBusy,
    UsageBasedRouting,
    UsageBasedRoutingV2,
    LatencyBasedRouting,
    CostBasedRouting,
    ProviderBudgetRouting,
    Lar1,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RouterSettings {
    pub routing_strategy: Option<RoutingStrategy>,
    pub routing_strategy_args: Option<Value>,
    #[serde(deserialize_with = "lenient::opt_u32")]
    pub num_retries: Option<u32>,
    #[serde(deserialize_with = "lenient::opt_f64")]
    pub timeout: Option<f64>,
    #[serde(deserialize_with = "lenient::opt_f64")]
    pub stream_timeout: Option<f64>,
    #[serde(deserialize_with = "lenient::opt_u32")]
    pub max_fallbacks: Option<u32>,
    #[serde(deserialize_with = "lenient::opt_u32")]
    pub allowed_fails: Option<u32>,
    #[serde(deserialize_with = "lenient::opt_f64")]
    pub cooldown_time: Option<f64>,
    #[serde(deserialize_with = "lenient::opt_bool")]
    pub disable_cooldowns: Option<bool>,
    #[serde(deserialize_with = "lenient::opt_f64")]
    pub retry_after: Option<f64>,
    pub retry_policy: Option<BTreeMap<String, u32>>,
    pub allowed_fails_policy: Option<BTreeMap<String, u32>>,
    pub model_group_retry_policy: Option<Value>,
    pub fallbacks: FallbackList,
    pub context_window_fallbacks: FallbackList,
    pub content_policy_fallbacks: FallbackList,
    #[serde(deserialize_with = "lenient::string_list")]
    pub default_fallbacks: Vec<String>,
    /// `{"gpt-4": "gpt-4o"}`, or `{"gpt-4": {"model": "gpt-4o", "hidden": true}}`.
    pub model_group_alias: BTreeMap<String, Value>,
    #[serde(deserialize_with = "lenient::opt_bool")]
    pub enable_pre_call_checks: Option<bool>,
    #[serde(deserialize_with = "lenient::opt_bool")]
    pub enable_tag_filtering: Option<bool>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub redis_host: Option<String>,
    #[serde(deserialize_with = "lenient::opt_u16")]
    pub redis_port: Option<u16>,
    pub redis_password: Option<Secret>,
    pub redis_url: Option<Secret>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct GeneralSettings {
    pub master_key: Option<Secret>,
    pub database_url: Option<Secret>,
    #[serde(deserialize_with = "lenient::opt_u32")]
    pub database_connection_pool_limit: Option<u32>,
    #[serde(deserialize_with = "lenient::opt_f64")]
    pub database_connection_timeout: Option<f64>,
    #[serde(deserialize_with = "lenient::opt_bool")]
    pub allow_requests_on_db_unavailable: Option<bool>,
    #[serde(deserialize_with = "lenient::opt_bool")]
    pub store_model_in_db: Option<bool>,
    #[serde(deserialize_with = "lenient::opt_bool")]
    pub disable_spend_logs: Option<bool>,
    #[serde(deserialize_with = "lenient::opt_bool")]
    pub disable_error_logs: Option<bool>,
    #[serde(deserialize_with = "lenient::opt_bool")]
    pub store_prompts_in_spend_logs: Option<bool>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub maximum_spend_logs_retention_period: Option<String>,
    /// Seconds between spend flushes (default 10).
    #[serde(deserialize_with = "lenient::opt_f64")]
    pub proxy_batch_write_at: Option<f64>,
    #[serde(deserialize_with = "lenient::opt_f64")]
    pub proxy_budget_rescheduler_min_time: Option<f64>,
    #[serde(deserialize_with = "lenient::opt_f64")]
    pub proxy_budget_rescheduler_max_time: Option<f64>,
    #[serde(deserialize_with = "lenient::opt_bool")]
    pub dangerously_permit_weak_or_unset_master_key: Option<bool>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub completion_model: Option<String>,
    #[serde(deserialize_with = "lenient::opt_bool")]
    pub always_include_stream_usage: Option<bool>,
    #[serde(deserialize_with = "lenient::opt_f64")]
    pub max_request_size_mb: Option<f64>,
    /// Ours: the body limit of `/key/*`, `/spend/*` and `/ui/login` (default 1 MB).
    #[serde(deserialize_with = "lenient::opt_f64")]
    pub max_admin_request_size_mb: Option<f64>,
    /// Ours: the largest request `metadata` (serialized JSON, KB) a model call may carry; it
    /// is stored in the spend row. Default 16; above it a 400 names the field.
    #[serde(deserialize_with = "lenient::opt_f64")]
    pub max_request_metadata_size_kb: Option<f64>,
    /// Ours: the longest request `user` (characters; the spend row's `end_user`). Default 256.
    #[serde(deserialize_with = "lenient::opt_u32")]
    pub max_request_user_length: Option<u32>,
    /// Client addresses or networks that may call (checked by the `allowed_ips` module).
    pub allowed_ips: Option<Vec<String>>,
    /// Spend rows leave out the caller's address (`requester_ip_address`).
    #[serde(deserialize_with = "lenient::opt_bool")]
    pub disable_requester_ip_address_logging: Option<bool>,
    /// `allowed_ips` and the spend rows' `requester_ip_address` take `X-Forwarded-For`'s
    /// last entry instead of the peer.
    #[serde(deserialize_with = "lenient::opt_bool")]
    pub use_x_forwarded_for: Option<bool>,
    /// Model calls that set their own tags are refused (see `http::tags`).
    #[serde(deserialize_with = "lenient::opt_bool")]
    pub reject_clientside_metadata_tags: Option<bool>,
    /// Model calls without a `user` field are refused (LiteLLM's 401).
    #[serde(deserialize_with = "lenient::opt_bool")]
    pub enforce_user_param: Option<bool>,
    /// uvicorn's `timeout_keep_alive` (LiteLLM's `--keepalive_timeout`), seconds, default 5:
    /// how long a connection may wait, from when it opens or its last answer ends, until the
    /// next request's headers are complete.
    #[serde(deserialize_with = "lenient::opt_f64")]
    pub keepalive_timeout: Option<f64>,
    /// uvicorn's `limit_concurrency` (LiteLLM's `--limit_concurrency`): open client
    /// connections at most; more are answered 503 and closed.
    #[serde(deserialize_with = "lenient::opt_u32")]
    pub limit_concurrency: Option<u32>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub litellm_key_header_name: Option<String>,
    #[serde(deserialize_with = "lenient::opt_f64")]
    pub user_api_key_cache_ttl: Option<f64>,
    #[serde(deserialize_with = "lenient::opt_u32")]
    pub max_parallel_requests: Option<u32>,
    #[serde(deserialize_with = "lenient::opt_u32")]
    pub global_max_parallel_requests: Option<u32>,
    #[serde(deserialize_with = "lenient::opt_bool")]
    pub background_health_checks: Option<bool>,
    #[serde(deserialize_with = "lenient::opt_f64")]
    pub health_check_interval: Option<f64>,
    #[serde(deserialize_with = "lenient::string_list")]
    pub alerting: Vec<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}
