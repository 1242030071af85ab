#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Two `idlehands proxy` processes sharing one Redis (and one key database): one is killed
//! (SIGKILL) in the middle of a streamed call on a key allowed one call at a time. The call's
//! hold on the key (its parallel slot and its budget reservation) lives in Redis; once the
//! killed instance has sent no heartbeat for `general_settings.redis_instance_timeout`, the
//! other gives it back, and the key serves again instead of answering 429 for ever.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod proxy_process;
use proxy_process::{gateway_cmd, http, json_of, slow_stream, slow_upstream, spawn, terminate};

const MASTER: &str = "sk-cli-fleet-master-1";

fn redis_url() -> String {
    std::env::var("REDIS_URL_TEST").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

async fn chat(url: &str, key: &str) -> (u16, Value) {
    json_of(
        http()
            .post(format!("{url}/v1/chat/completions"))
            .bearer_auth(key)
            .json(&json!({"model": "mocky", "messages": [{"role": "user", "content": "hi"}]})),
    )
    .await
}

#[tokio::test]
async fn a_killed_instances_call_stops_holding_the_key() {
    // About 40 s of stream: it is still running when its instance is killed.
    let (_up, slow) = slow_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let unique = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let cfg = dir.path().join("config.yaml");
    std::fs::write(
        &cfg,
        format!(
            "model_list:
{slow}  - model_name: mocky
    litellm_params:
      model: openai/mock-model
      mock_response: Hello from the mock deployment
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000002
general_settings:
  master_key: {MASTER}
  redis_key_prefix: \"fleet-kill-{unique}:\"
  redis_instance_timeout: 1
router_settings:
  redis_url: {}
",
            redis_url()
        ),
    )
    .unwrap();
    let db = dir.path().join("keys.db");
    let start = || {
        let mut c = gateway_cmd(dir.path());
        c.args(["proxy", "--config"]).arg(&cfg).arg("--db").arg(&db);
        spawn(c)
    };
    let (mut killed, url_a, _) = start();
    let (mut alive, url_b, _) = start();

    let (status, generated) = json_of(
        http()
            .post(format!("{url_a}/key/generate"))
            .bearer_auth(MASTER)
            .json(&json!({"max_parallel_requests": 1, "max_budget": 10.0})),
    )
    .await;
    assert_eq!(status, 200, "{generated}");
    let key = generated["key"].as_str().unwrap().to_string();

    // Kept open to the end: the call must still be in flight when its instance dies.
    let (_stream, _) = slow_stream(&url_a, &key, 2).await;
    // The stream holds the key's one slot, on every instance.
    let (status, body) = chat(&url_b, &key).await;
    assert_eq!(status, 429, "{body}");

    killed.kill().unwrap();
    killed.wait().unwrap();
    let t0 = Instant::now();
    let served = loop {
        let (status, body) = chat(&url_b, &key).await;
        if status == 200 {
            break t0.elapsed();
        }
        assert_eq!(status, 429, "{body}");
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the killed instance's call still holds the key after {:?}",
            t0.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // One timeout (1 s) plus up to a heartbeat period (1 s) and a probe tick.
    assert!(served >= Duration::from_millis(500), "{served:?}");
    // Holds again for the next call: the slot was given back once, not twice.
    let (status, body) = chat(&url_b, &key).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(terminate(&mut alive), 0);
}
