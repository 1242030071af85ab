//! Incremental parser for a chat-completions SSE stream. It is deliberately forgiving of the
//! ways real servers differ: tool-call fragments are merged by `index` (and split when a new
//! id appears at an index), reasoning is read from `reasoning_content`, `reasoning` or
//! `reasoning_text`, empty `tool_calls` arrays are ignored, a stream with tool calls but no
//! `finish_reason` still yields the calls, and a reasoning-only stream is a valid reply.

use serde_json::Value;

use idlehands_wire::openai::ChatChunk;

use super::error::{ClientError, FailureKind, is_context_overflow};
use crate::message::StopReason;

/// Something to show the user as it arrives.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamDelta {
    Text(String),
    Reasoning(String),
    ToolCallStarted { id: String, name: String },
}

#[derive(Debug, Clone, Default, PartialEq)]
struct PartialCall {
    index: u32,
    id: Option<String>,
    name: String,
    args: String,
}

#[derive(Debug, Default)]
pub struct StreamParser {
    text: String,
    reasoning: String,
    reasoning_field: Option<&'static str>,
    calls: Vec<PartialCall>,
    finish: Option<String>,
    usage: Option<idlehands_wire::Usage>,
    usage_cost: Option<i64>,
    done: bool,
    chunks: usize,
    /// Reasoning written inline in `content` (`<think>...</think>`) is split out here.
    think: crate::quirks::think::ThinkSplitter,
}

/// A finished assistant turn as parsed from the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedTurn {
    pub text: String,
    pub reasoning: String,
    pub reasoning_field: Option<&'static str>,
    /// `(id, name, arguments)`; arguments are parsed JSON, or the raw string when they are
    /// not valid JSON (the tool then reports the error to the model).
    pub tool_calls: Vec<(String, String, Value)>,
    pub stop_reason: StopReason,
    pub usage: Option<idlehands_wire::Usage>,
    /// `usage.cost` (USD, as OpenRouter and `idlehands proxy` put it in the final streamed
    /// usage chunk) in nano-dollars.
    pub usage_cost_nanos: Option<i64>,
}

impl StreamParser {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn saw_done(&self) -> bool {
        self.done
    }

    /// Whether anything has been shown to the user yet (after which a retry would repeat it).
    pub fn has_output(&self) -> bool {
        !self.text.is_empty() || !self.reasoning.is_empty() || !self.calls.is_empty()
    }

    /// Feed one SSE comment line: `idlehands proxy` puts a streamed call's cost in one
    /// (`x-litellm-response-cost: <USD>`), since its headers leave before the cost is known.
    pub fn push_comment(&mut self, comment: &str) {
        if let Some(usd) = comment.strip_prefix("x-litellm-response-cost:")
            && let Some(nanos) = super::parse_usd_to_nanos(usd.trim())
        {
            self.usage_cost = Some(nanos);
        }
    }

    /// Feed the `data` of one SSE event.
    pub fn push_data(&mut self, data: &str) -> Result<Vec<StreamDelta>, ClientError> {
        let data = data.trim();
        if data.is_empty() {
            return Ok(Vec::new());
        }
        if data == "[DONE]" {
            self.done = true;
            let mut out = Vec::new();
            let pieces = self.think.finish();
            self.take_pieces(pieces, &mut out);
            return Ok(out);
        }
        let value: Value = serde_json::from_str(data).map_err(|e| {
            ClientError::new(
                FailureKind::Transient,
                format!("invalid stream chunk from provider: {e}"),
            )
        })?;
        if let Some(c) = value.pointer("/usage/cost") {
            let parsed = match c {
                Value::Number(n) => super::parse_usd_to_nanos(&n.to_string()),
                Value::String(s) => super::parse_usd_to_nanos(s),
                _ => None,
            };
            if parsed.is_some() {
                self.usage_cost = parsed;
            }
        }
        if let Some(err) = value.get("error") {
            let message = err
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| err.to_string());
            let status = err
                .get("code")
                .and_then(|c| {
                    c.as_u64()
                        .or_else(|| c.as_str().and_then(|s| s.parse().ok()))
                })
                .and_then(|c| u16::try_from(c).ok())
                .filter(|c| (400..600).contains(c));
            let mut e = ClientError::from_status(status.unwrap_or(500), message, None);
            if status.is_none() && !is_context_overflow(&e.message) {
                e.status = None;
                e.kind = FailureKind::Unknown;
            }
            return Err(e);
        }
        let chunk: ChatChunk = serde_json::from_value(value).map_err(|e| {
            ClientError::new(
                FailureKind::Transient,
                format!("unexpected stream chunk from provider: {e}"),
            )
        })?;
        self.chunks += 1;
        if let Some(u) = chunk.usage {
            self.usage = Some(u);
        }
        let mut out = Vec::new();
        let Some(choice) = chunk.choices.into_iter().next() else {
            return Ok(out);
        };
        let d = choice.delta;
        let reasoning = [
            ("reasoning_content", d.reasoning_content),
            ("reasoning", d.reasoning),
            ("reasoning_text", d.reasoning_text),
        ]
        .into_iter()
        .find_map(|(field, v)| v.filter(|s| !s.is_empty()).map(|s| (field, s)));
        if let Some((field, r)) = reasoning {
            self.reasoning_field.get_or_insert(field);
            self.reasoning.push_str(&r);
            out.push(StreamDelta::Reasoning(r));
        }
        if let Some(c) = d.content.filter(|c| !c.is_empty()) {
            let pieces = self.think.push(&c);
            self.take_pieces(pieces, &mut out);
        }
        for tc in d.tool_calls.unwrap_or_default() {
            let id = tc.id.filter(|s| !s.is_empty());
            let (name, args) = match tc.function {
                Some(f) => (f.name.unwrap_or_default(), f.arguments.unwrap_or_default()),
                None => (String::new(), String::new()),
            };
            let pos = self.calls.iter().rposition(|c| c.index == tc.index);
            let starts_new = match (pos, &id) {
                (None, _) => true,
                (Some(p), Some(new_id)) => {
                    self.calls[p].id.as_ref().is_some_and(|old| old != new_id)
                }
                (Some(_), None) => false,
            };
            if starts_new {
                if id.is_none() && name.is_empty() && args.is_empty() {
                    continue;
                }
                self.calls.push(PartialCall {
                    index: tc.index,
                    id: id.clone(),
                    name: name.clone(),
                    args,
                });
                if !name.is_empty() {
                    out.push(StreamDelta::ToolCallStarted {
                        id: id.unwrap_or_default(),
                        name,
                    });
                }
                continue;
            }
            if let Some(p) = pos {
                let call = &mut self.calls[p];
                if call.id.is_none() {
                    call.id = id;
                }
                if !name.is_empty() && call.name.is_empty() {
                    call.name = name.clone();
                    out.push(StreamDelta::ToolCallStarted {
                        id: call.id.clone().unwrap_or_default(),
                        name,
                    });
                }
                call.args.push_str(&args);
            }
        }
        if let Some(f) = choice.finish_reason.filter(|f| !f.is_empty()) {
            self.finish = Some(f);
            // Text held back as a possible tag start is shown before the stream closes.
            let pieces = self.think.finish();
            self.take_pieces(pieces, &mut out);
        }
        Ok(out)
    }

    fn take_pieces(
        &mut self,
        pieces: Vec<crate::quirks::think::Piece>,
        out: &mut Vec<StreamDelta>,
    ) {
        use crate::quirks::think::Piece;
        if self.think.take_orphan_close() {
            // The text so far was reasoning whose opening tag was in the prompt.
            let moved = std::mem::take(&mut self.text);
            self.reasoning.insert_str(0, &moved);
        }
        for p in pieces {
            match p {
                Piece::Text(t) => {
                    self.text.push_str(&t);
                    out.push(StreamDelta::Text(t));
                }
                Piece::Reasoning(r) => {
                    self.reasoning.push_str(&r);
                    out.push(StreamDelta::Reasoning(r));
                }
            }
        }
    }

    /// Close the stream. `cut_short` is true when the body ended with a network error.
    pub fn finish(mut self, cut_short: bool) -> Result<ParsedTurn, ClientError> {
        let pieces = self.think.finish();
        self.take_pieces(pieces, &mut Vec::new());
        if cut_short && !(self.done || self.finish.is_some()) {
            return Err(ClientError::new(
                FailureKind::Transient,
                "the provider's stream broke off before the reply was complete",
            ));
        }
        if !self.done && self.finish.is_none() {
            return Err(ClientError::new(
                FailureKind::Transient,
                if self.chunks == 0 {
                    "the provider ended the stream without sending anything"
                } else {
                    "the provider's stream ended without a finish_reason or [DONE]; the reply may be incomplete"
                },
            ));
        }
        let tool_calls: Vec<(String, String, Value)> = self
            .calls
            .into_iter()
            .filter(|c| !c.name.is_empty())
            .map(|c| {
                let args = if c.args.trim().is_empty() {
                    Value::Object(Default::default())
                } else {
                    serde_json::from_str(&c.args).unwrap_or(Value::String(c.args))
                };
                let id =
                    c.id.unwrap_or_else(|| format!("call_{}", uuid::Uuid::new_v4().simple()));
                (id, c.name, args)
            })
            .collect();
        let stop_reason = match self.finish.as_deref() {
            _ if !tool_calls.is_empty() => StopReason::ToolUse,
            Some("length") => StopReason::Length,
            Some("content_filter") => StopReason::Error,
            _ => StopReason::Stop,
        };
        if stop_reason == StopReason::Error {
            return Err(ClientError::new(
                FailureKind::Format,
                "the provider stopped the reply with finish_reason content_filter",
            ));
        }
        Ok(ParsedTurn {
            text: self.text,
            reasoning: self.reasoning,
            reasoning_field: self.reasoning_field,
            tool_calls,
            stop_reason,
            usage: self.usage,
            usage_cost_nanos: self.usage_cost,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(frames: &[&str], cut: bool) -> Result<ParsedTurn, ClientError> {
        let mut p = StreamParser::new();
        let mut dec = idlehands_wire::SseDecoder::new();
        for f in frames {
            for ev in dec.push(f.as_bytes()) {
                p.push_data(&ev.data)?;
            }
        }
        if let Some(ev) = dec.finish() {
            p.push_data(&ev.data)?;
        }
        p.finish(cut)
    }

    #[test]
    fn tool_calls_without_finish_reason_are_kept() {
        let t = run(
            &[
                "data:{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"a\",\"function\":{\"name\":\"read\",\"arguments\":\"{\\\"pa\"}}]}}]}\n\n",
                "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"th\\\":\\\"x\\\"}\"}}]}}]}\n\n",
                "data: [DONE]\n\n",
            ],
            false,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.stop_reason, StopReason::ToolUse);
        assert_eq!(
            t.tool_calls,
            vec![("a".into(), "read".into(), serde_json::json!({"path": "x"}))]
        );
    }

    #[test]
    fn interleaved_parallel_calls_merge_by_index() {
        let f = |i: u32, id: Option<&str>, name: Option<&str>, args: &str| {
            let mut tc = serde_json::json!({"index": i, "function": {"arguments": args}});
            if let Some(id) = id {
                tc["id"] = id.into();
            }
            if let Some(n) = name {
                tc["function"]["name"] = n.into();
            }
            format!(
                "data: {}\n\n",
                serde_json::json!({"choices":[{"index":0,"delta":{"tool_calls":[tc]}}]})
            )
        };
        let frames = [
            f(0, Some("a"), Some("read"), ""),
            f(1, Some("b"), Some("glob"), ""),
            f(0, None, None, "{\"path\":"),
            f(1, None, None, "{\"pattern\":"),
            f(0, None, None, "\"x\"}"),
            f(1, None, None, "\"*\"}"),
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[]},\"finish_reason\":\"tool_calls\"}]}\n\n".to_string(),
        ];
        let refs: Vec<&str> = frames.iter().map(String::as_str).collect();
        let t = run(&refs, false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.tool_calls.len(), 2);
        assert_eq!(t.tool_calls[0].2, serde_json::json!({"path": "x"}));
        assert_eq!(t.tool_calls[1].2, serde_json::json!({"pattern": "*"}));
    }

    #[test]
    fn usage_cost_in_the_final_chunk_is_read_exactly() {
        let t = run(
            &[
                "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}]}\n\n",
                "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5,\"cost\":0.000123}}\n\n",
                "data: [DONE]",
            ],
            false,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.usage_cost_nanos, Some(123_000));
        let t = run(
            &[
                "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}]}\n\n",
                "data: [DONE]",
            ],
            false,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.usage_cost_nanos, None);
    }

    #[test]
    fn the_gateways_cost_comment_is_read_exactly() {
        let mut p = StreamParser::new();
        p.push_comment("keep-alive");
        assert_eq!(p.usage_cost, None);
        p.push_comment("x-litellm-response-cost: 0.000123");
        assert_eq!(p.usage_cost, Some(123_000));
    }

    #[test]
    fn reasoning_only_stream_and_empty_tool_calls_are_a_reply() {
        let t = run(
            &[
                "data: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning\":\"think\",\"tool_calls\":[]}}]}\n\n",
                "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
                "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n",
                "data: [DONE]",
            ],
            false,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.reasoning, "think");
        assert_eq!(t.reasoning_field, Some("reasoning"));
        assert_eq!(t.stop_reason, StopReason::Stop);
        assert!(t.tool_calls.is_empty());
        assert_eq!(t.usage.map(|u| u.total_tokens), Some(5));
    }

    #[test]
    fn text_held_back_as_a_possible_tag_is_shown_when_the_stream_ends() {
        let mut p = StreamParser::new();
        let d = p
            .push_data("{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x <thi\"}}]}")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d, vec![StreamDelta::Text("x ".into())]);
        // No finish_reason at all, only [DONE] (as some servers end a stream).
        let d = p.push_data("[DONE]").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d, vec![StreamDelta::Text("<thi".into())]);
        let t = p.finish(false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.text, "x <thi");
        assert_eq!(t.stop_reason, StopReason::Stop);
    }

    #[test]
    fn reasoning_whose_opening_tag_was_in_the_prompt_is_moved_out_of_the_text() {
        let chunk = |c: &str| {
            format!(
                "data: {}\n\n",
                serde_json::json!({"choices":[{"index":0,"delta":{"content":c}}]})
            )
        };
        let frames = [
            chunk("Plan: greet."),
            chunk("\n</think>"),
            chunk("\n\nHello!"),
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
                .to_string(),
            "data: [DONE]\n\n".to_string(),
        ];
        let refs: Vec<&str> = frames.iter().map(String::as_str).collect();
        let t = run(&refs, false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.text, "Hello!");
        assert_eq!(t.reasoning, "Plan: greet.\n");
    }

    #[test]
    fn truncated_stream_is_a_transient_error() {
        let e = run(
            &["data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"par\"}}]}\n\n"],
            false,
        )
        .err();
        assert_eq!(e.map(|e| e.kind), Some(FailureKind::Transient));
    }

    #[test]
    fn in_stream_error_is_classified() {
        let e = run(
            &["data: {\"error\":{\"message\":\"This model's maximum context length is 10 tokens\",\"code\":\"400\"}}\n\n"],
            false,
        )
        .err();
        assert_eq!(e.map(|e| e.kind), Some(FailureKind::ContextOverflow));
    }
}
