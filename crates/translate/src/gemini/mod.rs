//! OpenAI chat completions and embeddings to Google AI Studio's Gemini API and back.
//!
//! Field names are written in the API's camelCase JSON form (`systemInstruction`,
//! `inlineData`...); the API also accepts snake_case, but one spelling keeps fakes and
//! snapshots honest.
//!
//! A provider adapter calls [`endpoint`] + [`request_headers`] + [`to_generate_content_request`],
//! then [`from_generate_content_response`] or [`GeminiStreamToOpenAi`] for each SSE `data:`,
//! and [`map_error`] for non-2xx answers. Embeddings: [`embeddings_endpoint`],
//! [`to_batch_embed_request`], [`from_batch_embed_response`].

mod embeddings;
mod request;
mod response;
mod stream;

pub use embeddings::{
    embed_content_endpoint, embeddings_endpoint, from_batch_embed_response,
    from_embed_content_response, to_batch_embed_request, to_embed_content_request,
};
pub use request::to_generate_content_request;
pub use response::from_generate_content_response;
pub use stream::{GeminiEvents, GeminiStreamToOpenAi};

use serde_json::Value;

use crate::anthropic::MappedError;
use crate::error::excerpt;

pub const DEFAULT_API_BASE: &str = "https://generativelanguage.googleapis.com/v1beta";

/// `{model}` may arrive as `gemini-2.5-flash` or `models/gemini-2.5-flash`.
fn model_path(api_base: Option<&str>, model: &str) -> String {
    let base = api_base.unwrap_or(DEFAULT_API_BASE).trim_end_matches('/');
    let model = model.strip_prefix("models/").unwrap_or(model);
    format!("{base}/models/{model}")
}

/// `:generateContent`, or `:streamGenerateContent?alt=sse` (without `alt=sse` the API streams
/// one JSON array instead of SSE events).
pub fn endpoint(api_base: Option<&str>, model: &str, stream: bool) -> String {
    let path = model_path(api_base, model);
    if stream {
        format!("{path}:streamGenerateContent?alt=sse")
    } else {
        format!("{path}:generateContent")
    }
}

/// The key goes in a header rather than `?key=` so it never lands in URL logs.
pub fn request_headers(api_key: &str) -> Vec<(String, String)> {
    vec![
        ("x-goog-api-key".to_string(), api_key.to_string()),
        ("content-type".to_string(), "application/json".to_string()),
    ]
}

/// OpenAI `finish_reason` for a Gemini `finishReason`.
pub fn finish_reason(reason: &str) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY"
        | "LANGUAGE" => "content_filter",
        _ => "stop",
    }
}

/// Map a Gemini error answer (`{"error":{"code","message","status"}}`) to the gateway's
/// status and message.
pub fn map_error(status: u16, body: &str) -> MappedError {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    // Errors sometimes come wrapped in a one-element array (streaming without alt=sse).
    let err = parsed
        .as_ref()
        .and_then(|v| v.get("error").or_else(|| v.pointer("/0/error")).cloned());
    let message = err
        .as_ref()
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(excerpt)
        .unwrap_or_else(|| excerpt(body));
    let mapped = match err
        .as_ref()
        .and_then(|e| e.get("status"))
        .and_then(Value::as_str)
    {
        Some("INVALID_ARGUMENT") | Some("FAILED_PRECONDITION") => 400,
        Some("UNAUTHENTICATED") => 401,
        Some("PERMISSION_DENIED") => 403,
        Some("NOT_FOUND") => 404,
        Some("RESOURCE_EXHAUSTED") => 429,
        Some("INTERNAL") => 500,
        Some("UNAVAILABLE") => 503,
        Some("DEADLINE_EXCEEDED") => 504,
        _ => status,
    };
    MappedError {
        status: mapped,
        message: format!("GeminiException - {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            endpoint(None, "gemini-2.5-flash", false),
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
        );
        assert_eq!(
            endpoint(Some("http://h:1/v1beta/"), "models/g", true),
            "http://h:1/v1beta/models/g:streamGenerateContent?alt=sse"
        );
        assert!(request_headers("k").contains(&("x-goog-api-key".into(), "k".into())));
    }

    #[test]
    fn errors_map_by_status_word() {
        let body = r#"{"error":{"code":429,"message":"Resource has been exhausted","status":"RESOURCE_EXHAUSTED"}}"#;
        let m = map_error(429, body);
        assert_eq!(m.status, 429);
        assert_eq!(m.message, "GeminiException - Resource has been exhausted");
        let m = map_error(
            400,
            r#"[{"error":{"code":400,"message":"API key not valid","status":"INVALID_ARGUMENT"}}]"#,
        );
        assert_eq!(m.status, 400);
        assert_eq!(map_error(503, "overloaded").status, 503);
    }

    #[test]
    fn finish_reasons() {
        assert_eq!(finish_reason("STOP"), "stop");
        assert_eq!(finish_reason("MAX_TOKENS"), "length");
        assert_eq!(finish_reason("SAFETY"), "content_filter");
        assert_eq!(finish_reason("RECITATION"), "content_filter");
    }
}
