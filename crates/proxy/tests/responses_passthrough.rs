#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `/v1/responses` to `openai/` and `azure/` deployments over real HTTP: passed through (not
//! translated) to the upstream's own Responses API, plain and streamed, with a spend row from
//! the answer's usage, the answer kept for `GET /v1/responses/{id}` and `previous_response_id`.

mod common;

use common::{KEY, post_as, start};
use idlehands_testkit::{FakeOpenAi, Reply};
use serde_json::{Value, json};

fn config(base: &str) -> String {
    format!(
        "model_list:
  - model_name: gpt
    litellm_params:
      model: openai/gpt-4o
      api_base: {base}/v1
      api_key: sk-openai-upstream
  - model_name: az
    litellm_params:
      model: azure/my-gpt-4o
      api_base: {base}
      api_key: az-upstream-key
      api_version: 2025-03-01-preview
      base_model: gpt-4o
general_settings:
  master_key: {KEY}
"
    )
}

#[tokio::test]
async fn openai_deployments_get_the_request_as_it_came_and_the_answer_comes_back_unchanged() {
    let up = FakeOpenAi::start().await;
    up.push(Reply::text("Hi from Responses").with_usage(40, 8));
    let gw = start(&config(&up.origin())).await;
    let req = json!({
        "model": "gpt", "instructions": "Be brief.", "input": "Say hi",
        "metadata": {"ticket": "T-1"}, "max_output_tokens": 50,
        "text": {"format": {"type": "text"}}, "reasoning": {"effort": "low"}
    });
    let resp = post_as(&gw, "/v1/responses", KEY, &req).await;
    assert_eq!(resp.status(), 200);
    // 40 in and 8 out at gpt-4o's $2.50 and $10 per million.
    assert_eq!(resp.headers()["x-litellm-response-cost"], "0.00018");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "response");
    assert_eq!(body["output"][0]["content"][0]["text"], "Hi from Responses");
    assert_eq!(body["usage"]["input_tokens"], 40);
    let sent = up.last_request().unwrap();
    assert_eq!(sent.path, "/v1/responses");
    assert_eq!(
        sent.header("authorization"),
        Some("Bearer sk-openai-upstream")
    );
    let mut expected = req.clone();
    expected["model"] = json!("gpt-4o");
    assert_eq!(sent.body, expected, "only the model name changes");

    let records = gw.records(1).await;
    let r = &records[0];
    assert_eq!(r.call_type, "aresponses");
    assert_eq!((r.prompt_tokens, r.completion_tokens), (40, 8));
    assert_eq!(r.cost_nanos, 180_000);
    assert_eq!(r.response_id.as_deref(), body["id"].as_str());

    // Kept by the gateway: readable, and continued with the conversation as input.
    let id = body["id"].as_str().unwrap();
    let stored: Value = common::client()
        .get(gw.url(&format!("/v1/responses/{id}")))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stored["id"], id);
    let resp = post_as(
        &gw,
        "/v1/responses",
        KEY,
        &json!({"model": "gpt", "input": "And again", "previous_response_id": id}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let sent = up.last_request().unwrap();
    assert!(
        sent.body.get("previous_response_id").is_none(),
        "{}",
        sent.body
    );
    let input = sent.body["input"].as_array().unwrap();
    assert_eq!(input.len(), 3, "{input:?}");
    assert_eq!(input[1]["content"][0]["text"], "Hi from Responses");
    assert_eq!(input[2]["content"][0]["text"], "And again");
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_stream_is_relayed_event_for_event_with_its_usage_recorded() {
    let up = FakeOpenAi::start().await;
    up.push(Reply::text("streamed through").with_usage(21, 6));
    let gw = start(&config(&up.origin())).await;
    let resp = post_as(
        &gw,
        "/v1/responses",
        KEY,
        &json!({"model": "gpt", "input": "Say hi", "stream": true}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-litellm-call-id"));
    let text = resp.text().await.unwrap();
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(names.first(), Some(&"response.created"));
    assert_eq!(names.last(), Some(&"response.completed"));
    assert!(names.contains(&"response.output_text.delta"), "{names:?}");
    assert!(text.contains("\"sequence_number\":0"), "{text}");
    let records = gw.records(1).await;
    assert!(records[0].stream);
    assert_eq!(
        (records[0].prompt_tokens, records[0].completion_tokens),
        (21, 6)
    );
    let id = records[0].response_id.clone().unwrap();
    // The finished response is stored from the stream's last event.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let r = common::client()
            .get(gw.url(&format!("/v1/responses/{id}")))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["status"], "completed");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never stored");
        tokio::task::yield_now().await;
    }

    // A function call streams as its own item, arguments and all.
    up.push(Reply::tool_call(
        "call_1",
        "get_weather",
        json!({"city": "Paris"}),
    ));
    let resp = post_as(
        &gw,
        "/v1/responses",
        KEY,
        &json!({"model": "gpt", "input": "Weather?", "stream": true,
                "tools": [{"type": "function", "name": "get_weather",
                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]}),
    )
    .await;
    let text = resp.text().await.unwrap();
    let done: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(|v| v["type"] == "response.function_call_arguments.done")
        .collect();
    assert_eq!(done.len(), 1, "{text}");
    assert_eq!(done[0]["arguments"], "{\"city\":\"Paris\"}");
    assert!(text.contains("\"call_id\":\"call_1\""), "{text}");
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn azure_deployments_use_their_responses_url_and_key_and_refusals_keep_the_envelope() {
    let up = FakeOpenAi::start().await;
    let gw = start(&config(&up.origin())).await;
    let resp = post_as(
        &gw,
        "/v1/responses",
        KEY,
        &json!({"model": "az", "input": "hi"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let sent = up.last_request().unwrap();
    assert_eq!(sent.path, "/openai/responses");
    assert_eq!(
        sent.query.as_deref(),
        Some("api-version=2025-03-01-preview")
    );
    assert_eq!(sent.header("api-key"), Some("az-upstream-key"));
    assert_eq!(sent.body["model"], "my-gpt-4o");

    // The real API refuses parameters it does not know; so does the fake, and the refusal
    // comes back in OpenAI's envelope with its status, recorded as a failure.
    let resp = post_as(
        &gw,
        "/v1/responses",
        KEY,
        &json!({"model": "gpt", "input": "hi", "frobnicate": 1}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("frobnicate"),
        "{v}"
    );
    let records = gw.records(2).await;
    assert_eq!(records[1].http_status, 400);
    gw.shutdown().await.unwrap();
}

/// A request's `mock_response` never reaches a Responses upstream (it would refuse the unknown
/// parameter): the gateway's mock answers it.
#[tokio::test]
async fn a_requests_mock_response_is_not_sent_upstream() {
    let up = FakeOpenAi::start().await;
    let gw = start(&config(&up.origin())).await;
    let resp = post_as(
        &gw,
        "/v1/responses",
        KEY,
        &json!({"model": "gpt", "input": "hi", "mock_response": "mocked"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["output"][0]["content"][0]["text"], "mocked", "{body}");
    assert_eq!(up.served(), 0);
}
