#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The dashboard's sign-in contract (see `idlehands-dashboard`'s crate docs) against the real
//! gateway: pages served, login by JSON and form, the cookie's attributes, the session, and the
//! cookie counting as the master key on admin routes only.

mod common;

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;
use common::{KEY, client, start_cfg, two_models};
use idlehands_proxy::{Gateway, Principal};
use serde_json::{Value, json};

/// A management route as the store adds it: it answers with what `Gateway::authenticate` says.
fn admin_probe(gw: Gateway) -> Router {
    Router::new().route(
        "/key/list",
        get(move |headers: http::HeaderMap| {
            let gw = gw.clone();
            async move {
                match gw.authenticate(&headers).await {
                    Ok(Principal::Master { .. }) => {
                        (http::StatusCode::OK, "master").into_response()
                    }
                    Ok(_) => (http::StatusCode::FORBIDDEN, "not master").into_response(),
                    Err(e) => e.into_response(),
                }
            }
        }),
    )
}

async fn start() -> common::Running {
    start_cfg(
        common::config(&two_models("http://127.0.0.1:9"), &[]),
        |b| b,
    )
    .await
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn session_cookie(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("idlehands_session="))
        .map(str::to_string)
}

fn token_of(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("idlehands_session=")
        .to_string()
}

#[tokio::test]
async fn pages_are_public_and_carry_no_data() {
    let gw = start().await;
    let c = client();
    for (path, ctype) in [
        ("/ui", "text/html"),
        ("/ui/", "text/html"),
        ("/ui/login", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
    ] {
        let r = c.get(gw.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with(ctype), "{path}: {ct}");
    }
    let r = c.get(gw.url("/ui/nope.js")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn json_login_sets_a_random_strict_httponly_cookie_and_logout_ends_it() {
    let gw = start().await;
    let c = no_redirects();
    let r = c
        .post(gw.url("/ui/login"))
        .json(&json!({"password": KEY}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let set = session_cookie(&r).expect("session cookie");
    assert!(
        set.contains("; Max-Age=86400; Path=/; HttpOnly; SameSite=Strict"),
        "{set}"
    );
    assert!(!set.contains("Secure"));
    let token = token_of(&set);
    assert_eq!(token.len(), 64);
    assert!(!token.contains(KEY) && !set.contains(KEY));
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"ok": true}));

    // A second sign-in gets another token.
    let r2 = c
        .post(gw.url("/ui/login"))
        .json(&json!({"password": KEY}))
        .send()
        .await
        .unwrap();
    let token2 = token_of(&session_cookie(&r2).unwrap());
    assert_ne!(token, token2);

    let cookie = format!("idlehands_session={token}");
    let s = c
        .get(gw.url("/ui/session"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(s.status(), 200);
    assert_eq!(s.json::<Value>().await.unwrap(), json!({"ok": true}));

    let out = c
        .post(gw.url("/ui/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 200);
    let cleared = session_cookie(&out).unwrap();
    assert!(
        cleared.starts_with("idlehands_session=; Max-Age=0;"),
        "{cleared}"
    );
    let s = c
        .get(gw.url("/ui/session"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(s.status(), 401);
    // The other session is untouched.
    let s = c
        .get(gw.url("/ui/session"))
        .header("cookie", format!("idlehands_session={token2}"))
        .send()
        .await
        .unwrap();
    assert_eq!(s.status(), 200);
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn wrong_or_missing_keys_get_401_without_a_cookie() {
    let gw = start().await;
    let c = no_redirects();
    for body in [
        json!({"password": "sk-wrong"}),
        json!({"password": ""}),
        json!({"key": KEY}),
        json!({"password": format!("{KEY}x")}),
    ] {
        let r = c
            .post(gw.url("/ui/login"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{body}");
        assert!(session_cookie(&r).is_none());
        let text = r.text().await.unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["error"]["message"], "Invalid master key");
        assert_eq!(v["error"]["type"], "auth_error");
        assert!(!text.contains("sk-wrong"));
    }
    let s = c.get(gw.url("/ui/session")).send().await.unwrap();
    assert_eq!(s.status(), 401);
    let s = c
        .get(gw.url("/ui/session"))
        .header("cookie", "idlehands_session=made-up")
        .send()
        .await
        .unwrap();
    assert_eq!(s.status(), 401);
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn form_login_redirects_to_the_dashboard_or_back_to_login() {
    let gw = start().await;
    let c = no_redirects();
    let ok = c
        .post(gw.url("/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-forwarded-proto", "https")
        .body(format!("password={}", KEY.replace('-', "%2D")))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 303);
    assert_eq!(ok.headers()["location"], "/ui/");
    let set = session_cookie(&ok).unwrap();
    assert!(set.ends_with("; Secure"), "{set}");
    let bad = c
        .post(gw.url("/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("password=nope")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 303);
    assert_eq!(bad.headers()["location"], "/ui/login");
    assert!(session_cookie(&bad).is_none());
    gw.shutdown().await.unwrap();
}

/// The cookie is the master key on management routes (via `Gateway::authenticate`) and on
/// `/metrics`, but not on model routes; an explicit key always decides.
#[tokio::test]
async fn session_cookie_counts_as_master_key_on_admin_routes_only() {
    let cfg = common::config(&two_models("http://127.0.0.1:9"), &[]);
    let sink = idlehands_proxy::MemorySink::new();
    let gw = Gateway::builder(cfg).sink(sink).build().unwrap();
    let gw = gw.clone().with_routes(admin_probe(gw.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(idlehands_proxy::serve(gw, listener, async move {
        let _ = rx.await;
    }));
    let c = no_redirects();
    let login = c
        .post(format!("{base}/ui/login"))
        .json(&json!({"password": KEY}))
        .send()
        .await
        .unwrap();
    let cookie = session_cookie(&login).unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();

    let r = c
        .get(format!("{base}/key/list"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "master");
    let r = c.get(format!("{base}/key/list")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // A wrong explicit key is not rescued by the cookie.
    let r = c
        .get(format!("{base}/key/list"))
        .header("cookie", &cookie)
        .bearer_auth("sk-not-a-key")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .get(format!("{base}/key/list"))
        .header("cookie", "idlehands_session=forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let m = c
        .get(format!("{base}/metrics"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(m.status(), 200);

    // No CORS grant: another site's script cannot preflight its way to the cookie.
    let pre = c
        .request(reqwest::Method::OPTIONS, format!("{base}/key/list"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(pre.headers().get("access-control-allow-origin").is_none());
    assert!(
        pre.headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
    let r = c
        .get(format!("{base}/key/list"))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());

    // Model routes take keys only.
    let r = c
        .post(format!("{base}/chat/completions"))
        .header("cookie", &cookie)
        .json(&common::chat_body("mocky", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let _ = tx.send(());
    task.await.unwrap().unwrap();
}
