//! The model list as one: deployments from config.yaml, then those kept in the store
//! (`/model/new` with `store_model_in_db`), as in LiteLLM where both serve side by side. A
//! change rebuilds the router and the catalog and swaps them into the runtime whole (see
//! `App::set_api_models`); requests keep reading one `ArcSwap` load, never a lock.

mod catalog;
pub mod secrets;
pub mod team_access;
pub mod wildcards;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

pub use catalog::{Catalog, CatalogEntry, usd};
pub(crate) use catalog::{params_json, price_fields};

use crate::config::{ModelEntry, ProxyConfig};
use crate::pricing::PriceTable;
use crate::router::Router;

/// A deployment kept in the store, ready to serve.
#[derive(Clone)]
pub struct ApiModel {
    /// Parsed, `os.environ/` references resolved, provider env defaults filled in;
    /// `model_info.id` is the stored `model_id`.
    pub entry: ModelEntry,
    /// `litellm_params` as stored, secrets opened (shown redacted).
    pub params: Value,
    /// `model_info` as stored.
    pub info: Value,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<String>,
    pub updated_at: DateTime<Utc>,
    pub updated_by: Option<String>,
}

// `params` holds opened secrets: never printed.
impl std::fmt::Debug for ApiModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiModel")
            .field("entry", &self.entry)
            .field("updated_at", &self.updated_at)
            .finish_non_exhaustive()
    }
}

/// Why a deployment given over the API (or read back from the store) cannot serve: the field
/// path and the reason, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct BadModel {
    pub path: String,
    pub message: String,
}

impl ApiModel {
    /// Builds and checks a deployment from its stored parts (secrets already opened); `env`
    /// resolves `os.environ/` references and provider defaults, as config.yaml's are.
    pub fn from_parts(
        model_id: &str,
        model_name: &str,
        params: Value,
        info: Value,
        credentials: &crate::config::Credentials,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ApiModel, BadModel> {
        let bad = |path: String, message: String| BadModel { path, message };
        if !params.is_object() {
            return Err(bad(
                "litellm_params".into(),
                "must be an object with at least `model`".into(),
            ));
        }
        if params.get("model").is_none_or(Value::is_null) {
            return Err(bad("litellm_params.model".into(), "field required".into()));
        }
        let mut info_with_id = match &info {
            Value::Object(_) => info.clone(),
            Value::Null => json!({}),
            _ => return Err(bad("model_info".into(), "must be an object".into())),
        };
        info_with_id["id"] = Value::String(model_id.to_string());
        let mut whole = json!({
            "model_name": model_name,
            "litellm_params": params.clone(),
            "model_info": info_with_id,
        });
        credentials
            .fill(&mut whole["litellm_params"])
            .map_err(|e| bad("litellm_params.litellm_credential_name".into(), e.0))?;
        crate::config::resolve_env(&mut whole, "", env).map_err(|m| {
            bad(
                m.path.trim_start_matches('.').to_string(),
                format!("environment variable {} is not set", m.var),
            )
        })?;
        let mut entry: ModelEntry = serde_path_to_error::deserialize(whole).map_err(|e| {
            let path = e.path().to_string();
            let last = path.rsplit('.').next().unwrap_or(&path).to_string();
            let message = if secrets::is_secret_key(&last) {
                "wrong type (value not shown)".to_string()
            } else {
                e.inner().to_string()
            };
            bad(path, message)
        })?;
        crate::config::fill_from_env(&mut entry, env);
        crate::config::validate_entry(&entry).map_err(|b| bad(b.path, b.message))?;
        let now = Utc::now();
        Ok(ApiModel {
            entry,
            params,
            info,
            created_at: now,
            created_by: None,
            updated_at: now,
            updated_by: None,
        })
    }
}

/// What the gateway was built from, kept to rebuild the router when the stored deployments
/// or the prices change: the config (its own model list only), the prices and the stored
/// deployments last served.
pub(crate) struct ModelsBase {
    pub config: ProxyConfig,
    /// Replaced whole by `/reload/model_cost_map`, with where they came from.
    prices: parking_lot::RwLock<(PriceTable, crate::pricing::cost_map::Source)>,
    api: parking_lot::Mutex<Vec<ApiModel>>,
    /// One rebuild at a time: two concurrent ones must not swap in an older list last.
    pub apply: parking_lot::Mutex<()>,
    /// Every router built here judges cooldowns and per-minute limits by this.
    pub clock: std::sync::Arc<dyn idlehands_clock::Clock>,
}

impl ModelsBase {
    pub fn new(
        config: ProxyConfig,
        prices: PriceTable,
        clock: std::sync::Arc<dyn idlehands_clock::Clock>,
    ) -> Self {
        let source = crate::pricing::cost_map::Source::at_start(&prices, &config.price_origin());
        ModelsBase {
            config,
            prices: parking_lot::RwLock::new((prices, source)),
            api: parking_lot::Mutex::new(Vec::new()),
            apply: parking_lot::Mutex::new(()),
            clock,
        }
    }

    /// The prices now (a cheap clone: the table is shared).
    pub fn prices(&self) -> PriceTable {
        self.prices.read().0.clone()
    }

    /// Where the prices now came from.
    pub fn price_source(&self) -> crate::pricing::cost_map::Source {
        self.prices.read().1.clone()
    }

    /// The router and catalog for the config's deployments followed by `api`, which are kept
    /// for the next rebuild with other prices; `previous`, the router they replace.
    pub fn build(&self, api: Vec<ApiModel>, previous: Option<&Router>) -> (Router, Catalog) {
        self.api.lock().clone_from(&api);
        let prices = self.prices();
        let mut cfg = self.config.clone();
        let from_config = cfg.file.model_list.len();
        cfg.file
            .model_list
            .extend(api.iter().map(|m| m.entry.clone()));
        let router = Router::build_after(&cfg, &prices, self.clock.clone(), previous);
        let catalog = Catalog::build(&cfg, from_config, api, &router, &prices);
        (router, catalog)
    }

    /// The router and catalog of the deployments served now, priced by `prices` from now on.
    pub fn reprice(
        &self,
        prices: PriceTable,
        source: crate::pricing::cost_map::Source,
        previous: &Router,
    ) -> (Router, Catalog) {
        *self.prices.write() = (prices, source);
        let api = self.api.lock().clone();
        self.build(api, Some(previous))
    }
}
