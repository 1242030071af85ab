#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Hardening of the management routes on the real store (SQLite): cross-site writes through
//! the dashboard cookie, auth and size before the body, `/health` for virtual keys, and
//! absurd durations.

mod store_support;

use serde_json::{Value, json};
use store_support::{
    Backend, MASTER, Place, Proxy, client, error_of, generate, get, post, send, start,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn sign_in(p: &Proxy) -> String {
    let r = client()
        .post(p.url("/ui/login"))
        .json(&json!({"password": MASTER}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("idlehands_session="))
        .unwrap();
    cookie.split(';').next().unwrap().to_string()
}

async fn key_count(p: &Proxy) -> usize {
    let a = get(p, "/key/list", MASTER).await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["keys"].as_array().unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_signed_writes_must_be_same_origin_json_and_keys_are_unaffected() {
    let place = Place::new(Backend::Sqlite);
    let p = start(&place, "").await;
    let cookie = sign_in(&p).await;
    let own_origin = p.base.clone();
    let port: u16 = own_origin.rsplit(':').next().unwrap().parse().unwrap();
    let other_port = format!("http://127.0.0.1:{}", port.wrapping_add(1).max(1));
    let body = r#"{"key_alias": "planted", "key": "sk-attacker-chosen-key-0001"}"#;
    // What a page on another port of the same host can send without a preflight.
    for (content_type, origin) in [
        ("text/plain", other_port.as_str()),
        ("application/x-www-form-urlencoded", other_port.as_str()),
        ("text/plain", own_origin.as_str()),
        ("application/json", other_port.as_str()),
        ("application/json", "null"),
    ] {
        let a = send(
            client()
                .post(p.url("/key/generate"))
                .header("cookie", &cookie)
                .header("content-type", content_type)
                .header("origin", origin)
                .body(body),
        )
        .await;
        assert_eq!(a.status, 403, "{content_type} from {origin}: {}", a.body);
        let (kind, message) = error_of(&a);
        assert_eq!(kind, "auth_error");
        assert!(
            message.starts_with("Cross-site request refused"),
            "{message}"
        );
    }
    // No Origin at all (a browser always sends one on a cross-site POST): refused too.
    let a = send(
        client()
            .post(p.url("/key/generate"))
            .header("cookie", &cookie)
            .header("content-type", "application/json")
            .body(body),
    )
    .await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert_eq!(key_count(&p).await, 0, "a refused write made a key");
    let planted = get(&p, "/key/info?key=sk-attacker-chosen-key-0001", MASTER).await;
    assert_eq!(planted.status, 404, "{}", planted.body);

    // The dashboard's own call: JSON from the gateway's origin.
    let a = send(
        client()
            .post(p.url("/key/generate"))
            .header("cookie", &cookie)
            .header("origin", &own_origin)
            .json(&json!({"key_alias": "from-the-dashboard"})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    // Reads with the cookie need no Origin.
    let a = send(client().get(p.url("/key/list")).header("cookie", &cookie)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    // A key decides for itself, whatever the content type and origin.
    let a = send(
        client()
            .post(p.url("/key/generate"))
            .bearer_auth(MASTER)
            .header("cookie", &cookie)
            .header("content-type", "text/plain")
            .header("origin", &other_port)
            .body(r#"{"key_alias": "by-api"}"#),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(key_count(&p).await, 2);
    p.stop().await;
    place.cleanup().await;
}

/// Sends a head promising `length` bytes and no body; returns everything until the close.
async fn head_only(p: &Proxy, head: String) -> String {
    let addr = p.base.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_routes_check_the_key_and_size_before_the_body() {
    let place = Place::new(Backend::Sqlite);
    let p = start(&place, "  max_admin_request_size_mb: 0.01\n").await;
    let master = format!("authorization: Bearer {MASTER}\r\n");
    // The declared size first (as LiteLLM's size check runs before auth), then the key; the
    // promised body is never sent.
    for (key, length, status) in [
        ("", 5000, "HTTP/1.1 401"),
        (
            "authorization: Bearer sk-wrong-key-0001\r\n",
            5000,
            "HTTP/1.1 401",
        ),
        ("", 200 * 1024 * 1024, "HTTP/1.1 413"),
        (&master[..], 200 * 1024 * 1024, "HTTP/1.1 413"),
    ] {
        let answer = head_only(
            &p,
            format!(
                "POST /key/generate HTTP/1.1\r\nhost: g\r\ncontent-type: application/json\r\n{key}content-length: {length}\r\n\r\n"
            ),
        )
        .await;
        assert!(answer.starts_with(status), "{key}{length}: {answer}");
        if status.ends_with("413") {
            assert!(answer.contains("Max size is 0.01 MB"), "{answer}");
        }
    }
    // A body over the admin limit sent without a length (chunked) is cut at the limit.
    let chunks =
        futures_util::stream::iter((0..8).map(|_| Ok::<_, std::io::Error>(vec![b' '; 4096])));
    let a = send(
        client()
            .post(p.url("/key/generate"))
            .bearer_auth(MASTER)
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(chunks)),
    )
    .await;
    assert_eq!(a.status, 413, "{}", a.body);
    // Under the limit: served.
    let a = post(&p, "/key/generate", MASTER, json!({"key_alias": "small"})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    p.stop().await;
    place.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_needs_the_master_key_or_a_key_allowed_every_model_it_checks() {
    let place = Place::new(Backend::Sqlite);
    let p = start(&place, "").await;
    let (limited, _) = generate(&p, json!({"models": ["mocky"]})).await;
    let (everything, _) = generate(&p, json!({})).await;
    // `other` is not the limited key's to check.
    let a = get(&p, "/health", &limited).await;
    assert_eq!(a.status, 403, "{}", a.body);
    let (kind, message) = error_of(&a);
    assert_eq!(kind, "key_model_access_denied");
    assert!(message.contains("'other'"), "{message}");
    assert!(!a.body.to_string().contains("api_base"), "{}", a.body);
    // Narrowed to its own model, it may.
    let a = get(&p, "/health?model=mocky", &limited).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["healthy_count"], 1, "{}", a.body);
    for key in [everything.as_str(), MASTER] {
        let a = get(&p, "/health", key).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.body["healthy_count"], 2, "{}", a.body);
    }
    assert_eq!(get(&p, "/health", "").await.status, 401);
    for open in [
        "/health/liveliness",
        "/health/liveness",
        "/health/readiness",
    ] {
        let a = send(client().get(p.url(open))).await;
        assert_eq!(a.status, 200, "{open}: {}", a.body);
    }
    p.stop().await;
    place.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_durations_are_a_400_naming_the_field() {
    let place = Place::new(Backend::Sqlite);
    let p = start(&place, "").await;
    for (field, route) in [
        ("duration", "/key/generate"),
        ("budget_duration", "/key/generate"),
    ] {
        let a = post(&p, route, MASTER, json!({field: "99999999d"})).await;
        assert_eq!(a.status, 400, "{field}: {}", a.body);
        assert_eq!(a.body["error"]["param"], field, "{}", a.body);
        let (_, message) = error_of(&a);
        assert!(
            message.contains(field) && message.contains("99999999d"),
            "{message}"
        );
    }
    let (key, _) = generate(&p, json!({})).await;
    for field in ["duration", "budget_duration"] {
        let a = post(
            &p,
            "/key/update",
            MASTER,
            json!({"key": key, field: "4294967296w"}),
        )
        .await;
        assert_eq!(a.status, 400, "{field}: {}", a.body);
        assert_eq!(a.body["error"]["param"], field, "{}", a.body);
    }
    let a = post(
        &p,
        "/key/regenerate",
        MASTER,
        json!({"key": key, "grace_period": "99999999d"}),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.body["error"]["param"], "grace_period", "{}", a.body);
    // The server is still there and sane.
    let a = post(&p, "/key/generate", MASTER, json!({"duration": "30d"})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let v: &Value = &a.body;
    assert!(v["expires"].as_str().is_some(), "{v}");
    p.stop().await;
    place.cleanup().await;
}
