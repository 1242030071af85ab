#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `anthropic/` deployments end to end: client -> gateway -> FakeAnthropic (the Messages API
//! wire format), snapshotting the translated request the fake received and the OpenAI-format
//! answer the client got, plain and streamed, with cost.

mod common;
mod provider_common;

use common::{KEY, post_json, start_env};
use idlehands_testkit::{FakeAnthropic, Fault, Reply};
use provider_common::{cost_header_nanos, expected_nanos, redact, sse_data, upstream_request};
use serde_json::{Value, json};

const HEADERS: &[&str] = &[
    "x-api-key",
    "anthropic-version",
    "anthropic-beta",
    "content-type",
];

/// claude-sonnet-4-5 in nano-dollars per token: input, output, cache read, cache creation.
const SONNET: (i64, i64, i64, i64) = (3000, 15000, 300, 3750);

fn yaml(base: &str) -> String {
    format!(
        "model_list:
  - model_name: claude
    litellm_params:
      model: anthropic/claude-sonnet-4-5
      api_base: {base}
      api_key: sk-ant-config-key
      timeout: 20
  - model_name: claude-bare
    litellm_params:
      model: claude-opus-4-6
      api_base: {base}
      api_key: os.environ/ANTHROPIC_API_KEY
  - model_name: claude-env-default
    litellm_params:
      model: anthropic/claude-haiku-4-5
      api_base: {base}
router_settings:
  num_retries: 0
general_settings:
  master_key: {KEY}
"
    )
}

async fn gateway(up: &FakeAnthropic) -> common::Running {
    start_env(
        &yaml(&up.base_url()),
        &[("ANTHROPIC_API_KEY", "sk-ant-from-env")],
    )
    .await
}

/// System, multi-turn, images (data URI and URL), tools, tool_choice, a tool result, stop
/// sequences and reasoning_effort in one request.
fn rich_request(stream: bool) -> Value {
    let mut req = json!({
        "model": "claude",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in these pictures?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}
            ]},
            {"role": "assistant", "content": "A cat. Let me check the weather.", "tool_calls": [
                {"id": "toolu_01", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "toolu_01", "content": "18C and sunny"},
            {"role": "user", "content": "And tomorrow?"}
        ],
        "tools": [{"type": "function", "function": {
            "name": "get_weather", "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "day": {"type": "string"}}, "required": ["city"]}
        }}],
        "tool_choice": "auto",
        "stop": ["\n\nHuman:"],
        "max_tokens": 4000,
        "reasoning_effort": "low",
        "user": "end-user-7"
    });
    if stream {
        req["stream"] = json!(true);
        req["stream_options"] = json!({"include_usage": true});
    }
    req
}

fn rich_reply() -> Reply {
    let mut r = Reply::text("Sunny again tomorrow.")
        .with_reasoning("The user wants tomorrow's forecast.")
        .with_tool_call(
            "toolu_02",
            "get_weather",
            json!({"city": "Paris", "day": "tomorrow"}),
        )
        .with_usage(100, 20);
    r.usage.cache_read_input_tokens = Some(60);
    r.usage.cache_creation_input_tokens = Some(10);
    r
}

#[tokio::test]
async fn plain_call_translates_request_and_response_with_cache_cost() {
    let up = FakeAnthropic::start().await;
    up.set_default(rich_reply());
    let gw = gateway(&up).await;
    let resp = post_json(&gw, "/v1/chat/completions", &rich_request(false)).await;
    assert_eq!(resp.status(), 200);
    let cost = cost_header_nanos(&resp);
    let body: Value = resp.json().await.unwrap();

    let sent = up.last_request().unwrap();
    insta::assert_json_snapshot!(
        "anthropic_plain_upstream_request",
        upstream_request(&sent, HEADERS)
    );
    insta::assert_json_snapshot!("anthropic_plain_client_response", redact(body.clone()));

    // 30 uncached + 60 cache reads + 10 cache writes, 20 out.
    let want = expected_nanos(SONNET, 30, 60, 10, 20);
    assert_eq!(cost, want);
    let rec = gw.records(1).await.pop().unwrap();
    assert_eq!(rec.cost_nanos as i64, want);
    assert_eq!(rec.custom_llm_provider, "anthropic");
    assert_eq!((rec.prompt_tokens, rec.completion_tokens), (100, 20));
    assert_eq!(rec.response_id.as_deref(), body["id"].as_str());
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn streamed_call_becomes_openai_chunks_with_usage_and_cost() {
    let up = FakeAnthropic::start().await;
    up.set_default(rich_reply().with_chunk_chars(6));
    let gw = gateway(&up).await;
    let resp = post_json(&gw, "/v1/chat/completions", &rich_request(true)).await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = resp.text().await.unwrap();
    let sent = up.last_request().unwrap();
    assert_eq!(sent.body["stream"], true);
    insta::assert_json_snapshot!(
        "anthropic_stream_upstream_request",
        upstream_request(&sent, HEADERS)
    );
    insta::assert_json_snapshot!("anthropic_stream_client_chunks", sse_data(&text));

    let rec = gw.records(1).await.pop().unwrap();
    assert!(rec.stream);
    assert_eq!((rec.prompt_tokens, rec.completion_tokens), (100, 20));
    assert_eq!(
        rec.cost_nanos as i64,
        expected_nanos(SONNET, 30, 60, 10, 20)
    );
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn bare_claude_names_and_env_keys_resolve_to_anthropic() {
    let up = FakeAnthropic::start().await;
    up.set_default(Reply::text("hi"));
    let gw = gateway(&up).await;
    for group in ["claude-bare", "claude-env-default", "claude"] {
        let resp = post_json(
            &gw,
            "/v1/chat/completions",
            &common::chat_body(group, false),
        )
        .await;
        assert_eq!(resp.status(), 200, "{group}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["choices"][0]["message"]["content"], "hi");
    }
    let keys: Vec<(String, String)> = up
        .requests()
        .iter()
        .map(|r| {
            (
                r.body["model"].as_str().unwrap().to_string(),
                r.header("x-api-key").unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            ("claude-opus-4-6".to_string(), "sk-ant-from-env".to_string()),
            (
                "claude-haiku-4-5".to_string(),
                "sk-ant-from-env".to_string()
            ),
            (
                "claude-sonnet-4-5".to_string(),
                "sk-ant-config-key".to_string()
            ),
        ]
    );
    // Anthropic requires max_tokens: the model's max output when the client gives none.
    assert_eq!(up.requests()[0].body["max_tokens"], 128000);
    let recs = gw.records(3).await;
    assert_eq!(recs.len(), 3, "{recs:?}");
    assert!(recs.iter().all(|r| r.custom_llm_provider == "anthropic"));
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn anthropic_errors_are_mapped_to_gateway_statuses() {
    let up = FakeAnthropic::start().await;
    let gw = gateway(&up).await;
    let call = || async {
        post_json(
            &gw,
            "/v1/chat/completions",
            &common::chat_body("claude", false),
        )
        .await
    };
    // Defaults, not queued replies, so a retrying router sees the same answer every time.
    up.set_default(Reply::error(529, "Overloaded"));
    let resp = call().await;
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("AnthropicException - Overloaded"), "{msg}");

    up.set_default(Reply::rate_limited(7));
    let resp = call().await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");

    up.set_default(Reply::error(400, "messages: roles must alternate"));
    let resp = call().await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    insta::assert_json_snapshot!("anthropic_400_error", body);
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn untranslatable_answers_are_502_with_the_upstream_excerpt() {
    let up = FakeAnthropic::start().await;
    up.set_default(Reply::fault(Fault::Raw {
        status: 200,
        body: r#"{"surprise":"no content here"}"#.to_string(),
    }));
    let gw = gateway(&up).await;
    let resp = post_json(
        &gw,
        "/v1/chat/completions",
        &common::chat_body("claude", false),
    )
    .await;
    assert_eq!(resp.status(), 502);
    let body: Value = resp.json().await.unwrap();
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("Upstream response could not be translated: "),
        "{msg}"
    );
    assert!(msg.contains("no content here"), "{msg}");

    // Streamed: the body is not an event stream at all. Nothing reached the client yet, so
    // it is a 502 (or, if the gateway had already committed to the stream, an error frame).
    let resp = post_json(
        &gw,
        "/v1/chat/completions",
        &common::chat_body("claude", true),
    )
    .await;
    let status = resp.status();
    let text = resp.text().await.unwrap();
    let err = if status == 200 {
        sse_data(&text).pop().expect(&text)
    } else {
        assert_eq!(status, 502, "{text}");
        serde_json::from_str(&text).unwrap()
    };
    let msg = err["error"]["message"].as_str().expect(&text);
    assert!(msg.contains("could not be translated"), "{msg}");
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_stream_cut_mid_way_ends_with_an_error_frame() {
    let up = FakeAnthropic::start().await;
    let mut cut = Reply::fault(Fault::ResetMidStream { after: 4 });
    cut.text = "a reply that never finishes".to_string();
    cut.chunk_chars = 4;
    // Spaced out so the first events reach the client before the reset does.
    cut.chunk_delay = std::time::Duration::from_millis(100);
    up.set_default(cut);
    let gw = gateway(&up).await;
    let resp = post_json(
        &gw,
        "/v1/chat/completions",
        &common::chat_body("claude", true),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let frames = sse_data(&text);
    assert_eq!(
        frames[0]["choices"][0]["delta"]["role"], "assistant",
        "{text}"
    );
    let last = frames.last().unwrap();
    assert!(last["error"]["message"].is_string(), "{text}");
    assert!(!text.contains("[DONE]"), "{text}");
    let rec = gw.records(1).await.pop().unwrap();
    assert!(rec.error_message.is_some(), "{rec:?}");
    gw.shutdown().await.unwrap();
}
