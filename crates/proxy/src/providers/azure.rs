//! `azure/` deployments: OpenAI's wire format at a deployment URL with an `api-version`
//! query, keyed by the `api-key` header.

use idlehands_translate::azure as tr;

use super::OpenAiCompatible;

/// The adapter for Azure deployment `deployment` on resource endpoint `api_base`; without a
/// base every call fails with a message saying what to set.
pub fn adapter(
    api_base: Option<&str>,
    deployment: &str,
    api_version: Option<&str>,
) -> OpenAiCompatible {
    let missing = || {
        "Azure needs its resource endpoint: set litellm_params.api_base or AZURE_API_BASE"
            .to_string()
    };
    let chat = api_base
        .map(|b| tr::chat_url(b, deployment, api_version))
        .ok_or_else(missing);
    let embeddings = api_base
        .map(|b| tr::embeddings_url(b, deployment, api_version))
        .ok_or_else(missing);
    OpenAiCompatible::with_urls("AzureException", chat, embeddings, "api-key")
}
