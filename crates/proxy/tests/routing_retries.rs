#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Retries, fallbacks and cooldowns (router_settings / litellm_settings) against fake upstreams
//! with scripted failures.

mod common;

use std::time::{Duration, Instant};

use common::{KEY, ManualClock, Running, chat_body, client, eventually, start, start_at};
use idlehands_proxy::CallStatus;
use idlehands_testkit::{FakeOpenAi, Fault, Reply};
use serde_json::{Value, json};

/// `(group, upstream base, extra params)` deployments, plus settings sections.
fn config(deployments: &[(&str, String, &str)], sections: &str) -> String {
    let mut y = String::from("model_list:\n");
    for (i, (group, base, extra)) in deployments.iter().enumerate() {
        y.push_str(&format!(
            "  - model_name: {group}\n    litellm_params: {{model: openai/m, api_base: '{base}', api_key: k, timeout: 30{extra}}}\n    model_info: {{id: {group}-{i}}}\n"
        ));
    }
    y.push_str(&format!(
        "general_settings: {{master_key: {KEY}}}\n{sections}"
    ));
    y
}

async fn post(gw: &Running, body: Value) -> reqwest::Response {
    client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).map(|v| v.to_str().unwrap())
}

const DEAD: &str = "http://127.0.0.1:9/v1";

#[tokio::test]
async fn server_errors_are_retried_and_the_headers_count_the_retries() {
    let up = FakeOpenAi::start().await;
    up.push(Reply::error(500, "boom"));
    up.push(Reply::error(503, "overloaded"));
    let gw = start(&config(&[("g", up.base_url(), "")], "")).await;
    let resp = post(&gw, chat_body("g", false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-litellm-attempted-retries"), Some("2"));
    assert_eq!(header(&resp, "x-litellm-max-retries"), Some("2"));
    assert_eq!(header(&resp, "x-litellm-attempted-fallbacks"), None);
    assert_eq!(up.served(), 3);
    let recs = gw.records(1).await;
    assert_eq!(recs.len(), 1, "one record per client request");
    assert_eq!(recs[0].status, CallStatus::Success);
}

#[tokio::test]
async fn num_retries_bounds_the_attempts_and_the_last_error_is_returned() {
    let up = FakeOpenAi::start().await;
    up.set_default(Reply::error(502, "bad gateway"));
    let gw = start(&config(
        &[("g", up.base_url(), "")],
        "litellm_settings: {num_retries: 1}\n",
    ))
    .await;
    let resp = post(&gw, chat_body("g", false)).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(header(&resp, "x-litellm-attempted-retries"), Some("1"));
    assert_eq!(up.served(), 2);
    // Per request: the body's num_retries wins over the config.
    let resp = post(
        &gw,
        json!({"model": "g", "messages": [{"role": "user", "content": "x"}], "num_retries": 0}),
    )
    .await;
    assert_eq!(resp.status(), 502);
    assert_eq!(up.served(), 3);
    let rec = gw.records(2).await;
    assert_eq!(rec.len(), 2, "{rec:?}");
    assert!(rec.iter().all(|r| r.status == CallStatus::Failure));
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    for (status, message) in [(400, "temperature must be <= 2"), (401, "invalid api key")] {
        let up = FakeOpenAi::start().await;
        up.push(Reply::error(status, message));
        let gw = start(&config(&[("g", up.base_url(), "")], "")).await;
        let resp = post(&gw, chat_body("g", false)).await;
        assert_eq!(resp.status().as_u16(), status);
        assert_eq!(header(&resp, "x-litellm-attempted-retries"), Some("0"));
        assert_eq!(up.served(), 1, "{status} must not be retried");
    }
}

#[tokio::test]
async fn rate_limits_are_retried_after_the_upstream_retry_after() {
    let up = FakeOpenAi::start().await;
    up.push(Reply::rate_limited(2));
    let gw = start(&config(&[("g", up.base_url(), "")], "")).await;
    let t = Instant::now();
    let resp = post(&gw, chat_body("g", false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-litellm-attempted-retries"), Some("1"));
    assert_eq!(up.served(), 2);
    // A lower bound only: the retry waited for the upstream's retry-after.
    assert!(
        t.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn a_hang_past_the_timeout_is_retried_on_another_deployment() {
    let hung = FakeOpenAi::start().await;
    let ok = FakeOpenAi::start().await;
    hung.set_default(Reply::fault(Fault::Hang));
    // `order` makes the hanging deployment first choice; allowed_fails 0 cools it at once.
    let gw = start(&config(
        &[
            ("g", hung.base_url(), ", timeout: 0.5, order: 1"),
            ("g", ok.base_url(), ", order: 2"),
        ],
        "router_settings: {allowed_fails: 0}\n",
    ))
    .await;
    let resp = post(&gw, chat_body("g", false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-litellm-model-id"), Some("g-1"));
    assert_eq!(header(&resp, "x-litellm-attempted-retries"), Some("1"));
    assert_eq!((hung.served(), ok.served()), (1, 1));
    // The timed-out upstream request was abandoned, not left open.
    eventually("the abandoned upstream request closed", || {
        hung.in_flight() == 0
    })
    .await;
}

#[tokio::test]
async fn a_hang_with_nowhere_else_to_go_is_a_408() {
    let hung = FakeOpenAi::start().await;
    hung.set_default(Reply::fault(Fault::Hang));
    let gw = start(&config(
        &[("g", hung.base_url(), ", timeout: 0.3")],
        "router_settings: {num_retries: 1}\n",
    ))
    .await;
    let resp = post(&gw, chat_body("g", false)).await;
    assert_eq!(resp.status(), 408);
    assert_eq!(header(&resp, "x-litellm-attempted-retries"), Some("1"));
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("litellm.Timeout")
    );
    assert_eq!(hung.served(), 2);
    eventually("the abandoned upstream request closed", || {
        hung.in_flight() == 0
    })
    .await;
}

#[tokio::test]
async fn connection_refused_is_retried_then_falls_back() {
    let up = FakeOpenAi::start().await;
    let gw = start(&config(
        &[("down", DEAD.to_string(), ""), ("up", up.base_url(), "")],
        "router_settings:\n  num_retries: 1\n  fallbacks: [{down: [up]}]\n",
    ))
    .await;
    let resp = post(&gw, chat_body("down", false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-litellm-model-group"), Some("up"));
    assert_eq!(header(&resp, "x-litellm-attempted-fallbacks"), Some("1"));
    // Retries are counted in the group that answered, as LiteLLM does.
    assert_eq!(header(&resp, "x-litellm-attempted-retries"), Some("0"));
    assert_eq!(up.served(), 1);
    let rec = gw.records(1).await.remove(0);
    assert_eq!(rec.status, CallStatus::Success);
    assert_eq!(rec.model_id, "up-1");
}

#[tokio::test]
async fn fallbacks_are_chosen_by_error_class() {
    let primary = FakeOpenAi::start().await;
    let general = FakeOpenAi::start().await;
    let bigger = FakeOpenAi::start().await;
    let lenient = FakeOpenAi::start().await;
    let settings = "router_settings:
  num_retries: 0
  fallbacks: [{p: [general]}]
  context_window_fallbacks: [{p: [bigger]}]
  content_policy_fallbacks: [{p: [lenient]}]
";
    let gw = start(&config(
        &[
            ("p", primary.base_url(), ""),
            ("general", general.base_url(), ""),
            ("bigger", bigger.base_url(), ""),
            ("lenient", lenient.base_url(), ""),
        ],
        settings,
    ))
    .await;
    primary.push(Reply::error(500, "boom"));
    primary.push(Reply::error(
        400,
        "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.",
    ));
    primary.push(Reply::error(
        400,
        "Your request was rejected as a result of our safety system. content_policy_violation",
    ));
    let mut groups = Vec::new();
    for _ in 0..3 {
        let resp = post(&gw, chat_body("p", false)).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "x-litellm-attempted-fallbacks"), Some("1"));
        groups.push(header(&resp, "x-litellm-model-group").unwrap().to_string());
    }
    assert_eq!(groups, ["general", "bigger", "lenient"]);
    assert_eq!(
        primary.served(),
        3,
        "context and policy errors are not retried"
    );
    assert_eq!(
        (general.served(), bigger.served(), lenient.served()),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn default_fallbacks_and_request_fallbacks() {
    let broken = FakeOpenAi::start().await;
    let spare = FakeOpenAi::start().await;
    let chosen = FakeOpenAi::start().await;
    broken.set_default(Reply::error(500, "down for maintenance"));
    let gw = start(&config(
        &[
            ("broken", broken.base_url(), ""),
            ("spare", spare.base_url(), ""),
            ("chosen", chosen.base_url(), ""),
        ],
        "router_settings: {num_retries: 0, default_fallbacks: [spare]}\n",
    ))
    .await;
    let resp = post(&gw, chat_body("broken", false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-litellm-model-group"), Some("spare"));

    let mut body = chat_body("broken", false);
    body["fallbacks"] = json!(["chosen"]);
    let resp = post(&gw, body).await;
    assert_eq!(header(&resp, "x-litellm-model-group"), Some("chosen"));
    // The gateway-only field was not forwarded.
    assert!(
        chosen
            .last_request()
            .unwrap()
            .body
            .get("fallbacks")
            .is_none()
    );

    let mut body = chat_body("broken", false);
    body["disable_fallbacks"] = json!(true);
    let resp = post(&gw, body).await;
    assert_eq!(resp.status(), 500);
    assert_eq!((spare.served(), chosen.served()), (1, 1));
}

#[tokio::test]
async fn when_fallbacks_fail_too_the_requested_groups_error_is_returned() {
    let a = FakeOpenAi::start().await;
    let b = FakeOpenAi::start().await;
    a.set_default(Reply::error(503, "primary overloaded"));
    b.set_default(Reply::error(500, "fallback broken"));
    let gw = start(&config(
        &[("a", a.base_url(), ""), ("b", b.base_url(), "")],
        "router_settings: {num_retries: 0, fallbacks: [{a: [b]}]}\n",
    ))
    .await;
    let resp = post(&gw, chat_body("a", false)).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(header(&resp, "x-litellm-attempted-fallbacks"), Some("1"));
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("primary overloaded"),
        "{body}"
    );
}

#[tokio::test]
async fn mock_testing_fallbacks_fails_the_requested_group() {
    let a = FakeOpenAi::start().await;
    let b = FakeOpenAi::start().await;
    let gw = start(&config(
        &[("a", a.base_url(), ""), ("b", b.base_url(), "")],
        "router_settings: {fallbacks: [{a: [b]}]}\n",
    ))
    .await;
    let mut body = chat_body("a", false);
    body["mock_testing_fallbacks"] = json!(true);
    let resp = post(&gw, body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-litellm-model-group"), Some("b"));
    assert_eq!((a.served(), b.served()), (0, 1));
}

#[tokio::test]
async fn failing_deployment_cools_down_after_allowed_fails_then_recovers() {
    let flaky = FakeOpenAi::start().await;
    let steady = FakeOpenAi::start().await;
    flaky.set_default(Reply::error(500, "flaky"));
    let clock = std::sync::Arc::new(ManualClock::new());
    let gw = start_at(
        &config(
            &[("g", flaky.base_url(), ""), ("g", steady.base_url(), "")],
            "router_settings: {allowed_fails: 1, cooldown_time: 5}\n",
        ),
        &clock,
    )
    .await;
    // Failures on the flaky one are retried on the steady one: clients see no error.
    let mut sent = 0;
    while flaky.served() < 2 {
        assert_eq!(post(&gw, chat_body("g", false)).await.status(), 200);
        sent += 1;
        assert!(sent < 200, "the flaky deployment was never picked");
    }
    // Two failures > allowed_fails (1): cooling down, so it gets nothing for the cooldown.
    assert!(gw.deployment("g-0").cooldown_remaining.is_some());
    for _ in 0..10 {
        assert_eq!(post(&gw, chat_body("g", false)).await.status(), 200);
    }
    assert_eq!(flaky.served(), 2);
    flaky.set_default(Reply::default());
    clock.advance(Duration::from_millis(4900));
    for _ in 0..10 {
        assert_eq!(post(&gw, chat_body("g", false)).await.status(), 200);
    }
    assert_eq!(flaky.served(), 2, "picked before its cooldown ended");
    // Past the cooldown: picked again.
    clock.advance(Duration::from_millis(100));
    assert_eq!(gw.deployment("g-0").cooldown_remaining, None);
    let mut sent = 0;
    while flaky.served() == 2 {
        assert_eq!(post(&gw, chat_body("g", false)).await.status(), 200);
        sent += 1;
        assert!(sent < 200, "the recovered deployment never came back");
    }
}

#[tokio::test]
async fn all_deployments_cooling_down_is_a_429_naming_the_group() {
    let a = FakeOpenAi::start().await;
    let b = FakeOpenAi::start().await;
    for up in [&a, &b] {
        up.set_default(Reply::error(500, "down"));
    }
    let gw = start(&config(
        &[("grp", a.base_url(), ""), ("grp", b.base_url(), "")],
        "router_settings: {allowed_fails: 0, cooldown_time: 30}\n",
    ))
    .await;
    // Both fail once and cool down; the upstream error is what this request gets.
    let resp = post(&gw, chat_body("grp", false)).await;
    assert_eq!(resp.status(), 500);
    assert_eq!((a.served(), b.served()), (1, 1));
    let resp = post(&gw, chat_body("grp", false)).await;
    assert_eq!(resp.status(), 429);
    let retry_after: u64 = header(&resp, "retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    let body: Value = resp.json().await.unwrap();
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with(&format!(
            "No deployments available for selected model, Try again in {retry_after} seconds. Passed model=grp."
        )),
        "{msg}"
    );
    assert!(msg.contains("'grp-0'") && msg.contains("'grp-1'"), "{msg}");
    assert_eq!((a.served(), b.served()), (1, 1));
    let rec = gw.records(2).await;
    assert_eq!(rec.len(), 2, "{rec:?}");
    assert_eq!(rec[1].http_status, 429);
    assert_eq!(rec[1].status, CallStatus::Failure);
}

#[tokio::test]
async fn embeddings_are_retried_too() {
    let up = FakeOpenAi::start().await;
    up.push(Reply::error(500, "boom"));
    let gw = start(&config(&[("e", up.base_url(), "")], "")).await;
    let resp = client()
        .post(gw.url("/v1/embeddings"))
        .bearer_auth(KEY)
        .json(&json!({"model": "e", "input": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-litellm-attempted-retries"), Some("1"));
    assert_eq!(up.served(), 2);
}
