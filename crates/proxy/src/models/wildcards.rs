//! What a wildcard deployment (`openai/*`, or `*` over `openai/*`) stands for in listings:
//! one name per model the price map files under its provider, as LiteLLM's
//! `get_known_models_from_wildcard` lists them for `/v1/models`, `/model_group/info` and
//! `/model/info`. The price map's order is a Python set's in LiteLLM (it varies between runs);
//! here it is sorted.

use crate::pricing::PriceTable;
use crate::pricing::is_known_provider;

/// The names `wildcard` (a deployment's `model_name` pattern) lists, for a deployment whose
/// `litellm_params.model` is `litellm_model`. Empty when the pattern has no provider part or
/// the price map knows no model of the provider.
pub fn known_models(wildcard: &str, litellm_model: &str, prices: &PriceTable) -> Vec<String> {
    // `*` over `openai/*` stands for the provider pattern.
    let pattern = if wildcard == "*" && litellm_model.contains('*') && litellm_model.contains('/') {
        litellm_model
    } else {
        wildcard
    };
    let Some((prefix, suffix)) = pattern.split_once('/') else {
        return Vec::new();
    };
    let provider = litellm_model.split('/').next().unwrap_or(prefix);
    // LiteLLM's `get_valid_models` answers Azure with one placeholder name.
    let mut models = if provider == "azure" {
        vec!["Azure-LLM".to_string()]
    } else {
        prices.names_of_provider(provider)
    };
    if suffix != "*" {
        // `gemini-*`: a partial pattern keeps the models it starts; a pattern no model starts
        // is taken as a prefix to put before each.
        let start = suffix.replace('*', "");
        let repeats = litellm_model.ends_with(&format!("/{suffix}"));
        if repeats || models.iter().any(|m| m.starts_with(&start)) {
            models.retain(|m| m.starts_with(&start));
        } else {
            models = models.into_iter().map(|m| format!("{start}{m}")).collect();
        }
    }
    let own = format!("{prefix}/");
    let mut named: Vec<String> = models
        .into_iter()
        .map(|m| {
            if m.starts_with(&own) {
                return m;
            }
            match m.split_once('/') {
                // A name already under a provider's prefix gets the pattern's prefix instead.
                Some((lead, rest)) if is_known_provider(lead) => format!("{prefix}/{rest}"),
                _ => format!("{prefix}/{m}"),
            }
        })
        .collect();
    named.sort_unstable();
    named.dedup();
    named
}

/// The pattern `/model/info` expands a deployment by (LiteLLM's
/// `expand_wildcard_deployments_for_model_info`): its name when that has a provider part,
/// else its `litellm_params.model` when both are wildcards, else its name; `None` for a
/// deployment that is no wildcard.
pub fn info_pattern<'a>(model_name: &'a str, litellm_model: &'a str) -> Option<&'a str> {
    if !model_name.contains('*') {
        return None;
    }
    if model_name.contains('/') {
        Some(model_name)
    } else if litellm_model.contains('*') {
        Some(litellm_model)
    } else {
        Some(model_name)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn provider_patterns_list_the_price_maps_models_under_the_pattern_prefix() {
        let prices = PriceTable::builtin();
        let openai = known_models("openai/*", "openai/*", &prices);
        assert!(openai.contains(&"openai/gpt-4o".to_string()), "{openai:?}");
        assert!(openai.iter().all(|m| m.starts_with("openai/")));
        // Chat fine-tunes are left out; LiteLLM keeps the text-completion ones.
        assert!(!openai.iter().any(|m| m.starts_with("openai/ft:gpt")));
        assert!(openai.contains(&"openai/ft:davinci-002".to_string()));
        assert!(openai.windows(2).all(|w| w[0] <= w[1]));
        // `*` over `openai/*` is the same list.
        assert_eq!(known_models("*", "openai/*", &prices), openai);
        // A custom prefix replaces the provider's.
        let mine = known_models("my-openai/*", "openai/*", &prices);
        assert!(mine.contains(&"my-openai/gpt-4o".to_string()));
        // A partial pattern keeps the models it starts.
        let minis = known_models("openai/gpt-4o-mini*", "openai/gpt-4o-mini*", &prices);
        assert!(!minis.is_empty());
        assert!(minis.iter().all(|m| m.starts_with("openai/gpt-4o-mini")));
        // No provider part, or no model of the provider: nothing.
        assert!(known_models("*", "*", &prices).is_empty());
        assert!(known_models("custom/*", "custom/*", &prices).is_empty());
        assert_eq!(
            known_models("azure/*", "azure/*", &prices),
            ["azure/Azure-LLM"]
        );
    }

    #[test]
    fn model_info_expands_by_the_name_else_the_model() {
        assert_eq!(info_pattern("openai/*", "openai/*"), Some("openai/*"));
        assert_eq!(info_pattern("*", "openai/*"), Some("openai/*"));
        assert_eq!(info_pattern("*", "openai/gpt-4o"), Some("*"));
        assert_eq!(info_pattern("gpt-4o", "openai/gpt-4o"), None);
    }
}
