//! The IdleHands gateway's web dashboard: hand-written HTML, CSS, JS and SVG embedded in the
//! binary (no CDN, no web fonts, no JS build step), served at `/ui` by the proxy.
//!
//! The pages talk only to the gateway itself, through its LiteLLM-compatible JSON API. This
//! crate serves the static files; the proxy implements the endpoints below.
//!
//! # Mounting
//!
//! ```text
//! let app = proxy_routes
//!     .merge(idlehands_dashboard::router())             // GET /ui, /ui/, /ui/login, /ui/<asset>
//!     .route("/ui/login", post(ui_login))                // same path as the GET: axum merges them
//!     .route("/ui/logout", post(ui_logout))
//!     .route("/ui/session", get(ui_session));
//! ```
//!
//! The static files are public, as LiteLLM's UI assets are: they carry no data. Every piece of
//! data comes from an authenticated API call.
//!
//! # Contract the proxy implements
//!
//! ## Login: `POST /ui/login`
//!
//! The master key is sent once in a request body and exchanged for a session cookie, so it never
//! appears in a URL, a log line or script-readable storage.
//!
//! * Request: JSON `{"password": "<master key>"}` (what the login page's script sends), or a
//!   form body `password=<master key>` (`application/x-www-form-urlencoded`, what the page's
//!   `<form method=post action=/ui/login>` sends with scripts disabled).
//!   [`session::parse_login`] reads both and says which one came.
//! * Success for JSON: `200 {"ok": true}` with
//!   `Set-Cookie: idlehands_session=<opaque random token>; Max-Age=86400; Path=/; HttpOnly; SameSite=Strict`
//!   (add `; Secure` when the gateway serves TLS), as built by [`session::set_cookie`]. For a
//!   form body: `303 See Other`, `Location: /ui/`, same cookie.
//! * Failure (wrong or missing key): `401` with the gateway's usual JSON error body, e.g.
//!   `{"error": {"message": "Invalid master key", "type": "auth_error", "param": null, "code": "401"}}`;
//!   for a form body `303` to `/ui/login` without a cookie is also acceptable. The page shows
//!   "That key was not accepted." on any 401 and never echoes the key.
//! * The token is random (not derived from the master key), stored server side with an expiry
//!   (LiteLLM's UI session lasts 24 h), and compared in constant time.
//!
//! ## `POST /ui/logout`
//!
//! Invalidates the session and clears the cookie ([`session::clear_cookie`]:
//! `Set-Cookie: idlehands_session=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict`). Returns
//! `200 {"ok": true}` (or `204`) whether or not a session existed.
//!
//! ## `GET /ui/session`
//!
//! `200 {"ok": true}` when the `idlehands_session` cookie ([`session::from_headers`]) names a
//! live session, `401` otherwise.
//! The pages call it first and go to `/ui/login` on anything but 2xx.
//!
//! ## Cookie as master-key auth
//!
//! On the management routes below, a live `idlehands_session` cookie authenticates exactly like
//! `Authorization: Bearer <master key>`. Any 401 from these routes sends the page to the login
//! page. The pages send every write as `POST` with `Content-Type: application/json`; together
//! with `SameSite=Strict` that keeps other sites from riding the cookie (a cross-site JSON POST
//! needs a CORS preflight, which the gateway must not grant for cookie-authenticated requests).
//!
//! ## Management routes the pages call
//!
//! LiteLLM shapes, as in the spec (`key/*`, `spend/logs`); only the fields listed are read.
//!
//! * `GET /key/list?page=1&size=100&return_full_object=true` returns
//!   `{"keys": [KeyObject], "total_count", "current_page", "total_pages"}`, where `KeyObject` has
//!   `token` (sha256 hex), `key_name` (`sk-...abcd`), `key_alias`, `spend`, `max_budget`,
//!   `budget_duration`, `budget_reset_at`, `expires` (ISO 8601 or null), `models` (`[]` = all),
//!   `rpm_limit`, `tpm_limit`, `max_parallel_requests`, `blocked`, `user_id`, `team_id`,
//!   `created_at`. The page follows `total_pages`.
//! * `POST /key/generate` with any of `key_alias`, `max_budget`, `budget_duration`, `duration`,
//!   `models`, `rpm_limit`, `tpm_limit` (absent fields are omitted, not null) returns the
//!   generate response; the page shows `key` (the plaintext) once in a dialog.
//! * `POST /key/delete` `{"keys": [token]}`; `POST /key/block` and `POST /key/unblock`
//!   `{"key": token}` (token = the hash from `/key/list`).
//! * `GET /spend/logs?api_key=<hash>&user_id=&start_date=YYYY-MM-DD&end_date=YYYY-MM-DD&page=1&page_size=50`
//!   returns a JSON array of spend-log rows, newest first: `request_id`, `call_type`, `api_key`
//!   (hash), `spend`, `total_tokens`, `prompt_tokens`, `completion_tokens`, `startTime`,
//!   `endTime`, optional `request_duration_ms`, `model`, `model_group`, `api_base`, `user`,
//!   `metadata` (object; `user_api_key_alias` and `error_information` are shown), `status`
//!   (`success`/`failure`), and `messages`/`response` only when
//!   `store_prompts_in_spend_logs` is on. Empty parameters are left out of the query. `page` is
//!   1-based; a page shorter than `page_size` is the last. Both dates are inclusive. Model and
//!   status filters are applied in the browser to the fetched page.
//!
//! * Models page (`models.js`): `GET /model/info` returns `{"data": [{"model_name",
//!   "litellm_params": {"model", "api_base", "rpm", "tpm", ...} (secrets left out),
//!   "model_info": {"id", "db_model", "input_cost_per_token", "output_cost_per_token", ...}}]}`;
//!   `POST /model/new` `{"model_name", "litellm_params": {"model", "api_base", "api_key", "rpm",
//!   "tpm", "input_cost_per_token", "output_cost_per_token"}}` (absent fields omitted); `POST
//!   /model/delete` `{"id"}`, offered only for `db_model: true` rows. An error's message (e.g.
//!   the 500 naming `STORE_MODEL_IN_DB`) is shown in the dialog.
//!
//! * Tags page (`tags.js`): `GET /tag/list` returns `[{"name", "description", "models" (a list
//!   for a tag made over the API, `null` for one only seen in calls), "litellm_budget_table":
//!   {"max_budget", "budget_duration", "rpm_limit", "tpm_limit", "max_parallel_requests"}
//!   (absent without a budget)}]`; `POST /tag/new` `{"name", "description", "max_budget",
//!   "budget_duration", "rpm_limit", "tpm_limit"}` (absent fields omitted); `POST /tag/delete`
//!   `{"name"}`, offered only for tags made over the API.
//!
//! ## `GET /global/spend/report` (IdleHands shape)
//!
//! `GET /global/spend/report?start_date=YYYY-MM-DD&end_date=YYYY-MM-DD&group_by=api_key|model|user`
//! returns one row per day and group that had requests, dates inclusive, days in UTC:
//!
//! ```json
//! [{"date": "2026-11-24", "group": "ci-runner", "spend": 1.234567, "requests": 42, "total_tokens": 91234}]
//! ```
//!
//! * `group_by=api_key` (the default): `group` is the key's `key_alias`, else its `key_name`,
//!   else the hash (a deleted key keeps its last known alias, else the hash).
//! * `group_by=model`: `group` is the spend-log `model_group` (the public model name).
//! * `group_by=user`: `group` is the spend-log `user`, or `null` when none (shown as "(none)").
//! * `spend` is USD summed from the integer ledger and converted once, so it is exact to the
//!   stored precision; `requests` counts rows, failures included.
//! * Rows may come in any order; a missing day means zero. A bad date or `group_by` is a `400`.

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The path prefix the proxy mounts the dashboard under; the pages hard-code it.
pub const MOUNT: &str = "/ui";

pub mod session;

/// Name of the session cookie that `POST /ui/login` sets (see the crate docs).
pub const SESSION_COOKIE: &str = session::COOKIE;

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    etag: &'static str,
}

macro_rules! asset {
    ($name:literal, $ctype:literal) => {{
        const BODY: &[u8] = include_bytes!(concat!("../assets/", $name));
        const ETAG: [u8; 18] = etag(BODY);
        Asset {
            name: $name,
            content_type: $ctype,
            body: BODY,
            etag: match std::str::from_utf8(&ETAG) {
                Ok(s) => s,
                Err(_) => "\"0\"",
            },
        }
    }};
}

static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("login.html", "text/html; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("models.js", "text/javascript; charset=utf-8"),
    asset!("tags.js", "text/javascript; charset=utf-8"),
    asset!("login.js", "text/javascript; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
];

/// A quoted strong ETag from a 64-bit FNV-1a hash, computed at compile time so a rebuilt binary
/// with changed assets invalidates browser caches without hashed file names.
const fn etag(body: &[u8]) -> [u8; 18] {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < body.len() {
        hash ^= body[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'"'; 18];
    let mut j = 0;
    while j < 16 {
        out[1 + j] = HEX[((hash >> (60 - 4 * j)) & 0xf) as usize];
        j += 1;
    }
    out
}

fn find(path: &str) -> Option<&'static Asset> {
    let name = path.strip_prefix(MOUNT).unwrap_or(path);
    let name = name.strip_prefix('/').unwrap_or(name);
    let name = match name {
        "" | "index.html" => "index.html",
        "login" | "login.html" => "login.html",
        other => other,
    };
    ASSETS.iter().find(|a| a.name == name)
}

/// The embedded file for `path`, as `(content type, bytes)`.
///
/// Accepts a bare file name (`app.js`), a path under the mount (`/ui/app.js`), the page routes
/// `""`, `/ui`, `/ui/` (the dashboard) and `login`, `/ui/login` (the sign-in page).
pub fn asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    find(path).map(|a| (a.content_type, a.body))
}

/// Names of all embedded files (for listings and tests).
pub fn asset_names() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|a| a.name)
}

// Same-origin only: the pages load nothing from elsewhere and must not be framed.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

fn serve(path: &str, request_headers: &HeaderMap) -> Response {
    let Some(a) = find(path) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let matches = request_headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let t = t.trim();
            t == "*" || t.trim_start_matches("W/") == a.etag
        });
    let mut headers = HeaderMap::new();
    headers.insert(header::ETAG, HeaderValue::from_static(a.etag));
    // Unhashed names: the browser may keep a copy but must revalidate it (a cheap 304).
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if a.content_type.starts_with("text/html") {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    if matches {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(a.content_type),
    );
    (StatusCode::OK, headers, a.body).into_response()
}

/// GET routes for every page and asset under [`MOUNT`], with `ETag`/`If-None-Match`,
/// `Cache-Control: no-cache` and, on pages, a same-origin-only Content-Security-Policy.
///
/// Registers `GET /ui`, `/ui/`, `/ui/login` and `/ui/<file>` for each embedded file, all
/// explicit paths, so the proxy can add `POST /ui/login` and its other `/ui/*` routes beside
/// them (axum merges method routers on the same path).
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let mut r = Router::new();
    let pages = ["", "/", "/login"];
    let files = ASSETS.iter().map(|a| a.name);
    for p in pages
        .iter()
        .map(|p| format!("{MOUNT}{p}"))
        .chain(files.map(|f| format!("{MOUNT}/{f}")))
    {
        let key = p.clone();
        r = r.route(&p, get(move |h: HeaderMap| async move { serve(&key, &h) }));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_routes_resolve_to_their_html() {
        for p in ["", "/ui", "/ui/", "index.html", "/ui/index.html"] {
            assert_eq!(
                asset(p).map(|a| a.1.as_ptr()),
                Some(ASSETS[0].body.as_ptr()),
                "{p}"
            );
        }
        for p in ["login", "/ui/login", "login.html"] {
            let (ct, body) = asset(p).unwrap_or(("", b""));
            assert_eq!(ct, "text/html; charset=utf-8", "{p}");
            assert!(
                std::str::from_utf8(body)
                    .unwrap_or("")
                    .contains("action=\"/ui/login\"")
            );
        }
    }

    #[test]
    fn assets_have_their_content_types_and_unknown_paths_are_none() {
        assert_eq!(
            asset("/ui/app.js").map(|a| a.0),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(
            asset("app.css").map(|a| a.0),
            Some("text/css; charset=utf-8")
        );
        assert_eq!(asset("/ui/favicon.svg").map(|a| a.0), Some("image/svg+xml"));
        assert!(asset("/ui/../Cargo.toml").is_none());
        assert!(asset("/ui/nope.js").is_none());
    }

    #[test]
    fn etags_differ_per_file_and_are_quoted_hex() {
        let tags: Vec<&str> = ASSETS.iter().map(|a| a.etag).collect();
        for t in &tags {
            assert_eq!(t.len(), 18);
            assert!(t.starts_with('"') && t.ends_with('"'));
            assert!(t[1..17].bytes().all(|b| b.is_ascii_hexdigit()));
        }
        let mut uniq = tags.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), tags.len());
    }

    // The gateway may run air-gapped: nothing in the pages may point off-origin.
    #[test]
    fn assets_reference_nothing_outside_the_gateway() {
        for a in ASSETS {
            let text = String::from_utf8_lossy(a.body);
            for (i, _) in text.match_indices("//") {
                let before = &text[..i];
                if before.ends_with("http:") || before.ends_with("https:") {
                    let rest = &text[i + 2..];
                    assert!(
                        rest.starts_with("www.w3.org/2000/svg"),
                        "{} links off-origin: {}",
                        a.name,
                        &rest[..rest.len().min(60)]
                    );
                }
            }
            assert!(!text.contains("@import"), "{} imports CSS", a.name);
        }
    }
}
