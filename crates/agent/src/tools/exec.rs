//! `exec` (run a shell command with a timeout and an output cap, backgrounding long runs) and
//! `process` (list, poll, log, write, kill, clear, remove background runs).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio_util::sync::CancellationToken;

use super::{ToolOutput, arg_bool, arg_str, arg_u64};
use crate::tools::policy::Policy;

/// Output kept per command; older output is dropped first.
pub const MAX_OUTPUT_CHARS: usize = 200_000;
pub const DEFAULT_TIMEOUT_SECS: u64 = 1800;
pub const DEFAULT_YIELD_MS: u64 = 10_000;
const LOG_TAIL_LINES: usize = 200;

#[derive(Debug, Default)]
struct OutputBuf {
    text: String,
    /// Bytes ever written, including dropped ones; poll offsets count in these.
    written: usize,
    dropped: usize,
}

impl OutputBuf {
    fn push(&mut self, s: &str) {
        self.text.push_str(s);
        self.written += s.len();
        if self.text.len() > MAX_OUTPUT_CHARS {
            let mut cut = self.text.len() - MAX_OUTPUT_CHARS;
            while !self.text.is_char_boundary(cut) {
                cut += 1;
            }
            self.text.drain(..cut);
            self.dropped += cut;
        }
    }

    fn since(&self, offset: usize) -> &str {
        let start = offset.saturating_sub(self.dropped).min(self.text.len());
        let mut start = start;
        while !self.text.is_char_boundary(start) {
            start += 1;
        }
        &self.text[start..]
    }

    fn rendered(&self) -> String {
        if self.dropped > 0 {
            format!(
                "[... {} earlier bytes of output dropped ...]\n{}",
                self.dropped, self.text
            )
        } else {
            self.text.clone()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum RunStatus {
    Running,
    Exited(i32),
    Killed(String),
}

impl RunStatus {
    fn describe(&self) -> String {
        match self {
            Self::Running => "running".into(),
            Self::Exited(c) => format!("exited with code {c}"),
            Self::Killed(why) => format!("killed ({why})"),
        }
    }
}

struct Run {
    id: String,
    command: String,
    started: Instant,
    pid: Option<u32>,
    output: Arc<Mutex<OutputBuf>>,
    status: Arc<Mutex<RunStatus>>,
    stdin: tokio::sync::Mutex<Option<ChildStdin>>,
    polled: Mutex<usize>,
    done: CancellationToken,
}

/// Background runs of one session, shared by `exec` and `process`.
#[derive(Default, Clone)]
pub struct ProcessTable {
    runs: Arc<Mutex<BTreeMap<String, Arc<Run>>>>,
}

impl ProcessTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Kill every run still going (the session is closing).
    pub async fn kill_all(&self) {
        let runs: Vec<Arc<Run>> = self.runs.lock().values().cloned().collect();
        for r in runs {
            if *r.status.lock() == RunStatus::Running {
                kill_group(r.pid).await;
            }
        }
    }
}

async fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid {
        // The command runs in its own process group; signal the whole group.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }
}

fn spawn_reader<R: AsyncReadExt + Unpin + Send + 'static>(
    mut r: R,
    out: Arc<Mutex<OutputBuf>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 8192];
        let mut carry: Vec<u8> = Vec::new();
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    carry.extend_from_slice(&buf[..n]);
                    let valid = match std::str::from_utf8(&carry) {
                        Ok(_) => carry.len(),
                        Err(e) if e.error_len().is_none() => e.valid_up_to(),
                        Err(_) => carry.len(),
                    };
                    let chunk: Vec<u8> = carry.drain(..valid).collect();
                    out.lock().push(&String::from_utf8_lossy(&chunk));
                }
            }
        }
        if !carry.is_empty() {
            out.lock().push(&String::from_utf8_lossy(&carry));
        }
    })
}

pub struct ExecEnv<'a> {
    pub policy: &'a Policy,
    pub processes: &'a ProcessTable,
    pub default_timeout: Duration,
    pub cancel: &'a CancellationToken,
}

pub async fn exec(env: ExecEnv<'_>, args: &Value) -> ToolOutput {
    let Some(command) = arg_str(args, &["command", "cmd"]) else {
        return ToolOutput::error("missing required argument \"command\"");
    };
    let cwd: PathBuf = match arg_str(args, &["workdir", "cwd"]) {
        Some(w) => env.policy.resolve(&w),
        None => env.policy.workspace.clone(),
    };
    if let Err(e) = env.policy.check_command(&command, &cwd).await {
        return ToolOutput::error(e);
    }
    let timeout = arg_u64(args, &["timeout"])
        .map(Duration::from_secs)
        .unwrap_or(env.default_timeout);
    let background = arg_bool(args, &["background"]).unwrap_or(false);
    let yield_after = if background {
        Duration::ZERO
    } else {
        Duration::from_millis(arg_u64(args, &["yieldMs", "yield_ms"]).unwrap_or(DEFAULT_YIELD_MS))
    };
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(&command)
        .current_dir(&cwd)
        .stdin(if background {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    // The agent's own keys are not the command's business (and `env` would print them).
    for name in &env.policy.scrub_env {
        cmd.env_remove(name);
    }
    if let Some(Value::Object(vars)) = args.get("env") {
        for (k, v) in vars {
            if k == "PATH" {
                return ToolOutput::error(
                    "Security Violation: Custom 'PATH' variable is forbidden during host execution.",
                );
            }
            if let Some(v) = v.as_str() {
                cmd.env(k, v);
            }
        }
    }
    let mut child: Child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return ToolOutput::error(format!("cannot start `{command}`: {e}")),
    };
    let output = Arc::new(Mutex::new(OutputBuf::default()));
    let mut readers = Vec::new();
    if let Some(o) = child.stdout.take() {
        readers.push(spawn_reader(o, output.clone()));
    }
    if let Some(e) = child.stderr.take() {
        readers.push(spawn_reader(e, output.clone()));
    }
    let run = Arc::new(Run {
        id: format!("proc_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
        command: command.clone(),
        started: Instant::now(),
        pid: child.id(),
        output: output.clone(),
        status: Arc::new(Mutex::new(RunStatus::Running)),
        stdin: tokio::sync::Mutex::new(child.stdin.take()),
        polled: Mutex::new(0),
        done: CancellationToken::new(),
    });
    // One task owns the child: it waits for the exit, enforces the timeout, and records it.
    {
        let run = run.clone();
        tokio::spawn(async move {
            let status = tokio::select! {
                s = child.wait() => match s {
                    Ok(s) => match s.code() {
                        Some(c) => RunStatus::Exited(c),
                        None => RunStatus::Killed("signal".into()),
                    },
                    Err(e) => RunStatus::Killed(e.to_string()),
                },
                () = tokio::time::sleep(timeout) => {
                    kill_group(run.pid).await;
                    let _ = child.wait().await;
                    RunStatus::Killed(format!("timed out after {}s", timeout.as_secs()))
                }
                () = run.done.cancelled() => {
                    kill_group(run.pid).await;
                    let _ = child.wait().await;
                    RunStatus::Killed("killed".into())
                }
            };
            for r in readers {
                let _ = tokio::time::timeout(Duration::from_secs(2), r).await;
            }
            *run.status.lock() = status;
            run.done.cancel();
        });
    }
    let finished = tokio::select! {
        () = run.done.cancelled() => true,
        () = tokio::time::sleep(yield_after), if !background => false,
        () = std::future::ready(()), if background => false,
        () = env.cancel.cancelled() => {
            run.done.cancel();
            *run.status.lock() = RunStatus::Killed("aborted".into());
            return ToolOutput::error(format!("`{command}` was aborted"));
        }
    };
    if !finished {
        env.processes
            .runs
            .lock()
            .insert(run.id.clone(), run.clone());
        let so_far = output.lock().text.clone();
        return ToolOutput::ok(
            format!(
                "Command still running in the background (session {id}). Use the process tool (action \"poll\", sessionId \"{id}\") to follow it.{}",
                if so_far.is_empty() {
                    String::new()
                } else {
                    format!("\nOutput so far:\n{so_far}")
                },
                id = run.id
            ),
            format!("backgrounded `{command}` as {}", run.id),
        );
    }
    let status = run.status.lock().clone();
    let text = output.lock().rendered();
    let body = if text.is_empty() {
        "(no output)".to_string()
    } else {
        text
    };
    match status {
        RunStatus::Exited(0) => ToolOutput::ok(body, format!("`{command}` exited 0")),
        s => ToolOutput::error(format!("{body}\n\n(Command {})", s.describe())),
    }
}

/// A made-up or stale id: say which ids exist, so the model can pick one or stop polling.
fn unknown_id(table: &ProcessTable, id: &str) -> String {
    let runs = table.runs.lock();
    if runs.is_empty() {
        return format!(
            "no background process with sessionId \"{id}\": there are no background processes. Only exec starts them (a command still running after yieldMs); to run a command, call exec."
        );
    }
    let live: Vec<String> = runs
        .values()
        .map(|r| format!("  {}  {}  {}", r.id, r.status.lock().describe(), r.command))
        .collect();
    format!(
        "no background process with sessionId \"{id}\". The background processes are:\n{}\nUse one of these ids.",
        live.join("\n")
    )
}

pub async fn process(table: &ProcessTable, args: &Value) -> ToolOutput {
    let action = arg_str(args, &["action"]).unwrap_or_default();
    if action == "list" {
        let runs = table.runs.lock();
        if runs.is_empty() {
            return ToolOutput::ok("No background processes.", "no processes");
        }
        let lines: Vec<String> = runs
            .values()
            .map(|r| {
                format!(
                    "{}  {}  {}s  {}",
                    r.id,
                    r.status.lock().describe(),
                    r.started.elapsed().as_secs(),
                    r.command
                )
            })
            .collect();
        return ToolOutput::ok(lines.join("\n"), format!("{} processes", lines.len()));
    }
    let Some(id) = arg_str(args, &["sessionId", "session_id", "id"]) else {
        return ToolOutput::error(format!("action \"{action}\" needs \"sessionId\""));
    };
    let Some(run) = table.runs.lock().get(&id).cloned() else {
        return ToolOutput::error(unknown_id(table, &id));
    };
    match action.as_str() {
        "poll" => {
            if let Some(ms) = arg_u64(args, &["timeout"]) {
                let _ = tokio::time::timeout(Duration::from_millis(ms), run.done.cancelled()).await;
            }
            let out = run.output.lock();
            let mut polled = run.polled.lock();
            let new = out.since(*polled).to_string();
            *polled = out.written;
            let status = run.status.lock().describe();
            ToolOutput::ok(
                format!(
                    "Status: {status}\n{}",
                    if new.is_empty() {
                        "(no new output)"
                    } else {
                        &new
                    }
                ),
                format!("{id}: {status}"),
            )
        }
        "log" => {
            let text = run.output.lock().text.clone();
            let lines: Vec<&str> = text.lines().collect();
            let limit = arg_u64(args, &["limit"])
                .map(|l| l as usize)
                .unwrap_or(LOG_TAIL_LINES);
            let start = match arg_u64(args, &["offset"]) {
                Some(o) => (o as usize).min(lines.len()),
                None => lines.len().saturating_sub(limit),
            };
            let shown: Vec<&str> = lines.iter().skip(start).take(limit).copied().collect();
            ToolOutput::ok(shown.join("\n"), format!("{id}: {} log lines", shown.len()))
        }
        "write" | "submit" | "paste" => {
            let mut data = arg_str(args, &["data", "text"]).unwrap_or_default();
            if action == "submit" {
                data.push('\n');
            }
            let mut stdin = run.stdin.lock().await;
            let Some(w) = stdin.as_mut() else {
                return ToolOutput::error(format!(
                    "{id} does not take input (start it with background: true to write to it)"
                ));
            };
            if let Err(e) = w.write_all(data.as_bytes()).await {
                return ToolOutput::error(format!("write to {id} failed: {e}"));
            }
            let _ = w.flush().await;
            if arg_bool(args, &["eof"]).unwrap_or(false) {
                *stdin = None;
            }
            ToolOutput::ok(
                format!("Wrote {} bytes to {id}", data.len()),
                format!("wrote to {id}"),
            )
        }
        "kill" => {
            run.done.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                while *run.status.lock() == RunStatus::Running {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await;
            ToolOutput::ok(format!("Killed {id}"), format!("killed {id}"))
        }
        "clear" => {
            let mut out = run.output.lock();
            let written = out.written;
            out.dropped = written;
            out.text.clear();
            *run.polled.lock() = written;
            ToolOutput::ok(format!("Cleared output of {id}"), format!("cleared {id}"))
        }
        "remove" => {
            run.done.cancel();
            table.runs.lock().remove(&id);
            ToolOutput::ok(format!("Removed {id}"), format!("removed {id}"))
        }
        other => ToolOutput::error(format!(
            "unknown action \"{other}\": use list, poll, log, write, submit, kill, clear or remove"
        )),
    }
}
