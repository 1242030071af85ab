//! One module per wire family. A [`Deployment`] (built here from a config entry, grouped by
//! the router) holds an `Arc<dyn Provider>`; the HTTP layer
//! speaks OpenAI chat-completions to it and gets OpenAI-format bytes back (a JSON body, or SSE
//! frames), so usage, cost and headers are handled once, above all providers.
//!
//! SEAM (translations): an Anthropic, Gemini or Bedrock adapter is a new module implementing
//! [`Provider`] that translates the OpenAI request and emits OpenAI-format chunks, plus one arm
//! in [`adapter_for`].

mod anthropic;
mod azure;
mod bedrock;
mod deployment;
mod direct;
mod gemini;
mod idle;
mod mock;
pub(crate) mod openai_compat;
pub mod params;
pub mod slots;
mod tokenize;
mod upstream;

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use http::HeaderMap;
use serde_json::Value;

use crate::config::{LitellmParams, openai_compatible_base};
use crate::error::ProxyError;

pub use anthropic::Anthropic;
pub use bedrock::Bedrock;
// Their paths from before provider env defaults were read with the config.
pub use deployment::{Deployment, deployment_id, upstream_model};
pub use gemini::Gemini;
pub use mock::MockProvider;
pub use openai_compat::OpenAiCompatible;
pub(crate) use openai_compat::upstream_error;

/// Which OpenAI endpoint a [`ChatCall`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Endpoint {
    /// `/chat/completions`
    #[default]
    Chat,
    /// `/completions` (legacy text completions, fill-in-the-middle with `suffix`): only
    /// adapters whose [`Provider::text_completions`] is true take these.
    TextCompletion,
}

/// A chat request, already in OpenAI form: `model` is the upstream model and, for streams,
/// `stream_options.include_usage` is on. The deployment's call parameters are filled in.
pub struct ChatCall {
    pub body: Bytes,
    pub stream: bool,
    pub endpoint: Endpoint,
    /// The request's own `mock_response` (LiteLLM's testing aid): answered by the mock.
    pub mock_response: Option<String>,
    /// `extra_headers` of the deployment and the request, sent with the upstream request.
    pub extra_headers: HeaderMap,
    /// The deployment's `extra_body`, for adapters that build their own body: its fields go
    /// into that body where it has none. (OpenAI-compatible bodies already carry them.)
    pub extra_body: Option<Arc<serde_json::Map<String, serde_json::Value>>>,
}

impl ChatCall {
    /// A call with nothing added by a deployment or request (health checks).
    pub fn plain(body: Bytes, stream: bool) -> Self {
        ChatCall {
            body,
            stream,
            endpoint: Endpoint::Chat,
            mock_response: None,
            extra_headers: HeaderMap::new(),
            extra_body: None,
        }
    }
}

/// The parts of a response body the gateway reads: its id, the model that answered (pricing)
/// and usage.
#[derive(Debug, serde::Deserialize, Default)]
pub struct Peek {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub usage: Option<idlehands_wire::Usage>,
}

pub enum ChatReply {
    /// A complete `chat.completion` JSON body, with what the gateway reads of it when the
    /// provider has already read that (else the handler reads the body).
    Full {
        body: Bytes,
        headers: HeaderMap,
        peek: Option<Peek>,
    },
    /// `data: {chunk}\n\n` frames ending with `data: [DONE]\n\n`, usage chunk included.
    /// A mid-stream failure is an `Err` item; the stream ends after it.
    Stream {
        frames: BoxStream<'static, Result<Bytes, ProxyError>>,
        headers: HeaderMap,
    },
}

/// OpenAI-format JSON endpoints forwarded as they are to OpenAI-compatible deployments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonRoute {
    /// `/rerank` (Cohere/Jina format, as llama.cpp, vLLM and Infinity serve it).
    Rerank,
    /// `/images/generations`
    Images,
    /// `/moderations`
    Moderations,
}

impl JsonRoute {
    /// The path after the deployment's base URL.
    pub fn path(self) -> &'static str {
        match self {
            JsonRoute::Rerank => "/rerank",
            JsonRoute::Images => "/images/generations",
            JsonRoute::Moderations => "/moderations",
        }
    }
}

/// Tokens counted by a deployment's own server.
#[derive(Debug)]
pub struct ServerCount {
    pub tokens: u64,
    /// `llama_cpp_api` or `vllm_api` (LiteLLM names a provider's count `anthropic_api`).
    pub tokenizer: &'static str,
    /// The server's answer (a token list left out: a long conversation's is long).
    pub original: Value,
}

pub struct EmbeddingReply {
    pub body: Bytes,
    pub headers: HeaderMap,
}

pub trait Provider: Send + Sync {
    fn chat(
        &self,
        client: &reqwest::Client,
        deployment: &Arc<Deployment>,
        call: ChatCall,
    ) -> BoxFuture<'static, Result<ChatReply, ProxyError>>;

    fn embeddings(
        &self,
        client: &reqwest::Client,
        deployment: &Arc<Deployment>,
        body: Bytes,
    ) -> BoxFuture<'static, Result<EmbeddingReply, ProxyError>>;

    /// Whether [`Provider::chat`] takes [`Endpoint::TextCompletion`] calls (OpenAI-compatible
    /// servers have `/completions`; the translated providers have no such API).
    fn text_completions(&self) -> bool {
        false
    }

    /// The tokens an OpenAI chat request (`model`, `messages`, `tools`, or a `prompt`) comes to
    /// on the deployment's own server, for servers that count them (llama.cpp's and vLLM's
    /// `/tokenize`); `None` where the provider has no such API here.
    fn count_tokens(
        &self,
        _client: &reqwest::Client,
        _d: &Arc<Deployment>,
        _chat: Value,
    ) -> Option<BoxFuture<'static, Result<ServerCount, ProxyError>>> {
        None
    }

    /// `route`'s body sent as it is; only OpenAI-compatible upstreams have these endpoints.
    fn forward_json(
        &self,
        _client: &reqwest::Client,
        d: &Arc<Deployment>,
        route: JsonRoute,
        _body: Bytes,
    ) -> BoxFuture<'static, Result<EmbeddingReply, ProxyError>> {
        let e = needs_openai_compatible(route.path(), d, "has no such API here");
        Box::pin(async move { Err(e) })
    }
}

/// The 400 for a call to an endpoint only OpenAI-compatible deployments have, routed to `d`.
pub(crate) fn needs_openai_compatible(endpoint: &str, d: &Deployment, lacks: &str) -> ProxyError {
    ProxyError::Custom {
        status: 400,
        kind: "invalid_request_error".to_string(),
        message: format!(
            "litellm.BadRequestError: {endpoint} needs an OpenAI-compatible deployment; {} (provider {}) {lacks}",
            d.model_name, d.provider
        ),
        param: Some("model".to_string()),
        headers: Vec::new(),
    }
}

/// Providers without an adapter yet: configs load, calls get a clear 400.
pub struct Unsupported;

impl Provider for Unsupported {
    fn chat(
        &self,
        _client: &reqwest::Client,
        d: &Arc<Deployment>,
        _call: ChatCall,
    ) -> BoxFuture<'static, Result<ChatReply, ProxyError>> {
        let e = ProxyError::UnsupportedProvider {
            provider: d.provider.clone(),
            model: d.model.clone(),
        };
        Box::pin(async move { Err(e) })
    }

    fn embeddings(
        &self,
        _client: &reqwest::Client,
        d: &Arc<Deployment>,
        _body: Bytes,
    ) -> BoxFuture<'static, Result<EmbeddingReply, ProxyError>> {
        let e = ProxyError::UnsupportedProvider {
            provider: d.provider.clone(),
            model: d.model.clone(),
        };
        Box::pin(async move { Err(e) })
    }
}

/// The base URL to call: the configured one (ollama's gets its `/v1`), else the provider's.
pub fn default_api_base(provider: &str, configured: Option<&str>) -> Option<String> {
    match configured {
        Some(b) => {
            let b = b.trim_end_matches('/');
            if provider.starts_with("ollama") && !b.ends_with("/v1") {
                Some(format!("{b}/v1"))
            } else {
                Some(b.to_string())
            }
        }
        None => match provider {
            "anthropic" => Some(idlehands_translate::anthropic::DEFAULT_API_BASE.to_string()),
            "gemini" => Some(idlehands_translate::gemini::DEFAULT_API_BASE.to_string()),
            _ => openai_compatible_base(provider).map(str::to_string),
        },
    }
}

/// The adapter for a deployment; built once, so it may precompute per-deployment state.
/// `direct`: OpenAI-compatible calls may use the direct client (see `direct`), which knows
/// only the default TLS roots and any local address; else they go through the configured
/// reqwest client.
pub fn adapter_for(
    provider: &str,
    mock: bool,
    api_base: Option<&str>,
    params: &LitellmParams,
    direct: bool,
) -> Arc<dyn Provider> {
    if mock {
        return Arc::new(MockProvider);
    }
    match provider {
        "anthropic" => return Arc::new(Anthropic::new(api_base)),
        "gemini" => return Arc::new(Gemini::new(api_base)),
        "azure" => {
            let deployment = upstream_model(params, provider);
            return Arc::new(
                azure::adapter(api_base, &deployment, params.api_version.as_deref())
                    .with_direct(direct),
            );
        }
        "bedrock" | "bedrock_converse" => return Arc::new(Bedrock::new(api_base, params)),
        _ => {}
    }
    match openai_compatible_base(provider) {
        Some(base) => Arc::new(
            OpenAiCompatible::new(provider, api_base.unwrap_or(base))
                .with_organization(params.organization.as_deref())
                .with_direct(direct),
        ),
        None => Arc::new(Unsupported),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_providers_have_default_bases() {
        assert_eq!(
            default_api_base("anthropic", None).as_deref(),
            Some("https://api.anthropic.com")
        );
        assert_eq!(
            default_api_base("gemini", None).as_deref(),
            Some("https://generativelanguage.googleapis.com/v1beta")
        );
        assert_eq!(default_api_base("azure", None), None);
        assert_eq!(default_api_base("bedrock", None), None);
    }
}
