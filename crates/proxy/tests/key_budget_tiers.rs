#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Keys that follow a named budget (`budget_id`, LiteLLM's rate-limit tiers) through HTTP: the
//! tier's limits apply where the key sets none, the key's own win, a change of the tier
//! reaches its keys at once, a key can stop following, and a tier its keys follow cannot be
//! deleted. SQLite and Postgres.

mod store_support;

use serde_json::{Value, json};
use store_support::{Backend, MASTER, Place, error_of, generate, get, post, spend_rows, start};

/// A bounded call costs about 1.7e-5 USD.
fn call() -> Value {
    json!({"model": "mocky", "max_tokens": 50, "messages": [{"role": "user", "content": "Say hi"}]})
}

async fn status_of(p: &store_support::Proxy, key: &str) -> u16 {
    post(p, "/v1/chat/completions", key, call())
        .await
        .status
        .as_u16()
}

async fn keys_take_their_tier_s_limits_where_they_set_none(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    for tier in [
        json!({"budget_id": "rpm2", "rpm_limit": 2}),
        json!({"budget_id": "tight", "max_budget": 0.00001}),
    ] {
        let made = post(&p, "/budget/new", MASTER, tier).await;
        assert_eq!(made.status, 200, "{}", made.body);
    }
    let (a, made) = generate(&p, json!({"budget_id": "rpm2"})).await;
    assert_eq!(made["budget_id"], "rpm2", "{made}");
    assert!(made.get("ignored_fields").is_none(), "{made}");
    let (own, _) = generate(&p, json!({"budget_id": "rpm2", "rpm_limit": 5})).await;
    let (c, _) = generate(&p, json!({"budget_id": "tight"})).await;

    // /key/info shows the key's own values and the tier it follows.
    let info = get(&p, &format!("/key/info?key={a}"), MASTER).await;
    assert_eq!(info.status, 200, "{}", info.body);
    assert_eq!(info.body["info"]["budget_id"], "rpm2");
    assert_eq!(info.body["info"]["rpm_limit"], Value::Null);
    assert_eq!(info.body["info"]["litellm_budget_table"]["rpm_limit"], 2);

    // The tier's rpm limit: two calls a minute.
    assert_eq!(status_of(&p, &a).await, 200);
    assert_eq!(status_of(&p, &a).await, 200);
    let limited = post(&p, "/v1/chat/completions", &a, call()).await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert!(
        error_of(&limited).1.contains("Limit type: requests"),
        "{}",
        limited.body
    );
    // The key's own limit wins over the tier's.
    for _ in 0..3 {
        assert_eq!(status_of(&p, &own).await, 200);
    }
    // A change of the tier reaches its keys at once.
    let raised = post(
        &p,
        "/budget/update",
        MASTER,
        json!({"budget_id": "rpm2", "rpm_limit": 4}),
    )
    .await;
    assert_eq!(raised.status, 200, "{}", raised.body);
    assert_eq!(status_of(&p, &a).await, 200);

    // The tier's budget bounds the key; without the tier it does not.
    assert_eq!(status_of(&p, &c).await, 200);
    let over = post(&p, "/v1/chat/completions", &c, call()).await;
    assert_eq!(over.status, 422, "{}", over.body);
    assert_eq!(error_of(&over).0, "budget_exceeded");
    assert!(
        error_of(&over).1.contains("Max budget: 1e-05"),
        "{}",
        over.body
    );
    let left = post(
        &p,
        "/key/update",
        MASTER,
        json!({"key": c, "budget_id": null}),
    )
    .await;
    assert_eq!(left.status, 200, "{}", left.body);
    assert_eq!(left.body["budget_id"], Value::Null, "{}", left.body);
    assert_eq!(status_of(&p, &c).await, 200);

    // A tier that does not exist, and one that keys follow, are refused.
    let unknown = post(&p, "/key/generate", MASTER, json!({"budget_id": "nope"})).await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert_eq!(
        error_of(&unknown).1,
        "Budget with id 'nope' does not exist."
    );
    let bad_update = post(
        &p,
        "/key/update",
        MASTER,
        json!({"key": a, "budget_id": "nope"}),
    )
    .await;
    assert_eq!(bad_update.status, 404, "{}", bad_update.body);
    let in_use = post(&p, "/budget/delete", MASTER, json!({"id": "rpm2"})).await;
    assert_eq!(in_use.status, 400, "{}", in_use.body);
    assert!(
        error_of(&in_use).1.contains("and 2 key(s)"),
        "{}",
        in_use.body
    );
    // One row per call, refused or answered.
    assert_eq!(spend_rows(&p, "", 10).await.len(), 10);
    p.stop().await;
    place.cleanup().await;
}

/// A key without a window of its own takes its budget's: it starts when the key begins to
/// follow, and the key's spend resets on it.
async fn a_key_resets_on_its_tier_s_window(b: Backend) {
    let place = Place::new(b);
    let clock = store_support::clock_at_minute_start();
    let p = store_support::start_at(&place, "", &clock).await;
    let made = post(
        &p,
        "/budget/new",
        MASTER,
        json!({"budget_id": "daily", "max_budget": 0.00001, "budget_duration": "1d"}),
    )
    .await;
    assert_eq!(made.status, 200, "{}", made.body);
    let (key, made) = generate(&p, json!({"budget_id": "daily"})).await;
    assert!(made["budget_reset_at"].is_string(), "{made}");
    assert_eq!(made["budget_duration"], Value::Null, "{made}");
    assert_eq!(status_of(&p, &key).await, 200);
    assert_eq!(status_of(&p, &key).await, 422);
    clock.advance(std::time::Duration::from_secs(86_400 + 1));
    assert_eq!(status_of(&p, &key).await, 200);
    // A key following from an update starts its window then.
    let (later, _) = generate(&p, json!({})).await;
    let followed = post(
        &p,
        "/key/update",
        MASTER,
        json!({"key": later, "budget_id": "daily"}),
    )
    .await;
    assert_eq!(followed.status, 200, "{}", followed.body);
    assert!(
        followed.body["budget_reset_at"].is_string(),
        "{}",
        followed.body
    );
    assert_eq!(status_of(&p, &later).await, 200);
    assert_eq!(status_of(&p, &later).await, 422);
    p.stop().await;
    place.cleanup().await;
}

both_backends!(
    keys_take_their_tier_s_limits_where_they_set_none,
    a_key_resets_on_its_tier_s_window,
);
