//! Prices and the cost of one call.
//!
//! Money is integer: rates are pico-USD per token ([`Rate`]) and costs are nano-USD. A call's
//! cost is summed in pico-USD (u128, no overflow) and rounded once to nanos at the end.
//!
//! Which price a call gets follows LiteLLM's cost calculator: a deployment's own price fields,
//! else `model_info.base_model`, else the model the upstream says answered, else the
//! deployment's model, each looked up the way LiteLLM's `get_model_info` does ([`PriceTable::
//! model_info`]). See [`CallPricing`].

pub mod audio;
mod builtin;
mod call;
pub mod cost_map;
mod loader;

use std::collections::HashMap;
use std::sync::Arc;

use idlehands_wire::Usage;

pub use call::{CallPricing, is_local_provider};
pub use loader::{PriceLoadError, load_litellm_price_file, parse_litellm_price_json};

/// pico-USD (1e-12 USD) per token.
pub type Rate = u64;

/// nano-USD (1e-9 USD).
pub type Nanos = u64;

/// The most one call may cost: $1,000,000. Only a price override and token counts near
/// [`idlehands_wire::MAX_USAGE_TOKENS`] together reach it; capping here keeps a key's spend,
/// summed over millions of such rows, inside `i64`.
pub const MAX_CALL_COST_NANOS: Nanos = 1_000_000 * 1_000_000_000;

/// The tier of configs' `_above_200k_tokens` fields, and of a price that names no other.
const TIER_200K: u64 = 200_000;

/// Provider prefixes LiteLLM recognises in `litellm_params.model`.
const KNOWN_PROVIDERS: &[&str] = &[
    "openai",
    "azure",
    "azure_ai",
    "anthropic",
    "gemini",
    "vertex_ai",
    "vertex_ai_beta",
    "bedrock",
    "bedrock_converse",
    "ollama",
    "ollama_chat",
    "hosted_vllm",
    "vllm",
    "openrouter",
    "groq",
    "mistral",
    "deepseek",
    "together_ai",
    "fireworks_ai",
    "xai",
    "perplexity",
    "lm_studio",
    "litellm_proxy",
    "cohere",
    "huggingface",
    "databricks",
    "cerebras",
    "nvidia_nim",
    "sambanova",
    "text-completion-openai",
];

/// Whether LiteLLM reads `prefix/` at the start of a model name as a provider.
pub fn is_known_provider(prefix: &str) -> bool {
    KNOWN_PROVIDERS.contains(&prefix)
}

/// What one model costs. Optional rates fall back to the plain input/output rates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelPrice {
    pub provider: Option<String>,
    pub mode: Option<String>,
    pub input: Rate,
    pub output: Rate,
    pub cache_read: Option<Rate>,
    pub cache_creation: Option<Rate>,
    pub reasoning: Option<Rate>,
    /// Prompt size above which the `*_above_tier` rates apply to the whole call (LiteLLM's
    /// `_above_200k_tokens`, `_above_272k_tokens`, ...); `None` is 200k.
    pub tier_tokens: Option<u64>,
    pub input_above_tier: Option<Rate>,
    pub output_above_tier: Option<Rate>,
    pub cache_read_above_tier: Option<Rate>,
    pub cache_creation_above_tier: Option<Rate>,
    pub max_input_tokens: Option<u64>,
    pub max_output_tokens: Option<u64>,
    /// The price map's `supports_*` flags (name without the prefix, value), as `/model/info`
    /// shows them.
    pub supports: Vec<(String, bool)>,
}

/// `vision,!pdf_input` (the table's column) as flags.
pub(crate) fn parse_supports(s: &str) -> Vec<(String, bool)> {
    s.split(',')
        .filter(|f| !f.is_empty())
        .map(|f| match f.strip_prefix('!') {
            Some(name) => (name.to_string(), false),
            None => (f.to_string(), true),
        })
        .collect()
}

/// A partial price from a config (`litellm_params` or `model_info` cost fields); set fields
/// replace the table's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PriceOverride {
    pub input: Option<Rate>,
    pub output: Option<Rate>,
    pub cache_read: Option<Rate>,
    pub cache_creation: Option<Rate>,
    pub reasoning: Option<Rate>,
    /// The 200k tier: configs spell these `input_cost_per_token_above_200k_tokens`, ...
    pub input_above_200k: Option<Rate>,
    pub output_above_200k: Option<Rate>,
}

impl PriceOverride {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `self` wins where set.
    pub fn or(self, other: &PriceOverride) -> PriceOverride {
        PriceOverride {
            input: self.input.or(other.input),
            output: self.output.or(other.output),
            cache_read: self.cache_read.or(other.cache_read),
            cache_creation: self.cache_creation.or(other.cache_creation),
            reasoning: self.reasoning.or(other.reasoning),
            input_above_200k: self.input_above_200k.or(other.input_above_200k),
            output_above_200k: self.output_above_200k.or(other.output_above_200k),
        }
    }

    pub fn apply(&self, base: Option<&ModelPrice>) -> ModelPrice {
        let mut p = base.cloned().unwrap_or_default();
        if let Some(v) = self.input {
            p.input = v;
        }
        if let Some(v) = self.output {
            p.output = v;
        }
        p.cache_read = self.cache_read.or(p.cache_read);
        p.cache_creation = self.cache_creation.or(p.cache_creation);
        p.reasoning = self.reasoning.or(p.reasoning);
        if self.input_above_200k.is_some() || self.output_above_200k.is_some() {
            // A 200k rate from the config moves the tier to 200k; the table's other tier
            // rates no longer apply there.
            if p.tier_tokens.unwrap_or(TIER_200K) != TIER_200K {
                p.cache_read_above_tier = None;
                p.cache_creation_above_tier = None;
                p.input_above_tier = None;
                p.output_above_tier = None;
            }
            p.tier_tokens = Some(TIER_200K);
        }
        p.input_above_tier = self.input_above_200k.or(p.input_above_tier);
        p.output_above_tier = self.output_above_200k.or(p.output_above_tier);
        p
    }
}

/// USD per token (as written in configs and price files) to pico-USD per token. Negative,
/// NaN and absurd values are refused by returning `None`.
pub fn usd_per_token_to_rate(usd: f64) -> Option<Rate> {
    if !usd.is_finite() || !(0.0..=1.0).contains(&usd) {
        return None;
    }
    #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some((usd * 1e12).round() as u64)
}

impl ModelPrice {
    /// LiteLLM's formula: uncached prompt at the input rate, cached tokens at the cache-read
    /// rate, cache writes at the cache-creation rate, completion at the output rate with
    /// reasoning tokens at the reasoning rate when one is set; a prompt above the tier
    /// switches the rates for the whole call. A missing cache rate is the input rate in
    /// force (LiteLLM's rule: a provider that publishes none bills them as input).
    pub fn cost(&self, usage: &Usage) -> Nanos {
        let above = usage.prompt_tokens > self.tier_tokens.unwrap_or(TIER_200K);
        let input = if above {
            self.input_above_tier.unwrap_or(self.input)
        } else {
            self.input
        };
        let output = if above {
            self.output_above_tier.unwrap_or(self.output)
        } else {
            self.output
        };
        let cache_read = if above {
            self.cache_read_above_tier
                .or(self.cache_read)
                .unwrap_or(input)
        } else {
            self.cache_read.unwrap_or(input)
        };
        let cache_creation = if above {
            self.cache_creation_above_tier
                .or(self.cache_creation)
                .unwrap_or(input)
        } else {
            self.cache_creation.unwrap_or(input)
        };
        let cached = usage.cached_tokens();
        let creation = usage.cache_creation_input_tokens.unwrap_or(0);
        let uncached = usage
            .prompt_tokens
            .saturating_sub(cached)
            .saturating_sub(creation);
        let reasoning_tokens = usage
            .completion_tokens_details
            .as_ref()
            .and_then(|d| d.reasoning_tokens)
            .unwrap_or(0)
            .min(usage.completion_tokens);
        let (plain_out, reasoning_out) = match self.reasoning {
            Some(_) => (usage.completion_tokens - reasoning_tokens, reasoning_tokens),
            None => (usage.completion_tokens, 0),
        };
        // Each product fits u128; their sum need not (u64::MAX tokens at u64::MAX prices).
        let pico = [
            (uncached, input),
            (cached, cache_read),
            (creation, cache_creation),
            (plain_out, output),
            (reasoning_out, self.reasoning.unwrap_or(output)),
        ]
        .into_iter()
        .fold(0u128, |acc, (n, rate)| {
            acc.saturating_add(u128::from(n) * u128::from(rate))
        });
        let nanos = u64::try_from(pico.saturating_add(500) / 1000).unwrap_or(u64::MAX);
        if nanos > MAX_CALL_COST_NANOS {
            tracing::warn!(
                prompt_tokens = usage.prompt_tokens,
                completion_tokens = usage.completion_tokens,
                ceiling_usd = MAX_CALL_COST_NANOS / 1_000_000_000,
                "call cost above the ceiling; clamped"
            );
            return MAX_CALL_COST_NANOS;
        }
        nanos
    }
}

/// Prices by model name (`gpt-4o`, `azure/gpt-4o`, `gemini/gemini-2.5-pro`, ...): the built-in
/// table, with prices added on top (a price file) replacing built-in rows of the same name.
/// Cloning is cheap: the built-in rows are static and the added ones shared.
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    builtin: bool,
    added: Arc<Added>,
}

#[derive(Debug, Clone, Default)]
struct Added {
    by_name: HashMap<String, Arc<ModelPrice>>,
    /// Lower-cased names that have capitals, to their names.
    folded: HashMap<String, String>,
}

/// Cloud-provider aliases LiteLLM resolves before any lookup (its `azure_llms`).
const ALIASES: &[(&str, &str)] = &[
    ("gpt-35-turbo", "azure/gpt-35-turbo"),
    ("gpt-35-turbo-16k", "azure/gpt-35-turbo-16k"),
    ("gpt-35-turbo-instruct", "azure/gpt-35-turbo-instruct"),
    ("azure/gpt-41", "gpt-4.1"),
    ("azure/gpt-41-mini", "gpt-4.1-mini"),
    ("azure/gpt-41-nano", "gpt-4.1-nano"),
    ("ada", "azure/ada"),
];

/// Bedrock cross-region inference prefixes (`us.anthropic.claude-...`).
const BEDROCK_GEOS: &[&str] = &["us", "eu", "apac", "global", "au", "jp", "ca", "us-gov"];

impl PriceTable {
    /// No prices at all.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The built-in table (see `builtin.rs`); indexed on first use, once per process.
    pub fn builtin() -> Self {
        Self {
            builtin: true,
            added: Arc::default(),
        }
    }

    pub fn insert(&mut self, name: &str, price: ModelPrice) {
        let added = Arc::make_mut(&mut self.added);
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            added
                .folded
                .insert(name.to_ascii_lowercase(), name.to_string());
        }
        added.by_name.insert(name.to_string(), Arc::new(price));
    }

    /// Entries of `other` replace ours.
    pub fn merge(&mut self, other: PriceTable) {
        self.builtin |= other.builtin;
        let other = Arc::unwrap_or_clone(other.added);
        let added = Arc::make_mut(&mut self.added);
        added.by_name.extend(other.by_name);
        added.folded.extend(other.folded);
    }

    pub fn len(&self) -> usize {
        let own = self.added.by_name.len();
        if !self.builtin {
            return own;
        }
        let shadowed = self
            .added
            .by_name
            .keys()
            .filter(|k| builtin::INDEX.price(k).is_some())
            .count();
        builtin::INDEX.len() + own - shadowed
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The price named exactly `name`.
    pub fn get(&self, name: &str) -> Option<Arc<ModelPrice>> {
        if let Some(p) = self.added.by_name.get(name) {
            return Some(p.clone());
        }
        if self.builtin {
            return builtin::INDEX.price(name).map(Arc::new);
        }
        None
    }

    /// The models the price map files under `provider`, sorted: what LiteLLM's
    /// `models_by_provider` lists for a wildcard route (`openai/*`). OpenAI's are its chat
    /// entries without fine-tunes (`ft:`) and its text-completion entries; Vertex's and
    /// Cohere's span their several provider labels.
    pub fn names_of_provider(&self, provider: &str) -> Vec<String> {
        let belongs = |name: &str, label: &str| match provider {
            "openai" => {
                (label == "openai" && !name.starts_with("ft:")) || label == "text-completion-openai"
            }
            "vertex_ai" => label.starts_with("vertex_ai"),
            "cohere" => label == "cohere" || label == "cohere_chat",
            p => label == p,
        };
        let mut names: Vec<String> = Vec::new();
        let mut consider = |name: &str, price: Option<&ModelPrice>| {
            if let Some(label) = price.and_then(|p| p.provider.as_deref())
                && belongs(name, label)
            {
                names.push(name.to_string());
            }
        };
        for (name, price) in &self.added.by_name {
            consider(name, Some(price));
        }
        if self.builtin {
            for name in builtin::INDEX.names() {
                if !self.added.by_name.contains_key(name) {
                    consider(name, builtin::INDEX.price(name).as_ref());
                }
            }
        }
        names.sort_unstable();
        names
    }

    /// LiteLLM's key lookup: the exact name, else the name ignoring ASCII case.
    fn get_any_case(&self, name: &str) -> Option<Arc<ModelPrice>> {
        if let Some(p) = self.get(name) {
            return Some(p);
        }
        let lower = name.to_ascii_lowercase();
        let added = match self.added.by_name.get(lower.as_str()) {
            Some(p) => Some(p.clone()),
            None => self
                .added
                .folded
                .get(&lower)
                .and_then(|k| self.added.by_name.get(k).cloned()),
        };
        if added.is_some() {
            return added;
        }
        if self.builtin {
            return builtin::INDEX
                .key(name)
                .and_then(|k| builtin::INDEX.price(k))
                .map(Arc::new);
        }
        None
    }

    /// A model's price as LiteLLM's `get_model_info(model, custom_llm_provider)` finds it: the
    /// first of `provider/model`, `model`, the model without its `provider/` prefix, then the
    /// same with a dated snapshot (`-2024-08-06`), a fine-tune suffix (`ft:m:org::id`), a
    /// Vertex/Gemini version (`-001`) or a Bedrock region prefix removed, whose entry is the
    /// provider's (an entry of another provider does not count: `openai/claude-x` is not
    /// Anthropic's price). Without a provider, any entry of the name counts.
    pub fn model_info(&self, model: &str, provider: Option<&str>) -> Option<Arc<ModelPrice>> {
        let model = ALIASES
            .iter()
            .find(|(from, _)| *from == model)
            .map_or(model, |(_, to)| *to);
        let Some(provider) = provider else {
            return self.get_any_case(model).or_else(|| {
                let (prefix, rest) = model.split_once('/')?;
                is_known_provider(prefix)
                    .then(|| self.model_info(rest, Some(prefix)))
                    .flatten()
            });
        };
        let own_prefix = model
            .strip_prefix(provider)
            .and_then(|r| r.strip_prefix('/'));
        let split = own_prefix.unwrap_or(model);
        let stripped = strip_model_name(split, provider);
        let combined = match own_prefix {
            Some(_) => model.to_string(),
            None => format!("{provider}/{model}"),
        };
        let mut candidates: Vec<String> = vec![
            combined,
            model.to_string(),
            split.to_string(),
            format!("{provider}/{stripped}"),
            stripped.to_string(),
        ];
        // Providers whose own ids repeat the provider name (`perplexity/perplexity/x`).
        if own_prefix.is_some() {
            candidates.push(format!("{provider}/{model}"));
        }
        candidates.dedup();
        candidates.iter().find_map(|name| {
            self.get_any_case(name)
                .filter(|p| provider_matches(p.provider.as_deref(), provider))
        })
    }
}

/// LiteLLM's `_check_provider_match`: an entry counts for the deployment's provider when it is
/// that provider's, has none, or belongs to a family the provider shares prices with.
fn provider_matches(entry: Option<&str>, provider: &str) -> bool {
    let Some(entry) = entry else { return true };
    entry == provider
        || (provider == "vertex_ai" && entry.starts_with("vertex_ai"))
        || (provider == "fireworks_ai" && entry.starts_with("fireworks_ai"))
        || (provider.starts_with("bedrock") && entry.starts_with("bedrock"))
        || provider == "litellm_proxy"
        || (provider == "azure_ai" && matches!(entry, "azure" | "openai"))
        || matches!(provider, "github" | "nadir")
}

/// LiteLLM's `_strip_model_name`: the part of a model name its price does not depend on.
fn strip_model_name<'a>(model: &'a str, provider: &str) -> &'a str {
    match provider {
        "bedrock" | "bedrock_converse" => bedrock_base_model(model),
        "vertex_ai" | "gemini" | "databricks" => strip_trailing_number(model),
        _ if model.contains("ft:") => strip_fine_tune(model),
        _ => strip_date(model),
    }
}

/// `-1234` at the end (a Vertex/Gemini stable version).
fn strip_trailing_number(model: &str) -> &str {
    let digits = model.len() - model.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits > 0 && model[..model.len() - digits].ends_with('-') {
        &model[..model.len() - digits - 1]
    } else {
        model
    }
}

/// `-YYYY-MM-DD` at the end (a dated snapshot).
fn strip_date(model: &str) -> &str {
    let b = model.as_bytes();
    let n = b.len();
    let shape = n >= 11
        && b[n - 11] == b'-'
        && b[n - 6] == b'-'
        && b[n - 3] == b'-'
        && [10, 9, 8, 7, 5, 4, 2, 1]
            .iter()
            .all(|&i| b[n - i].is_ascii_digit());
    if shape { &model[..n - 11] } else { model }
}

/// `ft:base:org:suffix:id` to `ft:base` (the last three `:` fields dropped).
fn strip_fine_tune(model: &str) -> &str {
    let mut end = model.len();
    for _ in 0..3 {
        match model[..end].rfind(':') {
            Some(i) => end = i,
            None => return model,
        }
    }
    &model[..end]
}

/// A Bedrock model id without its routing prefix, region path or cross-region prefix
/// (LiteLLM's `get_bedrock_base_model`, in its common cases).
fn bedrock_base_model(model: &str) -> &str {
    let mut m = model;
    for p in ["converse/", "invoke/"] {
        if let Some(rest) = m.strip_prefix(p) {
            m = rest;
        }
    }
    // `us-east-1/anthropic.claude-...`
    if let Some((region, rest)) = m.split_once('/')
        && region.split('-').count() >= 3
        && region.ends_with(|c: char| c.is_ascii_digit())
    {
        m = rest;
    }
    if let Some((geo, rest)) = m.split_once('.')
        && BEDROCK_GEOS.contains(&geo)
    {
        m = rest;
    }
    m
}

/// Nano-USD as a USD decimal string, as the `x-litellm-response-cost` header carries it.
pub fn nanos_to_usd_string(n: Nanos) -> String {
    let whole = n / 1_000_000_000;
    let frac = n % 1_000_000_000;
    if frac == 0 {
        return format!("{whole}.0");
    }
    let s = format!("{whole}.{frac:09}");
    s.trim_end_matches('0').to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use idlehands_wire::openai::{CompletionTokensDetails, PromptTokensDetails};

    fn price(t: &PriceTable, model: &str, provider: &str) -> Option<(Rate, Rate)> {
        t.model_info(model, Some(provider))
            .map(|p| (p.input, p.output))
    }

    #[test]
    fn a_call_never_costs_more_than_the_ceiling() {
        let t = PriceTable::builtin();
        let p = t.model_info("openai/gpt-4o", Some("openai")).unwrap();
        assert_eq!(p.cost(&Usage::new(u64::MAX, u64::MAX)), MAX_CALL_COST_NANOS);
        let mut at_ceiling = Usage::new(u64::MAX, 0);
        at_ceiling.clamp();
        // 1e12 tokens at $2.50 per million: $2.5M, above the ceiling too.
        assert_eq!(p.cost(&at_ceiling), MAX_CALL_COST_NANOS);
        assert!(p.cost(&Usage::new(1_000_000, 0)) < MAX_CALL_COST_NANOS);
    }

    #[test]
    fn plain_cost_is_exact_in_nanos() {
        let t = PriceTable::builtin();
        let p = t.model_info("openai/gpt-4o", Some("openai")).unwrap();
        // 1000 * 2.5e-6 + 500 * 1e-5 = 0.0025 + 0.005 = 0.0075 USD
        assert_eq!(p.cost(&Usage::new(1000, 500)), 7_500_000);
    }

    #[test]
    fn cached_and_cache_creation_tokens_use_their_rates() {
        let t = PriceTable::builtin();
        let p = t.get("claude-opus-4-6").unwrap();
        let mut u = Usage::new(1000, 100);
        u.prompt_tokens_details = Some(PromptTokensDetails {
            cached_tokens: Some(600),
        });
        u.cache_creation_input_tokens = Some(200);
        // 200*5e-6 + 600*5e-7 + 200*6.25e-6 + 100*2.5e-5
        let want = 200 * 5000 + 600 * 500 + 200 * 6250 + 100 * 25000;
        assert_eq!(p.cost(&u), want);
    }

    #[test]
    fn reasoning_rate_and_200k_tier() {
        let p = ModelPrice {
            input: 1_000_000,
            output: 2_000_000,
            reasoning: Some(3_000_000),
            input_above_tier: Some(10_000_000),
            ..ModelPrice::default()
        };
        let mut u = Usage::new(10, 10);
        u.completion_tokens_details = Some(CompletionTokensDetails {
            reasoning_tokens: Some(4),
        });
        assert_eq!(
            p.cost(&u),
            (10 * 1_000_000 + 6 * 2_000_000 + 4 * 3_000_000) / 1000
        );
        let big = Usage::new(200_001, 0);
        assert_eq!(p.cost(&big), 200_001 * 10_000);
        assert_eq!(p.cost(&Usage::new(200_000, 0)), 200_000 * 1_000);
    }

    #[test]
    fn a_272k_tier_switches_at_272k() {
        // gpt-5.4: $2.50/M in, $15/M out; above 272k prompt tokens $5/M in, $22.50/M out
        // (OpenAI's published long-context rates, as LiteLLM's list has them).
        let t = PriceTable::builtin();
        let p = t.get("gpt-5.4").unwrap();
        assert_eq!(p.tier_tokens, Some(272_000));
        assert_eq!(
            p.cost(&Usage::new(272_000, 1000)),
            (272_000 * 2_500_000 + 1000 * 15_000_000) / 1000
        );
        assert_eq!(
            p.cost(&Usage::new(272_001, 1000)),
            (272_001 * 5_000_000 + 1000 * 22_500_000) / 1000
        );
    }

    #[test]
    fn overrides_replace_only_what_they_set() {
        let t = PriceTable::builtin();
        let o = PriceOverride {
            input: Some(1),
            ..PriceOverride::default()
        };
        let p = o.apply(t.get("gpt-4o").as_deref());
        assert_eq!(p.input, 1);
        assert_eq!(p.output, 10_000_000);
        let o = PriceOverride {
            input_above_200k: Some(7),
            ..PriceOverride::default()
        };
        let p = o.apply(t.get("gpt-5.4").as_deref());
        assert_eq!(p.tier_tokens, Some(200_000));
        assert_eq!((p.input_above_tier, p.output_above_tier), (Some(7), None));
    }

    #[test]
    fn lookup_tries_provider_prefixed_then_bare_then_stripped_names() {
        let t = PriceTable::builtin();
        let gpt4o = Some((2_500_000, 10_000_000));
        // provider/model
        assert_eq!(price(&t, "azure/gpt-4o", "azure"), gpt4o);
        // the bare name gets the provider's prefix: azure's own row, not OpenAI's
        assert_eq!(price(&t, "gpt-4o", "azure"), gpt4o);
        assert_eq!(
            t.model_info("gpt-4o", Some("azure"))
                .unwrap()
                .provider
                .as_deref(),
            Some("azure")
        );
        // bare name
        assert_eq!(price(&t, "gpt-4o", "openai"), gpt4o);
        assert_eq!(price(&t, "openai/gpt-4o", "openai"), gpt4o);
        // a dated snapshot not in the list prices as its undated model
        assert_eq!(price(&t, "gpt-4o-2099-01-01", "openai"), gpt4o);
        // a fine-tune as its base's fine-tune row
        assert!(t.get("ft:gpt-4o-mini-2024-07-18").is_some());
        assert_eq!(
            price(&t, "ft:gpt-4o-mini-2024-07-18:my-org::abc123", "openai"),
            t.get("ft:gpt-4o-mini-2024-07-18")
                .map(|p| (p.input, p.output))
        );
        // case is ignored on a second try
        assert_eq!(price(&t, "GPT-4o", "openai"), gpt4o);
        // Gemini's numbered versions
        assert_eq!(
            price(&t, "gemini-2.5-pro-999", "gemini"),
            price(&t, "gemini-2.5-pro", "gemini")
        );
        // Bedrock's cross-region prefix
        let sonnet = "anthropic.claude-3-5-sonnet-20240620-v1:0";
        assert!(t.get(sonnet).is_some());
        assert_eq!(
            price(&t, &format!("bedrock/zz-west-9/jp.{sonnet}"), "bedrock"),
            t.get(sonnet).map(|p| (p.input, p.output))
        );
        // LiteLLM's Azure aliases
        assert_eq!(
            price(&t, "gpt-35-turbo", "azure"),
            t.get("azure/gpt-35-turbo").map(|p| (p.input, p.output))
        );
        assert_eq!(price(&t, "my-custom-deployment", "azure"), None);
    }

    #[test]
    fn another_providers_row_does_not_price_a_model() {
        let t = PriceTable::builtin();
        // Anthropic's row is not OpenAI's price, nor a local server's.
        assert_eq!(price(&t, "claude-opus-4-6", "openai"), None);
        assert_eq!(price(&t, "gpt-4o", "hosted_vllm"), None);
        assert_eq!(price(&t, "hosted_vllm/gpt-4o", "hosted_vllm"), None);
        // ... unless the provider shares rows, as azure_ai does with azure and openai.
        assert_eq!(
            price(&t, "gpt-4o", "azure_ai"),
            Some((2_500_000, 10_000_000))
        );
        // Without a provider any row of the name counts, and a known prefix is one.
        assert!(t.model_info("claude-opus-4-6", None).is_some());
        assert!(t.model_info("gemini/gemini-2.5-pro", None).is_some());
        assert!(t.model_info("anthropic/claude-opus-4-6", None).is_some());
    }

    #[test]
    fn added_prices_replace_builtin_rows() {
        let mut t = PriceTable::builtin();
        let n = t.len();
        t.insert(
            "gpt-4o",
            ModelPrice {
                input: 1,
                provider: Some("openai".into()),
                ..ModelPrice::default()
            },
        );
        t.insert("My-Model", ModelPrice::default());
        assert_eq!(t.len(), n + 1);
        assert_eq!(t.get("gpt-4o").unwrap().input, 1);
        assert!(t.model_info("my-model", Some("openai")).is_some());
        let mut file = PriceTable::empty();
        file.insert("only-here", ModelPrice::default());
        assert!(file.get("gpt-4o").is_none());
        assert_eq!(file.len(), 1);
    }

    #[test]
    fn name_stripping() {
        assert_eq!(strip_date("gpt-4o-2024-08-06"), "gpt-4o");
        assert_eq!(strip_date("gpt-4o-24-08-06"), "gpt-4o-24-08-06");
        assert_eq!(
            strip_trailing_number("gemini-1.5-pro-002"),
            "gemini-1.5-pro"
        );
        assert_eq!(strip_trailing_number("gemini-2.5-pro"), "gemini-2.5-pro");
        assert_eq!(
            strip_fine_tune("ft:gpt-3.5-turbo:org:suffix:id"),
            "ft:gpt-3.5-turbo"
        );
        assert_eq!(strip_fine_tune("ft:gpt-3.5-turbo"), "ft:gpt-3.5-turbo");
        assert_eq!(
            bedrock_base_model("us-east-1/us.anthropic.claude-x-v1:0"),
            "anthropic.claude-x-v1:0"
        );
        assert_eq!(
            bedrock_base_model("anthropic.claude-x"),
            "anthropic.claude-x"
        );
    }

    #[test]
    fn usd_strings() {
        assert_eq!(nanos_to_usd_string(0), "0.0");
        assert_eq!(nanos_to_usd_string(7_500_000), "0.0075");
        assert_eq!(nanos_to_usd_string(1_000_000_001), "1.000000001");
        assert_eq!(usd_per_token_to_rate(2.5e-6), Some(2_500_000));
        assert_eq!(usd_per_token_to_rate(-1.0), None);
    }
}
