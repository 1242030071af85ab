//! LiteLLM's `drop_params` rules: which OpenAI parameters each provider we translate takes,
//! and the error for the others. A deployment's call parameters (`max_tokens`, `extra_body`,
//! `extra_headers`, ...) are read with the config (`crate::config::call_params`); a request
//! value wins over them. Providers we translate (Anthropic, Gemini, Bedrock) take only some
//! OpenAI parameters; another is a 400 naming it unless `drop_params` is on, then it is left
//! out. OpenAI-compatible upstreams take everything.

use serde_json::Value;
use serde_json::value::RawValue;

use crate::config::call_params::string_list;
use crate::error::ProxyError;

// Their paths from before the config check read them.
pub use crate::config::call_params::{
    BadParam, CHECKED, CallParams, from_litellm_params, unused_keys,
};

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
    use crate::config::LitellmParams;

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
