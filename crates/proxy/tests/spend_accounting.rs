#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Exact accounting end to end, over real HTTP, on SQLite and Postgres: one spend-log row per
//! call answered or failed, keyed by the gateway's call id whatever ids the upstream hands out
//! (a fixed one, Ollama's `chatcmpl-<number below 1000>`), and a key's spend equal to the sum
//! of its rows; a stream that reached `[DONE]` is a success even when the client hangs up at
//! once; for an upstream that reports no usage, the estimate counts the whole prompt and the
//! streamed text, and the row says it is an estimate.

mod store_support;

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::join_all;
use idlehands_store::{SpendLogsQuery, SpendLogsResponse};
use idlehands_testkit::{FakeOpenAi, Fault, Reply};
use serde_json::{Value, json};
use store_support::{Backend, MASTER, Place, client, generate, spend_rows};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// A group `up` on an OpenAI-compatible upstream, priced 1e-6 USD per input token and 2e-6
/// per output token, added to the usual test config.
async fn start_with_upstream(place: &Place, base: &str) -> store_support::Proxy {
    let model = format!(
        "  - model_name: up
    litellm_params:
      model: openai/up-model
      api_base: {base}
      api_key: sk-upstream
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000002
      timeout: 20
"
    );
    let yaml = store_support::yaml("").replacen(
        "general_settings:",
        &format!("{model}router_settings:\n  num_retries: 0\ngeneral_settings:"),
        1,
    );
    let cfg = store_support::config(&yaml);
    let s = store_support::settings(&cfg, place);
    store_support::start_with(cfg, s).await
}

/// What the client saw of one call.
struct Call {
    key: String,
    call_id: String,
    /// The `id` of the answer (the first chunk's, for a stream); none for an error.
    response_id: Option<String>,
    ok: bool,
}

async fn one_call(p: &store_support::Proxy, key: String, stream: bool) -> Call {
    let body = json!({"model": "up", "stream": stream,
                      "messages": [{"role": "user", "content": "Say hi"}]});
    let resp = client()
        .post(p.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let ok = resp.status() == 200;
    let call_id = resp.headers()["x-litellm-call-id"]
        .to_str()
        .unwrap()
        .to_string();
    let text = resp.text().await.unwrap();
    let first: Option<Value> = if stream && ok {
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .find_map(|d| serde_json::from_str(d).ok())
    } else {
        serde_json::from_str(&text).ok()
    };
    let response_id = first
        .filter(|_| ok)
        .and_then(|v| v["id"].as_str().map(str::to_string));
    Call {
        key,
        call_id,
        response_id,
        ok,
    }
}

/// `n` calls at once, alternating keys, every third one streamed.
async fn calls(p: &store_support::Proxy, keys: &[&str], n: usize) -> Vec<Call> {
    join_all((0..n).map(|i| one_call(p, keys[i % keys.len()].to_string(), i % 3 == 0))).await
}

async fn rows_match_calls_whatever_ids_the_upstream_reuses(b: Backend) {
    let up = FakeOpenAi::start().await;
    let place = Place::new(b);
    let p = start_with_upstream(&place, &up.base_url()).await;
    let (key_a, gen_a) = generate(&p, json!({"key_alias": "acct-a"})).await;
    let (key_b, gen_b) = generate(&p, json!({"key_alias": "acct-b"})).await;
    let keys = [key_a.as_str(), key_b.as_str()];

    // An upstream that answers every call with the same id.
    up.set_default(Reply::text("same id every time").with_id("chatcmpl-fixed"));
    let mut made = calls(&p, &keys, 24).await;
    // Ollama's OpenAI layer: `chatcmpl-<random number below 1000>`; here drawn from five
    // numbers, so that they repeat within the run.
    for i in 0..24 {
        up.push(Reply::text("ollama says hi").with_id(format!("chatcmpl-{}", (i * 7) % 5)));
    }
    made.extend(calls(&p, &keys, 24).await);
    // Failed calls leave rows too (a 400 is not retried).
    for _ in 0..4 {
        up.push(Reply::error(400, "bad request"));
    }
    made.extend(calls(&p, &keys, 4).await);
    assert_eq!(made.iter().filter(|c| !c.ok).count(), 4);
    assert!(
        made.iter()
            .filter(|c| c.ok)
            .all(|c| c.response_id.is_some())
    );

    let rows = spend_rows(&p, "", made.len()).await;
    assert_eq!(rows.len(), made.len(), "one row per call");
    let mut row_ids: Vec<&str> = rows
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    let mut call_ids: Vec<&str> = made.iter().map(|c| c.call_id.as_str()).collect();
    row_ids.sort_unstable();
    call_ids.sort_unstable();
    assert_eq!(row_ids, call_ids, "rows are keyed by x-litellm-call-id");
    for c in &made {
        let row = rows
            .iter()
            .find(|r| r["request_id"] == c.call_id.as_str())
            .unwrap();
        assert_eq!(
            row["upstream_response_id"].as_str(),
            c.response_id.as_deref()
        );
        assert_eq!(row["status"], if c.ok { "success" } else { "failure" });
        let token = if c.key == key_a { &gen_a } else { &gen_b }["token_id"].clone();
        assert_eq!(row["api_key"], token);
    }
    // The upstream's id still finds its rows: all 24 that shared the fixed one.
    assert_eq!(
        spend_rows(&p, "?request_id=chatcmpl-fixed", 24).await.len(),
        24
    );
    p.stop().await;

    // Committed: each key's spend in the database is the sum of its rows, to the nano-dollar.
    let store = place.open_store().await;
    let SpendLogsResponse::Rows(stored) =
        store.spend_logs(&SpendLogsQuery::default()).await.unwrap()
    else {
        panic!("rows expected")
    };
    assert_eq!(stored.len(), made.len());
    for g in [&gen_a, &gen_b] {
        let token = g["token_id"].as_str().unwrap();
        let of_key: Vec<_> = stored.iter().filter(|r| r.api_key == token).collect();
        assert_eq!(of_key.len(), 26, "26 calls per key");
        let sum: i64 = of_key.iter().map(|r| r.spend).sum();
        assert!(sum > 0);
        let key = store.get_key(token).await.unwrap().unwrap();
        assert_eq!(key.spend, sum, "key spend == sum of its rows");
    }
    store.close().await;
    place.cleanup().await;
}

/// The other front doors: `/v1/messages` (plain and streamed) and `/v1/embeddings` rows are
/// keyed by the call id too, one per call, with the upstream's id kept where it has one.
async fn messages_and_embeddings_rows_are_keyed_by_the_call_id(b: Backend) {
    let up = FakeOpenAi::start().await;
    up.set_default(
        Reply::text("same id")
            .with_id("chatcmpl-fixed")
            .with_usage(7, 3),
    );
    let place = Place::new(b);
    let p = start_with_upstream(&place, &up.base_url()).await;
    let mut made = Vec::new();
    for (path, body) in [
        (
            "/v1/messages",
            json!({"model": "up", "max_tokens": 64,
                                "messages": [{"role": "user", "content": "hi"}]}),
        ),
        (
            "/v1/messages",
            json!({"model": "up", "max_tokens": 64,
                                "messages": [{"role": "user", "content": "hi"}]}),
        ),
        (
            "/v1/messages",
            json!({"model": "up", "max_tokens": 64, "stream": true,
                                "messages": [{"role": "user", "content": "hi"}]}),
        ),
        (
            "/v1/embeddings",
            json!({"model": "up", "input": ["a", "b"]}),
        ),
        ("/v1/embeddings", json!({"model": "up", "input": "c"})),
    ] {
        let resp = client()
            .post(p.url(path))
            .bearer_auth(MASTER)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let call_id = resp.headers()["x-litellm-call-id"]
            .to_str()
            .unwrap()
            .to_string();
        resp.text().await.unwrap();
        made.push((path, call_id));
    }
    let rows = spend_rows(&p, "", made.len()).await;
    assert_eq!(rows.len(), made.len());
    for (path, call_id) in &made {
        let row = rows
            .iter()
            .find(|r| r["request_id"] == call_id.as_str())
            .unwrap_or_else(|| panic!("no row for {path} call {call_id}"));
        assert_eq!(row["status"], "success");
        if *path == "/v1/messages" {
            assert_eq!(row["call_type"], "anthropic_messages");
            assert_eq!(row["upstream_response_id"], "chatcmpl-fixed");
            assert_eq!(
                (
                    row["prompt_tokens"].as_i64(),
                    row["completion_tokens"].as_i64()
                ),
                (Some(7), Some(3))
            );
        } else {
            assert_eq!(row["call_type"], "aembedding");
            assert!(row["upstream_response_id"].is_null());
            assert_eq!(row["prompt_tokens"], 7);
        }
        assert_eq!(row["usage_estimated"], false);
    }
    p.stop().await;
    place.cleanup().await;
}

/// Python's `json.dumps` spacing (`", "` and `": "`), as llama-cpp-python writes chunks.
fn py_dumps(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let fields: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), py_dumps(v)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(py_dumps).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// A stand-in for llama-cpp-python's server, which testkit's fakes do not imitate: chunks in
/// Python's JSON spacing, `\r\n` line ends, no usage whatever `stream_options` asks, then
/// `data: [DONE]`. With `hold`, the response stays open after `[DONE]` until released, as a
/// server that is slow to close its stream.
struct PyServer {
    base: String,
    release: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

const PY_TEXT: [&str; 3] = ["Hello", " there", ", friend!"];

impl PyServer {
    async fn start(hold: bool) -> PyServer {
        let release = Arc::new(Notify::new());
        let gate = release.clone();
        let app = axum::Router::new().route(
            "/v1/chat/completions",
            axum::routing::post(move |body: axum::Json<Value>| {
                let gate = gate.clone();
                async move { py_stream(&body, hold, gate) }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        PyServer {
            base: format!("http://{addr}/v1"),
            release,
            task,
        }
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn py_stream(req: &Value, hold: bool, gate: Arc<Notify>) -> Response {
    assert_eq!(req["stream"], true, "this stand-in streams only");
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-7d3e2c1a-0b5f-4c8e-9a6d-1f2e3d4c5b6a",
               "object": "chat.completion.chunk", "created": 1_796_468_131u64,
               "model": req["model"],
               "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
    };
    let mut chunks = vec![chunk(json!({"role": "assistant"}), Value::Null)];
    chunks.extend(
        PY_TEXT
            .iter()
            .map(|t| chunk(json!({"content": t}), Value::Null)),
    );
    chunks.push(chunk(json!({}), json!("stop")));
    let mut frames: Vec<Bytes> = chunks
        .iter()
        .map(|c| Bytes::from(format!("data: {}\r\n\r\n", py_dumps(c))))
        .collect();
    frames.push(Bytes::from_static(b"data: [DONE]\r\n\r\n"));
    let sent = futures_util::stream::iter(frames.into_iter().map(Ok::<_, Infallible>));
    let held = futures_util::stream::once(async move {
        if hold {
            gate.notified().await;
        }
    })
    .filter_map(|()| async { None::<Result<Bytes, Infallible>> });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(sent.chain(held)))
        .unwrap()
}

/// Agents hang up as soon as they read `[DONE]`; the call was answered in full all the same.
async fn a_stream_read_to_done_is_a_success_when_the_client_hangs_up(b: Backend) {
    let py = PyServer::start(true).await;
    let place = Place::new(b);
    let p = start_with_upstream(&place, &py.base).await;
    let resp = client()
        .post(p.url("/v1/chat/completions"))
        .bearer_auth(MASTER)
        .json(&json!({"model": "up", "stream": true,
                      "messages": [{"role": "user", "content": "Say hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("data: [DONE]") {
        seen.extend_from_slice(&body.next().await.unwrap().unwrap());
    }
    drop(body);
    // The upstream is still open, so only the hang-up can have ended the call.
    let rows = spend_rows(&p, "", 1).await;
    py.release.notify_one();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["status"], "success", "{:#}", rows[0]);
    assert!(rows[0]["metadata"].get("error_information").is_none());
    assert_eq!(rows[0]["completion_tokens"], 5, "20 characters streamed");
    p.stop().await;
    place.cleanup().await;
}

/// The documented rule of thumb (OpenAI: "one token generally corresponds to ~4 characters
/// of text"), applied to compact JSON.
fn tokens_by_rule(chars: usize) -> u64 {
    (chars as u64).div_ceil(4)
}

fn estimate_request(include_usage: bool) -> Value {
    let mut req = json!({
        "model": "up",
        "stream": true,
        "messages": [
            {"role": "system", "content": "You are a careful coding agent. Use the tools to read and change files; never guess file contents."},
            {"role": "user", "content": "Rename the function `parse` to `parse_config` in src/config.rs."}
        ],
        "tools": [
            {"type": "function", "function": {"name": "read", "description": "Read a file and return its text, with line numbers.",
             "parameters": {"type": "object", "properties": {"path": {"type": "string", "description": "Path relative to the workspace root"}}, "required": ["path"]}}},
            {"type": "function", "function": {"name": "edit", "description": "Replace one exact string in a file with another.",
             "parameters": {"type": "object", "properties": {"path": {"type": "string"}, "old": {"type": "string"}, "new": {"type": "string"}}, "required": ["path", "old", "new"]}}}
        ]
    });
    if include_usage {
        req["stream_options"] = json!({"include_usage": true});
    }
    req
}

async fn without_upstream_usage_the_estimate_counts_tools_and_spaced_chunks(b: Backend) {
    let py = PyServer::start(false).await;
    let place = Place::new(b);
    let p = start_with_upstream(&place, &py.base).await;
    let req = estimate_request(true);
    let chars = |v: &Value| serde_json::to_string(v).unwrap().chars().count();
    let prompt = tokens_by_rule(chars(&req["messages"]) + chars(&req["tools"]));
    // Pinned: what the rule gives for this request; a change in how prompts are counted shows
    // here first.
    assert_eq!(prompt, 186);
    assert!(
        prompt > 2 * tokens_by_rule(chars(&req["messages"])),
        "the tools weigh more than the messages"
    );
    let completion = tokens_by_rule(PY_TEXT.concat().chars().count());
    assert_eq!(completion, 5);

    // Asked for: usage comes as the final chunk, the estimate, since the upstream sent none.
    let resp = client()
        .post(p.url("/v1/chat/completions"))
        .bearer_auth(MASTER)
        .json(&req)
        .send()
        .await
        .unwrap();
    let asked_call = resp.headers()["x-litellm-call-id"]
        .to_str()
        .unwrap()
        .to_string();
    let text = resp.text().await.unwrap();
    let events: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(events.last(), Some(&"[DONE]"));
    let last: Value = serde_json::from_str(events[events.len() - 2]).unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(
        last["usage"],
        json!({"prompt_tokens": prompt, "completion_tokens": completion,
               "total_tokens": prompt + completion})
    );
    assert_eq!(last["id"], "chatcmpl-7d3e2c1a-0b5f-4c8e-9a6d-1f2e3d4c5b6a");

    // Not asked for: no usage anywhere.
    let text = client()
        .post(p.url("/v1/chat/completions"))
        .bearer_auth(MASTER)
        .json(&estimate_request(false))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains("usage"), "{text}");

    let rows = spend_rows(&p, "", 2).await;
    assert_eq!(rows.len(), 2);
    for row in &rows {
        assert_eq!(row["status"], "success");
        assert_eq!(row["usage_estimated"], true);
        assert_eq!(row["prompt_tokens"], prompt);
        assert_eq!(row["completion_tokens"], completion);
        let want = (prompt * 1_000 + completion * 2_000) as f64 / 1e9;
        assert!((row["spend"].as_f64().unwrap() - want).abs() < 1e-12);
    }
    assert!(rows.iter().any(|r| r["request_id"] == asked_call.as_str()));
    p.stop().await;
    place.cleanup().await;
}

/// Issue 19: a client that hangs up mid-stream, before the upstream's usage arrives, pays for
/// the text it was sent (estimated from the chunks), and that charge counts against its budget.
async fn a_client_that_hangs_up_mid_stream_pays_for_what_it_was_sent(b: Backend) {
    let up = FakeOpenAi::start().await;
    // 60 chunks of 40 characters, paced so that the hang-up lands long before the end (and
    // the upstream's usage chunk, which comes after the last one).
    up.push(
        Reply::text("0123456789abcdefghijklmnopqrstuvwxyzABCD".repeat(60))
            .with_chunk_chars(40)
            .with_chunk_delay(std::time::Duration::from_millis(100))
            .with_usage(10, 600),
    );
    let place = Place::new(b);
    let p = start_with_upstream(&place, &up.base_url()).await;
    // 56 chunks of output cost 560 * 2e-6 = 0.00112 USD, over this budget.
    let (key, _) = generate(&p, json!({"max_budget": 0.001})).await;
    let resp = client()
        .post(p.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "up", "stream": true,
                      "messages": [{"role": "user", "content": "Say hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut seen = String::new();
    let content_chunks = |s: &str| s.matches("\"content\":\"0123").count();
    while content_chunks(&seen) < 56 {
        let bytes = body.next().await.unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(&bytes));
    }
    drop(body);

    let rows = spend_rows(&p, "", 1).await;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row["status"], "failure", "{row:#}");
    let err = row["metadata"]["error_information"]["error_message"]
        .as_str()
        .unwrap();
    assert!(err.starts_with("client_disconnected"), "{err}");
    assert_eq!(row["usage_estimated"], true);
    // At least the 56 chunks read (10 tokens each by the estimate), less than the whole answer.
    let completion = row["completion_tokens"].as_u64().unwrap();
    assert!((560..600).contains(&completion), "{completion}");
    let spend = row["spend"].as_f64().unwrap();
    assert!(spend >= 0.00112, "{spend}");

    // The key's spend is the row's, and it is over budget: the next call is refused.
    let a = store_support::get(&p, &format!("/key/info?key={key}"), MASTER).await;
    assert!((a.body["info"]["spend"].as_f64().unwrap() - spend).abs() < 1e-12);
    let refused = client()
        .post(p.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "up", "messages": [{"role": "user", "content": "Say hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 422);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["type"], "budget_exceeded", "{body}");
    p.stop().await;
    place.cleanup().await;
}

/// Issue 19: a 200 whose body is not JSON is the upstream's failure: a 502 naming the provider
/// with an excerpt, and a `failure` row; through `/v1/messages` too.
async fn a_200_that_is_not_json_is_a_502_and_a_failure_row(b: Backend) {
    let up = FakeOpenAi::start().await;
    let junk = [
        "<html><body>502 Bad Gateway</body></html>",
        "{\"id\":\"chatcmpl-1\",\"choices\":[{\"message\":{\"content\":\"cut he",
    ];
    for body in junk {
        up.push(Reply::fault(Fault::Raw {
            status: 200,
            body: body.to_string(),
        }));
    }
    up.push(Reply::fault(Fault::Raw {
        status: 200,
        body: "not json at all".to_string(),
    }));
    let place = Place::new(b);
    let p = start_with_upstream(&place, &up.base_url()).await;
    for (i, body) in junk.iter().enumerate() {
        let a = store_support::post(
            &p,
            "/v1/chat/completions",
            MASTER,
            json!({"model": "up", "messages": [{"role": "user", "content": "Say hi"}]}),
        )
        .await;
        assert_eq!(a.status, 502, "{}", a.body);
        let msg = a.body["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains(
                "OpenAIException - the upstream answered 200 with a body that is not JSON"
            ),
            "{msg}"
        );
        assert!(msg.contains(&body[..12]), "call {i}: {msg}");
    }
    let a = store_support::post(
        &p,
        "/v1/messages",
        MASTER,
        json!({"model": "up", "max_tokens": 10, "messages": [{"role": "user", "content": "Say hi"}]}),
    )
    .await;
    assert_eq!(a.status, 502, "{}", a.body);
    assert_eq!(a.body["type"], "error", "{}", a.body);
    assert!(
        a.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not json at all"),
        "{}",
        a.body
    );
    let rows = spend_rows(&p, "", 3).await;
    assert_eq!(rows.len(), 3);
    for row in &rows {
        assert_eq!(row["status"], "failure", "{row:#}");
        assert_eq!(
            row["metadata"]["error_information"]["error_code"], "502",
            "{row:#}"
        );
    }
    p.stop().await;
    place.cleanup().await;
}

/// A stream chunk that is not JSON ends the stream there with an error event (as the OpenAI
/// SDK LiteLLM streams through fails on it) and a `failure` row; the chunks before it went out.
async fn a_stream_chunk_that_is_not_json_ends_the_stream_with_an_error(b: Backend) {
    let up = FakeOpenAi::start().await;
    let good = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"up-model","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}"#;
    up.push(Reply::fault(Fault::Raw {
        status: 200,
        body: format!(
            "data: {good}\n\ndata: <html>oops</html>\n\ndata: {good}\n\ndata: [DONE]\n\n"
        ),
    }));
    let place = Place::new(b);
    let p = start_with_upstream(&place, &up.base_url()).await;
    let text = client()
        .post(p.url("/v1/chat/completions"))
        .bearer_auth(MASTER)
        .json(&json!({"model": "up", "stream": true,
                      "messages": [{"role": "user", "content": "Say hi"}]}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let data: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(data.len(), 2, "{text}");
    assert!(data[0].contains("\"Hel\""), "{text}");
    let err: Value = serde_json::from_str(data[1]).unwrap();
    let msg = err["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("openai sent a stream chunk that is not JSON"),
        "{msg}"
    );
    assert!(msg.contains("<html>oops</html>"), "{msg}");
    assert!(!text.contains("[DONE]"), "{text}");
    let rows = spend_rows(&p, "", 1).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["status"], "failure", "{:#}", rows[0]);
    p.stop().await;
    place.cleanup().await;
}

both_backends!(
    rows_match_calls_whatever_ids_the_upstream_reuses,
    messages_and_embeddings_rows_are_keyed_by_the_call_id,
    a_stream_read_to_done_is_a_success_when_the_client_hangs_up,
    without_upstream_usage_the_estimate_counts_tools_and_spaced_chunks,
    a_client_that_hangs_up_mid_stream_pays_for_what_it_was_sent,
    a_200_that_is_not_json_is_a_502_and_a_failure_row,
    a_stream_chunk_that_is_not_json_ends_the_stream_with_an_error,
);

/// Readiness until the first answer that `ready` accepts, or the last one after 20 s.
async fn readiness_until(p: &store_support::Proxy, ready: impl Fn(u16) -> bool) -> (u16, Value) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let a = store_support::get(p, "/health/readiness", MASTER).await;
        let status = a.status.as_u16();
        if ready(status) || tokio::time::Instant::now() > deadline {
            return (status, a.body);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Issue 19: while spend rows cannot be written (a trigger refuses them, as a full disk
/// does), `/health/readiness` is a 503 that says why; once they are written it is ready again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readiness_is_unhealthy_while_spend_rows_cannot_be_written() {
    let place = Place::new(Backend::Sqlite);
    let p = store_support::start(&place, "").await;
    let (status, body) = readiness_until(&p, |s| s == 200).await;
    assert_eq!(status, 200, "{body}");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", place.url))
        .await
        .unwrap();
    sqlx::query(
        "CREATE TRIGGER full_disk BEFORE INSERT ON idlehands_spend_logs \
         BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END",
    )
    .execute(&pool)
    .await
    .unwrap();
    let a = store_support::post(
        &p,
        "/v1/chat/completions",
        MASTER,
        store_support::chat("mocky"),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);

    let (status, body) = readiness_until(&p, |s| s == 503).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unhealthy", "{body}");
    let reason = body["spend_logs"].as_str().unwrap();
    assert!(reason.contains("database or disk is full"), "{reason}");

    sqlx::query("DROP TRIGGER full_disk")
        .execute(&pool)
        .await
        .unwrap();
    let (status, body) = readiness_until(&p, |s| s == 200).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(spend_rows(&p, "", 1).await.len(), 1);
    pool.close().await;
    p.stop().await;
    place.cleanup().await;
}
