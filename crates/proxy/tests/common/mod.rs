#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]
//! Start the gateway in-process on an ephemeral loopback port.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use idlehands_clock::ManualClock;
use idlehands_proxy::{Gateway, GatewayBuilder, MemorySink, ProxyConfig, serve};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub const KEY: &str = "sk-test-master-0001";

pub struct Running {
    pub base: String,
    /// The gateway being served, for state no route shows (its router's view).
    pub gateway: Gateway,
    pub sink: Arc<MemorySink>,
    pub stop: Option<oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// At least `n` call records, waiting for them: records arrive when the call is over,
    /// and a stream's may trail its last byte. Fails the test when they do not come, rather
    /// than handing back fewer for an assertion that might pass on no data.
    pub async fn records(&self, n: usize) -> Vec<idlehands_proxy::CallRecord> {
        let deadline = Instant::now() + EVENT_DEADLINE;
        loop {
            let r = self.sink.records();
            if r.len() >= n {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "expected at least {n} call records within {EVENT_DEADLINE:?}, got {}: {r:?}",
                r.len()
            );
            // Polling interval, not a guess at how long the records take.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The router's state of the deployment with this `model_info.id`.
    pub fn deployment(&self, id: &str) -> idlehands_routing::DeploymentSnapshot {
        self.gateway
            .routing_snapshot()
            .into_iter()
            .find(|d| d.id == id)
            .unwrap_or_else(|| panic!("no deployment {id}"))
    }

    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.await.unwrap()
    }
}

pub fn config(yaml: &str, env: &[(&str, &str)]) -> ProxyConfig {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ProxyConfig::from_yaml(yaml, "config.yaml", &move |k: &str| env.get(k).cloned())
        .expect("config loads")
}

pub async fn start(yaml: &str) -> Running {
    start_cfg(config(yaml, &[]), |b| b).await
}

/// Like `start`, with the given environment visible to `os.environ/` references.
pub async fn start_env(yaml: &str, env: &[(&str, &str)]) -> Running {
    start_cfg(config(yaml, env), |b| b).await
}

/// Like `start`, with router cooldowns and rpm/tpm minutes judged by `clock`, which moves only
/// when the test advances it.
pub async fn start_at(yaml: &str, clock: &Arc<ManualClock>) -> Running {
    let clock = clock.clone();
    start_cfg(config(yaml, &[]), move |b| b.clock(clock)).await
}

/// A manual clock at the start of the current minute: budget windows, which are aligned to
/// whole seconds, minutes or hours, and the router's rpm/tpm minute all begin exactly there.
pub fn clock_at_minute_start() -> Arc<ManualClock> {
    let now = idlehands_clock::Clock::now_ms(&idlehands_clock::SystemClock);
    Arc::new(ManualClock::at_ms(now - now % 60_000))
}

/// How long [`eventually`] waits: only turns a hang into a failure, never paces a test.
pub const EVENT_DEADLINE: Duration = Duration::from_secs(20);

/// Waits until `done` holds, failing the test (naming `what`) if it does not within
/// [`EVENT_DEADLINE`]: for events the test cannot be told about (a background task's work, a
/// fake upstream's count), where a fixed sleep would only guess.
pub async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    eventually_async(what, || std::future::ready(done())).await;
}

/// [`eventually`] for a check that has to ask over HTTP.
pub async fn eventually_async<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + EVENT_DEADLINE;
    while !done().await {
        assert!(
            Instant::now() < deadline,
            "not within {EVENT_DEADLINE:?}: {what}"
        );
        // Polling interval, not a guess at how long the event takes.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn start_cfg(
    cfg: ProxyConfig,
    customize: impl FnOnce(GatewayBuilder) -> GatewayBuilder,
) -> Running {
    let sink = MemorySink::new();
    let gw: Gateway = customize(Gateway::builder(cfg).sink(sink.clone()))
        .build()
        .expect("gateway builds");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(gw.clone(), listener, async move {
        let _ = rx.await;
    }));
    Running {
        base: format!("http://{addr}"),
        gateway: gw,
        sink,
        stop: Some(tx),
        task,
    }
}

/// A config with one FakeOpenAi-backed group `gpt-4o` and one mock group `mocky`.
pub fn two_models(upstream_base: &str) -> String {
    format!(
        "model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: {upstream_base}
      api_key: sk-upstream-secret
      timeout: 5
  - model_name: mocky
    litellm_params:
      model: openai/mock-model
      mock_response: Hello from the mock deployment
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000002
general_settings:
  master_key: {KEY}
"
    )
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

pub fn chat_body(model: &str, stream: bool) -> serde_json::Value {
    serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": "Say hi"}],
        "stream": stream,
    })
}

/// POST `body` as JSON to `path` on the gateway, authenticated with the master key.
pub async fn post_json(gw: &Running, path: &str, body: &serde_json::Value) -> reqwest::Response {
    post_as(gw, path, KEY, body).await
}

/// POST `body` as JSON to `path` on the gateway, authenticated with `key`.
pub async fn post_as(
    gw: &Running,
    path: &str,
    key: &str,
    body: &serde_json::Value,
) -> reqwest::Response {
    client()
        .post(gw.url(path))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Starts a chat call that the upstream answers after 300 ms with "slow but complete", and
/// returns once the upstream has it (the call is then in flight on the gateway).
pub async fn slow_call_in_flight(
    up: &idlehands_testkit::FakeOpenAi,
    url: String,
) -> tokio::task::JoinHandle<reqwest::Response> {
    up.push(
        idlehands_testkit::Reply::text("slow but complete")
            .with_delay(std::time::Duration::from_millis(300)),
    );
    let pending = tokio::spawn(async move {
        client()
            .post(url)
            .bearer_auth(KEY)
            .json(&chat_body("gpt-4o", false))
            .send()
            .await
            .unwrap()
    });
    eventually("the slow call reached the upstream", || up.served() > 0).await;
    pending
}

/// After a drain: the in-flight call from [`slow_call_in_flight`] was answered in full, and
/// the gateway at `base` takes no new connection.
pub async fn assert_drained(pending: tokio::task::JoinHandle<reqwest::Response>, base: &str) {
    let resp = pending.await.unwrap();
    assert_eq!(resp.status(), 200);
    let b: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(b["choices"][0]["message"]["content"], "slow but complete");
    let late = client()
        .get(format!("{base}/health/liveliness"))
        .send()
        .await;
    assert!(late.is_err(), "a connection after the drain was accepted");
}
