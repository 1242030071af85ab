#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Budgets and rate limits through HTTP: concurrent requests on a small budget, budget windows,
//! the configurable budget status, rpm limits with retry-after. SQLite and Postgres.

mod store_support;

use std::time::Duration;

use serde_json::{Value, json};
use store_support::{
    Backend, MASTER, Place, chat, client, clock_at_minute_start, error_of, generate, get, post,
    send, spend_rows, start, start_at,
};

fn bounded_chat() -> Value {
    // max_tokens above what the mock answers, so each reservation covers its call.
    json!({"model": "mocky", "max_tokens": 50, "messages": [{"role": "user", "content": "Say hi"}]})
}

async fn key_spend(p: &store_support::Proxy, key: &str) -> f64 {
    let a = get(p, &format!("/key/info?key={key}"), MASTER).await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["info"]["spend"].as_f64().unwrap()
}

async fn concurrent_requests_overspend_at_most_one_call(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    // One call costs 1.7e-5 USD (7 prompt, 5 completion tokens): this budget is ~58 calls.
    let budget = 0.001;
    let (key, generated) = generate(&p, json!({"max_budget": budget})).await;
    let token = generated["token_id"].as_str().unwrap().to_string();
    let http = client();
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let req = http
            .post(p.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&bounded_chat());
        tasks.push(tokio::spawn(send(req)));
    }
    let mut answered = 0usize;
    let mut refused = 0usize;
    let mut one_call = 0.0f64;
    for t in tasks {
        let a = t.await.unwrap();
        match a.status.as_u16() {
            200 => {
                answered += 1;
                one_call = store_support::cost_of(&a);
            }
            422 => {
                refused += 1;
                let (kind, msg) = error_of(&a);
                assert_eq!(kind, "budget_exceeded");
                assert!(msg.starts_with("Budget has been exceeded!"), "{msg}");
            }
            s => panic!("unexpected status {s}: {}", a.body),
        }
    }
    assert_eq!(answered + refused, 200);
    assert!(answered > 0 && refused > 0, "{answered} answered");
    let rows = spend_rows(&p, &format!("?api_key={token}"), 200).await;
    assert_eq!(rows.len(), 200, "one spend-log row per request");
    let ok = rows.iter().filter(|r| r["status"] == "success").count();
    assert_eq!(ok, answered, "a success row per answered request");
    let spend = key_spend(&p, &key).await;
    assert!(
        spend <= budget + one_call + 1e-12,
        "spend {spend} exceeds budget {budget} by more than one call ({one_call})"
    );
    assert!((spend - one_call * answered as f64).abs() < 1e-9);
    p.stop().await;
    place.cleanup().await;
}

async fn budget_window_resets(b: Backend) {
    let place = Place::new(b);
    // Keys made on the minute: the 2 s windows start then.
    let clock = clock_at_minute_start();
    let p = start_at(&place, "", &clock).await;
    // Less than one call: the first passes (spend 0 < budget), the next is refused.
    let (key, _) = generate(&p, json!({"max_budget": 0.00001, "budget_duration": "2s"})).await;
    let first = post(&p, "/v1/chat/completions", &key, bounded_chat()).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let refused = post(&p, "/v1/chat/completions", &key, bounded_chat()).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(error_of(&refused).0, "budget_exceeded");
    // Within the window the budget stays spent...
    clock.advance(Duration::from_millis(1900));
    let still = post(&p, "/v1/chat/completions", &key, bounded_chat()).await;
    assert_eq!(still.status, 422, "{}", still.body);
    // ...and a new window admits calls again.
    clock.advance(Duration::from_millis(100));
    let reopened = post(&p, "/v1/chat/completions", &key, bounded_chat()).await;
    assert_eq!(reopened.status, 200, "a new 2s window: {}", reopened.body);
    p.stop().await;
    place.cleanup().await;
}

async fn budget_status_is_configurable(b: Backend) {
    let place = Place::new(b);
    let p = start(
        &place,
        "litellm_settings:\n  budget_exceeded_status_code: 400\n",
    )
    .await;
    let (key, _) = generate(&p, json!({"max_budget": 0.0})).await;
    let a = post(&p, "/v1/chat/completions", &key, chat("mocky")).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(error_of(&a).0, "budget_exceeded");
    p.stop().await;
    place.cleanup().await;
}

async fn rpm_limit_answers_429_with_retry_after(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    let (key, _) = generate(&p, json!({"rpm_limit": 2, "max_budget": 10.0})).await;
    let a = post(&p, "/v1/chat/completions", &key, chat("mocky")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.headers["x-litellm-key-rpm-limit"], "2");
    assert_eq!(a.headers["x-ratelimit-api_key-limit-requests"], "2");
    assert_eq!(a.headers["x-ratelimit-api_key-remaining-requests"], "1");
    assert_eq!(a.headers["x-litellm-key-max-budget"], "10.0");
    let spend_header: f64 = a.headers["x-litellm-key-spend"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let cost: f64 = store_support::cost_of(&a);
    // A new key's spend after its first call is that call's cost, counted once.
    assert!(cost > 0.0);
    assert!(
        (spend_header - cost).abs() < 1e-12,
        "key spend {spend_header} vs call cost {cost}"
    );
    assert_eq!(
        post(&p, "/v1/chat/completions", &key, chat("mocky"))
            .await
            .status,
        200
    );
    let a = post(&p, "/v1/chat/completions", &key, chat("mocky")).await;
    assert_eq!(a.status, 429, "{}", a.body);
    assert_eq!(error_of(&a).0, "rate_limit_error");
    let retry: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Refusals are logged as failures.
    let rows = spend_rows(&p, "", 3).await;
    assert_eq!(rows.iter().filter(|r| r["status"] == "failure").count(), 1);
    p.stop().await;
    place.cleanup().await;
}

both_backends!(
    concurrent_requests_overspend_at_most_one_call,
    budget_window_resets,
    budget_status_is_configurable,
    rpm_limit_answers_429_with_retry_after,
);
