//! Compaction against the fake upstream: at the threshold, after a context-overflow error, and
//! by hand. The next request carries the summary instead of the old turns; the transcript file
//! keeps the originals; a resumed session rebuilds the compacted context.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use idlehands_agent::agent::{AgentError, AgentEvent};
use idlehands_agent::{CancellationToken, UserInput};
use idlehands_testkit::{FakeOpenAi, Reply};
use serde_json::Value;

/// A 16000-token model; `compaction` is the `agents.defaults.compaction` object.
fn config(up: &FakeOpenAi, compaction: &str) -> String {
    format!(
        "{{ models: {{ providers: {{ {} }} }}, agents: {{ defaults: {{ model: {{ primary: 'local/m1' }}, compaction: {compaction} }} }} }}",
        provider_json("local", &up.base_url(), "m1", ", contextWindow: 16000")
    )
}

/// The texts of a recorded request's messages, by role.
fn texts(body: &Value) -> Vec<(String, String)> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let content = match &m["content"] {
                Value::String(s) => s.clone(),
                Value::Array(parts) => parts
                    .iter()
                    .filter_map(|p| p["text"].as_str())
                    .collect::<Vec<_>>()
                    .join(""),
                _ => String::new(),
            };
            (m["role"].as_str().unwrap_or("").to_string(), content)
        })
        .collect()
}

fn mentions(body: &Value, needle: &str) -> bool {
    texts(body).iter().any(|(_, t)| t.contains(needle))
}

async fn turn(
    session: &mut idlehands_agent::Session,
    text: &str,
) -> (
    Result<idlehands_agent::TurnOutcome, AgentError>,
    Vec<AgentEvent>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let r = session
        .run_turn(UserInput::text(text), &tx, &CancellationToken::new())
        .await;
    (r, collect(&mut rx))
}

#[tokio::test]
async fn crossing_the_threshold_summarises_old_turns_before_the_next_call() {
    let up = FakeOpenAi::start().await;
    let s = Scratch::new();
    s.write_config(&config(&up, "{ keepRecentTokens: 1 }"));
    // The provider reports a context near the 16000 window (threshold 8000).
    up.push(Reply::text("First answer about alpha.").with_usage(15_000, 10));
    up.push(Reply::text("SUMMARY: user asked about alpha; answered.").with_usage(300, 20));
    up.push(Reply::text("Second answer.").with_usage(400, 5));

    let rt = s.runtime();
    let mut session = s.session(&rt, None);
    let (r, _) = turn(&mut session, "tell me about alpha").await;
    r.unwrap();
    let (r, events) = turn(&mut session, "now beta").await;
    assert_eq!(r.unwrap().text, "Second answer.");

    let reqs = up.requests();
    assert_eq!(reqs.len(), 3);
    // The summarising call sees the old turn and offers no tools.
    let summary_req = &reqs[1].body;
    assert!(mentions(summary_req, "tell me about alpha"));
    assert!(mentions(summary_req, "First answer about alpha."));
    assert!(
        summary_req
            .get("tools")
            .is_none_or(|t| t.as_array().unwrap().is_empty())
    );
    // The next call carries the summary and the new message, not the old turn.
    let next = &reqs[2].body;
    assert!(mentions(next, "SUMMARY: user asked about alpha; answered."));
    assert!(mentions(next, "now beta"));
    assert!(!mentions(next, "tell me about alpha"));
    assert!(!mentions(next, "First answer about alpha."));

    assert!(events.iter().any(|e| matches!(
        e,
        AgentEvent::Compaction { reason, tokens_before, .. } if reason == "threshold" && *tokens_before >= 15_000
    )));

    // The file keeps the originals, and a compaction entry pointing at the kept message.
    let lines = read_jsonl(session.transcript_path());
    let all = serde_json::to_string(&lines).unwrap();
    assert!(all.contains("tell me about alpha"));
    assert!(all.contains("First answer about alpha."));
    let compaction = lines.iter().find(|l| l["type"] == "compaction").unwrap();
    assert_eq!(
        compaction["summary"],
        "SUMMARY: user asked about alpha; answered."
    );
    assert!(compaction["tokensBefore"].as_u64().unwrap() >= 15_000);
    let kept = compaction["firstKeptEntryId"].as_str().unwrap();
    let kept_entry = lines.iter().find(|l| l["id"] == kept).unwrap();
    assert_eq!(kept_entry["message"]["content"][0]["text"], "now beta");

    // Resuming rebuilds the compacted context: summary first, then the kept turn.
    let id = session.id().to_string();
    drop(session);
    let resumed = s.session(&rt, Some(&id));
    let msgs = serde_json::to_value(resumed.messages()).unwrap();
    let first = msgs[0]["content"][0]["text"].as_str().unwrap();
    assert!(first.contains("SUMMARY: user asked about alpha; answered."));
    assert_eq!(msgs[1]["content"][0]["text"], "now beta");
    assert_eq!(msgs.as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn a_context_overflow_error_compacts_and_retries() {
    let up = FakeOpenAi::start().await;
    let s = Scratch::new();
    // Automatic compaction off: only the overflow triggers it.
    s.write_config(&config(&up, "{ enabled: false, keepRecentTokens: 1 }"));
    up.push(Reply::text("Old answer.").with_usage(100, 10));
    up.push(Reply::error(
        400,
        "This model's maximum context length is 16000 tokens. However, your messages resulted in 17000 tokens.",
    ));
    up.push(Reply::text("SUMMARY OF OLD").with_usage(50, 5));
    up.push(Reply::text("Fits now.").with_usage(60, 5));

    let rt = s.runtime();
    let mut session = s.session(&rt, None);
    turn(&mut session, "old question").await.0.unwrap();
    let (r, events) = turn(&mut session, "new question").await;
    assert_eq!(r.unwrap().text, "Fits now.");

    let reqs = up.requests();
    assert_eq!(reqs.len(), 4);
    assert!(mentions(&reqs[1].body, "old question"));
    assert!(mentions(&reqs[2].body, "old question"));
    let retry = &reqs[3].body;
    assert!(mentions(retry, "SUMMARY OF OLD"));
    assert!(mentions(retry, "new question"));
    assert!(!mentions(retry, "old question"));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, AgentEvent::Compaction { reason, .. } if reason == "overflow"))
    );
    let all = std::fs::read_to_string(session.transcript_path()).unwrap();
    assert!(all.contains("old question") && all.contains("Old answer."));
}

#[tokio::test]
async fn overflow_recovery_stops_when_nothing_older_is_left() {
    let up = FakeOpenAi::start().await;
    let s = Scratch::new();
    s.write_config(&config(&up, "{ enabled: false, keepRecentTokens: 1 }"));
    let overflow = || Reply::error(400, "prompt is too long: 20000 tokens > 16000 maximum");
    up.push(Reply::text("a1"));
    up.push(Reply::text("a2"));
    up.push(Reply::text("a3"));
    up.push(Reply::text("a4"));
    let rt = s.runtime();
    let mut session = s.session(&rt, None);
    for q in ["q1", "q2", "q3", "q4"] {
        turn(&mut session, q).await.0.unwrap();
    }
    // The retry overflows again, and then only the summary precedes the newest turn.
    up.push(overflow());
    up.push(Reply::text("S"));
    up.push(overflow());
    let (r, events) = turn(&mut session, "q5").await;
    let err = r.unwrap_err();
    assert_eq!(err.kind(), "context_overflow", "{err}");
    let n = events
        .iter()
        .filter(|e| matches!(e, AgentEvent::Compaction { .. }))
        .count();
    assert_eq!(n, 1);
    assert_eq!(up.requests().len(), 4 + 3);
}

#[tokio::test]
async fn compact_by_hand_with_instructions() {
    let up = FakeOpenAi::start().await;
    let s = Scratch::new();
    s.write_config(&config(&up, "{}"));
    up.push(Reply::text("one"));
    up.push(Reply::text("two"));
    up.push(Reply::text("HAND SUMMARY"));
    up.push(Reply::text("three"));
    let rt = s.runtime();
    let mut session = s.session(&rt, None);
    turn(&mut session, "first").await.0.unwrap();
    turn(&mut session, "second").await.0.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let out = session
        .compact(Some("keep the numbers"), &tx, &CancellationToken::new())
        .await
        .unwrap()
        .expect("something to compact");
    assert_eq!(out.summary, "HAND SUMMARY");
    assert!(
        collect(&mut rx)
            .iter()
            .any(|e| matches!(e, AgentEvent::Compaction { reason, .. } if reason == "manual"))
    );
    let summary_req = up.requests()[2].body.clone();
    assert!(mentions(&summary_req, "keep the numbers"));
    assert!(mentions(&summary_req, "first"));
    turn(&mut session, "third").await.0.unwrap();
    let last = up.last_request().unwrap().body;
    assert!(mentions(&last, "HAND SUMMARY"));
    assert!(mentions(&last, "second"));
    assert!(!texts(&last).iter().any(|(_, t)| t == "first"));

    // A fresh session has nothing to compact.
    let mut fresh = s.session(&rt, None);
    let none = fresh
        .compact(None, &tx, &CancellationToken::new())
        .await
        .unwrap();
    assert!(none.is_none());
}

/// A long run of tool calls overflows again and again: each time the turn is cut between
/// rounds and retried, at most three times per turn.
#[tokio::test]
async fn a_long_tool_turn_is_compacted_between_rounds_at_most_three_times() {
    let up = FakeOpenAi::start().await;
    let s = Scratch::new();
    s.write_config(&config(&up, "{ enabled: false, keepRecentTokens: 1 }"));
    let write = |n: u32| {
        Reply::tool_call(
            &format!("c{n}"),
            "write",
            serde_json::json!({"path": format!("f{n}.txt"), "content": format!("file {n}\n")}),
        )
    };
    let overflow = || Reply::error(400, "prompt is too long: 20000 tokens > 16000 maximum");
    up.push(write(1));
    up.push(write(2));
    up.push(overflow());
    up.push(Reply::text("S1"));
    up.push(write(3));
    up.push(overflow());
    up.push(Reply::text("S2"));
    up.push(write(4));
    up.push(overflow());
    up.push(Reply::text("S3"));
    up.push(write(5));
    up.push(overflow());

    let rt = s.runtime();
    let mut session = s.session(&rt, None);
    let (r, events) = turn(&mut session, "write five files").await;
    assert_eq!(r.unwrap_err().kind(), "context_overflow");
    let compactions = events
        .iter()
        .filter(|e| matches!(e, AgentEvent::Compaction { reason, .. } if reason == "overflow"))
        .count();
    assert_eq!(compactions, 3);
    let reqs = up.requests();
    assert_eq!(reqs.len(), 12);
    // The first retry carries the summary and the newest round, not the user's message.
    let retry = &reqs[4].body;
    assert!(mentions(retry, "S1"));
    assert!(!mentions(retry, "write five files"));
    assert!(retry.to_string().contains("f2.txt"));
    assert!(!retry.to_string().contains("f1.txt"));
    // Every tool ran; the file keeps every original message.
    for n in 1..=5 {
        assert!(s.workspace().join(format!("f{n}.txt")).exists());
    }
    let all = std::fs::read_to_string(session.transcript_path()).unwrap();
    assert!(all.contains("write five files"));
    assert_eq!(all.matches("\"type\":\"compaction\"").count(), 3);
}
