#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `idlehands agent` and bare `idlehands` as processes, against the fake upstream: the seed's
//! "export LITELLM_API_KEY, then idlehands" flow, JSONL events, resume, exit codes.

use std::path::PathBuf;
use std::process::Command;

use idlehands_testkit::{FakeOpenAi, Reply};
use serde_json::{Value, json};

mod agent_process;
use agent_process::{command, run};

struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        std::fs::create_dir_all(dir.path().join("ws")).unwrap();
        Self { dir }
    }
    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }
    fn ws(&self) -> PathBuf {
        self.dir.path().join("ws")
    }
    fn state(&self) -> PathBuf {
        self.home().join(".idlehands")
    }
    fn write_config(&self, text: &str) {
        std::fs::create_dir_all(self.state()).unwrap();
        std::fs::write(self.state().join("idlehands.json"), text).unwrap();
    }
    fn cmd(&self) -> Command {
        command(&self.ws(), &self.home(), &[])
    }
}

fn jsonl(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

fn config_for(base: &str) -> String {
    format!(
        r#"{{ models: {{ providers: {{ litellm: {{ baseUrl: "{base}", apiKey: "${{LITELLM_API_KEY}}", api: "openai-completions",
             models: [{{ id: "m1", name: "M1" }}] }} }} }},
             agents: {{ defaults: {{ model: {{ primary: "litellm/m1" }} }} }} }}"#
    )
}

#[tokio::test]
async fn agent_json_streams_events_and_runs_tools_in_the_workspace() {
    let up = FakeOpenAi::start().await;
    let h = Home::new();
    h.write_config(&config_for(&up.base_url()));
    up.push(Reply::tool_call(
        "c1",
        "write",
        json!({"path": "out.txt", "content": "from the agent"}),
    ));
    up.push(Reply::tool_call(
        "c2",
        "exec",
        json!({"command": "cat out.txt"}),
    ));
    up.push(Reply::text("All done."));
    let mut c = h.cmd();
    c.env("LITELLM_API_KEY", "sk-test").args([
        "agent",
        "-m",
        "write out.txt",
        "--json-stream",
        "--session-id",
        "cli-1",
    ]);
    let out = run(c, None).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = jsonl(&out.stdout);
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types[0], "turn_start");
    assert_eq!(*types.last().unwrap(), "turn_end");
    assert!(
        types.contains(&"tool_call") && types.contains(&"tool_result") && types.contains(&"usage")
    );
    let end = events.last().unwrap();
    assert_eq!(end["stop_reason"], "stop");
    assert_eq!(end["text"], "All done.");
    let results: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "tool_result")
        .collect();
    assert!(results.iter().all(|r| r["ok"] == true), "{results:?}");
    assert_eq!(
        std::fs::read_to_string(h.ws().join("out.txt")).unwrap(),
        "from the agent"
    );
    let last = up.last_request().unwrap();
    assert_eq!(last.header("authorization"), Some("Bearer sk-test"));
    let tool_out = last.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|m| m["role"] == "tool")
        .unwrap()["content"]
        .clone();
    assert!(tool_out.as_str().unwrap().contains("from the agent"));
    let transcript = h.state().join("agents/main/sessions/cli-1.jsonl");
    assert!(transcript.exists());
    // Resume: the second run sends the first exchange along.
    up.push(Reply::text("Still here."));
    let mut c = h.cmd();
    c.env("LITELLM_API_KEY", "sk-test")
        .args(["agent", "-m", "again", "--session-id", "cli-1"]);
    let out = run(c, None).await;
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Still here.");
    let msgs = up.last_request().unwrap().body["messages"].clone();
    assert_eq!(
        msgs.as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "user")
            .count(),
        2
    );
}

#[tokio::test]
async fn seed_flow_litellm_api_key_and_no_config_routes_to_the_proxy() {
    let up = FakeOpenAi::start().await;
    let h = Home::new();
    up.push(Reply::text("Hello through LiteLLM."));
    let mut c = h.cmd();
    c.env("LITELLM_API_KEY", "sk-seed")
        .env("LITELLM_BASE_URL", up.origin())
        .args(["agent", "-m", "hi"]);
    let out = run(c, None).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Hello through LiteLLM."
    );
    let req = up.last_request().unwrap();
    assert_eq!(req.path, "/chat/completions");
    assert_eq!(req.body["model"], "claude-opus-4-6");
    assert_eq!(req.header("authorization"), Some("Bearer sk-seed"));
    assert!(!h.state().join("idlehands.json").exists());

    // Bare `idlehands`: the same, one turn per line.
    up.push(Reply::text("Interactive hello."));
    let mut c = h.cmd();
    c.env("LITELLM_API_KEY", "sk-seed")
        .env("LITELLM_BASE_URL", up.origin());
    let out = run(c, Some("/think high\nhello there\n/status\n/exit\n")).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Interactive hello."));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("thinking high"), "{err}");
    assert!(
        err.contains("model litellm/claude-opus-4-6 | thinking high | session "),
        "{err}"
    );
    // The fake names no context size anywhere, so the default is used and said to be.
    assert!(err.contains("of 200000 (default)"), "{err}");
    assert_eq!(
        up.last_request().unwrap().body["messages"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()["content"],
        "hello there"
    );
}

#[tokio::test]
async fn failures_and_timeouts_exit_non_zero() {
    let up = FakeOpenAi::start().await;
    let h = Home::new();
    h.write_config(&config_for(&up.origin()));
    up.push(Reply::error(
        401,
        "Authentication Error, Invalid proxy server token passed.",
    ));
    let mut c = h.cmd();
    c.env("LITELLM_API_KEY", "sk-wrong")
        .args(["agent", "-m", "hi"]);
    let out = run(c, None).await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("HTTP 401") && err.contains("rejected the API key"),
        "{err}"
    );
    assert!(!err.contains("sk-wrong"));

    up.push(Reply::text("late").with_delay(std::time::Duration::from_secs(60)));
    let mut c = h.cmd();
    c.env("LITELLM_API_KEY", "k")
        .args(["agent", "-m", "hi", "--json-stream", "--timeout", "1"]);
    let out = run(c, None).await;
    assert_eq!(out.status.code(), Some(124));
    let events = jsonl(&out.stdout);
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "error" && e["kind"] == "timeout"),
        "{events:?}"
    );
}

#[tokio::test]
async fn config_errors_name_the_file_and_field_and_fail() {
    let h = Home::new();
    h.write_config(r#"{ models: { providers: { litellm: { baseUrl: "http://x", apiKey: "${LITELLM_API_KEY}", models: [] } } } }"#);
    let mut c = h.cmd();
    c.args(["agent", "-m", "hi"]);
    let out = run(c, None).await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = h.state().join("idlehands.json");
    assert!(err.contains(&file.display().to_string()), "{err}");
    assert!(
        err.contains("models.providers.litellm.apiKey") && err.contains("LITELLM_API_KEY"),
        "{err}"
    );
    let mut c = h.cmd();
    c.env("LITELLM_API_KEY", "k")
        .args(["agent", "-m", "hi", "--thinking", "lots"]);
    let out = run(c, None).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "Invalid --thinking level. Use one of: off, minimal, low, medium, high, xhigh."
        )
    );
}

/// The line chat (stdin piped) compacts by hand too; the next turn carries the summary.
#[tokio::test]
async fn line_chat_compacts_by_hand() {
    let up = FakeOpenAi::start().await;
    let h = Home::new();
    h.write_config(&config_for(&up.origin()));
    up.push(Reply::text("FIRST-ANSWER"));
    up.push(Reply::text("SECOND-ANSWER"));
    up.push(Reply::text("LINE-SUMMARY"));
    up.push(Reply::text("THIRD-ANSWER"));
    let mut c = h.cmd();
    c.env("LITELLM_API_KEY", "sk-seed");
    let out = run(
        c,
        Some("q-one\nq-two\n/compact mention q-one\nq-three\n/compact\n/exit\n"),
    )
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("compacted: ~"), "{err}");
    let reqs = up.requests();
    assert_eq!(reqs.len(), 5, "{err}");
    assert!(reqs[2].body.to_string().contains("mention q-one"));
    let third = reqs[3].body.to_string();
    assert!(third.contains("LINE-SUMMARY") && third.contains("q-two"));
    assert!(!third.contains("FIRST-ANSWER"));
}
