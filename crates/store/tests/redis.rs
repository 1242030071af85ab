//! The fleet mode: two ledgers ("instances") sharing one database and one real Redis.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{config, generate, row};
use idlehands_store::clock::Clock;
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
    fleet_with(store, config(100)).await
}

/// Two instances judging budget windows by one clock that the test moves, as a fleet's
/// instances share the wall clock.
async fn fleet_at(store: &Store, clock: &Arc<idlehands_store::clock::ManualClock>) -> Fleet {
    let cfg = idlehands_store::LedgerConfig {
        clock: clock.clone(),
        ..config(100)
    };
    fleet_with(store, cfg).await
}

async fn fleet_with(store: &Store, cfg: idlehands_store::LedgerConfig) -> Fleet {
    let prefix = format!("idlehands-test:{}:", uuid::Uuid::new_v4().simple());
    let url = redis_url();
    let (a, la) = Ledger::start_with_redis(store.clone(), cfg.clone(), &url, &prefix)
        .await
        .unwrap_or_else(|e| panic!("Redis at {url} is required for these tests: {e}"));
    let (b, lb) = Ledger::start_with_redis(store.clone(), cfg, &url, &prefix)
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
    /// A virtual key's counters hash, as the limiter names it.
    fn state_key(&self, token_id: &str) -> String {
        format!("{}{{{token_id}}}:state", self.prefix)
    }

    async fn stop(self) {
        self.a.shutdown().await.unwrap();
        self.b.shutdown().await.unwrap();
        for l in self.listeners {
            l.abort();
        }
        delete_keys(&self.prefix).await;
    }
}

/// A connection of the test's own, to look at or tamper with what the limiter keeps.
async fn redis_conn() -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(redis_url()).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

async fn delete_keys(prefix: &str) {
    let mut conn = redis_conn().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
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

/// `workers` tasks, on the two instances in turn, each making `calls` calls of `cost` on the
/// key, settled at that cost (after a pause of 0 to 8 ms when `pause`); returns what was spent
/// and how many calls were admitted, once the store's key spend and row count agree.
async fn race(
    f: &Fleet,
    store: &Store,
    key: &idlehands_store::GenerateKeyResponse,
    cost: i64,
    (workers, calls): (usize, usize),
    pause: bool,
) -> (i64, usize) {
    let spent = Arc::new(AtomicI64::new(0));
    let ok = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for w in 0..workers {
        let ledger = if w % 2 == 0 { f.a.clone() } else { f.b.clone() };
        let (k, spent, ok) = (key.key.clone(), spent.clone(), ok.clone());
        tasks.push(tokio::spawn(async move {
            let authed = ledger.authenticate(&k).await.unwrap();
            for i in 0..calls {
                match ledger.reserve(&authed, cost, 10).await {
                    Ok(r) => {
                        if pause {
                            let ms = ((w * calls + i) % 5) as u64 * 2;
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                        }
                        r.settle(row(&format!("fleet-{w}-{i}"), cost, 10)).await;
                        spent.fetch_add(cost, Ordering::SeqCst);
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => assert_eq!(e.error_type(), "budget_exceeded", "{e}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (spent, ok) = (spent.load(Ordering::SeqCst), ok.load(Ordering::SeqCst));
    f.a.writer().flush().await.unwrap();
    f.b.writer().flush().await.unwrap();
    assert_eq!(
        store.get_key(&key.token_id).await.unwrap().unwrap().spend,
        spent
    );
    assert_eq!(store.count_spend_logs().await.unwrap(), ok as i64);
    (spent, ok)
}

async fn budget_holds_across_instances_under_concurrency(store: Store) {
    let f = fleet(&store).await;
    let key = generate(&f.a, json!({"max_budget": 1.0})).await;
    let cost = 3 * CENT;
    let (spent, ok) = race(&f, &store, &key, cost, (200, 1), true).await;
    assert!(spent <= 100 * CENT + cost, "fleet overspent: {spent}");
    assert!(ok >= 33, "budget unusable: {ok}");
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

/// A key's budget window, spent out on one instance, opens again on the other once the
/// shared clock passes the key's reset time, and not a moment before.
async fn budget_window_rolls_over_in_redis(store: Store) {
    let clock = Arc::new(idlehands_store::clock::ManualClock::new());
    let f = fleet_at(&store, &clock).await;
    let key = generate(&f.a, json!({"max_budget": 0.01, "budget_duration": "2s"})).await;
    let reset_at = key.record.budget_reset_at.unwrap();
    let on_a = f.a.authenticate(&key.key).await.unwrap();
    f.a.reserve(&on_a, 0, 0)
        .await
        .unwrap()
        .settle(row("win-1", CENT, 1))
        .await;
    let on_b = f.b.authenticate(&key.key).await.unwrap();
    let refused = |r: Result<(), AccessError>| match r {
        Ok(_) => panic!("admitted before {reset_at} (clock at {})", clock.now()),
        Err(e) => assert_eq!(e.error_type(), "budget_exceeded"),
    };
    refused(f.b.reserve(&on_b, 0, 0).await.map(drop));
    // Just short of the reset time: still spent, whatever the background ticks do meanwhile.
    let short = (reset_at - clock.now() - chrono::Duration::milliseconds(1))
        .to_std()
        .unwrap();
    clock.advance(short);
    tokio::time::sleep(Duration::from_millis(500)).await;
    refused(f.b.reserve(&on_b, 0, 0).await.map(drop));
    clock.advance(Duration::from_millis(1));
    // The reset is judged at admission or by the ledger's reset tick (200 ms here).
    let deadline = Instant::now() + Duration::from_secs(10);
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
    f.stop().await;
}

/// Admissions and settlements travel to Redis in batches (many calls per script call): many
/// concurrent calls on two instances, each settling a different amount, still add up to the
/// nano-dollar in the shared counters, with nothing left reserved (money or, under the key's
/// tpm limit, tokens) or in flight, and the counters hold it after both instances stopped.
async fn batched_settlements_sum_exactly(store: Store) {
    let f = fleet(&store).await;
    let key = generate(
        &f.a,
        json!({"max_budget": 1000.0, "tpm_limit": 100_000_000}),
    )
    .await;
    let mut tasks = Vec::new();
    for i in 0..300i64 {
        let ledger = if i % 2 == 0 { f.a.clone() } else { f.b.clone() };
        let k = key.key.clone();
        tasks.push(tokio::spawn(async move {
            let authed = ledger.authenticate(&k).await.unwrap();
            let r = ledger.reserve(&authed, 5 * CENT, 100).await.unwrap();
            r.settle(row(&format!("batched-{i}"), 1_000 + i, 10)).await;
            1_000 + i
        }));
    }
    let mut expected = 0;
    for t in tasks {
        expected += t.await.unwrap();
    }
    let on_a = f.a.key_info(&key.token_id).await.unwrap();
    let on_b = f.b.key_info(&key.token_id).await.unwrap();
    assert_eq!(on_a.info.record.spend, expected);
    assert_eq!(on_b.info.record.spend, expected);
    assert_eq!((on_a.info.reserved_spend, on_b.info.reserved_spend), (0, 0));

    let mut conn = redis_conn().await;
    let state = f.state_key(&key.token_id);
    let (in_flight, tokens): (i64, i64) = redis::cmd("HMGET")
        .arg(&state)
        .arg("in_flight")
        .arg("reserved_tokens")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!((in_flight, tokens), (0, 0));

    // A third instance after both stopped reads the same counters.
    let Fleet {
        a,
        b,
        listeners,
        prefix,
    } = f;
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    for l in listeners {
        l.abort();
    }
    let (c, lc) = Ledger::start_with_redis(store.clone(), config(100), &redis_url(), &prefix)
        .await
        .unwrap();
    assert_eq!(
        c.key_info(&key.token_id).await.unwrap().info.record.spend,
        expected
    );
    assert_eq!(
        store.get_key(&key.token_id).await.unwrap().unwrap().spend,
        expected
    );
    assert_eq!(store.count_spend_logs().await.unwrap(), 300);
    lc.abort();
    c.shutdown().await.unwrap();
    delete_keys(&prefix).await;
}

/// A call the script fails on (here a key whose shared counters were corrupted) is refused
/// alone: the calls batched with it are answered as usual.
async fn a_failing_call_does_not_fail_its_batch(store: Store) {
    let f = fleet(&store).await;
    // rpm limits: every call goes to Redis (a key with only a budget this large would be
    // leased, its calls admitted here).
    let good = generate(&f.a, json!({"max_budget": 1000.0, "rpm_limit": 100000})).await;
    let bad = generate(&f.a, json!({"max_budget": 1000.0, "rpm_limit": 100000})).await;
    let on_bad = f.a.authenticate(&bad.key).await.unwrap();
    f.a.reserve(&on_bad, CENT, 1)
        .await
        .unwrap()
        .settle(row("before", CENT, 1))
        .await;
    let mut conn = redis_conn().await;
    let _: i64 = redis::cmd("HSET")
        .arg(f.state_key(&bad.token_id))
        .arg("reserved")
        .arg("not a number")
        .query_async(&mut conn)
        .await
        .unwrap();

    let on_good = f.a.authenticate(&good.key).await.unwrap();
    let mut calls = Vec::new();
    for i in 0..40 {
        let (ledger, authed) = (
            f.a.clone(),
            if i == 20 {
                on_bad.clone()
            } else {
                on_good.clone()
            },
        );
        calls.push(tokio::spawn(async move {
            ledger.reserve(&authed, CENT, 1).await.map(|_| ())
        }));
    }
    for (i, c) in calls.into_iter().enumerate() {
        match (i, c.await.unwrap()) {
            (20, r) => assert!(matches!(r, Err(AccessError::Unavailable)), "{r:?}"),
            (_, r) => assert!(r.is_ok(), "call {i}: {r:?}"),
        }
    }
    f.stop().await;
}

/// A batch works on a key's counters in Lua numbers (exact to 2^53) but stores spend with
/// `HINCRBY`: a key whose shared spend is past 2^53 nano-USD keeps every nano of many calls
/// settled together, and the counters are stored as integers Redis can still add to.
async fn spend_past_2_pow_53_stays_exact(store: Store) {
    let f = fleet(&store).await;
    let key = generate(&f.a, json!({})).await;
    let authed = f.a.authenticate(&key.key).await.unwrap();
    f.a.reserve(&authed, 0, 1)
        .await
        .unwrap()
        .settle(row("seed", 1, 1))
        .await;
    let mut conn = redis_conn().await;
    let state = f.state_key(&key.token_id);
    let big: i64 = (1 << 53) + 1;
    let _: i64 = redis::cmd("HSET")
        .arg(&state)
        .arg("spend")
        .arg(big)
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut calls = Vec::new();
    for i in 0..100i64 {
        let ledger = if i % 2 == 0 { f.a.clone() } else { f.b.clone() };
        let k = key.key.clone();
        calls.push(tokio::spawn(async move {
            let authed = ledger.authenticate(&k).await.unwrap();
            let r = ledger.reserve(&authed, CENT, 10).await.unwrap();
            r.settle(row(&format!("big-{i}"), 1 + i % 3, 10)).await;
            1 + i % 3
        }));
    }
    let mut expected = big;
    for c in calls {
        expected += c.await.unwrap();
    }
    let (spend, reserved, in_flight): (String, String, String) = redis::cmd("HMGET")
        .arg(&state)
        .arg("spend")
        .arg("reserved")
        .arg("in_flight")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        (spend.as_str(), reserved.as_str(), in_flight.as_str()),
        (expected.to_string().as_str(), "0", "0")
    );
    assert_eq!(
        f.b.key_info(&key.token_id).await.unwrap().info.record.spend,
        expected
    );
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_spend_past_2_pow_53_stays_exact() {
    let db = common::sqlite().await;
    spend_past_2_pow_53_stays_exact(db.store.clone()).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_batched_settlements_sum_exactly() {
    let db = common::postgres().await;
    batched_settlements_sum_exactly(db.store.clone()).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_a_failing_call_does_not_fail_its_batch() {
    let db = common::sqlite().await;
    a_failing_call_does_not_fail_its_batch(db.store.clone()).await;
    db.cleanup().await;
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

/// Limiters ("instances") on one Redis prefix, used directly rather than through a ledger.
struct Instances {
    db: common::TestDb,
    writer: idlehands_store::SpendWriter,
    prefix: String,
}

impl Instances {
    async fn new() -> Instances {
        let db = common::sqlite().await;
        let writer = idlehands_store::SpendWriter::start(db.store.clone(), config(100).writer);
        let prefix = format!("idlehands-test:{}:", uuid::Uuid::new_v4().simple());
        Instances { db, writer, prefix }
    }

    async fn connect(&self) -> Result<idlehands_store::RedisLimiter, idlehands_store::StoreError> {
        let clock: Arc<dyn Clock> = Arc::new(idlehands_store::clock::SystemClock);
        idlehands_store::RedisLimiter::connect(
            &redis_url(),
            &self.prefix,
            self.writer.clone(),
            400,
            clock,
        )
        .await
    }

    async fn end(self) {
        delete_keys(&self.prefix).await;
        self.db.cleanup().await;
    }
}

fn parallel_key(token: &str) -> idlehands_store::KeyLimits {
    idlehands_store::KeyLimits {
        token: token.to_owned(),
        key_alias: None,
        key_name: "sk-...test".to_owned(),
        spend: 0,
        max_budget: Some(100 * CENT),
        budget_duration: None,
        budget_reset_at: None,
        rpm_limit: None,
        tpm_limit: Some(1_000_000),
        max_parallel_requests: Some(3),
    }
}

async fn counters(state: &str) -> (i64, i64, i64, i64) {
    let mut conn = redis_conn().await;
    let (spend, reserved, tokens, in_flight): (i64, i64, i64, i64) = redis::cmd("HMGET")
        .arg(state)
        .arg(&["spend", "reserved", "reserved_tokens", "in_flight"])
        .query_async(&mut conn)
        .await
        .unwrap();
    (spend, reserved, tokens, in_flight)
}

/// An instance that stops (killed, or cut off from Redis) with calls in flight: once it has
/// sent no heartbeat for the instance timeout, another instance's heartbeat gives back what
/// those calls held (reservation, reserved tokens, parallel slot), so the key is not held
/// forever; the others' holdings stay. If the stopped instance comes back and settles its
/// calls late, their spend counts but nothing is given back twice. Holdings cost no Redis
/// command of their own: they are a field of the key's hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_a_stopped_instances_holdings_are_given_back() {
    use idlehands_store::Limiter;
    let instances = Instances::new().await;
    let prefix = instances.prefix.clone();
    let connect = || instances.connect();
    let timeout = Duration::from_millis(700);
    let killed = connect().await.unwrap();
    let cut_off = connect().await.unwrap();
    let alive = connect().await.unwrap().with_instance_timeout(timeout);
    let key = parallel_key("tok-holdings");
    let state = format!("{prefix}{{tok-holdings}}:state");

    let k1 = killed.admit(&key, 3 * CENT, 100).await.unwrap();
    let k2 = killed.admit(&key, 3 * CENT, 100).await.unwrap();
    let late = cut_off.admit(&key, 2 * CENT, 50).await.unwrap();
    assert!(matches!(
        alive.admit(&key, CENT, 10).await,
        Err(AccessError::RateLimited {
            kind: LimitKind::Parallel,
            ..
        })
    ));
    assert_eq!(counters(&state).await, (0, 8 * CENT, 250, 3));
    // Nothing is given back while everyone's heartbeat is fresh.
    assert_eq!(alive.heartbeat().await.unwrap().instances, 0);

    // Neither of the two sends a heartbeat any more; the alive one does.
    tokio::time::sleep(timeout + Duration::from_millis(300)).await;
    let back = alive.heartbeat().await.unwrap();
    assert_eq!(
        (back.instances, back.calls, back.nanos),
        (2, 3, 8 * CENT),
        "{back:?}"
    );
    assert_eq!(counters(&state).await, (0, 0, 0, 0));
    let mine = alive.admit(&key, 5 * CENT, 40).await.unwrap();
    assert_eq!(counters(&state).await, (0, 5 * CENT, 40, 1));

    // The cut-off instance settles its call after all: its spend counts, the alive
    // instance's reservation stays whole.
    cut_off.settle_counters(late, CENT, 30).await;
    assert_eq!(counters(&state).await, (CENT, 5 * CENT, 40, 1));
    drop((k1, k2));
    alive.settle_counters(mine, 4 * CENT, 35).await;
    assert_eq!(counters(&state).await, (5 * CENT, 0, 0, 0));

    // The stopped instances' holdings and sets are gone (the alive one's stays, at zero),
    // and so are their heartbeats.
    let mut conn = redis_conn().await;
    let fields: Vec<String> = redis::cmd("HKEYS")
        .arg(&state)
        .query_async(&mut conn)
        .await
        .unwrap();
    let held: Vec<&String> = fields.iter().filter(|f| f.starts_with("held:")).collect();
    assert_eq!(held.len(), 1, "{fields:?}");
    let mine: String = redis::cmd("HGET")
        .arg(&state)
        .arg(held[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(mine, "0 0 0");
    let sets: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}holds:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(sets.len(), 1, "{sets:?}");
    let beating: i64 = redis::cmd("ZCARD")
        .arg(format!("{prefix}instances"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(beating, 1);
    drop((killed, cut_off, alive));
    instances.end().await;
}

/// Leases: a key whose only limit is a roomy budget gets a slice of it reserved for this
/// instance after its first call, and the next calls are admitted against the slice without
/// a reservation in Redis each; what they spend turns the slice into spend, a released call
/// costs Redis nothing, and a key change gives the rest back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_leased_calls_are_admitted_here_and_counted_there() {
    use idlehands_store::Limiter;
    let instances = Instances::new().await;
    let prefix = instances.prefix.clone();
    let limiter = instances.connect().await.unwrap();
    let key = idlehands_store::KeyLimits {
        max_budget: Some(100 * 100 * CENT),
        tpm_limit: None,
        max_parallel_requests: None,
        ..parallel_key("tok-lease")
    };
    let state = format!("{prefix}{{tok-lease}}:state");
    let first = limiter.admit(&key, CENT, 10).await.unwrap();
    // The lease (64 calls' worth) arrives with the next batch.
    let lease = 64 * CENT;
    let deadline = Instant::now() + Duration::from_secs(5);
    while limiter.lease_left("tok-lease") != Some(lease) {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            limiter.lease_left("tok-lease")
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(counters(&state).await, (0, CENT + lease, 0, 1));
    let mut leased = Vec::new();
    for _ in 0..10 {
        leased.push(limiter.admit(&key, CENT, 10).await.unwrap());
    }
    assert_eq!(
        counters(&state).await,
        (0, CENT + lease, 0, 1),
        "ten calls admitted against the lease: nothing more reserved in Redis, one slot counted"
    );
    limiter.settle_counters(first, CENT / 2, 5).await;
    for t in leased.drain(..5) {
        limiter.settle_counters(t, CENT / 2, 5).await;
    }
    assert_eq!(
        counters(&state).await,
        (6 * CENT / 2, lease - 5 * CENT / 2, 0, 0),
        "spent: the first call's estimate given back, the leased calls' spend taken from the lease"
    );
    for t in leased.drain(..) {
        limiter.release(t);
    }
    assert_eq!(counters(&state).await.1, lease - 5 * CENT / 2);
    // The key's limits changed: the lease goes back (the give-back is not awaited).
    limiter.reconfigure(
        &idlehands_store::KeyLimits {
            max_budget: Some(50 * 100 * CENT),
            ..key.clone()
        },
        false,
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while counters(&state).await.1 != 0 {
        assert!(Instant::now() < deadline, "{:?}", counters(&state).await);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(counters(&state).await, (6 * CENT / 2, 0, 0, 0));
    drop(limiter);
    instances.end().await;
}

/// With leases in play (a budget with room for thousands of calls), two instances racing
/// for it still spend at most the budget and one call, and every admitted call is a row.
async fn leased_budget_holds_across_instances(store: Store) {
    let f = fleet(&store).await;
    let key = generate(&f.a, json!({"max_budget": 1.0})).await;
    let cost = CENT / 100;
    let (spent, ok) = race(&f, &store, &key, cost, (16, 700), false).await;
    assert!(spent <= 100 * CENT + cost, "fleet overspent: {spent}");
    assert!(ok >= 9_990, "budget unusable: {ok} calls of 10,000");
    let mut conn = redis_conn().await;
    let shared: i64 = redis::cmd("HGET")
        .arg(f.state_key(&key.token_id))
        .arg("spend")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        shared, spent,
        "the shared counter has every leased call's spend"
    );
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_leased_budget_holds_across_instances() {
    let db = common::sqlite().await;
    leased_budget_holds_across_instances(db.store.clone()).await;
    db.cleanup().await;
}

/// A lease is a holding like a call's: when its instance stops sending heartbeats, another
/// instance gives it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_a_stopped_instances_lease_is_given_back() {
    use idlehands_store::Limiter;
    let instances = Instances::new().await;
    let prefix = instances.prefix.clone();
    let connect = || instances.connect();
    let timeout = Duration::from_millis(700);
    let stopped = connect().await.unwrap();
    let alive = connect().await.unwrap().with_instance_timeout(timeout);
    let key = idlehands_store::KeyLimits {
        max_budget: Some(100 * 100 * CENT),
        tpm_limit: None,
        max_parallel_requests: None,
        ..parallel_key("tok-lease-stop")
    };
    let state = format!("{prefix}{{tok-lease-stop}}:state");
    let first = stopped.admit(&key, CENT, 0).await.unwrap();
    stopped.settle_counters(first, CENT, 0).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while stopped.lease_left("tok-lease-stop") != Some(64 * CENT) {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let in_flight = stopped.admit(&key, CENT, 0).await.unwrap();
    assert_eq!(counters(&state).await, (CENT, 64 * CENT, 0, 0));
    tokio::time::sleep(timeout + Duration::from_millis(300)).await;
    let back = alive.heartbeat().await.unwrap();
    assert_eq!((back.instances, back.calls, back.nanos), (1, 0, 64 * CENT));
    assert_eq!(counters(&state).await, (CENT, 0, 0, 0));
    drop((in_flight, stopped, alive));
    instances.end().await;
}

/// A stopping instance gives its leases back before it goes, instead of leaving them to the
/// others' heartbeats.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_a_stopping_instance_gives_its_leases_back() {
    let db = common::sqlite().await;
    let f = fleet(&db.store).await;
    let key = generate(&f.a, json!({"max_budget": 100.0})).await;
    let authed = f.a.authenticate(&key.key).await.unwrap();
    // A call asks for the lease. Under heavy load the lease may be granted and, idle for
    // LEASE_IDLE (2 s) before this test looks, given back: then another call asks again.
    let state = f.state_key(&key.token_id);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut calls = 0;
    let mut next_call = Instant::now();
    loop {
        if Instant::now() >= next_call {
            calls += 1;
            f.a.reserve(&authed, CENT, 1)
                .await
                .unwrap()
                .settle(row(&format!("call-{calls}"), CENT, 1))
                .await;
            next_call = Instant::now() + Duration::from_secs(1);
        }
        if counters(&state).await.1 == 64 * CENT {
            break;
        }
        assert!(Instant::now() < deadline, "{:?}", counters(&state).await);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f.a.shutdown().await.unwrap();
    assert_eq!(counters(&state).await, (calls * CENT, 0, 0, 0));
    f.stop().await;
    db.cleanup().await;
}
