//! Rows a stop could not commit (the database refuses every insert, as a full disk does) are
//! spilled next to the SQLite file and come back at the next start, exactly once; while rows
//! cannot be written the writer says why (what `/health/readiness` reports).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use idlehands_store::{SpendWriter, Store, WriterConfig};
use serde_json::json;

fn writer_config() -> WriterConfig {
    WriterConfig {
        flush_interval: Duration::from_millis(100),
        ..WriterConfig::default()
    }
}

async fn request_ids(pool: &sqlx::SqlitePool) -> Vec<String> {
    sqlx::query_scalar("SELECT request_id FROM idlehands_spend_logs ORDER BY request_id")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn rows_a_failed_stop_could_not_commit_come_back_at_the_next_start() {
    let db = common::sqlite().await;
    let ledger = common::ledger(&db.store);
    let key = common::generate(&ledger, json!({})).await;
    ledger.shutdown().await.unwrap();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.url))
        .await
        .unwrap();
    sqlx::query(
        "CREATE TRIGGER full_disk BEFORE INSERT ON idlehands_spend_logs \
         BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END",
    )
    .execute(&pool)
    .await
    .unwrap();

    let writer = SpendWriter::start(db.store.clone(), writer_config());
    assert_eq!(writer.problem(), None);
    for (id, spend) in [("r1", 5_000), ("r2", 7_000)] {
        let mut row = common::row(id, spend, 10);
        row.api_key = key.token_id.clone();
        writer.log(row).await;
    }
    let err = writer.flush().await.unwrap_err().to_string();
    assert!(err.contains("refused by the database"), "{err}");
    let problem = writer
        .problem()
        .expect("the writer says rows cannot be written");
    assert!(problem.contains("database or disk is full"), "{problem}");

    let err = writer.shutdown().await.unwrap_err().to_string();
    let spill = db.store.spill_path().unwrap().to_path_buf();
    assert_eq!(
        spill.display().to_string(),
        format!("{}.spill.jsonl", db.url)
    );
    assert!(
        err.contains(&format!("2 spend-log rows spilled to {}", spill.display())),
        "{err}"
    );
    let text = std::fs::read_to_string(&spill).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&spill).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
    }
    assert!(request_ids(&pool).await.is_empty());

    // The disk has room again; the next start replays the file and removes it.
    sqlx::query("DROP TRIGGER full_disk")
        .execute(&pool)
        .await
        .unwrap();
    let writer = SpendWriter::start(db.store.clone(), writer_config());
    writer.flush().await.unwrap();
    assert_eq!(request_ids(&pool).await, ["r1", "r2"]);
    assert!(!spill.exists(), "a replayed spill file is removed");
    assert_eq!(writer.problem(), None);
    let spend = |s: &Store| {
        let s = s.clone();
        let token = key.token_id.clone();
        async move { s.get_key(&token).await.unwrap().unwrap().spend }
    };
    assert_eq!(spend(&db.store).await, 12_000);
    writer.shutdown().await.unwrap();

    // A crash after that commit but before the file went away: the same file replayed again
    // adds nothing.
    std::fs::write(&spill, &text).unwrap();
    let writer = SpendWriter::start(db.store.clone(), writer_config());
    writer.flush().await.unwrap();
    assert_eq!(request_ids(&pool).await, ["r1", "r2"]);
    assert_eq!(spend(&db.store).await, 12_000, "replayed rows counted once");
    assert!(!spill.exists());
    writer.shutdown().await.unwrap();
    pool.close().await;
    db.cleanup().await;
}

/// On Postgres the rows go to the file the options name (the gateway puts it in its state
/// directory), and come back from it at the next start.
#[tokio::test]
async fn postgres_rows_a_failed_stop_could_not_commit_come_back_from_the_state_dir() {
    let dir = tempfile::tempdir().unwrap();
    let spill = dir.path().join("postgres-test.spill.jsonl");
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let open = || {
        let mut opts = idlehands_store::StoreOptions::new(common::pg_url());
        opts.pg_schema = Some(schema.clone());
        opts.pg_spill = Some(spill.clone());
        Store::open_with(opts)
    };
    let store = open().await.expect("Postgres is required for these tests");
    assert_eq!(store.spill_path(), Some(spill.as_path()));
    let pool = sqlx::PgPool::connect(&common::pg_url()).await.unwrap();
    let count = |pool: sqlx::PgPool, schema: String| async move {
        sqlx::query_scalar::<_, i64>(&format!(
            "SELECT COUNT(*) FROM {schema}.idlehands_spend_logs"
        ))
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    for sql in [
        format!(
            "CREATE FUNCTION {schema}.refuse() RETURNS trigger AS $$ BEGIN \
             RAISE EXCEPTION 'could not extend file: No space left on device'; END $$ LANGUAGE plpgsql"
        ),
        format!(
            "CREATE TRIGGER full_disk BEFORE INSERT ON {schema}.idlehands_spend_logs \
             FOR EACH ROW EXECUTE FUNCTION {schema}.refuse()"
        ),
    ] {
        sqlx::query(&sql).execute(&pool).await.unwrap();
    }
    let writer = SpendWriter::start(store.clone(), writer_config());
    for id in ["p1", "p2", "p3"] {
        writer.log(common::row(id, 1_000, 10)).await;
    }
    let err = writer.shutdown().await.unwrap_err().to_string();
    assert!(
        err.contains(&format!("3 spend-log rows spilled to {}", spill.display())),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&spill).unwrap().lines().count(), 3);
    assert_eq!(count(pool.clone(), schema.clone()).await, 0);
    store.close().await;

    sqlx::query(&format!(
        "DROP TRIGGER full_disk ON {schema}.idlehands_spend_logs"
    ))
    .execute(&pool)
    .await
    .unwrap();
    let store = open().await.unwrap();
    let writer = SpendWriter::start(store.clone(), writer_config());
    writer.flush().await.unwrap();
    assert_eq!(count(pool.clone(), schema.clone()).await, 3);
    assert!(!spill.exists(), "a replayed spill file is removed");
    writer.shutdown().await.unwrap();
    store.close().await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}
