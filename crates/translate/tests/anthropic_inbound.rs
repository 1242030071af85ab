//! An Anthropic-format client request translated to OpenAI, sent over real HTTP to
//! `FakeOpenAi`, and the answer translated back to Anthropic's format (plain and as SSE).

#![allow(clippy::unwrap_used, clippy::expect_used)]

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
