#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! LiteLLM's remaining key routes: `/key/service-account/generate` (a team's key with no
//! user), `/key/bulk_update` (each key updated on its own, failures listed) and `/key/health`,
//! with who may use them and LiteLLM's refusals. SQLite and Postgres.

mod store_support;

use serde_json::{Value, json};
use store_support::{
    Backend, MASTER, Place, chat, error_of, generate, get, internal_user, post, spend_rows, start,
};

async fn service_accounts_bulk_updates_and_health(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    internal_user(&p, "u1").await;
    internal_user(&p, "u2").await;
    let a = post(
        &p,
        "/team/new",
        MASTER,
        json!({"team_id": "alpha", "members_with_roles": [
            {"role": "admin", "user_id": "u1"}, {"role": "user", "user_id": "u2"}]}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = post(&p, "/team/new", MASTER, json!({"team_id": "beta"})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let (u1_key, _) = generate(&p, json!({"user_id": "u1"})).await;
    let (u2_key, _) = generate(&p, json!({"user_id": "u2"})).await;
    let (plain, _) = generate(&p, json!({})).await;

    // Service accounts: a team is required and must exist.
    let route = "/key/service-account/generate";
    let a = post(&p, route, MASTER, json!({"key_alias": "svc"})).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(
        error_of(&a)
            .1
            .contains("team_id is required for service account keys")
    );
    let a = post(&p, route, MASTER, json!({"team_id": "nope"})).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(
        error_of(&a)
            .1
            .contains("team_id does not exist in the database")
    );
    let a = post(
        &p,
        route,
        MASTER,
        json!({"team_id": "alpha", "user_id": "u2", "key_alias": "svc-1"}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["user_id"], Value::Null, "{}", a.body);
    assert_eq!(a.body["team_id"], "alpha");
    assert_eq!(a.body["metadata"]["service_account_id"], "svc-1");
    assert!(
        a.body["ignored_fields"]["user_id"].is_string(),
        "{}",
        a.body
    );
    let svc = a.body["key"].as_str().unwrap().to_owned();
    let called = post(&p, "/v1/chat/completions", &svc, chat("mocky")).await;
    assert_eq!(called.status, 200, "{}", called.body);
    let id = called.headers["x-litellm-call-id"].to_str().unwrap();
    let rows = spend_rows(&p, &format!("?request_id={id}"), 1).await;
    assert_eq!(rows[0]["team_id"], "alpha");
    assert_eq!(rows[0]["user"], Value::Null);
    // Without an alias the account is a new UUID; a given one is kept.
    let a = post(&p, route, MASTER, json!({"team_id": "alpha"})).await;
    let made = a.body["metadata"]["service_account_id"].as_str().unwrap();
    assert_eq!(made.len(), 36, "{}", a.body);
    assert_eq!(made.matches('-').count(), 4, "{}", a.body);
    let a = post(
        &p,
        route,
        MASTER,
        json!({"team_id": "alpha", "key_alias": "x", "metadata": {"service_account_id": "ci-bot"}}),
    )
    .await;
    assert_eq!(a.body["metadata"]["service_account_id"], "ci-bot");
    // The team's admin may make one; a member or a key without a user may not.
    let a = post(&p, route, &u1_key, json!({"team_id": "alpha"})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["user_id"], Value::Null);
    let a = post(&p, route, &u2_key, json!({"team_id": "alpha"})).await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(error_of(&a).1.contains("not an admin of team_id=alpha"));
    assert_eq!(
        post(&p, route, &plain, json!({"team_id": "alpha"}))
            .await
            .status,
        403
    );

    // Bulk updates: proxy admins only, 1 to 500 keys, each on its own.
    let route = "/key/bulk_update";
    let a = post(&p, route, &u1_key, json!({"keys": [{"key": u1_key}]})).await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(
        error_of(&a)
            .1
            .contains("Only proxy admins can perform bulk key updates")
    );
    let a = post(&p, route, MASTER, json!({"keys": []})).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(error_of(&a).1.contains("No keys provided for update"));
    let many: Vec<Value> = (0..501)
        .map(|i| json!({"key": format!("sk-{i}")}))
        .collect();
    let a = post(&p, route, MASTER, json!({"keys": many})).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(
        error_of(&a)
            .1
            .contains("Maximum 500 keys can be updated at once. Found 501 keys.")
    );
    let a = post(
        &p,
        route,
        MASTER,
        json!({"keys": [
            {"key": u1_key, "max_budget": 5.5, "tags": ["prod"]},
            {"key": u2_key, "team_id": "beta"},
            {"key": "sk-no-such-key-0000", "max_budget": 1.0},
            {"key": plain, "team_id": "no-team"},
            {"key": svc, "models": ["other"], "max_budget": 2.0},
        ]}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["total_requested"], 5);
    let done = a.body["successful_updates"].as_array().unwrap();
    let keys: Vec<&str> = done.iter().map(|d| d["key"].as_str().unwrap()).collect();
    assert_eq!(
        keys,
        [u1_key.as_str(), u2_key.as_str(), svc.as_str()],
        "{}",
        a.body
    );
    assert_eq!(done[0]["key_info"]["max_budget"], json!(5.5));
    assert!(
        done[2]["ignored_fields"]["models"].is_string(),
        "{}",
        a.body
    );
    let failed = a.body["failed_updates"].as_array().unwrap();
    assert_eq!(failed.len(), 2, "{}", a.body);
    assert_eq!(failed[0]["key"], "sk-no-such-key-0000");
    assert_eq!(failed[0]["key_info"], Value::Null);
    assert!(
        failed[0]["failed_reason"]
            .as_str()
            .unwrap()
            .contains("not found"),
        "{}",
        a.body
    );
    assert_eq!(failed[1]["key"], plain);
    assert!(
        failed[1]["failed_reason"]
            .as_str()
            .unwrap()
            .contains("no-team"),
        "{}",
        a.body
    );
    assert_eq!(
        failed[1]["key_info"]["team_id"],
        Value::Null,
        "the key as it stands"
    );
    // What the updates wrote, and what they left alone.
    let info = |k: &str| {
        let p = &p;
        let k = k.to_owned();
        async move { get(p, &format!("/key/info?key={k}"), MASTER).await.body["info"].clone() }
    };
    let k1 = info(&u1_key).await;
    assert_eq!(k1["max_budget"], json!(5.5));
    assert_eq!(k1["metadata"]["tags"], json!(["prod"]));
    assert_eq!(info(&u2_key).await["team_id"], "beta");
    let s = info(&svc).await;
    assert_eq!(s["max_budget"], json!(2.0));
    assert_eq!(
        s["models"],
        json!([]),
        "an item's other fields change nothing"
    );
    assert_eq!(info(&plain).await["team_id"], Value::Null);

    // Key health: no per-key logging, healthy; asking for it, unhealthy and why.
    let a = post(&p, "/key/health", &plain, json!({})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body, json!({"key": "healthy", "logging_callbacks": null}));
    let (logged, _) = generate(
        &p,
        json!({"metadata": {"logging": [{"callback_name": "langfuse", "callback_type": "success", "callback_vars": {}}]}}),
    )
    .await;
    let a = post(&p, "/key/health", &logged, json!({})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["key"], "unhealthy");
    assert_eq!(
        a.body["logging_callbacks"]["callbacks"],
        json!(["langfuse"])
    );
    assert_eq!(a.body["logging_callbacks"]["status"], "unhealthy");
    let a = post(&p, "/key/health", MASTER, json!({})).await;
    assert_eq!(a.body["key"], "healthy");
    assert_eq!(
        post(&p, "/key/health", "sk-wrong-key-1234", json!({}))
            .await
            .status,
        401
    );
    p.stop().await;
    place.cleanup().await;
}

both_backends!(service_accounts_bulk_updates_and_health);
