//! LiteLLM onboarding: files written where upstream writes them, the key only in the 0600
//! auth profile, existing settings merged, interactive prompts answered from a pipe with the
//! model picked from the proxy's /v1/models.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Cursor;

use common::Scratch;
use idlehands_agent::auth::KeyMaterial;
use idlehands_agent::onboard::{
    InteractiveOptions, LinePrompter, LitellmSetup, interactive_litellm, non_interactive_key,
    write_litellm,
};
use idlehands_agent::{Paths, Runtime};
use idlehands_testkit::FakeOpenAi;

#[cfg(unix)]
fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn writes_provider_primary_and_a_private_auth_profile_without_the_key_in_config() {
    let s = Scratch::new();
    let paths = Paths::resolve(&s.env).unwrap();
    let res = write_litellm(
        &paths,
        &s.env,
        &LitellmSetup {
            key: Some(KeyMaterial::Plain("sk-secret-123".into())),
            base_url: "http://localhost:4000".into(),
            model: "claude-opus-4-6".into(),
            workspace: s.dir.path().join("ws2"),
        },
    )
    .unwrap();
    assert_eq!(res.primary, "litellm/claude-opus-4-6");
    let text = std::fs::read_to_string(&paths.config_path).unwrap();
    assert!(!text.contains("sk-secret-123"));
    let cfg: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(cfg["models"]["mode"], "merge");
    let p = &cfg["models"]["providers"]["litellm"];
    assert_eq!(p["baseUrl"], "http://localhost:4000");
    assert_eq!(p["api"], "openai-completions");
    assert!(p.get("apiKey").is_none());
    assert_eq!(p["models"][0]["id"], "claude-opus-4-6");
    assert_eq!(p["models"][0]["contextWindow"], 128000);
    assert_eq!(p["models"][0]["maxTokens"], 8192);
    assert_eq!(
        cfg["agents"]["defaults"]["model"]["primary"],
        "litellm/claude-opus-4-6"
    );
    assert_eq!(
        cfg["agents"]["defaults"]["models"]["litellm/claude-opus-4-6"]["alias"],
        "LiteLLM"
    );
    assert_eq!(
        cfg["auth"]["profiles"]["litellm:default"],
        serde_json::json!({"provider": "litellm", "mode": "api_key"})
    );
    assert_eq!(cfg["wizard"]["lastRunCommand"], "onboard");
    let auth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&res.auth_path).unwrap()).unwrap();
    assert_eq!(
        res.auth_path,
        s.state_dir().join("agents/main/agent/auth-profiles.json")
    );
    assert_eq!(auth["version"], 1);
    assert_eq!(
        auth["profiles"]["litellm:default"],
        serde_json::json!({"type": "api_key", "provider": "litellm", "key": "sk-secret-123"})
    );
    #[cfg(unix)]
    {
        assert_eq!(mode(&res.auth_path), 0o600);
        assert_eq!(mode(&paths.config_path), 0o600);
    }
    assert!(res.workspace.is_dir());
    assert!(res.sessions_dir.is_dir());
    // And the agent now resolves the model and the key without any env var.
    let rt = Runtime::load(s.env.clone()).unwrap();
    let primary = rt.registry.primary().unwrap();
    assert_eq!(primary.to_string(), "litellm/claude-opus-4-6");
    assert_eq!(rt.api_key("litellm").unwrap().key, "sk-secret-123");
}

#[test]
fn rerun_keeps_existing_settings_env_refs_and_models() {
    let s = Scratch::new();
    s.write_config(
        r#"{
          // hand-written
          models: { providers: { litellm: { baseUrl: "http://proxy:4000", apiKey: "${LITELLM_API_KEY}",
                    models: [{ id: "gpt-4o", name: "GPT-4o" }] } } },
          agents: { defaults: { model: { primary: "litellm/gpt-4o", fallbacks: ["litellm/gpt-4o-mini"] } } },
          gateway: { port: 18789 },
        }"#,
    );
    let env = s.env.clone().with("LITELLM_API_KEY", "sk-env");
    let paths = Paths::resolve(&env).unwrap();
    write_litellm(
        &paths,
        &env,
        &LitellmSetup {
            key: Some(KeyMaterial::EnvRef("LITELLM_API_KEY".into())),
            base_url: "http://proxy:4000".into(),
            model: "claude-opus-4-6".into(),
            workspace: s.workspace(),
        },
    )
    .unwrap();
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&paths.config_path).unwrap()).unwrap();
    let p = &cfg["models"]["providers"]["litellm"];
    assert_eq!(p["apiKey"], "${LITELLM_API_KEY}");
    assert_eq!(p["models"].as_array().unwrap().len(), 2);
    assert_eq!(p["models"][0]["id"], "gpt-4o");
    assert_eq!(
        cfg["agents"]["defaults"]["model"]["fallbacks"][0],
        "litellm/gpt-4o-mini"
    );
    assert_eq!(cfg["gateway"]["port"], 18789);
    assert!(paths.config_path.with_extension("json.bak").exists());
    let auth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(paths.auth_profiles_path()).unwrap())
            .unwrap();
    assert_eq!(
        auth["profiles"]["litellm:default"]["keyRef"],
        serde_json::json!({"source": "env", "provider": "default", "id": "LITELLM_API_KEY"})
    );
    assert!(auth["profiles"]["litellm:default"].get("key").is_none());
}

#[test]
fn non_interactive_key_order_and_missing_message() {
    let s = Scratch::new();
    let env = s.env.clone().with("LITELLM_API_KEY", "sk-env");
    assert_eq!(
        non_interactive_key(Some("sk-flag"), None, &env, true).unwrap(),
        Some(KeyMaterial::Plain("sk-flag".into()))
    );
    assert_eq!(
        non_interactive_key(None, None, &env, true).unwrap(),
        Some(KeyMaterial::Plain("sk-env".into()))
    );
    assert_eq!(non_interactive_key(None, None, &s.env, true).unwrap(), None);
    assert_eq!(
        non_interactive_key(Some("${MY_KEY}"), None, &s.env, false).unwrap(),
        Some(KeyMaterial::EnvRef("MY_KEY".into()))
    );
    assert_eq!(
        non_interactive_key(None, Some("ref"), &env, false).unwrap(),
        Some(KeyMaterial::EnvRef("LITELLM_API_KEY".into()))
    );
    let err = non_interactive_key(None, None, &s.env, false)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "Missing --litellm-api-key (or LITELLM_API_KEY in env, or existing litellm API-key profile)."
    );
}

#[tokio::test]
async fn interactive_flow_pastes_a_key_and_picks_a_model_from_the_proxy() {
    let up = FakeOpenAi::start().await;
    let s = Scratch::new();
    let paths = Paths::resolve(&s.env).unwrap();
    // Answers: accept the risk, paste (option 1), the key, the proxy URL, model 1.
    let answers = format!("y\n1\nsk-typed-key\n{}\n1\n", up.origin());
    let mut out = Vec::new();
    let res = {
        let mut p = LinePrompter::new(Cursor::new(answers), &mut out, false);
        interactive_litellm(
            &mut p,
            &paths,
            &s.env,
            InteractiveOptions {
                accept_risk: false,
                workspace: Some(s.workspace()),
                secret_input_mode: None,
                base_url: None,
                model: None,
            },
        )
        .await
        .unwrap()
    };
    let shown = String::from_utf8(out).unwrap();
    assert!(
        shown.contains("LiteLLM provides a unified API to 100+ LLM providers."),
        "{shown}"
    );
    assert!(
        shown.contains("LiteLLM proxy base URL [http://localhost:4000]"),
        "{shown}"
    );
    assert!(shown.contains("1) fake-model"), "{shown}");
    assert!(
        shown.contains("Default model set to litellm/fake-model"),
        "{shown}"
    );
    assert!(!shown.contains("sk-typed-key"));
    assert_eq!(res.primary, "litellm/fake-model");
    assert_eq!(res.base_url, up.origin());
    let req = up.last_request();
    assert!(
        req.is_none(),
        "the model list is a GET, not recorded as a chat request"
    );
    let rt = Runtime::load(s.env.clone()).unwrap();
    assert_eq!(rt.api_key("litellm").unwrap().key, "sk-typed-key");
    let m = rt
        .registry
        .resolve(&rt.registry.primary().unwrap())
        .unwrap();
    assert_eq!(m.base_url, up.origin());
}

#[tokio::test]
async fn interactive_flow_declining_the_risk_cancels_and_writes_nothing() {
    let s = Scratch::new();
    let paths = Paths::resolve(&s.env).unwrap();
    let mut out = Vec::new();
    let mut p = LinePrompter::new(Cursor::new("n\n"), &mut out, false);
    let err = interactive_litellm(
        &mut p,
        &paths,
        &s.env,
        InteractiveOptions {
            accept_risk: false,
            workspace: None,
            secret_input_mode: None,
            base_url: None,
            model: None,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.to_string(), "onboarding cancelled");
    assert!(!paths.config_path.exists());
}

#[tokio::test]
async fn interactive_flow_with_env_reference_and_unreachable_proxy_asks_for_the_model() {
    let s = Scratch::new();
    let env = s.env.clone().with("LITELLM_API_KEY", "sk-env");
    let paths = Paths::resolve(&env).unwrap();
    // Port 9 on loopback: nothing listens there.
    let answers = "2\n\nhttp://127.0.0.1:9\ngpt-4o\n";
    let mut out = Vec::new();
    let res = {
        let mut p = LinePrompter::new(Cursor::new(answers), &mut out, false);
        interactive_litellm(
            &mut p,
            &paths,
            &env,
            InteractiveOptions {
                accept_risk: true,
                workspace: Some(s.workspace()),
                secret_input_mode: None,
                base_url: None,
                model: None,
            },
        )
        .await
        .unwrap()
    };
    let shown = String::from_utf8(out).unwrap();
    assert!(
        shown.contains("Validated environment variable LITELLM_API_KEY."),
        "{shown}"
    );
    assert!(
        shown.contains("Could not fetch the model list: cannot reach http://127.0.0.1:9"),
        "{shown}"
    );
    assert_eq!(res.primary, "litellm/gpt-4o");
    let auth = std::fs::read_to_string(paths.auth_profiles_path()).unwrap();
    assert!(!auth.contains("sk-env"));
    assert!(auth.contains("\"keyRef\""));
}
