#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A deployment's `max_parallel_requests` (and `router_settings.default_max_parallel_requests`),
//! as LiteLLM keeps it: calls in flight on the deployment at once, a stream counting until it
//! ends; one more gets LiteLLM's 429 without reaching the upstream (a local server with few
//! slots is not piled on), falls back like any failed attempt, and does not cool the deployment
//! down. Against a fake OpenAI upstream that holds its answers until the test lets them go.

mod common;

use common::{KEY, client, eventually, start};
use idlehands_testkit::{FakeOpenAi, Gate, Reply};
use serde_json::{Value, json};

fn entry(name: &str, up: &FakeOpenAi, extra: &str) -> String {
    format!(
        "  - model_name: {name}
    litellm_params:
      model: openai/{name}-model
      api_base: {}
      api_key: sk-upstream
{extra}",
        up.base_url()
    )
}

fn ask(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

/// A call that the upstream held past 20 s fails the test instead of hanging it.
async fn call(base: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .unwrap()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_deployment_refuses_without_calling_the_upstream() {
    let up = FakeOpenAi::start().await;
    let gate = Gate::new();
    up.set_default(Reply::text("done").held_by(&gate));
    let yaml = format!(
        "model_list:\n{}router_settings:\n  num_retries: 0\n  default_max_parallel_requests: 1\ngeneral_settings:\n  master_key: {KEY}\n",
        entry("local", &up, "")
    );
    let gw = start(&yaml).await;
    let base = gw.base.clone();
    let held = tokio::spawn({
        let base = base.clone();
        async move { call(&base, ask("local", false)).await }
    });
    eventually("the first call reached the upstream", || up.served() == 1).await;
    let (status, body) = call(&base, ask("local", false)).await;
    assert_eq!(status, 429, "{body}");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("Deployment has all max_parallel_requests slots in use.")
            && msg.contains("model_group=local")
            && msg.contains("max_parallel_requests=1"),
        "{msg}"
    );
    assert_eq!(
        up.served(),
        1,
        "the refused call never reached the upstream"
    );
    gate.open();
    assert_eq!(held.await.unwrap().0, 200);
    // The slot is free again, and the refusal did not cool the deployment down.
    let (status, body) = call(&base, ask("local", false)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(up.served(), 2);
    // One record per call, the refused one a failure.
    let records = gw.records(3).await;
    assert_eq!(records.iter().filter(|r| r.http_status == 429).count(), 1);
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_holds_its_slot_until_it_ends_and_a_full_group_falls_back() {
    use futures_util::StreamExt;
    let up = FakeOpenAi::start().await;
    let other = FakeOpenAi::start().await;
    // Four chunks, 700 ms apart: the stream is under way, past its first byte, for seconds.
    up.set_default(
        Reply::text("one two three four")
            .with_chunk_chars(4)
            .with_chunk_delay(std::time::Duration::from_millis(700)),
    );
    other.set_default(Reply::text("from the other"));
    let yaml = format!(
        "model_list:\n{}{}router_settings:\n  num_retries: 0\n  fallbacks: [{{\"local\": [\"spare\"]}}]\ngeneral_settings:\n  master_key: {KEY}\n",
        entry("local", &up, "      max_parallel_requests: 1\n"),
        entry("spare", &other, ""),
    );
    let gw = start(&yaml).await;
    let base = gw.base.clone();
    let resp = client()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&ask("local", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "), "{first:?}");
    // The stream has its first chunk out and more to come: it still holds the one slot.
    let (status, answer) = call(&base, ask("local", false)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["choices"][0]["message"]["content"], "from the other",
        "fell back: {answer}"
    );
    assert_eq!((up.served(), other.served()), (1, 1));
    let mut text = String::from_utf8_lossy(&first).into_owned();
    while let Some(chunk) = body.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    // The stream has ended: its slot is free for the next call.
    up.set_default(Reply::text("local again"));
    let (status, answer) = call(&base, ask("local", false)).await;
    assert_eq!(
        (status, answer["choices"][0]["message"]["content"].as_str()),
        (200, Some("local again"))
    );
    assert_eq!(up.served(), 2);
    gw.shutdown().await.unwrap();
}
