#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The seed's whole path: `idlehands onboard --auth-choice litellm-api-key` pointed at
//! `idlehands proxy`, which routes to a fake upstream that scripts tool-call turns; then
//! `idlehands agent` runs the turns through the gateway, and `models status` tells a rejected
//! key apart.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

use idlehands_testkit::{FakeOpenAi, Reply};
use serde_json::{Value, json};

const MASTER: &str = "sk-master-e2e-0001";

struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_proxy(config: &std::path::Path) -> (Proxy, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_idlehands"))
        .args(["proxy", "--config"])
        .arg(config)
        .args(["--host", "127.0.0.1", "--port", "0"])
        // The gateway's store beside its config, not in the real ~/.idlehands.
        .arg("--db")
        .arg(config.with_extension("db"))
        .env_remove("LITELLM_MASTER_KEY")
        .env_remove("PORT")
        .env_remove("HOST")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let line = loop {
        let l = lines
            .next()
            .expect("the proxy exited before listening")
            .unwrap();
        if l.contains("listening on ") {
            break l;
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let url = line
        .split("listening on ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    (Proxy(child), url)
}

fn idlehands(d: &tempfile::TempDir) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_idlehands"));
    c.current_dir(d.path().join("ws"))
        .env("HOME", d.path().join("home"));
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

async fn run(mut c: Command) -> Output {
    tokio::task::spawn_blocking(move || c.stdin(Stdio::null()).output().unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn agent_runs_tool_turns_through_idlehands_proxy() {
    let up = FakeOpenAi::start().await;
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("home")).unwrap();
    std::fs::create_dir_all(d.path().join("ws")).unwrap();
    let yaml = d.path().join("config.yaml");
    std::fs::write(
        &yaml,
        format!(
            "model_list:\n  - model_name: claude-opus-4-6\n    litellm_params: {{model: openai/upstream-model, api_base: '{}', api_key: sk-upstream}}\ngeneral_settings: {{master_key: {MASTER}}}\n",
            up.base_url()
        ),
    )
    .unwrap();
    let (_proxy, url) = start_proxy(&yaml);

    // Onboard exactly as the seed says, pointing at the gateway.
    let mut c = idlehands(&d);
    c.env("LITELLM_API_KEY", MASTER).args([
        "onboard",
        "--non-interactive",
        "--accept-risk",
        "--auth-choice",
        "litellm-api-key",
        "--base-url",
        &url,
    ]);
    let out = run(c).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("does not list"),
        "the gateway serves claude-opus-4-6: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    up.push(
        Reply::tool_call(
            "t1",
            "write",
            json!({"path": "via_proxy.txt", "content": "routed"}),
        )
        .with_usage(40, 5),
    );
    up.push(
        Reply::tool_call("t2", "exec", json!({"command": "cat via_proxy.txt"})).with_usage(60, 5),
    );
    up.push(Reply::text("Done via the gateway.").with_usage(80, 4));
    let mut c = idlehands(&d);
    c.args(["agent", "-m", "write via_proxy.txt", "--json"]);
    let out = run(c).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `--json`: one result object, as upstream scripts read it.
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["payloads"][0]["text"], "Done via the gateway.");
    assert_eq!(result["meta"]["agentMeta"]["usage"]["input"], 180);
    assert_eq!(result["meta"]["stopReason"], "stop");
    assert_eq!(
        std::fs::read_to_string(d.path().join("ws/via_proxy.txt")).unwrap(),
        "routed"
    );
    // The gateway files the run's calls under the agent's session (LiteLLM's session view).
    let session = result["meta"]["agentMeta"]["sessionId"].as_str().unwrap();
    let http = reqwest::Client::new();
    let mut rows = Value::Null;
    for _ in 0..100 {
        rows = http
            .get(format!("{url}/spend/logs/session/ui?session_id={session}"))
            .bearer_auth(MASTER)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if rows["total"] == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(rows["total"], 3, "{rows}");
    let reqs = up.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[0].body["model"], "upstream-model");
    assert_eq!(reqs[0].header("authorization"), Some("Bearer sk-upstream"));
    let tool_msgs: Vec<&Value> = reqs[2].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .collect();
    assert_eq!(tool_msgs.len(), 2);
    assert!(tool_msgs[1]["content"].as_str().unwrap().contains("routed"));

    // models status: ok with the onboarded key, "key rejected" with a wrong one.
    let mut c = idlehands(&d);
    c.args(["models", "status"]);
    let out = run(c).await;
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{s}");
    assert!(s.contains("reachable"), "{s}");
    let auth = d
        .path()
        .join("home/.idlehands/agents/main/agent/auth-profiles.json");
    let text = std::fs::read_to_string(&auth)
        .unwrap()
        .replace(MASTER, "sk-wrong");
    std::fs::write(&auth, text).unwrap();
    let mut c = idlehands(&d);
    c.args(["models", "status"]);
    let out = run(c).await;
    let s = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{s}");
    assert!(s.contains("key rejected: HTTP 401"), "{s}");
    assert!(!s.contains("sk-wrong"), "{s}");
}
