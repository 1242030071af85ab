#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `/v1/responses` over real HTTP: translated onto chat completions for OpenAI-compatible and
//! Anthropic backends, plain and streamed, with the gateway's duties (spend row `aresponses`,
//! cost headers) and errors in OpenAI's envelope.

mod common;

use common::{KEY, client, post_as, start};
use idlehands_testkit::{FakeAnthropic, FakeOpenAi, Reply};
use serde_json::{Value, json};

fn config(openai_base: &str, anthropic_base: &str) -> String {
    format!(
        "model_list:
  - model_name: coder
    litellm_params:
      model: hosted_vllm/qwen2.5-coder
      api_base: {openai_base}
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000002
  - model_name: claude
    litellm_params:
      model: anthropic/claude-sonnet-4-5
      api_base: {anthropic_base}
      api_key: sk-ant-test
general_settings:
  master_key: {KEY}
"
    )
}

#[tokio::test]
async fn a_tool_round_trip_through_an_openai_compatible_server() {
    let up = FakeOpenAi::start().await;
    let ant = FakeAnthropic::start().await;
    up.push(Reply::tool_call("call_1", "read", json!({"path": "a.txt"})).with_usage(100, 20));
    up.push(Reply::text("It says hello.").with_usage(130, 5));
    let gw = start(&config(&up.base_url(), &ant.base_url())).await;
    let tools = json!([{"type": "function", "name": "read", "description": "Read a file",
                        "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}]);
    let resp = post_as(
        &gw,
        "/v1/responses",
        KEY,
        &json!({"model": "coder", "instructions": "Be brief.", "input": "What is in a.txt?",
               "tools": tools, "max_output_tokens": 50}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-litellm-response-cost"], "0.00014");
    let first: Value = resp.json().await.unwrap();
    assert_eq!(first["object"], "response");
    assert_eq!(first["status"], "completed");
    assert!(first["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(first["output"][0]["type"], "function_call");
    assert_eq!(first["output"][0]["call_id"], "call_1");
    assert_eq!(first["output"][0]["arguments"], "{\"path\":\"a.txt\"}");
    assert_eq!(first["usage"]["input_tokens"], 100);
    assert_eq!(first["usage"]["output_tokens"], 20);
    assert_eq!(first["max_output_tokens"], 50);

    // What the upstream was sent: a chat request.
    let sent = up.last_request().unwrap();
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(
        sent.body["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(sent.body["tools"][0]["function"]["name"], "read");
    assert_eq!(sent.body["max_tokens"], 50);

    // The tool's output goes back as input items.
    let mut input = vec![json!({"role": "user", "content": "What is in a.txt?"})];
    input.push(first["output"][0].clone());
    input.push(json!({"type": "function_call_output", "call_id": "call_1", "output": "hello"}));
    let second: Value = post_as(
        &gw,
        "/v1/responses",
        KEY,
        &json!({"model": "coder", "input": input, "tools": tools}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(second["output"][0]["type"], "message");
    assert_eq!(second["output"][0]["content"][0]["text"], "It says hello.");
    let sent = up.last_request().unwrap();
    assert_eq!(sent.body["messages"][1]["tool_calls"][0]["id"], "call_1");
    assert_eq!(
        sent.body["messages"][2],
        json!({"role": "tool", "tool_call_id": "call_1", "content": "hello"})
    );

    let recs = gw.records(2).await;
    assert_eq!(recs.len(), 2);
    assert!(recs.iter().all(|r| r.call_type == "aresponses"));
    assert_eq!(recs[0].cost_nanos, 140_000);
}

#[tokio::test]
async fn a_stream_is_the_responses_event_sequence() {
    let up = FakeOpenAi::start().await;
    let ant = FakeAnthropic::start().await;
    up.push(
        Reply::text("Hello there")
            .with_reasoning("greet")
            .with_usage(10, 4)
            .with_chunk_chars(5),
    );
    let gw = start(&config(&up.base_url(), &ant.base_url())).await;
    let text = post_as(
        &gw,
        "/v1/responses",
        KEY,
        &json!({"model": "coder", "input": "hi", "stream": true}),
    )
    .await
    .text()
    .await
    .unwrap();
    let events: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"response.created"));
    assert_eq!(kinds.last(), Some(&"response.completed"));
    for needed in [
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_text.delta",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.output_item.done",
    ] {
        assert!(kinds.contains(&needed), "{needed} missing: {kinds:?}");
    }
    let deltas: String = events
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, "Hello there");
    let done = &events.last().unwrap()["response"];
    assert_eq!(done["output"][1]["content"][0]["text"], "Hello there");
    assert_eq!(done["usage"]["total_tokens"], 14);
    // Each SSE event is named after its type.
    assert!(
        text.contains("event: response.output_text.delta\ndata: "),
        "{text}"
    );
    let recs = gw.records(1).await;
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].call_type, "aresponses");
    assert_eq!((recs[0].prompt_tokens, recs[0].completion_tokens), (10, 4));
}

#[tokio::test]
async fn a_translated_backend_answers_too() {
    let up = FakeOpenAi::start().await;
    let ant = FakeAnthropic::start().await;
    ant.push(Reply::text("Bonjour").with_usage(12, 3));
    let gw = start(&config(&up.base_url(), &ant.base_url())).await;
    let resp = post_as(&gw, "/v1/responses", KEY, &json!({"model": "claude", "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}]})).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["output"][0]["content"][0]["text"], "Bonjour");
    assert_eq!(body["usage"]["input_tokens"], 12);
    assert_eq!(ant.served(), 1);
}

/// A request's `mock_response` is answered by the gateway, as on chat completions, whatever
/// the backend (a translated one here, a Responses upstream in `responses_passthrough`): no
/// upstream call, one spend row.
#[tokio::test]
async fn a_requests_mock_response_is_answered_without_the_upstream() {
    let up = FakeOpenAi::start().await;
    let ant = FakeAnthropic::start().await;
    let gw = start(&config(&up.base_url(), &ant.base_url())).await;
    for model in ["coder", "claude"] {
        let resp = post_as(
            &gw,
            "/v1/responses",
            KEY,
            &json!({"model": model, "input": "hi", "mock_response": "mocked answer"}),
        )
        .await;
        assert_eq!(resp.status(), 200, "{model}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(
            body["output"][0]["content"][0]["text"], "mocked answer",
            "{body}"
        );
    }
    assert_eq!((up.served(), ant.served()), (0, 0));
    let recs = gw.records(2).await;
    assert_eq!(recs.len(), 2);
    assert!(recs.iter().all(|r| r.call_type == "aresponses"), "{recs:?}");
}

#[tokio::test]
async fn errors_keep_openais_envelope() {
    let up = FakeOpenAi::start().await;
    let ant = FakeAnthropic::start().await;
    let gw = start(&config(&up.base_url(), &ant.base_url())).await;
    let cases = [
        (
            KEY,
            json!({"model": "coder", "input": "x", "previous_response_id": "resp_1"}),
            404,
            "Response with id 'resp_1' not found.",
        ),
        (
            KEY,
            json!({"model": "coder", "input": "x", "tools": [{"type": "web_search"}]}),
            400,
            "web_search",
        ),
        (KEY, json!({"model": "nope", "input": "x"}), 400, "nope"),
        (
            "sk-wrong-key-000000",
            json!({"model": "coder", "input": "x"}),
            401,
            "",
        ),
    ];
    for (key, body, status, says) in cases {
        let resp = post_as(&gw, "/v1/responses", key, &body).await;
        assert_eq!(resp.status(), status);
        let body: Value = resp.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{message}");
    }
    assert_eq!(up.served(), 0);
}

#[tokio::test]
async fn stored_responses_continue_conversations_and_can_be_read_and_deleted() {
    let up = FakeOpenAi::start().await;
    let ant = FakeAnthropic::start().await;
    up.push(Reply::text("Paris.").with_usage(10, 2));
    up.push(Reply::text("About 2.1 million.").with_usage(20, 5));
    up.push(Reply::text("Not kept.").with_usage(5, 2));
    let gw = start(&config(&up.base_url(), &ant.base_url())).await;
    let first: Value = post_as(
        &gw,
        "/v1/responses",
        KEY,
        &json!({"model": "coder", "input": "Capital of France?"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(first["store"], true);
    let id = first["id"].as_str().unwrap().to_string();

    // The next turn names the first: the upstream is sent the whole conversation.
    let second: Value = post_as(
        &gw,
        "/v1/responses",
        KEY,
        &json!({"model": "coder", "input": "Its population?", "previous_response_id": id}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(second["previous_response_id"], id.as_str());
    let sent = up.last_request().unwrap();
    assert_eq!(
        sent.body["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "Capital of France?"}]},
               {"role": "assistant", "content": "Paris."},
               {"role": "user", "content": [{"type": "text", "text": "Its population?"}]}])
    );

    let get = |path: String| {
        let url = gw.url(&path);
        async move { client().get(url).bearer_auth(KEY).send().await.unwrap() }
    };
    let read: Value = get(format!("/v1/responses/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read, first);
    let second_id = second["id"].as_str().unwrap();
    let items: Value = get(format!("/v1/responses/{second_id}/input_items?order=asc"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(items["object"], "list");
    let data = items["data"].as_array().unwrap();
    assert_eq!(data.len(), 3, "{items}");
    assert_eq!(data[0]["content"][0]["text"], "Capital of France?");
    assert_eq!(data[1]["type"], "message");
    assert_eq!(data[1]["role"], "assistant");
    assert_eq!(items["first_id"], data[0]["id"]);

    // Counting a next turn's input counts the stored conversation too (estimated here: the
    // fake has no tokenizer route, and the answer says so).
    let count = |body: Value| {
        let gw = &gw;
        async move {
            let r = post_as(gw, "/v1/responses/input_tokens", KEY, &body).await;
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, alone) = count(json!({"model": "coder", "input": "Its area?"})).await;
    assert_eq!(status, 200, "{alone}");
    assert_eq!(alone["object"], "response.input_tokens");
    assert_eq!(alone["count_source"], "local_estimate");
    assert!(alone["estimate_reason"].is_string(), "{alone}");
    let (status, continued) =
        count(json!({"model": "coder", "input": "Its area?", "previous_response_id": second_id}))
            .await;
    assert_eq!(status, 200, "{continued}");
    assert!(
        continued["input_tokens"].as_u64() > alone["input_tokens"].as_u64(),
        "{alone} {continued}"
    );
    let (status, unknown) =
        count(json!({"model": "coder", "input": "x", "previous_response_id": "resp_nope"})).await;
    assert_eq!(status, 404, "{unknown}");

    let deleted = client()
        .delete(gw.url(&format!("/v1/responses/{id}")))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    let body: Value = deleted.json().await.unwrap();
    assert_eq!(
        body,
        json!({"id": id, "object": "response", "deleted": true})
    );
    assert_eq!(get(format!("/v1/responses/{id}")).await.status(), 404);

    // `store: false` keeps nothing.
    let unkept: Value = post_as(
        &gw,
        "/v1/responses",
        KEY,
        &json!({"model": "coder", "input": "x", "store": false}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(unkept["store"], false);
    let unkept_id = unkept["id"].as_str().unwrap();
    assert_eq!(
        get(format!("/v1/responses/{unkept_id}")).await.status(),
        404
    );
}
