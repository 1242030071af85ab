#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `idlehands anton run|status|stop` as a process, on a scratch git repo, with the fake
//! upstream scripting the model: tool calls that write files, a task that changes nothing,
//! dry runs, and a second run refused while the first holds the lock.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use idlehands_testkit::{FakeOpenAi, Fault, Reply};
use serde_json::json;

struct Scratch {
    dir: tempfile::TempDir,
}

fn git(dir: &Path, args: &[&str]) -> String {
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

impl Scratch {
    /// A home with a config pointing `local/m1` at `base_url`, and a git repo with `tasks`.
    fn new(base_url: &str, tasks: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let s = Self { dir };
        std::fs::create_dir_all(s.state()).unwrap();
        std::fs::write(
            s.state().join("idlehands.json"),
            format!(
                r#"{{ models: {{ providers: {{ local: {{ baseUrl: "{base_url}", apiKey: "k", api: "openai-completions",
                     models: [{{ id: "m1", name: "m1" }}] }} }} }},
                   agents: {{ defaults: {{ model: {{ primary: "local/m1" }} }} }} }}"#
            ),
        )
        .unwrap();
        let repo = s.repo();
        std::fs::create_dir_all(&repo).unwrap();
        git(&repo, &["init", "-q", "-b", "main"]);
        git(&repo, &["config", "user.name", "Anton Test"]);
        git(&repo, &["config", "user.email", "anton@example.test"]);
        git(&repo, &["config", "commit.gpgsign", "false"]);
        std::fs::write(repo.join("TASKS.md"), tasks).unwrap();
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-q", "-m", "init"]);
        s
    }
    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }
    fn state(&self) -> PathBuf {
        self.home().join(".idlehands")
    }
    fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_idlehands"));
        c.args(args)
            .current_dir(self.repo())
            .env("HOME", self.home())
            .stdin(Stdio::null());
        for v in [
            "LITELLM_API_KEY",
            "LITELLM_BASE_URL",
            "IDLEHANDS_HOME",
            "IDLEHANDS_STATE_DIR",
            "IDLEHANDS_CONFIG_PATH",
            "IDLEHANDS_AGENT_DIR",
        ] {
            c.env_remove(v);
        }
        c
    }
    fn log(&self) -> Vec<String> {
        git(&self.repo(), &["log", "--format=%s"])
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// Run off the async runtime so the fake upstream keeps serving while we wait.
async fn run(mut c: Command) -> Output {
    tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn tasks_are_done_one_agent_each_marked_and_committed_or_skipped() {
    let up = FakeOpenAi::start().await;
    let s = Scratch::new(
        &up.base_url(),
        "# Plan\n\n- [ ] Create a.txt\n- [ ] Think about it\n- [ ] Create b.txt\n- [x] Old\n",
    );
    // Task 1: write a file, then report.
    up.push(Reply::tool_call(
        "c1",
        "write",
        json!({"path": "a.txt", "content": "alpha\n"}),
    ));
    up.push(Reply::text("Created a.txt."));
    // Task 2: changes nothing, so it is skipped.
    up.push(Reply::text("Nothing to do here."));
    // Task 3.
    up.push(Reply::tool_call(
        "c3",
        "write",
        json!({"path": "sub/b.txt", "content": "beta\n"}),
    ));
    up.push(Reply::text("Created b.txt."));

    let out = run(s.cmd(&["anton", "run", "TASKS.md", "--task-timeout", "120"])).await;
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    // A skipped task makes the run fail (exit 3), though the others were committed.
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");

    assert!(stdout.contains("[Anton] Mode: direct"), "{stdout}");
    assert!(
        stdout.contains("\n[Anton] Task 1/3: Create a.txt"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\n[Anton] Task 3/3: Create b.txt"),
        "{stdout}"
    );
    assert!(
        stdout.contains("✅ **Task 1/3 complete**: Create a.txt"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Anton finished: completed=2, skipped=1, total=3, duration="),
        "{stdout}"
    );
    assert!(
        stderr.contains("[Anton] Task failed and was skipped: Think about it"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Implementation made no repository changes"),
        "{stderr}"
    );

    assert_eq!(
        std::fs::read_to_string(s.repo().join("TASKS.md")).unwrap(),
        "# Plan\n\n- [x] Create a.txt\n- [ ] Think about it\n- [x] Create b.txt\n- [x] Old\n"
    );
    assert_eq!(
        std::fs::read_to_string(s.repo().join("sub/b.txt")).unwrap(),
        "beta\n"
    );
    assert_eq!(
        s.log(),
        ["anton: Create b.txt", "anton: Create a.txt", "init"]
    );
    assert_eq!(git(&s.repo(), &["status", "--porcelain"]), "");

    // Each task ran in its own fresh session: its first request holds only that task.
    let reqs = up.requests();
    assert_eq!(reqs.len(), 5);
    for (i, task) in [
        (0, "Create a.txt"),
        (2, "Think about it"),
        (3, "Create b.txt"),
    ] {
        let msgs = reqs[i].body["messages"].as_array().unwrap();
        let users: Vec<_> = msgs.iter().filter(|m| m["role"] == "user").collect();
        assert_eq!(users.len(), 1);
        assert!(users[0].to_string().contains(task));
        let system = msgs[0].to_string();
        assert!(system.contains("Your working directory is:"), "{system}");
    }

    // The state file remembers the run.
    let st = run(s.cmd(&["anton", "status"])).await;
    let st = text(&st.stdout);
    assert!(st.starts_with("Anton is idle."), "{st}");
    assert!(st.contains("completed=2, skipped=1, total=3"), "{st}");
    let stop = run(s.cmd(&["anton", "stop"])).await;
    assert_eq!(text(&stop.stdout).trim(), "Anton is not running.");
}

#[tokio::test]
async fn dry_run_lists_pending_tasks_without_git_or_model() {
    let up = FakeOpenAi::start().await;
    let s = Scratch::new(&up.base_url(), "- [ ] One\n  - [ ] Two\n- [x] Done\n");
    // Dirty tree: a dry run does not care.
    std::fs::write(s.repo().join("scratch.txt"), "x").unwrap();
    let out = run(s.cmd(&["anton", "run", "TASKS.md", "--dry-run"])).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "Dry run: 2 pending task(s)\n- [ ] One\n- [ ] Two\n"
    );
    assert_eq!(up.served(), 0);

    // A real run refuses the dirty tree.
    let out = run(s.cmd(&["anton", "run", "TASKS.md"])).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("Anton requires a clean git working tree. Dirty repo at:"),
        "{}",
        text(&out.stderr)
    );
    let out = run(s.cmd(&["anton", "run", "MISSING.md"])).await;
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("MISSING.md"));
}

#[tokio::test]
async fn a_second_run_is_refused_while_the_first_holds_the_lock() {
    let up = FakeOpenAi::start().await;
    let s = Scratch::new(&up.base_url(), "- [ ] Create a.txt\n");
    up.push(Reply::fault(Fault::Hang));
    let mut first = s
        .cmd(&["anton", "run", "TASKS.md", "--timeout", "300"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first run is inside its agent call.
    let deadline = Instant::now() + Duration::from_secs(60);
    while up.in_flight() == 0 {
        assert!(
            Instant::now() < deadline,
            "the first run never called the model"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let st = text(&run(s.cmd(&["anton", "status"])).await.stdout);
    assert!(st.starts_with("Anton running: 0/1 complete"), "{st}");

    let second = run(s.cmd(&["anton", "run", "TASKS.md"])).await;
    assert!(!second.status.success());
    assert!(
        text(&second.stderr).contains("Anton is already running (lock held)"),
        "{}",
        text(&second.stderr)
    );

    let stop = text(&run(s.cmd(&["anton", "stop"])).await.stdout);
    assert!(stop.contains("Anton stop requested"), "{stop}");
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(s.state().join("anton.lock").exists());
}

#[tokio::test]
async fn preflight_writes_a_plan_then_implements_it() {
    let up = FakeOpenAi::start().await;
    let s = Scratch::new(&up.base_url(), "- [ ] Create a.txt\n");
    // No one-off codebase analysis: discovery and implementation only.
    let cfg_path = s.state().join("idlehands.json");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    let cfg = cfg.trim_end().trim_end_matches('}').to_string()
        + ", anton: { preflight: { codebaseSnapshot: false } } }";
    std::fs::write(&cfg_path, cfg).unwrap();

    let plan = "# Plan: Create a.txt\n\n## What needs to change\nA new file a.txt at the root.\n\n\
                ## Implementation approach\nWrite a.txt with one line.\n\n## How to verify\ncat a.txt\n";
    // Discovery: write the plan, answer with its name.
    up.push(Reply::tool_call(
        "d1",
        "write",
        json!({"path": ".agents/tasks/plan-1.md", "content": plan}),
    ));
    up.push(Reply::text(
        r#"{"status":"incomplete","filename":".agents/tasks/plan-1.md"}"#,
    ));
    // Implementation, following the plan.
    up.push(Reply::tool_call(
        "i1",
        "write",
        json!({"path": "a.txt", "content": "a\n"}),
    ));
    up.push(Reply::text("Implemented the plan."));

    let out = run(s.cmd(&["anton", "run", "TASKS.md", "--mode", "preflight"])).await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("[Anton] Mode: preflight (discovery → implementation)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("🔎 Discovery: analyzing codebase for task 1/1..."),
        "{stdout}"
    );
    assert!(stdout.contains("📝 Plan written:"), "{stdout}");
    assert!(
        stdout.contains("🛠️ Implementation: following spec"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Anton finished: completed=1, skipped=0, total=1"),
        "{stdout}"
    );
    let reqs = up.requests();
    assert_eq!(reqs.len(), 4);
    let impl_prompt = reqs[2].body["messages"].to_string();
    assert!(impl_prompt.contains("plan-1.md"), "{impl_prompt}");
    assert_eq!(
        std::fs::read_to_string(s.repo().join("TASKS.md")).unwrap(),
        "- [x] Create a.txt\n"
    );
    assert_eq!(s.log(), ["anton: Create a.txt", "init"]);
    // The plan stays out of the commit.
    let files = git(&s.repo(), &["show", "--name-only", "--format=", "HEAD"]);
    let mut files: Vec<&str> = files.lines().filter(|l| !l.is_empty()).collect();
    files.sort_unstable();
    assert_eq!(files, ["TASKS.md", "a.txt"]);
}

#[tokio::test]
async fn a_timed_out_task_keeps_its_changes_on_a_branch_and_the_run_fails() {
    let up = FakeOpenAi::start().await;
    let s = Scratch::new(&up.base_url(), "- [ ] Create a.txt\n");
    // The first write does the job; the model then never answers again.
    up.push(Reply::tool_call(
        "c1",
        "write",
        json!({"path": "a.txt", "content": "done\n"}),
    ));
    up.push(Reply::fault(Fault::Hang));
    let out = run(s.cmd(&["anton", "run", "TASKS.md", "--timeout", "2"])).await;
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(stderr.contains("timed out"), "{stderr}");
    let branches = git(&s.repo(), &["branch", "--list", "anton/unfinished-*"]);
    let branch = branches.trim().trim_start_matches("* ").to_string();
    assert!(branch.starts_with("anton/unfinished-1-"), "{branches}");
    assert!(
        stderr.contains(&format!("changes were kept on branch {branch}")),
        "{stderr}"
    );
    assert!(
        stdout.contains(&format!("Changes of unfinished tasks kept on: {branch}")),
        "{stdout}"
    );
    // The work is on the branch; the checked-out tree is clean and unmarked.
    assert_eq!(
        git(&s.repo(), &["show", &format!("{branch}:a.txt")]),
        "done\n"
    );
    assert_eq!(git(&s.repo(), &["status", "--porcelain"]), "");
    assert!(!s.repo().join("a.txt").exists());
    assert_eq!(s.log(), ["init"]);
    assert_eq!(
        std::fs::read_to_string(s.repo().join("TASKS.md")).unwrap(),
        "- [ ] Create a.txt\n"
    );
}

#[tokio::test]
async fn an_explicit_model_that_fails_fails_the_task_unless_fallback_is_allowed() {
    let up = FakeOpenAi::start().await;
    let s = Scratch::new(&up.base_url(), "- [ ] Create a.txt\n");
    let cfg_path = s.state().join("idlehands.json");
    let cfg = std::fs::read_to_string(&cfg_path)
        .unwrap()
        .replace(
            r#"{ id: "m1", name: "m1" }"#,
            r#"{ id: "m1", name: "m1" }, { id: "m2", name: "m2" }"#,
        )
        .replace(
            r#"primary: "local/m1""#,
            r#"primary: "local/m1", fallbacks: ["local/m2"]"#,
        );
    std::fs::write(&cfg_path, cfg).unwrap();
    up.push(Reply::error(404, "The model `m2` does not exist"));
    let out = run(s.cmd(&["anton", "run", "TASKS.md", "--model", "local/m2"])).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(up.served(), 1);

    up.push(Reply::error(404, "The model `m2` does not exist"));
    up.push(Reply::tool_call(
        "c1",
        "write",
        json!({"path": "a.txt", "content": "a\n"}),
    ));
    up.push(Reply::text("Created."));
    let out = run(s.cmd(&[
        "anton",
        "run",
        "TASKS.md",
        "--model",
        "local/m2",
        "--allow-fallback",
    ]))
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let reqs = up.requests();
    assert_eq!(reqs[1].body["model"], "m2");
    assert_eq!(reqs[2].body["model"], "m1");
    assert_eq!(s.log(), ["anton: Create a.txt", "init"]);
}
