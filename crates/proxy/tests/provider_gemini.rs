#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `gemini/` deployments end to end: client -> gateway -> FakeGemini (generateContent,
//! streamGenerateContent with `alt=sse`, batchEmbedContents), snapshotting the translated
//! request and the OpenAI-format answer, plain and streamed, with cost.

mod common;
mod provider_common;

use common::{KEY, post_json, start_env};
use idlehands_testkit::{FakeGemini, Fault, Reply};
use provider_common::{cost_header_nanos, expected_nanos, redact, sse_data, upstream_request};
use serde_json::{Value, json};

const HEADERS: &[&str] = &["x-goog-api-key", "content-type"];

/// gemini/gemini-2.5-flash in nano-dollars per token: input, output, cache read, creation.
const FLASH: (i64, i64, i64, i64) = (300, 2500, 30, 300);

fn yaml(base: &str) -> String {
    format!(
        "model_list:
  - model_name: gem
    litellm_params:
      model: gemini/gemini-2.5-flash
      api_base: {base}
      api_key: os.environ/GEMINI_API_KEY
      timeout: 20
  - model_name: gem-bare
    litellm_params:
      model: gemini-2.5-flash
      api_base: {base}
  - model_name: gem-embed
    litellm_params:
      model: gemini/text-embedding-004
      api_base: {base}
      input_cost_per_token: 0.0000001
router_settings:
  num_retries: 0
general_settings:
  master_key: {KEY}
"
    )
}

async fn gateway(up: &FakeGemini) -> common::Running {
    start_env(
        &yaml(&up.base_url()),
        &[("GEMINI_API_KEY", "AIza-fake-gemini")],
    )
    .await
}

fn request(stream: bool) -> Value {
    let mut req = json!({
        "model": "gem",
        "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": [
                {"type": "text", "text": "Describe the picture, then look up its city."},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQSkZJRg=="}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "lookup_city", "arguments": "{\"landmark\":\"Eiffel Tower\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"city\":\"Paris\"}"},
            {"role": "user", "content": "Now the weather there."}
        ],
        "tools": [{"type": "function", "function": {
            "name": "get_weather", "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
        }}],
        "tool_choice": "auto",
        "temperature": 0.2,
        "max_tokens": 256,
        "stop": ["END"]
    });
    if stream {
        req["stream"] = json!(true);
        req["stream_options"] = json!({"include_usage": true});
    }
    req
}

fn reply() -> Reply {
    Reply::text("A tower in Paris.")
        .with_tool_call("call_2", "get_weather", json!({"city": "Paris"}))
        .with_usage(40, 12)
}

#[tokio::test]
async fn plain_call_translates_request_and_response_with_cost() {
    let up = FakeGemini::start().await;
    up.set_default(reply());
    let gw = gateway(&up).await;
    let resp = post_json(&gw, "/v1/chat/completions", &request(false)).await;
    assert_eq!(resp.status(), 200);
    let cost = cost_header_nanos(&resp);
    let body: Value = resp.json().await.unwrap();
    let sent = up.last_request().unwrap();
    insta::assert_json_snapshot!(
        "gemini_plain_upstream_request",
        upstream_request(&sent, HEADERS)
    );
    insta::assert_json_snapshot!("gemini_plain_client_response", redact(body));
    let want = expected_nanos(FLASH, 40, 0, 0, 12);
    assert_eq!(cost, want);
    let rec = gw.records(1).await.pop().unwrap();
    assert_eq!(rec.cost_nanos as i64, want);
    assert_eq!(rec.custom_llm_provider, "gemini");
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn streamed_call_uses_sse_and_becomes_openai_chunks() {
    let up = FakeGemini::start().await;
    up.set_default(reply().with_chunk_chars(7));
    let gw = gateway(&up).await;
    let resp = post_json(&gw, "/v1/chat/completions", &request(true)).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let sent = up.last_request().unwrap();
    insta::assert_json_snapshot!(
        "gemini_stream_upstream_request",
        upstream_request(&sent, HEADERS)
    );
    insta::assert_json_snapshot!("gemini_stream_client_chunks", sse_data(&text));
    let rec = gw.records(1).await.pop().unwrap();
    assert!(rec.stream);
    assert_eq!((rec.prompt_tokens, rec.completion_tokens), (40, 12));
    assert_eq!(rec.cost_nanos as i64, expected_nanos(FLASH, 40, 0, 0, 12));
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn bare_gemini_names_use_the_env_key() {
    let up = FakeGemini::start().await;
    up.set_default(Reply::text("ok"));
    let gw = gateway(&up).await;
    let resp = post_json(
        &gw,
        "/v1/chat/completions",
        &common::chat_body("gem-bare", false),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let sent = up.last_request().unwrap();
    assert_eq!(sent.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(sent.header("x-goog-api-key"), Some("AIza-fake-gemini"));
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn embeddings_are_translated_and_costed() {
    let up = FakeGemini::start().await;
    let gw = gateway(&up).await;
    let resp = post_json(
        &gw,
        "/v1/embeddings",
        &json!({"model": "gem-embed", "input": ["first text", "a second, longer text"]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let cost = cost_header_nanos(&resp);
    let body: Value = resp.json().await.unwrap();
    let sent = up.last_request().unwrap();
    insta::assert_json_snapshot!(
        "gemini_embeddings_upstream_request",
        upstream_request(&sent, HEADERS)
    );
    insta::assert_json_snapshot!("gemini_embeddings_client_response", body.clone());
    let prompt = body["usage"]["prompt_tokens"].as_i64().unwrap();
    assert!(prompt > 0);
    assert_eq!(cost, prompt * 100);
    let rec = gw.records(1).await.pop().unwrap();
    assert_eq!(rec.call_type, "aembedding");
    assert_eq!(rec.cost_nanos as i64, prompt * 100);
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn gemini_errors_and_untranslatable_answers() {
    let up = FakeGemini::start().await;
    let gw = gateway(&up).await;
    let call = || async {
        post_json(
            &gw,
            "/v1/chat/completions",
            &common::chat_body("gem", false),
        )
        .await
    };
    up.set_default(Reply::rate_limited(3));
    let resp = call().await;
    assert_eq!(resp.status(), 429);
    let body: Value = resp.json().await.unwrap();
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("GeminiException - "), "{msg}");

    up.set_default(Reply::fault(Fault::Raw {
        status: 200,
        body: r#"{"candidates":"not a list"}"#.to_string(),
    }));
    let resp = call().await;
    assert_eq!(resp.status(), 502);
    let body: Value = resp.json().await.unwrap();
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("Upstream response could not be translated: ")
            && msg.contains("not a list"),
        "{msg}"
    );
    gw.shutdown().await.unwrap();
}
