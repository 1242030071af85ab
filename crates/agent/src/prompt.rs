//! The system prompt: identity, tools, workspace, runtime, and the workspace's bootstrap files.

use std::path::Path;

use crate::client::ToolSpec;
use crate::thinking::ThinkingLevel;
use crate::tools::ToolProfile;

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
    pub profile: ToolProfile,
    /// The command that runs the tests, when the task or the repository shows one.
    pub test_command: Option<&'a str>,
}

pub fn build(p: &PromptInputs<'_>) -> String {
    if p.profile == ToolProfile::Minimal {
        return build_minimal(p);
    }
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
    s.push_str("\n## Tool Call Style\nCall tools directly when they help; read before you edit; keep edits minimal; run the relevant tests after changing code. Reply with a short summary when done.\n");
    if let Some(cmd) = p.test_command {
        s.push_str(&format!("The tests run with: `{cmd}`\n"));
    }
    s.push('\n');
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

/// The prompt for small models (`tools.profile: minimal`): short, and a fixed way of working,
/// since a small model left to itself edits files it never read and never runs the tests.
/// Project context files are left out: they would crowd a small context window.
fn build_minimal(p: &PromptInputs<'_>) -> String {
    let names: Vec<&str> = p.tools.iter().map(|t| t.name.as_str()).collect();
    let test = match p.test_command {
        Some(cmd) => format!("run the tests with exec: `{cmd}`"),
        None => "run the tests with exec".to_string(),
    };
    let mut s = format!(
        "You are a coding agent. You work in {} using the tools {}.\n\n\
         Work in these steps:\n\
         1. read the files the task is about. Never edit a file you have not read.\n\
         2. change the code with edit: copy oldText exactly from what read showed. Use write only for new files.\n\
         3. {test}.\n\
         4. if the tests fail, read the error, fix the code, and run the tests again.\n\
         5. when the tests pass, stop calling tools and answer with one sentence saying what you changed.\n\n\
         If a tool call fails, do not repeat it unchanged: read the message and do something different.\n",
        p.workspace.display(),
        names.join(", ")
    );
    if let Some(extra) = p.extra.filter(|e| !e.trim().is_empty()) {
        s.push('\n');
        s.push_str(extra);
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minimal_prompt_says_how_to_work_and_names_the_test_command() {
        let tools = crate::tools::profile::specs(ToolProfile::Minimal, crate::tools::specs());
        let p = build(&PromptInputs {
            workspace: Path::new("/w"),
            tools: &tools,
            model: "local/qwen",
            thinking: ThinkingLevel::Off,
            extra: None,
            profile: ToolProfile::Minimal,
            test_command: Some("python3 -m unittest"),
        });
        assert!(p.contains("tools read, write, edit, exec"), "{p}");
        assert!(p.contains("1. read the files"), "{p}");
        assert!(
            p.contains("run the tests with exec: `python3 -m unittest`"),
            "{p}"
        );
        assert!(p.len() < 1200, "{} chars", p.len());
        let full = build(&PromptInputs {
            profile: ToolProfile::Full,
            test_command: Some("cargo test"),
            tools: &crate::tools::specs(),
            workspace: Path::new("/w"),
            model: "m",
            thinking: ThinkingLevel::Off,
            extra: None,
        });
        assert!(full.contains("The tests run with: `cargo test`"), "{full}");
    }
}
