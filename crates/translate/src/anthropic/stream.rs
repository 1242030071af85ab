//! Anthropic streaming events -> OpenAI `chat.completion.chunk`s.

use std::collections::HashSet;

use idlehands_wire::{SseDecoder, SseEvent};
use serde_json::{Value, json};

use super::JSON_TOOL_NAME;
use super::response::{json_aware_finish, token_counts};
use crate::TranslateError;
use crate::openai;
use crate::stream_to_openai::{Chunks, ProviderStream, StreamToOpenAi, reported};

/// Feed it each SSE event of a Messages stream; it returns the chunks to send on.
pub type AnthropicStreamToOpenAi = StreamToOpenAi<AnthropicEvents>;

/// What the Messages stream needs beyond the shared bookkeeping.
#[derive(Debug, Clone, Default)]
pub struct AnthropicEvents {
    /// Blocks of the `response_format` tool, whose input streams out as content.
    json_blocks: HashSet<u64>,
    stopped: bool,
}

impl AnthropicStreamToOpenAi {
    pub fn new(model: &str, created: u64) -> Self {
        // The id arrives with `message_start`.
        Self::with(AnthropicEvents::default(), model, "", created)
    }

    /// One SSE event: its `event:` name (may be absent; the `type` in `data` decides) and data.
    pub fn push(&mut self, event: Option<&str>, data: &str) -> Result<Vec<Value>, TranslateError> {
        self.push_frame(&SseEvent {
            event: event.map(str::to_string),
            data: data.to_string(),
        })
    }
}

impl ProviderStream for AnthropicEvents {
    type Decoder = SseDecoder;
    const CUT_SHORT: &'static str = "the Anthropic stream ended before message_stop";

    fn frame(&mut self, ev: &SseEvent, out: &mut Chunks) -> Result<Vec<Value>, TranslateError> {
        let data = ev.data.as_str();
        let ev = openai::parse_upstream(data)?;
        let kind = ev.get("type").and_then(Value::as_str).unwrap_or("");
        let chunk = match kind {
            "message_start" => Some(message_start(&ev, out)),
            "content_block_start" => self.block_start(&ev, out),
            "content_block_delta" => self.block_delta(&ev, data, out)?,
            "message_delta" => Some(message_delta(&ev, out)),
            "message_stop" => {
                self.stopped = true;
                None
            }
            "error" => return Err(reported(super::map_error(500, data))),
            // ping, content_block_stop and event kinds added later carry nothing to forward.
            _ => None,
        };
        Ok(chunk.into_iter().collect())
    }

    /// `message_stop` arrived.
    fn is_complete(&self, _out: &Chunks) -> bool {
        self.stopped
    }
}

fn message_start(ev: &Value, out: &mut Chunks) -> Value {
    let msg = ev.get("message").unwrap_or(&Value::Null);
    out.id = msg
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if let Some(u) = msg.get("usage") {
        out.report(token_counts(u));
    }
    out.role()
}

fn message_delta(ev: &Value, out: &mut Chunks) -> Value {
    if let Some(u) = ev.get("usage") {
        let n = |k: &str| u.get(k).and_then(Value::as_u64);
        if let Some(completion) = n("output_tokens") {
            let mut counts = out.counts;
            counts.completion = completion;
            out.report(counts);
        }
        // Newer API versions repeat the input counts here; they are final, so they win.
        if n("input_tokens").is_some() {
            let mut fresh = token_counts(u);
            fresh.completion = out.counts.completion;
            out.report(fresh);
        }
    }
    let stop = ev.pointer("/delta/stop_reason").and_then(Value::as_str);
    out.finished(json_aware_finish(stop, out.has_tool_calls()))
}

impl AnthropicEvents {
    fn block_start(&mut self, ev: &Value, out: &mut Chunks) -> Option<Value> {
        let index = ev.get("index").and_then(Value::as_u64).unwrap_or(0);
        let block = ev.get("content_block")?;
        match block.get("type").and_then(Value::as_str)? {
            "tool_use" if block.get("name").and_then(Value::as_str) == Some(JSON_TOOL_NAME) => {
                self.json_blocks.insert(index);
                None
            }
            "tool_use" => {
                let n = out.open_tool_call(index);
                Some(out.chunk(
                    json!({"tool_calls": [{
                        "index": n,
                        "id": block.get("id"),
                        "type": "function",
                        "function": {"name": block.get("name"), "arguments": ""},
                    }]}),
                    None,
                ))
            }
            "text" => {
                let text = block.get("text").and_then(Value::as_str).unwrap_or("");
                (!text.is_empty()).then(|| out.chunk(json!({"content": text}), None))
            }
            "redacted_thinking" => {
                Some(out.chunk(json!({"thinking_blocks": [block.clone()]}), None))
            }
            _ => None,
        }
    }

    fn block_delta(
        &self,
        ev: &Value,
        raw: &str,
        out: &Chunks,
    ) -> Result<Option<Value>, TranslateError> {
        let index = ev.get("index").and_then(Value::as_u64).unwrap_or(0);
        let delta = ev.get("delta").ok_or_else(|| {
            TranslateError::untranslatable("content_block_delta without delta", raw)
        })?;
        let s = |k: &str| delta.get(k).and_then(Value::as_str).unwrap_or("");
        let d = match delta.get("type").and_then(Value::as_str).unwrap_or("") {
            "text_delta" => json!({"content": s("text")}),
            "input_json_delta" if self.json_blocks.contains(&index) => {
                json!({"content": s("partial_json")})
            }
            "input_json_delta" => {
                let n = out.tool_call(index).ok_or_else(|| {
                    TranslateError::untranslatable(
                        "input_json_delta for a block that is not tool_use",
                        raw,
                    )
                })?;
                json!({"tool_calls": [{"index": n, "function": {"arguments": s("partial_json")}}]})
            }
            "thinking_delta" => json!({
                "reasoning_content": s("thinking"),
                "thinking_blocks": [{"type": "thinking", "thinking": s("thinking")}],
            }),
            "signature_delta" => json!({
                "thinking_blocks": [{"type": "thinking", "thinking": "", "signature": s("signature")}],
            }),
            _ => return Ok(None),
        };
        Ok(Some(out.chunk(d, None)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run a recorded event sequence through the machine, collecting every chunk.
    fn run(events: &[(&str, Value)]) -> (Vec<Value>, AnthropicStreamToOpenAi) {
        let mut m = AnthropicStreamToOpenAi::new("claude-sonnet-4-5", 1_700_000_000);
        let mut out = Vec::new();
        for (name, data) in events {
            match m.push(Some(name), &data.to_string()) {
                Ok(chunks) => out.extend(chunks),
                Err(e) => panic!("{name}: {e}"),
            }
        }
        (out, m)
    }

    #[test]
    fn text_thinking_and_tool_use_stream() {
        let events = [
            (
                "message_start",
                json!({"type": "message_start", "message": {"id": "msg_s1", "type": "message", "role": "assistant", "content": [], "model": "claude-sonnet-4-5", "stop_reason": null, "usage": {"input_tokens": 25, "output_tokens": 1, "cache_read_input_tokens": 5, "cache_creation_input_tokens": 0}}}),
            ),
            ("ping", json!({"type": "ping"})),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Let me check."}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQB=="}}),
            ),
            (
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Checking "}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "now."}}),
            ),
            (
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 1}),
            ),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "\"Paris\"}"}}),
            ),
            (
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 2}),
            ),
            (
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 42}}),
            ),
            ("message_stop", json!({"type": "message_stop"})),
        ];
        let (mut chunks, m) = run(&events);
        assert!(m.is_complete());
        assert_eq!(m.finish_reason(), Some("tool_calls"));
        chunks.push(m.finish().ok().flatten().unwrap_or(Value::Null));
        insta::assert_json_snapshot!(chunks);
    }

    #[test]
    fn json_tool_streams_as_content() {
        let events = [
            (
                "message_start",
                json!({"type": "message_start", "message": {"id": "msg_j", "usage": {"input_tokens": 5, "output_tokens": 1}}}),
            ),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "t", "name": "json_tool_call", "input": {}}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"a\":"}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "1}"}}),
            ),
            (
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 4}}),
            ),
            ("message_stop", json!({"type": "message_stop"})),
        ];
        let (chunks, m) = run(&events);
        let content: String = chunks
            .iter()
            .filter_map(|c| {
                c.pointer("/choices/0/delta/content")
                    .and_then(Value::as_str)
            })
            .collect();
        assert_eq!(content, r#"{"a":1}"#);
        assert!(
            chunks
                .iter()
                .all(|c| c.pointer("/choices/0/delta/tool_calls").is_none())
        );
        assert_eq!(m.finish_reason(), Some("stop"));
    }

    #[test]
    fn error_event_maps_to_status() {
        let mut m = AnthropicStreamToOpenAi::new("m", 0);
        let err = m.push(
            Some("error"),
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        assert_eq!(
            err,
            Err(TranslateError::Upstream {
                status: 503,
                message: "AnthropicException - Overloaded".into()
            })
        );
    }

    #[test]
    fn garbage_and_truncation_are_errors_not_panics() {
        let mut m = AnthropicStreamToOpenAi::new("m", 0);
        assert!(matches!(
            m.push(None, "not json"),
            Err(TranslateError::Untranslatable { .. })
        ));
        assert!(m
            .push(None, r#"{"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":"x"}}"#)
            .is_err());
        let err = m.finish().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("ended before message_stop"), "{err:?}");
    }
}
