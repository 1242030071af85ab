#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! LiteLLM's `include:` and `credential_list`, read from real files: a deployment in an
//! included file takes its key and base from a credential in a file that file includes, and
//! reaches a strict upstream with them; a deployment added over the API may name the same
//! credential (the store keeps the reference, never the values); a name that does not exist is
//! refused at start-up and by `/model/new`.

mod store_support;

use idlehands_proxy::ProxyConfig;
use idlehands_testkit::FakeOpenAi;
use serde_json::json;
use store_support::{Backend, MASTER, Place, get, post, settings, start_with};

const CRED_KEY: &str = "sk-credential-upstream-0001";

fn write(dir: &std::path::Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn chat(model: &str) -> serde_json::Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn included_deployments_use_named_credentials_from_config_and_api() {
    let up = FakeOpenAi::start().await;
    // A call without the credential's key is refused upstream: the test cannot pass on a
    // default key.
    up.require_key(CRED_KEY);
    let cfg_dir = tempfile::tempdir().unwrap();
    write(
        cfg_dir.path(),
        "config.yaml",
        &format!(
            "include: [models/main.yaml]\ngeneral_settings:\n  master_key: {MASTER}\n  store_model_in_db: true\n"
        ),
    );
    write(
        cfg_dir.path(),
        "models/main.yaml",
        "include: [creds.yaml]\nmodel_list:\n  - model_name: via-cred\n    litellm_params:\n      model: openai/gpt-4o\n      litellm_credential_name: fake-upstream\n",
    );
    write(
        cfg_dir.path(),
        "models/creds.yaml",
        &format!(
            "credential_list:\n  - credential_name: fake-upstream\n    credential_values:\n      api_key: {CRED_KEY}\n      api_base: {}\n    credential_info:\n      description: the test upstream\n",
            up.base_url()
        ),
    );
    let cfg = ProxyConfig::load(&cfg_dir.path().join("config.yaml")).unwrap();
    let canonical = |p: &str| cfg_dir.path().join(p).canonicalize().unwrap();
    assert_eq!(
        cfg.included_files
            .iter()
            .map(|p| p.canonicalize().unwrap())
            .collect::<Vec<_>>(),
        [
            canonical("models/main.yaml"),
            canonical("models/creds.yaml")
        ]
    );
    assert_eq!(format!("{:?}", cfg.credentials), "{\"fake-upstream\"}");

    let place = Place::new(Backend::Sqlite);
    let s = settings(&cfg, &place);
    let p = start_with(cfg, s).await;

    let a = post(&p, "/v1/chat/completions", MASTER, chat("via-cred")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let sent = up.last_request().unwrap();
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {CRED_KEY}").as_str())
    );

    // Listed masked, as LiteLLM masks every `*_credential_*` field; the values never.
    let info = get(&p, "/model/info", MASTER).await;
    assert_eq!(info.status, 200, "{}", info.body);
    let params = &info.body["data"][0]["litellm_params"];
    assert!(
        params["litellm_credential_name"].is_string(),
        "{}",
        info.body
    );
    assert!(!info.body.to_string().contains(CRED_KEY), "{}", info.body);

    // Over the API: the credential fills the deployment, the row keeps only its name.
    let added = post(
        &p,
        "/model/new",
        MASTER,
        json!({"model_name": "added", "litellm_params": {"model": "openai/gpt-4o", "litellm_credential_name": "fake-upstream"}}),
    )
    .await;
    assert_eq!(added.status, 200, "{}", added.body);
    let before = up.served();
    let a = post(&p, "/v1/chat/completions", MASTER, chat("added")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(up.served(), before + 1);
    assert_eq!(
        up.last_request().unwrap().header("authorization"),
        Some(format!("Bearer {CRED_KEY}").as_str())
    );
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", place.url))
        .await
        .unwrap();
    let stored: Vec<String> =
        sqlx::query_scalar("SELECT litellm_params FROM idlehands_proxy_models")
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    // The row keeps the reference (sealed, as every secret-like field), not the values.
    assert_eq!(stored.len(), 1);
    let row: serde_json::Value = serde_json::from_str(&stored[0]).unwrap();
    let mut keys: Vec<&str> = row
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["litellm_credential_name", "model"], "{row}");
    assert!(!stored[0].contains(CRED_KEY), "{}", stored[0]);

    let refused = post(
        &p,
        "/model/new",
        MASTER,
        json!({"model_name": "bad", "litellm_params": {"model": "openai/gpt-4o", "litellm_credential_name": "nope"}}),
    )
    .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    let message = refused.body["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("litellm_credential_name")
            && message.contains("no credential named \"nope\""),
        "{}",
        refused.body
    );
    p.stop().await;
}

#[test]
fn a_missing_include_or_credential_is_a_start_up_error_naming_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "config.yaml", "include: [gone.yaml]\n");
    let root = dir.path().join("config.yaml");
    let e = ProxyConfig::load(&root).err().map(|e| e.to_string());
    let want = format!(
        "{}: include[0]: cannot read {}: ",
        root.display(),
        dir.path().join("gone.yaml").display()
    );
    assert!(e.as_deref().is_some_and(|e| e.starts_with(&want)), "{e:?}");

    write(
        dir.path(),
        "config.yaml",
        "include: [models.yaml]\ncredential_list:\n  - credential_name: one\n    credential_values: {api_key: sk-not-shown-0001}\n",
    );
    write(
        dir.path(),
        "models.yaml",
        "model_list:\n  - model_name: m\n    litellm_params: {model: openai/m, litellm_credential_name: two}\n",
    );
    let e = ProxyConfig::load(&root).err().map(|e| e.to_string());
    assert_eq!(
        e,
        Some(format!(
            "{}: model_list[0].litellm_params.litellm_credential_name: no credential named \"two\" (credential_list has one)",
            root.display()
        ))
    );
}
