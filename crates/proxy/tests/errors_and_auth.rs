#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Client mistakes get 4xx with the OpenAI envelope; auth reads LiteLLM's headers.

mod common;

use common::{KEY, chat_body, client, eventually, eventually_async, start, two_models};
use serde_json::{Value, json};

async fn error_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert!(resp.headers().contains_key("x-litellm-call-id"));
    (status, resp.json().await.unwrap())
}

#[tokio::test]
async fn auth_failures_are_401_with_litellm_texts() {
    let gw = start(&two_models("http://127.0.0.1:9/v1")).await;
    let url = gw.url("/v1/chat/completions");
    let (s, b) = error_of(
        client()
            .post(&url)
            .json(&chat_body("mocky", false))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(
        b["error"]["message"],
        "Authentication Error, No api key passed in."
    );
    assert_eq!(b["error"]["code"], "401");

    let (s, b) = error_of(
        client()
            .post(&url)
            .bearer_auth("sk-wrong-key-9999")
            .json(&chat_body("mocky", false))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 401);
    let msg = b["error"]["message"].as_str().unwrap();
    assert!(msg.starts_with("Authentication Error, Invalid proxy server token passed. Received API Key = sk-...9999, Key Hash (Token) ="), "{msg}");
    assert!(!msg.contains("sk-wrong-key"), "{msg}");

    let (s, b) = error_of(
        client()
            .post(&url)
            .header("authorization", KEY)
            .json(&chat_body("mocky", false))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(
        b["error"]["message"],
        "Authentication Error, Malformed API Key passed in. Ensure Key has `Bearer ` prefix."
    );
}

#[tokio::test]
async fn every_key_header_litellm_reads_is_accepted() {
    let gw = start(&two_models("http://127.0.0.1:9/v1")).await;
    let url = gw.url("/v1/chat/completions");
    for (name, value) in [
        ("x-litellm-api-key", KEY.to_string()),
        ("x-litellm-api-key", format!("Bearer {KEY}")),
        ("authorization", format!("Bearer {KEY}")),
        ("api-key", KEY.to_string()),
        ("x-api-key", KEY.to_string()),
    ] {
        let resp = client()
            .post(&url)
            .header(name, value)
            .json(&chat_body("mocky", false))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{name}");
    }
    // x-litellm-api-key wins over a wrong Authorization.
    let resp = client()
        .post(&url)
        .header("x-litellm-api-key", KEY)
        .bearer_auth("sk-other")
        .json(&chat_body("mocky", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn client_mistakes_are_400_with_json_envelope() {
    let gw = start(&two_models("http://127.0.0.1:9/v1")).await;
    let url = gw.url("/v1/chat/completions");
    let post_raw = |body: &'static str| {
        client()
            .post(&url)
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let (s, b) = error_of(post_raw("{not json").await.unwrap()).await;
    assert_eq!(s, 400);
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Invalid JSON payload")
    );
    assert_eq!(b["error"]["type"], "invalid_request_error");
    assert_eq!(b["error"]["code"], "400");

    let (s, b) = error_of(
        post_raw(r#"{"messages":[{"role":"user","content":"x"}]}"#)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(b["error"]["message"], "Missing required parameter: 'model'");
    assert_eq!(b["error"]["param"], "model");

    let (s, b) = error_of(post_raw(r#"{"model":"mocky"}"#).await.unwrap()).await;
    assert_eq!(s, 400);
    assert_eq!(b["error"]["param"], "messages");

    let (s, b) = error_of(
        client()
            .post(&url)
            .bearer_auth(KEY)
            .json(&chat_body("no-such-model", false))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(
        b["error"]["message"],
        "acompletion: Invalid model name passed in model=no-such-model. Call `/v1/models` to view available models for your key."
    );

    let (s, _) = error_of(
        post_raw(r#"{"model":"mocky","messages":[],"stream":"yes"}"#)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400);
    // No content-type header at all still parses.
    let resp = client()
        .post(&url)
        .bearer_auth(KEY)
        .body(chat_body("mocky", false).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // No spend record for calls that never reached a deployment.
    assert!(gw.sink.records().len() <= 1);
}

#[tokio::test]
async fn models_list_and_lookup() {
    let gw = start(&two_models("http://127.0.0.1:9/v1")).await;
    for path in ["/v1/models", "/models"] {
        let b: Value = client()
            .get(gw.url(path))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(b["object"], "list");
        let ids: Vec<&str> = b["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["gpt-4o", "mocky"]);
        assert_eq!(b["data"][0]["created"], 1_677_610_602);
        assert_eq!(b["data"][0]["object"], "model");
        assert_eq!(b["data"][0]["owned_by"], "openai");
    }
    let one: Value = client()
        .get(gw.url("/v1/models/mocky"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["id"], "mocky");
    let resp = client()
        .get(gw.url("/v1/models/nope"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = client().get(gw.url("/v1/models")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
}

/// A group on `up` that answers, one on a closed port that cannot, then `more_models`;
/// `general` is added under general_settings.
fn good_and_bad(up: &str, more_models: &str, general: &str) -> String {
    format!(
        "model_list:
  - model_name: good
    litellm_params: {{model: openai/x, api_base: '{up}', api_key: k}}
  - model_name: bad
    litellm_params: {{model: openai/y, api_base: 'http://127.0.0.1:9/v1', api_key: k}}
{more_models}general_settings:
  master_key: {KEY}
{general}"
    )
}

#[tokio::test]
async fn background_health_checks_answer_health_from_the_latest_run() {
    let up = idlehands_testkit::FakeOpenAi::start().await;
    // An hour between runs: after the first one, only /health itself could reach the upstream.
    let cfg = good_and_bad(
        &up.base_url(),
        "",
        "  background_health_checks: true\n  health_check_interval: 3600\n",
    );
    let gw = start(&cfg).await;
    let health = |q: &'static str| {
        client()
            .get(gw.url(&format!("/health{q}")))
            .bearer_auth(KEY)
            .send()
    };
    // The first run starts with the gateway. Until it lands, /health checks for itself (the
    // good deployment costs one upstream request); once a /health costs none, it answered
    // from that run.
    let (up_ref, health_ref) = (&up, &health);
    eventually_async(
        "a /health answered from the first background run",
        || async move {
            let before = up_ref.requests().len();
            assert_eq!(health_ref("").await.unwrap().status(), 200);
            before > 0 && up_ref.requests().len() == before
        },
    )
    .await;
    let before = up.requests().len();
    // Many /health calls cost the upstream nothing: they read the latest run.
    for _ in 0..5 {
        let h: Value = health("").await.unwrap().json().await.unwrap();
        assert_eq!(h["healthy_count"], 1, "{h}");
        assert_eq!(h["unhealthy_count"], 1, "{h}");
        assert_eq!(h["unhealthy_endpoints"][0]["model"], "openai/y");
        assert!(h["unhealthy_endpoints"][0]["error"].as_str().is_some());
    }
    let h: Value = health("?model=good").await.unwrap().json().await.unwrap();
    assert_eq!(
        (h["healthy_count"].clone(), h["unhealthy_count"].clone()),
        (json!(1), json!(0))
    );
    assert_eq!(up.requests().len(), before, "/health called the upstream");
}

#[tokio::test]
async fn background_health_checks_run_again_on_the_interval() {
    let up = idlehands_testkit::FakeOpenAi::start().await;
    let cfg = good_and_bad(
        &up.base_url(),
        "",
        "  background_health_checks: true\n  health_check_interval: 0.2\n",
    );
    let _gw = start(&cfg).await;
    // Nothing but the background runs calls the upstream here: a third request is a third run.
    eventually("three background runs", || up.requests().len() >= 3).await;
}

#[tokio::test]
async fn health_probes() {
    let up = idlehands_testkit::FakeOpenAi::start().await;
    let cfg = good_and_bad(
        &up.base_url(),
        "  - model_name: mocky\n    litellm_params: {model: openai/z, mock_response: hi}\n",
        "",
    );
    let gw = start(&cfg).await;
    for path in ["/health/liveliness", "/health/liveness"] {
        let resp = client().get(gw.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.json::<Value>().await.unwrap(), json!("I'm alive!"));
    }
    let r: Value = client()
        .get(gw.url("/health/readiness"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "healthy");

    assert_eq!(
        client()
            .get(gw.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let h: Value = client()
        .get(gw.url("/health"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["healthy_count"], 2);
    assert_eq!(h["unhealthy_count"], 1);
    assert_eq!(h["unhealthy_endpoints"][0]["model"], "openai/y");
    assert!(h["unhealthy_endpoints"][0]["error"].as_str().is_some());
    assert!(!h.to_string().contains("api_key"));
    let h: Value = client()
        .get(gw.url("/health?model=mocky"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["healthy_count"], 1);
    assert_eq!(h["unhealthy_count"], 0);
    assert_eq!(up.last_request().unwrap().body["max_tokens"], 1);
}

#[tokio::test]
async fn unknown_route_is_a_json_404() {
    let gw = start(&two_models("http://127.0.0.1:9/v1")).await;
    let resp = client().get(gw.url("/nope")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let b: Value = resp.json().await.unwrap();
    assert_eq!(b["error"]["code"], "404");
    let resp = client()
        .get(gw.url("/v1/chat/completions"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    let b: Value = resp.json().await.unwrap();
    assert_eq!(b["error"]["code"], "405");
}

#[tokio::test]
async fn oversized_body_is_413_with_json_envelope() {
    let cfg = format!(
        "model_list:\n  - model_name: mocky\n    litellm_params: {{model: openai/m, mock_response: hi}}\ngeneral_settings: {{master_key: {KEY}, max_request_size_mb: 0.001}}\n"
    );
    let gw = start(&cfg).await;
    let mut body = chat_body("mocky", false);
    body["messages"][0]["content"] = json!("x".repeat(4096));
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    let s = resp.status().as_u16();
    let b: Value = resp.json().await.unwrap();
    assert_eq!(s, 413);
    assert_eq!(b["error"]["code"], "413");
}
