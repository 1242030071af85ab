#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The gateway against the HTTP stacks local model servers are built on, each replaying the
//! recorded llama-server answers (crates/testkit/fixtures/llama-server): cpp-httplib (the
//! stack of llama.cpp's llama-server; a small server compiled here with g++ against Debian's
//! libcpp-httplib-dev), an ASGI app under uvicorn's h11 backend, and Python's http.server.
//! All three take the raw request target as the path, so an absolute-form target (meant for
//! proxies) gets 404: every call here must go out in origin-form.
//!
//! `openai/`, `hosted_vllm/`, `ollama/` and `ollama_chat/` deployments are called plain and
//! streamed. The two Ollama prefixes go to Ollama's OpenAI-compatible `/v1` API, which the
//! gateway appends to their `api_base`.
//!
//! Token counts before a call come from the same servers: llama.cpp's `/apply-template` and
//! `/tokenize` on cpp-httplib, vLLM's `/tokenize` on uvicorn.
//!
//! Missing prerequisites fail the tests (scripts/test.sh installs them): g++, pkg-config,
//! `libcpp-httplib-dev` and `nlohmann-json3-dev` (llama-server's JSON library); python3 with
//! `uvicorn` and `h11`. The C++ server is built once per
//! source and flags, under `$XDG_CACHE_HOME/idlehands` (else `~/.cache/idlehands`).

mod common;

use std::path::{Path, PathBuf};

use common::{KEY, Running, client, start};
use idlehands_proxy::CallStatus;
use idlehands_testkit::child_server::ChildServer;
use idlehands_testkit::replay::{Capture, MODEL};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

fn sources() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/real_stacks")
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testkit/fixtures/llama-server")
}

/// Runs a prerequisite check; its failure names what is missing and where it comes from.
fn need(program: &str, args: &[&str], missing: &str) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} cannot run ({e}): {missing}"));
    assert!(
        out.status.success(),
        "`{program} {}` failed: {missing}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The cpp-httplib server, compiled on first use and kept under the cache keyed by its source,
/// flags and compiler.
fn cpp_server() -> PathBuf {
    const INSTALL: &str = "install Debian's g++, pkg-config, libcpp-httplib-dev and nlohmann-json3-dev (scripts/test.sh does)";
    let flags = need(
        "pkg-config",
        &["--cflags", "--libs", "cpp-httplib", "nlohmann_json"],
        INSTALL,
    );
    let compiler = need("g++", &["--version"], INSTALL);
    let source = sources().join("llama_like_server.cpp");
    let mut hash = Sha256::new();
    hash.update(std::fs::read(&source).unwrap());
    hash.update(flags.as_bytes());
    hash.update(compiler.as_bytes());
    let key = hex::encode(hash.finalize());
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME names the build cache");
    let dir = cache.join("idlehands/real_stacks").join(&key[..16]);
    let binary = dir.join("llama_like_server");
    if binary.exists() {
        return binary;
    }
    std::fs::create_dir_all(&dir).unwrap();
    // Test binaries run in parallel: each builds its own file and the rename is atomic.
    let partial = dir.join(format!("llama_like_server.{}.partial", std::process::id()));
    let mut args = vec![
        "-std=c++17".to_string(),
        "-O1".to_string(),
        source.display().to_string(),
        "-o".to_string(),
        partial.display().to_string(),
    ];
    args.extend(flags.split_whitespace().map(str::to_string));
    args.push("-lpthread".to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    need("g++", &args, INSTALL);
    std::fs::rename(&partial, &binary).unwrap();
    binary
}

#[derive(Debug, Clone, Copy)]
enum Stack {
    CppHttplib,
    UvicornH11,
    PythonHttpServer,
}

/// A running replay server; killed when dropped.
struct Server(ChildServer);

impl Server {
    async fn start(stack: Stack) -> Self {
        let mut cmd = match stack {
            Stack::CppHttplib => Command::new(cpp_server()),
            Stack::UvicornH11 | Stack::PythonHttpServer => {
                let mode = if matches!(stack, Stack::UvicornH11) {
                    need(
                        "python3",
                        &["-c", "import uvicorn, h11"],
                        "pip install uvicorn h11 (scripts/test.sh does)",
                    );
                    "uvicorn-h11"
                } else {
                    "http.server"
                };
                let mut c = Command::new("python3");
                c.arg(sources().join("llama_like_server.py")).arg(mode);
                c
            }
        };
        cmd.arg(fixtures());
        Server(ChildServer::start(cmd, &format!("{stack:?} server")).await)
    }

    fn origin(&self) -> String {
        self.0.origin()
    }

    /// The request lines its replay routes received, in order.
    async fn seen(&self) -> Vec<String> {
        let text = client()
            .get(format!("{}/_seen", self.origin()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines().map(str::to_string).collect()
    }

    /// The status a raw request with this request target gets.
    async fn status_for_target(&self, target: &str) -> u16 {
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.0.port))
            .await
            .unwrap();
        let body = r#"{"messages":[{"role":"user","content":"hi"}]}"#;
        let req = format!(
            "POST {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            self.0.port,
            body.len()
        );
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        tcp.read_to_end(&mut answer).await.unwrap();
        let head = String::from_utf8_lossy(&answer);
        head.split(' ').nth(1).unwrap().parse().unwrap()
    }
}

const PROVIDERS: [&str; 4] = ["openai", "hosted_vllm", "ollama", "ollama_chat"];
const ANSWER: &str = "Hello! How can I assist you today?";
/// 31 prompt tokens at $1/M and 10 completion tokens at $2/M, in nano-dollars.
const COST_NANOS: u64 = 31 * 1_000 + 10 * 2_000;

/// One deployment per provider prefix, all on `server`; the Ollama ones are given the bare
/// origin, as Ollama users write it.
fn config(server: &Server) -> String {
    let mut yaml = String::from("model_list:\n");
    for p in PROVIDERS {
        let base = if p.starts_with("ollama") {
            server.origin()
        } else {
            format!("{}/v1", server.origin())
        };
        yaml.push_str(&format!(
            "  - model_name: via-{p}
    litellm_params:
      model: {p}/{MODEL}
      api_base: {base}
      timeout: 30
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000002
"
        ));
    }
    yaml.push_str(&format!("general_settings:\n  master_key: {KEY}\n"));
    yaml
}

async fn chat(gw: &Running, body: &Value) -> (u16, String) {
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// The `data:` payloads of an SSE body, `[DONE]` included.
fn events(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|f| f.trim().strip_prefix("data: "))
        .map(|d| {
            if d == "[DONE]" {
                Value::String(d.to_string())
            } else {
                serde_json::from_str(d).unwrap()
            }
        })
        .collect()
}

/// Plain, streamed and streamed-with-usage chats through every provider prefix, then a
/// context overflow; checks each answer, its spend row and the request lines the server saw.
async fn replays_through_the_gateway(stack: Stack) {
    let server = Server::start(stack).await;
    // The premise: this stack refuses the form the gateway used to send.
    let path = "/v1/chat/completions";
    let absolute = format!("{}{path}", server.origin());
    assert_eq!(server.status_for_target(&absolute).await, 404, "{stack:?}");
    assert_eq!(server.status_for_target(path).await, 200, "{stack:?}");
    let before = server.seen().await.len();

    let gw = start(&config(&server)).await;
    let mut calls = 0;
    for p in PROVIDERS {
        let group = format!("via-{p}");
        let messages = json!([{"role": "user", "content": "Say hi"}]);

        let (status, text) = chat(&gw, &json!({"model": group, "messages": messages})).await;
        assert_eq!(status, 200, "{stack:?} {group}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], ANSWER, "{group}");
        assert_eq!(v["usage"]["prompt_tokens"], 31, "{group}");
        assert_eq!(v["usage"]["completion_tokens"], 10, "{group}");

        for client_usage in [false, true] {
            let mut body = json!({"model": group, "messages": messages, "stream": true});
            if client_usage {
                body["stream_options"] = json!({"include_usage": true});
            }
            let (status, text) = chat(&gw, &body).await;
            assert_eq!(status, 200, "{stack:?} {group}: {text}");
            let events = events(&text);
            assert_eq!(events.last(), Some(&json!("[DONE]")), "{group}: {text}");
            let content: String = events
                .iter()
                .filter_map(|e| e.pointer("/choices/0/delta/content")?.as_str())
                .collect();
            assert_eq!(content, ANSWER, "{stack:?} {group}");
            let usage: Vec<&Value> = events.iter().filter_map(|e| e.get("usage")).collect();
            if client_usage {
                assert_eq!(usage.len(), 1, "{group}: {text}");
                assert_eq!(usage[0]["prompt_tokens"], 31);
                assert_eq!(usage[0]["completion_tokens"], 10);
            } else {
                assert!(
                    usage.iter().all(|u| u.is_null()),
                    "{group}: usage sent unasked: {text}"
                );
            }
        }
        calls += 3;
    }

    // llama-server's context overflow comes back as the client's error, with its words.
    let overflow =
        json!({"model": "via-openai", "messages": [{"role": "user", "content": "OVERFLOW"}]});
    let (status, text) = chat(&gw, &overflow).await;
    assert_eq!(status, 400, "{stack:?}: {text}");
    let err: Value = serde_json::from_str(&text).unwrap();
    let message = err["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("exceeds the available context size"),
        "{message}"
    );
    calls += 1;

    let records = gw.records(calls).await;
    assert_eq!(records.len(), calls, "one spend row per call");
    for p in PROVIDERS {
        let rows: Vec<_> = records
            .iter()
            .filter(|r| r.model_group == format!("via-{p}") && r.status == CallStatus::Success)
            .collect();
        assert_eq!(rows.len(), 3, "{stack:?} {p}");
        assert_eq!(rows.iter().filter(|r| r.stream).count(), 2, "{p}");
        for r in rows {
            assert_eq!(r.custom_llm_provider, p);
            assert_eq!(r.model, format!("{p}/{MODEL}"));
            assert_eq!((r.prompt_tokens, r.completion_tokens), (31, 10), "{p}");
            assert_eq!(r.cost_nanos, COST_NANOS, "{stack:?} {p}");
        }
    }
    let failed: Vec<_> = records
        .iter()
        .filter(|r| r.status == CallStatus::Failure)
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].http_status, 400);

    // Every call reached the server, in origin-form, at the OpenAI-compatible path (the
    // Ollama deployments' `/v1` added by the gateway).
    let seen = server.seen().await;
    assert_eq!(
        seen[before..],
        vec![format!("POST {path} HTTP/1.1"); calls][..],
        "{stack:?}"
    );
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn cpp_httplib_llama_server_stack() {
    replays_through_the_gateway(Stack::CppHttplib).await;
}

#[tokio::test]
async fn uvicorn_h11_stack() {
    replays_through_the_gateway(Stack::UvicornH11).await;
}

#[tokio::test]
async fn python_http_server_stack() {
    replays_through_the_gateway(Stack::PythonHttpServer).await;
}

async fn post_json(url: &str, key: Option<&str>, body: &Value) -> (u16, Value) {
    let mut req = client().post(url).json(body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, v)
}

/// What the server itself counts for `body` (`messages`, `tools` or a `prompt`), asked
/// directly the way its own clients ask.
async fn server_count(server: &Server, stack: Stack, body: &Value) -> u64 {
    let origin = server.origin();
    match stack {
        Stack::CppHttplib => {
            let content = match body.get("messages") {
                Some(m) => {
                    let (s, t) = post_json(
                        &format!("{origin}/apply-template"),
                        None,
                        &json!({"messages": m}),
                    )
                    .await;
                    assert_eq!(s, 200, "{t}");
                    t["prompt"].clone()
                }
                None => body["prompt"].clone(),
            };
            let (s, t) = post_json(
                &format!("{origin}/tokenize"),
                None,
                &json!({"content": content, "add_special": true}),
            )
            .await;
            assert_eq!(s, 200, "{t}");
            t["tokens"].as_array().unwrap().len() as u64
        }
        _ => {
            let mut ask = body.clone();
            if ask.get("messages").is_some() {
                ask["add_generation_prompt"] = json!(true);
            }
            let (s, t) = post_json(&format!("{origin}/tokenize"), None, &ask).await;
            assert_eq!(s, 200, "{t}");
            t["count"].as_u64().unwrap()
        }
    }
}

/// `/utils/token_counter` and `/v1/messages/count_tokens` count with the deployment's own
/// server (its template and tokenizer) when asked, estimate otherwise, and say which; a
/// server that cannot count (llama-server without `--jinja` given tools) or a provider with
/// no such API (Ollama) gets the estimate with the reason.
async fn counts_tokens_on_the_server(stack: Stack, tokenizer: &str) {
    let server = Server::start(stack).await;
    let gw = start(&config(&server)).await;
    let counter = gw.url("/utils/token_counter?call_endpoint=true");
    let messages = json!([
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Count the words of this question for me, please."}
    ]);
    let expected = server_count(&server, stack, &json!({"messages": messages})).await;
    let before = server.seen().await.len();
    for group in ["via-openai", "via-hosted_vllm"] {
        let (s, c) = post_json(
            &counter,
            Some(KEY),
            &json!({"model": group, "messages": messages}),
        )
        .await;
        assert_eq!(s, 200, "{c}");
        assert_eq!(c["total_tokens"], expected, "{stack:?} {group}: {c}");
        assert_eq!(c["count_source"], "provider", "{c}");
        assert_eq!(c["tokenizer_type"], tokenizer, "{c}");
        assert_eq!(c["request_model"], group);
        assert_eq!(c["model_used"], MODEL);
        assert!(c["original_response"].is_object(), "{c}");
        assert_eq!(c["original_response"].get("tokens"), None, "{c}");
        assert_eq!(c.get("estimate_reason"), None, "{c}");

        // Not asked for: the estimate, named as one.
        let (s, e) = post_json(
            &gw.url("/utils/token_counter"),
            Some(KEY),
            &json!({"model": group, "messages": messages}),
        )
        .await;
        assert_eq!(s, 200, "{e}");
        assert_eq!(e["count_source"], "local_estimate", "{e}");
        assert_eq!(e["tokenizer_type"], "character_estimate", "{e}");
        assert_ne!(
            e["total_tokens"], expected,
            "the estimate is not the server's count: {e}"
        );
        assert_eq!(e.get("estimate_reason"), None, "{e}");
    }
    // A prompt alone.
    let prompt = json!({"prompt": "one two three four five"});
    let want = server_count(&server, stack, &prompt).await;
    let (s, c) = post_json(
        &counter,
        Some(KEY),
        &json!({"model": "via-openai", "prompt": prompt["prompt"]}),
    )
    .await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(
        (c["total_tokens"].as_u64(), c["count_source"].as_str()),
        (Some(want), Some("provider")),
        "{c}"
    );

    // Anthropic's count_tokens counts the chat request /v1/messages would send.
    let (s, a) = post_json(
        &gw.url("/v1/messages/count_tokens"),
        Some(KEY),
        &json!({"model": "via-openai", "system": "You are terse.",
                "messages": [{"role": "user", "content": "Count the words of this question for me, please."}]}),
    )
    .await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(a["input_tokens"], expected, "{a}");
    // So does the Responses API's.
    let (s, r) = post_json(
        &gw.url("/v1/responses/input_tokens"),
        Some(KEY),
        &json!({"model": "via-openai", "instructions": "You are terse.",
                "input": "Count the words of this question for me, please."}),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        (r["input_tokens"].as_u64(), r["count_source"].as_str()),
        (Some(expected), Some("provider")),
        "{r}"
    );

    // Tools: vLLM renders them; llama-server without --jinja refuses them, so the estimate.
    let tools = json!([{"type": "function", "function": {"name": "lookup", "description": "Look a word up",
        "parameters": {"type": "object", "properties": {"word": {"type": "string"}}}}}]);
    let (s, t) = post_json(
        &counter,
        Some(KEY),
        &json!({"model": "via-openai", "messages": messages, "tools": tools}),
    )
    .await;
    assert_eq!(s, 200, "{t}");
    match stack {
        Stack::CppHttplib => {
            assert_eq!(t["count_source"], "local_estimate", "{t}");
            let why = t["estimate_reason"].as_str().unwrap();
            assert!(why.contains("tools param requires --jinja flag"), "{why}");
        }
        _ => {
            assert_eq!(t["count_source"], "provider", "{t}");
            assert!(t["total_tokens"].as_u64().unwrap() > expected, "{t}");
        }
    }

    // Ollama has no tokenizer API: the estimate, and no call to the server.
    let (s, o) = post_json(
        &counter,
        Some(KEY),
        &json!({"model": "via-ollama", "messages": messages}),
    )
    .await;
    assert_eq!(s, 200, "{o}");
    assert_eq!(o["count_source"], "local_estimate", "{o}");
    assert!(
        o["estimate_reason"]
            .as_str()
            .unwrap()
            .contains("ollama deployments have no token-counting API"),
        "{o}"
    );

    // No key, no count; nothing to count is LiteLLM's 400.
    let (s, _) = post_json(
        &counter,
        None,
        &json!({"model": "via-openai", "prompt": "x"}),
    )
    .await;
    assert_eq!(s, 401);
    let (s, n) = post_json(&counter, Some(KEY), &json!({"model": "via-openai"})).await;
    assert_eq!(s, 400, "{n}");
    assert_eq!(
        n["error"]["message"],
        "prompt or messages or contents must be provided"
    );

    // Every count reached the server at its root, in origin-form.
    let seen = server.seen().await;
    assert!(!seen[before..].is_empty());
    for line in &seen[before..] {
        assert!(
            line.starts_with("POST /tokenize HTTP/1.1")
                || line.starts_with("POST /apply-template HTTP/1.1"),
            "{stack:?}: {line}"
        );
    }
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn llama_cpp_counts_tokens() {
    counts_tokens_on_the_server(Stack::CppHttplib, "llama_cpp_api").await;
}

#[tokio::test]
async fn vllm_counts_tokens() {
    counts_tokens_on_the_server(Stack::UvicornH11, "vllm_api").await;
}

/// The C++ replay answers byte for byte what llama-server sent (the Python one shares the
/// fixtures and the testkit replay is checked in crates/testkit).
#[tokio::test]
async fn cpp_httplib_replay_is_byte_exact() {
    let server = Server::start(Stack::CppHttplib).await;
    let url = format!("{}/v1/chat/completions", server.origin());
    for (body, capture) in [
        (json!({"messages": []}), Capture::Plain),
        (
            json!({"messages": [], "stream": true}),
            Capture::StreamNoUsage,
        ),
        (
            json!({"messages": [], "stream": true, "stream_options": {"include_usage": true}}),
            Capture::StreamUsage,
        ),
    ] {
        let got = client()
            .post(&url)
            .json(&body)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&got[..], capture.body(), "{capture:?}");
    }
}
