//! Every fake is as strict as the servers clients meet: an absolute-form request target is
//! answered 404 (as cpp-httplib under llama-server does), a POST not declared JSON is refused
//! by the fakes of APIs that refuse it, and the request lines are kept as received. Spoken
//! over raw TCP, since an HTTP client would choose the request form itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;

use idlehands_testkit::replay::{Capture, FakeLlamaServer};
use idlehands_testkit::{FakeAnthropic, FakeBedrock, FakeGemini, FakeOpenAi};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

/// One request on its own connection; `target` goes into the request line verbatim.
async fn send(addr: SocketAddr, target: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("POST {target} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut body = raw[split + 4..].to_vec();
    if head.to_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Answer { status, head, body }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&raw[..eol]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw = &raw[eol + 2 + size + 2..];
    }
}

fn json(a: &Answer) -> Value {
    serde_json::from_slice(&a.body).unwrap()
}

/// The three probes every strict fake must tell apart; returns the answers in order.
async fn probe(
    addr: SocketAddr,
    path: &str,
    auth: &[(&str, &str)],
    body: &str,
) -> (Answer, Answer, Answer) {
    let json_type = [auth, &[("content-type", "application/json")]].concat();
    let absolute = send(addr, &format!("http://{addr}{path}"), &json_type, body).await;
    let text_type = [auth, &[("content-type", "text/plain")]].concat();
    let wrong_type = send(addr, path, &text_type, body).await;
    let good = send(addr, path, &json_type, body).await;
    (absolute, wrong_type, good)
}

fn assert_absolute_form_refused(a: &Answer, addr: SocketAddr, path: &str) {
    assert_eq!(a.status, 404, "{}", a.head);
    let text = String::from_utf8_lossy(&a.body);
    assert!(
        text.contains(&format!("POST http://{addr}{path} HTTP/1.1")),
        "{text}"
    );
}

const CHAT: &str = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;

#[tokio::test]
async fn openai_fake_refuses_absolute_form_and_non_json_posts() {
    let up = FakeOpenAi::start().await;
    let addr = up.addr();
    let path = "/v1/chat/completions";
    let (absolute, wrong_type, good) = probe(addr, path, &[], CHAT).await;
    assert_absolute_form_refused(&absolute, addr, path);
    assert_eq!(wrong_type.status, 415);
    assert_eq!(json(&wrong_type)["error"]["type"], "invalid_request_error");
    assert!(
        json(&wrong_type)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("text/plain")
    );
    assert_eq!(good.status, 200);
    assert_eq!(json(&good)["object"], "chat.completion");
    assert_eq!(
        up.requests().len(),
        1,
        "refused requests never reach the handler"
    );
    assert_eq!(
        up.request_lines(),
        [
            format!("POST http://{addr}{path} HTTP/1.1"),
            format!("POST {path} HTTP/1.1"),
            format!("POST {path} HTTP/1.1"),
        ]
    );
}

#[tokio::test]
async fn anthropic_fake_refuses_absolute_form_and_non_json_posts() {
    let up = FakeAnthropic::start().await;
    let addr = up.addr();
    let path = "/v1/messages";
    let auth = [("x-api-key", "sk-ant"), ("anthropic-version", "2023-06-01")];
    let body = r#"{"model":"claude","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"#;
    let (absolute, wrong_type, good) = probe(addr, path, &auth, body).await;
    assert_absolute_form_refused(&absolute, addr, path);
    assert_eq!(wrong_type.status, 415);
    assert_eq!(json(&wrong_type)["type"], "error");
    assert_eq!(json(&wrong_type)["error"]["type"], "invalid_request_error");
    assert_eq!(good.status, 200, "{}", String::from_utf8_lossy(&good.body));
    assert_eq!(json(&good)["type"], "message");
    assert_eq!(up.requests().len(), 1);
    assert_eq!(up.request_lines().len(), 3);
}

#[tokio::test]
async fn gemini_fake_refuses_absolute_form_and_non_json_posts() {
    let up = FakeGemini::start().await;
    let addr = up.addr();
    let path = "/v1beta/models/gemini-2.5-flash:generateContent";
    let auth = [("x-goog-api-key", "g-key")];
    let body = r#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}"#;
    let (absolute, wrong_type, good) = probe(addr, path, &auth, body).await;
    assert_absolute_form_refused(&absolute, addr, path);
    assert_eq!(wrong_type.status, 415);
    assert_eq!(json(&wrong_type)["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(good.status, 200, "{}", String::from_utf8_lossy(&good.body));
    assert!(json(&good)["candidates"].is_array());
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn bedrock_fake_refuses_absolute_form_and_non_json_posts() {
    let up = FakeBedrock::start().await;
    let addr = up.addr();
    let path = "/model/anthropic.claude-3-5-sonnet-20240620-v1:0/converse";
    let auth = [
        (
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKID/20261205/us-east-1/bedrock/aws4_request, SignedHeaders=host, Signature=00",
        ),
        ("x-amz-date", "20261205T120000Z"),
    ];
    let body = r#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#;
    let (absolute, wrong_type, good) = probe(addr, path, &auth, body).await;
    assert_absolute_form_refused(&absolute, addr, path);
    assert_eq!(wrong_type.status, 415);
    assert!(
        wrong_type
            .head
            .to_lowercase()
            .contains("x-amzn-errortype: validationexception")
    );
    assert_eq!(good.status, 200, "{}", String::from_utf8_lossy(&good.body));
    assert!(json(&good)["output"]["message"].is_object());
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn llama_server_fake_refuses_absolute_form_but_not_a_content_type() {
    let up = FakeLlamaServer::start().await;
    let addr = up.addr();
    let path = "/v1/chat/completions";
    let (absolute, untyped, good) = probe(addr, path, &[], CHAT).await;
    assert_absolute_form_refused(&absolute, addr, path);
    // llama-server parses the body whatever its declared type.
    assert_eq!(untyped.status, 200);
    assert_eq!(untyped.body, Capture::Plain.body());
    assert_eq!(good.body, Capture::Plain.body());
    assert_eq!(up.requests().len(), 2);
    assert_eq!(
        up.request_lines(),
        [
            format!("POST http://{addr}{path} HTTP/1.1"),
            format!("POST {path} HTTP/1.1"),
            format!("POST {path} HTTP/1.1"),
        ]
    );
}

#[tokio::test]
async fn llama_server_fake_replays_each_capture_byte_for_byte() {
    let up = FakeLlamaServer::start().await;
    let addr = up.addr();
    let path = "/v1/chat/completions";
    let ct = [("content-type", "application/json")];
    let stream = send(addr, path, &ct, r#"{"messages":[],"stream":true}"#).await;
    assert_eq!(stream.status, 200);
    assert!(stream.head.contains("text/event-stream"));
    assert_eq!(stream.body, Capture::StreamNoUsage.body());
    let with_usage = r#"{"messages":[],"stream":true,"stream_options":{"include_usage":true}}"#;
    let usage = send(addr, path, &ct, with_usage).await;
    assert_eq!(usage.body, Capture::StreamUsage.body());
    up.push(Capture::OverflowError);
    let overflow = send(addr, path, &ct, with_usage).await;
    assert_eq!(overflow.status, 400);
    assert_eq!(overflow.body, Capture::OverflowError.body());
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        format!("GET /v1/models HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.unwrap();
    assert!(raw.ends_with(Capture::Models.body()));
}

#[tokio::test]
async fn a_forward_proxy_fake_takes_only_absolute_form() {
    let proxy = FakeOpenAi::start_forward_proxy().await;
    let addr = proxy.addr();
    let ct = [("content-type", "application/json")];
    let absolute = send(
        addr,
        "http://upstream.invalid/v1/chat/completions",
        &ct,
        CHAT,
    )
    .await;
    assert_eq!(absolute.status, 200);
    assert_eq!(json(&absolute)["object"], "chat.completion");
    let origin = send(addr, "/v1/chat/completions", &ct, CHAT).await;
    assert_eq!(origin.status, 400);
    assert!(String::from_utf8_lossy(&origin.body).contains("absolute-form"));
    assert_eq!(proxy.requests().len(), 1);
}

/// The benchmark's upstream keeps nothing, yet still refuses absolute-form.
#[tokio::test]
async fn without_recording_the_checks_still_hold() {
    let up = FakeOpenAi::start().await;
    up.set_recording(false);
    let addr = up.addr();
    let path = "/v1/chat/completions";
    let (absolute, wrong_type, good) = probe(addr, path, &[], CHAT).await;
    assert_absolute_form_refused(&absolute, addr, path);
    assert_eq!(wrong_type.status, 415);
    assert_eq!(good.status, 200);
    assert!(up.request_lines().is_empty());
    assert_eq!(up.served(), 1);
}

const JSON: (&str, &str) = ("content-type", "application/json");

#[tokio::test]
async fn openai_fake_demands_its_key_once_one_is_required() {
    let up = FakeOpenAi::start().await;
    let path = "/v1/chat/completions";
    // As a local server started without --api-key: no key needed.
    assert_eq!(send(up.addr(), path, &[JSON], CHAT).await.status, 200);
    up.require_key("sk-right");
    let none = send(up.addr(), path, &[JSON], CHAT).await;
    assert_eq!(none.status, 401);
    assert_eq!(json(&none)["error"]["code"], "invalid_api_key");
    assert!(
        json(&none)["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("You didn't provide an API key")
    );
    let wrong = send(
        up.addr(),
        path,
        &[JSON, ("authorization", "Bearer sk-wrong")],
        CHAT,
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(
        json(&wrong)["error"]["message"],
        "Incorrect API key provided."
    );
    let right = send(
        up.addr(),
        path,
        &[JSON, ("authorization", "Bearer sk-right")],
        CHAT,
    )
    .await;
    assert_eq!(
        right.status,
        200,
        "{}",
        String::from_utf8_lossy(&right.body)
    );
    // Refused calls keep their request line; only answered ones reach the handlers' record.
    assert_eq!(up.request_lines().len(), 4);
    assert_eq!(up.requests().len(), 2);
}

#[tokio::test]
async fn azure_paths_demand_an_api_version_and_a_key() {
    let up = FakeOpenAi::start().await;
    let path = "/openai/deployments/prod/chat/completions";
    let key = ("api-key", "azure-key");
    let unversioned = send(up.addr(), path, &[JSON, key], CHAT).await;
    assert_eq!(unversioned.status, 404);
    assert_eq!(json(&unversioned)["error"]["message"], "Resource not found");
    let versioned = format!("{path}?api-version=2024-10-21");
    let keyless = send(up.addr(), &versioned, &[JSON], CHAT).await;
    assert_eq!(keyless.status, 401);
    assert_eq!(json(&keyless)["error"]["code"], "401");
    let good = send(up.addr(), &versioned, &[JSON, key], CHAT).await;
    assert_eq!(good.status, 200, "{}", String::from_utf8_lossy(&good.body));
    let entra = ("authorization", "Bearer entra-token");
    assert_eq!(
        send(up.addr(), &versioned, &[JSON, entra], CHAT)
            .await
            .status,
        200
    );
    // Azure has no /v1/models of its own keyed by api-key; an unknown path is 404.
    let unknown = send(
        up.addr(),
        "/openai/deployments/prod/nothing",
        &[JSON, key],
        CHAT,
    )
    .await;
    assert_eq!(unknown.status, 404);
}

/// The SSE layouts real servers use reach the client as scripted, and carry the same events.
#[tokio::test]
async fn streams_go_out_in_the_scripted_sse_layout() {
    use idlehands_testkit::frame::payloads;
    use idlehands_testkit::{Framing, Reply};
    let up = FakeOpenAi::start().await;
    let body = r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#;
    let mut seen = Vec::new();
    for framing in [
        Framing::Lf,
        Framing::Crlf,
        Framing::Split,
        Framing::KeepAlive,
    ] {
        up.push(
            Reply::text("split me please")
                .with_id("chatcmpl-s")
                .with_framing(framing),
        );
        let a = send(up.addr(), "/v1/chat/completions", &[JSON], body).await;
        assert_eq!(a.status, 200);
        let text = String::from_utf8_lossy(&a.body).into_owned();
        match framing {
            Framing::Crlf => assert!(text.contains("\r\n\r\n") && !text.contains("}\n\n")),
            Framing::KeepAlive => assert!(text.starts_with(": keep-alive\n\n"), "{text}"),
            _ => assert!(!text.contains('\r') && !text.contains(": keep-alive")),
        }
        seen.push(payloads(&a.body));
    }
    assert!(seen[0].len() > 3, "{:?}", seen[0]);
    assert_eq!(seen[0].last().map(String::as_str), Some("[DONE]"));
    assert!(seen[0].iter().any(|p| p.contains("\"usage\"")));
    for other in &seen[1..] {
        assert_eq!(other, &seen[0]);
    }
}

#[tokio::test]
async fn a_fixed_id_repeats_on_every_answer_as_ollama_and_llama_cpp_do() {
    let up = FakeOpenAi::start().await;
    let first = json(&send(up.addr(), "/v1/chat/completions", &[JSON], CHAT).await);
    let second = json(&send(up.addr(), "/v1/chat/completions", &[JSON], CHAT).await);
    assert_ne!(first["id"], second["id"], "OpenAI's ids are unique");
    up.set_fixed_id(Some("chatcmpl-7"));
    for _ in 0..2 {
        let a = json(&send(up.addr(), "/v1/chat/completions", &[JSON], CHAT).await);
        assert_eq!(a["id"], "chatcmpl-7");
    }
}

/// What a fake records is what came over the wire: the request line, every header value
/// (repeated ones too) and the body bytes, which here differ from the parsed body written out
/// again (spacing, key order, escapes, number spelling), so a test can tell a body relayed
/// untouched from one rebuilt.
#[tokio::test]
async fn every_fake_records_the_request_as_sent() {
    const BODY: &str = "{ \"messages\": [{\"role\": \"user\", \"content\": \"caf\\u00e9\"}],\n  \"model\": \"m\", \"temperature\": 1.50, \"max_tokens\": 1e2 }";
    let openai = FakeOpenAi::start().await;
    let anthropic = FakeAnthropic::start().await;
    let gemini = FakeGemini::start().await;
    let bedrock = FakeBedrock::start().await;
    let targets = [
        (openai.addr(), "/v1/chat/completions?trace=1"),
        (anthropic.addr(), "/v1/messages"),
        (gemini.addr(), "/v1beta/models/g:generateContent?key=k"),
        (bedrock.addr(), "/model/m/converse"),
    ];
    let headers = [
        ("content-type", "application/json"),
        ("x-tag", "first"),
        ("x-tag", "second"),
    ];
    for (addr, target) in targets {
        send(addr, target, &headers, BODY).await;
    }
    let recorded = [
        openai.last_request(),
        anthropic.last_request(),
        gemini.last_request(),
        bedrock.last_request(),
    ];
    for ((_, target), rec) in targets.iter().zip(recorded) {
        let rec = rec.unwrap_or_else(|| panic!("{target}: nothing recorded"));
        assert_eq!(rec.request_line, format!("POST {target} HTTP/1.1"));
        assert_eq!(rec.raw_body, BODY.as_bytes(), "{target}");
        assert_eq!(
            rec.header_values("x-tag"),
            [b"first".as_slice(), b"second".as_slice()],
            "{target}"
        );
        assert_eq!(rec.header("x-tag"), Some("second"), "{target}");
        assert_eq!(rec.body["messages"][0]["content"], "café", "{target}");
        assert_ne!(
            serde_json::to_vec(&rec.body).unwrap(),
            BODY.as_bytes(),
            "the parsed body written out again is not what was sent"
        );
    }
}
