#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]
//! What the provider and /v1/messages end-to-end tests share: snapshots of what a fake
//! received and what the client got, with the volatile parts (times, random ids, signatures)
//! redacted.

use std::collections::BTreeMap;

use idlehands_testkit::Recorded;
use serde_json::{Value, json};

/// Fields whose values change from run to run.
const VOLATILE: &[&str] = &["created", "x-amz-date", "authorization"];

/// `created` and other volatile values replaced by a marker; random-looking ids too.
pub fn redact(mut v: Value) -> Value {
    walk(&mut v);
    v
}

fn walk(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                if VOLATILE.contains(&k.as_str()) && !val.is_null() {
                    *val = json!(format!("[{k}]"));
                } else if k == "id"
                    && val.as_str().is_some_and(|s| {
                        s.starts_with("chatcmpl-") && s.len() > 30
                            || s.starts_with("msg_") && s.len() > 30
                    })
                {
                    *val = json!("[id]");
                } else {
                    walk(val);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(walk),
        _ => {}
    }
}

/// What the fake received: path, query, the named headers, the body.
pub fn upstream_request(r: &Recorded, headers: &[&str]) -> Value {
    let h: BTreeMap<&str, Value> = headers
        .iter()
        .map(|name| (*name, r.header(name).map_or(Value::Null, |v| json!(v))))
        .collect();
    redact(json!({
        "path": r.path,
        "query": r.query,
        "headers": h,
        "body": r.body,
    }))
}

/// The `data:` payloads of an OpenAI SSE body, parsed (`[DONE]` kept as a string).
pub fn sse_data(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|frame| {
            let data: Vec<&str> = frame
                .lines()
                .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
                .collect();
            if data.is_empty() {
                return None;
            }
            let data = data.join("\n");
            Some(serde_json::from_str(&data).unwrap_or(Value::String(data)))
        })
        .map(redact)
        .collect()
}

/// `(event name, data)` of an Anthropic SSE body.
pub fn sse_events(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|frame| {
            let mut name = Value::Null;
            let mut data = Value::Null;
            for l in frame.lines() {
                if let Some(n) = l.strip_prefix("event: ") {
                    name = json!(n);
                } else if let Some(d) = l.strip_prefix("data: ") {
                    data = serde_json::from_str(d).unwrap_or(json!(d));
                }
            }
            redact(json!({"event": name, "data": data}))
        })
        .collect()
}

/// The gateway's cost header as nano-dollars, rounded the way the gateway rounds.
pub fn cost_header_nanos(resp: &reqwest::Response) -> i64 {
    let usd: f64 = resp
        .headers()
        .get("x-litellm-response-cost")
        .expect("cost header")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    (usd * 1e9).round() as i64
}

/// Cost by LiteLLM's formula, with prices in nano-dollars per token
/// (input, output, cache read, cache creation).
pub fn expected_nanos(
    per_token: (i64, i64, i64, i64),
    uncached: i64,
    cache_read: i64,
    cache_creation: i64,
    completion: i64,
) -> i64 {
    let (input, output, read, creation) = per_token;
    uncached * input + cache_read * read + cache_creation * creation + completion * output
}
