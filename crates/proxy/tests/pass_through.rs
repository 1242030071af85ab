#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The pass-through routes over real HTTP: `/anthropic` driven by the official Anthropic
//! Python SDK, `/openai`, `/gemini`, `/vllm` and `/ollama` by plain HTTP (plain and streamed),
//! and `general_settings.pass_through_endpoints`. Each call: the gateway key checked and never
//! sent on, the provider credential added, the answer relayed unbuffered, one spend row with
//! the usage the answer reported.

mod common;

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use common::{KEY, Running, client, start_env};
use idlehands_testkit::{FakeAnthropic, FakeGemini, FakeOpenAi, Reply};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::oneshot;

fn yaml(extra: &str) -> String {
    format!("model_list: []\ngeneral_settings:\n  master_key: {KEY}\n{extra}")
}

async fn send(gw: &Running, path: &str, key: Option<&str>, body: &Value) -> reqwest::Response {
    let mut req = client().post(gw.url(path)).json(body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anthropic_sdk_works_unchanged_against_the_anthropic_route() {
    let ant = FakeAnthropic::start().await;
    let gw = start_env(
        &yaml(""),
        &[
            ("ANTHROPIC_API_BASE", &ant.base_url()),
            ("ANTHROPIC_API_KEY", "sk-ant-upstream-secret"),
        ],
    )
    .await;
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/anthropic_sdk_check.py");
    let out = tokio::process::Command::new("python3")
        .arg(&script)
        .arg(gw.url("/anthropic"))
        .arg(KEY)
        .arg("claude-sonnet-4-5")
        .output()
        .await
        .expect("python3 must be installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the SDK check failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    for line in ["ok plain", "ok stream", "ok AuthenticationError", "ALL OK"] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    // The wrong key never reached the provider; the two calls did, with its key only.
    let sent = ant.requests();
    assert_eq!(sent.len(), 2, "{sent:?}");
    for r in &sent {
        assert_eq!(r.path, "/v1/messages");
        assert_eq!(r.header("x-api-key"), Some("sk-ant-upstream-secret"));
        assert!(r.header("authorization").is_none(), "{r:?}");
        assert!(r.header("anthropic-version").is_some(), "{r:?}");
    }
    let records = gw.records(2).await;
    assert_eq!(records.len(), 2, "{records:?}");
    for r in &records {
        assert_eq!(r.call_type, "pass_through_endpoint");
        assert_eq!(r.custom_llm_provider, "anthropic");
        assert_eq!(r.model, "anthropic/claude-sonnet-4-5");
        assert_eq!(r.http_status, 200);
        // The fake's default usage: 10 in, 5 out, at $3 and $15 per million.
        assert_eq!((r.prompt_tokens, r.completion_tokens), (10, 5), "{r:?}");
        assert_eq!(r.cost_nanos, 105_000, "{r:?}");
        assert!(r.api_key_hash.is_some());
    }
    assert_eq!(
        records.iter().filter(|r| r.stream).count(),
        1,
        "{records:?}"
    );
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn openai_route_plain_and_streamed_with_usage_rows() {
    let up = FakeOpenAi::start().await;
    up.push(Reply::default().with_usage(30, 7));
    up.push(Reply::text("streamed words here").with_usage(12, 4));
    let gw = start_env(
        &yaml(""),
        &[
            ("OPENAI_API_BASE", &up.origin()),
            ("OPENAI_API_KEY", "sk-openai-upstream"),
        ],
    )
    .await;
    // Spacing, key order, an escape and a number spelling that JSON written out again would
    // not keep: the provider gets these bytes, not a rebuilt body.
    let raw = "{ \"messages\": [{\"role\": \"user\", \"content\": \"h\\u0069\"}],\n  \"model\": \"gpt-4o\", \"temperature\": 1.50 }";
    let resp = client()
        .post(gw.url("/openai/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-litellm-call-id"));
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["usage"]["prompt_tokens"], 30);
    let sent = up.last_request().unwrap();
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(
        sent.header("authorization"),
        Some("Bearer sk-openai-upstream")
    );
    assert_eq!(
        sent.raw_body,
        raw.as_bytes(),
        "the body goes on byte for byte"
    );
    assert_eq!(sent.body["messages"][0]["content"], "hi");

    let body = json!({
        "model": "gpt-4o", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "hi"}]
    });
    let resp = send(&gw, "/openai/v1/chat/completions", Some(KEY), &body).await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = resp.text().await.unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert!(text.contains("\"prompt_tokens\":12"), "{text}");

    let records = gw.records(2).await;
    let plain = &records[0];
    assert_eq!((plain.prompt_tokens, plain.completion_tokens), (30, 7));
    // gpt-4o: $2.50 and $10 per million.
    assert_eq!(plain.cost_nanos, 30 * 2_500 + 7 * 10_000);
    assert!(!plain.stream);
    let streamed = &records[1];
    assert!(streamed.stream);
    assert_eq!(
        (streamed.prompt_tokens, streamed.completion_tokens),
        (12, 4)
    );
    assert_eq!(streamed.call_type, "pass_through_endpoint");
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_wrong_or_missing_key_is_refused_before_the_provider_is_called() {
    let up = FakeOpenAi::start().await;
    let gw = start_env(
        &yaml(""),
        &[
            ("OPENAI_API_BASE", &up.origin()),
            ("OPENAI_API_KEY", "sk-openai-upstream"),
        ],
    )
    .await;
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    let resp = send(&gw, "/openai/v1/chat/completions", None, &body).await;
    assert_eq!(resp.status(), 401);
    let resp = send(
        &gw,
        "/openai/v1/chat/completions",
        Some("sk-wrong-key-123456"),
        &body,
    )
    .await;
    assert_eq!(resp.status(), 401);
    let v: Value = resp.json().await.unwrap();
    assert!(v["error"]["message"].is_string(), "{v}");
    assert_eq!(up.served(), 0);
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn gemini_route_takes_the_gateway_key_from_the_query_and_sends_its_own() {
    let g = FakeGemini::start().await;
    g.push(Reply::text("hi there").with_usage(9, 3));
    g.push(Reply::text("streamed gemini").with_usage(6, 2));
    let origin = g.base_url().trim_end_matches("/v1beta").to_string();
    let gw = start_env(
        &yaml(""),
        &[
            ("GEMINI_API_BASE", &origin),
            ("GEMINI_API_KEY", "gem-upstream"),
        ],
    )
    .await;
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]});
    let resp = client()
        .post(gw.url(&format!(
            "/gemini/v1beta/models/gemini-2.5-flash:generateContent?key={KEY}"
        )))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["usageMetadata"]["promptTokenCount"], 9, "{v}");
    let sent = g.last_request().unwrap();
    assert_eq!(sent.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(sent.query.as_deref(), Some("key=gem-upstream"));
    assert!(sent.header("x-goog-api-key").is_none());

    let resp = client()
        .post(gw.url("/gemini/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"))
        .header("x-goog-api-key", KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("streamed"), "{text}");
    let sent = g.last_request().unwrap();
    assert_eq!(sent.query.as_deref(), Some("alt=sse&key=gem-upstream"));
    assert!(sent.header("x-goog-api-key").is_none(), "{sent:?}");

    let records = gw.records(2).await;
    assert_eq!(records[0].model, "gemini/gemini-2.5-flash");
    assert_eq!(
        (records[0].prompt_tokens, records[0].completion_tokens),
        (9, 3)
    );
    // gemini-2.5-flash: $0.30 and $2.50 per million.
    assert_eq!(records[0].cost_nanos, 9 * 300 + 3 * 2_500);
    assert!(records[1].stream);
    assert_eq!(
        (records[1].prompt_tokens, records[1].completion_tokens),
        (6, 2)
    );
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn vllm_and_ollama_routes_reach_their_servers() {
    let vllm = FakeOpenAi::start().await;
    vllm.push(Reply::default().with_usage(4, 2));
    let ollama = FakeOpenAi::start().await;
    ollama.push(Reply::default().with_usage(5, 3));
    let gw = start_env(
        &yaml(""),
        &[
            ("VLLM_API_BASE", &vllm.origin()),
            ("OLLAMA_API_BASE", &ollama.origin()),
        ],
    )
    .await;
    let body = json!({"model": "qwen", "messages": [{"role": "user", "content": "hi"}]});
    let resp = send(&gw, "/vllm/v1/chat/completions", Some(KEY), &body).await;
    assert_eq!(resp.status(), 200);
    assert!(
        vllm.last_request()
            .unwrap()
            .header("authorization")
            .is_none()
    );
    let resp = send(&gw, "/ollama/v1/chat/completions", Some(KEY), &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(ollama.served(), 1);
    let records = gw.records(2).await;
    assert_eq!(records[0].custom_llm_provider, "hosted_vllm");
    assert_eq!(
        (records[0].prompt_tokens, records[0].completion_tokens),
        (4, 2)
    );
    assert_eq!(records[1].custom_llm_provider, "ollama");
    assert_eq!(
        (records[1].prompt_tokens, records[1].completion_tokens),
        (5, 3)
    );
    gw.shutdown().await.unwrap();

    // A model group served by a vLLM deployment: that deployment's server, key and model
    // name (as LiteLLM's router-model pass-through).
    let served = FakeOpenAi::start().await;
    let config = format!(
        "model_list:
  - model_name: served-qwen
    litellm_params:
      model: hosted_vllm/Qwen/Qwen3-8B
      api_base: {}
      api_key: vllm-deployment-key
general_settings:
  master_key: {KEY}
",
        served.origin()
    );
    let gw = start_env(&config, &[("VLLM_API_BASE", &vllm.origin())]).await;
    let resp = send(
        &gw,
        "/vllm/v1/chat/completions",
        Some(KEY),
        &json!({"model": "served-qwen", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let sent = served.last_request().unwrap();
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.body["model"], "Qwen/Qwen3-8B");
    assert_eq!(
        sent.header("authorization"),
        Some("Bearer vllm-deployment-key")
    );
    assert_eq!(vllm.served(), 1, "the env server saw only the earlier call");
    let records = gw.records(1).await;
    assert_eq!(records[0].model_group, "served-qwen");
    assert_eq!(records[0].model, "hosted_vllm/Qwen/Qwen3-8B");
    gw.shutdown().await.unwrap();

    // Without VLLM_API_BASE the route says what is missing (and calls nothing).
    let gw = start_env(&yaml(""), &[]).await;
    let resp = send(&gw, "/vllm/v1/chat/completions", Some(KEY), &body).await;
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("VLLM_API_BASE"),
        "{v}"
    );
    gw.shutdown().await.unwrap();
}

/// An upstream that sends its first SSE event, then waits for the test's go before the rest:
/// the first event reaching the client before the go shows the gateway does not buffer.
async fn gated_upstream() -> (
    String,
    oneshot::Sender<()>,
    Arc<Mutex<Vec<http::HeaderMap>>>,
) {
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let go = Arc::new(Mutex::new(Some(go_rx)));
    let seen: Arc<Mutex<Vec<http::HeaderMap>>> = Arc::default();
    let seen2 = seen.clone();
    let app = axum::Router::new().route(
        "/sse/{*rest}",
        axum::routing::post(move |headers: http::HeaderMap| {
            let go = go.lock().take();
            seen2.lock().push(headers);
            async move {
                let first = futures_util::stream::once(async {
                    Ok::<_, std::io::Error>(bytes::Bytes::from_static(
                        b"data: {\"id\":\"c1\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"first\"}}]}\n\n",
                    ))
                });
                let rest = futures_util::stream::once(async move {
                    if let Some(rx) = go {
                        let _ = rx.await;
                    }
                    Ok::<_, std::io::Error>(bytes::Bytes::from_static(
                        b"data: {\"id\":\"c1\",\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3,\"total_tokens\":10}}\n\ndata: [DONE]\n\n",
                    ))
                });
                Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(Body::from_stream(futures_util::StreamExt::chain(first, rest)))
                    .unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), go_tx, seen)
}

#[tokio::test]
async fn configured_routes_stream_unbuffered_with_their_headers_and_auth_setting() {
    let (origin, go, seen) = gated_upstream().await;
    let extra = format!(
        "  pass_through_endpoints:
    - path: /custom
      target: {origin}/sse
      include_subpath: true
      headers:
        x-upstream-key: os.environ/CUSTOM_UPSTREAM_KEY
    - path: /open
      target: {origin}/sse/open
      auth: false
      cost_per_request: 0.5
"
    );
    let gw = start_env(&yaml(&extra), &[("CUSTOM_UPSTREAM_KEY", "upstream-secret")]).await;
    let body = json!({"model": "gpt-4o", "stream": true});
    // auth defaults to true.
    let resp = send(&gw, "/custom/chat", None, &body).await;
    assert_eq!(resp.status(), 401);

    let mut resp = send(&gw, "/custom/chat", Some(KEY), &body).await;
    assert_eq!(resp.status(), 200);
    let first = resp.chunk().await.unwrap().unwrap();
    assert!(
        String::from_utf8_lossy(&first).contains("first"),
        "{first:?}"
    );
    // The upstream is still holding the rest: nothing has been recorded yet.
    assert!(gw.sink.records().is_empty());
    go.send(()).unwrap();
    let mut rest = Vec::new();
    while let Some(c) = resp.chunk().await.unwrap() {
        rest.extend_from_slice(&c);
    }
    assert!(String::from_utf8_lossy(&rest).contains("[DONE]"));
    {
        let h = &seen.lock()[0];
        assert_eq!(h["x-upstream-key"], "upstream-secret");
        assert!(h.get("authorization").is_none(), "{h:?}");
    }
    let records = gw.records(1).await;
    assert_eq!(
        (records[0].prompt_tokens, records[0].completion_tokens),
        (7, 3)
    );
    assert!(records[0].stream);

    // auth: false takes no key; the row has none and costs the configured price per call.
    let resp = send(&gw, "/open", None, &body).await;
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap();
    let records = gw.records(2).await;
    assert!(records[1].api_key_hash.is_none());
    assert_eq!(records[1].cost_nanos, 500_000_000);
    // Not a configured path: 404 as before.
    let resp = send(&gw, "/elsewhere", Some(KEY), &body).await;
    assert_eq!(resp.status(), 404);
    gw.shutdown().await.unwrap();
}
