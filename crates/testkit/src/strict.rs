//! What every fake checks before its routes see a request, so a client mistake that some real
//! servers forgive still fails the tests:
//!
//! - An absolute-form request target (`POST http://host:port/v1/... HTTP/1.1`) is answered
//!   404. RFC 9112 §3.2.2 reserves that form for requests to a proxy; cpp-httplib (under
//!   llama-server), uvicorn's h11 backend and Python's http.server take the raw target as the
//!   path and answer 404, while hyper (under these fakes) would quietly route it.
//! - A POST whose body is not declared `application/json` is refused with 415 in the
//!   provider's error envelope: the real APIs parse JSON bodies only.
//!
//! Every request line is kept as received, refused ones included.
//!
//! A fake standing in for a forward HTTP proxy turns the first check around: there the
//! absolute-form is required, and an origin-form target gets 400 as a proxy gives it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;

/// The request lines a fake received.
pub(crate) struct Wire {
    lines: Mutex<Vec<String>>,
    record: AtomicBool,
}

impl Default for Wire {
    fn default() -> Self {
        Self {
            lines: Mutex::new(Vec::new()),
            record: AtomicBool::new(true),
        }
    }
}

impl Wire {
    pub(crate) fn lines(&self) -> Vec<String> {
        self.lines.lock().clone()
    }

    /// Off for the benchmark's long runs, whose memory must stay flat.
    pub(crate) fn set_recording(&self, on: bool) {
        self.record.store(on, Ordering::SeqCst);
    }
}

/// An error answer in the fake's own envelope: (status, message).
pub(crate) type ErrorBody = fn(u16, &str) -> Response;

/// The request-target form a fake accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    /// A server's: `POST /v1/chat/completions HTTP/1.1`.
    Origin,
    /// A forward proxy's: `POST http://host/v1/chat/completions HTTP/1.1`.
    Absolute,
}

/// `router` behind both checks above, with a 404 for unknown paths so those are recorded too.
pub(crate) fn guard(router: Router, wire: Arc<Wire>, form: Form, error: ErrorBody) -> Router {
    layer(router, wire, form, Some(error))
}

/// `router` behind the request-target check only, for servers that ignore the content type.
pub(crate) fn guard_target(router: Router, wire: Arc<Wire>) -> Router {
    layer(router, wire, Form::Origin, None)
}

fn layer(router: Router, wire: Arc<Wire>, form: Form, error: Option<ErrorBody>) -> Router {
    router
        .fallback(|| async { StatusCode::NOT_FOUND })
        .layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                let wire = wire.clone();
                async move { check(&wire, form, error, req, next).await }
            },
        ))
}

async fn check(
    wire: &Wire,
    form: Form,
    error: Option<ErrorBody>,
    req: Request,
    next: Next,
) -> Response {
    let uri = req.uri();
    let absolute = uri.scheme().is_some() || uri.authority().is_some();
    let refused = match form {
        Form::Origin => absolute,
        Form::Absolute => !absolute,
    };
    let recording = wire.record.load(Ordering::SeqCst);
    // Formatted only when kept or quoted: the benchmark's upstream keeps nothing.
    let line = if recording || refused {
        crate::recorded::RequestLine::of(req.method(), uri, req.version()).to_string()
    } else {
        String::new()
    };
    if recording {
        wire.lines.lock().push(line.clone());
    }
    match (form, absolute) {
        (Form::Origin, true) => {
            return (
                StatusCode::NOT_FOUND,
                format!("absolute-form request target, origin-form expected: {line}"),
            )
                .into_response();
        }
        (Form::Absolute, false) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("a forward proxy needs an absolute-form request target: {line}"),
            )
                .into_response();
        }
        _ => {}
    }
    let Some(error) = error else {
        return next.run(req).await;
    };
    // Audio uploads are the one form body the APIs take, and there only.
    let (accepted, wanted) = if req.uri().path().ends_with("/audio/transcriptions") {
        (
            is_multipart(req.headers().get(header::CONTENT_TYPE)),
            "multipart/form-data",
        )
    } else {
        (
            is_json(req.headers().get(header::CONTENT_TYPE)),
            "application/json",
        )
    };
    if req.method() == Method::POST && !accepted {
        let given = req
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let message = match given {
            Some(t) => format!("Unsupported content type {t:?}: this API accepts {wanted}"),
            None => format!("Missing content type: this API accepts {wanted}"),
        };
        return error(415, &message);
    }
    next.run(req).await
}

fn is_multipart(value: Option<&axum::http::HeaderValue>) -> bool {
    value
        .and_then(|v| v.to_str().ok())
        .and_then(crate::multipart::boundary)
        .is_some()
}

fn is_json(value: Option<&axum::http::HeaderValue>) -> bool {
    value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn json_media_types_are_recognised_with_parameters_and_any_case() {
        let v = |s: &'static str| axum::http::HeaderValue::from_static(s);
        assert!(is_json(Some(&v("application/json"))));
        assert!(is_json(Some(&v("Application/JSON; charset=utf-8"))));
        assert!(!is_json(Some(&v("text/plain"))));
        assert!(!is_json(Some(&v("application/x-www-form-urlencoded"))));
        assert!(!is_json(None));
    }
}
