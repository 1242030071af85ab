//! Model refs (`provider/model`), the provider registry (configured providers plus the
//! implicit `litellm` provider), resolution of a ref to a concrete model, aliases and the
//! fallback candidate list.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

use crate::config::{
    Compat, InputKind, LoadedConfig, ModelApi, ModelCost, ModelDefinition, ProviderConfig,
};
use crate::env::Env;

pub const DEFAULT_PROVIDER: &str = "anthropic";
pub const DEFAULT_MODEL: &str = "claude-opus-4-6";
pub const LITELLM_PROVIDER: &str = "litellm";
pub const LITELLM_DEFAULT_BASE_URL: &str = "http://localhost:4000";
pub const LITELLM_DEFAULT_MODEL: &str = "claude-opus-4-6";
pub const DEFAULT_CONTEXT_TOKENS: u64 = 200_000;
pub const DEFAULT_MAX_TOKENS: u64 = 8192;
pub const MIN_CONTEXT_TOKENS: u64 = 16_000;
pub const WARN_CONTEXT_TOKENS: u64 = 32_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelRef {
    pub provider: String,
    pub model: String,
}

impl ModelRef {
    pub fn new(provider: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            provider: normalize_provider_id(&provider.into()),
            model: model.into(),
        }
    }

    /// Split at the first `/`: `openrouter/anthropic/x` is provider `openrouter`, model
    /// `anthropic/x`. `None` when there is no slash or a side is empty.
    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        let (p, m) = raw.split_once('/')?;
        let (p, m) = (p.trim(), m.trim());
        (!p.is_empty() && !m.is_empty()).then(|| Self::new(p, m))
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.provider, self.model)
    }
}

pub fn normalize_provider_id(raw: &str) -> String {
    let p = raw.trim().to_ascii_lowercase();
    match p.as_str() {
        "z.ai" | "z-ai" => "zai".into(),
        "opencode-zen" => "opencode".into(),
        "qwen" => "qwen-portal".into(),
        "kimi-code" => "kimi-coding".into(),
        "bytedance" | "doubao" => "volcengine".into(),
        _ => p,
    }
}

/// A ref resolved to everything a client needs, with upstream's per-model defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedModel {
    pub provider: String,
    pub id: String,
    pub name: String,
    pub api: ModelApi,
    pub base_url: String,
    pub headers: BTreeMap<String, String>,
    pub reasoning: bool,
    pub input: Vec<InputKind>,
    pub cost: ModelCost,
    pub context_window: u64,
    /// Whether the config set `contextWindow` for this model (it then wins over the server).
    pub context_window_configured: bool,
    pub max_tokens: u64,
    pub compat: Compat,
    /// `agents.defaults.models["p/m"].params` (temperature, maxTokens, ...).
    pub params: Map<String, Value>,
    /// Not listed in the config: synthesized for a known provider.
    pub synthesized: bool,
    /// llama-server slots to spread sessions over (`slotAffinity` on the provider: `true`
    /// for one slot, or the server's `-np`); `None` when off.
    pub slot_count: Option<u64>,
    /// `parameterCount` from the config, when set.
    pub parameter_count: Option<u64>,
}

impl ResolvedModel {
    pub fn model_ref(&self) -> ModelRef {
        ModelRef::new(&self.provider, &self.id)
    }

    pub fn accepts_images(&self) -> bool {
        self.input.contains(&InputKind::Image)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("Unknown model: {0}. Add a models.providers.{provider} block to the config (or run `idlehands onboard`).", provider = .0.provider)]
    Unknown(ModelRef),
    #[error(
        "Model {model_ref} uses api \"{api}\", which this build does not speak yet; set api: \"openai-completions\" (or \"ollama\" for Ollama's native API) on the provider or model."
    )]
    UnsupportedApi { model_ref: ModelRef, api: String },
    #[error("Model context window too small ({0} tokens). Minimum is 16000.")]
    ContextTooSmall(u64),
    #[error(
        "Invalid model ref \"{0}\": expected \"provider/model\", e.g. \"litellm/claude-opus-4-6\"."
    )]
    InvalidRef(String),
}

/// Configured providers plus implicit ones, with the alias table and the default model.
#[derive(Debug, Clone, Default)]
pub struct ModelRegistry {
    providers: BTreeMap<String, ProviderConfig>,
    implicit: Vec<String>,
    aliases: BTreeMap<String, String>,
    entries: BTreeMap<String, Map<String, Value>>,
    primary: Option<String>,
    fallbacks: Vec<String>,
    pub warnings: Vec<String>,
    /// Where `ollama/…`, `vllm/…`, `llamacpp/…` and `lmstudio/…` refs go when the config has
    /// no block for that provider (see [`crate::local`]).
    local_urls: BTreeMap<String, String>,
}

impl ModelRegistry {
    /// Build from the config. When `LITELLM_API_KEY` is set (or a `litellm` auth profile
    /// exists) and no `litellm` provider is configured, an implicit one is added at
    /// `$LITELLM_BASE_URL` or `http://localhost:4000`, speaking openai-completions.
    pub fn new(cfg: &LoadedConfig, env: &Env, has_litellm_profile: bool) -> Self {
        let mut reg = Self::default();
        for srv in crate::local::LOCAL_SERVERS {
            if let Some(url) = crate::local::base_url(srv.id, env) {
                reg.local_urls.insert(srv.id.to_string(), url);
            }
        }
        if let Some(m) = &cfg.config.models {
            for (id, p) in &m.providers {
                reg.providers.insert(normalize_provider_id(id), p.clone());
            }
        }
        if !reg.providers.contains_key(LITELLM_PROVIDER)
            && (env.get("LITELLM_API_KEY").is_some() || has_litellm_profile)
        {
            reg.providers.insert(
                LITELLM_PROVIDER.into(),
                ProviderConfig {
                    base_url: env
                        .get("LITELLM_BASE_URL")
                        .unwrap_or(LITELLM_DEFAULT_BASE_URL)
                        .to_string(),
                    api_key: None,
                    auth: None,
                    api: Some(ModelApi::OpenAiCompletions),
                    headers: BTreeMap::new(),
                    auth_header: None,
                    models: Vec::new(),
                    slot_affinity: None,
                },
            );
            reg.implicit.push(LITELLM_PROVIDER.into());
        }
        if let Some(d) = cfg.defaults() {
            for (key, entry) in &d.models {
                if let Some(alias) = &entry.alias {
                    reg.aliases
                        .insert(alias.trim().to_ascii_lowercase(), key.clone());
                }
                if let Some(params) = &entry.params {
                    reg.entries.insert(key.clone(), params.clone());
                }
            }
            if let Some(m) = &d.model {
                reg.primary = m.primary.clone();
                reg.fallbacks = m.fallbacks.clone();
            }
        }
        reg
    }

    /// A local server's provider with no config block: its default URL (or the one its
    /// environment variable names), openai-completions, models taken as asked for.
    pub fn implicit_local_provider(&self, id: &str) -> Option<ProviderConfig> {
        let url = self.local_urls.get(id)?;
        Some(ProviderConfig {
            base_url: url.clone(),
            api_key: None,
            auth: None,
            api: Some(ModelApi::OpenAiCompletions),
            headers: BTreeMap::new(),
            auth_header: None,
            models: Vec::new(),
            slot_affinity: None,
        })
    }

    pub fn providers(&self) -> &BTreeMap<String, ProviderConfig> {
        &self.providers
    }

    pub fn is_implicit(&self, provider: &str) -> bool {
        self.implicit.iter().any(|p| p == provider)
    }

    /// Turn user text (a ref, an alias, or a bare model id) into a ref.
    pub fn parse_ref(&self, raw: &str) -> Result<ModelRef, ModelError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(ModelError::InvalidRef(raw.into()));
        }
        if let Some(target) = self.aliases.get(&raw.to_ascii_lowercase()) {
            return ModelRef::parse(target).ok_or_else(|| ModelError::InvalidRef(target.clone()));
        }
        if let Some(r) = ModelRef::parse(raw) {
            return Ok(r);
        }
        // A bare id: the provider that lists it, else the only provider, else upstream's
        // anthropic default. Upstream users hit the last case with LiteLLM model ids.
        let listing: Vec<&String> = self
            .providers
            .iter()
            .filter(|(_, p)| p.models.iter().any(|m| m.id == raw))
            .map(|(id, _)| id)
            .collect();
        if let [only] = listing.as_slice() {
            return Ok(ModelRef::new(*only, raw));
        }
        if self.providers.len() == 1
            && let Some(id) = self.providers.keys().next()
        {
            return Ok(ModelRef::new(id, raw));
        }
        Ok(ModelRef::new(DEFAULT_PROVIDER, raw))
    }

    /// The configured primary, else `litellm/claude-opus-4-6` when the implicit LiteLLM
    /// provider is active, else `anthropic/claude-opus-4-6`.
    pub fn primary(&self) -> Result<ModelRef, ModelError> {
        match &self.primary {
            Some(p) => self.parse_ref(p),
            None if self.providers.contains_key(LITELLM_PROVIDER) && self.providers.len() == 1 => {
                Ok(ModelRef::new(LITELLM_PROVIDER, LITELLM_DEFAULT_MODEL))
            }
            None => Ok(ModelRef::new(DEFAULT_PROVIDER, DEFAULT_MODEL)),
        }
    }

    pub fn fallbacks(&self) -> Vec<ModelRef> {
        self.fallbacks
            .iter()
            .filter_map(|f| self.parse_ref(f).ok())
            .collect()
    }

    /// The models to try, in order: the requested one, the configured fallbacks (only when
    /// the request is on the primary's provider or is itself a fallback), then the primary.
    /// Only models the user configured are added: the built-in default primary
    /// (`claude-opus-4-6`) is a starting point, never a fallback nobody asked for.
    pub fn candidates(&self, requested: &ModelRef) -> Vec<ModelRef> {
        let mut out = vec![requested.clone()];
        let primary = self.primary.as_deref().and_then(|p| self.parse_ref(p).ok());
        let fallbacks = self.fallbacks();
        let use_fallbacks = primary
            .as_ref()
            .is_none_or(|p| p.provider == requested.provider)
            || fallbacks.contains(requested);
        if use_fallbacks {
            out.extend(fallbacks);
        }
        out.extend(primary);
        let mut seen = std::collections::HashSet::new();
        out.retain(|r| seen.insert(r.clone()));
        out
    }

    pub fn resolve(&self, r: &ModelRef) -> Result<ResolvedModel, ModelError> {
        let implicit_local;
        let provider = match self
            .providers
            .iter()
            .find(|(id, _)| normalize_provider_id(id) == r.provider)
        {
            Some((_, p)) => p,
            None => {
                implicit_local = self
                    .implicit_local_provider(&r.provider)
                    .ok_or_else(|| ModelError::Unknown(r.clone()))?;
                &implicit_local
            }
        };
        let listed = provider.models.iter().find(|m| m.id == r.model);
        let (def, synthesized) = match listed {
            Some(d) => (d.clone(), false),
            None => {
                let first = provider.models.first();
                let ctx = first
                    .and_then(|m| m.context_window)
                    .unwrap_or(DEFAULT_CONTEXT_TOKENS);
                (
                    ModelDefinition {
                        id: r.model.clone(),
                        name: r.model.clone(),
                        api: None,
                        reasoning: None,
                        input: None,
                        cost: None,
                        context_window: Some(ctx),
                        max_tokens: first.and_then(|m| m.max_tokens),
                        parameter_count: None,
                        headers: BTreeMap::new(),
                        compat: None,
                    },
                    true,
                )
            }
        };
        let api = def
            .api
            .or(provider.api)
            .unwrap_or(ModelApi::OpenAiCompletions);
        if !matches!(api, ModelApi::OpenAiCompletions | ModelApi::Ollama) {
            return Err(ModelError::UnsupportedApi {
                model_ref: r.clone(),
                api: api.as_str().into(),
            });
        }
        let context_window_configured = !synthesized && def.context_window.is_some();
        let context_window = def.context_window.unwrap_or(DEFAULT_CONTEXT_TOKENS);
        if context_window < MIN_CONTEXT_TOKENS {
            return Err(ModelError::ContextTooSmall(context_window));
        }
        let max_tokens = def
            .max_tokens
            .unwrap_or(DEFAULT_MAX_TOKENS.min(context_window))
            .min(context_window);
        let mut headers = provider.headers.clone();
        headers.extend(def.headers.clone());
        Ok(ResolvedModel {
            provider: r.provider.clone(),
            id: def.id.clone(),
            name: def.name.clone(),
            api,
            base_url: provider.base_url.trim().to_string(),
            headers,
            reasoning: def.reasoning.unwrap_or(false),
            input: def.input.clone().unwrap_or_else(|| vec![InputKind::Text]),
            cost: def.cost.unwrap_or_default(),
            context_window,
            context_window_configured,
            max_tokens,
            compat: def.compat.clone().unwrap_or_default(),
            params: self
                .entries
                .get(&r.to_string())
                .cloned()
                .unwrap_or_default(),
            synthesized,
            slot_count: match &provider.slot_affinity {
                Some(Value::Bool(true)) => Some(1),
                Some(Value::Number(n)) => n.as_u64().filter(|n| *n > 0),
                _ => None,
            },
            parameter_count: def.parameter_count,
        })
    }

    /// Every model listed in the config (and the implicit default), resolved.
    pub fn list(&self) -> Vec<Result<ResolvedModel, (ModelRef, ModelError)>> {
        let mut out = Vec::new();
        for (id, p) in &self.providers {
            let mut refs: Vec<ModelRef> =
                p.models.iter().map(|m| ModelRef::new(id, &m.id)).collect();
            if refs.is_empty() && self.is_implicit(id) {
                refs.push(ModelRef::new(id, LITELLM_DEFAULT_MODEL));
            }
            for r in refs {
                out.push(self.resolve(&r).map_err(|e| (r.clone(), e)));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_splits_at_first_slash() {
        let r = ModelRef::parse(" OpenRouter/anthropic/claude-x ");
        assert_eq!(
            r,
            Some(ModelRef {
                provider: "openrouter".into(),
                model: "anthropic/claude-x".into()
            })
        );
        assert_eq!(ModelRef::parse("nohyphen"), None);
        assert_eq!(ModelRef::parse("/x"), None);
        assert_eq!(ModelRef::new("Z.AI", "glm").provider, "zai");
    }

    #[test]
    fn implicit_litellm_only_with_key_and_without_block() {
        let cfg = LoadedConfig::default();
        let reg = ModelRegistry::new(&cfg, &Env::default(), false);
        assert!(reg.providers().is_empty());
        assert_eq!(
            reg.primary().ok(),
            Some(ModelRef::new("anthropic", "claude-opus-4-6"))
        );
        let env = Env::from_pairs([("LITELLM_API_KEY", "k")]);
        let reg = ModelRegistry::new(&cfg, &env, false);
        assert!(reg.is_implicit("litellm"));
        let primary = reg.primary().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(primary.to_string(), "litellm/claude-opus-4-6");
        let m = reg.resolve(&primary).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.base_url, "http://localhost:4000");
        assert_eq!(m.max_tokens, 8192);
        let env = env.with("LITELLM_BASE_URL", "http://proxy:9000/v1");
        let reg = ModelRegistry::new(&cfg, &env, false);
        let m = reg
            .resolve(&ModelRef::new("litellm", "gpt-4o"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.base_url, "http://proxy:9000/v1");
        assert!(m.synthesized);
    }
}
