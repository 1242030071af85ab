#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `/spend/logs` and `/global/spend/report` run on the admin runtime, not on the serving thread
//! that took them: while the admin runtime is held busy (a gate stands in for a big page being
//! built), other requests on the same serving thread are answered, and the admin request is
//! answered once the gate opens.

mod store_support;

use std::time::Duration;

use idlehands_proxy::offload;
use store_support::{Backend, MASTER, Place, chat, client, get, post, send, spend_rows, start};

/// Holds the admin runtime's one worker until the returned sender is used (or dropped).
async fn hold_admin_runtime() -> std::sync::mpsc::Sender<()> {
    let admin = offload::handle().expect("the admin runtime starts");
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
    admin.spawn(async move {
        let _ = started_tx.send(());
        // Blocks the worker thread, as CPU-bound work building a big page would.
        let _ = gate_rx.recv();
    });
    started_rx.await.unwrap();
    gate_tx
}

// One thread serves every connection here (`serve` on this test's single-threaded runtime).
#[tokio::test]
async fn other_requests_on_the_serving_thread_are_answered_while_admin_work_is_busy() {
    let place = Place::new(Backend::Sqlite);
    let p = start(&place, "").await;
    let ok = post(&p, "/v1/chat/completions", MASTER, chat("mocky")).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(spend_rows(&p, "", 1).await.len(), 1);

    for path in ["/spend/logs", "/global/spend/report?group_by=model"] {
        let gate = hold_admin_runtime().await;
        let url = p.url(path);
        let admin_call =
            tokio::spawn(async move { send(client().get(url).bearer_auth(MASTER)).await });
        // The admin request has reached the admin runtime and waits there.
        tokio::time::timeout(Duration::from_secs(30), async {
            while offload::in_flight() == 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{path} never reached the admin runtime"));

        // Meanwhile the serving thread answers other requests.
        let live = get(&p, "/health/liveliness", MASTER).await;
        assert_eq!(live.status, 200, "{}", live.body);
        let call = post(&p, "/v1/chat/completions", MASTER, chat("mocky")).await;
        assert_eq!(call.status, 200, "{}", call.body);
        assert!(
            !admin_call.is_finished(),
            "{path} was answered while the admin runtime was held"
        );
        assert_eq!(offload::in_flight(), 1);

        gate.send(()).unwrap();
        let a = admin_call.await.unwrap();
        assert_eq!(a.status, 200, "{path}: {}", a.body);
        let rows = a.body.as_array().cloned().unwrap_or_default();
        assert!(!rows.is_empty(), "{path}: {}", a.body);
        if path == "/spend/logs" {
            assert!(
                rows.iter().all(|r| r["model_group"] == "mocky"),
                "{}",
                a.body
            );
        } else {
            assert_eq!(rows[0]["group"], "mocky", "{}", a.body);
        }
    }
    assert_eq!(offload::in_flight(), 0);
    p.stop().await;
    place.cleanup().await;
}
