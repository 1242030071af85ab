#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Router state shared through Redis: two gateways on one Redis see each other's cooldowns and
//! rpm usage. Needs Redis at `REDIS_URL_TEST` (default `redis://127.0.0.1:6379`).

mod common;

use common::{KEY, Running, chat_body, client, clock_at_minute_start, eventually, start_at};
use idlehands_testkit::{FakeOpenAi, Reply};

fn redis_url() -> String {
    std::env::var("REDIS_URL_TEST").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

/// Deployment ids unique to this run, so parallel tests and earlier runs share no keys.
fn unique(name: &str) -> String {
    format!("{name}-{}", uuid_like())
}

fn uuid_like() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{t:x}-{}", std::process::id())
}

async fn ask(gw: &Running) -> reqwest::Response {
    client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&chat_body("g", false))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn redis_is_reachable() {
    // Fails loudly (not skipped) when the test Redis is missing.
    let c = redis::Client::open(redis_url()).unwrap();
    let mut conn = c
        .get_multiplexed_async_connection()
        .await
        .expect("Redis at REDIS_URL_TEST");
    let pong: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
    assert_eq!(pong, "PONG");
}

#[tokio::test]
async fn a_cooldown_on_one_gateway_is_seen_by_another() {
    let hot = FakeOpenAi::start().await;
    let spare = FakeOpenAi::start().await;
    let (hot_id, spare_id) = (unique("hot"), unique("spare"));
    let cfg = format!(
        "model_list:
  - model_name: g
    litellm_params: {{model: openai/m, api_base: '{}', api_key: k, order: 1}}
    model_info: {{id: {hot_id}}}
  - model_name: g
    litellm_params: {{model: openai/m, api_base: '{}', api_key: k, order: 2}}
    model_info: {{id: {spare_id}}}
general_settings: {{master_key: {KEY}}}
router_settings: {{redis_url: '{}'}}
",
        hot.base_url(),
        spare.base_url(),
        redis_url()
    );
    // One clock for both, as a fleet's hosts share the time of day.
    let clock = clock_at_minute_start();
    let one = start_at(&cfg, &clock).await;
    let two = start_at(&cfg, &clock).await;
    // A 429 with retry-after 30 cools the first-choice deployment on gateway one.
    hot.push(Reply::rate_limited(30));
    let resp = ask(&one).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-litellm-model-id"], spare_id.as_str());
    assert_eq!(hot.served(), 1);
    eventually("gateway two learns of the cooldown through Redis", || {
        two.deployment(&hot_id).cooldown_remaining.is_some()
    })
    .await;
    // Gateway two never saw it fail, yet skips it.
    for _ in 0..5 {
        let resp = ask(&two).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-litellm-model-id"], spare_id.as_str());
    }
    assert_eq!(hot.served(), 1);
}

#[tokio::test]
async fn rpm_limits_hold_across_gateways() {
    let up = FakeOpenAi::start().await;
    let id = unique("limited");
    let cfg = format!(
        "model_list:
  - model_name: g
    litellm_params: {{model: openai/m, api_base: '{}', api_key: k, rpm: 3}}
    model_info: {{id: {id}}}
general_settings: {{master_key: {KEY}}}
router_settings: {{redis_url: '{}', num_retries: 0}}
",
        up.base_url(),
        redis_url()
    );
    // One clock for both, standing still: every call falls in one rpm minute.
    let clock = clock_at_minute_start();
    let one = start_at(&cfg, &clock).await;
    let two = start_at(&cfg, &clock).await;
    assert_eq!(ask(&one).await.status(), 200);
    assert_eq!(ask(&one).await.status(), 200);
    eventually("gateway two counts gateway one's 2 requests", || {
        two.deployment(&id).rpm_used == 2
    })
    .await;
    assert_eq!(ask(&two).await.status(), 200);
    let resp = ask(&two).await;
    assert_eq!(
        resp.status(),
        429,
        "the fleet used its 3 requests this minute"
    );
    assert_eq!(up.served(), 3);
    // The next minute brings the budget back, on both.
    clock.advance(std::time::Duration::from_secs(60));
    assert_eq!(ask(&two).await.status(), 200);
    assert_eq!(ask(&one).await.status(), 200);
    assert_eq!(up.served(), 5);
}
