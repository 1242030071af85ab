//! Recorded answers of a real llama.cpp `llama-server`, served back byte for byte.
//!
//! [`Capture`] names each recording (the files under `fixtures/llama-server/`, compiled in);
//! [`FakeLlamaServer`] answers the way llama-server did when they were made: a plain chat gets
//! [`Capture::Plain`], a stream gets [`Capture::StreamUsage`] when the request asks for
//! `stream_options.include_usage` and [`Capture::StreamNoUsage`] otherwise, and
//! `GET /v1/models` gets [`Capture::Models`]. Other captures (the context overflow) are queued
//! with [`FakeLlamaServer::push`]. Like llama-server's HTTP stack it answers 404 to an
//! absolute-form request target; unlike the OpenAI fakes it does not look at the content type,
//! as llama-server does not.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::stream;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::recorded::{Recorded, RequestLine, RequestLog};
use crate::strict::{Wire, guard_target};

/// One recorded llama-server answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capture {
    /// A chat without streaming: `chat.completion` with `usage` and `timings`.
    Plain,
    /// `stream: true` alone: SSE with no usage, `timings` on the finish chunk.
    StreamNoUsage,
    /// `stream_options.include_usage: true`: SSE ending in a `choices: []` usage chunk.
    StreamUsage,
    /// A prompt past `n_ctx`: status 400, `exceed_context_size_error` (also for streams).
    OverflowError,
    /// `GET /v1/models`: Ollama-style `models` beside OpenAI's `data`, with `meta.n_ctx`.
    Models,
    /// A stream in which the model wrote its tool call as bare JSON in `content`.
    ToolCallAsBareJson,
}

/// The request that produced [`Capture::ToolCallAsBareJson`].
pub const TOOL_CALL_REQUEST: &[u8] =
    include_bytes!("../fixtures/llama-server/tool_call_request.json");

/// The model llama-server named in every capture.
pub const MODEL: &str = "qwen2.5-coder-0.5b";

impl Capture {
    /// The body exactly as llama-server sent it.
    pub fn body(self) -> &'static [u8] {
        match self {
            Capture::Plain => include_bytes!("../fixtures/llama-server/plain.json"),
            Capture::StreamNoUsage => {
                include_bytes!("../fixtures/llama-server/stream_no_usage.sse")
            }
            Capture::StreamUsage => include_bytes!("../fixtures/llama-server/stream_usage.sse"),
            Capture::OverflowError => {
                include_bytes!("../fixtures/llama-server/overflow_error.json")
            }
            Capture::Models => include_bytes!("../fixtures/llama-server/models.json"),
            Capture::ToolCallAsBareJson => {
                include_bytes!("../fixtures/llama-server/tool_call_as_bare_json.sse")
            }
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Capture::OverflowError => 400,
            _ => 200,
        }
    }

    pub fn is_stream(self) -> bool {
        matches!(
            self,
            Capture::StreamNoUsage | Capture::StreamUsage | Capture::ToolCallAsBareJson
        )
    }

    /// The content type llama-server gave it.
    pub fn content_type(self) -> &'static str {
        if self.is_stream() {
            "text/event-stream"
        } else {
            "application/json; charset=utf-8"
        }
    }

    /// The SSE events of a streamed capture, each with its blank-line terminator, in order;
    /// together they are [`Self::body`]. A JSON capture is one piece.
    pub fn frames(self) -> Vec<&'static [u8]> {
        let body = self.body();
        if !self.is_stream() {
            return vec![body];
        }
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(p) = body[start..].windows(2).position(|w| w == b"\n\n") {
            out.push(&body[start..start + p + 2]);
            start += p + 2;
        }
        if start < body.len() {
            out.push(&body[start..]);
        }
        out
    }

    /// The answer llama-server gives to a chat request body.
    pub fn for_chat(request: &Value) -> Capture {
        let stream = request.get("stream").and_then(Value::as_bool) == Some(true);
        let usage = request
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            == Some(true);
        match (stream, usage) {
            (false, _) => Capture::Plain,
            (true, false) => Capture::StreamNoUsage,
            (true, true) => Capture::StreamUsage,
        }
    }
}

#[derive(Default)]
struct Shared {
    queued: Mutex<VecDeque<Capture>>,
    log: RequestLog,
    wire: Arc<Wire>,
}

/// A stand-in for llama-server on an ephemeral loopback port, replaying [`Capture`]s.
pub struct FakeLlamaServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FakeLlamaServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeLlamaServer {
    /// # Panics
    /// When no loopback port can be bound: this is test tooling.
    #[expect(clippy::expect_used)]
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake llama-server");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared::default());
        let routes = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/chat/completions", post(chat))
            .route("/v1/models", get(models))
            .route("/models", get(models))
            .with_state(shared.clone());
        let app = guard_target(routes, shared.wire.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/v1`, the base URL llama-server's clients are given.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Answer the next chat with `capture` instead of the one its request calls for.
    pub fn push(&self, capture: Capture) {
        self.shared.queued.lock().push_back(capture);
    }

    /// Chat requests received, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.log.all()
    }

    /// Every request line received, refused ones included.
    pub fn request_lines(&self) -> Vec<String> {
        self.shared.wire.lines()
    }
}

/// `capture` as the response llama-server sent, streamed event by event when it is SSE.
pub fn response(capture: Capture) -> Response {
    let status = StatusCode::from_u16(capture.status()).unwrap_or(StatusCode::OK);
    let body = if capture.is_stream() {
        let frames = capture
            .frames()
            .into_iter()
            .map(|f| Ok::<Bytes, std::io::Error>(Bytes::from_static(f)));
        Body::from_stream(stream::iter(frames))
    } else {
        Body::from(Bytes::from_static(capture.body()))
    };
    let mut resp = (status, body).into_response();
    if let Ok(v) = capture.content_type().parse() {
        resp.headers_mut().insert("content-type", v);
    }
    resp
}

async fn chat(
    State(shared): State<Arc<Shared>>,
    line: RequestLine,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        // llama-server's words for a body it cannot parse.
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "application/json; charset=utf-8")],
            r#"{"error":{"code":500,"message":"[json.exception.parse_error.101] parse error","type":"server_error"}}"#,
        )
            .into_response();
    };
    shared.log.record(&line, &uri, &headers, &body, &request);
    let capture = shared
        .queued
        .lock()
        .pop_front()
        .unwrap_or_else(|| Capture::for_chat(&request));
    response(capture)
}

async fn models() -> Response {
    response(Capture::Models)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    #[test]
    fn frames_put_the_stream_back_together_byte_for_byte() {
        for c in [
            Capture::StreamUsage,
            Capture::StreamNoUsage,
            Capture::ToolCallAsBareJson,
        ] {
            let frames = c.frames();
            assert!(frames.len() > 3, "{c:?} has its events");
            assert_eq!(frames.concat(), c.body());
            assert_eq!(frames.last().copied(), Some(&b"data: [DONE]\n\n"[..]));
        }
        assert_eq!(Capture::Plain.frames(), [Capture::Plain.body()]);
    }

    #[test]
    fn the_request_picks_the_capture_as_llama_server_did() {
        assert_eq!(Capture::for_chat(&json!({})), Capture::Plain);
        assert_eq!(
            Capture::for_chat(&json!({"stream": true})),
            Capture::StreamNoUsage
        );
        assert_eq!(
            Capture::for_chat(&json!({"stream": true, "stream_options": {"include_usage": true}})),
            Capture::StreamUsage
        );
        assert_eq!(
            Capture::for_chat(&json!({"stream": true, "stream_options": {"include_usage": false}})),
            Capture::StreamNoUsage
        );
    }

    #[test]
    fn captures_are_what_their_readme_says() {
        let plain: Value = serde_json::from_slice(Capture::Plain.body()).unwrap();
        assert_eq!(plain["model"], MODEL);
        assert_eq!(plain["usage"]["prompt_tokens"], 31);
        let overflow: Value = serde_json::from_slice(Capture::OverflowError.body()).unwrap();
        assert_eq!(overflow["error"]["type"], "exceed_context_size_error");
        assert_eq!(Capture::OverflowError.status(), 400);
        let no_usage = String::from_utf8_lossy(Capture::StreamNoUsage.body());
        assert!(!no_usage.contains("\"usage\""));
        let usage = String::from_utf8_lossy(Capture::StreamUsage.body());
        assert!(usage.contains("\"choices\":[],"));
        let req: Value = serde_json::from_slice(TOOL_CALL_REQUEST).unwrap();
        assert_eq!(req["tools"][0]["function"]["name"], "write");
    }
}
