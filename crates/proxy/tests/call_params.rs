#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Per-deployment `litellm_params` (request fields, `extra_body`, headers, `drop_params`),
//! provider overflow errors as LiteLLM's ContextWindowExceededError, per-request timeouts, the
//! `mock_timeout` / `mock_testing_rate_limit_error` aids and comma-separated models, end to end
//! over loopback HTTP against the testkit fakes.

mod common;

use std::time::Duration;

use common::{KEY, chat_body, client, post_json, start};
use idlehands_proxy::CallStatus;
use idlehands_testkit::{FakeAnthropic, FakeBedrock, FakeGemini, FakeOpenAi, Fault, Reply};
use serde_json::{Value, json};

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

fn openai_deployment(name: &str, base: &str, extra: &str) -> String {
    format!(
        "  - model_name: {name}
    litellm_params:
      model: openai/{name}-upstream
      api_base: {base}
      api_key: sk-upstream
{extra}"
    )
}

fn anthropic_deployment(name: &str, model: &str, base: &str, extra: &str) -> String {
    format!(
        "  - model_name: {name}
    litellm_params:
      model: anthropic/{model}
      api_base: {base}
      api_key: sk-ant-test
{extra}"
    )
}

fn config(deployments: &[String], tail: &str) -> String {
    format!(
        "model_list:\n{}router_settings:\n  num_retries: 0\n{tail}general_settings:\n  master_key: {KEY}\n",
        deployments.concat()
    )
}

#[tokio::test]
async fn openai_compatible_deployment_params_reach_the_upstream_and_request_values_win() {
    let up = FakeOpenAi::start().await;
    let gw = start(&config(
        &[openai_deployment(
            "local",
            &up.base_url(),
            "      max_tokens: 55
      temperature: 0.1
      stop: [\"END\"]
      reasoning_effort: low
      seed: 7
      extra_body: {top_k: 20, min_p: 0.05}
      extra_headers: {x-team: blue, x-override: deployment}
      headers: {x-from-headers: yes}
      additional_drop_params: [seed]
",
        )],
        "",
    ))
    .await;
    up.set_default(Reply::text("ok"));

    let resp = post_json(&gw, "/v1/chat/completions", &chat_body("local", false)).await;
    assert_eq!(resp.status(), 200);
    let got = up.last_request().unwrap();
    assert_eq!(got.body["model"], "local-upstream");
    assert_eq!(got.body["max_tokens"], 55);
    assert_eq!(got.body["temperature"], 0.1);
    assert_eq!(got.body["stop"], json!(["END"]));
    assert_eq!(got.body["reasoning_effort"], "low");
    assert_eq!(got.body["top_k"], 20);
    assert_eq!(got.body["min_p"], 0.05);
    assert!(got.body.get("seed").is_none(), "additional_drop_params");
    assert_eq!(got.header("x-team"), Some("blue"));
    assert_eq!(got.header("x-from-headers"), Some("yes"));
    assert_eq!(got.header("x-override"), Some("deployment"));
    assert_eq!(got.header("authorization"), Some("Bearer sk-upstream"));

    // The request's own values win; its extra_headers too; its drop list adds to the deployment's.
    let mut body = chat_body("local", false);
    body["max_tokens"] = json!(9);
    body["temperature"] = json!(0.9);
    body["top_k"] = json!(3);
    body["extra_headers"] = json!({"x-override": "request"});
    body["additional_drop_params"] = json!(["stop"]);
    let resp = post_json(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 200);
    let got = up.last_request().unwrap();
    assert_eq!(got.body["max_tokens"], 9);
    assert_eq!(got.body["temperature"], 0.9);
    assert_eq!(got.body["top_k"], 3);
    assert_eq!(got.body["min_p"], 0.05);
    assert_eq!(got.body["reasoning_effort"], "low");
    assert!(got.body.get("stop").is_none());
    for gateway_field in ["extra_headers", "additional_drop_params", "seed"] {
        assert!(got.body.get(gateway_field).is_none(), "{gateway_field}");
    }
    assert_eq!(got.header("x-override"), Some("request"));
    assert_eq!(got.header("x-team"), Some("blue"));
}

#[tokio::test]
async fn anthropic_deployment_params_reach_the_messages_api() {
    let up = FakeAnthropic::start().await;
    let gw = start(&config(
        &[anthropic_deployment(
            "claude",
            "claude-sonnet-4-5",
            &up.base_url(),
            "      max_tokens: 55
      temperature: 0.2
      top_p: 0.8
      stop: END
      extra_headers: {anthropic-beta: prompt-caching-2024-07-31}
      extra_body: {service_tier: auto}
",
        )],
        "",
    ))
    .await;
    let resp = post_json(&gw, "/v1/chat/completions", &chat_body("claude", false)).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let got = up.last_request().unwrap();
    assert_eq!(got.body["max_tokens"], 55, "not the 4096 default");
    assert_eq!(got.body["temperature"], 0.2);
    assert_eq!(got.body["top_p"], 0.8);
    assert_eq!(got.body["stop_sequences"], json!(["END"]));
    assert_eq!(got.body["service_tier"], "auto");
    assert_eq!(
        got.header("anthropic-beta"),
        Some("prompt-caching-2024-07-31")
    );

    let mut body = chat_body("claude", true);
    body["max_tokens"] = json!(12);
    let resp = post_json(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap();
    let got = up.last_request().unwrap();
    assert_eq!(got.body["max_tokens"], 12);
    assert_eq!(got.body["temperature"], 0.2);
}

#[tokio::test]
async fn a_parameter_anthropic_cannot_take_is_refused_unless_drop_params() {
    let up = FakeAnthropic::start().await;
    let base = up.base_url();
    let gw = start(&config(
        &[
            anthropic_deployment("strict", "claude-sonnet-4-5", &base, ""),
            anthropic_deployment(
                "lenient",
                "claude-sonnet-4-5",
                &base,
                "      drop_params: true\n      logit_bias: {\"50256\": -100}\n",
            ),
        ],
        "",
    ))
    .await;
    let mut body = chat_body("strict", false);
    body["logit_bias"] = json!({"50256": -100});
    body["n"] = json!(1);
    let resp = post_json(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    let msg = err["error"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with(
            "litellm.UnsupportedParamsError: anthropic does not support parameters: ['logit_bias'], for model=claude-sonnet-4-5. To drop these, set `litellm.drop_params=True`"
        ),
        "{msg}"
    );
    assert_eq!(err["error"]["param"], "logit_bias");
    assert_eq!(up.served(), 0, "refused before any upstream call");
    let rec = gw.records(1).await.remove(0);
    assert_eq!(rec.status, CallStatus::Failure);

    // The request's drop_params drops it.
    body["drop_params"] = json!(true);
    let resp = post_json(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 200);
    let got = up.last_request().unwrap();
    assert!(got.body.get("logit_bias").is_none());
    assert!(got.body.get("drop_params").is_none());

    // So does the deployment's, for its own logit_bias too; a request can turn it off.
    let resp = post_json(&gw, "/v1/chat/completions", &chat_body("lenient", false)).await;
    assert_eq!(resp.status(), 200);
    assert!(up.last_request().unwrap().body.get("logit_bias").is_none());
    let mut off = chat_body("lenient", false);
    off["drop_params"] = json!(false);
    let resp = post_json(&gw, "/v1/chat/completions", &off).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(up.served(), 2);
}

#[tokio::test]
async fn litellm_settings_drop_params_applies_to_every_call() {
    let up = FakeAnthropic::start().await;
    let gw = start(&config(
        &[anthropic_deployment(
            "old-claude",
            "claude-3-5-sonnet-20240620",
            &up.base_url(),
            "",
        )],
        "litellm_settings:\n  drop_params: true\n",
    ))
    .await;
    let mut body = chat_body("old-claude", false);
    // Claude 3.5 has no extended thinking: LiteLLM does not list reasoning_effort for it.
    body["reasoning_effort"] = json!("high");
    body["presence_penalty"] = json!(0.5);
    let resp = post_json(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 200);
    let got = up.last_request().unwrap();
    assert!(got.body.get("thinking").is_none());
    assert!(got.body.get("presence_penalty").is_none());
}

/// The overflow texts of local servers (OpenAI-compatible wire) each become LiteLLM's
/// ContextWindowExceededError and fire the context window fallback.
#[tokio::test]
async fn every_local_servers_overflow_text_fires_the_context_window_fallback() {
    let small = FakeOpenAi::start().await;
    let big = FakeOpenAi::start().await;
    big.set_default(Reply::text("from the big model"));
    let gw = start(&config(
        &[
            openai_deployment("small", &small.base_url(), ""),
            openai_deployment("big", &big.base_url(), ""),
        ],
        "  context_window_fallbacks: [{small: [big]}]\n",
    ))
    .await;
    let llama_cpp = include_str!("fixtures/llama_server_overflow_error.json").trim();
    let overflows: Vec<(&str, Reply)> = vec![
        (
            "llama.cpp",
            Reply::fault(Fault::Raw {
                status: 400,
                body: llama_cpp.to_string(),
            }),
        ),
        (
            "vLLM",
            Reply::error(
                400,
                "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens (4000 in the messages, 1000 in the completion). Please reduce the length of the messages or completion.",
            ),
        ),
        (
            "Ollama",
            Reply::error(400, "the input length exceeds the context length"),
        ),
        (
            // LM Studio's error is a bare string.
            "LM Studio",
            Reply::fault(Fault::Raw {
                status: 400,
                body: r#"{"error":"Trying to keep the first 5191 tokens when context the overflows. However, the model is loaded with context length of only 4096 tokens, which is not enough. Try to load the model with a larger context length, or provide a shorter input"}"#.to_string(),
            }),
        ),
        (
            "OpenAI",
            Reply::fault(Fault::Raw {
                status: 400,
                body: r#"{"error":{"message":"Your input exceeds the context window of this model.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#.to_string(),
            }),
        ),
    ];
    for (who, reply) in overflows {
        small.push(reply);
        let resp = post_json(&gw, "/v1/chat/completions", &chat_body("small", false)).await;
        assert_eq!(resp.status(), 200, "{who}");
        assert_eq!(header(&resp, "x-litellm-model-group"), Some("big"), "{who}");
        assert_eq!(
            header(&resp, "x-litellm-attempted-fallbacks"),
            Some("1"),
            "{who}"
        );
    }
    assert_eq!((small.served(), big.served()), (5, 5));

    // Without a fallback the client gets LiteLLM's error.
    small.push(Reply::fault(Fault::Raw {
        status: 400,
        body: llama_cpp.to_string(),
    }));
    let mut body = chat_body("small", false);
    body["disable_fallbacks"] = json!(true);
    let resp = post_json(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(
        err["error"]["message"],
        "litellm.ContextWindowExceededError: litellm.BadRequestError: ContextWindowExceededError: OpenAIException - request (3030 tokens) exceeds the available context size (2048 tokens), try increasing it"
    );
    assert_eq!(err["error"]["code"], "400");
}

#[tokio::test]
async fn hosted_providers_overflow_errors_fire_the_context_window_fallback() {
    let anthropic = FakeAnthropic::start().await;
    let gemini = FakeGemini::start().await;
    let bedrock = FakeBedrock::start().await;
    let big = FakeOpenAi::start().await;
    big.set_default(Reply::text("from the big model"));
    let deployments = [
        anthropic_deployment("claude", "claude-sonnet-4-5", &anthropic.base_url(), ""),
        format!(
            "  - model_name: gem
    litellm_params:
      model: gemini/gemini-2.5-flash
      api_base: {}
      api_key: gem-key
",
            gemini.base_url()
        ),
        format!(
            "  - model_name: br
    litellm_params:
      model: bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0
      api_base: {}
      aws_region_name: us-west-2
      aws_access_key_id: AKIDEXAMPLE
      aws_secret_access_key: secret-example
",
            bedrock.base_url()
        ),
        openai_deployment("big", &big.base_url(), ""),
    ];
    let gw = start(&config(
        &deployments,
        "  context_window_fallbacks: [{claude: [big]}, {gem: [big]}, {br: [big]}]\n",
    ))
    .await;
    anthropic.push(Reply::error(
        400,
        "prompt is too long: 210000 tokens > 200000 maximum",
    ));
    gemini.push(Reply::error(
        400,
        "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
    ));
    bedrock.push(Reply::error(400, "Input is too long for requested model."));
    for group in ["claude", "gem", "br"] {
        let resp = post_json(&gw, "/v1/chat/completions", &chat_body(group, false)).await;
        assert_eq!(resp.status(), 200, "{group}");
        assert_eq!(
            header(&resp, "x-litellm-model-group"),
            Some("big"),
            "{group}"
        );
    }
    assert_eq!(
        (
            anthropic.served(),
            gemini.served(),
            bedrock.served(),
            big.served()
        ),
        (1, 1, 1, 3)
    );
}

#[tokio::test]
async fn caller_timeouts_from_header_or_body_end_the_call_with_a_timeout() {
    let up = FakeOpenAi::start().await;
    // The fake answers embeddings at once; this listener takes connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_base = format!("http://{}/v1", silent.local_addr().unwrap());
    let gw = start(&config(
        &[
            openai_deployment("slow", &up.base_url(), "      timeout: 600\n"),
            openai_deployment("silent", &silent_base, "      timeout: 600\n"),
        ],
        "",
    ))
    .await;
    // The upstream answers long after the caller's timeout.
    up.set_default(Reply::text("late").with_delay(Duration::from_secs(30)));

    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-litellm-timeout", "0.2")
        .json(&chat_body("slow", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 408);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(
        err["error"]["message"],
        "litellm.Timeout: Request timed out after 0.2 seconds. model=openai/slow-upstream"
    );

    let mut body = chat_body("slow", true);
    body["timeout"] = json!("0.2");
    let resp = post_json(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 408);
    assert!(up.last_request().unwrap().body.get("timeout").is_none());

    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-litellm-stream-timeout", "0.2")
        .json(&chat_body("slow", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 408);

    let resp = client()
        .post(gw.url("/v1/embeddings"))
        .bearer_auth(KEY)
        .header("x-litellm-timeout", "0.2")
        .json(&json!({"model": "silent", "input": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 408, "{}", resp.text().await.unwrap());

    let mut bad = chat_body("slow", false);
    bad["timeout"] = json!("soon");
    let resp = post_json(&gw, "/v1/chat/completions", &bad).await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["param"], "timeout");
}

#[tokio::test]
async fn mock_timeout_and_mock_rate_limit_answer_as_litellm() {
    let up = FakeOpenAi::start().await;
    up.set_default(Reply::text("real answer"));
    let gw = start(&config(
        &[openai_deployment("gpt-4o", &up.base_url(), "")],
        "",
    ))
    .await;

    let mut body = chat_body("gpt-4o", false);
    body["mock_timeout"] = json!(true);
    body["timeout"] = json!(0.1);
    let resp = post_json(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 408);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(
        err["error"]["message"],
        "litellm.Timeout: This is a mock timeout error"
    );
    assert_eq!(up.served(), 0);

    let mut body = chat_body("gpt-4o", false);
    body["mock_testing_rate_limit_error"] = json!(true);
    let resp = post_json(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 429);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(
        err["error"]["message"],
        "litellm.RateLimitError: This is a mock exception for model=gpt-4o, to trigger a rate limit error."
    );
    assert_eq!(up.served(), 0);

    // With a retry left, the retry goes to the upstream, as in LiteLLM (the flag is spent).
    body["num_retries"] = json!(1);
    let resp = post_json(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-litellm-attempted-retries"), Some("1"));
    assert_eq!(up.served(), 1);
    assert!(
        up.last_request()
            .unwrap()
            .body
            .get("mock_testing_rate_limit_error")
            .is_none()
    );
    // A mock failure never cools the deployment down.
    let resp = post_json(&gw, "/v1/chat/completions", &chat_body("gpt-4o", false)).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn comma_separated_models_answer_with_a_list_or_the_fastest() {
    let a = FakeOpenAi::start().await;
    let b = FakeOpenAi::start().await;
    a.set_default(Reply::text("from a"));
    b.set_default(Reply::text("from b"));
    let gw = start(&config(
        &[
            openai_deployment("model-a", &a.base_url(), ""),
            openai_deployment("model-b", &b.base_url(), ""),
        ],
        "",
    ))
    .await;

    let resp = post_json(
        &gw,
        "/v1/chat/completions",
        &chat_body("model-a, model-b,nope", false),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let list: Value = resp.json().await.unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list[0]["choices"][0]["message"]["content"], "from a");
    assert_eq!(list[1]["choices"][0]["message"]["content"], "from b");
    assert!(
        list[2]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Invalid model name passed in model=nope")
    );
    assert_eq!(a.last_request().unwrap().body["model"], "model-a-upstream");
    assert_eq!(b.last_request().unwrap().body["model"], "model-b-upstream");
    // One record per model called.
    let records = gw.records(2).await;
    let mut groups: Vec<&str> = records.iter().map(|r| r.model_group.as_str()).collect();
    groups.sort_unstable();
    assert_eq!(groups, ["model-a", "model-b"]);

    // fastest_response: one answer, from whichever model was first.
    let mut body = chat_body("model-a,model-b", false);
    body["fastest_response"] = json!(true);
    let resp = post_json(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 200);
    let one: Value = resp.json().await.unwrap();
    let text = one["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text == "from a" || text == "from b", "{text}");
    assert!(
        a.last_request()
            .unwrap()
            .body
            .get("fastest_response")
            .is_none()
    );

    // A list cannot be streamed.
    let resp = post_json(
        &gw,
        "/v1/chat/completions",
        &chat_body("model-a,model-b", true),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["param"], "stream");
}
