//! Direct mode end to end: real git repos, scripted agents.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use idlehands_anton::{
    AgentCall, AntonError, AntonMessage, NO_CHANGES_ERROR, Overrides, ProgressEvent, RunOutcome,
    null_sink, read_state, run_anton, status_text,
};

/// Creates the file a task names ("Create notes/a.txt" → notes/a.txt).
fn create_named_file(call: &AgentCall) -> Action {
    let task = task_of(&call.message);
    let name = task
        .split_whitespace()
        .last()
        .unwrap_or("x.txt")
        .to_string();
    let path = call.workspace.join(&name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("done: {task}\n")).unwrap();
    Action::Reply(format!("Created {name}."))
}

#[tokio::test]
async fn each_task_is_marked_done_and_committed() {
    let repo = Repo::new(&[(
        "TASKS.md",
        "# Work\n\n- [ ] Create a.txt\n  - [ ] Create notes/b.txt\n- [x] Already done\n* [ ] not a task\n",
    )]);
    let agent = FakeAgent::new(create_named_file);
    let (sink, store) = recorder();

    let out = run_anton(repo.options("TASKS.md"), agent.clone(), sink)
        .await
        .unwrap();
    let RunOutcome::Finished(summary) = out else {
        panic!("{out:?}")
    };
    assert_eq!(
        (summary.completed, summary.skipped, summary.total),
        (2, 0, 2)
    );
    assert!(!summary.stopped);
    assert!(
        summary
            .summary
            .starts_with("Anton finished: completed=2, skipped=0, total=2, duration="),
        "{}",
        summary.summary
    );

    assert_eq!(
        repo.read("TASKS.md"),
        "# Work\n\n- [x] Create a.txt\n  - [x] Create notes/b.txt\n- [x] Already done\n* [ ] not a task\n"
    );
    assert_eq!(
        repo.log(),
        ["anton: Create notes/b.txt", "anton: Create a.txt", "init"]
    );
    assert_eq!(repo.status(), "", "everything committed");
    let first = git(repo.path(), &["show", "--stat", "--format=", "HEAD~1"]);
    assert!(
        first.contains("TASKS.md") && first.contains("a.txt"),
        "{first}"
    );

    // Each task got its own fresh session in the repo, with the workspace system prompt.
    let calls = agent.calls();
    assert_eq!(calls.len(), 2);
    assert!(calls[0].session_id.starts_with("anton-impl-") && calls[0].session_id.ends_with("-1"));
    assert!(calls[1].session_id.ends_with("-2"));
    assert_ne!(calls[0].session_id, calls[1].session_id);
    assert!(calls[0].message.starts_with(
        "You are executing one item from a managed checklist.\nTask: Create a.txt\nRules:\n1) "
    ));
    assert_eq!(
        calls[0].extra_system_prompt.lines().next().unwrap(),
        format!("Your working directory is: {}", repo.path().display())
    );
    assert_eq!(calls[0].timeout, std::time::Duration::from_secs(1200));

    let logs = logs(&store);
    assert_eq!(logs[0], "[Anton] Mode: direct");
    assert_eq!(logs[1], "\n[Anton] Task 1/2: Create a.txt");
    assert_eq!(logs[2], "\n[Anton] Task 2/2: Create notes/b.txt");
    assert_eq!(logs[3], format!("\n{}", summary.summary));

    let progress = progress(&store);
    assert_eq!(
        progress[0],
        "🤚 **Anton activated**\n📄 Task file: `TASKS.md`\n📋 2 tasks pending"
    );
    assert_eq!(progress[1], "\n🔪 **Task 1/2**: Create a.txt");
    assert_eq!(progress[2], "🛠️ Implementation: direct execution");
    assert_eq!(
        progress[3],
        format!("🤖 Agent spawned (session: `{}`)", calls[0].session_id)
    );
    assert_eq!(progress[4], "✅ **Task 1/2 complete**: Create a.txt");
    assert!(
        progress
            .last()
            .unwrap()
            .starts_with("\n🏁 **Anton finished**\n✅ Completed: 2/2\n⏱️ Duration: ")
    );

    // Lock released, state idle with the summary.
    assert!(!repo.state.path().join("anton.lock").exists());
    let state = read_state(repo.state.path());
    assert!(!state.running);
    assert_eq!(state.completed, Some(2));
    assert_eq!(
        status_text(repo.state.path()),
        format!("Anton is idle.\n{}", summary.summary)
    );
}

#[tokio::test]
async fn failing_idle_and_hanging_tasks_are_reset_and_skipped() {
    let repo = Repo::new(&[(
        "TASKS.md",
        "- [ ] Create a.txt\n- [ ] Think about it\n- [ ] Explode\n- [ ] Hang\n- [ ] Create b.txt\n",
    )]);
    let agent = FakeAgent::new(|call| {
        let task = task_of(&call.message);
        match task.as_str() {
            "Think about it" => Action::Reply("I thought about it.".into()),
            "Explode" => {
                // Half-done work must not leak into the next task.
                std::fs::write(call.workspace.join("partial.txt"), "x").unwrap();
                std::fs::write(call.workspace.join("TASKS.md"), "clobbered\n").unwrap();
                Action::Fail("model returned 500".into())
            }
            "Hang" => {
                std::fs::write(call.workspace.join("hang.txt"), "x").unwrap();
                Action::Hang
            }
            _ => create_named_file(call),
        }
    });
    let (sink, store) = recorder();
    let mut opts = repo.options("TASKS.md");
    opts.overrides = Overrides {
        timeout_sec: Some(2),
        ..Overrides::default()
    };

    let RunOutcome::Finished(summary) = run_anton(opts, agent, sink).await.unwrap() else {
        panic!()
    };
    assert_eq!(
        (summary.completed, summary.skipped, summary.total),
        (2, 3, 5)
    );
    assert_eq!(
        repo.read("TASKS.md"),
        "- [x] Create a.txt\n- [ ] Think about it\n- [ ] Explode\n- [ ] Hang\n- [x] Create b.txt\n"
    );
    assert_eq!(
        repo.log(),
        ["anton: Create b.txt", "anton: Create a.txt", "init"]
    );
    assert!(!repo.file("partial.txt").exists());
    assert!(!repo.file("hang.txt").exists());
    assert_eq!(repo.status(), "");

    // The failed and the timed-out task's changes are kept on a branch each, not lost.
    assert_eq!(
        summary.kept_branches.len(),
        2,
        "{:?}",
        summary.kept_branches
    );
    let (explode, hang) = (&summary.kept_branches[0], &summary.kept_branches[1]);
    assert!(explode.starts_with("anton/unfinished-3-"), "{explode}");
    assert!(hang.starts_with("anton/unfinished-4-"), "{hang}");
    assert_eq!(
        git(
            repo.dir.path(),
            &["show", &format!("{explode}:partial.txt")]
        ),
        "x"
    );
    assert_eq!(
        git(repo.dir.path(), &["show", &format!("{hang}:hang.txt")]),
        "x"
    );
    let errors = errors(&store);
    assert_eq!(
        errors,
        [
            "[Anton] Task failed and was skipped: Think about it".to_string(),
            NO_CHANGES_ERROR.to_string(),
            "[Anton] Task failed and was skipped: Explode".to_string(),
            "model returned 500".to_string(),
            format!("[Anton] The task's changes were kept on branch {explode}"),
            "[Anton] Task failed and was skipped: Hang".to_string(),
            "Agent call timed out after 2s".to_string(),
            format!("[Anton] The task's changes were kept on branch {hang}"),
        ]
    );
    let progress = progress(&store);
    assert!(progress.contains(&format!(
        "❌ **Task 2/5 failed**: Think about it\n└ {NO_CHANGES_ERROR}"
    )));
    assert!(progress.contains(&format!(
        "❌ **Task 3/5 failed**: Explode\n└ model returned 500\n└ changes kept on branch {explode}"
    )));
    assert!(
        progress
            .last()
            .unwrap()
            .contains("✅ Completed: 2/5\n⏭️ Skipped: 3\n")
    );
    let state = read_state(repo.state.path());
    assert_eq!((state.completed, state.skipped), (Some(2), Some(3)));
}

#[tokio::test]
async fn doc_review_tasks_may_change_nothing() {
    let repo = Repo::new(&[
        ("TASKS.md", "- [ ] Review the README for typos\n"),
        ("README.md", "hi\n"),
    ]);
    let agent = FakeAgent::new(|_| Action::Reply("Looks fine.".into()));
    let RunOutcome::Finished(summary) =
        run_anton(repo.options("TASKS.md"), agent.clone(), null_sink())
            .await
            .unwrap()
    else {
        panic!()
    };
    assert_eq!(summary.completed, 1);
    assert!(
        agent.calls()[0]
            .message
            .contains("Do not run the test suite")
    );
    // The only change is the checked box, committed under the task's name.
    assert_eq!(repo.log(), ["anton: Review the README for typos", "init"]);
    assert_eq!(repo.read("TASKS.md"), "- [x] Review the README for typos\n");
}

#[tokio::test]
async fn dirty_tree_is_refused_but_plan_files_do_not_count() {
    let repo = Repo::new(&[("TASKS.md", "- [ ] Create a.txt\n")]);
    std::fs::write(repo.file("stray.txt"), "x").unwrap();
    let agent = FakeAgent::new(create_named_file);
    let err = run_anton(repo.options("TASKS.md"), agent.clone(), null_sink())
        .await
        .unwrap_err();
    assert!(matches!(err, AntonError::DirtyRepo { .. }));
    assert_eq!(
        err.to_string(),
        format!(
            "Anton requires a clean git working tree. Dirty repo at: {}",
            repo.path().display()
        )
    );
    assert!(agent.calls().is_empty());
    assert!(!repo.state.path().join("anton.lock").exists());

    std::fs::remove_file(repo.file("stray.txt")).unwrap();
    std::fs::create_dir_all(repo.file(".agents/tasks")).unwrap();
    std::fs::write(repo.file(".agents/tasks/old-plan.md"), "# old\n").unwrap();
    let RunOutcome::Finished(summary) = run_anton(repo.options("TASKS.md"), agent, null_sink())
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(summary.completed, 1);
    // Plan files survive the hard clean and stay out of commits.
    assert!(repo.file(".agents/tasks/old-plan.md").exists());
    assert_eq!(git(repo.path(), &["ls-files"]), "TASKS.md\na.txt\n");
}

#[tokio::test]
async fn a_directory_outside_git_is_reported_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("T.md"), "- [ ] one\n").unwrap();
    let opts = idlehands_anton::RunOptions {
        task_file: dir.path().join("T.md"),
        state_dir: state.path().to_path_buf(),
        ..Default::default()
    };
    let err = run_anton(opts, FakeAgent::new(|_| Action::Hang), null_sink())
        .await
        .unwrap_err();
    assert!(matches!(err, AntonError::Git { .. }), "{err}");
    assert!(err.to_string().contains("not a git repository"), "{err}");
    assert!(!state.path().join("anton.lock").exists());
}

#[tokio::test]
async fn dry_run_lists_pending_tasks_without_git_or_lock() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("T.md"),
        "- [ ] one\n- [x] two\n  - [ ] three\n",
    )
    .unwrap();
    let (sink, store) = recorder();
    let agent = FakeAgent::new(|_| Action::Fail("must not be called".into()));
    let opts = idlehands_anton::RunOptions {
        task_file: dir.path().join("T.md"),
        state_dir: state.path().to_path_buf(),
        dry_run: true,
        ..Default::default()
    };
    let out = run_anton(opts, agent.clone(), sink).await.unwrap();
    assert_eq!(
        out,
        RunOutcome::DryRun {
            tasks: vec!["one".into(), "three".into()]
        }
    );
    assert_eq!(
        logs(&store),
        ["Dry run: 2 pending task(s)", "- [ ] one", "- [ ] three"]
    );
    assert!(agent.calls().is_empty());
    assert!(std::fs::read_dir(state.path()).unwrap().next().is_none());
}

#[tokio::test]
async fn no_pending_tasks_reports_and_finishes() {
    let repo = Repo::new(&[("TASKS.md", "- [x] done\n")]);
    let (sink, store) = recorder();
    let out = run_anton(
        repo.options("TASKS.md"),
        FakeAgent::new(|_| Action::Hang),
        sink,
    )
    .await
    .unwrap();
    assert_eq!(out, RunOutcome::NoPendingTasks);
    let all = store.lock().unwrap().clone();
    assert_eq!(
        all,
        [
            AntonMessage::Log("No pending tasks.".into()),
            AntonMessage::Progress(ProgressEvent::Finish {
                completed: 0,
                skipped: 0,
                total: 0,
                duration_ms: 0
            })
        ]
    );
}

#[tokio::test]
async fn invalid_thinking_level_is_rejected_before_anything_runs() {
    let repo = Repo::new(&[("TASKS.md", "- [ ] Create a.txt\n")]);
    let mut opts = repo.options("TASKS.md");
    opts.overrides.thinking = Some("extreme".into());
    let agent = FakeAgent::new(create_named_file);
    let err = run_anton(opts, agent.clone(), null_sink())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Invalid --thinking level. Use one of: off, minimal, low, medium, high, xhigh."
    );
    assert!(agent.calls().is_empty());

    let mut opts = repo.options("TASKS.md");
    opts.overrides.thinking = Some("high".into());
    run_anton(opts, agent.clone(), null_sink()).await.unwrap();
    assert_eq!(agent.calls()[0].thinking.as_deref(), Some("high"));
}

#[tokio::test]
async fn json_task_files_are_run_and_marked_done() {
    let tasks = r#"{
  "tasks": [
    {"name": "Create a.txt", "details": "Plain text", "subtasks": [{"name": "header", "details": "first line"}, {"name": "old", "done": true}]},
    {"name": "Skip me", "status": "done"},
    {"name": "Create b.txt"}
  ]
}
"#;
    let repo = Repo::new(&[("tasks.json", tasks)]);
    let agent = FakeAgent::new(create_named_file);
    let RunOutcome::Finished(summary) =
        run_anton(repo.options("tasks.json"), agent.clone(), null_sink())
            .await
            .unwrap()
    else {
        panic!()
    };
    assert_eq!((summary.completed, summary.total), (2, 2));
    assert!(
        agent.calls()[0].message.contains(
            "Task: Create a.txt\nDetails: Plain text\nSubtasks:\n- header: first line\nRules:"
        ),
        "{}",
        agent.calls()[0].message
    );
    let v: serde_json::Value = serde_json::from_str(&repo.read("tasks.json")).unwrap();
    assert_eq!(v["tasks"][0]["done"], true);
    assert_eq!(v["tasks"][0]["status"], "complete");
    assert_eq!(v["tasks"][2]["done"], true);
    assert!(
        repo.read("tasks.json")
            .contains("\n  \"tasks\": [\n    {\n      \"name\": \"Create a.txt\",")
    );
    assert_eq!(
        repo.log(),
        ["anton: Create b.txt", "anton: Create a.txt", "init"]
    );

    std::fs::write(repo.file("tasks.json"), "{\"tasks\": [").unwrap();
    let err = run_anton(repo.options("tasks.json"), agent, null_sink())
        .await
        .unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "Invalid JSON task file: {} (",
            repo.file("tasks.json").display()
        )),
        "{err}"
    );
}
