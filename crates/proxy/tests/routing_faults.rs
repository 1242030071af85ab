#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Upstream faults on streams and client disconnects: before the first byte a failure is one
//! more attempt; after it the client gets a well-formed SSE error event and the record says
//! failure; a client that goes away cancels the upstream request.

mod common;

use std::time::Duration;

use common::{KEY, Running, chat_body, client, eventually, start};
use futures_util::StreamExt;
use idlehands_proxy::CallStatus;
use idlehands_testkit::{FakeOpenAi, Fault, Reply};
use serde_json::Value;

fn config(ups: &[&FakeOpenAi], sections: &str) -> String {
    let mut y = String::from("model_list:\n");
    for (i, up) in ups.iter().enumerate() {
        y.push_str(&format!(
            "  - model_name: g\n    litellm_params: {{model: openai/m, api_base: '{}', api_key: k, timeout: 30}}\n    model_info: {{id: d{i}}}\n",
            up.base_url()
        ));
    }
    y.push_str(&format!(
        "general_settings: {{master_key: {KEY}}}\n{sections}"
    ));
    y
}

async fn stream(gw: &Running) -> reqwest::Response {
    client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&chat_body("g", true))
        .send()
        .await
        .unwrap()
}

fn data_events(text: &str) -> Vec<&str> {
    text.split("\n\n")
        .filter_map(|f| f.strip_prefix("data: "))
        .collect()
}

fn with_fault(reply: Reply, fault: Fault) -> Reply {
    Reply {
        fault: Some(fault),
        ..reply
    }
}

#[tokio::test]
async fn a_stream_that_fails_before_its_first_byte_is_retried() {
    for fault in [
        Fault::ResetMidStream { after: 0 },
        Fault::TruncateStream { after: 0 },
        Fault::Status {
            status: 503,
            message: "overloaded".into(),
            retry_after: None,
        },
    ] {
        let up = FakeOpenAi::start().await;
        up.push(Reply::fault(fault.clone()));
        let gw = start(&config(&[&up], "")).await;
        let resp = stream(&gw).await;
        assert_eq!(resp.status(), 200, "{fault:?}");
        assert_eq!(resp.headers()["x-litellm-attempted-retries"], "1");
        let text = resp.text().await.unwrap();
        assert!(text.ends_with("data: [DONE]\n\n"), "{fault:?}: {text}");
        assert!(!text.contains("\"error\""), "{fault:?}: {text}");
        assert_eq!(up.served(), 2);
        let rec = gw.records(1).await;
        assert_eq!(rec.len(), 1);
        assert_eq!(rec[0].status, CallStatus::Success);
    }
}

#[tokio::test]
async fn a_stream_that_breaks_after_its_first_byte_ends_with_an_error_event() {
    for fault in [
        Fault::ResetMidStream { after: 3 },
        Fault::TruncateStream { after: 3 },
    ] {
        let up = FakeOpenAi::start().await;
        // Paced, so the first frames reach the client before the fault.
        let reply = Reply::text("abcdefghijklmnop")
            .with_chunk_chars(2)
            .with_chunk_delay(Duration::from_millis(20));
        up.push(with_fault(reply, fault.clone()));
        let gw = start(&config(&[&up], "")).await;
        let resp = stream(&gw).await;
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap();
        let events = data_events(&text);
        assert!(events.len() >= 2, "{fault:?}: {text}");
        // The frames before the fault came through untouched...
        let first: Value = serde_json::from_str(events[0]).unwrap();
        assert_eq!(first["object"], "chat.completion.chunk");
        // ...and the stream ends with one well-formed error event, no [DONE].
        let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
        assert!(
            last["error"]["message"].as_str().is_some(),
            "{fault:?}: {text}"
        );
        assert!(
            last["error"]["code"].as_str().is_some(),
            "{fault:?}: {text}"
        );
        assert!(!text.contains("[DONE]"), "{fault:?}: {text}");
        assert_eq!(
            up.served(),
            1,
            "nothing is retried once the client has bytes"
        );
        let rec = gw.records(1).await.remove(0);
        assert_eq!(rec.status, CallStatus::Failure, "{fault:?}");
        assert!(rec.completion_start_time.is_some());
        assert!(rec.error_message.is_some());
    }
}

#[tokio::test]
async fn a_stream_that_stalls_after_outlasting_its_timeout_in_chunks_ends_with_a_timeout() {
    // Chunks every 150 ms for longer than the 0.4 s `stream_timeout` keep the stream alive (the
    // limit is between chunks, not on the whole stream); the stall after them ends it once the
    // limit has passed since the last chunk.
    let up = FakeOpenAi::start().await;
    let mut reply = Reply::text("one two three four five six seven eight");
    reply.chunk_delay = Duration::from_millis(150);
    up.set_default(with_fault(reply, Fault::StallMidStream { after: 6 }));
    let cfg = format!(
        "model_list:
  - model_name: g
    litellm_params: {{model: openai/m, api_base: '{}', api_key: k, stream_timeout: 0.4}}
general_settings: {{master_key: {KEY}}}
",
        up.base_url()
    );
    let gw = start(&cfg).await;
    let started = std::time::Instant::now();
    let resp = stream(&gw).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let took = started.elapsed();
    let events = data_events(&text);
    let chunks: Vec<Value> = events
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let (last, content) = chunks.split_last().unwrap();
    assert_eq!(
        content.len(),
        6,
        "every chunk sent before the stall: {text}"
    );
    assert!(
        content
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    let message = last["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.to_lowercase().contains("timeout") || message.to_lowercase().contains("timed out"),
        "{text}"
    );
    assert!(!text.contains("[DONE]"), "{text}");
    // Six chunks 150 ms apart, then the 0.4 s limit: not ended by the first chunk's timer.
    assert!(took >= Duration::from_millis(1200), "ended after {took:?}");
    let rec = gw.records(1).await.remove(0);
    assert_eq!(rec.status, CallStatus::Failure);
    assert!(rec.error_message.is_some());
}

#[tokio::test]
async fn a_stream_stalled_before_its_first_byte_goes_to_another_deployment() {
    let stalled = FakeOpenAi::start().await;
    let ok = FakeOpenAi::start().await;
    stalled.set_default(Reply::fault(Fault::Hang));
    let cfg = format!(
        "model_list:
  - model_name: g
    litellm_params: {{model: openai/m, api_base: '{}', api_key: k, stream_timeout: 0.5, order: 1}}
  - model_name: g
    litellm_params: {{model: openai/m, api_base: '{}', api_key: k, order: 2}}
general_settings: {{master_key: {KEY}}}
router_settings: {{allowed_fails: 0}}
",
        stalled.base_url(),
        ok.base_url()
    );
    let gw = start(&cfg).await;
    let resp = stream(&gw).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert_eq!((stalled.served(), ok.served()), (1, 1));
    eventually("stalled upstream request closed", || {
        stalled.in_flight() == 0
    })
    .await;
}

#[tokio::test]
async fn a_client_that_disconnects_cancels_the_upstream_request() {
    let up = FakeOpenAi::start().await;
    up.set_default(Reply::fault(Fault::Hang));
    let gw = start(&config(&[&up], "")).await;
    let url = gw.url("/v1/chat/completions");
    let request = tokio::spawn(async move {
        client()
            .post(url)
            .bearer_auth(KEY)
            .json(&chat_body("g", false))
            .send()
            .await
    });
    eventually("upstream request started", || up.in_flight() == 1).await;
    request.abort();
    let _ = request.await;
    eventually("upstream request cancelled", || up.in_flight() == 0).await;
    assert_eq!(up.served(), 1, "a cancelled request is not retried");
    let rec = gw.records(1).await.remove(0);
    assert_eq!(rec.status, CallStatus::Failure);
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_cancels_the_upstream_stream() {
    let up = FakeOpenAi::start().await;
    up.set_default(
        Reply::text("a long answer that takes its time to arrive in full")
            .with_chunk_chars(1)
            .with_chunk_delay(Duration::from_millis(100)),
    );
    let gw = start(&config(&[&up], "")).await;
    let resp = stream(&gw).await;
    let mut body = resp.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    assert_eq!(up.in_flight(), 1);
    drop(body);
    eventually("upstream stream cancelled", || up.in_flight() == 0).await;
    let rec = gw.records(1).await.remove(0);
    assert!(rec.error_message.unwrap().contains("disconnected"));
}
