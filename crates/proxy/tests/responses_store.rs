#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Stored `/v1/responses` answers in the key and spend database: they survive a restart,
//! continue a conversation by `previous_response_id`, and only the key that created one reads
//! or deletes it. SQLite and Postgres.

mod store_support;

use reqwest::Method;
use serde_json::{Value, json};
use store_support::{Backend, Place, client, generate, get, post, start};

async fn delete(p: &store_support::Proxy, path: &str, key: &str) -> u16 {
    client()
        .request(Method::DELETE, p.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn stored_responses_are_kept_per_key_across_restarts(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    let (alice, _) = generate(&p, json!({"key_alias": "alice"})).await;
    let (bob, _) = generate(&p, json!({"key_alias": "bob"})).await;
    let first = post(
        &p,
        "/v1/responses",
        &alice,
        json!({"model": "mocky", "input": "hi"}),
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["store"], true);
    assert_eq!(
        first.body["output"][0]["content"][0]["text"],
        "Hello from the mock deployment"
    );
    let id = first.body["id"].as_str().unwrap().to_string();
    let path = format!("/v1/responses/{id}");
    let read = get(&p, &path, &alice).await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.body, first.body);
    // Another key sees nothing and deletes nothing.
    assert_eq!(get(&p, &path, &bob).await.status, 404);
    assert_eq!(delete(&p, &path, &bob).await, 404);
    p.stop().await;

    // After a restart, on the same database.
    let p = start(&place, "").await;
    assert_eq!(get(&p, &path, &alice).await.body, first.body);
    let next = post(
        &p,
        "/v1/responses",
        &alice,
        json!({"model": "mocky", "input": "and then?", "previous_response_id": id}),
    )
    .await;
    assert_eq!(next.status, 200, "{}", next.body);
    let next_id = next.body["id"].as_str().unwrap();
    let items = get(&p, &format!("/v1/responses/{next_id}/input_items"), &alice).await;
    assert_eq!(items.status, 200);
    let data: Vec<Value> = items.body["data"].as_array().unwrap().clone();
    // Newest first: this turn's question, the first answer, the first question.
    assert_eq!(data.len(), 3, "{}", items.body);
    assert_eq!(data[0]["content"][0]["text"], "and then?");
    assert_eq!(data[1]["role"], "assistant");
    assert_eq!(data[2]["content"][0]["text"], "hi");
    // Bob cannot continue Alice's conversation.
    let theirs = post(
        &p,
        "/v1/responses",
        &bob,
        json!({"model": "mocky", "input": "x", "previous_response_id": id}),
    )
    .await;
    assert_eq!(theirs.status, 404, "{}", theirs.body);

    // LiteLLM's other prefixes read the same store; a completed response cannot be
    // cancelled (there is no background mode), an unknown one is a 404.
    for prefix in ["/responses", "/openai/v1/responses"] {
        let read = get(&p, &format!("{prefix}/{id}"), &alice).await;
        assert_eq!(read.status, 200, "{prefix}: {}", read.body);
        assert_eq!(read.body, first.body);
        let items = get(&p, &format!("{prefix}/{next_id}/input_items"), &alice).await;
        assert_eq!(items.body["data"].as_array().unwrap().len(), 3, "{prefix}");
    }
    for prefix in ["/v1/responses", "/responses", "/openai/v1/responses"] {
        let cancel = post(&p, &format!("{prefix}/{id}/cancel"), &alice, json!({})).await;
        assert_eq!(cancel.status, 400, "{prefix}: {}", cancel.body);
        assert!(
            cancel.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("background=true"),
            "{}",
            cancel.body
        );
        let theirs = post(&p, &format!("{prefix}/{id}/cancel"), &bob, json!({})).await;
        assert_eq!(theirs.status, 404, "{prefix}: {}", theirs.body);
    }
    let made = post(
        &p,
        "/openai/v1/responses",
        &alice,
        json!({"model": "mocky", "input": "via the openai prefix"}),
    )
    .await;
    assert_eq!(made.status, 200, "{}", made.body);
    assert_eq!(made.body["object"], "response");

    assert_eq!(delete(&p, &path, &alice).await, 200);
    assert_eq!(get(&p, &path, &alice).await.status, 404);
    p.stop().await;
    place.cleanup().await;
}

both_backends!(stored_responses_are_kept_per_key_across_restarts);
