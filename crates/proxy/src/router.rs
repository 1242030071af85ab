//! Model groups and deployments, built once from the config. Which deployment takes an
//! attempt, retries, fallbacks and cooldowns are the routing crate's (`idlehands_routing`):
//! every exact deployment is registered with one [`idlehands_routing::Router`] in a
//! [`RoutingTable`], whose slot numbers index back into the deployments here. Wildcard groups
//! are expanded on first use, each into a small table of its own.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use parking_lot::RwLock;
use rand::Rng;

use idlehands_clock::Clock;
use idlehands_routing::{DeploymentSpec, RouterSettings};

use crate::config::{LitellmParams, ModelEntry, ProxyConfig, Secret};
use crate::pricing::{CallPricing, ModelPrice, PriceOverride, PriceTable, usd_per_token_to_rate};
use crate::providers::{self, Provider};

/// LiteLLM's default request timeout (seconds).
const DEFAULT_TIMEOUT_SECS: f64 = 6000.0;

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

/// The provider of a deployment: `custom_llm_provider`, else the model's known prefix, else
/// the built-in price table's provider for a bare name, else `openai`.
pub fn provider_of(p: &LitellmParams) -> String {
    if let Some(c) = &p.custom_llm_provider {
        return c.clone();
    }
    if let Some((prefix, _)) = p.model.split_once('/')
        && KNOWN_PROVIDERS.contains(&prefix)
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
        crate::auth::hash_key(&format!(
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
    pub params: providers::params::CallParams,
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
    pub audio_price: crate::pricing::audio::AudioPrice,
    pub adapter: Arc<dyn Provider>,
    pub header_id: HeaderValue,
    pub header_group: HeaderValue,
    pub header_api_base: Option<HeaderValue>,
    /// Index in the [`RoutingTable`] this deployment belongs to.
    pub slot: usize,
    /// What the routing crate knows of it.
    pub spec: DeploymentSpec,
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

fn overrides(c: &crate::config::CostFields) -> PriceOverride {
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
    /// The stand-in a pass-through route records, prices and limits its calls as.
    pub(crate) fn pass_through(entry: &ModelEntry, cfg: &ProxyConfig, prices: &PriceTable) -> Self {
        Self::build(usize::MAX, entry, cfg, prices)
    }

    fn build(i: usize, entry: &ModelEntry, cfg: &ProxyConfig, prices: &PriceTable) -> Self {
        let p = &entry.litellm_params;
        let provider = provider_of(p);
        let upstream_model = upstream_model(p, &provider);
        let api_base = if p.mock_response.is_some() {
            p.api_base.clone()
        } else {
            providers::default_api_base(&provider, p.api_base.as_deref())
        };
        let adapter =
            providers::adapter_for(&provider, p.mock_response.is_some(), api_base.as_deref(), p);
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
        };
        // The config check has already refused values that cannot be used.
        let params = providers::params::from_litellm_params(
            p,
            providers::params::supported_params(&provider, &upstream_model),
        )
        .unwrap_or_default();
        let audio_price = crate::pricing::audio::AudioPrice::for_deployment(
            &provider,
            entry
                .model_info
                .base_model
                .as_deref()
                .unwrap_or(&upstream_model),
            &[&p.cost, &entry.model_info.cost],
        );
        Deployment {
            slot: 0,
            spec,
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

/// Deployments registered with one routing-crate router; `deployments[pick.index()]` is the
/// deployment a [`idlehands_routing::Pick`] names.
pub struct RoutingTable {
    pub router: idlehands_routing::Router,
    pub deployments: Box<[Arc<Deployment>]>,
}

impl std::fmt::Debug for RoutingTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoutingTable")
            .field("router", &self.router)
            .finish_non_exhaustive()
    }
}

impl RoutingTable {
    /// Number the deployments by position and register them, with state shared through
    /// Redis when a client is given (and a runtime is there to sync it).
    fn new(
        mut deployments: Vec<Deployment>,
        settings: RouterSettings,
        redis: Option<redis::Client>,
        clock: &Arc<dyn Clock>,
    ) -> RoutingTable {
        for (i, d) in deployments.iter_mut().enumerate() {
            d.slot = i;
        }
        let specs: Vec<DeploymentSpec> = deployments.iter().map(|d| d.spec.clone()).collect();
        let shared = redis.and_then(|client| {
            let ids = specs.iter().map(|s| s.id.clone()).collect();
            crate::router_redis::RedisRouterState::start(client, ids, clock.clone())
        });
        let state: Arc<dyn idlehands_routing::RouterState> = match shared {
            Some(state) => Arc::new(state),
            None => Arc::new(idlehands_routing::InMemoryState::new(specs.len())),
        };
        let router = idlehands_routing::Router::with_state(specs, settings, state, clock.clone());
        RoutingTable {
            router,
            deployments: deployments.into_iter().map(Arc::new).collect(),
        }
    }
}

#[derive(Debug)]
pub struct ModelGroup {
    pub name: String,
    pub deployments: Vec<Arc<Deployment>>,
    /// Indices of the lowest-`order` tier, which serves traffic.
    primary: Vec<usize>,
    /// The model access groups of its deployments, each once.
    pub access_groups: Vec<String>,
    /// Where attempts for this group are planned; fallback targets must be in the same table.
    pub table: Arc<RoutingTable>,
}

impl ModelGroup {
    /// LiteLLM's simple-shuffle over the primary tier, without reserving anything: a first
    /// guess for callers that make one attempt. Retrying callers plan with [`Self::table`].
    pub fn pick(&self) -> &Arc<Deployment> {
        let tier = &self.primary;
        let idx = if tier.len() == 1 {
            tier[0]
        } else {
            let total: f64 = tier.iter().map(|i| self.deployments[*i].weight).sum();
            let mut rng = rand::rng();
            if total > 0.0 {
                let mut r = rng.random::<f64>() * total;
                let mut chosen = tier[tier.len() - 1];
                for i in tier {
                    r -= self.deployments[*i].weight;
                    if r < 0.0 {
                        chosen = *i;
                        break;
                    }
                }
                chosen
            } else {
                tier[rng.random_range(0..tier.len())]
            }
        };
        &self.deployments[idx]
    }

    pub fn owned_by(&self) -> &str {
        self.deployments
            .first()
            .map(|d| d.provider.as_str())
            .unwrap_or("openai")
    }
}

/// A wildcard deployment (`model_name: "openai/*"`, `model: "openai/*"`): any requested model
/// matching `prefix*suffix` is served by it, `*` in its `model` replaced by the matched part.
struct Pattern {
    prefix: String,
    suffix: String,
    index: usize,
    entry: ModelEntry,
}

impl Pattern {
    fn capture<'m>(&self, model: &'m str) -> Option<&'m str> {
        if model.len() < self.prefix.len() + self.suffix.len() {
            return None;
        }
        model
            .strip_prefix(self.prefix.as_str())?
            .strip_suffix(self.suffix.as_str())
    }
}

/// Expanded wildcard groups kept at most this many; past it the cache starts over.
const WILDCARD_CACHE_MAX: usize = 10_000;

/// All model groups, in config order.
#[derive(Default)]
pub struct Router {
    groups: Vec<Arc<ModelGroup>>,
    by_name: HashMap<String, usize>,
    aliases: HashMap<String, String>,
    patterns: Vec<Pattern>,
    /// What building a wildcard deployment needs.
    config: Option<Arc<ProxyConfig>>,
    prices: PriceTable,
    expanded: RwLock<HashMap<String, Arc<ModelGroup>>>,
    /// Every exact deployment, registered with the routing crate.
    table: Option<Arc<RoutingTable>>,
    settings: RouterSettings,
    /// What cooldowns and per-minute limits are judged by, wildcard groups' included.
    clock: TableClock,
}

/// The system's clock unless the gateway was given another (tests move a manual one).
#[derive(Clone)]
struct TableClock(Arc<dyn Clock>);

impl Default for TableClock {
    fn default() -> Self {
        TableClock(Arc::new(idlehands_clock::SystemClock))
    }
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("groups", &self.groups)
            .field("patterns", &self.patterns.len())
            .finish_non_exhaustive()
    }
}

fn group_of(name: &str, deployments: Vec<Arc<Deployment>>, table: Arc<RoutingTable>) -> ModelGroup {
    let lowest = deployments.iter().map(|d| d.order).min().unwrap_or(0);
    let primary = (0..deployments.len())
        .filter(|i| deployments[*i].order == lowest)
        .collect();
    let mut access_groups: Vec<String> = Vec::new();
    for g in deployments.iter().flat_map(|d| d.access_groups.iter()) {
        if !access_groups.contains(g) {
            access_groups.push(g.clone());
        }
    }
    ModelGroup {
        name: name.to_string(),
        deployments,
        primary,
        access_groups,
        table,
    }
}

impl Router {
    pub fn build(cfg: &ProxyConfig, prices: &PriceTable, clock: Arc<dyn Clock>) -> Self {
        let mut r = Router {
            settings: cfg.routing.clone(),
            clock: TableClock(clock),
            ..Router::default()
        };
        let mut grouped: Vec<(String, Vec<usize>)> = Vec::new();
        let mut all = Vec::new();
        for (i, entry) in cfg.file.model_list.iter().enumerate() {
            if let Some((prefix, suffix)) = entry.model_name.split_once('*') {
                r.patterns.push(Pattern {
                    prefix: prefix.to_string(),
                    suffix: suffix.to_string(),
                    index: i,
                    entry: entry.clone(),
                });
                continue;
            }
            let slot = all.len();
            all.push(Deployment::build(i, entry, cfg, prices));
            match r.by_name.get(&entry.model_name) {
                Some(idx) => grouped[*idx].1.push(slot),
                None => {
                    r.by_name.insert(entry.model_name.clone(), grouped.len());
                    grouped.push((entry.model_name.clone(), vec![slot]));
                }
            }
        }
        let redis = crate::router_redis::redis_url(&cfg.file.router_settings).and_then(|url| {
            redis::Client::open(url)
                .map_err(|e| tracing::warn!(error = %e, "router_settings: unusable Redis URL; router state stays local"))
                .ok()
        });
        let table = Arc::new(RoutingTable::new(
            all,
            r.settings.clone(),
            redis,
            &r.clock.0,
        ));
        r.groups = grouped
            .into_iter()
            .map(|(name, slots)| {
                let ds = slots
                    .iter()
                    .map(|s| table.deployments[*s].clone())
                    .collect();
                Arc::new(group_of(&name, ds, table.clone()))
            })
            .collect();
        r.table = Some(table);
        for (alias, target) in &cfg.file.router_settings.model_group_alias {
            let target = match target {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Object(o) => {
                    o.get("model").and_then(|m| m.as_str()).map(str::to_string)
                }
                _ => None,
            };
            if let Some(t) = target {
                r.aliases.insert(alias.clone(), t);
            }
        }
        if !r.patterns.is_empty() {
            r.config = Some(Arc::new(cfg.clone()));
        }
        // Also for naming the provider of a requested model (key wildcards such as `openai/*`).
        r.prices = prices.clone();
        r
    }

    /// Whether `name` is a model group or alias as configured (wildcards aside).
    pub fn has_exact(&self, name: &str) -> bool {
        self.by_name.contains_key(name) || self.aliases.contains_key(name)
    }

    /// The group serving `name`: an exact model group, an alias, else a wildcard deployment.
    pub fn group(&self, name: &str) -> Option<Arc<ModelGroup>> {
        let exact = self.by_name.get(name).or_else(|| {
            self.aliases
                .get(name)
                .and_then(|target| self.by_name.get(target))
        });
        if let Some(idx) = exact {
            return self.groups.get(*idx).cloned();
        }
        if self.patterns.is_empty() {
            return None;
        }
        if let Some(g) = self.expanded.read().get(name) {
            return Some(g.clone());
        }
        let cfg = self.config.as_ref()?;
        let deployments: Vec<Deployment> = self
            .patterns
            .iter()
            .filter_map(|p| {
                let captured = p.capture(name)?;
                let mut entry = p.entry.clone();
                entry.model_name = name.to_string();
                entry.litellm_params.model = entry.litellm_params.model.replace('*', captured);
                Some(Deployment::build(p.index, &entry, cfg, &self.prices))
            })
            .collect();
        if deployments.is_empty() {
            return None;
        }
        let table = Arc::new(RoutingTable::new(
            deployments,
            self.settings.clone(),
            None,
            &self.clock.0,
        ));
        let ds = table.deployments.to_vec();
        let g = Arc::new(group_of(name, ds, table));
        let mut cache = self.expanded.write();
        if cache.len() >= WILDCARD_CACHE_MAX {
            cache.clear();
        }
        cache.insert(name.to_string(), g.clone());
        Some(g)
    }

    /// The provider a bare model name belongs to, as LiteLLM's `get_llm_provider` names it for
    /// a key's wildcard check (`gpt-4o` is `openai`): the price table's provider; `None` for a
    /// name the table does not know (a custom group name).
    pub fn provider_of_name(&self, name: &str) -> Option<String> {
        let price = self.prices.get(name)?;
        let provider = price.provider.as_deref()?;
        // The price map files Google's Vertex models under `vertex_ai-<kind>-models`.
        Some(if provider.starts_with("vertex_ai") {
            "vertex_ai".to_string()
        } else {
            provider.to_string()
        })
    }

    /// Whether some deployment declares `name` in `model_info.access_groups`.
    pub fn is_access_group(&self, name: &str) -> bool {
        self.groups
            .iter()
            .any(|g| g.access_groups.iter().any(|a| a == name))
            || self
                .patterns
                .iter()
                .any(|p| p.entry.model_info.access_groups.iter().any(|a| a == name))
    }

    /// Exact model groups, in config order.
    pub fn groups(&self) -> &[Arc<ModelGroup>] {
        &self.groups
    }

    /// Wildcard model names as written (`openai/*`), with the access groups their deployments
    /// declare, for `/v1/models`.
    pub fn wildcard_routes(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.patterns.iter().map(|p| {
            (
                p.entry.model_name.as_str(),
                p.entry.model_info.access_groups.as_slice(),
            )
        })
    }

    /// Every configured deployment (wildcards not expanded).
    pub fn deployments(&self) -> impl Iterator<Item = &Arc<Deployment>> {
        self.groups.iter().flat_map(|g| g.deployments.iter())
    }

    /// The routing state of every exact deployment (health, cooldowns, usage), for metrics
    /// and health output; `None` when the model list has no exact deployment.
    pub fn routing(&self) -> Option<&idlehands_routing::Router> {
        self.table.as_ref().map(|t| &t.router)
    }

    /// The effective `router_settings`.
    pub fn settings(&self) -> &RouterSettings {
        &self.settings
    }
}
