//! Per-deployment call parameters and LiteLLM's `drop_params` rules.
//!
//! A deployment's `litellm_params` may carry OpenAI request fields (`max_tokens`,
//! `temperature`, `stop`, `reasoning_effort`, ...), `extra_body`, `extra_headers`/`headers`,
//! `drop_params` and `additional_drop_params`. LiteLLM passes them as call arguments under the
//! request's own, so a request value wins. Providers we translate (Anthropic, Gemini, Bedrock)
//! take only some OpenAI parameters; another is a 400 naming it unless `drop_params` is on,
//! then it is left out. OpenAI-compatible upstreams take everything.

use std::collections::BTreeMap;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::config::LitellmParams;
use crate::error::ProxyError;

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

/// `litellm_params` keys this module acts on besides the request fields.
const HANDLED: &[&str] = &[
    "extra_body",
    "extra_headers",
    "headers",
    "additional_drop_params",
    // Read by the pass-through routes (`crate::passthrough`).
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

fn string_list(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::Array(a) => a
            .iter()
            .map(|s| s.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>(),
        Value::String(s) => Some(vec![s.clone()]),
        _ => None,
    }
}

/// A request's `additional_drop_params`, when it is a list of names.
pub fn request_drop_list(raw: Option<&RawValue>) -> Vec<String> {
    raw.and_then(|r| serde_json::from_str::<Value>(r.get()).ok())
        .and_then(|v| string_list(&v))
        .unwrap_or_default()
}

const ANTHROPIC: &[&str] = &[
    "stop",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
];
const ANTHROPIC_REASONING: &[&str] = &[
    "stop",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "thinking",
    "reasoning_effort",
];
const GEMINI: &[&str] = &[
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "tools",
    "tool_choice",
    "response_format",
    "n",
    "stop",
    "frequency_penalty",
    "presence_penalty",
    "seed",
    "parallel_tool_calls",
];
const GEMINI_REASONING: &[&str] = &[
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "tools",
    "tool_choice",
    "response_format",
    "n",
    "stop",
    "frequency_penalty",
    "presence_penalty",
    "seed",
    "parallel_tool_calls",
    "reasoning_effort",
];
const BEDROCK_PLAIN: &[&str] = &[
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "temperature",
    "top_p",
    "parallel_tool_calls",
];
const BEDROCK_TOOLS: &[&str] = &[
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "temperature",
    "top_p",
    "parallel_tool_calls",
    "tools",
];
const BEDROCK_TOOL_CHOICE: &[&str] = &[
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "temperature",
    "top_p",
    "parallel_tool_calls",
    "tools",
    "tool_choice",
];
const BEDROCK_CLAUDE_REASONING: &[&str] = &[
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "temperature",
    "top_p",
    "parallel_tool_calls",
    "tools",
    "tool_choice",
    "thinking",
    "reasoning_effort",
];

/// Claude models with extended thinking: 3.7 and every generation from 4 on.
fn claude_reasons(model: &str) -> bool {
    let m = model.to_ascii_lowercase();
    if m.contains("claude-3-7") || m.contains("claude-3.7") {
        return true;
    }
    !(m.contains("claude-3") || m.contains("claude-2") || m.contains("claude-instant"))
}

/// Gemini models that think: 2.5, 3 and later, and the experimental "thinking" ones.
fn gemini_reasons(model: &str) -> bool {
    let m = model.to_ascii_lowercase();
    if m.contains("thinking") {
        return true;
    }
    !(m.contains("gemini-1") || m.contains("gemini-2.0") || m.contains("gemini-pro"))
}

/// The OpenAI parameters a provider we translate takes: LiteLLM's list for it, as far as our
/// translation carries each one (a parameter LiteLLM maps but we cannot is refused, not lost).
/// `None`: an OpenAI-compatible upstream, which takes everything.
pub fn supported_params(provider: &str, model: &str) -> Option<&'static [&'static str]> {
    match provider {
        "anthropic" => Some(if claude_reasons(model) {
            ANTHROPIC_REASONING
        } else {
            ANTHROPIC
        }),
        "gemini" => Some(if gemini_reasons(model) {
            GEMINI_REASONING
        } else {
            GEMINI
        }),
        "bedrock" | "bedrock_converse" => {
            let m = model.strip_prefix("converse/").unwrap_or(model);
            // Cross-region inference profiles put a region before the model family.
            let base = ["us.", "eu.", "apac.", "global.", "us-gov.", "jp.", "au."]
                .iter()
                .find_map(|p| m.strip_prefix(p))
                .unwrap_or(m);
            Some(if base.starts_with("anthropic.") {
                if claude_reasons(base) {
                    BEDROCK_CLAUDE_REASONING
                } else {
                    BEDROCK_TOOL_CHOICE
                }
            } else if base.starts_with("mistral.") || base.starts_with("amazon.nova") {
                BEDROCK_TOOL_CHOICE
            } else if base.starts_with("cohere.")
                || base.starts_with("meta.llama3-1")
                || base.starts_with("meta.llama3-2")
                || base.starts_with("meta.llama3-3")
                || base.starts_with("meta.llama4")
            {
                BEDROCK_TOOLS
            } else {
                BEDROCK_PLAIN
            })
        }
        _ => None,
    }
}

/// LiteLLM's `UnsupportedParamsError`, a 400 naming the parameters.
pub fn unsupported_error(provider: &str, model: &str, names: &[&str]) -> ProxyError {
    let list = names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ");
    ProxyError::Custom {
        status: 400,
        kind: "invalid_request_error".to_string(),
        message: format!(
            "litellm.UnsupportedParamsError: {provider} does not support parameters: [{list}], for model={model}. To drop these, set `litellm.drop_params=True` or for proxy:\n\n`litellm_settings:\n drop_params: true`\n"
        ),
        param: names.first().map(|n| (*n).to_string()),
        headers: Vec::new(),
    }
}

/// Whether a parameter's value is one LiteLLM treats as "not passed" (`null`, or `n: 1`).
pub fn is_default_value(key: &str, raw: &str) -> bool {
    raw == "null" || (key == "n" && raw.trim() == "1")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn params(yaml: &str) -> LitellmParams {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn request_fields_headers_and_drop_lists_are_read() {
        let p = params(
            "model: anthropic/claude-sonnet-4-5\nmax_tokens: 55\ntemperature: 0.1\nstop: [x]\n\
             reasoning_effort: low\nextra_body: {top_k: 3}\nheaders: {x-a: '1', x-b: '2'}\n\
             extra_headers: {x-b: '3'}\nadditional_drop_params: [seed]\nrpm: 5\nfoo: bar\n",
        );
        let c =
            from_litellm_params(&p, supported_params("anthropic", "claude-sonnet-4-5")).unwrap();
        let keys: Vec<&str> = c.defaults.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["max_tokens", "reasoning_effort", "stop", "temperature"]
        );
        assert_eq!(c.defaults[0].1.get(), "55");
        assert_eq!(
            c.extra_body.as_deref().map(|m| m["top_k"].clone()),
            Some(Value::from(3))
        );
        assert_eq!(c.headers["x-a"], "1");
        assert_eq!(c.headers["x-b"], "3");
        assert_eq!(c.additional_drop_params, ["seed"]);
        assert!(!c.is_passthrough());
        assert_eq!(unused_keys(&p).collect::<Vec<_>>(), ["foo"]);
    }

    #[test]
    fn unusable_headers_are_refused_without_echoing_the_value() {
        let p = params("model: openai/m\nextra_headers: {host: evil}\n");
        assert_eq!(
            from_litellm_params(&p, None).unwrap_err().message,
            "host is set by the HTTP client"
        );
        let p = params("model: openai/m\nextra_headers: {x-key: \"sk-secret\\nInjected: 1\"}\n");
        let e = from_litellm_params(&p, None).unwrap_err();
        assert!(!e.message.contains("sk-secret"), "{}", e.message);
        let p = params("model: openai/m\nextra_body: [1]\n");
        assert_eq!(from_litellm_params(&p, None).unwrap_err().key, "extra_body");
    }

    #[test]
    fn provider_lists_follow_the_model() {
        let a = supported_params("anthropic", "claude-3-5-sonnet-20240620").unwrap();
        assert!(!a.contains(&"reasoning_effort"));
        assert!(a.contains(&"temperature") && !a.contains(&"logit_bias"));
        let a = supported_params("anthropic", "claude-opus-4-6").unwrap();
        assert!(a.contains(&"reasoning_effort"));
        assert!(
            supported_params("anthropic", "claude-3-7-sonnet-latest")
                .unwrap()
                .contains(&"thinking")
        );
        assert!(
            supported_params("gemini", "gemini-2.5-flash")
                .unwrap()
                .contains(&"reasoning_effort")
        );
        assert!(
            !supported_params("gemini", "gemini-2.0-flash")
                .unwrap()
                .contains(&"reasoning_effort")
        );
        let b = supported_params("bedrock", "us.anthropic.claude-sonnet-4-20250514-v1:0").unwrap();
        assert!(b.contains(&"tool_choice") && b.contains(&"thinking"));
        let b = supported_params("bedrock", "meta.llama3-1-70b-instruct-v1:0").unwrap();
        assert!(b.contains(&"tools") && !b.contains(&"tool_choice"));
        assert!(
            !supported_params("bedrock", "amazon.titan-text-express-v1")
                .unwrap()
                .contains(&"tools")
        );
        assert_eq!(supported_params("openai", "gpt-4o"), None);
        assert_eq!(supported_params("hosted_vllm", "qwen"), None);
    }

    #[test]
    fn unsupported_error_names_the_parameters_as_litellm_does() {
        let e = unsupported_error("anthropic", "claude-x", &["logit_bias", "seed"]);
        assert_eq!(e.status(), 400);
        assert!(
            e.to_string().starts_with(
                "litellm.UnsupportedParamsError: anthropic does not support parameters: ['logit_bias', 'seed'], for model=claude-x. To drop these, set `litellm.drop_params=True`"
            ),
            "{e}"
        );
        assert_eq!(e.param().as_deref(), Some("logit_bias"));
    }
}
