//! Reloading the prices at run time (`POST /reload/model_cost_map`) and saying where they came
//! from (`GET /model/cost_map/source`), as LiteLLM does: its price list fetched from
//! `LITELLM_MODEL_COST_MAP_URL` (default: LiteLLM's file on GitHub), or with
//! `LITELLM_LOCAL_MODEL_COST_MAP=True` the copy built in. Unlike LiteLLM the gateway starts
//! from the built-in copy without fetching (it starts offline), so a fetch happens only when
//! an admin asks for one. A fetched list is laid over the built-in table, and
//! `model_cost_map_path`'s entries over both, as at start-up. A list that cannot be fetched,
//! read or trusted (fewer than half the built-in table's models) changes nothing.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{PriceTable, load_litellm_price_file, parse_litellm_price_json};
use std::path::PathBuf;

/// LiteLLM's `model_cost_map_url` default.
pub const DEFAULT_URL: &str =
    "https://raw.githubusercontent.com/BerriAI/litellm/main/model_prices_and_context_window.json";

/// A price list is a few MB; anything far larger is not one.
const MAX_BYTES: usize = 64 * 1024 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a reload takes prices from: `LITELLM_MODEL_COST_MAP_URL`, whether
/// `LITELLM_LOCAL_MODEL_COST_MAP` chose the built-in copy, and `model_cost_map_path`.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub url: Option<String>,
    pub local: bool,
    pub path: Option<PathBuf>,
}

/// Where the prices in use came from (LiteLLM's `/model/cost_map/source` fields).
#[derive(Debug, Clone, Serialize)]
pub struct Source {
    /// `local` (the built-in copy) or `remote` (fetched).
    pub source: &'static str,
    pub url: Option<String>,
    /// `LITELLM_LOCAL_MODEL_COST_MAP=True` chose the built-in copy.
    pub is_env_forced: bool,
    pub fallback_reason: Option<String>,
    pub loaded_at: DateTime<Utc>,
    pub etag: Option<String>,
    /// `model_cost_map_path`, when its entries are laid over the rest.
    pub overrides_path: Option<String>,
    pub model_count: usize,
}

impl Source {
    /// The prices a gateway starts with.
    pub fn at_start(prices: &PriceTable, origin: &Origin) -> Source {
        Source {
            source: "local",
            url: None,
            is_env_forced: origin.local,
            fallback_reason: None,
            loaded_at: Utc::now(),
            etag: None,
            overrides_path: origin.path.as_deref().map(|p| p.display().to_string()),
            model_count: prices.len(),
        }
    }
}

/// The prices as a reload finds them now, or why there are none (the current ones stay).
pub async fn load(
    client: &reqwest::Client,
    origin: &Origin,
) -> Result<(PriceTable, Source), String> {
    let mut prices = PriceTable::builtin();
    let builtin_count = prices.len();
    let mut source = Source::at_start(&prices, origin);
    if !source.is_env_forced {
        let url = origin
            .url
            .clone()
            .unwrap_or_else(|| DEFAULT_URL.to_string());
        let (fetched, etag) = fetch(client, &url).await?;
        if fetched.len() < builtin_count / 2 {
            return Err(format!(
                "the list from {url} has {} models, fewer than half of the {builtin_count} built in",
                fetched.len()
            ));
        }
        prices.merge(fetched);
        source.source = "remote";
        source.url = Some(url);
        source.etag = etag;
    }
    if let Some(p) = &origin.path {
        prices.merge(load_litellm_price_file(p).map_err(|e| e.to_string())?);
    }
    source.model_count = prices.len();
    source.loaded_at = Utc::now();
    Ok((prices, source))
}

async fn fetch(
    client: &reqwest::Client,
    url: &str,
) -> Result<(PriceTable, Option<String>), String> {
    let get = async {
        let resp = client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("{url} answered {status}"));
        }
        if resp.content_length().is_some_and(|n| n > MAX_BYTES as u64) {
            return Err(format!("{url}: the answer is over {MAX_BYTES} bytes"));
        }
        let etag = resp
            .headers()
            .get(http::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp.bytes().await.map_err(|e| format!("{url}: {e}"))?;
        if body.len() > MAX_BYTES {
            return Err(format!("{url}: the answer is over {MAX_BYTES} bytes"));
        }
        Ok((body, etag))
    };
    let (body, etag) = tokio::time::timeout(FETCH_TIMEOUT, get)
        .await
        .map_err(|_| format!("{url} did not answer within {}s", FETCH_TIMEOUT.as_secs()))??;
    let value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| format!("{url}: not valid JSON: {e}"))?;
    let table = parse_litellm_price_json(&value)
        .ok_or_else(|| format!("{url}: expected a JSON object keyed by model name"))?;
    Ok((table, etag))
}
