//! Usage read from a body the gateway relays without understanding it (the pass-through
//! routes): a JSON answer, an SSE stream or Ollama's newline-delimited JSON, in any of the
//! providers' shapes. The bytes go to the client untouched; this only watches them go by.

use idlehands_wire::{SseDecoder, Usage};
use serde_json::Value;

/// A JSON answer past this size is relayed without being read for usage: the gateway does not
/// hold a large body to learn what it cost (the call is then recorded without usage).
const MAX_JSON_BODY: usize = 8 * 1024 * 1024;
/// One SSE or NDJSON line past this size is skipped for the same reason.
const MAX_LINE: usize = 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    Json,
    Sse,
    Ndjson,
    /// Audio, images, anything else: nothing to read.
    Opaque,
}

impl Framing {
    /// From the answer's content type.
    pub fn of(content_type: Option<&str>) -> Self {
        let t = content_type
            .and_then(|t| t.split(';').next())
            .map(|t| t.trim().to_ascii_lowercase())
            .unwrap_or_default();
        match t.as_str() {
            "text/event-stream" => Framing::Sse,
            "application/x-ndjson" | "application/jsonl" | "application/json-seq" => {
                Framing::Ndjson
            }
            t if t == "application/json" || t.ends_with("+json") => Framing::Json,
            _ => Framing::Opaque,
        }
    }
}

/// What the watched body said about itself.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    pub usage: Option<Usage>,
    /// The model the answer names (pricing).
    pub model: Option<String>,
    pub id: Option<String>,
    /// The finished Responses API `response` object (a plain answer, or the
    /// `response.completed` event's), for the response store.
    pub completed: Option<Value>,
}

pub(crate) struct UsageScan {
    framing: Framing,
    json: Vec<u8>,
    over: bool,
    sse: SseDecoder,
    line: Vec<u8>,
    seen: Seen,
}

impl UsageScan {
    pub fn new(framing: Framing) -> Self {
        Self {
            framing,
            json: Vec::new(),
            over: false,
            sse: SseDecoder::new(),
            line: Vec::new(),
            seen: Seen::default(),
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        match self.framing {
            Framing::Opaque => {}
            Framing::Json => {
                if self.over || self.json.len() + chunk.len() > MAX_JSON_BODY {
                    self.over = true;
                    self.json = Vec::new();
                } else {
                    self.json.extend_from_slice(chunk);
                }
            }
            Framing::Sse => {
                for ev in self.sse.push(chunk) {
                    self.event(&ev.data);
                }
                if self.sse.pending() > MAX_LINE {
                    // A line this long is not usage; start over at the next line.
                    self.sse = SseDecoder::new();
                }
            }
            Framing::Ndjson => {
                for part in chunk.split_inclusive(|b| *b == b'\n') {
                    if self.line.len() + part.len() <= MAX_LINE {
                        self.line.extend_from_slice(part);
                    }
                    if part.ends_with(b"\n") {
                        let line = std::mem::take(&mut self.line);
                        if let Ok(v) = serde_json::from_slice::<Value>(&line) {
                            self.value(&v);
                        }
                    }
                }
            }
        }
    }

    /// The body has ended: what it said.
    pub fn finish(mut self) -> Seen {
        match self.framing {
            Framing::Json if !self.over => {
                if let Ok(v) = serde_json::from_slice::<Value>(&self.json) {
                    self.value(&v);
                }
            }
            Framing::Sse => {
                if let Some(ev) = self.sse.finish() {
                    self.event(&ev.data);
                }
            }
            Framing::Ndjson => {
                if let Ok(v) = serde_json::from_slice::<Value>(&self.line) {
                    self.value(&v);
                }
            }
            _ => {}
        }
        self.seen
    }

    fn event(&mut self, data: &str) {
        if let Ok(v) = serde_json::from_str::<Value>(data) {
            self.value(&v);
        }
    }

    /// One JSON object: a whole answer or one stream event. Counts seen later replace earlier
    /// ones field by field (Anthropic reports input tokens at the start and output tokens at
    /// the end; Gemini and Ollama repeat running totals).
    fn value(&mut self, v: &Value) {
        if v.get("object").and_then(Value::as_str) == Some("response") {
            self.seen.completed = Some(v.clone());
        } else if v.get("type").and_then(Value::as_str) == Some("response.completed") {
            self.seen.completed = v.get("response").cloned();
        }
        let inner = ["response", "message"]
            .iter()
            .filter_map(|k| v.get(*k))
            .find(|x| x.is_object());
        let model = v
            .get("model")
            .or_else(|| v.get("modelVersion"))
            .or_else(|| inner.and_then(|i| i.get("model")))
            .and_then(Value::as_str);
        if let Some(m) = model.filter(|m| !m.is_empty()) {
            self.seen.model = Some(m.to_string());
        }
        let id = v
            .get("id")
            .or_else(|| v.get("responseId"))
            .or_else(|| inner.and_then(|i| i.get("id")))
            .and_then(Value::as_str);
        if let (None, Some(id)) = (&self.seen.id, id) {
            self.seen.id = Some(id.to_string());
        }
        let found = v
            .get("usage")
            .filter(|u| u.is_object())
            .or_else(|| inner.and_then(|i| i.get("usage")).filter(|u| u.is_object()))
            .map(usage_object)
            .or_else(|| v.get("usageMetadata").map(gemini_usage))
            .or_else(|| ollama_usage(v));
        if let Some(u) = found {
            self.merge(u);
        }
    }

    fn merge(&mut self, new: Usage) {
        let u = self.seen.usage.get_or_insert_with(Usage::default);
        if new.prompt_tokens > 0 {
            u.prompt_tokens = new.prompt_tokens;
        }
        if new.completion_tokens > 0 {
            u.completion_tokens = new.completion_tokens;
        }
        if new.cache_read_input_tokens.is_some_and(|n| n > 0) {
            u.cache_read_input_tokens = new.cache_read_input_tokens;
        }
        if new.cache_creation_input_tokens.is_some_and(|n| n > 0) {
            u.cache_creation_input_tokens = new.cache_creation_input_tokens;
        }
        if new.prompt_tokens_details.is_some() {
            u.prompt_tokens_details = new.prompt_tokens_details;
        }
        if new.completion_tokens_details.is_some() {
            u.completion_tokens_details = new.completion_tokens_details;
        }
        u.total_tokens = u.prompt_tokens.saturating_add(u.completion_tokens);
    }
}

fn count(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// OpenAI's `usage` (chat, completions, embeddings), or the Responses API's and Anthropic's
/// (`input_tokens` / `output_tokens`). Anthropic counts cached input apart from
/// `input_tokens`; OpenAI's prompt count already includes it.
fn usage_object(u: &Value) -> Usage {
    if u.get("prompt_tokens").is_some() || u.get("completion_tokens").is_some() {
        return serde_json::from_value(u.clone()).unwrap_or_else(|_| {
            Usage::new(count(u, "prompt_tokens"), count(u, "completion_tokens"))
        });
    }
    let cache_read = count(u, "cache_read_input_tokens");
    let cache_creation = count(u, "cache_creation_input_tokens");
    let mut out = Usage::new(
        count(u, "input_tokens")
            .saturating_add(cache_read)
            .saturating_add(cache_creation),
        count(u, "output_tokens"),
    );
    if cache_read > 0 {
        out.cache_read_input_tokens = Some(cache_read);
    }
    if cache_creation > 0 {
        out.cache_creation_input_tokens = Some(cache_creation);
    }
    if let Some(cached) = u
        .pointer("/input_tokens_details/cached_tokens")
        .and_then(Value::as_u64)
        .filter(|n| *n > 0)
    {
        out.cache_read_input_tokens = Some(cached);
    }
    out
}

/// Gemini's `usageMetadata`; thinking tokens are billed as output.
fn gemini_usage(u: &Value) -> Usage {
    let mut out = Usage::new(
        count(u, "promptTokenCount"),
        count(u, "candidatesTokenCount").saturating_add(count(u, "thoughtsTokenCount")),
    );
    let cached = count(u, "cachedContentTokenCount");
    if cached > 0 {
        out.cache_read_input_tokens = Some(cached);
    }
    out
}

/// Ollama's native API: `prompt_eval_count` and `eval_count` on the final object.
fn ollama_usage(v: &Value) -> Option<Usage> {
    if v.get("prompt_eval_count").is_none() && v.get("eval_count").is_none() {
        return None;
    }
    Some(Usage::new(
        count(v, "prompt_eval_count"),
        count(v, "eval_count"),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn scan(framing: Framing, parts: &[&str]) -> Seen {
        let mut s = UsageScan::new(framing);
        for p in parts {
            s.feed(p.as_bytes());
        }
        s.finish()
    }

    #[test]
    fn openai_json_answer() {
        let seen = scan(
            Framing::Json,
            &[
                r#"{"id":"chatcmpl-1","model":"gpt-4o","usage":{"prompt_tokens":12,"#,
                r#""completion_tokens":5,"total_tokens":17}}"#,
            ],
        );
        let u = seen.usage.unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (12, 5, 17)
        );
        assert_eq!(seen.model.as_deref(), Some("gpt-4o"));
        assert_eq!(seen.id.as_deref(), Some("chatcmpl-1"));
    }

    #[test]
    fn anthropic_stream_takes_input_from_the_start_and_output_from_the_end() {
        let seen = scan(
            Framing::Sse,
            &[
                "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude-sonnet-4-5\",\"usage\":{\"input_tokens\":20,\"cache_read_input_tokens\":4,\"output_tokens\":1}}}\n\n",
                "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\n",
                "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":9}}\n\n",
                "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
            ],
        );
        let u = seen.usage.unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (24, 9));
        assert_eq!(u.cache_read_input_tokens, Some(4));
        assert_eq!(seen.model.as_deref(), Some("claude-sonnet-4-5"));
        assert_eq!(seen.id.as_deref(), Some("msg_1"));
    }

    #[test]
    fn responses_stream_reads_the_completed_event_split_across_chunks() {
        let seen = scan(
            Framing::Sse,
            &[
                "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"model\":\"gpt-5\",\"usage\":null}}\n\n",
                "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"model\":\"gpt-5\",\"usage\":{\"input_tokens\":7,",
                "\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":3,\"total_tokens\":10}}}\n\n",
            ],
        );
        let u = seen.usage.unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (7, 3));
        assert_eq!(seen.id.as_deref(), Some("resp_1"));
    }

    #[test]
    fn gemini_and_ollama_running_totals() {
        let g = scan(
            Framing::Sse,
            &[
                "data: {\"candidates\":[],\"usageMetadata\":{\"promptTokenCount\":8,\"candidatesTokenCount\":1},\"modelVersion\":\"gemini-2.5-flash\"}\r\n\r\n",
                "data: {\"candidates\":[],\"usageMetadata\":{\"promptTokenCount\":8,\"candidatesTokenCount\":6,\"thoughtsTokenCount\":2}}\r\n\r\n",
            ],
        );
        let u = g.usage.unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (8, 8));
        assert_eq!(g.model.as_deref(), Some("gemini-2.5-flash"));
        let o = scan(
            Framing::Ndjson,
            &[
                "{\"model\":\"llama3\",\"response\":\"a\",\"done\":false}\n{\"model\":\"llama3\",\"re",
                "sponse\":\"\",\"done\":true,\"prompt_eval_count\":11,\"eval_count\":4}\n",
            ],
        );
        let u = o.usage.unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (11, 4));
    }

    #[test]
    fn bodies_without_usage_report_none() {
        assert!(
            scan(Framing::Json, &["{\"object\":\"list\",\"data\":[]}"])
                .usage
                .is_none()
        );
        assert!(
            scan(Framing::Opaque, &["{\"usage\":{\"prompt_tokens\":1}}"])
                .usage
                .is_none()
        );
        assert!(scan(Framing::Json, &["not json"]).usage.is_none());
        assert_eq!(
            Framing::of(Some("application/json; charset=utf-8")),
            Framing::Json
        );
        assert_eq!(Framing::of(Some("text/event-stream")), Framing::Sse);
        assert_eq!(Framing::of(Some("audio/mpeg")), Framing::Opaque);
    }
}
