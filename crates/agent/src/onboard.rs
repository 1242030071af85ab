//! Onboarding for `--auth-choice litellm-api-key`: the config changes (provider block, primary
//! model, alias, auth profile reference), the auth profile with the key (0600; the key never
//! goes into the config), and the interactive prompts, which read plain lines so they can be
//! answered from a pipe.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::auth::{AuthError, AuthStore, KeyMaterial};
use crate::client::ChatClient;
use crate::config::{self, ConfigError};
use crate::env::Env;
use crate::models::{LITELLM_DEFAULT_BASE_URL, LITELLM_DEFAULT_MODEL, LITELLM_PROVIDER};
use crate::paths::Paths;

pub const LITELLM_PROFILE_ID: &str = "litellm:default";
pub const LITELLM_ENV_VAR: &str = "LITELLM_API_KEY";
pub const LITELLM_NOTE: &str = "LiteLLM provides a unified API to 100+ LLM providers.\nGet your API key from your LiteLLM proxy or https://litellm.ai\nDefault proxy runs on http://localhost:4000";

#[derive(Debug, thiserror::Error)]
pub enum OnboardError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{0}")]
    Usage(String),
    #[error("onboarding cancelled")]
    Cancelled,
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading your answer failed: {0}")]
    Prompt(std::io::Error),
}

/// What to write.
#[derive(Debug, Clone)]
pub struct LitellmSetup {
    /// `None`: keep the existing `litellm` api-key profile.
    pub key: Option<KeyMaterial>,
    pub base_url: String,
    pub model: String,
    pub workspace: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OnboardResult {
    pub config_path: PathBuf,
    pub auth_path: PathBuf,
    pub workspace: PathBuf,
    pub sessions_dir: PathBuf,
    pub primary: String,
    pub base_url: String,
}

/// Remove `key` from `m` as an object (a non-object value is replaced by an empty one); the
/// caller edits it and puts it back with `m.insert`.
pub(crate) fn take_obj(m: &mut Map<String, Value>, key: &str) -> Map<String, Value> {
    match m.remove(key) {
        Some(Value::Object(o)) => o,
        _ => Map::new(),
    }
}

/// The model entry onboarding adds. `claude-opus-4-6` gets upstream's onboarding limits
/// (128000 / 8192); another id gets the same limits and its id as the name.
pub fn default_model_definition(id: &str) -> Value {
    let opus = id == LITELLM_DEFAULT_MODEL;
    json!({
        "id": id,
        "name": if opus { "Claude Opus 4.6" } else { id },
        "reasoning": opus,
        "input": if opus { json!(["text", "image"]) } else { json!(["text"]) },
        "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0},
        "contextWindow": 128000,
        "maxTokens": 8192,
    })
}

/// Apply the LiteLLM setup to the raw (unsubstituted) config document.
pub fn apply_litellm_config(raw: &mut Value, base_url: &str, model: &str, workspace: &Path) {
    let model_ref = format!("{LITELLM_PROVIDER}/{model}");
    let mut root = match std::mem::take(raw) {
        Value::Object(o) => o,
        _ => Map::new(),
    };

    let mut agents = take_obj(&mut root, "agents");
    let mut defaults = take_obj(&mut agents, "defaults");
    defaults.insert("workspace".into(), json!(workspace.to_string_lossy()));
    let fallbacks = match defaults.get("model") {
        Some(Value::Object(m)) => m.get("fallbacks").cloned(),
        _ => None,
    };
    let mut primary = Map::new();
    primary.insert("primary".into(), json!(model_ref));
    if let Some(f) = fallbacks {
        primary.insert("fallbacks".into(), f);
    }
    defaults.insert("model".into(), Value::Object(primary));
    let mut allow = take_obj(&mut defaults, "models");
    let mut entry = take_obj(&mut allow, &model_ref);
    entry.entry("alias").or_insert_with(|| json!("LiteLLM"));
    allow.insert(model_ref.clone(), Value::Object(entry));
    defaults.insert("models".into(), Value::Object(allow));
    agents.insert("defaults".into(), Value::Object(defaults));
    root.insert("agents".into(), Value::Object(agents));

    let mut models = take_obj(&mut root, "models");
    models.entry("mode").or_insert_with(|| json!("merge"));
    let mut providers = take_obj(&mut models, "providers");
    let mut p = take_obj(&mut providers, LITELLM_PROVIDER);
    p.insert("baseUrl".into(), json!(base_url.trim()));
    p.insert("api".into(), json!("openai-completions"));
    // Onboarding never writes a key into the config; an existing string key is kept.
    match p.remove("apiKey") {
        Some(Value::String(s)) => {
            p.insert("apiKey".into(), json!(s.trim()));
        }
        Some(other @ Value::Object(_)) => {
            p.insert("apiKey".into(), other);
        }
        _ => {}
    }
    match p.get_mut("models").and_then(Value::as_array_mut) {
        Some(list) => {
            if !list
                .iter()
                .any(|m| m.get("id").and_then(Value::as_str) == Some(model))
            {
                list.push(default_model_definition(model));
            }
        }
        None => {
            p.insert("models".into(), json!([default_model_definition(model)]));
        }
    }
    providers.insert(LITELLM_PROVIDER.into(), Value::Object(p));
    models.insert("providers".into(), Value::Object(providers));
    root.insert("models".into(), Value::Object(models));

    let mut auth = take_obj(&mut root, "auth");
    let mut profiles = take_obj(&mut auth, "profiles");
    profiles.insert(
        LITELLM_PROFILE_ID.into(),
        json!({"provider": LITELLM_PROVIDER, "mode": "api_key"}),
    );
    auth.insert("profiles".into(), Value::Object(profiles));
    if let Some(Value::Array(order)) = auth
        .get_mut("order")
        .and_then(|o| o.get_mut(LITELLM_PROVIDER))
    {
        order.retain(|x| x.as_str() != Some(LITELLM_PROFILE_ID));
        order.insert(0, json!(LITELLM_PROFILE_ID));
    }
    root.insert("auth".into(), Value::Object(auth));

    let mut wizard = take_obj(&mut root, "wizard");
    wizard.insert("lastRunAt".into(), json!(chrono::Utc::now().to_rfc3339()));
    wizard.insert("lastRunVersion".into(), json!(env!("CARGO_PKG_VERSION")));
    wizard.insert("lastRunCommand".into(), json!("onboard"));
    wizard.insert("lastRunMode".into(), json!("local"));
    root.insert("wizard".into(), Value::Object(wizard));
    *raw = Value::Object(root);
}

/// A pasted `${VAR}` is stored as a reference to `VAR`, not as text.
pub fn key_material_from_input(input: &str) -> KeyMaterial {
    let t = input.trim();
    match config::substitute::whole_reference(t) {
        Some(name) => KeyMaterial::EnvRef(name.to_string()),
        None => KeyMaterial::Plain(t.to_string()),
    }
}

/// Write everything: config (with backup), auth profile (0600), workspace and sessions dirs.
pub fn write_litellm(
    paths: &Paths,
    env: &Env,
    setup: &LitellmSetup,
) -> Result<OnboardResult, OnboardError> {
    let loaded = config::load(&paths.config_path, env)?;
    let mut raw = loaded.raw;
    apply_litellm_config(&mut raw, &setup.base_url, &setup.model, &setup.workspace);
    let key = setup
        .key
        .as_ref()
        .map(|k| (LITELLM_PROFILE_ID, LITELLM_PROVIDER, k));
    write_setup(
        paths,
        env,
        &raw,
        key,
        true,
        &setup.workspace,
        format!("{LITELLM_PROVIDER}/{}", setup.model),
        &setup.base_url,
    )
}

/// What every onboarding writes once its config document is ready: the config (with backup),
/// the key under its auth profile (`(profile, provider, key)`; the profile file, 0600, is
/// saved when there is a key or `always_save_auth`), the workspace and the sessions dir.
#[expect(clippy::too_many_arguments)]
pub(crate) fn write_setup(
    paths: &Paths,
    env: &Env,
    raw: &Value,
    key: Option<(&str, &str, &KeyMaterial)>,
    always_save_auth: bool,
    workspace: &Path,
    primary: String,
    base_url: &str,
) -> Result<OnboardResult, OnboardError> {
    let auth_path = paths.auth_profiles_path();
    let mut store = AuthStore::load(&auth_path)?;
    if let Some((profile, provider, k)) = key {
        store.upsert_api_key(profile, provider, k.clone());
    }
    config::write_raw(&paths.config_path, raw, env)?;
    if key.is_some() || always_save_auth {
        store.save(&auth_path)?;
    }
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| OnboardError::Io { what, path, source }
    };
    std::fs::create_dir_all(workspace).map_err(io("cannot create the workspace", workspace))?;
    crate::fsutil::create_private_dir(&paths.sessions_dir)
        .map_err(io("cannot create the sessions dir", &paths.sessions_dir))?;
    Ok(OnboardResult {
        config_path: paths.config_path.clone(),
        auth_path,
        workspace: workspace.to_path_buf(),
        sessions_dir: paths.sessions_dir.clone(),
        primary,
        base_url: base_url.to_string(),
    })
}

/// The base URL onboarding uses by default: the existing `models.providers.litellm.baseUrl`,
/// else `http://localhost:4000`.
pub fn existing_base_url(raw: &Value) -> Option<String> {
    raw.pointer("/models/providers/litellm/baseUrl")
        .and_then(Value::as_str)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

pub fn default_base_url(raw: &Value) -> String {
    existing_base_url(raw).unwrap_or_else(|| LITELLM_DEFAULT_BASE_URL.to_string())
}

/// The ids `GET /v1/models` lists, or why not.
pub async fn fetch_models(base_url: &str, key: Option<&str>) -> Result<Vec<String>, String> {
    ChatClient::new()
        .list_models(base_url, key, Duration::from_secs(10))
        .await
        .map_err(|e| e.message)
}

/// Line-based prompts; every question and note goes to `out`.
pub trait Prompter {
    fn note(&mut self, title: &str, body: &str);
    fn confirm(&mut self, question: &str, default: bool) -> std::io::Result<bool>;
    fn text(&mut self, question: &str, default: Option<&str>) -> std::io::Result<String>;
    fn secret(&mut self, question: &str) -> std::io::Result<String>;
    fn select(
        &mut self,
        question: &str,
        options: &[String],
        default: usize,
    ) -> std::io::Result<usize>;
}

/// Prompts on a reader and a writer. When `tty` is set, secrets are read with terminal echo
/// turned off (through `stty`).
pub struct LinePrompter<R, W> {
    input: R,
    out: W,
    tty: bool,
}

impl<R: BufRead, W: Write> LinePrompter<R, W> {
    pub fn new(input: R, out: W, tty: bool) -> Self {
        Self { input, out, tty }
    }

    fn line(&mut self) -> std::io::Result<String> {
        let mut s = String::new();
        let n = self.input.read_line(&mut s)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "no more input (answer the prompts, or use --non-interactive)",
            ));
        }
        Ok(s.trim_end_matches(['\n', '\r']).to_string())
    }
}

fn stty(arg: &str) {
    let _ = std::process::Command::new("stty")
        .arg(arg)
        .stdin(std::process::Stdio::inherit())
        .status();
}

impl<R: BufRead, W: Write> Prompter for LinePrompter<R, W> {
    fn note(&mut self, title: &str, body: &str) {
        let _ = writeln!(self.out, "\n[{title}]\n{body}\n");
    }

    fn confirm(&mut self, question: &str, default: bool) -> std::io::Result<bool> {
        loop {
            write!(
                self.out,
                "{question} [{}] ",
                if default { "Y/n" } else { "y/N" }
            )?;
            self.out.flush()?;
            match self.line()?.trim().to_ascii_lowercase().as_str() {
                "" => return Ok(default),
                "y" | "yes" => return Ok(true),
                "n" | "no" => return Ok(false),
                _ => writeln!(self.out, "Please answer y or n.")?,
            }
        }
    }

    fn text(&mut self, question: &str, default: Option<&str>) -> std::io::Result<String> {
        match default {
            Some(d) => write!(self.out, "{question} [{d}]: ")?,
            None => write!(self.out, "{question}: ")?,
        }
        self.out.flush()?;
        let answer = self.line()?.trim().to_string();
        Ok(if answer.is_empty() {
            default.unwrap_or("").to_string()
        } else {
            answer
        })
    }

    fn secret(&mut self, question: &str) -> std::io::Result<String> {
        write!(self.out, "{question}: ")?;
        self.out.flush()?;
        if self.tty {
            stty("-echo");
        }
        let answer = self.line();
        if self.tty {
            stty("echo");
            let _ = writeln!(self.out);
        }
        Ok(answer?.trim().to_string())
    }

    fn select(
        &mut self,
        question: &str,
        options: &[String],
        default: usize,
    ) -> std::io::Result<usize> {
        writeln!(self.out, "{question}")?;
        for (i, o) in options.iter().enumerate() {
            writeln!(self.out, "  {}) {o}", i + 1)?;
        }
        loop {
            write!(self.out, "Choose 1-{} [{}]: ", options.len(), default + 1)?;
            self.out.flush()?;
            let a = self.line()?;
            let a = a.trim();
            if a.is_empty() {
                return Ok(default);
            }
            if let Ok(n) = a.parse::<usize>()
                && (1..=options.len()).contains(&n)
            {
                return Ok(n - 1);
            }
            if let Some(i) = options.iter().position(|o| o == a) {
                return Ok(i);
            }
            writeln!(self.out, "Please enter a number from the list.")?;
        }
    }
}

/// `sk-1…abcd`: enough to recognise a key, not enough to use it.
pub fn preview_key(key: &str) -> String {
    let k: Vec<char> = key.chars().collect();
    if k.len() <= 8 {
        return "…".into();
    }
    let head: String = k[..4].iter().collect();
    let tail: String = k[k.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

pub fn valid_env_name(name: &str) -> bool {
    let mut c = name.chars();
    c.next().is_some_and(|f| f.is_ascii_uppercase())
        && name.len() <= 128
        && c.all(|x| x.is_ascii_uppercase() || x.is_ascii_digit() || x == '_')
}

/// The security note and its confirmation; declining cancels onboarding.
pub fn confirm_risk(p: &mut dyn Prompter) -> Result<(), OnboardError> {
    p.note(
        "Security",
        "IdleHands runs commands and edits files in your workspace on a model's behalf. It is personal-by-default: sharing it with other users requires locking it down.",
    );
    if p.confirm(
        "I understand this is personal-by-default and shared/multi-user use requires lock-down. Continue?",
        false,
    )
    .map_err(OnboardError::Prompt)?
    {
        Ok(())
    } else {
        Err(OnboardError::Cancelled)
    }
}

pub struct InteractiveOptions {
    pub accept_risk: bool,
    pub workspace: Option<PathBuf>,
    /// `plaintext` or `ref`, when given on the command line.
    pub secret_input_mode: Option<String>,
    pub base_url: Option<String>,
    pub model: Option<String>,
}

/// The interactive LiteLLM flow: risk note, key (paste, existing env var, or env reference),
/// base URL, model picked from the proxy's `/v1/models`, then the files are written.
pub async fn interactive_litellm(
    p: &mut dyn Prompter,
    paths: &Paths,
    env: &Env,
    opts: InteractiveOptions,
) -> Result<OnboardResult, OnboardError> {
    let pe = OnboardError::Prompt;
    p.note(
        "IdleHands onboarding",
        "Sets up IdleHands to use a LiteLLM proxy.",
    );
    if !opts.accept_risk {
        confirm_risk(p)?;
    }
    let loaded = config::load(&paths.config_path, env)?;
    let store = AuthStore::load(&paths.auth_profiles_path())?;
    let workspace = opts
        .workspace
        .clone()
        .or_else(|| {
            loaded
                .defaults()
                .and_then(|d| d.workspace.as_deref())
                .map(|w| crate::paths::expand_tilde(w, &paths.home))
        })
        .unwrap_or_else(|| paths.default_workspace());
    p.note("LiteLLM", LITELLM_NOTE);
    let key_for_fetch: Option<String>;
    let key = match store.api_key_profile(&loaded, LITELLM_PROVIDER) {
        Some(id) => {
            p.note("LiteLLM", &format!("Using the existing auth profile {id}."));
            key_for_fetch =
                crate::auth::resolve_api_key(LITELLM_PROVIDER, &loaded, &store, env, paths)
                    .ok()
                    .map(|k| k.key);
            None
        }
        None => {
            let mode = match opts.secret_input_mode.as_deref() {
                Some(m) => m.to_string(),
                None => {
                    let i = p
                        .select(
                            "How do you want to provide this API key?",
                            &[
                                "Paste API key now".to_string(),
                                "Use secret reference (environment variable)".to_string(),
                            ],
                            0,
                        )
                        .map_err(pe)?;
                    if i == 0 { "plaintext" } else { "ref" }.to_string()
                }
            };
            if mode == "ref" {
                loop {
                    let name = p
                        .text("Environment variable name", Some(LITELLM_ENV_VAR))
                        .map_err(pe)?;
                    if !valid_env_name(&name) {
                        p.note("LiteLLM", "Use an upper-case name like LITELLM_API_KEY.");
                        continue;
                    }
                    match env.get(&name) {
                        Some(v) => {
                            key_for_fetch = Some(v.to_string());
                            p.note(
                                "LiteLLM",
                                &format!("Validated environment variable {name}. IdleHands will store a reference, not the key value."),
                            );
                            break Some(KeyMaterial::EnvRef(name));
                        }
                        None => p.note(
                            "LiteLLM",
                            &format!("{name} is not set in this shell. Export it first, or choose another name."),
                        ),
                    }
                }
            } else {
                let existing = env.get(LITELLM_ENV_VAR).map(str::to_string);
                let use_env = match &existing {
                    Some(v) => p
                        .confirm(
                            &format!(
                                "Use existing LITELLM_API_KEY (env: LITELLM_API_KEY, {})?",
                                preview_key(v)
                            ),
                            true,
                        )
                        .map_err(pe)?,
                    None => false,
                };
                let k = match (use_env, existing) {
                    (true, Some(v)) => v,
                    _ => loop {
                        let k = p.secret("Enter LiteLLM API key").map_err(pe)?;
                        if !k.trim().is_empty() {
                            break k;
                        }
                        p.note("LiteLLM", "The key must not be empty.");
                    },
                };
                let material = key_material_from_input(&k);
                key_for_fetch = match &material {
                    KeyMaterial::Plain(k) => Some(k.clone()),
                    KeyMaterial::EnvRef(n) => env.get(n).map(str::to_string),
                };
                Some(material)
            }
        }
    };
    let base_default = opts
        .base_url
        .clone()
        .unwrap_or_else(|| default_base_url(&loaded.raw));
    let base_url = loop {
        let u = p
            .text("LiteLLM proxy base URL", Some(&base_default))
            .map_err(pe)?;
        if u.starts_with("http://") || u.starts_with("https://") {
            break u.trim_end_matches('/').to_string();
        }
        p.note("LiteLLM", "The URL must start with http:// or https://.");
    };
    let model = match opts.model.clone() {
        Some(m) => m,
        None => match fetch_models(&base_url, key_for_fetch.as_deref()).await {
            Ok(ids) if !ids.is_empty() => {
                let default = ids
                    .iter()
                    .position(|m| m == LITELLM_DEFAULT_MODEL)
                    .unwrap_or(0);
                let i = p
                    .select(
                        &format!("Default model ({} models served by {base_url})", ids.len()),
                        &ids,
                        default,
                    )
                    .map_err(pe)?;
                ids[i].clone()
            }
            Ok(_) => {
                p.note("LiteLLM", &format!("{base_url} lists no models."));
                p.text("Default model id", Some(LITELLM_DEFAULT_MODEL))
                    .map_err(pe)?
            }
            Err(e) => {
                p.note("LiteLLM", &format!("Could not fetch the model list: {e}"));
                p.text("Default model id", Some(LITELLM_DEFAULT_MODEL))
                    .map_err(pe)?
            }
        },
    };
    let model = model.strip_prefix("litellm/").unwrap_or(&model).to_string();
    let result = write_litellm(
        paths,
        env,
        &LitellmSetup {
            key,
            base_url,
            model,
            workspace,
        },
    )?;
    p.note(
        "Model configured",
        &format!("Default model set to {}", result.primary),
    );
    Ok(result)
}

/// Non-interactive key resolution: `--litellm-api-key`, then `LITELLM_API_KEY`, then an
/// existing profile (`Ok(None)`: keep it). With `ref` mode the env var is stored as a ref.
pub fn non_interactive_key(
    flag: Option<&str>,
    secret_input_mode: Option<&str>,
    env: &Env,
    has_profile: bool,
) -> Result<Option<KeyMaterial>, OnboardError> {
    if secret_input_mode == Some("ref") {
        if env.get(LITELLM_ENV_VAR).is_some() {
            return Ok(Some(KeyMaterial::EnvRef(LITELLM_ENV_VAR.into())));
        }
        if flag.is_some() {
            return Err(OnboardError::Usage(
                "--secret-input-mode ref stores a reference to LITELLM_API_KEY, which is not set; export it (the --litellm-api-key value is not stored in ref mode).".into(),
            ));
        }
    }
    if let Some(k) = flag.map(str::trim).filter(|k| !k.is_empty()) {
        return Ok(Some(key_material_from_input(k)));
    }
    if let Some(k) = env.get(LITELLM_ENV_VAR) {
        return Ok(Some(KeyMaterial::Plain(k.trim().to_string())));
    }
    if has_profile {
        return Ok(None);
    }
    Err(OnboardError::Usage(
        "Missing --litellm-api-key (or LITELLM_API_KEY in env, or existing litellm API-key profile).".into(),
    ))
}
