#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The legacy text completions API (`/v1/completions`, fill-in-the-middle with `suffix`, as
//! local code-completion tools call llama.cpp, vLLM and Ollama): passed through to
//! OpenAI-compatible deployments with the gateway's duties (keys, spend rows, cost, fallbacks).

mod common;

use common::{KEY, post_json, start};
use idlehands_testkit::{FakeAnthropic, FakeOpenAi, Reply};
use serde_json::{Value, json};

fn config(openai_base: &str, anthropic_base: &str) -> String {
    format!(
        "model_list:
  - model_name: coder
    litellm_params:
      model: hosted_vllm/qwen2.5-coder
      api_base: {openai_base}
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000002
  - model_name: claude
    litellm_params:
      model: anthropic/claude-sonnet-4-5
      api_base: {anthropic_base}
      api_key: sk-ant-test
  - model_name: mocky
    litellm_params:
      model: openai/mock-model
      mock_response: 'def add(a, b):'
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000002
  - model_name: flaky
    litellm_params:
      model: openai/flaky
      api_base: {openai_base}
router_settings:
  num_retries: 0
  fallbacks: [{{flaky: [coder]}}]
general_settings:
  master_key: {KEY}
"
    )
}

#[tokio::test]
async fn fill_in_the_middle_passes_through_and_is_costed() {
    let up = FakeOpenAi::start().await;
    let ant = FakeAnthropic::start().await;
    up.push(Reply::text("    return a + b\n").with_usage(1000, 500));
    let gw = start(&config(&up.base_url(), &ant.base_url())).await;
    let resp = post_json(
        &gw,
        "/v1/completions",
        &json!({"model": "coder", "prompt": "def add(a, b):\n", "suffix": "\nprint(add(1, 2))",
               "max_tokens": 32, "temperature": 0}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    // 1000 * $1e-6 + 500 * $2e-6 (the deployment's prices).
    assert_eq!(resp.headers()["x-litellm-response-cost"], "0.002");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["choices"][0]["text"], "    return a + b\n");

    let sent = up.last_request().unwrap();
    assert_eq!(sent.path, "/v1/completions");
    assert_eq!(sent.body["model"], "qwen2.5-coder");
    assert_eq!(sent.body["suffix"], "\nprint(add(1, 2))");
    assert_eq!(sent.body["prompt"], "def add(a, b):\n");
    let recs = gw.records(1).await;
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].call_type, "atext_completion");
    assert_eq!(
        (recs[0].prompt_tokens, recs[0].completion_tokens),
        (1000, 500)
    );
    assert_eq!(recs[0].cost_nanos, 2_000_000);
}

#[tokio::test]
async fn streamed_completions_get_usage_only_when_asked_and_are_costed_either_way() {
    let up = FakeOpenAi::start().await;
    let ant = FakeAnthropic::start().await;
    up.set_default(
        Reply::text("abcdefghijkl")
            .with_usage(100, 50)
            .with_chunk_chars(4),
    );
    let gw = start(&config(&up.base_url(), &ant.base_url())).await;
    for (asked, path) in [
        (false, "/completions"),
        (true, "/engines/coder/completions"),
    ] {
        let mut body = json!({"model": "coder", "prompt": "x = ", "stream": true});
        if asked {
            body["stream_options"] = json!({"include_usage": true});
        }
        let text = post_json(&gw, path, &body).await.text().await.unwrap();
        let chunks: Vec<Value> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        let streamed: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["text"].as_str())
            .collect();
        assert_eq!(streamed, "abcdefghijkl", "{text}");
        let with_usage = chunks.iter().filter(|c| !c["usage"].is_null()).count();
        assert_eq!(with_usage, usize::from(asked), "{text}");
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        // The upstream is always asked for usage, for the cost.
        assert_eq!(
            up.last_request().unwrap().body["stream_options"]["include_usage"],
            true
        );
        assert!(
            text.contains(": x-litellm-response-cost: 0.0002\n"),
            "{text}"
        );
    }
    let recs = gw.records(2).await;
    assert_eq!(recs.len(), 2);
    for r in &recs {
        assert_eq!(r.call_type, "atext_completion");
        assert!(r.stream);
        assert_eq!((r.prompt_tokens, r.completion_tokens), (100, 50));
        assert!(!r.usage_estimated);
    }
}

#[tokio::test]
async fn mock_deployments_answer_in_the_completions_shape() {
    let up = FakeOpenAi::start().await;
    let ant = FakeAnthropic::start().await;
    let gw = start(&config(&up.base_url(), &ant.base_url())).await;
    let resp = post_json(
        &gw,
        "/v1/completions",
        &json!({"model": "mocky", "prompt": "def"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["choices"][0]["text"], "def add(a, b):");
    assert_eq!(up.served(), 0);
}

#[tokio::test]
async fn a_deployment_without_a_completions_api_is_a_clear_400() {
    let up = FakeOpenAi::start().await;
    let ant = FakeAnthropic::start().await;
    let gw = start(&config(&up.base_url(), &ant.base_url())).await;
    let resp = post_json(
        &gw,
        "/v1/completions",
        &json!({"model": "claude", "prompt": "hi"}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("/v1/completions needs an OpenAI-compatible deployment"),
        "{message}"
    );
    assert_eq!(ant.served(), 0);
    // A prompt is required, as OpenAI requires it.
    let resp = post_json(&gw, "/v1/completions", &json!({"model": "coder"})).await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("prompt"),
        "{body}"
    );
}

#[tokio::test]
async fn a_fallback_to_a_completions_model_works() {
    let up = FakeOpenAi::start().await;
    let ant = FakeAnthropic::start().await;
    up.push(Reply::error(500, "boom"));
    up.push(Reply::text("42").with_usage(10, 1));
    let gw = start(&config(&up.base_url(), &ant.base_url())).await;
    let resp = post_json(
        &gw,
        "/v1/completions",
        &json!({"model": "flaky", "prompt": "6*7="}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-litellm-attempted-fallbacks"], "1");
    assert_eq!(resp.headers()["x-litellm-model-group"], "coder");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["choices"][0]["text"], "42");
    let paths: Vec<String> = up.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/v1/completions", "/v1/completions"]);
}
