//! The dashboard router over real HTTP: content types, revalidation, security headers, and that
//! the proxy can add its own `/ui/*` routes (POST /ui/login beside GET /ui/login).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::Router;
use axum::routing::{get, post};
use reqwest::StatusCode;
use reqwest::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH,
    X_CONTENT_TYPE_OPTIONS,
};

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, app).into_future());
    base
}

fn gateway_like() -> Router {
    #[derive(Clone)]
    struct ProxyState;
    Router::new()
        .merge(idlehands_dashboard::router::<ProxyState>())
        .route("/ui/login", post(|| async { "login posted" }))
        .route("/ui/session", get(|| async { "session" }))
        .with_state(ProxyState)
}

#[tokio::test]
async fn every_page_and_asset_is_served_with_its_type_and_no_cache_revalidation() {
    let base = serve(gateway_like()).await;
    let http = reqwest::Client::new();
    let cases = [
        ("/ui", "text/html; charset=utf-8", "app.js"),
        ("/ui/", "text/html; charset=utf-8", "app.js"),
        ("/ui/login", "text/html; charset=utf-8", "login.js"),
        (
            "/ui/app.js",
            "text/javascript; charset=utf-8",
            "/global/spend/report",
        ),
        (
            "/ui/login.js",
            "text/javascript; charset=utf-8",
            "/ui/login",
        ),
        ("/ui/app.css", "text/css; charset=utf-8", ":root"),
        ("/ui/favicon.svg", "image/svg+xml", "<svg"),
    ];
    for (path, ctype, needle) in cases {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let h = r.headers().clone();
        assert_eq!(h[CONTENT_TYPE], ctype, "{path}");
        assert_eq!(h[CACHE_CONTROL], "no-cache", "{path}");
        assert_eq!(h[X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
        if ctype.starts_with("text/html") {
            let csp = h[CONTENT_SECURITY_POLICY].to_str().unwrap();
            assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
        }
        let etag = h[ETAG].clone();
        let body = r.text().await.unwrap();
        assert!(body.contains(needle), "{path} lacks {needle}");
        let (_, embedded) = idlehands_dashboard::asset(path).unwrap();
        assert_eq!(body.as_bytes(), embedded, "{path}");

        let again = http
            .get(format!("{base}{path}"))
            .header(IF_NONE_MATCH, etag.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(again.headers()[ETAG], etag);
        assert!(again.bytes().await.unwrap().is_empty());

        let stale = http
            .get(format!("{base}{path}"))
            .header(IF_NONE_MATCH, "\"0000000000000000\"")
            .send()
            .await
            .unwrap();
        assert_eq!(stale.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn proxy_routes_on_the_same_paths_coexist_and_unknown_files_are_404() {
    let base = serve(gateway_like()).await;
    let http = reqwest::Client::new();
    let posted = http.post(format!("{base}/ui/login")).send().await.unwrap();
    assert_eq!(posted.text().await.unwrap(), "login posted");
    let page = http.get(format!("{base}/ui/login")).send().await.unwrap();
    assert!(page.text().await.unwrap().contains("id=\"login-form\""));
    let session = http.get(format!("{base}/ui/session")).send().await.unwrap();
    assert_eq!(session.text().await.unwrap(), "session");
    for missing in ["/ui/nope.js", "/ui/../Cargo.toml", "/ui/assets/app.js"] {
        let r = http.get(format!("{base}{missing}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{missing}");
    }
}
