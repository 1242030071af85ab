//! The fleet mode: two ledgers ("instances") sharing one database and one real Redis.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{config, generate, row};
use idlehands_store::{
    AccessError, ApiError, BlockKeyRequest, Ledger, LimitKind, Store, UpdateKeyRequest,
};
use serde_json::json;
use tokio::task::JoinHandle;

const CENT: i64 = 10_000_000;

fn redis_url() -> String {
    std::env::var("REDIS_URL_TEST").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

struct Fleet {
    a: Ledger,
    b: Ledger,
    listeners: Vec<JoinHandle<()>>,
    prefix: String,
}

async fn fleet(store: &Store) -> Fleet {
    let prefix = format!("idlehands-test:{}:", uuid::Uuid::new_v4().simple());
    let url = redis_url();
    let (a, la) = Ledger::start_with_redis(store.clone(), config(100), &url, &prefix)
        .await
        .unwrap_or_else(|e| panic!("Redis at {url} is required for these tests: {e}"));
    let (b, lb) = Ledger::start_with_redis(store.clone(), config(100), &url, &prefix)
        .await
        .unwrap();
    Fleet {
        a,
        b,
        listeners: vec![la, lb],
        prefix,
    }
}

impl Fleet {
    async fn stop(self) {
        self.a.shutdown().await.unwrap();
        self.b.shutdown().await.unwrap();
        for l in self.listeners {
            l.abort();
        }
        let client = redis::Client::open(redis_url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query_async(&mut conn)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: i64 = redis::cmd("DEL")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    }
}

async fn budget_holds_across_instances_under_concurrency(store: Store) {
    let f = fleet(&store).await;
    let key = generate(&f.a, json!({"max_budget": 1.0})).await;
    let cost = 3 * CENT;
    let spent = Arc::new(AtomicI64::new(0));
    let ok = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..200 {
        let ledger = if i % 2 == 0 { f.a.clone() } else { f.b.clone() };
        let (k, spent, ok) = (key.key.clone(), spent.clone(), ok.clone());
        tasks.push(tokio::spawn(async move {
            let authed = ledger.authenticate(&k).await.unwrap();
            match ledger.reserve(&authed, cost, 10).await {
                Ok(r) => {
                    tokio::time::sleep(Duration::from_millis((i % 5) as u64 * 2)).await;
                    r.settle(row(&format!("fleet-{i}"), cost, 10)).await;
                    spent.fetch_add(cost, Ordering::SeqCst);
                    ok.fetch_add(1, Ordering::SeqCst);
                }
                Err(e) => assert_eq!(e.error_type(), "budget_exceeded", "{e}"),
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let spent = spent.load(Ordering::SeqCst);
    assert!(spent <= 100 * CENT + cost, "fleet overspent: {spent}");
    assert!(
        ok.load(Ordering::SeqCst) >= 33,
        "budget unusable: {}",
        ok.load(Ordering::SeqCst)
    );
    f.a.writer().flush().await.unwrap();
    f.b.writer().flush().await.unwrap();
    assert_eq!(
        store.get_key(&key.token_id).await.unwrap().unwrap().spend,
        spent
    );
    assert_eq!(
        store.count_spend_logs().await.unwrap(),
        ok.load(Ordering::SeqCst) as i64
    );
    f.stop().await;
}

async fn rate_limits_are_shared(store: Store) {
    let f = fleet(&store).await;
    let key = generate(&f.a, json!({"rpm_limit": 3, "max_parallel_requests": 1})).await;
    let on_a = f.a.authenticate(&key.key).await.unwrap();
    let on_b = f.b.authenticate(&key.key).await.unwrap();
    let held = f.a.reserve(&on_a, 0, 0).await.unwrap();
    assert_eq!(
        held.rate_limit_headers(),
        vec![
            ("x-ratelimit-api_key-remaining-requests", "2".to_owned()),
            ("x-ratelimit-api_key-limit-requests", "3".to_owned()),
        ]
    );
    let err = f.b.reserve(&on_b, 0, 0).await.err().unwrap();
    assert!(
        matches!(
            err,
            AccessError::RateLimited {
                kind: LimitKind::Parallel,
                ..
            }
        ),
        "{err}"
    );
    drop(held); // released asynchronously
    let deadline = Instant::now() + Duration::from_secs(5);
    let second = loop {
        match f.b.reserve(&on_b, 0, 0).await {
            Ok(r) => break r,
            Err(e) => {
                assert!(
                    matches!(
                        e,
                        AccessError::RateLimited {
                            kind: LimitKind::Parallel,
                            ..
                        }
                    ),
                    "{e}"
                );
                assert!(
                    Instant::now() < deadline,
                    "the released slot never came back"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    second.settle(row("rl-2", 0, 0)).await;
    f.a.reserve(&on_a, 0, 0)
        .await
        .unwrap()
        .settle(row("rl-3", 0, 0))
        .await;
    let err = f.b.reserve(&on_b, 0, 0).await.err().unwrap();
    assert_eq!(err.status(), 429);
    assert!(
        matches!(
            err,
            AccessError::RateLimited {
                kind: LimitKind::Requests,
                limit: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!((1..=60).contains(&err.retry_after().unwrap()));

    let key = generate(&f.a, json!({"tpm_limit": 100})).await;
    let on_a = f.a.authenticate(&key.key).await.unwrap();
    let on_b = f.b.authenticate(&key.key).await.unwrap();
    let r = f.a.reserve(&on_a, 0, 30).await.unwrap();
    assert_eq!(
        r.rate_limit_headers(),
        vec![
            ("x-ratelimit-api_key-remaining-tokens", "70".to_owned()),
            ("x-ratelimit-api_key-limit-tokens", "100".to_owned()),
        ]
    );
    r.settle(row("tpm-1", 0, 120)).await;
    let err = f.b.reserve(&on_b, 0, 0).await.err().unwrap();
    assert!(
        matches!(
            err,
            AccessError::RateLimited {
                kind: LimitKind::Tokens,
                ..
            }
        ),
        "{err}"
    );
    f.stop().await;
}

async fn key_changes_reach_other_instances_over_pubsub(store: Store) {
    let f = fleet(&store).await;
    let key = generate(&f.a, json!({"max_budget": 0.01})).await;
    f.b.authenticate(&key.key).await.unwrap(); // cached on b for 60 s
    f.a.set_blocked(
        BlockKeyRequest {
            key: key.key.clone(),
        },
        true,
        None,
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match f.b.authenticate(&key.key).await {
            Err(AccessError::Blocked) => break,
            Ok(_) => assert!(Instant::now() < deadline, "b never heard of the block"),
            Err(e) => panic!("{e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f.a.set_blocked(
        BlockKeyRequest {
            key: key.key.clone(),
        },
        false,
        None,
    )
    .await
    .unwrap();
    // Spend on a counts on b; raising the budget on a frees b.
    let on_a = loop {
        if let Ok(k) = f.a.authenticate(&key.key).await {
            break k;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    f.a.reserve(&on_a, 0, 0)
        .await
        .unwrap()
        .settle(row("ps-1", CENT, 1))
        .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let on_b = loop {
        match f.b.authenticate(&key.key).await {
            Ok(k) => break k,
            Err(_) => assert!(Instant::now() < deadline, "b never heard of the unblock"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let err = f.b.reserve(&on_b, 0, 0).await.err().unwrap();
    assert_eq!(err.error_type(), "budget_exceeded");
    let req: UpdateKeyRequest =
        serde_json::from_value(json!({"key": key.key, "max_budget": 5.0})).unwrap();
    f.a.update_key(req, None).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let on_b = f.b.authenticate(&key.key).await.unwrap();
        if f.b.reserve(&on_b, 0, 0).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "b never saw the new budget");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f.stop().await;
}

async fn budget_window_rolls_over_in_redis(store: Store) {
    let f = fleet(&store).await;
    let key = generate(&f.a, json!({"max_budget": 0.01, "budget_duration": "2s"})).await;
    let reset_at = key.record.budget_reset_at.unwrap();
    let on_a = f.a.authenticate(&key.key).await.unwrap();
    f.a.reserve(&on_a, 0, 0)
        .await
        .unwrap()
        .settle(row("win-1", CENT, 1))
        .await;
    let on_b = f.b.authenticate(&key.key).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        match f.b.reserve(&on_b, 0, 0).await {
            Ok(_) => break,
            Err(e) => {
                assert_eq!(e.error_type(), "budget_exceeded");
                assert!(Instant::now() < deadline, "never reset");
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let now = chrono::Utc::now();
    assert!(
        now >= reset_at && now - reset_at < chrono::Duration::seconds(2),
        "{now} vs {reset_at}"
    );
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_budget_holds_across_instances_under_concurrency() {
    let db = common::sqlite().await;
    budget_holds_across_instances_under_concurrency(db.store.clone()).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_budget_holds_across_instances_on_postgres() {
    let db = common::postgres().await;
    budget_holds_across_instances_under_concurrency(db.store.clone()).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_rate_limits_are_shared() {
    let db = common::sqlite().await;
    rate_limits_are_shared(db.store.clone()).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_key_changes_reach_other_instances_over_pubsub() {
    let db = common::sqlite().await;
    key_changes_reach_other_instances_over_pubsub(db.store.clone()).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_budget_window_rolls_over() {
    let db = common::sqlite().await;
    budget_window_rolls_over_in_redis(db.store.clone()).await;
    db.cleanup().await;
}
