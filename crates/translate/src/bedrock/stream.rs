//! ConverseStream events -> OpenAI `chat.completion.chunk`s.

use serde_json::{Value, json};

use super::converse::token_counts;
use super::eventstream::{EventMessage, EventStreamDecoder};
use super::{exception_status, finish_reason};
use crate::TranslateError;
use crate::error::excerpt;
use crate::openai;
use crate::stream_to_openai::{Chunks, ProviderStream, StreamToOpenAi};

/// Feed it each decoded event-stream message.
pub type ConverseStreamToOpenAi = StreamToOpenAi<ConverseEvents>;

/// ConverseStream keeps no state beyond the shared bookkeeping: `messageStop` carries the
/// finish reason and `metadata`, after it, the usage.
#[derive(Debug, Clone, Default)]
pub struct ConverseEvents;

impl ConverseStreamToOpenAi {
    /// `id` is the completion id to stamp (e.g. the `x-amzn-requestid` header).
    pub fn new(model: &str, id: &str, created: u64) -> Self {
        Self::with(ConverseEvents, model, id, created)
    }

    /// One decoded message; exceptions become [`TranslateError::Upstream`].
    pub fn push_message(&mut self, msg: &EventMessage) -> Result<Vec<Value>, TranslateError> {
        self.push_frame(msg)
    }
}

impl ProviderStream for ConverseEvents {
    type Decoder = EventStreamDecoder;
    const CUT_SHORT: &'static str = "the ConverseStream ended before messageStop";

    fn frame(
        &mut self,
        msg: &EventMessage,
        out: &mut Chunks,
    ) -> Result<Vec<Value>, TranslateError> {
        let payload = String::from_utf8_lossy(&msg.payload);
        if msg.message_type() == Some("event") {
            let data = openai::parse_upstream(&payload)?;
            return event(msg.kind().unwrap_or(""), &data, out);
        }
        let kind = msg.kind().unwrap_or("unknown");
        // Exceptions carry `{"message"}` as payload; protocol errors put it in a header.
        let message = msg
            .header_str(":error-message")
            .map(excerpt)
            .or_else(|| {
                serde_json::from_str::<Value>(&payload)
                    .ok()
                    .and_then(|v| v.get("message").and_then(Value::as_str).map(excerpt))
            })
            .unwrap_or_else(|| excerpt(&payload));
        Err(TranslateError::Upstream {
            status: exception_status(kind, 500),
            message: format!("BedrockException - {kind}: {message}"),
        })
    }
}

fn event(kind: &str, data: &Value, out: &mut Chunks) -> Result<Vec<Value>, TranslateError> {
    let index = data
        .get("contentBlockIndex")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let delta = match kind {
        "messageStart" => return Ok(vec![out.role()]),
        "contentBlockStart" => {
            let Some(tu) = data.pointer("/start/toolUse") else {
                return Ok(Vec::new());
            };
            let n = out.open_tool_call(index);
            json!({"tool_calls": [{"index": n, "id": tu.get("toolUseId"), "type": "function",
                                   "function": {"name": tu.get("name"), "arguments": ""}}]})
        }
        "contentBlockDelta" => match block_delta(index, data, out)? {
            Some(d) => d,
            None => return Ok(Vec::new()),
        },
        "messageStop" => {
            let reason = finish_reason(data.get("stopReason").and_then(Value::as_str));
            return Ok(vec![out.finished(reason)]);
        }
        "metadata" => {
            if let Some(u) = data.get("usage") {
                out.report(token_counts(u));
            }
            return Ok(Vec::new());
        }
        // contentBlockStop and newer events carry nothing to forward.
        _ => return Ok(Vec::new()),
    };
    Ok(vec![out.chunk(delta, None)])
}

fn block_delta(index: u64, data: &Value, out: &Chunks) -> Result<Option<Value>, TranslateError> {
    let Some(d) = data.get("delta") else {
        return Err(TranslateError::untranslatable(
            "contentBlockDelta without delta",
            &data.to_string(),
        ));
    };
    if let Some(t) = d.get("text").and_then(Value::as_str) {
        return Ok(Some(json!({"content": t})));
    }
    if let Some(input) = d.pointer("/toolUse/input").and_then(Value::as_str) {
        let n = out.tool_call(index).ok_or_else(|| {
            TranslateError::untranslatable(
                "tool input for a block that is not toolUse",
                &data.to_string(),
            )
        })?;
        return Ok(Some(
            json!({"tool_calls": [{"index": n, "function": {"arguments": input}}]}),
        ));
    }
    if let Some(r) = d.get("reasoningContent") {
        if let Some(t) = r.get("text").and_then(Value::as_str) {
            return Ok(Some(
                json!({"reasoning_content": t, "thinking_blocks": [{"type": "thinking", "thinking": t}]}),
            ));
        }
        if let Some(sig) = r.get("signature").and_then(Value::as_str) {
            return Ok(Some(
                json!({"thinking_blocks": [{"type": "thinking", "thinking": "", "signature": sig}]}),
            ));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bedrock::eventstream::{EventStreamDecoder, HeaderValue};

    fn message(kind: &str, payload: Value) -> EventMessage {
        EventMessage {
            headers: vec![
                (":event-type".into(), HeaderValue::String(kind.into())),
                (
                    ":content-type".into(),
                    HeaderValue::String("application/json".into()),
                ),
                (":message-type".into(), HeaderValue::String("event".into())),
            ],
            payload: payload.to_string().into_bytes(),
        }
    }

    /// Encoded as AWS sends it, decoded in uneven pieces, translated.
    #[test]
    fn binary_stream_to_chunks() {
        let events = [
            message("messageStart", json!({"role": "assistant", "p": "abc"})),
            message(
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Think."}}}),
            ),
            message(
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "c2ln"}}}),
            ),
            message("contentBlockStop", json!({"contentBlockIndex": 0})),
            message(
                "contentBlockDelta",
                json!({"contentBlockIndex": 1, "delta": {"text": "On it."}}),
            ),
            message("contentBlockStop", json!({"contentBlockIndex": 1})),
            message(
                "contentBlockStart",
                json!({"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather"}}}),
            ),
            message(
                "contentBlockDelta",
                json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "{\"city\":"}}}),
            ),
            message(
                "contentBlockDelta",
                json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "\"Oslo\"}"}}}),
            ),
            message("contentBlockStop", json!({"contentBlockIndex": 2})),
            message("messageStop", json!({"stopReason": "tool_use"})),
            message(
                "metadata",
                json!({"usage": {"inputTokens": 30, "outputTokens": 12, "totalTokens": 42}, "metrics": {"latencyMs": 300}}),
            ),
        ];
        let bytes: Vec<u8> = events.iter().flat_map(EventMessage::encode).collect();
        let mut dec = EventStreamDecoder::new();
        let mut m = ConverseStreamToOpenAi::new("bedrock-claude", "req-2", 1_700_000_000);
        let mut chunks = Vec::new();
        for piece in bytes.chunks(37) {
            for msg in dec.push(piece).unwrap_or_default() {
                chunks.extend(m.push_message(&msg).unwrap_or_default());
            }
        }
        assert_eq!(dec.pending(), 0);
        chunks.push(m.finish().ok().flatten().unwrap_or(Value::Null));
        insta::assert_json_snapshot!(chunks);
    }

    #[test]
    fn a_stream_without_metadata_reports_no_usage() {
        let mut m = ConverseStreamToOpenAi::new("m", "req-3", 0);
        for (kind, payload) in [
            ("messageStart", json!({"role": "assistant"})),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"text": "Hi."}}),
            ),
            ("messageStop", json!({"stopReason": "end_turn"})),
        ] {
            m.push_message(&message(kind, payload)).unwrap();
        }
        assert!(m.is_complete());
        assert_eq!(m.usage(), None);
        assert_eq!(m.finish().unwrap(), None);
        m.push_message(&message(
            "metadata",
            json!({"usage": {"inputTokens": 0, "outputTokens": 0, "totalTokens": 0}}),
        ))
        .unwrap();
        // Zeros the provider reported are its answer, and relayed as such.
        assert_eq!(m.usage().unwrap()["total_tokens"], 0);
    }

    #[test]
    fn exceptions_map_to_statuses() {
        let msg = EventMessage {
            headers: vec![
                (
                    ":exception-type".into(),
                    HeaderValue::String("throttlingException".into()),
                ),
                (
                    ":message-type".into(),
                    HeaderValue::String("exception".into()),
                ),
            ],
            payload: br#"{"message":"Too many requests, please wait before trying again."}"#
                .to_vec(),
        };
        let mut m = ConverseStreamToOpenAi::new("m", "i", 0);
        match m.push_message(&msg) {
            Err(TranslateError::Upstream { status, message }) => {
                assert_eq!(status, 429);
                assert!(message.contains("Too many requests"), "{message}");
            }
            other => panic!("expected an upstream error, got {other:?}"),
        }
        let err = m.finish().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("ended before messageStop"), "{err:?}");
        let protocol_error = EventMessage {
            headers: vec![
                (":message-type".into(), HeaderValue::String("error".into())),
                (
                    ":error-code".into(),
                    HeaderValue::String("InternalFailure".into()),
                ),
                (
                    ":error-message".into(),
                    HeaderValue::String("stream broke".into()),
                ),
            ],
            payload: Vec::new(),
        };
        match m.push_message(&protocol_error) {
            Err(TranslateError::Upstream { status, message }) => {
                assert_eq!(status, 500);
                assert!(message.contains("stream broke"), "{message}");
            }
            other => panic!("expected an upstream error, got {other:?}"),
        }
    }
}
