#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]
//! A gateway with the store behind it, on a loopback port, over a fresh SQLite file or a fresh
//! Postgres schema; the same scenarios run on both.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub use idlehands_clock::ManualClock;

use idlehands_proxy::ledger::{StoreHandle, StoreSettings};
use idlehands_proxy::{Gateway, ProxyConfig, serve};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub const MASTER: &str = "sk-store-master-0001";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn pg_url() -> String {
    std::env::var("DATABASE_URL_TEST")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/test".to_owned())
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL_TEST").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Where a test's data lives; dropped (file) or cleaned (schema) at the end.
pub struct Place {
    pub url: String,
    pub pg_schema: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl Place {
    pub fn new(backend: Backend) -> Place {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                Place {
                    url: dir.path().join("proxy.db").display().to_string(),
                    pg_schema: None,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => Place {
                url: pg_url(),
                pg_schema: Some(format!("t_{}", uuid::Uuid::new_v4().simple())),
                _dir: None,
            },
        }
    }

    /// The place's store, opened beside the gateway as another process would open it.
    pub async fn open_store(&self) -> idlehands_store::Store {
        let mut opts = idlehands_store::StoreOptions::new(self.url.clone());
        opts.pg_schema = self.pg_schema.clone();
        idlehands_store::Store::open_with(opts).await.unwrap()
    }

    pub async fn cleanup(&self) {
        if let Some(schema) = &self.pg_schema {
            let pool = sqlx::PgPool::connect(&self.url).await.unwrap();
            sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
    }
}

/// One mock group priced at 1e-6 USD per input token and 2e-6 per output token, one group
/// `other`, and the master key; `extra` is appended (more settings sections).
pub fn yaml(extra: &str) -> String {
    format!(
        "model_list:
  - model_name: mocky
    litellm_params:
      model: openai/mock-model
      mock_response: Hello from the mock deployment
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000002
  - model_name: other
    litellm_params:
      model: openai/other-model
      mock_response: Hello from the other deployment
general_settings:
  master_key: {MASTER}
{extra}"
    )
}

pub fn config(yaml: &str) -> ProxyConfig {
    let env: HashMap<String, String> = HashMap::new();
    ProxyConfig::from_yaml(yaml, "config.yaml", &move |k: &str| env.get(k).cloned())
        .expect("config loads")
}

pub struct Proxy {
    pub base: String,
    pub store: StoreHandle,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Proxy {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Stops serving, waits for the drain, commits spend rows.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
        self.store.shutdown().await.unwrap();
    }
}

pub fn settings(cfg: &ProxyConfig, place: &Place) -> StoreSettings {
    let mut s = StoreSettings::from_config(cfg, &|_| None).expect("settings");
    s.database_url = place.url.clone();
    s.pg_schema = place.pg_schema.clone();
    s.ledger.reset_tick = Duration::from_millis(200);
    s.ledger.writer.flush_interval = Duration::from_millis(100);
    s
}

pub async fn start_with(cfg: ProxyConfig, settings: StoreSettings) -> Proxy {
    let store = StoreHandle::open(&settings).await.unwrap_or_else(|e| {
        panic!(
            "the store ({}) must open for these tests: {e}",
            settings.backend_name()
        )
    });
    let gw: Gateway = store
        .install(Gateway::builder(cfg))
        .build()
        .expect("gateway");
    let gw = gw.clone().with_routes(store.routes(&gw));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(gw, listener, async move {
        let _ = rx.await;
    }));
    Proxy {
        base: format!("http://{addr}"),
        store,
        stop: Some(tx),
        task: Some(task),
    }
}

pub async fn start(place: &Place, extra_yaml: &str) -> Proxy {
    let cfg = config(&yaml(extra_yaml));
    let s = settings(&cfg, place);
    start_with(cfg, s).await
}

/// A manual clock at the start of the current minute: budget windows, which are aligned to
/// whole seconds, minutes or hours, and the router's rpm/tpm minute all begin exactly there.
pub fn clock_at_minute_start() -> Arc<ManualClock> {
    let now = idlehands_clock::Clock::now_ms(&idlehands_clock::SystemClock);
    Arc::new(ManualClock::at_ms(now - now % 60_000))
}

/// Like `start`, with key expiry, budget windows and the router judged by `clock` (the
/// store's clock, which the gateway shares), which moves only when the test advances it.
pub async fn start_at(place: &Place, extra_yaml: &str, clock: &Arc<ManualClock>) -> Proxy {
    let cfg = config(&yaml(extra_yaml));
    let mut s = settings(&cfg, place);
    s.ledger.clock = clock.clone();
    start_with(cfg, s).await
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

pub async fn send(req: reqwest::RequestBuilder) -> Answer {
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        headers,
        body,
    }
}

pub async fn post(p: &Proxy, path: &str, key: &str, body: Value) -> Answer {
    send(client().post(p.url(path)).bearer_auth(key).json(&body)).await
}

pub async fn get(p: &Proxy, path: &str, key: &str) -> Answer {
    send(client().get(p.url(path)).bearer_auth(key)).await
}

/// `/key/generate` with the master key; returns the plaintext key and the whole answer.
pub async fn generate(p: &Proxy, body: Value) -> (String, Value) {
    let a = post(p, "/key/generate", MASTER, body).await;
    assert_eq!(a.status, 200, "{}", a.body);
    (a.body["key"].as_str().unwrap().to_string(), a.body)
}

/// Makes an internal user (`/user/new`), failing the test if it is refused.
pub async fn internal_user(p: &Proxy, user_id: &str) {
    let a = post(
        p,
        "/user/new",
        MASTER,
        serde_json::json!({"user_id": user_id, "user_role": "internal_user"}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
}

/// Whether two dollar amounts agree to the nano-dollar (sums of floats in the answers).
pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

pub fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Say hi"}]})
}

/// What the call cost, from its `x-litellm-response-cost` header (USD).
pub fn cost_of(a: &Answer) -> f64 {
    a.headers["x-litellm-response-cost"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// The error envelope's parts.
pub fn error_of(a: &Answer) -> (String, String) {
    let e = &a.body["error"];
    assert_eq!(
        e["code"].as_str(),
        Some(a.status.as_str()),
        "envelope code is the status: {}",
        a.body
    );
    (
        e["type"].as_str().unwrap_or_default().to_string(),
        e["message"].as_str().unwrap_or_default().to_string(),
    )
}

/// Spend-log rows (master key view), waiting for at least `n` (rows are committed in
/// batches, after the answer); fails the test when they do not come within 20 s, rather than
/// handing back fewer for an assertion that might pass on no data.
pub async fn spend_rows(p: &Proxy, query: &str, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let a = get(p, &format!("/spend/logs{query}"), MASTER).await;
        assert_eq!(a.status, 200, "{}", a.body);
        let rows = a.body.as_array().cloned().unwrap_or_default();
        if rows.len() >= n {
            return rows;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected at least {n} spend rows for {query:?} within 20 s, got {}",
            rows.len()
        );
        // Polling interval, not a guess at how long the commit takes.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One text column of one row, read straight from `place`'s database: `SELECT {column} FROM
/// {table} WHERE {key_column} = $1` (the table in the place's Postgres schema there).
pub async fn stored_text(
    place: &Place,
    table: &str,
    column: &str,
    key_column: &str,
    key: &str,
) -> String {
    let select = |t: &str| format!("SELECT {column} FROM {t} WHERE {key_column} = $1");
    match &place.pg_schema {
        Some(schema) => {
            let pool = sqlx::PgPool::connect(&place.url).await.unwrap();
            let text: String = sqlx::query_scalar(&select(&format!("{schema}.{table}")))
                .bind(key)
                .fetch_one(&pool)
                .await
                .unwrap();
            pool.close().await;
            text
        }
        None => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", place.url))
                .await
                .unwrap();
            let text: String = sqlx::query_scalar(&select(table))
                .bind(key)
                .fetch_one(&pool)
                .await
                .unwrap();
            pool.close().await;
            text
        }
    }
}

/// Runs one scenario on SQLite and on Postgres.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::store_support::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::store_support::Backend::Postgres).await;
                }
            )*
        }
    };
}

/// Spend rows committed through `store` as the spend writer commits them.
pub async fn write_rows(store: &idlehands_store::Store, rows: Vec<idlehands_store::SpendLogRow>) {
    let batch: Vec<idlehands_store::BatchItem> = rows
        .into_iter()
        .map(|r| idlehands_store::BatchItem::Row(Box::new(r)))
        .collect();
    store.write_batch(&batch, true).await.unwrap();
}
