//! Seams around the upstream call, for the store crate:
//!
//! - [`CallHooks::pre_call`] runs after auth and routing, before the upstream call (budget and
//!   rate-limit reservation); an error there is the response.
//! - [`CallHooks::post_call`] runs once per call that passed `pre_call`, when the call is over
//!   (for a stream: after the last byte, or when the client went away) to settle.
//! - Every finished call (success or failure, after auth) produces one [`CallRecord`] that goes
//!   to the [`CallSink`] (the spend-log writer). The default sink drops it.
//!
//! `post_call` and `CallSink::record` are synchronous on purpose: they run from a stream's
//! `Drop` when a client disconnects. Implementations hand work to a channel or spawn.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use idlehands_store::{RouteBudget, RouteRefusal};
use parking_lot::Mutex;
use serde_json::Value;

use crate::auth::Principal;
use crate::error::ProxyError;
use crate::pricing::Nanos;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallStatus {
    Success,
    Failure,
}

impl CallStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
}

/// One finished call, as the spend log stores it.
#[derive(Debug, Clone)]
pub struct CallRecord {
    /// The upstream's response id (`chatcmpl-...`), when it sent one. Not unique: upstreams
    /// reuse ids, so the spend log is keyed by `call_id`.
    pub response_id: Option<String>,
    /// The caller's address (LiteLLM's `requester_ip_address`): the peer's, or
    /// `X-Forwarded-For`'s last entry with `use_x_forwarded_for`; `None` with
    /// `disable_requester_ip_address_logging`.
    pub requester_ip: Option<Arc<str>>,
    /// Ours, also sent as `x-litellm-call-id`; the spend-log row's `request_id`.
    pub call_id: String,
    /// `acompletion`, `atext_completion` or `aembedding`.
    pub call_type: &'static str,
    /// sha256 of the key used (the master key's too).
    pub api_key_hash: Option<String>,
    pub key_alias: Option<String>,
    pub user_id: Option<String>,
    pub team_id: Option<String>,
    /// The body's `user`.
    pub end_user: Option<String>,
    /// The body's `metadata`.
    pub metadata: Option<Value>,
    /// LiteLLM's `request_tags` (see `http::tags`).
    pub request_tags: Vec<String>,
    /// The conversation the call belongs to (see `http::session`).
    pub session_id: Option<String>,
    /// The deployment's model (`openai/gpt-4o`).
    pub model: String,
    pub model_id: String,
    /// The public name the client asked for.
    pub model_group: String,
    pub api_base: Option<String>,
    pub custom_llm_provider: String,
    pub stream: bool,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub cost_nanos: Nanos,
    /// The token counts are the gateway's estimate: the upstream reported no usage.
    pub usage_estimated: bool,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    /// When the first byte of the answer arrived (streams), or the answer (non-streams).
    pub completion_start_time: Option<DateTime<Utc>>,
    pub status: CallStatus,
    pub error_message: Option<String>,
    pub http_status: u16,
    /// Time spent in the gateway rather than waiting on the provider (for a stream: up to
    /// its first byte).
    pub overhead: Duration,
    /// The request's messages (or embedding input), only with
    /// `general_settings.store_prompts_in_spend_logs`; redacted, strings cut at 2048 chars.
    pub messages: Option<Value>,
    /// The response, under the same setting and rules as `messages`.
    pub response: Option<Value>,
    /// The response cache's key for the call, when the cache was asked (LiteLLM's
    /// `cache_key`; also the `x-litellm-cache-key` header).
    pub cache_key: Option<String>,
    /// Answered from the response cache (at no cost).
    pub cache_hit: bool,
    /// No response cache is configured: the spend row's `cache_key` reads LiteLLM's
    /// `Cache OFF`.
    pub cache_off: bool,
}

impl CallRecord {
    pub fn duration(&self) -> Duration {
        (self.end_time - self.start_time)
            .to_std()
            .unwrap_or_default()
    }

    /// An answered call of model group `m` (`openai/m`, deployment `id`), 3 + 4 tokens, free
    /// and instant, for unit tests to adjust.
    #[cfg(test)]
    pub(crate) fn for_test() -> Self {
        let now = chrono::Utc::now();
        CallRecord {
            response_id: None,
            requester_ip: None,
            call_id: "call-1".into(),
            call_type: "acompletion",
            api_key_hash: None,
            key_alias: None,
            user_id: None,
            team_id: None,
            end_user: None,
            metadata: None,
            request_tags: Vec::new(),
            session_id: None,
            model: "openai/m".into(),
            model_id: "id".into(),
            model_group: "m".into(),
            api_base: None,
            custom_llm_provider: "openai".into(),
            stream: false,
            prompt_tokens: 3,
            completion_tokens: 4,
            total_tokens: 7,
            cost_nanos: 0,
            usage_estimated: false,
            start_time: now,
            end_time: now,
            completion_start_time: None,
            status: CallStatus::Success,
            error_message: None,
            http_status: 200,
            overhead: Duration::ZERO,
            messages: None,
            response: None,
            cache_key: None,
            cache_hit: false,
            cache_off: false,
        }
    }
}

pub trait CallSink: Send + Sync {
    fn record(&self, record: CallRecord);
}

/// The default: spend logs off.
#[derive(Debug, Default)]
pub struct NoopSink;

impl CallSink for NoopSink {
    fn record(&self, _record: CallRecord) {}
}

/// Keeps records in memory; for tests and diagnostics.
#[derive(Debug, Default)]
pub struct MemorySink {
    records: Mutex<Vec<CallRecord>>,
}

impl MemorySink {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    pub fn records(&self) -> Vec<CallRecord> {
        self.records.lock().clone()
    }
}

impl CallSink for MemorySink {
    fn record(&self, record: CallRecord) {
        self.records.lock().push(record);
    }
}

/// What `pre_call` knows.
#[derive(Debug)]
pub struct PreCall<'a> {
    pub principal: &'a Principal,
    pub call_id: &'a str,
    pub call_type: &'static str,
    pub model_group: &'a str,
    pub model_id: &'a str,
    /// The picked deployment's `model_info.access_groups` (a key's `model_max_budget` may
    /// name one).
    pub access_groups: &'a [String],
    pub end_user: Option<&'a str>,
    /// The user the call is made for (`user_header_mappings` to `internal_user`), in place of
    /// the key's user.
    pub acting_user: Option<&'a str>,
    /// Tokens the request may use, if the client said (`max_tokens`); for tpm reservations.
    pub max_tokens: Option<u64>,
    /// Prompt tokens guessed from the request size, for budget reservations.
    pub prompt_tokens_estimate: u64,
    /// The picked deployment's price (`None`: unknown model, costs 0).
    pub price: Option<&'a crate::pricing::ModelPrice>,
}

/// Whatever `pre_call` reserved, handed back to `post_call`.
#[derive(Default)]
pub struct Reservation(pub Option<Box<dyn Any + Send + Sync>>);

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Reservation(..)"
        } else {
            "Reservation(none)"
        })
    }
}

pub trait CallHooks: Send + Sync {
    fn pre_call<'a>(
        &'a self,
        call: &'a PreCall<'a>,
    ) -> BoxFuture<'a, Result<Reservation, ProxyError>>;
    fn post_call(&self, principal: &Principal, reservation: Reservation, record: &CallRecord);

    /// Headers to add to the response of a call that passed `pre_call` (for example
    /// `x-ratelimit-*` remaining counts). Runs before the response is sent, streams included;
    /// `call_cost` is this call's cost when already known (non-streamed answers).
    fn response_headers(
        &self,
        _reservation: &Reservation,
        _call_cost: Option<crate::pricing::Nanos>,
        _headers: &mut http::HeaderMap,
    ) {
    }

    /// Holds the call (`call` names the deployment it is about to be tried on) on `budgets`,
    /// the deployment's route budgets and the call's tags'; they settle with the
    /// reservation. Without a store there is nothing to hold them in: they are not enforced.
    fn hold_routes<'a>(
        &'a self,
        _reservation: &'a mut Reservation,
        _call: &'a PreCall<'a>,
        _budgets: &'a [&'a RouteBudget],
    ) -> BoxFuture<'a, Result<(), RouteRefusal>> {
        Box::pin(async { Ok(()) })
    }

    /// Gives back the route holds of an attempt that failed.
    fn release_routes(&self, _reservation: &mut Reservation) {}

    /// Whether the budget refused a hold here just now: routing's first look passes its
    /// deployments over.
    fn route_refused_lately(&self, _budget: &RouteBudget) -> bool {
        false
    }

    /// The budget's spend as far as this instance knows, nano-USD.
    fn route_spend(&self, _budget: &RouteBudget) -> Option<i64> {
        None
    }
}

/// A stored Responses API answer (`store: true`), for `GET /v1/responses/{id}`,
/// `/input_items` and `previous_response_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    /// `resp_...`
    pub id: String,
    /// sha256 of the key that created it: only that key reads or deletes it.
    pub owner: String,
    pub created_at: DateTime<Utc>,
    /// The conversation's input items so far (a previous response's included), with ids.
    pub input_items: Value,
    /// The `response` object as it was answered.
    pub response: Value,
}

/// One model's health-check result, to be kept for `/health/history` and `/health/latest`.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    /// The model group checked.
    pub model_name: String,
    /// The deployment checked, when one was named (or in a background run, always).
    pub model_id: Option<String>,
    pub healthy: usize,
    pub unhealthy: usize,
    /// The first unhealthy deployment's error, keys redacted.
    pub error: Option<String>,
    pub response_time_ms: f64,
    /// Who asked (their user id), or `background_health_check`.
    pub checked_by: Option<String>,
}

/// SEAM: where health-check results are kept (the key and spend database when there is one).
pub trait HealthLog: Send + Sync {
    /// Keeps `checks`; for a background run (`only_changes`) only the models whose status
    /// changed or whose last result is an hour old, as LiteLLM does.
    fn record(
        &self,
        checks: Vec<HealthCheck>,
        only_changes: bool,
    ) -> BoxFuture<'static, Result<(), String>>;
}

/// SEAM: where stored responses live (the key and spend database when there is one).
pub trait ResponseStore: Send + Sync {
    fn put(&self, r: StoredResponse) -> BoxFuture<'static, Result<(), String>>;
    /// `None` when there is none with that id for that owner.
    fn get(
        &self,
        id: &str,
        owner: &str,
    ) -> BoxFuture<'static, Result<Option<StoredResponse>, String>>;
    /// Whether one was deleted.
    fn delete(&self, id: &str, owner: &str) -> BoxFuture<'static, Result<bool, String>>;
}

/// The default without a database: kept in memory, the oldest dropped past a bound.
#[derive(Debug, Default)]
pub struct MemoryResponses {
    items: Mutex<std::collections::VecDeque<StoredResponse>>,
}

impl MemoryResponses {
    const MAX: usize = 10_000;
}

impl ResponseStore for MemoryResponses {
    fn put(&self, r: StoredResponse) -> BoxFuture<'static, Result<(), String>> {
        let mut items = self.items.lock();
        if items.len() >= Self::MAX {
            items.pop_front();
        }
        items.push_back(r);
        Box::pin(async { Ok(()) })
    }

    fn get(
        &self,
        id: &str,
        owner: &str,
    ) -> BoxFuture<'static, Result<Option<StoredResponse>, String>> {
        let found = self
            .items
            .lock()
            .iter()
            .find(|r| r.id == id && r.owner == owner)
            .cloned();
        Box::pin(async move { Ok(found) })
    }

    fn delete(&self, id: &str, owner: &str) -> BoxFuture<'static, Result<bool, String>> {
        let mut items = self.items.lock();
        let before = items.len();
        items.retain(|r| !(r.id == id && r.owner == owner));
        let deleted = items.len() < before;
        Box::pin(async move { Ok(deleted) })
    }
}
