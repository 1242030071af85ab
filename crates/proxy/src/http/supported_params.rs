//! LiteLLM's `GET /utils/supported_openai_params?model=` (any key): the OpenAI parameters a
//! model takes here. A configured model answers for its deployment's provider; otherwise
//! `provider/model`, or a bare name the price list knows. Providers this gateway translates
//! (Anthropic, Gemini, Bedrock) take the parameters their translation maps (the rest are a 400,
//! or dropped under `drop_params`); OpenAI-compatible upstreams are sent every parameter as it
//! came, so they answer OpenAI's full list.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, Uri};
use serde::Deserialize;
use serde_json::json;

use super::keys::{Mgmt, Shared, query, tri};
use super::roles::caller_role;
use crate::error::ProxyError;
use crate::providers::params::supported_params;

/// LiteLLM's list for OpenAI chat models (with `response_format`, `user` and
/// `reasoning_effort`): what an OpenAI-compatible upstream is passed.
pub(super) const OPENAI: [&str; 33] = [
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "max_tokens",
    "max_completion_tokens",
    "modalities",
    "prediction",
    "n",
    "presence_penalty",
    "seed",
    "stop",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "tools",
    "tool_choice",
    "function_call",
    "functions",
    "max_retries",
    "extra_headers",
    "parallel_tool_calls",
    "audio",
    "web_search_options",
    "service_tier",
    "safety_identifier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "store",
    "response_format",
    "user",
    "reasoning_effort",
];

pub(crate) fn routes(state: Arc<Mgmt>) -> Router {
    Router::new()
        .route(
            "/utils/supported_openai_params",
            get(|State(m): Shared, h: HeaderMap, u: Uri| answer(m, h, u)),
        )
        .with_state(state)
}

#[derive(Deserialize, Default)]
struct Ask {
    model: Option<String>,
}

/// The provider and the model as that provider names it.
fn resolve(m: &Mgmt, model: &str) -> Option<(String, String)> {
    let rt = m.app.runtime.load();
    if let Some(g) = rt.router.group(model) {
        let d = g.pick();
        return Some((d.provider.clone(), d.upstream_model.clone()));
    }
    if let Some((provider, rest)) = model.split_once('/')
        && !provider.is_empty()
        && !rest.is_empty()
    {
        return Some((provider.to_string(), rest.to_string()));
    }
    rt.router
        .provider_of_name(model)
        .map(|p| (p, model.to_string()))
}

/// The OpenAI parameters a model of `provider` takes here.
pub(super) fn params_of(provider: &str, model: &str) -> Vec<&'static str> {
    supported_params(provider, model).map_or_else(|| OPENAI.to_vec(), <[&str]>::to_vec)
}

async fn answer(m: Arc<Mgmt>, headers: HeaderMap, uri: Uri) -> Response {
    tri!(caller_role(&m, &headers).await);
    let ask: Ask = tri!(query(&uri));
    let model = ask.model.unwrap_or_default();
    let Some((provider, upstream)) = resolve(&m, model.trim()) else {
        return ProxyError::Custom {
            status: 400,
            kind: "bad_request_error".to_string(),
            message: format!("Could not map model={model}"),
            param: Some("model".to_string()),
            headers: Vec::new(),
        }
        .into_response();
    };
    let list = params_of(&provider, &upstream);
    axum::Json(json!({"supported_openai_params": list})).into_response()
}
