#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `/v1/audio/transcriptions` and `/v1/audio/speech` forwarded to OpenAI-compatible
//! deployments over real HTTP, driven by the official OpenAI Python SDK (`client.audio.*`)
//! and plain HTTP: the model name swapped in the upload, the audio streamed back, one spend
//! row a call priced per second transcribed or per character spoken.

mod common;

use std::path::Path;

use common::{KEY, client, start};
use idlehands_testkit::{FakeAnthropic, FakeOpenAi, Reply};
use serde_json::{Value, json};

fn config(base: &str, anthropic: &str) -> String {
    format!(
        "model_list:
  - model_name: whisper
    litellm_params:
      model: openai/whisper-1
      api_base: {base}
      api_key: sk-openai-upstream
  - model_name: tts
    litellm_params:
      model: openai/tts-1
      api_base: {base}
      api_key: sk-openai-upstream
  - model_name: local-whisper
    litellm_params:
      model: hosted_vllm/whisper-large-v3
      api_base: {base}
      input_cost_per_second: 0.001
  - model_name: claude
    litellm_params:
      model: anthropic/claude-sonnet-4-5
      api_base: {anthropic}
      api_key: sk-ant
general_settings:
  master_key: {KEY}
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_transcribes_and_speaks_through_the_gateway() {
    let up = FakeOpenAi::start().await;
    up.set_default(Reply::text("hello from the recording").with_usage(30, 0));
    let ant = FakeAnthropic::start().await;
    let gw = start(&config(&up.base_url(), &ant.base_url())).await;
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/openai_audio_check.py");
    let out = tokio::process::Command::new("python3")
        .arg(&script)
        .arg(gw.url("/v1"))
        .arg(KEY)
        .arg("whisper")
        .arg("tts")
        .output()
        .await
        .expect("python3 must be installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the SDK check failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    for line in [
        "ok transcription",
        "ok verbose_json",
        "ok speech",
        "ok AuthenticationError",
        "ALL OK",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    let sent = up.requests();
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert_eq!(sent[0].path, "/v1/audio/transcriptions");
    assert_eq!(
        sent[0].body["model"], "whisper-1",
        "the deployment's name goes up"
    );
    assert_eq!(
        sent[0].header("authorization"),
        Some("Bearer sk-openai-upstream")
    );
    assert_eq!(sent[2].path, "/v1/audio/speech");
    assert_eq!(sent[2].body["model"], "tts-1");
    let records = gw.records(3).await;
    for r in &records[..2] {
        assert_eq!(r.call_type, "atranscription");
        // 30 s at whisper-1's $0.0001 a second.
        assert_eq!(r.cost_nanos, 3_000_000, "{r:?}");
        assert_eq!(r.http_status, 200);
    }
    assert_eq!(records[2].call_type, "aspeech");
    // 11 characters at tts-1's $0.000015 each.
    assert_eq!(records[2].cost_nanos, 165_000);
    gw.shutdown().await.unwrap();
}

fn form(boundary: &str, model: Option<&str>, file: bool) -> Vec<u8> {
    let mut b = Vec::new();
    if let Some(m) = model {
        b.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n{m}\r\n"
            )
            .as_bytes(),
        );
    }
    if file {
        b.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n").as_bytes(),
        );
        b.extend_from_slice(b"RIFF\x00\x01binary\r\n--almost\xff");
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    b
}

async fn upload(gw: &common::Running, body: Vec<u8>) -> reqwest::Response {
    client()
        .post(gw.url("/v1/audio/transcriptions"))
        .bearer_auth(KEY)
        .header("content-type", "multipart/form-data; boundary=b0undary")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn uploads_are_checked_priced_by_config_and_kept_to_openai_compatible_deployments() {
    let up = FakeOpenAi::start().await;
    up.set_default(Reply::text("local words").with_usage(4, 0));
    let ant = FakeAnthropic::start().await;
    let gw = start(&config(&up.base_url(), &ant.base_url())).await;

    let resp = upload(&gw, form("b0undary", Some("local-whisper"), true)).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-litellm-call-id"));
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["text"], "local words");
    assert_eq!(up.last_request().unwrap().body["model"], "whisper-large-v3");
    let records = gw.records(1).await;
    // 4 s at the configured $0.001 a second.
    assert_eq!(records[0].cost_nanos, 4_000_000);
    assert_eq!(records[0].custom_llm_provider, "hosted_vllm");

    let resp = upload(&gw, form("b0undary", Some("whisper"), false)).await;
    assert_eq!(resp.status(), 400);
    let resp = upload(&gw, form("b0undary", None, true)).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("model"),
        "{v}"
    );
    let resp = client()
        .post(gw.url("/v1/audio/transcriptions"))
        .bearer_auth(KEY)
        .json(&json!({"model": "whisper"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // A provider without the API is a 400 naming it, and leaves its row.
    let resp = upload(&gw, form("b0undary", Some("claude"), true)).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("OpenAI-compatible"),
        "{v}"
    );
    let resp = client()
        .post(gw.url("/v1/audio/speech"))
        .bearer_auth(KEY)
        .json(&json!({"model": "claude", "input": "hi", "voice": "alloy"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(ant.served(), 0);
    assert_eq!(up.served(), 1);
    let records = gw.records(3).await;
    assert_eq!(records.last().unwrap().http_status, 400);
    gw.shutdown().await.unwrap();
}
