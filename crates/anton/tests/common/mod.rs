//! Shared test fixtures: scratch git repos and scripted fake agents.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use idlehands_anton::{
    AgentCall, AgentCallError, AgentFuture, AgentReply, AntonMessage, MessageSink, RunOptions,
    TaskAgent, format_progress_message,
};

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A scratch repo with local identity, holding `files`, all committed.
pub struct Repo {
    pub dir: tempfile::TempDir,
    pub state: tempfile::TempDir,
}

impl Repo {
    pub fn new(files: &[(&str, &str)]) -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let p = dir.path();
        git(p, &["init", "-q", "-b", "main"]);
        git(p, &["config", "user.name", "Anton Test"]);
        git(p, &["config", "user.email", "anton@example.test"]);
        git(p, &["config", "commit.gpgsign", "false"]);
        for (name, body) in files {
            let path = p.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, body).unwrap();
        }
        git(p, &["add", "-A"]);
        git(p, &["commit", "-q", "-m", "init"]);
        Repo { dir, state }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.file(name)).unwrap()
    }

    /// Commit subjects, newest first.
    pub fn log(&self) -> Vec<String> {
        git(self.path(), &["log", "--format=%s"])
            .lines()
            .map(String::from)
            .collect()
    }

    pub fn status(&self) -> String {
        git(
            self.path(),
            &["status", "--porcelain", "--untracked-files=all"],
        )
    }

    pub fn options(&self, task_file: &str) -> RunOptions {
        RunOptions {
            task_file: self.file(task_file),
            state_dir: self.state.path().to_path_buf(),
            ..RunOptions::default()
        }
    }
}

/// What a scripted agent does for one call.
pub enum Action {
    Reply(String),
    Fail(String),
    Hang,
}

type Script = dyn Fn(&AgentCall) -> Action + Send + Sync;

/// A fake agent: a script decides each call's effect (usually editing files in the workspace)
/// and reply; every call is recorded.
pub struct FakeAgent {
    script: Box<Script>,
    pub calls: Mutex<Vec<AgentCall>>,
}

impl FakeAgent {
    pub fn new(script: impl Fn(&AgentCall) -> Action + Send + Sync + 'static) -> Arc<FakeAgent> {
        Arc::new(FakeAgent {
            script: Box::new(script),
            calls: Mutex::new(Vec::new()),
        })
    }

    pub fn calls(&self) -> Vec<AgentCall> {
        self.calls.lock().unwrap().clone()
    }
}

impl TaskAgent for FakeAgent {
    fn run(&self, call: AgentCall) -> AgentFuture<'_> {
        self.calls.lock().unwrap().push(call.clone());
        let action = (self.script)(&call);
        Box::pin(async move {
            match action {
                Action::Reply(text) => Ok(AgentReply { text }),
                Action::Fail(msg) => Err(AgentCallError::Failed(msg)),
                Action::Hang => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(AgentReply::default())
                }
            }
        })
    }
}

/// The task line of an implementation prompt (`Task: …` or `Complete this task: …`).
pub fn task_of(message: &str) -> String {
    message
        .lines()
        .find_map(|l| {
            l.strip_prefix("Task: ")
                .or_else(|| l.strip_prefix("Complete this task: "))
        })
        .unwrap_or_default()
        .to_string()
}

/// The path after `marker` on the first line that contains it.
pub fn path_after(message: &str, marker: &str) -> Option<PathBuf> {
    message.lines().find_map(|l| {
        let i = l.find(marker)?;
        Some(PathBuf::from(l[i + marker.len()..].trim()))
    })
}

/// A sink that records every message.
pub fn recorder() -> (MessageSink, Arc<Mutex<Vec<AntonMessage>>>) {
    let store = Arc::new(Mutex::new(Vec::new()));
    let s = store.clone();
    let sink: MessageSink = Arc::new(move |m| s.lock().unwrap().push(m));
    (sink, store)
}

pub fn logs(store: &Mutex<Vec<AntonMessage>>) -> Vec<String> {
    store
        .lock()
        .unwrap()
        .iter()
        .filter_map(|m| match m {
            AntonMessage::Log(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

pub fn errors(store: &Mutex<Vec<AntonMessage>>) -> Vec<String> {
    store
        .lock()
        .unwrap()
        .iter()
        .filter_map(|m| match m {
            AntonMessage::Error(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

pub fn progress(store: &Mutex<Vec<AntonMessage>>) -> Vec<String> {
    store
        .lock()
        .unwrap()
        .iter()
        .filter_map(|m| match m {
            AntonMessage::Progress(e) => Some(format_progress_message(e)),
            _ => None,
        })
        .collect()
}

/// A useful plan body for fake discovery agents.
pub fn plan_body(task: &str) -> String {
    format!(
        "# Plan\n\n## Task\n{task}\n\n## What needs to change\nCreate the file the task names.\n\n## Implementation approach\n1. Write it.\n\n## How to verify\nls\n"
    )
}
