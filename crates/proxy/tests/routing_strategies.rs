#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Which deployment of a model group takes a request, per `routing_strategy`, observed by which
//! fake upstream received it.

mod common;

use std::time::Duration;

use common::{KEY, Running, chat_body, client, clock_at_minute_start, eventually, start, start_at};
use idlehands_testkit::{FakeOpenAi, Gate, Reply};

/// A group `g` with one deployment per fake, each line of `extra` appended to its params.
fn group_config(ups: &[(&FakeOpenAi, &str)], router_settings: &str) -> String {
    let mut y = String::from("model_list:\n");
    for (i, (up, extra)) in ups.iter().enumerate() {
        y.push_str(&format!(
            "  - model_name: g\n    litellm_params: {{model: openai/m, api_base: '{}', api_key: k, timeout: 30{extra}}}\n    model_info: {{id: d{i}}}\n",
            up.base_url()
        ));
    }
    y.push_str(&format!(
        "general_settings: {{master_key: {KEY}}}\nrouter_settings: {{{router_settings}}}\n"
    ));
    y
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

/// A gateway whose router clock stands still at the start of a minute: rpm/tpm budgets are
/// per minute, and this test's calls all fall in one, however long they take.
async fn start_in_one_minute(yaml: &str) -> Running {
    start_at(yaml, &clock_at_minute_start()).await
}

#[tokio::test]
async fn simple_shuffle_follows_weights() {
    let heavy = FakeOpenAi::start().await;
    let light = FakeOpenAi::start().await;
    let gw = start(&group_config(
        &[(&heavy, ", weight: 9"), (&light, ", weight: 1")],
        "routing_strategy: simple-shuffle",
    ))
    .await;
    for _ in 0..200 {
        assert_eq!(ask(&gw).await.status(), 200);
    }
    // Expected 180 / 20; the bounds are many standard deviations wide.
    assert_eq!(heavy.served() + light.served(), 200);
    assert!(light.served() >= 1, "light got {}", light.served());
    assert!(
        heavy.served() > 3 * light.served(),
        "heavy {} light {}",
        heavy.served(),
        light.served()
    );
}

#[tokio::test]
async fn simple_shuffle_weighs_by_rpm_when_no_weight_is_set() {
    let big = FakeOpenAi::start().await;
    let small = FakeOpenAi::start().await;
    let gw = start_in_one_minute(&group_config(
        &[(&big, ", rpm: 900"), (&small, ", rpm: 100")],
        "",
    ))
    .await;
    for _ in 0..100 {
        assert_eq!(ask(&gw).await.status(), 200);
    }
    assert!(
        big.served() > 2 * small.served(),
        "big {} small {}",
        big.served(),
        small.served()
    );
}

#[tokio::test]
async fn rpm_limit_moves_traffic_then_answers_429_naming_the_group() {
    let limited = FakeOpenAi::start().await;
    let other = FakeOpenAi::start().await;
    // Weights make the limited deployment first choice until its rpm is spent.
    let gw = start_in_one_minute(&group_config(
        &[
            (&limited, ", rpm: 3, weight: 1000"),
            (&other, ", rpm: 4, weight: 0.001"),
        ],
        "",
    ))
    .await;
    for _ in 0..7 {
        assert_eq!(ask(&gw).await.status(), 200);
    }
    assert_eq!(limited.served(), 3);
    assert_eq!(other.served(), 4);
    let resp = ask(&gw).await;
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    let body: serde_json::Value = resp.json().await.unwrap();
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("No deployments available for selected model, Try again in "),
        "{msg}"
    );
    assert!(msg.contains("Passed model=g"), "{msg}");
    assert_eq!(body["error"]["code"], "429");
    assert_eq!(limited.served() + other.served(), 7);
}

#[tokio::test]
async fn least_busy_spreads_concurrent_requests_evenly() {
    let a = FakeOpenAi::start().await;
    let b = FakeOpenAi::start().await;
    // Every answer is held until all eight requests are in flight together.
    let gate = Gate::new();
    for up in [&a, &b] {
        up.set_default(Reply::default().held_by(&gate));
    }
    let gw = start(&group_config(
        &[(&a, ""), (&b, "")],
        "routing_strategy: least-busy",
    ))
    .await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let url = gw.url("/v1/chat/completions");
        tasks.push(tokio::spawn(async move {
            client()
                .post(url)
                .bearer_auth(KEY)
                .json(&chat_body("g", false))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    eventually("all eight requests reached an upstream", || {
        a.served() + b.served() == 8
    })
    .await;
    assert_eq!((a.served(), b.served()), (4, 4));
    gate.open();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
}

#[tokio::test]
async fn latency_based_routing_prefers_the_fast_deployment() {
    let slow = FakeOpenAi::start().await;
    let fast = FakeOpenAi::start().await;
    slow.set_default(Reply::default().with_delay(Duration::from_millis(400)));
    let gw = start(&group_config(
        &[(&slow, ""), (&fast, "")],
        "routing_strategy: latency-based-routing",
    ))
    .await;
    for _ in 0..20 {
        assert_eq!(ask(&gw).await.status(), 200);
    }
    // One request may go to each before both have a latency sample.
    assert!(slow.served() <= 1, "slow got {}", slow.served());
    assert!(fast.served() >= 19);
}

#[tokio::test]
async fn usage_based_routing_prefers_the_deployment_with_fewer_tokens_this_minute() {
    let hungry = FakeOpenAi::start().await;
    let frugal = FakeOpenAi::start().await;
    hungry.set_default(Reply::default().with_usage(5000, 5000));
    frugal.set_default(Reply::default().with_usage(10, 5));
    let gw = start_in_one_minute(&group_config(
        &[(&hungry, ""), (&frugal, "")],
        "routing_strategy: usage-based-routing",
    ))
    .await;
    for _ in 0..20 {
        assert_eq!(ask(&gw).await.status(), 200);
    }
    // Once the hungry one has 10000 tokens this minute, the frugal one (15 per call) wins.
    assert!(hungry.served() <= 1, "hungry got {}", hungry.served());
    assert!(frugal.served() >= 19);
}

#[tokio::test]
async fn tpm_limit_is_respected() {
    let capped = FakeOpenAi::start().await;
    let spare = FakeOpenAi::start().await;
    capped.set_default(Reply::default().with_usage(40, 20));
    let gw = start_in_one_minute(&group_config(
        &[
            (&capped, ", tpm: 100, weight: 1000"),
            (&spare, ", weight: 0.001"),
        ],
        "",
    ))
    .await;
    for _ in 0..6 {
        assert_eq!(ask(&gw).await.status(), 200);
    }
    // 60 tokens a call: a second call would pass 100.
    assert!(capped.served() <= 2, "capped got {}", capped.served());
    assert!(capped.served() >= 1);
    assert_eq!(capped.served() + spare.served(), 6);
}
