//! Auth profiles (`<agentDir>/auth-profiles.json`, mode 0600) and the key precedence used at
//! request time: auth profile, then environment variable, then the config's `apiKey`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::{LoadedConfig, SecretInput, SecretRef};
use crate::env::Env;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthStore {
    #[serde(default = "one")]
    pub version: u32,
    #[serde(default)]
    pub profiles: BTreeMap<String, AuthProfile>,
    #[serde(default)]
    pub order: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub last_good: BTreeMap<String, String>,
    #[serde(default)]
    pub usage_stats: BTreeMap<String, UsageStats>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

fn one() -> u32 {
    1
}

impl Default for AuthStore {
    fn default() -> Self {
        Self {
            version: 1,
            profiles: BTreeMap::new(),
            order: BTreeMap::new(),
            last_good: BTreeMap::new(),
            usage_stats: BTreeMap::new(),
            other: Map::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageStats {
    #[serde(default)]
    pub last_used: u64,
    #[serde(default)]
    pub cooldown_until: u64,
    #[serde(default)]
    pub error_count: u64,
}

/// One credential: `api_key {key | keyRef}`, `token {token}` or `oauth {access, ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthProfile {
    #[serde(rename = "type")]
    pub kind: String,
    pub provider: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_ref: Option<SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// How onboarding hands over a key: the key itself, or the name of a variable holding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    Plain(String),
    EnvRef(String),
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("Failed to read auth profiles at {}: {message}", path.display())]
    Read { path: PathBuf, message: String },
    #[error("Failed to write auth profiles at {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "No API key found for provider \"{provider}\". Auth store: {} (agentDir: {}). {hint}",
        store.display(),
        agent_dir.display()
    )]
    NoKey {
        provider: String,
        store: PathBuf,
        agent_dir: PathBuf,
        hint: String,
    },
}

impl AuthStore {
    /// Read the store; a missing file is an empty store.
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        match std::fs::read_to_string(path) {
            Ok(t) => serde_json::from_str(&t).map_err(|e| AuthError::Read {
                path: path.to_path_buf(),
                message: format!("{e} (fix or delete the file, then run idlehands onboard)"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(AuthError::Read {
                path: path.to_path_buf(),
                message: e.to_string(),
            }),
        }
    }

    /// Write the store with mode 0600 under a lock file (10 tries, a lock older than 30 s is
    /// taken over).
    pub fn save(&self, path: &Path) -> Result<(), AuthError> {
        let werr = |source| AuthError::Write {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            crate::fsutil::create_private_dir(dir).map_err(werr)?;
        }
        let _lock = FileLock::acquire(path).map_err(werr)?;
        let text =
            serde_json::to_string_pretty(self).map_err(|e| werr(std::io::Error::other(e)))?;
        crate::fsutil::write_private(path, format!("{text}\n").as_bytes()).map_err(werr)
    }

    /// Insert or replace an `api_key` profile.
    pub fn upsert_api_key(&mut self, profile_id: &str, provider: &str, key: KeyMaterial) {
        let (key, key_ref) = match key {
            KeyMaterial::Plain(k) => (Some(k), None),
            KeyMaterial::EnvRef(name) => (
                None,
                Some(SecretRef {
                    source: "env".into(),
                    provider: "default".into(),
                    id: name,
                }),
            ),
        };
        self.profiles.insert(
            profile_id.to_string(),
            AuthProfile {
                kind: "api_key".into(),
                provider: provider.to_string(),
                key,
                key_ref,
                token: None,
                access: None,
                other: Map::new(),
            },
        );
        self.usage_stats.entry(profile_id.to_string()).or_default();
    }

    /// Profiles for `provider`, in the order they are tried: the config's `auth.order`, else
    /// the store's `order`, else `lastGood` first and then by id.
    pub fn profile_order(&self, cfg: &LoadedConfig, provider: &str) -> Vec<String> {
        let explicit = cfg
            .config
            .auth
            .as_ref()
            .and_then(|a| a.order.get(provider))
            .or_else(|| self.order.get(provider));
        if let Some(list) = explicit {
            return list
                .iter()
                .filter(|id| self.profiles.contains_key(*id))
                .cloned()
                .collect();
        }
        let mut ids: Vec<String> = self
            .profiles
            .iter()
            .filter(|(_, p)| p.provider == provider)
            .map(|(id, _)| id.clone())
            .collect();
        if let Some(good) = self.last_good.get(provider)
            && let Some(i) = ids.iter().position(|x| x == good)
        {
            let g = ids.remove(i);
            ids.insert(0, g);
        }
        ids
    }

    /// The first `api_key` profile for `provider`, if any.
    pub fn api_key_profile(&self, cfg: &LoadedConfig, provider: &str) -> Option<String> {
        self.profile_order(cfg, provider)
            .into_iter()
            .find(|id| self.profiles.get(id).is_some_and(|p| p.kind == "api_key"))
    }
}

/// Where a key came from, for `models status` (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Profile(String),
    Env(String),
    Config,
    /// A local server that takes no key (or `apiKey: ""` in the config).
    NotNeeded,
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Profile(id) => write!(f, "profile: {id}"),
            Self::Env(v) => write!(f, "env: {v}"),
            Self::Config => f.write_str("config: apiKey"),
            Self::NotNeeded => f.write_str("none needed (local server)"),
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct ResolvedKey {
    pub key: String,
    pub source: KeySource,
}

impl std::fmt::Debug for ResolvedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedKey")
            .field("key", &"<redacted>")
            .field("source", &self.source)
            .finish()
    }
}

/// The environment variables that hold a provider's key, in preference order.
pub fn env_vars_for(provider: &str) -> &'static [&'static str] {
    match provider {
        "litellm" => &["LITELLM_API_KEY"],
        "openai" => &["OPENAI_API_KEY"],
        "anthropic" => &["ANTHROPIC_OAUTH_TOKEN", "ANTHROPIC_API_KEY"],
        "google" => &["GEMINI_API_KEY"],
        "openrouter" => &["OPENROUTER_API_KEY"],
        "ollama" => &["OLLAMA_API_KEY"],
        "vllm" => &["VLLM_API_KEY"],
        "mistral" => &["MISTRAL_API_KEY"],
        "together" => &["TOGETHER_API_KEY"],
        "xai" => &["XAI_API_KEY"],
        "groq" => &["GROQ_API_KEY"],
        "cerebras" => &["CEREBRAS_API_KEY"],
        "nvidia" => &["NVIDIA_API_KEY"],
        "deepseek" => &["DEEPSEEK_API_KEY"],
        "zai" => &["ZAI_API_KEY", "Z_AI_API_KEY"],
        "huggingface" => &["HUGGINGFACE_HUB_TOKEN", "HF_TOKEN"],
        _ => &[],
    }
}

/// Providers with key variables in [`env_vars_for`].
const KEY_PROVIDERS: &[&str] = &[
    "litellm",
    "openai",
    "anthropic",
    "google",
    "openrouter",
    "ollama",
    "vllm",
    "mistral",
    "together",
    "xai",
    "groq",
    "cerebras",
    "nvidia",
    "deepseek",
    "zai",
    "huggingface",
];

/// Whether `name` is an environment variable some provider's key is read from (or the
/// LiteLLM proxy's master key).
pub fn is_provider_key_var(name: &str) -> bool {
    name == "LITELLM_MASTER_KEY"
        || KEY_PROVIDERS
            .iter()
            .any(|p| env_vars_for(p).contains(&name))
}

fn resolve_ref(r: &SecretRef, env: &Env) -> Option<String> {
    (r.source == "env")
        .then(|| env.get(&r.id).map(str::to_string))
        .flatten()
}

fn profile_key(p: &AuthProfile, env: &Env) -> Option<String> {
    match p.kind.as_str() {
        "api_key" => p
            .key
            .clone()
            .filter(|k| !k.trim().is_empty())
            .or_else(|| p.key_ref.as_ref().and_then(|r| resolve_ref(r, env))),
        "token" => p.token.clone().filter(|k| !k.trim().is_empty()),
        "oauth" => p.access.clone().filter(|k| !k.trim().is_empty()),
        _ => None,
    }
}

/// Resolve the key for `provider`: auth profiles, then env, then `models.providers.<p>.apiKey`.
pub fn resolve_api_key(
    provider: &str,
    cfg: &LoadedConfig,
    store: &AuthStore,
    env: &Env,
    paths: &crate::paths::Paths,
) -> Result<ResolvedKey, AuthError> {
    for id in store.profile_order(cfg, provider) {
        if let Some(key) = store.profiles.get(&id).and_then(|p| profile_key(p, env)) {
            return Ok(ResolvedKey {
                key,
                source: KeySource::Profile(id),
            });
        }
    }
    for var in env_vars_for(provider) {
        if let Some(v) = env.get(var) {
            return Ok(ResolvedKey {
                key: v.to_string(),
                source: KeySource::Env((*var).to_string()),
            });
        }
    }
    if let Some(input) = cfg.provider(provider).and_then(|p| p.api_key.as_ref()) {
        let key = match input {
            // Upstream's models.json also accepts the bare name of a set variable.
            SecretInput::Plain(s) if crate::onboard::valid_env_name(s.trim()) => env
                .get(s.trim())
                .map(str::to_string)
                .or_else(|| Some(s.trim().to_string())),
            SecretInput::Plain(s) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
            SecretInput::Ref(r) => resolve_ref(r, env),
        };
        if let Some(key) = key {
            return Ok(ResolvedKey {
                key,
                source: KeySource::Config,
            });
        }
    }
    // Local servers run without keys; an explicit empty `apiKey` says the same for others.
    let explicit_none = matches!(
        cfg.provider(provider).and_then(|p| p.api_key.as_ref()),
        Some(SecretInput::Plain(s)) if s.trim().is_empty()
    );
    if explicit_none || crate::local::is_local_provider(provider) {
        return Ok(ResolvedKey {
            key: String::new(),
            source: KeySource::NotNeeded,
        });
    }
    let hint = match env_vars_for(provider).first() {
        Some(var) if provider == "litellm" => {
            format!("Run `idlehands onboard --auth-choice litellm-api-key` or export {var}.")
        }
        Some(var) => format!("Export {var} or set models.providers.{provider}.apiKey."),
        None => format!("Set models.providers.{provider}.apiKey (e.g. \"${{MY_KEY}}\")."),
    };
    Err(AuthError::NoKey {
        provider: provider.to_string(),
        store: paths.auth_profiles_path(),
        agent_dir: paths.agent_dir.clone(),
        hint,
    })
}

struct FileLock(PathBuf);

impl FileLock {
    fn acquire(target: &Path) -> std::io::Result<Self> {
        let mut lock = target.as_os_str().to_owned();
        lock.push(".lock");
        let lock = PathBuf::from(lock);
        for _ in 0..10 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&lock)
            {
                Ok(_) => return Ok(Self(lock)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let stale = std::fs::metadata(&lock)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| SystemTime::now().duration_since(t).ok())
                        .is_some_and(|age| age > Duration::from_secs(30));
                    if stale {
                        let _ = std::fs::remove_file(&lock);
                        continue;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::other(format!(
            "auth profile lock {} is held by another process",
            lock.display()
        )))
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
