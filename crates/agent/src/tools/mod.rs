//! The coding tools offered to the model: `read`, `write`, `edit`, `exec`, `process`, `grep`,
//! `glob`, each checked against the approval [`policy::Policy`], offered as `tools.profile`
//! ([`profile`]) says. What `edit` answers is built in [`feedback`]; [`syntax`] checks a file
//! after `edit` and `write`.

pub mod exec;
pub mod feedback;
pub mod fs;
pub mod patch;
pub mod policy;
pub mod profile;
pub mod search;
pub mod syntax;

use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub use exec::ProcessTable;
pub use policy::{ApprovalMode, ApprovalRequest, Approver, Decision, Policy};
pub use profile::ToolProfile;

use crate::client::ToolSpec;
use crate::message::ContentBlock;

/// What a tool hands back: content for the model, and a one-line summary for the user.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    pub ok: bool,
    pub content: Vec<ContentBlock>,
    pub summary: String,
}

impl ToolOutput {
    pub fn ok(text: impl Into<String>, summary: impl Into<String>) -> Self {
        Self {
            ok: true,
            content: vec![ContentBlock::Text { text: text.into() }],
            summary: summary.into(),
        }
    }

    pub fn error(text: impl Into<String>) -> Self {
        let text = text.into();
        let summary = text
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(200)
            .collect();
        Self {
            ok: false,
            content: vec![ContentBlock::Text { text }],
            summary,
        }
    }

    pub fn text(&self) -> String {
        self.content
            .iter()
            .filter_map(|b| match b {
                ContentBlock::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

pub(crate) fn arg_str(args: &Value, names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| match args.get(*n)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

pub(crate) fn arg_u64(args: &Value, names: &[&str]) -> Option<u64> {
    names.iter().find_map(|n| match args.get(*n)? {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().map(|f| f.max(0.0) as u64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

pub(crate) fn arg_bool(args: &Value, names: &[&str]) -> Option<bool> {
    names.iter().find_map(|n| match args.get(*n)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => s.parse().ok(),
        _ => None,
    })
}

/// The tools of one session: the policy, the background-process table and the defaults.
#[derive(Clone)]
pub struct ToolBox {
    pub policy: Policy,
    pub processes: ProcessTable,
    pub exec_timeout: Duration,
    /// Which tools are offered and accepted (`tools.profile`).
    pub profile: ToolProfile,
    /// Files `read` has shown in this session: a failed edit of a file never read says so.
    read_files: std::sync::Arc<parking_lot::Mutex<std::collections::HashSet<std::path::PathBuf>>>,
    /// `tools.exec.applyPatch`.
    pub apply_patch: crate::config::ApplyPatchConfig,
    /// The session's model (`provider`, `model`), which decides whether `apply_patch` is
    /// offered.
    pub model: (String, String),
}

impl ToolBox {
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            processes: ProcessTable::new(),
            exec_timeout: Duration::from_secs(exec::DEFAULT_TIMEOUT_SECS),
            profile: ToolProfile::default(),
            read_files: Default::default(),
            apply_patch: crate::config::ApplyPatchConfig::default(),
            model: (String::new(), String::new()),
        }
    }

    /// `apply_patch` is offered as upstream does: enabled in the config, an OpenAI-family
    /// model, and that model in `allowModels` when the list is set.
    pub fn offers_apply_patch(&self) -> bool {
        let (provider, model) = &self.model;
        let c = &self.apply_patch;
        c.enabled == Some(true)
            && patch::is_openai_family(provider, model)
            && (c.allow_models.is_empty()
                || c.allow_models
                    .iter()
                    .any(|m| *m == *model || *m == format!("{provider}/{model}")))
            && self.policy.offers("apply_patch")
    }

    /// The tools offered: all of them, less what `tools.allow`/`tools.deny` and
    /// `tools.exec.security: deny` take away.
    pub fn specs(&self) -> Vec<ToolSpec> {
        let mut out: Vec<ToolSpec> = profile::specs(self.profile, specs())
            .into_iter()
            .filter(|s| self.policy.offers(&s.name))
            .collect();
        if self.offers_apply_patch() && self.profile.allows("apply_patch") {
            out.push(apply_patch_spec());
        }
        out
    }

    /// Run one call. Arguments that are not a JSON object are reported to the model.
    pub async fn run(&self, name: &str, args: &Value, cancel: &CancellationToken) -> ToolOutput {
        if !args.is_object() {
            return ToolOutput::error(format!(
                "the arguments for {name} must be a JSON object; got: {}",
                match args {
                    Value::String(s) => s.chars().take(200).collect(),
                    other => other.to_string(),
                }
            ));
        }
        if !self.policy.offers(name) && specs().iter().any(|s| s.name == name || name == "bash") {
            return ToolOutput::error(format!(
                "the tool \"{name}\" is turned off here (tools.allow / tools.deny / tools.exec.security)"
            ));
        }
        let canonical = if name == "bash" { "exec" } else { name };
        let known = specs().iter().any(|s| s.name == canonical);
        if known && !self.profile.allows(canonical) {
            return ToolOutput::error(format!(
                "the tool \"{name}\" is not available (tools.profile is {}); available: {}",
                self.profile.as_str(),
                self.offered()
            ));
        }
        // Under `minimal` there is no `process` tool to follow a background run, so a command
        // runs to the end (or its timeout) instead of being moved to the background.
        let foreground;
        let args = if canonical == "exec" && self.profile == ToolProfile::Minimal {
            let mut a = args.clone();
            if let Some(o) = a.as_object_mut() {
                o.remove("background");
                o.insert(
                    "yieldMs".into(),
                    json!(u64::try_from(self.exec_timeout.as_millis()).unwrap_or(u64::MAX)),
                );
            }
            foreground = a;
            &foreground
        } else {
            args
        };
        match name {
            "read" => {
                let out = fs::read(&self.policy, args).await;
                if out.ok
                    && let Some(p) = self.file_key(args)
                {
                    self.read_files.lock().insert(p);
                }
                out
            }
            "write" => fs::write(&self.policy, args).await,
            "edit" => {
                let mut out = fs::edit(&self.policy, args).await;
                // Small models edit files blind; the likeliest cause of a miss is not having
                // looked.
                if !out.ok
                    && out.text().starts_with("Could not find oldText")
                    && let Some(p) = self.file_key(args)
                    && !self.read_files.lock().contains(&p)
                {
                    out.content.push(crate::message::ContentBlock::Text {
                        text: format!(
                            "\nYou have not read {} in this session: call read on it first, then copy oldText from what it shows.",
                            p.display()
                        ),
                    });
                }
                out
            }
            "exec" | "bash" => {
                exec::exec(
                    exec::ExecEnv {
                        policy: &self.policy,
                        processes: &self.processes,
                        default_timeout: self.exec_timeout,
                        cancel,
                    },
                    args,
                )
                .await
            }
            "process" => exec::process(&self.processes, args).await,
            "apply_patch" if self.offers_apply_patch() => {
                patch::apply_patch(
                    &self.policy,
                    args,
                    self.apply_patch.workspace_only.unwrap_or(true),
                )
                .await
            }
            "grep" => search::grep(&self.policy, args).await,
            "glob" => search::glob(&self.policy, args).await,
            other => ToolOutput::error(format!(
                "unknown tool \"{other}\"; available: {}",
                self.offered()
            )),
        }
    }

    /// The file a `path` argument names, as the policy resolves it.
    fn file_key(&self, args: &Value) -> Option<std::path::PathBuf> {
        let raw = arg_str(args, fs::PATH_NAMES)?;
        Some(policy::physical(&self.policy.resolve(&raw)))
    }

    /// The offered tools' names, comma-separated.
    fn offered(&self) -> String {
        self.specs()
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `apply_patch`, offered only where [`ToolBox::offers_apply_patch`] says so.
pub fn apply_patch_spec() -> ToolSpec {
    ToolSpec {
        name: "apply_patch".into(),
        description: "Edit files with a patch: *** Begin Patch, then *** Add File: <path> (lines starting with +), *** Delete File: <path>, or *** Update File: <path> (optional *** Move to: <path>) with @@ chunks of ' ' context, '-' removed and '+' added lines (*** End of File when a chunk ends the file), then *** End Patch. Paths are relative to the workspace.".into(),
        parameters: json!({"type": "object", "properties": {
            "input": {"type": "string", "description": "The whole patch, from *** Begin Patch to *** End Patch"}
        }, "required": ["input"]}),
    }
}

pub fn specs() -> Vec<ToolSpec> {
    let spec = |name: &str, description: &str, parameters: Value| ToolSpec {
        name: name.into(),
        description: description.into(),
        parameters,
    };
    vec![
        spec(
            "read",
            "Read a text file (up to 2000 lines or 50 KB per call; use offset/limit for more) or an image (png, jpg, gif, webp).",
            json!({"type": "object", "properties": {
                "path": {"type": "string", "description": "Path to the file, relative to the workspace or absolute"},
                "offset": {"type": "number", "description": "Line to start from (1-indexed)"},
                "limit": {"type": "number", "description": "Most lines to read"}
            }, "required": ["path"]}),
        ),
        spec(
            "write",
            "Write a file, creating parent directories; replaces the file if it exists.",
            json!({"type": "object", "properties": {
                "path": {"type": "string", "description": "Path to the file"},
                "content": {"type": "string", "description": "The whole new content"}
            }, "required": ["path", "content"]}),
        ),
        spec(
            "edit",
            "Replace one exact, unique occurrence of oldText with newText in a file (or every occurrence with replace_all).",
            json!({"type": "object", "properties": {
                "path": {"type": "string", "description": "Path to the file"},
                "oldText": {"type": "string", "description": "Exact text to replace, whitespace included; must occur once unless replace_all is true"},
                "newText": {"type": "string", "description": "Replacement text"},
                "replace_all": {"type": "boolean", "description": "Replace every occurrence of oldText (default false)"}
            }, "required": ["path", "oldText", "newText"]}),
        ),
        spec(
            "exec",
            "Run a shell command in the workspace. Output (stdout and stderr) is capped at 200000 characters. Commands still running after yieldMs continue in the background; follow them with the process tool.",
            json!({"type": "object", "properties": {
                "command": {"type": "string", "description": "Shell command"},
                "workdir": {"type": "string", "description": "Working directory (default: the workspace)"},
                "env": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Extra environment variables"},
                "timeout": {"type": "number", "description": "Seconds before the command is killed (default 1800)"},
                "yieldMs": {"type": "number", "description": "Milliseconds before a running command is moved to the background (default 10000)"},
                "background": {"type": "boolean", "description": "Start in the background right away"}
            }, "required": ["command"]}),
        ),
        spec(
            "process",
            "Manage background commands started by exec: list, poll (new output and status), log, write (stdin), submit, kill, clear, remove.",
            json!({"type": "object", "properties": {
                "action": {"type": "string", "enum": ["list", "poll", "log", "write", "submit", "paste", "kill", "clear", "remove"]},
                "sessionId": {"type": "string", "description": "The id exec returned"},
                "data": {"type": "string", "description": "Input for write/submit"},
                "eof": {"type": "boolean", "description": "Close stdin after writing"},
                "offset": {"type": "number"},
                "limit": {"type": "number"},
                "timeout": {"type": "number", "description": "poll: milliseconds to wait for the command to finish"}
            }, "required": ["action"]}),
        ),
        spec(
            "grep",
            "Search file contents with a regular expression (or a literal string). Prints path:line:text.",
            json!({"type": "object", "properties": {
                "pattern": {"type": "string"},
                "path": {"type": "string", "description": "File or directory (default: the workspace)"},
                "glob": {"type": "string", "description": "Only files matching this glob, e.g. *.rs"},
                "ignoreCase": {"type": "boolean"},
                "literal": {"type": "boolean", "description": "Treat the pattern as plain text"},
                "context": {"type": "number", "description": "Lines of context around each match"},
                "limit": {"type": "number", "description": "Most output lines (default 100)"}
            }, "required": ["pattern"]}),
        ),
        spec(
            "glob",
            "Find files by glob pattern (**, *, ?, [abc], {a,b}); a pattern without / matches file names at any depth.",
            json!({"type": "object", "properties": {
                "pattern": {"type": "string"},
                "path": {"type": "string", "description": "Directory to search (default: the workspace)"},
                "limit": {"type": "number", "description": "Most results (default 200)"}
            }, "required": ["pattern"]}),
        ),
    ]
}
