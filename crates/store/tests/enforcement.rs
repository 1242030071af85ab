//! The request path: authentication, model access, budgets under concurrency, budget windows,
//! rate limits and cache invalidation, with LiteLLM's error types, statuses and texts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use common::{config, generate, ledger, row};
use idlehands_store::keygen::hash_key;
use idlehands_store::{
    AccessError, ApiError, BlockKeyRequest, Ledger, LedgerConfig, LimitKind, SpendLogsQuery,
    SpendLogsResponse, Store, UpdateKeyRequest,
};
use serde_json::json;

const CENT: i64 = 10_000_000;

async fn unknown_key_is_401_with_litellm_text(store: Store) {
    let ledger = ledger(&store);
    let err = ledger
        .authenticate("sk-unknown-key-abcd")
        .await
        .unwrap_err();
    assert_eq!((err.status(), err.error_type()), (401, "auth_error"));
    let hash = hash_key("sk-unknown-key-abcd");
    assert_eq!(
        err.message(),
        format!(
            "Authentication Error, Invalid proxy server token passed. Received API Key = sk-...abcd, Key Hash (Token) ={hash}. Unable to find token in cache or `LiteLLM_VerificationTokenTable`"
        )
    );
    // Remembered as unknown, but creating it makes it valid at once.
    let err = ledger
        .authenticate("sk-unknown-key-abcd")
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("Unable to find token in cache"), "{err:?}");
    generate(&ledger, json!({"key": "sk-unknown-key-abcd"})).await;
    ledger.authenticate("sk-unknown-key-abcd").await.unwrap();
    ledger.shutdown().await.unwrap();
}

async fn expired_key_is_401_expired_key(store: Store) {
    let ledger = ledger(&store);
    let key = generate(&ledger, json!({"duration": "1s"})).await;
    ledger.authenticate(&key.key).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let err = ledger.authenticate(&key.key).await.unwrap_err();
    assert_eq!((err.status(), err.error_type()), (401, "expired_key"));
    assert!(
        err.message()
            .starts_with("Authentication Error - Expired Key. Key Expiry time "),
        "{err}"
    );
    assert!(err.message().contains(" and current time "), "{err}");
    ledger.shutdown().await.unwrap();
}

async fn model_outside_the_key_list_is_403(store: Store) {
    let ledger = ledger(&store);
    let key = generate(&ledger, json!({"models": ["gpt-4o", "anthropic/*"]})).await;
    let authed = ledger.authenticate(&key.key).await.unwrap();
    authed.check_model("gpt-4o").unwrap();
    authed.check_model("anthropic/claude-opus-4-6").unwrap();
    let err = authed.check_model("gpt-3.5-turbo").unwrap_err();
    assert_eq!(
        (err.status(), err.error_type()),
        (403, "key_model_access_denied")
    );
    assert_eq!(
        err.message(),
        "The requested model 'gpt-3.5-turbo' is not available for this API key, or the model name is invalid. Check the models available to you and try again."
    );
    // Access groups are the proxy's knowledge.
    authed
        .check_model_with("gpt-3.5-turbo", |entry, m| {
            entry == "gpt-4o" && m.starts_with("gpt-")
        })
        .unwrap();
    let open = generate(&ledger, json!({})).await;
    ledger
        .authenticate(&open.key)
        .await
        .unwrap()
        .check_model("anything")
        .unwrap();
    ledger.shutdown().await.unwrap();
}

async fn budget_exceeded_is_422_with_litellm_text(store: Store) {
    let ledger = ledger(&store);
    let key = generate(&ledger, json!({"key_alias": "small", "max_budget": 0.05})).await;
    let authed = ledger.authenticate(&key.key).await.unwrap();
    let r = ledger.reserve(&authed, 0, 0).await.unwrap();
    let settled = r.settle(row("b-1", 5 * CENT, 10)).await;
    assert_eq!(settled.spend_header(), "0.05");
    assert_eq!(settled.max_budget_header().as_deref(), Some("0.05"));
    let err = ledger.reserve(&authed, 0, 0).await.err().unwrap();
    assert_eq!((err.status(), err.error_type()), (422, "budget_exceeded"));
    assert_eq!(
        err.message(),
        format!(
            "Budget has been exceeded! Key=small ({}) Current cost: 0.05, Max budget: 0.05",
            key.record.key_name
        )
    );
    // Raising the budget takes effect at once (cache invalidated).
    let req: UpdateKeyRequest =
        serde_json::from_value(json!({"key": key.key, "max_budget": 1.0})).unwrap();
    ledger.update_key(req, None).await.unwrap();
    let authed = ledger.authenticate(&key.key).await.unwrap();
    ledger.reserve(&authed, 0, 0).await.unwrap();
    ledger.shutdown().await.unwrap();

    // The status is configurable (litellm_settings.budget_exceeded_status_code).
    let ledger = Ledger::start(
        store.clone(),
        LedgerConfig {
            budget_exceeded_status: 429,
            ..config(100)
        },
    );
    let key = generate(&ledger, json!({"max_budget": 0.0})).await;
    let authed = ledger.authenticate(&key.key).await.unwrap();
    let err = ledger.reserve(&authed, 0, 0).await.err().unwrap();
    assert_eq!((err.status(), err.error_type()), (429, "budget_exceeded"));
    assert!(
        err.message()
            .starts_with("Budget has been exceeded! Key=None (sk-..."),
        "{err}"
    );
    ledger.shutdown().await.unwrap();
}

/// LiteLLM checks spend before the call and adds cost after, so concurrent requests all pass
/// the check and overspend. Reservations bound the overshoot to one request's cost.
async fn two_hundred_concurrent_requests_overspend_by_at_most_one(store: Store) {
    let ledger = ledger(&store);
    let budget = 100 * CENT; // $1.00
    let cost = 3 * CENT; // $0.03 a request
    let key = generate(&ledger, json!({"max_budget": 1.0})).await;
    let authed = ledger.authenticate(&key.key).await.unwrap();
    let ok = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let spent = Arc::new(AtomicI64::new(0));
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (ledger, authed, ok, refused, spent) = (
            ledger.clone(),
            authed.clone(),
            ok.clone(),
            refused.clone(),
            spent.clone(),
        );
        tasks.push(tokio::spawn(async move {
            match ledger.reserve(&authed, cost, 100).await {
                Ok(r) => {
                    tokio::time::sleep(Duration::from_millis((i % 7) as u64 * 3)).await;
                    r.settle(row(&format!("c-{i}"), cost, 100)).await;
                    ok.fetch_add(1, Ordering::SeqCst);
                    spent.fetch_add(cost, Ordering::SeqCst);
                }
                Err(e) => {
                    assert_eq!(e.error_type(), "budget_exceeded", "{e}");
                    refused.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let spent = spent.load(Ordering::SeqCst);
    let ok = ok.load(Ordering::SeqCst);
    assert_eq!(ok + refused.load(Ordering::SeqCst), 200);
    assert!(
        spent <= budget + cost,
        "overspent: {spent} > {budget} + {cost}"
    );
    assert!(
        ok as i64 >= budget / cost,
        "the budget was usable: only {ok} ran"
    );
    assert_eq!(ledger.key_spend(&key.token_id), Some(spent));
    // The database agrees with the logs and memory after the writer commits.
    ledger.writer().flush().await.unwrap();
    assert_eq!(
        store.get_key(&key.token_id).await.unwrap().unwrap().spend,
        spent
    );
    let SpendLogsResponse::Rows(rows) = store
        .spend_logs(&SpendLogsQuery {
            api_key: Some(key.key.clone()),
            ..SpendLogsQuery::default()
        })
        .await
        .unwrap()
    else {
        panic!("rows expected")
    };
    assert_eq!(rows.len(), ok);
    assert_eq!(rows.iter().map(|r| r.spend).sum::<i64>(), spent);
    ledger.shutdown().await.unwrap();
}

async fn dropped_reservation_gives_the_budget_back(store: Store) {
    let ledger = ledger(&store);
    let key = generate(
        &ledger,
        json!({"max_budget": 0.10, "max_parallel_requests": 1}),
    )
    .await;
    let authed = ledger.authenticate(&key.key).await.unwrap();
    let held = ledger.reserve(&authed, 10 * CENT, 0).await.unwrap();
    let err = ledger.reserve(&authed, 0, 0).await.err().unwrap();
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
    drop(held); // client went away
    let r = ledger.reserve(&authed, 10 * CENT, 0).await.unwrap();
    r.settle(row("d-1", 0, 0)).await;
    assert_eq!(ledger.key_spend(&key.token_id), Some(0));
    ledger.shutdown().await.unwrap();
}

async fn rate_limits_are_429_with_retry_after(store: Store) {
    let ledger = ledger(&store);
    let key = generate(&ledger, json!({"rpm_limit": 2})).await;
    let authed = ledger.authenticate(&key.key).await.unwrap();
    for i in 0..2u64 {
        let r = ledger.reserve(&authed, 0, 0).await.unwrap();
        let left = (1 - i).to_string();
        assert_eq!(
            r.rate_limit_headers(),
            vec![
                ("x-ratelimit-api_key-remaining-requests", left),
                ("x-ratelimit-api_key-limit-requests", "2".to_owned()),
            ]
        );
        r.settle(row(&format!("r-{i}"), 0, 1)).await;
    }
    let err = ledger.reserve(&authed, 0, 0).await.err().unwrap();
    assert_eq!((err.status(), err.error_type()), (429, "rate_limit_error"));
    let retry = err.retry_after().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let msg = err.message();
    assert!(
        msg.starts_with(&format!(
            "Rate limit exceeded for api_key: {}. Limit type: requests. Current limit: 2, Remaining: 0. Limit resets at: ",
            key.token_id
        )),
        "{msg}"
    );
    assert!(msg.ends_with(" UTC"), "{msg}");

    let key = generate(&ledger, json!({"tpm_limit": 100})).await;
    let authed = ledger.authenticate(&key.key).await.unwrap();
    ledger
        .reserve(&authed, 0, 10)
        .await
        .unwrap()
        .settle(row("t-1", 0, 150))
        .await;
    let err = ledger.reserve(&authed, 0, 10).await.err().unwrap();
    assert!(
        matches!(
            err,
            AccessError::RateLimited {
                kind: LimitKind::Tokens,
                limit: 100,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.message().contains("Limit type: tokens"), "{err}");

    let key = generate(&ledger, json!({"max_parallel_requests": 2})).await;
    let authed = ledger.authenticate(&key.key).await.unwrap();
    let a = ledger.reserve(&authed, 0, 0).await.unwrap();
    let _b = ledger.reserve(&authed, 0, 0).await.unwrap();
    let err = ledger.reserve(&authed, 0, 0).await.err().unwrap();
    assert_eq!(err.status(), 429);
    assert!(
        err.message()
            .contains("Limit type: max_parallel_requests. Current limit: 2"),
        "{err}"
    );
    a.settle(row("p-1", 0, 0)).await;
    ledger.reserve(&authed, 0, 0).await.unwrap();
    ledger.shutdown().await.unwrap();
}

async fn budget_window_resets_on_time(store: Store) {
    let ledger = ledger(&store);
    let key = generate(
        &ledger,
        json!({"max_budget": 0.01, "budget_duration": "2s"}),
    )
    .await;
    let authed = ledger.authenticate(&key.key).await.unwrap();
    let reset_at = key.record.budget_reset_at.unwrap();
    let until = reset_at - Utc::now();
    assert!(
        until > chrono::Duration::zero() && until <= chrono::Duration::seconds(2),
        "{until}"
    );
    let info = serde_json::to_value(ledger.key_info(&key.key).await.unwrap()).unwrap();
    assert!(info["info"]["budget_reset_at"].is_string());
    ledger
        .reserve(&authed, 0, 0)
        .await
        .unwrap()
        .settle(row("w-1", CENT, 1))
        .await;
    // Spent: refused until the window rolls over, then allowed again right away.
    let mut readmitted = None;
    let deadline = Instant::now() + Duration::from_secs(8);
    while Instant::now() < deadline {
        match ledger.reserve(&authed, 0, 0).await {
            Ok(r) => {
                readmitted = Some(Utc::now());
                drop(r);
                break;
            }
            Err(e) => assert_eq!(e.error_type(), "budget_exceeded"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let readmitted = readmitted.expect("the budget never reset");
    assert!(
        readmitted >= reset_at,
        "reset early: {readmitted} < {reset_at}"
    );
    assert!(
        readmitted - reset_at < chrono::Duration::seconds(2),
        "reset late: {readmitted} vs {reset_at}"
    );
    // The database follows: spend 0 and the next boundary.
    ledger.writer().flush().await.unwrap();
    let stored = store.get_key(&key.token_id).await.unwrap().unwrap();
    assert_eq!(stored.spend, 0);
    assert!(stored.budget_reset_at.unwrap() > reset_at);
    ledger.shutdown().await.unwrap();
}

async fn idle_keys_reset_in_the_background(store: Store) {
    let ledger = ledger(&store);
    let key = generate(&ledger, json!({"spend": 3.0, "budget_duration": "1s"})).await;
    let first_reset = key.record.budget_reset_at.unwrap();
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let stored = store.get_key(&key.token_id).await.unwrap().unwrap();
        if stored.spend == 0 {
            assert!(stored.budget_reset_at.unwrap() > first_reset);
            break;
        }
        assert!(Instant::now() < deadline, "idle key never reset");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ledger.shutdown().await.unwrap();
}

async fn changes_by_another_instance_arrive_after_the_cache_ttl(store: Store) {
    let admin = ledger(&store);
    let edge = Ledger::start(
        store.clone(),
        LedgerConfig {
            cache_ttl: Duration::from_millis(200),
            ..config(100)
        },
    );
    let key = generate(&admin, json!({})).await;
    edge.authenticate(&key.key).await.unwrap();
    admin
        .set_blocked(
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
        match edge.authenticate(&key.key).await {
            Err(AccessError::Blocked) => break,
            Ok(_) => assert!(
                Instant::now() < deadline,
                "block never reached the other instance"
            ),
            Err(e) => panic!("{e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Invalidation hooks see every change made here (for pub/sub between instances).
    let seen = Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
    let s = seen.clone();
    admin.on_invalidate(move |t| s.lock().push(t.to_owned()));
    admin
        .set_blocked(
            BlockKeyRequest {
                key: key.key.clone(),
            },
            false,
            None,
        )
        .await
        .unwrap();
    assert_eq!(*seen.lock(), vec![key.token_id.clone()]);
    edge.invalidate(&key.token_id);
    edge.authenticate(&key.key).await.unwrap();
    admin.shutdown().await.unwrap();
    edge.shutdown().await.unwrap();
}

async fn cached_keys_keep_working_while_the_database_is_down(store: Store) {
    let ledger = ledger(&store);
    let key = generate(&ledger, json!({"max_budget": 1.0, "models": ["gpt-4o"]})).await;
    let other = generate(&ledger, json!({})).await;
    let fresh = Ledger::start(store.clone(), config(100));
    assert_eq!(fresh.warm().await.unwrap(), 2);
    store.close().await;
    // Warmed keys: authentication, model checks, reservations and settling need no database.
    let authed = fresh.authenticate(&key.key).await.unwrap();
    authed.check_model("gpt-4o").unwrap();
    let settled = fresh
        .reserve(&authed, CENT, 10)
        .await
        .unwrap()
        .settle(row("offline-1", CENT, 10))
        .await;
    assert_eq!(settled.key_spend, CENT);
    fresh.authenticate(&other.key).await.unwrap();
    // An unknown key cannot be checked: 503, not a wrong 401.
    let err = ledger.authenticate("sk-never-seen-1234").await.unwrap_err();
    assert_eq!(err.status(), 503);
    assert!(matches!(err, AccessError::Unavailable));
    let _ = tokio::time::timeout(Duration::from_secs(10), fresh.shutdown()).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), ledger.shutdown()).await;
}

on_both_backends!(
    cached_keys_keep_working_while_the_database_is_down,
    unknown_key_is_401_with_litellm_text,
    expired_key_is_401_expired_key,
    model_outside_the_key_list_is_403,
    budget_exceeded_is_422_with_litellm_text,
    two_hundred_concurrent_requests_overspend_by_at_most_one,
    dropped_reservation_gives_the_budget_back,
    rate_limits_are_429_with_retry_after,
    budget_window_resets_on_time,
    idle_keys_reset_in_the_background,
    changes_by_another_instance_arrive_after_the_cache_ttl,
);
