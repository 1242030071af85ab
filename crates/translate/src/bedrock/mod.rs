//! OpenAI chat completions to Amazon Bedrock's Converse / ConverseStream API and back,
//! with SigV4 signing and the event-stream framing ConverseStream answers in.
//!
//! An adapter: [`converse_url`]; body = [`to_converse_request`]; headers = content-type plus
//! [`sign`] over the exact bytes sent (credentials from [`AwsCredentials::from_env`], time
//! from [`amz_date`]); then [`from_converse_response`], or for a stream an
//! [`EventStreamDecoder`] feeding [`ConverseStreamToOpenAi::push_message`]; [`map_error`] for
//! non-2xx answers.

mod converse;
pub mod eventstream;
pub mod sigv4;
mod stream;

pub use converse::{from_converse_response, to_converse_request};
pub use eventstream::{EventMessage, EventStreamDecoder, HeaderValue};
pub use sigv4::{AwsCredentials, SigningRequest, amz_date, sign};
pub use stream::{ConverseEvents, ConverseStreamToOpenAi};

use serde_json::Value;

use crate::anthropic::MappedError;
use crate::azure::encode_component;
use crate::error::excerpt;

/// The signing name of the Bedrock runtime.
pub const SERVICE: &str = "bedrock";

/// `https://bedrock-runtime.{region}.amazonaws.com/model/{model id}/converse` (or
/// `/converse-stream`); the model id is percent-encoded (`:` in `...-v1:0` and ARNs).
pub fn converse_url(api_base: Option<&str>, region: &str, model_id: &str, stream: bool) -> String {
    let base = api_base
        .map(|b| b.trim_end_matches('/').to_string())
        .unwrap_or_else(|| format!("https://bedrock-runtime.{region}.amazonaws.com"));
    let op = if stream {
        "converse-stream"
    } else {
        "converse"
    };
    format!("{base}/model/{}/{op}", encode_component(model_id))
}

/// OpenAI `finish_reason` for a Converse `stopReason`.
pub fn finish_reason(stop: Option<&str>) -> &'static str {
    match stop {
        Some("max_tokens") | Some("model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("guardrail_intervened") | Some("content_filtered") => "content_filter",
        _ => "stop",
    }
}

/// Status for a Bedrock exception name (from `x-amzn-ErrorType` or an event-stream
/// `:exception-type`), matched case-insensitively since the two spell it differently.
pub fn exception_status(kind: &str, fallback: u16) -> u16 {
    let k = kind.split(':').next().unwrap_or(kind).to_ascii_lowercase();
    match k.as_str() {
        "validationexception" => 400,
        "accessdeniedexception" | "unrecognizedclientexception" => 403,
        "resourcenotfoundexception" => 404,
        "modeltimeoutexception" => 408,
        "throttlingexception" | "toomanyrequestsexception" => 429,
        "serviceunavailableexception" | "modelnotreadyexception" => 503,
        "internalserverexception" | "modelstreamerrorexception" | "modelerrorexception" => 500,
        _ => fallback,
    }
}

/// Map an error answer (`{"message": "..."}` plus the `x-amzn-ErrorType` header, if the
/// caller has it) to the gateway's status and message.
pub fn map_error(status: u16, error_type: Option<&str>, body: &str) -> MappedError {
    let message = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .or_else(|| v.get("Message"))
                .and_then(Value::as_str)
                .map(excerpt)
        })
        .unwrap_or_else(|| excerpt(body));
    MappedError {
        status: error_type.map_or(status, |t| exception_status(t, status)),
        message: format!("BedrockException - {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_encode_model_ids() {
        assert_eq!(
            converse_url(
                None,
                "us-east-1",
                "anthropic.claude-3-5-sonnet-20240620-v1:0",
                false
            ),
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
        );
        assert_eq!(
            converse_url(Some("http://127.0.0.1:9/"), "r", "m", true),
            "http://127.0.0.1:9/model/m/converse-stream"
        );
    }

    #[test]
    fn errors() {
        let m = map_error(
            400,
            Some("ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"),
            r#"{"message":"Malformed input request"}"#,
        );
        assert_eq!(
            (m.status, m.message.as_str()),
            (400, "BedrockException - Malformed input request")
        );
        assert_eq!(map_error(429, None, "Too many").status, 429);
        assert_eq!(exception_status("throttlingException", 500), 429);
        assert_eq!(
            finish_reason(Some("guardrail_intervened")),
            "content_filter"
        );
    }
}
