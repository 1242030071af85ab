#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `idlehands proxy` as a process: starts, answers, refuses bad configs, stops on SIGTERM.

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};

mod proxy_process;
use proxy_process::{spawn, terminate};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cmd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_idlehands"));
    c.current_dir(repo())
        .env_remove("LITELLM_MASTER_KEY")
        .env_remove("LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY")
        .env_remove("PORT")
        .env_remove("HOST")
        .env_remove("DEBUG")
        .env_remove("DETAILED_DEBUG")
        .env_remove("DATABASE_URL")
        // The default store lives in the state dir: keep it out of the real ~/.idlehands.
        .env(
            "IDLEHANDS_STATE_DIR",
            std::env::temp_dir().join(format!("idlehands-proxy-cli-{}", std::process::id())),
        );
    c
}

#[tokio::test]
async fn quickstart_config_answers_a_chat_and_sigterm_exits_zero() {
    // The quick start reads its master key from the environment, as scripts/quickstart.sh
    // sets it.
    let key = format!("sk-quickstart-test-{}", std::process::id());
    let mut c = cmd();
    c.args(["proxy", "--config", "examples/quickstart.yaml"])
        .env("LITELLM_MASTER_KEY", &key);
    let (mut child, url, _) = spawn(c);
    let resp = reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "claude-opus-4-6", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-litellm-response-cost"));
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .starts_with("Hello from the IdleHands quick start")
    );
    assert_eq!(terminate(&mut child), 0);
}

/// `idlehands proxy --model openai/gpt-4o-mini --api_base <api_base>` with a master key and
/// an upstream key from the environment.
fn single_model(api_base: &str) -> Command {
    let mut c = cmd();
    c.args([
        "proxy",
        "--model",
        "openai/gpt-4o-mini",
        "--api_base",
        api_base,
    ])
    .env("LITELLM_MASTER_KEY", "sk-cli-test-master")
    .env("OPENAI_API_KEY", "sk-upstream-from-env");
    c
}

/// One chat through the gateway at `url`; checks it answered 200 and that `upstream` got the
/// call with the deployment's model and key.
async fn chat_reaches(url: &str, upstream: &idlehands_testkit::FakeOpenAi) {
    let resp = reqwest::Client::new()
        .post(format!("{url}/chat/completions"))
        .bearer_auth("sk-cli-test-master")
        .json(&json!({"model": "whatever", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let sent = upstream.last_request().unwrap();
    assert_eq!(sent.body["model"], "gpt-4o-mini");
    assert_eq!(
        sent.header("authorization"),
        Some("Bearer sk-upstream-from-env")
    );
}

#[tokio::test]
async fn single_model_mode_overrides_the_request_model() {
    let up = idlehands_testkit::FakeOpenAi::start().await;
    let (mut child, url, _) = spawn(single_model(&up.base_url()));
    chat_reaches(&url, &up).await;
    let models: Value = reqwest::Client::new()
        .get(format!("{url}/v1/models"))
        .bearer_auth("sk-cli-test-master")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], "openai/gpt-4o-mini");
    assert_eq!(terminate(&mut child), 0);
}

/// Upstream calls normally skip reqwest for speed; with an HTTP proxy in the environment they
/// must go through it, as LiteLLM's do.
#[tokio::test]
async fn an_http_proxy_from_the_environment_carries_upstream_calls() {
    let forward_proxy = idlehands_testkit::FakeOpenAi::start_forward_proxy().await;
    // Not resolvable: only the proxy can answer for it.
    let mut c = single_model("http://upstream.invalid/v1");
    c.env("HTTP_PROXY", forward_proxy.origin())
        .env_remove("NO_PROXY")
        .env_remove("no_proxy");
    let (mut child, url, _) = spawn(c);
    chat_reaches(&url, &forward_proxy).await;
    // To a proxy, and only there, the target is the absolute URL.
    assert_eq!(
        forward_proxy.request_lines(),
        ["POST http://upstream.invalid/v1/chat/completions HTTP/1.1"]
    );
    assert_eq!(terminate(&mut child), 0);
}

#[test]
fn config_error_exits_non_zero_naming_the_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        "model_list:\n  - model_name: a\n    litellm_params:\n      model: openai/a\n      timeout: abc\ngeneral_settings:\n  master_key: sk-cli-test-abc-def\n",
    )
    .unwrap();
    let out = cmd()
        .args(["proxy", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("model_list[0].litellm_params.timeout: expected a number, got \"abc\""),
        "{err}"
    );
    assert!(!err.contains("sk-cli-test-abc-def"));
}

#[test]
fn missing_master_key_refuses_to_start_and_validate_config_checks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, "model_list:\n  - model_name: a\n    litellm_params: {model: openai/a, mock_response: hi}\n").unwrap();
    let out = cmd()
        .args(["proxy", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to start: no master key is set"),
        "{err}"
    );

    let quickstart = || {
        let mut c = cmd();
        c.args([
            "proxy",
            "--validate_config",
            "--config",
            "examples/quickstart.yaml",
        ]);
        c
    };
    // The quick start's key comes from the environment (the script makes a random one).
    let out = quickstart().output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "general_settings.master_key: environment variable LITELLM_MASTER_KEY is not set"
        ),
        "{err}"
    );
    let out = quickstart()
        .env("LITELLM_MASTER_KEY", "sk-validate-config-0001")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("config OK"));
}

/// A start-up warning is given once, though the gateway is built twice (to check the config
/// before the database, then with the store), and `--validate_config` gives it too.
#[test]
fn start_up_warnings_are_given_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        "model_list:\n  - model_name: a\n    litellm_params: {model: openai/a, mock_response: hi}\ngeneral_settings:\n  master_key: sk-warned-once-0123456789abcdef\n  enable_jwt_auth: true\n  litellm_jwtauth: {role_mappings: []}\n",
    )
    .unwrap();
    // Given by the gateway's build (JWT settings are read there).
    let warning = "litellm_jwtauth.role_mappings is not acted on";
    let cmd = || {
        let mut c = cmd();
        c.env("JWT_PUBLIC_KEY_URL", "http://127.0.0.1:9/jwks.json");
        c
    };
    let mut c = cmd();
    c.args(["proxy", "--config"]).arg(&path);
    let (mut child, _, before) = spawn(c);
    assert_eq!(terminate(&mut child), 0);
    let said = before.iter().filter(|l| l.contains(warning)).count();
    assert_eq!(said, 1, "{before:#?}");
    let out = cmd()
        .args(["proxy", "--validate_config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches(warning).count(), 1, "{err}");
}
