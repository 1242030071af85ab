//! The system prompt: identity, tools, workspace, runtime, and the workspace's bootstrap files.

use std::path::Path;

use crate::client::ToolSpec;
use crate::thinking::ThinkingLevel;

pub const BOOTSTRAP_FILES: &[&str] = &[
    "AGENTS.md",
    "SOUL.md",
    "TOOLS.md",
    "IDENTITY.md",
    "USER.md",
    "HEARTBEAT.md",
    "BOOTSTRAP.md",
    "MEMORY.md",
];
pub const BOOTSTRAP_MAX_CHARS: usize = 20_000;
pub const BOOTSTRAP_TOTAL_MAX_CHARS: usize = 150_000;

pub struct PromptInputs<'a> {
    pub workspace: &'a Path,
    pub tools: &'a [ToolSpec],
    pub model: &'a str,
    pub thinking: ThinkingLevel,
    pub extra: Option<&'a str>,
}

pub fn build(p: &PromptInputs<'_>) -> String {
    let mut s = String::new();
    s.push_str(
        "You are IdleHands, a coding agent working in the user's workspace through tools.\n\n",
    );
    s.push_str("## Safety\nDo not run destructive commands or touch files outside the workspace unless the user asks; some actions need the user's approval and may be refused with a reason. Never reveal credentials.\n\n");
    s.push_str("## Tooling\n");
    for t in p.tools {
        let first = t.description.split(". ").next().unwrap_or(&t.description);
        s.push_str(&format!("- {}: {}\n", t.name, first.trim_end_matches('.')));
    }
    s.push_str("\n## Tool Call Style\nCall tools directly when they help; read before you edit; keep edits minimal; run the relevant tests after changing code. Reply with a short summary when done.\n\n");
    s.push_str(&format!(
        "## Workspace\nYour working directory is: {}\nRelative paths are resolved against it.\n\n",
        p.workspace.display()
    ));
    // The date only: a clock in the prompt would change its bytes every minute and make
    // local servers re-read the whole prompt each turn instead of reusing their cache.
    s.push_str(&format!(
        "## Current Date\n{} (UTC). Run `date` for the time.\n\n",
        chrono::Utc::now().format("%Y-%m-%d")
    ));
    let mut total = 0;
    let mut context = String::new();
    for name in BOOTSTRAP_FILES {
        let Ok(text) = std::fs::read_to_string(p.workspace.join(name)) else {
            continue;
        };
        if total >= BOOTSTRAP_TOTAL_MAX_CHARS {
            break;
        }
        let cap = BOOTSTRAP_MAX_CHARS.min(BOOTSTRAP_TOTAL_MAX_CHARS - total);
        let mut body: String = text.chars().take(cap).collect();
        if body.len() < text.len() {
            body.push_str("\n[... truncated ...]");
        }
        total += body.len();
        context.push_str(&format!("## {name}\n{body}\n\n"));
    }
    if !context.is_empty() {
        s.push_str("# Project Context\n");
        s.push_str(&context);
    }
    s.push_str(&format!(
        "## Runtime\nos={} arch={} model={} thinking={}\n",
        std::env::consts::OS,
        std::env::consts::ARCH,
        p.model,
        p.thinking
    ));
    if let Some(extra) = p.extra.filter(|e| !e.trim().is_empty()) {
        s.push('\n');
        s.push_str(extra);
        s.push('\n');
    }
    s
}
