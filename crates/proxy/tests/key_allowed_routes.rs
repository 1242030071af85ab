#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A key's `allowed_routes` and `key_type` (LiteLLM's route restrictions): paths, prefixes and
//! route groups enforced on model, management and pass-through routes with LiteLLM's 403;
//! who may set them; kept across a restart and changed at once by an update. SQLite and
//! Postgres.

mod store_support;

use serde_json::{Value, json};
use store_support::{
    Backend, MASTER, Place, Proxy, chat, error_of, generate, get, internal_user, post, start,
};

async fn status_of(p: &Proxy, key: &str, method: &str, path: &str) -> (u16, Value) {
    let a = match method {
        "GET" => get(p, path, key).await,
        _ => {
            let body = if path.contains("embeddings") {
                json!({"model": "mocky", "input": "hi"})
            } else {
                chat("mocky")
            };
            post(p, path, key, body).await
        }
    };
    (a.status.as_u16(), a.body)
}

fn refusal(routes: &str, path: &str) -> String {
    format!(
        "Virtual key is not allowed to call this route. Only allowed to call routes: {routes}. Tried to call route: {path}"
    )
}

async fn routes_are_enforced_and_kept(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;

    // A path: that route only.
    let (chat_only, made) = generate(&p, json!({"allowed_routes": ["/v1/chat/completions"]})).await;
    assert_eq!(made["allowed_routes"], json!(["/v1/chat/completions"]));
    assert_eq!(
        status_of(&p, &chat_only, "POST", "/v1/chat/completions")
            .await
            .0,
        200
    );
    for (method, path) in [
        ("POST", "/v1/embeddings"),
        ("GET", "/v1/models"),
        ("GET", "/key/info"),
        ("GET", "/spend/logs"),
        ("POST", "/openai/v1/chat/completions"),
    ] {
        let (status, body) = status_of(&p, &chat_only, method, path).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert_eq!(
            body["error"]["message"],
            refusal("['/v1/chat/completions']", path),
            "{path}"
        );
    }

    // The presets.
    let (llm, made) = generate(&p, json!({"key_type": "llm_api"})).await;
    assert_eq!(made["allowed_routes"], json!(["llm_api_routes"]));
    assert_eq!(made["key_type"], "llm_api");
    for (method, path, want) in [
        ("POST", "/v1/chat/completions", 200),
        ("POST", "/chat/completions", 200),
        ("POST", "/v1/embeddings", 200),
        ("GET", "/v1/models", 200),
        ("GET", "/model/info", 200),
        ("GET", "/key/info", 403),
        ("GET", "/spend/logs", 403),
        ("POST", "/key/generate", 403),
    ] {
        let (status, body) = status_of(&p, &llm, method, path).await;
        assert_eq!(status, want, "llm_api {path}: {body}");
    }
    let (read_only, made) = generate(&p, json!({"key_type": "read_only"})).await;
    assert_eq!(made["allowed_routes"], json!(["info_routes"]));
    for (method, path, want) in [
        ("GET", "/key/info", 200),
        ("GET", "/v1/models", 200),
        ("POST", "/v1/chat/completions", 403),
        ("GET", "/spend/logs", 403),
    ] {
        let (status, body) = status_of(&p, &read_only, method, path).await;
        assert_eq!(status, want, "read_only {path}: {body}");
    }
    let (mgmt, _) = generate(&p, json!({"key_type": "management"})).await;
    assert_eq!(status_of(&p, &mgmt, "GET", "/key/info").await.0, 200);
    assert_eq!(
        status_of(&p, &mgmt, "POST", "/v1/chat/completions").await.0,
        403
    );
    // A prefix pattern and a group together.
    let (mixed, _) = generate(&p, json!({"allowed_routes": ["openai_routes", "/spend/*"]})).await;
    assert_eq!(status_of(&p, &mixed, "GET", "/spend/logs").await.0, 200);
    assert_eq!(
        status_of(&p, &mixed, "POST", "/v1/chat/completions")
            .await
            .0,
        200
    );
    assert_eq!(status_of(&p, &mixed, "GET", "/key/info").await.0, 403);

    // What is refused at creation.
    let a = post(
        &p,
        "/key/generate",
        MASTER,
        json!({"allowed_routes": ["scim_routes"]}),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(error_of(&a).1.contains("\"scim_routes\""), "{}", a.body);
    let a = post(
        &p,
        "/key/generate",
        MASTER,
        json!({"key_type": "superuser"}),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(
        error_of(&a).1.contains("Invalid key_type: superuser"),
        "{}",
        a.body
    );

    // An internal user picks a safe preset, nothing else, and never widens a read-only key.
    internal_user(&p, "u1").await;
    let (own, _) = generate(&p, json!({"user_id": "u1"})).await;
    let reserved = "Only proxy admins can set `allowed_routes` on a key";
    let a = post(
        &p,
        "/key/generate",
        &own,
        json!({"allowed_routes": ["/v1/chat/completions"]}),
    )
    .await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(error_of(&a).1.contains(reserved), "{}", a.body);
    let a = post(&p, "/key/generate", &own, json!({"key_type": "management"})).await;
    assert_eq!(a.status, 403, "{}", a.body);
    let a = post(&p, "/key/generate", &own, json!({"key_type": "read_only"})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let users_read_only = a.body["key"].as_str().unwrap().to_owned();
    let a = post(
        &p,
        "/key/update",
        &own,
        json!({"key": users_read_only, "key_type": "llm_api"}),
    )
    .await;
    assert_eq!(a.status, 403, "a read-only key stays read-only: {}", a.body);
    let a = post(&p, "/key/generate", &own, json!({"key_type": "llm_api"})).await;
    let users_llm = a.body["key"].as_str().unwrap().to_owned();
    let a = post(
        &p,
        "/key/update",
        &own,
        json!({"key": users_llm, "key_type": "read_only"}),
    )
    .await;
    assert_eq!(a.status, 200, "narrowing is allowed: {}", a.body);
    assert_eq!(a.body["allowed_routes"], json!(["info_routes"]));
    let a = post(
        &p,
        "/key/update",
        &own,
        json!({"key": users_llm, "allowed_routes": []}),
    )
    .await;
    assert_eq!(a.status, 403, "{}", a.body);

    // Kept by the store across a restart, and shown.
    p.stop().await;
    let p = start(&place, "").await;
    let (status, body) = status_of(&p, &chat_only, "POST", "/v1/embeddings").await;
    assert_eq!(status, 403, "{body}");
    let a = get(&p, &format!("/key/info?key={llm}"), MASTER).await;
    assert_eq!(a.body["info"]["allowed_routes"], json!(["llm_api_routes"]));
    assert_eq!(a.body["info"]["key_type"], "llm_api");
    // An admin's update applies at once.
    let a = post(
        &p,
        "/key/update",
        MASTER,
        json!({"key": chat_only, "allowed_routes": null}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["allowed_routes"], json!([]));
    assert_eq!(
        status_of(&p, &chat_only, "POST", "/v1/embeddings").await.0,
        200
    );
    let a = post(
        &p,
        "/key/update",
        MASTER,
        json!({"key": chat_only, "key_type": "read_only"}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        status_of(&p, &chat_only, "POST", "/v1/chat/completions")
            .await
            .0,
        403
    );
    // The master key is never restricted.
    assert_eq!(status_of(&p, MASTER, "GET", "/key/list").await.0, 200);
    p.stop().await;
    place.cleanup().await;
}

both_backends!(routes_are_enforced_and_kept);
