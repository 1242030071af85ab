//! Serving the gateway's router: on the caller's runtime ([`serve`], for embedding and tests),
//! or on one thread per core ([`serve_threads`], what `idlehands proxy` runs).
//!
//! Under [`serve_threads`] every serving thread runs its own single-threaded runtime; one
//! acceptor hands each new connection to the thread with the fewest open ones, and from then
//! on the connection, its requests and the upstream connections they use (the direct client
//! is per thread) stay on that thread. A work-stealing runtime hands tasks between threads,
//! and each hand-over is a cross-CPU wake-up (an inter-processor interrupt, dear on virtual
//! machines): on the 2-core bench machine one runtime per core served about a quarter more
//! requests per second (bench/run.sh). Threads sharing the listening socket instead left
//! whole bursts of connections on whichever thread woke first.
//!
//! The threads keep their runtimes turning after they stop serving, until
//! [`Serving::release`]: a database or Redis connection opened during a request is driven by
//! that thread's runtime, and the spend-log flush after draining may still use it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use futures_util::future::Either;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tower_service::Service;

use crate::gateway::Gateway;
use crate::http::direct::Direct;
use crate::keepalive::{self, Activity, InFlight};
use crate::state::{App, ConnLimits};
use crate::tls::{Tls, TlsIo};

/// Serve until `shutdown` resolves, then stop accepting, let in-flight requests finish, and
/// return (the caller flushes the store afterwards).
pub async fn serve<F>(gateway: Gateway, listener: TcpListener, shutdown: F) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let app = gateway.app.clone();
    let checks = crate::http::health::spawn_background(&app);
    app.spawn_alert_watcher();
    let limits = app.conn_limits;
    let max = max_connections(limits);
    let routes = Routes::of(&gateway);
    let open = Arc::new(AtomicUsize::new(0));
    let (stop, stop_rx) = watch::channel(false);
    // Every connection task holds a receiver: all dropped means all connections are done.
    let (live, _) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let (tcp, addr) = tokio::select! {
            _ = &mut shutdown => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
        };
        nodelay(&tcp);
        if open.load(Ordering::Relaxed) >= max {
            turn_away(&tcp);
            continue;
        }
        open.fetch_add(1, Ordering::Relaxed);
        let io = Counted {
            io: Io::Plain(tcp),
            open: open.clone(),
            total: None,
        };
        let done = live.subscribe();
        tokio::spawn(serve_connection(
            io,
            addr,
            routes.clone(),
            limits,
            stop_rx.clone(),
            done,
        ));
    }
    // `/health/liveliness` answers 503 while the in-flight requests finish.
    app.draining.store(true, Ordering::SeqCst);
    if let Some(task) = checks {
        task.abort();
    }
    drop(listener);
    let _ = stop.send(true);
    live.closed().await;
    Ok(())
}

/// Streams are many small writes: without NODELAY, Nagle plus the client's delayed ACK add
/// about 40 ms to every streamed response.
fn nodelay(tcp: &tokio::net::TcpStream) {
    let _ = tcp.set_nodelay(true);
}

/// Accept errors: a connection that died in the backlog is skipped; out of file descriptors
/// and the like, wait rather than spin.
async fn accept_failed(e: &std::io::Error) {
    if !is_connection_error(e) {
        tracing::error!(error = %e, "accept failed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The connection cap: the configured one, else half the file descriptors this process may
/// open (each client connection may need one upstream), less a reserve for the database,
/// Redis and files.
fn max_connections(limits: ConnLimits) -> usize {
    limits.max_connections.unwrap_or_else(|| {
        let fds = open_file_limit().unwrap_or(1024);
        (fds.saturating_sub(64) / 2).max(16)
    })
}

/// The soft `RLIMIT_NOFILE`, where the platform shows it (Linux's /proc).
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Over the cap: a short 503 (uvicorn's `limit_concurrency` answer), then closed, so the
/// client learns why rather than waiting in the backlog.
fn turn_away(tcp: &tokio::net::TcpStream) {
    const BODY: &str = r#"{"error":{"message":"Too many open connections: the gateway's limit_concurrency is reached. Retry shortly.","type":"service_unavailable","param":null,"code":"503"}}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    // Best effort: a fresh socket's send buffer takes it whole.
    let _ = tcp.try_write(answer.as_bytes());
    tracing::warn!("connection refused: limit_concurrency reached");
}

/// One client connection, HTTP/1.1, until it ends or serving stops. `keepalive` bounds the
/// time from the connection's start, or its last answer's end, to the next complete request
/// head: idle and half-open connections are closed after it. On stop, a connection without
/// a request in flight is dropped at once; one with a request in flight finishes it first.
async fn serve_connection(
    io: Counted,
    addr: SocketAddr,
    routes: Routes,
    limits: ConnLimits,
    mut stop: watch::Receiver<bool>,
    _live: watch::Receiver<()>,
) {
    // A request is counted in flight from when hyper hands it over (synchronously, within
    // the poll that completed its head) until the answer's body is dropped (sent, or the
    // connection died).
    let activity = Activity::new();
    let busy = activity.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let guard = InFlight::enter(&busy);
        let answer = match routes.direct.as_ref().zip(Direct::takes(&req)) {
            Some((direct, route)) => {
                let direct = direct.clone();
                // Boxed: the call's future is many kilobytes, and hyper moves the service's
                // future more than once before polling it (the router boxes its handlers too).
                Either::Left(Box::pin(async move {
                    Ok::<_, std::convert::Infallible>(direct.serve(route, req, addr).await)
                }))
            }
            None => {
                let mut req = req.map(axum::body::Body::new);
                req.extensions_mut().insert(ConnectInfo(addr));
                Either::Right(routes.router.clone().call(req))
            }
        };
        async move {
            let resp = answer.await?;
            Ok::<_, std::convert::Infallible>(resp.map(|body| {
                axum::body::Body::new(Guarded {
                    body,
                    _guard: guard,
                })
            }))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The keep-alive bound is kept by `keepalive::idle_for` below, one timer per connection:
    // hyper's header timeout, the one thing its timer served, is off.
    builder.header_read_timeout(None).keep_alive(true);
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let stopped = tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "client connection ended with an error");
            }
            false
        }
        s = stop.wait_for(|s| *s) => s.is_ok(),
        () = keepalive::idle_for(&activity, limits.keepalive) => false,
    };
    // Idle, half-open or silent: nothing to finish, so nothing to wait for.
    if stopped && activity.in_flight() > 0 {
        conn.as_mut().graceful_shutdown();
        let _ = conn.await;
    }
}

/// What a connection's requests go to: the router, and the routes served without it.
#[derive(Clone)]
struct Routes {
    router: axum::Router,
    direct: Option<Direct>,
}

impl Routes {
    fn of(gateway: &Gateway) -> Self {
        Routes {
            router: gateway.router(),
            direct: Direct::new(gateway.app.clone()),
        }
    }
}

/// An answer's body that holds its request's [`InFlight`] until it is dropped.
struct Guarded {
    body: axum::body::Body,
    _guard: InFlight,
}

impl hyper::body::Body for Guarded {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// The serving threads of [`serve_threads`]. Dropping it stops them (without waiting) and
/// lets their runtimes end, as [`Serving::release`] does.
pub struct Serving {
    app: Arc<App>,
    stop: watch::Sender<bool>,
    release: watch::Sender<bool>,
    done: mpsc::UnboundedReceiver<std::io::Result<()>>,
    running: usize,
    first_error: Option<std::io::Error>,
    checks: Option<tokio::task::JoinHandle<()>>,
}

/// Serves on `threads` threads (at least one), each with its own single-threaded runtime.
/// Call from within a tokio runtime: the acceptor and the background health checks run on it.
pub fn serve_threads(
    gateway: &Gateway,
    listener: std::net::TcpListener,
    threads: usize,
) -> std::io::Result<Serving> {
    serve_threads_tls(gateway, listener, threads, None)
}

/// [`serve_threads`], answering HTTPS when `tls` is given.
pub fn serve_threads_tls(
    gateway: &Gateway,
    listener: std::net::TcpListener,
    threads: usize,
    tls: Option<Tls>,
) -> std::io::Result<Serving> {
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    let (stop, stop_rx) = watch::channel(false);
    let (release, release_rx) = watch::channel(false);
    let (done_tx, done) = mpsc::unbounded_channel();
    let routes = Routes::of(gateway);
    let limits = gateway.app.conn_limits;
    let total = Arc::new(AtomicUsize::new(0));
    let mut handoff = Vec::new();
    for i in 0..threads.max(1) {
        let (tx, rx) = mpsc::unbounded_channel();
        let open = Arc::new(AtomicUsize::new(0));
        handoff.push((tx, open.clone()));
        let handed = Handed {
            rx,
            open,
            total: total.clone(),
            tls: tls.clone(),
        };
        let routes = routes.clone();
        let stop_rx = stop_rx.clone();
        let mut release_rx = release_rx.clone();
        let done_tx = done_tx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("idlehands-serve-{i}"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = done_tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(async move {
                    handed.serve(routes, limits, stop_rx).await;
                    let _ = done_tx.send(Ok(()));
                    let _ = release_rx.wait_for(|r| *r).await;
                });
                rt.shutdown_timeout(Duration::from_millis(100));
            });
        if let Err(e) = spawned {
            let _ = stop.send(true);
            let _ = release.send(true);
            return Err(e);
        }
    }
    let running = handoff.len();
    tokio::spawn(accept(
        listener,
        handoff,
        total,
        max_connections(limits),
        stop_rx,
    ));
    Ok(Serving {
        app: gateway.app.clone(),
        checks: {
            gateway.app.spawn_alert_watcher();
            crate::http::health::spawn_background(&gateway.app)
        },
        stop,
        release,
        done,
        running,
        first_error: None,
    })
}

type Handoff = (
    mpsc::UnboundedSender<(std::net::TcpStream, SocketAddr)>,
    Arc<AtomicUsize>,
);

/// Accepts until stopped, giving each connection to the thread with the fewest open ones.
async fn accept(
    listener: TcpListener,
    threads: Vec<Handoff>,
    total: Arc<AtomicUsize>,
    max: usize,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            a = listener.accept() => a,
        };
        let (tcp, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                accept_failed(&e).await;
                continue;
            }
        };
        nodelay(&tcp);
        if total.load(Ordering::Relaxed) >= max {
            turn_away(&tcp);
            continue;
        }
        let Ok(tcp) = tcp.into_std() else {
            continue;
        };
        let Some((tx, open)) = threads
            .iter()
            .filter(|(tx, _)| !tx.is_closed())
            .min_by_key(|(_, open)| open.load(Ordering::Relaxed))
        else {
            return;
        };
        open.fetch_add(1, Ordering::Relaxed);
        total.fetch_add(1, Ordering::Relaxed);
        if tx.send((tcp, addr)).is_err() {
            open.fetch_sub(1, Ordering::Relaxed);
            total.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// A serving thread's end of the hand-off.
struct Handed {
    rx: mpsc::UnboundedReceiver<(std::net::TcpStream, SocketAddr)>,
    open: Arc<AtomicUsize>,
    total: Arc<AtomicUsize>,
    tls: Option<Tls>,
}

impl Handed {
    /// Serves the connections handed to this thread until stopped, then waits for them.
    async fn serve(mut self, routes: Routes, limits: ConnLimits, stop: watch::Receiver<bool>) {
        let (live, _) = watch::channel(());
        let mut stopped = stop.clone();
        loop {
            let next = tokio::select! {
                _ = stopped.wait_for(|s| *s) => break,
                n = self.rx.recv() => n,
            };
            // The acceptor stopped: so has serving.
            let Some((tcp, addr)) = next else {
                break;
            };
            let io = match tokio::net::TcpStream::from_std(tcp) {
                Ok(tcp) => match &self.tls {
                    Some(tls) => Io::Tls(tls.wrap(tcp)),
                    None => Io::Plain(tcp),
                },
                Err(e) => {
                    self.open.fetch_sub(1, Ordering::Relaxed);
                    self.total.fetch_sub(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "could not take over a connection");
                    continue;
                }
            };
            let io = Counted {
                io,
                open: self.open.clone(),
                total: Some(self.total.clone()),
            };
            tokio::spawn(serve_connection(
                io,
                addr,
                routes.clone(),
                limits,
                stop.clone(),
                live.subscribe(),
            ));
        }
        live.closed().await;
    }
}

/// A connection that counts itself out of the open connections when dropped.
struct Counted {
    io: Io,
    open: Arc<AtomicUsize>,
    /// Across all serving threads, for the cap.
    total: Option<Arc<AtomicUsize>>,
}

enum Io {
    Plain(tokio::net::TcpStream),
    Tls(TlsIo),
}

/// Runs `$body` with `$io` bound to the pinned plain or TLS stream.
macro_rules! with_io {
    ($self:expr, $io:ident => $body:expr) => {
        match &mut $self.io {
            Io::Plain(s) => {
                let $io = Pin::new(s);
                $body
            }
            Io::Tls(s) => {
                let $io = Pin::new(s);
                $body
            }
        }
    };
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        if let Some(total) = &self.total {
            total.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        with_io!(self.get_mut(), io => io.poll_read(cx, buf))
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        with_io!(self.get_mut(), io => io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        with_io!(self.get_mut(), io => io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        with_io!(self.get_mut(), io => io.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        with_io!(self.get_mut(), io => io.poll_shutdown(cx))
    }
}

impl Serving {
    /// Stop accepting; in-flight requests finish. `/health/liveliness` answers 503 from now.
    pub fn stop(&self) {
        self.app.draining.store(true, Ordering::SeqCst);
        let _ = self.stop.send(true);
        if let Some(task) = &self.checks {
            task.abort();
        }
    }

    /// Resolves once every thread has stopped serving (after [`Serving::stop`], or when one
    /// failed: the others are then stopped too), with the first error. Cancel-safe.
    pub async fn wait(&mut self) -> std::io::Result<()> {
        while self.running > 0 {
            let Some(result) = self.done.recv().await else {
                break;
            };
            self.running -= 1;
            if let Err(e) = result {
                tracing::error!(error = %e, "a serving thread failed; stopping the others");
                self.stop();
                self.first_error.get_or_insert(e);
            }
        }
        match self.first_error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Lets the threads' runtimes end (after the store has been flushed and closed).
    pub fn release(self) {
        self.stop();
        let _ = self.release.send(true);
    }
}
