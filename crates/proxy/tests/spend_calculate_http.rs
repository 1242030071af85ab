#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `POST /spend/calculate`: a call's cost before it is made (the prompt of `messages`, its
//! tokens estimated and said to be) and after (a `completion_response` and its usage), priced
//! as the gateway prices calls: a configured group by its deployment, another name from the
//! price list.

mod store_support;

use serde_json::{Value, json};
use store_support::{Backend, MASTER, Place, client, close, error_of, generate, post, send, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn costs_are_priced_as_calls_are() {
    let place = Place::new(Backend::Sqlite);
    let p = start(&place, "").await;
    let (key, _) = generate(&p, json!({})).await;
    let calc = |body: Value| {
        let (p, key) = (&p, key.clone());
        async move { post(p, "/spend/calculate", &key, body).await }
    };

    // Before the call: the prompt at the group's own input price (1e-6 USD a token).
    let short =
        calc(json!({"model": "mocky", "messages": [{"role": "user", "content": "abcd"}]})).await;
    assert_eq!(short.status, 200, "{}", short.body);
    assert_eq!(short.body["usage_estimated"], true);
    let tokens = short.body["prompt_tokens"].as_u64().unwrap();
    assert!(tokens > 0);
    assert_eq!(short.body["completion_tokens"], 0);
    assert!(
        close(short.body["cost"].as_f64().unwrap(), tokens as f64 * 1e-6),
        "{}",
        short.body
    );
    // Eight characters more: two tokens more.
    let longer =
        calc(json!({"model": "mocky", "messages": [{"role": "user", "content": "abcdefghijkl"}]}))
            .await;
    assert_eq!(
        longer.body["prompt_tokens"].as_u64().unwrap(),
        tokens + 2,
        "{}",
        longer.body
    );

    // After the call: the answer's usage at the price list's rates (gpt-4o: 2.5 and 10 USD a
    // million tokens).
    let after = calc(json!({"completion_response": {
        "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500}}})).await;
    assert_eq!(after.status, 200, "{}", after.body);
    assert!(
        close(after.body["cost"].as_f64().unwrap(), 0.0075),
        "{}",
        after.body
    );
    assert_eq!(after.body.get("usage_estimated"), None);
    // A configured group's answer: its own prices (2e-6 a completion token).
    let own = calc(json!({"completion_response": {"model": "mocky",
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}}))
    .await;
    assert!(
        close(own.body["cost"].as_f64().unwrap(), 10.0 * 1e-6 + 5.0 * 2e-6),
        "{}",
        own.body
    );

    // Refusals, in LiteLLM's words where it has them.
    let unknown = calc(json!({"completion_response": {"model": "no-such-model",
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}}))
    .await;
    assert_eq!(unknown.status, 400, "{}", unknown.body);
    assert!(
        error_of(&unknown)
            .1
            .contains("isn't mapped yet. model=no-such-model")
    );
    let no_messages = calc(json!({"model": "mocky"})).await;
    assert_eq!(no_messages.status, 400);
    assert!(
        error_of(&no_messages)
            .1
            .contains("messages must be provided")
    );
    let nothing = calc(json!({})).await;
    assert_eq!(nothing.status, 400);
    assert!(
        error_of(&nothing)
            .1
            .contains("Either 'model' or 'completion_response'")
    );
    let anonymous = send(
        client()
            .post(p.url("/spend/calculate"))
            .json(&json!({"model": "mocky", "messages": []})),
    )
    .await;
    assert_eq!(anonymous.status, 401);
    let admin = post(
        &p,
        "/spend/calculate",
        MASTER,
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "abcd"}]}),
    )
    .await;
    assert_eq!(admin.status, 200, "{}", admin.body);
    p.stop().await;
    place.cleanup().await;
}
