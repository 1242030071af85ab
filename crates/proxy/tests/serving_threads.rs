#![allow(clippy::unwrap_used, clippy::expect_used)]
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
