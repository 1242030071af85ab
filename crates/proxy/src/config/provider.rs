//! What the config knows of providers: which one a deployment names, and what each reads from
//! the environment when the config leaves it out (read at load, with the rest of the
//! environment). The adapters that call them are `providers`' own.

use super::{LitellmParams, Secret};
use crate::pricing::{PriceTable, is_known_provider};

/// The provider of a deployment: `custom_llm_provider`, else the model's known prefix, else
/// the built-in price table's provider for a bare name, else `openai`.
pub fn provider_of(p: &LitellmParams) -> String {
    if let Some(c) = &p.custom_llm_provider {
        return c.clone();
    }
    if let Some((prefix, _)) = p.model.split_once('/')
        && is_known_provider(prefix)
    {
        return prefix.to_string();
    }
    PriceTable::builtin()
        .get(&p.model)
        .and_then(|m| m.provider.clone())
        .filter(|prov| !prov.starts_with("vertex_ai"))
        .unwrap_or_else(|| bare_name_provider(&p.model).to_string())
}

/// A bare model name the price table does not know, by its family name.
fn bare_name_provider(model: &str) -> &'static str {
    if model.starts_with("claude-") {
        "anthropic"
    } else if model.starts_with("gemini-") {
        "gemini"
    } else {
        "openai"
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

/// An OpenAI-compatible provider's public base URL; `None` for every other provider.
pub(crate) fn openai_compatible_base(provider: &str) -> Option<&'static str> {
    family(provider).map(|f| f.1)
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
    fn native_providers_have_env_names() {
        assert_eq!(env_defaults("anthropic").0, ["ANTHROPIC_API_KEY"]);
        assert_eq!(env_defaults("gemini").0, ["GEMINI_API_KEY"]);
        assert_eq!(env_defaults("azure").1[0], "AZURE_API_BASE");
    }

    #[test]
    fn bare_family_names_pick_their_provider() {
        assert_eq!(provider_of(&params("claude-opus-4-6")), "anthropic");
        assert_eq!(provider_of(&params("claude-3-7-sonnet-x")), "anthropic");
        assert_eq!(provider_of(&params("gemini-2.5-flash")), "gemini");
        assert_eq!(provider_of(&params("gemini-9-new")), "gemini");
        assert_eq!(provider_of(&params("gpt-4o")), "openai");
        assert_eq!(provider_of(&params("o3-mini")), "openai");
        assert_eq!(provider_of(&params("my-local-model")), "openai");
    }
}
