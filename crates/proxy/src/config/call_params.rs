//! A deployment's call parameters: the OpenAI request fields its `litellm_params` set
//! (`max_tokens`, `temperature`, `stop`, `reasoning_effort`, ...), `extra_body`,
//! `extra_headers`/`headers`, `drop_params` and `additional_drop_params`. LiteLLM passes them
//! as call arguments under the request's own. Read at load, where a value that cannot be used
//! stops start-up naming its key; each deployment keeps the result (`providers::params` has
//! the per-provider rules they meet at call time).

use std::collections::BTreeMap;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::LitellmParams;

/// The OpenAI chat parameters LiteLLM checks against a provider's supported list (its default
/// chat parameters, less the ones it never validates: `user`, `stream`, `stream_options`,
/// `max_retries`, and `extra_headers`, which always become headers here).
pub const CHECKED: &[&str] = &[
    "functions",
    "function_call",
    "temperature",
    "top_p",
    "n",
    "stop",
    "max_tokens",
    "max_completion_tokens",
    "modalities",
    "prediction",
    "audio",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "response_format",
    "seed",
    "tools",
    "tool_choice",
    "logprobs",
    "top_logprobs",
    "parallel_tool_calls",
    "reasoning_effort",
    "verbosity",
    "thinking",
    "web_search_options",
    "include_server_side_tool_invocations",
    "service_tier",
    "safety_identifier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "store",
    "context_management",
];

/// `litellm_params` keys sent as request fields: the checked OpenAI parameters, `user`, and
/// `top_k` (which Anthropic, Gemini and Bedrock translate and most local servers take).
fn is_request_field(key: &str) -> bool {
    CHECKED.contains(&key) || matches!(key, "user" | "top_k")
}

/// `litellm_params` keys [`from_litellm_params`] acts on besides the request fields.
const HANDLED: &[&str] = &[
    "extra_body",
    "extra_headers",
    "headers",
    "additional_drop_params",
    // Read by the pass-through routes.
    "use_in_pass_through",
];

/// Headers a deployment or request may not set: the HTTP client owns them.
fn is_transport_header(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "host" | "content-length" | "transfer-encoding" | "connection" | "te" | "upgrade"
    )
}

/// What a deployment adds to every call.
#[derive(Debug, Clone, Default)]
pub struct CallParams {
    /// OpenAI request fields the deployment sets, as JSON text; the request's own value wins.
    pub defaults: Vec<(String, Box<RawValue>)>,
    /// `extra_body`: fields added to the body the provider gets, where it has none.
    pub extra_body: Option<std::sync::Arc<Map<String, Value>>>,
    /// The same fields as JSON text, for OpenAI-format bodies.
    pub extra_body_fields: Vec<(String, Box<RawValue>)>,
    /// `extra_headers` and `headers`, sent with every upstream request.
    pub headers: HeaderMap,
    pub drop_params: Option<bool>,
    pub additional_drop_params: Vec<String>,
    /// The OpenAI parameters the provider takes; `None`: all of them.
    pub supported: Option<&'static [&'static str]>,
}

impl CallParams {
    /// Whether calls go out exactly as the request came (nothing added, nothing checked).
    pub fn is_passthrough(&self) -> bool {
        self.defaults.is_empty()
            && self.extra_body.is_none()
            && self.additional_drop_params.is_empty()
            && self.supported.is_none()
    }
}

/// A `litellm_params` value that cannot be used, named by key; the config check reports it
/// with the file and deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadParam {
    pub key: String,
    pub message: String,
}

fn header_map(key: &str, v: &Value, out: &mut HeaderMap) -> Result<(), BadParam> {
    let bad = |message: String| BadParam {
        key: key.to_string(),
        message,
    };
    let Value::Object(m) = v else {
        return Err(bad("expected a map of header names to values".to_string()));
    };
    for (name, value) in m {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return Err(bad(format!("{name}: expected a string"))),
        };
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| bad(format!("{name:?} is not a valid header name")))?;
        if is_transport_header(&name) {
            return Err(bad(format!("{name} is set by the HTTP client")));
        }
        // The value itself is never echoed: headers often carry credentials.
        let mut value = HeaderValue::from_str(&text).map_err(|_| {
            bad(format!(
                "{name}: the value cannot be sent in an HTTP header"
            ))
        })?;
        value.set_sensitive(true);
        out.insert(name, value);
    }
    Ok(())
}

/// Read a deployment's call parameters; `supported` is the provider's list (see
/// [`supported_params`]).
pub fn from_litellm_params(
    p: &LitellmParams,
    supported: Option<&'static [&'static str]>,
) -> Result<CallParams, BadParam> {
    let mut out = CallParams {
        drop_params: p.drop_params,
        supported,
        ..CallParams::default()
    };
    let extra: &BTreeMap<String, Value> = &p.extra;
    for (key, v) in extra {
        if v.is_null() {
            continue;
        }
        if is_request_field(key) {
            let raw = serde_json::value::to_raw_value(v).map_err(|e| BadParam {
                key: key.clone(),
                message: e.to_string(),
            })?;
            out.defaults.push((key.clone(), raw));
            continue;
        }
        match key.as_str() {
            "extra_body" => match v {
                Value::Object(m) => {
                    for (k, v) in m {
                        let raw = serde_json::value::to_raw_value(v).map_err(|e| BadParam {
                            key: key.clone(),
                            message: e.to_string(),
                        })?;
                        out.extra_body_fields.push((k.clone(), raw));
                    }
                    out.extra_body = Some(std::sync::Arc::new(m.clone()));
                }
                _ => {
                    return Err(BadParam {
                        key: key.clone(),
                        message: "expected a map of fields".to_string(),
                    });
                }
            },
            // LiteLLM reads both; `extra_headers` wins where they name the same header.
            "headers" => {
                let mut h = HeaderMap::new();
                header_map(key, v, &mut h)?;
                for (k, v) in h {
                    if let Some(k) = k {
                        out.headers.entry(k).or_insert(v);
                    }
                }
            }
            "extra_headers" => header_map(key, v, &mut out.headers)?,
            "additional_drop_params" => {
                out.additional_drop_params = string_list(v).ok_or_else(|| BadParam {
                    key: key.clone(),
                    message: "expected a list of parameter names".to_string(),
                })?;
            }
            _ => {}
        }
    }
    Ok(out)
}

/// `litellm_params` keys that are neither typed settings nor handled here: nothing reads them,
/// so start-up names them.
pub fn unused_keys(p: &LitellmParams) -> impl Iterator<Item = &str> {
    p.extra
        .keys()
        .map(String::as_str)
        .filter(|k| !is_request_field(k) && !HANDLED.contains(k))
}

pub(crate) fn string_list(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::Array(a) => a
            .iter()
            .map(|s| s.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>(),
        Value::String(s) => Some(vec![s.clone()]),
        _ => None,
    }
}
