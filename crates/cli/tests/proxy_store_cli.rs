#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `idlehands proxy` with its key and spend database, as a process: where the database is, and
//! that SIGTERM commits every spend row (the flush window here is a minute, so only the
//! shutdown commit can have written them), and `disable_spend_logs`.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

mod proxy_process;
use proxy_process::{http, json_of, spawn, terminate};

const MASTER: &str = "sk-cli-store-master-1";

fn write_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("config.yaml");
    std::fs::write(
        &path,
        format!(
            "model_list:
  - model_name: mocky
    litellm_params:
      model: openai/mock-model
      mock_response: Hello from the mock deployment
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000002
general_settings:
  master_key: {MASTER}
{extra}"
        ),
    )
    .unwrap();
    path
}

fn cmd(state_dir: &Path) -> Command {
    proxy_process::gateway_cmd(state_dir)
}

#[tokio::test]
async fn sigterm_commits_every_spend_row() {
    // A minute between group commits: rows reach the database only by the shutdown commit.
    calls_then_restart("  proxy_batch_write_at: 60\n", true).await;
}

#[tokio::test]
async fn disable_spend_logs_keeps_key_spend_and_stores_no_rows() {
    calls_then_restart(
        "  proxy_batch_write_at: 60\n  disable_spend_logs: true\n",
        false,
    )
    .await;
}

/// 25 calls on a fresh virtual key, SIGTERM, then a fresh process on the same database: the
/// key's spend is the sum of the cost headers, and so is the day's spend report; the spend logs
/// hold a row per call (or none, when `rows_expected` is false).
async fn calls_then_restart(settings: &str, rows_expected: bool) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), settings);
    let db = dir.path().join("keys.db");
    let mut c = cmd(dir.path());
    c.args(["proxy", "--config"]).arg(&cfg).arg("--db").arg(&db);
    let (mut child, url, _) = spawn(c);

    let (status, generated) = json_of(
        http()
            .post(format!("{url}/key/generate"))
            .bearer_auth(MASTER)
            .json(&json!({"key_alias": "durable", "max_budget": 10.0})),
    )
    .await;
    assert_eq!(status, 200, "{generated}");
    let key = generated["key"].as_str().unwrap().to_string();
    let calls = 25;
    let mut cost = 0.0;
    for _ in 0..calls {
        let resp = http()
            .post(format!("{url}/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&json!({"model": "mocky", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        cost += resp.headers()["x-litellm-response-cost"]
            .to_str()
            .unwrap()
            .parse::<f64>()
            .unwrap();
    }
    assert_eq!(terminate(&mut child), 0);

    // The same database, read by a fresh process.
    let mut c = cmd(dir.path());
    c.args(["proxy", "--config"]).arg(&cfg).arg("--db").arg(&db);
    let (mut child, url, _) = spawn(c);
    let (status, rows) = json_of(
        http()
            .get(format!("{url}/spend/logs?api_key={key}"))
            .bearer_auth(MASTER),
    )
    .await;
    assert_eq!(status, 200, "{rows}");
    let stored = rows.as_array().unwrap().len();
    assert_eq!(stored, if rows_expected { calls } else { 0 }, "{rows}");
    let (_, info) = json_of(http().get(format!("{url}/key/info")).bearer_auth(&key)).await;
    let spend = info["info"]["spend"].as_f64().unwrap();
    assert!((spend - cost).abs() < 1e-9, "{spend} vs {cost}");
    // The daily rollups count every call either way (LiteLLM keeps its daily tables without
    // its spend logs), so the spend report has them.
    let day = |d: chrono::DateTime<chrono::Utc>| d.format("%Y-%m-%d").to_string();
    let now = chrono::Utc::now();
    // From yesterday: the calls may have crossed midnight.
    let (from, to) = (day(now - chrono::Duration::days(1)), day(now));
    let (status, report) = json_of(
        http()
            .get(format!(
                "{url}/global/spend/report?start_date={from}&end_date={to}&group_by=api_key"
            ))
            .bearer_auth(MASTER),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    let reported: f64 = report
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["total_cost"].as_f64().unwrap())
        .sum();
    assert!(
        (reported - cost).abs() < 1e-9,
        "{reported} vs {cost}: {report}"
    );
    assert_eq!(terminate(&mut child), 0);
}

#[tokio::test]
async fn database_location_precedence() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");

    // Default: the state directory.
    let mut c = cmd(dir.path());
    c.args(["proxy", "--config"]).arg(&cfg);
    let (mut child, url, before) = spawn(c);
    let default_db = dir.path().join("proxy.db");
    assert!(default_db.exists(), "{before:?}");
    assert!(
        before
            .iter()
            .any(|l| l.contains(&default_db.display().to_string())),
        "{before:?}"
    );
    let (status, body) = json_of(http().get(format!("{url}/health/readiness"))).await;
    assert_eq!(status, 200);
    assert_eq!(body["db"], "connected");
    assert_eq!(terminate(&mut child), 0);

    // DATABASE_URL beats the default; --db beats DATABASE_URL.
    let env_db = dir.path().join("env.db");
    let flag_db = dir.path().join("flag.db");
    let mut c = cmd(dir.path());
    c.env("DATABASE_URL", &env_db)
        .args(["proxy", "--config"])
        .arg(&cfg);
    let (mut child, _, _) = spawn(c);
    assert!(env_db.exists());
    assert_eq!(terminate(&mut child), 0);
    let mut c = cmd(dir.path());
    c.env("DATABASE_URL", &env_db)
        .args(["proxy", "--config"])
        .arg(&cfg)
        .arg("--db")
        .arg(&flag_db);
    let (mut child, _, before) = spawn(c);
    assert!(flag_db.exists());
    assert!(before.iter().any(|l| l.contains("flag.db")), "{before:?}");
    assert_eq!(terminate(&mut child), 0);
}

#[test]
fn unreachable_redis_fails_closed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    // Port 9 (discard) is closed on loopback.
    let cfg = write_config(
        dir.path(),
        "router_settings:\n  redis_url: redis://127.0.0.1:9\n",
    );
    let out = cmd(dir.path())
        .args(["proxy", "--port", "0", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("redis_failure_mode"), "{err}");
}

#[tokio::test]
async fn settings_with_no_effect_are_named_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "  disable_error_logs: true\nlitellm_settings:\n  success_callback: [langfuse]\n",
    );
    let mut c = cmd(dir.path());
    c.args(["proxy", "--config"]).arg(&cfg);
    let (mut child, url, before) = spawn(c);
    for path in [
        "general_settings.disable_error_logs has no effect here",
        "litellm_settings.success_callback \"langfuse\" has no effect here",
    ] {
        assert!(
            before
                .iter()
                .any(|l| l.contains("config.yaml") && l.contains(path)),
            "{path}: {before:?}"
        );
    }
    // It still starts and serves.
    let (status, _) = json_of(http().get(format!("{url}/health/liveliness"))).await;
    assert_eq!(status, 200);
    assert_eq!(terminate(&mut child), 0);
}

/// Issue 19: a stream still running when the drain (`GRACEFUL_SHUTDOWN_TIMEOUT`) ends gets a
/// final error event, and its row and the key's spend are committed by the stop (the flush
/// window is a minute): a fresh process on the same database finds them.
#[tokio::test]
async fn sigterm_ends_a_stream_still_running_after_the_drain_and_records_it() {
    // About 40 s of stream: only the stop can end it within the test.
    let (_up, slow) = proxy_process::slow_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    std::fs::write(
        &cfg,
        format!(
            "model_list:
{slow}general_settings:
  master_key: {MASTER}
  proxy_batch_write_at: 60
"
        ),
    )
    .unwrap();
    let db = dir.path().join("keys.db");
    let mut c = cmd(dir.path());
    c.env("GRACEFUL_SHUTDOWN_TIMEOUT", "1")
        .args(["proxy", "--config"])
        .arg(&cfg)
        .arg("--db")
        .arg(&db);
    let (mut child, url, _) = spawn(c);
    let (status, generated) = json_of(
        http()
            .post(format!("{url}/key/generate"))
            .bearer_auth(MASTER)
            .json(&json!({"max_budget": 10.0})),
    )
    .await;
    assert_eq!(status, 200, "{generated}");
    let key = generated["key"].as_str().unwrap().to_string();

    let (mut resp, mut seen) = proxy_process::slow_stream(&url, &key, 3).await;
    let call_id = resp.headers()["x-litellm-call-id"]
        .to_str()
        .unwrap()
        .to_string();
    let stopping = tokio::task::spawn_blocking(move || {
        let code = terminate(&mut child);
        (code, child)
    });
    while let Some(bytes) = resp.chunk().await.unwrap() {
        seen.push_str(&String::from_utf8_lossy(&bytes));
    }
    let (code, _) = stopping.await.unwrap();
    assert_eq!(code, 0);
    let last = seen
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap();
    let err: Value = serde_json::from_str(last).unwrap_or_else(|_| panic!("{seen}"));
    let msg = err["error"]["message"].as_str().unwrap();
    assert!(msg.contains("The gateway is shutting down"), "{msg}");
    assert!(!seen.contains("[DONE]"), "{seen}");

    let mut c = cmd(dir.path());
    c.args(["proxy", "--config"]).arg(&cfg).arg("--db").arg(&db);
    let (mut child, url, _) = spawn(c);
    let (status, rows) = json_of(
        http()
            .get(format!("{url}/spend/logs?request_id={call_id}"))
            .bearer_auth(MASTER),
    )
    .await;
    assert_eq!(status, 200, "{rows}");
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row["status"], "failure", "{row:#}");
    let text = row["metadata"]["error_information"]["error_message"]
        .as_str()
        .unwrap();
    assert!(text.contains("shutting down"), "{text}");
    assert!(row["completion_tokens"].as_u64().unwrap() >= 3, "{row:#}");
    let spend = row["spend"].as_f64().unwrap();
    assert!(spend > 0.0, "{row:#}");
    let (_, info) = json_of(http().get(format!("{url}/key/info")).bearer_auth(&key)).await;
    let key_spend = info["info"]["spend"].as_f64().unwrap();
    assert!((key_spend - spend).abs() < 1e-12, "{key_spend} vs {spend}");
    assert_eq!(terminate(&mut child), 0);
}

#[test]
fn a_graceful_shutdown_timeout_that_is_not_a_number_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    let out = cmd(dir.path())
        .env("GRACEFUL_SHUTDOWN_TIMEOUT", "soon")
        .args(["proxy", "--config"])
        .arg(&cfg)
        .args(["--host", "127.0.0.1", "--port", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("GRACEFUL_SHUTDOWN_TIMEOUT=\"soon\": must be a number of seconds"),
        "{err}"
    );
}
