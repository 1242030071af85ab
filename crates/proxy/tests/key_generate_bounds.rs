#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `litellm_settings.default_key_generate_params`, `upperbound_key_generate_params` and
//! `key_generation_settings` over HTTP with a real store: a key generated with nothing set gets
//! the defaults and the bounds (and is held to them on calls), a request over a bound is
//! LiteLLM's 400, updates, regenerations and bulk updates cannot lift a key over the bounds;
//! team and personal keys are created only by the roles the settings name, with the fields
//! they require.

mod store_support;

use serde_json::json;
use store_support::{Backend, MASTER, Place, chat, generate, internal_user, post, start};

const SETTINGS: &str = "litellm_settings:
  default_key_generate_params:
    models: [mocky]
    max_budget: 2
    metadata: {tier: free}
  upperbound_key_generate_params:
    max_budget: 5
    rpm_limit: 50
    duration: 30d
";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_get_the_defaults_and_cannot_exceed_the_bounds() {
    let place = Place::new(Backend::Sqlite);
    let p = start(&place, SETTINGS).await;

    let a = post(&p, "/key/generate", MASTER, json!({})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["max_budget"], 2.0);
    assert_eq!(a.body["models"], json!(["mocky"]));
    assert_eq!(a.body["metadata"]["tier"], "free");
    assert_eq!(a.body["rpm_limit"], 50);
    let expires = chrono::DateTime::parse_from_rfc3339(a.body["expires"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    let days = (expires - chrono::Utc::now()).num_hours() as f64 / 24.0;
    assert!((29.9..=30.1).contains(&days), "expires in {days} days");
    let key = a.body["key"].as_str().unwrap().to_string();

    // The defaulted models hold on calls.
    assert_eq!(
        post(&p, "/v1/chat/completions", &key, chat("mocky"))
            .await
            .status,
        200
    );
    let other = post(&p, "/v1/chat/completions", &key, chat("other")).await;
    assert_eq!(other.status, 403, "{}", other.body);

    for (body, message) in [
        (
            json!({"max_budget": 6}),
            "max_budget is over max limit set in config - user_value=6.0; max_value=5.0",
        ),
        (
            json!({"duration": "60d"}),
            "duration is over max limit set in config - user_value=60d; max_value=30d",
        ),
        (
            json!({"rpm_limit": 51}),
            "rpm_limit is over max limit set in config - user_value=51; max_value=50",
        ),
    ] {
        let a = post(&p, "/key/generate", MASTER, body.clone()).await;
        assert_eq!(a.status, 400, "{body}: {}", a.body);
        assert_eq!(a.body["error"]["message"], message, "{body}");
    }

    let a = post(
        &p,
        "/key/update",
        MASTER,
        json!({"key": key, "max_budget": 4}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    for (change, message) in [
        (
            json!({"key": key, "max_budget": 9}),
            "max_budget is over max limit set in config - user_value=9.0; max_value=5.0",
        ),
        (
            json!({"key": key, "max_budget": null}),
            "max_budget cannot be removed: upperbound_key_generate_params sets max_value=5.0",
        ),
        (
            json!({"key": key, "duration": "-1"}),
            "duration is over max limit set in config - user_value=-1; max_value=30d",
        ),
    ] {
        let a = post(&p, "/key/update", MASTER, change.clone()).await;
        assert_eq!(a.status, 400, "{change}: {}", a.body);
        assert_eq!(a.body["error"]["message"], message, "{change}");
    }
    let a = post(
        &p,
        "/key/regenerate",
        MASTER,
        json!({"key": key, "max_budget": 7}),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    let a = post(
        &p,
        "/key/bulk_update",
        MASTER,
        json!({"keys": [{"key": key, "max_budget": 8}]}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.body["failed_updates"][0]["failed_reason"],
        "max_budget is over max limit set in config - user_value=8.0; max_value=5.0"
    );

    // What the store holds is what the refused changes left: the update to 4.
    let info = store_support::get(&p, &format!("/key/info?key={key}"), MASTER).await;
    assert_eq!(info.body["info"]["max_budget"], 4.0, "{}", info.body);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_generation_settings_decide_who_creates_team_and_personal_keys() {
    let place = Place::new(Backend::Sqlite);
    let p = start(
        &place,
        "litellm_settings:
  key_generation_settings:
    team_key_generation:
      allowed_team_member_roles: [admin]
      required_params: [tags]
    personal_key_generation:
      allowed_user_roles: [proxy_admin]
",
    )
    .await;
    internal_user(&p, "lead").await;
    internal_user(&p, "dev").await;
    let team = post(
        &p,
        "/team/new",
        MASTER,
        json!({"team_id": "core", "members_with_roles": [{"user_id": "lead", "role": "admin"}, {"user_id": "dev", "role": "user"}]}),
    )
    .await;
    assert_eq!(team.status, 200, "{}", team.body);
    let (lead, _) = generate(
        &p,
        json!({"user_id": "lead", "team_id": "core", "tags": ["setup"]}),
    )
    .await;
    let (dev, _) = generate(
        &p,
        json!({"user_id": "dev", "team_id": "core", "tags": ["setup"]}),
    )
    .await;

    let refused = [
        (
            &dev,
            json!({}),
            "Personal key creation has been restricted by admin. Allowed roles=['proxy_admin']. Your role=internal_user",
        ),
        (
            &dev,
            json!({"team_id": "core", "tags": ["x"]}),
            "Team member role user not in allowed_team_member_roles=['admin']",
        ),
        (
            &lead,
            json!({"team_id": "core"}),
            "Required param tags not in data",
        ),
    ];
    for (key, body, message) in refused {
        let a = post(&p, "/key/generate", key, body.clone()).await;
        assert_eq!(a.status, 400, "{body}: {}", a.body);
        assert_eq!(a.body["error"]["message"], message, "{body}");
    }
    let a = post(
        &p,
        "/key/generate",
        &lead,
        json!({"team_id": "core", "tags": ["ci"]}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["user_id"], "lead");
    // The master key is a proxy admin: personal keys are its to make.
    let a = post(&p, "/key/generate", MASTER, json!({})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    p.stop().await;
}
