//! An Anthropic-format client request translated to OpenAI, sent over real HTTP to
//! `FakeOpenAi`, and the answer translated back to Anthropic's format (plain and as SSE).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use idlehands_testkit::{FakeOpenAi, Reply};
use idlehands_translate::anthropic_inbound::{
    AnthropicEvent, OpenAiStreamToAnthropic, error_body, from_chat_response, to_chat_request,
};
use idlehands_wire::SseDecoder;
use serde_json::{Value, json};

fn messages_request(stream: bool) -> Value {
    json!({
        "model": "any-configured-model",
        "max_tokens": 512,
        "system": "Answer briefly.",
        "messages": [
            {"role": "user", "content": "Read a.txt"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "read", "input": {"path": "a.txt"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "hello"}]}
        ],
        "tools": [{"name": "read", "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}],
        "stream": stream
    })
}

fn openai_headers() -> Vec<(String, String)> {
    vec![("content-type".into(), "application/json".into())]
}

#[tokio::test]
async fn plain_messages_call_through_an_openai_upstream() {
    let fake = FakeOpenAi::start().await;
    fake.push(Reply::text("The file says hello.").with_usage(40, 6));
    let chat = to_chat_request(&messages_request(false)).unwrap();
    let (status, text) = common::post(
        &format!("{}/chat/completions", fake.base_url()),
        &openai_headers(),
        &chat,
    )
    .await;
    assert_eq!(status, 200);
    let upstream: Value = serde_json::from_str(&text).unwrap();
    let translated = from_chat_response(&upstream, "any-configured-model").unwrap();
    insta::assert_json_snapshot!(json!({
        "request": fake.last_request().unwrap().body,
        "translated": translated,
    }));
}

#[tokio::test]
async fn streamed_tool_use_becomes_anthropic_events() {
    let fake = FakeOpenAi::start().await;
    fake.push(
        Reply::text("Reading more.")
            .with_chunk_chars(5)
            .with_tool_call("call_7", "read", json!({"path": "b.txt"}))
            .with_usage(55, 9),
    );
    let chat = to_chat_request(&messages_request(true)).unwrap();
    assert_eq!(chat["stream_options"]["include_usage"], true);
    let (status, events) = common::post_sse(
        &format!("{}/chat/completions", fake.base_url()),
        &openai_headers(),
        &chat,
    )
    .await;
    assert_eq!(status, 200);
    let mut machine = OpenAiStreamToAnthropic::new("any-configured-model");
    let mut out: Vec<AnthropicEvent> = Vec::new();
    for ev in events.iter().filter(|e| !e.is_done()) {
        out.extend(
            machine
                .push(&serde_json::from_str(&ev.data).unwrap())
                .unwrap(),
        );
    }
    out.extend(machine.finish());
    let sse: String = out.iter().map(AnthropicEvent::to_sse).collect();

    // What an Anthropic client would decode: a well-formed event sequence.
    let decoded = SseDecoder::new().push(sse.as_bytes());
    let names: Vec<&str> = decoded.iter().filter_map(|e| e.event.as_deref()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(&names[names.len() - 2..], ["message_delta", "message_stop"]);
    assert_eq!(
        machine.usage(),
        json!({"input_tokens": 55, "output_tokens": 9})
    );
    insta::assert_snapshot!(sse);
}

#[test]
fn errors_use_the_anthropic_envelope() {
    assert_eq!(
        error_body(401, "Invalid proxy server token passed."),
        json!({"type": "error", "error": {"type": "authentication_error", "message": "Invalid proxy server token passed."}})
    );
}

/// `/v1/messages` routed to an Anthropic model goes through both translations; thinking
/// signatures, tool use and cache usage must survive the double trip.
#[tokio::test]
async fn anthropic_client_to_anthropic_upstream_keeps_thinking_and_cache() {
    use idlehands_testkit::FakeAnthropic;
    use idlehands_translate::anthropic::{self, AnthropicStreamToOpenAi, MessagesOptions};

    let fake = FakeAnthropic::start().await;
    let mut reply = Reply::tool_call("toolu_9", "read", json!({"path": "c.txt"}))
        .with_reasoning("Another file.")
        .with_usage(500, 30);
    reply.usage.cache_read_input_tokens = Some(400);
    fake.push(reply.clone());
    fake.push(reply);

    let client_req = json!({
        "model": "claude-alias", "max_tokens": 4096,
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "messages": [{"role": "user", "content": "Read c.txt"}],
        "tools": [{"name": "read", "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}]
    });
    let chat = to_chat_request(&client_req).unwrap();
    let upstream_body =
        anthropic::to_messages_request(&chat, "claude-sonnet-4-5", &MessagesOptions::default())
            .unwrap();
    assert_eq!(upstream_body["thinking"]["budget_tokens"], 2048);
    let url = anthropic::endpoint(Some(&fake.base_url()));
    let headers = anthropic::request_headers("k", &[]);

    // Plain.
    let (_, text) = common::post(&url, &headers, &upstream_body).await;
    let completion =
        anthropic::from_messages_response(&serde_json::from_str(&text).unwrap(), "claude-alias", 0)
            .unwrap();
    let back = from_chat_response(&completion, "claude-alias").unwrap();
    let upstream: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(back["content"], upstream["content"]);
    assert_eq!(back["usage"], upstream["usage"]);
    assert_eq!(back["stop_reason"], "tool_use");

    // Streamed.
    let mut body = upstream_body.clone();
    body["stream"] = json!(true);
    let (_, events) = common::post_sse(&url, &headers, &body).await;
    let mut to_openai = AnthropicStreamToOpenAi::new("claude-alias", 0);
    let mut to_anthropic = OpenAiStreamToAnthropic::new("claude-alias");
    let mut out = Vec::new();
    for ev in &events {
        for chunk in to_openai.push(ev.event.as_deref(), &ev.data).unwrap() {
            out.extend(to_anthropic.push(&chunk).unwrap());
        }
    }
    out.extend(
        to_anthropic
            .push(&to_openai.finish().unwrap().unwrap())
            .unwrap(),
    );
    out.extend(to_anthropic.finish());
    let names: Vec<&str> = out.iter().map(|e| e.name).collect();
    // Pings and empty input fragments carry nothing, so they are not reproduced.
    let upstream_names: Vec<&str> = events
        .iter()
        .filter(|e| !e.data.contains(r#""partial_json":"""#))
        .filter_map(|e| e.event.as_deref())
        .filter(|n| *n != "ping")
        .collect();
    assert_eq!(names, upstream_names);
    let signature = out
        .iter()
        .find_map(|e| e.data.pointer("/delta/signature").and_then(Value::as_str));
    assert_eq!(signature, Some("ZmFrZS1zaWduYXR1cmU="));
    let final_usage = &out[out.len() - 2].data["usage"];
    assert_eq!(final_usage["cache_read_input_tokens"], 400);
    assert_eq!(final_usage["input_tokens"], 100);
    assert_eq!(final_usage["output_tokens"], 30);
}
