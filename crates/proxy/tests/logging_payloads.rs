#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Full request/response logging: `store_prompts_in_spend_logs` fills the record's
//! `messages`/`response` (strings cut at 2048 chars), `request_log_path` appends JSON lines with
//! whole bodies; both redact keys. Off by default, with nothing captured.

mod common;

use common::{KEY, client, config, eventually, start_cfg, two_models};
use idlehands_testkit::{FakeOpenAi, Reply};
use serde_json::{Value, json};

fn yaml(upstream: &str, extra: &str) -> String {
    format!("{}{extra}", two_models(upstream))
}

async fn read_lines(path: &std::path::Path, n: usize) -> Vec<Value> {
    let lines = || -> Vec<Value> {
        std::fs::read_to_string(path)
            .map(|text| {
                text.lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect()
            })
            .unwrap_or_default()
    };
    eventually(&format!("{n} lines in the request log"), || {
        lines().len() >= n
    })
    .await;
    lines()
}

#[tokio::test]
async fn prompts_and_responses_go_to_the_record_and_the_request_log_redacted() {
    let up = FakeOpenAi::start().await;
    up.push(Reply::text("the answer, not sk-upstreamleak99").with_usage(7, 3));
    up.push(Reply::text("streamed words here").with_usage(5, 4));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("logs/requests.jsonl");
    let extra = format!(
        "  store_prompts_in_spend_logs: true\n  request_log_path: {}\n",
        log.display()
    );
    let gw = start_cfg(config(&yaml(&up.base_url(), &extra), &[]), |b| b).await;
    let long = "x".repeat(5000);
    let body = json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": long},
            {"role": "user", "content": "my key is sk-live-abcdef0123456789, keep it"},
        ],
        "api_key": "sk-client-side-credential-1",
    });
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let call_id = r.headers()["x-litellm-call-id"]
        .to_str()
        .unwrap()
        .to_string();
    r.text().await.unwrap();
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&common::chat_body("gpt-4o", true))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap();

    let records = gw.records(2).await;
    let first = records.iter().find(|r| r.call_id == call_id).unwrap();
    let messages = first.messages.as_ref().expect("messages stored");
    assert_eq!(messages[0]["content"].as_str().unwrap().len(), 2048);
    assert_eq!(messages[1]["content"], "my key is sk-[redacted], keep it");
    let response = first.response.as_ref().expect("response stored");
    assert_eq!(
        response["choices"][0]["message"]["content"],
        "the answer, not sk-[redacted]"
    );
    let streamed = records.iter().find(|r| r.stream).unwrap();
    assert_eq!(
        streamed.response.as_ref().unwrap()["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .replace(' ', ""),
        "streamedwordshere"
    );
    assert_eq!(streamed.messages.as_ref().unwrap()[0]["content"], "Say hi");

    let lines = read_lines(&log, 2).await;
    let line = lines
        .iter()
        .find(|l| l["call_id"] == call_id.as_str())
        .unwrap();
    // The file keeps whole bodies, redacted.
    assert_eq!(
        line["request"]["messages"][0]["content"]
            .as_str()
            .unwrap()
            .len(),
        5000
    );
    assert_eq!(line["request"]["api_key"], "[redacted]");
    assert_eq!(line["status"], "success");
    assert_eq!(line["model_group"], "gpt-4o");
    assert_eq!(line["prompt_tokens"], 7);
    assert_eq!(
        line["response"]["choices"][0]["message"]["content"],
        "the answer, not sk-[redacted]"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    // Prompts are in it: for the owner's eyes only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&log).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
    }
    for secret in [
        KEY,
        "sk-live-abcdef0123456789",
        "sk-client-side-credential-1",
        "sk-upstream-secret",
        "sk-upstreamleak99",
    ] {
        assert!(
            !text.contains(secret),
            "{secret} leaked into the request log"
        );
    }
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn failures_are_logged_with_their_error() {
    let up = FakeOpenAi::start().await;
    up.push(Reply::error(400, "bad things in sk-abcdefghijklmnop"));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("requests.jsonl");
    let extra = format!("  request_log_path: {}\n", log.display());
    let gw = start_cfg(config(&yaml(&up.base_url(), &extra), &[]), |b| b).await;
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&common::chat_body("gpt-4o", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let lines = read_lines(&log, 1).await;
    assert_eq!(lines[0]["status"], "failure");
    assert_eq!(lines[0]["http_status"], 400);
    assert_eq!(lines[0]["request"]["messages"][0]["content"], "Say hi");
    let err = lines[0]["error"].as_str().unwrap();
    assert!(!err.contains("sk-abcdefghijklmnop"), "{err}");
    // Only the file was asked for: spend-log columns stay empty.
    let rec = gw.records(1).await;
    assert!(rec[0].messages.is_none() && rec[0].response.is_none());
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn nothing_is_captured_by_default() {
    let gw = start_cfg(config(&two_models("http://127.0.0.1:9"), &[]), |b| b).await;
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&common::chat_body("mocky", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap();
    let rec = gw.records(1).await;
    assert_eq!(rec.len(), 1);
    assert!(rec[0].messages.is_none() && rec[0].response.is_none());
    gw.shutdown().await.unwrap();
}

#[test]
fn an_unwritable_request_log_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "x").unwrap();
    let extra = format!("  request_log_path: {}/sub/log.jsonl\n", blocker.display());
    let cfg = config(&yaml("http://127.0.0.1:9", &extra), &[]);
    let err = idlehands_proxy::Gateway::builder(cfg)
        .build()
        .err()
        .unwrap();
    assert!(err.to_string().contains("request_log_path"), "{err}");
}
