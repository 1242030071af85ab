//! Gemini `generateContent` responses -> OpenAI chat completions, and the reading of
//! candidates and usage that the stream translation shares.

use serde_json::{Value, json};

use super::finish_reason;
use super::request::THOUGHT_SIGNATURE_MARK;
use crate::TranslateError;
use crate::openai::{self, TokenCounts};

/// What one candidate's parts amount to.
#[derive(Debug, Default)]
pub(super) struct Parts {
    pub(super) text: String,
    pub(super) reasoning: String,
    /// (id, name, arguments JSON)
    pub(super) calls: Vec<(String, String, String)>,
}

/// Read a candidate's parts; `next_call` numbers function calls across a whole stream so ids
/// stay unique.
pub(super) fn read_parts(candidate: &Value, response_id: &str, next_call: &mut usize) -> Parts {
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
pub(super) fn candidate_finish(candidate: &Value, has_calls: bool) -> Option<&'static str> {
    let reason = candidate.get("finishReason").and_then(Value::as_str)?;
    let mapped = finish_reason(reason);
    Some(if has_calls && mapped == "stop" {
        "tool_calls"
    } else {
        mapped
    })
}

/// `usageMetadata` -> counts. Thought tokens are billed as output, so they join completion.
pub(super) fn token_counts(meta: &Value) -> TokenCounts {
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
    let usage = resp
        .get("usageMetadata")
        .map(|u| token_counts(u).to_usage());
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
}
