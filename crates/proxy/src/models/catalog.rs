//! What `/model/info`, `/v2/model/info` and `/model_group/info` show: every deployment as
//! configured (secrets redacted), with what the price map knows of it. Built with the router,
//! so an answer never mixes two model lists.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::ApiModel;
use super::secrets::redact_params;
use super::wildcards;
use crate::config::provider_of;
use crate::config::{CostFields, LitellmParams, ModelInfo, ProxyConfig};
use crate::pricing::{ModelPrice, PriceTable, Rate};
use crate::providers::{Deployment, deployment_id, upstream_model};
use crate::router::{Router, team_scope};

/// One deployment as listed.
#[derive(Debug, Clone)]
pub struct CatalogEntry {
    pub id: String,
    pub model_name: String,
    /// `litellm_params`, redacted.
    pub params: Value,
    /// `model_info` as configured, with `id` and `db_model`.
    pub info: Value,
    pub access_groups: Vec<String>,
    /// Added over the API (kept in the store), not from config.yaml.
    pub db_model: bool,
    pub provider: String,
    pub upstream_model: String,
    /// The price the router uses (config overrides applied); `None` when unknown.
    pub price: Option<ModelPrice>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub mode: Option<String>,
    /// `model_name` has a `*`.
    pub wildcard: bool,
    /// The team it belongs to and the name the team calls it by ([`team_scope`]).
    pub team: Option<(String, String)>,
    /// A wildcard's known models as `/model/info` lists them, each priced as that model
    /// (see `wildcards`); empty for other deployments.
    pub info_expansion: Vec<CatalogEntry>,
    /// The same as `/v1/models` and `/model_group/info` list them.
    pub listed_expansion: Vec<CatalogEntry>,
}

/// Every deployment, in model-list order, plus the stored ones as loaded.
#[derive(Debug, Default)]
pub struct Catalog {
    pub entries: Vec<CatalogEntry>,
    /// Ids of the config's deployments (not editable over the API).
    pub config_ids: HashSet<String>,
    pub api: Vec<ApiModel>,
}

impl Catalog {
    /// `cfg.file.model_list` is the whole list; its first `from_config` entries came from
    /// config.yaml, the rest are `api` in order.
    pub(crate) fn build(
        cfg: &ProxyConfig,
        from_config: usize,
        api: Vec<ApiModel>,
        router: &Router,
        prices: &PriceTable,
    ) -> Catalog {
        let deployments: HashMap<&str, &Arc<Deployment>> =
            router.deployments().map(|d| (d.id.as_str(), d)).collect();
        let mut entries = Vec::with_capacity(cfg.file.model_list.len());
        let mut config_ids = HashSet::new();
        for (i, entry) in cfg.file.model_list.iter().enumerate() {
            let id = deployment_id(i, entry);
            let stored = i.checked_sub(from_config).and_then(|k| api.get(k));
            let (params, mut info) = match stored {
                Some(m) => (redact_params(&m.params), m.info.clone()),
                None => {
                    config_ids.insert(id.clone());
                    (
                        redact_params(&params_json(&entry.litellm_params)),
                        info_json(&entry.model_info),
                    )
                }
            };
            if !info.is_object() {
                info = json!({});
            }
            info["id"] = Value::String(id.clone());
            info["db_model"] = Value::Bool(stored.is_some());
            let p = &entry.litellm_params;
            let wildcard = entry.model_name.contains('*');
            let (provider, upstream, price, mode) = match deployments.get(id.as_str()) {
                Some(d) if !wildcard => (
                    d.provider.clone(),
                    d.upstream_model.clone(),
                    d.price.clone(),
                    d.mode.clone(),
                ),
                _ => {
                    let provider = provider_of(p);
                    let upstream = upstream_model(p, &provider);
                    let price = prices
                        .get(&p.model)
                        .or_else(|| prices.get(&upstream))
                        .map(|p| (*p).clone());
                    let mode = entry
                        .model_info
                        .mode
                        .clone()
                        .or_else(|| price.as_ref().and_then(|p| p.mode.clone()));
                    (provider, upstream, price, mode)
                }
            };
            let mut e = CatalogEntry {
                id,
                model_name: entry.model_name.clone(),
                params,
                info,
                access_groups: entry.model_info.access_groups.clone(),
                db_model: stored.is_some(),
                provider,
                upstream_model: upstream,
                price,
                rpm: p.rpm,
                tpm: p.tpm,
                mode,
                wildcard,
                team: team_scope(entry).map(|(t, n)| (t.to_string(), n.to_string())),
                info_expansion: Vec::new(),
                listed_expansion: Vec::new(),
            };
            if wildcard {
                let expand = |pattern: &str| -> Vec<CatalogEntry> {
                    wildcards::known_models(pattern, &p.model, prices)
                        .iter()
                        .map(|name| e.expanded(name, prices))
                        .collect()
                };
                let listed = expand(&entry.model_name);
                let info = match wildcards::info_pattern(&entry.model_name, &p.model) {
                    Some(pattern) if pattern != entry.model_name => expand(pattern),
                    _ => listed.clone(),
                };
                e.listed_expansion = listed;
                e.info_expansion = info;
            }
            entries.push(e);
        }
        Catalog {
            entries,
            config_ids,
            api,
        }
    }

    pub fn by_id(&self, id: &str) -> Option<&CatalogEntry> {
        self.entries.iter().find(|e| e.id == id)
    }

    /// The stored deployment `id`, as loaded.
    pub fn api_model(&self, id: &str) -> Option<&ApiModel> {
        self.api
            .iter()
            .find(|m| m.entry.model_info.id.as_deref() == Some(id))
    }
}

/// What the price list says of a model, under LiteLLM's model-info names: its prices (USD per
/// token), token limits and `supports_*` flags.
pub(crate) fn price_fields(p: &ModelPrice, out: &mut Map<String, Value>) {
    out.insert("input_cost_per_token".into(), json!(usd(p.input)));
    out.insert("output_cost_per_token".into(), json!(usd(p.output)));
    let optional = [
        ("cache_read_input_token_cost", p.cache_read),
        ("cache_creation_input_token_cost", p.cache_creation),
        ("output_cost_per_reasoning_token", p.reasoning),
    ];
    for (name, rate) in optional {
        if let Some(r) = rate {
            out.insert(name.into(), json!(usd(r)));
        }
    }
    out.insert("max_input_tokens".into(), json!(p.max_input_tokens));
    out.insert("max_output_tokens".into(), json!(p.max_output_tokens));
    out.insert(
        "max_tokens".into(),
        json!(p.max_output_tokens.or(p.max_input_tokens)),
    );
    for (name, v) in &p.supports {
        out.insert(format!("supports_{name}"), json!(v));
    }
}

/// pico-USD per token as USD per token.
pub fn usd(rate: Rate) -> f64 {
    rate as f64 / 1e12
}

/// The capability flags LiteLLM's model info always carries (`null` when the price map does
/// not say); others appear when the map sets them.
pub(crate) const SHOWN_SUPPORTS: [&str; 16] = [
    "system_messages",
    "response_schema",
    "vision",
    "function_calling",
    "tool_choice",
    "assistant_prefill",
    "prompt_caching",
    "audio_input",
    "audio_output",
    "pdf_input",
    "embedding_image_input",
    "native_streaming",
    "web_search",
    "url_context",
    "reasoning",
    "computer_use",
];

impl CatalogEntry {
    /// This wildcard deployment as the model `name` it serves: the pattern's `*` filled in
    /// from `name`, priced as that model.
    fn expanded(&self, name: &str, prices: &PriceTable) -> CatalogEntry {
        let pattern = self
            .params
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("");
        let concrete = match self.model_name.split_once('*') {
            Some((head, tail)) => name
                .strip_prefix(head)
                .and_then(|rest| rest.strip_suffix(tail))
                .map_or_else(
                    || name.to_string(),
                    |captured| pattern.replace('*', captured),
                ),
            None => name.to_string(),
        };
        let (provider, upstream) = match concrete.split_once('/') {
            Some((lead, rest)) if crate::pricing::is_known_provider(lead) => {
                (lead.to_string(), rest.to_string())
            }
            _ => (self.provider.clone(), concrete.clone()),
        };
        let price = prices
            .model_info(&upstream, Some(&provider))
            .map(|p| (*p).clone());
        let mut params = self.params.clone();
        if let Value::Object(m) = &mut params {
            m.insert("model".into(), Value::String(name.to_string()));
        }
        CatalogEntry {
            model_name: name.to_string(),
            params,
            mode: price.as_ref().and_then(|p| p.mode.clone()),
            provider,
            upstream_model: upstream,
            price,
            wildcard: false,
            info_expansion: Vec::new(),
            listed_expansion: Vec::new(),
            ..self.clone()
        }
    }

    /// The name a listing shows: a team's deployment by its public name, as LiteLLM's
    /// `_translate_model_name_for_response` shows it.
    pub fn shown_name(&self) -> &str {
        match &self.team {
            Some((team, public)) if self.model_name.starts_with(&format!("model_name_{team}_")) => {
                public
            }
            _ => &self.model_name,
        }
    }

    /// LiteLLM's `/model/info` row: `model_info` enriched with what the price map knows,
    /// fields the config set winning.
    pub fn to_json(&self) -> Value {
        let mut info = match &self.info {
            Value::Object(m) => m.clone(),
            _ => Map::new(),
        };
        let mut known = Map::new();
        known.insert("key".into(), json!(self.upstream_model));
        known.insert("litellm_provider".into(), json!(self.provider));
        known.insert("mode".into(), json!(self.mode));
        if let Some(p) = &self.price {
            for name in SHOWN_SUPPORTS {
                known.insert(format!("supports_{name}"), Value::Null);
            }
            price_fields(p, &mut known);
        } else {
            for k in [
                "input_cost_per_token",
                "output_cost_per_token",
                "max_input_tokens",
                "max_output_tokens",
                "max_tokens",
            ] {
                known.insert(k.into(), Value::Null);
            }
        }
        known.insert(
            "supported_openai_params".into(),
            json!(self.supported_params()),
        );
        for (k, v) in known {
            let unset = info.get(&k).is_none_or(Value::is_null);
            if unset {
                info.insert(k, v);
            }
        }
        json!({
            "model_name": self.shown_name(),
            "litellm_params": self.params,
            "model_info": Value::Object(info),
        })
    }

    /// The OpenAI request fields this deployment takes; `None` when not known.
    pub fn supported_params(&self) -> Option<Vec<&'static str>> {
        crate::providers::params::supported_params(&self.provider, &self.upstream_model)
            .map(<[&str]>::to_vec)
    }
}

fn put<T: serde::Serialize>(m: &mut Map<String, Value>, k: &str, v: &Option<T>) {
    if let Some(v) = v {
        m.insert(k.to_string(), json!(v));
    }
}

fn put_costs(m: &mut Map<String, Value>, c: &CostFields) {
    put(m, "input_cost_per_token", &c.input_cost_per_token);
    put(m, "output_cost_per_token", &c.output_cost_per_token);
    put(
        m,
        "cache_read_input_token_cost",
        &c.cache_read_input_token_cost,
    );
    put(
        m,
        "cache_creation_input_token_cost",
        &c.cache_creation_input_token_cost,
    );
    put(
        m,
        "output_cost_per_reasoning_token",
        &c.output_cost_per_reasoning_token,
    );
    put(
        m,
        "input_cost_per_token_above_200k_tokens",
        &c.input_cost_per_token_above_200k_tokens,
    );
    put(
        m,
        "output_cost_per_token_above_200k_tokens",
        &c.output_cost_per_token_above_200k_tokens,
    );
    put(m, "input_cost_per_second", &c.input_cost_per_second);
    put(m, "output_cost_per_second", &c.output_cost_per_second);
}

/// A config deployment's `litellm_params` as JSON (unset fields left out).
pub(crate) fn params_json(p: &LitellmParams) -> Value {
    let mut m = Map::new();
    m.insert("model".into(), json!(p.model));
    put(&mut m, "api_base", &p.api_base);
    put(&mut m, "api_key", &p.api_key.as_ref().map(|s| s.expose()));
    put(&mut m, "api_version", &p.api_version);
    put(&mut m, "organization", &p.organization);
    put(&mut m, "custom_llm_provider", &p.custom_llm_provider);
    put(&mut m, "timeout", &p.timeout);
    put(&mut m, "stream_timeout", &p.stream_timeout);
    put(&mut m, "max_retries", &p.max_retries);
    put(&mut m, "mock_response", &p.mock_response);
    put(&mut m, "rpm", &p.rpm);
    put(&mut m, "tpm", &p.tpm);
    put(&mut m, "weight", &p.weight);
    put(&mut m, "order", &p.order);
    if !p.tags.is_empty() {
        m.insert("tags".into(), json!(p.tags));
    }
    if !p.tag_regex.is_empty() {
        m.insert("tag_regex".into(), json!(p.tag_regex));
    }
    put(&mut m, "max_budget", &p.max_budget);
    put(&mut m, "budget_duration", &p.budget_duration);
    put(&mut m, "drop_params", &p.drop_params);
    put(&mut m, "aws_region_name", &p.aws_region_name);
    put(
        &mut m,
        "aws_access_key_id",
        &p.aws_access_key_id.as_ref().map(|s| s.expose()),
    );
    put(
        &mut m,
        "aws_secret_access_key",
        &p.aws_secret_access_key.as_ref().map(|s| s.expose()),
    );
    put(
        &mut m,
        "aws_session_token",
        &p.aws_session_token.as_ref().map(|s| s.expose()),
    );
    put(
        &mut m,
        "litellm_credential_name",
        &p.litellm_credential_name,
    );
    put_costs(&mut m, &p.cost);
    for (k, v) in &p.extra {
        m.insert(k.clone(), v.clone());
    }
    Value::Object(m)
}

/// A config deployment's `model_info` as JSON.
pub(crate) fn info_json(i: &ModelInfo) -> Value {
    let mut m = Map::new();
    put(&mut m, "id", &i.id);
    put(&mut m, "base_model", &i.base_model);
    put(&mut m, "mode", &i.mode);
    if !i.access_groups.is_empty() {
        m.insert("access_groups".into(), json!(i.access_groups));
    }
    put(&mut m, "enable_tag_filtering", &i.enable_tag_filtering);
    put_costs(&mut m, &i.cost);
    for (k, v) in &i.extra {
        m.insert(k.clone(), v.clone());
    }
    Value::Object(m)
}
