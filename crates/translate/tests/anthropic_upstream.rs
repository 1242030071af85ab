//! OpenAI requests translated for Anthropic, sent over real HTTP to `FakeAnthropic`, and the
//! answers translated back: request in/out and response in/out pinned as snapshots.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use idlehands_testkit::{FakeAnthropic, Fault, Reply};
use idlehands_translate::TranslateError;
use idlehands_translate::anthropic::{
    self, AnthropicStreamToOpenAi, MessagesOptions, from_messages_response, map_error,
    to_messages_request,
};
use serde_json::{Value, json};

const CREATED: u64 = 1_700_000_000;

fn chat_request(stream: bool) -> Value {
    json!({
        "model": "claude-alias",
        "messages": [
            {"role": "system", "content": "You are a weather bot."},
            {"role": "user", "content": "Weather in Paris?"}
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "reasoning_effort": "low",
        "max_tokens": 2048,
        "stream": stream
    })
}

async fn send(fake: &FakeAnthropic, req: &Value) -> (Value, u16, String) {
    let body = to_messages_request(req, "claude-sonnet-4-5", &MessagesOptions::default()).unwrap();
    let url = anthropic::endpoint(Some(&fake.base_url()));
    let headers = anthropic::request_headers("sk-ant-test", &[]);
    let (status, text) = common::post(&url, &headers, &body).await;
    (body, status, text)
}

fn cached_reply(reply: Reply) -> Reply {
    let mut reply = reply.with_usage(150, 12);
    reply.usage.cache_read_input_tokens = Some(100);
    reply.usage.cache_creation_input_tokens = Some(20);
    reply
}

#[tokio::test]
async fn plain_thinking_and_tool_use_round_trip() {
    let fake = FakeAnthropic::start().await;
    fake.push(cached_reply(
        Reply::tool_call("toolu_01", "get_weather", json!({"city": "Paris"}))
            .with_reasoning("The user wants weather."),
    ));
    let (sent, status, text) = send(&fake, &chat_request(false)).await;
    assert_eq!(status, 200, "{text}");
    let rec = fake.last_request().unwrap();
    assert_eq!(rec.body, sent);
    let upstream: Value = serde_json::from_str(&text).unwrap();
    let translated = from_messages_response(&upstream, "claude-alias", CREATED).unwrap();
    insta::assert_json_snapshot!(json!({
        "headers": common::header_subset(&rec, &["x-api-key", "anthropic-version", "content-type"]),
        "request": rec.body,
        "upstream_response": upstream,
        "translated": translated,
    }));
}

#[tokio::test]
async fn streamed_text_with_cache_usage() {
    let fake = FakeAnthropic::start().await;
    fake.push(cached_reply(
        Reply::text("Sunny and 21C.")
            .with_reasoning("Check the forecast.")
            .with_chunk_chars(6),
    ));
    let req = chat_request(true);
    let body = to_messages_request(&req, "claude-sonnet-4-5", &MessagesOptions::default()).unwrap();
    assert_eq!(body["stream"], true);
    let (status, events) = common::post_sse(
        &anthropic::endpoint(Some(&fake.base_url())),
        &anthropic::request_headers("sk-ant-test", &[]),
        &body,
    )
    .await;
    assert_eq!(status, 200);
    let mut machine = AnthropicStreamToOpenAi::new("claude-alias", CREATED);
    let mut chunks = Vec::new();
    for ev in &events {
        chunks.extend(machine.push(ev.event.as_deref(), &ev.data).unwrap());
    }
    assert!(machine.is_complete());
    chunks.push(machine.finish().unwrap().unwrap());
    let text: String = chunks
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
        })
        .collect();
    assert_eq!(text, "Sunny and 21C.");
    let usage = machine.usage().unwrap();
    assert_eq!(usage["prompt_tokens"], 150);
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 100);
    insta::assert_json_snapshot!(chunks);
}

#[tokio::test]
async fn streamed_tool_call_arguments_arrive_whole() {
    let fake = FakeAnthropic::start().await;
    fake.push(Reply::tool_call(
        "toolu_02",
        "get_weather",
        json!({"city": "Rome"}),
    ));
    let body = to_messages_request(
        &chat_request(true),
        "claude-sonnet-4-5",
        &MessagesOptions::default(),
    )
    .unwrap();
    let (_, events) = common::post_sse(
        &anthropic::endpoint(Some(&fake.base_url())),
        &anthropic::request_headers("k", &[]),
        &body,
    )
    .await;
    let mut machine = AnthropicStreamToOpenAi::new("claude-alias", CREATED);
    let mut args = String::new();
    for ev in &events {
        for c in machine.push(ev.event.as_deref(), &ev.data).unwrap() {
            if let Some(a) = c.pointer("/choices/0/delta/tool_calls/0/function/arguments") {
                args.push_str(a.as_str().unwrap());
            }
        }
    }
    assert_eq!(args, r#"{"city":"Rome"}"#);
    assert_eq!(machine.finish_reason(), Some("tool_calls"));
}

#[tokio::test]
async fn provider_errors_map_to_gateway_statuses() {
    let fake = FakeAnthropic::start().await;
    fake.push(Reply::error(529, "Overloaded"));
    fake.push(Reply::rate_limited(7));
    let (_, status, text) = send(&fake, &chat_request(false)).await;
    assert_eq!(status, 529);
    let mapped = map_error(status, &text);
    assert_eq!(
        (mapped.status, mapped.message.as_str()),
        (503, "AnthropicException - Overloaded")
    );
    let (_, status, text) = send(&fake, &chat_request(false)).await;
    assert_eq!(map_error(status, &text).status, 429);

    // The fake checks headers as the real API does.
    let (status, text) = common::post(
        &anthropic::endpoint(Some(&fake.base_url())),
        &[
            ("x-api-key".into(), "k".into()),
            ("content-type".into(), "application/json".into()),
        ],
        &json!({"model": "m", "max_tokens": 5, "messages": []}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        map_error(status, &text)
            .message
            .contains("anthropic-version")
    );
}

#[tokio::test]
async fn untranslatable_answers_become_502_with_excerpt() {
    let fake = FakeAnthropic::start().await;
    fake.push(Reply::fault(Fault::Raw {
        status: 200,
        body: r#"{"completion":"legacy text API answer"}"#.into(),
    }));
    let (_, status, text) = send(&fake, &chat_request(false)).await;
    assert_eq!(status, 200);
    let upstream: Value = serde_json::from_str(&text).unwrap();
    let err = from_messages_response(&upstream, "claude-alias", CREATED).unwrap_err();
    assert_eq!(err.status(), 502);
    assert!(
        err.to_string()
            .starts_with("Upstream response could not be translated")
    );
    assert!(err.to_string().contains("legacy text API answer"));
}

#[tokio::test]
async fn truncated_stream_is_reported_not_completed() {
    let fake = FakeAnthropic::start().await;
    fake.push(
        Reply::text("partial answer")
            .with_chunk_chars(2)
            .with_fault_after(4),
    );
    let body = to_messages_request(
        &chat_request(true),
        "claude-sonnet-4-5",
        &MessagesOptions::default(),
    )
    .unwrap();
    let (_, events) = common::post_sse(
        &anthropic::endpoint(Some(&fake.base_url())),
        &anthropic::request_headers("k", &[]),
        &body,
    )
    .await;
    assert_eq!(events.len(), 4);
    let mut machine = AnthropicStreamToOpenAi::new("m", CREATED);
    for ev in &events {
        machine.push(ev.event.as_deref(), &ev.data).unwrap();
    }
    assert!(!machine.is_complete());
    assert!(matches!(
        machine.finish(),
        Err(TranslateError::Untranslatable { .. })
    ));
}

trait TruncateAfter {
    fn with_fault_after(self, after: usize) -> Self;
}

impl TruncateAfter for Reply {
    fn with_fault_after(mut self, after: usize) -> Self {
        self.fault = Some(Fault::TruncateStream { after });
        self
    }
}
