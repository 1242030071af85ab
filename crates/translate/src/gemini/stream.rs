//! Gemini `streamGenerateContent?alt=sse` events -> OpenAI `chat.completion.chunk`s.

use idlehands_wire::{SseDecoder, SseEvent};
use serde_json::{Value, json};

use super::response::{candidate_finish, read_parts, token_counts};
use crate::TranslateError;
use crate::openai;
use crate::stream_to_openai::{Chunks, ProviderStream, StreamToOpenAi, reported};

/// Feed it the `data:` of each SSE event of `streamGenerateContent?alt=sse`; every event is a
/// whole `GenerateContentResponse` holding the next piece of the answer.
pub type GeminiStreamToOpenAi = StreamToOpenAi<GeminiEvents>;

/// What the Gemini stream needs beyond the shared bookkeeping.
#[derive(Debug, Clone, Default)]
pub struct GeminiEvents {
    started: bool,
    /// Gemini sends each function call whole and unnumbered: this numbers them across the
    /// stream, for OpenAI indexes and for ids that stay unique.
    next_call: usize,
}

impl GeminiStreamToOpenAi {
    pub fn new(model: &str, created: u64) -> Self {
        // The id comes from the first event's `responseId`.
        Self::with(GeminiEvents::default(), model, "", created)
    }

    pub fn push(&mut self, data: &str) -> Result<Vec<Value>, TranslateError> {
        self.push_frame(&SseEvent {
            event: None,
            data: data.to_string(),
        })
    }
}

impl ProviderStream for GeminiEvents {
    type Decoder = SseDecoder;
    const CUT_SHORT: &'static str = "the Gemini stream ended without a finishReason";

    fn frame(&mut self, ev: &SseEvent, out: &mut Chunks) -> Result<Vec<Value>, TranslateError> {
        let data = ev.data.as_str();
        let ev = openai::parse_upstream(data)?;
        if ev.get("error").is_some() {
            return Err(reported(super::map_error(500, data)));
        }
        let mut chunks = Vec::new();
        let response_id = ev.get("responseId").and_then(Value::as_str).unwrap_or("");
        if !self.started {
            self.started = true;
            out.id = format!("chatcmpl-{response_id}");
            chunks.push(out.role());
        }
        if let Some(meta) = ev.get("usageMetadata") {
            out.report(token_counts(meta));
        }
        if ev.pointer("/promptFeedback/blockReason").is_some() {
            chunks.push(out.finished("content_filter"));
            return Ok(chunks);
        }
        let Some(cand) = ev.pointer("/candidates/0") else {
            return Ok(chunks);
        };
        let first_call = self.next_call;
        let parts = read_parts(cand, response_id, &mut self.next_call);
        if !parts.reasoning.is_empty() {
            chunks.push(out.chunk(json!({"reasoning_content": parts.reasoning}), None));
        }
        if !parts.text.is_empty() {
            chunks.push(out.chunk(json!({"content": parts.text}), None));
        }
        // Gemini sends each function call whole, so each becomes one complete delta.
        for (n, (id, name, args)) in parts.calls.iter().enumerate() {
            chunks.push(out.chunk(
                json!({"tool_calls": [{"index": first_call + n, "id": id, "type": "function", "function": {"name": name, "arguments": args}}]}),
                None,
            ));
        }
        if let Some(reason) = candidate_finish(cand, self.next_call > 0) {
            chunks.push(out.finished(reason));
        }
        Ok(chunks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_of_text_then_call() {
        let events = [
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Thinking about it", "thought": true}]}}], "responseId": "s1"}),
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Let me "}]}}], "responseId": "s1"}),
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "check."}]}}], "responseId": "s1"}),
            json!({"candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"name": "lookup", "args": {"q": "x"}}}]}, "finishReason": "STOP"}],
                   "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 9, "thoughtsTokenCount": 3, "totalTokenCount": 20}, "responseId": "s1"}),
        ];
        let mut m = GeminiStreamToOpenAi::new("gemini-2.5-flash", 1_700_000_000);
        let mut chunks = Vec::new();
        for e in &events {
            chunks.extend(m.push(&e.to_string()).unwrap_or_default());
        }
        assert_eq!(m.finish_reason(), Some("tool_calls"));
        chunks.push(m.finish().ok().flatten().unwrap_or(Value::Null));
        insta::assert_json_snapshot!(chunks);
    }

    #[test]
    fn a_stream_without_usage_metadata_reports_no_usage() {
        let mut m = GeminiStreamToOpenAi::new("g", 0);
        m.push(&json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hi."}]}, "finishReason": "STOP"}], "responseId": "s2"}).to_string())
            .unwrap();
        assert_eq!(m.finish_reason(), Some("stop"));
        assert_eq!(m.finish().unwrap(), None);
    }

    #[test]
    fn stream_errors() {
        let mut m = GeminiStreamToOpenAi::new("g", 0);
        let err = m
            .push("{not json")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("invalid JSON"), "{err:?}");
        let err = m.push(
            r#"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#,
        );
        assert!(matches!(
            err,
            Err(TranslateError::Upstream { status: 503, .. })
        ));
        let err = m.finish().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("ended without a finishReason"), "{err:?}");
    }
}
