#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! End users through HTTP: `/customer/*` with LiteLLM's bodies and statuses, budgets for the
//! request's `user` (their own, or `litellm_settings.max_end_user_budget`), blocked end users,
//! spend rows and `/spend/logs` by end user. SQLite and Postgres.

mod store_support;

use serde_json::{Value, json};
use store_support::{Backend, MASTER, Place, error_of, generate, get, post, spend_rows, start};

fn chat_as(user: &str) -> Value {
    json!({"model": "mocky", "max_tokens": 50, "user": user,
           "messages": [{"role": "user", "content": "Say hi"}]})
}

async fn end_user_budgets_and_blocks(b: Backend) {
    let place = Place::new(b);
    // Every end user without a budget of their own gets 1e-5 USD: one call.
    let p = start(
        &place,
        "litellm_settings:\n  max_end_user_budget: 0.00001\n",
    )
    .await;
    let (key, _) = generate(&p, json!({})).await;
    let call = |user: &'static str| {
        let (p, key) = (&p, key.clone());
        async move { post(p, "/v1/chat/completions", &key, chat_as(user)).await }
    };
    let first = call("e1").await;
    assert_eq!(first.status, 200, "{}", first.body);
    let cost: f64 = store_support::cost_of(&first);
    let over = call("e1").await;
    assert_eq!(over.status, 422, "{}", over.body);
    let (kind, msg) = error_of(&over);
    assert_eq!(kind, "budget_exceeded");
    assert!(
        msg.starts_with("ExceededBudget: End User=e1 over budget. Spend="),
        "{msg}"
    );
    assert!(msg.contains("Budget=1e-05"), "{msg}");
    // Another end user, and calls without one, are not affected.
    assert_eq!(call("e9").await.status, 200);
    let plain = json!({"model": "mocky", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(
        post(&p, "/v1/chat/completions", &key, plain).await.status,
        200
    );

    // Not created yet: 404; created, their spend so far is kept and their own budget applies.
    let missing = get(&p, "/customer/info?end_user_id=e1", MASTER).await;
    assert_eq!(missing.status, 404);
    assert!(
        error_of(&missing)
            .1
            .contains("End User Id=e1 does not exist in db")
    );
    let made = post(
        &p,
        "/customer/new",
        MASTER,
        json!({"user_id": "e1", "alias": "Acme", "max_budget": 1, "default_model": "mocky"}),
    )
    .await;
    assert_eq!(made.status, 200, "{}", made.body);
    assert!(made.body["ignored_fields"]["default_model"].is_string());
    assert!(
        (made.body["spend"].as_f64().unwrap() - cost).abs() < 1e-12,
        "{}",
        made.body
    );
    assert_eq!(made.body["litellm_budget_table"]["max_budget"], 1.0);
    assert_eq!(call("e1").await.status, 200);
    let info = get(&p, "/customer/info?end_user_id=e1", MASTER).await;
    assert!(
        (info.body["spend"].as_f64().unwrap() - 2.0 * cost).abs() < 1e-12,
        "{}",
        info.body
    );
    assert_eq!(info.body["alias"], "Acme");

    // Bad input.
    let dup = post(&p, "/customer/new", MASTER, json!({"user_id": "e1"})).await;
    assert_eq!(dup.status, 400);
    assert!(
        error_of(&dup)
            .1
            .starts_with("Customer already exists, passed user_id=e1")
    );
    let bad = post(
        &p,
        "/customer/new",
        MASTER,
        json!({"user_id": "e3", "max_budget": "lots"}),
    )
    .await;
    assert_eq!(bad.status, 400);
    assert_eq!(
        post(
            &p,
            "/customer/update",
            MASTER,
            json!({"user_id": "nope", "alias": "x"})
        )
        .await
        .status,
        404
    );
    assert_eq!(
        post(&p, "/customer/new", &key, json!({"user_id": "e4"}))
            .await
            .status,
        403
    );

    // Blocked end users are refused until unblocked; all named or none.
    post(
        &p,
        "/customer/new",
        MASTER,
        json!({"user_id": "e2", "max_budget": 1}),
    )
    .await;
    assert_eq!(
        post(
            &p,
            "/customer/block",
            MASTER,
            json!({"user_ids": ["e2", "nope"]})
        )
        .await
        .status,
        404
    );
    let e2 = call("e2").await;
    assert_eq!(e2.status, 200, "{}", e2.body);
    assert_eq!(
        post(&p, "/customer/block", MASTER, json!({"user_ids": ["e2"]}))
            .await
            .status,
        200
    );
    let blocked = call("e2").await;
    assert_eq!(blocked.status, 403, "{}", blocked.body);
    assert!(error_of(&blocked).1.contains("End user=e2 is blocked"));
    post(&p, "/end_user/unblock", MASTER, json!({"user_ids": ["e2"]})).await;
    assert_eq!(call("e2").await.status, 200);

    // Spend rows carry the end user; `/spend/logs` filters by it.
    let rows = spend_rows(&p, "?end_user=e1", 3).await;
    assert_eq!(rows.len(), 3, "two answered, one refused");
    assert!(rows.iter().all(|r| r["end_user"] == "e1"));

    let list = get(&p, "/customer/list", MASTER).await;
    assert_eq!(list.body.as_array().unwrap().len(), 2);
    assert_eq!(
        post(
            &p,
            "/customer/delete",
            MASTER,
            json!({"user_ids": ["e2", "nope"]})
        )
        .await
        .status,
        404
    );
    assert_eq!(
        post(&p, "/customer/delete", MASTER, json!({"user_ids": ["e2"]}))
            .await
            .status,
        200
    );
    assert_eq!(
        get(&p, "/customer/info?end_user_id=e2", MASTER)
            .await
            .status,
        404
    );
    p.stop().await;
    place.cleanup().await;
}

/// Without `max_end_user_budget` and before any end user exists, a request's `user` costs no
/// lookup; the first end user created is enforced at once, also after a restart.
async fn end_users_created_later_are_enforced(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    let (key, _) = generate(&p, json!({})).await;
    assert_eq!(
        post(&p, "/v1/chat/completions", &key, chat_as("late"))
            .await
            .status,
        200
    );
    let made = post(
        &p,
        "/customer/new",
        MASTER,
        json!({"user_id": "late", "blocked": true}),
    )
    .await;
    assert_eq!(made.status, 200, "{}", made.body);
    assert_eq!(
        post(&p, "/v1/chat/completions", &key, chat_as("late"))
            .await
            .status,
        403
    );
    p.stop().await;
    let p = start(&place, "").await;
    assert_eq!(
        post(&p, "/v1/chat/completions", &key, chat_as("late"))
            .await
            .status,
        403
    );
    assert_eq!(
        post(&p, "/v1/chat/completions", &key, chat_as("other"))
            .await
            .status,
        200
    );
    p.stop().await;
    place.cleanup().await;
}

/// The master key's calls are bounded by the end user too (LiteLLM checks the end user before
/// it looks at the key): a blocked end user is refused, a spent budget refuses the next call,
/// and the call's spend counts for the end user exactly once.
async fn master_key_calls_are_bounded_by_the_end_user(b: Backend) {
    let place = Place::new(b);
    let p = start(
        &place,
        "litellm_settings:\n  max_end_user_budget: 0.00001\n",
    )
    .await;
    let first = post(&p, "/v1/chat/completions", MASTER, chat_as("m1")).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert!(
        first.headers.get("x-litellm-key-spend").is_none(),
        "no key to report on: {:?}",
        first.headers
    );
    let over = post(&p, "/v1/chat/completions", MASTER, chat_as("m1")).await;
    assert_eq!(over.status, 422, "{}", over.body);
    let (kind, msg) = error_of(&over);
    assert_eq!(kind, "budget_exceeded");
    assert!(
        msg.starts_with("ExceededBudget: End User=m1 over budget. Spend="),
        "{msg}"
    );
    // Without a `user`, the master key is not bounded.
    let plain = json!({"model": "mocky", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(
        post(&p, "/v1/chat/completions", MASTER, plain).await.status,
        200
    );
    let blocked = post(
        &p,
        "/customer/new",
        MASTER,
        json!({"user_id": "m2", "blocked": true}),
    )
    .await;
    assert_eq!(blocked.status, 200, "{}", blocked.body);
    let refused = post(&p, "/v1/chat/completions", MASTER, chat_as("m2")).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    // Two calls of m1 (one answered, one refused), each one row; the end user's spend is the
    // answered call's cost.
    let rows = spend_rows(&p, "?end_user=m1", 2).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    let spent: f64 = rows.iter().map(|r| r["spend"].as_f64().unwrap()).sum();
    let cost: f64 = store_support::cost_of(&first);
    assert!((spent - cost).abs() < 1e-12, "{spent} vs {cost}");
    let made = post(&p, "/customer/new", MASTER, json!({"user_id": "m1"})).await;
    assert_eq!(made.status, 200, "{}", made.body);
    let info = get(&p, "/customer/info?end_user_id=m1", MASTER).await;
    assert_eq!(info.status, 200, "{}", info.body);
    assert!(
        (info.body["spend"].as_f64().unwrap() - cost).abs() < 1e-12,
        "{}",
        info.body
    );
    p.stop().await;
    place.cleanup().await;
}

/// The end user a header names (LiteLLM's standard `x-litellm-customer-id`, or the header
/// `user_header_mappings` maps to the customer role) wins over the body's `user`: its block
/// holds and its spend rows carry it.
async fn end_users_named_by_headers_are_enforced_and_recorded(b: Backend) {
    let place = Place::new(b);
    let p = start(
        &place,
        "  user_header_mappings:
    - {header_name: X-OpenWebUI-User-Email, litellm_user_role: customer}
    - {header_name: X-OpenWebUI-User-Id, litellm_user_role: internal_user}
",
    )
    .await;
    let (key, _) = generate(&p, json!({})).await;
    let made = post(
        &p,
        "/customer/new",
        MASTER,
        json!({"user_id": "blocked@example.com", "blocked": true}),
    )
    .await;
    assert_eq!(made.status, 200, "{}", made.body);
    let call = |header: &'static str, value: &'static str| {
        let (p, key) = (&p, key.clone());
        async move {
            store_support::send(
                store_support::client()
                    .post(p.url("/v1/chat/completions"))
                    .bearer_auth(&key)
                    .header(header, value)
                    .json(&chat_as("someone-else")),
            )
            .await
        }
    };
    let refused = call("x-openwebui-user-email", "blocked@example.com").await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        error_of(&refused)
            .1
            .contains("End user=blocked@example.com is blocked"),
        "{}",
        refused.body
    );
    let ok = call("x-litellm-customer-id", "c-42").await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let rows = spend_rows(&p, "?end_user=c-42", 1).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["end_user"], "c-42");
    // The internal-user mapping names the call's user, not its end user: the body's user
    // stands (see tests/user_header_mapping.rs).
    let ok = call("x-openwebui-user-id", "u-7").await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let rows = spend_rows(&p, "?end_user=someone-else", 1).await;
    assert_eq!(rows[0]["end_user"], "someone-else");
    assert_eq!(rows[0]["user"], "u-7");
    p.stop().await;
    place.cleanup().await;
}

/// `disable_end_user_cost_tracking` (LiteLLM's): blocks and rate limits still hold, but an end
/// user's spend is not added up: not to their budget, not to their stored spend, and their
/// name is left off the spend rows.
async fn end_user_spend_is_not_added_up_when_tracking_is_off(b: Backend) {
    let place = Place::new(b);
    let p = start(
        &place,
        "litellm_settings:\n  max_end_user_budget: 0.00001\n  disable_end_user_cost_tracking: true\n",
    )
    .await;
    let (key, _) = generate(&p, json!({})).await;
    let call = |user: &'static str| {
        let (p, key) = (&p, key.clone());
        async move { post(p, "/v1/chat/completions", &key, chat_as(user)).await }
    };
    // One call's worth of budget, three calls: none of them is counted against it.
    for _ in 0..3 {
        let r = call("e1").await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    for (user, body) in [
        ("b1", json!({"user_id": "b1", "blocked": true})),
        ("r1", json!({"user_id": "r1", "rpm_limit": 1})),
    ] {
        let made = post(&p, "/customer/new", MASTER, body).await;
        assert_eq!(made.status, 200, "{user}: {}", made.body);
    }
    let blocked = call("b1").await;
    assert_eq!(blocked.status, 403, "{}", blocked.body);
    assert_eq!(call("r1").await.status, 200);
    let limited = call("r1").await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    // Six calls, six rows, none naming its end user; nothing added to anyone's spend.
    let rows = spend_rows(&p, "", 6).await;
    assert_eq!(rows.len(), 6, "{rows:?}");
    assert!(
        rows.iter()
            .all(|r| r["end_user"].is_null() || r["end_user"] == ""),
        "{rows:?}"
    );
    for user in ["e1", "r1"] {
        if user == "e1" {
            let made = post(&p, "/customer/new", MASTER, json!({"user_id": "e1"})).await;
            assert_eq!(made.status, 200, "{}", made.body);
        }
        let info = get(&p, &format!("/customer/info?end_user_id={user}"), MASTER).await;
        assert_eq!(info.status, 200, "{}", info.body);
        assert_eq!(info.body["spend"].as_f64(), Some(0.0), "{}", info.body);
    }
    p.stop().await;
    place.cleanup().await;
}

both_backends!(
    end_user_budgets_and_blocks,
    end_user_spend_is_not_added_up_when_tracking_is_off,
    end_users_created_later_are_enforced,
    master_key_calls_are_bounded_by_the_end_user,
    end_users_named_by_headers_are_enforced_and_recorded
);
