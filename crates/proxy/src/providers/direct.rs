//! The HTTP client for OpenAI-compatible upstreams: hyper's HTTP/1 connections with rustls,
//! pooled here. The general client (reqwest) parsed and re-formatted the URL, ran a redirect
//! layer and wrapped the body on every call; on the gateway's hottest path that was about a
//! seventh of its instructions (callgrind, bench/). Redirects are not followed, as LiteLLM's
//! httpx client does not follow them either.
//!
//! When the environment names an HTTP proxy (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, any
//! case) [`enabled`] is false and callers use reqwest, which honours those variables.
//!
//! Each thread keeps its own idle connections: under `serve_threads` a serving thread's
//! upstream connections are driven by that thread's runtime, so an exchange never hands work
//! to another thread (a cross-CPU wake-up each way). The pool is a plain per-thread list per
//! upstream: hyper-util's shared pool locked a mutex, hashed the origin with SipHash three
//! times and spawned a task per request to take the connection back, about 7% of a request's
//! instructions. A connection goes back to the list when its answer has been read to the end;
//! one dropped earlier closes.
//!
//! Requests go out in origin-form (`POST /v1/chat/completions HTTP/1.1` plus `Host`):
//! absolute-form is for requests to a proxy (RFC 9112 §3.2.2), and servers whose stacks take
//! the raw target as the path (cpp-httplib under llama-server, uvicorn's h11, Python's
//! http.server) answer it with 404. hyper's connection-level client writes whatever URI it is
//! given, so the target is cut down here.

use std::cell::RefCell;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tower_service::Service;

type Sender = SendRequest<Full<Bytes>>;

const PROXY_VARS: [&str; 6] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// An idle connection unused this long is closed rather than reused (the server has likely
/// dropped it by then).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per upstream and thread.
const MAX_IDLE: usize = 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// False when requests must go through an HTTP proxy (reqwest's job).
pub(crate) fn enabled() -> bool {
    static DIRECT: OnceLock<bool> = OnceLock::new();
    *DIRECT.get_or_init(|| {
        !PROXY_VARS
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
    })
}

/// Why a request got no answer.
#[derive(Debug)]
pub(crate) struct DirectError {
    /// No connection could be made (the request was never sent).
    pub connect: bool,
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// An upstream's scheme and authority, made once per deployment: the pool's key, and where a
/// new connection goes. Cloned per request, so it is one reference count.
#[derive(Debug, Clone)]
pub(crate) struct Origin(Arc<OriginParts>);

#[derive(Debug)]
struct OriginParts {
    key: Box<str>,
    connect: http::Uri,
}

impl PartialEq for Origin {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.key == other.0.key
    }
}

/// The origin of an absolute URI; `None` when it names no host to connect to.
pub(crate) fn origin(uri: &http::Uri) -> Option<Origin> {
    let scheme = uri.scheme()?.clone();
    let authority = uri.authority()?.clone();
    let key = format!("{scheme}://{authority}").into_boxed_str();
    let connect = http::Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query("/")
        .build()
        .ok()?;
    Some(Origin(Arc::new(OriginParts { key, connect })))
}

/// The request target to send: the path and query of `uri`, never its scheme and host.
pub(crate) fn origin_form(uri: &http::Uri) -> http::Uri {
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    http::Uri::from(path)
}

#[derive(Debug)]
struct Idle {
    origin: Origin,
    sender: Sender,
    since: Instant,
}

thread_local! {
    static CONNECTOR: HttpsConnector<HttpConnector> = connector();
    // Few upstreams per gateway: a scan beats hashing.
    static IDLE: RefCell<Vec<Idle>> = const { RefCell::new(Vec::new()) };
}

fn connector() -> HttpsConnector<HttpConnector> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http)
}

/// Sends `request` to `origin` on an idle connection of this thread, else on a new one. The
/// request carries its own `Host`; an absolute URI is cut to origin-form before it goes out
/// (callers precompute the origin-form one, so this costs nothing on the hot path).
pub(crate) async fn request(
    mut request: http::Request<Full<Bytes>>,
    origin: &Origin,
) -> Result<http::Response<PooledBody>, DirectError> {
    if request.uri().scheme().is_some() || request.uri().authority().is_some() {
        let target = origin_form(request.uri());
        *request.uri_mut() = target;
    }
    loop {
        let (mut sender, reused) = match checkout(origin) {
            Some(s) => (s, true),
            None => (connect(&origin.0.connect).await?, false),
        };
        match sender.try_send_request(request).await {
            Ok(resp) => {
                let origin = origin.clone();
                return Ok(resp.map(|body| PooledBody {
                    body,
                    back: Some((origin, sender)),
                }));
            }
            Err(mut e) => match e.take_message() {
                // The server closed an idle connection before the request went out: not
                // sent, so safe to send on another.
                Some(unsent) if reused => request = unsent,
                _ => {
                    return Err(DirectError {
                        connect: false,
                        source: Box::new(e.into_error()),
                    });
                }
            },
        }
    }
}

/// An idle connection to `origin` that can take a request now, dropping closed and stale ones.
fn checkout(origin: &Origin) -> Option<Sender> {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let mut i = idle.len();
        while i > 0 {
            i -= 1;
            let entry = &idle[i];
            if entry.origin != *origin {
                continue;
            }
            if entry.sender.is_closed() || entry.since.elapsed() >= IDLE_TIMEOUT {
                idle.swap_remove(i);
                continue;
            }
            if entry.sender.is_ready() {
                return Some(idle.swap_remove(i).sender);
            }
        }
        None
    })
}

fn checkin(origin: Origin, sender: Sender) {
    if sender.is_closed() {
        return;
    }
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        // Counting this origin's entries is only needed once the list could hold that many.
        let room =
            idle.len() < MAX_IDLE || idle.iter().filter(|e| e.origin == origin).count() < MAX_IDLE;
        if room {
            idle.push(Idle {
                origin,
                sender,
                since: Instant::now(),
            });
        }
    });
}

async fn connect(uri: &http::Uri) -> Result<Sender, DirectError> {
    let failed = |source: Box<dyn std::error::Error + Send + Sync>| DirectError {
        connect: true,
        source,
    };
    let mut connector = CONNECTOR.with(Clone::clone);
    let io = connector.call(uri.clone()).await.map_err(failed)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| failed(Box::new(e)))?;
    tokio::spawn(async move {
        // Errors reach the request that was on the connection; an idle one just closes.
        let _ = conn.await;
    });
    Ok(sender)
}

/// An upstream answer's body; read to its end, it gives its connection back to the pool.
#[derive(Debug)]
pub(crate) struct PooledBody {
    body: Incoming,
    back: Option<(Origin, Sender)>,
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = std::task::ready!(Pin::new(&mut self.body).poll_frame(cx));
        match &frame {
            None => {
                if let Some((origin, sender)) = self.back.take() {
                    checkin(origin, sender);
                }
            }
            // A broken answer leaves the connection in no state to reuse.
            Some(Err(_)) => self.back = None,
            Some(Ok(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A bare HTTP/1.1 upstream counting its connections and keeping each request's head;
    /// it answers `ok` to every request and, unless `keep_alive`, closes the connection after
    /// each answer without saying so.
    struct Upstream {
        uri: http::Uri,
        accepted: Arc<AtomicUsize>,
        heads: Arc<parking_lot::Mutex<Vec<String>>>,
    }

    async fn upstream(keep_alive: bool) -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri: http::Uri = format!(
            "http://{}/v1/chat/completions",
            listener.local_addr().unwrap()
        )
        .parse()
        .unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let (count, seen) = (accepted.clone(), heads.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut tcp, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        // Read one request: head, then Content-Length bytes of body.
                        let mut chunk = [0u8; 4096];
                        let head_end = loop {
                            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break p + 4;
                            }
                            match tcp.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                        let len: usize = head
                            .to_lowercase()
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        seen.lock().push(head);
                        while buf.len() < head_end + len {
                            match tcp.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        buf.drain(..head_end + len);
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if tcp.write_all(answer).await.is_err() {
                            return;
                        }
                        if !keep_alive {
                            return;
                        }
                    }
                });
            }
        });
        Upstream {
            uri,
            accepted,
            heads,
        }
    }

    impl Upstream {
        fn accepted(&self) -> usize {
            self.accepted.load(Ordering::SeqCst)
        }

        fn request_lines(&self) -> Vec<String> {
            self.heads
                .lock()
                .iter()
                .map(|h| h.lines().next().unwrap_or("").to_string())
                .collect()
        }
    }

    fn post(uri: &http::Uri) -> http::Request<Full<Bytes>> {
        let mut r = http::Request::new(Full::new(Bytes::from_static(b"{}")));
        *r.method_mut() = http::Method::POST;
        *r.uri_mut() = uri.clone();
        r
    }

    async fn call(uri: &http::Uri) -> Bytes {
        let resp = request(post(uri), &origin(uri).unwrap()).await.unwrap();
        resp.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn a_connection_read_to_the_end_is_reused() {
        let up = upstream(true).await;
        for _ in 0..3 {
            assert_eq!(call(&up.uri).await, "ok");
        }
        assert_eq!(up.accepted(), 1);
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_replaced() {
        let up = upstream(false).await;
        for _ in 0..3 {
            assert_eq!(call(&up.uri).await, "ok");
        }
        assert_eq!(up.accepted(), 3);
    }

    #[tokio::test]
    async fn an_answer_dropped_unread_does_not_return_its_connection() {
        let up = upstream(true).await;
        let unread = request(post(&up.uri), &origin(&up.uri).unwrap())
            .await
            .unwrap();
        drop(unread);
        assert_eq!(call(&up.uri).await, "ok");
        assert_eq!(call(&up.uri).await, "ok");
        assert_eq!(up.accepted(), 2);
    }

    #[tokio::test]
    async fn nothing_listening_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let uri: http::Uri = format!("http://{}/v1", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        drop(listener);
        let e = request(post(&uri), &origin(&uri).unwrap())
            .await
            .unwrap_err();
        assert!(e.connect);
    }

    #[tokio::test]
    async fn the_request_line_is_origin_form_whatever_uri_the_caller_gives() {
        let up = upstream(true).await;
        let with_query: http::Uri = format!("{}?api-version=2024-10-21", up.uri)
            .parse()
            .unwrap();
        let origin = origin(&up.uri).unwrap();
        // An absolute URI (the form that made llama-server answer 404) and the precomputed
        // origin-form one both go out as a path.
        for uri in [with_query.clone(), origin_form(&with_query)] {
            let mut r = post(&uri);
            r.headers_mut().insert(
                http::header::HOST,
                http::HeaderValue::from_str(up.uri.authority().unwrap().as_str()).unwrap(),
            );
            let resp = request(r, &origin).await.unwrap();
            assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "ok");
        }
        assert_eq!(
            up.request_lines(),
            [
                "POST /v1/chat/completions?api-version=2024-10-21 HTTP/1.1",
                "POST /v1/chat/completions?api-version=2024-10-21 HTTP/1.1",
            ]
        );
        let host = format!("host: {}", up.uri.authority().unwrap());
        assert!(
            up.heads
                .lock()
                .iter()
                .all(|h| h.to_lowercase().contains(&host)),
            "every request names its host"
        );
    }

    #[test]
    fn origins_differ_by_scheme_and_authority_only() {
        let a = origin(&"http://h:1/v1/chat/completions".parse().unwrap()).unwrap();
        let b = origin(&"http://h:1/other?q=1".parse().unwrap()).unwrap();
        let c = origin(&"https://h:1/v1".parse().unwrap()).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.0.connect.to_string(), "http://h:1/");
        assert!(origin(&"/v1/chat/completions".parse().unwrap()).is_none());
        assert_eq!(origin_form(&"http://h:1".parse().unwrap()).to_string(), "/");
    }
}
