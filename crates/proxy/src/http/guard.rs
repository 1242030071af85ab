//! What is checked from the request line and headers alone, before any body byte is read: the
//! declared size, the key (model and management routes), cross-site writes through the
//! dashboard cookie, and failed sign-ins per client address.
//!
//! A refused request's body is never read: hyper then closes the connection after the answer
//! instead of draining it, so an unauthenticated client cannot make the gateway hold or even
//! receive a large body.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, header};

use crate::auth::{self, Principal};
use crate::error::ProxyError;
use crate::state::App;

/// The client's address, where the server recorded it (embedders' routers may not).
pub(crate) fn client_ip(ext: &http::Extensions) -> Option<IpAddr> {
    ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
}

/// A spend row's `requester_ip_address`: `X-Forwarded-For`'s last entry under
/// `use_x_forwarded_for`, else `peer`; `None` under `disable_requester_ip_address_logging`.
pub(crate) fn requester_ip(
    rt: &crate::state::Runtime,
    headers: &HeaderMap,
    peer: impl FnOnce() -> Option<Arc<str>>,
) -> Option<Arc<str>> {
    if !rt.log_requester_ip {
        return None;
    }
    match rt
        .use_x_forwarded_for
        .then(|| crate::allowed_ips::forwarded_for(headers))
        .flatten()
    {
        Some(ip) => Some(ip.to_string().into()),
        None => peer(),
    }
}

fn too_many_attempts(retry_after: u64) -> ProxyError {
    ProxyError::Custom {
        status: 429,
        kind: "auth_error".to_string(),
        message: format!(
            "Too many failed authentication attempts from this address. Retry after {retry_after} seconds."
        ),
        param: None,
        headers: vec![(
            header::RETRY_AFTER,
            HeaderValue::from(retry_after.min(u64::from(u32::MAX))),
        )],
    }
}

/// An attempt with a key that turned out wrong: what a guesser makes.
fn is_wrong_key(e: &ProxyError) -> bool {
    matches!(e, ProxyError::InvalidApiKey { .. })
}

/// Refuses an address over its failures; else `None`.
pub(crate) fn throttled(app: &App, ip: Option<IpAddr>) -> Option<ProxyError> {
    let after = app.throttle.retry_after(ip?)?;
    Some(too_many_attempts(after))
}

/// Counts a failed attempt from `ip`.
pub(crate) fn count_failure(app: &App, ip: Option<IpAddr>) {
    if let Some(ip) = ip {
        app.throttle.failed(ip);
    }
}

/// The declared body size, when it is over `limit` (LiteLLM's wording).
fn declared_too_large(headers: &HeaderMap, limit: usize) -> Option<ProxyError> {
    let len: u64 = headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (len > limit as u64).then(|| too_large(limit))
}

pub(crate) fn too_large(limit: usize) -> ProxyError {
    let mb = format!("{:.3}", limit as f64 / (1024.0 * 1024.0));
    let mb = mb.trim_end_matches('0').trim_end_matches('.');
    ProxyError::Custom {
        status: 413,
        kind: "invalid_request_error".to_string(),
        message: format!("Request size is too large. Max size is {mb} MB"),
        param: Some("content-length".to_string()),
        headers: Vec::new(),
    }
}

/// The principal the model-route gate authenticated, for the handler.
#[derive(Clone)]
struct Authed(Principal);

/// What the gate found, taken by the handler; `None` where no gate ran (it then
/// authenticates itself).
pub(crate) struct Pre(pub Option<Principal>);

impl<S: Send + Sync> FromRequestParts<S> for Pre {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Pre(parts.extensions.remove::<Authed>().map(|a| a.0)))
    }
}

/// Model routes (and `/v1/models`, `/health`): size, throttle and key before the body.
pub(crate) async fn model_gate(
    State(app): State<Arc<App>>,
    mut req: Request,
    next: Next,
) -> Response {
    let ip = client_ip(req.extensions());
    match admit(&app, req.headers(), req.uri().path(), ip).await {
        Ok(p) => {
            req.extensions_mut().insert(Authed(p));
            let facts = request_facts(req.uri().path(), req.headers(), ip);
            crate::metrics::with_request(facts, next.run(req)).await
        }
        Err(refused) => refused,
    }
}

/// The model gate's checks (size, throttle, key), the refusal answered in the format of the
/// route at `path`: shared by [`model_gate`] and the routes served without the router
/// (`super::direct`).
pub(crate) async fn admit(
    app: &Arc<App>,
    headers: &HeaderMap,
    path: &str,
    ip: Option<IpAddr>,
) -> Result<Principal, Response> {
    let anthropic = path.starts_with("/v1/messages");
    let refuse = |e: ProxyError| {
        if anthropic {
            let mut resp = super::messages::error_response(e.status(), &e.to_string(), None);
            if let ProxyError::Custom { headers, .. } = &e {
                for (k, v) in headers {
                    resp.headers_mut().insert(k.clone(), v.clone());
                }
            }
            resp
        } else {
            super::trace::refused(app, e)
        }
    };
    checks(app, headers, path, ip).await.map_err(refuse)
}

/// What the call's metrics label it with.
pub(crate) fn request_facts(
    path: &str,
    headers: &HeaderMap,
    ip: Option<IpAddr>,
) -> Arc<crate::metrics::RequestFacts> {
    crate::metrics::RequestFacts::of(
        path,
        headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
        ip,
    )
}

/// The model gate's checks for a handler that runs them itself (the pass-through routes,
/// whose key may come from the query string): size, throttle, then the key.
pub(crate) async fn check_key(
    app: &App,
    headers: &HeaderMap,
    parts: &Parts,
) -> Result<Principal, ProxyError> {
    checks(app, headers, parts.uri.path(), client_ip(&parts.extensions)).await
}

/// Size, throttle, the key (a wrong one counts against the address), then whether the key may
/// call `path` (its `allowed_routes`).
async fn checks(
    app: &App,
    headers: &HeaderMap,
    path: &str,
    ip: Option<IpAddr>,
) -> Result<Principal, ProxyError> {
    let rt = app.runtime.load_full();
    if let Some(a) = &rt.allowed_ips {
        a.check(headers, ip)?;
    }
    if let Some(e) = declared_too_large(headers, rt.body_limit) {
        return Err(e);
    }
    if let Some(e) = throttled(app, ip) {
        return Err(e);
    }
    let p = auth::authenticate(&rt.auth, app.resolver.as_ref(), headers)
        .await
        .inspect_err(|e| {
            if is_wrong_key(e) {
                count_failure(app, ip);
            }
        })?;
    crate::route_access::check(&p, path)?;
    Ok(p)
}

/// Management routes: size, throttle, cross-site check and key (or dashboard cookie) before
/// the body. The handlers authenticate again for their own role checks.
pub(crate) async fn admin_gate(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let ip = client_ip(req.extensions());
    let (admin_limit, allowed_ips) = {
        let rt = app.runtime.load();
        (rt.admin_body_limit, rt.allowed_ips.clone())
    };
    if let Some(Err(e)) = allowed_ips.map(|a| a.check(req.headers(), ip)) {
        return e.into_response();
    }
    if let Some(e) = declared_too_large(req.headers(), admin_limit) {
        return e.into_response();
    }
    if let Some(e) = throttled(&app, ip) {
        return e.into_response();
    }
    if let Some(e) = cross_site(&app, req.method(), req.headers()) {
        return e.into_response();
    }
    match super::ui::authenticate_admin(&app, req.headers()).await {
        Ok(p) => {
            if let Err(e) = crate::route_access::check(&p, req.uri().path()) {
                return e.into_response();
            }
        }
        Err(e) => {
            if is_wrong_key(&e) {
                count_failure(&app, ip);
            }
            return e.into_response();
        }
    }
    next.run(req).await
}

/// A state-changing request that the dashboard cookie would authenticate (it sends no key)
/// must be JSON from the gateway's own origin: a page elsewhere, even on another port of the
/// same host (which SameSite does not separate), can only send forms and `text/plain`
/// without a CORS preflight, and its `Origin` names it.
fn cross_site(app: &App, method: &Method, headers: &HeaderMap) -> Option<ProxyError> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    let custom = app.runtime.load().auth.custom_header.clone();
    if auth::extract_key(headers, custom.as_ref()).is_ok()
        || idlehands_dashboard::session::from_headers(headers).is_none()
    {
        return None;
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Some(forbidden_cross_site(
            "a request signed in by the dashboard cookie must send Content-Type: application/json",
        ));
    }
    if !same_origin(headers) {
        return Some(forbidden_cross_site(
            "a request signed in by the dashboard cookie must come from the gateway's own origin",
        ));
    }
    None
}

fn forbidden_cross_site(why: &str) -> ProxyError {
    ProxyError::Custom {
        status: 403,
        kind: "auth_error".to_string(),
        message: format!("Cross-site request refused: {why}. API clients send their key instead."),
        param: None,
        headers: Vec::new(),
    }
}

/// `Origin` names the host and port the request was sent to: `Host`, or behind a reverse
/// proxy that rewrites it, the proxy's `X-Forwarded-Host` (a cross-site page cannot set that
/// header without a CORS preflight, which the gateway does not grant).
fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(origin) = text("origin") else {
        return false;
    };
    [
        text("host"),
        text("x-forwarded-host").and_then(|v| v.split(',').next()),
    ]
    .into_iter()
    .flatten()
    .any(|host| origin_is(origin, host))
}

fn origin_is(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => "80",
        "https" => "443",
        _ => return false,
    };
    let with_port = |a: &str| {
        let a = a.trim().trim_end_matches('/').to_ascii_lowercase();
        // `[::1]:4000`, `host:4000`, or no port.
        let has_port = a.rsplit_once(':').is_some_and(|(h, p)| {
            !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_digit())
                && (!h.contains(':') || h.ends_with(']'))
        });
        if has_port {
            a
        } else {
            format!("{a}:{default_port}")
        }
    };
    with_port(authority) == with_port(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn origin_must_name_the_host_and_port() {
        let same = |o, h| same_origin(&headers(&[("origin", o), ("host", h)]));
        assert!(same("http://127.0.0.1:4000", "127.0.0.1:4000"));
        assert!(same("http://Gateway.example", "gateway.example"));
        assert!(same("https://gateway.example", "gateway.example:443"));
        assert!(same("http://[::1]:4000", "[::1]:4000"));
        assert!(!same("http://127.0.0.1:8080", "127.0.0.1:4000"));
        assert!(!same("http://evil.example:4000", "127.0.0.1:4000"));
        assert!(!same("null", "127.0.0.1:4000"));
        assert!(!same("http://gateway.example", "gateway.example:443"));
        assert!(!same_origin(&headers(&[("host", "127.0.0.1:4000")])));
        // Behind a reverse proxy that sends the internal address as Host.
        let proxied = |o| {
            same_origin(&headers(&[
                ("origin", o),
                ("host", "127.0.0.1:4000"),
                ("x-forwarded-host", "llm.example.com, inner.example"),
            ]))
        };
        assert!(proxied("https://llm.example.com"));
        assert!(!proxied("https://evil.example"));
    }
}
