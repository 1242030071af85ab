//! OpenAI chat completion -> Anthropic Messages response (to a client of `/v1/messages`).

use serde_json::{Map, Value, json};

use super::stop_reason;
use crate::TranslateError;

/// Translate a chat completion into a Messages response; `model` is what the client asked
/// for.
pub fn from_chat_response(resp: &Value, model: &str) -> Result<Value, TranslateError> {
    let choice = resp.pointer("/choices/0").ok_or_else(|| {
        TranslateError::untranslatable("no choices in the completion", &resp.to_string())
    })?;
    let msg = choice.get("message").ok_or_else(|| {
        TranslateError::untranslatable("choice has no message", &resp.to_string())
    })?;

    let mut content = Vec::new();
    match msg.get("thinking_blocks").and_then(Value::as_array) {
        Some(blocks) => content.extend(blocks.iter().cloned()),
        None => {
            // Upstreams other than Anthropic give reasoning text without a signature.
            if let Some(r) = msg
                .get("reasoning_content")
                .or_else(|| msg.get("reasoning"))
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty())
            {
                content.push(json!({"type": "thinking", "thinking": r, "signature": ""}));
            }
        }
    }
    if let Some(text) = msg
        .get("content")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        content.push(json!({"type": "text", "text": text}));
    }
    for (i, call) in msg
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let args = call
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .unwrap_or("");
        let input: Value = if args.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(args).map_err(|_| {
                TranslateError::untranslatable("tool call arguments are not valid JSON", args)
            })?
        };
        content.push(json!({
            "type": "tool_use",
            "id": call.get("id").and_then(Value::as_str).map_or_else(|| format!("toolu_{i}"), str::to_string),
            "name": call.pointer("/function/name"),
            "input": input,
        }));
    }

    let id = resp.get("id").and_then(Value::as_str).unwrap_or("");
    Ok(json!({
        "id": message_id(id),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason").and_then(Value::as_str)),
        "stop_sequence": null,
        "usage": usage(resp.get("usage").unwrap_or(&Value::Null)),
    }))
}

/// Anthropic ids start with `msg_`; clients sometimes check.
pub(super) fn message_id(openai_id: &str) -> String {
    if openai_id.starts_with("msg_") {
        openai_id.to_string()
    } else {
        format!("msg_{openai_id}")
    }
}

/// Anthropic usage from OpenAI usage: `input_tokens` excludes cached tokens.
pub(super) fn usage(u: &Value) -> Value {
    let n = |p: &str| u.pointer(p).and_then(Value::as_u64);
    let prompt = n("/prompt_tokens").unwrap_or(0);
    let read = n("/cache_read_input_tokens").or_else(|| n("/prompt_tokens_details/cached_tokens"));
    let created = n("/cache_creation_input_tokens");
    let mut out = Map::new();
    out.insert(
        "input_tokens".into(),
        json!(prompt.saturating_sub(read.unwrap_or(0) + created.unwrap_or(0))),
    );
    out.insert(
        "output_tokens".into(),
        json!(n("/completion_tokens").unwrap_or(0)),
    );
    if let Some(r) = read {
        out.insert("cache_read_input_tokens".into(), json!(r));
    }
    if let Some(c) = created {
        out.insert("cache_creation_input_tokens".into(), json!(c));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_with_tools_reasoning_and_cache() {
        let resp = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "Calling.", "reasoning_content": "think",
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]
            }}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 9, "total_tokens": 109, "prompt_tokens_details": {"cached_tokens": 60}}
        });
        insta::assert_json_snapshot!(
            from_chat_response(&resp, "claude-alias").unwrap_or(Value::Null)
        );
    }

    #[test]
    fn plain_text_stop() {
        let resp = json!({"id": "x", "choices": [{"message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 3, "completion_tokens": 1}});
        let out = from_chat_response(&resp, "m").unwrap_or(Value::Null);
        assert_eq!(out["content"], json!([{"type": "text", "text": "hi"}]));
        assert_eq!(out["stop_reason"], "end_turn");
        assert_eq!(out["usage"], json!({"input_tokens": 3, "output_tokens": 1}));
    }

    #[test]
    fn bad_completions_are_untranslatable() {
        assert!(matches!(
            from_chat_response(&json!({"choices": []}), "m"),
            Err(TranslateError::Untranslatable { .. })
        ));
        let bad_args = json!({"choices": [{"message": {"tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{"}}]}}]});
        let err = from_chat_response(&bad_args, "m")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("tool call arguments are not valid JSON"),
            "{err:?}"
        );
    }
}
