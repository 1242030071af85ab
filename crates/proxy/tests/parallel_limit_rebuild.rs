#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A deployment's `max_parallel_requests` across a router rebuild: a model added over the API
//! rebuilds the router, and the call still held by the old router's copy of a deployment goes
//! on counting against the new copy's limit (before, the new copy started from zero and one
//! more call reached a server that has no room for it). Against a fake OpenAI upstream that
//! holds its answers until the test lets them go, with the store behind the gateway.

mod store_support;

use std::time::Duration;

use idlehands_testkit::{FakeOpenAi, Gate, Reply};
use serde_json::{Value, json};
use store_support::{Backend, MASTER, Place, get, post};

fn ask() -> Value {
    json!({"model": "local", "messages": [{"role": "user", "content": "hi"}]})
}

/// Polls until `done` holds; a hang fails the test after 20 s.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited 20 s for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_model_change_keeps_counting_the_calls_in_flight() {
    let up = FakeOpenAi::start().await;
    let gate = Gate::new();
    up.set_default(Reply::text("done").held_by(&gate));
    let place = Place::new(Backend::Sqlite);
    let yaml = format!(
        "model_list:
  - model_name: local
    litellm_params:
      model: openai/local-model
      api_base: {}
      api_key: sk-upstream
      max_parallel_requests: 1
router_settings:
  num_retries: 0
general_settings:
  master_key: {MASTER}
  store_model_in_db: true
",
        up.base_url()
    );
    let cfg = store_support::config(&yaml);
    let s = store_support::settings(&cfg, &place);
    let p = store_support::start_with(cfg, s).await;
    let held = tokio::spawn({
        let url = p.url("/v1/chat/completions");
        async move {
            store_support::send(
                store_support::client()
                    .post(url)
                    .bearer_auth(MASTER)
                    .json(&ask()),
            )
            .await
        }
    });
    until("the first call to reach the upstream", || up.served() == 1).await;

    let added = post(
        &p,
        "/model/new",
        MASTER,
        json!({"model_name": "other", "litellm_params": {"model": "openai/other", "mock_response": "hi"}}),
    )
    .await;
    assert_eq!(added.status, 200, "{}", added.body);
    let models = get(&p, "/v1/models", MASTER).await;
    assert!(
        models.body.to_string().contains("\"other\""),
        "the router was rebuilt with the new model: {}",
        models.body
    );

    // The call held on the old router's copy still takes the deployment's one slot.
    let refused = post(&p, "/v1/chat/completions", MASTER, ask()).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert!(
        store_support::error_of(&refused)
            .1
            .contains("Deployment has all max_parallel_requests slots in use."),
        "{}",
        refused.body
    );
    assert_eq!(
        up.served(),
        1,
        "the refused call never reached the upstream"
    );

    gate.open();
    let first = held.await.unwrap();
    assert_eq!(first.status, 200, "{}", first.body);
    let after = post(&p, "/v1/chat/completions", MASTER, ask()).await;
    assert_eq!(after.status, 200, "{}", after.body);
    p.stop().await;
}
