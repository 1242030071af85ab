//! Each scenario runs against a fresh SQLite file and a fresh Postgres schema.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::time::Duration;

use idlehands_store::{
    GenerateKeyRequest, GenerateKeyResponse, Ledger, LedgerConfig, SpendLogRow, Store,
    StoreOptions, WriterConfig,
};

pub struct TestDb {
    pub store: Store,
    pub url: String,
    pub pg_schema: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

pub fn pg_url() -> String {
    std::env::var("DATABASE_URL_TEST")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/test".to_owned())
}

pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let url = dir
        .path()
        .join("nested/dir/idlehands.db")
        .display()
        .to_string();
    let store = Store::open(&url).await.unwrap();
    TestDb {
        store,
        url,
        pg_schema: None,
        _dir: Some(dir),
    }
}

pub async fn postgres() -> TestDb {
    let url = pg_url();
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut opts = StoreOptions::new(url.clone());
    opts.pg_schema = Some(schema.clone());
    let store = Store::open_with(opts)
        .await
        .unwrap_or_else(|e| panic!("Postgres at {url} is required for these tests: {e}"));
    TestDb {
        store,
        url,
        pg_schema: Some(schema),
        _dir: None,
    }
}

impl TestDb {
    pub async fn cleanup(self) {
        self.store.close().await;
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

pub fn config(flush_ms: u64) -> LedgerConfig {
    LedgerConfig {
        reset_tick: Duration::from_millis(200),
        writer: WriterConfig {
            flush_interval: Duration::from_millis(flush_ms),
            ..WriterConfig::default()
        },
        ..LedgerConfig::default()
    }
}

pub fn ledger(store: &Store) -> Ledger {
    Ledger::start(store.clone(), config(100))
}

/// A ledger judging expiry and budget windows by `clock`, which a test moves forward instead
/// of sleeping.
pub fn ledger_at(
    store: &Store,
    clock: &std::sync::Arc<idlehands_store::clock::ManualClock>,
) -> Ledger {
    let cfg = LedgerConfig {
        clock: clock.clone(),
        ..config(100)
    };
    Ledger::start(store.clone(), cfg)
}

pub async fn generate(ledger: &Ledger, body: serde_json::Value) -> GenerateKeyResponse {
    let req: GenerateKeyRequest = serde_json::from_value(body).unwrap();
    ledger.generate_key(req, Some("admin")).await.unwrap()
}

pub fn row(request_id: &str, spend_nanos: i64, tokens: i64) -> SpendLogRow {
    let now = chrono::Utc::now();
    SpendLogRow {
        request_id: request_id.to_owned(),
        call_type: "acompletion".to_owned(),
        spend: spend_nanos,
        total_tokens: tokens,
        prompt_tokens: tokens / 2,
        completion_tokens: tokens - tokens / 2,
        start_time: now,
        end_time: now,
        model: "gpt-4o".to_owned(),
        model_group: Some("gpt-4o".to_owned()),
        status: "success".to_owned(),
        ..SpendLogRow::default()
    }
}

/// Generates `mod sqlite` and `mod postgres`, each with one test per scenario
/// `async fn name(store: Store)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let db = $crate::common::sqlite().await;
                    super::$name(db.store.clone()).await;
                    db.cleanup().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let db = $crate::common::postgres().await;
                    super::$name(db.store.clone()).await;
                    db.cleanup().await;
                }
            )*
        }
    };
}
