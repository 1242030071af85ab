//! POST /v1/messages: the Anthropic Messages API in front of every configured model. The
//! request becomes an OpenAI chat request and runs the chat pipeline unchanged (keys,
//! budgets, hooks, routing, spend; call_type `anthropic_messages`); its answer, plain or
//! streamed, and its errors are turned back into Anthropic's shapes on the way out.
//! POST /v1/messages/count_tokens counts on the deployment's server where it can (llama.cpp,
//! vLLM; see `token_count`), else estimates.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use futures_util::stream::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use idlehands_translate::anthropic_inbound::{self as tr, AnthropicEvent, OpenAiStreamToAnthropic};
use serde_json::{Value, json};

use super::body::RawBody;
use super::guard::Pre;
use crate::auth;
use crate::state::App;

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
    let (model, chat) = match model_and_chat(&req) {
        Ok(c) => c,
        Err(e) => return refuse(&app, &headers, e.status(), &e.to_string()).await,
    };
    let chat = Bytes::from(serde_json::to_vec(&chat).unwrap_or_default());
    drop(req);
    let resp = super::chat::handle(app, None, headers, pre, chat, CALL_TYPE).await;
    to_anthropic(resp, &model).await
}

/// The request's model and the chat request it becomes.
fn model_and_chat(req: &Value) -> Result<(String, Value), idlehands_translate::TranslateError> {
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Ok((model, tr::to_chat_request(req)?))
}

/// The chat pipeline's answer in Anthropic's shape, its headers (cost, call id) kept.
async fn to_anthropic(resp: Response, model: &str) -> Response {
    let (mut parts, body) = resp.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let is_sse = super::sse_map::is_event_stream(&parts.headers);
    if parts.status.is_success() && is_sse {
        let events = super::sse_map::map_stream(
            body.into_data_stream().boxed(),
            Anthropic(OpenAiStreamToAnthropic::new(model)),
        );
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

/// Chat chunks as Anthropic's events.
struct Anthropic(OpenAiStreamToAnthropic);

impl super::sse_map::ChunkMap for Anthropic {
    fn chunk(&mut self, chunk: &Value) -> Result<String, (u16, String)> {
        self.0
            .push(chunk)
            .map(|events| events.iter().map(AnthropicEvent::to_sse).collect())
            .map_err(|e| (e.status(), e.to_string()))
    }

    fn done(&mut self) -> String {
        self.0.finish().iter().map(AnthropicEvent::to_sse).collect()
    }

    fn error(&mut self, status: u16, message: &str) -> String {
        format!(
            "event: error\ndata: {}\n\n",
            tr::error_body(status, message)
        )
    }
}

/// POST /v1/messages/count_tokens: the tokens of the chat request `/v1/messages` would send
/// (system, messages, tools), counted by the deployment's server or estimated.
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
    // Counted as the model will read it: the chat request /v1/messages would send.
    let (model, chat) = match model_and_chat(&req) {
        Ok(c) => c,
        Err(e) => return error_response(e.status(), &e.to_string(), None),
    };
    let counted = super::token_count::count(&app, &model, &chat, true).await;
    let body = json!({"input_tokens": counted.total});
    let mut resp = Response::new(Body::from(body.to_string()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
