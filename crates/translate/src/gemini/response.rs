//! Gemini `generateContent` responses (whole or streamed) -> OpenAI chat completions/chunks.

use serde_json::{Value, json};

use super::finish_reason;
use super::request::THOUGHT_SIGNATURE_MARK;
use crate::TranslateError;
use crate::openai::{self, TokenCounts};

/// What one candidate's parts amount to.
#[derive(Debug, Default)]
struct Parts {
    text: String,
    reasoning: String,
    /// (id, name, arguments JSON)
    calls: Vec<(String, String, String)>,
}

/// Read a candidate's parts; `next_call` numbers function calls across a whole stream so ids
/// stay unique.
fn read_parts(candidate: &Value, response_id: &str, next_call: &mut usize) -> Parts {
    let mut out = Parts::default();
    for part in candidate
        .pointer("/content/parts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(call) = part.get("functionCall") {
            let mut id = call
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| format!("call_{response_id}_{next_call}"));
            *next_call += 1;
            if let Some(sig) = part.get("thoughtSignature").and_then(Value::as_str) {
                id = format!("{id}{THOUGHT_SIGNATURE_MARK}{sig}");
            }
            let name = call.get("name").and_then(Value::as_str).unwrap_or("");
            let args = call.get("args").cloned().unwrap_or_else(|| json!({}));
            out.calls.push((id, name.to_string(), args.to_string()));
        } else if let Some(t) = part.get("text").and_then(Value::as_str) {
            if part.get("thought").and_then(Value::as_bool) == Some(true) {
                out.reasoning.push_str(t);
            } else {
                out.text.push_str(t);
            }
        }
    }
    out
}

/// A stop with function calls reads as `tool_calls`, as OpenAI clients expect.
fn candidate_finish(candidate: &Value, has_calls: bool) -> Option<&'static str> {
    let reason = candidate.get("finishReason").and_then(Value::as_str)?;
    let mapped = finish_reason(reason);
    Some(if has_calls && mapped == "stop" {
        "tool_calls"
    } else {
        mapped
    })
}

/// `usageMetadata` -> counts. Thought tokens are billed as output, so they join completion.
fn token_counts(meta: &Value) -> TokenCounts {
    let n = |k: &str| meta.get(k).and_then(Value::as_u64);
    let thoughts = n("thoughtsTokenCount");
    TokenCounts {
        prompt: n("promptTokenCount").unwrap_or(0),
        completion: n("candidatesTokenCount")
            .unwrap_or(0)
            .saturating_add(thoughts.unwrap_or(0)),
        cache_read: n("cachedContentTokenCount"),
        cache_creation: None,
        reasoning: thoughts,
    }
}

/// Translate a `generateContent` body. `model` is the name the client asked for and
/// `created` the Unix time to stamp.
pub fn from_generate_content_response(
    resp: &Value,
    model: &str,
    created: u64,
) -> Result<Value, TranslateError> {
    if resp.get("error").is_some() {
        let m = super::map_error(500, &resp.to_string());
        return Err(TranslateError::Upstream {
            status: m.status,
            message: m.message,
        });
    }
    let response_id = resp.get("responseId").and_then(Value::as_str).unwrap_or("");
    let usage = token_counts(resp.get("usageMetadata").unwrap_or(&Value::Null)).to_usage();
    let id = format!("chatcmpl-{response_id}");
    let candidates = match resp.get("candidates").and_then(Value::as_array) {
        Some(c) if !c.is_empty() => c,
        // A prompt blocked by safety filters comes back with feedback and no candidates.
        _ if resp.pointer("/promptFeedback/blockReason").is_some() => {
            let message = json!({"role": "assistant", "content": null});
            return Ok(openai::completion(
                &id,
                model,
                created,
                message,
                "content_filter",
                usage,
            ));
        }
        _ => {
            return Err(TranslateError::untranslatable(
                "no candidates in the Gemini response",
                &resp.to_string(),
            ));
        }
    };

    let mut next_call = 0;
    let mut choices = Vec::new();
    for (i, cand) in candidates.iter().enumerate() {
        let parts = read_parts(cand, response_id, &mut next_call);
        let mut message = json!({
            "role": "assistant",
            "content": if parts.text.is_empty() && !parts.calls.is_empty() { Value::Null } else { json!(parts.text) },
        });
        if !parts.reasoning.is_empty() {
            message["reasoning_content"] = json!(parts.reasoning);
        }
        if !parts.calls.is_empty() {
            message["tool_calls"] = parts
                .calls
                .iter()
                .map(|(id, name, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}}))
                .collect();
        }
        choices.push(json!({
            "index": cand.get("index").and_then(Value::as_u64).unwrap_or(i as u64),
            "message": message,
            "finish_reason": candidate_finish(cand, !parts.calls.is_empty()).unwrap_or("stop"),
        }));
    }
    let mut out = openai::completion(&id, model, created, Value::Null, "stop", usage);
    out["choices"] = Value::Array(choices);
    Ok(out)
}

/// Feed it the `data:` of each SSE event of `streamGenerateContent?alt=sse`; every event is a
/// whole `GenerateContentResponse` holding the next piece of the answer.
#[derive(Debug, Clone)]
pub struct GeminiStreamToOpenAi {
    model: String,
    created: u64,
    id: String,
    started: bool,
    next_call: usize,
    counts: TokenCounts,
    finish: Option<&'static str>,
}

impl GeminiStreamToOpenAi {
    pub fn new(model: &str, created: u64) -> Self {
        Self {
            model: model.to_string(),
            created,
            id: String::new(),
            started: false,
            next_call: 0,
            counts: TokenCounts::default(),
            finish: None,
        }
    }

    pub fn push(&mut self, data: &str) -> Result<Vec<Value>, TranslateError> {
        let ev = openai::parse_upstream(data)?;
        if ev.get("error").is_some() {
            let m = super::map_error(500, data);
            return Err(TranslateError::Upstream {
                status: m.status,
                message: m.message,
            });
        }
        let mut out = Vec::new();
        let response_id = ev.get("responseId").and_then(Value::as_str).unwrap_or("");
        if !self.started {
            self.started = true;
            self.id = format!("chatcmpl-{response_id}");
            out.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
        }
        if let Some(meta) = ev.get("usageMetadata") {
            self.counts = token_counts(meta);
        }
        if ev.pointer("/promptFeedback/blockReason").is_some() {
            self.finish = Some("content_filter");
            out.push(self.chunk(json!({}), Some("content_filter")));
            return Ok(out);
        }
        let Some(cand) = ev.pointer("/candidates/0") else {
            return Ok(out);
        };
        let first_call = self.next_call;
        let parts = read_parts(cand, response_id, &mut self.next_call);
        if !parts.reasoning.is_empty() {
            out.push(self.chunk(json!({"reasoning_content": parts.reasoning}), None));
        }
        if !parts.text.is_empty() {
            out.push(self.chunk(json!({"content": parts.text}), None));
        }
        // Gemini sends each function call whole, so each becomes one complete delta.
        for (n, (id, name, args)) in parts.calls.iter().enumerate() {
            out.push(self.chunk(
                json!({"tool_calls": [{"index": first_call + n, "id": id, "type": "function", "function": {"name": name, "arguments": args}}]}),
                None,
            ));
        }
        let had_calls = self.next_call > 0;
        if let Some(reason) = candidate_finish(cand, had_calls) {
            self.finish = Some(reason);
            out.push(self.chunk(json!({}), Some(reason)));
        }
        Ok(out)
    }

    /// Whether a finish reason arrived: a stream that ends without one was cut short.
    pub fn is_complete(&self) -> bool {
        self.finish.is_some()
    }

    pub fn finish_reason(&self) -> Option<&'static str> {
        self.finish
    }

    pub fn usage(&self) -> Value {
        self.counts.to_usage()
    }

    /// Call when the upstream body ends: the trailing usage chunk, or an error for a stream
    /// cut short.
    pub fn finish(&self) -> Result<Value, TranslateError> {
        if self.finish.is_none() {
            return Err(TranslateError::untranslatable(
                "the Gemini stream ended without a finishReason",
                "",
            ));
        }
        Ok(openai::usage_chunk(
            &self.id,
            &self.model,
            self.created,
            self.usage(),
        ))
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        openai::chunk(&self.id, &self.model, self.created, delta, finish)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_thoughts_and_usage() {
        let resp = json!({
            "candidates": [{"content": {"role": "model", "parts": [
                {"text": "Consider units.", "thought": true},
                {"text": "It is "}, {"text": "42."}
            ]}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 40, "candidatesTokenCount": 6, "thoughtsTokenCount": 20, "cachedContentTokenCount": 32, "totalTokenCount": 66},
            "modelVersion": "gemini-2.5-flash", "responseId": "r1"
        });
        insta::assert_json_snapshot!(
            from_generate_content_response(&resp, "gemini-2.5-flash", 1_700_000_000)
                .unwrap_or(Value::Null)
        );
    }

    #[test]
    fn function_calls_with_signature() {
        let resp = json!({
            "candidates": [{"content": {"role": "model", "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2ln"},
                {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}
            ]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 12, "totalTokenCount": 22},
            "responseId": "r2"
        });
        insta::assert_json_snapshot!(
            from_generate_content_response(&resp, "g", 1_700_000_000).unwrap_or(Value::Null)
        );
    }

    #[test]
    fn blocked_prompt_and_garbage() {
        let blocked = json!({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 5}});
        let out = from_generate_content_response(&blocked, "g", 0).unwrap_or(Value::Null);
        assert_eq!(out["choices"][0]["finish_reason"], "content_filter");
        assert!(matches!(
            from_generate_content_response(&json!({"weird": 1}), "g", 0),
            Err(TranslateError::Untranslatable { .. })
        ));
        let max = json!({"candidates": [{"content": {"parts": [{"text": "cut"}]}, "finishReason": "MAX_TOKENS"}]});
        assert_eq!(
            from_generate_content_response(&max, "g", 0).unwrap_or(Value::Null)["choices"][0]["finish_reason"],
            "length"
        );
    }

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
        chunks.push(m.finish().unwrap_or(Value::Null));
        insta::assert_json_snapshot!(chunks);
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
