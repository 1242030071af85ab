//! The chat, text-completion and embedding routes served straight from the connection,
//! without the router: the calls that carry nearly all of a gateway's traffic.
//!
//! Through the router a call pays for axum's dispatch (the route table's boxed services and
//! futures cloned and boxed again for each request, the gate as `from_fn` middleware, a copy
//! of the header map for the handler): about a dozen allocations a request. Here the same
//! steps run in line: the model gate's checks (`guard::admit`), the body read under the same
//! limit and answered with the same error when it is too large or broken, then
//! `chat::handle`. Only exact paths with POST come here; everything else, these paths with
//! another method included, goes through the router, which answers 405 and 404 as before.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::chat::TEXT_COMPLETION;
use super::guard;
use crate::error::ProxyError;
use crate::state::App;

/// A route served here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// The chat pipeline, with its call type (`acompletion`, `atext_completion`).
    Chat(&'static str),
    Embeddings,
}

/// The routes served here, for the server that owns the connections.
#[derive(Clone)]
pub(crate) struct Direct {
    app: Arc<App>,
    /// The router's body limit (`DefaultBodyLimit`), fixed when it was built, as there.
    limit: usize,
}

impl Direct {
    /// `None` while request spans are logged: they are a router layer, so every request goes
    /// through the router then.
    pub(crate) fn new(app: Arc<App>) -> Option<Self> {
        if crate::logging::request_spans_enabled() {
            return None;
        }
        let limit = app.runtime.load().body_limit;
        Some(Direct { app, limit })
    }

    /// The route of a request served here; `None` sends it to the router.
    pub(crate) fn takes<B>(req: &http::Request<B>) -> Option<Route> {
        if req.method() != Method::POST {
            return None;
        }
        match req.uri().path() {
            "/v1/chat/completions" | "/chat/completions" => Some(Route::Chat("acompletion")),
            "/v1/completions" | "/completions" => Some(Route::Chat(TEXT_COMPLETION)),
            "/v1/embeddings" | "/embeddings" => Some(Route::Embeddings),
            _ => None,
        }
    }

    /// Answers a request that [`Direct::takes`] took, as the router would.
    pub(crate) async fn serve<B>(
        &self,
        route: Route,
        req: http::Request<B>,
        addr: SocketAddr,
    ) -> Response
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let ip = Some(addr.ip());
        let (parts, body) = req.into_parts();
        let path = parts.uri.path();
        let principal = match guard::admit(&self.app, &parts.headers, path, ip).await {
            Ok(p) => p,
            Err(refused) => return refused,
        };
        let facts = guard::request_facts(path, &parts.headers, ip);
        let app = self.app.clone();
        let limit = self.limit;
        crate::metrics::with_request(facts, async move {
            let bytes = match read(body, limit).await {
                Ok(b) => b,
                Err(e) => return e.into_response(),
            };
            match route {
                Route::Chat(call_type) => {
                    super::chat::handle(app, None, parts.headers, Some(principal), bytes, call_type)
                        .await
                }
                Route::Embeddings => {
                    super::embeddings::embed(app, parts.headers, principal, bytes).await
                }
            }
        })
        .await
    }
}

/// The body in full, at most `limit` bytes; refused in the words of the router's body
/// extractor (`body::RawBody`).
async fn read<B>(body: B, limit: usize) -> Result<Bytes, ProxyError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => {
            let too_large = e.is::<LengthLimitError>();
            Err(ProxyError::Custom {
                status: if too_large { 413 } else { 400 },
                kind: "invalid_request_error".to_string(),
                message: format!(
                    "Cannot read the request body: Failed to buffer the request body: {e}"
                ),
                param: None,
                headers: Vec::new(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method, uri: &str) -> http::Request<()> {
        http::Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .unwrap_or_default()
    }

    #[test]
    fn takes_only_the_exact_completion_paths_with_post() {
        assert_eq!(
            Direct::takes(&req(Method::POST, "/v1/chat/completions")),
            Some(Route::Chat("acompletion"))
        );
        assert_eq!(
            Direct::takes(&req(Method::POST, "/chat/completions?x=1")),
            Some(Route::Chat("acompletion"))
        );
        assert_eq!(
            Direct::takes(&req(Method::POST, "/v1/completions")),
            Some(Route::Chat(TEXT_COMPLETION))
        );
        assert_eq!(
            Direct::takes(&req(Method::POST, "http://h/completions")),
            Some(Route::Chat(TEXT_COMPLETION))
        );
        assert_eq!(
            Direct::takes(&req(Method::POST, "/embeddings")),
            Some(Route::Embeddings)
        );
        for (m, p) in [
            (Method::GET, "/v1/chat/completions"),
            (Method::POST, "/v1/chat/completions/"),
            (Method::POST, "/v1/chat/completion"),
            (Method::POST, "/engines/m/chat/completions"),
            (Method::POST, "/v1/embeddings/"),
            (Method::POST, "/engines/m/embeddings"),
        ] {
            assert_eq!(Direct::takes(&req(m.clone(), p)), None, "{m} {p}");
        }
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_as_the_router_refuses_it() {
        let e = read(http_body_util::Full::new(Bytes::from(vec![b'x'; 11])), 10)
            .await
            .err();
        let Some(ProxyError::Custom {
            status, message, ..
        }) = e
        else {
            panic!("refused as {e:?}");
        };
        assert_eq!(status, 413);
        assert_eq!(
            message,
            "Cannot read the request body: Failed to buffer the request body: length limit exceeded"
        );
        let ok = read(
            http_body_util::Full::new(Bytes::from_static(b"0123456789")),
            10,
        )
        .await;
        assert_eq!(ok.ok(), Some(Bytes::from_static(b"0123456789")));
    }
}

#[cfg(test)]
mod future_size {
    use super::*;

    fn size_of_future<A, F: std::future::Future>(_: impl FnOnce(A) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// A call's future is moved whole when it is boxed: wrapping the chat pipeline must not
    /// hold a second copy of it (an `async fn` that awaits a future it took as an argument
    /// keeps both, which doubled this one and cost some 10,000 instructions a request).
    #[test]
    fn serving_a_call_adds_little_to_the_chat_pipelines_future() {
        type Args = (Arc<App>, http::HeaderMap, crate::auth::Principal, Bytes);
        let pipeline = size_of_future(|a: Args| {
            super::super::chat::handle(a.0, None, a.1, Some(a.2), a.3, "acompletion")
        });
        let served = size_of_future(
            |a: (Direct, http::Request<hyper::body::Incoming>)| async move {
                a.0.serve(
                    Route::Chat("acompletion"),
                    a.1,
                    SocketAddr::from(([127, 0, 0, 1], 1)),
                )
                .await
            },
        );
        assert!(
            served < pipeline + pipeline / 2,
            "serving a call takes a {served}-byte future for a {pipeline}-byte pipeline"
        );
    }
}
