#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `idlehands models list/status` without onboarding: the implicit LiteLLM provider, and a
//! clear message when the proxy is not running.

use std::process::{Command, Stdio};

fn cmd(d: &tempfile::TempDir) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_idlehands"));
    c.current_dir(d.path())
        .env("HOME", d.path())
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

#[test]
fn list_shows_the_implicit_litellm_default_when_only_the_key_is_set() {
    let d = tempfile::tempdir().unwrap();
    let out = cmd(&d)
        .env("LITELLM_API_KEY", "k")
        .args(["models", "list", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["models"][0]["key"], "litellm/claude-opus-4-6");
    assert_eq!(v["models"][0]["baseUrl"], "http://localhost:4000");
    assert_eq!(v["models"][0]["implicit"], true);
    assert_eq!(v["models"][0]["tags"][0], "default");
    let out = cmd(&d).args(["models", "list"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("No models configured."));
}

#[test]
fn status_says_when_the_proxy_is_unreachable() {
    let d = tempfile::tempdir().unwrap();
    // Port 9 on loopback: nothing listens.
    let out = cmd(&d)
        .env("LITELLM_API_KEY", "k")
        .env("LITELLM_BASE_URL", "http://127.0.0.1:9")
        .args(["models", "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("litellm (implicit, from LITELLM_API_KEY)"),
        "{s}"
    );
    assert!(s.contains("auth: env: LITELLM_API_KEY"), "{s}");
    assert!(
        s.contains("unreachable: cannot reach http://127.0.0.1:9"),
        "{s}"
    );
    assert!(s.contains("Is the proxy running?"), "{s}");
}

#[tokio::test]
async fn list_all_adds_the_models_the_proxy_serves() {
    let up = idlehands_testkit::FakeOpenAi::start().await;
    let d = tempfile::tempdir().unwrap();
    let mut c = cmd(&d);
    c.env("LITELLM_API_KEY", "k")
        .env("LITELLM_BASE_URL", up.origin())
        .args(["models", "list", "--all", "--json"]);
    let out = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys: Vec<&str> = v["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["litellm/claude-opus-4-6", "litellm/fake-model"]);
    assert_eq!(v["models"][1]["tags"][0], "served");
}
