//! OpenAI requests translated for Bedrock Converse, signed with SigV4, sent over real HTTP to
//! `FakeBedrock`, and the answers (JSON, or binary event stream) translated back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use idlehands_testkit::{FakeBedrock, Recorded, Reply};
use idlehands_translate::bedrock::{
    self, AwsCredentials, ConverseStreamToOpenAi, EventStreamDecoder, SigningRequest, amz_date,
    converse_url, from_converse_response, sign, to_converse_request,
};
use serde_json::{Value, json};

const CREATED: u64 = 1_700_000_000;
const MODEL_ID: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
const REGION: &str = "us-east-1";
/// 2024-01-02T03:04:05Z, fixed so signatures and snapshots are stable.
const NOW: i64 = 1_704_164_645;

fn creds() -> AwsCredentials {
    AwsCredentials::from_lookup(|k| match k {
        "AWS_ACCESS_KEY_ID" => Some("AKIDEXAMPLE".into()),
        "AWS_SECRET_ACCESS_KEY" => Some("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into()),
        "AWS_SESSION_TOKEN" => Some("session-token".into()),
        _ => None,
    })
    .unwrap()
}

fn chat_request() -> Value {
    json!({
        "model": "bedrock-claude",
        "messages": [
            {"role": "system", "content": "You are a weather bot."},
            {"role": "user", "content": "Weather in Oslo?"}
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "max_tokens": 500,
        "temperature": 0.2
    })
}

/// Translate, sign and send; returns the response for the caller to read.
async fn send(fake: &FakeBedrock, stream: bool, signed: bool) -> reqwest::Response {
    let body = to_converse_request(&chat_request(), MODEL_ID)
        .unwrap()
        .to_string();
    let url = converse_url(Some(&fake.base_url()), REGION, MODEL_ID, stream);
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    if signed {
        let date = amz_date(NOW);
        let req = SigningRequest {
            method: "POST",
            url: &url,
            headers: &headers,
            body: body.as_bytes(),
            region: REGION,
            service: bedrock::SERVICE,
            amz_date: &date,
        };
        headers.extend(sign(&req, &creds()).unwrap());
    }
    let mut req = reqwest::Client::new()
        .post(&url)
        .timeout(std::time::Duration::from_secs(30))
        .body(body);
    for (k, v) in &headers {
        req = req.header(k, v);
    }
    req.send().await.unwrap()
}

/// Recompute the signature from what the server actually received (path, Host, body, date)
/// and compare it with the `authorization` it was sent.
fn assert_signature_verifies(rec: &Recorded) {
    let url = format!("http://{}{}", rec.header("host").unwrap(), rec.path);
    let body = rec.body.to_string();
    let headers = vec![(
        "content-type".to_string(),
        rec.header("content-type").unwrap().to_string(),
    )];
    let req = SigningRequest {
        method: "POST",
        url: &url,
        headers: &headers,
        body: body.as_bytes(),
        region: REGION,
        service: bedrock::SERVICE,
        amz_date: rec.header("x-amz-date").unwrap(),
    };
    let expected = sign(&req, &creds()).unwrap();
    let auth = expected.iter().find(|(k, _)| k == "authorization").unwrap();
    assert_eq!(rec.header("authorization"), Some(auth.1.as_str()));
    assert_eq!(rec.header("x-amz-security-token"), Some("session-token"));
}

#[tokio::test]
async fn plain_converse_round_trip_with_valid_signature() {
    let fake = FakeBedrock::start().await;
    let mut reply = Reply::tool_call("tooluse_1", "get_weather", json!({"city": "Oslo"}))
        .with_reasoning("Need the forecast.")
        .with_usage(140, 18);
    reply.usage.cache_read_input_tokens = Some(100);
    fake.push(reply);
    let resp = send(&fake, false, true).await;
    assert_eq!(resp.status().as_u16(), 200);
    let request_id = resp.headers()["x-amzn-requestid"]
        .to_str()
        .unwrap()
        .to_string();
    let upstream: Value = resp.json().await.unwrap();
    let rec = fake.last_request().unwrap();
    assert_eq!(
        rec.path,
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    );
    assert_signature_verifies(&rec);
    let translated =
        from_converse_response(&upstream, "bedrock-claude", &request_id, CREATED).unwrap();
    insta::assert_json_snapshot!(json!({
        "request": rec.body,
        "upstream_response": upstream,
        "translated": translated,
    }));
}

#[tokio::test]
async fn converse_stream_binary_frames_to_chunks() {
    let fake = FakeBedrock::start().await;
    fake.push(
        Reply::text("Snow, -3C.")
            .with_chunk_chars(4)
            .with_tool_call("tooluse_2", "get_weather", json!({"city": "Bergen"}))
            .with_usage(60, 20),
    );
    let mut resp = send(&fake, true, true).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "application/vnd.amazon.eventstream"
    );
    assert_signature_verifies(&fake.last_request().unwrap());
    let mut decoder = EventStreamDecoder::new();
    let mut machine = ConverseStreamToOpenAi::new("bedrock-claude", "req-stream", CREATED);
    let mut chunks = Vec::new();
    while let Some(bytes) = resp.chunk().await.unwrap() {
        for msg in decoder.push(&bytes).unwrap() {
            chunks.extend(machine.push_message(&msg).unwrap());
        }
    }
    assert_eq!(decoder.pending(), 0);
    assert_eq!(machine.finish_reason(), Some("tool_calls"));
    chunks.push(machine.finish().unwrap().unwrap());
    assert_eq!(machine.usage().unwrap()["total_tokens"], 80);
    insta::assert_json_snapshot!(chunks);
}

#[tokio::test]
async fn errors_map_by_exception_name() {
    let fake = FakeBedrock::start().await;
    let resp = send(&fake, false, false).await;
    assert_eq!(resp.status().as_u16(), 403);

    fake.push(Reply::rate_limited(2));
    let resp = send(&fake, false, true).await;
    let status = resp.status().as_u16();
    let kind = resp.headers()["x-amzn-errortype"]
        .to_str()
        .unwrap()
        .to_string();
    let mapped = bedrock::map_error(status, Some(&kind), &resp.text().await.unwrap());
    assert_eq!(
        (mapped.status, mapped.message.as_str()),
        (429, "BedrockException - Rate limit reached")
    );

    fake.push(Reply::fault(idlehands_testkit::Fault::Raw {
        status: 200,
        body: r#"{"Output":{"__type":"com.amazon.coral.service#UnknownOperationException"}}"#
            .into(),
    }));
    let upstream: Value = send(&fake, false, true).await.json().await.unwrap();
    let err = from_converse_response(&upstream, "m", "id", CREATED).unwrap_err();
    assert_eq!(err.status(), 502);
    assert!(err.to_string().contains("UnknownOperationException"));
}
