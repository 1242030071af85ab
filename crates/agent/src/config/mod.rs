//! `~/.idlehands/idlehands.json`: JSON5 in, `${VAR}` substitution, strict validation of the
//! parts the agent reads. Unlike upstream, every failure is an error that names the file, the
//! field and the fix; a broken config never degrades silently into an empty one.

pub mod schema;
pub mod substitute;
pub mod unused;

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

pub use schema::*;

use crate::env::Env;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("Failed to read config at {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("Invalid config at {}: not valid JSON5: {message}\nFix: correct the syntax at the position above.", path.display())]
    Syntax { path: PathBuf, message: String },
    #[error("Invalid config at {}:\n- {field}: Missing env var \"{var}\" referenced at config path: {field}\nFix: export {var}=... before running idlehands, or write $${{{var}}} for a literal \"${{{var}}}\".", path.display())]
    MissingEnvVar {
        path: PathBuf,
        field: String,
        var: String,
    },
    #[error("Invalid config at {}:\n- {field}: {message}\nFix: {fix}", path.display())]
    Invalid {
        path: PathBuf,
        field: String,
        message: String,
        fix: String,
    },
    #[error("Failed to write config at {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ConfigError {
    fn invalid(
        path: &Path,
        field: &str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self::Invalid {
            path: path.to_path_buf(),
            field: if field.is_empty() {
                "<root>".to_string()
            } else {
                field.to_string()
            },
            message: message.into(),
            fix: fix.into(),
        }
    }
}

/// The config as loaded: the typed view (after substitution) and the raw document (before
/// substitution), which is what gets edited and written back so `${VAR}` references survive.
#[derive(Debug, Clone, Default)]
pub struct LoadedConfig {
    pub path: PathBuf,
    pub exists: bool,
    pub raw: Value,
    pub config: Config,
}

impl LoadedConfig {
    /// One line per key nothing in this build reads, naming the file and the key's path.
    pub fn unused_key_warnings(&self) -> Vec<String> {
        if !self.exists {
            return Vec::new();
        }
        unused::warnings(&self.path, &self.raw)
    }

    pub fn defaults(&self) -> Option<&AgentDefaults> {
        self.config.agents.as_ref()?.defaults.as_ref()
    }

    pub fn provider(&self, id: &str) -> Option<&ProviderConfig> {
        self.config.models.as_ref()?.providers.get(id)
    }
}

/// Load `path`. A missing file is an empty config (`exists: false`).
pub fn load(path: &Path, env: &Env) -> Result<LoadedConfig, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(LoadedConfig {
                path: path.to_path_buf(),
                exists: false,
                raw: Value::Object(Map::new()),
                config: Config::default(),
            });
        }
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    parse(path, &text, env)
}

/// Parse config text as if read from `path` (used by `load` and tests).
pub fn parse(path: &Path, text: &str, env: &Env) -> Result<LoadedConfig, ConfigError> {
    let raw: Value = if text.trim().is_empty() {
        Value::Object(Map::new())
    } else {
        json5::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?
    };
    if !raw.is_object() {
        return Err(ConfigError::invalid(
            path,
            "",
            "the config must be a JSON object",
            "wrap the settings in { ... }",
        ));
    }
    let mut value = raw.clone();
    substitute::substitute(&mut value, env).map_err(|m| ConfigError::MissingEnvVar {
        path: path.to_path_buf(),
        field: m.field,
        var: m.var,
    })?;
    let config: Config = serde_path_to_error::deserialize(&value).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." { String::new() } else { field };
        let message = e.inner().to_string();
        let fix = fix_for(&message);
        ConfigError::invalid(path, &field, message, fix)
    })?;
    validate(path, &config)?;
    Ok(LoadedConfig {
        path: path.to_path_buf(),
        exists: true,
        raw,
        config,
    })
}

fn fix_for(message: &str) -> String {
    if message.starts_with("unknown field") {
        "remove the field or correct its spelling (the accepted names are listed above).".into()
    } else if message.starts_with("missing field") {
        "add the field named above.".into()
    } else if message.starts_with("unknown variant") {
        "use one of the values listed above.".into()
    } else {
        "give the field a value of the type named above.".into()
    }
}

fn validate(path: &Path, cfg: &Config) -> Result<(), ConfigError> {
    if let Some(models) = &cfg.models {
        for (id, p) in &models.providers {
            let at = |f: &str| format!("models.providers.{id}.{f}");
            let base = p.base_url.trim();
            if base.is_empty() {
                return Err(ConfigError::invalid(
                    path,
                    &at("baseUrl"),
                    "must not be empty",
                    "set it to the provider's URL, e.g. \"http://localhost:4000\".",
                ));
            }
            if !(base.starts_with("http://") || base.starts_with("https://")) {
                return Err(ConfigError::invalid(
                    path,
                    &at("baseUrl"),
                    format!("\"{base}\" is not an http(s) URL"),
                    "start it with http:// or https://, e.g. \"http://localhost:4000\".",
                ));
            }
            match &p.slot_affinity {
                None | Some(serde_json::Value::Bool(_)) => {}
                Some(serde_json::Value::Number(n)) if n.as_u64().is_some_and(|n| n > 0) => {}
                Some(other) => {
                    return Err(ConfigError::invalid(
                        path,
                        &at("slotAffinity"),
                        format!("{other} is not true, false or a slot count"),
                        "set true (one slot) or the llama-server's number of slots (-np), e.g. 4.",
                    ));
                }
            }
            for (i, m) in p.models.iter().enumerate() {
                let mat = |f: &str| format!("models.providers.{id}.models[{i}].{f}");
                if let Some(f) = m.compat.as_ref().and_then(|c| c.thinking_format.as_deref())
                    && !crate::thinking::THINKING_FORMATS.contains(&f)
                {
                    return Err(ConfigError::invalid(
                        path,
                        &mat("compat.thinkingFormat"),
                        format!("\"{f}\" is not a known format"),
                        "use \"openai\" (reasoning_effort), \"qwen\" (chat_template_kwargs.enable_thinking) or \"zai\" (thinking.type).",
                    ));
                }
                if m.id.trim().is_empty() {
                    return Err(ConfigError::invalid(
                        path,
                        &mat("id"),
                        "must not be empty",
                        "set it to the model name the provider expects.",
                    ));
                }
                if m.name.trim().is_empty() {
                    return Err(ConfigError::invalid(
                        path,
                        &mat("name"),
                        "must not be empty",
                        "set a display name, e.g. the id.",
                    ));
                }
                if m.context_window == Some(0) {
                    return Err(ConfigError::invalid(
                        path,
                        &mat("contextWindow"),
                        "must be greater than 0",
                        "set the model's context window in tokens, e.g. 200000.",
                    ));
                }
                if m.max_tokens == Some(0) {
                    return Err(ConfigError::invalid(
                        path,
                        &mat("maxTokens"),
                        "must be greater than 0",
                        "set the most output tokens per reply, e.g. 8192.",
                    ));
                }
            }
        }
    }
    if let Some(d) = cfg.agents.as_ref().and_then(|a| a.defaults.as_ref())
        && let Some(m) = &d.model
    {
        if let Some(p) = &m.primary
            && p.trim().is_empty()
        {
            return Err(ConfigError::invalid(
                path,
                "agents.defaults.model.primary",
                "must not be empty",
                "set it to a \"provider/model\" ref, e.g. \"litellm/claude-opus-4-6\".",
            ));
        }
        for (i, f) in m.fallbacks.iter().enumerate() {
            if f.trim().is_empty() {
                return Err(ConfigError::invalid(
                    path,
                    &format!("agents.defaults.model.fallbacks[{i}]"),
                    "must not be empty",
                    "remove the entry or set a \"provider/model\" ref.",
                ));
            }
        }
    }
    Ok(())
}

/// Write the raw document back as 2-space JSON: validated first, the previous file kept as
/// `<path>.bak`, `meta.lastTouchedVersion`/`lastTouchedAt` stamped.
pub fn write_raw(path: &Path, raw: &Value, env: &Env) -> Result<(), ConfigError> {
    let mut doc = raw.clone();
    if let Value::Object(map) = &mut doc {
        let meta = map
            .entry("meta")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(meta) = meta {
            meta.insert(
                "lastTouchedVersion".into(),
                Value::String(env!("CARGO_PKG_VERSION").into()),
            );
            meta.insert(
                "lastTouchedAt".into(),
                Value::String(chrono::Utc::now().to_rfc3339()),
            );
        }
    }
    let text = serde_json::to_string_pretty(&doc).map_err(|e| ConfigError::Write {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    // Validate what is about to be written, but without requiring the referenced variables.
    let lenient = Env::from_pairs(
        env.vars()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .chain(
                referenced_vars(&doc)
                    .into_iter()
                    .map(|v| (v, "x".to_string())),
            ),
    );
    parse(path, &text, &lenient)?;
    let werr = |source| ConfigError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(werr)?;
    }
    if path.exists() {
        let mut bak = path.as_os_str().to_owned();
        bak.push(".bak");
        std::fs::copy(path, PathBuf::from(bak)).map_err(werr)?;
    }
    crate::fsutil::write_private(path, format!("{text}\n").as_bytes()).map_err(werr)?;
    Ok(())
}

fn referenced_vars(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => {
                let mut rest = s.as_str();
                while let Some(i) = rest.find("${") {
                    let after = &rest[i + 2..];
                    if let Some(end) = after.find('}') {
                        out.push(after[..end].to_string());
                        rest = &after[end..];
                    } else {
                        break;
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(m) => m.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(v, &mut out);
    out
}
