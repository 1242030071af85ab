//! `tools.profile`: which tools the model is offered. A small model does better with fewer,
//! plainer tools: with seven tools and long descriptions a 1.5B model polls process ids it
//! made up and never runs the tests. So a small local model gets `minimal` unless the config
//! says otherwise.
//!
//! - `minimal`: `read`, `edit`, `write`, `exec`, with short descriptions; `exec` waits for
//!   the command to finish (there is no `process` tool to follow a background run).
//! - `coding`: `minimal` plus `process`, `grep`, `glob` and `apply_patch`.
//! - `full`: every tool (the default for models not known to be small).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::client::ToolSpec;

/// Models with at most this many parameters are "small" and get the minimal profile.
pub const SMALL_MODEL_MAX_PARAMS: u64 = 8_000_000_000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolProfile {
    Minimal,
    Coding,
    #[default]
    Full,
}

impl ToolProfile {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Minimal => "minimal",
            Self::Coding => "coding",
            Self::Full => "full",
        }
    }

    /// Whether a tool (by its canonical name) is offered under this profile.
    pub fn allows(self, tool: &str) -> bool {
        match self {
            Self::Minimal => matches!(tool, "read" | "edit" | "write" | "exec"),
            Self::Coding => matches!(
                tool,
                "read" | "edit" | "write" | "exec" | "process" | "grep" | "glob" | "apply_patch"
            ),
            Self::Full => true,
        }
    }

    /// The profile for a model of `params` parameters when the config names none.
    pub fn for_parameter_count(params: Option<u64>) -> Self {
        match params {
            Some(n) if n <= SMALL_MODEL_MAX_PARAMS => Self::Minimal,
            _ => Self::Full,
        }
    }
}

/// The tool list offered under `profile`: `all` filtered, with short descriptions and only
/// the essential parameters under `minimal`.
pub fn specs(profile: ToolProfile, all: Vec<ToolSpec>) -> Vec<ToolSpec> {
    let mut out: Vec<ToolSpec> = all
        .into_iter()
        .filter(|s| profile.allows(&s.name))
        .collect();
    if profile == ToolProfile::Minimal {
        for s in &mut out {
            if let Some((description, parameters)) = minimal_spec(&s.name) {
                s.description = description.into();
                s.parameters = parameters;
            }
        }
    }
    out
}

fn minimal_spec(name: &str) -> Option<(&'static str, Value)> {
    Some(match name {
        "read" => (
            "Read a file. Shows up to 2000 lines; pass offset to see more.",
            json!({"type": "object", "properties": {
                "path": {"type": "string", "description": "File path"},
                "offset": {"type": "number", "description": "First line to show (1-based)"}
            }, "required": ["path"]}),
        ),
        "edit" => (
            "Replace oldText with newText in a file. Copy oldText exactly from what read showed.",
            json!({"type": "object", "properties": {
                "path": {"type": "string", "description": "File path"},
                "oldText": {"type": "string", "description": "Exact text now in the file"},
                "newText": {"type": "string", "description": "Text to put instead"},
                "replace_all": {"type": "boolean", "description": "Replace every occurrence"}
            }, "required": ["path", "oldText", "newText"]}),
        ),
        "write" => (
            "Create or overwrite a file with the given content.",
            json!({"type": "object", "properties": {
                "path": {"type": "string", "description": "File path"},
                "content": {"type": "string", "description": "The whole file content"}
            }, "required": ["path", "content"]}),
        ),
        "exec" => (
            "Run a shell command in the workspace (for example the tests) and show its output.",
            json!({"type": "object", "properties": {
                "command": {"type": "string", "description": "Shell command"}
            }, "required": ["command"]}),
        ),
        _ => return None,
    })
}

/// The parameter count in a llama-server `GET /v1/models` answer (`meta.n_params` of the entry
/// for `model`, or of the only entry) or `GET /props` (`n_params`, where a build reports it).
pub fn params_from_llama(body: &Value, model: &str) -> Option<u64> {
    if let Some(n) = body.get("n_params").and_then(Value::as_u64) {
        return Some(n);
    }
    let data = body.get("data")?.as_array()?;
    let entry = data
        .iter()
        .find(|m| m.get("id").and_then(Value::as_str) == Some(model))
        .or_else(|| (data.len() == 1).then(|| &data[0]))?;
    entry.pointer("/meta/n_params").and_then(Value::as_u64)
}

/// The parameter count in an Ollama `POST /api/show` answer (`model_info`'s
/// `general.parameter_count`).
pub fn params_from_ollama_show(body: &Value) -> Option<u64> {
    body.pointer("/model_info/general.parameter_count")
        .and_then(Value::as_u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_filter_the_tool_list() {
        let names = |p| -> Vec<String> {
            specs(p, crate::tools::specs())
                .into_iter()
                .map(|s| s.name)
                .collect()
        };
        assert_eq!(
            names(ToolProfile::Minimal),
            ["read", "write", "edit", "exec"]
        );
        assert_eq!(
            names(ToolProfile::Coding),
            ["read", "write", "edit", "exec", "process", "grep", "glob"]
        );
        assert_eq!(names(ToolProfile::Full).len(), crate::tools::specs().len());
    }

    #[test]
    fn minimal_descriptions_are_short() {
        for s in specs(ToolProfile::Minimal, crate::tools::specs()) {
            assert!(s.description.len() <= 100, "{}: {}", s.name, s.description);
            assert!(
                s.parameters["properties"]
                    .as_object()
                    .is_some_and(|p| p.len() <= 4)
            );
        }
    }

    #[test]
    fn small_models_get_minimal() {
        assert_eq!(
            ToolProfile::for_parameter_count(Some(1_543_714_304)),
            ToolProfile::Minimal
        );
        assert_eq!(
            ToolProfile::for_parameter_count(Some(32_000_000_000)),
            ToolProfile::Full
        );
        assert_eq!(ToolProfile::for_parameter_count(None), ToolProfile::Full);
    }

    #[test]
    fn parameter_counts_from_server_metadata() {
        let body: Value = serde_json::from_slice(include_bytes!(
            "../../../testkit/fixtures/llama-server/models.json"
        ))
        .unwrap_or_default();
        assert_eq!(
            params_from_llama(&body, "qwen2.5-coder-0.5b"),
            Some(630_167_424)
        );
        assert_eq!(
            params_from_ollama_show(
                &json!({"model_info": {"general.architecture": "qwen2", "general.parameter_count": 1_543_714_304_u64}})
            ),
            Some(1_543_714_304)
        );
        assert_eq!(
            params_from_llama(&json!({"data": [{"id": "x"}]}), "x"),
            None
        );
    }
}
