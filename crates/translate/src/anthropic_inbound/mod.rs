//! The gateway's own Anthropic-format endpoint (`/v1/messages`): Anthropic-format requests
//! are turned into OpenAI chat requests (which the gateway already knows how to route to any
//! configured model), and the OpenAI answer is turned back.
//!
//! Order of use: [`to_chat_request`] on the client body; then [`from_chat_response`] for a
//! plain answer, or [`OpenAiStreamToAnthropic`] over every chunk and `finish()` at the end;
//! [`error_body`] for any failure.

mod request;
mod response;
mod stream;

pub use request::to_chat_request;
pub use response::from_chat_response;
pub use stream::{AnthropicEvent, OpenAiStreamToAnthropic};

use serde_json::{Value, json};

/// Anthropic `stop_reason` for an OpenAI `finish_reason`.
pub fn stop_reason(finish_reason: Option<&str>) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls") | Some("function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// Anthropic's error envelope, so Anthropic SDKs raise the right exception class.
pub fn error_body(status: u16, message: &str) -> Value {
    let kind = match status {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        _ => "api_error",
    };
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_envelope_types() {
        assert_eq!(
            error_body(429, "slow"),
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}})
        );
        assert_eq!(error_body(503, "x")["error"]["type"], "overloaded_error");
        assert_eq!(error_body(500, "x")["error"]["type"], "api_error");
        assert_eq!(
            error_body(401, "x")["error"]["type"],
            "authentication_error"
        );
    }

    #[test]
    fn stop_reasons() {
        assert_eq!(stop_reason(Some("stop")), "end_turn");
        assert_eq!(stop_reason(Some("length")), "max_tokens");
        assert_eq!(stop_reason(Some("tool_calls")), "tool_use");
        assert_eq!(stop_reason(Some("content_filter")), "refusal");
    }
}
