#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `serve_threads`: one runtime per serving thread, connections handed to the least busy
//! thread, graceful drain, and the threads' runtimes kept until released.

mod common;

use std::time::Duration;

use common::{KEY, assert_drained, chat_body, client, config, slow_call_in_flight, two_models};
use idlehands_proxy::{Gateway, serve_threads};
use idlehands_testkit::FakeOpenAi;

/// A gateway with an extra route naming the thread that served it.
fn gateway(upstream: &str) -> Gateway {
    let gw = Gateway::builder(config(&two_models(upstream), &[]))
        .build()
        .unwrap();
    let routes = axum::Router::new().route(
        "/whoami",
        axum::routing::get(|| async {
            std::thread::current()
                .name()
                .unwrap_or_default()
                .to_string()
        }),
    );
    gw.with_routes(routes)
}

/// The name of the thread that served `client`'s connection.
async fn whoami(client: &reqwest::Client, base: &str) -> String {
    let r = client.get(format!("{base}/whoami")).send().await.unwrap();
    r.text().await.unwrap()
}

fn listener() -> (std::net::TcpListener, String) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    (l, base)
}

#[tokio::test]
async fn connections_are_spread_over_the_serving_threads() {
    let up = FakeOpenAi::start().await;
    let (l, base) = listener();
    let serving = serve_threads(&gateway(&up.base_url()), l, 2).unwrap();
    // Each client keeps its connection open, so the second is handed to the idle thread.
    let mut names = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..2 {
        let c = client();
        names.push(whoami(&c, &base).await);
        clients.push(c);
    }
    names.sort();
    assert_eq!(names, ["idlehands-serve-0", "idlehands-serve-1"]);
    // The same connection stays on its thread; chat calls work from both.
    for c in &clients {
        let again = whoami(c, &base).await;
        assert!(again.starts_with("idlehands-serve-"), "{again}");
        let r = c
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&chat_body("gpt-4o", false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(up.served(), 2);
    serving.release();
}

#[tokio::test]
async fn stop_drains_in_flight_requests_and_refuses_new_connections() {
    let up = FakeOpenAi::start().await;
    let (l, base) = listener();
    let mut serving = serve_threads(&gateway(&up.base_url()), l, 2).unwrap();
    let pending = slow_call_in_flight(&up, format!("{base}/v1/chat/completions")).await;
    serving.stop();
    tokio::time::timeout(Duration::from_secs(30), serving.wait())
        .await
        .unwrap()
        .unwrap();
    assert_drained(pending, &base).await;
    serving.release();
}

#[tokio::test]
async fn a_thread_count_of_zero_still_serves_on_one() {
    let up = FakeOpenAi::start().await;
    let (l, base) = listener();
    let serving = serve_threads(&gateway(&up.base_url()), l, 0).unwrap();
    assert_eq!(whoami(&client(), &base).await, "idlehands-serve-0");
    serving.release();
}

/// Everything the server sends until it closes the connection.
async fn until_closed(s: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn the_cap_counts_every_thread_and_a_stop_does_not_wait_on_idle_connections() {
    use tokio::io::AsyncWriteExt;
    let up = FakeOpenAi::start().await;
    // An hour of keep-alive: a stop that waited on idle connections would hang here.
    let yaml = two_models(&up.base_url()) + "  keepalive_timeout: 3600\n  limit_concurrency: 3\n";
    let gw = Gateway::builder(config(&yaml, &[])).build().unwrap();
    let (l, base) = listener();
    let addr = base.trim_start_matches("http://").to_string();
    let mut serving = serve_threads(&gw, l, 2).unwrap();
    let mut kept_alive = tokio::net::TcpStream::connect(&addr).await.unwrap();
    kept_alive
        .write_all(b"GET /health/liveliness HTTP/1.1\r\nhost: g\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    tokio::io::AsyncReadExt::read_exact(&mut kept_alive, &mut head)
        .await
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let mut half_open = tokio::net::TcpStream::connect(&addr).await.unwrap();
    half_open
        .write_all(b"GET /health/liveliness HTTP/1.1\r\nhost: g")
        .await
        .unwrap();
    let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // Three open over two threads: the fourth is turned away.
    let mut fourth = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let answer = until_closed(&mut fourth).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    serving.stop();
    serving.wait().await.unwrap();
    for s in [&mut half_open, &mut silent] {
        assert_eq!(until_closed(s).await, "");
    }
    let rest = until_closed(&mut kept_alive).await;
    assert!(rest.contains("I'm alive"), "{rest}");
    serving.release();
}
