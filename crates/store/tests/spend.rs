//! Spend logs: one row per request, key spend equal to the rows, `/spend/logs` filters and
//! summaries, aggregates, and a graceful stop that loses nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use common::{generate, ledger, row};
use idlehands_store::{
    ApiError, JsonObjectText, Ledger, SpendGroup, SpendLogRow, SpendLogsQuery, SpendLogsResponse,
    SpendWriter, Store, WriterConfig,
};
use serde_json::json;

const CENT: i64 = 10_000_000;

fn rows(r: SpendLogsResponse) -> Vec<SpendLogRow> {
    match r {
        SpendLogsResponse::Rows(rows) => rows,
        SpendLogsResponse::Summary(s) => panic!("rows expected, got {s:?}"),
    }
}

fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
}

async fn every_request_writes_one_row_and_adds_its_spend(store: Store) {
    let ledger = ledger(&store);
    let key = generate(&ledger, json!({"max_budget": 100.0, "user_id": "alice"})).await;
    let authed = ledger.authenticate(&key.key).await.unwrap();
    let mut expected = 0;
    for i in 0..30 {
        let r = ledger.reserve(&authed, CENT, 100).await.unwrap();
        let mut log = row(&format!("ok-{i}"), (i % 5) * CENT, 100);
        log.user = Some("alice".into());
        if i % 4 == 0 {
            log.status = "failure".into();
            log.spend = 0;
            let mut metadata = log.metadata.to_map();
            metadata.insert(
                "error_information".into(),
                json!({"error_class": "RateLimitError"}),
            );
            log.metadata = JsonObjectText::from_map(&metadata);
        }
        expected += log.spend;
        r.settle(log).await;
    }
    // Text Postgres cannot store (NUL) does not make a row, or its batch, fail.
    let r = ledger.reserve(&authed, 0, 0).await.unwrap();
    let mut odd = row("nul-row", 0, 1);
    odd.model = "bad\0model".into();
    odd.user = Some("alice".into());
    r.settle(odd).await;
    // A request refused before any reservation is logged too.
    let mut refused = row("refused-1", 0, 0);
    refused.api_key = key.token_id.clone();
    refused.status = "failure".into();
    ledger.log(refused).await;
    ledger.writer().flush().await.unwrap();

    assert_eq!(store.count_spend_logs().await.unwrap(), 32);
    let stored = store.get_key(&key.token_id).await.unwrap().unwrap();
    assert_eq!(stored.spend, expected);
    assert_eq!(ledger.key_spend(&key.token_id), Some(expected));
    let all = rows(
        store
            .spend_logs(&SpendLogsQuery {
                api_key: Some(key.token_id.clone()),
                ..Default::default()
            })
            .await
            .unwrap(),
    );
    assert_eq!(all.len(), 32);
    assert!(
        all.iter().all(|r| r.api_key == key.token_id),
        "rows hold the hash, never the key"
    );
    assert_eq!(all.iter().filter(|r| r.status == "failure").count(), 9);
    assert_eq!(
        all.iter()
            .find(|r| r.request_id == "nul-row")
            .unwrap()
            .model,
        "badmodel"
    );
    let failed = all.iter().find(|r| r.request_id == "ok-0").unwrap();
    assert_eq!(
        failed.metadata.to_map()["error_information"]["error_class"],
        json!("RateLimitError")
    );
    // The row's JSON uses LiteLLM's names and USD.
    let one = all.iter().find(|r| r.request_id == "ok-3").unwrap();
    let body = serde_json::to_value(one).unwrap();
    for field in [
        "request_id",
        "call_type",
        "api_key",
        "spend",
        "total_tokens",
        "prompt_tokens",
        "completion_tokens",
        "startTime",
        "endTime",
        "model",
        "model_group",
        "api_base",
        "user",
        "metadata",
        "status",
    ] {
        assert!(body.get(field).is_some(), "missing {field}: {body}");
    }
    assert_eq!(body["spend"], json!(0.03));
    assert_eq!(body["user"], json!("alice"));
    ledger.shutdown().await.unwrap();
}

async fn spend_logs_filter_page_and_summarize(store: Store) {
    let writer = SpendWriter::start(store.clone(), WriterConfig::default());
    let key_a = idlehands_store::keygen::hash_key("sk-aaaa");
    let specs = [
        ("r1", &key_a, "u1", "gpt-4o", at(2026, 3, 1, 10), 1),
        ("r2", &key_a, "u2", "claude", at(2026, 3, 1, 12), 2),
        ("r3", &key_a, "u1", "gpt-4o", at(2026, 3, 2, 9), 4),
        (
            "r4",
            &"other".to_owned(),
            "u1",
            "gpt-4o",
            at(2026, 3, 3, 23),
            8,
        ),
    ];
    for (id, key, user, model, t, cents) in specs {
        let mut r = row(id, cents * CENT, 10);
        r.api_key = key.clone();
        r.user = Some(user.into());
        r.model_group = Some(model.into());
        r.start_time = t;
        r.end_time = t;
        r.litellm_call_id = Some(format!("call-{id}"));
        writer.log(r).await;
    }
    writer.shutdown().await.unwrap();
    let ids = |v: Vec<SpendLogRow>| v.into_iter().map(|r| r.request_id).collect::<Vec<_>>();

    let all = rows(store.spend_logs(&SpendLogsQuery::default()).await.unwrap());
    assert_eq!(ids(all), ["r4", "r3", "r2", "r1"], "newest first");
    let q = SpendLogsQuery {
        api_key: Some("sk-aaaa".into()),
        ..Default::default()
    };
    assert_eq!(
        ids(rows(store.spend_logs(&q).await.unwrap())),
        ["r3", "r2", "r1"],
        "sk- keys are hashed"
    );
    let q = SpendLogsQuery {
        user_id: Some("u1".into()),
        ..Default::default()
    };
    assert_eq!(
        ids(rows(store.spend_logs(&q).await.unwrap())),
        ["r4", "r3", "r1"]
    );
    let q = SpendLogsQuery {
        request_id: Some("call-r2".into()),
        ..Default::default()
    };
    assert_eq!(
        ids(rows(store.spend_logs(&q).await.unwrap())),
        ["r2"],
        "matches litellm_call_id"
    );
    let q = SpendLogsQuery {
        request_id: Some("r2".into()),
        ..Default::default()
    };
    assert_eq!(ids(rows(store.spend_logs(&q).await.unwrap())), ["r2"]);
    let q = SpendLogsQuery {
        start_date: Some("2026-03-02".into()),
        end_date: Some("2026-03-03".into()),
        summarize: Some(false),
        ..Default::default()
    };
    assert_eq!(
        ids(rows(store.spend_logs(&q).await.unwrap())),
        ["r4", "r3"],
        "end_date is inclusive"
    );
    let q = SpendLogsQuery {
        page: Some(2),
        page_size: Some(3),
        ..Default::default()
    };
    assert_eq!(ids(rows(store.spend_logs(&q).await.unwrap())), ["r1"]);

    let q = SpendLogsQuery {
        start_date: Some("2026-03-01".into()),
        end_date: Some("2026-03-02".into()),
        ..Default::default()
    };
    let summary = serde_json::to_value(store.spend_logs(&q).await.unwrap()).unwrap();
    assert_eq!(
        summary,
        json!([
            {"startTime": "2026-03-01", "spend": 0.03, "users": {"u1": 0.01, "u2": 0.02}, "models": {"claude": 0.02, "gpt-4o": 0.01}},
            {"startTime": "2026-03-02", "spend": 0.04, "users": {"u1": 0.04}, "models": {"gpt-4o": 0.04}}
        ])
    );

    let q = SpendLogsQuery {
        start_date: Some("03/01/2026".into()),
        ..Default::default()
    };
    let err = store.spend_logs(&q).await.unwrap_err();
    assert_eq!((err.status(), err.param()), (400, Some("start_date")));
    assert!(err.message().contains("'03/01/2026'"), "{err}");

    let by_model = store.spend_by(SpendGroup::Model, None, None).await.unwrap();
    assert_eq!(by_model[0].group, "gpt-4o");
    assert_eq!((by_model[0].spend, by_model[0].requests), (13 * CENT, 3));
    let by_key = store
        .spend_by(
            SpendGroup::Key,
            Some(at(2026, 3, 1, 0)),
            Some(at(2026, 3, 2, 0)),
        )
        .await
        .unwrap();
    assert_eq!(by_key.len(), 1);
    assert_eq!(
        (by_key[0].group.as_str(), by_key[0].spend),
        (key_a.as_str(), 3 * CENT)
    );
    let by_day = store.spend_by(SpendGroup::Day, None, None).await.unwrap();
    let days: Vec<_> = by_day.iter().map(|a| (a.group.as_str(), a.spend)).collect();
    assert_eq!(
        days,
        [
            ("2026-03-01", 3 * CENT),
            ("2026-03-02", 4 * CENT),
            ("2026-03-03", 8 * CENT)
        ]
    );
    let by_user = store.spend_by(SpendGroup::User, None, None).await.unwrap();
    assert_eq!(
        (by_user[0].group.as_str(), by_user[0].spend),
        ("u1", 13 * CENT)
    );

    // Retention drops old rows only.
    assert_eq!(
        store
            .delete_spend_logs_before(at(2026, 3, 2, 0))
            .await
            .unwrap(),
        2
    );
    let left = rows(store.spend_logs(&SpendLogsQuery::default()).await.unwrap());
    assert_eq!(ids(left), ["r4", "r3"]);
    // The daily rollups keep the history the rows no longer have (reports read them).
    assert_eq!(
        store.spend_by(SpendGroup::Day, None, None).await.unwrap(),
        by_day
    );
}

async fn graceful_shutdown_commits_every_queued_row(store: Store) {
    let config = common::config(60_000); // nothing would flush on its own for a minute
    let ledger = Ledger::start(store.clone(), config);
    let key = generate(&ledger, json!({})).await;
    let authed = ledger.authenticate(&key.key).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let (ledger, authed) = (ledger.clone(), authed.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..437 {
                let r = ledger.reserve(&authed, 0, 0).await.unwrap();
                r.settle(row(&format!("g-{t}-{i}"), 1, 1)).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    ledger.shutdown().await.unwrap();
    assert_eq!(store.count_spend_logs().await.unwrap(), 8 * 437);
    assert_eq!(
        store.get_key(&key.token_id).await.unwrap().unwrap().spend,
        8 * 437
    );
    // After shutdown, the writer refuses politely instead of hanging.
    tokio::time::timeout(
        Duration::from_secs(5),
        ledger.writer().log(row("late", 0, 0)),
    )
    .await
    .unwrap();
}

/// Rows are keyed by the call id; the upstream's id and the estimate flag are kept beside it.
/// A row logged again after its commit went through (an answer lost on the way back) is not
/// written, or counted in the key's spend, twice.
async fn upstream_ids_repeat_and_a_row_is_never_counted_twice(store: Store) {
    let ledger = ledger(&store);
    let key = generate(&ledger, json!({})).await;
    let writer = SpendWriter::start(store.clone(), WriterConfig::default());
    for i in 0..4 {
        let mut r = row(&format!("call-{i}"), CENT, 10);
        r.api_key = key.token_id.clone();
        r.upstream_response_id = Some("chatcmpl-7".into());
        r.usage_estimated = i == 0;
        writer.log(r).await;
    }
    writer.flush().await.unwrap();
    let mut again = row("call-0", CENT, 10);
    again.api_key = key.token_id.clone();
    writer.log(again).await;
    writer.flush().await.unwrap();
    writer.shutdown().await.unwrap();

    let all = rows(store.spend_logs(&SpendLogsQuery::default()).await.unwrap());
    assert_eq!(all.len(), 4);
    assert!(
        all.iter()
            .all(|r| r.upstream_response_id.as_deref() == Some("chatcmpl-7"))
    );
    let estimated: Vec<&str> = all
        .iter()
        .filter(|r| r.usage_estimated)
        .map(|r| r.request_id.as_str())
        .collect();
    assert_eq!(estimated, ["call-0"]);
    let q = SpendLogsQuery {
        request_id: Some("chatcmpl-7".into()),
        ..Default::default()
    };
    assert_eq!(
        rows(store.spend_logs(&q).await.unwrap()).len(),
        4,
        "request_id also matches the upstream's id"
    );
    let spend = store.get_key(&key.token_id).await.unwrap().unwrap().spend;
    assert_eq!(spend, 4 * CENT);
    ledger.shutdown().await.unwrap();
}

/// Every column of a spend row comes back as written, set or empty, whichever way the store
/// batches its inserts (Postgres binds a commit's rows as one array per column): a full row, a
/// row with every optional field empty, and enough plain rows that the commit is a big one.
async fn every_column_of_a_row_round_trips(store: Store) {
    let writer = SpendWriter::start(store.clone(), WriterConfig::default());
    let t = |s: i64| Utc.timestamp_millis_opt(1_764_000_000_000 + s).unwrap();
    let full = SpendLogRow {
        request_id: "full".into(),
        upstream_response_id: Some("chatcmpl-full".into()),
        call_type: "anthropic_messages".into(),
        api_key: "hash-full".into(),
        spend: 9_007_199_254_740_993,
        total_tokens: 30,
        prompt_tokens: 10,
        completion_tokens: 20,
        start_time: t(0),
        end_time: t(1_500),
        completion_start_time: Some(t(700)),
        request_duration_ms: Some(1_500),
        model: "claude-x".into(),
        model_id: Some("dep-1".into()),
        model_group: Some("claude".into()),
        custom_llm_provider: Some("anthropic".into()),
        api_base: Some("http://upstream".into()),
        user: Some("alice".into()),
        team_id: Some("team-1".into()),
        organization_id: Some("org-1".into()),
        end_user: Some("customer-1".into()),
        requester_ip_address: Some("10.0.0.1".into()),
        session_id: Some("session-1".into()),
        metadata: JsonObjectText::from_map(
            &json!({"user_api_key_alias": "a\"b", "n": 1})
                .as_object()
                .unwrap()
                .clone(),
        ),
        cache_hit: Some("False".into()),
        cache_key: Some("ck".into()),
        request_tags: vec!["t1".into(), "t,2".into()],
        messages: Some(json!([{"role": "user", "content": "héllo {\"x\"}"}])),
        response: Some(json!({"id": "r", "choices": []})),
        status: "failure".into(),
        litellm_call_id: Some("call-full".into()),
        usage_estimated: true,
        model_budget: None,
        proxy_budget: false,
        route_budgets: Vec::new(),
    };
    let empty = SpendLogRow {
        request_id: "empty".into(),
        call_type: "aembedding".into(),
        start_time: t(5),
        end_time: t(5),
        status: "success".into(),
        ..SpendLogRow::default()
    };
    // Every row of a big commit comes back as it went, not only the two above.
    let last = SpendLogRow {
        request_id: "full-last".into(),
        litellm_call_id: Some("call-full-last".into()),
        upstream_response_id: Some("chatcmpl-full-last".into()),
        ..full.clone()
    };
    let mut logged = vec![full.clone(), empty.clone()];
    for i in 0..5_000 {
        let mut r = row(&format!("bulk-{i}"), i, 2);
        r.start_time = t(i);
        r.end_time = t(i);
        r.user = (i % 3 == 0).then(|| format!("user-{i}"));
        logged.push(r);
    }
    logged.push(last.clone());
    for r in &logged {
        writer.log(r.clone()).await;
    }
    writer.shutdown().await.unwrap();

    let by_id = |id: &str| SpendLogsQuery {
        request_id: Some(id.into()),
        ..Default::default()
    };
    assert_eq!(
        rows(store.spend_logs(&by_id("full")).await.unwrap()),
        [full]
    );
    assert_eq!(
        rows(store.spend_logs(&by_id("empty")).await.unwrap()),
        [empty]
    );
    assert_eq!(
        rows(store.spend_logs(&by_id("full-last")).await.unwrap()),
        [last]
    );
    assert_eq!(store.count_spend_logs().await.unwrap(), 5_003);
    let day = SpendLogsQuery {
        start_date: Some("2025-11-24".into()),
        end_date: Some("2025-11-24".into()),
        summarize: Some(false),
        page_size: Some(10_000),
        ..Default::default()
    };
    let mut stored = rows(store.spend_logs(&day).await.unwrap());
    stored.sort_by(|a, b| a.request_id.cmp(&b.request_id));
    logged.sort_by(|a, b| a.request_id.cmp(&b.request_id));
    assert_eq!(stored.len(), logged.len());
    for (got, want) in stored.iter().zip(&logged) {
        assert_eq!(got, want);
    }
}

on_both_backends!(
    every_column_of_a_row_round_trips,
    every_request_writes_one_row_and_adds_its_spend,
    upstream_ids_repeat_and_a_row_is_never_counted_twice,
    spend_logs_filter_page_and_summarize,
    graceful_shutdown_commits_every_queued_row,
);
