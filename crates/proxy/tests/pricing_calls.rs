#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Calls priced as LiteLLM prices them, end to end over real HTTP with a real SQLite store: an
//! Azure deployment with its own name and a `base_model`, an `openai/<custom>` deployment
//! priced by the model its upstream says answered (plain and streamed), an `ollama/` one at 0;
//! the header, the spend rows and the key's spend agree, and a small budget trips on the call
//! that only the upstream's answer could price.

mod store_support;

use idlehands_testkit::{FakeOpenAi, Fault, Reply};
use serde_json::{Value, json};
use store_support::{
    Backend, MASTER, Place, chat, client, config, error_of, generate, get, send, settings,
    spend_rows, start_with,
};

/// An OpenAI chat completion as OpenAI sends it for `gpt-4o`: the dated model that answered.
/// `id` is the response id, unique per answer as upstreams make it (spend rows are keyed by it).
fn answered_by(id: &str, model: &str, prompt: u64, completion: u64) -> Reply {
    Reply::fault(Fault::Raw {
        status: 200,
        body: json!({
            "id": id,
            "object": "chat.completion",
            "created": 1_700_000_000u64,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        })
        .to_string(),
    })
}

/// The same as a stream: the model in every chunk, usage in the last one.
fn streamed_by(id: &str, model: &str, prompt: u64, completion: u64) -> Reply {
    let chunk = |delta: Value, finish: Value| {
        json!({"id": id, "object": "chat.completion.chunk", "created": 1_700_000_000u64,
               "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let usage = json!({"id": id, "object": "chat.completion.chunk", "created": 1_700_000_000u64,
        "model": model, "choices": [],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}});
    let body = [
        chunk(json!({"role": "assistant", "content": "hi"}), Value::Null),
        chunk(json!({}), json!("stop")),
        usage,
    ]
    .iter()
    .map(|c| format!("data: {c}\n\n"))
    .collect::<String>()
        + "data: [DONE]\n\n";
    Reply::fault(Fault::Raw { status: 200, body })
}

async fn call(p: &store_support::Proxy, key: &str, body: Value) -> store_support::Answer {
    send(
        client()
            .post(p.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&body),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_custom_names_openai_custom_models_and_local_servers_are_charged_as_litellm_would() {
    let azure = FakeOpenAi::start().await;
    let custom = FakeOpenAi::start().await;
    let local = FakeOpenAi::start().await;
    let yaml = format!(
        "model_list:
  - model_name: azure-custom
    litellm_params:
      model: azure/contoso-prod-chat
      api_base: {azure}
      api_version: '2024-10-21'
      api_key: azure-key
    model_info: {{base_model: azure/gpt-4o}}
  - model_name: custom
    litellm_params: {{model: openai/custom, api_base: {custom}, api_key: k}}
  - model_name: local
    litellm_params: {{model: ollama/qwen-local, api_base: {local}}}
router_settings: {{num_retries: 0}}
general_settings: {{master_key: {MASTER}}}
",
        azure = azure.origin(),
        custom = custom.base_url(),
        local = local.origin(),
    );
    let place = Place::new(Backend::Sqlite);
    let cfg = config(&yaml);
    let s = settings(&cfg, &place);
    let p = start_with(cfg, s).await;
    // Two gpt-4o calls' worth: $2.50/M in, $10/M out (OpenAI's and Azure's published gpt-4o
    // prices) on 1000 + 500 tokens is $0.0075 a call.
    let (key, generated) = generate(&p, json!({"max_budget": 0.012})).await;
    let token = generated["token_id"].as_str().unwrap().to_string();

    // Azure: the deployment name says nothing; base_model prices it (whatever the fake echoes).
    azure.push(Reply::text("hi").with_usage(2000, 100));
    let a = call(&p, MASTER, chat("azure-custom")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    // 2000 * 2.5e-6 + 100 * 1e-5
    assert_eq!(store_support::cost_of(&a), 0.006);

    // Local: free, whatever model the server says it is.
    local.push(answered_by("chatcmpl-local-1", "gpt-4o", 3000, 3000));
    let a = call(&p, MASTER, chat("local")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(store_support::cost_of(&a), 0.0);

    // openai/custom: unknown by its own name, priced by the model that answered, on the
    // header, the stream's usage.cost, the spend rows and the key's budget.
    custom.push(answered_by(
        "chatcmpl-custom-1",
        "gpt-4o-2024-08-06",
        1000,
        500,
    ));
    let a = call(&p, &key, chat("custom")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(store_support::cost_of(&a), 0.0075);
    custom.push(streamed_by(
        "chatcmpl-custom-2",
        "gpt-4o-2024-08-06",
        1000,
        500,
    ));
    let mut body = chat("custom");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let a = call(&p, &key, body).await;
    assert_eq!(a.status, 200);
    let Value::String(text) = &a.body else {
        panic!("a stream: {}", a.body)
    };
    // A stream's cost comes as the SSE comment before `[DONE]`.
    let stream_cost = text
        .lines()
        .find_map(|l| l.strip_prefix(": x-litellm-response-cost: "));
    assert_eq!(stream_cost, Some("0.0075"), "{text}");

    // $0.015 spent of $0.012: the next call is refused.
    let rows = spend_rows(&p, &format!("?api_key={token}"), 2).await;
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!(r["spend"].as_f64(), Some(0.0075), "{r}");
        assert_eq!(r["model_group"], "custom", "{r}");
    }
    let info = get(&p, &format!("/key/info?key={key}"), MASTER).await;
    assert_eq!(
        info.body["info"]["spend"].as_f64(),
        Some(0.015),
        "{}",
        info.body
    );
    let a = call(&p, &key, chat("custom")).await;
    assert_eq!(a.status, 422, "{}", a.body);
    let (kind, msg) = error_of(&a);
    assert_eq!(kind, "budget_exceeded");
    assert!(msg.starts_with("Budget has been exceeded!"), "{msg}");
    assert_eq!(
        custom.served(),
        2,
        "the refused call never reached the upstream"
    );

    // The master key's rows: the Azure call at its base model's price, the local one at 0.
    let all = spend_rows(&p, "", 5).await;
    let spend_of = |group: &str| -> Vec<f64> {
        all.iter()
            .filter(|r| r["model_group"] == group)
            .map(|r| r["spend"].as_f64().unwrap())
            .collect()
    };
    assert_eq!(spend_of("azure-custom"), vec![0.006]);
    assert_eq!(spend_of("local"), vec![0.0]);
    p.stop().await;
    place.cleanup().await;
}
