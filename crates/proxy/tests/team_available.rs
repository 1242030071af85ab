#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Teams users join on their own, on SQLite and Postgres: LiteLLM's
//! `default_internal_user_params.available_teams`. `/team/available` lists those the caller's
//! user is not in; `/team/member_add` lets an internal user add themselves, as a plain member
//! and without per-member limits, to one of them and to no other team.

mod store_support;

use serde_json::{Value, json};
use store_support::{Backend, MASTER, Place, generate, get, internal_user, post, start};

const SETTINGS: &str = "litellm_settings:
  default_internal_user_params:
    available_teams: [open-team]
";

fn team_ids(a: &Value) -> Vec<&str> {
    a.as_array()
        .unwrap()
        .iter()
        .map(|t| t["team_id"].as_str().unwrap())
        .collect()
}

async fn users_join_available_teams_only(backend: Backend) {
    let place = Place::new(backend);
    let p = start(&place, SETTINGS).await;
    for team in ["open-team", "closed-team"] {
        let made = post(&p, "/team/new", MASTER, json!({"team_id": team})).await;
        assert_eq!(made.status, 200, "{}", made.body);
    }
    internal_user(&p, "joiner").await;
    internal_user(&p, "other").await;
    let (key, _) = generate(&p, json!({"user_id": "joiner"})).await;

    let listed = get(&p, "/team/available", &key).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(team_ids(&listed.body), ["open-team"]);

    let refusals = [
        (
            json!({"team_id": "closed-team", "member": {"user_id": "joiner", "role": "user"}}),
            "Call not allowed. User not proxy admin OR team admin. route=/team/member_add, team_id=closed-team",
        ),
        (
            json!({"team_id": "open-team", "member": {"user_id": "other", "role": "user"}}),
            "Available-team self-join can only add the caller (user_id must match the authenticated user's user_id).",
        ),
        (
            json!({"team_id": "open-team", "member": [{"user_id": "joiner", "role": "admin"}]}),
            "Available-team self-join cannot assign 'admin' role. Only proxy/team/org admins can add admins to a team.",
        ),
        (
            json!({"team_id": "open-team", "member": {"user_id": "joiner"}, "max_budget_in_team": 5}),
            "Available-team self-join cannot set per-member budget or model controls (max_budget_in_team, budget_duration, allowed_models); these are admin-only.",
        ),
    ];
    for (body, words) in refusals {
        let a = post(&p, "/team/member_add", &key, body.clone()).await;
        assert_eq!(a.status, 403, "{body}: {}", a.body);
        assert_eq!(a.body["error"]["message"], words, "{body}");
    }

    let joined = post(
        &p,
        "/team/member_add",
        &key,
        json!({"team_id": "open-team", "member": {"user_id": "joiner"}}),
    )
    .await;
    assert_eq!(joined.status, 200, "{}", joined.body);
    let info = get(&p, "/team/info?team_id=open-team", MASTER).await;
    let members = info.body["team_info"]["members_with_roles"].to_string();
    assert!(members.contains("\"joiner\""), "{}", info.body);
    let closed = get(&p, "/team/info?team_id=closed-team", MASTER).await;
    assert!(
        !closed.body.to_string().contains("\"joiner\""),
        "{}",
        closed.body
    );
    let listed = get(&p, "/team/available", &key).await;
    assert_eq!(listed.body, json!([]));

    // The master key acts as no stored user: LiteLLM's 404.
    let master = get(&p, "/team/available", MASTER).await;
    assert_eq!(master.status, 404, "{}", master.body);
    p.stop().await;
    place.cleanup().await;
}

both_backends!(users_join_available_teams_only);

/// Without `available_teams` there is nothing to join and no self-join.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_available_teams_nothing_is_listed_or_joined() {
    let place = Place::new(Backend::Sqlite);
    let p = start(&place, "").await;
    let made = post(&p, "/team/new", MASTER, json!({"team_id": "some-team"})).await;
    assert_eq!(made.status, 200, "{}", made.body);
    internal_user(&p, "joiner").await;
    let (key, _) = generate(&p, json!({"user_id": "joiner"})).await;
    let listed = get(&p, "/team/available", &key).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.body, json!([]));
    let a = post(
        &p,
        "/team/member_add",
        &key,
        json!({"team_id": "some-team", "member": {"user_id": "joiner"}}),
    )
    .await;
    assert_eq!(a.status, 403, "{}", a.body);
    p.stop().await;
    place.cleanup().await;
}
