#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Local models from the command line: onboarding for local servers (`--auth-choice
//! llamacpp|ollama|...`, `custom-api-key`), implicit local providers, the context window shown
//! by `models list/status`, and a headless run stopped for repeating a call; against the
//! replayed llama-server and the OpenAI fake.

use std::process::{Command, Output};

use idlehands_testkit::replay::{FakeLlamaServer, MODEL};
use idlehands_testkit::{FakeOpenAi, Reply};
use serde_json::Value;

mod agent_process;
use agent_process::{command, home, run, state};

fn cmd(d: &tempfile::TempDir) -> Command {
    const LOCAL_ENV: [&str; 7] = [
        "OLLAMA_HOST",
        "OLLAMA_BASE_URL",
        "VLLM_BASE_URL",
        "LLAMACPP_BASE_URL",
        "LLAMA_CPP_BASE_URL",
        "LMSTUDIO_BASE_URL",
        "LM_STUDIO_BASE_URL",
    ];
    command(d.path(), &d.path().join("home"), &LOCAL_ENV)
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn llamacpp_onboarding_needs_no_key_and_picks_the_served_model() {
    let server = FakeLlamaServer::start().await;
    let d = home();
    let mut c = cmd(&d);
    c.args([
        "onboard",
        "--non-interactive",
        "--accept-risk",
        "--auth-choice",
        "llamacpp",
        "--custom-base-url",
        &server.base_url(),
        "--json",
    ]);
    let summary: Value = serde_json::from_str(&ok(&run(c, None).await)).unwrap();
    assert_eq!(summary["primaryModel"], format!("llamacpp/{MODEL}"));
    assert_eq!(summary["authChoice"], "llamacpp");
    let cfg = std::fs::read_to_string(state(&d).join("idlehands.json")).unwrap();
    assert!(cfg.contains(&server.base_url()), "{cfg}");
    assert!(
        !state(&d)
            .join("agents/main/agent/auth-profiles.json")
            .exists()
    );

    // The window comes from the server, and says so.
    let mut c = cmd(&d);
    c.args(["models", "list", "--json"]);
    let list: Value = serde_json::from_str(&ok(&run(c, None).await)).unwrap();
    let row = list["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["key"] == format!("llamacpp/{MODEL}"))
        .cloned()
        .unwrap();
    assert_eq!(row["contextWindow"], 2048);
    assert_eq!(row["contextSource"], "llama-server /v1/models meta.n_ctx");
    let mut c = cmd(&d);
    c.args(["models", "status"]);
    let status = ok(&run(c, None).await);
    assert!(
        status.contains("context window 2048, from llama-server /v1/models meta.n_ctx"),
        "{status}"
    );

    let mut c = cmd(&d);
    c.args(["agent", "-m", "hi"]);
    let out = ok(&run(c, None).await);
    assert_eq!(out.trim(), "Hello! How can I assist you today?");
    let req = server.requests().last().cloned().unwrap();
    assert_eq!(req.header("authorization"), None);
    assert_eq!(req.body["model"], MODEL);
}

#[tokio::test]
async fn custom_api_key_onboarding_stores_the_key_outside_the_config() {
    let up = FakeOpenAi::start().await;
    let d = home();
    let mut c = cmd(&d);
    c.args([
        "onboard",
        "--non-interactive",
        "--accept-risk",
        "--auth-choice",
        "custom-api-key",
        "--custom-base-url",
        &up.base_url(),
        "--custom-provider-id",
        "mybox",
        "--custom-api-key",
        "sk-custom-1",
        "--custom-compatibility",
        "openai",
    ]);
    let out = ok(&run(c, None).await);
    assert!(
        out.contains("Default model set to mybox/fake-model"),
        "{out}"
    );
    let cfg = std::fs::read_to_string(state(&d).join("idlehands.json")).unwrap();
    assert!(!cfg.contains("sk-custom-1"));
    let auth =
        std::fs::read_to_string(state(&d).join("agents/main/agent/auth-profiles.json")).unwrap();
    assert!(auth.contains("sk-custom-1") && auth.contains("mybox:default"));

    up.push(Reply::text("custom works"));
    let mut c = cmd(&d);
    c.args(["agent", "-m", "hi"]);
    assert_eq!(ok(&run(c, None).await).trim(), "custom works");
    let req = up.last_request().unwrap();
    assert_eq!(req.header("authorization"), Some("Bearer sk-custom-1"));
}

#[tokio::test]
async fn bad_custom_flags_are_refused_with_the_flag_named() {
    let d = home();
    let mut c = cmd(&d);
    c.args([
        "onboard",
        "--non-interactive",
        "--accept-risk",
        "--auth-choice",
        "custom-api-key",
    ]);
    let out = run(c, None).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs --custom-base-url URL"));
    let mut c = cmd(&d);
    c.args([
        "onboard",
        "--non-interactive",
        "--accept-risk",
        "--auth-choice",
        "custom-api-key",
        "--custom-base-url",
        "http://127.0.0.1:9/v1",
        "--custom-compatibility",
        "anthropic",
    ]);
    let out = run(c, None).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--custom-compatibility anthropic is not supported")
    );
    // Nothing answers there and no model was named: the message says what to do.
    let mut c = cmd(&d);
    c.args([
        "onboard",
        "--non-interactive",
        "--accept-risk",
        "--auth-choice",
        "vllm",
        "--custom-base-url",
        "http://127.0.0.1:9/v1",
    ]);
    let out = run(c, None).await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pass --custom-model-id"), "{err}");
}

#[tokio::test]
async fn interactive_ollama_onboarding_offers_the_served_models() {
    let up = FakeOpenAi::start().await;
    let d = home();
    let mut c = cmd(&d);
    c.args(["onboard", "--auth-choice", "ollama"]);
    let answers = format!("y\n{}\n1\n", up.base_url());
    let out = ok(&run(c, Some(&answers)).await);
    assert!(out.contains("Sets up IdleHands to use Ollama."), "{out}");
    assert!(out.contains("Models served at"), "{out}");
    assert!(out.contains("1) fake-model"), "{out}");
    assert!(
        out.contains("Default model set to ollama/fake-model"),
        "{out}"
    );
    // Ollama takes no key, so none was asked for.
    assert!(!out.contains("API key"), "{out}");
}

#[tokio::test]
async fn an_implicit_local_provider_works_with_no_config_at_all() {
    let server = FakeLlamaServer::start().await;
    let d = home();
    let mut c = cmd(&d);
    c.env("LLAMACPP_BASE_URL", server.base_url()).args([
        "agent",
        "--model",
        &format!("llamacpp/{MODEL}"),
        "-m",
        "hi",
    ]);
    let out = ok(&run(c, None).await);
    assert_eq!(out.trim(), "Hello! How can I assist you today?");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_keyless_custom_server_runs_without_a_key() {
    let up = FakeOpenAi::start().await;
    let d = home();
    let mut c = cmd(&d);
    c.args([
        "onboard",
        "--non-interactive",
        "--accept-risk",
        "--auth-choice",
        "custom-api-key",
        "--custom-base-url",
        &up.base_url(),
        "--custom-model-id",
        "fake-model",
    ]);
    let out = ok(&run(c, None).await);
    assert!(
        out.contains("Default model set to custom/fake-model"),
        "{out}"
    );
    up.push(Reply::text("no key needed"));
    let mut c = cmd(&d);
    c.args(["agent", "-m", "hi"]);
    assert_eq!(ok(&run(c, None).await).trim(), "no key needed");
    assert_eq!(up.last_request().unwrap().header("authorization"), None);
    let mut c = cmd(&d);
    c.args(["models", "status"]);
    let status = ok(&run(c, None).await);
    assert!(status.contains("none needed (local server)"), "{status}");
}

#[tokio::test]
async fn interactive_onboarding_asks_where_the_models_run() {
    let server = FakeLlamaServer::start().await;
    let d = home();
    let mut c = cmd(&d);
    c.args(["onboard"]);
    // llama.cpp, accept the risk, its URL, the first model.
    let answers = format!("4\ny\n{}\n1\n", server.base_url());
    let out = ok(&run(c, Some(&answers)).await);
    assert!(out.contains("Where do your models run?"), "{out}");
    assert!(out.contains("4) llama.cpp (llama-server)"), "{out}");
    assert!(
        out.contains(&format!("Default model set to llamacpp/{MODEL}")),
        "{out}"
    );
}

#[tokio::test]
async fn a_model_stuck_repeating_a_call_ends_the_headless_run_non_zero() {
    let up = FakeOpenAi::start().await;
    up.set_default(Reply::tool_call(
        "call_r",
        "read",
        serde_json::json!({"path": "missing.txt"}),
    ));
    let d = home();
    let mut c = cmd(&d);
    c.args([
        "onboard",
        "--non-interactive",
        "--accept-risk",
        "--auth-choice",
        "custom-api-key",
        "--custom-base-url",
        &up.base_url(),
        "--custom-model-id",
        "fake-model",
    ]);
    ok(&run(c, None).await);
    let mut c = cmd(&d);
    c.args(["agent", "-m", "read missing.txt", "--approve", "never"]);
    let out = run(c, None).await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the model called `read` 4 times with the same arguments and got the same result each time"),
        "{err}"
    );
    assert_eq!(up.requests().len(), 4);
}
