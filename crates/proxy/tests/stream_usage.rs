#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `stream_options.include_usage` honoured exactly: without it no chunk carries usage (the
//! gateway still asks the upstream, for cost); with it, one final chunk with `choices: []`
//! does, holding usage fields only (the cost stays in the `x-litellm-*` headers, never inside
//! an OpenAI object). A plain OpenAI-compatible upstream and a translated one (Anthropic).

mod common;

use common::{KEY, client, start, two_models};
use idlehands_testkit::{FakeAnthropic, FakeOpenAi, Reply};
use serde_json::{Value, json};

/// The fields a usage object may hold: OpenAI's, and the cache counts LiteLLM adds for
/// Anthropic-style providers.
const USAGE_FIELDS: [&str; 7] = [
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "prompt_tokens_details",
    "completion_tokens_details",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
];

/// The chunks of a streamed answer (`[DONE]` checked and left out).
async fn chunks(gw: &common::Running, body: &Value) -> Vec<Value> {
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let mut data: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(data.pop(), Some("[DONE]"), "{text}");
    data.iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

fn request(model: &str, include_usage: Option<bool>) -> Value {
    let mut body = json!({"model": model, "stream": true,
                          "messages": [{"role": "user", "content": "Say hi"}]});
    if let Some(on) = include_usage {
        body["stream_options"] = json!({"include_usage": on});
    }
    body
}

/// Usage only when asked, and then in the last chunk alone, with `choices: []`.
fn assert_usage_as_asked(chunks: &[Value], asked: bool) -> Option<Value> {
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    let with_usage: Vec<usize> = (0..chunks.len())
        .filter(|&i| chunks[i].get("usage").is_some_and(|u| !u.is_null()))
        .collect();
    if !asked {
        assert!(with_usage.is_empty(), "usage not asked for: {chunks:#?}");
        return None;
    }
    assert_eq!(with_usage, [chunks.len() - 1], "{chunks:#?}");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    let usage = last["usage"].as_object().unwrap();
    for field in usage.keys() {
        assert!(
            USAGE_FIELDS.contains(&field.as_str()),
            "non-standard usage field {field:?}: {last}"
        );
    }
    Some(last["usage"].clone())
}

#[tokio::test]
async fn openai_upstream_usage_only_when_asked() {
    let up = FakeOpenAi::start().await;
    up.set_default(
        Reply::text("abcdefghijklmnop")
            .with_usage(20, 10)
            .with_chunk_chars(8),
    );
    let gw = start(&two_models(&up.base_url())).await;
    for asked in [None, Some(false)] {
        assert_usage_as_asked(&chunks(&gw, &request("gpt-4o", asked)).await, false);
        let sent = up.last_request().unwrap();
        assert_eq!(
            sent.body["stream_options"]["include_usage"], true,
            "the upstream is asked all the same"
        );
    }
    let got = chunks(&gw, &request("gpt-4o", Some(true))).await;
    let usage = assert_usage_as_asked(&got, true).unwrap();
    assert_eq!(
        usage,
        json!({"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30})
    );
    insta::assert_json_snapshot!("openai_stream_with_include_usage", got);
    let recs = gw.records(3).await;
    assert_eq!(recs.len(), 3);
    assert!(
        recs.iter()
            .all(|r| (r.prompt_tokens, r.completion_tokens) == (20, 10))
    );
    assert!(recs.iter().all(|r| !r.usage_estimated));
}

#[tokio::test]
async fn anthropic_upstream_usage_only_when_asked() {
    let up = FakeAnthropic::start().await;
    up.set_default(Reply::text("translated answer").with_usage(12, 4));
    let yaml = format!(
        "model_list:
  - model_name: claude
    litellm_params:
      model: anthropic/claude-sonnet-4-5
      api_base: {}
      api_key: sk-ant-config-key
general_settings:
  master_key: {KEY}
",
        up.base_url()
    );
    let gw = start(&yaml).await;
    assert_usage_as_asked(&chunks(&gw, &request("claude", None)).await, false);
    let got = chunks(&gw, &request("claude", Some(true))).await;
    let usage = assert_usage_as_asked(&got, true).unwrap();
    assert_eq!(usage["prompt_tokens"], 12);
    assert_eq!(usage["completion_tokens"], 4);
    let recs = gw.records(2).await;
    assert_eq!(recs.len(), 2);
    assert!(recs.iter().all(|r| r.cost_nanos > 0 && !r.usage_estimated));
}

/// A stream's cost travels as an SSE comment just before `[DONE]` (its headers left before the
/// cost was known); it equals the call's recorded cost, and clients that parse SSE skip it.
#[tokio::test]
async fn the_cost_comes_as_a_comment_before_done() {
    let up = FakeOpenAi::start().await;
    up.set_default(Reply::text("abcdefgh").with_usage(1000, 500));
    let gw = start(&two_models(&up.base_url())).await;
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&request("gpt-4o", None))
        .send()
        .await
        .unwrap();
    let text = resp.text().await.unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let n = lines.len();
    assert_eq!(lines[n - 1], "data: [DONE]", "{text}");
    let usd = lines[n - 2]
        .strip_prefix(": x-litellm-response-cost: ")
        .unwrap_or_else(|| panic!("no cost comment before [DONE]: {text}"));
    let recs = gw.records(1).await;
    assert_eq!(recs.len(), 1);
    // gpt-4o at $2.50 / $10 per million tokens (OpenAI's published price):
    // 1000 * 2.5e-6 + 500 * 1e-5 = $0.0075.
    assert_eq!(usd, "0.0075");
    assert_eq!(recs[0].cost_nanos, 7_500_000);
}

/// Real servers lay SSE out in ways our own encoder never does: CRLF line ends, frames cut
/// across TCP writes, keep-alive comments between events. Each reaches the client as the same
/// chunks with the same usage, and the spend row counts the upstream's usage, not an estimate.
#[tokio::test]
async fn every_upstream_sse_layout_gives_the_same_stream_and_usage() {
    use idlehands_testkit::Framing;
    let openai = FakeOpenAi::start().await;
    let anthropic = FakeAnthropic::start().await;
    let yaml = format!(
        "model_list:
  - model_name: local
    litellm_params:
      model: openai/qwen
      api_base: {}
      api_key: none
  - model_name: claude
    litellm_params:
      model: anthropic/claude-sonnet-4-5
      api_base: {}
      api_key: sk-ant-config-key
general_settings:
  master_key: {KEY}
",
        openai.base_url(),
        anthropic.base_url()
    );
    let gw = start(&yaml).await;
    let layouts = [
        Framing::Lf,
        Framing::Crlf,
        Framing::Split,
        Framing::KeepAlive,
    ];
    for model in ["local", "claude"] {
        let mut texts = Vec::new();
        for framing in layouts {
            let reply = Reply::text("layout-proof answer")
                .with_usage(33, 7)
                .with_chunk_chars(4)
                .with_framing(framing);
            match model {
                "local" => openai.push(reply),
                _ => anthropic.push(reply),
            }
            let got = chunks(&gw, &request(model, Some(true))).await;
            let usage = assert_usage_as_asked(&got, true).unwrap();
            assert_eq!(
                (&usage["prompt_tokens"], &usage["completion_tokens"]),
                (&json!(33), &json!(7)),
                "{model} {framing:?}"
            );
            let text: String = got
                .iter()
                .filter_map(|c| c.pointer("/choices/0/delta/content"))
                .filter_map(Value::as_str)
                .collect();
            texts.push(text);
        }
        assert!(
            texts.iter().all(|t| t == "layout-proof answer"),
            "{model}: {texts:?}"
        );
    }
    let recs = gw.records(8).await;
    assert_eq!(recs.len(), 8);
    for r in &recs {
        assert_eq!((r.prompt_tokens, r.completion_tokens), (33, 7), "{r:?}");
        assert!(!r.usage_estimated, "{r:?}");
    }
}
