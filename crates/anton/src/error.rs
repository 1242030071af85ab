//! Errors that stop a run before or around the task loop. A failing task is not one of these:
//! it is reset, counted as skipped, and the run goes on.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AntonError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Invalid JSON task file: {} ({message})", path.display())]
    InvalidJsonTaskFile { path: PathBuf, message: String },
    #[error("Invalid --thinking level. Use one of: off, minimal, low, medium, high, xhigh.")]
    InvalidThinkingLevel { value: String },
    #[error("Anton requires a clean git working tree. Dirty repo at: {}", cwd.display())]
    DirtyRepo { cwd: PathBuf },
    #[error("Anton is already running (lock held)")]
    LockHeld,
    #[error("git {args}: {message}")]
    Git { args: String, message: String },
}
