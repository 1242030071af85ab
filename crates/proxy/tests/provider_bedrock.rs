#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `bedrock/` deployments end to end: client -> gateway -> FakeBedrock (Converse, and
//! ConverseStream's binary event stream), snapshotting the translated request and the
//! OpenAI-format answer, plain and streamed; the SigV4 signature the fake received is
//! recomputed here from the recorded request.

mod common;
mod provider_common;

use common::{KEY, config, post_json, start_env};
use idlehands_testkit::{FakeBedrock, Recorded, Reply};
use idlehands_translate::bedrock::{AwsCredentials, SigningRequest, sign};
use provider_common::{cost_header_nanos, expected_nanos, redact, sse_data, upstream_request};
use serde_json::{Value, json};

const HEADERS: &[&str] = &[
    "authorization",
    "x-amz-date",
    "x-amz-security-token",
    "content-type",
    "accept",
];

const MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
const PRICE: (i64, i64, i64, i64) = (3000, 15000, 300, 3750);

fn yaml(base: &str) -> String {
    format!(
        "model_list:
  - model_name: br
    litellm_params:
      model: bedrock/{MODEL}
      api_base: {base}
      aws_region_name: us-west-2
      aws_access_key_id: AKIDCONFIGEXAMPLE
      aws_secret_access_key: config-secret-example
      input_cost_per_token: 0.000003
      output_cost_per_token: 0.000015
      cache_read_input_token_cost: 0.0000003
      cache_creation_input_token_cost: 0.00000375
  - model_name: br-env
    litellm_params:
      model: bedrock/converse/amazon.nova-pro-v1:0
      api_base: {base}
router_settings:
  num_retries: 0
general_settings:
  master_key: {KEY}
"
    )
}

async fn gateway(up: &FakeBedrock) -> common::Running {
    start_env(
        &yaml(&up.base_url()),
        &[
            ("AWS_REGION", "eu-central-1"),
            ("AWS_ACCESS_KEY_ID", "ASIAENVEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "env-secret-example"),
            ("AWS_SESSION_TOKEN", "env-session-token"),
        ],
    )
    .await
}

/// The signature the gateway sent must be the one these credentials give for exactly what
/// the fake received.
fn assert_signed(up: &FakeBedrock, r: &Recorded, region: &str, creds: &AwsCredentials) {
    let url = format!("{}{}", up.base_url(), r.path);
    let headers: Vec<(String, String)> = ["content-type", "accept"]
        .iter()
        .map(|h| (h.to_string(), r.header(h).unwrap().to_string()))
        .collect();
    let body = serde_json::to_vec(&r.body).unwrap();
    let want = sign(
        &SigningRequest {
            method: "POST",
            url: &url,
            headers: &headers,
            body: &body,
            region,
            service: "bedrock",
            amz_date: r.header("x-amz-date").unwrap(),
        },
        creds,
    )
    .unwrap();
    let auth = want.iter().find(|(k, _)| k == "authorization").unwrap();
    assert_eq!(r.header("authorization"), Some(auth.1.as_str()));
    assert!(auth.1.contains(&format!("/{region}/bedrock/aws4_request")));
}

fn request(stream: bool) -> Value {
    let mut req = json!({
        "model": "br",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "tooluse_1", "type": "function",
                 "function": {"name": "identify", "arguments": "{\"kind\":\"logo\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "tooluse_1", "content": "It is a logo."},
            {"role": "user", "content": "Whose?"}
        ],
        "tools": [{"type": "function", "function": {
            "name": "identify", "description": "Identify an image",
            "parameters": {"type": "object", "properties": {"kind": {"type": "string"}}}
        }}],
        "max_tokens": 300,
        "temperature": 0.5,
        "stop": ["###"]
    });
    if stream {
        req["stream"] = json!(true);
        req["stream_options"] = json!({"include_usage": true});
    }
    req
}

fn reply() -> Reply {
    let mut r = Reply::text("The logo of a rust crate.")
        .with_reasoning("Looks like a gear.")
        .with_usage(50, 9);
    r.usage.cache_read_input_tokens = Some(20);
    r
}

#[tokio::test]
async fn converse_plain_call_is_signed_translated_and_costed() {
    let up = FakeBedrock::start().await;
    up.set_default(reply());
    let gw = gateway(&up).await;
    let resp = post_json(&gw, "/v1/chat/completions", &request(false)).await;
    assert_eq!(resp.status(), 200);
    let cost = cost_header_nanos(&resp);
    let body: Value = resp.json().await.unwrap();
    let sent = up.last_request().unwrap();
    insta::assert_json_snapshot!(
        "bedrock_plain_upstream_request",
        upstream_request(&sent, HEADERS)
    );
    insta::assert_json_snapshot!("bedrock_plain_client_response", redact(body));
    let creds = AwsCredentials {
        access_key_id: "AKIDCONFIGEXAMPLE".into(),
        secret_access_key: "config-secret-example".into(),
        session_token: None,
    };
    assert_signed(&up, &sent, "us-west-2", &creds);
    let want = expected_nanos(PRICE, 30, 20, 0, 9);
    assert_eq!(cost, want);
    let rec = gw.records(1).await.pop().unwrap();
    assert_eq!(rec.cost_nanos as i64, want);
    assert_eq!(rec.custom_llm_provider, "bedrock");
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn converse_stream_event_frames_become_openai_chunks() {
    let up = FakeBedrock::start().await;
    up.set_default(reply().with_chunk_chars(9));
    let gw = gateway(&up).await;
    let resp = post_json(&gw, "/v1/chat/completions", &request(true)).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let sent = up.last_request().unwrap();
    insta::assert_json_snapshot!(
        "bedrock_stream_upstream_request",
        upstream_request(&sent, HEADERS)
    );
    insta::assert_json_snapshot!("bedrock_stream_client_chunks", sse_data(&text));
    let rec = gw.records(1).await.pop().unwrap();
    assert!(rec.stream);
    assert_eq!((rec.prompt_tokens, rec.completion_tokens), (50, 9));
    assert_eq!(rec.cost_nanos as i64, expected_nanos(PRICE, 30, 20, 0, 9));
    gw.shutdown().await.unwrap();
}

/// A ConverseStream that ends without its `metadata` event, or a Converse answer without
/// `usage`, reports no counts: the call is charged by the gateway's estimate (and says so),
/// never as zero tokens.
#[tokio::test]
async fn converse_without_usage_is_charged_by_the_estimate() {
    let up = FakeBedrock::start().await;
    up.set_default(reply().with_chunk_chars(9).without_usage());
    let gw = gateway(&up).await;
    let chars = |v: &Value| serde_json::to_string(v).unwrap().chars().count() as u64;

    let plain = request(false);
    let resp = post_json(&gw, "/v1/chat/completions", &plain).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert!(body.get("usage").is_none(), "{body}");
    let rec = gw.records(1).await.pop().unwrap();
    assert!(rec.usage_estimated);
    let prompt = (chars(&plain["messages"]) + chars(&plain["tools"])).div_ceil(4);
    assert_eq!(rec.prompt_tokens, prompt);
    assert!(rec.completion_tokens > 0, "{rec:?}");
    assert_eq!(
        rec.cost_nanos as i64,
        expected_nanos(PRICE, prompt as i64, 0, 0, rec.completion_tokens as i64)
    );

    let req = request(true);
    let resp = post_json(&gw, "/v1/chat/completions", &req).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let data = sse_data(&text);
    let usage_chunk = data
        .iter()
        .rev()
        .find(|c| c.get("usage").is_some_and(|u| !u.is_null()))
        .cloned()
        .unwrap();
    let rec = gw.records(2).await.pop().unwrap();
    assert!(rec.stream);
    assert!(rec.usage_estimated);
    // Four characters a token over the messages and tools, and over the text generated.
    let prompt = (chars(&req["messages"]) + chars(&req["tools"])).div_ceil(4);
    assert_eq!(rec.prompt_tokens, prompt);
    assert!(rec.completion_tokens > 0, "{rec:?}");
    assert_eq!(
        usage_chunk["usage"]["completion_tokens"],
        json!(rec.completion_tokens)
    );
    assert_eq!(usage_chunk["usage"]["prompt_tokens"], json!(prompt));
    assert_eq!(
        rec.cost_nanos as i64,
        expected_nanos(PRICE, prompt as i64, 0, 0, rec.completion_tokens as i64)
    );
    assert!(rec.cost_nanos > 0);
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn region_and_credentials_from_the_environment_with_session_token() {
    let up = FakeBedrock::start().await;
    let gw = gateway(&up).await;
    let resp = post_json(
        &gw,
        "/v1/chat/completions",
        &common::chat_body("br-env", false),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let sent = up.last_request().unwrap();
    assert_eq!(sent.path, "/model/amazon.nova-pro-v1%3A0/converse");
    assert_eq!(
        sent.header("x-amz-security-token"),
        Some("env-session-token")
    );
    let creds = AwsCredentials {
        access_key_id: "ASIAENVEXAMPLE".into(),
        secret_access_key: "env-secret-example".into(),
        session_token: Some("env-session-token".into()),
    };
    assert_signed(&up, &sent, "eu-central-1", &creds);
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn bedrock_errors_are_mapped_and_secrets_stay_out_of_them() {
    let up = FakeBedrock::start().await;
    up.set_default(Reply::error(400, "Malformed input request: bad field"));
    let gw = gateway(&up).await;
    let resp = post_json(&gw, "/v1/chat/completions", &common::chat_body("br", false)).await;
    assert_eq!(resp.status(), 400);
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("BedrockException - Malformed input request"),
        "{text}"
    );
    assert!(!text.contains("config-secret-example"));
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn aws_secrets_never_show_in_config_debug() {
    let up = FakeBedrock::start().await;
    let cfg = config(
        &yaml(&up.base_url()),
        &[
            ("AWS_REGION", "eu-central-1"),
            ("AWS_ACCESS_KEY_ID", "ASIAENVEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "env-secret-example"),
            ("AWS_SESSION_TOKEN", "env-session-token"),
        ],
    );
    let shown = format!("{cfg:?}");
    for secret in [
        "config-secret-example",
        "env-secret-example",
        "env-session-token",
    ] {
        assert!(!shown.contains(secret), "{secret} leaked into Debug");
    }
}
