#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The pass-through routes under virtual keys on a real store (SQLite): spend lands on the
//! key and in the spend log as `pass_through_endpoint`, a spent budget refuses the next call
//! before the provider sees it, and a key limited to other models is refused.

mod store_support;

use idlehands_testkit::FakeAnthropic;
use serde_json::{Value, json};
use store_support::{Backend, MASTER, Place, client, generate, get, send, spend_rows, start};

fn request() -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "Say hi"}]
    })
}

async fn call(p: &store_support::Proxy, key: &str) -> store_support::Answer {
    send(
        client()
            .post(p.url("/anthropic/v1/messages"))
            .header("x-api-key", key)
            .header("anthropic-version", "2023-06-01")
            .json(&request()),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn budgets_model_limits_and_spend_apply_to_pass_through_calls() {
    let ant = FakeAnthropic::start().await;
    let place = Place::new(Backend::Sqlite);
    let p = start(
        &place,
        &format!(
            "environment_variables:\n  ANTHROPIC_API_BASE: {}\n  ANTHROPIC_API_KEY: sk-ant-upstream\n",
            ant.base_url()
        ),
    )
    .await;
    // One call (10 in, 5 out at Sonnet's price: $0.000105) spends more than this budget.
    let (key, generated) = generate(&p, json!({"max_budget": 0.0001})).await;
    let token = generated["token_id"].as_str().unwrap().to_string();

    let a = call(&p, &key).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["type"], "message");
    let rows = spend_rows(&p, &format!("?api_key={token}"), 1).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["call_type"], "pass_through_endpoint");
    assert_eq!(rows[0]["spend"].as_f64().unwrap(), 0.000105);
    assert_eq!(rows[0]["prompt_tokens"], 10);
    let info = get(&p, &format!("/key/info?key={key}"), MASTER).await;
    assert_eq!(
        info.body["info"]["spend"].as_f64().unwrap(),
        0.000105,
        "{}",
        info.body
    );

    let a = call(&p, &key).await;
    assert!(
        (400..500).contains(&a.status.as_u16()) && a.status != 401,
        "{} {}",
        a.status,
        a.body
    );
    let msg = a.body["error"]["message"].as_str().unwrap().to_lowercase();
    assert!(msg.contains("budget"), "{msg}");
    assert_eq!(
        ant.served(),
        1,
        "the refused call never reached the provider"
    );

    let (limited, _) = generate(&p, json!({"models": ["mocky"]})).await;
    let a = call(&p, &limited).await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert_eq!(ant.served(), 1);
    p.stop().await;
    place.cleanup().await;
}
