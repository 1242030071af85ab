//! chat.completion -> Responses `response` object.

use serde_json::{Map, Value, json};

use crate::TranslateError;

/// What a translated answer needs besides the chat answer: its id and the request it answers
/// (a Responses object echoes the request's settings).
#[derive(Debug, Clone)]
pub struct ResponseContext {
    id: String,
    request: Map<String, Value>,
    stored: bool,
}

impl ResponseContext {
    /// `id` without its `resp_` prefix (the gateway uses its call id).
    pub fn new(id: &str, request: &Value) -> Self {
        let id: String = id.chars().filter(char::is_ascii_alphanumeric).collect();
        Self {
            id,
            request: request.as_object().cloned().unwrap_or_default(),
            stored: false,
        }
    }

    /// Says `store: true` in the objects (the caller keeps the answer).
    pub fn stored(mut self, stored: bool) -> Self {
        self.stored = stored;
        self
    }

    pub fn response_id(&self) -> String {
        format!("resp_{}", self.id)
    }

    pub(crate) fn message_id(&self) -> String {
        format!("msg_{}", self.id)
    }

    pub(crate) fn reasoning_id(&self) -> String {
        format!("rs_{}", self.id)
    }

    fn asked(&self, key: &str, default: Value) -> Value {
        self.request
            .get(key)
            .filter(|v| !v.is_null())
            .cloned()
            .unwrap_or(default)
    }

    /// The whole `response` object.
    pub(crate) fn object(
        &self,
        status: &str,
        model: &str,
        created_at: u64,
        output: Vec<Value>,
        usage: Value,
        incomplete: Option<&str>,
    ) -> Value {
        json!({
            "id": self.response_id(),
            "object": "response",
            "created_at": created_at,
            "status": status,
            "error": null,
            "incomplete_details": incomplete.map(|reason| json!({"reason": reason})),
            "instructions": self.asked("instructions", Value::Null),
            "max_output_tokens": self.asked("max_output_tokens", Value::Null),
            "metadata": self.asked("metadata", json!({})),
            "model": model,
            "output": output,
            "parallel_tool_calls": self.asked("parallel_tool_calls", json!(true)),
            "previous_response_id": self.asked("previous_response_id", Value::Null),
            "reasoning": self.asked("reasoning", json!({"effort": null, "summary": null})),
            "store": self.stored,
            "temperature": self.asked("temperature", json!(1.0)),
            "text": self.asked("text", json!({"format": {"type": "text"}})),
            "tool_choice": self.asked("tool_choice", json!("auto")),
            "tools": self.asked("tools", json!([])),
            "top_p": self.asked("top_p", json!(1.0)),
            "truncation": "disabled",
            "usage": usage,
            "user": self.asked("user", Value::Null),
        })
    }
}

/// Chat usage as Responses usage.
pub(crate) fn usage(u: &Value) -> Value {
    if u.is_null() {
        return Value::Null;
    }
    let n = |p: &str| u.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    json!({
        "input_tokens": n("/prompt_tokens"),
        "input_tokens_details": {"cached_tokens": n("/prompt_tokens_details/cached_tokens")},
        "output_tokens": n("/completion_tokens"),
        "output_tokens_details": {"reasoning_tokens": n("/completion_tokens_details/reasoning_tokens")},
        "total_tokens": n("/total_tokens"),
    })
}

/// `incomplete_details.reason` for a chat `finish_reason`, when the answer was cut.
pub(crate) fn incomplete_reason(finish: Option<&str>) -> Option<&'static str> {
    match finish {
        Some("length") => Some("max_output_tokens"),
        Some("content_filter") => Some("content_filter"),
        _ => None,
    }
}

pub(crate) fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({"type": "message", "id": id, "status": status, "role": "assistant",
           "content": [{"type": "output_text", "text": text, "annotations": []}]})
}

pub(crate) fn reasoning_item(id: &str, text: &str) -> Value {
    json!({"type": "reasoning", "id": id, "summary": [{"type": "summary_text", "text": text}]})
}

pub(crate) fn call_item(call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
    json!({"type": "function_call", "id": format!("fc_{call_id}"), "call_id": call_id,
           "name": name, "arguments": arguments, "status": status})
}

/// A plain chat answer as a Responses object.
pub fn from_chat_response(chat: &Value, ctx: &ResponseContext) -> Result<Value, TranslateError> {
    let choice = chat
        .pointer("/choices/0")
        .ok_or_else(|| TranslateError::untranslatable("no choices", &chat.to_string()))?;
    let message = choice.get("message").cloned().unwrap_or(Value::Null);
    let mut output = Vec::new();
    let reasoning = ["reasoning_content", "reasoning"]
        .iter()
        .find_map(|k| message.get(*k).and_then(Value::as_str))
        .filter(|r| !r.is_empty());
    if let Some(r) = reasoning {
        output.push(reasoning_item(&ctx.reasoning_id(), r));
    }
    if let Some(text) = message
        .get("content")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        output.push(message_item(&ctx.message_id(), text, "completed"));
    }
    for call in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let s = |p: &str| call.pointer(p).and_then(Value::as_str).unwrap_or_default();
        output.push(call_item(
            s("/id"),
            s("/function/name"),
            s("/function/arguments"),
            "completed",
        ));
    }
    let incomplete = incomplete_reason(choice.get("finish_reason").and_then(Value::as_str));
    let status = if incomplete.is_some() {
        "incomplete"
    } else {
        "completed"
    };
    let model = chat
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let created = chat.get("created").and_then(Value::as_u64).unwrap_or(0);
    Ok(ctx.object(
        status,
        model,
        created,
        output,
        usage(chat.get("usage").unwrap_or(&Value::Null)),
        incomplete,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_reasoning_and_tool_calls_become_output_items() {
        let chat = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "qwen",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "Reading it.", "reasoning_content": "The user wants a.txt.",
                "tool_calls": [{"id": "call_9", "type": "function", "function": {"name": "read", "arguments": "{\"path\":\"a.txt\"}"}}]}}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27,
                      "prompt_tokens_details": {"cached_tokens": 4}}
        });
        let req = json!({"model": "coder", "input": "hi", "max_output_tokens": 99, "store": true});
        let ctx = ResponseContext::new("0193-abc", &req);
        insta::assert_json_snapshot!(from_chat_response(&chat, &ctx).unwrap());
    }

    #[test]
    fn a_cut_answer_is_incomplete() {
        let chat = json!({"model": "m", "choices": [{"finish_reason": "length", "message": {"content": "abc"}}]});
        let r = from_chat_response(&chat, &ResponseContext::new("x", &json!({}))).unwrap();
        assert_eq!(r["status"], "incomplete");
        assert_eq!(r["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(r["usage"], Value::Null);
    }
}
