//! The dashboard at `/ui` (pages from `idlehands-dashboard`) and its sign-in endpoints (the
//! in-memory session store is `crate::state`'s).
//!
//! Sign-in exchanges the master key for a random session token kept with an expiry; the
//! `idlehands_session` cookie then counts as the master key on management routes (see
//! [`authenticate_admin`]). Sessions live in this process only: a restart signs everyone out.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use idlehands_dashboard::session;

use crate::auth::{Principal, hash_key};
use crate::error::ProxyError;
use crate::state::{App, SESSION_TTL};

/// Auth for admin routes: a key in the headers as everywhere else, or, when the request
/// sends none, a live dashboard session cookie, which counts as the master key.
pub(crate) async fn authenticate_admin(
    app: &App,
    headers: &HeaderMap,
) -> Result<Principal, ProxyError> {
    let rt = app.runtime.load_full();
    if let Some(p) = crate::auth::session_as_master(&rt.auth, headers, |t| app.sessions.is_live(t))
    {
        return Ok(p);
    }
    crate::auth::authenticate(&rt.auth, app.resolver.as_ref(), headers).await
}

/// Routes for the dashboard pages, sign-in and `/metrics`.
pub(crate) fn routes() -> Router<Arc<App>> {
    idlehands_dashboard::router()
        .route("/ui/login", post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/session", get(current_session))
        .route("/metrics", get(super::metrics::scrape))
        .route("/metrics/", get(super::metrics::scrape))
}

/// Behind a TLS-terminating proxy the cookie must be `Secure`.
fn behind_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// Equal in constant time: both sides are hashed first, so neither length nor content of the
/// master key shows in the timing.
pub(crate) fn same_key(given: &str, master: &str) -> bool {
    let (a, b) = (hash_key(given), hash_key(master));
    a.bytes()
        .zip(b.bytes())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

fn ok_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"ok":true}"#,
    )
        .into_response()
}

fn invalid_master_key() -> Response {
    ProxyError::Custom {
        status: 401,
        kind: "auth_error".to_string(),
        message: "Invalid master key".to_string(),
        param: None,
        headers: Vec::new(),
    }
    .into_response()
}

fn with_cookie(mut resp: Response, cookie: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn see_other(location: &'static str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, HeaderValue::from_static(location))],
    )
        .into_response()
}

async fn login(
    State(app): State<Arc<App>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ip = peer.map(|Extension(ConnectInfo(a))| a.ip());
    if let Some(e) = super::guard::throttled(&app, ip) {
        return e.into_response();
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let Some(req) = session::parse_login(content_type, &body) else {
        return invalid_master_key();
    };
    let rt = app.runtime.load();
    let accepted = match &rt.auth.master_key {
        Some(master) => same_key(&req.password, master),
        // No master key (explicitly permitted): the gateway is open, and so is the dashboard.
        None => true,
    };
    if !accepted {
        super::guard::count_failure(&app, ip);
        tracing::info!("dashboard sign-in refused");
        return if req.from_form {
            see_other("/ui/login")
        } else {
            invalid_master_key()
        };
    }
    let token = app.sessions.create();
    let cookie = session::set_cookie(&token, SESSION_TTL.as_secs(), behind_tls(&headers));
    let resp = if req.from_form {
        see_other("/ui/")
    } else {
        ok_json()
    };
    with_cookie(resp, &cookie)
}

async fn logout(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(token) = session::from_headers(&headers) {
        app.sessions.end(token);
    }
    with_cookie(ok_json(), &session::clear_cookie(behind_tls(&headers)))
}

async fn current_session(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    match session::from_headers(&headers) {
        Some(t) if app.sessions.is_live(t) => ok_json(),
        _ => ProxyError::Custom {
            status: 401,
            kind: "auth_error".to_string(),
            message: "No dashboard session; sign in at /ui/login".to_string(),
            param: None,
            headers: Vec::new(),
        }
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_comparison() {
        assert!(same_key("sk-abc", "sk-abc"));
        assert!(!same_key("sk-ab", "sk-abc"));
        assert!(!same_key("", "sk-abc"));
    }
}
