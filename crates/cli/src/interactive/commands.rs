//! Slash commands: `/model /think /new /compact /status /stop /dir /anton /reasoning /help
//! /exit`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use idlehands_agent::ThinkingLevel;
use idlehands_agent::agent::format_usd;
use idlehands_anton::channel_sink;

use super::{App, UiEvent, open_session};
use crate::anton_cmd::{AgentRunner, run_options};

const HELP: &str = "\
!<command>            run a shell command in the workspace (for you; the model does not see it)
/model [n|ref]        list the configured models, or switch (by number or ref)
/usage                tokens and cost of this session
/verbose              show tool calls with their arguments in full (again: back to summaries)
/think [level]        show or set thinking (off, minimal, low, medium, high, xhigh)
/new                  start a fresh session
/session              this session's id, title and file
/sessions             the stored sessions, newest first
/resume <id>          continue a stored session (an id or a unique prefix)
/compact [instr]      summarise older turns now (optional instructions for the summary)
/status               model, session, tokens and cost so far
/stop                 stop the running turn or /anton (Ctrl-C or Esc stop a turn too)
/dir [path]           show or change the workspace
/anton <file>|status|stop   run a task file in the background, or check on it
/reasoning            show or fold the model's reasoning
/exit                 quit (also Ctrl-D)";

impl App {
    pub(super) async fn command(&mut self, line: &str) {
        let (cmd, arg) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let arg = arg.trim();
        match cmd {
            "/exit" | "/quit" => self.request_quit(),
            "/help" | "/?" => self.screen.line(HELP),
            "/status" => self.status(),
            "/model" => self.model(arg),
            "/usage" => match &self.session {
                Some(s) => {
                    let text = crate::chat_extras::usage_text(s);
                    self.screen.line(&text);
                }
                None => self.screen.line("Busy; /usage after the turn."),
            },
            "/verbose" => {
                self.verbose = !self.verbose;
                self.screen.line(if self.verbose {
                    "Verbose: tool calls with their arguments in full."
                } else {
                    "Verbose off: tool calls summarised."
                });
            }
            "/think" => self.think(arg),
            "/new" | "/reset" => self.new_session().await,
            "/session" => match &self.session {
                Some(s) => {
                    let line = crate::agent_cmd::session_line(s);
                    self.screen.line(&line);
                }
                None => self
                    .screen
                    .line(&format!("Session: {} (busy)", self.session_id)),
            },
            "/sessions" => match self.rt.session_store().list() {
                Ok(l) if l.is_empty() => self.screen.line("No sessions yet."),
                Ok(l) => self
                    .screen
                    .line(crate::sessions_cmd::table(&l, 20).trim_end()),
                Err(e) => self.screen.error_line(&format!("error: {e}")),
            },
            "/resume" => self.resume(arg).await,
            "/dir" => self.dir(arg).await,
            "/compact" => {
                let instr = (!arg.is_empty()).then(|| arg.to_string());
                self.start_compaction(instr);
            }
            "/stop" => self.stop(),
            "/anton" => self.anton(arg),
            "/reasoning" => {
                self.show_reasoning = !self.show_reasoning;
                self.screen.line(if self.show_reasoning {
                    "Reasoning is shown (dimmed)."
                } else {
                    "Reasoning is folded to one line."
                });
            }
            other => self.screen.line(&format!(
                "Unknown command {other}. Type /help for the list."
            )),
        }
    }

    fn workspace(&self) -> Option<PathBuf> {
        self.session.as_ref().map(|s| s.workspace().to_path_buf())
    }

    fn status(&mut self) {
        let anton = idlehands_anton::status_text(&self.rt.paths.state_dir);
        let Some(s) = &self.session else {
            self.screen
                .line(&format!("Session: {} (busy)", self.session_id));
            return;
        };
        let t = s.totals;
        let context = match s.context_window() {
            Some(w) => format!(
                "~{} of {w} (window from {})",
                s.context_tokens(),
                s.context_window_source()
            ),
            None => format!("~{}", s.context_tokens()),
        };
        let cost = match t.cost_nanos {
            Some(c) => format!("${}", format_usd(c)),
            None => "unknown (no model prices configured and no cost from the proxy)".into(),
        };
        let text = format!(
            "Model: {} (thinking {})\nSession: {}\nWorkspace: {}\nTokens: {} in / {} out (cached {}) · context {context}\nCost: {cost}\n{anton}",
            s.model,
            s.thinking,
            s.id(),
            s.workspace().display(),
            t.input + t.cache_read,
            t.output,
            t.cache_read,
        );
        self.screen.line(&text);
    }

    fn model(&mut self, arg: &str) {
        let Some(s) = &mut self.session else { return };
        let choices = crate::chat_extras::model_choices(&self.rt);
        if arg.is_empty() {
            let text = crate::chat_extras::model_list(&choices, &s.model);
            self.screen.line(&text);
            return;
        }
        match s.set_model(&crate::chat_extras::picked_model(arg, &choices)) {
            Ok(r) => self.screen.line(&format!("Model set to {r}.")),
            Err(e) => self.screen.error_line(&format!("error: {e}")),
        }
    }

    fn think(&mut self, arg: &str) {
        let Some(s) = &mut self.session else { return };
        if arg.is_empty() {
            let t = s.thinking;
            self.screen.line(&format!("Thinking: {t}"));
            return;
        }
        let r = arg
            .parse::<ThinkingLevel>()
            .map_err(|e| e.to_string())
            .and_then(|l| s.set_thinking(l).map(|()| l).map_err(|e| e.to_string()));
        match r {
            Ok(l) => match s.thinking_warning() {
                Some(w) => self
                    .screen
                    .error_line(&format!("Thinking set to {l}, but {w}.")),
                None => self.screen.line(&format!("Thinking set to {l}.")),
            },
            Err(e) => self.screen.error_line(&format!("error: {e}")),
        }
    }

    /// A fresh session (or this one reopened with `resume`) in `workspace`, keeping the
    /// model and thinking level.
    async fn reopen(&mut self, workspace: PathBuf, resume: Option<String>) -> anyhow::Result<()> {
        let Some(old) = self.session.take() else {
            return Ok(());
        };
        let opened = open_session(
            &self.rt,
            &self.tx,
            workspace,
            resume,
            Some(old.model.to_string()),
            Some(old.thinking),
        );
        match opened {
            Ok(s) => {
                old.close().await;
                self.session_id = s.id().to_string();
                self.session = Some(s);
                Ok(())
            }
            Err(e) => {
                self.session = Some(old);
                Err(e)
            }
        }
    }

    async fn resume(&mut self, arg: &str) {
        if arg.is_empty() {
            self.screen
                .line("Usage: /resume <id> (/sessions lists them).");
            return;
        }
        let Some(ws) = self.workspace() else { return };
        let id = match self.rt.session_store().find(arg) {
            Ok(Some(id)) => id,
            Ok(None) => {
                self.screen
                    .error_line(&format!("No session \"{arg}\" (/sessions lists them)."));
                return;
            }
            Err(e) => {
                self.screen.error_line(&format!("error: {e}"));
                return;
            }
        };
        match self.reopen(ws, Some(id)).await {
            Ok(()) => {
                if let Some(s) = &self.session {
                    let line = format!("Resumed {}", crate::agent_cmd::session_line(s));
                    self.screen.line(&line);
                }
            }
            Err(e) => self.screen.error_line(&format!("error: {e:#}")),
        }
    }

    async fn new_session(&mut self) {
        let Some(ws) = self.workspace() else { return };
        match self.reopen(ws, None).await {
            Ok(()) => {
                let id = self.session_id.clone();
                self.screen.line(&format!("New session {id}."));
            }
            Err(e) => self.screen.error_line(&format!("error: {e:#}")),
        }
    }

    async fn dir(&mut self, arg: &str) {
        let Some(ws) = self.workspace() else { return };
        if arg.is_empty() {
            self.screen.line(&format!("Workspace: {}", ws.display()));
            return;
        }
        let target = resolve(&ws, arg);
        if !target.is_dir() {
            self.screen
                .error_line(&format!("❌ Not a directory: `{}`", target.display()));
            return;
        }
        // Same conversation, tools now rooted in the new directory.
        let id = self.session_id.clone();
        match self.reopen(target, Some(id)).await {
            Ok(()) => {
                let ws = self.workspace().unwrap_or_default();
                self.screen.line(&format!("Workspace: {}", ws.display()));
            }
            Err(e) => self.screen.error_line(&format!("error: {e:#}")),
        }
    }

    fn stop(&mut self) {
        if let Some(j) = &self.job {
            j.cancel.cancel();
            return;
        }
        if self.anton_running || idlehands_anton::read_state(&self.rt.paths.state_dir).running {
            self.anton_stop();
            return;
        }
        self.screen.line("Nothing is running.");
    }

    fn anton_stop(&mut self) {
        match idlehands_anton::request_stop(&self.rt.paths.state_dir) {
            Ok(m) => self.screen.line(&m),
            Err(e) => self.screen.error_line(&format!("error: {e}")),
        }
    }

    fn anton(&mut self, arg: &str) {
        match arg {
            "" | "status" => {
                let s = idlehands_anton::status_text(&self.rt.paths.state_dir);
                self.screen.line(&s);
            }
            "stop" => self.anton_stop(),
            file => self.anton_start(file),
        }
    }

    fn anton_start(&mut self, file: &str) {
        let Some(ws) = self.workspace() else { return };
        let path = resolve(&ws, file);
        if !path.exists() {
            self.screen
                .line(&format!("❌ File not found: `{}`", path.display()));
            return;
        }
        if !path.is_file() {
            self.screen
                .line(&format!("❌ Not a file: `{}`", path.display()));
            return;
        }
        if self.anton_running {
            self.screen
                .line("Anton is already running; /anton stop first.");
            return;
        }
        let opts = match run_options(&self.rt, path) {
            Ok(o) => o,
            Err(e) => {
                self.screen.line(&super::markdown::render(&format!(
                    "❌ **Anton crashed**: {e:#}"
                )));
                return;
            }
        };
        self.screen.line(&super::markdown::render(&format!(
            "🤚 **/anton** invoked on `{file}`\nStarting orchestrator..."
        )));
        self.screen
            .dim_line("(runs in the background; /anton status, /anton stop)");
        let agent = Arc::new(AgentRunner {
            rt: self.rt.clone(),
            model: self.session.as_ref().map(|s| s.model.to_string()),
            fallbacks: true,
        });
        let (sink, mut rx) = channel_sink();
        let tx = self.tx.clone();
        self.anton_running = true;
        tokio::spawn(async move {
            let fwd = {
                let tx = tx.clone();
                tokio::spawn(async move {
                    while let Some(m) = rx.recv().await {
                        let _ = tx.send(UiEvent::Anton(m));
                    }
                })
            };
            let r = tokio::spawn(idlehands_anton::run_anton(opts, agent, sink)).await;
            let _ = fwd.await;
            let r = r.unwrap_or_else(|e| {
                Err(idlehands_anton::AntonError::Io {
                    path: PathBuf::new(),
                    source: std::io::Error::other(format!("the run panicked: {e}")),
                })
            });
            let _ = tx.send(UiEvent::AntonDone(r));
        });
    }
}

fn resolve(base: &Path, arg: &str) -> PathBuf {
    let p = if let Some(rest) = arg.strip_prefix("~/") {
        std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(rest))
            .unwrap_or_else(|| PathBuf::from(arg))
    } else {
        PathBuf::from(arg)
    };
    let p = if p.is_absolute() { p } else { base.join(p) };
    p.canonicalize().unwrap_or(p)
}
