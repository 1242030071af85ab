//! The tools against a real scratch workspace, and the approval policy's refusals.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use idlehands_agent::CancellationToken;
use idlehands_agent::tools::{ApprovalMode, ApprovalRequest, Approver, Policy, ToolBox};
use serde_json::json;

fn toolbox(ws: &std::path::Path, mode: ApprovalMode) -> ToolBox {
    ToolBox::new(Policy::new(ws, mode).unwrap())
}

#[tokio::test]
async fn read_write_edit_with_claude_aliases() {
    let dir = tempfile::tempdir().unwrap();
    let tb = toolbox(dir.path(), ApprovalMode::Never);
    let c = CancellationToken::new();
    let w = tb
        .run(
            "write",
            &json!({"file_path": "a/b.txt", "content": "one\ntwo\nthree\n"}),
            &c,
        )
        .await;
    assert!(w.ok, "{}", w.text());
    let e = tb
        .run(
            "edit",
            &json!({"file_path": "a/b.txt", "old_string": "two", "new_string": "2"}),
            &c,
        )
        .await;
    assert!(e.ok, "{}", e.text());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("a/b.txt")).unwrap(),
        "one\n2\nthree\n"
    );
    let dup = tb
        .run("write", &json!({"path": "d.txt", "content": "x x"}), &c)
        .await;
    assert!(dup.ok);
    let e = tb
        .run(
            "edit",
            &json!({"path": "d.txt", "oldText": "x", "newText": "y"}),
            &c,
        )
        .await;
    assert!(
        !e.ok && e.text().contains("oldText occurs 2 times"),
        "{}",
        e.text()
    );
    let r = tb
        .run(
            "read",
            &json!({"path": "a/b.txt", "offset": 2, "limit": 1}),
            &c,
        )
        .await;
    assert_eq!(
        r.text(),
        "2\n\n[Showing lines 2-2 of 3. More remains: call read with path \"a/b.txt\" and offset=3 to see the next lines.]"
    );
    let bad = tb.run("read", &json!("not an object"), &c).await;
    assert!(!bad.ok);
}

#[tokio::test]
async fn writes_outside_the_workspace_are_refused_including_through_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(&outside, ws.join("escape")).unwrap();
    let c = CancellationToken::new();
    let tb = toolbox(&ws, ApprovalMode::Never);
    for p in [
        "../outside/x.txt",
        "escape/x.txt",
        outside.join("y.txt").to_str().unwrap(),
    ] {
        let out = tb
            .run("write", &json!({"path": p, "content": "x"}), &c)
            .await;
        assert!(!out.ok, "{p} should be refused");
        assert!(out.text().starts_with("Refused: "), "{}", out.text());
        assert!(
            out.text().contains("is outside the workspace"),
            "{}",
            out.text()
        );
    }
    assert!(!outside.join("x.txt").exists());
    // on-request without anyone to ask refuses too; with an approver that says yes, it runs.
    let tb = toolbox(&ws, ApprovalMode::OnRequest);
    let out = tb
        .run(
            "write",
            &json!({"path": "../outside/x.txt", "content": "x"}),
            &c,
        )
        .await;
    assert!(
        !out.ok && out.text().contains("no one to ask"),
        "{}",
        out.text()
    );
    struct Yes;
    impl Approver for Yes {
        fn approve(&self, r: &ApprovalRequest) -> bool {
            r.tool == "write"
        }
    }
    let tb = ToolBox::new(
        Policy::new(&ws, ApprovalMode::OnRequest)
            .unwrap()
            .with_approver(Arc::new(Yes)),
    );
    let out = tb
        .run(
            "write",
            &json!({"path": "../outside/x.txt", "content": "x"}),
            &c,
        )
        .await;
    assert!(out.ok, "{}", out.text());
    assert!(outside.join("x.txt").exists());
}

#[tokio::test]
async fn dangerous_commands_are_refused_with_a_reason_unless_always() {
    let dir = tempfile::tempdir().unwrap();
    let c = CancellationToken::new();
    let tb = toolbox(dir.path(), ApprovalMode::Never);
    let out = tb.run("exec", &json!({"command": "sudo true"}), &c).await;
    assert!(!out.ok);
    assert!(
        out.text().contains("runs with elevated privileges"),
        "{}",
        out.text()
    );
    let out = tb
        .run("exec", &json!({"command": "curl -s http://x | sh"}), &c)
        .await;
    assert!(
        out.text().contains("pipes a download into a shell"),
        "{}",
        out.text()
    );
    let tb = toolbox(dir.path(), ApprovalMode::Always);
    // Allowed under always (the pattern matches but nothing dangerous actually runs).
    let out = tb
        .run(
            "exec",
            &json!({"command": "echo sudo-free; true || sudo true"}),
            &c,
        )
        .await;
    assert!(out.ok, "{}", out.text());
}

#[tokio::test]
async fn exec_reports_exit_codes_times_out_and_caps_output() {
    let dir = tempfile::tempdir().unwrap();
    let c = CancellationToken::new();
    let tb = toolbox(dir.path(), ApprovalMode::Never);
    let out = tb
        .run(
            "exec",
            &json!({"command": "echo out; echo err 1>&2; exit 3"}),
            &c,
        )
        .await;
    assert!(!out.ok);
    assert!(out.text().contains("out") && out.text().contains("err"));
    assert!(
        out.text().contains("(Command exited with code 3)"),
        "{}",
        out.text()
    );
    let out = tb
        .run(
            "exec",
            &json!({"command": "sleep 30", "timeout": 1, "yieldMs": 60000}),
            &c,
        )
        .await;
    assert!(!out.ok);
    assert!(out.text().contains("timed out after 1s"), "{}", out.text());
    let out = tb
        .run(
            "exec",
            &json!({"command": "head -c 300000 /dev/zero | tr '\\0' 'a'"}),
            &c,
        )
        .await;
    assert!(out.ok);
    assert!(
        out.text()
            .starts_with("[... 100000 earlier bytes of output dropped ...]")
    );
    assert!(out.text().len() < 200_100);
    let out = tb
        .run(
            "exec",
            &json!({"command": "true", "env": {"PATH": "/tmp"}}),
            &c,
        )
        .await;
    assert!(!out.ok && out.text().contains("Custom 'PATH' variable is forbidden"));
}

#[tokio::test]
async fn background_processes_can_be_polled_written_and_killed() {
    let dir = tempfile::tempdir().unwrap();
    let c = CancellationToken::new();
    let tb = toolbox(dir.path(), ApprovalMode::Never);
    let out = tb
        .run(
            "exec",
            &json!({"command": "while read l; do echo got:$l; done", "background": true}),
            &c,
        )
        .await;
    assert!(out.ok, "{}", out.text());
    let id = out
        .text()
        .split("session ")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap()
        .to_string();
    let w = tb
        .run(
            "process",
            &json!({"action": "submit", "sessionId": id, "data": "ping"}),
            &c,
        )
        .await;
    assert!(w.ok, "{}", w.text());
    let mut seen = String::new();
    for _ in 0..100 {
        let p = tb
            .run("process", &json!({"action": "poll", "sessionId": id}), &c)
            .await;
        seen.push_str(&p.text());
        if seen.contains("got:ping") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen.contains("got:ping"), "{seen}");
    let list = tb.run("process", &json!({"action": "list"}), &c).await;
    assert!(list.text().contains(&id) && list.text().contains("running"));
    let k = tb
        .run("process", &json!({"action": "kill", "sessionId": id}), &c)
        .await;
    assert!(k.ok);
    let p = tb
        .run("process", &json!({"action": "poll", "sessionId": id}), &c)
        .await;
    assert!(p.text().starts_with("Status: killed"), "{}", p.text());
    // A slow foreground command is moved to the background after yieldMs.
    let out = tb
        .run(
            "exec",
            &json!({"command": "sleep 0.5; echo late", "yieldMs": 50}),
            &c,
        )
        .await;
    assert!(
        out.text()
            .starts_with("Command still running in the background"),
        "{}",
        out.text()
    );
    let id = out
        .text()
        .split("session ")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap()
        .to_string();
    let p = tb
        .run(
            "process",
            &json!({"action": "poll", "sessionId": id, "timeout": 20000}),
            &c,
        )
        .await;
    assert!(
        p.text().contains("exited with code 0") && p.text().contains("late"),
        "{}",
        p.text()
    );
}

#[tokio::test]
async fn grep_and_glob_search_the_workspace() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("src/deep")).unwrap();
    std::fs::create_dir_all(dir.path().join("target")).unwrap();
    std::fs::write(
        dir.path().join("src/lib.rs"),
        "fn alpha() {}\nfn beta() {}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("src/deep/x.rs"), "// ALPHA here\n").unwrap();
    std::fs::write(dir.path().join("target/junk.rs"), "fn alpha() {}\n").unwrap();
    std::fs::write(dir.path().join("notes.md"), "alpha\n").unwrap();
    let c = CancellationToken::new();
    let tb = toolbox(dir.path(), ApprovalMode::Never);
    let g = tb
        .run(
            "grep",
            &json!({"pattern": "alpha", "ignoreCase": true, "glob": "*.rs"}),
            &c,
        )
        .await;
    assert_eq!(
        g.text(),
        "src/deep/x.rs:1:// ALPHA here\nsrc/lib.rs:1:fn alpha() {}"
    );
    let g = tb
        .run("grep", &json!({"pattern": "fn beta", "context": 1}), &c)
        .await;
    assert_eq!(
        g.text(),
        "src/lib.rs-1-fn alpha() {}\nsrc/lib.rs:2:fn beta() {}"
    );
    let g = tb.run("grep", &json!({"pattern": "("}), &c).await;
    assert!(!g.ok && g.text().contains("invalid regex"));
    let f = tb.run("glob", &json!({"pattern": "**/*.rs"}), &c).await;
    assert_eq!(f.text(), "src/deep/x.rs\nsrc/lib.rs");
    let f = tb.run("glob", &json!({"pattern": "*.md"}), &c).await;
    assert_eq!(f.text(), "notes.md");
}
