//! A fake Gemini API (Google AI Studio): `POST /v1beta/models/{model}:generateContent`,
//! `:streamGenerateContent` (SSE with `?alt=sse`, a JSON array without, as the real API
//! does), `:embedContent` and `:batchEmbedContents`, Google's error envelope, and the API-key
//! check. Scripted with the same [`Reply`]/[`Fault`] as [`crate::FakeOpenAi`].

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use crate::anthropic::scripted_accessors;
use crate::anthropic::{Core, Handle, early_fault, json_response, stream_frames};
use crate::recorded::RequestLine;
use crate::reply::{Fault, Reply};

pub struct FakeGemini {
    handle: Handle,
}

impl FakeGemini {
    pub async fn start() -> Self {
        let handle = Handle::start(
            |core| {
                Router::new()
                    .route("/v1beta/models/{target}", post(models))
                    .route("/v1/models/{target}", post(models))
                    .with_state(core)
            },
            |status, message| gemini_error(status, message, None),
        )
        .await;
        Self { handle }
    }

    /// `http://127.0.0.1:PORT/v1beta`, the API base a Gemini client is given.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1beta", self.handle.addr)
    }
}

scripted_accessors!(FakeGemini);

/// Google's error envelope with the status word its APIs use for each HTTP status.
pub fn gemini_error(status: u16, message: &str, retry_after: Option<u64>) -> Response {
    let word = match status {
        400 | 415 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    };
    json_response(
        status,
        json!({"error": {"code": status, "message": message, "status": word}}),
        retry_after,
    )
}

fn query_param<'a>(uri: &'a Uri, name: &str) -> Option<&'a str> {
    uri.query()?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

async fn models(
    State(core): State<Arc<Core>>,
    Path(target): Path<String>,
    line: RequestLine,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let raw = body;
    let body: Value = match serde_json::from_slice(&raw) {
        Ok(v) => v,
        Err(e) => return gemini_error(400, &format!("Invalid JSON payload received. {e}"), None),
    };
    let n = core.log.record(&line, &uri, &headers, &raw, &body);
    if !headers.contains_key("x-goog-api-key") && query_param(&uri, "key").is_none() {
        return gemini_error(
            403,
            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
            None,
        );
    }
    let Some((model, action)) = target.split_once(':') else {
        return gemini_error(404, &format!("models/{target} is not found"), None);
    };
    let reply = core.next_reply();
    if let Some(resp) = early_fault(&reply, gemini_error).await {
        return resp;
    }
    match action {
        "generateContent" => axum::Json(whole(model, n, &reply)).into_response(),
        "streamGenerateContent" => {
            let chunks = stream_chunks(model, n, &reply);
            if query_param(&uri, "alt") == Some("sse") {
                let mut frames: Vec<_> = chunks
                    .iter()
                    .map(|c| crate::frame::data(&c.to_string()))
                    .collect();
                reply.error_mid_stream(&mut frames, |kind, message| {
                    let e = json!({"error": {"code": 503, "message": message, "status": kind}});
                    crate::frame::data(&e.to_string())
                });
                stream_frames(frames, &reply)
            } else {
                axum::Json(Value::Array(chunks)).into_response()
            }
        }
        "embedContent" => axum::Json(json!({"embedding": {"values": vector(0)}})).into_response(),
        "batchEmbedContents" => {
            let count = body
                .get("requests")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let embeddings: Vec<Value> = (0..count).map(|i| json!({"values": vector(i)})).collect();
            axum::Json(json!({"embeddings": embeddings})).into_response()
        }
        other => gemini_error(400, &format!("unknown method {other}"), None),
    }
}

/// A small vector that differs per input, so tests can tell inputs apart.
fn vector(i: usize) -> Value {
    let x = i as f64;
    json!([0.1 + x, -0.2, 0.3])
}

fn usage_metadata(reply: &Reply) -> Value {
    let u = &reply.usage;
    let thoughts = u.reasoning_tokens.unwrap_or(0);
    let mut m = json!({
        "promptTokenCount": u.prompt_tokens,
        "candidatesTokenCount": u.completion_tokens.saturating_sub(thoughts),
        "totalTokenCount": u.total(),
    });
    if thoughts > 0 {
        m["thoughtsTokenCount"] = json!(thoughts);
    }
    if let Some(n) = u.cache_read_input_tokens.filter(|n| *n > 0) {
        m["cachedContentTokenCount"] = json!(n);
    }
    m
}

fn call_parts(reply: &Reply) -> Vec<Value> {
    reply
        .tool_calls
        .iter()
        .map(|t| {
            let args: Value = serde_json::from_str(&t.arguments).unwrap_or_else(|_| json!({}));
            json!({"functionCall": {"name": t.name, "args": args}})
        })
        .collect()
}

fn candidate(parts: Vec<Value>, finish: bool) -> Value {
    let mut c = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
    if finish {
        c["finishReason"] = json!("STOP");
    }
    c
}

fn whole(model: &str, n: usize, reply: &Reply) -> Value {
    let mut parts = Vec::new();
    if let Some(r) = &reply.reasoning {
        parts.push(json!({"text": r, "thought": true}));
    }
    if !reply.text.is_empty() {
        parts.push(json!({"text": reply.text}));
    }
    parts.extend(call_parts(reply));
    let mut out = json!({
        "candidates": [candidate(parts, true)],
        "modelVersion": model,
        "responseId": format!("fake-{n}"),
    });
    if !reply.usage_omitted {
        out["usageMetadata"] = usage_metadata(reply);
    }
    out
}

/// Each chunk is a whole response object; the last carries function calls, the finish reason
/// and the final usage.
fn stream_chunks(model: &str, n: usize, reply: &Reply) -> Vec<Value> {
    let id = format!("fake-{n}");
    let partial_usage = json!({"promptTokenCount": reply.usage.prompt_tokens, "totalTokenCount": reply.usage.prompt_tokens});
    let mut pieces: Vec<Value> = Vec::new();
    if let Some(r) = &reply.reasoning {
        pieces.push(json!({"text": r, "thought": true}));
    }
    pieces.extend(reply.text_pieces().into_iter().map(|p| json!({"text": p})));
    let mut out: Vec<Value> = pieces
        .into_iter()
        .map(|p| {
            json!({"candidates": [candidate(vec![p], false)], "usageMetadata": partial_usage,
                   "modelVersion": model, "responseId": id})
        })
        .collect();
    out.push(json!({
        "candidates": [candidate(call_parts(reply), true)],
        "usageMetadata": usage_metadata(reply),
        "modelVersion": model,
        "responseId": id,
    }));
    if reply.usage_omitted {
        for chunk in &mut out {
            if let Some(o) = chunk.as_object_mut() {
                o.remove("usageMetadata");
            }
        }
    }
    // A scripted stream fault counts chunks, as the OpenAI fake does.
    if let Some(Fault::TruncateStream { after } | Fault::ResetMidStream { after }) = &reply.fault {
        out.truncate(*after);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_chunk_finishes_with_usage_and_calls() {
        let reply = Reply::text("abcdefghij")
            .with_chunk_chars(5)
            .with_tool_call("c", "f", json!({"a": 1}));
        let chunks = stream_chunks("g", 1, &reply);
        assert_eq!(chunks.len(), 3);
        let last = &chunks[2];
        assert_eq!(last["candidates"][0]["finishReason"], "STOP");
        assert_eq!(
            last["candidates"][0]["content"]["parts"][0]["functionCall"]["name"],
            "f"
        );
        assert_eq!(last["usageMetadata"]["candidatesTokenCount"], 5);
    }
}
