//! `/key/*` operations: LiteLLM's fields, texts and statuses, validation, and all-or-nothing
//! writes, on SQLite and Postgres.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use chrono::{Datelike, Timelike, Utc};
use common::{generate, ledger};
use idlehands_store::keygen::hash_key;
use idlehands_store::{
    AccessError, ApiError, BlockKeyRequest, DeleteKeysRequest, GenerateKeyRequest, KeyListEntry,
    KeyListQuery, KeyStatus, Ledger, LedgerConfig, RegenerateKeyRequest, Store, StoreError,
    UpdateKeyRequest, parse_json,
};
use serde_json::json;

fn bad_request(err: StoreError) -> (String, Option<String>) {
    assert_eq!(err.status(), 400, "{err}");
    assert_eq!(err.error_type(), "bad_request_error");
    (err.message(), err.param().map(str::to_owned))
}

async fn seed_curl_key_gets_monthly_budget(store: Store) {
    let ledger = ledger(&store);
    let req: GenerateKeyRequest =
        parse_json(br#"{"key_alias":"idlehands","max_budget":50.00,"budget_duration":"monthly"}"#)
            .unwrap();
    let out = ledger.generate_key(req, Some("admin")).await.unwrap();
    let body = serde_json::to_value(&out).unwrap();
    assert!(
        out.key.starts_with("sk-") && out.key.len() == 25,
        "{}",
        out.key
    );
    assert_eq!(body["token_id"], json!(hash_key(&out.key)));
    assert_eq!(
        body["key_name"],
        json!(format!("sk-...{}", &out.key[out.key.len() - 4..]))
    );
    assert_eq!(body["key_alias"], json!("idlehands"));
    assert_eq!(body["max_budget"], json!(50.0));
    assert_eq!(body["spend"], json!(0.0));
    assert_eq!(body["budget_duration"], json!("monthly"));
    // Times as Python's isoformat, like LiteLLM: 1st of a month, midnight, +00:00.
    let reset_text = body["budget_reset_at"].as_str().unwrap();
    assert!(reset_text.ends_with("-01T00:00:00+00:00"), "{reset_text}");
    assert!(body["created_at"].as_str().unwrap().ends_with("+00:00"));
    assert_eq!(body["expires"], json!(null));
    assert_eq!(body["models"], json!([]));
    assert_eq!(body["blocked"], json!(false));
    assert_eq!(body["created_by"], json!("admin"));
    // LiteLLM copies the hash into `token` too (never the plaintext, as old versions did).
    assert_eq!(body["token"], body["token_id"]);
    // "monthly" is 30d: the budget resets on the 1st of next month, at midnight UTC.
    let reset = out.record.budget_reset_at.unwrap();
    let now = Utc::now();
    assert_eq!((reset.day(), reset.hour(), reset.minute()), (1, 0, 0));
    assert!(reset > now && reset - now <= chrono::Duration::days(32));

    // The key works on the request path, and its info shows it.
    let authed = ledger.authenticate(&out.key).await.unwrap();
    assert_eq!(authed.token, out.token_id);
    let info = ledger.key_info(&out.key).await.unwrap();
    let info_json = serde_json::to_value(&info).unwrap();
    assert_eq!(info_json["key"], json!(out.key));
    assert_eq!(info_json["info"]["status"], json!("active"));
    assert_eq!(info_json["info"]["max_budget"], json!(50.0));
    assert_eq!(info_json["info"]["key_alias"], json!("idlehands"));
    // By hash too.
    let by_hash = ledger.key_info(&out.token_id).await.unwrap();
    assert_eq!(by_hash.info.record, info.info.record);
    ledger.shutdown().await.unwrap();
}

async fn generate_echoes_fields_and_custom_keys(store: Store) {
    let ledger = ledger(&store);
    let out = generate(
        &ledger,
        json!({
            "key": "sk-my-custom-key-1",
            "duration": "30d",
            "models": ["gpt-4o", "claude-*"],
            "metadata": {"team": "red"},
            "rpm_limit": 10, "tpm_limit": 1000, "max_parallel_requests": 2,
            "user_id": "u1", "team_id": "t1", "soft_budget": 1.5, "spend": 0.25,
            "unknown_litellm_field": {"ignored": true}
        }),
    )
    .await;
    assert_eq!(out.key, "sk-my-custom-key-1");
    assert_eq!(out.record.key_name, "sk-...ey-1");
    let body = serde_json::to_value(&out).unwrap();
    assert_eq!(body["models"], json!(["gpt-4o", "claude-*"]));
    assert_eq!(body["metadata"], json!({"team": "red"}));
    assert_eq!(body["rpm_limit"], json!(10));
    assert_eq!(body["tpm_limit"], json!(1000));
    assert_eq!(body["max_parallel_requests"], json!(2));
    assert_eq!(body["user_id"], json!("u1"));
    assert_eq!(body["team_id"], json!("t1"));
    assert_eq!(body["soft_budget"], json!(1.5));
    assert_eq!(body["spend"], json!(0.25));
    let expires = out.record.expires.unwrap();
    let days = (expires - Utc::now()).num_hours();
    assert!((719..=720).contains(&days), "{days}");
    // The database holds exactly this, and never the plaintext.
    let stored = store
        .get_key(&hash_key("sk-my-custom-key-1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.models, out.record.models);
    assert_eq!(stored.spend, 250_000_000);
    // The same custom key twice is refused.
    let again: GenerateKeyRequest =
        serde_json::from_value(json!({"key": "sk-my-custom-key-1"})).unwrap();
    let (msg, param) = bad_request(ledger.generate_key(again, None).await.unwrap_err());
    assert!(msg.contains("already exists"), "{msg}");
    assert!(
        !msg.contains("sk-my-custom-key-1"),
        "secrets never in messages: {msg}"
    );
    assert_eq!(param.as_deref(), Some("key"));
    ledger.shutdown().await.unwrap();
}

async fn bad_input_is_400_naming_the_field_and_writes_nothing(store: Store) {
    let ledger = ledger(&store);
    // Wrong types, named by path.
    let err = parse_json::<GenerateKeyRequest>(br#"{"max_budget":"lots"}"#).unwrap_err();
    let (msg, param) = bad_request(err);
    assert_eq!(param.as_deref(), Some("max_budget"));
    assert!(msg.contains("max_budget"), "{msg}");
    let err = parse_json::<GenerateKeyRequest>(br#"{"models":["a", 3]}"#).unwrap_err();
    assert_eq!(bad_request(err).1.as_deref(), Some("models[1]"));
    let err = parse_json::<UpdateKeyRequest>(br#"{"key":"sk-x","rpm_limit":"ten"}"#).unwrap_err();
    assert_eq!(bad_request(err).1.as_deref(), Some("rpm_limit"));
    let err = parse_json::<GenerateKeyRequest>(b"{not json").unwrap_err();
    assert_eq!(err.status(), 400);

    let cases = [
        (json!({"max_budget": -1.0}), "max_budget", "non-negative"),
        (json!({"soft_budget": -0.5}), "soft_budget", "non-negative"),
        (json!({"rpm_limit": -5}), "rpm_limit", ">= 0"),
        (json!({"tpm_limit": -5}), "tpm_limit", ">= 0"),
        (
            json!({"max_parallel_requests": -1}),
            "max_parallel_requests",
            ">= 0",
        ),
        (
            json!({"budget_duration": "fortnightly"}),
            "budget_duration",
            "'fortnightly'",
        ),
        (json!({"duration": "5x"}), "duration", "'5x'"),
        (json!({"key": "my-key"}), "key", "must start with 'sk-'"),
    ];
    for (body, field, text) in cases {
        let req: GenerateKeyRequest = serde_json::from_value(body.clone()).unwrap();
        let (msg, param) = bad_request(ledger.generate_key(req, None).await.unwrap_err());
        assert_eq!(param.as_deref(), Some(field), "{body}");
        assert!(msg.contains(text), "{body}: {msg}");
    }
    let listed = ledger.list_keys(&KeyListQuery::default()).await.unwrap();
    assert_eq!(listed.total_count, 0, "a refused generate writes nothing");

    // A refused update changes nothing, not even the valid fields next to the bad one.
    let key = generate(&ledger, json!({"max_budget": 5.0, "key_alias": "a"})).await;
    let req: UpdateKeyRequest = serde_json::from_value(
        json!({"key": key.key, "max_budget": 9.0, "budget_duration": "1parsec"}),
    )
    .unwrap();
    let (msg, _) = bad_request(ledger.update_key(req, None).await.unwrap_err());
    assert!(msg.contains("'1parsec'"), "{msg}");
    let stored = store.get_key(&key.token_id).await.unwrap().unwrap();
    assert_eq!(stored.max_budget, Some(5_000_000_000));

    // Unknown keys are 404 with LiteLLM's text.
    let err = ledger.key_info("sk-does-not-exist").await.unwrap_err();
    assert_eq!(
        (err.status(), err.message().as_str()),
        (404, "Key not found in database")
    );
    let req: UpdateKeyRequest =
        serde_json::from_value(json!({"key": "sk-nope", "max_budget": 1.0})).unwrap();
    assert_eq!(
        ledger.update_key(req, None).await.unwrap_err().status(),
        404
    );
    let req: UpdateKeyRequest = serde_json::from_value(json!({"max_budget": 1.0})).unwrap();
    assert_eq!(
        ledger.update_key(req, None).await.unwrap_err().status(),
        400
    );
    ledger.shutdown().await.unwrap();
}

async fn update_changes_only_present_fields(store: Store) {
    let ledger = ledger(&store);
    let key = generate(
        &ledger,
        json!({"key_alias": "upd", "max_budget": 5.0, "rpm_limit": 7, "models": ["m1"], "metadata": {"a": 1}}),
    )
    .await;
    // Absent fields stay; present ones change; null clears.
    let req: UpdateKeyRequest = parse_json(
        format!(
            r#"{{"key":"{}","max_budget":null,"tpm_limit":50,"budget_duration":"1h"}}"#,
            key.key
        )
        .as_bytes(),
    )
    .unwrap();
    let updated = ledger.update_key(req, Some("ops")).await.unwrap();
    let body = serde_json::to_value(&updated).unwrap();
    assert_eq!(body["token"], json!(key.token_id));
    assert_eq!(body["max_budget"], json!(null));
    assert_eq!(body["tpm_limit"], json!(50));
    assert_eq!(body["rpm_limit"], json!(7));
    assert_eq!(body["models"], json!(["m1"]));
    assert_eq!(body["metadata"], json!({"a": 1}));
    assert_eq!(body["key_alias"], json!("upd"));
    assert_eq!(body["updated_by"], json!("ops"));
    let reset = updated.record.budget_reset_at.unwrap();
    assert_eq!(
        (reset.minute(), reset.second()),
        (0, 0),
        "1h resets on the hour"
    );

    // By alias alone, the alias names the key.
    let req: UpdateKeyRequest = parse_json(br#"{"key_alias":"upd","models":["m2","m3"]}"#).unwrap();
    let updated = ledger.update_key(req, None).await.unwrap();
    assert_eq!(updated.record.models, vec!["m2", "m3"]);
    assert_eq!(updated.record.key_alias.as_deref(), Some("upd"));
    // Renaming to an alias in use is refused.
    let other = generate(&ledger, json!({"key_alias": "taken"})).await;
    let req: UpdateKeyRequest =
        serde_json::from_value(json!({"key": key.key, "key_alias": "taken"})).unwrap();
    let (msg, param) = bad_request(ledger.update_key(req, None).await.unwrap_err());
    assert!(msg.contains("Unique key aliases"), "{msg}");
    assert_eq!(param.as_deref(), Some("key_alias"));
    let req: GenerateKeyRequest = serde_json::from_value(json!({"key_alias": "taken"})).unwrap();
    assert_eq!(
        ledger.generate_key(req, None).await.unwrap_err().status(),
        400
    );
    assert_eq!(
        store
            .get_key(&other.token_id)
            .await
            .unwrap()
            .unwrap()
            .key_alias
            .as_deref(),
        Some("taken")
    );
    ledger.shutdown().await.unwrap();
}

async fn list_pages_and_filters(store: Store) {
    let ledger = ledger(&store);
    let mut tokens = Vec::new();
    for i in 0..7 {
        let user = if i % 2 == 0 { "even" } else { "odd" };
        tokens.push(
            generate(
                &ledger,
                json!({"user_id": user, "key_alias": format!("k{i}")}),
            )
            .await
            .token_id,
        );
    }
    let page = |page, size| KeyListQuery {
        page: Some(page),
        size: Some(size),
        ..KeyListQuery::default()
    };
    let first = ledger.list_keys(&page(1, 3)).await.unwrap();
    assert_eq!(
        (
            first.total_count,
            first.current_page,
            first.total_pages,
            first.keys.len()
        ),
        (7, 1, 3, 3)
    );
    let last = ledger.list_keys(&page(3, 3)).await.unwrap();
    assert_eq!(last.keys.len(), 1);
    let mut seen: Vec<String> = Vec::new();
    for p in 1..=3 {
        for k in ledger.list_keys(&page(p, 3)).await.unwrap().keys {
            match k {
                KeyListEntry::Hash(h) => seen.push(h),
                KeyListEntry::Full(_) => panic!("hashes unless return_full_object"),
            }
        }
    }
    seen.sort();
    tokens.sort();
    assert_eq!(seen, tokens);
    let evens = ledger
        .list_keys(&KeyListQuery {
            user_id: Some("even".into()),
            return_full_object: Some(true),
            ..KeyListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(evens.total_count, 4);
    let body = serde_json::to_value(&evens).unwrap();
    for k in body["keys"].as_array().unwrap() {
        assert_eq!(k["user_id"], json!("even"));
        assert_eq!(k["token"].as_str().unwrap().len(), 64);
    }
    let err = ledger.list_keys(&page(1, 101)).await.unwrap_err();
    assert_eq!((err.status(), err.param()), (400, Some("size")));
    ledger.shutdown().await.unwrap();
}

async fn delete_archives_all_or_nothing(store: Store) {
    let ledger = ledger(&store);
    let a = generate(&ledger, json!({"key_alias": "del-a"})).await;
    let b = generate(&ledger, json!({"key_alias": "del-b"})).await;
    ledger.authenticate(&a.key).await.unwrap();
    // One missing key: 404 and nothing deleted.
    let req = DeleteKeysRequest {
        keys: Some(vec![a.key.clone(), "sk-missing".into()]),
        key_aliases: None,
    };
    assert_eq!(
        ledger.delete_keys(req, None).await.unwrap_err().status(),
        404
    );
    assert!(store.get_key(&a.token_id).await.unwrap().is_some());
    ledger.authenticate(&a.key).await.unwrap();

    let req: DeleteKeysRequest =
        serde_json::from_value(json!({"keys": [a.key], "key_aliases": ["del-b"]})).unwrap();
    let out = ledger.delete_keys(req, Some("admin")).await.unwrap();
    assert_eq!(
        serde_json::to_value(&out).unwrap(),
        json!({"deleted_keys": [a.key, "del-b"]})
    );
    assert!(store.get_key(&a.token_id).await.unwrap().is_none());
    assert!(store.get_key(&b.token_id).await.unwrap().is_none());
    assert!(store.was_deleted(&a.token_id).await.unwrap());
    assert_eq!(
        ledger.deleted_status(&b.key).await.unwrap(),
        Some(KeyStatus::Deleted)
    );
    // The cached key dies at once.
    let err = ledger.authenticate(&a.key).await.unwrap_err();
    assert!(matches!(err, AccessError::InvalidKey { .. }), "{err}");
    ledger.shutdown().await.unwrap();
}

async fn regenerate_replaces_key_and_keeps_spend(store: Store) {
    let ledger = ledger(&store);
    let old = generate(&ledger, json!({"key_alias": "rot", "max_budget": 10.0})).await;
    let authed = ledger.authenticate(&old.key).await.unwrap();
    let r = ledger.reserve(&authed, 0, 0).await.unwrap();
    r.settle(common::row("req-rot-1", 1_500_000_000, 10)).await;

    let req: RegenerateKeyRequest =
        parse_json(br#"{"new_key":"sk-rotated-123","max_budget":20.0}"#).unwrap();
    let new = ledger
        .regenerate_key(Some(&old.key), req, Some("admin"))
        .await
        .unwrap();
    assert_eq!(new.key, "sk-rotated-123");
    assert_eq!(new.token_id, hash_key("sk-rotated-123"));
    assert_eq!(new.record.key_alias.as_deref(), Some("rot"));
    assert_eq!(new.record.max_budget, Some(20_000_000_000));
    assert_eq!(new.record.spend, 1_500_000_000, "spend carries over");
    let err = ledger.authenticate(&old.key).await.unwrap_err();
    assert_eq!(err.status(), 401);
    ledger.authenticate(&new.key).await.unwrap();
    // Generated when no new_key is given; the old one is gone from the database.
    let newer = ledger
        .regenerate_key(
            None,
            parse_json(format!(r#"{{"key":"{}"}}"#, new.key).as_bytes()).unwrap(),
            None,
        )
        .await
        .unwrap();
    assert!(newer.key.starts_with("sk-") && newer.key != new.key);
    assert!(store.get_key(&new.token_id).await.unwrap().is_none());
    let req: RegenerateKeyRequest = parse_json(br#"{"key":"sk-unknown"}"#).unwrap();
    assert_eq!(
        ledger
            .regenerate_key(None, req, None)
            .await
            .unwrap_err()
            .status(),
        404
    );
    let req: RegenerateKeyRequest =
        parse_json(format!(r#"{{"key":"{}","new_key":"bad"}}"#, newer.key).as_bytes()).unwrap();
    assert_eq!(
        ledger
            .regenerate_key(None, req, None)
            .await
            .unwrap_err()
            .status(),
        400
    );
    ledger.shutdown().await.unwrap();
}

async fn regenerate_with_grace_period_keeps_the_old_key_briefly(store: Store) {
    let clock = std::sync::Arc::new(idlehands_store::clock::ManualClock::new());
    let ledger = common::ledger_at(&store, &clock);
    let old = generate(&ledger, json!({"max_budget": 10.0})).await;
    ledger.authenticate(&old.key).await.unwrap();
    let req: RegenerateKeyRequest = parse_json(br#"{"grace_period":"2s"}"#).unwrap();
    let new = ledger
        .regenerate_key(Some(&old.token_id), req, None)
        .await
        .unwrap();
    // During the grace period the old value works, as the new key (spend goes there).
    let via_old = ledger.authenticate(&old.key).await.unwrap();
    assert_eq!(via_old.token, new.token_id);
    let r = ledger.reserve(&via_old, 0, 0).await.unwrap();
    r.settle(common::row("grace-1", 7, 1)).await;
    assert_eq!(ledger.key_spend(&new.token_id), Some(7));
    // Another instance learns it from the database.
    let other = common::ledger_at(&store, &clock);
    assert_eq!(
        other.authenticate(&old.key).await.unwrap().token,
        new.token_id
    );
    clock.advance(std::time::Duration::from_millis(2200));
    for l in [&ledger, &other] {
        let err = l.authenticate(&old.key).await.unwrap_err();
        assert!(matches!(err, AccessError::InvalidKey { .. }), "{err}");
        l.authenticate(&new.key).await.unwrap();
    }
    let req: RegenerateKeyRequest = parse_json(br#"{"grace_period":"soon"}"#).unwrap();
    let err = ledger
        .regenerate_key(Some(&new.key), req, None)
        .await
        .unwrap_err();
    assert_eq!((err.status(), err.param()), (400, Some("grace_period")));
    ledger.authenticate(&new.key).await.unwrap();
    ledger.shutdown().await.unwrap();
    other.shutdown().await.unwrap();
}

async fn block_and_unblock_take_effect_at_once(store: Store) {
    let ledger = ledger(&store);
    let key = generate(&ledger, json!({})).await;
    ledger.authenticate(&key.key).await.unwrap();
    let blocked = ledger
        .set_blocked(
            BlockKeyRequest {
                key: key.key.clone(),
            },
            true,
            None,
        )
        .await
        .unwrap();
    assert!(blocked.record.blocked);
    let err = ledger.authenticate(&key.key).await.unwrap_err();
    assert_eq!(err.status(), 401);
    assert_eq!(
        err.message(),
        "Authentication Error, Key is blocked. Update via `/key/unblock` if you're an admin."
    );
    assert_eq!(
        ledger.key_info(&key.key).await.unwrap().info.status,
        KeyStatus::Revoked
    );
    ledger
        .set_blocked(
            BlockKeyRequest {
                key: key.token_id.clone(),
            },
            false,
            None,
        )
        .await
        .unwrap();
    ledger.authenticate(&key.key).await.unwrap();
    let err = ledger
        .set_blocked(
            BlockKeyRequest {
                key: "sk-nope".into(),
            },
            true,
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), 404);
    ledger.shutdown().await.unwrap();
}

async fn management_runs_while_spend_is_committed(store: Store) {
    let ledger = idlehands_store::Ledger::start(store.clone(), common::config(2));
    let busy = generate(&ledger, json!({})).await;
    let authed = ledger.authenticate(&busy.key).await.unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut spenders = Vec::new();
    for t in 0..4 {
        let (ledger, authed, stop) = (ledger.clone(), authed.clone(), stop.clone());
        spenders.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = ledger.reserve(&authed, 0, 0).await.unwrap();
                r.settle(common::row(&format!("busy-{t}-{i}"), 1, 1)).await;
                i += 1;
                tokio::task::yield_now().await;
            }
        }));
    }
    let mut admins = Vec::new();
    for i in 0..40 {
        let ledger = ledger.clone();
        admins.push(tokio::spawn(async move {
            let key = generate(&ledger, json!({"key_alias": format!("busy-{i}")})).await;
            let req: UpdateKeyRequest =
                serde_json::from_value(json!({"key": key.key, "max_budget": 1.0})).unwrap();
            ledger.update_key(req, None).await.unwrap();
            ledger
                .set_blocked(
                    BlockKeyRequest {
                        key: key.key.clone(),
                    },
                    true,
                    None,
                )
                .await
                .unwrap();
        }));
    }
    for a in admins {
        a.await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for s in spenders {
        s.await.unwrap();
    }
    ledger.shutdown().await.unwrap();
    let rows = store.count_spend_logs().await.unwrap();
    assert_eq!(
        store.get_key(&busy.token_id).await.unwrap().unwrap().spend,
        rows
    );
}

/// `/global/spend/report` names keys through `key_labels`: the alias, else the key name, in
/// batches of 500 tokens; a token with no key is left out.
async fn key_labels_name_keys_by_alias_else_key_name(store: Store) {
    let ledger = ledger(&store);
    let aliased = generate(&ledger, json!({"key_alias": "labelled"})).await;
    let plain = generate(&ledger, json!({})).await;
    let mut tokens: Vec<String> = (0..600).map(|i| format!("{i:064x}")).collect();
    tokens.insert(1, aliased.token_id.clone());
    tokens.push(plain.token_id.clone());
    let labels = store.key_labels(&tokens).await.unwrap();
    assert_eq!(labels.len(), 2, "{labels:?}");
    assert_eq!(labels[&aliased.token_id], "labelled");
    assert_eq!(labels[&plain.token_id], plain.record.key_name);
    ledger.shutdown().await.unwrap();
}

async fn migrations_are_versioned_and_idempotent(store: Store) {
    assert_eq!(
        store.schema_versions().await.unwrap(),
        (1..=21).collect::<Vec<i64>>()
    );
    store.readiness().await.unwrap();
}

/// A key created where this ledger cannot hear of it (another instance, no invalidation) is
/// accepted once the refusal's entry expires, however often the client retried meanwhile:
/// a refusal never renews the entry.
async fn a_refusal_does_not_extend_the_negative_cache(store: Store) {
    let ttl = std::time::Duration::from_millis(300);
    let here = Ledger::start(
        store.clone(),
        LedgerConfig {
            negative_ttl: ttl,
            ..common::config(100)
        },
    );
    let elsewhere = ledger(&store);
    let value = format!("sk-retried-{}", uuid::Uuid::new_v4().simple());
    assert!(matches!(
        here.authenticate(&value).await,
        Err(AccessError::InvalidKey { .. })
    ));
    generate(&elsewhere, json!({"key": value})).await;
    let start = std::time::Instant::now();
    let mut refusals = 0;
    let accepted = loop {
        match here.authenticate(&value).await {
            Ok(authed) => break Some(authed),
            Err(AccessError::InvalidKey { .. }) => refusals += 1,
            Err(e) => panic!("unexpected {e}"),
        }
        if start.elapsed() > ttl * 20 {
            break None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let authed = accepted.unwrap_or_else(|| panic!("still refused after {refusals} retries"));
    assert_eq!(authed.token, hash_key(&value));
    assert!(refusals > 0, "the refusal was remembered for a while");
    here.shutdown().await.unwrap();
    elsewhere.shutdown().await.unwrap();
}

on_both_backends!(
    a_refusal_does_not_extend_the_negative_cache,
    seed_curl_key_gets_monthly_budget,
    generate_echoes_fields_and_custom_keys,
    bad_input_is_400_naming_the_field_and_writes_nothing,
    update_changes_only_present_fields,
    list_pages_and_filters,
    delete_archives_all_or_nothing,
    regenerate_replaces_key_and_keeps_spend,
    regenerate_with_grace_period_keeps_the_old_key_briefly,
    block_and_unblock_take_effect_at_once,
    migrations_are_versioned_and_idempotent,
    key_labels_name_keys_by_alias_else_key_name,
    management_runs_while_spend_is_committed,
);

#[tokio::test]
async fn reopening_a_sqlite_file_keeps_keys_and_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/c.db");
    let url = format!("sqlite://{}", path.display());
    let store = Store::open(&url).await.unwrap();
    let ledger = ledger(&store);
    let key = generate(&ledger, json!({"key_alias": "persist"})).await;
    ledger.shutdown().await.unwrap();
    store.close().await;
    assert!(path.exists());
    let store = Store::open(path.to_str().unwrap()).await.unwrap();
    assert_eq!(
        store.schema_versions().await.unwrap(),
        (1..=21).collect::<Vec<i64>>()
    );
    assert!(store.get_key(&key.token_id).await.unwrap().is_some());
}
