//! A webhook receiver on loopback, for alerts and logging callbacks: every JSON body POSTed to
//! `{base}/{name}` is kept with its name, in order.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::Path;
use axum::routing::post;
use serde_json::Value;
use tokio::sync::mpsc;

pub struct Webhooks {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    rx: mpsc::UnboundedReceiver<(String, Value)>,
}

impl Webhooks {
    #[expect(clippy::expect_used)]
    pub async fn start() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let app = Router::new().route(
            "/{name}",
            post(move |Path(name): Path<String>, body: Bytes| {
                let tx = tx.clone();
                async move {
                    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let _ = tx.send((name, body));
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the webhook receiver");
        let base = format!(
            "http://{}",
            listener.local_addr().expect("the receiver's address")
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Webhooks { base, rx }
    }

    /// The next body received, with the name it was posted to; fails the test after 30 s.
    #[expect(clippy::expect_used)]
    pub async fn next(&mut self) -> (String, Value) {
        tokio::time::timeout(Duration::from_secs(30), self.rx.recv())
            .await
            .expect("a webhook call within 30 s")
            .expect("the webhook receiver is running")
    }
}
