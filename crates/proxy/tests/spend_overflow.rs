#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Spend arithmetic at its limits, over real HTTP on SQLite and Postgres: an upstream that
//! reports absurd usage (`9e18` tokens as floats, `u64::MAX` in a stream) is answered, clamped
//! to the ceilings (1e12 tokens a field, $1,000,000 a call) and recorded; rows and a key spend
//! already at `i64::MAX` (as versions before the ceilings wrote them) neither fail the next
//! commit nor break `/global/spend/report`, the `/spend/logs` day summary or the key routes.

mod store_support;

use chrono::{Duration, Utc};
use idlehands_testkit::{FakeOpenAi, Fault, Reply};
use serde_json::{Value, json};
use sqlx::Connection;
use store_support::{Backend, MASTER, Place, client, generate, get, post, spend_rows};

const CEILING_TOKENS: f64 = 1e12;
const CEILING_USD: f64 = 1e6;

/// Runs one statement (or a query for one i64) on the test's database, beside the gateway.
async fn sql_i64(place: &Place, sql: &str, fetch: bool) -> Option<i64> {
    match &place.pg_schema {
        Some(schema) => {
            let mut c = sqlx::PgConnection::connect(&place.url).await.unwrap();
            sqlx::query(&format!("SET search_path TO {schema}"))
                .execute(&mut c)
                .await
                .unwrap();
            if fetch {
                return Some(sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap());
            }
            sqlx::query(sql).execute(&mut c).await.unwrap();
        }
        None => {
            let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", place.url))
                .await
                .unwrap();
            if fetch {
                return Some(sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap());
            }
            sqlx::query(sql).execute(&mut c).await.unwrap();
        }
    }
    None
}

fn absurd_body() -> String {
    // Floats where integers belong, as a Python server may write them, far past u64 too.
    r#"{"id":"chatcmpl-absurd","object":"chat.completion","created":1,"model":"absurd-model",
        "choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],
        "usage":{"prompt_tokens":9e18,"completion_tokens":9e18,"total_tokens":1e30}}"#
        .to_string()
}

async fn absurd_usage_is_clamped_and_reports_survive_saturated_rows(b: Backend) {
    let up = FakeOpenAi::start().await;
    let place = Place::new(b);
    let group = format!(
        "  - model_name: absurd
    litellm_params:
      model: openai/absurd-model
      api_base: {}
      api_key: sk-upstream
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000002
",
        up.base_url()
    );
    let yaml = store_support::yaml("").replacen(
        "general_settings:",
        &format!("{group}general_settings:"),
        1,
    );
    let cfg = store_support::config(&yaml);
    let s = store_support::settings(&cfg, &place);
    let p = store_support::start_with(cfg, s).await;
    let (key, generated) =
        generate(&p, json!({"key_alias": "absurd", "user_id": "u-absurd"})).await;
    let token = generated["token_id"].as_str().unwrap().to_string();
    let chat = json!({"model": "absurd", "messages": [{"role": "user", "content": "hi"}]});

    up.push(Reply::fault(Fault::Raw {
        status: 200,
        body: absurd_body(),
    }));
    let a = post(&p, "/v1/chat/completions", &key, chat.clone()).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["choices"][0]["message"]["content"], "hi");
    assert_eq!(
        a.headers["x-litellm-response-cost"].to_str().unwrap(),
        "1000000.0",
        "1e12 tokens each way at these prices is $3M, above the $1M ceiling"
    );

    up.push(Reply::text("streamed").with_usage(u64::MAX, u64::MAX));
    let resp = client()
        .post(p.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "absurd", "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("streamed") && text.ends_with("data: [DONE]\n\n"),
        "{text}"
    );
    assert!(!text.contains("\"error\""), "{text}");

    let rows = spend_rows(&p, "", 2).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    for r in &rows {
        assert_eq!(r["status"], "success", "{r}");
        assert_eq!(r["spend"].as_f64(), Some(CEILING_USD), "{r}");
        assert_eq!(r["prompt_tokens"].as_f64(), Some(CEILING_TOKENS), "{r}");
        assert_eq!(r["completion_tokens"].as_f64(), Some(CEILING_TOKENS), "{r}");
        assert_eq!(r["total_tokens"].as_f64(), Some(CEILING_TOKENS), "{r}");
    }
    let info = get(&p, &format!("/key/info?key={key}"), MASTER).await;
    assert_eq!(info.status, 200, "{}", info.body);
    assert_eq!(info.body["info"]["spend"].as_f64(), Some(2.0 * CEILING_USD));

    // What a version without the ceilings left behind: rows and the key at i64::MAX. A plain
    // SUM over two such rows overflows (SQLite: "integer overflow"; Postgres: bigint out of
    // range), and the next commit's `spend + x` did too.
    let max = i64::MAX;
    sql_i64(
        &place,
        &format!(
            "UPDATE idlehands_spend_logs SET spend = {max}, prompt_tokens = {max}, \
             completion_tokens = {max}, total_tokens = {max}"
        ),
        false,
    )
    .await;
    sql_i64(
        &place,
        &format!(
            "UPDATE idlehands_verification_tokens SET spend = {} WHERE token = '{token}'",
            max - 5
        ),
        false,
    )
    .await;
    // Rows of such a version were summed into the daily rollups by migration 9 at the upgrade;
    // these were changed behind the writer's back, so sum them as the migration would.
    let store = place.open_store().await;
    store.rebuild_daily_spend().await.unwrap();
    store.close().await;

    up.push(Reply::fault(Fault::Raw {
        status: 200,
        body: absurd_body(),
    }));
    let a = post(&p, "/v1/chat/completions", &key, chat).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let rows = spend_rows(&p, "", 3).await;
    assert_eq!(rows.len(), 3, "the third row is committed: {rows:?}");
    let key_spend = sql_i64(
        &place,
        &format!("SELECT spend FROM idlehands_verification_tokens WHERE token = '{token}'"),
        true,
    )
    .await;
    assert_eq!(key_spend, Some(max), "the key's spend saturates");

    let top = max as f64 / 1e9;
    let today = Utc::now().date_naive();
    let day = today.format("%Y-%m-%d").to_string();
    let next = (today + Duration::days(1)).format("%Y-%m-%d").to_string();
    for group_by in ["key", "model", "user"] {
        let r = get(
            &p,
            &format!("/global/spend/report?start_date={day}&end_date={day}&group_by={group_by}"),
            MASTER,
        )
        .await;
        assert_eq!(r.status, 200, "{group_by}: {}", r.body);
        let rows = r.body.as_array().unwrap();
        assert_eq!(rows.len(), 1, "{group_by}: {}", r.body);
        assert_eq!(
            rows[0]["spend"].as_f64(),
            Some(top),
            "{group_by}: {}",
            r.body
        );
        assert_eq!(rows[0]["requests"], 3);
        assert_eq!(rows[0]["total_tokens"].as_f64(), Some(max as f64));
    }
    let summary = get(
        &p,
        &format!("/spend/logs?start_date={day}&end_date={next}"),
        MASTER,
    )
    .await;
    assert_eq!(summary.status, 200, "{}", summary.body);
    let days: &Vec<Value> = summary.body.as_array().unwrap();
    assert_eq!(days.len(), 1, "{}", summary.body);
    assert_eq!(days[0]["spend"].as_f64(), Some(top));
    assert_eq!(days[0]["models"]["absurd"].as_f64(), Some(top));
    assert_eq!(days[0]["users"]["u-absurd"].as_f64(), Some(top));
    for path in ["/key/list", "/spend/logs", "/ui"] {
        let a = get(&p, path, MASTER).await;
        assert_eq!(a.status, 200, "{path}: {}", a.body);
    }
    p.stop().await;
    place.cleanup().await;
}

both_backends!(absurd_usage_is_clamped_and_reports_survive_saturated_rows);
