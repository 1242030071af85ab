#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! No secret in any log: the process's log at `--detailed_debug` (debug, every crate) and the
//! request log, while clients put keys everywhere (headers in every spelling, `user`,
//! `metadata`, prompts, keys prefixed with `my_`/`prod-`), an upstream echoes a key in its
//! error, and `/key/{key}/regenerate` carries a key in its path. Also the `metadata`/`user`
//! size limits. Its own test binary: it installs the process-wide subscriber.

mod store_support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use idlehands_proxy::logging::{LogOptions, init_with_writer};
use idlehands_testkit::{FakeOpenAi, Reply};
use serde_json::{Value, json};
use store_support::{Backend, MASTER, Place, client, error_of, generate, post, send, spend_rows};

const UPSTREAM_KEY: &str = "sk-upstream-provider-secret-01";
const PLAIN_SECRET: &str = "plain-secret-without-prefix-01";

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn start(place: &Place, upstream: &str, extra: &str) -> store_support::Proxy {
    let group = format!(
        "  - model_name: echo
    litellm_params:
      model: openai/echo-model
      api_base: {upstream}
      api_key: {UPSTREAM_KEY}
"
    );
    let yaml = store_support::yaml(extra).replacen(
        "general_settings:",
        &format!("{group}general_settings:"),
        1,
    );
    let cfg = store_support::config(&yaml);
    let s = store_support::settings(&cfg, place);
    store_support::start_with(cfg, s).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_reaches_any_log_at_detailed_debug() {
    let buf = Buf::default();
    let out = buf.clone();
    // `--detailed_debug`: debug for every crate, plain text.
    let opts = LogOptions::resolve(None, false, true, &|_| None);
    assert_eq!(opts.filter, "debug");
    assert!(init_with_writer(&opts, move || out.clone()));

    let up = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let request_log = dir.path().join("requests.jsonl");
    let place = Place::new(Backend::Sqlite);
    let p = start(
        &place,
        &up.base_url(),
        &format!("  request_log_path: {}\n", request_log.display()),
    )
    .await;
    let (key, _) = generate(&p, json!({"key_alias": "redaction"})).await;
    let suffix = key.trim_start_matches("sk-").to_string();

    // Keys in the body's every corner, sent under every header spelling.
    let body = json!({
        "model": "echo",
        "user": format!("my_{key}"),
        "metadata": {"note": format!("BEARER {key}"), "x-api-key": PLAIN_SECRET,
                     "api-key": PLAIN_SECRET, "AUTHORIZATION": PLAIN_SECRET},
        "messages": [{"role": "user", "content": format!("my key is prod-{key}")}],
    });
    let headers: [(&str, String); 5] = [
        ("authorization", format!("Bearer {key}")),
        ("Authorization", format!("bearer {key}")),
        ("x-api-key", key.clone()),
        ("api-key", key.clone()),
        ("x-litellm-api-key", key.clone()),
    ];
    for (name, value) in &headers {
        up.push(Reply::text("fine").with_usage(3, 1));
        let a = send(
            client()
                .post(p.url("/v1/chat/completions"))
                .header(*name, value)
                .json(&body),
        )
        .await;
        assert_eq!(a.status, 200, "{name}: {}", a.body);
    }
    // An upstream that echoes a key in its error text (OpenAI does: "Incorrect API key
    // provided: sk-...").
    up.push(Reply::error(
        401,
        format!("Incorrect API key provided: {UPSTREAM_KEY}; your key {key}"),
    ));
    let a = post(&p, "/v1/chat/completions", &key, body.clone()).await;
    assert_eq!(a.status, 401, "{}", a.body);
    // A wrong key, in a header, shown nowhere.
    let wrong = "sk-wrong-key-that-was-never-issued-1";
    let a = post(&p, "/v1/chat/completions", wrong, body.clone()).await;
    assert_eq!(a.status, 401);

    // The key in the path: a debug log names every request's path.
    let a = post(&p, &format!("/key/{key}/regenerate"), MASTER, json!({})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let regenerated = a.body["key"].as_str().unwrap().to_string();
    assert_ne!(regenerated, key);

    // A row for each routed call; the wrong key is refused before routing, without one.
    spend_rows(&p, "", headers.len() + 1).await;
    p.stop().await;

    let logged = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(
        logged.contains("/key/[redacted]/regenerate"),
        "the regenerate request is logged, without its key:\n{logged}"
    );
    assert!(
        logged.contains("request answered"),
        "debug logs were captured:\n{logged}"
    );
    let request_lines = std::fs::read_to_string(&request_log).unwrap();
    assert_eq!(
        request_lines.lines().count(),
        headers.len() + 1,
        "{request_lines}"
    );
    let line: Value = serde_json::from_str(request_lines.lines().next().unwrap()).unwrap();
    assert_eq!(line["end_user"], "my_sk-[redacted]");
    assert_eq!(line["request"]["metadata"]["x-api-key"], "[redacted]");
    for (name, text) in [("process log", &logged), ("request log", &request_lines)] {
        for secret in [
            key.as_str(),
            suffix.as_str(),
            regenerated.as_str(),
            MASTER,
            UPSTREAM_KEY,
            PLAIN_SECRET,
            wrong,
        ] {
            assert!(!text.contains(secret), "{name} holds {secret}:\n{text}");
        }
    }
    place.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_and_user_are_bounded_with_a_400_naming_the_field() {
    let up = FakeOpenAi::start().await;
    let place = Place::new(Backend::Sqlite);
    let p = start(
        &place,
        &up.base_url(),
        "  max_request_metadata_size_kb: 1\n  max_request_user_length: 10\n",
    )
    .await;
    let chat = |extra: Value| {
        let mut b = json!({"model": "echo", "messages": [{"role": "user", "content": "hi"}]});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    let a = post(
        &p,
        "/v1/chat/completions",
        MASTER,
        chat(json!({"metadata": {"blob": "x".repeat(2000)}})),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    let (_, message) = error_of(&a);
    assert_eq!(a.body["error"]["param"], "metadata", "{}", a.body);
    assert!(
        message.contains("max_request_metadata_size_kb"),
        "{message}"
    );
    let a = post(
        &p,
        "/v1/chat/completions",
        MASTER,
        chat(json!({"user": "u".repeat(11)})),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.body["error"]["param"], "user", "{}", a.body);
    // Through the Anthropic front door too (its metadata.user_id becomes `user`).
    let a = send(
        client()
            .post(p.url("/v1/messages"))
            .header("x-api-key", MASTER)
            .json(
                &json!({"model": "echo", "max_tokens": 5, "metadata": {"user_id": "u".repeat(11)},
                          "messages": [{"role": "user", "content": "hi"}]}),
            ),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.body.to_string().contains("user"), "{}", a.body);
    // At the limits: answered.
    up.push(Reply::text("fine"));
    let a = post(
        &p,
        "/v1/chat/completions",
        MASTER,
        chat(json!({"user": "u".repeat(10), "metadata": {"blob": "x".repeat(900)}})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    // Nothing refused was recorded as a call; the answered one was.
    let rows = spend_rows(&p, "", 1).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["end_user"], "uuuuuuuuuu");
    p.stop().await;
    place.cleanup().await;
}
