//! Real HTTP against the testkit fakes: post a translated body, get the raw answer back.

#![allow(dead_code)]

use idlehands_wire::{SseDecoder, SseEvent};
use serde_json::Value;

pub async fn post(url: &str, headers: &[(String, String)], body: &Value) -> (u16, String) {
    let resp = request(url, headers, body).await;
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// POST and decode the answer as SSE, chunk by chunk as it arrives.
pub async fn post_sse(
    url: &str,
    headers: &[(String, String)],
    body: &Value,
) -> (u16, Vec<SseEvent>) {
    let mut resp = request(url, headers, body).await;
    let status = resp.status().as_u16();
    let mut dec = SseDecoder::new();
    let mut events = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        events.extend(dec.push(&chunk));
    }
    events.extend(dec.finish());
    (status, events)
}

async fn request(url: &str, headers: &[(String, String)], body: &Value) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(url)
        .timeout(std::time::Duration::from_secs(30))
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(k, v);
    }
    req.send().await.unwrap()
}

/// Recorded headers worth pinning in a snapshot (the port-dependent ones left out).
pub fn header_subset(rec: &idlehands_testkit::Recorded, names: &[&str]) -> Value {
    names
        .iter()
        .map(|n| ((*n).to_string(), Value::from(rec.header(n))))
        .collect::<serde_json::Map<_, _>>()
        .into()
}
