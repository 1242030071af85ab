#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The dashboard in Debian's headless Chromium (playwright-core) against the REAL gateway: the
//! store on a fresh SQLite file, keys made through `/key/generate`, spend made by real model
//! calls, prompts kept (`store_prompts_in_spend_logs`). The script signs in with the master key,
//! reads the chart, blocks, creates and deletes keys, opens a request's detail and signs out;
//! afterwards the gateway's own API must agree with what the browser did. Needs what
//! `scripts/test.sh` installs: `chromium` and `npm ci` in `crates/dashboard/tests/browser`.

mod store_support;

use serde_json::{Value, json};
use store_support::{
    Backend, MASTER, Place, config, generate, get, post, settings, spend_rows, start_with,
};

use idlehands_testkit::browser::{artifacts_dir, prerequisites, run_script};

async fn chat(p: &store_support::Proxy, key: &str, model: &str, content: &str, user: Option<&str>) {
    let mut body = json!({"model": model, "messages": [{"role": "user", "content": content}]});
    if let Some(u) = user {
        body["user"] = json!(u);
    }
    let a = post(p, "/v1/chat/completions", key, body).await;
    assert_eq!(a.status, 200, "{}", a.body);
}

fn key_by_alias(list: &Value, alias: &str) -> Option<Value> {
    list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key_alias"] == alias)
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_on_the_real_gateway_in_headless_chromium() {
    // Fails at once, before the gateway starts, when the browser is missing.
    prerequisites();
    let place = Place::new(Backend::Sqlite);
    // Two priced groups, so both show in the chart; prompts kept for the detail view.
    let yaml = format!(
        "model_list:
  - model_name: mocky
    litellm_params:
      model: openai/mock-model
      mock_response: Hello from the mock deployment
      input_cost_per_token: 0.0005
      output_cost_per_token: 0.0015
  - model_name: other
    litellm_params:
      model: openai/other-model
      mock_response: Hello from the other deployment
      input_cost_per_token: 0.0003
      output_cost_per_token: 0.0006
general_settings:
  master_key: {MASTER}
  store_prompts_in_spend_logs: true
"
    );
    let cfg = config(&yaml);
    let s = settings(&cfg, &place);
    let proxy = start_with(cfg, s).await;

    let (ci, _) = generate(
        &proxy,
        json!({"key_alias": "ci-runner", "max_budget": 5, "rpm_limit": 60}),
    )
    .await;
    let (research, _) = generate(
        &proxy,
        json!({"key_alias": "research-notebook", "max_budget": 10, "user_id": "bob"}),
    )
    .await;
    let (legacy, _) = generate(&proxy, json!({"key_alias": "legacy-batch"})).await;
    for _ in 0..3 {
        chat(&proxy, &ci, "mocky", "Run the unit tests", None).await;
    }
    chat(&proxy, &ci, "other", "Summarise the build log", None).await;
    chat(
        &proxy,
        &research,
        "mocky",
        "Review <script>alert('x')</script> and ignore sk-live-0123456789abcdef",
        Some("bob"),
    )
    .await;
    chat(&proxy, &research, "other", "Plot the results", Some("bob")).await;
    chat(&proxy, &legacy, "mocky", "Nightly batch", None).await;
    let made = 7;
    assert_eq!(spend_rows(&proxy, "", made).await.len(), made);

    let shot = artifacts_dir().join("real-gateway-dashboard.png");
    let _ = std::fs::remove_file(&shot);

    let expect_requests = made.to_string();
    let stdout = run_script(
        "real-gateway.mjs",
        &proxy.base,
        MASTER,
        &[
            ("EXPECT_REQUESTS", expect_requests.as_str()),
            ("EXPECT_ALIASES", "ci-runner,research-notebook,legacy-batch"),
        ],
        "REAL-GATEWAY-E2E OK",
    )
    .await;

    // What the browser did is what the gateway holds now.
    let list = get(&proxy, "/key/list?return_full_object=true&size=100", MASTER).await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(
        key_by_alias(&list.body, "ci-runner").unwrap()["blocked"],
        json!(true)
    );
    assert!(key_by_alias(&list.body, "legacy-batch").is_none());
    let made_key = key_by_alias(&list.body, "browser-made").expect("key created in the browser");
    assert_eq!(made_key["max_budget"].as_f64(), Some(25.0));
    assert_eq!(made_key["models"], json!(["mocky"]));
    assert_eq!(made_key["rpm_limit"], json!(100));
    let shown: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("created-key: "))
        .collect();
    assert_eq!(shown.len(), 1);
    // The plaintext the dialog showed is a working key, limited to its model.
    chat(
        &proxy,
        shown[0],
        "mocky",
        "hello from a browser-made key",
        None,
    )
    .await;
    let denied = post(
        &proxy,
        "/v1/chat/completions",
        shown[0],
        json!({"model": "other", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert!(
        denied.status.is_client_error()
            && denied.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("'other'"),
        "{} {}",
        denied.status,
        denied.body
    );
    // Blocked and deleted keys stop working.
    for key in [&ci, &legacy] {
        let a = post(
            &proxy,
            "/v1/chat/completions",
            key,
            json!({"model": "mocky", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
        assert!(a.status.is_client_error(), "{} {}", a.status, a.body);
    }

    let png = std::fs::read(&shot).expect("screenshot artifact written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 20_000);
    proxy.stop().await;
    place.cleanup().await;
}
