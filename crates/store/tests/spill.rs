//! Rows a stop could not commit (the database refuses every insert, as a full disk does) are
//! spilled next to the SQLite file and come back at the next start, exactly once; while rows
//! cannot be written the writer says why (what `/health/readiness` reports).
#![allow(clippy::unwrap_used, clippy::expect_used)]

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
