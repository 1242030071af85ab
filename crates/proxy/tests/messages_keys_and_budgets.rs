#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `/v1/messages` under virtual keys on a real store (SQLite): the key is read from
//! `x-api-key`, spend lands on the key and in the spend log as `anthropic_messages`, and a
//! spent budget refuses the next call in Anthropic's error envelope.

mod store_support;

use serde_json::{Value, json};
use store_support::{Backend, MASTER, Place, client, generate, get, spend_rows, start};

fn request() -> Value {
    json!({
        "model": "mocky",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "Say hi"}]
    })
}

async fn call(p: &store_support::Proxy, key: &str) -> (u16, Value) {
    let resp = client()
        .post(p.url("/v1/messages"))
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .json(&request())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn virtual_keys_budgets_and_spend_apply_to_messages() {
    let place = Place::new(Backend::Sqlite);
    let p = start(&place, "").await;
    // One mock call costs well over this budget, so the second call is refused.
    let (key, generated) = generate(&p, json!({"max_budget": 0.000001})).await;
    let token = generated["token_id"].as_str().unwrap().to_string();

    let (status, body) = call(&p, &key).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["type"], "message");
    assert_eq!(body["content"][0]["text"], "Hello from the mock deployment");

    let rows = spend_rows(&p, &format!("?api_key={token}"), 1).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["call_type"], "anthropic_messages");
    assert!(rows[0]["spend"].as_f64().unwrap() > 0.0);

    let info = get(&p, &format!("/key/info?key={key}"), MASTER).await;
    assert!(
        info.body["info"]["spend"].as_f64().unwrap() > 0.0,
        "{}",
        info.body
    );

    let (status, body) = call(&p, &key).await;
    // The refusal status is configurable; the envelope is what matters here.
    assert!(
        (400..500).contains(&status) && status != 401,
        "{status} {body}"
    );
    assert_eq!(body["type"], "error");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.to_lowercase().contains("budget"), "{msg}");

    let (status, body) = call(&p, "sk-not-a-key").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["type"], "authentication_error");
    p.stop().await;
    place.cleanup().await;
}
