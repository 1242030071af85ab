#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `callbacks: ["otel"]`: spans exported over OTLP/HTTP protobuf to a real receiver on
//! loopback (tests/python/otlp_receiver.py decodes them with the OpenTelemetry protobuf
//! types), the client's `traceparent` continued and passed upstream, and a dead collector
//! never failing a call.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{KEY, chat_body, client, config, start_cfg, two_models};
use idlehands_testkit::{FakeOpenAi, Reply};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

struct Receiver {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    port: u16,
}

async fn receiver() -> Receiver {
    start_receiver(&[]).await
}

async fn start_receiver(args: &[&str]) -> Receiver {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/otlp_receiver.py");
    let mut child = tokio::process::Command::new("python3")
        .arg(&script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 with opentelemetry-proto (scripts/test.sh installs it)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port = lines
        .next_line()
        .await
        .unwrap()
        .expect("the receiver prints its port")
        .trim()
        .parse()
        .unwrap();
    Receiver { child, lines, port }
}

impl Receiver {
    /// The next `n` spans, failing the test if they do not come within 30 s.
    async fn spans(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::new();
        while out.len() < n {
            let line = tokio::time::timeout(Duration::from_secs(30), self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("expected {n} spans, got {}: {out:?}", out.len()))
                .unwrap()
                .expect("the receiver exited");
            out.push(serde_json::from_str(&line).unwrap());
        }
        out
    }
}

fn otel_yaml(upstream: &str, callbacks: &str) -> String {
    format!(
        "{}litellm_settings:\n  {callbacks}: [\"otel\"]\n  num_retries: 1\n",
        two_models(upstream)
    )
}

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_one_span_with_a_child_per_attempt_in_the_clients_trace() {
    let mut rx = receiver().await;
    let up = FakeOpenAi::start().await;
    // The first attempt fails and is retried.
    up.push(Reply::error(502, "bad gateway"));
    up.push(Reply::text("hello").with_usage(12, 3));
    let endpoint = format!("http://127.0.0.1:{}", rx.port);
    let cfg = config(
        &otel_yaml(&up.base_url(), "callbacks"),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=collector%20secret"),
            ("OTEL_SERVICE_NAME", "gateway-under-test"),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ],
    );
    let gw = start_cfg(cfg, |b| b).await;
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
        .json(&chat_body("gpt-4o", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap();

    let spans = rx.spans(3).await;
    let call: Vec<&Value> = spans
        .iter()
        .filter(|s| s["name"] == "litellm_request")
        .collect();
    let attempts: Vec<&Value> = spans
        .iter()
        .filter(|s| s["name"] == "raw_gen_ai_request")
        .collect();
    assert_eq!((call.len(), attempts.len()), (1, 2), "{spans:?}");
    let call = call[0];
    // The client's trace, with its span as the parent; a server span.
    assert_eq!(call["trace_id"], CLIENT_TRACE);
    assert_eq!(call["parent_span_id"], CLIENT_SPAN);
    assert_eq!(call["kind"], 2);
    assert_eq!(call["scope"], "litellm");
    assert_eq!(call["resource"]["service.name"], "gateway-under-test");
    assert_eq!(call["api_key_header"], "collector secret");
    let a = &call["attributes"];
    assert_eq!(a["gen_ai.operation.name"], "chat");
    assert_eq!(a["gen_ai.system"], "openai");
    assert_eq!(a["gen_ai.request.model"], "gpt-4o");
    assert_eq!(a["gen_ai.response.model"], "openai/gpt-4o");
    assert_eq!(a["gen_ai.usage.input_tokens"], 12);
    assert_eq!(a["gen_ai.usage.output_tokens"], 3);
    assert!(a["gen_ai.cost.total_cost"].as_f64().unwrap() > 0.0);
    assert_eq!(a["http.response.status_code"], 200);
    assert!(a["metadata.user_api_key_hash"].as_str().unwrap().len() == 64);
    assert_eq!(call["status_code"], 0);
    assert!(call["end"].as_u64().unwrap() >= call["start"].as_u64().unwrap());
    // Each attempt a client span under the call; the failed one says so.
    for at in &attempts {
        assert_eq!(at["trace_id"], CLIENT_TRACE);
        assert_eq!(at["parent_span_id"], call["span_id"]);
        assert_eq!(at["kind"], 3);
        assert_eq!(at["attributes"]["gen_ai.request.model"], "openai/gpt-4o");
    }
    let failed: Vec<&&Value> = attempts.iter().filter(|s| s["status_code"] == 2).collect();
    assert_eq!(failed.len(), 1, "{attempts:?}");
    assert_eq!(failed[0]["attributes"]["http.response.status_code"], 502);
    // Upstream, each attempt carried the trace with its own span as the parent.
    let sent: Vec<String> = up
        .requests()
        .into_iter()
        .map(|r| r.headers.get("traceparent").cloned().unwrap_or_default())
        .collect();
    assert_eq!(sent.len(), 2);
    for at in &attempts {
        let want = format!("00-{CLIENT_TRACE}-{}-01", at["span_id"].as_str().unwrap());
        assert!(sent.contains(&want), "{want} not in {sent:?}");
    }
    drop(rx.child.stdin.take());
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_callback_exports_failed_calls_only_and_a_new_trace_without_traceparent() {
    let mut rx = receiver().await;
    let up = FakeOpenAi::start().await;
    up.push(Reply::text("fine"));
    up.push(Reply::error(400, "bad request upstream"));
    let endpoint = format!("http://127.0.0.1:{}/v1/traces", rx.port);
    let cfg = config(
        &otel_yaml(&up.base_url(), "failure_callback"),
        &[
            // LiteLLM's own names.
            ("OTEL_EXPORTER", "otlp_http"),
            ("OTEL_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ],
    );
    let gw = start_cfg(cfg, |b| b).await;
    for want in [200, 400] {
        let r = client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&chat_body("gpt-4o", false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), want);
        r.text().await.unwrap();
    }
    gw.records(2).await;
    let spans = rx.spans(2).await;
    let call = spans
        .iter()
        .find(|s| s["name"] == "litellm_request")
        .expect("the failed call's span");
    assert_eq!(call["attributes"]["http.response.status_code"], 400);
    assert_eq!(call["attributes"]["error.type"], "Openai.BadRequestError");
    assert_eq!(call["status_code"], 2);
    assert!(
        call["status_message"]
            .as_str()
            .unwrap()
            .contains("bad request upstream")
    );
    // No traceparent from the client: a new trace, the call span at its root.
    assert_eq!(call["parent_span_id"], "");
    assert_ne!(call["trace_id"], CLIENT_TRACE);
    // The successful call was not exported: its span (and its attempt's) never arrive, which
    // the receiver shows by the failed call's being the only litellm_request seen.
    assert_eq!(
        spans
            .iter()
            .filter(|s| s["name"] == "litellm_request")
            .count(),
        1
    );
    drop(rx.child.stdin.take());
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_or_silent_collector_never_fails_a_call() {
    // A port nothing listens on, and a listener that accepts and never answers.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    for port in [closed, silent_port] {
        let endpoint = format!("http://127.0.0.1:{port}");
        let cfg = config(
            &otel_yaml("http://127.0.0.1:9", "callbacks"),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
                ("OTEL_BSP_SCHEDULE_DELAY", "10"),
                ("OTEL_BSP_MAX_QUEUE_SIZE", "2"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "60000"),
            ],
        );
        let gw = start_cfg(cfg, |b| b).await;
        for _ in 0..20 {
            let r = client()
                .post(gw.url("/v1/chat/completions"))
                .bearer_auth(KEY)
                .json(&chat_body("mocky", false))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.text().await.unwrap();
        }
        gw.records(20).await;
        gw.shutdown().await.unwrap();
    }
    hold.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_go_over_grpc_to_a_real_grpc_server() {
    let mut rx = start_receiver(&["grpc"]).await;
    let endpoint = format!("http://127.0.0.1:{}", rx.port);
    let cfg = config(
        &otel_yaml("http://127.0.0.1:9", "callbacks"),
        &[
            ("OTEL_EXPORTER", "otlp_grpc"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=grpc-secret"),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ],
    );
    let gw = start_cfg(cfg, |b| b).await;
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&chat_body("mocky", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap();
    let spans = rx.spans(1).await;
    let call = spans
        .iter()
        .find(|s| s["name"] == "litellm_request")
        .expect("the call's span");
    assert_eq!(call["attributes"]["gen_ai.request.model"], "mocky");
    assert_eq!(call["api_key_header"], "grpc-secret");
    assert_eq!(call["resource"]["service.name"], "litellm");
    drop(rx.child.stdin.take());
    gw.shutdown().await.unwrap();
}

#[test]
fn unknown_exporters_and_a_missing_endpoint_are_refused_with_the_reason() {
    use idlehands_proxy::otel::OtelSettings;
    let cfg = config(
        &otel_yaml("http://127.0.0.1:9", "callbacks"),
        &[
            ("OTEL_EXPORTER", "console"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
        ],
    );
    let err = OtelSettings::from_config(&cfg).unwrap().unwrap_err();
    assert!(err.contains("\"console\" is not supported"), "{err}");
    let cfg = config(&otel_yaml("http://127.0.0.1:9", "success_callback"), &[]);
    let err = OtelSettings::from_config(&cfg).unwrap().unwrap_err();
    assert!(err.contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{err}");
    let cfg = config(&two_models("http://127.0.0.1:9"), &[]);
    assert!(OtelSettings::from_config(&cfg).is_none());
}
