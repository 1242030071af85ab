#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The proxy-wide budget (`litellm_settings.max_budget` with `budget_duration`) through HTTP:
//! every call counts against it, whichever key made it, and none is admitted once it is
//! spent; it lives on as the budget of the user `litellm-proxy-budget`, as in LiteLLM, across
//! restarts, and is changed in the config only. SQLite and Postgres.

mod store_support;

use serde_json::{Value, json};
use store_support::{Backend, MASTER, Place, error_of, generate, get, post, spend_rows, start};

fn bounded_chat() -> Value {
    json!({"model": "mocky", "max_tokens": 50, "messages": [{"role": "user", "content": "Say hi"}]})
}

fn yaml(max_budget: &str) -> String {
    format!("litellm_settings:\n  max_budget: {max_budget}\n  budget_duration: 30d\n")
}

async fn the_proxy_wide_budget_bounds_every_call(b: Backend) {
    let place = Place::new(b);
    // One call's worth (a call costs 1.7e-5 USD).
    let p = start(&place, &yaml("0.00001")).await;
    let (first_key, _) = generate(&p, json!({})).await;
    let (other_key, _) = generate(&p, json!({})).await;
    let first = post(&p, "/v1/chat/completions", &first_key, bounded_chat()).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let cost: f64 = store_support::cost_of(&first);
    // Another key, and the master key too: the budget is the whole proxy's.
    for key in [other_key.as_str(), MASTER] {
        let over = post(&p, "/v1/chat/completions", key, bounded_chat()).await;
        assert_eq!(over.status, 422, "{}", over.body);
        let (kind, msg) = error_of(&over);
        assert_eq!(kind, "budget_exceeded");
        assert!(
            msg.starts_with("Budget has been exceeded! Current cost: "),
            "{msg}"
        );
        assert!(msg.contains("Max budget: 1e-05"), "{msg}");
    }
    let info = get(&p, "/user/info?user_id=litellm-proxy-budget", MASTER).await;
    assert_eq!(info.status, 200, "{}", info.body);
    let user = &info.body["user_info"];
    assert!(
        (user["spend"].as_f64().unwrap() - cost).abs() < 1e-12,
        "{}",
        info.body
    );
    assert_eq!(user["max_budget"], 0.00001);
    assert_eq!(user["budget_duration"], "30d");
    let window = user["budget_reset_at"].clone();
    assert!(window.is_string(), "{}", info.body);
    let global = get(&p, "/global/spend", MASTER).await;
    assert_eq!(global.body["max_budget"], 0.00001, "{}", global.body);
    // One row per call, answered or refused.
    assert_eq!(spend_rows(&p, "", 3).await.len(), 3);
    // The budget is the config's: not raised, nor its user deleted, over the API.
    for (path, body) in [
        (
            "/user/update",
            json!({"user_id": "litellm-proxy-budget", "max_budget": 100}),
        ),
        (
            "/user/delete",
            json!({"user_ids": ["u-x", "litellm-proxy-budget"]}),
        ),
    ] {
        let refused = post(&p, path, MASTER, body).await;
        assert_eq!(refused.status, 400, "{path}: {}", refused.body);
        assert!(
            error_of(&refused).1.contains("change it in the config"),
            "{}",
            refused.body
        );
    }
    let renamed = post(
        &p,
        "/user/update",
        MASTER,
        json!({"user_id": "litellm-proxy-budget", "user_alias": "the whole proxy"}),
    )
    .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    p.stop().await;

    // What was spent is stored: still spent after a restart.
    let p = start(&place, &yaml("0.00001")).await;
    let again = post(&p, "/v1/chat/completions", &first_key, bounded_chat()).await;
    assert_eq!(again.status, 422, "{}", again.body);
    p.stop().await;

    // A larger budget admits again; the window stays where it was.
    let p = start(&place, &yaml("1")).await;
    let ok = post(&p, "/v1/chat/completions", &other_key, bounded_chat()).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let info = get(&p, "/user/info?user_id=litellm-proxy-budget", MASTER).await;
    let user = &info.body["user_info"];
    assert_eq!(user["max_budget"], 1.0, "{}", info.body);
    assert_eq!(user["budget_reset_at"], window, "{}", info.body);
    assert!(
        (user["spend"].as_f64().unwrap() - 2.0 * cost).abs() < 1e-12,
        "{}",
        info.body
    );
    p.stop().await;
    place.cleanup().await;
}

both_backends!(the_proxy_wide_budget_bounds_every_call);
