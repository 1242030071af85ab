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

use axum::serve::ListenerExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::gateway::{App, Gateway};
use crate::tls::{Tls, TlsIo};

/// Serve until `shutdown` resolves, then stop accepting, let in-flight requests finish, and
/// return (the caller flushes the store afterwards).
pub async fn serve<F>(gateway: Gateway, listener: TcpListener, shutdown: F) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let app = gateway.app.clone();
    let checks = crate::http::health::spawn_background(&app);
    let listener = listener.tap_io(|tcp| nodelay(tcp));
    axum::serve(listener, gateway.router())
        .with_graceful_shutdown(async move {
            shutdown.await;
            // `/health/liveliness` answers 503 while the in-flight requests finish.
            app.draining.store(true, Ordering::SeqCst);
            if let Some(task) = checks {
                task.abort();
            }
        })
        .await
}

/// Streams are many small writes: without NODELAY, Nagle plus the client's delayed ACK add
/// about 40 ms to every streamed response.
fn nodelay(tcp: &tokio::net::TcpStream) {
    let _ = tcp.set_nodelay(true);
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
    let local = listener.local_addr()?;
    let listener = TcpListener::from_std(listener)?;
    let (stop, stop_rx) = watch::channel(false);
    let (release, release_rx) = watch::channel(false);
    let (done_tx, done) = mpsc::unbounded_channel();
    let router = gateway.router();
    let mut handoff = Vec::new();
    for i in 0..threads.max(1) {
        let (tx, rx) = mpsc::unbounded_channel();
        let open = Arc::new(AtomicUsize::new(0));
        handoff.push((tx, open.clone()));
        let handed = Handed {
            rx,
            open,
            local,
            tls: tls.clone(),
        };
        let router = router.clone();
        let mut stop_rx = stop_rx.clone();
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
                    let stopped = async move {
                        let _ = stop_rx.wait_for(|s| *s).await;
                    };
                    let served = axum::serve(handed, router)
                        .with_graceful_shutdown(stopped)
                        .await;
                    let _ = done_tx.send(served);
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
    tokio::spawn(accept(listener, handoff, stop_rx));
    Ok(Serving {
        app: gateway.app.clone(),
        checks: crate::http::health::spawn_background(&gateway.app),
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
async fn accept(listener: TcpListener, threads: Vec<Handoff>, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            a = listener.accept() => a,
        };
        let (tcp, addr) = match accepted {
            Ok(a) => a,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::error!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        nodelay(&tcp);
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
        if tx.send((tcp, addr)).is_err() {
            open.fetch_sub(1, Ordering::Relaxed);
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

/// A serving thread's end of the hand-off, as axum's listener.
struct Handed {
    rx: mpsc::UnboundedReceiver<(std::net::TcpStream, SocketAddr)>,
    open: Arc<AtomicUsize>,
    local: SocketAddr,
    tls: Option<Tls>,
}

impl axum::serve::Listener for Handed {
    type Io = Counted;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Counted, SocketAddr) {
        loop {
            let Some((tcp, addr)) = self.rx.recv().await else {
                // The acceptor stopped: so has serving (graceful shutdown ends the loop).
                return std::future::pending().await;
            };
            match tokio::net::TcpStream::from_std(tcp) {
                Ok(tcp) => {
                    let open = self.open.clone();
                    let io = match &self.tls {
                        Some(tls) => Io::Tls(tls.wrap(tcp)),
                        None => Io::Plain(tcp),
                    };
                    return (Counted { io, open }, addr);
                }
                Err(e) => {
                    self.open.fetch_sub(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "could not take over a connection");
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// A connection that counts itself out of its thread's open connections when dropped.
struct Counted {
    io: Io,
    open: Arc<AtomicUsize>,
}

enum Io {
    Plain(tokio::net::TcpStream),
    Tls(TlsIo),
}

/// Runs `$body` with `$io` bound to the pinned plain or TLS stream.
macro_rules! with_io {
    ($self:expr, $io:ident => $body:expr) => {
        match &mut $self.get_mut().io {
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
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        with_io!(self, io => io.poll_read(cx, buf))
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        with_io!(self, io => io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        with_io!(self, io => io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        with_io!(self, io => io.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        with_io!(self, io => io.poll_shutdown(cx))
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
