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
//! Missing prerequisites fail the tests (scripts/test.sh installs them): g++, pkg-config and
//! `libcpp-httplib-dev`; python3 with `uvicorn` and `h11`. The C++ server is built once per
//! source and flags, under `$XDG_CACHE_HOME/idlehands` (else `~/.cache/idlehands`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::{KEY, Running, client, start};
use idlehands_proxy::CallStatus;
use idlehands_testkit::replay::{Capture, MODEL};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

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
    const INSTALL: &str =
        "install Debian's g++, pkg-config and libcpp-httplib-dev (scripts/test.sh does)";
    let flags = need(
        "pkg-config",
        &["--cflags", "--libs", "cpp-httplib"],
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
struct Server {
    port: u16,
    _child: Child,
}

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
        let mut child = cmd
            .arg(fixtures())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{stack:?} server cannot start: {e}"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .await
            .unwrap();
        let port = line
            .strip_prefix("listening ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "{stack:?} server said {line:?} instead of its port (exit: {:?})",
                    child.try_wait()
                )
            });
        Server {
            port,
            _child: child,
        }
    }

    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
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
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .unwrap();
        let body = r#"{"messages":[{"role":"user","content":"hi"}]}"#;
        let req = format!(
            "POST {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            self.port,
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
