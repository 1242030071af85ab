#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `idlehands onboard --auth-choice litellm-api-key`, non-interactive and with piped answers,
//! then `models list/status` and an agent turn on what it wrote.

use std::process::Command;

use idlehands_testkit::{FakeOpenAi, Reply};

mod agent_process;
use agent_process::{command, home, run, state};

fn cmd(d: &tempfile::TempDir) -> Command {
    command(d.path(), &d.path().join("home"), &[])
}

#[cfg(unix)]
fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn non_interactive_requires_accept_risk_and_a_key() {
    let d = home();
    let mut c = cmd(&d);
    c.args([
        "onboard",
        "--non-interactive",
        "--auth-choice",
        "litellm-api-key",
        "--litellm-api-key",
        "k",
    ]);
    let out = run(c, None).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("Non-interactive onboarding requires explicit risk acknowledgement.")
    );
    let mut c = cmd(&d);
    c.args([
        "onboard",
        "--non-interactive",
        "--accept-risk",
        "--auth-choice",
        "litellm-api-key",
    ]);
    let out = run(c, None).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(
        "Missing --litellm-api-key (or LITELLM_API_KEY in env, or existing litellm API-key profile)."
    ));
    assert!(!state(&d).join("idlehands.json").exists());
}

#[tokio::test]
async fn non_interactive_writes_files_then_models_and_agent_use_them() {
    let up = FakeOpenAi::start().await;
    let d = home();
    let mut c = cmd(&d);
    c.args([
        "onboard",
        "--non-interactive",
        "--accept-risk",
        "--auth-choice",
        "litellm-api-key",
        "--litellm-api-key",
        "sk-onboarded",
        "--base-url",
        &up.origin(),
        "--model",
        "fake-model",
    ]);
    let out = run(c, None).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Default model set to litellm/fake-model"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Workspace OK: ") && stdout.contains("Sessions OK: "),
        "{stdout}"
    );
    let cfg_path = state(&d).join("idlehands.json");
    let auth_path = state(&d).join("agents/main/agent/auth-profiles.json");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    assert!(!cfg.contains("sk-onboarded"));
    assert!(
        std::fs::read_to_string(&auth_path)
            .unwrap()
            .contains("sk-onboarded")
    );
    #[cfg(unix)]
    assert_eq!(mode(&auth_path), 0o600);

    let mut c = cmd(&d);
    c.args(["models", "list"]);
    let out = run(c, None).await;
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        list.contains("litellm/fake-model") && list.contains("default"),
        "{list}"
    );

    let mut c = cmd(&d);
    c.args(["models", "status"]);
    let out = run(c, None).await;
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{status}");
    assert!(
        status.contains("Default model: litellm/fake-model"),
        "{status}"
    );
    assert!(
        status.contains("auth: profile: litellm:default"),
        "{status}"
    );
    assert!(status.contains("reachable, 1 models served"), "{status}");
    assert!(!status.contains("sk-onboarded"));

    up.push(Reply::text("onboarded and working"));
    let mut c = cmd(&d);
    c.args(["agent", "-m", "hi"]);
    let out = run(c, None).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "onboarded and working"
    );
    let req = up.last_request().unwrap();
    assert_eq!(req.header("authorization"), Some("Bearer sk-onboarded"));
    assert_eq!(req.body["model"], "fake-model");
}

#[tokio::test]
async fn non_interactive_warns_when_the_proxy_does_not_serve_the_model() {
    let up = FakeOpenAi::start().await;
    let d = home();
    let mut c = cmd(&d);
    c.env("LITELLM_API_KEY", "sk-env").args([
        "onboard",
        "--non-interactive",
        "--accept-risk",
        "--auth-choice",
        "litellm-api-key",
        "--base-url",
        &up.origin(),
        "--json",
    ]);
    let out = run(c, None).await;
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("does not list \"claude-opus-4-6\" among its 1 models (fake-model)"),
        "{err}"
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["primaryModel"], "litellm/claude-opus-4-6");
    assert_eq!(summary["profileId"], "litellm:default");
}

#[tokio::test]
async fn interactive_answers_from_a_pipe_pick_the_model_from_the_proxy() {
    let up = FakeOpenAi::start().await;
    let d = home();
    let mut c = cmd(&d);
    c.args(["onboard", "--auth-choice", "litellm-api-key"]);
    let answers = format!("y\n1\nsk-piped\n{}\n1\n", up.origin());
    let out = run(c, Some(&answers)).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("How do you want to provide this API key?"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Default model set to litellm/fake-model"),
        "{stdout}"
    );
    let auth =
        std::fs::read_to_string(state(&d).join("agents/main/agent/auth-profiles.json")).unwrap();
    assert!(auth.contains("sk-piped"));
}
