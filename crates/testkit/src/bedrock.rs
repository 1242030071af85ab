//! A fake Amazon Bedrock runtime: `POST /model/{modelId}/converse` and
//! `/model/{modelId}/converse-stream` (AWS event-stream binary framing), Bedrock's error
//! answers (`{"message"}` plus `x-amzn-ErrorType`), and a check that requests carry a SigV4
//! `authorization` header. Scripted with the same [`Reply`]/[`Fault`] as
//! [`crate::FakeOpenAi`]. Signatures are not verified here: tests recompute them from the
//! recorded request.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use crate::anthropic::scripted_accessors;
use crate::anthropic::{Core, Handle, Sse, early_fault, json_response, stream_frames_as};
use crate::recorded::RequestLine;
use crate::reply::Reply;

pub struct FakeBedrock {
    handle: Handle,
}

impl FakeBedrock {
    pub async fn start() -> Self {
        let handle = Handle::start(
            |core| {
                Router::new()
                    .route("/model/{model}/converse", post(converse))
                    .route("/model/{model}/converse-stream", post(converse_stream))
                    .with_state(core)
            },
            |status, message| bedrock_error(status, message, None),
        )
        .await;
        Self { handle }
    }

    /// `http://127.0.0.1:PORT`, used in place of `https://bedrock-runtime.REGION.amazonaws.com`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.handle.addr)
    }
}

scripted_accessors!(FakeBedrock);

/// Bedrock's error answer with the exception name it uses for each status.
pub fn bedrock_error(status: u16, message: &str, retry_after: Option<u64>) -> Response {
    let kind = match status {
        400 | 415 => "ValidationException",
        403 => "AccessDeniedException",
        404 => "ResourceNotFoundException",
        408 => "ModelTimeoutException",
        429 => "ThrottlingException",
        503 => "ServiceUnavailableException",
        _ => "InternalServerException",
    };
    let mut resp = json_response(status, json!({"message": message}), retry_after);
    resp.headers_mut()
        .insert("x-amzn-errortype", HeaderValue::from_static(kind));
    resp
}

/// Shared front half of both operations: parse, record, check auth, apply early faults.
async fn accept(
    core: &Core,
    line: &RequestLine,
    uri: &Uri,
    headers: &HeaderMap,
    raw: &Bytes,
) -> Result<(usize, Reply), Response> {
    let body: Value = serde_json::from_slice(raw)
        .map_err(|e| bedrock_error(400, &format!("Malformed input request: {e}"), None))?;
    let n = core.log.record(line, uri, headers, raw, &body);
    let signed = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256 Credential="))
        && headers.contains_key("x-amz-date");
    if !signed {
        return Err(bedrock_error(403, "Missing Authentication Token", None));
    }
    if !body.get("messages").is_some_and(Value::is_array) {
        return Err(bedrock_error(
            400,
            "Malformed input request: messages is required",
            None,
        ));
    }
    let reply = core.next_reply();
    if let Some(resp) = early_fault(&reply, bedrock_error).await {
        return Err(resp);
    }
    Ok((n, reply))
}

fn with_request_id(mut resp: Response, n: usize) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!("fake-req-{n}")) {
        resp.headers_mut().insert("x-amzn-requestid", v);
    }
    resp
}

async fn converse(
    State(core): State<Arc<Core>>,
    Path(_model): Path<String>,
    line: RequestLine,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match accept(&core, &line, &uri, &headers, &body).await {
        Ok((n, reply)) => with_request_id(axum::Json(whole(&reply)).into_response(), n),
        Err(resp) => resp,
    }
}

async fn converse_stream(
    State(core): State<Arc<Core>>,
    Path(_model): Path<String>,
    line: RequestLine,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match accept(&core, &line, &uri, &headers, &body).await {
        Ok((n, reply)) => {
            let mut frames: Vec<Bytes> = stream_events(&reply)
                .iter()
                .map(|(kind, payload)| Bytes::from(encode_event(kind, payload)))
                .collect();
            reply.error_mid_stream(&mut frames, |kind, message| {
                Bytes::from(encode_exception(kind, &json!({"message": message})))
            });
            let resp = stream_frames_as(
                frames,
                reply.fault.as_ref(),
                reply.chunk_delay,
                Sse::Not("application/vnd.amazon.eventstream"),
            );
            with_request_id(resp, n)
        }
        Err(resp) => resp,
    }
}

fn stop_reason(reply: &Reply) -> &'static str {
    if reply.tool_calls.is_empty() {
        "end_turn"
    } else {
        "tool_use"
    }
}

/// Converse usage: like Anthropic, `inputTokens` excludes cache reads and writes.
fn usage(reply: &Reply) -> Value {
    let read = reply.usage.cache_read_input_tokens.unwrap_or(0);
    let write = reply.usage.cache_creation_input_tokens.unwrap_or(0);
    let mut u = json!({
        "inputTokens": reply.usage.prompt_tokens.saturating_sub(read + write),
        "outputTokens": reply.usage.completion_tokens,
        "totalTokens": reply.usage.total(),
    });
    if read + write > 0 {
        u["cacheReadInputTokens"] = json!(read);
        u["cacheWriteInputTokens"] = json!(write);
    }
    u
}

const FAKE_SIGNATURE: &str = "ZmFrZS1zaWduYXR1cmU=";

fn whole(reply: &Reply) -> Value {
    let mut content = Vec::new();
    if let Some(r) = &reply.reasoning {
        content.push(json!({"reasoningContent": {"reasoningText": {"text": r, "signature": FAKE_SIGNATURE}}}));
    }
    if !reply.text.is_empty() {
        content.push(json!({"text": reply.text}));
    }
    for t in &reply.tool_calls {
        let input: Value = serde_json::from_str(&t.arguments).unwrap_or_else(|_| json!({}));
        content.push(json!({"toolUse": {"toolUseId": t.id, "name": t.name, "input": input}}));
    }
    let mut out = json!({
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason(reply),
        "metrics": {"latencyMs": 1},
    });
    if !reply.usage_omitted {
        out["usage"] = usage(reply);
    }
    out
}

/// The events of a streamed reply in ConverseStream's order; `metadata` comes last.
fn stream_events(reply: &Reply) -> Vec<(&'static str, Value)> {
    let mut ev = vec![("messageStart", json!({"role": "assistant"}))];
    let mut index = 0;
    if let Some(r) = &reply.reasoning {
        ev.push((
            "contentBlockDelta",
            json!({"contentBlockIndex": index, "delta": {"reasoningContent": {"text": r}}}),
        ));
        ev.push(("contentBlockDelta", json!({"contentBlockIndex": index, "delta": {"reasoningContent": {"signature": FAKE_SIGNATURE}}})));
        ev.push(("contentBlockStop", json!({"contentBlockIndex": index})));
        index += 1;
    }
    if !reply.text.is_empty() {
        for piece in reply.text_pieces() {
            ev.push((
                "contentBlockDelta",
                json!({"contentBlockIndex": index, "delta": {"text": piece}}),
            ));
        }
        ev.push(("contentBlockStop", json!({"contentBlockIndex": index})));
        index += 1;
    }
    for t in &reply.tool_calls {
        ev.push(("contentBlockStart", json!({"contentBlockIndex": index, "start": {"toolUse": {"toolUseId": t.id, "name": t.name}}})));
        let mid = (0..=t.arguments.len() / 2)
            .rev()
            .find(|m| t.arguments.is_char_boundary(*m))
            .unwrap_or(0);
        for part in [&t.arguments[..mid], &t.arguments[mid..]] {
            ev.push((
                "contentBlockDelta",
                json!({"contentBlockIndex": index, "delta": {"toolUse": {"input": part}}}),
            ));
        }
        ev.push(("contentBlockStop", json!({"contentBlockIndex": index})));
        index += 1;
    }
    ev.push(("messageStop", json!({"stopReason": stop_reason(reply)})));
    if !reply.usage_omitted {
        ev.push((
            "metadata",
            json!({"usage": usage(reply), "metrics": {"latencyMs": 1}}),
        ));
    }
    ev
}

/// One event-stream message with the three string headers AWS sends on events.
pub fn encode_event(event_type: &str, payload: &Value) -> Vec<u8> {
    encode_message(
        &[
            (":event-type", event_type),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload,
    )
}

/// An exception message as AWS sends one mid-stream (`throttlingException`,
/// `modelStreamErrorException`, ...): `:message-type` is `exception`.
pub fn encode_exception(exception_type: &str, payload: &Value) -> Vec<u8> {
    encode_message(
        &[
            (":exception-type", exception_type),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        payload,
    )
}

fn encode_message(string_headers: &[(&str, &str)], payload: &Value) -> Vec<u8> {
    let mut headers = Vec::new();
    for (name, value) in string_headers {
        headers.push(name.len() as u8);
        headers.extend_from_slice(name.as_bytes());
        headers.push(7); // string
        headers.extend_from_slice(&(value.len() as u16).to_be_bytes());
        headers.extend_from_slice(value.as_bytes());
    }
    let payload = payload.to_string().into_bytes();
    let total = 12 + headers.len() + payload.len() + 4;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    let prelude_crc = crc32(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&headers);
    out.extend_from_slice(&payload);
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// CRC-32 (IEEE), as the event-stream framing uses.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_and_framing() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        let frame = encode_event("messageStart", &json!({"role": "assistant"}));
        let total = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        assert_eq!(total, frame.len());
    }

    #[test]
    fn stream_ends_with_stop_then_metadata() {
        let reply = Reply::text("hello").with_tool_call("t1", "f", json!({"a": 1}));
        let kinds: Vec<&str> = stream_events(&reply).iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds.first(), Some(&"messageStart"));
        assert_eq!(&kinds[kinds.len() - 2..], ["messageStop", "metadata"]);
        assert!(kinds.contains(&"contentBlockStart"));
    }
}
