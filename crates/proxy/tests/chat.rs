#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Chat completions end to end: gateway in-process, FakeOpenAi upstream, real HTTP.

mod common;

use common::{KEY, chat_body, client, eventually, post_json, start, two_models};
use idlehands_proxy::CallStatus;
use idlehands_testkit::{FakeOpenAi, Fault, Gate, Reply};
use serde_json::{Value, json};

/// The `data` of each event (comments, such as the cost line before `[DONE]`, left out).
fn sse_events(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter(|f| !f.trim().is_empty() && !f.starts_with(':'))
        .map(|f| f.trim_start_matches("data: ").to_string())
        .collect()
}

#[tokio::test]
async fn non_streaming_call_passes_through_with_prefix_stripped_and_upstream_key() {
    let up = FakeOpenAi::start().await;
    up.push(Reply::text("hello there").with_usage(1000, 500));
    let gw = start(&two_models(&up.base_url())).await;
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.5, "user": "alice", "metadata": {"tag": "t1"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "hello there");
    assert_eq!(body["usage"]["prompt_tokens"], 1000);

    let sent = up.last_request().unwrap();
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.body["model"], "gpt-4o");
    assert_eq!(sent.body["temperature"], 0.5);
    assert!(
        sent.body.get("metadata").is_none(),
        "gateway-only fields stay here"
    );
    assert_eq!(sent.body["user"], "alice");
    assert_eq!(
        sent.header("authorization"),
        Some("Bearer sk-upstream-secret")
    );

    // gpt-4o: 1000 * 2.5e-6 + 500 * 1e-5 = 0.0075 USD
    assert_eq!(h["x-litellm-response-cost"], "0.0075");
    assert_eq!(h["x-litellm-model-group"], "gpt-4o");
    assert_eq!(h["x-litellm-model-api-base"], up.base_url().as_str());

    let rec = gw.records(1).await.remove(0);
    assert_eq!(rec.status, CallStatus::Success);
    assert_eq!(rec.call_type, "acompletion");
    assert_eq!(rec.model, "openai/gpt-4o");
    assert_eq!(rec.model_group, "gpt-4o");
    assert_eq!(rec.custom_llm_provider, "openai");
    assert_eq!(rec.cost_nanos, 7_500_000);
    assert_eq!(
        (rec.prompt_tokens, rec.completion_tokens, rec.total_tokens),
        (1000, 500, 1500)
    );
    assert_eq!(rec.end_user.as_deref(), Some("alice"));
    assert_eq!(rec.metadata, Some(json!({"tag": "t1"})));
    assert!(
        rec.response_id
            .as_deref()
            .is_some_and(|id| id.starts_with("chatcmpl-fake-"))
    );
    assert!(!rec.usage_estimated);
    assert_eq!(rec.call_id, h["x-litellm-call-id"].to_str().unwrap());
    assert_eq!(rec.model_id, h["x-litellm-model-id"].to_str().unwrap());
    assert_eq!(rec.api_key_hash.as_deref().map(str::len), Some(64));
    assert_eq!(rec.http_status, 200);
}

#[tokio::test]
async fn streaming_strips_usage_chunk_unless_asked_but_always_asks_upstream() {
    let up = FakeOpenAi::start().await;
    up.set_default(
        Reply::text("abcdefghijklmnop")
            .with_usage(20, 10)
            .with_chunk_chars(4),
    );
    let gw = start(&two_models(&up.base_url())).await;

    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&chat_body("gpt-4o", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert!(resp.headers().contains_key("x-litellm-call-id"));
    let text = resp.text().await.unwrap();
    let events = sse_events(&text);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert!(
        !text.contains("\"usage\""),
        "usage chunk must be stripped: {text}"
    );
    let content: String = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(content, "abcdefghijklmnop");
    let sent = up.last_request().unwrap();
    assert_eq!(sent.body["stream_options"]["include_usage"], true);

    let rec = gw.records(1).await.remove(0);
    assert!(rec.stream);
    assert_eq!(rec.status, CallStatus::Success);
    assert_eq!((rec.prompt_tokens, rec.completion_tokens), (20, 10));
    assert_eq!(rec.cost_nanos, 20 * 2500 + 10 * 10_000);
    assert!(rec.completion_start_time.is_some());

    // Asked for: the usage chunk reaches the client.
    let mut body = chat_body("gpt-4o", true);
    body["stream_options"] = json!({"include_usage": true});
    let text = client()
        .post(gw.url("/chat/completions"))
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = sse_events(&text);
    let usage_chunk: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["total_tokens"], 30);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
}

#[tokio::test]
async fn mock_response_answers_plain_and_streamed_with_usage_and_cost() {
    let gw = start(&two_models("http://127.0.0.1:9/v1")).await;
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&chat_body("mocky", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cost: f64 = resp.headers()["x-litellm-response-cost"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Hello from the mock deployment"
    );
    assert_eq!(body["object"], "chat.completion");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    let prompt = body["usage"]["prompt_tokens"].as_u64().unwrap();
    let completion = body["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(prompt > 0 && completion > 0);
    let want = (prompt * 1000 + completion * 2000) as f64 / 1e9;
    assert!((cost - want).abs() < 1e-12, "{cost} vs {want}");

    let text = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&chat_body("mocky", true))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = sse_events(&text);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert!(!text.contains("\"usage\""));
    let content: String = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(content, "Hello from the mock deployment");
    let recs = gw.records(2).await;
    assert_eq!(recs.len(), 2);
    assert!(
        recs.iter()
            .all(|r| r.cost_nanos > 0 && r.status == CallStatus::Success)
    );
}

#[tokio::test]
async fn path_model_routes_and_alias_paths_work() {
    let up = FakeOpenAi::start().await;
    let gw = start(&two_models(&up.base_url())).await;
    for path in [
        "/engines/gpt-4o/chat/completions",
        "/openai/deployments/gpt-4o/chat/completions",
    ] {
        let resp = client()
            .post(gw.url(path))
            .bearer_auth(KEY)
            .json(&json!({"messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(resp.headers()["x-litellm-model-group"], "gpt-4o");
    }
    assert_eq!(up.served(), 2);
}

#[tokio::test]
async fn upstream_errors_keep_status_and_get_the_litellm_prefix() {
    let up = FakeOpenAi::start().await;
    up.push(Reply::rate_limited(7));
    up.push(Reply::error(400, "context too long"));
    // Without retries, so the upstream's own error comes back.
    let gw = start(&format!(
        "{}router_settings: {{num_retries: 0}}\n",
        two_models(&up.base_url())
    ))
    .await;
    let send = || {
        client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&chat_body("gpt-4o", false))
            .send()
    };
    let resp = send().await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    assert!(resp.headers().contains_key("x-litellm-model-id"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "litellm.RateLimitError: RateLimitError: OpenAIException - Rate limit reached"
    );
    assert_eq!(body["error"]["code"], "429");

    let resp = send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("litellm.BadRequestError: ")
    );

    let recs = gw.records(2).await;
    assert!(recs.iter().all(|r| r.status == CallStatus::Failure));
    assert_eq!(recs[0].http_status, 429);
    assert!(
        recs[0]
            .error_message
            .as_deref()
            .unwrap()
            .contains("Rate limit reached")
    );
}

#[tokio::test]
async fn unreachable_upstream_is_500_and_hanging_upstream_is_408() {
    let up = FakeOpenAi::start().await;
    up.push(Reply::fault(Fault::Hang));
    let cfg = format!(
        "model_list:
  - model_name: down
    litellm_params: {{model: openai/x, api_base: 'http://127.0.0.1:9/v1', api_key: k}}
  - model_name: slow
    litellm_params: {{model: openai/x, api_base: '{}', api_key: k, timeout: 0.5}}
general_settings: {{master_key: {KEY}}}
router_settings: {{num_retries: 0}}
",
        up.base_url()
    );
    let gw = start(&cfg).await;
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&chat_body("down", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    let body: Value = resp.json().await.unwrap();
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("litellm.APIConnectionError: OpenAIException - "),
        "{msg}"
    );
    assert!(msg.contains("127.0.0.1:9"), "{msg}");
    assert!(!msg.contains("sk-"), "{msg}");

    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&chat_body("slow", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 408);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("litellm.Timeout")
    );
    assert_eq!(body["error"]["code"], "408");
}

#[tokio::test]
async fn mid_stream_failure_ends_with_an_error_frame_and_a_failure_record() {
    let up = FakeOpenAi::start().await;
    up.push(
        Reply::text("abcdefghijklmnop")
            .with_chunk_chars(2)
            .with_usage(3, 3)
            // Paced, so the first frames reach the gateway before the reset: a stream that
            // fails before its first byte is retried instead.
            .with_chunk_delay(std::time::Duration::from_millis(20))
            .fault_after_reset(3),
    );
    let gw = start(&two_models(&up.base_url())).await;
    let text = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&chat_body("gpt-4o", true))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = sse_events(&text);
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(last["error"]["message"].as_str().is_some(), "{text}");
    assert!(!text.contains("[DONE]"));
    let rec = gw.records(1).await.remove(0);
    assert_eq!(rec.status, CallStatus::Failure);
}

trait ResetAfter {
    fn fault_after_reset(self, after: usize) -> Self;
}

impl ResetAfter for Reply {
    fn fault_after_reset(mut self, after: usize) -> Self {
        self.fault = Some(Fault::ResetMidStream { after });
        self
    }
}

#[tokio::test]
async fn client_disconnect_mid_stream_still_produces_a_record() {
    let up = FakeOpenAi::start().await;
    up.push(
        // Long enough (about 10 s) that the stream cannot end on its own before the
        // disconnect is noticed, even on a slow machine.
        Reply::text("a long answer that trickles ".repeat(8))
            .with_chunk_chars(1)
            .with_chunk_delay(std::time::Duration::from_millis(50)),
    );
    let gw = start(&two_models(&up.base_url())).await;
    let mut resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&chat_body("gpt-4o", true))
        .send()
        .await
        .unwrap();
    let first = resp.chunk().await.unwrap();
    assert!(first.is_some());
    drop(resp);
    let recs = gw.records(1).await;
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].status, CallStatus::Failure);
    assert!(
        recs[0]
            .error_message
            .as_deref()
            .unwrap()
            .contains("disconnected")
    );
}

#[tokio::test]
async fn embeddings_pass_through_with_cost() {
    let up = FakeOpenAi::start().await;
    up.push(Reply::text("").with_usage(8, 0));
    let cfg = format!(
        "model_list:
  - model_name: embed
    litellm_params: {{model: openai/text-embedding-3-small, api_base: '{}', api_key: k}}
general_settings: {{master_key: {KEY}}}
",
        up.base_url()
    );
    let gw = start(&cfg).await;
    let resp = client()
        .post(gw.url("/v1/embeddings"))
        .bearer_auth(KEY)
        .json(&json!({"model": "embed", "input": ["a", "b"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // 8 tokens * 2e-8 USD
    assert_eq!(resp.headers()["x-litellm-response-cost"], "0.00000016");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    assert_eq!(
        up.last_request().unwrap().body["model"],
        "text-embedding-3-small"
    );
    let rec = gw.records(1).await.remove(0);
    assert_eq!(rec.call_type, "aembedding");
    assert_eq!(rec.cost_nanos, 160);

    let resp = client()
        .post(gw.url("/embeddings"))
        .bearer_auth(KEY)
        .json(&json!({"model": "embed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn wildcard_model_names_route_any_matching_model() {
    let up = FakeOpenAi::start().await;
    up.set_default(Reply::text("ok").with_usage(100, 10));
    let cfg = format!(
        "model_list:
  - model_name: exact
    litellm_params: {{model: openai/exact-model, mock_response: hi}}
  - model_name: 'openai/*'
    litellm_params: {{model: 'openai/*', api_base: '{}', api_key: k}}
router_settings:
  model_group_alias: {{legacy: exact}}
general_settings: {{master_key: {KEY}}}
",
        up.base_url()
    );
    let gw = start(&cfg).await;
    for _ in 0..2 {
        let resp = client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&chat_body("openai/gpt-4o-mini", false))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["x-litellm-model-group"],
            "openai/gpt-4o-mini"
        );
        // gpt-4o-mini: 100 * 1.5e-7 + 10 * 6e-7
        assert_eq!(resp.headers()["x-litellm-response-cost"], "0.000021");
        assert_eq!(up.last_request().unwrap().body["model"], "gpt-4o-mini");
    }
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&chat_body("legacy", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-litellm-model-group"], "exact");
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&chat_body("anthropic/claude", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let models: Value = client()
        .get(gw.url("/v1/models"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    // The wildcard route stands for the price map's OpenAI models, as LiteLLM lists it.
    assert_eq!(ids[0], "exact");
    assert!(ids.contains(&"openai/gpt-4o-mini"), "{ids:?}");
    assert!(ids[1..].iter().all(|m| m.starts_with("openai/")), "{ids:?}");
    assert!(!ids.contains(&"openai/*"));
}

#[tokio::test]
async fn missing_upstream_usage_falls_back_to_an_estimate() {
    let up = FakeOpenAi::start().await;
    // A stream that ends without its usage chunk (and without [DONE]).
    let mut r = Reply::text("abcdefgh").with_chunk_chars(4);
    r.fault = Some(Fault::TruncateStream { after: 4 });
    up.push(r);
    // A plain answer without a usage object.
    up.push(Reply::fault(Fault::Raw {
        status: 200,
        body: r#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"abcdefghijkl"},"finish_reason":"stop"}]}"#.to_string(),
    }));
    let gw = start(&two_models(&up.base_url())).await;
    let text = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&chat_body("gpt-4o", true))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("efgh"));
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&chat_body("gpt-4o", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let recs = gw.records(2).await;
    // About four bytes of the request's messages JSON a token.
    let prompt = serde_json::to_string(&chat_body("gpt-4o", false)["messages"])
        .unwrap()
        .len() as u64;
    assert_eq!(recs[0].prompt_tokens, prompt.div_ceil(4));
    assert_eq!(recs[0].completion_tokens, 2);
    assert_eq!(recs[1].completion_tokens, 3);
    assert!(recs.iter().all(|r| r.cost_nanos > 0));
}

#[tokio::test]
async fn a_deployment_organization_is_sent_as_openai_organization() {
    let up = FakeOpenAi::start().await;
    up.push(Reply::text("hi"));
    let yaml = two_models(&up.base_url()).replacen(
        "      api_key: sk-upstream-secret\n",
        "      api_key: sk-upstream-secret\n      organization: org-idlehands-1\n",
        1,
    );
    let gw = start(&yaml).await;
    let resp = post_json(&gw, "/v1/chat/completions", &chat_body("gpt-4o", false)).await;
    assert_eq!(resp.status(), 200);
    let sent = up.last_request().unwrap();
    assert_eq!(sent.header("openai-organization"), Some("org-idlehands-1"));

    // A value no header can carry stops start-up, naming the key.
    let bad = two_models(&up.base_url()).replacen(
        "      api_key: sk-upstream-secret\n",
        "      api_key: sk-upstream-secret\n      organization: \"org\\u0007bell\"\n",
        1,
    );
    let err = match idlehands_proxy::ProxyConfig::from_yaml(&bad, "config.yaml", &|_| None) {
        Ok(_) => panic!("a bell in the organization was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("config.yaml") && err.contains("model_list[0].litellm_params.organization"),
        "{err}"
    );
}

#[tokio::test]
async fn global_max_parallel_requests_refuses_the_call_over_the_limit_until_one_ends() {
    let up = FakeOpenAi::start().await;
    // A stream whose chunks trickle in (paced on purpose: it must still be running when the
    // third call comes), then a call held until the test lets it answer.
    up.push(
        Reply::text("one two three four five six")
            .with_chunk_chars(4)
            .with_chunk_delay(std::time::Duration::from_millis(100)),
    );
    let held = Gate::new();
    up.push(Reply::text("second").held_by(&held));
    let yaml = format!(
        "{}  global_max_parallel_requests: 2\n",
        two_models(&up.base_url())
    );
    let gw = start(&yaml).await;
    let call = |model: &str, stream: bool| {
        client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&chat_body(model, stream))
            .send()
    };
    // The stream has started (its headers are here) and still holds its place...
    let streamed = post_json(&gw, "/v1/chat/completions", &chat_body("gpt-4o", true)).await;
    assert_eq!(streamed.status(), 200);
    let slow_call = tokio::spawn(call("gpt-4o", false));
    eventually("the held call reached the upstream", || up.served() == 2).await;
    // ...as does the held call, so a third is refused at once, even for a mock deployment.
    let refused = post_json(&gw, "/v1/chat/completions", &chat_body("mocky", false)).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(body["error"]["code"], "429");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("global_max_parallel_requests") && message.contains("Current limit: 2"),
        "{message}"
    );
    held.open();
    let text = streamed.text().await.unwrap();
    assert!(text.contains("[DONE]"), "{text}");
    assert_eq!(slow_call.await.unwrap().unwrap().status(), 200);
    // Both places are free again.
    for _ in 0..2 {
        let ok = post_json(&gw, "/v1/chat/completions", &chat_body("mocky", false)).await;
        assert_eq!(ok.status(), 200);
    }
}
