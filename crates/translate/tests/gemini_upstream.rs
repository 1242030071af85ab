//! OpenAI requests translated for Gemini, sent over real HTTP to `FakeGemini`, and the answers
//! translated back: chat (plain and streamed), function calls, embeddings, errors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use idlehands_testkit::{FakeGemini, Fault, Reply};
use idlehands_translate::gemini::{
    self, GeminiStreamToOpenAi, embeddings_endpoint, from_batch_embed_response,
    from_embed_content_response, from_generate_content_response, map_error, to_batch_embed_request,
    to_embed_content_request, to_generate_content_request,
};
use serde_json::{Value, json};

const CREATED: u64 = 1_700_000_000;
const MODEL: &str = "gemini-2.5-flash";

fn chat_request() -> Value {
    json!({
        "model": "gemini-alias",
        "messages": [
            {"role": "system", "content": "You are a weather bot."},
            {"role": "user", "content": [
                {"type": "text", "text": "Weather where this photo was taken?"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQSkZJRg=="}}
            ]}
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": "auto",
        "reasoning_effort": "medium",
        "max_tokens": 1000
    })
}

fn thinking_reply(reply: Reply) -> Reply {
    let mut reply = reply.with_usage(300, 40);
    reply.usage.reasoning_tokens = Some(25);
    reply.usage.cache_read_input_tokens = Some(256);
    reply
}

#[tokio::test]
async fn plain_function_call_round_trip() {
    let fake = FakeGemini::start().await;
    fake.push(thinking_reply(
        Reply::tool_call("unused", "get_weather", json!({"city": "Lyon"}))
            .with_reasoning("It looks like Lyon."),
    ));
    let body = to_generate_content_request(&chat_request()).unwrap();
    let url = gemini::endpoint(Some(&fake.base_url()), MODEL, false);
    let (status, text) = common::post(&url, &gemini::request_headers("AIza-test"), &body).await;
    assert_eq!(status, 200, "{text}");
    let rec = fake.last_request().unwrap();
    assert_eq!(rec.path, format!("/v1beta/models/{MODEL}:generateContent"));
    let upstream: Value = serde_json::from_str(&text).unwrap();
    let translated = from_generate_content_response(&upstream, "gemini-alias", CREATED).unwrap();
    assert_eq!(translated["choices"][0]["finish_reason"], "tool_calls");
    insta::assert_json_snapshot!(json!({
        "headers": common::header_subset(&rec, &["x-goog-api-key", "content-type"]),
        "request": rec.body,
        "upstream_response": upstream,
        "translated": translated,
    }));
}

#[tokio::test]
async fn streamed_text_over_sse() {
    let fake = FakeGemini::start().await;
    fake.push(thinking_reply(
        Reply::text("Cloudy, 14C in Lyon.")
            .with_reasoning("Check.")
            .with_chunk_chars(7),
    ));
    let body = to_generate_content_request(&chat_request()).unwrap();
    let url = gemini::endpoint(Some(&fake.base_url()), MODEL, true);
    assert!(url.ends_with(":streamGenerateContent?alt=sse"));
    let (status, events) =
        common::post_sse(&url, &gemini::request_headers("AIza-test"), &body).await;
    assert_eq!(status, 200);
    let mut machine = GeminiStreamToOpenAi::new("gemini-alias", CREATED);
    let mut chunks = Vec::new();
    for ev in &events {
        chunks.extend(machine.push(&ev.data).unwrap());
    }
    assert!(machine.is_complete());
    chunks.push(machine.finish().unwrap().unwrap());
    let usage = machine.usage().unwrap();
    assert_eq!(usage["completion_tokens"], 40);
    assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 25);
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 256);
    insta::assert_json_snapshot!(chunks);
}

#[tokio::test]
async fn cut_stream_is_not_complete() {
    let fake = FakeGemini::start().await;
    fake.push(Reply {
        fault: Some(Fault::TruncateStream { after: 2 }),
        ..Reply::text("a long answer that is cut").with_chunk_chars(4)
    });
    let body = to_generate_content_request(&chat_request()).unwrap();
    let (_, events) = common::post_sse(
        &gemini::endpoint(Some(&fake.base_url()), MODEL, true),
        &gemini::request_headers("k"),
        &body,
    )
    .await;
    assert_eq!(events.len(), 2);
    let mut machine = GeminiStreamToOpenAi::new("g", CREATED);
    for ev in &events {
        machine.push(&ev.data).unwrap();
    }
    let err = machine
        .finish()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("ended without a finishReason"), "{err:?}");
}

#[tokio::test]
async fn embeddings_single_and_batch() {
    let fake = FakeGemini::start().await;
    let batch_req = json!({"model": "embed-alias", "input": ["first text", "second"]});
    let body = to_batch_embed_request(&batch_req, "text-embedding-004").unwrap();
    let (status, text) = common::post(
        &embeddings_endpoint(Some(&fake.base_url()), "text-embedding-004"),
        &gemini::request_headers("k"),
        &body,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let batch = from_batch_embed_response(
        &serde_json::from_str(&text).unwrap(),
        &batch_req,
        "embed-alias",
    )
    .unwrap();
    assert_eq!(batch["data"].as_array().unwrap().len(), 2);

    let single_req = json!({"model": "embed-alias", "input": "one"});
    let body = to_embed_content_request(&single_req, "text-embedding-004").unwrap();
    let (_, text) = common::post(
        &gemini::embed_content_endpoint(Some(&fake.base_url()), "text-embedding-004"),
        &gemini::request_headers("k"),
        &body,
    )
    .await;
    let single = from_embed_content_response(
        &serde_json::from_str(&text).unwrap(),
        &single_req,
        "embed-alias",
    )
    .unwrap();
    insta::assert_json_snapshot!(
        json!({"batch_request": fake.requests()[0].body, "batch": batch, "single": single})
    );
}

#[tokio::test]
async fn errors_and_missing_key() {
    let fake = FakeGemini::start().await;
    fake.push(Reply::rate_limited(3));
    let body = to_generate_content_request(&chat_request()).unwrap();
    let url = gemini::endpoint(Some(&fake.base_url()), MODEL, false);
    let (status, text) = common::post(&url, &gemini::request_headers("k"), &body).await;
    let mapped = map_error(status, &text);
    assert_eq!(
        (mapped.status, mapped.message.as_str()),
        (429, "GeminiException - Rate limit reached")
    );
    let (status, text) = common::post(
        &url,
        &[("content-type".into(), "application/json".into())],
        &body,
    )
    .await;
    assert_eq!(map_error(status, &text).status, 403);

    fake.push(Reply::fault(Fault::Raw {
        status: 200,
        body: r#"{"candidates":"nope"}"#.into(),
    }));
    let (_, text) = common::post(&url, &gemini::request_headers("k"), &body).await;
    let err = from_generate_content_response(&serde_json::from_str(&text).unwrap(), "g", CREATED)
        .unwrap_err();
    assert_eq!(err.status(), 502);
    assert!(err.to_string().contains("nope"));
}
