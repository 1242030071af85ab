//! `<stateDir>/anton.state.json`: what `anton status` shows and how `anton stop` reaches a run
//! in another process.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::AntonError;

pub const STATE_FILE: &str = "anton.state.json";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AntonState {
    pub running: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// 0-based index of the task being worked on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_requested: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

pub(crate) fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A missing or unreadable state file reads as "not running".
pub fn read_state(state_dir: &Path) -> AntonState {
    std::fs::read_to_string(state_dir.join(STATE_FILE))
        .ok()
        .and_then(|raw| serde_json::from_str(&raw).ok())
        .unwrap_or_default()
}

/// Writes the state (2-space JSON) with `updatedAt` stamped now.
pub fn write_state(state_dir: &Path, state: &AntonState) -> Result<(), AntonError> {
    let io = |source| AntonError::Io {
        path: state_dir.join(STATE_FILE),
        source,
    };
    std::fs::create_dir_all(state_dir).map_err(io)?;
    let mut s = state.clone();
    s.updated_at = Some(now_iso());
    let body = serde_json::to_string_pretty(&s).map_err(|e| io(std::io::Error::other(e)))?;
    // Write-then-rename so a concurrent `anton status` never reads half a file.
    let tmp = state_dir.join(format!("{STATE_FILE}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, format!("{body}\n")).map_err(io)?;
    std::fs::rename(&tmp, state_dir.join(STATE_FILE)).map_err(io)
}

/// `anton status`: `Anton is idle.` (plus the last summary), or
/// `Anton running: c/t complete | file=… | current=i`.
pub fn status_text(state_dir: &Path) -> String {
    let s = read_state(state_dir);
    if !s.running {
        return match s.last_summary {
            Some(summary) if !summary.is_empty() => format!("Anton is idle.\n{summary}"),
            _ => "Anton is idle.".to_string(),
        };
    }
    let mut line = format!(
        "Anton running: {}/{} complete",
        s.completed.unwrap_or(0),
        s.total.unwrap_or(0)
    );
    if let Some(f) = &s.task_file {
        line.push_str(&format!(" | file={}", f.display()));
    }
    if let Some(i) = s.current_index {
        line.push_str(&format!(" | current={}", i + 1));
    }
    line
}

/// `anton stop`: asks a running anton to stop before its next task. Returns the line to print.
pub fn request_stop(state_dir: &Path) -> Result<String, AntonError> {
    let mut s = read_state(state_dir);
    if !s.running {
        return Ok("Anton is not running.".to_string());
    }
    s.stop_requested = Some(true);
    write_state(state_dir, &s)?;
    Ok("Anton stop requested. It will stop after current task.".to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn status_and_stop_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(status_text(dir.path()), "Anton is idle.");
        assert_eq!(request_stop(dir.path()).unwrap(), "Anton is not running.");

        let running = AntonState {
            running: true,
            task_file: Some("/r/TASKS.md".into()),
            current_index: Some(1),
            total: Some(4),
            completed: Some(1),
            skipped: Some(0),
            stop_requested: Some(false),
            ..AntonState::default()
        };
        write_state(dir.path(), &running).unwrap();
        assert_eq!(
            status_text(dir.path()),
            "Anton running: 1/4 complete | file=/r/TASKS.md | current=2"
        );
        assert_eq!(
            request_stop(dir.path()).unwrap(),
            "Anton stop requested. It will stop after current task."
        );
        let s = read_state(dir.path());
        assert_eq!(s.stop_requested, Some(true));
        assert!(s.updated_at.is_some());

        let raw = std::fs::read_to_string(dir.path().join(STATE_FILE)).unwrap();
        assert!(
            raw.contains("\n  \"running\": true,\n  \"taskFile\": \"/r/TASKS.md\""),
            "{raw}"
        );

        write_state(
            dir.path(),
            &AntonState {
                running: false,
                last_summary: Some(
                    "Anton finished: completed=1, skipped=0, total=1, duration=3s".into(),
                ),
                ..AntonState::default()
            },
        )
        .unwrap();
        assert_eq!(
            status_text(dir.path()),
            "Anton is idle.\nAnton finished: completed=1, skipped=0, total=1, duration=3s"
        );
    }
}
