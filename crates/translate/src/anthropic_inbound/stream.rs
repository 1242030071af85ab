//! OpenAI chunk stream -> Anthropic SSE events (to a client of `/v1/messages`).

use serde_json::{Value, json};

use super::response::{message_id, usage};
use super::stop_reason;
use crate::TranslateError;

/// One Anthropic SSE event.
#[derive(Debug, Clone, PartialEq)]
pub struct AnthropicEvent {
    pub name: &'static str,
    pub data: Value,
}

impl AnthropicEvent {
    fn new(name: &'static str, data: Value) -> Self {
        Self { name, data }
    }

    /// `event: <name>\ndata: <json>\n\n`
    pub fn to_sse(&self) -> String {
        format!("event: {}\ndata: {}\n\n", self.name, self.data)
    }
}

/// Which content block is open: Anthropic streams one block at a time, each closed before the
/// next starts, while OpenAI deltas just flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Thinking,
    Text,
    Tool(u64),
}

#[derive(Debug, Clone)]
pub struct OpenAiStreamToAnthropic {
    model: String,
    started: bool,
    open: Option<Open>,
    /// Index the next content block gets.
    next_block: u64,
    finish: Option<String>,
    usage: Value,
}

impl OpenAiStreamToAnthropic {
    /// `model` is the name the client asked for.
    pub fn new(model: &str) -> Self {
        Self {
            model: model.to_string(),
            started: false,
            open: None,
            next_block: 0,
            finish: None,
            usage: Value::Null,
        }
    }

    /// One parsed OpenAI chunk in, the Anthropic events it amounts to out.
    pub fn push(&mut self, chunk: &Value) -> Result<Vec<AnthropicEvent>, TranslateError> {
        if let Some(err) = chunk.get("error") {
            let message = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("upstream error in stream");
            return Err(TranslateError::Upstream {
                status: 500,
                message: message.to_string(),
            });
        }
        let mut out = Vec::new();
        if !self.started {
            out.push(self.message_start(chunk.get("id").and_then(Value::as_str).unwrap_or("")));
        }
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.usage = u.clone();
        }
        let Some(choice) = chunk.pointer("/choices/0") else {
            return Ok(out);
        };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        // vLLM, OpenRouter and others name the field `reasoning`.
        if let Some(r) = delta
            .get("reasoning_content")
            .or_else(|| delta.get("reasoning"))
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
        {
            self.switch_to(
                Open::Thinking,
                json!({"type": "thinking", "thinking": ""}),
                &mut out,
            );
            out.push(self.delta(json!({"type": "thinking_delta", "thinking": r})));
        }
        for block in delta
            .get("thinking_blocks")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(sig) = block.get("signature").and_then(Value::as_str) {
                self.switch_to(
                    Open::Thinking,
                    json!({"type": "thinking", "thinking": ""}),
                    &mut out,
                );
                out.push(self.delta(json!({"type": "signature_delta", "signature": sig})));
            }
        }
        if let Some(text) = delta
            .get("content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            self.switch_to(Open::Text, json!({"type": "text", "text": ""}), &mut out);
            out.push(self.delta(json!({"type": "text_delta", "text": text})));
        }
        for call in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.tool_delta(call, &mut out)?;
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(f.to_string());
        }
        Ok(out)
    }

    /// Call when the upstream stream ends: closes the open block, then `message_delta` with
    /// the stop reason and usage, then `message_stop`.
    pub fn finish(&mut self) -> Vec<AnthropicEvent> {
        let mut out = Vec::new();
        if !self.started {
            out.push(self.message_start(""));
        }
        self.close(&mut out);
        out.push(AnthropicEvent::new(
            "message_delta",
            json!({
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason(self.finish.as_deref()), "stop_sequence": null},
                "usage": usage(&self.usage),
            }),
        ));
        out.push(AnthropicEvent::new(
            "message_stop",
            json!({"type": "message_stop"}),
        ));
        out
    }

    /// Final usage in Anthropic's shape, for spend tracking by the caller.
    pub fn usage(&self) -> Value {
        usage(&self.usage)
    }

    fn message_start(&mut self, id: &str) -> AnthropicEvent {
        self.started = true;
        AnthropicEvent::new(
            "message_start",
            json!({"type": "message_start", "message": {
                "id": message_id(id), "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            }}),
        )
    }

    fn tool_delta(
        &mut self,
        call: &Value,
        out: &mut Vec<AnthropicEvent>,
    ) -> Result<(), TranslateError> {
        let index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        let name = call.pointer("/function/name").and_then(Value::as_str);
        if self.open != Some(Open::Tool(index)) {
            // A tool call's first delta names it; anything else means a block was reopened,
            // which Anthropic's format cannot express.
            let name = name.ok_or_else(|| {
                TranslateError::untranslatable(
                    "tool call arguments arrived after their block closed",
                    &call.to_string(),
                )
            })?;
            // Anthropic clients key tool results by id, so a missing one is made up.
            let id = call
                .get("id")
                .and_then(Value::as_str)
                .map_or_else(|| format!("toolu_{index}"), str::to_string);
            let block = json!({"type": "tool_use", "id": id, "name": name, "input": {}});
            self.switch_to(Open::Tool(index), block, out);
        }
        if let Some(args) = call
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
        {
            out.push(self.delta(json!({"type": "input_json_delta", "partial_json": args})));
        }
        Ok(())
    }

    fn switch_to(&mut self, want: Open, block: Value, out: &mut Vec<AnthropicEvent>) {
        if self.open == Some(want) {
            return;
        }
        self.close(out);
        self.open = Some(want);
        out.push(AnthropicEvent::new(
            "content_block_start",
            json!({"type": "content_block_start", "index": self.next_block, "content_block": block}),
        ));
    }

    fn close(&mut self, out: &mut Vec<AnthropicEvent>) {
        if self.open.take().is_some() {
            out.push(AnthropicEvent::new(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": self.next_block}),
            ));
            self.next_block += 1;
        }
    }

    fn delta(&self, delta: Value) -> AnthropicEvent {
        AnthropicEvent::new(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": self.next_block, "delta": delta}),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(delta: Value, finish: Option<&str>) -> Value {
        json!({"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    }

    #[test]
    fn reasoning_text_and_two_tools() {
        let chunks = [
            chunk(json!({"role": "assistant", "content": ""}), None),
            chunk(json!({"reasoning_content": "Plan."}), None),
            chunk(json!({"content": "Sure, "}), None),
            chunk(json!({"content": "calling."}), None),
            chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "read", "arguments": ""}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"p\":"}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 1, "id": "call_b", "type": "function", "function": {"name": "ls", "arguments": "{}"}}]}),
                None,
            ),
            chunk(json!({}), Some("tool_calls")),
            json!({"id": "chatcmpl-9", "choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27}}),
        ];
        let mut m = OpenAiStreamToAnthropic::new("claude-alias");
        let mut events = Vec::new();
        for c in &chunks {
            events.extend(m.push(c).unwrap_or_default());
        }
        events.extend(m.finish());
        let sse: String = events.iter().map(AnthropicEvent::to_sse).collect();
        insta::assert_snapshot!(sse);
    }

    #[test]
    fn reasoning_field_and_missing_tool_ids_are_handled() {
        let mut m = OpenAiStreamToAnthropic::new("m");
        let mut events = m
            .push(&chunk(json!({"reasoning": "hmm"}), None))
            .unwrap_or_default();
        events.extend(
            m.push(&chunk(
                json!({"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": "{}"}}]}),
                None,
            ))
            .unwrap_or_default(),
        );
        assert_eq!(events[2].data["delta"]["thinking"], "hmm");
        let start = events
            .iter()
            .find(|e| e.data.pointer("/content_block/type") == Some(&json!("tool_use")))
            .map(|e| e.data["content_block"]["id"].clone());
        assert_eq!(start, Some(json!("toolu_0")));
    }

    #[test]
    fn empty_stream_still_closes_properly() {
        let mut m = OpenAiStreamToAnthropic::new("m");
        let names: Vec<&str> = m.finish().iter().map(|e| e.name).collect();
        assert_eq!(names, ["message_start", "message_delta", "message_stop"]);
    }

    #[test]
    fn reopened_tool_call_is_an_error() {
        let mut m = OpenAiStreamToAnthropic::new("m");
        let first = chunk(
            json!({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": ""}}]}),
            None,
        );
        let second = chunk(
            json!({"tool_calls": [{"index": 1, "id": "b", "function": {"name": "g", "arguments": ""}}]}),
            None,
        );
        let late = chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}),
            None,
        );
        assert!(m.push(&first).is_ok());
        assert!(m.push(&second).is_ok());
        let err = m
            .push(&late)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("arrived after their block closed"), "{err:?}");
    }
}
