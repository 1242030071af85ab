#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `callbacks: ["generic_api"]`: LiteLLM's standard logging payloads POSTed in batches to a
//! receiver on loopback, with `GENERIC_LOGGER_HEADERS`, retried after a 5xx, and a dead
//! receiver never failing a call.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::{KEY, chat_body, client, config, start_cfg, two_models};
use idlehands_testkit::{FakeOpenAi, Reply};
use serde_json::Value;
use tokio::sync::mpsc;

/// One POST the receiver took: its headers and body.
struct Post {
    headers: HeaderMap,
    body: Value,
}

/// A receiver on loopback; it answers 503 to the first `fail_first` posts.
async fn receiver(fail_first: usize) -> (String, mpsc::UnboundedReceiver<Post>, Arc<AtomicUsize>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    let app = Router::new().route(
        "/logs",
        post(move |headers: HeaderMap, body: Bytes| {
            let tx = tx.clone();
            let count = count.clone();
            async move {
                let n = count.fetch_add(1, Ordering::SeqCst);
                if n < fail_first {
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                let body: Value = serde_json::from_slice(&body).expect("a JSON body");
                let _ = tx.send(Post { headers, body });
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/logs", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx, seen)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Post>) -> Post {
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("a batch within 30 s")
        .expect("the receiver is running")
}

fn yaml(upstream: &str, list: &str) -> String {
    format!(
        "{}litellm_settings:\n  {list}: [\"generic_api\"]\n",
        two_models(upstream)
    )
}

async fn call(gw: &common::Running, model: &str) -> u16 {
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("user-agent", "logger-test/1.0")
        .json(&chat_body(model, false))
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    r.text().await.unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_arrive_as_json_arrays_in_batches_with_the_headers() {
    let (url, mut rx, _) = receiver(0).await;
    let up = FakeOpenAi::start().await;
    up.push(Reply::text("one").with_usage(7, 2));
    up.push(Reply::error(400, "bad request upstream"));
    let cfg = config(
        &yaml(&up.base_url(), "callbacks"),
        &[
            ("GENERIC_LOGGER_ENDPOINT", url.as_str()),
            (
                "GENERIC_LOGGER_HEADERS",
                "authorization=Bearer log-token,x-source=gw",
            ),
            ("DEFAULT_BATCH_SIZE", "2"),
        ],
    );
    let gw = start_cfg(cfg, |b| b).await;
    assert_eq!(call(&gw, "gpt-4o").await, 200);
    assert_eq!(call(&gw, "gpt-4o").await, 400);
    let p = next(&mut rx).await;
    assert_eq!(p.headers["authorization"], "Bearer log-token");
    assert_eq!(p.headers["x-source"], "gw");
    assert_eq!(p.headers["content-type"], "application/json");
    let batch = p.body.as_array().expect("a JSON array");
    assert_eq!(batch.len(), 2, "{batch:?}");
    let ok = batch.iter().find(|x| x["status"] == "success").unwrap();
    let failed = batch.iter().find(|x| x["status"] == "failure").unwrap();
    let records = gw.records(2).await;
    let ok_record = records.iter().find(|r| r.http_status == 200).unwrap();
    assert_eq!(ok["id"], ok_record.call_id.as_str());
    assert_eq!(ok["litellm_call_id"], ok_record.call_id.as_str());
    assert_eq!(ok["call_type"], "acompletion");
    assert_eq!(ok["model"], "openai/gpt-4o");
    assert_eq!(ok["model_group"], "gpt-4o");
    assert_eq!(ok["custom_llm_provider"], "openai");
    assert_eq!(ok["prompt_tokens"], 7);
    assert_eq!(ok["completion_tokens"], 2);
    assert_eq!(ok["total_tokens"], 9);
    assert!(ok["response_cost"].as_f64().unwrap() > 0.0);
    assert_eq!(
        ok["metadata"]["user_api_key_hash"],
        ok_record.api_key_hash.as_deref().unwrap()
    );
    assert_eq!(
        ok["metadata"]["user_api_key_request_route"],
        "/v1/chat/completions"
    );
    assert_eq!(ok["user_agent"], "logger-test/1.0");
    assert!(ok["endTime"].as_f64().unwrap() >= ok["startTime"].as_f64().unwrap());
    assert_eq!(ok["error_information"], Value::Null);
    assert_eq!(failed["error_information"]["error_code"], "400");
    assert_eq!(
        failed["error_information"]["error_class"],
        "Openai.BadRequestError"
    );
    assert!(
        failed["error_str"]
            .as_str()
            .unwrap()
            .contains("bad request upstream")
    );
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_refused_with_a_5xx_is_retried() {
    let (url, mut rx, seen) = receiver(1).await;
    let cfg = config(
        &yaml("http://127.0.0.1:9", "success_callback"),
        &[
            ("GENERIC_LOGGER_ENDPOINT", url.as_str()),
            ("DEFAULT_BATCH_SIZE", "1"),
        ],
    );
    let gw = start_cfg(cfg, |b| b).await;
    assert_eq!(call(&gw, "mocky").await, 200);
    let p = next(&mut rx).await;
    assert_eq!(p.body.as_array().unwrap().len(), 1);
    assert_eq!(p.body[0]["model_group"], "mocky");
    // The 503 and then the accepted retry.
    assert_eq!(seen.load(Ordering::SeqCst), 2);
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_receiver_never_fails_a_call() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/logs", l.local_addr().unwrap())
    };
    let cfg = config(
        &yaml("http://127.0.0.1:9", "callbacks"),
        &[
            ("GENERIC_LOGGER_ENDPOINT", closed.as_str()),
            ("DEFAULT_BATCH_SIZE", "1"),
            ("GENERIC_LOGGER_MAX_QUEUE_SIZE", "2"),
        ],
    );
    let gw = start_cfg(cfg, |b| b).await;
    for _ in 0..20 {
        assert_eq!(call(&gw, "mocky").await, 200);
    }
    gw.records(20).await;
    gw.shutdown().await.unwrap();
}

#[test]
fn a_missing_endpoint_is_named() {
    let cfg = config(&yaml("http://127.0.0.1:9", "callbacks"), &[]);
    let err = idlehands_proxy::generic_api::GenericApiSettings::from_config(&cfg)
        .unwrap()
        .unwrap_err();
    assert!(err.contains("GENERIC_LOGGER_ENDPOINT"), "{err}");
}
