//! Prices and the cost of one call.
//!
//! Money is integer: rates are pico-USD per token ([`Rate`]) and costs are nano-USD. A call's
//! cost is summed in pico-USD (u128, no overflow) and rounded once to nanos at the end.

mod builtin;
mod loader;

use std::collections::HashMap;
use std::sync::Arc;

use idlehands_wire::Usage;

pub use loader::{PriceLoadError, load_litellm_price_file, parse_litellm_price_json};

/// pico-USD (1e-12 USD) per token.
pub type Rate = u64;

/// nano-USD (1e-9 USD).
pub type Nanos = u64;

/// Prompt size above which the `_above_200k_tokens` rates apply to the whole call.
const TIER_200K: u64 = 200_000;

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
    pub input_above_200k: Option<Rate>,
    pub output_above_200k: Option<Rate>,
    pub cache_read_above_200k: Option<Rate>,
    pub max_input_tokens: Option<u64>,
    pub max_output_tokens: Option<u64>,
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
        p.input_above_200k = self.input_above_200k.or(p.input_above_200k);
        p.output_above_200k = self.output_above_200k.or(p.output_above_200k);
        p
    }
}

/// USD per token (as written in configs and price files) to pico-USD per token. Negative,
/// NaN and absurd values are refused by returning `None`.
pub fn usd_per_token_to_rate(usd: f64) -> Option<Rate> {
    if !usd.is_finite() || !(0.0..=1.0).contains(&usd) {
        return None;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some((usd * 1e12).round() as u64)
}

impl ModelPrice {
    /// LiteLLM's formula: uncached prompt at the input rate, cached tokens at the cache-read
    /// rate, cache writes at the cache-creation rate, completion at the output rate with
    /// reasoning tokens at the reasoning rate when one is set; the 200k tier switches the
    /// rates for the whole call when the prompt exceeds it.
    pub fn cost(&self, usage: &Usage) -> Nanos {
        let above = usage.prompt_tokens > TIER_200K;
        let input = if above {
            self.input_above_200k.unwrap_or(self.input)
        } else {
            self.input
        };
        let output = if above {
            self.output_above_200k.unwrap_or(self.output)
        } else {
            self.output
        };
        let cache_read = if above {
            self.cache_read_above_200k
                .or(self.cache_read)
                .unwrap_or(input)
        } else {
            self.cache_read.unwrap_or(input)
        };
        let cache_creation = self.cache_creation.unwrap_or(input);
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
        let pico: u128 = u128::from(uncached) * u128::from(input)
            + u128::from(cached) * u128::from(cache_read)
            + u128::from(creation) * u128::from(cache_creation)
            + u128::from(plain_out) * u128::from(output)
            + u128::from(reasoning_out) * u128::from(self.reasoning.unwrap_or(output));
        u64::try_from((pico + 500) / 1000).unwrap_or(u64::MAX)
    }
}

/// Prices by model name (`gpt-4o`, `gemini/gemini-2.5-pro`, ...).
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    models: HashMap<String, Arc<ModelPrice>>,
}

impl PriceTable {
    pub fn empty() -> Self {
        Self::default()
    }

    /// Our built-in table (see `builtin.rs`).
    pub fn builtin() -> Self {
        let mut t = Self::default();
        for r in builtin::ROWS {
            t.insert(
                r.0,
                ModelPrice {
                    provider: Some(r.1.to_string()),
                    mode: Some(r.2.to_string()),
                    input: r.3,
                    output: r.4,
                    cache_read: r.5,
                    cache_creation: r.6,
                    reasoning: r.7,
                    input_above_200k: r.8,
                    output_above_200k: r.9,
                    cache_read_above_200k: r.10,
                    max_input_tokens: r.11,
                    max_output_tokens: r.12,
                },
            );
        }
        t
    }

    pub fn insert(&mut self, name: &str, price: ModelPrice) {
        self.models.insert(name.to_string(), Arc::new(price));
    }

    /// Entries of `other` replace ours.
    pub fn merge(&mut self, other: PriceTable) {
        self.models.extend(other.models);
    }

    pub fn len(&self) -> usize {
        self.models.len()
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<ModelPrice>> {
        self.models.get(name)
    }

    /// Look a deployment's model up as LiteLLM does: the full `provider/model` name first,
    /// then the bare model name.
    pub fn lookup(&self, model: &str) -> Option<&Arc<ModelPrice>> {
        if let Some(p) = self.models.get(model) {
            return Some(p);
        }
        let (_, bare) = model.split_once('/')?;
        self.models.get(bare)
    }
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
    use super::*;
    use idlehands_wire::openai::{CompletionTokensDetails, PromptTokensDetails};

    #[test]
    fn plain_cost_is_exact_in_nanos() {
        let t = PriceTable::builtin();
        let p = t.lookup("openai/gpt-4o").cloned().unwrap_or_default();
        // 1000 * 2.5e-6 + 500 * 1e-5 = 0.0025 + 0.005 = 0.0075 USD
        assert_eq!(p.cost(&Usage::new(1000, 500)), 7_500_000);
    }

    #[test]
    fn cached_and_cache_creation_tokens_use_their_rates() {
        let t = PriceTable::builtin();
        let p = t.get("claude-opus-4-6").cloned().unwrap_or_default();
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
            input_above_200k: Some(10_000_000),
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
    }

    #[test]
    fn overrides_replace_only_what_they_set() {
        let t = PriceTable::builtin();
        let o = PriceOverride {
            input: Some(1),
            ..PriceOverride::default()
        };
        let p = o.apply(t.get("gpt-4o").map(AsRef::as_ref));
        assert_eq!(p.input, 1);
        assert_eq!(p.output, 10_000_000);
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
