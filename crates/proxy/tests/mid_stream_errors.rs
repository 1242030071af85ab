#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Providers fail mid-stream in their own words: Anthropic's `error` event
//! (`overloaded_error`), a Bedrock exception message (`throttlingException`), an OpenAI-style
//! `{"error": ...}` data frame, Gemini's error object. Whichever, the client gets the chunks
//! already streamed, then one OpenAI-style error frame carrying the provider's message and no
//! `[DONE]`; the call leaves exactly one failure row.

mod common;

use common::{KEY, chat_body, client, start_env};
use idlehands_proxy::CallStatus;
use idlehands_testkit::{FakeAnthropic, FakeBedrock, FakeGemini, FakeOpenAi, Reply};
use serde_json::Value;

fn data_frames(text: &str) -> Vec<String> {
    idlehands_testkit::frame::payloads(text.as_bytes())
}

#[tokio::test]
async fn each_providers_mid_stream_error_reaches_the_client_and_leaves_one_failure_row() {
    let openai = FakeOpenAi::start().await;
    let anthropic = FakeAnthropic::start().await;
    let bedrock = FakeBedrock::start().await;
    let gemini = FakeGemini::start().await;
    let yaml = format!(
        "model_list:
  - model_name: local
    litellm_params:
      model: openai/qwen
      api_base: {}
      api_key: none
  - model_name: claude
    litellm_params:
      model: anthropic/claude-sonnet-4-5
      api_base: {}
      api_key: sk-ant-config-key
  - model_name: br
    litellm_params:
      model: bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0
      api_base: {}
      aws_region_name: us-west-2
      aws_access_key_id: AKIDCONFIGEXAMPLE
      aws_secret_access_key: config-secret-example
  - model_name: gem
    litellm_params:
      model: gemini/gemini-2.5-flash
      api_base: {}
      api_key: gemini-test-key
router_settings:
  num_retries: 0
general_settings:
  master_key: {KEY}
",
        openai.base_url(),
        anthropic.base_url(),
        bedrock.base_url(),
        gemini.base_url()
    );
    let gw = start_env(&yaml, &[]).await;
    let cases = [
        (
            "local",
            "server_error",
            "The server had an error while processing",
        ),
        ("claude", "overloaded_error", "Overloaded"),
        (
            "br",
            "throttlingException",
            "Too many requests, please wait",
        ),
        (
            "gem",
            "UNAVAILABLE",
            "The model is overloaded. Please try again later.",
        ),
    ];
    for (model, kind, message) in cases {
        // Two frames out, then the error: the client has seen bytes, so no retry can hide it.
        let reply = Reply::text("partial answer that never ends")
            .with_chunk_chars(4)
            .with_error_mid_stream(2, kind, message);
        match model {
            "local" => openai.push(reply),
            "claude" => anthropic.push(reply),
            "br" => bedrock.push(reply),
            _ => gemini.push(reply),
        }
        let resp = client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&chat_body(model, true))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{model}: the stream had begun");
        let text = resp.text().await.unwrap();
        let frames = data_frames(&text);
        assert!(!frames.iter().any(|f| f == "[DONE]"), "{model}: {text}");
        let last: Value = serde_json::from_str(frames.last().unwrap()).unwrap();
        let said = last["error"]["message"].as_str().unwrap_or_default();
        assert!(said.contains(message), "{model}: {last}");
        assert!(
            frames.len() >= 2,
            "{model}: the chunks before the error reach the client: {text}"
        );
    }
    let recs = gw.records(cases.len()).await;
    assert_eq!(recs.len(), cases.len(), "{recs:?}");
    for r in &recs {
        assert_eq!(r.status, CallStatus::Failure, "{r:?}");
    }
}
