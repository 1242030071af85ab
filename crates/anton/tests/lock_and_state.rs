//! The lock file, stop requests and status while a run is in progress.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::{Child, Command};
use std::sync::{Arc, Mutex};

use common::*;
use idlehands_anton::{
    AntonError, LockInfo, RunOutcome, null_sink, read_lock, read_state, request_stop, run_anton,
    status_text,
};

fn write_lock(state: &std::path::Path, pid: u32) {
    let info = LockInfo {
        pid,
        started_at: "2026-01-01T00:00:00.000Z".into(),
        force: false,
    };
    std::fs::write(
        state.join("anton.lock"),
        serde_json::to_string(&info).unwrap(),
    )
    .unwrap();
}

/// A live process whose command line mentions anton, like another `idlehands anton run`.
fn live_anton_process() -> Child {
    // The shell's `sleep` outlives the killed shell: with the test's stdout/stderr inherited
    // it held them open and the runner reported the test as leaking.
    Command::new("sh")
        .args(["-c", "sleep 120; echo anton"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

struct Reap(Child);
impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn create_a(call: &idlehands_anton::AgentCall) -> Action {
    std::fs::write(call.workspace.join("a.txt"), "a\n").unwrap();
    Action::Reply("ok".into())
}

#[tokio::test]
async fn a_live_lock_holder_blocks_unless_forced() {
    let repo = Repo::new(&[("TASKS.md", "- [ ] Create a.txt\n")]);
    let holder = Reap(live_anton_process());
    write_lock(repo.state.path(), holder.0.id());

    let agent = FakeAgent::new(create_a);
    let err = run_anton(repo.options("TASKS.md"), agent.clone(), null_sink())
        .await
        .unwrap_err();
    assert!(matches!(err, AntonError::LockHeld));
    assert_eq!(err.to_string(), "Anton is already running (lock held)");
    assert!(agent.calls().is_empty());
    // A refused run leaves the holder's lock alone.
    assert_eq!(read_lock(repo.state.path()).unwrap().pid, holder.0.id());

    let mut opts = repo.options("TASKS.md");
    opts.force = true;
    let seen = Arc::new(Mutex::new(None));
    let seen2 = seen.clone();
    let state_dir = repo.state.path().to_path_buf();
    let agent = FakeAgent::new(move |call| {
        *seen2.lock().unwrap() = read_lock(&state_dir);
        create_a(call)
    });
    let out = run_anton(opts, agent, null_sink()).await.unwrap();
    assert!(matches!(out, RunOutcome::Finished(s) if s.completed == 1));
    let during = seen.lock().unwrap().clone().unwrap();
    assert_eq!(during.pid, std::process::id());
    assert!(during.force);
    assert!(!repo.state.path().join("anton.lock").exists());
}

#[tokio::test]
async fn stale_locks_are_taken_over() {
    let repo = Repo::new(&[("TASKS.md", "- [ ] Create a.txt\n")]);

    // A pid that has exited.
    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    write_lock(repo.state.path(), dead_pid);
    let out = run_anton(
        repo.options("TASKS.md"),
        FakeAgent::new(create_a),
        null_sink(),
    )
    .await
    .unwrap();
    assert!(matches!(out, RunOutcome::Finished(s) if s.completed == 1));
    assert!(!repo.state.path().join("anton.lock").exists());

    // A live pid that is not anton (the pid was reused by something else).
    std::fs::write(
        repo.file("TASKS.md"),
        "- [x] Create a.txt\n- [ ] Create b.txt\n",
    )
    .unwrap();
    git(repo.path(), &["commit", "-qam", "more"]);
    let other = Reap(Command::new("sleep").arg("120").spawn().unwrap());
    write_lock(repo.state.path(), other.0.id());
    let agent = FakeAgent::new(|call| {
        std::fs::write(call.workspace.join("b.txt"), "b\n").unwrap();
        Action::Reply("ok".into())
    });
    let out = run_anton(repo.options("TASKS.md"), agent, null_sink())
        .await
        .unwrap();
    assert!(matches!(out, RunOutcome::Finished(s) if s.completed == 1));
}

#[tokio::test]
async fn a_lock_held_by_this_process_is_not_stale() {
    // The interactive `/anton` runs in-process; a second run there must be refused.
    let repo = Repo::new(&[("TASKS.md", "- [ ] Create a.txt\n")]);
    write_lock(repo.state.path(), std::process::id());
    let err = run_anton(
        repo.options("TASKS.md"),
        FakeAgent::new(create_a),
        null_sink(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, AntonError::LockHeld));
}

#[tokio::test]
async fn stop_request_is_honoured_before_the_next_task() {
    let repo = Repo::new(&[(
        "TASKS.md",
        "- [ ] Create a.txt\n- [ ] Create b.txt\n- [ ] Create c.txt\n",
    )]);
    let state_dir = repo.state.path().to_path_buf();
    let status_seen = Arc::new(Mutex::new(Vec::new()));
    let status_seen2 = status_seen.clone();
    let agent = FakeAgent::new(move |call| {
        let task = task_of(&call.message);
        status_seen2.lock().unwrap().push(status_text(&state_dir));
        if task == "Create a.txt" {
            // `anton stop` from another terminal while task 1 runs.
            assert_eq!(
                request_stop(&state_dir).unwrap(),
                "Anton stop requested. It will stop after current task."
            );
        }
        let name = task.split_whitespace().last().unwrap().to_string();
        std::fs::write(call.workspace.join(name), "x\n").unwrap();
        Action::Reply("ok".into())
    });
    let (sink, store) = recorder();
    let out = run_anton(repo.options("TASKS.md"), agent.clone(), sink)
        .await
        .unwrap();
    let RunOutcome::Finished(summary) = out else {
        panic!()
    };
    assert!(summary.stopped);
    assert_eq!(
        (summary.completed, summary.skipped, summary.total),
        (1, 0, 3)
    );
    assert_eq!(agent.calls().len(), 1);
    assert_eq!(
        repo.read("TASKS.md"),
        "- [x] Create a.txt\n- [ ] Create b.txt\n- [ ] Create c.txt\n"
    );
    assert_eq!(
        status_seen.lock().unwrap()[0],
        format!(
            "Anton running: 0/3 complete | file={} | current=1",
            repo.file("TASKS.md").display()
        )
    );
    let logs = logs(&store);
    assert!(logs.contains(&"Anton stop acknowledged.".to_string()));
    let progress = progress(&store);
    assert!(progress.contains(&"🛑 **Anton stopped** (1/3 completed before stop)".to_string()));
    assert!(
        progress
            .last()
            .unwrap()
            .starts_with("\n🏁 **Anton finished**\n✅ Completed: 1/3\n")
    );

    let state = read_state(repo.state.path());
    assert!(!state.running);
    assert_eq!(state.stop_requested, Some(false));
    assert!(
        status_text(repo.state.path()).starts_with(
            "Anton is idle.\nAnton finished: completed=1, skipped=0, total=3, duration="
        )
    );
    assert_eq!(
        request_stop(repo.state.path()).unwrap(),
        "Anton is not running."
    );
}

#[tokio::test]
async fn a_background_run_streams_progress_and_cleans_up_when_aborted() {
    // The interactive `/anton` spawns the run and forwards progress from a channel.
    let repo = Repo::new(&[("TASKS.md", "- [ ] Create a.txt\n- [ ] Wait forever\n")]);
    let agent = FakeAgent::new(|call| {
        if call.message.contains("Task: Wait forever") {
            return Action::Hang;
        }
        create_a(call)
    });
    let (sink, mut rx) = idlehands_anton::channel_sink();
    let handle = tokio::spawn(run_anton(repo.options("TASKS.md"), agent, sink));

    let mut seen = Vec::new();
    let wanted = "\n🔪 **Task 2/2**: Wait forever";
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while !seen.iter().any(|m: &String| m == wanted) {
        let msg = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("progress within 60s")
            .expect("channel open");
        if let idlehands_anton::AntonMessage::Progress(e) = msg {
            seen.push(idlehands_anton::format_progress_message(&e));
        }
    }
    assert!(seen.contains(&"✅ **Task 1/2 complete**: Create a.txt".to_string()));
    assert!(status_text(repo.state.path()).starts_with("Anton running: 1/2 complete | file="));
    assert!(repo.state.path().join("anton.lock").exists());

    handle.abort();
    assert!(handle.await.unwrap_err().is_cancelled());
    assert!(!repo.state.path().join("anton.lock").exists());
    assert!(!read_state(repo.state.path()).running);
    assert_eq!(status_text(repo.state.path()), "Anton is idle.");
    assert_eq!(repo.log(), ["anton: Create a.txt", "init"]);
}
