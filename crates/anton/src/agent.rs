//! The seam between the runner and a real agent: one call = one fresh session.
//!
//! The CLI implements [`TaskAgent`] on top of the agent crate; tests implement it with scripted
//! fakes that edit files.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

/// One agent call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentCall {
    /// The user message (the task prompt).
    pub message: String,
    /// A fresh session id per call (`anton-impl-<ms>-<n>`, `anton-discovery-…`, …).
    pub session_id: String,
    /// A validated thinking level (`off|minimal|low|medium|high|xhigh`), when one is configured.
    pub thinking: Option<String>,
    /// The runner also enforces this; an implementation may pass it on to the agent loop.
    pub timeout: Duration,
    /// The repository the agent works in; all its tools should resolve paths against it.
    pub workspace: PathBuf,
    /// Appended to the system prompt ("Your working directory is: …").
    pub extra_system_prompt: String,
    /// `anton run --agent <id>`.
    pub agent_id: Option<String>,
    /// `anton run --to <dest>`.
    pub to: Option<String>,
}

/// What came back: the final assistant text (payload texts joined with a blank line).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentReply {
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentCallError {
    #[error("Agent call timed out after {}s", .0.as_secs())]
    TimedOut(Duration),
    #[error("{0}")]
    Failed(String),
}

pub type AgentFuture<'a> =
    Pin<Box<dyn Future<Output = Result<AgentReply, AgentCallError>> + Send + 'a>>;

pub trait TaskAgent: Send + Sync {
    /// Runs one agent call in a fresh session in `call.workspace` and returns its final text.
    fn run(&self, call: AgentCall) -> AgentFuture<'_>;
}

/// The extra system prompt every anton call gets.
pub fn workspace_system_prompt(workspace: &std::path::Path) -> String {
    format!(
        "Your working directory is: {}\nAll file paths are relative to this directory. Run every tool and command from it.",
        workspace.display()
    )
}
