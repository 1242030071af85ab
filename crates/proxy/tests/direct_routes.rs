#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The chat, completion and embedding routes that the server answers without the router
//! (`http::direct`) answer every request as the router does: the same gateway served both
//! ways (`serve`, and `Gateway::router()` under axum as an embedder would) gets the same raw
//! requests, refusals and broken bodies included, and must give the same answers.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use common::KEY;

struct Answer {
    status: u16,
    headers: BTreeSet<String>,
    body: Value,
}

/// Sends `raw` on a fresh connection and reads the answer to its end (the requests say
/// `Connection: close`, or are refused before their body, which closes the connection).
async fn send(addr: &str, raw: &[u8]) -> Answer {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap();
    let text = String::from_utf8_lossy(&got).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let mut lines = head.lines();
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, _)| k.to_ascii_lowercase())
        .collect();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        unchunk(body)
    } else {
        body.to_string()
    };
    let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
    Answer {
        status,
        headers,
        body,
    }
}

fn unchunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

/// What differs between two calls by design: ids and times.
fn comparable(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        for k in ["id", "created", "system_fingerprint"] {
            o.remove(k);
        }
    }
    v
}

fn request(method: &str, path: &str, key: Option<&str>, body: &str, chunked: bool) -> Vec<u8> {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
    );
    if let Some(k) = key {
        head.push_str(&format!("Authorization: Bearer {k}\r\n"));
    }
    let mut raw = if chunked {
        head.push_str("Transfer-Encoding: chunked\r\n\r\n");
        let mut raw = head.into_bytes();
        for part in body.as_bytes().chunks(1000) {
            raw.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
            raw.extend_from_slice(part);
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"0\r\n\r\n");
        raw
    } else {
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        head.into_bytes()
    };
    if !chunked {
        raw.extend_from_slice(body.as_bytes());
    }
    raw
}

#[tokio::test]
async fn served_without_the_router_the_model_routes_answer_as_through_it() {
    let up = idlehands_testkit::FakeOpenAi::start().await;
    for _ in 0..4 {
        up.push(idlehands_testkit::Reply::text("").with_usage(8, 0));
    }
    let cfg = format!(
        "model_list:\n  - model_name: mocky\n    litellm_params: {{model: openai/m, mock_response: hi}}\n  - model_name: embed\n    litellm_params: {{model: openai/text-embedding-3-small, api_base: '{}', api_key: k}}\ngeneral_settings: {{master_key: {KEY}, max_request_size_mb: 0.01}}\n",
        up.base_url()
    );
    let direct = common::start(&cfg).await;
    let direct_addr = direct.base.trim_start_matches("http://").to_string();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let routed_addr = listener.local_addr().unwrap().to_string();
    let app = direct
        .gateway
        .router()
        .into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let chat = r#"{"model":"mocky","messages":[{"role":"user","content":"hello"}]}"#;
    let big = format!(
        r#"{{"model":"mocky","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(20_000)
    );
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "chat",
            request("POST", "/v1/chat/completions", Some(KEY), chat, false),
            200,
        ),
        (
            "chat, chunked body",
            request("POST", "/chat/completions", Some(KEY), chat, true),
            200,
        ),
        (
            "text completion",
            request(
                "POST",
                "/v1/completions",
                Some(KEY),
                r#"{"model":"mocky","prompt":"hello"}"#,
                false,
            ),
            200,
        ),
        (
            "embeddings",
            request(
                "POST",
                "/v1/embeddings",
                Some(KEY),
                r#"{"model":"embed","input":["a","b"]}"#,
                false,
            ),
            200,
        ),
        (
            "embeddings, no input",
            request(
                "POST",
                "/embeddings",
                Some(KEY),
                r#"{"model":"embed"}"#,
                false,
            ),
            400,
        ),
        (
            "no key",
            request("POST", "/v1/chat/completions", None, chat, false),
            401,
        ),
        (
            "wrong key",
            request("POST", "/v1/chat/completions", Some("sk-nope"), chat, false),
            401,
        ),
        (
            "declared too large",
            request("POST", "/v1/chat/completions", Some(KEY), &big, false),
            413,
        ),
        (
            "chunked over the limit",
            request("POST", "/v1/chat/completions", Some(KEY), &big, true),
            413,
        ),
        (
            "not JSON",
            request("POST", "/v1/chat/completions", Some(KEY), "{nope", false),
            400,
        ),
        (
            "no model",
            request(
                "POST",
                "/v1/completions",
                Some(KEY),
                r#"{"prompt":"x"}"#,
                false,
            ),
            400,
        ),
        (
            "unknown model",
            request(
                "POST",
                "/v1/chat/completions",
                Some(KEY),
                r#"{"model":"nope","messages":[{"role":"user","content":"x"}]}"#,
                false,
            ),
            400,
        ),
        (
            "wrong method",
            request("GET", "/v1/chat/completions", Some(KEY), "", false),
            405,
        ),
        (
            "trailing slash",
            request("POST", "/v1/chat/completions/", Some(KEY), chat, false),
            404,
        ),
    ];
    for (what, raw, status) in cases {
        let a = send(&direct_addr, &raw).await;
        let b = send(&routed_addr, &raw).await;
        assert_eq!(a.status, status, "{what}: {}", a.body);
        assert_eq!(b.status, status, "{what} through the router: {}", b.body);
        assert_eq!(
            comparable(a.body),
            comparable(b.body),
            "{what}: the bodies differ"
        );
        assert_eq!(a.headers, b.headers, "{what}: the header names differ");
    }
    direct.shutdown().await.unwrap();
}
