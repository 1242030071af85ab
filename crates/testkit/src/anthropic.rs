//! A fake Anthropic Messages API: `POST /v1/messages`, plain and streamed with the real event
//! sequence (message_start, ping, content blocks for thinking, text and tool use,
//! message_delta, message_stop), Anthropic's error envelope, and header checks the real API
//! makes. Scripted with the same [`Reply`]/[`Fault`] as [`crate::FakeOpenAi`].
//!
//! The scripting core here is shared with the other non-OpenAI fakes.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures_util::stream;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::Framing;
use crate::recorded::{Recorded, RequestLine, RequestLog};
use crate::reply::{Fault, Reply};
use crate::strict::{ErrorBody, Form, Wire, guard};

/// Script, recordings and counters of one fake.
#[derive(Default)]
pub(crate) struct Core {
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Reply>,
    pub(crate) log: RequestLog,
    wire: Arc<Wire>,
}

impl Core {
    pub(crate) fn next_reply(&self) -> Reply {
        if let Some(r) = self.script.lock().pop_front() {
            return r;
        }
        self.default.lock().clone()
    }
}

/// The scripting and inspection methods every fake built on [`Handle`] offers, written once.
macro_rules! scripted_accessors {
    ($fake:ty) => {
        impl $fake {
            pub fn addr(&self) -> std::net::SocketAddr {
                self.handle.addr
            }

            /// Queue a reply; queued replies are used in order, then the default.
            pub fn push(&self, reply: $crate::reply::Reply) {
                self.handle.push(reply);
            }

            pub fn set_default(&self, reply: $crate::reply::Reply) {
                self.handle.set_default(reply);
            }

            /// Recorded requests; `path` holds the path without the query.
            pub fn requests(&self) -> Vec<$crate::recorded::Recorded> {
                self.handle.requests()
            }

            pub fn last_request(&self) -> Option<$crate::recorded::Recorded> {
                self.handle.requests().pop()
            }

            pub fn served(&self) -> usize {
                self.handle.served()
            }

            /// Every request line received (`POST /v1/messages HTTP/1.1`), refused ones
            /// included: an absolute-form target is answered 404.
            pub fn request_lines(&self) -> Vec<String> {
                self.handle.request_lines()
            }
        }
    };
}
pub(crate) use scripted_accessors;

/// The handle every fake hands out: where it listens and how to script it.
pub(crate) struct Handle {
    pub(crate) addr: SocketAddr,
    pub(crate) core: Arc<Core>,
    task: JoinHandle<()>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Handle {
    /// # Panics
    /// When no loopback port can be bound: this is test tooling.
    #[expect(clippy::expect_used)]
    pub(crate) async fn start(app: impl FnOnce(Arc<Core>) -> Router, error: ErrorBody) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake provider");
        let addr = listener.local_addr().expect("local addr");
        let core = Arc::new(Core::default());
        let app = guard(app(core.clone()), core.wire.clone(), Form::Origin, error);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, core, task }
    }

    pub(crate) fn push(&self, reply: Reply) {
        self.core.script.lock().push_back(reply);
    }

    pub(crate) fn set_default(&self, reply: Reply) {
        *self.core.default.lock() = reply;
    }

    pub(crate) fn request_lines(&self) -> Vec<String> {
        self.core.wire.lines()
    }

    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.core.log.all()
    }

    pub(crate) fn served(&self) -> usize {
        self.core.log.served()
    }
}

/// A streamed SSE body of pre-built frames, honouring the reply's stream faults and layout.
pub(crate) fn stream_frames(frames: Vec<Bytes>, reply: &Reply) -> Response {
    let sse = Sse::Framed(reply.framing);
    stream_frames_as(frames, reply.fault.as_ref(), reply.chunk_delay, sse)
}

/// What a streamed body is: SSE in some layout, or another content type sent as built.
pub(crate) enum Sse {
    Framed(Framing),
    Not(&'static str),
}

/// A streamed body of pre-built frames of any content type, honouring the stream faults.
pub(crate) fn stream_frames_as(
    mut frames: Vec<Bytes>,
    fault: Option<&Fault>,
    delay: Duration,
    kind: Sse,
) -> Response {
    let mut reset = false;
    match fault {
        Some(Fault::ResetMidStream { after }) => {
            frames.truncate(*after);
            reset = true;
        }
        Some(Fault::TruncateStream { after }) => frames.truncate(*after),
        _ => {}
    }
    // Faults count the frames as built; the layout splits or pads them afterwards.
    let (frames, content_type) = match kind {
        Sse::Framed(framing) => (crate::frame::shape(frames, framing), "text/event-stream"),
        Sse::Not(content_type) => (frames, content_type),
    };
    let items: VecDeque<Bytes> = frames.into();
    let s = stream::unfold(
        (items, reset, false),
        move |(mut items, reset, ended)| async move {
            if ended {
                return None;
            }
            match items.pop_front() {
                Some(b) => {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    Some((Ok::<Bytes, std::io::Error>(b), (items, reset, false)))
                }
                None if reset => Some((
                    Err(std::io::Error::other("scripted reset")),
                    (items, reset, true),
                )),
                None => None,
            }
        },
    );
    Response::builder()
        .header("content-type", content_type)
        .header("cache-control", "no-cache")
        .body(Body::from_stream(s))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Faults that answer before any body: returns the response, or `None` to go on.
pub(crate) async fn early_fault(
    reply: &Reply,
    error: impl Fn(u16, &str, Option<u64>) -> Response,
) -> Option<Response> {
    reply.wait_to_answer().await;
    match &reply.fault {
        Some(Fault::Status {
            status,
            message,
            retry_after,
        }) => Some(error(*status, message, *retry_after)),
        Some(Fault::Raw { status, body }) => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::OK);
            Some((status, [("content-type", "application/json")], body.clone()).into_response())
        }
        Some(Fault::Hang) => {
            std::future::pending::<()>().await;
            None
        }
        _ => None,
    }
}

pub(crate) fn json_response(status: u16, body: Value, retry_after: Option<u64>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, axum::Json(body)).into_response();
    if let Some(v) = retry_after.and_then(|s| s.to_string().parse().ok()) {
        resp.headers_mut().insert("retry-after", v);
    }
    resp
}

/// A fake Anthropic upstream on an ephemeral loopback port.
pub struct FakeAnthropic {
    handle: Handle,
}

impl FakeAnthropic {
    pub async fn start() -> Self {
        let handle = Handle::start(
            |core| {
                Router::new()
                    .route("/v1/messages", post(messages))
                    .with_state(core)
            },
            |status, message| anthropic_error(status, message, None),
        )
        .await;
        Self { handle }
    }

    /// `http://127.0.0.1:PORT`, what Anthropic clients take as their base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.handle.addr)
    }
}

scripted_accessors!(FakeAnthropic);

/// Anthropic's error envelope with the `type` its API uses for each status.
pub fn anthropic_error(status: u16, message: &str, retry_after: Option<u64>) -> Response {
    let kind = match status {
        400 | 415 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        _ => "api_error",
    };
    json_response(
        status,
        json!({"type": "error", "error": {"type": kind, "message": message}}),
        retry_after,
    )
}

/// The checks the real API makes before looking at the model; `Some` is the rejection.
fn rejection(headers: &HeaderMap, body: &Value) -> Option<Response> {
    let (status, message) = if !headers.contains_key("x-api-key") {
        (401, "x-api-key header is required")
    } else if !headers.contains_key("anthropic-version") {
        (400, "anthropic-version: header is required")
    } else if body.get("max_tokens").and_then(Value::as_u64).is_none() {
        (400, "max_tokens: Field required")
    } else if !body.get("messages").is_some_and(Value::is_array) {
        (400, "messages: Field required")
    } else {
        return None;
    };
    Some(anthropic_error(status, message, None))
}

async fn messages(
    State(core): State<Arc<Core>>,
    line: RequestLine,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let raw = body;
    let body: Value = match serde_json::from_slice(&raw) {
        Ok(v) => v,
        Err(e) => return anthropic_error(400, &format!("invalid JSON: {e}"), None),
    };
    let n = core.log.record(&line, &uri, &headers, &raw, &body);
    if let Some(resp) = rejection(&headers, &body) {
        return resp;
    }
    let reply = core.next_reply();
    if let Some(resp) = early_fault(&reply, anthropic_error).await {
        return resp;
    }
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("claude-fake")
        .to_string();
    let id = format!("msg_fake_{n}");
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        let mut frames: Vec<Bytes> = stream_events(&id, &model, &reply)
            .into_iter()
            .map(|(name, data)| crate::frame::event(name, &data.to_string()))
            .collect();
        reply.error_mid_stream(&mut frames, |kind, message| {
            let e = json!({"type": "error", "error": {"type": kind, "message": message}});
            crate::frame::event("error", &e.to_string())
        });
        return stream_frames(frames, &reply);
    }
    axum::Json(message(&id, &model, &reply)).into_response()
}

/// Usage as Anthropic reports it: `input_tokens` excludes cache reads and writes, which the
/// scripted OpenAI-style `prompt_tokens` include.
fn usage(reply: &Reply) -> Value {
    let read = reply.usage.cache_read_input_tokens.unwrap_or(0);
    let created = reply.usage.cache_creation_input_tokens.unwrap_or(0);
    json!({
        "input_tokens": reply.usage.prompt_tokens.saturating_sub(read + created),
        "cache_creation_input_tokens": created,
        "cache_read_input_tokens": read,
        "output_tokens": reply.usage.completion_tokens,
    })
}

fn stop_reason(reply: &Reply) -> &'static str {
    if reply.tool_calls.is_empty() {
        "end_turn"
    } else {
        "tool_use"
    }
}

const FAKE_SIGNATURE: &str = "ZmFrZS1zaWduYXR1cmU=";

fn tool_input(arguments: &str) -> Value {
    serde_json::from_str(arguments).unwrap_or_else(|_| json!({}))
}

fn message(id: &str, model: &str, reply: &Reply) -> Value {
    let mut content = Vec::new();
    if let Some(r) = &reply.reasoning {
        content.push(json!({"type": "thinking", "thinking": r, "signature": FAKE_SIGNATURE}));
    }
    if !reply.text.is_empty() {
        content.push(json!({"type": "text", "text": reply.text}));
    }
    for t in &reply.tool_calls {
        content.push(json!({"type": "tool_use", "id": t.id, "name": t.name, "input": tool_input(&t.arguments)}));
    }
    json!({
        "id": id, "type": "message", "role": "assistant", "model": model, "content": content,
        "stop_reason": stop_reason(reply), "stop_sequence": null, "usage": usage(reply),
    })
}

/// The events of a streamed reply, named as the API names them.
fn stream_events(id: &str, model: &str, reply: &Reply) -> Vec<(&'static str, Value)> {
    let mut start_usage = usage(reply);
    start_usage["output_tokens"] = json!(1);
    let mut ev = vec![
        (
            "message_start",
            json!({"type": "message_start", "message": {
                "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": null, "stop_sequence": null, "usage": start_usage,
            }}),
        ),
        ("ping", json!({"type": "ping"})),
    ];
    let mut index = 0;
    let mut block = |ev: &mut Vec<(&'static str, Value)>, start: Value, deltas: Vec<Value>| {
        ev.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        for d in deltas {
            ev.push((
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": d}),
            ));
        }
        ev.push((
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    };
    if let Some(r) = &reply.reasoning {
        block(
            &mut ev,
            json!({"type": "thinking", "thinking": "", "signature": ""}),
            vec![
                json!({"type": "thinking_delta", "thinking": r}),
                json!({"type": "signature_delta", "signature": FAKE_SIGNATURE}),
            ],
        );
    }
    if !reply.text.is_empty() {
        let deltas = reply
            .text_pieces()
            .into_iter()
            .map(|p| json!({"type": "text_delta", "text": p}))
            .collect();
        block(&mut ev, json!({"type": "text", "text": ""}), deltas);
    }
    for t in &reply.tool_calls {
        let mid = (0..=t.arguments.len() / 2)
            .rev()
            .find(|m| t.arguments.is_char_boundary(*m))
            .unwrap_or(0);
        // The API opens every tool input with an empty fragment.
        let deltas = ["", &t.arguments[..mid], &t.arguments[mid..]]
            .iter()
            .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
            .collect();
        block(
            &mut ev,
            json!({"type": "tool_use", "id": t.id, "name": t.name, "input": {}}),
            deltas,
        );
    }
    ev.push((
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop_reason(reply), "stop_sequence": null},
               "usage": {"output_tokens": reply.usage.completion_tokens}}),
    ));
    ev.push(("message_stop", json!({"type": "message_stop"})));
    ev
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_event_order_matches_the_api() {
        let reply = Reply::text("abcdefghij")
            .with_reasoning("hmm")
            .with_tool_call("toolu_1", "f", json!({"a": 1}));
        let names: Vec<&str> = stream_events("m", "c", &reply)
            .iter()
            .map(|(n, _)| *n)
            .collect();
        assert_eq!(names.first(), Some(&"message_start"));
        assert_eq!(names[1], "ping");
        assert_eq!(
            names
                .iter()
                .filter(|n| **n == "content_block_start")
                .count(),
            3
        );
        assert_eq!(&names[names.len() - 2..], ["message_delta", "message_stop"]);
    }

    #[test]
    fn usage_splits_cache_tokens_out_of_input() {
        let mut reply = Reply::text("x").with_usage(100, 5);
        reply.usage.cache_read_input_tokens = Some(60);
        reply.usage.cache_creation_input_tokens = Some(10);
        let u = usage(&reply);
        assert_eq!(u["input_tokens"], 30);
        assert_eq!(u["cache_read_input_tokens"], 60);
    }
}
