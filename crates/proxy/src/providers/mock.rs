//! `mock_response` deployments: answered in-process like LiteLLM's mock completion, with a
//! usage estimate (about four characters a token) so that cost and spend work end to end.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use futures_util::stream::{self, StreamExt};
use http::HeaderMap;
use serde_json::{Value, json};

use super::{ChatCall, ChatReply, EmbeddingReply, Endpoint, Provider};
use crate::error::ProxyError;
use crate::providers::Deployment;

pub struct MockProvider;

fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// Prompt tokens: the text of every message, plus a few tokens of framing per message.
fn prompt_tokens(body: &Value) -> u64 {
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return match body.get("input").or_else(|| body.get("prompt")) {
            Some(Value::String(s)) => estimate_tokens(s),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| i.as_str().map(estimate_tokens).unwrap_or(1))
                .sum(),
            _ => 0,
        };
    };
    messages
        .iter()
        .map(|m| {
            let text = match m.get("content") {
                Some(Value::String(s)) => estimate_tokens(s),
                Some(Value::Array(parts)) => parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .map(estimate_tokens)
                    .sum(),
                _ => 0,
            };
            text + 3
        })
        .sum::<u64>()
        + 3
}

fn now() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0)
}

/// The answer split into word-sized pieces, spaces kept.
fn pieces(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if c == ' ' && i > start {
            out.push(&text[start..i]);
            start = i;
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

impl Provider for MockProvider {
    fn chat(
        &self,
        _client: &reqwest::Client,
        d: &Arc<Deployment>,
        call: ChatCall,
    ) -> BoxFuture<'static, Result<ChatReply, ProxyError>> {
        let d = d.clone();
        Box::pin(async move {
            let body: Value = serde_json::from_slice(&call.body).unwrap_or(Value::Null);
            let text = call
                .mock_response
                .or_else(|| d.mock_response.clone())
                .unwrap_or_default();
            let prompt = prompt_tokens(&body);
            let completion = estimate_tokens(&text);
            let usage = json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion});
            let id = format!("chatcmpl-{}", uuid::Uuid::now_v7());
            let created = now();
            let model = &d.upstream_model;
            if call.endpoint == Endpoint::TextCompletion {
                return Ok(text_completion(
                    &id,
                    created,
                    model,
                    &text,
                    usage,
                    call.stream,
                ));
            }
            if !call.stream {
                let out = json!({
                    "id": id, "object": "chat.completion", "created": created, "model": model,
                    "system_fingerprint": null,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                    "usage": usage,
                });
                return Ok(ChatReply::Full {
                    body: Bytes::from(out.to_string()),
                    headers: HeaderMap::new(),
                    peek: None,
                });
            }
            let chunk = |delta: Value, finish: Value| {
                json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
            };
            let mut frames: Vec<Value> = Vec::new();
            let parts = pieces(&text);
            for (i, p) in parts.iter().enumerate() {
                let delta = if i == 0 {
                    json!({"role": "assistant", "content": p})
                } else {
                    json!({"content": p})
                };
                frames.push(chunk(delta, Value::Null));
            }
            if parts.is_empty() {
                frames.push(chunk(
                    json!({"role": "assistant", "content": ""}),
                    Value::Null,
                ));
            }
            frames.push(chunk(json!({}), json!("stop")));
            frames.push(json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [], "usage": usage}));
            let mut all = BytesMut::new();
            for f in &frames {
                all.extend_from_slice(&idlehands_wire::sse::encode_data(&f.to_string()));
            }
            all.extend_from_slice(idlehands_wire::sse::DONE);
            let frames = stream::iter([Ok(all.freeze())]).boxed();
            Ok(ChatReply::Stream {
                frames,
                headers: HeaderMap::new(),
            })
        })
    }

    fn embeddings(
        &self,
        _client: &reqwest::Client,
        d: &Arc<Deployment>,
        body: Bytes,
    ) -> BoxFuture<'static, Result<EmbeddingReply, ProxyError>> {
        let d = d.clone();
        Box::pin(async move {
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let n = match body.get("input") {
                Some(Value::Array(a)) => a.len(),
                _ => 1,
            };
            let prompt = prompt_tokens(&body);
            let data: Vec<Value> = (0..n)
                .map(|i| json!({"object": "embedding", "index": i, "embedding": [0.0, 0.0, 0.0]}))
                .collect();
            let out = json!({"object": "list", "data": data, "model": d.upstream_model,
                             "usage": {"prompt_tokens": prompt, "total_tokens": prompt}});
            Ok(EmbeddingReply {
                body: Bytes::from(out.to_string()),
                headers: HeaderMap::new(),
            })
        })
    }

    fn text_completions(&self) -> bool {
        true
    }
}

/// LiteLLM's mock answer in the legacy completions shape (`text_completion`, `choices[].text`).
fn text_completion(
    id: &str,
    created: u64,
    model: &str,
    text: &str,
    usage: Value,
    stream: bool,
) -> ChatReply {
    let id = id.replacen("chatcmpl-", "cmpl-", 1);
    let choice = |text: &str, finish: Value| json!({"index": 0, "text": text, "logprobs": null, "finish_reason": finish});
    if !stream {
        let out = json!({"id": id, "object": "text_completion", "created": created, "model": model,
                         "choices": [choice(text, json!("stop"))], "usage": usage});
        return ChatReply::Full {
            body: Bytes::from(out.to_string()),
            headers: HeaderMap::new(),
            peek: None,
        };
    }
    let mut all = BytesMut::new();
    let mut push =
        |v: Value| all.extend_from_slice(&idlehands_wire::sse::encode_data(&v.to_string()));
    for p in pieces(text) {
        push(
            json!({"id": id, "object": "text_completion", "created": created, "model": model,
                    "choices": [choice(p, Value::Null)]}),
        );
    }
    push(
        json!({"id": id, "object": "text_completion", "created": created, "model": model,
                "choices": [choice("", json!("stop"))]}),
    );
    push(
        json!({"id": id, "object": "text_completion", "created": created, "model": model,
                "choices": [], "usage": usage}),
    );
    all.extend_from_slice(idlehands_wire::sse::DONE);
    ChatReply::Stream {
        frames: stream::iter([Ok(all.freeze())]).boxed(),
        headers: HeaderMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_keep_all_text() {
        assert_eq!(pieces("hello big world").concat(), "hello big world");
        assert_eq!(pieces("hello big world").len(), 3);
        assert!(pieces("").is_empty());
    }
}
