//! The built-in price table: every chat, completion, embedding and responses model of LiteLLM's
//! public price list, generated into `prices.tsv` by `scripts/gen_prices.py` (run it again when
//! the list changes; the file says which columns it holds).
//!
//! Rates are pico-USD (1e-12 USD) per token, written as integers so that no float ever touches
//! money. The text is embedded and indexed once (name to its line); a row becomes a
//! [`ModelPrice`] only when it is looked up, so the resident cost is an index of borrowed
//! strings rather than thousands of parsed prices.

use std::collections::HashMap;
use std::sync::LazyLock;

use super::ModelPrice;

const TSV: &str = include_str!("prices.tsv");

/// The number of tab-separated columns after the name.
const COLUMNS: usize = 15;

pub(crate) static INDEX: LazyLock<Index> = LazyLock::new(|| Index::build(TSV));

pub(crate) struct Index {
    /// Name to the rest of its line.
    rows: HashMap<&'static str, &'static str>,
    /// Lower-cased names of rows whose names have capitals, for LiteLLM's case-insensitive
    /// second try.
    folded: HashMap<String, &'static str>,
}

impl Index {
    fn build(text: &'static str) -> Index {
        let mut rows = HashMap::with_capacity(4096);
        let mut folded = HashMap::new();
        for line in text.lines() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((name, rest)) = line.split_once('\t') else {
                continue;
            };
            rows.insert(name, rest);
            if name.bytes().any(|b| b.is_ascii_uppercase()) {
                folded.insert(name.to_ascii_lowercase(), name);
            }
        }
        Index { rows, folded }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// The row's own name for `name`: exactly, else ignoring ASCII case.
    pub fn key(&self, name: &str) -> Option<&'static str> {
        if let Some((k, _)) = self.rows.get_key_value(name) {
            return Some(k);
        }
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            let lower = name.to_ascii_lowercase();
            if let Some((k, _)) = self.rows.get_key_value(lower.as_str()) {
                return Some(k);
            }
            return self.folded.get(&lower).copied();
        }
        self.folded.get(name).copied()
    }

    /// The price of the row named exactly `key`.
    pub fn price(&self, key: &str) -> Option<ModelPrice> {
        self.rows.get(key).and_then(|rest| parse_row(rest))
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.rows.keys().copied()
    }
}

/// One line after its name; `None` when it is malformed (a unit test holds every row to it).
fn parse_row(rest: &str) -> Option<ModelPrice> {
    let f: Vec<&str> = rest.split('\t').collect();
    if f.len() != COLUMNS {
        return None;
    }
    let text = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let num = |s: &str| -> Option<Option<u64>> {
        if s.is_empty() {
            Some(None)
        } else {
            s.parse().ok().map(Some)
        }
    };
    Some(ModelPrice {
        provider: text(f[0]),
        mode: text(f[1]),
        input: num(f[2])?.unwrap_or(0),
        output: num(f[3])?.unwrap_or(0),
        cache_read: num(f[4])?,
        cache_creation: num(f[5])?,
        reasoning: num(f[6])?,
        tier_tokens: num(f[7])?,
        input_above_tier: num(f[8])?,
        output_above_tier: num(f[9])?,
        cache_read_above_tier: num(f[10])?,
        cache_creation_above_tier: num(f[11])?,
        max_input_tokens: num(f[12])?,
        max_output_tokens: num(f[13])?,
        supports: super::parse_supports(f[14]),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_row_parses_and_names_are_unique() {
        let lines = TSV
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .count();
        assert_eq!(INDEX.len(), lines, "a name appears twice");
        for name in INDEX.names() {
            let p = INDEX.price(name);
            assert!(p.is_some(), "row {name} does not parse");
            let p = p.unwrap();
            assert!(p.provider.is_some(), "row {name} has no provider");
            assert!(
                matches!(
                    p.mode.as_deref(),
                    Some("chat" | "completion" | "embedding" | "responses")
                ),
                "row {name}: mode {:?}",
                p.mode
            );
        }
    }

    #[test]
    fn the_table_is_litellms_whole_list_at_published_prices() {
        // LiteLLM's list had 3,386 chat/completion/embedding/responses models in 2026; a table
        // an order of magnitude off was generated from the wrong file or filter.
        assert!((2_000..20_000).contains(&INDEX.len()), "{}", INDEX.len());
        let rates = |name: &str| {
            let p = INDEX.price(name).unwrap();
            (p.input, p.output, p.cache_read)
        };
        // pico-USD per token = USD per million tokens * 1e6.
        // OpenAI pricing page: gpt-4o $2.50 / $10.00 per 1M, cached input $1.25.
        assert_eq!(rates("gpt-4o"), (2_500_000, 10_000_000, Some(1_250_000)));
        // Azure OpenAI lists gpt-4o (global) at the same $2.50 / $10.00.
        assert_eq!(
            rates("azure/gpt-4o"),
            (2_500_000, 10_000_000, Some(1_250_000))
        );
        // OpenAI: gpt-4o-mini $0.15 / $0.60, cached $0.075.
        assert_eq!(rates("gpt-4o-mini"), (150_000, 600_000, Some(75_000)));
        // OpenAI: gpt-5 $1.25 / $10.00, cached $0.125.
        assert_eq!(rates("gpt-5"), (1_250_000, 10_000_000, Some(125_000)));
        // Anthropic pricing page: Claude Opus 4.6 $5 / $25 per MTok, cache hits $0.50,
        // 5-minute cache writes $6.25.
        assert_eq!(
            rates("claude-opus-4-6"),
            (5_000_000, 25_000_000, Some(500_000))
        );
        assert_eq!(
            INDEX.price("claude-opus-4-6").unwrap().cache_creation,
            Some(6_250_000)
        );
        // Anthropic: Claude Sonnet 4.5 $3 / $15.
        assert_eq!(rates("claude-sonnet-4-5").0, 3_000_000);
        assert_eq!(rates("claude-sonnet-4-5").1, 15_000_000);
        // Google AI Studio: Gemini 2.5 Pro $1.25 / $10 up to 200k prompt tokens, $2.50 / $15
        // above.
        let pro = INDEX.price("gemini/gemini-2.5-pro").unwrap();
        assert_eq!((pro.input, pro.output), (1_250_000, 10_000_000));
        assert_eq!(pro.tier_tokens, Some(200_000));
        assert_eq!(
            (pro.input_above_tier, pro.output_above_tier),
            (Some(2_500_000), Some(15_000_000))
        );
        // OpenAI: text-embedding-3-small $0.02 per 1M, text-embedding-3-large $0.13.
        assert_eq!(rates("text-embedding-3-small").0, 20_000);
        assert_eq!(rates("text-embedding-3-large").0, 130_000);
        let e = INDEX.price("text-embedding-3-small").unwrap();
        assert_eq!(e.mode.as_deref(), Some("embedding"));
        // OpenAI: gpt-3.5-turbo-instruct (completions) $1.50 / $2.00.
        let c = INDEX.price("gpt-3.5-turbo-instruct").unwrap();
        assert_eq!((c.input, c.output), (1_500_000, 2_000_000));
        assert_eq!(c.mode.as_deref(), Some("completion"));
        // Ollama's models are listed, free.
        assert_eq!(rates("ollama/codegeex4"), (0, 0, None));
    }

    #[test]
    fn lookups_fall_back_to_ignoring_case() {
        assert_eq!(INDEX.key("gpt-4o"), Some("gpt-4o"));
        assert_eq!(INDEX.key("GPT-4o"), Some("gpt-4o"));
        let capital = INDEX
            .names()
            .find(|n| n.bytes().any(|b| b.is_ascii_uppercase()))
            .unwrap();
        assert_eq!(INDEX.key(&capital.to_ascii_lowercase()), Some(capital));
        assert_eq!(INDEX.key("no-such-model-anywhere"), None);
    }
}
