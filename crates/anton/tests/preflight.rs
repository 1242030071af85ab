//! Preflight mode: codebase analysis, discovery plan files, review, implementation, retries.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;

use common::*;
use idlehands_anton::{
    AgentCall, AntonConfig, AntonMode, NO_CHANGES_ERROR, NO_PLAN_ERROR, Overrides, PreflightConfig,
    RunOptions, RunOutcome, null_sink, run_anton,
};

fn preflight(repo: &Repo, task_file: &str, review: bool, snapshot: bool) -> RunOptions {
    let mut opts = repo.options(task_file);
    opts.config = AntonConfig {
        mode: Some(AntonMode::Preflight),
        requirements_review: Some(review),
        preflight_max_retries: Some(1),
        preflight: Some(PreflightConfig {
            enabled: Some(true),
            codebase_snapshot: Some(snapshot),
        }),
        ..AntonConfig::default()
    };
    opts
}

fn is_discovery(call: &AgentCall) -> bool {
    call.session_id.starts_with("anton-discovery-")
}

fn plan_path(call: &AgentCall) -> PathBuf {
    path_after(&call.message, "implementation plan in markdown to: ")
        .or_else(|| {
            path_after(
                &call.message,
                "implementation plan (markdown, starting with a `# ` heading) to: ",
            )
        })
        .unwrap()
}

/// Discovery writes the plan; review rewrites it; implementation creates the named file.
fn well_behaved(call: &AgentCall) -> Action {
    if call.session_id.starts_with("anton-codebase-") {
        let ctx = path_after(&call.message, "Write a concise markdown overview to: ").unwrap();
        std::fs::write(ctx, "# Codebase\n\nA scratch repo with a task list.\n").unwrap();
        return Action::Reply("Written.".into());
    }
    if is_discovery(call) {
        let plan = plan_path(call);
        let task = call
            .message
            .lines()
            .find_map(|l| l.strip_prefix("Task: "))
            .unwrap();
        std::fs::write(&plan, plan_body(task)).unwrap();
        return Action::Reply(format!(
            "{{\"status\":\"incomplete\",\"filename\":\"{}\"}}",
            plan.display()
        ));
    }
    if call.session_id.starts_with("anton-review-") {
        let plan = call.message.lines().nth(1).map(PathBuf::from).unwrap();
        let body = std::fs::read_to_string(&plan).unwrap();
        std::fs::write(&plan, format!("{body}\n## Reviewed\nEdge cases covered.\n")).unwrap();
        return Action::Reply("{\"status\":\"ready\"}".into());
    }
    let task = task_of(&call.message);
    let name = task.split_whitespace().last().unwrap().to_string();
    std::fs::write(call.workspace.join(name), "x\n").unwrap();
    Action::Reply("Implemented.".into())
}

#[tokio::test]
async fn discovery_review_then_implementation_following_the_plan() {
    let repo = Repo::new(&[("TASKS.md", "- [ ] Create a.txt\n- [ ] Create b.txt\n")]);
    let agent = FakeAgent::new(well_behaved);
    let (sink, store) = recorder();
    let mut opts = preflight(&repo, "TASKS.md", true, true);
    opts.overrides = Overrides {
        thinking: None,
        ..Overrides::default()
    };
    opts.config.thinking = Some(idlehands_anton::ThinkingConfig {
        direct: Some("low".into()),
        preflight: Some(idlehands_anton::PreflightThinking {
            phase1: Some("high".into()),
            phase2: Some("medium".into()),
        }),
    });
    let RunOutcome::Finished(summary) = run_anton(opts, agent.clone(), sink).await.unwrap() else {
        panic!()
    };
    assert_eq!((summary.completed, summary.skipped), (2, 0));
    assert_eq!(
        repo.log(),
        ["anton: Create b.txt", "anton: Create a.txt", "init"]
    );
    assert_eq!(
        repo.read("TASKS.md"),
        "- [x] Create a.txt\n- [x] Create b.txt\n"
    );
    // Plans and the codebase context stay on disk, untracked and uncommitted.
    assert_eq!(git(repo.path(), &["ls-files"]), "TASKS.md\na.txt\nb.txt\n");
    let plans: Vec<String> = std::fs::read_dir(repo.file(".agents/tasks"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(plans.contains(&"CODEBASE_CONTEXT.md".to_string()));
    assert_eq!(plans.iter().filter(|p| p.starts_with("task-")).count(), 2);

    let calls = agent.calls();
    let kinds: Vec<&str> = calls
        .iter()
        .map(|c| c.session_id.splitn(3, '-').take(2).last().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "codebase",
            "discovery",
            "review",
            "impl",
            "discovery",
            "review",
            "impl"
        ]
    );
    assert_eq!(calls[0].thinking.as_deref(), Some("high"));
    assert_eq!(calls[1].thinking.as_deref(), Some("high"));
    assert_eq!(calls[3].thinking.as_deref(), Some("medium"));
    // The codebase context reaches discovery; implementation is pointed at the plan.
    assert!(
        calls[1]
            .message
            .contains("A scratch repo with a task list.")
    );
    let plan1 = plan_path(&calls[1]);
    let name1 = plan1.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name1.starts_with("task-1-") && name1.ends_with(".md"),
        "{name1}"
    );
    assert!(calls[3].message.starts_with(
        "Complete this task: Create a.txt\n\nAn implementation plan is available at: "
    ));
    assert!(calls[3].message.contains(&plan1.display().to_string()));
    assert!(
        calls[3]
            .message
            .contains("You MUST use the edit or write tool")
    );
    assert!(
        std::fs::read_to_string(&plan1)
            .unwrap()
            .contains("## Reviewed")
    );

    assert_eq!(logs(&store)[0], "[Anton] Mode: preflight (with review)");
    let progress = progress(&store);
    let expect_in_order = [
        "🤚 **Anton activated**\n📄 Task file: `TASKS.md`\n📋 2 tasks pending".to_string(),
        "🔬 **Analyzing codebase** — building shared context for discovery...".to_string(),
        "\n🔪 **Task 1/2**: Create a.txt".to_string(),
        "🔎 Discovery: analyzing codebase for task 1/2...".to_string(),
        format!("🤖 Agent spawned (session: `{}`)", calls[1].session_id),
        format!("📝 Plan written: `{name1}`"),
        format!("🧪 Reviewing plan: `{name1}`..."),
        format!("🤖 Agent spawned (session: `{}`)", calls[2].session_id),
        "✅ Plan reviewed and refined".to_string(),
        format!("🛠️ Implementation: following spec `{name1}`"),
        format!("🤖 Agent spawned (session: `{}`)", calls[3].session_id),
        "✅ **Task 1/2 complete**: Create a.txt".to_string(),
    ];
    let mut at = 0;
    for want in &expect_in_order {
        let found = progress[at..].iter().position(|p| p == want);
        assert!(
            found.is_some(),
            "missing {want:?} after index {at} in {progress:#?}"
        );
        at += found.unwrap() + 1;
    }
    assert!(
        progress
            .iter()
            .any(|p| p.starts_with("📚 Codebase context ready (`CODEBASE_CONTEXT.md`, "))
    );
}

#[tokio::test]
async fn discovery_saying_complete_marks_done_without_implementation() {
    let repo = Repo::new(&[("TASKS.md", "- [ ] Create a.txt\n")]);
    let agent = FakeAgent::new(|call| {
        assert!(
            is_discovery(call),
            "only discovery runs: {}",
            call.session_id
        );
        Action::Reply("{\"status\":\"complete\",\"filename\":\"\"}".into())
    });
    let (sink, store) = recorder();
    let RunOutcome::Finished(summary) = run_anton(
        preflight(&repo, "TASKS.md", false, false),
        agent.clone(),
        sink,
    )
    .await
    .unwrap() else {
        panic!()
    };
    assert_eq!(summary.completed, 1);
    assert_eq!(agent.calls().len(), 1);
    assert_eq!(repo.log(), ["anton: Create a.txt", "init"]);
    assert_eq!(repo.read("TASKS.md"), "- [x] Create a.txt\n");
    let progress = progress(&store);
    assert!(progress.contains(
        &"✅ Discovery says task already complete — skipping implementation".to_string()
    ));
    assert_eq!(
        logs(&store)[0],
        "[Anton] Mode: preflight (discovery → implementation)"
    );
}

#[tokio::test]
async fn no_plan_after_retries_and_repairs_refuses_the_task() {
    let repo = Repo::new(&[("TASKS.md", "- [ ] Create a.txt\n")]);
    let agent = FakeAgent::new(|call| {
        assert!(is_discovery(call));
        // Source edits during discovery are wiped before the task is abandoned.
        std::fs::write(call.workspace.join("oops.txt"), "x").unwrap();
        Action::Reply("I looked around.".into())
    });
    let (sink, store) = recorder();
    let RunOutcome::Finished(summary) = run_anton(
        preflight(&repo, "TASKS.md", false, false),
        agent.clone(),
        sink,
    )
    .await
    .unwrap() else {
        panic!()
    };
    assert_eq!((summary.completed, summary.skipped), (0, 1));
    // preflightMaxRetries = 1: two attempts, each a primary and a repair pass.
    let sessions: Vec<String> = agent.calls().into_iter().map(|c| c.session_id).collect();
    assert_eq!(sessions.len(), 4);
    assert!(sessions[0].starts_with("anton-discovery-") && sessions[0].ends_with("-1-0"));
    assert!(sessions[1].starts_with("anton-discovery-repair-") && sessions[1].ends_with("-1-0"));
    assert!(sessions[3].starts_with("anton-discovery-repair-") && sessions[3].ends_with("-1-1"));
    assert!(!repo.file("oops.txt").exists());
    assert_eq!(repo.read("TASKS.md"), "- [ ] Create a.txt\n");
    let progress = progress(&store);
    assert!(progress.contains(&"⚠️ Discovery failed: Discovery did not produce a valid plan file after primary + repair passes\n└ Falling back to direct execution".to_string()));
    // What discovery wrote is kept on a branch rather than lost.
    let [kept] = summary.kept_branches.as_slice() else {
        panic!("{:?}", summary.kept_branches)
    };
    assert!(progress.contains(&format!(
        "❌ **Task 1/1 failed**: Create a.txt\n└ {NO_PLAN_ERROR}\n└ changes kept on branch {kept}"
    )));
}

#[tokio::test]
async fn plan_text_in_the_reply_is_saved_as_a_fallback_plan() {
    let repo = Repo::new(&[("TASKS.md", "- [ ] Create a.txt\n")]);
    let agent = FakeAgent::new(|call| {
        if is_discovery(call) {
            // Never writes the file; sends the plan inline instead.
            return Action::Reply(format!("```markdown\n{}```\n", plan_body("Create a.txt")));
        }
        well_behaved(call)
    });
    let RunOutcome::Finished(summary) = run_anton(
        preflight(&repo, "TASKS.md", false, false),
        agent.clone(),
        null_sink(),
    )
    .await
    .unwrap() else {
        panic!()
    };
    assert_eq!(summary.completed, 1);
    let calls = agent.calls();
    assert_eq!(calls.len(), 2);
    let plan = plan_path(&calls[0]);
    assert_eq!(
        std::fs::read_to_string(plan).unwrap(),
        plan_body("Create a.txt")
    );
}

#[tokio::test]
async fn zero_change_implementation_gets_one_retry_session() {
    let repo = Repo::new(&[("TASKS.md", "- [ ] Create a.txt\n- [ ] Create b.txt\n")]);
    let agent = FakeAgent::new(|call| {
        if call.session_id.starts_with("anton-impl-retry-") {
            if call.message.contains("Task: Create a.txt") {
                std::fs::write(call.workspace.join("a.txt"), "x\n").unwrap();
            }
            return Action::Reply("Done now.".into());
        }
        if call.session_id.starts_with("anton-impl-") {
            return Action::Reply("I would create the file.".into());
        }
        well_behaved(call)
    });
    let (sink, store) = recorder();
    let RunOutcome::Finished(summary) = run_anton(
        preflight(&repo, "TASKS.md", false, false),
        agent.clone(),
        sink,
    )
    .await
    .unwrap() else {
        panic!()
    };
    assert_eq!((summary.completed, summary.skipped), (1, 1));
    assert_eq!(repo.log(), ["anton: Create a.txt", "init"]);
    let retries: Vec<AgentCall> = agent
        .calls()
        .into_iter()
        .filter(|c| c.session_id.starts_with("anton-impl-retry-"))
        .collect();
    assert_eq!(retries.len(), 2);
    assert!(retries[0].message.contains("made zero repository changes"));
    assert!(errors(&store).contains(&NO_CHANGES_ERROR.to_string()));
}

#[tokio::test]
async fn review_failure_is_not_fatal() {
    let repo = Repo::new(&[("TASKS.md", "- [ ] Create a.txt\n")]);
    let agent = FakeAgent::new(|call| {
        if call.session_id.starts_with("anton-review-") {
            return Action::Fail("review model unavailable".into());
        }
        well_behaved(call)
    });
    let (sink, store) = recorder();
    let RunOutcome::Finished(summary) =
        run_anton(preflight(&repo, "TASKS.md", true, false), agent, sink)
            .await
            .unwrap()
    else {
        panic!()
    };
    assert_eq!(summary.completed, 1);
    assert!(
        progress(&store).contains(
            &"⚠️ Review failed: review model unavailable\n└ Proceeding with unreviewed plan"
                .to_string()
        )
    );
}

#[tokio::test]
async fn preflight_disabled_in_config_forces_direct_mode() {
    let repo = Repo::new(&[("TASKS.md", "- [ ] Create a.txt\n")]);
    let mut opts = preflight(&repo, "TASKS.md", false, true);
    opts.config.preflight = Some(PreflightConfig {
        enabled: Some(false),
        codebase_snapshot: None,
    });
    opts.overrides.mode = Some(AntonMode::Preflight);
    let agent = FakeAgent::new(well_behaved);
    let (sink, store) = recorder();
    run_anton(opts, agent.clone(), sink).await.unwrap();
    assert_eq!(logs(&store)[0], "[Anton] Mode: direct");
    assert_eq!(agent.calls().len(), 1);
    assert!(agent.calls()[0].session_id.starts_with("anton-impl-"));
}

#[tokio::test]
async fn task_file_in_a_subdirectory_keeps_its_plans_out_of_commits() {
    // Workspace = repo root (`--workspace`), and workspace = the task file's directory.
    for at_root in [true, false] {
        let repo = Repo::new(&[("docs/TASKS.md", "- [ ] Create a.txt\n- [ ] Create b.txt\n")]);
        let mut opts = preflight(&repo, "docs/TASKS.md", false, false);
        let ws = if at_root {
            repo.path().to_path_buf()
        } else {
            repo.file("docs")
        };
        opts.workspace = at_root.then(|| ws.clone());
        let agent = FakeAgent::new(well_behaved);
        let RunOutcome::Finished(summary) =
            run_anton(opts, agent.clone(), null_sink()).await.unwrap()
        else {
            panic!()
        };
        assert_eq!(summary.completed, 2, "at_root={at_root}");
        // Agents work in the workspace; plans go next to the task file and survive every clean.
        assert!(agent.calls().iter().all(|c| c.workspace == ws));
        assert!(plan_path(&agent.calls()[0]).starts_with(repo.file("docs/.agents/tasks")));
        let plans = std::fs::read_dir(repo.file("docs/.agents/tasks"))
            .unwrap()
            .count();
        assert_eq!(plans, 2, "at_root={at_root}");
        let files = if at_root {
            "a.txt\nb.txt\ndocs/TASKS.md\n"
        } else {
            "docs/TASKS.md\ndocs/a.txt\ndocs/b.txt\n"
        };
        assert_eq!(git(repo.path(), &["ls-files"]), files);
        assert_eq!(
            repo.read("docs/TASKS.md"),
            "- [x] Create a.txt\n- [x] Create b.txt\n"
        );
    }
}
