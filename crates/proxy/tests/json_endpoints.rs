#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `/v1/rerank`, `/v1/images/generations` and `/v1/moderations` forwarded to OpenAI-compatible
//! deployments over real HTTP, with auth, spend rows and cost from usage; a provider without
//! the API is a 400 naming it.

mod common;

use common::{KEY, post_as, start};
use idlehands_testkit::{FakeAnthropic, FakeOpenAi, Reply};
use serde_json::{Value, json};

fn config(openai_base: &str, anthropic_base: &str) -> String {
    format!(
        "model_list:
  - model_name: reranker
    litellm_params:
      model: hosted_vllm/bge-reranker
      api_base: {openai_base}
      input_cost_per_token: 0.000001
  - model_name: images
    litellm_params:
      model: openai/gpt-image-1
      api_base: {openai_base}
  - model_name: moderation
    litellm_params:
      model: openai/omni-moderation-latest
      api_base: {openai_base}
  - model_name: claude
    litellm_params:
      model: anthropic/claude-sonnet-4-5
      api_base: {anthropic_base}
      api_key: sk-ant-test
general_settings:
  master_key: {KEY}
"
    )
}

#[tokio::test]
async fn rerank_images_and_moderations_reach_the_deployment_with_a_row_each() {
    let up = FakeOpenAi::start().await;
    let ant = FakeAnthropic::start().await;
    up.push(Reply::default().with_usage(300, 0));
    let gw = start(&config(&up.base_url(), &ant.base_url())).await;

    let resp = post_as(
        &gw,
        "/v1/rerank",
        KEY,
        &json!({"model": "reranker", "query": "rust", "documents": ["a", "b", "c"], "top_n": 2}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    // 300 prompt tokens at the deployment's $1e-6.
    assert_eq!(resp.headers()["x-litellm-response-cost"], "0.0003");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["results"].as_array().unwrap().len(), 3);
    let sent = up.last_request().unwrap();
    assert_eq!(sent.path, "/v1/rerank");
    assert_eq!(sent.body["model"], "bge-reranker");
    assert_eq!(sent.body["top_n"], 2);

    let resp = post_as(
        &gw,
        "/v1/images/generations",
        KEY,
        &json!({"model": "images", "prompt": "a cat", "n": 1}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert!(body["data"][0]["url"].is_string(), "{body}");
    assert_eq!(up.last_request().unwrap().path, "/v1/images/generations");

    let resp = post_as(
        &gw,
        "/moderations",
        KEY,
        &json!({"model": "moderation", "input": "hello"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["results"][0]["flagged"], false);
    assert_eq!(up.last_request().unwrap().path, "/v1/moderations");

    let recs = gw.records(3).await;
    assert_eq!(recs.len(), 3);
    let mut kinds: Vec<&str> = recs.iter().map(|r| r.call_type).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["aimage_generation", "amoderation", "arerank"]);
    let rerank = recs.iter().find(|r| r.call_type == "arerank").unwrap();
    assert_eq!((rerank.prompt_tokens, rerank.cost_nanos), (300, 300_000));
    assert!(!rerank.usage_estimated);
}

#[tokio::test]
async fn refusals_name_what_is_missing() {
    let up = FakeOpenAi::start().await;
    let ant = FakeAnthropic::start().await;
    let gw = start(&config(&up.base_url(), &ant.base_url())).await;
    for (path, key, body, status, says) in [
        (
            "/v1/rerank",
            KEY,
            json!({"model": "claude", "query": "q", "documents": ["a"]}),
            400,
            "/rerank needs an OpenAI-compatible deployment",
        ),
        (
            "/v1/rerank",
            KEY,
            json!({"model": "reranker", "documents": ["a"]}),
            400,
            "query",
        ),
        (
            "/v1/images/generations",
            "sk-wrong-key-000000",
            json!({"model": "images", "prompt": "x"}),
            401,
            "",
        ),
    ] {
        let resp = post_as(&gw, path, key, &body).await;
        assert_eq!(resp.status(), status, "{path}");
        let body: Value = resp.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{message}");
    }
    assert_eq!(up.served() + ant.served(), 0);
}
