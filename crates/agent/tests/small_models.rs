//! The interface built for small local models: tool feedback a model can correct itself
//! from, guardrails at the tool, the minimal tool profile and its prompt, and the usage of a
//! turn that fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use idlehands_agent::agent::{AgentError, AgentEvent};
use idlehands_agent::tools::{ApprovalMode, Policy, ToolBox, ToolProfile};
use idlehands_agent::{CancellationToken, UserInput};
use idlehands_testkit::{FakeOpenAi, Reply};
use serde_json::{Value, json};

fn toolbox(ws: &std::path::Path) -> ToolBox {
    ToolBox::new(Policy::new(ws, ApprovalMode::Never).unwrap())
}

const CALC: &str = "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n\n\ndef sub(a, b):\n    return a - b\n";

#[tokio::test]
async fn edit_feedback_shows_the_file_the_model_must_correct_from() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("calc.py"), CALC).unwrap();
    let tb = toolbox(dir.path());
    let c = CancellationToken::new();

    // A near miss (wrong indentation): the region is shown with line numbers.
    let miss = tb
        .run(
            "edit",
            &json!({"path": "calc.py", "oldText": "def add(a, b):\n  return a - b", "newText": "x"}),
            &c,
        )
        .await;
    assert!(!miss.ok);
    let t = miss.text();
    assert!(t.contains("The closest text is at lines 1-2"), "{t}");
    assert!(t.contains("only in whitespace or indentation"), "{t}");
    assert!(t.contains(">1| def add(a, b):"), "{t}");
    assert!(t.contains(">2|     return a - b"), "{t}");
    assert!(t.contains("You have not read"), "{t}");
    // Once the file has been read, the reminder is gone.
    assert!(tb.run("read", &json!({"path": "calc.py"}), &c).await.ok);
    let again = tb
        .run(
            "edit",
            &json!({"path": "./calc.py", "oldText": "def add(a, b):\n  return a - b", "newText": "x"}),
            &c,
        )
        .await;
    assert!(!again.ok);
    assert!(
        !again.text().contains("You have not read"),
        "{}",
        again.text()
    );

    // Ambiguous: every match listed, and replace_all offered.
    let amb = tb
        .run(
            "edit",
            &json!({"path": "calc.py", "oldText": "return a - b", "newText": "return a + b"}),
            &c,
        )
        .await;
    assert!(!amb.ok);
    let t = amb.text();
    assert!(t.contains("occurs 2 times"), "{t}");
    assert!(t.contains("line 2: return a - b"), "{t}");
    assert!(t.contains("line 10: return a - b"), "{t}");
    assert!(t.contains("\"replace_all\": true"), "{t}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("calc.py")).unwrap(),
        CALC
    );

    // A no-op is an error, and the file is untouched.
    let noop = tb
        .run(
            "edit",
            &json!({"path": "calc.py", "oldText": "return a * b", "newText": "return a * b"}),
            &c,
        )
        .await;
    assert!(!noop.ok);
    assert!(
        noop.text().contains("would change nothing"),
        "{}",
        noop.text()
    );

    // A unique edit shows the changed line with context.
    let ok = tb
        .run(
            "edit",
            &json!({"path": "calc.py", "oldText": "def add(a, b):\n    return a - b", "newText": "def add(a, b):\n    return a + b"}),
            &c,
        )
        .await;
    assert!(ok.ok, "{}", ok.text());
    let t = ok.text();
    assert!(t.contains("replaced 1 occurrence"), "{t}");
    assert!(t.contains(">2|     return a + b"), "{t}");
    assert!(t.contains(" 5| def mul(a, b):"), "{t}");

    // replace_all replaces every occurrence and shows each.
    let all = tb
        .run(
            "edit",
            &json!({"path": "calc.py", "oldText": "(a, b)", "newText": "(x, y)", "replace_all": true}),
            &c,
        )
        .await;
    assert!(all.ok, "{}", all.text());
    assert!(
        all.text().contains("replaced 3 occurrences"),
        "{}",
        all.text()
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("calc.py"))
            .unwrap()
            .matches("(x, y)")
            .count(),
        3
    );
}

#[tokio::test]
async fn reading_a_long_file_says_how_to_page() {
    let dir = tempfile::tempdir().unwrap();
    let body: String = (1..=2500).map(|i| format!("line {i}\n")).collect();
    std::fs::write(dir.path().join("long.txt"), body).unwrap();
    let tb = toolbox(dir.path());
    let r = tb
        .run(
            "read",
            &json!({"path": "long.txt"}),
            &CancellationToken::new(),
        )
        .await;
    assert!(r.ok);
    let t = r.text();
    assert!(
        t.contains(
            "[Showing lines 1-2000 of 2500. More remains: call read with path \"long.txt\" and offset=2001"
        ),
        "{}",
        &t[t.len() - 200..]
    );
}

#[tokio::test]
async fn an_edit_that_breaks_python_is_reported_at_once() {
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("python3 is not installed: the Python check is not made, skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("calc.py"), CALC).unwrap();
    let tb = toolbox(dir.path());
    let r = tb
        .run(
            "edit",
            &json!({"path": "calc.py", "oldText": "def mul(a, b):", "newText": "def mul(a, b:"}),
            &CancellationToken::new(),
        )
        .await;
    // The edit is made (the model asked for it) and the breakage is named with its line.
    assert!(r.ok);
    let t = r.text();
    assert!(t.contains("WARNING: syntax check failed"), "{t}");
    assert!(t.contains("python3 ast.parse"), "{t}");
    assert!(t.contains("line 5"), "{t}");
    assert!(t.contains("this change broke it"), "{t}");
}

#[tokio::test]
async fn a_write_that_breaks_rust_brackets_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let tb = toolbox(dir.path());
    let r = tb
        .run(
            "write",
            &json!({"path": "src/lib.rs", "content": "pub fn f() -> u8 {\n    if true { 1 } else { 2 }\n"}),
            &CancellationToken::new(),
        )
        .await;
    assert!(r.ok);
    assert!(
        r.text()
            .contains("(bracket balance): line 1: `{` is never closed"),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn an_unknown_process_id_lists_the_live_ones() {
    let dir = tempfile::tempdir().unwrap();
    let tb = toolbox(dir.path());
    let c = CancellationToken::new();
    let none = tb
        .run(
            "process",
            &json!({"action": "poll", "sessionId": "1234567890"}),
            &c,
        )
        .await;
    assert!(!none.ok);
    assert!(
        none.text().contains("there are no background processes"),
        "{}",
        none.text()
    );
    let started = tb
        .run(
            "exec",
            &json!({"command": "sleep 30", "background": true}),
            &c,
        )
        .await;
    assert!(started.ok, "{}", started.text());
    let wrong = tb
        .run(
            "process",
            &json!({"action": "poll", "sessionId": "1234567890"}),
            &c,
        )
        .await;
    assert!(!wrong.ok);
    let t = wrong.text();
    assert!(t.contains("The background processes are:"), "{t}");
    assert!(t.contains("sleep 30"), "{t}");
    tb.processes.kill_all().await;
}

#[tokio::test]
async fn the_minimal_profile_offers_four_tools_and_runs_exec_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut tb = toolbox(dir.path());
    tb.profile = ToolProfile::Minimal;
    let names: Vec<String> = tb.specs().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["read", "write", "edit", "exec"]);
    let c = CancellationToken::new();
    let refused = tb.run("process", &json!({"action": "list"}), &c).await;
    assert!(!refused.ok);
    assert!(
        refused.text().contains(
            "not available (tools.profile is minimal); available: read, write, edit, exec"
        ),
        "{}",
        refused.text()
    );
    // yieldMs would background the command; under minimal it runs to the end.
    let r = tb
        .run(
            "exec",
            &json!({"command": "sleep 0.3; echo finished", "yieldMs": 10}),
            &c,
        )
        .await;
    assert!(r.ok, "{}", r.text());
    assert!(r.text().contains("finished"), "{}", r.text());
}

fn tool_names(body: &Value) -> Vec<String> {
    body["tools"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| t["function"]["name"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn system_prompt(body: &Value) -> String {
    body["messages"][0]["content"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[tokio::test]
async fn a_configured_small_model_gets_the_minimal_profile_and_the_test_command() {
    let up = FakeOpenAi::start().await;
    let s = Scratch::new();
    s.write_config(&format!(
        "{{ models: {{ providers: {{ {} }} }}, agents: {{ defaults: {{ model: {{ primary: 'local/q' }} }} }} }}",
        provider_json("local", &up.base_url(), "q", ", parameterCount: 1500000000")
    ));
    std::fs::write(
        s.workspace().join("package.json"),
        r#"{"scripts": {"test": "node --test"}}"#,
    )
    .unwrap();
    up.push(Reply::text("ok"));
    let rt = s.runtime();
    let mut session = s.session(&rt, None);
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    session
        .run_turn(
            UserInput::text("fix the bug"),
            &tx,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    let (p, why) = session.tool_profile();
    assert_eq!(p, ToolProfile::Minimal);
    assert_eq!(why, "config parameterCount: 1.5B parameters");
    let body = up.requests()[0].body.clone();
    assert_eq!(tool_names(&body), ["read", "write", "edit", "exec"]);
    let prompt = system_prompt(&body);
    assert!(
        prompt.contains("Never edit a file you have not read"),
        "{prompt}"
    );
    assert!(
        prompt.contains("run the tests with exec: `npm test`"),
        "{prompt}"
    );
}

#[tokio::test]
async fn tools_profile_in_the_config_overrides_the_parameter_count() {
    let up = FakeOpenAi::start().await;
    let s = Scratch::new();
    s.write_config(&format!(
        "{{ tools: {{ profile: 'coding' }}, models: {{ providers: {{ {} }} }}, agents: {{ defaults: {{ model: {{ primary: 'local/q' }} }} }} }}",
        provider_json("local", &up.base_url(), "q", ", parameterCount: 1500000000")
    ));
    up.push(Reply::text("ok"));
    let rt = s.runtime();
    let mut session = s.session(&rt, None);
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    session
        .run_turn(
            UserInput::text("run `cargo test` and fix it"),
            &tx,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        session.tool_profile(),
        (ToolProfile::Coding, "config tools.profile".to_string())
    );
    let body = up.requests()[0].body.clone();
    assert_eq!(
        tool_names(&body),
        ["read", "write", "edit", "exec", "process", "grep", "glob"]
    );
    // The task named the command; the full prompt names it too.
    assert!(
        system_prompt(&body).contains("The tests run with: `cargo test`"),
        "{}",
        system_prompt(&body)
    );
}

#[tokio::test]
async fn a_model_of_unknown_size_keeps_every_tool() {
    let up = FakeOpenAi::start().await;
    let s = Scratch::new();
    s.write_config(&format!(
        "{{ models: {{ providers: {{ {} }} }}, agents: {{ defaults: {{ model: {{ primary: 'local/q' }} }} }} }}",
        provider_json("local", &up.base_url(), "q", "")
    ));
    up.push(Reply::text("ok"));
    let rt = s.runtime();
    let mut session = s.session(&rt, None);
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    session
        .run_turn(UserInput::text("hi"), &tx, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(session.tool_profile().0, ToolProfile::Full);
    assert_eq!(
        tool_names(&up.requests()[0].body).len(),
        idlehands_agent::tools::specs().len()
    );
}

#[tokio::test]
async fn a_bad_tools_profile_names_the_field() {
    let s = Scratch::new();
    s.write_config("{ tools: { profile: 'tiny' } }");
    let err = idlehands_agent::agent::Runtime::load(s.env.clone()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("tools.profile"), "{msg}");
    assert!(msg.contains("minimal"), "{msg}");
}

fn transcript_entries(path: &std::path::Path, kind: &str) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == kind)
        .collect()
}

#[tokio::test]
async fn a_failed_turn_reports_and_records_what_its_calls_spent() {
    let up = FakeOpenAi::start().await;
    let s = Scratch::new();
    s.write_config(&format!(
        "{{ models: {{ providers: {{ {} }} }}, agents: {{ defaults: {{ model: {{ primary: 'local/q' }} }} }} }}",
        provider_json("local", &up.base_url(), "q", "")
    ));
    std::fs::write(s.workspace().join("a.txt"), "alpha\n").unwrap();
    up.push(Reply::tool_call("c1", "read", json!({"path": "a.txt"})).with_usage(100, 10));
    up.push(Reply::tool_call("c2", "exec", json!({"command": "echo hi"})).with_usage(200, 20));
    up.push(Reply::error(400, "bad request from the fake"));
    let rt = s.runtime();
    let mut session = s.session(&rt, None);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let err = session
        .run_turn(UserInput::text("go"), &tx, &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(!matches!(err, AgentError::Aborted), "{err:?}");
    let events = collect(&mut rx);
    let end = events
        .iter()
        .find_map(|e| match e {
            AgentEvent::TurnEnd {
                stop_reason, usage, ..
            } => Some((stop_reason.clone(), *usage)),
            _ => None,
        })
        .unwrap();
    assert_eq!(end.0, "error");
    assert_eq!((end.1.input, end.1.output), (300, 30));
    assert_eq!(session.turn_usage().input, 300);
    let failed = transcript_entries(session.transcript_path(), "turn_failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["usage"]["input"], 300);
    assert_eq!(failed[0]["usage"]["output"], 30);
    // The entry does not get in the way of resuming the session.
    let id = session.id().to_string();
    drop(session);
    up.push(Reply::text("resumed").with_usage(10, 1));
    let mut again = s.session(&rt, Some(&id));
    let out = again
        .run_turn(UserInput::text("again"), &tx, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(out.text, "resumed");
    let users = again
        .messages()
        .iter()
        .filter(|m| matches!(m, idlehands_agent::message::AgentMessage::User { .. }))
        .count();
    assert_eq!(users, 2, "the failed turn's message and the new one");
}

#[tokio::test]
async fn a_timed_out_turn_reports_what_its_finished_calls_spent() {
    let up = FakeOpenAi::start().await;
    let s = Scratch::new();
    s.write_config(&format!(
        "{{ models: {{ providers: {{ {} }} }}, agents: {{ defaults: {{ model: {{ primary: 'local/q' }} }} }} }}",
        provider_json("local", &up.base_url(), "q", "")
    ));
    up.push(Reply::tool_call("c1", "exec", json!({"command": "echo 1"})).with_usage(100, 10));
    up.push(Reply::tool_call("c2", "exec", json!({"command": "echo 2"})).with_usage(150, 15));
    // Never answered in time: the turn is cancelled while waiting for it.
    up.push(Reply::text("late").with_delay(std::time::Duration::from_secs(60)));
    let rt = s.runtime();
    let mut session = s.session(&rt, None);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    let watcher = {
        let cancel = cancel.clone();
        async move {
            // Cancel once both finished calls have reported their usage (the third is pending).
            let mut usages = 0;
            let mut seen = Vec::new();
            while let Some(e) = rx.recv().await {
                if matches!(e, AgentEvent::Usage { .. }) {
                    usages += 1;
                }
                if usages == 2 && matches!(e, AgentEvent::ToolResult { .. }) {
                    cancel.cancel();
                }
                seen.push(e);
            }
            seen
        }
    };
    let turn = async {
        let r = session.run_turn(UserInput::text("go"), &tx, &cancel).await;
        drop(tx);
        r
    };
    let (res, events) = tokio::join!(turn, watcher);
    assert!(matches!(res, Err(AgentError::Aborted)), "{res:?}");
    let usage = events
        .iter()
        .find_map(|e| match e {
            AgentEvent::TurnEnd { usage, .. } => Some(*usage),
            _ => None,
        })
        .unwrap();
    assert_eq!((usage.input, usage.output), (250, 25));
    let failed = transcript_entries(session.transcript_path(), "turn_failed");
    assert_eq!(failed[0]["errorKind"], "aborted");
    assert_eq!(failed[0]["usage"]["input"], 250);
}

#[tokio::test]
async fn a_small_model_that_stops_after_a_change_is_told_to_run_the_tests_once() {
    let up = FakeOpenAi::start().await;
    let s = Scratch::new();
    s.write_config(&format!(
        "{{ models: {{ providers: {{ {} }} }}, agents: {{ defaults: {{ model: {{ primary: 'local/q' }} }} }} }}",
        provider_json("local", &up.base_url(), "q", ", parameterCount: 1500000000")
    ));
    std::fs::write(s.workspace().join("test_calc.py"), "import unittest\n").unwrap();
    up.push(Reply::tool_call(
        "c1",
        "write",
        json!({"path": "calc.py", "content": "def add(a, b):\n    return a + b\n"}),
    ));
    up.push(Reply::text("Done."));
    up.push(Reply::tool_call("c2", "exec", json!({"command": "true"})));
    up.push(Reply::text("Tests pass."));
    let rt = s.runtime();
    let mut session = s.session(&rt, None);
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let out = session
        .run_turn(UserInput::text("fix add"), &tx, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(out.text, "Tests pass.");
    let reqs = up.requests();
    assert_eq!(reqs.len(), 4);
    let last = |i: usize| -> Value {
        reqs[i].body["messages"]
            .as_array()
            .unwrap()
            .last()
            .cloned()
            .unwrap()
    };
    let nudge = last(2);
    assert_eq!(nudge["role"], "user");
    let text = nudge["content"].to_string();
    assert!(text.contains("have not run the tests"), "{text}");
    assert!(text.contains("`python3 -m unittest`"), "{text}");
    // After the command ran, the answer ends the turn.
    assert_eq!(last(3)["role"], "tool");
}
