#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `forward_client_headers_to_llm_api` (every group) and its per-group form under
//! `litellm_settings.model_group_settings`: the caller's `x-*` and `anthropic-beta` headers
//! reach the upstream, its keys and the SDK's `x-stainless-*` never do, the body's own
//! `extra_headers` win, and groups not named get nothing.

mod common;
use common::{KEY, client, start};
use idlehands_testkit::FakeOpenAi;
use serde_json::{Value, json};

fn yaml(up: &FakeOpenAi, settings: &str) -> String {
    format!(
        "model_list:
  - model_name: claude
    litellm_params:
      model: openai/claude-like
      api_base: {base}
      api_key: sk-deployment-key
  - model_name: gpt
    litellm_params:
      model: openai/gpt-like
      api_base: {base}
      api_key: sk-deployment-key
general_settings:
  master_key: {KEY}
  litellm_key_header_name: x-gateway-key
{settings}",
        base = up.base_url()
    )
}

async fn call(base: &str, model: &str, body_extra: Option<Value>) -> u16 {
    let mut body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    if let Some(h) = body_extra {
        body["extra_headers"] = h;
    }
    client()
        .post(format!("{base}/v1/chat/completions"))
        .header("x-gateway-key", format!("Bearer {KEY}"))
        .header("x-litellm-api-key", format!("Bearer {KEY}"))
        .header("x-api-key", "sk-client-side-secret")
        .header("x-trace-id", "trace-1")
        .header("x-tenant", "acme")
        .header("anthropic-beta", "prompt-caching-2024-07-31")
        .header("x-stainless-os", "Linux")
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn every_group_forwards_the_callers_x_headers_but_never_a_key() {
    let up = FakeOpenAi::start().await;
    let gw = start(&yaml(&up, "  forward_client_headers_to_llm_api: true\n")).await;
    assert_eq!(
        call(&gw.base, "gpt", Some(json!({"x-tenant": "from-body"}))).await,
        200
    );
    let sent = up.last_request().unwrap();
    assert_eq!(sent.header("x-trace-id"), Some("trace-1"));
    assert_eq!(sent.header("x-tenant"), Some("from-body"));
    assert_eq!(
        sent.header("anthropic-beta"),
        Some("prompt-caching-2024-07-31")
    );
    assert_eq!(
        sent.header("authorization"),
        Some("Bearer sk-deployment-key")
    );
    for never in [
        "x-gateway-key",
        "x-litellm-api-key",
        "x-api-key",
        "x-stainless-os",
    ] {
        assert_eq!(sent.header(never), None, "{never} went upstream");
    }
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn per_group_forwarding_leaves_other_groups_alone() {
    let up = FakeOpenAi::start().await;
    let gw = start(&yaml(
        &up,
        "litellm_settings:\n  model_group_settings:\n    forward_client_headers_to_llm_api: [claude]\n",
    ))
    .await;
    assert_eq!(call(&gw.base, "claude", None).await, 200);
    let sent = up.last_request().unwrap();
    assert_eq!(sent.header("x-trace-id"), Some("trace-1"));
    assert_eq!(sent.header("x-api-key"), None);
    assert_eq!(call(&gw.base, "gpt", None).await, 200);
    let sent = up.last_request().unwrap();
    assert_eq!(sent.header("x-trace-id"), None);
    assert_eq!(sent.header("anthropic-beta"), None);
    gw.shutdown().await.unwrap();
}
