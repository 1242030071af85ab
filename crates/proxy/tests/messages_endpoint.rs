#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The gateway's Anthropic-format endpoint end to end: an Anthropic-format client -> gateway
//! `/v1/messages` -> any configured model (an OpenAI upstream, an Anthropic upstream), plain
//! and streamed, with errors in Anthropic's envelope and spend recorded as
//! `anthropic_messages`.

mod common;
mod provider_common;

use common::{KEY, client, start};
use idlehands_testkit::{FakeAnthropic, FakeOpenAi, Reply};
use provider_common::{cost_header_nanos, expected_nanos, redact, sse_events, upstream_request};
use serde_json::{Value, json};

fn yaml(openai: &str, anthropic: &str) -> String {
    format!(
        "model_list:
  - model_name: gpt
    litellm_params:
      model: openai/gpt-4o
      api_base: {openai}
      api_key: sk-upstream-openai
      input_cost_per_token: 0.0000025
      output_cost_per_token: 0.00001
  - model_name: claude
    litellm_params:
      model: anthropic/claude-sonnet-4-5
      api_base: {anthropic}
      api_key: sk-ant-upstream
router_settings:
  num_retries: 0
general_settings:
  master_key: {KEY}
"
    )
}

struct Setup {
    openai: FakeOpenAi,
    anthropic: FakeAnthropic,
    gw: common::Running,
}

async fn setup() -> Setup {
    let openai = FakeOpenAi::start().await;
    let anthropic = FakeAnthropic::start().await;
    let gw = start(&yaml(&openai.base_url(), &anthropic.base_url())).await;
    Setup {
        openai,
        anthropic,
        gw,
    }
}

/// An Anthropic-format request: system, a tool, a tool round trip, and a new question.
fn messages_request(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "max_tokens": 512,
        "stream": stream,
        "system": "You are a weather bot.",
        "tools": [{"name": "get_weather", "description": "Weather for a city",
                   "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}],
        "messages": [
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {"city": "Oslo"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_9", "content": "-3C, snow"},
                {"type": "text", "text": "And in Bergen?"}
            ]}
        ],
        "stop_sequences": ["STOP"],
        "temperature": 0.3
    })
}

fn post(s: &Setup, path: &str) -> reqwest::RequestBuilder {
    client()
        .post(s.gw.url(path))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
}

#[tokio::test]
async fn plain_messages_call_to_an_openai_model() {
    let s = setup().await;
    s.openai.set_default(
        Reply::text("Checking Bergen.")
            .with_tool_call("call_b", "get_weather", json!({"city": "Bergen"}))
            .with_usage(60, 14),
    );
    let resp = post(&s, "/v1/messages")
        .json(&messages_request("gpt", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // 60 * 2500 + 14 * 10000 nano-dollars.
    assert_eq!(cost_header_nanos(&resp), 290_000);
    assert!(resp.headers().contains_key("x-litellm-call-id"));
    let body: Value = resp.json().await.unwrap();
    let sent = s.openai.last_request().unwrap();
    insta::assert_json_snapshot!(
        "messages_to_openai_upstream_request",
        upstream_request(&sent, &["authorization"])
    );
    insta::assert_json_snapshot!("messages_to_openai_client_response", redact(body));
    let rec = s.gw.records(1).await.pop().unwrap();
    assert_eq!(rec.call_type, "anthropic_messages");
    assert_eq!(rec.model_group, "gpt");
    assert_eq!(rec.cost_nanos, 290_000);
    assert_eq!((rec.prompt_tokens, rec.completion_tokens), (60, 14));
    s.gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn streamed_messages_call_to_an_openai_model() {
    let s = setup().await;
    s.openai.set_default(
        Reply::text("Bergen: rain.")
            .with_reasoning("Bergen is rainy.")
            .with_tool_call("call_b", "get_weather", json!({"city": "Bergen"}))
            .with_usage(60, 14)
            .with_chunk_chars(5),
    );
    let resp = post(&s, "/v1/messages")
        .json(&messages_request("gpt", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = resp.text().await.unwrap();
    let sent = s.openai.last_request().unwrap();
    assert_eq!(sent.body["stream_options"]["include_usage"], true);
    insta::assert_json_snapshot!("messages_stream_from_openai_events", sse_events(&text));
    let rec = s.gw.records(1).await.pop().unwrap();
    assert_eq!(rec.call_type, "anthropic_messages");
    assert!(rec.stream);
    assert_eq!(rec.cost_nanos, 290_000);
    s.gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn messages_through_an_anthropic_model_keep_thinking_and_cache_usage() {
    let s = setup().await;
    let mut reply = Reply::text("Rain in Bergen.")
        .with_reasoning("Bergen: west coast.")
        .with_usage(100, 20);
    reply.usage.cache_read_input_tokens = Some(60);
    reply.usage.cache_creation_input_tokens = Some(10);
    s.anthropic.set_default(reply.with_chunk_chars(6));
    let resp = post(&s, "/v1/messages")
        .json(&messages_request("claude", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let want = expected_nanos((3000, 15000, 300, 3750), 30, 60, 10, 20);
    assert_eq!(cost_header_nanos(&resp), want);
    let body: Value = resp.json().await.unwrap();
    insta::assert_json_snapshot!("messages_to_anthropic_client_response", redact(body));
    insta::assert_json_snapshot!(
        "messages_to_anthropic_upstream_request",
        upstream_request(
            &s.anthropic.last_request().unwrap(),
            &["x-api-key", "anthropic-version"]
        )
    );

    let resp = post(&s, "/v1/messages")
        .json(&messages_request("claude", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    insta::assert_json_snapshot!("messages_stream_from_anthropic_events", sse_events(&text));
    let recs = s.gw.records(2).await;
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert!(recs.iter().all(|r| r.call_type == "anthropic_messages"));
    assert!(recs.iter().all(|r| r.cost_nanos as i64 == want), "{recs:?}");
    s.gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn errors_come_back_in_anthropic_envelope() {
    let s = setup().await;
    // No key.
    let resp = client()
        .post(s.gw.url("/v1/messages"))
        .json(&messages_request("gpt", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "authentication_error");

    // A wrong key wins over a broken body.
    let resp = client()
        .post(s.gw.url("/v1/messages"))
        .header("x-api-key", "sk-wrong")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    let resp = post(&s, "/v1/messages")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");

    let resp = post(&s, "/v1/messages")
        .json(&messages_request("no-such-model", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    insta::assert_json_snapshot!("messages_unknown_model_error", body);

    s.openai.set_default(Reply::rate_limited(4));
    let resp = post(&s, "/v1/messages")
        .json(&messages_request("gpt", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "4");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "rate_limit_error");

    // An upstream answer that cannot be read: 502 with the excerpt, still Anthropic-shaped.
    s.anthropic
        .set_default(Reply::fault(idlehands_testkit::Fault::Raw {
            status: 200,
            body: r#"{"weird":"shape"}"#.to_string(),
        }));
    let resp = post(&s, "/v1/messages")
        .json(&messages_request("claude", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "api_error");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("Upstream response could not be translated: ") && msg.contains("weird"),
        "{msg}"
    );
    s.gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn mid_stream_failure_becomes_an_anthropic_error_event() {
    let s = setup().await;
    // Reset after three chunks: the client already has events, so the error arrives in-band.
    let mut cut = Reply::fault(idlehands_testkit::Fault::ResetMidStream { after: 3 });
    cut.text = "a long answer that will be cut short".to_string();
    cut.chunk_chars = 4;
    // Spaced out so the first chunks reach the gateway before the reset does.
    cut.chunk_delay = std::time::Duration::from_millis(100);
    s.openai.set_default(cut);
    let resp = post(&s, "/v1/messages")
        .json(&messages_request("gpt", true))
        .send()
        .await
        .unwrap();
    let text = resp.text().await.unwrap();
    let events = sse_events(&text);
    assert_eq!(events[0]["event"], "message_start", "{text}");
    let last = events.last().unwrap();
    assert_eq!(last["event"], "error", "{text}");
    assert_eq!(last["data"]["type"], "error");
    s.gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn count_tokens_estimates_and_needs_a_key() {
    let s = setup().await;
    let resp = post(&s, "/v1/messages/count_tokens")
        .json(&messages_request("gpt", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert!(body["input_tokens"].as_u64().unwrap() > 10, "{body}");
    // The upstream has no tokenizer route (404): it is asked once, then left alone a while.
    let again = post(&s, "/v1/messages/count_tokens")
        .json(&messages_request("gpt", false))
        .send()
        .await
        .unwrap();
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["input_tokens"], body["input_tokens"]);
    let asked = s
        .openai
        .request_lines()
        .iter()
        .filter(|l| l.contains("/tokenize"))
        .count();
    assert_eq!(asked, 1, "{:?}", s.openai.request_lines());
    let resp = client()
        .post(s.gw.url("/v1/messages/count_tokens"))
        .json(&messages_request("gpt", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "authentication_error");
    s.gw.shutdown().await.unwrap();
}
