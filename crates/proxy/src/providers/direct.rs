//! The HTTP client for OpenAI-compatible upstreams: hyper's pooled client with rustls, used
//! directly. The general client (reqwest) parsed and re-formatted the URL, ran a redirect
//! layer and wrapped the body on every call; on the gateway's hottest path that was about a
//! seventh of its instructions (callgrind, bench/). Redirects are not followed, as LiteLLM's
//! httpx client does not follow them either.
//!
//! When the environment names an HTTP proxy (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, any
//! case) [`enabled`] is false and callers use reqwest, which honours those variables.
//!
//! Each thread has its own client (its own connection pool): under `serve_threads` a serving
//! thread's upstream connections are then driven by that thread's runtime, so an exchange
//! never hands work to another thread (a cross-CPU wake-up each way).

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::{TokioExecutor, TokioTimer};

type DirectClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

const PROXY_VARS: [&str; 6] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// False when requests must go through an HTTP proxy (reqwest's job).
pub(crate) fn enabled() -> bool {
    static DIRECT: OnceLock<bool> = OnceLock::new();
    *DIRECT.get_or_init(|| {
        !PROXY_VARS
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
    })
}

/// Sends `request` on this thread's client.
pub(crate) fn request(request: http::Request<Full<Bytes>>) -> ResponseFuture {
    thread_local! {
        static CLIENT: DirectClient = build();
    }
    CLIENT.with(|c| c.request(request))
}

fn build() -> DirectClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(30)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024)
        .build(https)
}

/// An error's text with its causes, without the URL (which may carry a key).
pub(crate) fn error_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.dedup();
    parts.join(": ")
}
