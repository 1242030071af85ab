#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `azure/` deployments end to end: client -> gateway -> FakeOpenAi at Azure's deployment
//! paths, snapshotting the URL, `api-version` and `api-key` the fake saw and what the client
//! got, plain, streamed and embeddings, with cost.

mod common;
mod provider_common;

use common::{KEY, post_json, start_env};
use idlehands_testkit::{FakeOpenAi, Reply};
use provider_common::{cost_header_nanos, redact, sse_data, upstream_request};
use serde_json::{Value, json};

const HEADERS: &[&str] = &["api-key", "authorization", "content-type"];

fn yaml(base: &str) -> String {
    format!(
        "model_list:
  - model_name: azure-gpt
    litellm_params:
      model: azure/gpt4o-prod
      api_base: {base}
      api_version: 2024-08-01-preview
      api_key: azure-config-key
      input_cost_per_token: 0.0000025
      output_cost_per_token: 0.00001
  - model_name: azure-env
    litellm_params:
      model: azure/env-deployment
  - model_name: azure-embed
    litellm_params:
      model: azure/text-embedding-3-small
      api_base: {base}/openai/
      api_key: azure-config-key
      input_cost_per_token: 0.00000002
router_settings:
  num_retries: 0
general_settings:
  master_key: {KEY}
"
    )
}

async fn gateway(up: &FakeOpenAi) -> common::Running {
    let base = format!("http://{}", up.addr());
    start_env(
        &yaml(&base),
        &[
            ("AZURE_API_BASE", base.as_str()),
            ("AZURE_API_KEY", "azure-env-key"),
            ("AZURE_API_VERSION", "2025-01-01-preview"),
        ],
    )
    .await
}

#[tokio::test]
async fn plain_and_streamed_calls_go_to_the_deployment_url() {
    let up = FakeOpenAi::start().await;
    up.set_default(Reply::text("Hello from Azure.").with_usage(20, 4));
    let gw = gateway(&up).await;
    let resp = post_json(&gw, "/v1/chat/completions", &json!({"model": "azure-gpt", "messages": [{"role": "user", "content": "hi"}], "temperature": 0})).await;
    assert_eq!(resp.status(), 200);
    // 20 * 2500 + 4 * 10000 nano-dollars.
    assert_eq!(cost_header_nanos(&resp), 90_000);
    let body: Value = resp.json().await.unwrap();
    insta::assert_json_snapshot!(
        "azure_plain_upstream_request",
        upstream_request(&up.last_request().unwrap(), HEADERS)
    );
    insta::assert_json_snapshot!("azure_plain_client_response", redact(body));

    let resp = post_json(&gw, "/v1/chat/completions", &json!({"model": "azure-gpt", "messages": [{"role": "user", "content": "hi"}], "stream": true})).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    insta::assert_json_snapshot!(
        "azure_stream_upstream_request",
        upstream_request(&up.last_request().unwrap(), HEADERS)
    );
    insta::assert_json_snapshot!("azure_stream_client_chunks", sse_data(&text));
    let recs = gw.records(2).await;
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert!(recs.iter().all(|r| r.custom_llm_provider == "azure"));
    assert!(recs.iter().all(|r| r.cost_nanos == 90_000), "{recs:?}");
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn base_key_and_version_come_from_the_environment() {
    let up = FakeOpenAi::start().await;
    let gw = gateway(&up).await;
    let resp = post_json(
        &gw,
        "/v1/chat/completions",
        &common::chat_body("azure-env", false),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let sent = up.last_request().unwrap();
    assert_eq!(
        sent.path,
        "/openai/deployments/env-deployment/chat/completions"
    );
    assert_eq!(
        sent.query.as_deref(),
        Some("api-version=2025-01-01-preview")
    );
    assert_eq!(sent.header("api-key"), Some("azure-env-key"));
    assert_eq!(sent.header("authorization"), None);
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn embeddings_use_the_deployment_url_and_are_costed() {
    let up = FakeOpenAi::start().await;
    up.set_default(Reply::text("").with_usage(6, 0));
    let gw = gateway(&up).await;
    let resp = post_json(
        &gw,
        "/v1/embeddings",
        &json!({"model": "azure-embed", "input": "embed me"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(cost_header_nanos(&resp), 6 * 20);
    let sent = up.last_request().unwrap();
    insta::assert_json_snapshot!(
        "azure_embeddings_upstream_request",
        upstream_request(&sent, HEADERS)
    );
    let rec = gw.records(1).await.pop().unwrap();
    assert_eq!(rec.cost_nanos, 120);
    gw.shutdown().await.unwrap();
}
