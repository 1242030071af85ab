#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The seams the store plugs into (key resolver, pre/post-call hooks, call sink), single-model
//! mode, and graceful shutdown.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{
    KEY, assert_drained, chat_body, client, config, slow_call_in_flight, start_cfg, two_models,
};
use futures_util::future::BoxFuture;
use idlehands_proxy::{
    CallHooks, CallRecord, CallStatus, KeyResolver, PreCall, Principal, ProxyConfig, ProxyError,
    Reservation, VirtualKey,
};
use idlehands_testkit::{FakeOpenAi, Reply};
use serde_json::Value;

struct OneKey;

impl KeyResolver for OneKey {
    fn resolve<'a>(
        &'a self,
        key: &'a str,
        hash: &'a str,
    ) -> BoxFuture<'a, Result<Principal, ProxyError>> {
        Box::pin(async move {
            if key == "sk-virtual-1" {
                Ok(Principal::VirtualKey(Arc::new(VirtualKey {
                    token_hash: hash.to_string(),
                    key_alias: Some("alias-1".to_string()),
                    models: vec!["mocky".to_string()],
                    ..VirtualKey::default()
                })))
            } else {
                Err(idlehands_proxy::auth::invalid_key(key, hash))
            }
        })
    }
}

#[derive(Default)]
struct CountingHooks {
    pre: AtomicUsize,
    post: AtomicUsize,
    settled_cost: AtomicUsize,
}

impl CallHooks for CountingHooks {
    fn pre_call<'a>(
        &'a self,
        call: &'a PreCall<'a>,
    ) -> BoxFuture<'a, Result<Reservation, ProxyError>> {
        Box::pin(async move {
            let n = self.pre.fetch_add(1, Ordering::SeqCst);
            if call.end_user == Some("over-budget") {
                return Err(ProxyError::Custom {
                    status: 429,
                    kind: "budget_exceeded".to_string(),
                    message: "Budget has been exceeded!".to_string(),
                    param: None,
                    headers: vec![(
                        http::header::RETRY_AFTER,
                        http::HeaderValue::from_static("60"),
                    )],
                });
            }
            Ok(Reservation(Some(Box::new(n))))
        })
    }

    fn response_headers(&self, r: &Reservation, _cost: Option<u64>, headers: &mut http::HeaderMap) {
        let n =
            r.0.as_ref()
                .and_then(|b| b.downcast_ref::<usize>())
                .copied()
                .unwrap_or(999);
        headers.insert("x-ratelimit-test-remaining", http::HeaderValue::from(n));
    }

    fn post_call(&self, _p: &Principal, r: Reservation, record: &CallRecord) {
        assert!(r.0.is_some());
        self.post.fetch_add(1, Ordering::SeqCst);
        self.settled_cost
            .fetch_add(record.cost_nanos as usize, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn virtual_keys_come_from_the_resolver_and_model_access_is_checked() {
    let gw = start_cfg(config(&two_models("http://127.0.0.1:9/v1"), &[]), |b| {
        b.key_resolver(Arc::new(OneKey))
    })
    .await;
    let ok = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("sk-virtual-1")
        .json(&chat_body("mocky", false))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let denied = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("sk-virtual-1")
        .json(&chat_body("gpt-4o", false))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    let b: Value = denied.json().await.unwrap();
    assert_eq!(b["error"]["type"], "key_model_access_denied");
    let models: Value = client()
        .get(gw.url("/v1/models"))
        .bearer_auth("sk-virtual-1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"].as_array().unwrap().len(), 1);
    let bad = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("sk-nope")
        .json(&chat_body("mocky", false))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let rec = gw.records(1).await.remove(0);
    assert_eq!(rec.key_alias.as_deref(), Some("alias-1"));
    assert_eq!(
        rec.api_key_hash.as_deref(),
        Some(idlehands_proxy::auth::hash_key("sk-virtual-1").as_str())
    );
}

#[tokio::test]
async fn hooks_run_around_every_call_and_can_refuse() {
    let hooks = Arc::new(CountingHooks::default());
    let up = FakeOpenAi::start().await;
    up.set_default(Reply::text("streamed answer").with_usage(10, 5));
    let h = hooks.clone();
    let gw = start_cfg(config(&two_models(&up.base_url()), &[]), move |b| {
        b.hooks(h)
    })
    .await;
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&chat_body("mocky", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-ratelimit-test-remaining"], "0");
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&chat_body("gpt-4o", true))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-ratelimit-test-remaining"], "1");
    assert!(r.text().await.unwrap().ends_with("data: [DONE]\n\n"));
    let mut body = chat_body("mocky", false);
    body["user"] = "over-budget".into();
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "60");
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["type"], "budget_exceeded");
    let recs = gw.records(3).await;
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[2].status, CallStatus::Failure);
    assert_eq!(hooks.pre.load(Ordering::SeqCst), 3);
    // The refused call reserved nothing, so only two settle.
    assert_eq!(hooks.post.load(Ordering::SeqCst), 2);
    let total: u64 = recs.iter().map(|r| r.cost_nanos).sum();
    assert_eq!(hooks.settled_cost.load(Ordering::SeqCst) as u64, total);
}

#[tokio::test]
async fn single_model_mode_overrides_the_body_model_and_lists_only_it() {
    let up = FakeOpenAi::start().await;
    let env = |k: &str| (k == "OPENAI_API_KEY").then(|| "sk-upstream-env".to_string());
    let mut cfg = ProxyConfig::single_model("openai/gpt-4o-mini", Some(up.base_url()), &env);
    cfg.permit_weak_or_unset_master_key = true;
    let gw = start_cfg(cfg, |b| b).await;
    // No master key and explicitly permitted: no auth.
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&chat_body("anything-else", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sent = up.last_request().unwrap();
    assert_eq!(sent.body["model"], "gpt-4o-mini");
    assert_eq!(sent.header("authorization"), Some("Bearer sk-upstream-env"));
    let authority = up.base_url().split('/').nth(2).unwrap().to_string();
    assert_eq!(sent.header("host"), Some(authority.as_str()));
    let models: Value = client()
        .get(gw.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], "openai/gpt-4o-mini");
    assert_eq!(models["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn shutdown_waits_for_in_flight_requests() {
    let up = FakeOpenAi::start().await;
    let gw = start_cfg(config(&two_models(&up.base_url()), &[]), |b| b).await;
    let pending = slow_call_in_flight(&up, gw.url("/v1/chat/completions")).await;
    let base = gw.base.clone();
    tokio::time::timeout(Duration::from_secs(30), gw.shutdown())
        .await
        .unwrap()
        .unwrap();
    assert_drained(pending, &base).await;
}

#[tokio::test]
async fn extra_routes_are_served_and_can_use_the_gateway_auth() {
    use axum::response::IntoResponse;
    use axum::routing::get;
    let gw = idlehands_proxy::Gateway::builder(config(&two_models("http://127.0.0.1:9/v1"), &[]))
        .build()
        .unwrap();
    let auth = gw.clone();
    let routes = axum::Router::new().route(
        "/key/info",
        get(move |headers: http::HeaderMap| async move {
            match auth.authenticate(&headers).await {
                Ok(p) => axum::Json(serde_json::json!({"hash": p.key_hash()})).into_response(),
                Err(e) => e.into_response(),
            }
        }),
    );
    let gw = gw.with_routes(routes);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(idlehands_proxy::serve(gw, listener, std::future::pending()));
    let r = client()
        .get(format!("{base}/key/info"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["hash"], idlehands_proxy::auth::hash_key(KEY));
    let r = client()
        .get(format!("{base}/key/info"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // The gateway's own routes and its JSON 404 still work next to them.
    let r = client()
        .get(format!("{base}/v1/models"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client()
        .get(format!("{base}/key/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn readiness_reports_the_database_probe() {
    use std::sync::atomic::AtomicBool;
    let up = Arc::new(AtomicBool::new(true));
    let u = up.clone();
    let probe: idlehands_proxy::DbProbe = Arc::new(move || Some(u.load(Ordering::SeqCst)));
    let gw = start_cfg(
        config(&two_models("http://127.0.0.1:9/v1"), &[]),
        move |b| b.db_probe(probe),
    )
    .await;
    let r = client()
        .get(gw.url("/health/readiness"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["db"], "connected");
    up.store(false, Ordering::SeqCst);
    let r = client()
        .get(gw.url("/health/readiness"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
}
