//! Token counts before a call: LiteLLM's `POST /utils/token_counter` (any key) and the count
//! behind `/v1/messages/count_tokens`. Where the model's deployment is a server of one's own
//! that counts (llama.cpp, vLLM) and the caller asks for it (`?call_endpoint=true`; always for
//! `/v1/messages/count_tokens`, as LiteLLM asks the provider there), the server's own
//! tokenizer and chat template count (`count_source: "provider"`). Otherwise, or when that
//! server fails, about four characters a token over what the model would read
//! (`tokenizer_type: "character_estimate"`, `count_source: "local_estimate"`): LiteLLM's
//! local count uses tiktoken or a downloaded Hugging Face tokenizer, which this gateway does
//! not carry, and says which; so does this, and `estimate_reason` says why a server count
//! asked for was not used.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Uri};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::body::RawBody;
use super::estimate::{PROMPT_FIELDS, json_chars, tokens_for_chars};
use super::guard::Pre;
use super::keys::{bad_request, query, tri};
use crate::auth;
use crate::state::App;

/// A count, and how it was made.
pub(crate) struct Counted {
    pub total: u64,
    pub model_used: String,
    pub tokenizer_type: &'static str,
    /// `provider` or `local_estimate` (LiteLLM's `count_source`).
    pub source: &'static str,
    pub original: Option<Value>,
    /// Why a server count that was asked for is not the answer.
    pub note: Option<String>,
}

/// Counts `chat` (an OpenAI chat request's `messages` and `tools`, or a `prompt`) for `model`.
pub(crate) async fn count(app: &App, model: &str, chat: &Value, ask_server: bool) -> Counted {
    let deployment = app
        .runtime
        .load()
        .router
        .group(model)
        .map(|g| g.pick().clone());
    let model_used = deployment
        .as_ref()
        .map_or_else(|| model.to_string(), |d| d.upstream_model.clone());
    let mut note = None;
    if let (true, Some(d)) = (ask_server, &deployment) {
        let mut sent = chat.clone();
        sent["model"] = Value::String(d.upstream_model.clone());
        match d.adapter.count_tokens(&app.client, d, sent) {
            Some(counting) => match counting.await {
                Ok(c) => {
                    return Counted {
                        total: c.tokens,
                        model_used,
                        tokenizer_type: c.tokenizer,
                        source: "provider",
                        original: Some(c.original),
                        note: None,
                    };
                }
                Err(e) => {
                    tracing::warn!(model, error = %e, "the deployment's server did not count tokens; estimating");
                    note = Some(format!(
                        "the deployment's server did not count the tokens ({e}); this is an estimate"
                    ));
                }
            },
            None => {
                note = Some(format!(
                    "{} deployments have no token-counting API here; this is an estimate",
                    d.provider
                ));
            }
        }
    }
    Counted {
        total: estimate(chat),
        model_used,
        tokenizer_type: "character_estimate",
        source: "local_estimate",
        original: None,
        note,
    }
}

/// About four characters a token over what the model reads.
fn estimate(chat: &Value) -> u64 {
    let mut chars = 0;
    for field in PROMPT_FIELDS {
        if let Some(v) = chat.get(field).filter(|v| !v.is_null()) {
            chars += json_chars(&v.to_string());
        }
    }
    if let Some(p) = chat.get("prompt").and_then(Value::as_str) {
        chars += p.chars().count();
    }
    tokens_for_chars(chars)
}

#[derive(Deserialize)]
struct Ask {
    model: String,
    prompt: Option<String>,
    messages: Option<Vec<Value>>,
    contents: Option<Vec<Value>>,
    tools: Option<Vec<Value>>,
    system: Option<Value>,
}

#[derive(Deserialize, Default)]
struct Flags {
    #[serde(default)]
    call_endpoint: Option<String>,
}

/// `POST /utils/token_counter`: any key.
pub(crate) async fn counter(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Pre(pre): Pre,
    uri: Uri,
    body: Result<RawBody, Response>,
) -> Response {
    let bytes = match body {
        Ok(RawBody(b)) => b,
        Err(resp) => return resp,
    };
    if pre.is_none() {
        let rt = app.runtime.load_full();
        if let Err(e) = auth::authenticate(&rt.auth, app.resolver.as_ref(), &headers).await {
            return e.into_response();
        }
    }
    let flags: Flags = tri!(query(&uri));
    let ask_server = match flags.call_endpoint.as_deref() {
        None | Some("false" | "False" | "0") => false,
        Some("true" | "True" | "1") => true,
        Some(other) => {
            return bad_request(
                format!("call_endpoint must be true or false, not {other:?}"),
                "call_endpoint",
            )
            .into_response();
        }
    };
    let ask: Ask = match serde_json::from_slice(&bytes) {
        Ok(a) => a,
        Err(e) => {
            return bad_request(format!("Invalid request body: {e}"), "model").into_response();
        }
    };
    if ask.prompt.is_none() && ask.messages.is_none() && ask.contents.is_none() {
        return bad_request(
            "prompt or messages or contents must be provided",
            "messages",
        )
        .into_response();
    }
    if ask.contents.is_some() {
        // Gemini's `contents` are counted by Google's API in LiteLLM; no Gemini counting here.
        return bad_request(
            "contents (Gemini's format) are not counted here: send messages or prompt",
            "contents",
        )
        .into_response();
    }
    if ask.prompt.is_some() && ask.messages.as_ref().is_some_and(|m| !m.is_empty()) {
        return bad_request(
            "prompt cannot be sent with messages or contents. Set drop_params to count them without the prompt",
            "prompt",
        )
        .into_response();
    }
    let mut chat = Map::new();
    match ask.messages {
        Some(mut messages) if !messages.is_empty() => {
            // Anthropic's top-level `system`, as LiteLLM counts it: a first system message.
            if let Some(system) = ask.system.filter(|s| !s.is_null()) {
                messages.insert(0, json!({"role": "system", "content": system}));
            }
            chat.insert("messages".into(), Value::Array(messages));
            if let Some(tools) = ask.tools {
                chat.insert("tools".into(), Value::Array(tools));
            }
        }
        _ => {
            chat.insert(
                "prompt".into(),
                Value::String(ask.prompt.unwrap_or_default()),
            );
        }
    }
    let c = count(&app, ask.model.trim(), &Value::Object(chat), ask_server).await;
    let mut out = json!({
        "total_tokens": c.total,
        "request_model": ask.model,
        "model_used": c.model_used,
        "tokenizer_type": c.tokenizer_type,
        "count_source": c.source,
        "original_response": c.original,
        "error": false,
        "error_message": Value::Null,
        "status_code": Value::Null,
    });
    if let Some(note) = c.note {
        out["estimate_reason"] = note.into();
    }
    axum::Json(out).into_response()
}
