//! Loading config.yaml: YAML -> JSON value -> `os.environ/` resolved (paths recorded) -> typed
//! structs through `serde_path_to_error`, so that every error names the key path. All
//! environment reads happen here, once; the request path never reads env or files.
//!
//! Plain parsed data, below every module that acts on it: besides its own submodules it uses
//! only `pricing` (the built-in price table names a bare model's provider). What the load
//! needs to know of providers (their prefixes and environment variables) and of call
//! parameters (which `litellm_params` keys are usable) lives here for that reason.

pub mod cache;
pub mod call_params;
mod credentials;
mod env;
pub mod env_names;
mod includes;
pub(crate) mod inert;
mod lenient;
mod provider;
pub mod route_budgets;
mod routing;
mod types;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

pub use credentials::{CredentialView, Credentials, StoredCredential};
pub use env::PREFIX as ENV_PREFIX;
pub(crate) use env::resolve as resolve_env;
pub use inert::inert_settings;
pub(crate) use provider::openai_compatible_base;
pub use provider::{env_defaults, provider_of, read_provider_env};
pub use types::{
    CostFields, FallbackList, FileConfig, GeneralSettings, LitellmParams, LitellmSettings,
    ModelEntry, ModelInfo, RouterSettings, RoutingStrategy, Secret,
};

/// A start-up error. Its text names the file and the key path, never a secret value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: not valid YAML: {message}")]
    Yaml { file: String, message: String },
    #[error("{file}: {path}: environment variable {var} is not set")]
    MissingEnv {
        file: String,
        path: String,
        var: String,
    },
    #[error("{file}: {path}: {message}")]
    Invalid {
        file: String,
        path: String,
        message: String,
    },
    #[error("{0}")]
    Startup(String),
    #[error(transparent)]
    Prices(#[from] crate::pricing::PriceLoadError),
}

/// Everything the gateway needs to start: the parsed file plus what came from the command line
/// and the environment.
#[derive(Debug, Clone, Default)]
pub struct ProxyConfig {
    pub file: FileConfig,
    /// Shown in errors: the config path as given, or `--model`.
    pub source: String,
    /// `--model`: single-model mode; this model overrides the one in the request body.
    pub cli_model: Option<String>,
    /// `--db PATH`: the SQLite file for the store (used once the store is wired in).
    pub database_path: Option<PathBuf>,
    /// `general_settings.master_key`, else env `LITELLM_MASTER_KEY`.
    pub master_key: Option<Secret>,
    /// `LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY=true` or the general_settings flag.
    pub permit_weak_or_unset_master_key: bool,
    /// `litellm_settings.model_cost_map_path`, else env `LITELLM_MODEL_COST_MAP_PATH`.
    pub model_cost_map_path: Option<PathBuf>,
    /// Env `LITELLM_MODEL_COST_MAP_URL`: where `/reload/model_cost_map` fetches LiteLLM's
    /// price list (else LiteLLM's file on GitHub).
    pub model_cost_map_url: Option<String>,
    /// Env `LITELLM_LOCAL_MODEL_COST_MAP=True`: `/reload/model_cost_map` takes the built-in
    /// copy instead of fetching.
    pub local_model_cost_map: bool,
    /// Values of `environment_variables:`, which `os.environ/` references see first.
    pub environment: BTreeMap<String, String>,
    /// `router_settings` merged with the routing keys of `litellm_settings`, as the routing
    /// crate reads them.
    pub routing: idlehands_routing::RouterSettings,
    /// The observability variables (`OTEL_*`, ...) as the environment lookup gave them.
    pub observe_env: BTreeMap<String, String>,
    /// `general_settings.store_model_in_db`, or env `STORE_MODEL_IN_DB=true`: `/model/new`,
    /// `/model/update` and `/model/delete` keep deployments in the store.
    pub store_model_in_db: bool,
    /// Env `LITELLM_SALT_KEY`: encrypts secrets of stored deployments (else the master key).
    pub salt_key: Option<Secret>,
    /// What the pass-through routes read from the environment ([`env_names::PASS_THROUGH`]).
    pub pass_through_env: BTreeMap<String, String>,
    /// The files `include:` merged in, in the order read.
    pub included_files: Vec<PathBuf>,
    /// `credential_list`: deployments naming one (`litellm_credential_name`) take its values
    /// for the fields they leave unset; kept for deployments added over the API.
    pub credentials: Credentials,
    /// How upstream TLS certificates are checked: env `SSL_VERIFY`, else
    /// `litellm_settings.ssl_verify`, else `SSL_CERT_FILE` (LiteLLM's order).
    pub upstream_tls: UpstreamTls,
    /// `litellm_settings.force_ipv4`: upstream connections go out over IPv4 only.
    pub force_ipv4: bool,
    /// Provider and tag budgets, read (and checked) once at load; deployments take their
    /// provider's from here.
    pub route_budgets: route_budgets::RouteBudgets,
    /// `REDIS_URL`, `REDIS_HOST`, `REDIS_PORT`, `REDIS_PASSWORD` as the environment gave them:
    /// where a Redis response cache goes when `cache_params` does not say.
    pub redis_env: BTreeMap<String, String>,
    /// `JWT_PUBLIC_KEY_URL`, `JWT_AUDIENCE`, `JWT_ISSUER`: where `enable_jwt_auth` finds the
    /// identity provider's keys and what its tokens must say.
    pub jwt_env: BTreeMap<String, String>,
}

/// LiteLLM's `ssl_verify` for calls to providers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum UpstreamTls {
    /// The built-in public roots.
    #[default]
    Verify,
    /// `ssl_verify: false`: any certificate is accepted (named at start-up).
    Off,
    /// A PEM bundle of the roots to trust instead of the built-in ones; where it came from.
    CaBundle { path: PathBuf, from: &'static str },
}

impl UpstreamTls {
    /// LiteLLM's resolution: a string that names a file is a bundle, `"false"`/`"true"`
    /// (any case) a flag; any other string is taken as a bundle path (and fails to load,
    /// naming it).
    fn resolve(setting: Option<(Value, &'static str)>, cert_file: Option<String>) -> UpstreamTls {
        let verify = match setting {
            None => true,
            Some((Value::Bool(b), _)) => b,
            Some((Value::String(s), from)) => {
                let t = s.trim();
                if Path::new(t).exists() {
                    return UpstreamTls::CaBundle {
                        path: PathBuf::from(t),
                        from,
                    };
                }
                match t.to_ascii_lowercase().as_str() {
                    "false" => false,
                    "true" => true,
                    _ => {
                        return UpstreamTls::CaBundle {
                            path: PathBuf::from(t),
                            from,
                        };
                    }
                }
            }
            Some(_) => true,
        };
        if !verify {
            return UpstreamTls::Off;
        }
        match cert_file.filter(|f| Path::new(f).exists()) {
            Some(f) => UpstreamTls::CaBundle {
                path: PathBuf::from(f),
                from: "SSL_CERT_FILE",
            },
            None => UpstreamTls::Verify,
        }
    }
}

impl ProxyConfig {
    /// Where `/reload/model_cost_map` takes prices from.
    pub fn price_origin(&self) -> crate::pricing::cost_map::Origin {
        crate::pricing::cost_map::Origin {
            url: self.model_cost_map_url.clone(),
            local: self.local_model_cost_map,
            path: self.model_cost_map_path.clone(),
        }
    }
}

/// The start-up error for `path` of `cfg`'s file.
pub(crate) fn invalid(cfg: &ProxyConfig, path: &str, message: String) -> ConfigError {
    ConfigError::Invalid {
        file: cfg.source.clone(),
        path: path.to_string(),
        message,
    }
}

/// `redis://[user:password@]host:port`, the password escaped (one holding `@`, `:` or `/`
/// would otherwise be read as part of the address, as LiteLLM, which hands it to its client
/// apart, never does); `None` when host and port make no address.
pub fn redis_address(host: &str, port: &str, user: &str, password: Option<&str>) -> Option<String> {
    let mut url = reqwest::Url::parse(&format!("redis://{host}:{port}")).ok()?;
    if let Some(pw) = password {
        url.set_username(user).ok()?;
        url.set_password(Some(pw)).ok()?;
    }
    Some(url.to_string())
}

/// A setting read from a section's unknown keys as a number: a YAML number, or a string
/// holding one (LiteLLM configs quote them as often as not).
pub fn loose_number(v: &serde_json::Value) -> Option<f64> {
    v.as_f64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

/// A header name the config gives at `path` (any case), or the error naming it.
pub(crate) fn header_name(
    cfg: &ProxyConfig,
    path: &str,
    name: &str,
) -> Result<http::HeaderName, ConfigError> {
    http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).map_err(|_| {
        ConfigError::Invalid {
            file: cfg.source.clone(),
            path: path.to_string(),
            message: format!("{name:?} is not a valid header name"),
        }
    })
}

/// A `litellm_settings` section the typed structs keep in `extra`, read as `T`; an error
/// names the key path inside it.
pub(crate) fn litellm_section<T: serde::de::DeserializeOwned>(
    cfg: &ProxyConfig,
    name: &str,
) -> Result<Option<T>, ConfigError> {
    let Some(v) = cfg.file.litellm_settings.extra.get(name) else {
        return Ok(None);
    };
    serde_path_to_error::deserialize(v.clone())
        .map(Some)
        .map_err(|e| ConfigError::Invalid {
            file: cfg.source.clone(),
            path: format!("litellm_settings.{name}.{}", e.path())
                .trim_end_matches('.')
                .to_string(),
            message: e.inner().to_string(),
        })
}

/// A setting read from a section's unknown keys as a flag: a YAML boolean, or `"true"` /
/// `"false"` in any case.
pub fn loose_bool(v: &serde_json::Value) -> Option<bool> {
    v.as_bool()
        .or_else(|| match v.as_str()?.trim().to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        })
}

/// The process environment, as the loader's lookup function.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn secret_path(path: &str) -> bool {
    let last = path.rsplit('.').next().unwrap_or(path).to_ascii_lowercase();
    [
        "key",
        "password",
        "secret",
        "token",
        "database_url",
        "redis_url",
    ]
    .iter()
    .any(|w| last.contains(w))
}

impl ProxyConfig {
    /// Read and validate a config.yaml, with the process environment.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        Self::from_yaml(&text, &file, &process_env)
    }

    /// Parse config text; `source` names it in errors; `env` stands in for the environment.
    pub fn from_yaml(
        text: &str,
        source: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut value: Value = if text.trim().is_empty() {
            Value::Object(Default::default())
        } else {
            serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Yaml {
                file: source.to_string(),
                message: e.to_string(),
            })?
        };
        if value.is_null() {
            value = Value::Object(Default::default());
        }
        let Value::Object(top) = &mut value else {
            return Err(ConfigError::Invalid {
                file: source.to_string(),
                path: "(top level)".to_string(),
                message: "expected a mapping with model_list, general_settings, ...".to_string(),
            });
        };
        let included_files = includes::resolve(top, source, &|p| std::fs::read_to_string(p))?;
        // environment_variables first: references elsewhere may name them.
        let mut environment = BTreeMap::new();
        if let Some(Value::Object(vars)) = value.get_mut("environment_variables") {
            for (k, v) in vars.iter_mut() {
                env::resolve(v, &format!("environment_variables.{k}"), env).map_err(|m| {
                    ConfigError::MissingEnv {
                        file: source.to_string(),
                        path: m.path,
                        var: m.var,
                    }
                })?;
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => continue,
                    other => other.to_string(),
                };
                environment.insert(k.clone(), text);
            }
        }
        let overlay = environment.clone();
        let lookup = move |name: &str| overlay.get(name).cloned().or_else(|| env(name));
        env::resolve(&mut value, "", &lookup).map_err(|m| ConfigError::MissingEnv {
            file: source.to_string(),
            path: m.path,
            var: m.var,
        })?;
        let credentials = credentials::apply(&mut value, source)?;
        let raw_routing = routing::RawSections::take(&value);
        let file: FileConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let message = if secret_path(&path) {
                "wrong type (value not shown)".to_string()
            } else {
                e.inner().to_string()
            };
            ConfigError::Invalid {
                file: source.to_string(),
                path,
                message,
            }
        })?;
        let routing = raw_routing.parse(source)?;
        let mut cfg = ProxyConfig {
            file,
            source: source.to_string(),
            environment,
            routing,
            included_files,
            credentials,
            ..ProxyConfig::default()
        };
        cfg.validate()?;
        cfg.route_budgets = route_budgets::from_config(&cfg)?;
        cfg.read_env(&lookup);
        Ok(cfg)
    }

    /// `idlehands proxy --model provider/model [--api_base URL]` without a config file.
    pub fn single_model(
        model: &str,
        api_base: Option<String>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Self {
        let mut cfg = ProxyConfig {
            source: "--model".to_string(),
            ..ProxyConfig::default()
        };
        cfg.add_cli_model(model, api_base);
        cfg.read_env(env);
        cfg
    }

    /// `--model` next to `--config`: the CLI model is served (added as a group if the config
    /// lacks it) and overrides the request's model.
    pub fn add_cli_model(&mut self, model: &str, api_base: Option<String>) {
        self.cli_model = Some(model.to_string());
        let exists = self.file.model_list.iter().any(|m| m.model_name == model);
        if !exists || api_base.is_some() {
            self.file.model_list.retain(|m| m.model_name != model);
            self.file.model_list.push(ModelEntry {
                model_name: model.to_string(),
                litellm_params: LitellmParams {
                    model: model.to_string(),
                    api_base,
                    ..LitellmParams::default()
                },
                model_info: ModelInfo::default(),
            });
        }
    }

    /// Settings that come from the environment, and provider defaults (`OPENAI_API_KEY`, ...)
    /// for deployments that name none, read once here.
    pub fn read_env(&mut self, env: &dyn Fn(&str) -> Option<String>) {
        for name in env_names::OTEL
            .iter()
            .chain(&env_names::GENERIC_API)
            .chain(&env_names::ALERTING)
            .chain(&env_names::DRAIN)
        {
            if let Some(v) = env(name) {
                self.observe_env.insert(name.to_string(), v);
            }
        }
        let truthy = |v: Option<String>| v.is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        let gs = &self.file.general_settings;
        self.master_key = gs
            .master_key
            .clone()
            .filter(|k| !k.expose().is_empty())
            .or_else(|| {
                env("LITELLM_MASTER_KEY")
                    .filter(|k| !k.is_empty())
                    .map(Secret::new)
            });
        self.permit_weak_or_unset_master_key = gs
            .dangerously_permit_weak_or_unset_master_key
            .unwrap_or(false)
            || truthy(env("LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY"));
        self.model_cost_map_path = self
            .file
            .litellm_settings
            .model_cost_map_path
            .clone()
            .or_else(|| env("LITELLM_MODEL_COST_MAP_PATH"))
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        self.model_cost_map_url =
            env("LITELLM_MODEL_COST_MAP_URL").filter(|u| !u.trim().is_empty());
        self.local_model_cost_map = truthy(env("LITELLM_LOCAL_MODEL_COST_MAP"));
        let ls = &self.file.litellm_settings.extra;
        let setting = env("SSL_VERIFY")
            .map(|v| (Value::String(v), "SSL_VERIFY"))
            .or_else(|| {
                ls.get("ssl_verify")
                    .cloned()
                    .map(|v| (v, "litellm_settings.ssl_verify"))
            });
        self.upstream_tls = UpstreamTls::resolve(setting, env("SSL_CERT_FILE"));
        self.force_ipv4 = ls.get("force_ipv4").and_then(loose_bool) == Some(true);
        self.store_model_in_db =
            gs.store_model_in_db.unwrap_or(false) || truthy(env("STORE_MODEL_IN_DB"));
        self.salt_key = env("LITELLM_SALT_KEY")
            .filter(|k| !k.is_empty())
            .map(Secret::new);
        self.jwt_env = ["JWT_PUBLIC_KEY_URL", "JWT_AUDIENCE", "JWT_ISSUER"]
            .iter()
            .filter_map(|n| env(n).map(|v| (n.to_string(), v)))
            .collect();
        self.redis_env = ["REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD"]
            .iter()
            .filter_map(|n| {
                env(n)
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| (n.to_string(), v))
            })
            .collect();
        self.pass_through_env = env_names::PASS_THROUGH
            .iter()
            .filter_map(|n| env(n).map(|v| (n.to_string(), v)))
            .collect();
        for entry in &mut self.file.model_list {
            fill_from_env(entry, env);
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |path: String, message: &str| ConfigError::Invalid {
            file: self.source.clone(),
            path,
            message: message.to_string(),
        };
        if self
            .file
            .general_settings
            .health_check_interval
            .is_some_and(|t| !(t > 0.0 && t.is_finite()))
        {
            return Err(invalid(
                "general_settings.health_check_interval".to_string(),
                "must be a positive number of seconds",
            ));
        }
        let gs = &self.file.general_settings;
        for (name, v) in [
            ("keepalive_timeout", gs.keepalive_timeout),
            ("max_admin_request_size_mb", gs.max_admin_request_size_mb),
            (
                "max_request_metadata_size_kb",
                gs.max_request_metadata_size_kb,
            ),
        ] {
            // Under a day: a longer keep-alive is a typo, and Duration::from_secs_f64 must
            // never see an absurd value.
            if v.is_some_and(|t| !(t > 0.0 && t < 86_400.0)) {
                return Err(invalid(
                    format!("general_settings.{name}"),
                    "must be a positive number below 86400",
                ));
            }
        }
        if gs.max_request_user_length == Some(0) {
            return Err(invalid(
                "general_settings.max_request_user_length".to_string(),
                "must be at least 1",
            ));
        }
        if gs.limit_concurrency == Some(0) {
            return Err(invalid(
                "general_settings.limit_concurrency".to_string(),
                "must be at least 1",
            ));
        }
        if self.file.general_settings.global_max_parallel_requests == Some(0) {
            return Err(invalid(
                "general_settings.global_max_parallel_requests".to_string(),
                "must be at least 1",
            ));
        }
        for (i, m) in self.file.model_list.iter().enumerate() {
            if let Err(bad) = validate_entry(m) {
                return Err(invalid(
                    format!("model_list[{i}].{}", bad.path),
                    &bad.message,
                ));
            }
        }
        Ok(())
    }
}

/// Provider defaults (`OPENAI_API_KEY`, `OPENAI_API_BASE`, ...) for a deployment that names
/// none, as a config entry gets them at load; also used for deployments added over the API.
pub fn fill_from_env(entry: &mut ModelEntry, env: &dyn Fn(&str) -> Option<String>) {
    let p = &mut entry.litellm_params;
    if p.mock_response.is_some() {
        return;
    }
    let provider = provider_of(p);
    let (key_var, base_var) = env_defaults(&provider);
    if p.api_key.is_none() {
        p.api_key = key_var.iter().find_map(|v| env(v)).map(Secret::new);
    }
    if p.api_base.is_none() {
        p.api_base = base_var.iter().find_map(|v| env(v));
    }
    read_provider_env(&provider, p, env);
}

/// Why a deployment cannot be served: the key path inside the entry and the reason (never the
/// value: it may be a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadEntry {
    pub path: String,
    pub message: String,
}

/// The checks every deployment passes, from config.yaml or `/model/new`.
pub fn validate_entry(m: &ModelEntry) -> Result<(), BadEntry> {
    let bad = |path: &str, message: &str| {
        Err(BadEntry {
            path: path.to_string(),
            message: message.to_string(),
        })
    };
    if m.model_name.trim().is_empty() {
        return bad("model_name", "must not be empty");
    }
    let p = &m.litellm_params;
    if p.model.trim().is_empty() {
        return bad("litellm_params.model", "must not be empty");
    }
    for (name, v) in [("timeout", p.timeout), ("stream_timeout", p.stream_timeout)] {
        if v.is_some_and(|t| t <= 0.0) {
            return bad(
                &format!("litellm_params.{name}"),
                "must be a positive number of seconds",
            );
        }
    }
    if let Some(base) = &p.api_base
        && !(base.starts_with("http://") || base.starts_with("https://"))
    {
        return bad(
            "litellm_params.api_base",
            "must start with http:// or https://",
        );
    }
    route_budgets::of_deployment(p, "")?;
    if let Err(e) = call_params::from_litellm_params(p, None) {
        return bad(&format!("litellm_params.{}", e.key), &e.message);
    }
    if let Some(org) = &p.organization
        && http::HeaderValue::from_str(org.trim()).is_err()
    {
        return bad(
            "litellm_params.organization",
            "cannot be sent in an HTTP header (control characters)",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn ssl_verify_resolves_as_litellm_resolves_it() {
        let dir = std::env::temp_dir();
        let existing = dir.display().to_string();
        let s = |v: &str, from| Some((Value::String(v.to_string()), from));
        assert_eq!(UpstreamTls::resolve(None, None), UpstreamTls::Verify);
        assert_eq!(
            UpstreamTls::resolve(Some((Value::Bool(false), "x")), None),
            UpstreamTls::Off
        );
        assert_eq!(
            UpstreamTls::resolve(s("False", "SSL_VERIFY"), None),
            UpstreamTls::Off
        );
        assert_eq!(
            UpstreamTls::resolve(s(&existing, "litellm_settings.ssl_verify"), None),
            UpstreamTls::CaBundle {
                path: dir.clone(),
                from: "litellm_settings.ssl_verify"
            }
        );
        // Verification on: SSL_CERT_FILE, when it names a file, is the bundle.
        assert_eq!(
            UpstreamTls::resolve(s("true", "x"), Some(existing.clone())),
            UpstreamTls::CaBundle {
                path: dir,
                from: "SSL_CERT_FILE"
            }
        );
        assert_eq!(
            UpstreamTls::resolve(None, Some("/nonexistent/ca.pem".into())),
            UpstreamTls::Verify
        );
        assert_eq!(
            UpstreamTls::resolve(s("/nonexistent/ca.pem", "x"), None),
            UpstreamTls::CaBundle {
                path: PathBuf::from("/nonexistent/ca.pem"),
                from: "x"
            }
        );
    }

    #[test]
    fn wrong_number_names_the_path() {
        let y = "model_list:\n  - model_name: a\n    litellm_params: {model: openai/a}\n  - model_name: b\n    litellm_params:\n      model: openai/b\n      timeout: abc\n";
        let e = ProxyConfig::from_yaml(y, "config.yaml", &no_env)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(
                "config.yaml: model_list[1].litellm_params.timeout: expected a number, got \"abc\""
            )
        );
    }

    #[test]
    fn unusable_call_params_name_the_path_without_the_value() {
        let y = "model_list:\n  - model_name: a\n    litellm_params:\n      model: openai/a\n      extra_headers: {x-key: \"sk-secret\\r\\nx: 1\"}\n";
        let e = ProxyConfig::from_yaml(y, "config.yaml", &no_env)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.starts_with("config.yaml: model_list[0].litellm_params.extra_headers: x-key:"),
            "{e}"
        );
        assert!(!e.contains("sk-secret"), "{e}");
    }

    #[test]
    fn numbers_as_strings_and_env_section_work() {
        let y = "environment_variables:\n  T: '12'\nmodel_list:\n  - model_name: a\n    litellm_params:\n      model: openai/a\n      timeout: os.environ/T\n      rpm: '5'\n      mock_response: hi\nrouter_settings:\n  routing_strategy: least-busy\n  fallbacks: [{a: [b]}]\ngeneral_settings:\n";
        let c = ProxyConfig::from_yaml(y, "c.yaml", &no_env);
        let c = c.ok().unwrap_or_default();
        let p = &c.file.model_list[0].litellm_params;
        assert_eq!(p.timeout, Some(12.0));
        assert_eq!(p.rpm, Some(5));
        assert_eq!(
            c.file.router_settings.routing_strategy,
            Some(RoutingStrategy::LeastBusy)
        );
        assert_eq!(
            c.file.router_settings.fallbacks[0]["a"],
            vec!["b".to_string()]
        );
    }
}
