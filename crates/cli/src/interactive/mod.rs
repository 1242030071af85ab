//! Bare `idlehands` on a terminal: an inline chat (not full-screen, so everything stays in
//! the scrollback). Answers stream in as they arrive, reasoning dimmed (or folded with
//! `/reasoning`), tool calls as `⚙ name(args) → ok: summary`, a spinner while waiting. Ctrl-C
//! (or Esc) stops the running turn; Ctrl-C twice at an empty prompt, or Ctrl-D, exits. Up and
//! Down recall history from `<stateDir>/history`. `/anton` runs in the background and its
//! progress is printed as it comes.
//!
//! Everything that happens (keys, agent events, anton progress, approval questions, the end
//! of a turn, spinner ticks) arrives as one [`UiEvent`] stream handled by one loop, so no
//! state is shared between tasks. The session moves into the task running a turn and comes
//! back with its result.

mod commands;
mod editor;
mod markdown;
mod screen;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use idlehands_agent::agent::{AgentError, AgentEvent, CompactionOutcome};
use idlehands_agent::tools::{ApprovalRequest, Approver, Decision};
use idlehands_agent::{
    ApprovalMode, CancellationToken, Runtime, Session, SessionOptions, TurnOutcome, UserInput,
};
use idlehands_anton::{AntonError, AntonMessage, RunOutcome};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

use editor::Editor;
use screen::{CYAN, DIM, GREEN, RED, RESET, Screen};

/// What the loop reacts to.
enum UiEvent {
    Input(Event),
    InputClosed,
    Agent(AgentEvent),
    JobDone(Box<Session>, JobResult),
    Anton(AntonMessage),
    AntonDone(Result<RunOutcome, AntonError>),
    Approval(ApprovalRequest, std::sync::mpsc::Sender<Decision>),
    Tick,
    /// A `!cmd` finished: the command and its output.
    Shell(String, String),
}

enum JobResult {
    Turn(Result<TurnOutcome, AgentError>),
    Compact(Result<Option<CompactionOutcome>, AgentError>),
}

/// A turn or a compaction in flight.
struct Job {
    cancel: CancellationToken,
    started: Instant,
    /// Waiting for the model or a tool: the spinner shows.
    waiting: bool,
    label: &'static str,
    /// Reasoning is being streamed (dimmed), or was folded (chars so far).
    in_reasoning: bool,
    folded_reasoning: usize,
}

/// Asks through the loop; called off the async runtime, so it may block.
struct UiApprover {
    tx: UnboundedSender<UiEvent>,
}

impl Approver for UiApprover {
    fn approve(&self, r: &ApprovalRequest) -> bool {
        self.decide(r) != Decision::Deny
    }

    fn decide(&self, r: &ApprovalRequest) -> Decision {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.tx.send(UiEvent::Approval(r.clone(), tx)).is_err() {
            return Decision::Deny;
        }
        rx.recv().unwrap_or(Decision::Deny)
    }
}

/// Restores the terminal however the chat ends.
struct RawMode;

impl RawMode {
    fn enable() -> anyhow::Result<Self> {
        crossterm::terminal::enable_raw_mode().context("cannot put the terminal in raw mode")?;
        let _ = crossterm::execute!(std::io::stdout(), crossterm::event::EnableBracketedPaste);
        Ok(Self)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = crossterm::execute!(std::io::stdout(), crossterm::event::DisableBracketedPaste);
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

pub struct App {
    rt: Arc<Runtime>,
    tx: UnboundedSender<UiEvent>,
    screen: Screen,
    editor: Editor,
    /// `None` while a job holds it.
    session: Option<Session>,
    /// What `/status` shows while a job holds the session.
    session_id: String,
    job: Option<Job>,
    anton_running: bool,
    approval: Option<(std::sync::mpsc::Sender<Decision>, bool)>,
    /// Ctrl-C was pressed once at an empty prompt.
    exit_armed: bool,
    show_reasoning: bool,
    /// `/verbose`: tool calls with their arguments in full.
    pub(super) verbose: bool,
    /// The answer being streamed, rendered as markdown a line at a time.
    md: markdown::MarkdownStream,
    /// Quitting was asked for once while anton ran.
    quit_warned: bool,
    /// Lines entered while a job ran.
    queued: std::collections::VecDeque<String>,
    quit: bool,
}

pub fn run(session_id: Option<String>) -> anyhow::Result<ExitCode> {
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = tokio_rt.block_on(main_loop(session_id));
    // The key reader thread may still be blocked on the terminal; do not wait for it.
    tokio_rt.shutdown_background();
    result
}

async fn main_loop(session_id: Option<String>) -> anyhow::Result<ExitCode> {
    let rt = crate::agent_cmd::load_runtime()?;
    let workspace = std::env::current_dir().context("cannot read the current directory")?;
    let (tx, mut rx) = unbounded_channel::<UiEvent>();
    let session = open_session(&rt, &tx, workspace, session_id, None, None)?;
    let history = rt.paths.state_dir.join("history");
    let _raw = RawMode::enable()?;
    spawn_key_reader(tx.clone());
    spawn_ticker(tx.clone());
    let mut app = App {
        session_id: session.id().to_string(),
        rt,
        tx,
        screen: Screen::default(),
        editor: Editor::with_history_file(history),
        session: Some(session),
        job: None,
        anton_running: false,
        approval: None,
        exit_armed: false,
        show_reasoning: true,
        verbose: false,
        md: markdown::MarkdownStream::default(),
        queued: std::collections::VecDeque::new(),
        quit_warned: false,
        quit: false,
    };
    app.banner();
    app.redraw_prompt();
    while let Some(ev) = rx.recv().await {
        app.handle(ev).await;
        if app.quit {
            break;
        }
    }
    if let Some(j) = &app.job {
        j.cancel.cancel();
    }
    if app.anton_running {
        // The run dies with this process; say so instead of leaving "running" behind.
        let dir = &app.rt.paths.state_dir;
        let mut st = idlehands_anton::read_state(dir);
        st.running = false;
        st.last_summary = Some("Anton was stopped when the chat exited.".into());
        let _ = idlehands_anton::write_state(dir, &st);
    }
    if let Some(s) = &app.session {
        s.close().await;
    }
    app.rt.mcp.shutdown().await;
    app.screen.end_line();
    Ok(ExitCode::SUCCESS)
}

fn open_session(
    rt: &Arc<Runtime>,
    tx: &UnboundedSender<UiEvent>,
    workspace: PathBuf,
    session_id: Option<String>,
    model: Option<String>,
    thinking: Option<idlehands_agent::ThinkingLevel>,
) -> anyhow::Result<Session> {
    Ok(Session::open(
        rt.clone(),
        SessionOptions {
            session_id,
            workspace,
            model,
            thinking,
            approval: ApprovalMode::OnRequest,
            approver: Some(Arc::new(UiApprover { tx: tx.clone() })),
            extra_system_prompt: None,
        },
    )?)
}

/// Terminal events, read on a thread of their own (crossterm's reader blocks).
fn spawn_key_reader(tx: UnboundedSender<UiEvent>) {
    std::thread::spawn(move || {
        loop {
            match crossterm::event::read() {
                Ok(ev) => {
                    if tx.send(UiEvent::Input(ev)).is_err() {
                        return;
                    }
                }
                Err(_) => {
                    let _ = tx.send(UiEvent::InputClosed);
                    return;
                }
            }
        }
    });
}

fn spawn_ticker(tx: UnboundedSender<UiEvent>) {
    tokio::spawn(async move {
        let mut t = tokio::time::interval(Duration::from_millis(120));
        loop {
            t.tick().await;
            if tx.send(UiEvent::Tick).is_err() {
                return;
            }
        }
    });
}

impl App {
    fn banner(&mut self) {
        if let Some(s) = &self.session {
            self.screen.line(&format!(
                "{CYAN}IdleHands{RESET} · {} · {}{}",
                s.model,
                s.workspace().display(),
                if s.resumed() { " (resumed)" } else { "" }
            ));
            if s.resumed() {
                let line = super::agent_cmd::session_line(s);
                self.screen.dim_line(&line);
            }
        }
        self.screen
            .dim_line("Type a message, or /help for commands. Ctrl-C stops a turn; Ctrl-D exits.");
    }

    /// Exit, unless an anton run would die with the chat and nobody was warned yet.
    pub(super) fn request_quit(&mut self) {
        if self.anton_running && !self.quit_warned {
            self.quit_warned = true;
            self.screen.line(
                "Anton is still running and stops if you exit. /anton stop ends it after the current task; exit again to abandon it.",
            );
            return;
        }
        self.quit = true;
    }

    fn redraw_prompt(&mut self) {
        if self.job.is_none() && self.approval.is_none() {
            self.screen
                .prompt(self.editor.chars(), self.editor.cursor());
        }
    }

    async fn handle(&mut self, ev: UiEvent) {
        match ev {
            UiEvent::Input(Event::Key(k)) if k.kind != KeyEventKind::Release => self.key(k).await,
            UiEvent::Input(Event::Paste(s)) => {
                if self.job.is_none() && self.approval.is_none() {
                    self.editor.insert(&s);
                    self.redraw_prompt();
                }
            }
            UiEvent::Input(Event::Resize(..)) => self.redraw_prompt(),
            UiEvent::Input(_) => {}
            UiEvent::InputClosed => self.quit = true,
            UiEvent::Shell(command, output) => {
                self.screen.dim_line(&format!("$ {command}"));
                self.screen.line(&output);
                self.redraw_prompt();
            }
            UiEvent::Tick => {
                if let Some(j) = &self.job
                    && j.waiting
                    && self.approval.is_none()
                {
                    let secs = j.started.elapsed().as_secs();
                    self.screen.spinner(j.label, secs);
                }
            }
            UiEvent::Agent(e) => self.agent_event(e),
            UiEvent::JobDone(session, result) => {
                self.job_done(*session, result);
                while self.job.is_none()
                    && !self.quit
                    && let Some(line) = self.queued.pop_front()
                {
                    self.enter(line).await;
                }
            }
            UiEvent::Anton(m) => {
                match m {
                    AntonMessage::Progress(p) => {
                        let text = idlehands_anton::format_progress_message(&p);
                        self.screen.line(&markdown::render(&text));
                    }
                    AntonMessage::Error(e) => self.screen.dim_line(&e),
                    // The progress messages say the same for chat.
                    AntonMessage::Log(_) => {}
                }
                self.redraw_prompt();
            }
            UiEvent::AntonDone(r) => {
                self.anton_running = false;
                match r {
                    Ok(RunOutcome::Finished(_)) => {}
                    Ok(RunOutcome::NoPendingTasks) => self.screen.line("No pending tasks."),
                    Ok(RunOutcome::DryRun { .. }) => {}
                    Err(e) => self
                        .screen
                        .line(&markdown::render(&format!("❌ **Anton crashed**: {e}"))),
                }
                self.redraw_prompt();
            }
            UiEvent::Approval(r, reply) => {
                if let Some((old, _)) = self.approval.take() {
                    let _ = old.send(Decision::Deny);
                }
                let choices = if r.can_remember {
                    "[y] once / [a] always here / [N] deny"
                } else {
                    "[y] once / [N] deny"
                };
                self.screen.line(&format!(
                    "{CYAN}?{RESET} Approve {}? {DIM}({}){RESET}  {choices}",
                    r.action, r.reason
                ));
                self.approval = Some((reply, r.can_remember));
            }
        }
    }

    async fn key(&mut self, k: KeyEvent) {
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        if let Some((reply, can_remember)) = self.approval.take() {
            let decision = match k.code {
                KeyCode::Char('y' | 'Y') if !ctrl => Decision::Once,
                KeyCode::Char('a' | 'A') if !ctrl && can_remember => Decision::Always,
                _ => Decision::Deny,
            };
            let _ = reply.send(decision);
            self.screen.dim_line(match decision {
                Decision::Once => "approved",
                Decision::Always => "approved (always, in this workspace)",
                Decision::Deny => "refused",
            });
            self.redraw_prompt();
            return;
        }
        if let Some(j) = &self.job {
            // Typing goes on unseen (type-ahead, shown at the next prompt); `/stop` + Enter
            // stops the turn like Ctrl-C.
            match (k.code, ctrl) {
                (KeyCode::Char('c'), true) | (KeyCode::Esc, _) => j.cancel.cancel(),
                (KeyCode::Enter, _) if self.editor.text().trim() == "/stop" => {
                    self.editor.clear();
                    j.cancel.cancel();
                }
                // Submitted ahead: runs once the job is over.
                (KeyCode::Enter, _) => {
                    let line = self.editor.submit();
                    if !line.trim().is_empty() {
                        self.queued.push_back(line);
                    }
                }
                (KeyCode::Backspace, _) => self.editor.backspace(),
                (KeyCode::Char(c), false) => self.editor.insert(&c.to_string()),
                _ => {}
            }
            return;
        }
        if !(ctrl && k.code == KeyCode::Char('c')) {
            self.exit_armed = false;
        }
        match (k.code, ctrl) {
            (KeyCode::Char('c'), true) => {
                if !self.editor.is_empty() {
                    self.editor.clear();
                } else if self.exit_armed {
                    self.request_quit();
                    return;
                } else {
                    self.exit_armed = true;
                    self.screen.dim_line("(Ctrl-C again or Ctrl-D to exit)");
                }
            }
            (KeyCode::Char('d'), true) => {
                if self.editor.is_empty() {
                    self.request_quit();
                    return;
                }
                self.editor.delete();
            }
            (KeyCode::Char('a'), true) | (KeyCode::Home, _) => self.editor.home(),
            (KeyCode::Char('e'), true) | (KeyCode::End, _) => self.editor.end(),
            (KeyCode::Char('u'), true) => self.editor.kill_to_start(),
            (KeyCode::Char('k'), true) => self.editor.kill_to_end(),
            (KeyCode::Char('w'), true) => self.editor.kill_word_back(),
            (KeyCode::Char('b'), true) | (KeyCode::Left, _) => self.editor.left(),
            (KeyCode::Char('f'), true) | (KeyCode::Right, _) => self.editor.right(),
            (KeyCode::Char('p'), true) | (KeyCode::Up, _) => self.editor.up(),
            (KeyCode::Char('n'), true) | (KeyCode::Down, _) => self.editor.down(),
            (KeyCode::Backspace, _) => self.editor.backspace(),
            (KeyCode::Delete, _) => self.editor.delete(),
            (KeyCode::Enter, _) => {
                let line = self.editor.submit();
                self.enter(line).await;
            }
            (KeyCode::Tab, _) => self.editor.insert("    "),
            (KeyCode::Char(c), false) => self.editor.insert(&c.to_string()),
            _ => {}
        }
        self.redraw_prompt();
    }

    /// Runs a submitted line, leaving it in the scrollback after the prompt.
    async fn enter(&mut self, line: String) {
        // Anything typed ahead stays in the editor for the next prompt.
        self.screen
            .prompt(&line.chars().collect::<Vec<_>>(), line.chars().count());
        self.screen.commit_prompt();
        self.submit(line.trim()).await;
        if self.job.is_none() {
            self.redraw_prompt();
        }
    }

    async fn submit(&mut self, line: &str) {
        if line.is_empty() {
            return;
        }
        if line.starts_with('/') {
            self.command(line).await;
            return;
        }
        if let Some(command) = line.strip_prefix('!') {
            // Off the loop, so the chat stays responsive while it runs.
            let command = command.trim().to_string();
            let cwd = self.rt.paths.state_dir.clone();
            let cwd = self
                .session
                .as_ref()
                .map(|s| s.workspace().to_path_buf())
                .unwrap_or(cwd);
            let tx = self.tx.clone();
            tokio::spawn(async move {
                let out = crate::chat_extras::shell(&command, &cwd).await;
                let _ = tx.send(UiEvent::Shell(command, out));
            });
            return;
        }
        self.start_turn(UserInput::text(line));
    }

    fn start_turn(&mut self, input: UserInput) {
        let Some(mut session) = self.session.take() else {
            return;
        };
        let cancel = self.begin_job("Thinking…");
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let (etx, forwarded) = forward_events(tx.clone());
            let r = session.run_turn(input, &etx, &cancel).await;
            drop(etx);
            let _ = forwarded.await;
            let _ = tx.send(UiEvent::JobDone(Box::new(session), JobResult::Turn(r)));
        });
    }

    fn start_compaction(&mut self, instructions: Option<String>) {
        let Some(mut session) = self.session.take() else {
            return;
        };
        let cancel = self.begin_job("Compacting…");
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let (etx, forwarded) = forward_events(tx.clone());
            let r = session
                .compact(instructions.as_deref(), &etx, &cancel)
                .await;
            drop(etx);
            let _ = forwarded.await;
            let _ = tx.send(UiEvent::JobDone(Box::new(session), JobResult::Compact(r)));
        });
    }

    fn begin_job(&mut self, label: &'static str) -> CancellationToken {
        let cancel = CancellationToken::new();
        self.job = Some(Job {
            cancel: cancel.clone(),
            started: Instant::now(),
            waiting: true,
            label,
            in_reasoning: false,
            folded_reasoning: 0,
        });
        self.screen.spinner(label, 0);
        cancel
    }

    fn end_reasoning(&mut self) {
        let Some(j) = &mut self.job else { return };
        if j.in_reasoning {
            j.in_reasoning = false;
            self.screen.stream(RESET);
            self.screen.end_line();
        }
        if j.folded_reasoning > 0 {
            let n = std::mem::take(&mut j.folded_reasoning);
            self.screen
                .dim_line(&format!("💭 reasoned ({n} chars; /reasoning to show)"));
        }
    }

    fn agent_event(&mut self, e: AgentEvent) {
        let show_reasoning = self.show_reasoning;
        let verbose = self.verbose;
        let Some(j) = &mut self.job else { return };
        match e {
            AgentEvent::ReasoningDelta { text } => {
                j.waiting = false;
                if show_reasoning {
                    if !j.in_reasoning {
                        j.in_reasoning = true;
                        self.screen.end_line();
                        self.screen.stream(DIM);
                    }
                    self.screen.stream(&text);
                } else {
                    j.folded_reasoning += text.chars().count();
                }
            }
            AgentEvent::TextDelta { text } => {
                j.waiting = false;
                self.end_reasoning();
                let shown = self.md.push(&text);
                self.screen.stream(&shown);
            }
            AgentEvent::ToolCall {
                name, arguments, ..
            } => {
                j.waiting = false;
                self.flush_markdown();
                self.end_reasoning();
                self.screen.end_line();
                let shown = if verbose {
                    format!("{name} {arguments}")
                } else {
                    screen::tool_call_summary(&name, &arguments)
                };
                self.screen.stream(&format!("{CYAN}⚙{RESET} {shown}"));
            }
            AgentEvent::ToolResult { ok, summary, .. } => {
                let summary = if verbose {
                    summary.clone()
                } else {
                    screen::truncate(summary.lines().next().unwrap_or(""), 100)
                };
                let (color, word) = if ok { (GREEN, "ok") } else { (RED, "err") };
                self.screen
                    .stream(&format!(" {DIM}→{RESET} {color}{word}{RESET}: {summary}\n"));
                j.waiting = true;
            }
            AgentEvent::Fallback {
                from, to, error, ..
            } => {
                self.flush_markdown();
                self.end_reasoning();
                self.screen.dim_line(&format!(
                    "↪ {from} failed ({}); trying {to}",
                    screen::truncate(&error, 120)
                ));
            }
            AgentEvent::Compaction {
                reason,
                tokens_before,
                tokens_after,
            } => {
                self.end_reasoning();
                self.screen.dim_line(&format!(
                    "🗜 Compacted the conversation ({reason}): ~{tokens_before} → ~{tokens_after} tokens"
                ));
            }
            AgentEvent::TurnStart { .. }
            | AgentEvent::Usage { .. }
            | AgentEvent::TurnEnd { .. }
            | AgentEvent::Error { .. } => {}
        }
    }

    /// Prints what is left of a streamed answer (a last line without its newline).
    fn flush_markdown(&mut self) {
        let rest = self.md.finish();
        self.screen.stream(&rest);
    }

    fn job_done(&mut self, session: Session, result: JobResult) {
        self.flush_markdown();
        self.end_reasoning();
        self.screen.end_line();
        self.job = None;
        match result {
            JobResult::Turn(Ok(o)) => {
                if o.text.is_empty() && !o.reasoning.is_empty() && !self.show_reasoning {
                    self.screen.dim_line(&o.reasoning);
                }
                let u = o.usage;
                if u.total_tokens > 0 || u.cost_nanos.is_some() {
                    let cost = u
                        .cost_nanos
                        .map(|c| format!(" · ${}", idlehands_agent::agent::format_usd(c)))
                        .unwrap_or_default();
                    self.screen.dim_line(&format!(
                        "↳ {} in / {} out{cost}",
                        u.input + u.cache_read,
                        u.output
                    ));
                }
            }
            JobResult::Turn(Err(AgentError::Aborted))
            | JobResult::Compact(Err(AgentError::Aborted)) => self.screen.dim_line("(stopped)"),
            JobResult::Turn(Err(e)) => self.screen.error_line(&format!("error: {e}")),
            JobResult::Compact(Ok(Some(_))) => {}
            JobResult::Compact(Ok(None)) => {
                self.screen.dim_line("Nothing to compact yet.");
            }
            JobResult::Compact(Err(e)) => self.screen.error_line(&format!("error: {e}")),
        }
        self.session_id = session.id().to_string();
        self.session = Some(session);
        self.redraw_prompt();
    }
}

/// A per-job event channel forwarded into the loop; the handle ends once the job drops its
/// sender, so the loop sees every event before the job's end.
fn forward_events(
    tx: UnboundedSender<UiEvent>,
) -> (UnboundedSender<AgentEvent>, tokio::task::JoinHandle<()>) {
    let (etx, mut erx) = unbounded_channel();
    let h = tokio::spawn(async move {
        while let Some(e) = erx.recv().await {
            let _ = tx.send(UiEvent::Agent(e));
        }
    });
    (etx, h)
}
