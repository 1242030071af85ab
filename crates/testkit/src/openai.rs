//! A fake OpenAI-compatible upstream: `/v1/chat/completions` (plain and SSE), `/v1/models`,
//! `/v1/embeddings`, with scripted replies and faults, recording every request it receives.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::stream;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use crate::recorded::Recorded;
use crate::recorded::{RequestLine, RequestLog};
use crate::reply::{Fault, Reply};
use crate::strict::{Form, Wire, guard};

#[derive(Default)]
struct Shared {
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Reply>,
    log: RequestLog,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Flaky mode (soak tests): every Nth unscripted reply is a 500, every Mth hangs; 0 = off.
    flaky_error_every: AtomicUsize,
    flaky_hang_every: AtomicUsize,
    flaky_count: AtomicUsize,
    /// Every Nth unscripted reply is a 200 whose body is not JSON (an HTML error page from a
    /// proxy in front of the model server); 0 = off.
    junk_every: AtomicUsize,
    junk_count: AtomicUsize,
    /// Every unscripted answer carries this id, as servers that reuse ids do (llama.cpp's
    /// fixed ids, Ollama's `chatcmpl-<n>` counter restarting with the server).
    fixed_id: Mutex<Option<String>>,
    /// The bearer key OpenAI's paths demand once set ([`FakeOpenAi::require_key`]); local
    /// servers started without `--api-key` (llama.cpp, vLLM, Ollama) demand none.
    required_key: Mutex<Option<String>>,
    /// Streamed chat completions are paced ([`FakeOpenAi::set_paced`]): `bench/streams.sh`.
    paced: Mutex<Option<crate::paced::Paced>>,
    wire: Arc<Wire>,
}

pub struct FakeOpenAi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct InFlight(Arc<Shared>);

impl InFlight {
    fn enter(shared: &Arc<Shared>) -> Self {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(shared.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl FakeOpenAi {
    /// Start on an ephemeral loopback port.
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0").await
    }

    /// Start on a given address (the benchmark uses a fixed port).
    ///
    /// # Panics
    /// When the address cannot be bound: this is test and benchmark tooling.
    pub async fn start_on(addr: &str) -> Self {
        Self::start_as(addr, Form::Origin).await
    }

    /// Start as a forward HTTP proxy that answers every request itself: it takes only
    /// absolute-form targets (`POST http://any.host/v1/chat/completions`), as a proxy does,
    /// and answers an origin-form one 400. For tests of clients told to use `HTTP_PROXY`.
    pub async fn start_forward_proxy() -> Self {
        Self::start_as("127.0.0.1:0", Form::Absolute).await
    }

    #[expect(clippy::expect_used)]
    async fn start_as(addr: &str, form: Form) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind fake upstream");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared::default());
        let app = router(shared.clone(), form);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/v1`, what an OpenAI client takes as its base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// A gateway `model_list` entry (YAML, two-space list indent) named `name`, served by this
    /// fake as `openai/<name>-model` at 1e-6 USD per input token and 2e-6 per output token.
    pub fn priced_entry(&self, name: &str) -> String {
        format!(
            "  - model_name: {name}
    litellm_params:
      model: openai/{name}-model
      api_base: {}
      api_key: sk-upstream
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000002
",
            self.base_url()
        )
    }

    /// `http://127.0.0.1:PORT`, without the `/v1`.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queue a reply; queued replies are used in order, then the default.
    pub fn push(&self, reply: Reply) {
        self.shared.script.lock().push_back(reply);
    }

    pub fn set_default(&self, reply: Reply) {
        *self.shared.default.lock() = reply;
    }

    /// Stop keeping request bodies (the benchmark would otherwise grow without bound).
    pub fn set_recording(&self, on: bool) {
        self.shared.log.set_recording(on);
        self.shared.wire.set_recording(on);
    }

    /// Every request line received (`POST /v1/chat/completions HTTP/1.1`), refused ones
    /// included: an absolute-form target is answered 404, as llama-server does.
    pub fn request_lines(&self) -> Vec<String> {
        self.shared.wire.lines()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.log.all()
    }

    pub fn last_request(&self) -> Option<Recorded> {
        self.shared.log.last()
    }

    /// Requests answered or begun, including faults.
    pub fn served(&self) -> usize {
        self.shared.log.served()
    }

    /// Requests whose handler or response body is still alive.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// From now on refuse OpenAI's paths without `Authorization: Bearer {key}`, with OpenAI's
    /// 401 (`invalid_api_key`). Azure's deployment paths always demand a key and `api-version`.
    pub fn require_key(&self, key: &str) {
        *self.shared.required_key.lock() = Some(key.to_string());
    }

    /// Every answer not scripted with its own id carries `id` (`None`: unique ids, as OpenAI).
    pub fn set_fixed_id(&self, id: Option<&str>) {
        *self.shared.fixed_id.lock() = id.map(str::to_string);
    }

    /// Flaky mode for soak runs: of the replies not scripted with [`Self::push`], every
    /// `error_every`-th is a 500 and every `hang_every`-th never answers (0 turns either off).
    /// Every `n`th unscripted answer is a 200 with a non-JSON body; 0 turns it off.
    pub fn set_junk_every(&self, n: usize) {
        self.shared.junk_every.store(n, Ordering::SeqCst);
    }

    /// Streams every streamed chat completion as a paced one (see [`crate::paced`]) instead of
    /// the scripted reply; `None` turns it off.
    pub fn set_paced(&self, paced: Option<crate::paced::Paced>) {
        *self.shared.paced.lock() = paced;
    }

    pub fn set_flaky(&self, error_every: usize, hang_every: usize) {
        self.shared
            .flaky_error_every
            .store(error_every, Ordering::SeqCst);
        self.shared
            .flaky_hang_every
            .store(hang_every, Ordering::SeqCst);
    }
}

fn router(shared: Arc<Shared>, form: Form) -> Router {
    let wire = shared.wire.clone();
    let azure = Router::new()
        .route(
            "/openai/deployments/{deployment}/chat/completions",
            post(chat),
        )
        .route(
            "/openai/deployments/{deployment}/embeddings",
            post(embeddings),
        )
        .route_layer(axum::middleware::from_fn(azure_guard))
        .with_state(shared.clone());
    let keyed = shared.clone();
    let routes = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/rerank", post(other_json))
        .route("/v1/images/generations", post(other_json))
        .route("/v1/moderations", post(other_json))
        .route("/v1/responses", post(responses))
        .route("/v1/audio/transcriptions", post(transcriptions))
        .route("/v1/audio/speech", post(speech))
        .route(
            "/openai/deployments/{deployment}/audio/transcriptions",
            post(transcriptions),
        )
        .route(
            "/openai/deployments/{deployment}/audio/speech",
            post(speech),
        )
        // Azure OpenAI's Responses API (`?api-version=`).
        .route("/openai/responses", post(responses))
        .route("/completions", post(completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/embeddings", post(embeddings))
        .route("/v1/models", get(models))
        .route("/models", get(models))
        .route_layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                let keyed = keyed.clone();
                async move { openai_guard(&keyed, req, next).await }
            },
        ))
        .with_state(shared)
        // Azure OpenAI: the same wire format at deployment URLs, with its own auth rules.
        .merge(azure);
    guard(routes, wire, form, |status, message| {
        error_response(status, message, None)
    })
}

fn next_reply(shared: &Shared) -> Reply {
    if let Some(r) = shared.script.lock().pop_front() {
        return r;
    }
    let junk = shared.junk_every.load(Ordering::Relaxed);
    if junk > 0 && (shared.junk_count.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(junk) {
        return Reply::fault(Fault::Raw {
            status: 200,
            body: "<html><body><h1>502 Bad Gateway</h1></body></html>".to_string(),
        });
    }
    let errors = shared.flaky_error_every.load(Ordering::Relaxed);
    let hangs = shared.flaky_hang_every.load(Ordering::Relaxed);
    if errors > 0 || hangs > 0 {
        let n = shared.flaky_count.fetch_add(1, Ordering::Relaxed) + 1;
        if hangs > 0 && n.is_multiple_of(hangs) {
            return Reply::fault(Fault::Hang);
        }
        if errors > 0 && n.is_multiple_of(errors) {
            return Reply::error(500, "flaky upstream");
        }
    }
    shared.default.lock().clone()
}

/// OpenAI's key check, when [`FakeOpenAi::require_key`] set one.
async fn openai_guard(shared: &Shared, req: Request, next: Next) -> Response {
    let Some(key) = shared.required_key.lock().clone() else {
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if g == key => next.run(req).await,
        Some(_) => auth_error("Incorrect API key provided."),
        None => auth_error(
            "You didn't provide an API key. You need to provide your API key in an \
             Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        ),
    }
}

/// OpenAI's 401: `invalid_request_error` with code `invalid_api_key`.
fn auth_error(message: &str) -> Response {
    let body = json!({"error": {"message": message, "type": "invalid_request_error",
                                "param": null, "code": "invalid_api_key"}});
    (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
}

/// Azure OpenAI's checks: a deployment URL without `api-version` is 404 "Resource not
/// found"; a call without `api-key` (or an Entra ID bearer token) is 401.
async fn azure_guard(req: Request, next: Next) -> Response {
    let versioned = req.uri().query().is_some_and(|q| {
        q.split('&').any(|p| {
            p.strip_prefix("api-version=")
                .is_some_and(|v| !v.is_empty())
        })
    });
    if !versioned {
        return azure_error(404, "Resource not found");
    }
    let h = req.headers();
    let keyed = h.get("api-key").is_some_and(|v| !v.is_empty())
        || h.get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| !t.is_empty());
    if !keyed {
        return azure_error(
            401,
            "Access denied due to invalid subscription key or wrong API endpoint.",
        );
    }
    next.run(req).await
}

/// Azure's error envelope: `{"error": {"code": "<status>", "message": ...}}`.
fn azure_error(status: u16, message: &str) -> Response {
    let body = json!({"error": {"code": status.to_string(), "message": message}});
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(body)).into_response()
}

fn error_response(status: u16, message: &str, retry_after: Option<u64>) -> Response {
    let kind = match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        404 => "not_found_error",
        415 => "invalid_request_error",
        429 => "rate_limit_exceeded",
        _ => "server_error",
    };
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": null}});
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, axum::Json(body)).into_response();
    if let Some(Ok(v)) = retry_after.map(|s| s.to_string().parse()) {
        resp.headers_mut().insert("retry-after", v);
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
    let guard = InFlight::enter(&shared);
    let raw = body;
    let body: Value = match serde_json::from_slice(&raw) {
        Ok(v) => v,
        Err(e) => return error_response(400, &format!("invalid JSON: {e}"), None),
    };
    // Taken at arrival: concurrent requests must not share a response id.
    let n = shared.log.record(&line, &uri, &headers, &raw, &body);
    let reply = next_reply(&shared);
    if let Some(resp) = answer_fault(&reply).await {
        return resp;
    }
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("fake-model")
        .to_string();
    let id = reply
        .id
        .clone()
        .or_else(|| shared.fixed_id.lock().clone())
        .unwrap_or_else(|| format!("chatcmpl-fake-{n}"));
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        let include_usage = body
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if let Some(pace) = *shared.paced.lock() {
            return paced_response(guard, pace, id, model, include_usage);
        }
        return stream_response(guard, &id, &model, reply, include_usage);
    }
    drop(guard);
    let mut message = json!({"role": "assistant", "content": if reply.text.is_empty() && !reply.tool_calls.is_empty() { Value::Null } else { Value::String(reply.text.clone()) }});
    if let Some(r) = &reply.reasoning {
        message["reasoning_content"] = json!(r);
    }
    if !reply.tool_calls.is_empty() {
        message["tool_calls"] = reply
            .tool_calls
            .iter()
            .map(|t| json!({"id": t.id, "type": "function", "function": {"name": t.name, "arguments": t.arguments}}))
            .collect();
    }
    let out = json!({
        "id": id,
        "object": "chat.completion",
        "created": 1_700_000_000u64,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason()}],
        "usage": reply.usage.openai_json(),
    });
    axum::Json(out).into_response()
}

/// The scripted fault's answer, if the reply has one that replaces the whole answer (a hang
/// never answers).
/// Before the first byte, as the other fakes' `early_fault`: the scripted hold and delay, then
/// the faults that answer at once.
async fn answer_fault(reply: &Reply) -> Option<Response> {
    reply.wait_to_answer().await;
    match &reply.fault {
        Some(Fault::Status {
            status,
            message,
            retry_after,
        }) => Some(error_response(*status, message, *retry_after)),
        Some(Fault::Raw { status, body }) => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::OK);
            Some((status, [("content-type", "application/json")], body.clone()).into_response())
        }
        Some(Fault::Hang) => std::future::pending().await,
        _ => None,
    }
}

/// `POST /v1/completions`, the legacy text completions API: `text_completion` objects with
/// `choices[].text`; streamed, a usage chunk (`choices: []`) only when asked for.
async fn completions(
    State(shared): State<Arc<Shared>>,
    line: RequestLine,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let guard = InFlight::enter(&shared);
    let raw = body;
    let body: Value = match serde_json::from_slice(&raw) {
        Ok(v) => v,
        Err(e) => return error_response(400, &format!("invalid JSON: {e}"), None),
    };
    if body.get("prompt").is_none() {
        return error_response(400, "you must provide a prompt parameter", None);
    }
    let n = shared.log.record(&line, &uri, &headers, &raw, &body);
    let reply = next_reply(&shared);
    if let Some(resp) = answer_fault(&reply).await {
        return resp;
    }
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("fake-model");
    let id = reply.id.clone().unwrap_or_else(|| format!("cmpl-fake-{n}"));
    let object = |choices: Value| {
        json!({"id": id, "object": "text_completion", "created": 1_700_000_000u64,
               "model": model, "choices": choices})
    };
    let choice = |text: &str, finish: Option<&str>| json!([{"index": 0, "text": text, "logprobs": null, "finish_reason": finish}]);
    if body.get("stream").and_then(Value::as_bool) != Some(true) {
        drop(guard);
        let mut out = object(choice(&reply.text, Some("stop")));
        out["usage"] = reply.usage.openai_json();
        return axum::Json(out).into_response();
    }
    let mut frames: Vec<Value> = reply
        .text_pieces()
        .iter()
        .map(|p| object(choice(p, None)))
        .collect();
    frames.push(object(choice("", Some("stop"))));
    if body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true)
    {
        let mut last = object(json!([]));
        last["usage"] = reply.usage.openai_json();
        frames.push(last);
    }
    let mut out: Vec<Bytes> = frames
        .iter()
        .map(|f| crate::frame::data(&f.to_string()))
        .collect();
    out.push(crate::frame::data("[DONE]"));
    let out = out.concat();
    drop(guard);
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from(out))
        .unwrap_or_else(|_| error_response(500, "response build failed", None))
}

/// `POST /v1/responses`: OpenAI's Responses API, refusing what the real API refuses.
async fn responses(
    State(shared): State<Arc<Shared>>,
    line: RequestLine,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let raw = body;
    let body: Value = match serde_json::from_slice(&raw) {
        Ok(v) => v,
        Err(e) => return error_response(400, &format!("invalid JSON: {e}"), None),
    };
    let n = shared.log.record(&line, &uri, &headers, &raw, &body);
    if let Some((message, param)) = crate::openai_responses::refusal(&body) {
        let body = json!({"error": {"message": message, "type": "invalid_request_error",
                                    "param": param, "code": null}});
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    }
    let reply = next_reply(&shared);
    if let Some(resp) = answer_fault(&reply).await {
        return resp;
    }
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        let frames = crate::openai_responses::stream_frames(n, &body, &reply);
        return crate::anthropic::stream_frames(frames, &reply);
    }
    axum::Json(crate::openai_responses::response_object(
        n,
        &body,
        &reply,
        "completed",
    ))
    .into_response()
}

async fn transcriptions(
    State(shared): State<Arc<Shared>>,
    line: RequestLine,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    // Recorded with the form's text fields as the body (the file is left out).
    let mut fields = serde_json::Map::new();
    if let Some(b) = crate::multipart::boundary(&ct)
        && let Ok(parts) = crate::multipart::fields(&body, &b)
    {
        for p in parts.iter().filter(|p| p.filename.is_none()) {
            if let Some(t) = p.text() {
                fields.insert(p.name.clone(), Value::String(t.to_string()));
            }
        }
    }
    shared
        .log
        .record(&line, &uri, &headers, &body, &Value::Object(fields));
    let reply = next_reply(&shared);
    if let Some(resp) = answer_fault(&reply).await {
        return resp;
    }
    match crate::openai_audio::transcription(&ct, &body, &reply) {
        Ok((kind, text)) => ([("content-type", kind)], text).into_response(),
        Err(message) => error_response(400, &message, None),
    }
}

async fn speech(
    State(shared): State<Arc<Shared>>,
    line: RequestLine,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let raw = body;
    let body: Value = match serde_json::from_slice(&raw) {
        Ok(v) => v,
        Err(e) => return error_response(400, &format!("invalid JSON: {e}"), None),
    };
    shared.log.record(&line, &uri, &headers, &raw, &body);
    let reply = next_reply(&shared);
    if let Some(resp) = answer_fault(&reply).await {
        return resp;
    }
    match crate::openai_audio::speech(&body) {
        Ok(frames) => crate::anthropic::stream_frames_as(
            frames,
            reply.fault.as_ref(),
            reply.chunk_delay,
            crate::anthropic::Sse::Not("audio/mpeg"),
        ),
        Err(message) => error_response(400, &message, None),
    }
}

/// `/v1/rerank` (llama.cpp's and vLLM's Cohere-style answer, with usage), `/v1/images/generations`
/// and `/v1/moderations` (OpenAI's shapes, no usage), each answering the scripted reply's fault
/// if it has one.
async fn other_json(
    State(shared): State<Arc<Shared>>,
    line: RequestLine,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let raw = body;
    let body: Value = match serde_json::from_slice(&raw) {
        Ok(v) => v,
        Err(e) => return error_response(400, &format!("invalid JSON: {e}"), None),
    };
    let n = shared.log.record(&line, &uri, &headers, &raw, &body);
    let reply = next_reply(&shared);
    if let Some(resp) = answer_fault(&reply).await {
        return resp;
    }
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("fake-model");
    let out = match uri.path() {
        "/v1/rerank" => {
            let docs = body
                .get("documents")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let results: Vec<Value> = (0..docs)
                .map(|i| json!({"index": i, "relevance_score": 1.0 / (i as f64 + 1.0)}))
                .collect();
            json!({"id": format!("rerank-fake-{n}"), "model": model, "object": "list",
                   "results": results, "usage": {"prompt_tokens": reply.usage.prompt_tokens,
                                                 "total_tokens": reply.usage.prompt_tokens}})
        }
        "/v1/images/generations" => {
            json!({"created": 1_700_000_000u64, "data": [{"url": "https://example.invalid/fake.png"}]})
        }
        _ => json!({"id": format!("modr-fake-{n}"), "model": model,
                    "results": [{"flagged": false, "categories": {}, "category_scores": {}}]}),
    };
    axum::Json(out).into_response()
}

fn chunk(id: &str, model: &str, delta: Value, finish: Option<&str>) -> Value {
    json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": 1_700_000_000u64,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    })
}

/// The chunks OpenAI sends for this reply, in order, each a complete `data:` frame.
fn stream_frames(id: &str, model: &str, reply: &Reply, include_usage: bool) -> Vec<Bytes> {
    let mut frames: Vec<Value> = vec![chunk(
        id,
        model,
        json!({"role": "assistant", "content": ""}),
        None,
    )];
    if let Some(r) = &reply.reasoning {
        frames.push(chunk(id, model, json!({"reasoning_content": r}), None));
    }
    for piece in reply.text_pieces() {
        frames.push(chunk(id, model, json!({"content": piece}), None));
    }
    for (i, t) in reply.tool_calls.iter().enumerate() {
        frames.push(chunk(
            id,
            model,
            json!({"tool_calls": [{"index": i, "id": t.id, "type": "function", "function": {"name": t.name, "arguments": ""}}]}),
            None,
        ));
        let mid = t.arguments.len() / 2;
        let mid = (0..=mid)
            .rev()
            .find(|m| t.arguments.is_char_boundary(*m))
            .unwrap_or(0);
        for part in [&t.arguments[..mid], &t.arguments[mid..]] {
            frames.push(chunk(
                id,
                model,
                json!({"tool_calls": [{"index": i, "function": {"arguments": part}}]}),
                None,
            ));
        }
    }
    frames.push(chunk(id, model, json!({}), Some(reply.finish_reason())));
    if include_usage {
        frames.push(json!({
            "id": id, "object": "chat.completion.chunk", "created": 1_700_000_000u64,
            "model": model, "choices": [], "usage": reply.usage.openai_json(),
        }));
    }
    let mut out: Vec<Bytes> = frames
        .iter()
        .map(|f| crate::frame::data(&f.to_string()))
        .collect();
    out.push(crate::frame::data("[DONE]"));
    out
}

fn stream_response(
    guard: InFlight,
    id: &str,
    model: &str,
    reply: Reply,
    include_usage: bool,
) -> Response {
    let mut frames = stream_frames(id, model, &reply, include_usage);
    reply.error_mid_stream(&mut frames, |kind, message| {
        let e = json!({"error": {"message": message, "type": kind, "param": null, "code": null}});
        crate::frame::data(&e.to_string())
    });
    let mut reset = false;
    let mut stall = false;
    // Faults count frames as the reply built them; the layout is applied after.
    match reply.fault {
        Some(Fault::ResetMidStream { after }) => {
            frames.truncate(after);
            reset = true;
        }
        Some(Fault::TruncateStream { after }) => frames.truncate(after),
        Some(Fault::StallMidStream { after }) => {
            frames.truncate(after);
            stall = true;
        }
        _ => {}
    }
    let frames = crate::frame::shape(frames, reply.framing);
    let delay = reply.chunk_delay;
    let items: VecDeque<Bytes> = frames.into();
    let s = stream::unfold(
        (items, Some(guard), reset),
        move |(mut items, guard, reset)| async move {
            guard.as_ref()?;
            match items.pop_front() {
                Some(b) => {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    Some((Ok::<Bytes, std::io::Error>(b), (items, guard, reset)))
                }
                None if reset => Some((
                    Err(std::io::Error::other("scripted reset")),
                    (items, None, reset),
                )),
                None if stall => std::future::pending().await,
                None => None,
            }
        },
    );
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(s))
        .unwrap_or_else(|_| error_response(500, "response build failed", None))
}

fn paced_response(
    guard: InFlight,
    pace: crate::paced::Paced,
    id: String,
    model: String,
    include_usage: bool,
) -> Response {
    use futures_util::StreamExt;
    let s = crate::paced::body(pace, id, model, include_usage).map(move |b| {
        // In flight until the stream ends.
        let _held = &guard;
        Ok::<Bytes, std::io::Error>(b)
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(s))
        .unwrap_or_else(|_| error_response(500, "response build failed", None))
}

async fn embeddings(
    State(shared): State<Arc<Shared>>,
    line: RequestLine,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let raw = body;
    let body: Value = match serde_json::from_slice(&raw) {
        Ok(v) => v,
        Err(e) => return error_response(400, &format!("invalid JSON: {e}"), None),
    };
    shared.log.record(&line, &uri, &headers, &raw, &body);
    let reply = next_reply(&shared);
    if let Some(Fault::Status {
        status,
        message,
        retry_after,
    }) = &reply.fault
    {
        return error_response(*status, message, *retry_after);
    }
    let inputs = match body.get("input") {
        Some(Value::Array(a)) => a.len(),
        _ => 1,
    };
    let data: Vec<Value> = (0..inputs)
        .map(|i| json!({"object": "embedding", "index": i, "embedding": [0.1, -0.2, 0.3]}))
        .collect();
    axum::Json(json!({
        "object": "list",
        "data": data,
        "model": body.get("model").cloned().unwrap_or(Value::Null),
        "usage": {"prompt_tokens": reply.usage.prompt_tokens, "total_tokens": reply.usage.prompt_tokens},
    }))
    .into_response()
}

async fn models() -> Response {
    axum::Json(json!({
        "object": "list",
        "data": [{"id": "fake-model", "object": "model", "created": 1_700_000_000u64, "owned_by": "testkit"}],
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_frames_end_with_done_and_carry_usage_when_asked() {
        let reply = Reply::text("abcdefghij").with_chunk_chars(4);
        let frames = stream_frames("id", "m", &reply, true);
        let text: String = frames
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        assert!(text.ends_with("data: [DONE]\n\n"));
        assert!(text.contains("\"usage\":{"));
        assert!(text.contains("\"content\":\"abcd\""));
        assert!(text.contains("\"finish_reason\":\"stop\""));
        let without = stream_frames("id", "m", &reply, false);
        assert_eq!(without.len(), frames.len() - 1);
    }

    #[test]
    fn tool_call_arguments_are_split_but_complete() {
        let reply = Reply::tool_call("call_1", "read", json!({"path": "a.txt"}));
        let frames = stream_frames("id", "m", &reply, false);
        let mut args = String::new();
        let payloads = crate::frame::payloads(&frames.concat());
        assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
        for data in &payloads[..payloads.len() - 1] {
            let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
            if let Some(a) = v.pointer("/choices/0/delta/tool_calls/0/function/arguments") {
                args.push_str(a.as_str().unwrap_or(""));
            }
        }
        assert_eq!(args, r#"{"path":"a.txt"}"#);
    }
}
