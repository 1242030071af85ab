#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Bad clients over raw TCP on loopback: bodies refused before they are read, the
//! keep-alive/header timeout, the connection cap, a stop that does not wait on idle
//! connections, and failed sign-ins throttled per address.

mod common;
use common::{KEY, client, eventually_async, start};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIG: u64 = 200 * 1024 * 1024;

fn yaml(extra: &str) -> String {
    format!(
        "model_list:
  - model_name: mocky
    litellm_params:
      model: openai/mock-model
      mock_response: Hello from the mock deployment
general_settings:
  master_key: {KEY}
{extra}"
    )
}

fn addr(gw: &common::Running) -> String {
    gw.base.trim_start_matches("http://").to_string()
}

/// Everything the server sends until it closes the connection (EOF or reset).
async fn until_closed(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one answer whose body has a `content-length` (the connection stays open).
async fn one_answer(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = s.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "closed mid-answer: {}",
            String::from_utf8_lossy(&out)
        );
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if out.len() >= end + 4 + len {
                return text;
            }
        }
    }
}

fn post_head(path: &str, key: Option<&str>, length: u64) -> String {
    let auth = key.map_or(String::new(), |k| format!("authorization: Bearer {k}\r\n"));
    format!(
        "POST {path} HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\n{auth}content-length: {length}\r\n\r\n"
    )
}

#[tokio::test]
async fn unauthenticated_requests_are_answered_before_any_body_byte_is_sent() {
    let gw = start(&yaml("")).await;
    for (path, key, kind) in [
        ("/v1/chat/completions", None, "auth_error"),
        (
            "/v1/chat/completions",
            Some("sk-wrong-key-0001"),
            "auth_error",
        ),
        ("/v1/embeddings", Some("sk-wrong-key-0001"), "auth_error"),
        ("/engines/mocky/chat/completions", None, "auth_error"),
        ("/v1/messages", None, "authentication_error"),
    ] {
        let mut s = TcpStream::connect(addr(&gw)).await.unwrap();
        // The head promises 200 MB; not one body byte is ever sent.
        s.write_all(post_head(path, key, BIG).as_bytes())
            .await
            .unwrap();
        let answer = until_closed(&mut s).await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{path}: {answer}");
        assert!(answer.contains(kind), "{path}: {answer}");
    }
    // The model routes' answer carries the call id like any other.
    let mut s = TcpStream::connect(addr(&gw)).await.unwrap();
    s.write_all(post_head("/v1/chat/completions", None, BIG).as_bytes())
        .await
        .unwrap();
    assert!(until_closed(&mut s).await.contains("x-litellm-call-id"));
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_declared_body_over_the_limit_is_413_before_it_is_read() {
    let gw = start(&yaml("  max_request_size_mb: 1\n")).await;
    let mut s = TcpStream::connect(addr(&gw)).await.unwrap();
    s.write_all(post_head("/v1/chat/completions", Some(KEY), BIG).as_bytes())
        .await
        .unwrap();
    let answer = until_closed(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("Request size is too large. Max size is 1 MB"),
        "{answer}"
    );
    // Within the limit, the same key is served.
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&common::chat_body("mocky", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    gw.shutdown().await.unwrap();
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_clients_pushing_200_mb_without_a_key_are_cut_off_and_memory_stays_flat() {
    let gw = start(&yaml("")).await;
    let before = rss_kib();
    let mut clients = Vec::new();
    for _ in 0..10 {
        let a = addr(&gw);
        clients.push(tokio::spawn(async move {
            let s = TcpStream::connect(a).await.unwrap();
            let (mut rd, mut wr) = s.into_split();
            let writer = tokio::spawn(async move {
                let chunk = vec![b'x'; 1024 * 1024];
                let mut sent = 0u64;
                if wr
                    .write_all(post_head("/v1/chat/completions", None, BIG).as_bytes())
                    .await
                    .is_err()
                {
                    return sent;
                }
                while sent < BIG {
                    if wr.write_all(&chunk).await.is_err() {
                        break;
                    }
                    sent += chunk.len() as u64;
                }
                sent
            });
            let mut answer = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => answer.extend_from_slice(&buf[..n]),
                }
            }
            (
                String::from_utf8_lossy(&answer).into_owned(),
                writer.await.unwrap(),
            )
        }));
    }
    for c in clients {
        let (answer, sent) = c.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
        // The server closed the connection: the client could not deliver its body.
        assert!(sent < BIG, "the whole body went through");
    }
    let grown_mib = rss_kib().saturating_sub(before) / 1024;
    assert!(
        grown_mib < 200,
        "RSS grew by {grown_mib} MiB for 2000 MB that were never read"
    );
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn idle_and_half_open_connections_are_closed_after_the_keepalive_timeout() {
    let gw = start(&yaml("  keepalive_timeout: 0.3\n")).await;
    // Half a request head, then nothing: closed without an answer.
    let mut s = TcpStream::connect(addr(&gw)).await.unwrap();
    s.write_all(b"GET /health/liveliness HTTP/1.1\r\nhost: g")
        .await
        .unwrap();
    let answer = until_closed(&mut s).await;
    assert!(!answer.contains("I'm alive"), "{answer}");
    // A kept-alive connection after its answer: closed too.
    let mut s = TcpStream::connect(addr(&gw)).await.unwrap();
    s.write_all(b"GET /health/liveliness HTTP/1.1\r\nhost: g\r\n\r\n")
        .await
        .unwrap();
    let answer = until_closed(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("I'm alive"), "{answer}");
    // A silent connection: closed.
    let mut s = TcpStream::connect(addr(&gw)).await.unwrap();
    assert_eq!(until_closed(&mut s).await, "");
    gw.shutdown().await.unwrap();
}

/// The keep-alive bound counts from the last answer's end, not from the connection's start,
/// and not while a call is in flight.
#[tokio::test]
async fn a_call_longer_than_the_keepalive_timeout_is_answered_and_its_connection_kept() {
    let up = idlehands_testkit::FakeOpenAi::start().await;
    let gw = start(&format!(
        "{}general_settings:\n  master_key: {KEY}\n  keepalive_timeout: 0.3\n",
        common::two_models(&up.base_url())
            .split("general_settings:")
            .next()
            .unwrap()
    ))
    .await;
    up.push(
        idlehands_testkit::Reply::text("slow but complete")
            .with_delay(std::time::Duration::from_millis(900)),
    );
    let mut s = TcpStream::connect(addr(&gw)).await.unwrap();
    let body = common::chat_body("gpt-4o", false).to_string();
    s.write_all(
        format!(
            "{}{body}",
            post_head("/v1/chat/completions", Some(KEY), body.len() as u64)
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let answer = one_answer(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("slow but complete"), "{answer}");
    // Three times the bound since the connection opened, but just answered: not idle yet.
    s.write_all(b"GET /health/liveliness HTTP/1.1\r\nhost: g\r\n\r\n")
        .await
        .unwrap();
    assert!(one_answer(&mut s).await.contains("I'm alive"));
    // Then idle for the bound: closed.
    assert_eq!(until_closed(&mut s).await, "");
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_stop_finishes_calls_in_flight_and_does_not_wait_on_idle_connections() {
    let up = idlehands_testkit::FakeOpenAi::start().await;
    // An hour of keep-alive: if the stop waited on idle connections, this test would hang.
    let gw = start(&format!(
        "{}general_settings:\n  master_key: {KEY}\n  keepalive_timeout: 3600\n",
        common::two_models(&up.base_url())
            .split("general_settings:")
            .next()
            .unwrap()
    ))
    .await;
    let mut silent = TcpStream::connect(addr(&gw)).await.unwrap();
    let mut half_open = TcpStream::connect(addr(&gw)).await.unwrap();
    half_open
        .write_all(b"GET /health/liveliness HTTP/1.1\r\nhost: g")
        .await
        .unwrap();
    let mut kept_alive = TcpStream::connect(addr(&gw)).await.unwrap();
    kept_alive
        .write_all(b"GET /health/liveliness HTTP/1.1\r\nhost: g\r\n\r\n")
        .await
        .unwrap();
    assert!(one_answer(&mut kept_alive).await.contains("I'm alive"));
    let pending = common::slow_call_in_flight(&up, gw.url("/v1/chat/completions")).await;
    let base = gw.base.clone();
    gw.shutdown().await.unwrap();
    // The call in flight got its whole answer; the idle ones were simply closed.
    common::assert_drained(pending, &base).await;
    for s in [&mut silent, &mut half_open, &mut kept_alive] {
        assert_eq!(until_closed(s).await, "");
    }
}

#[tokio::test]
async fn connections_over_limit_concurrency_are_answered_503_and_closed() {
    let gw = start(&yaml("  limit_concurrency: 2\n  keepalive_timeout: 3600\n")).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr(&gw)).await.unwrap();
        s.write_all(b"GET /health/liveliness HTTP/1.1\r\nhost: g\r\n\r\n")
            .await
            .unwrap();
        assert!(one_answer(&mut s).await.starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    let mut third = TcpStream::connect(addr(&gw)).await.unwrap();
    let answer = until_closed(&mut third).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("limit_concurrency"), "{answer}");
    // A place frees when a client leaves; the server notices the close on its own time.
    drop(held.pop());
    let url = &gw.url("/health/liveliness");
    eventually_async("a place freed after a client left", || async move {
        client()
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn failed_sign_ins_and_wrong_keys_are_throttled_per_address() {
    let gw = start(&yaml("")).await;
    let login = |password: &'static str| {
        client()
            .post(gw.url("/ui/login"))
            .json(&json!({"password": password}))
            .send()
    };
    for _ in 0..5 {
        assert_eq!(login("sk-guess-0000000001").await.unwrap().status(), 401);
    }
    for _ in 0..5 {
        let r = client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth("sk-guess-0000000002")
            .json(&common::chat_body("mocky", false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    // Ten failures within the minute: every attempt from this address now waits, even one
    // with the right key, so a guess that happens to be right is not told so.
    let r = login(KEY).await.unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let b: Value = r.json().await.unwrap();
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Too many failed authentication attempts"),
        "{b}"
    );
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&common::chat_body("mocky", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // Requests without a key are not guesses and the open probes stay open.
    let r = client()
        .get(gw.url("/health/readiness"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    gw.shutdown().await.unwrap();
}
