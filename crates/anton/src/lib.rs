//! Anton: the IdleHands checklist runner (`idlehands anton run|status|stop` and the chat
//! `/anton`).
//!
//! Anton reads a task document (a markdown checklist of `- [ ] ` lines, or a JSON task file),
//! and for each pending task runs a fresh agent session in the repository, verifies that the
//! repository actually changed, marks the task done and commits `anton: <task>`. A failing task
//! is reset with `git reset --hard` + `git clean -fd`, counted as skipped, and the run moves on.
//!
//! * `direct` mode: one implementation call per task.
//! * `preflight` mode: a one-off codebase analysis (`CODEBASE_CONTEXT.md`), then per task a
//!   discovery call that writes a plan file under `<taskFileDir>/.agents/tasks/`, an optional
//!   review of that plan, and an implementation call that follows it.
//!
//! The crate knows nothing about models: callers hand [`run_anton`] a [`TaskAgent`] (the CLI
//! wraps the agent crate; tests script fakes). Progress arrives through a [`MessageSink`] as log
//! lines and [`ProgressEvent`]s; [`format_progress_message`] renders the chat text. One run at a
//! time holds `<stateDir>/anton.lock`; `<stateDir>/anton.state.json` backs [`status_text`] and
//! [`request_stop`] from another process. Git is driven through the `git` binary.

mod agent;
mod config;
mod error;
mod git;
mod lock;
mod ojson;
mod progress;
mod prompts;
mod runner;
mod state;
mod tasks;

pub use agent::{
    AgentCall, AgentCallError, AgentFuture, AgentReply, TaskAgent, workspace_system_prompt,
};
pub use config::{
    AntonConfig, AntonMode, Overrides, PreflightConfig, PreflightThinking, Settings,
    THINKING_LEVELS, ThinkingConfig, validate_thinking_level,
};
pub use error::AntonError;
pub use lock::{LOCK_FILE, LockGuard, LockInfo, acquire as acquire_lock, read_lock};
pub use progress::{
    AntonMessage, MessageSink, ProgressEvent, channel_sink, format_duration,
    format_progress_message, null_sink,
};
pub use prompts::allows_no_repo_changes;
pub use runner::{
    CODEBASE_CONTEXT_FILE, NO_CHANGES_ERROR, NO_PLAN_ERROR, RunOptions, RunOutcome, RunSummary,
    run_anton,
};
pub use state::{AntonState, STATE_FILE, read_state, request_stop, status_text, write_state};
pub use tasks::{
    Task, TaskLocation, is_json_task_file, load_pending_tasks, mark_markdown_done, mark_task_done,
    parse_json_tasks, parse_markdown_tasks,
};
