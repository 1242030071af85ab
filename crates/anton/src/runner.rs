//! `runAnton`: the task loop.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::agent::{AgentCall, AgentCallError, AgentReply, TaskAgent, workspace_system_prompt};
use crate::config::{AntonConfig, AntonMode, Overrides, Settings};
use crate::error::AntonError;
use crate::git::{self, Snapshot};
use crate::lock;
use crate::progress::{AntonMessage, MessageSink, ProgressEvent, format_duration};
use crate::prompts;
use crate::state::{AntonState, now_iso, read_state, write_state};
use crate::tasks::{Task, absolute, load_pending_tasks, mark_task_done};

pub const NO_CHANGES_ERROR: &str =
    "Implementation made no repository changes; refusing to mark task complete";
pub const NO_PLAN_ERROR: &str = "Preflight discovery did not produce a verified plan file; refusing direct implementation fallback";
pub const CODEBASE_CONTEXT_FILE: &str = "CODEBASE_CONTEXT.md";

/// One `anton run`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub task_file: PathBuf,
    /// Where `anton.lock` and `anton.state.json` live (`~/.idlehands`).
    pub state_dir: PathBuf,
    /// `cfg.anton`.
    pub config: AntonConfig,
    pub overrides: Overrides,
    /// `--workspace`; defaults to the task file's directory.
    pub workspace: Option<PathBuf>,
    pub agent_id: Option<String>,
    pub to: Option<String>,
    pub force: bool,
    pub dry_run: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    pub completed: usize,
    pub skipped: usize,
    pub total: usize,
    pub duration_ms: u64,
    /// A stop request ended the run early.
    pub stopped: bool,
    /// Branches holding what failed tasks changed (`anton/unfinished-<i>-<ms>`).
    pub kept_branches: Vec<String>,
    /// `Anton finished: completed=C, skipped=S, total=T, duration=…`.
    pub summary: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// `--dry-run`: the pending task texts.
    DryRun {
        tasks: Vec<String>,
    },
    NoPendingTasks,
    Finished(RunSummary),
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// Runs every pending task of `opts.task_file`, one fresh agent call per phase, committing each
/// success and resetting each failure.
pub async fn run_anton(
    opts: RunOptions,
    agent: Arc<dyn TaskAgent>,
    sink: MessageSink,
) -> Result<RunOutcome, AntonError> {
    let file_path = absolute(&opts.task_file);
    let pending = load_pending_tasks(&file_path)?;
    let log = |s: String| sink(AntonMessage::Log(s));

    if opts.dry_run {
        log(format!("Dry run: {} pending task(s)", pending.len()));
        for t in &pending {
            log(format!("- [ ] {}", t.text));
        }
        return Ok(RunOutcome::DryRun {
            tasks: pending.into_iter().map(|t| t.text).collect(),
        });
    }
    if pending.is_empty() {
        log("No pending tasks.".to_string());
        sink(AntonMessage::Progress(ProgressEvent::Finish {
            completed: 0,
            skipped: 0,
            total: 0,
            duration_ms: 0,
        }));
        return Ok(RunOutcome::NoPendingTasks);
    }

    let settings = Settings::resolve(&opts.config, &opts.overrides, &file_path)?;
    let cwd = match &opts.workspace {
        Some(w) => absolute(w),
        None => file_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
    };
    git::ensure_repo_clean(&cwd).await?;
    let _lock = lock::acquire(&opts.state_dir, opts.force)?;

    let top = git::toplevel(&cwd).await;
    let rel_to_top = |p: &Path| -> Option<String> {
        let top = top.as_ref()?.canonicalize().ok()?;
        let full = canonical_lenient(p);
        let rel = full.strip_prefix(&top).ok()?;
        Some(rel.to_string_lossy().replace('\\', "/"))
    };
    let task_file_rel = rel_to_top(&file_path);
    let plan_rel = rel_to_top(&settings.plan_dir).filter(|r| !r.is_empty());

    let mut run = Runner {
        agent,
        sink: sink.clone(),
        state_dir: opts.state_dir.clone(),
        file_path,
        cwd,
        task_file_ignore: task_file_rel.into_iter().collect(),
        plan_keep: plan_rel.as_ref().map(|r| format!("/{r}")),
        plan_unstage: plan_rel.as_ref().map(|r| format!(":/{r}")),
        agent_id: opts.agent_id.clone(),
        to: opts.to.clone(),
        settings,
        total: pending.len(),
        codebase_context: None,
        started: Instant::now(),
        started_at: now_iso(),
        completed: 0,
        skipped: 0,
        kept_branches: Vec::new(),
    };
    let mut state_guard = RunningStateGuard {
        state_dir: opts.state_dir.clone(),
        armed: true,
    };
    let result = run.run_tasks(&pending).await;
    state_guard.armed = result.is_err();
    result.map(RunOutcome::Finished)
}

/// Marks the state "not running" when a run ends without its normal finish: an error, a panic,
/// or the caller dropping the future (the interactive `/anton` aborting its background task).
/// Declared after the lock guard, so it runs before the lock is released.
struct RunningStateGuard {
    state_dir: PathBuf,
    armed: bool,
}

impl Drop for RunningStateGuard {
    fn drop(&mut self) {
        if self.armed {
            let mut s = read_state(&self.state_dir);
            s.running = false;
            let _ = write_state(&self.state_dir, &s);
        }
    }
}

/// Canonicalizes the longest existing ancestor, so not-yet-created dirs still compare with
/// `git rev-parse --show-toplevel` (which resolves symlinks).
fn canonical_lenient(p: &Path) -> PathBuf {
    let mut missing = Vec::new();
    let mut cur = p.to_path_buf();
    loop {
        if let Ok(c) = cur.canonicalize() {
            return missing
                .into_iter()
                .rev()
                .fold(c, |acc, part| acc.join(part));
        }
        match (cur.file_name().map(|n| n.to_os_string()), cur.parent()) {
            (Some(name), Some(parent)) => {
                missing.push(name);
                cur = parent.to_path_buf();
            }
            _ => return p.to_path_buf(),
        }
    }
}

struct Runner {
    agent: Arc<dyn TaskAgent>,
    sink: MessageSink,
    state_dir: PathBuf,
    file_path: PathBuf,
    cwd: PathBuf,
    task_file_ignore: Vec<String>,
    /// `git clean -e` pattern keeping a plan dir configured outside `.agents/tasks`.
    plan_keep: Option<String>,
    /// `git restore --staged` pathspec for the same.
    plan_unstage: Option<String>,
    agent_id: Option<String>,
    to: Option<String>,
    settings: Settings,
    total: usize,
    codebase_context: Option<(PathBuf, String)>,
    started: Instant,
    started_at: String,
    completed: usize,
    skipped: usize,
    kept_branches: Vec<String>,
}

enum Discovery {
    AlreadyComplete,
    Plan(PathBuf),
    Failed(String),
}

impl Runner {
    fn log(&self, s: String) {
        (self.sink)(AntonMessage::Log(s));
    }
    fn emit(&self, e: ProgressEvent) {
        (self.sink)(AntonMessage::Progress(e));
    }

    fn state(&self, running: bool, current: Option<usize>) -> AntonState {
        AntonState {
            running,
            task_file: Some(self.file_path.clone()),
            started_at: Some(self.started_at.clone()),
            current_index: current,
            total: Some(self.total),
            completed: Some(self.completed),
            skipped: Some(self.skipped),
            last_summary: None,
            stop_requested: Some(false),
            updated_at: None,
        }
    }

    async fn run_tasks(&mut self, pending: &[Task]) -> Result<RunSummary, AntonError> {
        write_state(&self.state_dir, &self.state(true, Some(0)))?;
        self.emit(ProgressEvent::Start {
            task_file: self.file_path.clone(),
            total_tasks: self.total,
        });
        self.log(self.settings.mode_line());

        if self.settings.mode == AntonMode::Preflight && self.settings.codebase_snapshot {
            self.analyze_codebase().await;
        }

        let mut stopped = false;
        for (i, task) in pending.iter().enumerate() {
            if read_state(&self.state_dir).stop_requested == Some(true) {
                self.log("Anton stop acknowledged.".to_string());
                self.emit(ProgressEvent::Stopped {
                    completed_so_far: self.completed,
                    total: self.total,
                });
                stopped = true;
                break;
            }
            let index = i + 1;
            write_state(&self.state_dir, &self.state(true, Some(i)))?;
            self.log(format!(
                "\n[Anton] Task {index}/{}: {}",
                self.total, task.text
            ));
            self.emit(ProgressEvent::TaskStart {
                index,
                total: self.total,
                task: task.text.clone(),
            });
            match self.run_task(index, task).await {
                Ok(()) => {
                    self.completed += 1;
                    self.emit(ProgressEvent::TaskComplete {
                        index,
                        total: self.total,
                        task: task.text.clone(),
                    });
                }
                Err(error) => {
                    // A task that timed out may well have done the job already: its changes go
                    // on a branch before the clean-up, never silently away.
                    let kept = self.keep_work(index, task, &error).await;
                    let _ = git::hard_clean(&self.cwd, self.plan_keep.as_deref()).await;
                    self.skipped += 1;
                    (self.sink)(AntonMessage::Error(format!(
                        "[Anton] Task failed and was skipped: {}",
                        task.text
                    )));
                    (self.sink)(AntonMessage::Error(error.clone()));
                    let error = match kept {
                        Some(b) => {
                            (self.sink)(AntonMessage::Error(format!(
                                "[Anton] The task's changes were kept on branch {b}"
                            )));
                            self.kept_branches.push(b.clone());
                            format!("{error}\n└ changes kept on branch {b}")
                        }
                        None => error,
                    };
                    self.emit(ProgressEvent::TaskFailed {
                        index,
                        total: self.total,
                        task: task.text.clone(),
                        error,
                    });
                }
            }
        }

        let duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let summary = format!(
            "Anton finished: completed={}, skipped={}, total={}, duration={}",
            self.completed,
            self.skipped,
            self.total,
            format_duration(duration_ms)
        );
        let mut end = self.state(false, None);
        end.last_summary = Some(summary.clone());
        write_state(&self.state_dir, &end)?;
        self.log(format!("\n{summary}"));
        if !self.kept_branches.is_empty() {
            self.log(format!(
                "[Anton] Changes of unfinished tasks kept on: {}",
                self.kept_branches.join(", ")
            ));
        }
        self.emit(ProgressEvent::Finish {
            completed: self.completed,
            skipped: self.skipped,
            total: self.total,
            duration_ms,
        });
        Ok(RunSummary {
            completed: self.completed,
            skipped: self.skipped,
            total: self.total,
            duration_ms,
            stopped,
            summary,
            kept_branches: self.kept_branches.clone(),
        })
    }

    /// Puts a failed task's changes on `anton/unfinished-<i>-<ms>`; `None` when it changed
    /// nothing (or git refused, which the log says).
    async fn keep_work(&self, index: usize, task: &Task, error: &str) -> Option<String> {
        let branch = format!("anton/unfinished-{index}-{}", now_ms());
        let message = format!("anton (unfinished): {}\n\n{error}", task.text);
        match git::keep_work(&self.cwd, &branch, &message, self.plan_unstage.as_deref()).await {
            Ok(true) => Some(branch),
            Ok(false) => None,
            Err(e) => {
                (self.sink)(AntonMessage::Error(format!(
                    "[Anton] Could not keep the task's changes: {e}"
                )));
                None
            }
        }
    }

    async fn call(
        &self,
        message: String,
        session_id: String,
        thinking: Option<String>,
        timeout: Duration,
    ) -> Result<AgentReply, AgentCallError> {
        let call = AgentCall {
            message,
            session_id,
            thinking,
            timeout,
            workspace: self.cwd.clone(),
            extra_system_prompt: workspace_system_prompt(&self.cwd),
            agent_id: self.agent_id.clone(),
            to: self.to.clone(),
        };
        match tokio::time::timeout(timeout, self.agent.run(call)).await {
            Ok(r) => r,
            Err(_) => Err(AgentCallError::TimedOut(timeout)),
        }
    }

    fn spawned(&self, index: usize, task: String, session_id: &str) {
        self.emit(ProgressEvent::TaskAgentSpawned {
            index,
            total: self.total,
            task,
            session_id: session_id.to_string(),
        });
    }

    async fn snapshot(&self) -> Snapshot {
        git::snapshot(&self.cwd, &self.task_file_ignore).await
    }

    async fn hard_clean(&self) -> Result<(), String> {
        git::hard_clean(&self.cwd, self.plan_keep.as_deref())
            .await
            .map_err(|e| e.to_string())
    }

    async fn finish_task(&self, task: &Task) -> Result<(), String> {
        mark_task_done(&self.file_path, task).map_err(|e| e.to_string())?;
        git::commit_all_if_dirty(&self.cwd, &task.text, self.plan_unstage.as_deref())
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// One task; `Err` carries the message for the skip report.
    async fn run_task(&self, index: usize, task: &Task) -> Result<(), String> {
        let preflight = self.settings.mode == AntonMode::Preflight;
        let prompt_text = task.prompt_text();

        let mut plan_file = None;
        if preflight {
            self.hard_clean().await?;
            match self.discover(index, task).await {
                Discovery::AlreadyComplete => {
                    self.emit(ProgressEvent::DiscoveryAlreadyComplete {
                        index,
                        total: self.total,
                        task: task.text.clone(),
                    });
                    return self.finish_task(task).await;
                }
                Discovery::Failed(error) => {
                    self.emit(ProgressEvent::DiscoveryFailed {
                        index,
                        total: self.total,
                        task: task.text.clone(),
                        error,
                    });
                    return Err(NO_PLAN_ERROR.to_string());
                }
                Discovery::Plan(p) => {
                    if self.settings.requirements_review {
                        self.review(index, task, &p).await;
                    }
                    plan_file = Some(p);
                }
            }
        }

        self.emit(ProgressEvent::ImplementationStart {
            index,
            total: self.total,
            task: task.text.clone(),
            plan_file: plan_file.clone(),
        });
        self.hard_clean().await?;
        // Taken after the clean: `git reset --hard` itself adds a reflog entry, and anything
        // discovery left behind has just been thrown away.
        let baseline = self.snapshot().await;
        let session_id = format!("anton-impl-{}-{index}", now_ms());
        self.spawned(index, task.text.clone(), &session_id);
        let (message, thinking) = match &plan_file {
            Some(p) => (
                prompts::implementation_prompt(&prompt_text, p),
                self.settings.thinking_phase2.clone(),
            ),
            None => (
                prompts::direct_prompt(&prompt_text),
                self.settings.thinking_direct.clone(),
            ),
        };
        self.call(
            message,
            session_id,
            thinking.clone(),
            self.settings.task_timeout,
        )
        .await
        .map_err(|e| e.to_string())?;

        let exempt = prompts::allows_no_repo_changes(&task.text);
        if !exempt && self.snapshot().await == baseline {
            if !preflight {
                return Err(NO_CHANGES_ERROR.to_string());
            }
            let retry_id = format!("anton-impl-retry-{}-{index}", now_ms());
            self.spawned(index, task.text.clone(), &retry_id);
            self.call(
                prompts::implementation_retry_prompt(&prompt_text, plan_file.as_deref()),
                retry_id,
                thinking,
                self.settings.task_timeout,
            )
            .await
            .map_err(|e| e.to_string())?;
            if self.snapshot().await == baseline {
                return Err(NO_CHANGES_ERROR.to_string());
            }
        }
        self.finish_task(task).await
    }

    fn plan_file_path(&self, index: usize) -> PathBuf {
        self.settings
            .plan_dir
            .join(format!("task-{index}-{}.md", now_ms()))
    }

    fn declared_plan(&self, filename: Option<&str>, expected: &Path) -> PathBuf {
        match filename {
            Some(f) if Path::new(f).is_absolute() => PathBuf::from(f),
            Some(f) => self.cwd.join(f),
            None => expected.to_path_buf(),
        }
    }

    /// Checks one discovery reply: a valid plan file on disk wins over whatever the reply
    /// claims; then "complete"; then a usable plan in the reply text, written as a fallback.
    fn judge_discovery_reply(&self, reply: &str, expected: &Path) -> Option<Discovery> {
        let parsed = prompts::extract_json_object(reply);
        let declared = self.declared_plan(
            parsed
                .as_ref()
                .and_then(|o| prompts::json_str(o, "filename")),
            expected,
        );
        for candidate in [expected, declared.as_path()] {
            if prompts::is_plan_file_valid(candidate) {
                return Some(Discovery::Plan(candidate.to_path_buf()));
            }
        }
        let status = parsed
            .as_ref()
            .map(prompts::json_status)
            .unwrap_or_default();
        if status == "complete" {
            return Some(Discovery::AlreadyComplete);
        }
        let text = prompts::plan_text_from_reply(parsed.as_ref(), reply)?;
        std::fs::write(expected, format!("{text}\n")).ok()?;
        prompts::is_plan_file_valid(expected).then(|| Discovery::Plan(expected.to_path_buf()))
    }

    async fn discover(&self, index: usize, task: &Task) -> Discovery {
        self.emit(ProgressEvent::DiscoveryStart {
            index,
            total: self.total,
            task: task.text.clone(),
        });
        if let Err(e) = std::fs::create_dir_all(&self.settings.plan_dir) {
            return Discovery::Failed(format!(
                "cannot create plan dir {}: {e}",
                self.settings.plan_dir.display()
            ));
        }
        let prompt_text = task.prompt_text();
        let plan_file = self.plan_file_path(index);
        let context = self
            .codebase_context
            .as_ref()
            .map(|(p, t)| (p.as_path(), t.as_str()));
        let mut last_error = String::from("Discovery did not produce a valid plan file");
        for attempt in 0..=self.settings.preflight_max_retries {
            let prompts_for_attempt = [
                (
                    format!("anton-discovery-{}-{index}-{attempt}", now_ms()),
                    format!("Discovery (attempt {})", attempt + 1),
                    prompts::discovery_prompt(&prompt_text, &self.file_path, &plan_file, context),
                ),
                (
                    format!("anton-discovery-repair-{}-{index}-{attempt}", now_ms()),
                    format!("Discovery repair (attempt {})", attempt + 1),
                    prompts::discovery_repair_prompt(&prompt_text, &self.file_path, &plan_file),
                ),
            ];
            for (session_id, label, message) in prompts_for_attempt {
                self.spawned(index, label, &session_id);
                let reply = self
                    .call(
                        message,
                        session_id,
                        self.settings.thinking_phase1.clone(),
                        self.settings.discovery_timeout,
                    )
                    .await;
                match reply {
                    Ok(r) => {
                        if let Some(outcome) = self.judge_discovery_reply(&r.text, &plan_file) {
                            if let Discovery::Plan(p) = &outcome {
                                self.emit(ProgressEvent::DiscoveryComplete {
                                    index,
                                    total: self.total,
                                    task: task.text.clone(),
                                    plan_file: p.clone(),
                                });
                            }
                            return outcome;
                        }
                        last_error = "Discovery did not produce a valid plan file after primary + repair passes".to_string();
                    }
                    Err(e) => {
                        last_error = e.to_string();
                        // A failed call gets no repair pass; the next attempt starts over.
                        break;
                    }
                }
            }
        }
        Discovery::Failed(last_error)
    }

    async fn review(&self, index: usize, task: &Task, plan_file: &Path) {
        self.emit(ProgressEvent::ReviewStart {
            index,
            total: self.total,
            task: task.text.clone(),
            plan_file: plan_file.to_path_buf(),
        });
        let session_id = format!("anton-review-{}-{index}", now_ms());
        self.spawned(index, "Requirements review".to_string(), &session_id);
        let result = self
            .call(
                prompts::review_prompt(plan_file),
                session_id,
                self.settings.thinking_phase1.clone(),
                self.settings.review_timeout,
            )
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| {
                let status = prompts::extract_json_object(&r.text)
                    .map(|o| prompts::json_status(&o))
                    .unwrap_or_default();
                if status != "ready" {
                    Err("review did not return {\"status\":\"ready\"}".to_string())
                } else if !prompts::is_plan_file_valid(plan_file) {
                    Err("plan file is missing or empty after review".to_string())
                } else {
                    Ok(())
                }
            });
        match result {
            Ok(()) => self.emit(ProgressEvent::ReviewComplete {
                index,
                total: self.total,
                task: task.text.clone(),
                plan_file: plan_file.to_path_buf(),
            }),
            Err(error) => self.emit(ProgressEvent::ReviewFailed {
                index,
                total: self.total,
                task: task.text.clone(),
                error,
            }),
        }
    }

    /// Preflight, once per run: a shared overview for every discovery prompt. Failure only
    /// means discovery works without it.
    async fn analyze_codebase(&mut self) {
        let plan_dir = self.settings.plan_dir.clone();
        self.emit(ProgressEvent::CodebaseAnalysisStart {
            plan_dir: plan_dir.clone(),
        });
        let started = Instant::now();
        let context_file = plan_dir.join(CODEBASE_CONTEXT_FILE);
        let result = async {
            std::fs::create_dir_all(&plan_dir).map_err(|e| e.to_string())?;
            let session_id = format!("anton-codebase-{}", now_ms());
            let reply = self
                .call(
                    prompts::codebase_analysis_prompt(&context_file),
                    session_id,
                    self.settings.thinking_phase1.clone(),
                    self.settings.discovery_timeout,
                )
                .await
                .map_err(|e| e.to_string())?;
            let on_disk = std::fs::read_to_string(&context_file).unwrap_or_default();
            if on_disk.trim().len() >= 20 {
                return Ok(on_disk);
            }
            let text = reply.text.trim();
            if text.chars().count() >= 120 {
                std::fs::write(&context_file, format!("{text}\n")).map_err(|e| e.to_string())?;
                return Ok(text.to_string());
            }
            Err(format!("{CODEBASE_CONTEXT_FILE} was not written"))
        }
        .await;
        // Analysis must not leave source edits behind for the first task's baseline.
        let _ = git::hard_clean(&self.cwd, self.plan_keep.as_deref()).await;
        match result {
            Ok(text) => {
                self.codebase_context = Some((context_file.clone(), text));
                self.emit(ProgressEvent::CodebaseAnalysisComplete {
                    context_file,
                    duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                });
            }
            Err(error) => self.emit(ProgressEvent::CodebaseAnalysisFailed { error }),
        }
    }
}
