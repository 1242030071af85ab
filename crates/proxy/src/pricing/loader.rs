//! Reads a price file in LiteLLM's `model_prices_and_context_window.json` format (one object
//! keyed by model name, USD-per-token floats). Entries or fields we cannot read are skipped, so
//! a newer file with new fields still loads.

use std::path::Path;

use serde_json::Value;

use super::{ModelPrice, PriceTable, usd_per_token_to_rate};

#[derive(Debug, thiserror::Error)]
pub enum PriceLoadError {
    #[error("price file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("price file {path}: not valid JSON: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
    #[error("price file {path}: expected a JSON object keyed by model name")]
    Shape { path: String },
}

pub fn load_litellm_price_file(path: &Path) -> Result<PriceTable, PriceLoadError> {
    let shown = path.display().to_string();
    let text = std::fs::read(path).map_err(|source| PriceLoadError::Read {
        path: shown.clone(),
        source,
    })?;
    let value: Value = serde_json::from_slice(&text).map_err(|source| PriceLoadError::Json {
        path: shown.clone(),
        source,
    })?;
    parse_litellm_price_json(&value).ok_or(PriceLoadError::Shape { path: shown })
}

/// `None` when the document is not an object.
pub fn parse_litellm_price_json(value: &Value) -> Option<PriceTable> {
    let obj = value.as_object()?;
    let mut table = PriceTable::empty();
    for (name, entry) in obj {
        if name == "sample_spec" {
            continue;
        }
        let Some(e) = entry.as_object() else { continue };
        let rate = |k: &str| {
            e.get(k)
                .and_then(Value::as_f64)
                .and_then(usd_per_token_to_rate)
        };
        let count = |k: &str| e.get(k).and_then(Value::as_u64);
        let text = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
        let tier = tier_of(e);
        let tiered = |prefix: &str| {
            tier.as_ref()
                .and_then(|(_, suffix)| rate(&format!("{prefix}_above_{suffix}_tokens")))
        };
        table.insert(
            name,
            ModelPrice {
                provider: text("litellm_provider"),
                mode: text("mode"),
                input: rate("input_cost_per_token").unwrap_or(0),
                output: rate("output_cost_per_token").unwrap_or(0),
                cache_read: rate("cache_read_input_token_cost"),
                cache_creation: rate("cache_creation_input_token_cost"),
                reasoning: rate("output_cost_per_reasoning_token"),
                tier_tokens: tier.as_ref().map(|(n, _)| *n),
                input_above_tier: tiered("input_cost_per_token"),
                output_above_tier: tiered("output_cost_per_token"),
                cache_read_above_tier: tiered("cache_read_input_token_cost"),
                cache_creation_above_tier: tiered("cache_creation_input_token_cost"),
                max_input_tokens: count("max_input_tokens"),
                max_output_tokens: count("max_output_tokens").or_else(|| count("max_tokens")),
                supports: e
                    .iter()
                    .filter_map(|(k, v)| {
                        Some((k.strip_prefix("supports_")?.to_string(), v.as_bool()?))
                    })
                    .collect(),
            },
        );
    }
    Some(table)
}

/// An entry's above-N-tokens tier from its `input_cost_per_token_above_<N>[k]_tokens` key:
/// the threshold and the `<N>[k]` spelling its other tier keys share. Entries have one tier;
/// were there several, the lowest is the one a prompt crosses first.
fn tier_of(e: &serde_json::Map<String, Value>) -> Option<(u64, String)> {
    e.keys()
        .filter_map(|k| {
            let spelled = k
                .strip_prefix("input_cost_per_token_above_")?
                .strip_suffix("_tokens")?;
            let (digits, scale) = match spelled.strip_suffix('k') {
                Some(d) => (d, 1000),
                None => (spelled, 1),
            };
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let n = digits.parse::<u64>().ok()?.checked_mul(scale)?;
            Some((n, spelled.to_string()))
        })
        .min()
}
