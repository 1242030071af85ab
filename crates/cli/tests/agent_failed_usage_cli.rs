#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `idlehands agent` as a process: a turn that fails after several model calls still says
//! what those calls spent, on stderr and in the `--json-stream` events's `turn_end`.

use idlehands_testkit::{FakeOpenAi, Reply};
use serde_json::{Value, json};

mod agent_process;
use agent_process::{command, home, run, state};

fn config_for(base: &str) -> String {
    format!(
        r#"{{ models: {{ providers: {{ local: {{ baseUrl: "{base}", apiKey: "k", api: "openai-completions",
             models: [{{ id: "m1", name: "M1" }}] }} }} }},
             agents: {{ defaults: {{ model: {{ primary: "local/m1" }} }} }} }}"#
    )
}

fn script(up: &FakeOpenAi) {
    up.push(Reply::tool_call("c1", "exec", json!({"command": "echo one"})).with_usage(100, 10));
    up.push(Reply::tool_call("c2", "exec", json!({"command": "echo two"})).with_usage(200, 20));
    up.push(Reply::error(400, "the fake refuses the third call"));
}

#[tokio::test]
async fn a_failed_turn_prints_and_streams_its_usage() {
    let up = FakeOpenAi::start().await;
    let d = home();
    std::fs::create_dir_all(state(&d)).unwrap();
    std::fs::write(
        state(&d).join("idlehands.json"),
        config_for(&format!("{}/v1", up.origin())),
    )
    .unwrap();

    script(&up);
    let mut c = command(d.path(), &d.path().join("home"), &[]);
    c.args(["agent", "--approve", "always", "-m", "go"]);
    let out = run(c, None).await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[usage] 300 in / 30 out (spent by the failed turn)"),
        "{err}"
    );

    script(&up);
    let mut c = command(d.path(), &d.path().join("home"), &[]);
    c.args(["agent", "--json-stream", "--approve", "always", "-m", "go"]);
    let out = run(c, None).await;
    assert_eq!(out.status.code(), Some(1));
    let end: Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["type"] == "turn_end")
        .unwrap();
    assert_eq!(end["stop_reason"], "error");
    assert_eq!(end["usage"]["input"], 300);
    assert_eq!(end["usage"]["output"], 30);
}
