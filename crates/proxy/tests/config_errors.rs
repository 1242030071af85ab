#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Start-up errors: one per class, each naming the file and key path, none showing a secret.

use std::collections::HashMap;

use idlehands_proxy::{ConfigError, Gateway, ProxyConfig};

fn load(yaml: &str, env: &[(&str, &str)]) -> Result<ProxyConfig, ConfigError> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ProxyConfig::from_yaml(yaml, "config.yaml", &move |k: &str| env.get(k).cloned())
}

fn err(yaml: &str, env: &[(&str, &str)]) -> String {
    load(yaml, env)
        .expect_err("config must be refused")
        .to_string()
}

#[test]
fn wrong_type_names_the_key_path() {
    let y = "model_list:
  - model_name: a
    litellm_params: {model: openai/a}
  - model_name: b
    litellm_params:
      model: openai/b
      timeout: abc
";
    assert_eq!(
        err(y, &[]),
        "config.yaml: model_list[1].litellm_params.timeout: expected a number, got \"abc\""
    );
    assert_eq!(
        err("general_settings:\n  disable_spend_logs: maybe\n", &[]),
        "config.yaml: general_settings.disable_spend_logs: expected true or false, got \"maybe\""
    );
    assert_eq!(
        err("router_settings:\n  num_retries: [1]\n", &[]),
        "config.yaml: router_settings.num_retries: expected a number, got a list"
    );
    let e = err("router_settings:\n  routing_strategy: fastest\n", &[]);
    assert!(
        e.starts_with("config.yaml: router_settings.routing_strategy: unknown variant `fastest`"),
        "{e}"
    );
}

#[test]
fn missing_env_var_names_the_key_path_and_variable() {
    let y = "model_list:\n  - model_name: a\n    litellm_params:\n      model: openai/a\n      api_key: os.environ/OPENAI_API_KEY\n";
    assert_eq!(
        err(y, &[]),
        "config.yaml: model_list[0].litellm_params.api_key: environment variable OPENAI_API_KEY is not set"
    );
    let ok = load(y, &[("OPENAI_API_KEY", "sk-from-env")]).unwrap();
    assert_eq!(
        ok.file.model_list[0]
            .litellm_params
            .api_key
            .as_ref()
            .unwrap()
            .expose(),
        "sk-from-env"
    );
}

#[test]
fn environment_variables_section_feeds_references() {
    let y = "environment_variables:\n  MY_KEY: sk-inline\nmodel_list:\n  - model_name: a\n    litellm_params:\n      model: openai/a\n      api_key: os.environ/MY_KEY\n";
    let c = load(y, &[]).unwrap();
    assert_eq!(
        c.file.model_list[0]
            .litellm_params
            .api_key
            .as_ref()
            .unwrap()
            .expose(),
        "sk-inline"
    );
}

#[test]
fn missing_required_field_and_bad_yaml() {
    let e = err(
        "model_list:\n  - model_name: a\n    litellm_params: {api_base: 'http://x'}\n",
        &[],
    );
    assert_eq!(
        e,
        "config.yaml: model_list[0].litellm_params: missing field `model`"
    );
    let e = err("model_list: [\n", &[]);
    assert!(e.starts_with("config.yaml: not valid YAML:"), "{e}");
    let e = err(
        "model_list:\n  - model_name: a\n    litellm_params: {model: openai/a, api_base: 'localhost:8000'}\n",
        &[],
    );
    assert_eq!(
        e,
        "config.yaml: model_list[0].litellm_params.api_base: must start with http:// or https://"
    );
}

#[test]
fn secrets_never_appear_in_errors() {
    let e = err("general_settings:\n  master_key: [sk-very-secret]\n", &[]);
    assert!(
        e.starts_with("config.yaml: general_settings.master_key:"),
        "{e}"
    );
    assert!(!e.contains("sk-very-secret"), "{e}");
    let debug = format!(
        "{:?}",
        load("general_settings:\n  master_key: sk-very-secret\n", &[]).unwrap()
    );
    assert!(!debug.contains("sk-very-secret"));
}

#[test]
fn unknown_keys_are_tolerated() {
    let y = "guardrails: []\nmodel_list:\n  - model_name: a\n    litellm_params: {model: openai/a, brand_new_param: 1}\n    model_info: {supports_vision: true}\ngeneral_settings: {alerting_threshold: 300, master_key: sk-config-test-0001}\nlitellm_settings: {callbacks: [prometheus], something_new: x}\n";
    let c = load(y, &[]).unwrap();
    assert!(c.file.extra.contains_key("guardrails"));
    assert_eq!(c.file.litellm_settings.callbacks, ["prometheus"]);
}

#[test]
fn master_key_is_required_unless_permitted() {
    let none = load("model_list: []\n", &[]).unwrap();
    let e = Gateway::builder(none).build().err().unwrap().to_string();
    assert!(
        e.starts_with("refusing to start: no master key is set"),
        "{e}"
    );
    assert!(!e.contains('\n'));

    // Published keys and short keys are refused, and the message never shows the key.
    for (weak, why) in [
        ("sk-1234", "publicly known"),
        ("sk-idlehands-quickstart", "publicly known"),
        ("a", "shorter than 16 characters"),
        ("password", "shorter than 16 characters"),
        ("sk-fifteen-char", "shorter than 16 characters"),
    ] {
        let cfg = load(&format!("general_settings: {{master_key: {weak}}}\n"), &[]).unwrap();
        let e = Gateway::builder(cfg).build().err().unwrap().to_string();
        assert!(
            e.starts_with("refusing to start: ") && e.contains(why),
            "{weak}: {e}"
        );
        assert!(
            e.contains("LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY"),
            "{e}"
        );
        assert!(!e.contains("quickstart") && !e.contains("password"), "{e}");
        let permitted = load(
            &format!("general_settings: {{master_key: {weak}}}\n"),
            &[(
                "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY",
                "true",
            )],
        )
        .unwrap();
        assert!(Gateway::builder(permitted).build().is_ok(), "{weak}");
    }
    let sixteen = load("general_settings: {master_key: sk-sixteen-chars}\n", &[]).unwrap();
    assert!(Gateway::builder(sixteen).build().is_ok());

    let from_env = load(
        "model_list: []\n",
        &[("LITELLM_MASTER_KEY", "sk-env-master-0001")],
    )
    .unwrap();
    assert_eq!(
        from_env.master_key.as_ref().unwrap().expose(),
        "sk-env-master-0001"
    );
    assert!(Gateway::builder(from_env).build().is_ok());

    let permitted = load(
        "model_list: []\n",
        &[(
            "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY",
            "true",
        )],
    )
    .unwrap();
    assert!(Gateway::builder(permitted).build().is_ok());
    let permitted = load(
        "general_settings: {dangerously_permit_weak_or_unset_master_key: true}\n",
        &[],
    )
    .unwrap();
    assert!(Gateway::builder(permitted).build().is_ok());
}

#[test]
fn price_file_errors_name_the_file() {
    let y = "litellm_settings: {model_cost_map_path: /nonexistent/prices.json}\ngeneral_settings: {master_key: sk-config-test-0001}\n";
    let e = Gateway::builder(load(y, &[]).unwrap())
        .build()
        .err()
        .unwrap()
        .to_string();
    assert!(e.starts_with("price file /nonexistent/prices.json:"), "{e}");
}

#[test]
fn full_litellm_style_config_parses_into_typed_sections() {
    let y = r#"
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: azure/gpt-4o
      api_base: https://example.openai.azure.com
      api_version: "2024-06-01"
      api_key: os.environ/AZURE_KEY
      rpm: 600
      tpm: 100000
      weight: 2
      order: 1
      stream_timeout: 10
      max_retries: 0
      tags: ["free"]
      input_cost_per_token: 0.000001
    model_info:
      id: my-id
      base_model: azure/gpt-4o
      mode: chat
litellm_settings:
  drop_params: true
  num_retries: 3
  request_timeout: 600
  fallbacks: [{"gpt-4o": ["claude"]}]
  cache: true
  cache_params: {type: redis, host: localhost}
  budget_exceeded_status_code: 429
router_settings:
  routing_strategy: usage-based-routing-v2
  num_retries: 2
  timeout: 30
  cooldown_time: 5
  allowed_fails: 3
  retry_policy: {RateLimitErrorRetries: 3}
  model_group_alias: {"gpt-4": "gpt-4o"}
  redis_host: localhost
  redis_port: "6379"
  redis_password: os.environ/REDIS_PW
general_settings:
  master_key: sk-config-test-0001
  database_url: postgresql://u:p@h/db
  store_prompts_in_spend_logs: true
  disable_spend_logs: false
  proxy_batch_write_at: 5
"#;
    let c = load(y, &[("AZURE_KEY", "k"), ("REDIS_PW", "pw")]).unwrap();
    let p = &c.file.model_list[0].litellm_params;
    assert_eq!(
        (p.rpm, p.tpm, p.weight, p.order),
        (Some(600), Some(100_000), Some(2.0), Some(1))
    );
    assert_eq!(p.cost.input_cost_per_token, Some(0.000001));
    assert_eq!(c.file.model_list[0].model_info.id.as_deref(), Some("my-id"));
    let rs = &c.file.router_settings;
    assert_eq!(rs.redis_port, Some(6379));
    assert_eq!(
        rs.retry_policy.as_ref().unwrap()["RateLimitErrorRetries"],
        3
    );
    assert_eq!(rs.cooldown_time, Some(5.0));
    assert_eq!(
        c.file.litellm_settings.budget_exceeded_status_code,
        Some(429)
    );
    assert_eq!(c.file.general_settings.proxy_batch_write_at, Some(5.0));
    assert_eq!(
        c.file.general_settings.store_prompts_in_spend_logs,
        Some(true)
    );
}
