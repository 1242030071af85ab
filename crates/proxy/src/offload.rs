//! Admin work that can take a while of CPU (a 10,000-row `/spend/logs` page decoded and
//! serialized, a 30-day `/global/spend/report`) runs on a runtime of its own, not on the
//! serving thread that took the request: each serving thread is a single-threaded runtime
//! (see `serving`), so anything it computes stalls every other connection on it. The admin
//! runtime has one worker thread, `idlehands-admin`, started on first use; the serving thread
//! only waits for the answer. Database connections opened there are driven by it.

use std::future::Future;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::response::{IntoResponse, Response};

static ADMIN: OnceLock<Option<tokio::runtime::Runtime>> = OnceLock::new();
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// The admin runtime's handle; `None` if it could not be started (then admin work runs on the
/// serving thread, as named in a warning).
pub fn handle() -> Option<tokio::runtime::Handle> {
    ADMIN
        .get_or_init(|| {
            match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("idlehands-admin")
                .enable_all()
                .build()
            {
                Ok(rt) => Some(rt),
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        "could not start the admin runtime: /spend/logs and /global/spend/report \
                         run on the serving threads"
                    );
                    None
                }
            }
        })
        .as_ref()
        .map(|rt| rt.handle().clone())
}

/// Admin requests handed to the admin runtime and not yet answered.
pub fn in_flight() -> usize {
    IN_FLIGHT.load(Ordering::SeqCst)
}

struct Counted;

impl Counted {
    fn enter() -> Self {
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        Counted
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs `work` (a whole handler: its queries, and the response body it serializes) on the
/// admin runtime and returns its answer.
pub async fn run<F>(work: F) -> Response
where
    F: Future<Output = Response> + Send + 'static,
{
    let Some(h) = handle() else {
        return work.await;
    };
    let counted = Counted::enter();
    let answer = h
        .spawn(async move {
            let r = work.await;
            drop(counted);
            r
        })
        .await;
    match answer {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "admin request failed on the admin runtime");
            crate::error::ProxyError::Internal("the admin request failed".into()).into_response()
        }
    }
}
