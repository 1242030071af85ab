#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Two gateways sharing one Postgres schema and one Redis, with `store_model_in_db`: a model
//! added, edited or deleted on one is served (or no longer served) by the other. The periodic
//! reload is set to an hour here, so only the Redis announcement can carry the change.

mod store_support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use store_support::{Backend, MASTER, Place, Proxy, chat, get, post, redis_url};

async fn instance(place: &Place, prefix: &str) -> Proxy {
    let cfg = store_support::config(&store_support::yaml(&format!(
        "  store_model_in_db: true
  redis_key_prefix: \"{prefix}\"
router_settings:
  redis_url: {}
",
        redis_url()
    )));
    let mut s = store_support::settings(&cfg, place);
    assert!(s.redis.is_some(), "redis configured");
    s.models.as_mut().expect("store_model_in_db").reload_every = Duration::from_secs(3600);
    store_support::start_with(cfg, s).await
}

async fn reply_of(p: &Proxy, model: &str) -> (u16, String) {
    let a = post(p, "/v1/chat/completions", MASTER, chat(model)).await;
    let text = a.body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (a.status.as_u16(), text)
}

/// Polls `p` until `model` answers `want` (status, text); fails after a generous deadline.
/// Returns how long it took, for the log.
async fn until_served(p: &Proxy, model: &str, want: (u16, &str)) -> Duration {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(15);
    loop {
        let got = reply_of(p, model).await;
        if got.0 == want.0 && (want.1.is_empty() || got.1 == want.1) {
            return start.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "{model}: still {got:?}, waiting for {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_model_change_on_one_instance_reaches_the_other() {
    let place = Place::new(Backend::Postgres);
    let prefix = format!("t{}:", uuid::Uuid::new_v4().simple());
    let a = instance(&place, &prefix).await;
    let b = instance(&place, &prefix).await;

    let new = json!({
        "model_name": "fleet-model",
        "litellm_params": {"model": "openai/fleet", "mock_response": "v1", "api_key": "sk-fleet-secret-0001"},
    });
    let r = post(&a, "/model/new", MASTER, new).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.body["model_id"].as_str().unwrap().to_string();
    let added = until_served(&b, "fleet-model", (200, "v1")).await;

    let r = post(
        &b,
        "/model/update",
        MASTER,
        json!({"model_info": {"id": id}, "litellm_params": {"mock_response": "v2"}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let updated = until_served(&a, "fleet-model", (200, "v2")).await;

    let info = get(&b, "/model/info", MASTER).await;
    let listed: Vec<&Value> = info.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["model_info"]["id"] == id.as_str())
        .collect();
    assert_eq!(listed.len(), 1);
    assert!(!info.body.to_string().contains("sk-fleet-secret-0001"));

    let r = post(&a, "/model/delete", MASTER, json!({"id": id})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let deleted = until_served(&b, "fleet-model", (400, "")).await;
    eprintln!(
        "seen by the other instance after: add {added:?}, update {updated:?}, delete {deleted:?}"
    );

    a.stop().await;
    b.stop().await;
    place.cleanup().await;
}
