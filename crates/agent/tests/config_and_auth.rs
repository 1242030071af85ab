//! Config errors name the file, the field and the fix; keys resolve profile > env > config;
//! the implicit LiteLLM provider appears with LITELLM_API_KEY and no config.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Scratch;
use idlehands_agent::auth::{AuthStore, KeyMaterial, KeySource, resolve_api_key};
use idlehands_agent::config;
use idlehands_agent::{Paths, Runtime};

fn load_err(s: &Scratch, text: &str) -> String {
    s.write_config(text);
    config::load(&s.config_path(), &s.env)
        .unwrap_err()
        .to_string()
}

#[test]
fn missing_env_var_is_an_error_naming_file_and_path() {
    let s = Scratch::new();
    let msg = load_err(
        &s,
        r#"{ models: { providers: { litellm: { baseUrl: "http://localhost:4000", apiKey: "${LITELLM_API_KEY}", models: [] } } } }"#,
    );
    assert!(
        msg.contains(&s.config_path().display().to_string()),
        "{msg}"
    );
    assert!(
        msg.contains("Missing env var \"LITELLM_API_KEY\" referenced at config path: models.providers.litellm.apiKey"),
        "{msg}"
    );
    assert!(msg.contains("Fix: export LITELLM_API_KEY="), "{msg}");
}

#[test]
fn unknown_and_missing_fields_name_the_path() {
    let s = Scratch::new();
    let msg = load_err(
        &s,
        r#"{ models: { providers: { litellm: { baseURL: "http://x", models: [] } } } }"#,
    );
    assert!(
        msg.contains("- models.providers.litellm.baseURL: unknown field `baseURL`"),
        "{msg}"
    );
    assert!(
        msg.contains("Fix: remove the field or correct its spelling"),
        "{msg}"
    );
    let msg = load_err(
        &s,
        r#"{ models: { providers: { litellm: { baseUrl: "http://x", models: [{ id: "a", name: "a", contextWindow: "big" }] } } } }"#,
    );
    assert!(
        msg.contains("- models.providers.litellm.models[0].contextWindow: invalid type"),
        "{msg}"
    );
    let msg = load_err(
        &s,
        r#"{ models: { providers: { litellm: { baseUrl: "localhost:4000", models: [] } } } }"#,
    );
    assert!(
        msg.contains(
            "- models.providers.litellm.baseUrl: \"localhost:4000\" is not an http(s) URL"
        ),
        "{msg}"
    );
    let msg = load_err(&s, r#"{ models: { mode: "mix" } }"#);
    assert!(
        msg.contains("- models.mode: unknown variant `mix`"),
        "{msg}"
    );
    let msg = load_err(&s, "{ models: { providers: ");
    assert!(msg.contains("not valid JSON5"), "{msg}");
}

#[test]
fn json5_with_comments_substitution_and_escapes_loads() {
    let s = Scratch::new();
    let env = s.env.clone().with("MY_KEY", "sk-abc");
    s.write_config(
        r#"// IdleHands
        {
          models: { providers: { litellm: {
            baseUrl: "http://localhost:4000", apiKey: "${MY_KEY}", api: "openai-completions",
            headers: { "x-note": "$${NOT_SUBSTITUTED}" },
            models: [{ id: "claude-opus-4-6", name: "Claude Opus 4.6", reasoning: true,
                       input: ["text", "image"], contextWindow: 200000, maxTokens: 64000,
                       cost: { input: 15, output: 75, cacheRead: 1.5, cacheWrite: 18.75 } }],
          } } },
          agents: { defaults: { model: { primary: "litellm/claude-opus-4-6", fallbacks: ["litellm/gpt-4o"] },
                                models: { "litellm/claude-opus-4-6": { alias: "opus" } } } },
          gateway: { mode: "local" },
        }"#,
    );
    let cfg = config::load(&s.config_path(), &env).unwrap();
    let p = cfg.provider("litellm").unwrap();
    assert_eq!(p.api_key, Some(config::SecretInput::Plain("sk-abc".into())));
    assert_eq!(p.headers["x-note"], "${NOT_SUBSTITUTED}");
    assert_eq!(cfg.config.other["gateway"]["mode"], "local");
    let rt = Runtime::from_parts(
        env.clone(),
        Paths::resolve(&env).unwrap(),
        cfg,
        AuthStore::default(),
    );
    assert_eq!(
        rt.registry.parse_ref("opus").unwrap().to_string(),
        "litellm/claude-opus-4-6"
    );
    let cands: Vec<String> = rt
        .registry
        .candidates(&rt.registry.primary().unwrap())
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(cands, ["litellm/claude-opus-4-6", "litellm/gpt-4o"]);
    let m = rt
        .registry
        .resolve(&rt.registry.primary().unwrap())
        .unwrap();
    assert_eq!(m.max_tokens, 64000);
    assert!(m.reasoning);
    // An unlisted id on a configured provider is synthesized from the provider.
    let g = rt
        .registry
        .resolve(&rt.registry.parse_ref("litellm/gpt-4o").unwrap())
        .unwrap();
    assert!(g.synthesized);
    assert_eq!(g.base_url, "http://localhost:4000");
}

#[test]
fn key_precedence_is_profile_then_env_then_config() {
    let s = Scratch::new();
    s.write_config(
        r#"{ models: { providers: { litellm: { baseUrl: "http://localhost:4000", apiKey: "from-config", models: [] } } } }"#,
    );
    let paths = Paths::resolve(&s.env).unwrap();
    let cfg = config::load(&s.config_path(), &s.env).unwrap();
    let mut store = AuthStore::default();
    let k = resolve_api_key("litellm", &cfg, &store, &s.env, &paths).unwrap();
    assert_eq!(
        (k.key.as_str(), k.source.clone()),
        ("from-config", KeySource::Config)
    );
    let env = s.env.clone().with("LITELLM_API_KEY", "from-env");
    let k = resolve_api_key("litellm", &cfg, &store, &env, &paths).unwrap();
    assert_eq!(k.source, KeySource::Env("LITELLM_API_KEY".into()));
    assert_eq!(k.key, "from-env");
    store.upsert_api_key(
        "litellm:default",
        "litellm",
        KeyMaterial::Plain("from-profile".into()),
    );
    let k = resolve_api_key("litellm", &cfg, &store, &env, &paths).unwrap();
    assert_eq!(k.source, KeySource::Profile("litellm:default".into()));
    assert_eq!(k.key, "from-profile");
    // A key ref resolves through the environment.
    store.upsert_api_key(
        "litellm:default",
        "litellm",
        KeyMaterial::EnvRef("OTHER_KEY".into()),
    );
    let env = env.with("OTHER_KEY", "from-ref");
    assert_eq!(
        resolve_api_key("litellm", &cfg, &store, &env, &paths)
            .unwrap()
            .key,
        "from-ref"
    );
    // A bare variable name as apiKey reads that variable (upstream's models.json rule).
    s.write_config(
        r#"{ models: { providers: { litellm: { baseUrl: "http://localhost:4000", apiKey: "TEAM_PROXY_KEY", models: [] } } } }"#,
    );
    let named = config::load(&s.config_path(), &s.env).unwrap();
    let env2 = s.env.clone().with("TEAM_PROXY_KEY", "from-named-var");
    let k2 = resolve_api_key("litellm", &named, &AuthStore::default(), &env2, &paths).unwrap();
    assert_eq!(k2.key, "from-named-var");
    // Nothing anywhere: the error says where it looked and what to do.
    let empty = config::LoadedConfig::default();
    let err = resolve_api_key("litellm", &empty, &AuthStore::default(), &s.env, &paths)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("No API key found for provider \"litellm\". Auth store: "),
        "{err}"
    );
    assert!(
        err.contains("idlehands onboard --auth-choice litellm-api-key"),
        "{err}"
    );
    assert!(
        !format!(
            "{k:?}",
            k = resolve_api_key("litellm", &cfg, &store, &env, &paths).unwrap()
        )
        .contains("from-ref")
    );
}

#[test]
fn litellm_api_key_alone_gives_an_implicit_provider_and_default_model() {
    let s = Scratch::new();
    let env = s.env.clone().with("LITELLM_API_KEY", "sk-env");
    let rt = Runtime::load(env).unwrap();
    assert!(!rt.config.exists);
    let primary = rt.registry.primary().unwrap();
    assert_eq!(primary.to_string(), "litellm/claude-opus-4-6");
    let m = rt.registry.resolve(&primary).unwrap();
    assert_eq!(m.base_url, "http://localhost:4000");
    assert_eq!(rt.api_key("litellm").unwrap().key, "sk-env");
    // Without the key there is no such provider and the upstream default stays.
    let rt = Runtime::load(s.env.clone()).unwrap();
    assert_eq!(
        rt.registry.primary().unwrap().to_string(),
        "anthropic/claude-opus-4-6"
    );
    let err = rt
        .registry
        .resolve(&rt.registry.parse_ref("litellm/x").unwrap())
        .unwrap_err();
    assert!(
        err.to_string().starts_with("Unknown model: litellm/x."),
        "{err}"
    );
}

#[test]
fn config_path_and_state_dir_overrides_are_honoured() {
    let s = Scratch::new();
    let other = s.dir.path().join("elsewhere.json");
    std::fs::write(&other, r#"{ agents: { defaults: { model: "x/y" } } }"#).unwrap();
    let env = s
        .env
        .clone()
        .with("IDLEHANDS_CONFIG_PATH", other.to_string_lossy())
        .with(
            "IDLEHANDS_STATE_DIR",
            s.dir.path().join("st").to_string_lossy(),
        );
    let rt = Runtime::load(env).unwrap();
    assert_eq!(rt.config.path, other);
    assert_eq!(
        rt.paths.sessions_dir,
        s.dir.path().join("st/agents/main/sessions")
    );
    assert_eq!(rt.registry.primary().unwrap().to_string(), "x/y");
}
