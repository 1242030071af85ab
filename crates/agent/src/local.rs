//! Local model servers as first-class providers: `ollama`, `vllm`, `llamacpp` and `lmstudio`
//! refs work with no config block (at the server's default URL, or the one its usual
//! environment variable names), need no API key, and can be set up by onboarding
//! (`--auth-choice ollama|vllm|llamacpp|lmstudio`, or `custom-api-key` with
//! `--custom-base-url` for any OpenAI-compatible server).

use std::path::PathBuf;

use serde_json::{Map, Value, json};

use crate::auth::KeyMaterial;
use crate::config;
use crate::env::Env;
use crate::onboard::{OnboardError, OnboardResult, Prompter, take_obj, write_setup};
use crate::paths::Paths;

/// A kind of local server IdleHands knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalServer {
    pub id: &'static str,
    pub label: &'static str,
    pub default_url: &'static str,
    /// Variables naming the server, first set wins; `OLLAMA_HOST` is a host, not a URL.
    pub env: &'static [&'static str],
}

pub const LOCAL_SERVERS: &[LocalServer] = &[
    LocalServer {
        id: "ollama",
        label: "Ollama",
        default_url: "http://127.0.0.1:11434/v1",
        env: &["OLLAMA_BASE_URL", "OLLAMA_HOST"],
    },
    LocalServer {
        id: "vllm",
        label: "vLLM",
        default_url: "http://127.0.0.1:8000/v1",
        env: &["VLLM_BASE_URL"],
    },
    LocalServer {
        id: "llamacpp",
        label: "llama.cpp (llama-server)",
        default_url: "http://127.0.0.1:8080/v1",
        env: &["LLAMACPP_BASE_URL", "LLAMA_CPP_BASE_URL"],
    },
    LocalServer {
        id: "lmstudio",
        label: "LM Studio",
        default_url: "http://127.0.0.1:1234/v1",
        env: &["LMSTUDIO_BASE_URL", "LM_STUDIO_BASE_URL"],
    },
];

pub fn server(id: &str) -> Option<&'static LocalServer> {
    LOCAL_SERVERS.iter().find(|s| s.id == id)
}

pub fn is_local_provider(id: &str) -> bool {
    server(id).is_some()
}

/// The URL a local provider is reached at when the config has no block for it.
pub fn base_url(id: &str, env: &Env) -> Option<String> {
    let s = server(id)?;
    for var in s.env {
        if let Some(v) = env.get(var).map(str::trim).filter(|v| !v.is_empty()) {
            return Some(if *var == "OLLAMA_HOST" {
                ollama_host_url(v)
            } else {
                v.trim_end_matches('/').to_string()
            });
        }
    }
    Some(s.default_url.to_string())
}

/// `OLLAMA_HOST` as Ollama reads it: `host`, `host:port` or a URL; `0.0.0.0` (listen on all)
/// is reached on loopback.
fn ollama_host_url(v: &str) -> String {
    let (scheme, rest) = match v.split_once("://") {
        Some((s, r)) => (s, r),
        None => ("http", v),
    };
    let rest = rest.trim_end_matches('/');
    let rest = rest.strip_suffix("/v1").unwrap_or(rest);
    let has_port = rest
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    let hostport = if has_port {
        rest.to_string()
    } else {
        format!("{rest}:11434")
    };
    let hostport = hostport.replacen("0.0.0.0", "127.0.0.1", 1);
    format!("{scheme}://{hostport}/v1")
}

/// What onboarding writes for a local or custom OpenAI-compatible server.
#[derive(Debug, Clone)]
pub struct LocalSetup {
    pub provider_id: String,
    pub base_url: String,
    pub model: String,
    /// `None`: the server takes no key.
    pub key: Option<KeyMaterial>,
    pub workspace: PathBuf,
}

/// The model entry written: no `contextWindow`, so the server is asked for it.
pub fn model_definition(id: &str) -> Value {
    json!({
        "id": id,
        "name": id,
        "input": ["text"],
        "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0},
    })
}

/// The profile id a custom provider's key is stored under.
pub fn profile_id(provider: &str) -> String {
    format!("{provider}:default")
}

/// Apply the setup to the raw config document: the provider block, the primary model and
/// its allow-list entry, and (with a key) the auth profile reference. A keyless server gets
/// `apiKey: ""`, which says "no key" rather than "key missing".
pub fn apply_config(raw: &mut Value, s: &LocalSetup) {
    let model_ref = format!("{}/{}", s.provider_id, s.model);
    let mut root = match std::mem::take(raw) {
        Value::Object(o) => o,
        _ => Map::new(),
    };
    let mut agents = take_obj(&mut root, "agents");
    let mut defaults = take_obj(&mut agents, "defaults");
    defaults.insert("workspace".into(), json!(s.workspace.to_string_lossy()));
    let mut model = take_obj(&mut defaults, "model");
    model.insert("primary".into(), json!(model_ref));
    defaults.insert("model".into(), Value::Object(model));
    let mut allow = take_obj(&mut defaults, "models");
    let entry = take_obj(&mut allow, &model_ref);
    allow.insert(model_ref.clone(), Value::Object(entry));
    defaults.insert("models".into(), Value::Object(allow));
    agents.insert("defaults".into(), Value::Object(defaults));
    root.insert("agents".into(), Value::Object(agents));

    let mut models = take_obj(&mut root, "models");
    models.entry("mode").or_insert_with(|| json!("merge"));
    let mut providers = take_obj(&mut models, "providers");
    let mut p = take_obj(&mut providers, &s.provider_id);
    p.insert("baseUrl".into(), json!(s.base_url.trim()));
    p.insert("api".into(), json!("openai-completions"));
    if s.key.is_none() && !is_local_provider(&s.provider_id) {
        p.insert("apiKey".into(), json!(""));
    }
    match p.get_mut("models").and_then(Value::as_array_mut) {
        Some(list) => {
            if !list
                .iter()
                .any(|m| m.get("id").and_then(Value::as_str) == Some(s.model.as_str()))
            {
                list.push(model_definition(&s.model));
            }
        }
        None => {
            p.insert("models".into(), json!([model_definition(&s.model)]));
        }
    }
    providers.insert(s.provider_id.clone(), Value::Object(p));
    models.insert("providers".into(), Value::Object(providers));
    root.insert("models".into(), Value::Object(models));

    if s.key.is_some() {
        let mut auth = take_obj(&mut root, "auth");
        let mut profiles = take_obj(&mut auth, "profiles");
        profiles.insert(
            profile_id(&s.provider_id),
            json!({"provider": s.provider_id, "mode": "api_key"}),
        );
        auth.insert("profiles".into(), Value::Object(profiles));
        root.insert("auth".into(), Value::Object(auth));
    }
    let mut wizard = take_obj(&mut root, "wizard");
    wizard.insert("lastRunAt".into(), json!(chrono::Utc::now().to_rfc3339()));
    wizard.insert("lastRunVersion".into(), json!(env!("CARGO_PKG_VERSION")));
    wizard.insert("lastRunCommand".into(), json!("onboard"));
    wizard.insert("lastRunMode".into(), json!("local"));
    root.insert("wizard".into(), Value::Object(wizard));
    *raw = Value::Object(root);
}

/// Write the config (with backup), the key's auth profile (0600) when there is a key, and
/// the workspace and sessions dirs.
pub fn write(paths: &Paths, env: &Env, s: &LocalSetup) -> Result<OnboardResult, OnboardError> {
    let loaded = config::load(&paths.config_path, env)?;
    let mut raw = loaded.raw;
    apply_config(&mut raw, s);
    let profile = profile_id(&s.provider_id);
    let key = s
        .key
        .as_ref()
        .map(|k| (profile.as_str(), s.provider_id.as_str(), k));
    write_setup(
        paths,
        env,
        &raw,
        key,
        false,
        &s.workspace,
        format!("{}/{}", s.provider_id, s.model),
        &s.base_url,
    )
}

/// Pick the model: the one asked for, else the first the server lists.
pub fn choose_model(
    wanted: Option<&str>,
    served: Result<Vec<String>, String>,
    base_url: &str,
) -> Result<String, OnboardError> {
    if let Some(w) = wanted.map(str::trim).filter(|w| !w.is_empty()) {
        return Ok(w.to_string());
    }
    match served {
        Ok(ids) => ids.into_iter().next().ok_or_else(|| {
            OnboardError::Usage(format!(
                "{base_url} lists no models; load one in the server or pass --custom-model-id"
            ))
        }),
        Err(e) => Err(OnboardError::Usage(format!(
            "cannot list the models at {base_url} ({e}); start the server or pass --custom-model-id"
        ))),
    }
}

/// The interactive flow for a local or custom server: risk note, URL, key (custom servers only; empty
/// for none), then a model picked from what the server lists.
#[expect(clippy::too_many_arguments)]
pub async fn interactive(
    p: &mut dyn Prompter,
    paths: &Paths,
    env: &Env,
    provider_id: &str,
    default_url: &str,
    model: Option<&str>,
    workspace: PathBuf,
    accept_risk: bool,
) -> Result<OnboardResult, OnboardError> {
    let pe = OnboardError::Prompt;
    let label = server(provider_id).map_or("your OpenAI-compatible server", |s| s.label);
    p.note(
        "IdleHands onboarding",
        &format!("Sets up IdleHands to use {label}."),
    );
    if !accept_risk {
        crate::onboard::confirm_risk(p)?;
    }
    let base_url = p
        .text("Base URL", Some(default_url))
        .map_err(pe)?
        .trim_end_matches('/')
        .to_string();
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        return Err(OnboardError::Usage(format!(
            "the base URL must start with http:// or https:// (got \"{base_url}\")"
        )));
    }
    let key = if is_local_provider(provider_id) {
        None
    } else {
        let k = p
            .secret("API key (leave empty if the server needs none)")
            .map_err(pe)?;
        (!k.is_empty()).then(|| crate::onboard::key_material_from_input(&k))
    };
    let probe_key = match &key {
        Some(KeyMaterial::Plain(k)) => Some(k.clone()),
        Some(KeyMaterial::EnvRef(n)) => env.get(n).map(str::to_string),
        None => None,
    };
    let served = crate::onboard::fetch_models(&base_url, probe_key.as_deref()).await;
    let model = match (model, &served) {
        (Some(m), _) => m.to_string(),
        (None, Ok(ids)) if !ids.is_empty() => {
            let i = p
                .select(&format!("Models served at {base_url}:"), ids, 0)
                .map_err(pe)?;
            ids[i].clone()
        }
        (None, Ok(_)) => p
            .text("The server lists no models; model id", None)
            .map_err(pe)?,
        (None, Err(e)) => {
            p.note("Models", &format!("Could not list the models: {e}"));
            p.text("Model id", None).map_err(pe)?
        }
    };
    if model.trim().is_empty() {
        return Err(OnboardError::Usage("a model id is needed".into()));
    }
    write(
        paths,
        env,
        &LocalSetup {
            provider_id: provider_id.to_string(),
            base_url,
            model: model.trim().to_string(),
            key,
            workspace,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_urls_and_env_overrides() {
        let none = Env::default();
        assert_eq!(
            base_url("ollama", &none).as_deref(),
            Some("http://127.0.0.1:11434/v1")
        );
        assert_eq!(
            base_url("llamacpp", &none).as_deref(),
            Some("http://127.0.0.1:8080/v1")
        );
        assert_eq!(base_url("openai", &none), None);
        let env = Env::from_pairs([
            ("OLLAMA_HOST", "0.0.0.0"),
            ("VLLM_BASE_URL", "http://gpu-box:8000/v1/"),
        ]);
        assert_eq!(
            base_url("ollama", &env).as_deref(),
            Some("http://127.0.0.1:11434/v1")
        );
        assert_eq!(
            base_url("vllm", &env).as_deref(),
            Some("http://gpu-box:8000/v1")
        );
        assert_eq!(ollama_host_url("https://box:9999"), "https://box:9999/v1");
        assert_eq!(ollama_host_url("box:11500"), "http://box:11500/v1");
    }

    #[test]
    fn a_keyless_custom_server_is_written_with_an_empty_key_and_no_profile() {
        let mut raw =
            json!({"models": {"providers": {"other": {"baseUrl": "http://x", "models": []}}}});
        apply_config(
            &mut raw,
            &LocalSetup {
                provider_id: "custom".into(),
                base_url: "http://127.0.0.1:9000/v1".into(),
                model: "m1".into(),
                key: None,
                workspace: PathBuf::from("/w"),
            },
        );
        assert_eq!(raw["models"]["providers"]["custom"]["apiKey"], "");
        assert_eq!(
            raw["models"]["providers"]["custom"]["models"][0]["id"],
            "m1"
        );
        assert!(
            raw["models"]["providers"]["custom"]["models"][0]
                .get("contextWindow")
                .is_none()
        );
        assert_eq!(raw["agents"]["defaults"]["model"]["primary"], "custom/m1");
        assert!(raw.pointer("/auth/profiles/custom:default").is_none());
        assert_eq!(raw["models"]["providers"]["other"]["baseUrl"], "http://x");
    }

    #[test]
    fn the_first_served_model_is_chosen_unless_one_is_named() {
        let ids = || Ok(vec!["a".to_string(), "b".to_string()]);
        assert_eq!(choose_model(None, ids(), "u").ok().as_deref(), Some("a"));
        assert_eq!(
            choose_model(Some("b"), ids(), "u").ok().as_deref(),
            Some("b")
        );
        let e = choose_model(None, Ok(Vec::new()), "http://h/v1").err();
        assert!(e.is_some_and(|e| e.to_string().contains("lists no models")));
    }
}
