//! LiteLLM's `generic_api` logging callback (`litellm_settings.callbacks: ["generic_api"]`, or
//! `success_callback` / `failure_callback`): each finished call's standard logging payload,
//! POSTed as a JSON array in batches to `GENERIC_LOGGER_ENDPOINT` with the headers of
//! `GENERIC_LOGGER_HEADERS` (`key=value,key2=value2`).
//!
//! Batches go when `DEFAULT_BATCH_SIZE` payloads (512) are waiting or the oldest has waited
//! `DEFAULT_FLUSH_INTERVAL_SECONDS` (5), LiteLLM's names and defaults. A batch the receiver
//! cannot take (unreachable, a timeout or a 5xx) is retried twice with backoff, then dropped
//! and logged; the queue holds at most `GENERIC_LOGGER_MAX_QUEUE_SIZE` payloads (50,000), so a
//! dead receiver costs bounded memory and never a call.

use std::time::Duration;

use http::{HeaderName, HeaderValue};
use serde_json::{Value, json};

use crate::batch::BatchQueue;
use crate::config::ProxyConfig;
use crate::hooks::{CallRecord, CallStatus};
use crate::metrics::RequestFacts;

const RETRIES: u32 = 2;
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct GenericApiSettings {
    pub endpoint: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub max_queue: usize,
    pub on_success: bool,
    pub on_failure: bool,
    /// First retry's pause; doubled for the next.
    pub retry_delay: Duration,
}

fn listed(list: &[String]) -> bool {
    list.iter().any(|c| c.trim() == "generic_api")
}

impl GenericApiSettings {
    /// The settings when `generic_api` is among the callbacks; `Err` says why it cannot run
    /// (named at start-up; the gateway serves without it).
    pub fn from_config(cfg: &ProxyConfig) -> Option<Result<Self, String>> {
        let ls = &cfg.file.litellm_settings;
        let both = listed(&ls.callbacks);
        let on_success = both || listed(&ls.success_callback);
        let on_failure = both || listed(&ls.failure_callback);
        if !on_success && !on_failure {
            return None;
        }
        let env = |k: &str| cfg.observe_env.get(k).filter(|v| !v.trim().is_empty());
        Some((|| {
            let endpoint = env("GENERIC_LOGGER_ENDPOINT")
                .ok_or("GENERIC_LOGGER_ENDPOINT is not set")?
                .trim()
                .to_string();
            let url = reqwest::Url::parse(&endpoint)
                .map_err(|_| "GENERIC_LOGGER_ENDPOINT is not a URL".to_string())?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err("GENERIC_LOGGER_ENDPOINT must be http:// or https://".to_string());
            }
            let mut headers = Vec::new();
            if let Some(raw) = env("GENERIC_LOGGER_HEADERS") {
                // LiteLLM's parsing: split on commas, then on the first `=`; no decoding.
                for item in raw.split(',').filter(|i| i.contains('=')) {
                    let (k, v) = item.split_once('=').unwrap_or((item, ""));
                    let name = HeaderName::from_bytes(k.trim().as_bytes()).map_err(|_| {
                        format!(
                            "GENERIC_LOGGER_HEADERS: {:?} is not a header name",
                            k.trim()
                        )
                    })?;
                    let value = HeaderValue::from_str(v.trim()).map_err(|_| {
                        format!("GENERIC_LOGGER_HEADERS: the value of {name} is not a valid header value")
                    })?;
                    headers.push((name, value));
                }
            }
            let number = |k: &str, default: u64| -> Result<u64, String> {
                match env(k) {
                    None => Ok(default),
                    Some(v) => v
                        .trim()
                        .parse::<u64>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| format!("{k} must be a positive whole number")),
                }
            };
            Ok(GenericApiSettings {
                endpoint,
                headers,
                batch_size: number("DEFAULT_BATCH_SIZE", 512)? as usize,
                flush_interval: Duration::from_secs(number("DEFAULT_FLUSH_INTERVAL_SECONDS", 5)?),
                max_queue: number("GENERIC_LOGGER_MAX_QUEUE_SIZE", 50_000)? as usize,
                on_success,
                on_failure,
                retry_delay: Duration::from_secs(1),
            })
        })())
    }
}

/// The logger: payloads queue here and a background task posts them.
pub struct GenericApiLogger {
    on_success: bool,
    on_failure: bool,
    queue: BatchQueue<Value>,
}

impl std::fmt::Debug for GenericApiLogger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenericApiLogger").finish_non_exhaustive()
    }
}

impl GenericApiLogger {
    pub fn new(s: GenericApiSettings, client: reqwest::Client) -> Self {
        let on_success = s.on_success;
        let on_failure = s.on_failure;
        let delay = s.flush_interval;
        let (cap, batch) = (s.max_queue, s.batch_size);
        let queue = BatchQueue::new(
            "generic_api logger",
            cap,
            batch,
            delay,
            move |b: Vec<Value>| {
                let client = client.clone();
                let s = s.clone();
                async move {
                    let n = b.len();
                    if let Err(e) = post(&client, &s, Value::Array(b)).await {
                        tracing::warn!(payloads = n, error = %e, "generic_api logger: batch dropped");
                    }
                }
            },
        );
        Self {
            on_success,
            on_failure,
            queue,
        }
    }

    /// Queue a finished call's payload; never waits.
    pub(crate) fn record(&self, record: &CallRecord, request: Option<&RequestFacts>) {
        let failed = record.status == CallStatus::Failure;
        if (failed && !self.on_failure) || (!failed && !self.on_success) {
            return;
        }
        self.queue.push(standard_payload(record, request));
    }
}

/// POST with retries: a transport error, a timeout or a 5xx is retried after `retry_delay`,
/// doubled each time; anything else is final.
async fn post(client: &reqwest::Client, s: &GenericApiSettings, body: Value) -> Result<(), String> {
    let body = bytes::Bytes::from(body.to_string());
    let mut delay = s.retry_delay;
    let mut last = String::new();
    for attempt in 0..=RETRIES {
        if attempt > 0 {
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
        let mut req = client
            .post(&s.endpoint)
            .timeout(TIMEOUT)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.clone());
        for (k, v) in &s.headers {
            req = req.header(k.clone(), v.clone());
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) if r.status().is_server_error() => {
                last = format!("the receiver answered {}", r.status().as_u16());
            }
            Ok(r) => return Err(format!("the receiver answered {}", r.status().as_u16())),
            Err(e) if e.is_timeout() => last = "the receiver did not answer in time".to_string(),
            Err(_) => last = "the receiver could not be reached".to_string(),
        }
    }
    Err(last)
}

fn epoch_secs(t: chrono::DateTime<chrono::Utc>) -> f64 {
    t.timestamp_micros() as f64 / 1e6
}

/// LiteLLM's `StandardLoggingPayload` for a call, with the fields the gateway knows (prompts
/// and answers only under `store_prompts_in_spend_logs`, as in the spend log).
pub(crate) fn standard_payload(r: &CallRecord, request: Option<&RequestFacts>) -> Value {
    let failed = r.status == CallStatus::Failure;
    let cost = r.cost_nanos as f64 / 1e9;
    let ip = r.requester_ip.as_deref();
    let agent = request.and_then(|q| q.user_agent.clone());
    let route = request.map(|q| q.route.clone());
    let error_information = failed.then(|| {
        json!({
            "error_code": r.http_status.to_string(),
            "error_class": crate::metrics::exception_class(&r.custom_llm_provider, r.http_status),
            "llm_provider": r.custom_llm_provider,
            "error_message": r.error_message,
        })
    });
    json!({
        "id": r.call_id,
        "trace_id": r.call_id,
        "litellm_call_id": r.call_id,
        "call_type": r.call_type,
        "stream": r.stream,
        "response_cost": cost,
        "status": if failed { "failure" } else { "success" },
        "custom_llm_provider": r.custom_llm_provider,
        "total_tokens": r.total_tokens,
        "prompt_tokens": r.prompt_tokens,
        "completion_tokens": r.completion_tokens,
        "startTime": epoch_secs(r.start_time),
        "endTime": epoch_secs(r.end_time),
        "completionStartTime": epoch_secs(r.completion_start_time.unwrap_or(r.end_time)),
        "response_time": r.duration().as_secs_f64(),
        "model": r.model,
        "model_id": r.model_id,
        "model_group": r.model_group,
        "api_base": r.api_base.clone().unwrap_or_default(),
        "metadata": {
            "user_api_key_hash": r.api_key_hash,
            "user_api_key_alias": r.key_alias,
            "user_api_key_team_id": r.team_id,
            "user_api_key_user_id": r.user_id,
            "user_api_key_end_user_id": r.end_user,
            "user_api_key_request_route": route,
            "requester_ip_address": ip,
            "user_agent": agent,
            "requester_metadata": r.metadata,
            "team_id": r.team_id,
        },
        "cache_hit": false,
        "cache_key": null,
        "saved_cache_cost": 0.0,
        "request_tags": r.request_tags,
        "end_user": r.end_user,
        "requester_ip_address": ip,
        "user_agent": agent,
        "messages": r.messages,
        "response": r.response,
        "error_str": if failed { r.error_message.clone() } else { None },
        "error_information": error_information,
        "model_parameters": {},
        "hidden_params": {
            "model_id": r.model_id,
            "api_base": r.api_base,
            "response_cost": cost,
            "litellm_overhead_time_ms": r.overhead.as_secs_f64() * 1000.0,
            "usage_estimated": r.usage_estimated,
        },
    })
}
