#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Bare `idlehands` on a real pseudo-terminal (tmux), against the fake upstream: streamed
//! answers, tool call lines, `/status` tokens and cost, Ctrl-C stopping a hanging turn,
//! history recall, `/anton` in the background, `/compact`, `/dir`.
//!
//! Needs `tmux` on PATH; the tests fail (they do not skip) without it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use idlehands_testkit::{FakeOpenAi, Fault, Reply};
use serde_json::json;

/// Generous: the machine may be loaded, and this only bounds a hang.
const WAIT: Duration = Duration::from_secs(60);

struct Tmux {
    socket: String,
    _dir: tempfile::TempDir,
    home: PathBuf,
    ws: PathBuf,
}

fn tmux_available() {
    let ok = Command::new("tmux")
        .arg("-V")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "tmux is required for the interactive terminal tests (apt-get install -y tmux)"
    );
}

impl Tmux {
    /// A scratch home whose config points `local/m1` at `base_url` (priced at $1/M input
    /// and $2/M output tokens), and a workspace.
    fn new(base_url: &str) -> Self {
        tmux_available();
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let ws = dir.path().join("ws");
        std::fs::create_dir_all(home.join(".idlehands")).unwrap();
        std::fs::create_dir_all(&ws).unwrap();
        std::fs::write(
            home.join(".idlehands/idlehands.json"),
            format!(
                r#"{{ models: {{ providers: {{ local: {{ baseUrl: "{base_url}", apiKey: "k", api: "openai-completions",
                     models: [{{ id: "m1", name: "m1", cost: {{ input: 1, output: 2 }} }}] }} }} }},
                   agents: {{ defaults: {{ model: {{ primary: "local/m1" }} }} }} }}"#
            ),
        )
        .unwrap();
        let socket = format!(
            "ih-test-{}-{}",
            std::process::id(),
            dir.path().file_name().unwrap().to_string_lossy()
        );
        Self {
            socket,
            _dir: dir,
            home,
            ws: ws.canonicalize().unwrap(),
        }
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .arg("-f")
            .arg("/dev/null")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `idlehands` in a 120x40 pane; when it exits the pane says `EXITED:<code>`.
    fn start(&self) {
        self.start_with("");
    }

    /// [`Self::start`] with extra command-line arguments.
    fn start_with(&self, args: &str) {
        let bin = env!("CARGO_BIN_EXE_idlehands");
        let cmd = format!(
            "env -u LITELLM_API_KEY -u LITELLM_BASE_URL -u IDLEHANDS_HOME -u IDLEHANDS_STATE_DIR -u IDLEHANDS_CONFIG_PATH -u IDLEHANDS_AGENT_DIR HOME='{}' TERM=xterm-256color '{bin}' {args}; echo EXITED:$?; sleep 600",
            self.home.display()
        );
        self.tmux(&[
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            "120",
            "-y",
            "40",
            "-c",
            &self.ws.to_string_lossy(),
            &cmd,
        ]);
    }

    /// Ends the pane's program and starts `idlehands` again with `args`. The server must outlive
    /// the killed session: by default it exits with its last session, and a `new-session` racing
    /// that exit fails with "server exited unexpectedly".
    fn restart_with(&self, args: &str) {
        self.tmux(&["set-option", "-s", "exit-empty", "off"]);
        self.tmux(&["kill-session", "-t", "t"]);
        self.start_with(args);
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-J", "-S", "-200", "-t", "t"])
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }

    /// Types `text` literally, then Enter.
    fn line(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "t", "-l", text]);
        self.keys(&["Enter"]);
    }

    /// Polls the pane until `pred` holds.
    async fn wait(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the screen:\n{s}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_for(&self, needle: &str) -> String {
        self.wait(needle, |s| s.contains(needle)).await
    }

    /// Waits until `needle` occurs `n` times.
    async fn wait_count(&self, needle: &str, n: usize) -> String {
        self.wait(&format!("{n}× {needle}"), |s| {
            s.matches(needle).count() >= n
        })
        .await
    }

    /// The last non-empty line on the screen.
    fn last_line(&self) -> String {
        self.screen()
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .to_string()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}");
}

#[tokio::test]
async fn streamed_answer_tool_line_status_cost_and_history() {
    let up = FakeOpenAi::start().await;
    let t = Tmux::new(&up.base_url());
    up.push(
        Reply::tool_call(
            "c1",
            "write",
            json!({"path": "notes/hello.txt", "content": "hi there\n"}),
        )
        .with_usage(1000, 100),
    );
    up.push(
        Reply::text("The note is written and all is well.")
            .with_reasoning("pondering the note")
            .with_usage(2000, 50)
            .with_chunk_chars(4)
            .with_chunk_delay(Duration::from_millis(20)),
    );
    t.start();
    t.wait_for("IdleHands").await;
    t.wait_for("› ").await;

    t.line("make a note");
    let s = t.wait_for("The note is written and all is well.").await;
    assert!(s.contains("⚙ write(path=\"notes/hello.txt\""), "{s}");
    assert!(s.contains("→ ok:"), "{s}");
    assert!(s.contains("pondering the note"), "{s}");
    // The turn's footer: 3000 in at $1/M + 150 out at $2/M.
    t.wait_for("↳ 3000 in / 150 out · $0.0033").await;
    assert_eq!(
        std::fs::read_to_string(t.ws.join("notes/hello.txt")).unwrap(),
        "hi there\n"
    );

    t.line("/status");
    // 3000 in at $1/M + 150 out at $2/M = $0.0033.
    let s = t.wait_for("Cost: $0.0033").await;
    assert!(s.contains("Tokens: 3000 in / 150 out"), "{s}");
    assert!(s.contains("Model: local/m1"), "{s}");
    assert!(s.contains("Anton is idle."), "{s}");

    // History: Up recalls /status, then the message.
    t.keys(&["Up"]);
    t.wait("/status recalled", |_| t.last_line().contains("› /status"))
        .await;
    t.keys(&["Up"]);
    t.wait("message recalled", |_| {
        t.last_line().contains("› make a note")
    })
    .await;
    t.keys(&["C-u"]);
    t.keys(&["C-d"]);
    t.wait_for("EXITED:0").await;
    let hist = std::fs::read_to_string(t.home.join(".idlehands/history")).unwrap();
    assert_eq!(hist, "make a note\n/status\n");
}

#[tokio::test]
async fn ctrl_c_stops_a_hanging_turn_and_the_prompt_comes_back() {
    let up = FakeOpenAi::start().await;
    let t = Tmux::new(&up.base_url());
    up.push(Reply::fault(Fault::Hang));
    up.push(Reply::fault(Fault::Hang));
    up.push(Reply::text("second answer"));
    t.start();
    t.wait_for("› ").await;
    t.line("this will hang");
    t.wait_for("Ctrl-C to stop").await;
    let deadline = Instant::now() + WAIT;
    while up.in_flight() == 0 {
        assert!(Instant::now() < deadline, "the request never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    t.keys(&["C-c"]);
    t.wait_for("(stopped)").await;
    // `/stop` typed while a turn runs stops it as well.
    t.line("hang again");
    let deadline = Instant::now() + WAIT;
    while up.served() < 2 {
        assert!(Instant::now() < deadline, "the request never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    t.line("/stop");
    t.wait_count("(stopped)", 2).await;
    // Still running: the next turn works.
    t.line("again");
    t.wait_for("second answer").await;
    t.line("/anton status");
    t.wait_for("Anton is idle.").await;
    t.line("/anton missing.md");
    t.wait_for("❌ File not found:").await;
    // Ctrl-C twice at an empty prompt exits.
    t.keys(&["C-c"]);
    t.wait_for("Ctrl-C again").await;
    t.keys(&["C-c"]);
    t.wait_for("EXITED:0").await;
}

#[tokio::test]
async fn anton_runs_in_the_background_with_progress() {
    let up = FakeOpenAi::start().await;
    let t = Tmux::new(&up.base_url());
    git(&t.ws, &["init", "-q", "-b", "main"]);
    git(&t.ws, &["config", "user.name", "T"]);
    git(&t.ws, &["config", "user.email", "t@example.test"]);
    git(&t.ws, &["config", "commit.gpgsign", "false"]);
    std::fs::write(t.ws.join("TASKS.md"), "- [ ] Create a.txt\n").unwrap();
    git(&t.ws, &["add", "-A"]);
    git(&t.ws, &["commit", "-q", "-m", "init"]);
    up.push(Reply::tool_call(
        "c1",
        "write",
        json!({"path": "a.txt", "content": "a\n"}),
    ));
    up.push(Reply::text("Created a.txt."));
    t.start();
    t.wait_for("› ").await;
    t.line("/anton TASKS.md");
    // Progress is markdown, rendered: no literal `**`.
    let s = t.wait_for("🏁 Anton finished").await;
    assert!(
        s.contains("🤚 /anton invoked on TASKS.md\nStarting orchestrator..."),
        "{s}"
    );
    assert!(s.contains("✅ Task 1/1 complete: Create a.txt"), "{s}");
    assert!(!s.contains("**"), "{s}");
    assert_eq!(
        std::fs::read_to_string(t.ws.join("TASKS.md")).unwrap(),
        "- [x] Create a.txt\n"
    );
    t.line("/anton status");
    t.wait_for("completed=1, skipped=0, total=1").await;
    t.line("/stop");
    t.wait_for("Nothing is running.").await;
}

#[tokio::test]
async fn compact_and_dir_commands() {
    let up = FakeOpenAi::start().await;
    let t = Tmux::new(&up.base_url());
    std::fs::create_dir_all(t.ws.join("sub")).unwrap();
    up.push(Reply::text("ANSWER-ONE"));
    up.push(Reply::text("ANSWER-TWO"));
    up.push(Reply::text("THE SUMMARY"));
    t.start();
    t.wait_for("› ").await;
    t.line("first question");
    t.wait_for("ANSWER-ONE").await;
    t.line("second question");
    t.wait_for("ANSWER-TWO").await;
    t.line("/compact keep it short");
    t.wait_for("Compacted the conversation (manual)").await;
    let last = up.last_request().unwrap().body.to_string();
    assert!(last.contains("keep it short"), "{last}");
    t.line("/dir sub");
    let sub = t.ws.join("sub");
    t.wait_for(&format!("Workspace: {}", sub.display())).await;
    t.line("/dir");
    t.wait_count(&format!("Workspace: {}", sub.display()), 2)
        .await;
    t.line("/nope");
    t.wait_for("Unknown command /nope").await;
    t.line("/exit");
    t.wait_for("EXITED:0").await;
}

#[tokio::test]
async fn exiting_during_an_anton_run_warns_first_and_leaves_no_running_state() {
    let up = FakeOpenAi::start().await;
    let t = Tmux::new(&up.base_url());
    git(&t.ws, &["init", "-q", "-b", "main"]);
    git(&t.ws, &["config", "user.name", "T"]);
    git(&t.ws, &["config", "user.email", "t@example.test"]);
    git(&t.ws, &["config", "commit.gpgsign", "false"]);
    std::fs::write(t.ws.join("TASKS.md"), "- [ ] Wait forever\n").unwrap();
    git(&t.ws, &["add", "-A"]);
    git(&t.ws, &["commit", "-q", "-m", "init"]);
    up.push(Reply::fault(Fault::Hang));
    t.start();
    t.wait_for("› ").await;
    t.line("/anton TASKS.md");
    t.wait_for("🔪 Task 1/1: Wait forever").await;
    t.line("/anton status");
    t.wait_for("Anton running: 0/1 complete").await;
    t.keys(&["C-d"]);
    t.wait_for("Anton is still running").await;
    t.keys(&["C-d"]);
    t.wait_for("EXITED:0").await;
    let state = std::fs::read_to_string(t.home.join(".idlehands/anton.state.json")).unwrap();
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["running"], false, "{state}");
    assert_eq!(
        state["lastSummary"],
        "Anton was stopped when the chat exited."
    );
}

#[tokio::test]
async fn approvals_are_asked_in_the_chat() {
    let up = FakeOpenAi::start().await;
    let t = Tmux::new(&up.base_url());
    let dir = t.ws.parent().unwrap();
    let outside = dir.join("outside.txt");
    let refused = dir.join("refused.txt");
    let always = dir.join("always.txt");
    let remembered = dir.join("remembered.txt");
    for (id, path) in [
        ("c1", &outside),
        ("c2", &refused),
        ("c3", &always),
        ("c4", &remembered),
    ] {
        up.push(Reply::tool_call(
            id,
            "write",
            json!({"path": path.to_string_lossy(), "content": "yes\n"}),
        ));
    }
    up.push(Reply::text("ALL-DONE"));
    t.start();
    t.wait_for("› ").await;
    t.line("write outside");
    t.wait_for("[y] once / [a] always here / [N] deny").await;
    t.keys(&["y"]);
    t.wait_for("approved").await;
    t.wait_count("[N] deny", 2).await;
    t.keys(&["n"]);
    t.wait_count("[N] deny", 3).await;
    t.keys(&["a"]);
    // The fourth write, to the same directory, is not asked again.
    let s = t.wait_for("ALL-DONE").await;
    assert_eq!(s.matches("[N] deny").count(), 3, "{s}");
    assert!(s.contains("refused"), "{s}");
    assert!(s.contains("approved (always, in this workspace)"), "{s}");
    assert!(s.contains("→ err:"), "{s}");
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "yes\n");
    assert!(!refused.exists());
    assert_eq!(std::fs::read_to_string(&remembered).unwrap(), "yes\n");
    // Kept per workspace for the next session.
    let saved: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(t.home.join(".idlehands/approvals.json")).unwrap(),
    )
    .unwrap();
    let keys = saved["workspaces"][t.ws.to_string_lossy().as_ref()].clone();
    assert_eq!(
        keys,
        json!([format!(
            "write-outside:{}",
            dir.canonicalize().unwrap().display()
        )])
    );
}

#[tokio::test]
async fn sessions_are_listed_shown_and_resumed_in_the_chat() {
    let up = FakeOpenAi::start().await;
    let t = Tmux::new(&up.base_url());
    up.push(Reply::text("First answer."));
    t.start();
    t.wait_for("IdleHands").await;
    t.line("remember the number 42");
    t.wait_for("First answer.").await;
    t.line("/session");
    let screen = t.wait_for("(2 messages)").await;
    let id = screen
        .lines()
        .find_map(|l| l.trim().strip_prefix("session "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_string();
    assert!(screen.contains("remember the number 42"), "{screen}");
    t.line("/new");
    t.wait_for("New session").await;
    t.line("/sessions");
    t.wait_for(&format!(" 1. {id}")).await;
    t.line(&format!("/resume {}", &id[..8]));
    t.wait_for(&format!("Resumed session {id} (2 messages)"))
        .await;
    up.push(Reply::text("It was 42."));
    t.line("what number?");
    t.wait_for("It was 42.").await;
    let msgs = up.last_request().unwrap().body["messages"].to_string();
    assert!(msgs.contains("remember the number 42"), "{msgs}");
    t.keys(&["C-d"]);
    t.wait_for("EXITED:0").await;

    // `idlehands --continue` reopens the latest session of this workspace.
    t.restart_with("--continue");
    t.wait_for("(resumed)").await;
    t.wait_for(&format!("session {id} (4 messages)")).await;
}

#[tokio::test]
async fn shell_model_list_usage_and_verbose_in_the_chat() {
    let up = FakeOpenAi::start().await;
    let t = Tmux::new(&up.base_url());
    t.start();
    t.wait_for("IdleHands").await;
    t.line("!echo bang-$((6*7))");
    t.wait_for("bang-42").await;
    t.line("/model");
    t.wait_for("* 1. local/m1").await;
    t.line("/model 1");
    t.wait_for("Model set to local/m1.").await;
    t.line("/verbose");
    t.wait_for("Verbose: tool calls with their arguments in full.")
        .await;
    up.push(Reply::tool_call(
        "c1",
        "exec",
        json!({"command": "echo verbose-shows-this-whole-argument-string-without-cutting-it-anywhere-at-all-really-none"}),
    ).with_usage(1000, 100));
    up.push(Reply::text("DONE").with_usage(1000, 10));
    t.line("go");
    t.wait_for("DONE").await;
    t.wait_for("exec {\"command\":\"echo verbose-shows-this-whole-argument-string-without-cutting-it-anywhere-at-all-really-none\"}").await;
    t.line("/usage");
    t.wait_for("Tokens this session: 2000 in (0 cached) / 110 out")
        .await;
    t.wait_for("Cost: $0.00222").await;
    assert!(
        !up.requests()
            .iter()
            .any(|r| r.body.to_string().contains("bang-"))
    );
}

#[tokio::test]
async fn answers_are_rendered_as_markdown() {
    let up = FakeOpenAi::start().await;
    let t = Tmux::new(&up.base_url());
    up.push(
        Reply::text("# Plan\n- first **bold** item\n- use `cargo test`\n```rust\nlet x = **1**;\n```\nAll DONE.")
            .with_chunk_chars(3),
    );
    t.start();
    t.wait_for("› ").await;
    t.line("plan it");
    let s = t.wait_for("All DONE.").await;
    for shown in [
        "Plan",
        "• first bold item",
        "• use cargo test",
        "┌─ rust",
        "│ let x = **1**;",
        "└─",
    ] {
        assert!(s.contains(shown), "{shown}:\n{s}");
    }
    assert!(!s.contains("# Plan") && !s.contains("`cargo"), "{s}");
}
