//! POST /v1/messages: the Anthropic Messages API in front of every configured model. The
//! request becomes an OpenAI chat request and runs the chat pipeline unchanged (keys,
//! budgets, hooks, routing, spend; call_type `anthropic_messages`); its answer, plain or
//! streamed, and its errors are turned back into Anthropic's shapes on the way out.
//! POST /v1/messages/count_tokens answers with an estimate.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures_util::stream::{self, BoxStream, StreamExt};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use idlehands_translate::anthropic_inbound::{self as tr, AnthropicEvent, OpenAiStreamToAnthropic};
use idlehands_wire::SseDecoder;
use serde_json::{Value, json};

use super::body::RawBody;
use super::guard::Pre;
use crate::auth;
use crate::gateway::App;

pub(crate) const CALL_TYPE: &str = "anthropic_messages";

/// The chat pipeline's answers are in memory already when they are not streams; this only
/// bounds a misbehaving one.
const BODY_LIMIT: usize = 64 * 1024 * 1024;

pub(crate) fn error_response(status: u16, message: &str, headers: Option<HeaderMap>) -> Response {
    let body = serde_json::to_vec(&tr::error_body(status, message)).unwrap_or_default();
    let mut resp = Response::new(Body::from(body));
    if let Some(h) = headers {
        *resp.headers_mut() = h;
    }
    resp.headers_mut().remove(header::CONTENT_LENGTH);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    resp
}

/// The message of an OpenAI error envelope, or the body itself.
fn openai_error_message(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}

/// Client-side problems found before the pipeline runs still answer 401 first when the key is
/// wrong, as the pipeline itself would.
async fn refuse(app: &App, headers: &HeaderMap, status: u16, message: &str) -> Response {
    let rt = app.runtime.load_full();
    if let Err(e) = auth::authenticate(&rt.auth, app.resolver.as_ref(), headers).await {
        return error_response(e.status(), &e.to_string(), None);
    }
    error_response(status, message, None)
}

pub(crate) async fn messages(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Pre(pre): Pre,
    body: Result<RawBody, Response>,
) -> Response {
    let bytes = match body {
        Ok(RawBody(b)) => b,
        Err(resp) => return to_anthropic(resp, "").await,
    };
    let req: Value = match serde_json::from_slice(&bytes) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            return refuse(
                &app,
                &headers,
                400,
                "Invalid JSON payload: expected an object",
            )
            .await;
        }
        Err(e) => {
            return refuse(&app, &headers, 400, &format!("Invalid JSON payload: {e}")).await;
        }
    };
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let chat = match tr::to_chat_request(&req) {
        Ok(c) => c,
        Err(e) => return refuse(&app, &headers, e.status(), &e.to_string()).await,
    };
    let chat = Bytes::from(serde_json::to_vec(&chat).unwrap_or_default());
    drop(req);
    let resp = super::chat::handle(app, None, headers, pre, chat, CALL_TYPE).await;
    to_anthropic(resp, &model).await
}

/// The chat pipeline's answer in Anthropic's shape, its headers (cost, call id) kept.
async fn to_anthropic(resp: Response, model: &str) -> Response {
    let (mut parts, body) = resp.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let is_sse = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if parts.status.is_success() && is_sse {
        let events = anthropic_events(body.into_data_stream().boxed(), model.to_string());
        return Response::from_parts(parts, Body::from_stream(events));
    }
    let bytes = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(b) => b,
        Err(e) => {
            let msg = format!("Upstream response could not be translated: {e}");
            return error_response(502, &msg, Some(parts.headers));
        }
    };
    if !parts.status.is_success() {
        let msg = openai_error_message(&bytes);
        return error_response(parts.status.as_u16(), &msg, Some(parts.headers));
    }
    let converted = serde_json::from_slice::<Value>(&bytes)
        .map_err(|e| {
            idlehands_translate::TranslateError::untranslatable(
                format!("invalid JSON ({e})"),
                &String::from_utf8_lossy(&bytes),
            )
        })
        .and_then(|v| tr::from_chat_response(&v, model));
    match converted {
        Ok(v) => {
            let body = serde_json::to_vec(&v).unwrap_or_default();
            Response::from_parts(parts, Body::from(body))
        }
        Err(e) => error_response(e.status(), &e.to_string(), Some(parts.headers)),
    }
}

struct Events {
    body: BoxStream<'static, Result<Bytes, axum::Error>>,
    sse: SseDecoder,
    tr: OpenAiStreamToAnthropic,
    ended: bool,
}

impl Events {
    fn put(out: &mut BytesMut, events: Vec<AnthropicEvent>) {
        for e in events {
            out.extend_from_slice(e.to_sse().as_bytes());
        }
    }

    fn error(&mut self, out: &mut BytesMut, status: u16, message: &str) {
        self.ended = true;
        let data = tr::error_body(status, message);
        out.extend_from_slice(format!("event: error\ndata: {data}\n\n").as_bytes());
    }

    /// One OpenAI SSE event of the chat pipeline's stream.
    fn event(&mut self, out: &mut BytesMut, ev: idlehands_wire::SseEvent) {
        if self.ended {
            return;
        }
        if ev.is_done() {
            self.ended = true;
            Self::put(out, self.tr.finish());
            return;
        }
        let chunk: Value = match serde_json::from_str(&ev.data) {
            Ok(c) => c,
            Err(_) => {
                let msg = format!(
                    "Upstream response could not be translated: invalid JSON chunk: {}",
                    idlehands_translate::error::excerpt(&ev.data)
                );
                return self.error(out, 502, &msg);
            }
        };
        if let Some(err) = chunk.get("error") {
            // The pipeline's final error frame carries the status as `code`.
            let status = err
                .get("code")
                .and_then(|c| {
                    c.as_u64()
                        .or_else(|| c.as_str().and_then(|s| s.parse().ok()))
                })
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(500);
            let message = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("upstream error in stream")
                .to_string();
            return self.error(out, status, &message);
        }
        match self.tr.push(&chunk) {
            Ok(events) => Self::put(out, events),
            Err(e) => self.error(out, e.status(), &e.to_string()),
        }
    }
}

fn anthropic_events(
    body: BoxStream<'static, Result<Bytes, axum::Error>>,
    model: String,
) -> BoxStream<'static, Result<Bytes, std::convert::Infallible>> {
    let state = Events {
        body,
        sse: SseDecoder::new(),
        tr: OpenAiStreamToAnthropic::new(&model),
        ended: false,
    };
    stream::unfold(Some(state), |state| async move {
        let mut s = state?;
        loop {
            let mut out = BytesMut::new();
            match s.body.next().await {
                Some(Ok(bytes)) => {
                    for ev in s.sse.push(&bytes) {
                        s.event(&mut out, ev);
                    }
                }
                Some(Err(e)) => {
                    s.error(&mut out, 500, &format!("stream interrupted: {e}"));
                    return Some((Ok(out.freeze()), None));
                }
                None => {
                    if let Some(ev) = s.sse.finish() {
                        s.event(&mut out, ev);
                    }
                    if !s.ended {
                        s.ended = true;
                        Events::put(&mut out, s.tr.finish());
                    }
                    return (!out.is_empty()).then(|| (Ok(out.freeze()), None));
                }
            }
            if !out.is_empty() {
                return Some((Ok(out.freeze()), Some(s)));
            }
        }
    })
    .boxed()
}

/// POST /v1/messages/count_tokens: about four characters a token over what the model would
/// read (system, messages, tools).
pub(crate) async fn count_tokens(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Pre(pre): Pre,
    body: Result<RawBody, Response>,
) -> Response {
    let bytes = match body {
        Ok(RawBody(b)) => b,
        Err(resp) => return to_anthropic(resp, "").await,
    };
    if pre.is_none() {
        let rt = app.runtime.load_full();
        if let Err(e) = auth::authenticate(&rt.auth, app.resolver.as_ref(), &headers).await {
            return error_response(e.status(), &e.to_string(), None);
        }
    }
    let req: Value = match serde_json::from_slice(&bytes) {
        Ok(v @ Value::Object(_)) => v,
        _ => return error_response(400, "Invalid JSON payload: expected an object", None),
    };
    if !req.get("messages").is_some_and(Value::is_array) {
        return error_response(400, "messages: Field required", None);
    }
    let chars: usize = ["system", "messages", "tools"]
        .iter()
        .filter_map(|k| req.get(*k))
        .map(|v| match v {
            Value::String(s) => s.chars().count(),
            other => other.to_string().chars().count(),
        })
        .sum();
    let body = json!({"input_tokens": super::estimate::tokens_for_chars(chars)});
    let mut resp = Response::new(Body::from(body.to_string()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
