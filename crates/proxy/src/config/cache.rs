//! `litellm_settings.cache` and `cache_params`: the response cache's settings, read once at
//! start-up. LiteLLM's `local` and `redis` cache types are built; the others (semantic caches,
//! object stores) are named at start-up and leave responses uncached, as does `cache_params`
//! without `cache: true` (LiteLLM reads the parameters only when the cache is on).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use super::{ConfigError, ProxyConfig, Secret, invalid, loose_number};

/// LiteLLM's in-memory cache holds 200 responses of at most 1 MiB each.
pub const DEFAULT_MAX_ITEMS: usize = 200;
pub const DEFAULT_MAX_ITEM_BYTES: usize = 1024 * 1024;
/// LiteLLM's in-memory entries live 10 minutes unless a TTL is set; Redis ones until evicted.
pub const DEFAULT_LOCAL_TTL: Duration = Duration::from_secs(600);
/// LiteLLM's `max_messages`: a request with more messages than this is not cached (long
/// conversations rarely repeat, and their keys cost the most to compute).
pub const DEFAULT_MAX_MESSAGES: usize = 4;

/// Where cached responses live.
#[derive(Debug, Clone)]
pub enum CacheStore {
    /// This instance's memory.
    Local { max_items: usize },
    /// A Redis every instance shares: `redis://[:password@]host:port` (a secret: it may hold
    /// the password).
    Redis { url: Secret },
}

/// `cache_params.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    /// Every supported call is looked up and stored unless it opts out.
    DefaultOn,
    /// Only calls that send `cache: {"use-cache": true}`.
    DefaultOff,
}

/// The call types whose answers are cached (LiteLLM's `supported_call_types` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachedCalls {
    pub chat: bool,
    pub text: bool,
    pub embedding: bool,
}

impl CachedCalls {
    /// By the gateway's `call_type` (`acompletion`, `atext_completion`, `aembedding`).
    pub fn includes(&self, call_type: &str) -> bool {
        match call_type {
            "acompletion" => self.chat,
            "atext_completion" => self.text,
            "aembedding" => self.embedding,
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct CacheSettings {
    pub store: CacheStore,
    /// Prefixed to every key (`namespace:sha256`), as LiteLLM's `namespace`.
    pub namespace: Option<String>,
    /// How long an entry lives unless the call sets its own `ttl`; `None`: until evicted.
    pub ttl: Option<Duration>,
    pub mode: CacheMode,
    pub calls: CachedCalls,
    /// Requests with more messages than this are not cached.
    pub max_messages: usize,
    pub max_item_bytes: usize,
    /// `general_settings.redis_key_prefix`: Redis keys are `{prefix}cache:{key}`, so that
    /// flushing the cache never touches the fleet's budgets and limits in the same Redis.
    pub redis_prefix: String,
}

/// The cache's settings (`None`: no response cache), and what in them is not acted on.
pub fn from_config(cfg: &ProxyConfig) -> Result<(Option<CacheSettings>, Vec<String>), ConfigError> {
    let ls = &cfg.file.litellm_settings;
    let mut notes = Vec::new();
    let empty = serde_json::Map::new();
    let params = match &ls.cache_params {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(invalid(
                cfg,
                "litellm_settings.cache_params",
                format!("{} is not a mapping", kind_of(other)),
            ));
        }
    };
    if ls.cache != Some(true) {
        if ls.cache_params.is_some() {
            notes.push(
                "litellm_settings.cache_params has no effect here: litellm_settings.cache is not true; responses are not cached".to_string(),
            );
        }
        return Ok((None, notes));
    }
    let field = |name: &str| params.get(name).filter(|v| !v.is_null());
    let string = |name: &str| -> Result<Option<String>, ConfigError> {
        match field(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_string()).filter(|s| !s.is_empty())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(v) => Err(invalid(
                cfg,
                &format!("litellm_settings.cache_params.{name}"),
                format!("{} is not a string", kind_of(v)),
            )),
        }
    };
    let seconds = |name: &str| -> Result<Option<Duration>, ConfigError> {
        match field(name) {
            None => Ok(None),
            Some(v) => loose_number(v)
                .filter(|s| s.is_finite() && *s > 0.0 && *s <= 10.0 * 365.0 * 86_400.0)
                .map(|s| Some(Duration::from_secs_f64(s)))
                .ok_or_else(|| {
                    invalid(
                        cfg,
                        &format!("litellm_settings.cache_params.{name}"),
                        format!("{v} is not a positive number of seconds"),
                    )
                }),
        }
    };
    let count = |name: &str| -> Result<Option<usize>, ConfigError> {
        match field(name) {
            None => Ok(None),
            Some(v) => loose_number(v)
                .filter(|n| n.is_finite() && *n >= 0.0 && n.fract() == 0.0)
                .map(|n| Some(n as usize))
                .ok_or_else(|| {
                    invalid(
                        cfg,
                        &format!("litellm_settings.cache_params.{name}"),
                        format!("{v} is not a whole number"),
                    )
                }),
        }
    };
    let kind = string("type")?.unwrap_or_else(|| "local".to_string());
    let redis = kind == "redis";
    let store = match kind.as_str() {
        "local" => CacheStore::Local {
            max_items: match count("max_size_in_memory")? {
                Some(0) => {
                    return Err(invalid(
                        cfg,
                        "litellm_settings.cache_params.max_size_in_memory",
                        "0 would hold nothing; leave it out for 200".to_string(),
                    ));
                }
                Some(n) => n,
                None => DEFAULT_MAX_ITEMS,
            },
        },
        "redis" => CacheStore::Redis {
            url: Secret::new(redis_url(cfg, &string)?),
        },
        "redis-semantic" | "qdrant-semantic" | "valkey-semantic" | "s3" | "gcs" | "azure-blob"
        | "disk" => {
            notes.push(format!(
                "litellm_settings.cache_params.type {kind:?} has no effect here: this cache type is not built (local and redis are); responses are not cached"
            ));
            return Ok((None, notes));
        }
        other => {
            return Err(invalid(
                cfg,
                "litellm_settings.cache_params.type",
                format!("{other:?} is not a cache type (local, redis)"),
            ));
        }
    };
    let mode = match string("mode")?.as_deref() {
        None | Some("default_on") => CacheMode::DefaultOn,
        Some("default_off") => CacheMode::DefaultOff,
        Some(other) => {
            return Err(invalid(
                cfg,
                "litellm_settings.cache_params.mode",
                format!("{other:?} is not one of: default_on, default_off"),
            ));
        }
    };
    let default_ttl = if redis {
        seconds("default_in_redis_ttl")?
    } else {
        seconds("default_in_memory_ttl")?
    };
    let ttl = match (default_ttl, seconds("ttl")?) {
        (Some(t), _) | (None, Some(t)) => Some(t),
        (None, None) if redis => None,
        (None, None) => Some(DEFAULT_LOCAL_TTL),
    };
    let calls = match field("supported_call_types") {
        None => {
            // LiteLLM's default list also has these.
            notes.push(
                "litellm_settings.cache has no effect here on /v1/responses, /v1/messages, rerank and transcription calls: only completion, text_completion and embedding calls are cached".to_string(),
            );
            CachedCalls {
                chat: true,
                text: true,
                embedding: true,
            }
        }
        Some(Value::Array(list)) => {
            let mut calls = CachedCalls {
                chat: false,
                text: false,
                embedding: false,
            };
            let mut unbuilt = BTreeSet::new();
            for v in list {
                match v.as_str().map(str::trim) {
                    Some("completion" | "acompletion") => calls.chat = true,
                    Some("text_completion" | "atext_completion") => calls.text = true,
                    Some("embedding" | "aembedding") => calls.embedding = true,
                    Some(other) => {
                        unbuilt.insert(other.to_string());
                    }
                    None => {
                        return Err(invalid(
                            cfg,
                            "litellm_settings.cache_params.supported_call_types",
                            format!("{v} is not a call type name"),
                        ));
                    }
                }
            }
            if !unbuilt.is_empty() {
                let names: Vec<String> = unbuilt.into_iter().collect();
                notes.push(format!(
                    "litellm_settings.cache_params.supported_call_types {} has no effect here: only completion, text_completion and embedding calls are cached",
                    names.join(", ")
                ));
            }
            calls
        }
        Some(v) => {
            return Err(invalid(
                cfg,
                "litellm_settings.cache_params.supported_call_types",
                format!("{} is not a list", kind_of(v)),
            ));
        }
    };
    let max_messages = count("max_messages")?.unwrap_or(DEFAULT_MAX_MESSAGES);
    let max_item_bytes = match count("max_size_per_item")? {
        Some(kb) if kb > 0 => kb.saturating_mul(1024),
        _ => DEFAULT_MAX_ITEM_BYTES,
    };
    let known: &[&str] = &[
        "type",
        "host",
        "port",
        "password",
        "url",
        "username",
        "namespace",
        "ttl",
        "default_in_memory_ttl",
        "default_in_redis_ttl",
        "mode",
        "supported_call_types",
        "max_messages",
        "max_size_in_memory",
        "max_size_per_item",
    ];
    for name in params.keys().filter(|k| !known.contains(&k.as_str())) {
        notes.push(format!(
            "litellm_settings.cache_params.{name} has no effect here: not a setting of the local or redis cache"
        ));
    }
    if !redis && (field("host").is_some() || field("port").is_some() || field("url").is_some()) {
        notes.push(
            "litellm_settings.cache_params.host has no effect here: the cache type is local (host, port and url are for redis)".to_string(),
        );
    }
    let redis_prefix = cfg
        .file
        .general_settings
        .extra
        .get("redis_key_prefix")
        .and_then(Value::as_str)
        .unwrap_or("idlehands:")
        .to_string();
    let settings = CacheSettings {
        store,
        namespace: string("namespace")?,
        ttl,
        mode,
        calls,
        max_messages,
        max_item_bytes,
        redis_prefix,
    };
    Ok((Some(settings), notes))
}

/// `cache_params`' `url`, else `host` (+ `port`, `password`, `username`), else the
/// environment's `REDIS_URL` or `REDIS_HOST` (+ `REDIS_PORT`, `REDIS_PASSWORD`), as LiteLLM's
/// Redis cache looks.
fn redis_url(
    cfg: &ProxyConfig,
    string: &dyn Fn(&str) -> Result<Option<String>, ConfigError>,
) -> Result<String, ConfigError> {
    if let Some(u) = string("url")? {
        return Ok(u);
    }
    let env = |n: &str| cfg.redis_env.get(n).cloned();
    let (host, port, password) = match string("host")? {
        Some(h) => (h, string("port")?, string("password")?),
        None => match env("REDIS_URL") {
            Some(u) => return Ok(u),
            None => match env("REDIS_HOST") {
                Some(h) => (h, env("REDIS_PORT"), env("REDIS_PASSWORD")),
                None => {
                    return Err(invalid(
                        cfg,
                        "litellm_settings.cache_params.host",
                        "a redis cache needs host (or url), or REDIS_HOST / REDIS_URL in the environment".to_string(),
                    ));
                }
            },
        },
    };
    let port = port.unwrap_or_else(|| "6379".to_string());
    let user = string("username")?.unwrap_or_default();
    super::redis_address(&host, &port, &user, password.as_deref()).ok_or_else(|| {
        invalid(
            cfg,
            "litellm_settings.cache_params.host",
            "host and port do not make a Redis address".to_string(),
        )
    })
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(
        yaml: &str,
        env: &[(&str, &str)],
    ) -> Result<(Option<CacheSettings>, Vec<String>), ConfigError> {
        let env: std::collections::HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let cfg = ProxyConfig::from_yaml(yaml, "c.yaml", &|k| env.get(k).cloned()).expect("config");
        from_config(&cfg)
    }

    #[test]
    fn cache_true_alone_is_a_local_cache_with_litellms_defaults() {
        let (s, notes) = load("litellm_settings:\n  cache: true\n", &[]).unwrap();
        let s = s.expect("a cache");
        assert!(matches!(s.store, CacheStore::Local { max_items: 200 }));
        assert_eq!(s.ttl, Some(Duration::from_secs(600)));
        assert_eq!(s.mode, CacheMode::DefaultOn);
        assert_eq!(s.max_messages, 4);
        assert!(s.calls.includes("acompletion") && s.calls.includes("aembedding"));
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("/v1/responses"), "{notes:?}");
    }

    #[test]
    fn redis_takes_its_place_from_params_then_the_environment() {
        let y = "litellm_settings:\n  cache: true\n  cache_params: {type: redis, host: h, port: 6380, password: pw, namespace: ns, ttl: 30}\n";
        let s = load(y, &[]).unwrap().0.unwrap();
        let CacheStore::Redis { url } = &s.store else {
            panic!("redis")
        };
        assert_eq!(url.expose(), "redis://:pw@h:6380");
        let y = "litellm_settings:\n  cache: true\n  cache_params: {type: redis, host: h, password: 'p@ss:w/rd'}\n";
        let odd = load(y, &[]).unwrap().0.unwrap();
        let CacheStore::Redis { url: odd_url } = &odd.store else {
            panic!("redis")
        };
        assert_eq!(odd_url.expose(), "redis://:p%40ss%3Aw%2Frd@h:6379");
        assert!(redis::Client::open(odd_url.expose()).is_ok());
        assert_eq!(s.ttl, Some(Duration::from_secs(30)));
        assert_eq!(s.namespace.as_deref(), Some("ns"));
        let y = "litellm_settings:\n  cache: true\n  cache_params: {type: redis}\n";
        let s = load(y, &[("REDIS_HOST", "e"), ("REDIS_PORT", "1")])
            .unwrap()
            .0
            .unwrap();
        let CacheStore::Redis { url } = &s.store else {
            panic!("redis")
        };
        assert_eq!(url.expose(), "redis://e:1");
        assert_eq!(
            s.ttl, None,
            "redis entries live until evicted unless a ttl is set"
        );
        let e = load(y, &[]).unwrap_err().to_string();
        assert!(
            e.contains("cache_params.host") && e.contains("c.yaml"),
            "{e}"
        );
    }

    #[test]
    fn what_is_not_built_or_not_acted_on_is_named() {
        let (s, notes) = load("litellm_settings:\n  cache_params: {type: redis}\n", &[]).unwrap();
        assert!(s.is_none());
        assert!(notes[0].contains("cache is not true"), "{notes:?}");
        let (s, notes) = load(
            "litellm_settings:\n  cache: true\n  cache_params: {type: s3, s3_bucket_name: b}\n",
            &[],
        )
        .unwrap();
        assert!(s.is_none());
        assert!(
            notes[0].contains("\"s3\"") && notes[0].contains("not cached"),
            "{notes:?}"
        );
        let (s, notes) = load("litellm_settings:\n  cache: true\n  cache_params: {supported_call_types: [acompletion, arerank], similarity_threshold: 0.8}\n", &[]).unwrap();
        let s = s.unwrap();
        assert!(s.calls.chat && !s.calls.embedding);
        assert!(notes.iter().any(|n| n.contains("arerank")), "{notes:?}");
        assert!(
            notes.iter().any(|n| n.contains("similarity_threshold")),
            "{notes:?}"
        );
    }

    #[test]
    fn bad_values_name_their_field() {
        for (params, field) in [
            ("{type: memcached}", "cache_params.type"),
            ("{mode: sometimes}", "cache_params.mode"),
            ("{ttl: -1}", "cache_params.ttl"),
            ("{max_messages: 2.5}", "cache_params.max_messages"),
            (
                "{supported_call_types: acompletion}",
                "cache_params.supported_call_types",
            ),
        ] {
            let y = format!("litellm_settings:\n  cache: true\n  cache_params: {params}\n");
            let e = load(&y, &[]).unwrap_err().to_string();
            assert!(e.contains(field), "{params}: {e}");
        }
        let s = load("litellm_settings:\n  cache: true\n  cache_params: {max_messages: 50, mode: default_off}\n", &[])
            .unwrap()
            .0
            .unwrap();
        assert_eq!(s.max_messages, 50);
        assert_eq!(s.mode, CacheMode::DefaultOff);
    }
}
