//! POST /v1/responses: the OpenAI Responses API in front of every configured model. The
//! request becomes a chat request and runs the chat pipeline unchanged (keys, budgets, limits,
//! routing, retries, fallbacks, spend; call_type `aresponses`, as LiteLLM names it); the
//! answer, plain or streamed, is turned into a `response` object or the Responses event
//! sequence on the way out. Errors keep OpenAI's envelope, which both APIs share.
//!
//! Every backend is reached through chat completions, OpenAI's and Azure's included: tools
//! other than functions, stored responses and `previous_response_id` are refused with a 400
//! that says so.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream::StreamExt;
use http::{HeaderMap, HeaderValue, header};
use idlehands_translate::responses::{
    self as tr, ChatStreamToResponses, ResponseContext, ResponseEvent,
};
use serde_json::Value;

use super::body::RawBody;
use super::guard::Pre;
use crate::auth;
use crate::error::ProxyError;
use crate::gateway::App;

pub(crate) const CALL_TYPE: &str = "aresponses";

/// The chat pipeline's plain answers are in memory already; this only bounds a bad one.
const BODY_LIMIT: usize = 64 * 1024 * 1024;

fn bad_request(message: String) -> ProxyError {
    ProxyError::Custom {
        status: 400,
        kind: "invalid_request_error".to_string(),
        message,
        param: None,
        headers: Vec::new(),
    }
}

pub(crate) async fn responses(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Pre(pre): Pre,
    RawBody(bytes): RawBody,
) -> Response {
    // A client mistake is reported after the key check, as the pipeline itself would.
    let pre = match pre {
        Some(p) => p,
        None => {
            let rt = app.runtime.load_full();
            match auth::authenticate(&rt.auth, app.resolver.as_ref(), &headers).await {
                Ok(p) => p,
                Err(e) => return e.into_response(),
            }
        }
    };
    let req: Value = match serde_json::from_slice(&bytes) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            return bad_request("Invalid JSON payload: expected an object".into()).into_response();
        }
        Err(e) => return bad_request(format!("Invalid JSON payload: {e}")).into_response(),
    };
    let chat = match tr::to_chat_request(&req) {
        Ok(c) => c,
        Err(e) => return bad_request(e.to_string()).into_response(),
    };
    let chat = Bytes::from(serde_json::to_vec(&chat).unwrap_or_default());
    let resp = super::chat::handle(app, None, headers, Some(pre), chat, CALL_TYPE).await;
    to_responses(resp, &req).await
}

/// The chat pipeline's answer as a Responses answer, its headers (cost, call id) kept.
async fn to_responses(resp: Response, req: &Value) -> Response {
    let (mut parts, body) = resp.into_parts();
    if !parts.status.is_success() {
        return Response::from_parts(parts, body);
    }
    let call_id = parts
        .headers
        .get("x-litellm-call-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let ctx = ResponseContext::new(&call_id, req);
    let model = req.get("model").and_then(Value::as_str).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    let is_sse = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if is_sse {
        let created = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
        let events = super::sse_map::map_stream(
            body.into_data_stream().boxed(),
            Events(ChatStreamToResponses::new(ctx, model, created)),
        );
        return Response::from_parts(parts, Body::from_stream(events));
    }
    let converted = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(bytes) => serde_json::from_slice::<Value>(&bytes)
            .map_err(|e| {
                idlehands_translate::TranslateError::untranslatable(
                    format!("invalid JSON ({e})"),
                    &String::from_utf8_lossy(&bytes),
                )
            })
            .and_then(|chat| tr::from_chat_response(&chat, &ctx)),
        Err(e) => Err(idlehands_translate::TranslateError::untranslatable(
            format!("unreadable answer ({e})"),
            "",
        )),
    };
    match converted {
        Ok(v) => {
            parts.headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Response::from_parts(parts, Body::from(v.to_string()))
        }
        Err(e) => {
            let mut resp = ProxyError::Custom {
                status: e.status(),
                kind: "api_error".to_string(),
                message: e.to_string(),
                param: None,
                headers: Vec::new(),
            }
            .into_response();
            for (k, v) in &parts.headers {
                if k.as_str().starts_with("x-litellm-") {
                    resp.headers_mut().insert(k.clone(), v.clone());
                }
            }
            resp
        }
    }
}

/// Chat chunks as Responses events.
struct Events(ChatStreamToResponses);

fn sse(events: Vec<ResponseEvent>) -> String {
    events.iter().map(ResponseEvent::to_sse).collect()
}

impl super::sse_map::ChunkMap for Events {
    fn chunk(&mut self, chunk: &Value) -> Result<String, (u16, String)> {
        Ok(sse(self.0.push(chunk)))
    }

    fn done(&mut self) -> String {
        sse(self.0.finish())
    }

    fn error(&mut self, status: u16, message: &str) -> String {
        sse(self.0.failed(status, message))
    }
}
