//! One module per wire family. A deployment holds an `Arc<dyn Provider>`; the HTTP layer
//! speaks OpenAI chat-completions to it and gets OpenAI-format bytes back (a JSON body, or SSE
//! frames), so usage, cost and headers are handled once, above all providers.
//!
//! SEAM (translations): an Anthropic, Gemini or Bedrock adapter is a new module implementing
//! [`Provider`] that translates the OpenAI request and emits OpenAI-format chunks, plus one arm
//! in [`adapter_for`].

mod anthropic;
mod azure;
mod bedrock;
mod direct;
mod gemini;
mod mock;
pub(crate) mod openai_compat;
pub mod params;
mod upstream;

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use http::HeaderMap;

use crate::config::{LitellmParams, Secret};
use crate::error::ProxyError;
use crate::router::Deployment;

pub use anthropic::Anthropic;
pub use bedrock::Bedrock;
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

pub enum ChatReply {
    /// A complete `chat.completion` JSON body.
    Full { body: Bytes, headers: HeaderMap },
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

/// OpenAI-compatible providers: (name, default api_base, env vars for key, env vars for base).
const OPENAI_FAMILY: &[(&str, &str, &[&str], &[&str])] = &[
    (
        "openai",
        "https://api.openai.com/v1",
        &["OPENAI_API_KEY"],
        &["OPENAI_BASE_URL", "OPENAI_API_BASE"],
    ),
    (
        "hosted_vllm",
        "http://localhost:8000/v1",
        &["HOSTED_VLLM_API_KEY"],
        &["HOSTED_VLLM_API_BASE"],
    ),
    (
        "vllm",
        "http://localhost:8000/v1",
        &["HOSTED_VLLM_API_KEY"],
        &["HOSTED_VLLM_API_BASE"],
    ),
    (
        "ollama",
        "http://localhost:11434/v1",
        &["OLLAMA_API_KEY"],
        &["OLLAMA_API_BASE"],
    ),
    (
        "ollama_chat",
        "http://localhost:11434/v1",
        &["OLLAMA_API_KEY"],
        &["OLLAMA_API_BASE"],
    ),
    (
        "openrouter",
        "https://openrouter.ai/api/v1",
        &["OPENROUTER_API_KEY"],
        &["OPENROUTER_API_BASE"],
    ),
    (
        "groq",
        "https://api.groq.com/openai/v1",
        &["GROQ_API_KEY"],
        &["GROQ_API_BASE"],
    ),
    (
        "mistral",
        "https://api.mistral.ai/v1",
        &["MISTRAL_API_KEY"],
        &["MISTRAL_API_BASE"],
    ),
    (
        "deepseek",
        "https://api.deepseek.com/v1",
        &["DEEPSEEK_API_KEY"],
        &["DEEPSEEK_API_BASE"],
    ),
    (
        "together_ai",
        "https://api.together.xyz/v1",
        &["TOGETHERAI_API_KEY", "TOGETHER_API_KEY"],
        &["TOGETHERAI_API_BASE"],
    ),
    (
        "fireworks_ai",
        "https://api.fireworks.ai/inference/v1",
        &["FIREWORKS_AI_API_KEY", "FIREWORKS_API_KEY"],
        &["FIREWORKS_AI_API_BASE"],
    ),
    (
        "xai",
        "https://api.x.ai/v1",
        &["XAI_API_KEY"],
        &["XAI_API_BASE"],
    ),
    (
        "perplexity",
        "https://api.perplexity.ai",
        &["PERPLEXITYAI_API_KEY", "PERPLEXITY_API_KEY"],
        &["PERPLEXITY_API_BASE"],
    ),
    (
        "lm_studio",
        "http://localhost:1234/v1",
        &["LM_STUDIO_API_KEY"],
        &["LM_STUDIO_API_BASE"],
    ),
    (
        "litellm_proxy",
        "http://localhost:4000",
        &["LITELLM_PROXY_API_KEY"],
        &["LITELLM_PROXY_API_BASE"],
    ),
    (
        "cerebras",
        "https://api.cerebras.ai/v1",
        &["CEREBRAS_API_KEY"],
        &["CEREBRAS_API_BASE"],
    ),
];

fn family(
    provider: &str,
) -> Option<&'static (
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
)> {
    OPENAI_FAMILY.iter().find(|f| f.0 == provider)
}

/// Providers with their own wire format: (name, env vars for key, env vars for base).
const NATIVE: &[(&str, &[&str], &[&str])] = &[
    (
        "anthropic",
        &["ANTHROPIC_API_KEY"],
        &["ANTHROPIC_API_BASE", "ANTHROPIC_BASE_URL"],
    ),
    ("gemini", &["GEMINI_API_KEY"], &["GEMINI_API_BASE"]),
    (
        "azure",
        &["AZURE_API_KEY", "AZURE_OPENAI_API_KEY"],
        &["AZURE_API_BASE", "AZURE_OPENAI_ENDPOINT"],
    ),
];

/// Env vars holding the provider's default key and base URL.
pub fn env_defaults(provider: &str) -> (&'static [&'static str], &'static [&'static str]) {
    if let Some(n) = NATIVE.iter().find(|n| n.0 == provider) {
        return (n.1, n.2);
    }
    family(provider).map(|f| (f.2, f.3)).unwrap_or((&[], &[]))
}

/// Provider settings beyond key and base that come from the environment when the config
/// names none: Azure's `api_version`, Bedrock's region and credentials. Read at config load
/// only.
pub fn read_provider_env(
    provider: &str,
    p: &mut LitellmParams,
    env: &dyn Fn(&str) -> Option<String>,
) {
    let var = |names: &[&str]| names.iter().find_map(|v| env(v).filter(|s| !s.is_empty()));
    match provider {
        "azure" if p.api_version.is_none() => p.api_version = var(&["AZURE_API_VERSION"]),
        "bedrock" | "bedrock_converse" => {
            if p.aws_region_name.is_none() {
                p.aws_region_name = var(&["AWS_REGION", "AWS_DEFAULT_REGION"]);
            }
            // Credentials travel as a pair: a key id from the config never meets a secret
            // from the environment.
            if p.aws_access_key_id.is_none() && p.aws_secret_access_key.is_none() {
                p.aws_access_key_id = var(&["AWS_ACCESS_KEY_ID"]).map(Secret::new);
                p.aws_secret_access_key = var(&["AWS_SECRET_ACCESS_KEY"]).map(Secret::new);
                if p.aws_session_token.is_none() {
                    p.aws_session_token = var(&["AWS_SESSION_TOKEN"]).map(Secret::new);
                }
            }
        }
        _ => {}
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
            _ => family(provider).map(|f| f.1.to_string()),
        },
    }
}

/// The adapter for a deployment; built once, so it may precompute per-deployment state.
pub fn adapter_for(
    provider: &str,
    mock: bool,
    api_base: Option<&str>,
    params: &LitellmParams,
) -> Arc<dyn Provider> {
    if mock {
        return Arc::new(MockProvider);
    }
    match provider {
        "anthropic" => return Arc::new(Anthropic::new(api_base)),
        "gemini" => return Arc::new(Gemini::new(api_base)),
        "azure" => {
            let deployment = crate::router::upstream_model(params, provider);
            return Arc::new(azure::adapter(
                api_base,
                &deployment,
                params.api_version.as_deref(),
            ));
        }
        "bedrock" | "bedrock_converse" => return Arc::new(Bedrock::new(api_base, params)),
        _ => {}
    }
    match family(provider) {
        Some(f) => Arc::new(
            OpenAiCompatible::new(provider, api_base.unwrap_or(f.1))
                .with_organization(params.organization.as_deref()),
        ),
        None => Arc::new(Unsupported),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(model: &str) -> LitellmParams {
        LitellmParams {
            model: model.to_string(),
            ..LitellmParams::default()
        }
    }

    #[test]
    fn provider_env_fills_only_what_the_config_left_out() {
        let env = |k: &str| {
            let v = match k {
                "AZURE_API_VERSION" => "2025-01-01-preview",
                "AWS_REGION" => "eu-west-1",
                "AWS_ACCESS_KEY_ID" => "AKIDENV",
                "AWS_SECRET_ACCESS_KEY" => "env-secret",
                _ => return None,
            };
            Some(v.to_string())
        };
        let mut azure = params("azure/d");
        read_provider_env("azure", &mut azure, &env);
        assert_eq!(azure.api_version.as_deref(), Some("2025-01-01-preview"));

        let mut bedrock = params("bedrock/m");
        read_provider_env("bedrock", &mut bedrock, &env);
        assert_eq!(bedrock.aws_region_name.as_deref(), Some("eu-west-1"));
        assert_eq!(
            bedrock.aws_secret_access_key.as_ref().map(Secret::expose),
            Some("env-secret")
        );
        assert!(bedrock.aws_session_token.is_none());

        // A key id from the config is never paired with a secret from the environment.
        let mut half = params("bedrock/m");
        half.aws_access_key_id = Some(Secret::new("AKIDCONFIG"));
        half.aws_region_name = Some("us-east-2".into());
        read_provider_env("bedrock", &mut half, &env);
        assert!(half.aws_secret_access_key.is_none());
        assert_eq!(half.aws_region_name.as_deref(), Some("us-east-2"));
    }

    #[test]
    fn native_providers_have_env_names_and_default_bases() {
        assert_eq!(env_defaults("anthropic").0, ["ANTHROPIC_API_KEY"]);
        assert_eq!(env_defaults("gemini").0, ["GEMINI_API_KEY"]);
        assert_eq!(env_defaults("azure").1[0], "AZURE_API_BASE");
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

    #[test]
    fn bare_family_names_pick_their_provider() {
        use crate::router::provider_of;
        assert_eq!(provider_of(&params("claude-opus-4-6")), "anthropic");
        assert_eq!(provider_of(&params("claude-3-7-sonnet-x")), "anthropic");
        assert_eq!(provider_of(&params("gemini-2.5-flash")), "gemini");
        assert_eq!(provider_of(&params("gemini-9-new")), "gemini");
        assert_eq!(provider_of(&params("gpt-4o")), "openai");
        assert_eq!(provider_of(&params("o3-mini")), "openai");
        assert_eq!(provider_of(&params("my-local-model")), "openai");
    }
}
