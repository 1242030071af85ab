#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `general_settings.user_header_mappings` with `litellm_user_role: internal_user` (Open WebUI's
//! `X-OpenWebUI-User-Id`), on SQLite and Postgres: the header names the call's user, whose
//! spend row it is and whose budget and team-member budget hold the call (LiteLLM only writes
//! the user on the row, after its checks), for a virtual key and the master key alike; a call
//! without the header stays the key's user's.

mod store_support;

use serde_json::{Value, json};
use store_support::{
    Answer, Backend, MASTER, Place, Proxy, cost_of, error_of, generate, get, post, send,
    spend_rows, start,
};

const MAPPING: &str = "  user_header_mappings:
    - {header_name: X-OpenWebUI-User-Email, litellm_user_role: customer}
    - {header_name: X-OpenWebUI-User-Id, litellm_user_role: internal_user}
";

/// A bounded call of `mocky` (it costs more than 1e-5 USD), for `user` when given.
async fn call(p: &Proxy, key: &str, user: Option<&str>, n: u32) -> Answer {
    let body = json!({"model": "mocky", "max_tokens": 50,
                      "messages": [{"role": "user", "content": format!("Say hi {n}")}]});
    let mut req = store_support::client()
        .post(p.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&body);
    if let Some(u) = user {
        req = req.header("X-OpenWebUI-User-Id", u);
    }
    send(req).await
}

async fn user_spend(p: &Proxy, user: &str) -> f64 {
    let a = get(p, &format!("/user/info?user_id={user}"), MASTER).await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["user_info"]["spend"].as_f64().unwrap()
}

fn user_refusal(a: &Answer, user: &str) {
    assert_eq!(a.status, 422, "{}", a.body);
    let (kind, msg) = error_of(a);
    assert_eq!(kind, "budget_exceeded");
    assert!(
        msg.starts_with(&format!("ExceededBudget: User={user} over budget.")),
        "{msg}"
    );
}

async fn the_header_user_is_held_and_charged(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, MAPPING).await;
    for (user, budget) in [("owner", Value::Null), ("u-7", json!(0.00001))] {
        let a = post(
            &p,
            "/user/new",
            MASTER,
            json!({"user_id": user, "max_budget": budget, "auto_create_key": false}),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let (key, _) = generate(&p, json!({"user_id": "owner"})).await;

    // The header's user is the call's: its row, its spend; the key's user is not charged.
    let first = call(&p, &key, Some(" u-7 "), 1).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let spent = cost_of(&first);
    assert!(spent > 0.00001, "{spent}");
    let rows = spend_rows(&p, "", 1).await;
    assert_eq!(rows[0]["user"], "u-7", "{}", rows[0]);
    assert!(store_support::close(user_spend(&p, "u-7").await, spent));
    assert!(store_support::close(user_spend(&p, "owner").await, 0.0));

    // Its budget is spent: the key's calls for it are refused, and the master key's too.
    user_refusal(&call(&p, &key, Some("u-7"), 2).await, "u-7");
    user_refusal(&call(&p, MASTER, Some("u-7"), 3).await, "u-7");
    // Without the header the call is the key's user's; another user has room of its own.
    let own = call(&p, &key, None, 4).await;
    assert_eq!(own.status, 200, "{}", own.body);
    let stranger = call(&p, &key, Some("no-row-user"), 5).await;
    assert_eq!(stranger.status, 200, "{}", stranger.body);
    let rows = spend_rows(&p, "", 5).await;
    let users: Vec<&str> = rows
        .iter()
        .map(|r| r["user"].as_str().unwrap_or(""))
        .collect();
    for u in ["owner", "no-row-user"] {
        assert!(users.contains(&u), "{users:?}");
    }
    // Every row counted once: the owner's spend is its one call's.
    assert!(store_support::close(
        user_spend(&p, "owner").await,
        cost_of(&own)
    ));
    // The stored spend, the rows' sum, outlives a restart and keeps refusing.
    p.stop().await;
    let p = start(&place, MAPPING).await;
    user_refusal(&call(&p, &key, Some("u-7"), 6).await, "u-7");
    p.stop().await;
    place.cleanup().await;
}

/// In a team, the header user's member budget holds the key's calls made for it.
async fn the_header_users_team_member_budget_holds(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, MAPPING).await;
    let team = post(&p, "/team/new", MASTER, json!({"team_id": "t1"})).await;
    assert_eq!(team.status, 200, "{}", team.body);
    let member = post(
        &p,
        "/team/member_add",
        MASTER,
        json!({"team_id": "t1", "member": {"role": "user", "user_id": "m-1"}, "max_budget_in_team": 0.00001}),
    )
    .await;
    assert_eq!(member.status, 200, "{}", member.body);
    let (key, _) = generate(&p, json!({"team_id": "t1"})).await;
    assert_eq!(call(&p, &key, Some("m-1"), 1).await.status, 200);
    let refused = call(&p, &key, Some("m-1"), 2).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(error_of(&refused).1.contains("m-1"), "{}", refused.body);
    assert_eq!(call(&p, &key, Some("m-2"), 3).await.status, 200);
    p.stop().await;
    place.cleanup().await;
}

both_backends!(
    the_header_user_is_held_and_charged,
    the_header_users_team_member_budget_holds
);
