//! One deployment of the model list, with everything the request path needs precomputed: its
//! provider adapter, call parameters, prices and headers. Built from a config entry once (or
//! per wildcard expansion); the router groups deployments, the adapters call them.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use idlehands_routing::DeploymentSpec;
use idlehands_store::keygen::hash_key;

use super::Provider;
use super::params::CallParams;
use crate::config::{CostFields, LitellmParams, ModelEntry, ProxyConfig, Secret, provider_of};
use crate::pricing::audio::AudioPrice;
use crate::pricing::{CallPricing, ModelPrice, PriceOverride, PriceTable, usd_per_token_to_rate};

/// LiteLLM's default request timeout (seconds).
const DEFAULT_TIMEOUT_SECS: f64 = 6000.0;

/// The model name the provider expects: the provider prefix removed.
pub fn upstream_model(p: &LitellmParams, provider: &str) -> String {
    match p.model.split_once('/') {
        Some((prefix, rest)) if prefix == provider => rest.to_string(),
        _ => p.model.clone(),
    }
}

/// A deployment's id (`x-litellm-model-id`): `model_info.id`, else a hash of its place in the
/// model list, name, model and base URL (stable across restarts of one config).
pub fn deployment_id(i: usize, entry: &ModelEntry) -> String {
    let p = &entry.litellm_params;
    entry.model_info.id.clone().unwrap_or_else(|| {
        hash_key(&format!(
            "{i}\u{0}{}\u{0}{}\u{0}{}",
            entry.model_name,
            p.model,
            p.api_base.as_deref().unwrap_or("")
        ))
    })
}

/// One deployment, with everything the request path needs precomputed.
#[derive(Clone)]
pub struct Deployment {
    pub id: String,
    /// The model group (public name).
    pub model_name: String,
    /// `litellm_params.model` as written.
    pub model: String,
    pub provider: String,
    pub upstream_model: String,
    /// The base URL actually used (defaults filled in), for headers and records.
    pub api_base: Option<String>,
    pub api_key: Option<Secret>,
    /// `litellm_params.api_version` (Azure).
    pub api_version: Option<String>,
    pub timeout: Duration,
    pub stream_timeout: Duration,
    pub mock_response: Option<String>,
    /// Request fields, `extra_body`, headers and `drop_params` it adds to every call.
    pub params: CallParams,
    pub weight: f64,
    pub order: u32,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub mode: Option<String>,
    /// `model_info.access_groups`.
    pub access_groups: Vec<String>,
    /// The price known before the answer (budget reservations, limits); `None` when only the
    /// answer can tell.
    pub price: Option<ModelPrice>,
    /// What each call costs, once the answer names its model.
    pub pricing: Arc<CallPricing>,
    /// Audio calls' rates (per second transcribed, per character spoken).
    pub audio_price: AudioPrice,
    pub adapter: Arc<dyn Provider>,
    pub header_id: HeaderValue,
    pub header_group: HeaderValue,
    pub header_api_base: Option<HeaderValue>,
    /// Index in the router's routing table this deployment belongs to.
    pub slot: usize,
    /// What the routing crate knows of it.
    pub spec: DeploymentSpec,
    /// `max_parallel_requests` (or LiteLLM's stand-ins for it): calls in flight at once.
    pub parallel: Option<Arc<super::slots::ParallelSlots>>,
    /// Its provider's budget and its own (`crate::config::route_budgets`), each call on it
    /// counts against.
    pub route_budgets: Box<[idlehands_store::RouteBudget]>,
}

impl std::fmt::Debug for Deployment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployment")
            .field("id", &self.id)
            .field("model_name", &self.model_name)
            .field("model", &self.model)
            .field("api_base", &self.api_base)
            .finish_non_exhaustive()
    }
}

fn rate(v: Option<f64>) -> Option<u64> {
    v.and_then(usd_per_token_to_rate)
}

fn overrides(c: &CostFields) -> PriceOverride {
    PriceOverride {
        input: rate(c.input_cost_per_token),
        output: rate(c.output_cost_per_token),
        cache_read: rate(c.cache_read_input_token_cost),
        cache_creation: rate(c.cache_creation_input_token_cost),
        reasoning: rate(c.output_cost_per_reasoning_token),
        input_above_200k: rate(c.input_cost_per_token_above_200k_tokens),
        output_above_200k: rate(c.output_cost_per_token_above_200k_tokens),
    }
}

fn header(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// The URL without its query (LiteLLM strips it from `x-litellm-model-api-base`).
fn strip_query(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

fn secs(v: f64) -> Duration {
    Duration::try_from_secs_f64(v).unwrap_or(Duration::from_secs(6000))
}

impl Deployment {
    /// This deployment's upstream took longer than `limit` (the request timeout, or
    /// `stream_timeout` on a stream), as LiteLLM words it.
    pub(crate) fn timed_out(&self, limit: Duration) -> crate::error::ProxyError {
        crate::error::ProxyError::UpstreamTimeout {
            secs: limit.as_secs_f64(),
            model: self.model.clone(),
        }
    }

    /// The stand-in a pass-through route records, prices and limits its calls as.
    pub(crate) fn pass_through(entry: &ModelEntry, cfg: &ProxyConfig, prices: &PriceTable) -> Self {
        Self::build(usize::MAX, entry, cfg, prices)
    }

    pub(crate) fn build(
        i: usize,
        entry: &ModelEntry,
        cfg: &ProxyConfig,
        prices: &PriceTable,
    ) -> Self {
        let p = &entry.litellm_params;
        let provider = provider_of(p);
        let upstream_model = upstream_model(p, &provider);
        let api_base = if p.mock_response.is_some() {
            p.api_base.clone()
        } else {
            super::default_api_base(&provider, p.api_base.as_deref())
        };
        // `ssl_verify` (for an https upstream) and `force_ipv4` are the reqwest client's
        // settings; a plain-http server keeps the direct client whatever the TLS settings
        // (`SSL_CERT_FILE` is often set machine-wide).
        let plain_http = api_base
            .as_deref()
            .is_some_and(|b| b.trim_start().starts_with("http://"));
        let direct = (cfg.upstream_tls == crate::config::UpstreamTls::Verify || plain_http)
            && !cfg.force_ipv4;
        let adapter = super::adapter_for(
            &provider,
            p.mock_response.is_some(),
            api_base.as_deref(),
            p,
            direct,
        );
        let id = deployment_id(i, entry);
        let rs = &cfg.file.router_settings;
        let timeout = p
            .timeout
            .or(rs.timeout)
            .or(cfg.file.litellm_settings.request_timeout)
            .unwrap_or(DEFAULT_TIMEOUT_SECS);
        let stream_timeout = p.stream_timeout.or(rs.stream_timeout).unwrap_or(timeout);
        let weight = p
            .weight
            .or(p.rpm.map(|r| r as f64))
            .or(p.tpm.map(|t| t as f64))
            .unwrap_or(0.0);
        let over = overrides(&p.cost).or(&overrides(&entry.model_info.cost));
        let pricing = Arc::new(CallPricing::new(
            prices,
            &provider,
            &p.model,
            entry.model_info.base_model.as_deref(),
            &over,
            p.mock_response.is_some(),
        ));
        let price = pricing.before_answer().cloned();
        let mode = entry
            .model_info
            .mode
            .clone()
            .or_else(|| price.as_ref().and_then(|b| b.mode.clone()));
        let spec = DeploymentSpec {
            id: id.clone(),
            model_group: entry.model_name.clone(),
            weight: p.weight,
            rpm: p.rpm,
            tpm: p.tpm,
            order: p.order,
            max_input_tokens: price.as_ref().and_then(|p| p.max_input_tokens),
            tags: p.tags.clone(),
            tag_regex: p.tag_regex.clone(),
            tag_filtering: entry.model_info.enable_tag_filtering,
        };
        // The config check has already refused values that cannot be used.
        let params = super::params::from_litellm_params(
            p,
            super::params::supported_params(&provider, &upstream_model),
        )
        .unwrap_or_default();
        let audio_price = AudioPrice::for_deployment(
            &provider,
            entry
                .model_info
                .base_model
                .as_deref()
                .unwrap_or(&upstream_model),
            &[p.cost.audio(), entry.model_info.cost.audio()],
        );
        let parallel = super::slots::limit_of(
            p.max_parallel_requests,
            p.rpm,
            p.tpm,
            rs.extra
                .get("default_max_parallel_requests")
                .and_then(crate::config::loose_number)
                .filter(|n| *n >= 0.0)
                .map(|n| n.min(f64::from(u32::MAX)) as u32),
        )
        .map(|n| Arc::new(super::slots::ParallelSlots::new(n, &id, &entry.model_name)));
        // The config check has already refused budgets that cannot be enforced.
        let route_budgets: Box<[idlehands_store::RouteBudget]> = cfg
            .route_budgets
            .provider(&provider)
            .cloned()
            .into_iter()
            .chain(
                crate::config::route_budgets::of_deployment(p, &id)
                    .ok()
                    .flatten(),
            )
            .collect();
        Deployment {
            slot: 0,
            spec,
            parallel,
            route_budgets,
            header_id: header(&id),
            header_group: header(&entry.model_name),
            header_api_base: api_base.as_deref().map(|b| header(strip_query(b))),
            id,
            model_name: entry.model_name.clone(),
            model: p.model.clone(),
            provider,
            upstream_model,
            api_base,
            api_key: p.api_key.clone(),
            api_version: p.api_version.clone(),
            timeout: secs(timeout),
            stream_timeout: secs(stream_timeout),
            mock_response: p.mock_response.clone(),
            params,
            weight,
            order: p.order.unwrap_or(0),
            rpm: p.rpm,
            tpm: p.tpm,
            mode,
            access_groups: entry.model_info.access_groups.clone(),
            price,
            pricing,
            audio_price,
            adapter,
        }
    }
}
