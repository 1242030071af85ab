#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! JSON logs: one object per line, and a request's lines carry its call id (the one sent back
//! as `x-litellm-call-id`). Its own test binary: it installs the process-wide subscriber.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{KEY, client, config, start_cfg, two_models};
use idlehands_proxy::logging::{LogOptions, init_with_writer};
use serde_json::Value;

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn json_lines_carry_the_call_id() {
    let buf = Buf::default();
    let out = buf.clone();
    let opts = LogOptions::resolve(None, true, false, &|k| {
        (k == "JSON_LOGS").then(|| "true".to_string())
    });
    assert!(opts.json);
    assert!(init_with_writer(&opts, move || out.clone()));

    let gw = start_cfg(config(&two_models("http://127.0.0.1:9"), &[]), |b| b).await;
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&common::chat_body("mocky", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let call_id = r.headers()["x-litellm-call-id"]
        .to_str()
        .unwrap()
        .to_string();
    r.text().await.unwrap();
    gw.records(1).await;
    gw.shutdown().await.unwrap();

    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let answered = lines
        .iter()
        .find(|l| l["message"] == "request answered" && l["span"]["path"] == "/v1/chat/completions")
        .unwrap_or_else(|| panic!("no request line in:\n{text}"));
    assert_eq!(answered["span"]["call_id"], call_id.as_str());
    assert_eq!(answered["status"], 200);
    assert_eq!(answered["level"], "INFO");
    let finished = lines
        .iter()
        .find(|l| l["message"] == "call finished")
        .unwrap_or_else(|| panic!("no call line in:\n{text}"));
    assert_eq!(finished["call_id"], call_id.as_str());
    assert_eq!(finished["model_group"], "mocky");
    assert_eq!(finished["status"], "success");
    assert!(finished["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(!text.contains(KEY));
}
