//! `idlehands agent -m ...` (one headless turn) and bare `idlehands` (the terminal chat in
//! `crate::interactive`, or a line-based chat when stdin or stdout is not a terminal). Both
//! drive `idlehands_agent::Session`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use idlehands_agent::agent::{AgentError, AgentEvent, format_usd};
use idlehands_agent::tools::{ApprovalRequest, Approver, Decision};
use idlehands_agent::{
    ApprovalMode, CancellationToken, Env, Image, Runtime, Session, SessionOptions, ThinkingLevel,
    UserInput,
};
use serde_json::json;

/// Exit code when `--timeout` expires (as `timeout(1)` does).
const EXIT_TIMEOUT: u8 = 124;
const EXIT_INTERRUPTED: u8 = 130;

#[derive(clap::Args)]
pub struct AgentArgs {
    /// The message for the agent.
    #[arg(short = 'm', long = "message")]
    pub message: String,
    /// Resume this session (or start one under this id).
    #[arg(long = "session-id")]
    pub session_id: Option<String>,
    /// off, minimal, low, medium, high or xhigh (sent as reasoning_effort).
    #[arg(long)]
    pub thinking: Option<String>,
    /// Print one JSON result object on stdout at the end (`payloads` and `meta`, as upstream).
    #[arg(long, conflicts_with = "json_stream")]
    pub json: bool,
    /// Stream JSONL events on stdout instead of text.
    #[arg(long = "json-stream")]
    pub json_stream: bool,
    /// Seconds before the turn is aborted (default: agents.defaults.timeoutSeconds or 600).
    #[arg(long)]
    pub timeout: Option<u64>,
    /// A model ref or alias instead of the configured primary, e.g. litellm/gpt-4o. When it
    /// fails the run fails, unless --allow-fallback.
    #[arg(long)]
    pub model: Option<String>,
    /// With --model: when it fails, go on to the configured fallbacks and primary.
    #[arg(long = "allow-fallback")]
    pub allow_fallback: bool,
    /// never: refuse what the policy does not allow; on-request: ask on the terminal (refuse
    /// without one); always: allow everything.
    #[arg(long, default_value = "on-request")]
    pub approve: String,
    /// Workspace directory (default: the current directory).
    #[arg(long)]
    pub workspace: Option<PathBuf>,
    /// Attach an image (png, jpg, gif, webp); repeatable.
    #[arg(long = "image")]
    pub images: Vec<PathBuf>,
    /// Accepted for compatibility: this build always runs the agent in-process.
    #[arg(long, hide = true)]
    pub local: bool,
    /// Agent id; only `main` exists in this build.
    #[arg(long, hide = true)]
    pub agent: Option<String>,
}

/// Asks on the terminal. Approval prompts go to stderr so `--json` stdout stays clean.
struct TerminalApprover;

impl Approver for TerminalApprover {
    fn approve(&self, r: &ApprovalRequest) -> bool {
        self.decide(r) != Decision::Deny
    }

    fn decide(&self, r: &ApprovalRequest) -> Decision {
        let mut err = std::io::stderr();
        let choices = if r.can_remember {
            "[y] allow once / [a] allow always in this workspace / [N] deny"
        } else {
            "[y] allow once / [N] deny"
        };
        let _ = write!(err, "\nApprove {}? ({})\n{choices} ", r.action, r.reason);
        let _ = err.flush();
        let mut line = String::new();
        if std::io::stdin().lock().read_line(&mut line).is_err() {
            return Decision::Deny;
        }
        match line.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" => Decision::Once,
            "a" | "always" if r.can_remember => Decision::Always,
            _ => Decision::Deny,
        }
    }
}

/// Loads the config and credentials, and names (on stderr, once) the config keys nothing in
/// this build reads.
pub fn load_runtime() -> anyhow::Result<Arc<Runtime>> {
    let rt = Runtime::load(Env::from_process())?;
    for w in rt.config.unused_key_warnings() {
        eprintln!("warning: {w}");
    }
    Ok(Arc::new(rt))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn open_session(
    workspace: Option<PathBuf>,
    session_id: Option<String>,
    model: Option<String>,
    thinking: Option<&str>,
    approve: &str,
) -> anyhow::Result<Session> {
    let rt = load_runtime()?;
    let thinking = thinking
        .map(str::parse::<ThinkingLevel>)
        .transpose()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let approval: ApprovalMode = approve.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    let workspace = match workspace {
        Some(w) => w,
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    let approver: Option<Arc<dyn Approver>> = (approval == ApprovalMode::OnRequest
        && std::io::stdin().is_terminal())
    .then(|| Arc::new(TerminalApprover) as Arc<dyn Approver>);
    let session = Session::open(
        rt,
        SessionOptions {
            session_id,
            workspace,
            model,
            thinking,
            approval,
            approver,
            extra_system_prompt: None,
        },
    )?;
    if let Some(w) = session.thinking_warning() {
        eprintln!("warning: {w}");
    }
    Ok(session)
}

/// What stdout carries.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Output {
    /// The reply as it streams; tool activity on stderr.
    Text,
    /// One JSON result object at the end (`--json`).
    Result,
    /// One JSON event per line (`--json-stream`).
    Stream,
}

/// Prints events as they arrive: JSONL, or text on stdout with tool activity on stderr;
/// nothing in result mode.
fn spawn_printer(
    output: Output,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<AgentEvent>,
) -> tokio::task::JoinHandle<bool> {
    tokio::spawn(async move {
        let mut printed_text = false;
        while let Some(ev) = rx.recv().await {
            if output == Output::Result {
                continue;
            }
            if output == Output::Stream {
                if let Ok(line) = serde_json::to_string(&ev) {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{line}");
                    let _ = out.flush();
                }
                continue;
            }
            match &ev {
                AgentEvent::TextDelta { text } => {
                    printed_text = true;
                    let mut out = std::io::stdout().lock();
                    let _ = write!(out, "{text}");
                    let _ = out.flush();
                }
                AgentEvent::ReasoningDelta { text } if VERBOSE.load(Ordering::SeqCst) => {
                    eprint!("{text}");
                }
                AgentEvent::ToolCall {
                    name, arguments, ..
                } => {
                    if printed_text {
                        println!();
                        printed_text = false;
                    }
                    let args = arguments.to_string();
                    let args: String = if VERBOSE.load(Ordering::SeqCst) {
                        args
                    } else {
                        args.chars().take(160).collect()
                    };
                    eprintln!("[tool] {name} {args}");
                }
                AgentEvent::ToolResult { ok, summary, .. } => {
                    eprintln!("[{}] {summary}", if *ok { "ok" } else { "failed" });
                }
                AgentEvent::Fallback {
                    from, to, error, ..
                } => {
                    eprintln!("[fallback] {from} failed ({error}); trying {to}");
                }
                _ => {}
            }
        }
        printed_text
    })
}

enum TurnEnd {
    Done(String, String),
    Failed(AgentError),
    TimedOut(u64),
    Interrupted,
}

async fn drive_turn(
    session: &mut Session,
    input: UserInput,
    output: Output,
    timeout: Option<u64>,
) -> (TurnEnd, bool) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let printer = spawn_printer(output, rx);
    let cancel = CancellationToken::new();
    let timed_out = Arc::new(AtomicBool::new(false));
    let interrupted = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let cancel = cancel.clone();
        let timed_out = timed_out.clone();
        let interrupted = interrupted.clone();
        tokio::spawn(async move {
            let timer = async {
                match timeout {
                    Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = timer => timed_out.store(true, Ordering::SeqCst),
                _ = tokio::signal::ctrl_c() => interrupted.store(true, Ordering::SeqCst),
            }
            cancel.cancel();
        })
    };
    let result = session.run_turn(input, &tx, &cancel).await;
    watchdog.abort();
    let end = match result {
        Ok(o) => TurnEnd::Done(o.text, o.reasoning),
        Err(AgentError::Aborted) if timed_out.load(Ordering::SeqCst) => {
            TurnEnd::TimedOut(timeout.unwrap_or(0))
        }
        Err(AgentError::Aborted) if interrupted.load(Ordering::SeqCst) => TurnEnd::Interrupted,
        Err(e) => TurnEnd::Failed(e),
    };
    if output == Output::Stream {
        let extra = match &end {
            TurnEnd::TimedOut(s) => Some(("timeout", format!("timed out after {s}s"))),
            TurnEnd::Interrupted => Some(("aborted", "interrupted".to_string())),
            _ => None,
        };
        if let Some((kind, message)) = extra {
            let _ = tx.send(AgentEvent::Error {
                kind: kind.into(),
                message,
            });
        }
    }
    drop(tx);
    let printed = printer.await.unwrap_or(false);
    (end, printed)
}

pub fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    if args.agent.as_deref().is_some_and(|a| a != "main") {
        anyhow::bail!("only the `main` agent exists in this build");
    }
    let output = if args.json {
        Output::Result
    } else if args.json_stream {
        Output::Stream
    } else {
        Output::Text
    };
    let mut images = Vec::new();
    for p in &args.images {
        images.push(Image::from_file(p).with_context(|| format!("cannot attach {}", p.display()))?);
    }
    let explicit_model = args.model.is_some();
    let started = std::time::Instant::now();
    let rt = runtime()?;
    rt.block_on(async move {
        let opened = open_session(
            args.workspace,
            args.session_id,
            args.model,
            args.thinking.as_deref(),
            &args.approve,
        );
        let mut session = match opened {
            Ok(s) => s,
            // In the JSON modes a setup failure is JSON too, so consumers read one format.
            Err(e) if output != Output::Text => {
                let message = format!("{e:#}");
                let line = if output == Output::Stream {
                    serde_json::to_string(&AgentEvent::Error {
                        kind: "setup".into(),
                        message: message.clone(),
                    })
                } else {
                    serde_json::to_string_pretty(&json!({
                        "payloads": [],
                        "meta": {
                            "durationMs": elapsed_ms(started),
                            "aborted": false,
                            "stopReason": "error",
                            "error": {"kind": "setup", "message": message},
                        }
                    }))
                };
                println!("{}", line.unwrap_or_default());
                eprintln!("error: {e:#}");
                return Ok(ExitCode::FAILURE);
            }
            Err(e) => return Err(e),
        };
        // An explicit model is what the caller wants answered by; another model's answer
        // would be a silent substitution.
        session.set_fallbacks(!explicit_model || args.allow_fallback);
        let timeout = Some(
            args.timeout
                .unwrap_or_else(|| session.runtime().timeout_seconds()),
        );
        let input = UserInput {
            text: args.message,
            images,
        };
        let (end, printed) = drive_turn(&mut session, input, output, timeout).await;
        session.close().await;
        session.runtime().mcp.shutdown().await;
        if output == Output::Result {
            let r = result_object(&session, &end, elapsed_ms(started));
            println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
        }
        let quiet = output != Output::Text;
        Ok(match end {
            TurnEnd::Done(text, reasoning) => {
                if !quiet {
                    if printed {
                        println!();
                    } else if text.is_empty() && !reasoning.is_empty() {
                        println!("{reasoning}");
                    }
                    if session.totals.cost_nanos.is_some() || session.totals.total_tokens > 0 {
                        eprintln!(
                            "[usage] {} in / {} out{} | session {}",
                            session.totals.input + session.totals.cache_read,
                            session.totals.output,
                            session
                                .totals
                                .cost_nanos
                                .map(|c| format!(" | ${}", format_usd(c)))
                                .unwrap_or_default(),
                            session.id()
                        );
                    }
                }
                ExitCode::SUCCESS
            }
            TurnEnd::Failed(e) => {
                if !quiet {
                    eprintln!("error: {e}");
                    print_failed_usage(&session);
                    if explicit_model && !args.allow_fallback {
                        eprintln!(
                            "(the model named by --model failed; --allow-fallback lets the configured fallbacks answer instead)"
                        );
                    }
                }
                ExitCode::FAILURE
            }
            TurnEnd::TimedOut(s) => {
                if !quiet {
                    eprintln!("error: the turn timed out after {s}s (--timeout)");
                    print_failed_usage(&session);
                }
                ExitCode::from(EXIT_TIMEOUT)
            }
            TurnEnd::Interrupted => {
                if !quiet {
                    eprintln!("interrupted");
                }
                ExitCode::from(EXIT_INTERRUPTED)
            }
        })
    })
}

/// A turn that failed or timed out still spent tokens: say how many (the `--json` stream has
/// them in `turn_end`).
fn print_failed_usage(session: &Session) {
    let u = session.turn_usage();
    if u.cost_nanos.is_some() || u.total_tokens > 0 {
        eprintln!(
            "[usage] {} in / {} out{} (spent by the failed turn) | session {}",
            u.input + u.cache_read,
            u.output,
            u.cost_nanos
                .map(|c| format!(" | ${}", format_usd(c)))
                .unwrap_or_default(),
            session.id()
        );
    }
}

fn elapsed_ms(started: std::time::Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// `agent --json`: upstream's result shape, `{payloads: [{text}], meta: {durationMs,
/// agentMeta: {sessionId, provider, model, usage}, stopReason, aborted, error?}}`.
fn result_object(session: &Session, end: &TurnEnd, duration_ms: u64) -> serde_json::Value {
    let t = session.totals;
    let mut usage = json!({
        "input": t.input,
        "output": t.output,
        "cacheRead": t.cache_read,
        "cacheWrite": t.cache_write,
        "total": t.total_tokens,
    });
    if let Some(c) = t.cost_nanos {
        usage["costUsd"] = json!(format_usd(c));
    }
    let (payloads, stop_reason, aborted, error) = match end {
        TurnEnd::Done(text, _) if text.is_empty() => (json!([]), "stop", false, None),
        TurnEnd::Done(text, _) => (json!([{ "text": text }]), "stop", false, None),
        TurnEnd::Failed(e) => (
            json!([]),
            "error",
            false,
            Some(json!({"kind": e.kind(), "message": e.to_string()})),
        ),
        TurnEnd::TimedOut(s) => (
            json!([]),
            "aborted",
            true,
            Some(json!({"kind": "timeout", "message": format!("timed out after {s}s")})),
        ),
        TurnEnd::Interrupted => (
            json!([]),
            "aborted",
            true,
            Some(json!({"kind": "aborted", "message": "interrupted"})),
        ),
    };
    let mut meta = json!({
        "durationMs": duration_ms,
        "agentMeta": {
            "sessionId": session.id(),
            "provider": session.model.provider,
            "model": session.model.model,
            "usage": usage,
        },
        "stopReason": stop_reason,
        "aborted": aborted,
    });
    if let Some(e) = error {
        meta["error"] = e;
    }
    json!({ "payloads": payloads, "meta": meta })
}

/// `/status`, `/model [ref]`, `/think <level>`, `/compact [instructions]`, `/new`.
async fn slash_command(session: &mut Session, line: &str) -> anyhow::Result<String> {
    let (cmd, arg) = line.split_once(' ').unwrap_or((line, ""));
    let arg = arg.trim();
    match cmd {
        "/status" => {
            session.learn_context_window().await;
            let t = session.totals;
            Ok(format!(
                "model {} | thinking {} | session {} | context ~{} of {} ({}) | {} in / {} out / {} cached tokens{}",
                session.model,
                session.thinking,
                session.id(),
                session.context_tokens(),
                session
                    .context_window()
                    .map(|w| w.to_string())
                    .unwrap_or_else(|| "?".into()),
                session.context_window_source(),
                t.input,
                t.output,
                t.cache_read,
                t.cost_nanos
                    .map(|c| format!(" | ${}", format_usd(c)))
                    .unwrap_or_default()
            ))
        }
        "/compact" => {
            let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
            let instructions = (!arg.is_empty()).then_some(arg);
            Ok(
                match session
                    .compact(instructions, &tx, &CancellationToken::new())
                    .await?
                {
                    Some(o) => format!(
                        "compacted: ~{} -> ~{} tokens",
                        o.tokens_before, o.tokens_after
                    ),
                    None => "nothing to compact yet".to_string(),
                },
            )
        }
        "/model" if arg.is_empty() => Ok(crate::chat_extras::model_list(
            &crate::chat_extras::model_choices(session.runtime()),
            &session.model,
        )),
        "/model" => {
            let choices = crate::chat_extras::model_choices(session.runtime());
            let picked = crate::chat_extras::picked_model(arg, &choices);
            Ok(format!("model set to {}", session.set_model(&picked)?))
        }
        "/usage" => Ok(crate::chat_extras::usage_text(session)),
        "/verbose" => {
            let on = match arg {
                "on" => true,
                "off" => false,
                _ => !VERBOSE.load(Ordering::SeqCst),
            };
            VERBOSE.store(on, Ordering::SeqCst);
            Ok(if on {
                "verbose: tool arguments in full and reasoning shown".into()
            } else {
                "verbose off".into()
            })
        }
        "/dir" if arg.is_empty() => Ok(format!("workspace {}", session.workspace().display())),
        "/dir" => {
            let target = session.workspace().join(arg);
            if !target.is_dir() {
                anyhow::bail!("not a directory: {}", target.display());
            }
            // Same conversation, tools now rooted in the new directory.
            let id = session.id().to_string();
            reopen(session, Some(id), target).await?;
            Ok(format!("workspace {}", session.workspace().display()))
        }
        "/anton" => anton_line(session, arg).await,
        "/stop" => {
            let dir = &session.runtime().paths.state_dir;
            if idlehands_anton::read_state(dir).running {
                Ok(idlehands_anton::request_stop(dir)?)
            } else {
                Ok("nothing is running (Ctrl-C stops a running turn)".into())
            }
        }
        "/think" => {
            let level: ThinkingLevel = arg.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
            session.set_thinking(level)?;
            Ok(match session.thinking_warning() {
                Some(w) => format!("thinking {level} (warning: {w})"),
                None => format!("thinking {level}"),
            })
        }
        "/new" | "/reset" => {
            let ws = session.workspace().to_path_buf();
            reopen(session, None, ws).await?;
            Ok(format!("new session {}", session.id()))
        }
        "/session" => Ok(session_line(session)),
        "/sessions" => {
            let list = session.runtime().session_store().list()?;
            Ok(if list.is_empty() {
                "no sessions yet".to_string()
            } else {
                crate::sessions_cmd::table(&list, 20).trim_end().to_string()
            })
        }
        "/resume" if arg.is_empty() => Ok("usage: /resume <id> (/sessions lists them)".into()),
        "/resume" => {
            let Some(id) = session.runtime().session_store().find(arg)? else {
                anyhow::bail!("no session \"{arg}\" (/sessions lists them)");
            };
            let ws = session.workspace().to_path_buf();
            reopen(session, Some(id), ws).await?;
            Ok(format!("resumed {}", session_line(session)))
        }
        "/help" | "/?" => Ok(LINE_HELP.to_string()),
        other => Ok(format!("unknown command {other}; /help lists the commands")),
    }
}

/// `/anton <file>|status|stop` in the line chat: a run goes in the foreground, its progress
/// printed as it comes; Ctrl-C abandons it.
async fn anton_line(session: &Session, arg: &str) -> anyhow::Result<String> {
    let rt = session.runtime().clone();
    let dir = rt.paths.state_dir.clone();
    match arg {
        "" | "status" => return Ok(idlehands_anton::status_text(&dir)),
        "stop" => return Ok(idlehands_anton::request_stop(&dir)?),
        _ => {}
    }
    let file = session.workspace().join(arg);
    if !file.is_file() {
        anyhow::bail!("File not found: {}", file.display());
    }
    let mut opts = crate::anton_cmd::run_options(&rt, file)?;
    opts.workspace = Some(session.workspace().to_path_buf());
    let agent = Arc::new(crate::anton_cmd::AgentRunner {
        rt: rt.clone(),
        model: Some(session.model.to_string()),
        fallbacks: true,
    });
    let run = idlehands_anton::run_anton(opts, agent, crate::anton_cmd::cli_sink());
    tokio::select! {
        r = run => {
            r?;
            Ok("anton done".into())
        }
        _ = tokio::signal::ctrl_c() => Ok("anton abandoned (Ctrl-C)".into()),
    }
}

/// `/verbose`: tool arguments in full and reasoning shown in the line chat.
static VERBOSE: AtomicBool = AtomicBool::new(false);

const LINE_HELP: &str = "\
!<command>            run a shell command in the workspace (for you; the model does not see it)
/status               model, session, context, tokens and cost
/usage                tokens and cost of this session
/model [n|ref]        list the configured models, or switch (by number or ref)
/verbose [on|off]     show tool arguments in full and the reasoning
/dir [path]           show or change the workspace
/anton <file>|status|stop   run a task file (Ctrl-C abandons it), or check on / stop a run
/stop                 ask a running anton to stop
/think <level>        off, minimal, low, medium, high or xhigh
/compact [instr]      summarise older turns now
/new                  start a fresh session
/session              this session's id, title and file
/sessions             the stored sessions, newest first
/resume <id>          continue a stored session (an id or a unique prefix)
/exit                 quit (also end of input)";

/// `session <id> (<n> messages) | <file> | <title>`.
pub fn session_line(session: &Session) -> String {
    let title = session
        .messages()
        .iter()
        .find_map(|m| match m {
            idlehands_agent::message::AgentMessage::User { content, .. } => {
                content.iter().find_map(|b| match b {
                    idlehands_agent::message::ContentBlock::Text { text } => {
                        Some(idlehands_agent::session::title_of(text))
                    }
                    _ => None,
                })
            }
            _ => None,
        })
        .unwrap_or_else(|| "(no prompt yet)".into());
    format!(
        "session {} ({} messages) | {} | {title}",
        session.id(),
        session.messages().len(),
        session.transcript_path().display()
    )
}

/// Replaces `session` with a fresh one (`id` `None`) or the stored session `id`, keeping the
/// model and thinking level.
async fn reopen(
    session: &mut Session,
    id: Option<String>,
    workspace: PathBuf,
) -> anyhow::Result<()> {
    let fresh = Session::open(
        session.runtime().clone(),
        SessionOptions {
            session_id: id,
            workspace,
            model: Some(session.model.to_string()),
            thinking: Some(session.thinking),
            approval: ApprovalMode::OnRequest,
            approver: std::io::stdin()
                .is_terminal()
                .then(|| Arc::new(TerminalApprover) as Arc<dyn Approver>),
            extra_system_prompt: None,
        },
    )?;
    session.close().await;
    *session = fresh;
    Ok(())
}

/// Bare `idlehands`: the inline terminal chat on a terminal, else (stdin or stdout piped) a
/// line-based chat.
pub fn interactive(resume: crate::sessions_cmd::Resume) -> anyhow::Result<ExitCode> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let session_id = crate::sessions_cmd::resolve(&resume, &cwd)?;
    if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
        return crate::interactive::run(session_id);
    }
    line_chat(session_id)
}

/// The line-based chat: each line is a turn; Ctrl-C stops the running turn; `/exit` or end
/// of input quits.
fn line_chat(session_id: Option<String>) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let result = rt.block_on(async move {
        let mut session = open_session(None, session_id, None, None, "on-request")?;
        eprintln!(
            "IdleHands ({}) in {} - session {}{}. Type a message; /help for commands, /exit to quit.",
            session.model,
            session.workspace().display(),
            session.id(),
            if session.resumed() {
                format!(" (resumed, {} messages)", session.messages().len())
            } else {
                String::new()
            }
        );
        loop {
            eprint!("> ");
            let _ = std::io::stderr().flush();
            // Read off the runtime so Ctrl-C at the prompt can end the chat.
            let read = tokio::task::spawn_blocking(|| {
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .map(|n| (n, line))
            });
            let line = tokio::select! {
                r = read => match r.context("reading input failed")?? {
                    (0, _) => break,
                    (_, line) => line,
                },
                _ = tokio::signal::ctrl_c() => {
                    eprintln!();
                    break;
                }
            };
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if matches!(line, "/exit" | "/quit") {
                break;
            }
            if let Some(command) = line.strip_prefix('!') {
                let ws = session.workspace().to_path_buf();
                let out = tokio::select! {
                    o = crate::chat_extras::shell(command.trim(), &ws) => o,
                    _ = tokio::signal::ctrl_c() => "(interrupted)".into(),
                };
                println!("{out}");
                continue;
            }
            if line.starts_with('/') {
                match slash_command(&mut session, line).await {
                    Ok(msg) => eprintln!("{msg}"),
                    Err(e) => eprintln!("error: {e:#}"),
                }
                continue;
            }
            let (end, printed) = drive_turn(&mut session, UserInput::text(line), Output::Text, None).await;
            if printed {
                println!();
            }
            match end {
                TurnEnd::Done(text, reasoning) if text.is_empty() && !printed => {
                    println!("{reasoning}");
                }
                TurnEnd::Done(..) => {}
                TurnEnd::Failed(e) => eprintln!("error: {e}"),
                TurnEnd::TimedOut(_) | TurnEnd::Interrupted => eprintln!("(stopped)"),
            }
        }
        session.close().await;
        session.runtime().mcp.shutdown().await;
        Ok(ExitCode::SUCCESS)
    });
    // A prompt read may still be blocked on stdin; do not wait for it.
    rt.shutdown_background();
    result
}
