//! POST /v1/responses: the OpenAI Responses API in front of every configured model. The
//! request becomes a chat request and runs the chat pipeline unchanged (keys, budgets, limits,
//! routing, retries, fallbacks, spend; call_type `aresponses`, as LiteLLM names it); the
//! answer, plain or streamed, is turned into a `response` object or the Responses event
//! sequence on the way out. Errors keep OpenAI's envelope, which both APIs share.
//!
//! A model group of `openai/` and `azure/` deployments gets the request as it is
//! (`responses_native`); every other backend is reached through chat completions: tools
//! other than functions are refused with a 400 that says so. Answers are stored unless the
//! request says `store: false` (in the key and spend database when there is one), for
//! `GET`/`DELETE /v1/responses/{id}`, `/input_items` and `previous_response_id`; only the key
//! that created one can read it.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
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
use crate::hooks::{ResponseStore, StoredResponse};
use crate::state::App;

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

fn not_found(id: &str) -> Response {
    ProxyError::Custom {
        status: 404,
        kind: "invalid_request_error".to_string(),
        message: format!("Response with id '{id}' not found."),
        param: None,
        headers: Vec::new(),
    }
    .into_response()
}

fn store_failed(e: &str) -> Response {
    ProxyError::Internal(format!("the response store failed: {e}")).into_response()
}

/// The caller, authenticated here where no gate did it already; and whose stored responses
/// it may see (its key's hash).
async fn caller(
    app: &App,
    headers: &HeaderMap,
    pre: Option<auth::Principal>,
) -> Result<(auth::Principal, String), Response> {
    let principal = match pre {
        Some(p) => p,
        None => {
            let rt = app.runtime.load_full();
            auth::authenticate(&rt.auth, app.resolver.as_ref(), headers)
                .await
                .map_err(IntoResponse::into_response)?
        }
    };
    let owner = principal.key_hash().unwrap_or("anonymous").to_string();
    Ok((principal, owner))
}

/// `input` as a list of items (a string is one user message).
fn input_items(input: Option<&Value>) -> Vec<Value> {
    match input {
        Some(Value::String(s)) => vec![serde_json::json!({"type": "message", "role": "user",
            "content": [{"type": "input_text", "text": s}]})],
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    }
}

/// What is kept of an answer for later turns and reads.
struct Keep {
    store: Arc<dyn ResponseStore>,
    owner: String,
    input: Vec<Value>,
}

impl Keep {
    /// Stores `response` (best effort: the answer has gone to the client already, so a
    /// failure is logged, not returned).
    fn put(self, response: Value) -> impl std::future::Future<Output = ()> + Send + 'static {
        let id = response["id"].as_str().unwrap_or_default().to_string();
        let suffix = id.trim_start_matches("resp_").to_string();
        let input: Vec<Value> = self
            .input
            .into_iter()
            .enumerate()
            .map(|(i, mut item)| {
                if item.get("id").is_none() && item.is_object() {
                    item["id"] = Value::String(format!("msg_{suffix}_{i}"));
                }
                item
            })
            .collect();
        let stored = StoredResponse {
            id,
            owner: self.owner,
            created_at: chrono::Utc::now(),
            input_items: Value::Array(input),
            response,
        };
        let write = self.store.put(stored);
        async move {
            if let Err(e) = write.await {
                tracing::error!(error = %e, "a /v1/responses answer could not be stored");
            }
        }
    }
}

pub(crate) async fn responses(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Pre(pre): Pre,
    RawBody(bytes): RawBody,
) -> Response {
    // A client mistake is reported after the key check, as the pipeline itself would.
    let (pre, owner) = match caller(&app, &headers, pre).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let mut req: Value = match serde_json::from_slice(&bytes) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            return bad_request("Invalid JSON payload: expected an object".into()).into_response();
        }
        Err(e) => return bad_request(format!("Invalid JSON payload: {e}")).into_response(),
    };
    let conversation = match conversation_of(&app, &owner, &req).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let store = req.get("store").and_then(Value::as_bool).unwrap_or(true);
    if passes_through(&app, &pre, &req) {
        return native(app, headers, pre, owner, req, &bytes, conversation, store).await;
    }
    let chat = match chat_of(&req, &conversation) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let chat = Bytes::from(serde_json::to_vec(&chat).unwrap_or_default());
    let keep = store.then(|| Keep {
        store: app.responses.clone(),
        owner,
        input: conversation,
    });
    if let Some(o) = req.as_object_mut() {
        o.remove("input");
    }
    let resp = super::chat::handle(app, None, headers, Some(pre), chat, CALL_TYPE).await;
    to_responses(resp, &req, keep).await
}

/// The request's input after the stored conversation it continues (`previous_response_id`):
/// that conversation's input, then what was answered.
async fn conversation_of(app: &App, owner: &str, req: &Value) -> Result<Vec<Value>, Response> {
    let mut conversation = Vec::new();
    if let Some(prev) = req.get("previous_response_id").and_then(Value::as_str) {
        match app.responses.get(prev, owner).await {
            Ok(Some(stored)) => {
                conversation.extend(input_items(Some(&stored.input_items)));
                conversation.extend(input_items(stored.response.get("output")));
            }
            Ok(None) => return Err(not_found(prev)),
            Err(e) => return Err(store_failed(&e)),
        }
    }
    conversation.extend(input_items(req.get("input")));
    Ok(conversation)
}

/// The chat request for `req` with its whole `conversation` as input.
fn chat_of(req: &Value, conversation: &[Value]) -> Result<Value, ProxyError> {
    let mut chat_req = req.clone();
    chat_req["input"] = Value::Array(conversation.to_vec());
    if let Some(o) = chat_req.as_object_mut() {
        o.remove("previous_response_id");
    }
    if req.get("input").is_none() {
        chat_req.as_object_mut().map(|o| o.remove("input"));
    }
    tr::to_chat_request(&chat_req).map_err(|e| bad_request(e.to_string()))
}

/// `POST /v1/responses/input_tokens` (OpenAI's, which LiteLLM serves): the tokens the
/// request's input comes to (with the stored conversation it continues, `instructions` and
/// tools), counted as `/utils/token_counter?call_endpoint=true` counts: by a llama.cpp or
/// vLLM deployment's server, else estimated. OpenAI's answer, plus how it was counted
/// (`count_source`, `tokenizer_type`).
pub(crate) async fn input_tokens(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Pre(pre): Pre,
    RawBody(bytes): RawBody,
) -> Response {
    let (_, owner) = match caller(&app, &headers, pre).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let req: Value = match serde_json::from_slice(&bytes) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            return bad_request("Invalid JSON payload: expected an object".into()).into_response();
        }
        Err(e) => return bad_request(format!("Invalid JSON payload: {e}")).into_response(),
    };
    let Some(model) = req.get("model").and_then(Value::as_str).map(str::to_string) else {
        return bad_request("model is required to count input tokens".into()).into_response();
    };
    let conversation = match conversation_of(&app, &owner, &req).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let chat = match chat_of(&req, &conversation) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let c = super::token_count::count(&app, &model, &chat, true).await;
    let mut out = serde_json::json!({
        "object": "response.input_tokens",
        "input_tokens": c.total,
        "count_source": c.source,
        "tokenizer_type": c.tokenizer_type,
    });
    if let Some(why) = c.note {
        out["estimate_reason"] = why.into();
    }
    axum::Json(out).into_response()
}

/// Whether the request's model group answers the Responses API itself (see
/// `responses_native`).
fn passes_through(app: &App, pre: &auth::Principal, req: &Value) -> bool {
    let rt = app.runtime.load();
    // A request's `mock_response` is answered by the gateway's mock, never by an upstream.
    if rt.forced_model.is_some() || req.get("mock_response").is_some_and(|v| !v.is_null()) {
        return false;
    }
    let Some(model) = req.get("model").and_then(Value::as_str) else {
        return false;
    };
    let target = pre.alias_target(model).unwrap_or(model);
    rt.router
        .group_for(target, pre.team_id(), pre.is_master())
        .is_some_and(|g| super::responses_native::native_group(&g))
}

/// The request as it goes to a Responses upstream: a stored conversation it continues is
/// sent as `input` (the upstream does not know the gateway's response ids).
#[expect(clippy::too_many_arguments)]
async fn native(
    app: Arc<App>,
    headers: HeaderMap,
    pre: auth::Principal,
    owner: String,
    mut req: Value,
    bytes: &Bytes,
    conversation: Vec<Value>,
    store: bool,
) -> Response {
    let body = if req.get("previous_response_id").is_some() {
        req["input"] = Value::Array(conversation.clone());
        if let Some(o) = req.as_object_mut() {
            o.remove("previous_response_id");
        }
        Bytes::from(serde_json::to_vec(&req).unwrap_or_default())
    } else {
        bytes.clone()
    };
    let keep = store.then(|| Keep {
        store: app.responses.clone(),
        owner,
        input: conversation,
    });
    let keep: Option<Box<dyn FnOnce(Value) + Send>> = keep.map(|k| {
        Box::new(move |v: Value| {
            tokio::spawn(k.put(v));
        }) as Box<dyn FnOnce(Value) + Send>
    });
    super::responses_native::handle(app, headers, pre, body, keep).await
}

/// The chat pipeline's answer as a Responses answer, its headers (cost, call id) kept.
async fn to_responses(resp: Response, req: &Value, keep: Option<Keep>) -> Response {
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
    let ctx = ResponseContext::new(&call_id, req).stored(keep.is_some());
    let model = req.get("model").and_then(Value::as_str).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    let is_sse = super::sse_map::is_event_stream(&parts.headers);
    if is_sse {
        let created = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
        let events = super::sse_map::map_stream(
            body.into_data_stream().boxed(),
            Events {
                tr: ChatStreamToResponses::new(ctx, model, created),
                keep,
            },
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
            if let Some(keep) = keep {
                keep.put(v.clone()).await;
            }
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

/// Chat chunks as Responses events; the finished response is stored when asked.
struct Events {
    tr: ChatStreamToResponses,
    keep: Option<Keep>,
}

fn sse(events: Vec<ResponseEvent>) -> String {
    events.iter().map(ResponseEvent::to_sse).collect()
}

impl super::sse_map::ChunkMap for Events {
    fn chunk(&mut self, chunk: &Value) -> Result<String, (u16, String)> {
        Ok(sse(self.tr.push(chunk)))
    }

    fn done(&mut self) -> String {
        let events = self.tr.finish();
        if let (Some(keep), Some(last)) = (self.keep.take(), events.last()) {
            tokio::spawn(keep.put(last.data["response"].clone()));
        }
        sse(events)
    }

    fn error(&mut self, status: u16, message: &str) -> String {
        sse(self.tr.failed(status, message))
    }
}

/// The stored response `id`, if the caller's key created it; else the answer to give.
async fn load(
    app: &App,
    id: &str,
    headers: &HeaderMap,
    pre: Option<auth::Principal>,
) -> Result<StoredResponse, Response> {
    let (_, owner) = caller(app, headers, pre).await?;
    match app.responses.get(id, &owner).await {
        Ok(Some(stored)) => Ok(stored),
        Ok(None) => Err(not_found(id)),
        Err(e) => Err(store_failed(&e)),
    }
}

/// `GET /v1/responses/{id}`: a stored response, to the key that created it.
pub(crate) async fn get_response(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Pre(pre): Pre,
) -> Response {
    match load(&app, &id, &headers, pre).await {
        Ok(stored) => axum::Json(stored.response).into_response(),
        Err(resp) => resp,
    }
}

/// `POST /v1/responses/{id}/cancel`: only a response made with `background: true` can be
/// cancelled, and every response here was answered in full before it was stored (background
/// mode is not served), so a stored one is a 400 saying so; another id a 404.
pub(crate) async fn cancel_response(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Pre(pre): Pre,
) -> Response {
    match load(&app, &id, &headers, pre).await {
        Ok(_) => ProxyError::Custom {
            status: 400,
            kind: "invalid_request_error".to_string(),
            message: format!(
                "Response with id '{id}' cannot be cancelled: only responses created with background=true can be, and this one has completed."
            ),
            param: None,
            headers: Vec::new(),
        }
        .into_response(),
        Err(resp) => resp,
    }
}

/// `DELETE /v1/responses/{id}`.
pub(crate) async fn delete_response(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Pre(pre): Pre,
) -> Response {
    let owner = match caller(&app, &headers, pre).await {
        Ok((_, owner)) => owner,
        Err(resp) => return resp,
    };
    match app.responses.delete(&id, &owner).await {
        Ok(true) => {
            axum::Json(serde_json::json!({"id": id, "object": "response", "deleted": true}))
                .into_response()
        }
        Ok(false) => not_found(&id),
        Err(e) => store_failed(&e),
    }
}

#[derive(serde::Deserialize)]
pub(crate) struct ItemsQuery {
    order: Option<String>,
}

/// `GET /v1/responses/{id}/input_items`: the conversation's input items, newest first unless
/// `order=asc`.
pub(crate) async fn input_items_of(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Query(q): Query<ItemsQuery>,
    headers: HeaderMap,
    Pre(pre): Pre,
) -> Response {
    let stored = match load(&app, &id, &headers, pre).await {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    let mut items = input_items(Some(&stored.input_items));
    if q.order.as_deref() != Some("asc") {
        items.reverse();
    }
    let id_of = |v: Option<&Value>| v.and_then(|i| i.get("id")).cloned().unwrap_or(Value::Null);
    axum::Json(
        serde_json::json!({"object": "list", "first_id": id_of(items.first()),
        "last_id": id_of(items.last()), "has_more": false, "data": items}),
    )
    .into_response()
}
