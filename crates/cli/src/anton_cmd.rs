//! `idlehands anton run|status|stop`: the checklist runner (`idlehands_anton`) driving one
//! fresh headless agent session per call. The interactive `/anton` reuses [`AgentRunner`] and
//! [`run_options`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use idlehands_agent::agent::HeadlessError;
use idlehands_agent::{
    ApprovalMode, Env, Paths, Runtime, SessionOptions, ThinkingLevel, UserInput, run_headless_with,
};
use idlehands_anton::{
    AgentCall, AgentCallError, AgentFuture, AgentReply, AntonConfig, AntonMessage, AntonMode,
    MessageSink, Overrides, ProgressEvent, RunOptions, RunOutcome, RunSummary, TaskAgent,
    format_progress_message,
};

#[derive(clap::Args)]
pub struct AntonArgs {
    #[command(subcommand)]
    command: AntonCommand,
}

#[derive(clap::Subcommand)]
enum AntonCommand {
    /// Work through the `- [ ]` tasks of a markdown (or JSON) task file, one agent per task,
    /// committing each success.
    Run(RunArgs),
    /// Show whether a run is in progress (or the last run's summary).
    Status,
    /// Ask a running anton to stop before its next task.
    Stop,
}

#[derive(clap::Args)]
struct RunArgs {
    /// The task file (e.g. TASKS.md).
    file: PathBuf,
    /// direct (one implementation call per task) or preflight (plan first, then implement).
    #[arg(long)]
    mode: Option<AntonMode>,
    /// Thinking level for every call: off, minimal, low, medium, high or xhigh.
    #[arg(long)]
    thinking: Option<String>,
    /// Seconds per agent call (default: agents.defaults.timeoutSeconds, else the task timeout).
    #[arg(long)]
    timeout: Option<u64>,
    /// Seconds per task (anton.taskTimeoutSec; default 1200).
    #[arg(long = "task-timeout")]
    task_timeout: Option<u64>,
    /// The repository to work in (default: the task file's directory).
    #[arg(long)]
    workspace: Option<PathBuf>,
    /// A model ref or alias instead of the configured primary. When it fails the task fails,
    /// unless --allow-fallback.
    #[arg(long)]
    model: Option<String>,
    /// With --model: when it fails, go on to the configured fallbacks and primary.
    #[arg(long = "allow-fallback")]
    allow_fallback: bool,
    /// Agent id; only `main` exists in this build.
    #[arg(long)]
    agent: Option<String>,
    /// Accepted for compatibility (chat delivery is not part of this build).
    #[arg(long, hide = true)]
    to: Option<String>,
    /// Take over the lock of another run.
    #[arg(long)]
    force: bool,
    /// List the pending tasks and stop.
    #[arg(long = "dry-run")]
    dry_run: bool,
}

/// Runs each anton call as one headless agent turn in a fresh session. Tools run without
/// asking (nobody is there to answer), confined by the workspace policy.
pub struct AgentRunner {
    pub rt: Arc<Runtime>,
    pub model: Option<String>,
    /// Whether the configured fallbacks may answer when the model fails.
    pub fallbacks: bool,
}

impl TaskAgent for AgentRunner {
    fn run(&self, call: AgentCall) -> AgentFuture<'_> {
        Box::pin(async move {
            let thinking = call
                .thinking
                .as_deref()
                .map(str::parse::<ThinkingLevel>)
                .transpose()
                .map_err(|e| AgentCallError::Failed(e.to_string()))?;
            let opts = SessionOptions {
                session_id: Some(call.session_id),
                workspace: call.workspace,
                model: self.model.clone(),
                thinking,
                approval: ApprovalMode::Always,
                approver: None,
                extra_system_prompt: Some(call.extra_system_prompt),
            };
            let input = UserInput::text(call.message);
            let run = run_headless_with(
                self.rt.clone(),
                opts,
                input,
                call.timeout,
                None,
                self.fallbacks,
            );
            match run.await {
                Ok(o) => Ok(AgentReply { text: o.text }),
                Err(HeadlessError::TimedOut(d)) => Err(AgentCallError::TimedOut(d)),
                Err(HeadlessError::Agent(e)) => Err(AgentCallError::Failed(e.to_string())),
            }
        })
    }
}

/// The `anton` section of the IdleHands config.
pub fn anton_config(rt: &Runtime) -> anyhow::Result<AntonConfig> {
    match rt.config.config.other.get("anton") {
        None => Ok(AntonConfig::default()),
        Some(v) => serde_json::from_value(v.clone()).with_context(|| {
            format!(
                "invalid `anton` section in {}",
                rt.paths.config_path.display()
            )
        }),
    }
}

/// Options for a run of `file` with the config's `anton` section and the agent timeout.
pub fn run_options(rt: &Runtime, file: PathBuf) -> anyhow::Result<RunOptions> {
    Ok(RunOptions {
        task_file: file,
        state_dir: rt.paths.state_dir.clone(),
        config: anton_config(rt)?,
        overrides: Overrides {
            agents_default_timeout_sec: rt.config.defaults().and_then(|d| d.timeout_seconds),
            ..Overrides::default()
        },
        ..RunOptions::default()
    })
}

fn state_dir() -> anyhow::Result<PathBuf> {
    Ok(Paths::resolve(&Env::from_process())?.state_dir)
}

/// How `anton run` prints: log lines on stdout, failures on stderr, and the progress
/// messages that the log lines do not already say.
pub fn cli_sink() -> MessageSink {
    Arc::new(|m| match m {
        AntonMessage::Log(s) => println!("{s}"),
        AntonMessage::Error(s) => eprintln!("{s}"),
        AntonMessage::Progress(ProgressEvent::TaskStart { .. } | ProgressEvent::Finish { .. }) => {}
        AntonMessage::Progress(p) => println!("{}", format_progress_message(&p)),
    })
}

pub fn run(args: AntonArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        AntonCommand::Status => {
            println!("{}", idlehands_anton::status_text(&state_dir()?));
            Ok(ExitCode::SUCCESS)
        }
        AntonCommand::Stop => {
            println!("{}", idlehands_anton::request_stop(&state_dir()?)?);
            Ok(ExitCode::SUCCESS)
        }
        AntonCommand::Run(a) => run_tasks(a),
    }
}

fn run_tasks(a: RunArgs) -> anyhow::Result<ExitCode> {
    if a.agent.as_deref().is_some_and(|x| x != "main") {
        anyhow::bail!("only the `main` agent exists in this build");
    }
    let rt = crate::agent_cmd::load_runtime()?;
    let mut opts = run_options(&rt, a.file.clone())?;
    if let Some(t) = a.task_timeout {
        opts.config.task_timeout_sec = Some(t);
    }
    opts.overrides.mode = a.mode;
    opts.overrides.thinking = a.thinking;
    // An explicit per-task limit wins over agents.defaults.timeoutSeconds.
    opts.overrides.timeout_sec = a.timeout.or(a.task_timeout);
    opts.workspace = a.workspace;
    opts.agent_id = a.agent;
    opts.to = a.to;
    opts.force = a.force;
    opts.dry_run = a.dry_run;
    if !opts.dry_run && !Path::new(&a.file).is_file() {
        anyhow::bail!("File not found: {}", a.file.display());
    }
    let agent = Arc::new(AgentRunner {
        rt: rt.clone(),
        fallbacks: a.model.is_none() || a.allow_fallback,
        model: a.model,
    });
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let outcome = tokio_rt.block_on(async {
        let r = idlehands_anton::run_anton(opts, agent, cli_sink()).await;
        rt.mcp.shutdown().await;
        r
    })?;
    Ok(match outcome {
        RunOutcome::DryRun { .. } | RunOutcome::NoPendingTasks => ExitCode::SUCCESS,
        RunOutcome::Finished(s) => ExitCode::from(exit_code(&s)),
    })
}

/// Exit status of a finished run when any task failed or was skipped.
pub const EXIT_TASKS_FAILED: u8 = 3;
/// Exit status when `anton stop` ended the run with tasks left and none failed.
pub const EXIT_STOPPED: u8 = 4;

/// 0 only when every pending task was completed: scripts must not read "exit 0" as "done".
fn exit_code(s: &RunSummary) -> u8 {
    if s.skipped > 0 {
        EXIT_TASKS_FAILED
    } else if s.completed < s.total {
        EXIT_STOPPED
    } else {
        0
    }
}
