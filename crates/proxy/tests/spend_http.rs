#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Spend logs over HTTP: one row per request (success, failure, master key, stream) keyed by
//! the call id, `/spend/logs` filters and pages, `/global/spend/report`. SQLite and Postgres.

mod store_support;

use chrono::Utc;
use serde_json::{Value, json};
use store_support::{
    Backend, MASTER, Place, chat, client, error_of, generate, get, post, spend_rows, start,
};

/// A group whose upstream refuses connections, for failure rows.
const BROKEN: &str = "  - model_name: broken
    litellm_params:
      model: openai/gpt-4o
      api_base: http://127.0.0.1:9/v1
      api_key: sk-upstream
      timeout: 5
";

/// The usual config with the broken group added to its model list.
async fn start_with_broken(place: &Place) -> store_support::Proxy {
    let yaml = store_support::yaml("").replacen(
        "general_settings:",
        &format!("{BROKEN}general_settings:"),
        1,
    );
    let cfg = store_support::config(&yaml);
    let s = store_support::settings(&cfg, place);
    store_support::start_with(cfg, s).await
}

async fn every_request_writes_one_row(b: Backend) {
    let place = Place::new(b);
    let p = start_with_broken(&place).await;
    let (key, generated) = generate(
        &p,
        json!({"key_alias": "writer", "user_id": "u-1", "max_budget": 5.0}),
    )
    .await;
    let token = generated["token_id"].as_str().unwrap().to_string();

    let ok = post(&p, "/v1/chat/completions", &key, chat("mocky")).await;
    assert_eq!(ok.status, 200);
    let failed = post(&p, "/v1/chat/completions", &key, chat("broken")).await;
    assert!(failed.status.as_u16() >= 500, "{}", failed.body);
    error_of(&failed);
    let master = post(&p, "/v1/chat/completions", MASTER, chat("mocky")).await;
    assert_eq!(master.status, 200);

    // A stream: its row is priced from the usage chunk (1e-6 in, 2e-6 out), keyed by the
    // call id, and keeps the upstream's response id.
    let resp = client()
        .post(p.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(
            &json!({"model": "mocky", "stream": true, "stream_options": {"include_usage": true},
               "messages": [{"role": "user", "content": "Say hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let stream_call = resp.headers()["x-litellm-call-id"]
        .to_str()
        .unwrap()
        .to_string();
    let text = resp.text().await.unwrap();
    let usage_chunk: Value = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .find(|v| v["usage"].is_object())
        .expect("a usage chunk");
    assert!(
        usage_chunk["usage"].get("cost").is_none(),
        "cost stays out of OpenAI objects: {usage_chunk}"
    );
    let u = &usage_chunk["usage"];
    let stream_cost = u["prompt_tokens"].as_f64().unwrap() * 1e-6
        + u["completion_tokens"].as_f64().unwrap() * 2e-6;
    assert!(stream_cost > 0.0);
    let stream_id = usage_chunk["id"].as_str().unwrap().to_string();

    let rows = spend_rows(&p, "", 4).await;
    assert_eq!(rows.len(), 4, "{rows:#?}");
    let key_rows: Vec<&Value> = rows
        .iter()
        .filter(|r| r["api_key"] == token.as_str())
        .collect();
    assert_eq!(key_rows.len(), 3);
    let failure = key_rows.iter().find(|r| r["status"] == "failure").unwrap();
    assert_eq!(failure["model_group"], "broken");
    assert_eq!(failure["spend"], 0.0);
    assert!(failure["metadata"]["error_information"]["error_message"].is_string());
    let streamed = rows
        .iter()
        .find(|r| r["request_id"] == stream_call.as_str())
        .unwrap();
    assert_eq!(streamed["upstream_response_id"], stream_id.as_str());
    assert_eq!(streamed["litellm_call_id"], stream_call.as_str());
    assert_eq!(streamed["usage_estimated"], false);
    assert!((streamed["spend"].as_f64().unwrap() - stream_cost).abs() < 1e-12);
    for r in &key_rows {
        assert_eq!(r["metadata"]["user_api_key_alias"], "writer");
        assert_eq!(r["metadata"]["user_api_key"], token.as_str());
        assert_eq!(r["user"], "u-1");
        assert_eq!(r["call_type"], "acompletion");
        assert!(r["startTime"].is_string() && r["endTime"].is_string());
        // No response cache configured: LiteLLM's words, answered or failed.
        assert_eq!(r["cache_key"], "Cache OFF");
        assert_eq!(r["cache_hit"], "False");
    }
    let master_row = rows
        .iter()
        .find(|r| r["api_key"] != token.as_str())
        .unwrap();
    assert_eq!(master_row["status"], "success");
    assert_eq!(master_row["api_key"].as_str().unwrap().len(), 64, "hashed");

    // The key's spend is the sum of its rows.
    let info = get(&p, "/key/info", &key).await;
    let sum: f64 = key_rows.iter().map(|r| r["spend"].as_f64().unwrap()).sum();
    assert!((info.body["info"]["spend"].as_f64().unwrap() - sum).abs() < 1e-9);
    p.stop().await;
    place.cleanup().await;
}

async fn spend_logs_filters_and_pages(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    let (a_key, a) = generate(&p, json!({"user_id": "ua"})).await;
    let (b_key, _) = generate(&p, json!({"user_id": "ub"})).await;
    for _ in 0..3 {
        assert_eq!(
            post(&p, "/v1/chat/completions", &a_key, chat("mocky"))
                .await
                .status,
            200
        );
    }
    let one = post(&p, "/v1/chat/completions", &b_key, chat("other")).await;
    assert_eq!(one.status, 200);
    let call_id = one.headers["x-litellm-call-id"]
        .to_str()
        .unwrap()
        .to_string();
    spend_rows(&p, "", 4).await;

    let by_plain = spend_rows(&p, &format!("?api_key={a_key}"), 3).await;
    assert_eq!(by_plain.len(), 3);
    let hash = a["token_id"].as_str().unwrap();
    assert_eq!(
        spend_rows(&p, &format!("?api_key={hash}"), 3).await.len(),
        3
    );
    assert_eq!(spend_rows(&p, "?user_id=ub", 1).await.len(), 1);
    let by_id = spend_rows(&p, &format!("?request_id={call_id}"), 1).await;
    assert_eq!(by_id.len(), 1);
    assert_eq!(by_id[0]["model_group"], "other");
    let page = get(&p, "/spend/logs?page=2&page_size=3", MASTER).await;
    assert_eq!(page.body.as_array().unwrap().len(), 1);
    assert_eq!(get(&p, "/spend/logs?page_size=0", MASTER).await.status, 400);

    // A key sees only its own rows.
    let own = get(&p, "/spend/logs", &b_key).await;
    assert_eq!(own.status, 200);
    assert_eq!(own.body.as_array().unwrap().len(), 1);

    let today = Utc::now().format("%Y-%m-%d").to_string();
    let summary = get(
        &p,
        &format!("/spend/logs?start_date={today}&end_date={today}&summarize=true"),
        MASTER,
    )
    .await;
    assert_eq!(summary.status, 200, "{}", summary.body);
    let day = &summary.body[0];
    assert!(day["spend"].as_f64().unwrap() > 0.0);
    assert!(day["users"]["ua"].as_f64().unwrap() > 0.0);
    assert!(day["models"]["mocky"].as_f64().unwrap() > 0.0);
    let bad = get(&p, "/spend/logs?start_date=yesterday", MASTER).await;
    assert_eq!(bad.status, 400);

    // LiteLLM's report by key: one row per key hash over the range, with its models.
    let r = get(
        &p,
        &format!("/global/spend/report?start_date={today}&end_date={today}&group_by=api_key"),
        MASTER,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let rows = r.body.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{}", r.body);
    let a_hash = by_plain[0]["api_key"].as_str().unwrap();
    let ra = rows.iter().find(|x| x["api_key"] == a_hash).unwrap();
    let plain_cost: f64 = by_plain.iter().map(|r| r["spend"].as_f64().unwrap()).sum();
    assert!(
        (ra["total_cost"].as_f64().unwrap() - plain_cost).abs() < 1e-9,
        "{ra}"
    );
    let plain_in: i64 = by_plain
        .iter()
        .map(|r| r["prompt_tokens"].as_i64().unwrap())
        .sum();
    assert_eq!(ra["total_input_tokens"], plain_in);
    let details = ra["model_details"].as_array().unwrap();
    assert!(!details.is_empty());
    let detail_cost: f64 = details
        .iter()
        .map(|d| d["total_cost"].as_f64().unwrap())
        .sum();
    assert!((detail_cost - plain_cost).abs() < 1e-9);
    assert!(
        rows[0]["total_cost"].as_f64() >= rows[1]["total_cost"].as_f64(),
        "biggest spend first: {}",
        r.body
    );

    // The dashboard's report: per day and key, keys named.
    let r = get(
        &p,
        &format!("/global/spend/report?start_date={today}&end_date={today}&group_by=key"),
        MASTER,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let rows = r.body.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let ra = rows.iter().find(|x| x["requests"] == 3).unwrap();
    assert_eq!(ra["date"], today.as_str());
    assert_eq!(ra["group"], a["key_name"]);
    let a_tokens: i64 = by_plain
        .iter()
        .map(|r| r["total_tokens"].as_i64().unwrap())
        .sum();
    assert_eq!(ra["total_tokens"], a_tokens);
    let a_spend: f64 = by_plain.iter().map(|r| r["spend"].as_f64().unwrap()).sum();
    assert!((ra["spend"].as_f64().unwrap() - a_spend).abs() < 1e-9);
    let r = get(&p, "/global/spend/report?group_by=model", MASTER).await;
    let groups: Vec<&str> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["group"].as_str().unwrap())
        .collect();
    assert!(
        groups.contains(&"mocky") && groups.contains(&"other"),
        "{groups:?}"
    );
    let r = get(&p, "/global/spend/report?group_by=user", MASTER).await;
    assert_eq!(r.body.as_array().unwrap().len(), 2);
    assert_eq!(
        get(&p, "/global/spend/report?group_by=planet", MASTER)
            .await
            .status,
        400
    );
    assert_eq!(
        get(&p, "/global/spend/report?start_date=2026-13-01", MASTER)
            .await
            .status,
        400
    );
    assert_eq!(get(&p, "/global/spend/report", &a_key).await.status, 403);
    p.stop().await;
    place.cleanup().await;
}

/// `maximum_spend_logs_retention_period`: at start-up (and hourly) rows older than the
/// period go; newer rows and the key's spend stay.
async fn retention_deletes_only_old_rows(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    let fresh = post(&p, "/v1/chat/completions", MASTER, chat("mocky")).await;
    assert_eq!(fresh.status, 200);
    assert_eq!(spend_rows(&p, "", 1).await.len(), 1);
    p.stop().await;

    // A row from two hours ago, written through the store as the spend writer would.
    let store = place.open_store().await;
    let old = Utc::now() - chrono::Duration::hours(2);
    let row = idlehands_store::SpendLogRow {
        request_id: "old-row".into(),
        call_type: "acompletion".into(),
        model: "openai/mock-model".into(),
        start_time: old,
        end_time: old,
        status: "success".into(),
        ..Default::default()
    };
    store_support::write_rows(&store, vec![row]).await;
    let before = store
        .spend_logs(&idlehands_store::SpendLogsQuery::default())
        .await
        .unwrap();
    let idlehands_store::SpendLogsResponse::Rows(before) = before else {
        panic!("rows expected")
    };
    assert_eq!(before.len(), 2);
    store.close().await;

    let p = start(&place, "  maximum_spend_logs_retention_period: 1h\n").await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let ids = loop {
        let rows = get(&p, "/spend/logs", MASTER).await.body;
        let ids: Vec<String> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["request_id"].as_str().unwrap().to_string())
            .collect();
        if ids.len() == 1 || tokio::time::Instant::now() > deadline {
            break ids;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_ne!(ids[0], "old-row");
    p.stop().await;
    place.cleanup().await;
}

async fn readiness_reports_the_database(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    let a = store_support::send(client().get(p.url("/health/readiness"))).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["db"], "connected");
    p.stop().await;
    place.cleanup().await;
}

both_backends!(
    every_request_writes_one_row,
    spend_logs_filters_and_pages,
    readiness_reports_the_database,
    retention_deletes_only_old_rows,
);
