//! Pass-through routes: `/openai/*`, `/anthropic/*`, `/gemini/*`, `/vllm/*`, `/ollama/*` and the
//! routes of `general_settings.pass_through_endpoints`, resolved once at start-up. Where each
//! provider route sends its calls and with which credential follows LiteLLM: a deployment
//! marked `use_in_pass_through: true` of that provider gives the key (and base URL), else the
//! environment (`OPENAI_API_KEY`, `ANTHROPIC_API_BASE`, ...), else the provider's public URL.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use serde_json::Value;

use crate::config::{ConfigError, LitellmParams, ModelEntry, ModelInfo, ProxyConfig};
use crate::pricing::{Nanos, PriceTable};
use crate::providers::Deployment;

/// LiteLLM's `pass_through_request_timeout` default.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Where a provider wants its key.
#[derive(Clone, Debug)]
pub(crate) enum Credential {
    /// A header set on every call (the caller's own is removed).
    Headers(Vec<(HeaderName, HeaderValue)>),
    /// Gemini: the `key` query parameter.
    Query(String),
}

/// One provider route.
pub(crate) struct ProviderRoute {
    /// `openai`, `anthropic`, ...: the path prefix without its slash.
    pub name: &'static str,
    /// `None`: no base URL is configured and the provider has no public one (vLLM).
    pub base: Option<String>,
    /// `None`: no key is configured; `missing_key` says whether calls are refused then.
    pub credential: Option<Credential>,
    /// Why a call without a configured key is refused, if it is.
    pub missing_key: Option<&'static str>,
    /// Caller headers sent on (besides the body's content type): all but credentials
    /// (`None`), or only these.
    pub forwards: Option<&'static [&'static str]>,
    /// Records, prices and limits the calls as this deployment (provider, base URL).
    pub deployment: Arc<Deployment>,
}

/// One `general_settings.pass_through_endpoints` entry.
pub(crate) struct CustomRoute {
    pub path: String,
    pub target: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub include_subpath: bool,
    pub auth: bool,
    pub forward_headers: bool,
    /// Empty: every method.
    pub methods: Vec<Method>,
    pub default_query: Vec<(String, String)>,
    pub cost_per_request: Option<Nanos>,
    pub timeout: Duration,
    pub deployment: Arc<Deployment>,
}

impl CustomRoute {
    /// The part of `path` after this route's, when the route serves it.
    pub fn matches<'p>(&self, method: &Method, path: &'p str) -> Option<&'p str> {
        if !self.methods.is_empty() && !self.methods.contains(method) {
            return None;
        }
        let base = self.path.trim_end_matches('/');
        if path == base || path == self.path {
            return Some("");
        }
        let rest = path.strip_prefix(base)?.strip_prefix('/')?;
        self.include_subpath.then_some(rest)
    }
}

#[derive(Default)]
pub(crate) struct PassThrough {
    pub providers: Vec<ProviderRoute>,
    pub custom: Vec<CustomRoute>,
    pub timeout: Duration,
}

impl PassThrough {
    pub fn provider(&self, name: &str) -> Option<&ProviderRoute> {
        self.providers.iter().find(|p| p.name == name)
    }

    pub fn custom_for(&self, method: &Method, path: &str) -> Option<(&CustomRoute, String)> {
        self.custom
            .iter()
            .find_map(|c| c.matches(method, path).map(|rest| (c, rest.to_string())))
    }
}

fn header(name: &'static str, value: &str) -> Option<(HeaderName, HeaderValue)> {
    let mut v = HeaderValue::from_str(value).ok()?;
    v.set_sensitive(true);
    Some((HeaderName::from_static(name), v))
}

fn bearer(key: &str) -> Option<Credential> {
    header("authorization", &format!("Bearer {key}")).map(|h| Credential::Headers(vec![h]))
}

/// The deployment marked `use_in_pass_through: true` for `provider`, as LiteLLM picks it.
fn marked<'c>(cfg: &'c ProxyConfig, provider: &str) -> Option<&'c LitellmParams> {
    cfg.file
        .model_list
        .iter()
        .map(|m| &m.litellm_params)
        .find(|p| {
            p.extra.get("use_in_pass_through") == Some(&Value::Bool(true))
                && crate::config::provider_of(p) == provider
        })
}

fn pass_through_deployment(
    name: &str,
    provider: &str,
    base: Option<&str>,
    cfg: &ProxyConfig,
    prices: &PriceTable,
) -> Arc<Deployment> {
    let entry = ModelEntry {
        model_name: name.to_string(),
        litellm_params: LitellmParams {
            model: format!("{provider}/pass-through"),
            custom_llm_provider: Some(provider.to_string()),
            api_base: base.map(str::to_string),
            ..LitellmParams::default()
        },
        model_info: ModelInfo::default(),
    };
    Arc::new(Deployment::pass_through(&entry, cfg, prices))
}

pub(crate) fn build(cfg: &ProxyConfig, prices: &PriceTable) -> Result<PassThrough, ConfigError> {
    let env = |n: &str| {
        cfg.pass_through_env
            .get(n)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    };
    let timeout = cfg
        .file
        .general_settings
        .extra
        .get("pass_through_request_timeout")
        .and_then(crate::config::loose_number)
        .filter(|s| *s > 0.0 && s.is_finite())
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs_f64);
    let key_of = |provider: &str, var: &[&str]| {
        marked(cfg, provider)
            .and_then(|p| p.api_key.as_ref().map(|k| k.expose().to_string()))
            .or_else(|| var.iter().find_map(|v| env(v)).map(str::to_string))
    };
    let base_of = |provider: &str, var: &[&str], default: Option<&str>| {
        var.iter()
            .find_map(|v| env(v))
            .map(str::to_string)
            .or_else(|| marked(cfg, provider).and_then(|p| p.api_base.clone()))
            .or_else(|| default.map(str::to_string))
    };
    let mut providers = Vec::new();
    let mut add = |name: &'static str,
                   provider: &str,
                   base: Option<String>,
                   credential: Option<Credential>,
                   missing_key: Option<&'static str>,
                   forwards: Option<&'static [&'static str]>| {
        let deployment = pass_through_deployment(
            &format!("{name}-pass-through"),
            provider,
            base.as_deref(),
            cfg,
            prices,
        );
        providers.push(ProviderRoute {
            name,
            base,
            credential,
            missing_key,
            forwards,
            deployment,
        });
    };
    let openai_key = key_of("openai", &["OPENAI_API_KEY"]);
    add(
        "openai",
        "openai",
        base_of(
            "openai",
            &["OPENAI_API_BASE"],
            Some("https://api.openai.com/"),
        ),
        openai_key.as_deref().and_then(|k| {
            Some(Credential::Headers(vec![
                header("authorization", &format!("Bearer {k}"))?,
                header("api-key", k)?,
            ]))
        }),
        Some("Required 'OPENAI_API_KEY' in environment to make pass-through calls to OpenAI."),
        Some(&[
            "content-type",
            "accept",
            "openai-beta",
            "openai-organization",
        ]),
    );
    add(
        "anthropic",
        "anthropic",
        base_of(
            "anthropic",
            &["ANTHROPIC_API_BASE", "ANTHROPIC_BASE_URL"],
            Some("https://api.anthropic.com"),
        ),
        key_of("anthropic", &["ANTHROPIC_API_KEY"])
            .and_then(|k| header("x-api-key", &k).map(|h| Credential::Headers(vec![h]))),
        Some(
            "Required 'ANTHROPIC_API_KEY' in environment to make pass-through calls to Anthropic.",
        ),
        None,
    );
    add(
        "gemini",
        "gemini",
        base_of(
            "gemini",
            &["GEMINI_API_BASE"],
            Some("https://generativelanguage.googleapis.com"),
        ),
        key_of("gemini", &["GEMINI_API_KEY", "GOOGLE_API_KEY"]).map(Credential::Query),
        Some(
            "Required 'GEMINI_API_KEY'/'GOOGLE_API_KEY' in environment to make pass-through calls to Google AI Studio.",
        ),
        Some(&["content-type", "accept"]),
    );
    add(
        "vllm",
        "hosted_vllm",
        base_of("hosted_vllm", &["VLLM_API_BASE"], None),
        key_of("hosted_vllm", &["VLLM_API_KEY"])
            .as_deref()
            .and_then(bearer),
        None,
        Some(&["content-type", "accept"]),
    );
    add(
        "ollama",
        "ollama",
        base_of(
            "ollama",
            &["OLLAMA_API_BASE"],
            Some("http://localhost:11434"),
        ),
        key_of("ollama", &["OLLAMA_API_KEY"])
            .as_deref()
            .and_then(bearer),
        None,
        Some(&["content-type", "accept"]),
    );
    let custom = custom_routes(cfg, prices, timeout)?;
    Ok(PassThrough {
        providers,
        custom,
        timeout,
    })
}

fn custom_routes(
    cfg: &ProxyConfig,
    prices: &PriceTable,
    default_timeout: Duration,
) -> Result<Vec<CustomRoute>, ConfigError> {
    let Some(list) = cfg
        .file
        .general_settings
        .extra
        .get("pass_through_endpoints")
    else {
        return Ok(Vec::new());
    };
    let invalid = |path: String, message: String| ConfigError::Invalid {
        file: cfg.source.clone(),
        path,
        message,
    };
    let Value::Array(list) = list else {
        return Err(invalid(
            "general_settings.pass_through_endpoints".to_string(),
            "expected a list of {path, target, headers, auth, ...}".to_string(),
        ));
    };
    let mut out = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        let at = |k: &str| format!("general_settings.pass_through_endpoints[{i}].{k}");
        let Value::Object(e) = entry else {
            return Err(invalid(
                format!("general_settings.pass_through_endpoints[{i}]"),
                "expected a mapping with path and target".to_string(),
            ));
        };
        let text = |k: &str| e.get(k).and_then(Value::as_str).map(str::trim);
        let flag = |k: &str, default: bool| -> Result<bool, ConfigError> {
            match e.get(k) {
                None | Some(Value::Null) => Ok(default),
                Some(Value::Bool(b)) => Ok(*b),
                Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
                Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
                Some(_) => Err(invalid(at(k), "expected true or false".to_string())),
            }
        };
        let path = text("path")
            .filter(|p| p.starts_with('/') && p.len() > 1)
            .ok_or_else(|| invalid(at("path"), "expected a route such as /my-api".to_string()))?;
        if path.split('/').any(|s| s == ".." || s == ".") {
            return Err(invalid(
                at("path"),
                "must not contain . or .. segments".to_string(),
            ));
        }
        let target = text("target")
            .filter(|t| reqwest::Url::parse(t).is_ok_and(|u| u.has_host()))
            .ok_or_else(|| {
                invalid(
                    at("target"),
                    "expected an http(s) URL such as https://api.example.com/v1/x".to_string(),
                )
            })?;
        let mut headers = Vec::new();
        match e.get("headers") {
            None | Some(Value::Null) => {}
            Some(Value::Object(h)) => {
                for (k, v) in h {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    // Only a whole value is read from the environment; a reference inside a
                    // longer value would go out as written.
                    if v.contains(crate::config::ENV_PREFIX) {
                        return Err(invalid(
                            format!("{}.{k}", at("headers")),
                            "os.environ/ must be the whole value: put the full header value (e.g. `Bearer ...`) in the variable".to_string(),
                        ));
                    }
                    let name = HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()).map_err(
                        |_| invalid(at("headers"), format!("{k:?} is not a header name")),
                    )?;
                    // The value is never shown: it is usually a credential.
                    let mut value = HeaderValue::from_str(&v).map_err(|_| {
                        invalid(
                            format!("{}.{k}", at("headers")),
                            "not a valid header value (value not shown)".to_string(),
                        )
                    })?;
                    value.set_sensitive(true);
                    headers.push((name, value));
                }
            }
            Some(_) => {
                return Err(invalid(
                    at("headers"),
                    "expected a mapping of header names to values".to_string(),
                ));
            }
        }
        let methods = match e.get("methods") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(m)) => m
                .iter()
                .map(|m| {
                    m.as_str()
                        .and_then(|s| {
                            Method::from_bytes(s.trim().to_ascii_uppercase().as_bytes()).ok()
                        })
                        .ok_or_else(|| invalid(at("methods"), format!("{m} is not an HTTP method")))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(invalid(
                    at("methods"),
                    "expected a list such as [GET, POST]".to_string(),
                ));
            }
        };
        let default_query = match e.get("default_query_params") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(q)) => q
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), v)
                })
                .collect(),
            Some(_) => {
                return Err(invalid(
                    at("default_query_params"),
                    "expected a mapping of names to values".to_string(),
                ));
            }
        };
        let number = |k: &str| -> Result<Option<f64>, ConfigError> {
            match e.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => crate::config::loose_number(v)
                    .filter(|n| *n >= 0.0 && n.is_finite())
                    .map(Some)
                    .ok_or_else(|| invalid(at(k), "expected a number of at least 0".to_string())),
            }
        };
        let cost_per_request = number("cost_per_request")?
            .filter(|c| *c > 0.0)
            .and_then(idlehands_store::money::usd_to_nanos)
            .and_then(|n| u64::try_from(n).ok());
        let timeout = number("timeout")?
            .filter(|s| *s > 0.0)
            .map_or(default_timeout, Duration::from_secs_f64);
        if out
            .iter()
            .any(|c: &CustomRoute| c.path == path && c.methods == methods)
        {
            return Err(invalid(at("path"), format!("{path} is listed twice")));
        }
        let deployment = pass_through_deployment(path, "pass_through", Some(target), cfg, prices);
        out.push(CustomRoute {
            path: path.to_string(),
            target: target.to_string(),
            headers,
            include_subpath: flag("include_subpath", false)?,
            auth: flag("auth", true)?,
            forward_headers: flag("forward_headers", false)?,
            methods,
            default_query,
            cost_per_request,
            timeout,
            deployment,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeMap;

    use super::*;

    fn load(yaml: &str, env: &[(&str, &str)]) -> Result<PassThrough, ConfigError> {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let cfg =
            ProxyConfig::from_yaml(yaml, "config.yaml", &move |k| env.get(k).cloned()).unwrap();
        build(&cfg, &PriceTable::empty())
    }

    #[test]
    fn provider_targets_come_from_marked_deployments_then_the_environment() {
        let pt = load(
            "model_list:
  - model_name: c
    litellm_params:
      model: anthropic/claude-sonnet-4-5
      api_key: sk-ant-from-deployment
      use_in_pass_through: true
",
            &[
                ("OPENAI_API_KEY", "sk-env"),
                ("ANTHROPIC_API_KEY", "sk-ant-env"),
            ],
        )
        .unwrap();
        let ant = pt.provider("anthropic").unwrap();
        let Some(Credential::Headers(h)) = &ant.credential else {
            panic!("no anthropic credential")
        };
        assert_eq!(h[0].1, "sk-ant-from-deployment");
        assert_eq!(ant.base.as_deref(), Some("https://api.anthropic.com"));
        assert!(pt.provider("openai").unwrap().credential.is_some());
        assert!(pt.provider("gemini").unwrap().credential.is_none());
        assert!(pt.provider("vllm").unwrap().base.is_none());
        assert_eq!(
            pt.provider("ollama").unwrap().base.as_deref(),
            Some("http://localhost:11434")
        );
    }

    #[test]
    fn configured_routes_match_their_path_methods_and_subpaths() {
        let pt = load(
            "general_settings:
  master_key: sk-unit-master-0001
  pass_through_endpoints:
    - path: /a
      target: http://127.0.0.1:9/x
      include_subpath: true
      methods: [post]
    - path: /b
      target: http://127.0.0.1:9/y
",
            &[],
        )
        .unwrap();
        let (r, rest) = pt.custom_for(&Method::POST, "/a/v1/z").unwrap();
        assert_eq!((r.path.as_str(), rest.as_str()), ("/a", "v1/z"));
        assert!(r.auth, "auth defaults to true");
        assert!(pt.custom_for(&Method::GET, "/a").is_none());
        assert!(pt.custom_for(&Method::GET, "/b").is_some());
        assert!(pt.custom_for(&Method::GET, "/b/sub").is_none());
        assert!(pt.custom_for(&Method::GET, "/bc").is_none());
    }

    #[test]
    fn bad_entries_name_their_key_path() {
        for (entry, path) in [
            ("- target: http://h/x", "pass_through_endpoints[0].path"),
            (
                "- path: /x\n      target: not a url",
                "pass_through_endpoints[0].target",
            ),
            (
                "- path: /x\n      target: http://h/x\n      headers: {Authorization: 'Bearer os.environ/K'}",
                "pass_through_endpoints[0].headers.Authorization",
            ),
            (
                "- path: /x\n      target: http://h/x\n      auth: maybe",
                "pass_through_endpoints[0].auth",
            ),
        ] {
            let yaml = format!(
                "general_settings:\n  master_key: sk-unit-master-0001\n  pass_through_endpoints:\n    {entry}\n"
            );
            let err = load(&yaml, &[]).err().unwrap().to_string();
            assert!(err.contains(path), "{err}");
        }
    }
}
