//! OpenAI chat completions to the Anthropic Messages API and back.
//!
//! A provider adapter calls, in order: [`endpoint`] and [`request_headers`] for where and how
//! to send, [`to_messages_request`] for the body, then [`from_messages_response`] for a plain
//! answer or [`AnthropicStreamToOpenAi`] for each SSE event of a streamed one, and
//! [`map_error`] when the status is not 2xx.

mod request;
mod response;
mod stream;

pub use request::{MessagesOptions, to_messages_request};
pub use response::from_messages_response;
pub use stream::{AnthropicEvents, AnthropicStreamToOpenAi};

use serde_json::Value;

use crate::error::excerpt;

pub const DEFAULT_API_BASE: &str = "https://api.anthropic.com";
pub const API_VERSION: &str = "2023-06-01";
/// LiteLLM's `DEFAULT_ANTHROPIC_CHAT_MAX_TOKENS`: Anthropic requires `max_tokens`.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// The tool that carries a `response_format` answer: the model is made to "call" it with the
/// JSON as its input, which the response translation turns back into `content`.
pub const JSON_TOOL_NAME: &str = "json_tool_call";

/// `POST` target for a configured `api_base` (with or without `/v1` or `/v1/messages`).
pub fn endpoint(api_base: Option<&str>) -> String {
    let base = api_base.unwrap_or(DEFAULT_API_BASE).trim_end_matches('/');
    if base.ends_with("/v1/messages") {
        base.to_string()
    } else if base.ends_with("/v1") {
        format!("{base}/messages")
    } else {
        format!("{base}/v1/messages")
    }
}

/// Headers for a Messages call; `betas` become one comma-joined `anthropic-beta`.
pub fn request_headers(api_key: &str, betas: &[&str]) -> Vec<(String, String)> {
    let mut h = vec![
        ("x-api-key".to_string(), api_key.to_string()),
        ("anthropic-version".to_string(), API_VERSION.to_string()),
        ("content-type".to_string(), "application/json".to_string()),
    ];
    if !betas.is_empty() {
        h.push(("anthropic-beta".to_string(), betas.join(",")));
    }
    h
}

/// OpenAI `finish_reason` for an Anthropic `stop_reason`.
pub fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens") | Some("model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        // end_turn, stop_sequence, pause_turn and anything newer read as a normal stop.
        _ => "stop",
    }
}

/// An Anthropic error mapped to the status and message the gateway answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedError {
    pub status: u16,
    pub message: String,
}

/// Map an Anthropic error answer (`{"type":"error","error":{"type","message"}}`) to a
/// gateway status. `overloaded_error` (HTTP 529, which clients do not know) becomes 503.
pub fn map_error(status: u16, body: &str) -> MappedError {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let kind = parsed
        .as_ref()
        .and_then(|v| v.pointer("/error/type"))
        .and_then(Value::as_str);
    let message = parsed
        .as_ref()
        .and_then(|v| v.pointer("/error/message"))
        .and_then(Value::as_str)
        .map(excerpt)
        .unwrap_or_else(|| excerpt(body));
    MappedError {
        status: error_status(kind, status),
        message: format!("AnthropicException - {message}"),
    }
}

/// The status for an error `type`, falling back to the HTTP status the provider used.
pub(crate) fn error_status(kind: Option<&str>, status: u16) -> u16 {
    match kind {
        Some("invalid_request_error") => 400,
        Some("authentication_error") => 401,
        Some("billing_error") => 402,
        Some("permission_error") => 403,
        Some("not_found_error") => 404,
        Some("request_too_large") => 413,
        Some("rate_limit_error") => 429,
        Some("api_error") => 500,
        Some("overloaded_error") => 503,
        Some("timeout_error") => 504,
        _ if status == 529 => 503,
        _ => status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_accepts_any_base_shape() {
        assert_eq!(endpoint(None), "https://api.anthropic.com/v1/messages");
        assert_eq!(endpoint(Some("http://h:1/")), "http://h:1/v1/messages");
        assert_eq!(endpoint(Some("http://h:1/v1")), "http://h:1/v1/messages");
        assert_eq!(
            endpoint(Some("http://h:1/v1/messages")),
            "http://h:1/v1/messages"
        );
    }

    #[test]
    fn headers_carry_version_and_betas() {
        let h = request_headers("k", &["prompt-caching-2024-07-31", "x"]);
        assert!(h.contains(&("anthropic-version".into(), "2023-06-01".into())));
        assert!(h.contains(&("x-api-key".into(), "k".into())));
        assert!(h.contains(&(
            "anthropic-beta".into(),
            "prompt-caching-2024-07-31,x".into()
        )));
    }

    #[test]
    fn errors_map_by_type() {
        let body = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        let m = map_error(529, body);
        assert_eq!(m.status, 503);
        assert_eq!(m.message, "AnthropicException - Overloaded");
        let m = map_error(
            429,
            r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#,
        );
        assert_eq!(m.status, 429);
        assert_eq!(map_error(502, "<html>bad gateway</html>").status, 502);
        assert_eq!(map_error(529, "").status, 503);
    }

    #[test]
    fn stop_reasons() {
        assert_eq!(finish_reason(Some("end_turn")), "stop");
        assert_eq!(finish_reason(Some("stop_sequence")), "stop");
        assert_eq!(finish_reason(Some("max_tokens")), "length");
        assert_eq!(finish_reason(Some("tool_use")), "tool_calls");
        assert_eq!(finish_reason(Some("refusal")), "content_filter");
    }
}
