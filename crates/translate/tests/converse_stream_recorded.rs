#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Bedrock stream translation over ConverseStream answers recorded from the real API
//! (`tests/fixtures/converse_stream/`, see its README for the source): the bytes as AWS sent
//! them, through the event-stream decoder and the ConverseStream mapping, become the text,
//! tool call, finish reason and usage the recorded events hold.

use std::path::Path;

use idlehands_translate::bedrock::{ConverseEvents, ConverseStreamToOpenAi};
use idlehands_translate::stream_to_openai::BodyToOpenAi;
use serde_json::{Value, json};

struct Recorded {
    body: Vec<u8>,
    request_id: String,
}

fn recorded(name: &str) -> Recorded {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/converse_stream")
        .join(name);
    let rec: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let rec = &rec[0];
    assert!(rec["path"].as_str().unwrap().ends_with("/converse-stream"));
    assert_eq!(rec["status"], 200);
    assert_eq!(rec["responseIsBinary"], true);
    let headers: Vec<&str> = rec["rawHeaders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    let request_id = headers
        .chunks(2)
        .find(|kv| kv[0].eq_ignore_ascii_case("x-amzn-requestid"))
        .map(|kv| kv[1].to_string())
        .unwrap();
    Recorded {
        body: hex::decode(rec["response"].as_str().unwrap()).unwrap(),
        request_id,
    }
}

/// The body pushed in `piece`-byte reads, as the gateway does; every chunk, then the usage
/// chunk `finish` gives.
fn translate(r: &Recorded, piece: usize) -> (Vec<Value>, Value, BodyToOpenAi<ConverseEvents>) {
    let id = format!("chatcmpl-{}", r.request_id);
    let mut body = BodyToOpenAi::new(ConverseStreamToOpenAi::new("bedrock-claude", &id, 1));
    let mut chunks = Vec::new();
    for p in r.body.chunks(piece) {
        chunks.extend(body.push(p).unwrap());
    }
    let usage = body.finish().unwrap().unwrap();
    (chunks, usage, body)
}

fn deltas<'a>(chunks: &'a [Value], pointer: &str) -> Vec<&'a str> {
    chunks
        .iter()
        .filter_map(|c| c.pointer(pointer).and_then(Value::as_str))
        .collect()
}

#[test]
fn recorded_text_answer() {
    let r = recorded("should-handle-basic-converse-stream-responses.json");
    for piece in [r.body.len(), 1000, 7] {
        let (chunks, usage, body) = translate(&r, piece);
        assert!(
            chunks
                .iter()
                .all(|c| c["id"] == "chatcmpl-74bd2b58-0501-4a97-aa08-36bada50fac5"),
            "every chunk carries the request id"
        );
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        let text = deltas(&chunks, "/choices/0/delta/content");
        assert_eq!(
            text.len(),
            13,
            "the role chunk's empty content and 12 text deltas"
        );
        assert_eq!(
            text.concat(),
            "Hello! As an AI language model, I don't have feelings, but I'm functioning well \
             and ready to assist you. How can I help you today?"
        );
        let last = chunks.last().unwrap();
        assert_eq!(last["choices"][0]["finish_reason"], "stop");
        assert_eq!(body.machine().finish_reason(), Some("stop"));
        assert_eq!(
            usage["usage"],
            json!({"prompt_tokens": 13, "completion_tokens": 35, "total_tokens": 48})
        );
    }
}

#[test]
fn recorded_tool_call_answer() {
    let r = recorded("should-handle-streaming-tool-calls-and-responses.json");
    for piece in [r.body.len(), 64] {
        let (chunks, usage, _) = translate(&r, piece);
        assert!(
            deltas(&chunks, "/choices/0/delta/content")
                .concat()
                .starts_with("I can certainly help you with the weather in San Francisco,")
        );
        let opened: Vec<&Value> = chunks
            .iter()
            .filter_map(|c| c.pointer("/choices/0/delta/tool_calls/0"))
            .filter(|t| t.get("id").is_some())
            .collect();
        assert_eq!(
            opened,
            vec![
                &json!({"index": 0, "id": "tooluse_wnjikhCUTruJciycmmm5Kg", "type": "function",
                         "function": {"name": "get_weather", "arguments": ""}})
            ]
        );
        let arguments = deltas(&chunks, "/choices/0/delta/tool_calls/0/function/arguments");
        assert_eq!(
            arguments.concat(),
            r#"{"location": "San Francisco, CA", "unit": "fahrenheit"}"#
        );
        assert_eq!(
            chunks.last().unwrap()["choices"][0]["finish_reason"],
            "tool_calls"
        );
        assert_eq!(
            usage["usage"],
            json!({"prompt_tokens": 414, "completion_tokens": 114, "total_tokens": 528})
        );
    }
}
