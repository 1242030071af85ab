//! Anthropic Messages response -> OpenAI chat completion.

use serde_json::{Value, json};

use super::{JSON_TOOL_NAME, finish_reason};
use crate::TranslateError;
use crate::openai::{self, TokenCounts};

/// Translate a Messages API response body. `model` is the name the client asked for and
/// `created` the Unix time to stamp (Anthropic sends none).
pub fn from_messages_response(
    resp: &Value,
    model: &str,
    created: u64,
) -> Result<Value, TranslateError> {
    let untranslatable = |reason: &str| TranslateError::untranslatable(reason, &resp.to_string());
    if resp.get("type").and_then(Value::as_str) == Some("error") {
        let m = super::map_error(500, &resp.to_string());
        return Err(TranslateError::Upstream {
            status: m.status,
            message: m.message,
        });
    }
    let blocks = resp
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| untranslatable("no 'content' array in the Messages response"))?;

    let mut text = String::new();
    let mut reasoning = String::new();
    let mut thinking_blocks = Vec::new();
    let mut tool_calls = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("thinking") => {
                reasoning.push_str(block.get("thinking").and_then(Value::as_str).unwrap_or(""));
                thinking_blocks.push(block.clone());
            }
            Some("redacted_thinking") => thinking_blocks.push(block.clone()),
            Some("tool_use") => {
                let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                if block.get("name").and_then(Value::as_str) == Some(JSON_TOOL_NAME) {
                    text.push_str(&input.to_string());
                    continue;
                }
                tool_calls.push(json!({
                    "id": block.get("id").cloned().unwrap_or(Value::Null),
                    "type": "function",
                    "function": {
                        "name": block.get("name").cloned().unwrap_or(Value::Null),
                        "arguments": input.to_string(),
                    },
                }));
            }
            // Server-tool results and future block kinds have no OpenAI counterpart.
            _ => {}
        }
    }

    let has_tool_calls = !tool_calls.is_empty();
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() && !tool_calls.is_empty() { Value::Null } else { json!(text) },
    });
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    if !thinking_blocks.is_empty() {
        message["reasoning_content"] = json!(reasoning);
        message["thinking_blocks"] = Value::Array(thinking_blocks);
    }

    let id = resp.get("id").and_then(Value::as_str).unwrap_or("");
    let stop = resp.get("stop_reason").and_then(Value::as_str);
    let usage = resp.get("usage").map(|u| token_counts(u).to_usage());
    Ok(openai::completion(
        id,
        model,
        created,
        message,
        json_aware_finish(stop, has_tool_calls),
        usage,
    ))
}

/// A turn that only "called" the JSON tool finished normally as far as the client knows.
pub(super) fn json_aware_finish(stop: Option<&str>, has_tool_calls: bool) -> &'static str {
    match finish_reason(stop) {
        "tool_calls" if !has_tool_calls => "stop",
        other => other,
    }
}

/// LiteLLM's `calculate_usage`: Anthropic's `input_tokens` excludes cached tokens, OpenAI's
/// `prompt_tokens` includes them.
pub(super) fn token_counts(usage: &Value) -> TokenCounts {
    let n = |k: &str| usage.get(k).and_then(Value::as_u64);
    let input = n("input_tokens").unwrap_or(0);
    let read = n("cache_read_input_tokens");
    let created = n("cache_creation_input_tokens");
    TokenCounts {
        prompt: input + read.unwrap_or(0) + created.unwrap_or(0),
        completion: n("output_tokens").unwrap_or(0),
        cache_read: read,
        cache_creation: created,
        reasoning: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(resp: Value) -> Value {
        match from_messages_response(&resp, "claude-sonnet-4-5", 1_700_000_000) {
            Ok(v) => v,
            Err(e) => panic!("translation failed: {e}"),
        }
    }

    #[test]
    fn text_with_cache_usage() {
        insta::assert_json_snapshot!(translate(json!({
            "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
            "content": [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there."}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 12, "output_tokens": 4, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 20}
        })));
    }

    #[test]
    fn thinking_and_tool_use() {
        insta::assert_json_snapshot!(translate(json!({
            "id": "msg_02", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [
                {"type": "thinking", "thinking": "Need the weather.", "signature": "EqQBCgIYAh=="},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {"city": "Paris"}}
            ],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 50, "output_tokens": 30}
        })));
    }

    #[test]
    fn json_tool_answer_becomes_content() {
        let out = translate(
            json!({"id": "m", "type": "message", "stop_reason": "tool_use",
            "content": [{"type": "tool_use", "id": "t", "name": "json_tool_call", "input": {"name": "Oslo"}}],
            "usage": {"input_tokens": 1, "output_tokens": 2}}),
        );
        assert_eq!(
            out["choices"][0]["message"]["content"],
            r#"{"name":"Oslo"}"#
        );
        assert!(out["choices"][0]["message"].get("tool_calls").is_none());
        assert_eq!(out["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn max_tokens_stop() {
        let out = translate(
            json!({"id": "m", "type": "message", "content": [{"type": "text", "text": "cut"}], "stop_reason": "max_tokens", "usage": {"input_tokens": 1, "output_tokens": 2}}),
        );
        assert_eq!(out["choices"][0]["finish_reason"], "length");
    }

    #[test]
    fn odd_bodies_are_untranslatable_with_excerpt() {
        let err = from_messages_response(&json!({"completion": "legacy"}), "m", 0);
        match err {
            Err(e @ TranslateError::Untranslatable { .. }) => {
                assert_eq!(e.status(), 502);
                assert!(e.to_string().contains("legacy"), "{e}");
            }
            other => panic!("expected untranslatable, got {other:?}"),
        }
        let err = from_messages_response(
            &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            "m",
            0,
        );
        assert!(matches!(
            err,
            Err(TranslateError::Upstream { status: 503, .. })
        ));
    }
}
