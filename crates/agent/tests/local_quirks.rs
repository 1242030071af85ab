//! Local-model quirks end to end: a real llama-server capture of a tool call written as bare
//! JSON runs the tool; `<think>` in `content` becomes reasoning, streamed and not; a model
//! repeating the same call is corrected, then stopped; the system prompt and tool list stay
//! byte-identical across turns so a server's prompt cache holds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use idlehands_agent::agent::{AgentError, AgentEvent};
use idlehands_agent::message::{AgentMessage, ContentBlock};
use idlehands_agent::quirks::repeat::STOP_AT;
use idlehands_agent::{CancellationToken, UserInput};
use idlehands_testkit::replay::{Capture, FakeLlamaServer, MODEL};
use idlehands_testkit::{FakeOpenAi, Reply};
use serde_json::{Value, json};

fn shown_text(events: &[AgentEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::TextDelta { text } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

fn config_for(s: &Scratch, provider: &str, base: &str, model: &str) {
    s.write_config(&format!(
        "{{ models: {{ providers: {{ {} }} }}, agents: {{ defaults: {{ model: {{ primary: '{provider}/{model}' }} }} }} }}",
        provider_json(provider, base, model, "")
    ));
}

#[tokio::test]
async fn a_tool_call_llama_server_wrote_as_bare_json_runs_the_tool() {
    let server = FakeLlamaServer::start().await;
    server.push(Capture::ToolCallAsBareJson);
    let s = Scratch::new();
    config_for(&s, "llamacpp", &server.base_url(), MODEL);
    let rt = s.runtime();
    let mut session = s.session(&rt, None);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let out = session
        .run_turn(
            UserInput::text("Write the text hi into the file hello.txt using the write tool."),
            &tx,
            &CancellationToken::new(),
        )
        .await
        .unwrap();

    assert_eq!(
        std::fs::read_to_string(s.workspace().join("hello.txt")).unwrap(),
        "hi"
    );
    // The second call got llama-server's plain streamed answer.
    assert_eq!(out.text, "Hello! How can I assist you today?");
    let events = collect(&mut rx);
    assert!(events.iter().any(|e| matches!(e,
        AgentEvent::ToolCall { name, arguments, .. }
            if name == "write" && *arguments == json!({"path": "hello.txt", "content": "hi"}))));
    // The call's JSON was held back, not shown to the user as text.
    assert_eq!(shown_text(&events), "Hello! How can I assist you today?");

    // The parsed call went back to the server as a real tool call with its result.
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    let msgs = reqs[1].body["messages"].as_array().unwrap();
    let asst = msgs.iter().find(|m| m["role"] == "assistant").unwrap();
    assert_eq!(asst["tool_calls"][0]["function"]["name"], "write");
    let args: Value = serde_json::from_str(
        asst["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(args, json!({"path": "hello.txt", "content": "hi"}));
    let tool = msgs.iter().find(|m| m["role"] == "tool").unwrap();
    assert_eq!(tool["tool_call_id"], asst["tool_calls"][0]["id"]);
}

#[tokio::test]
async fn bare_json_naming_no_offered_tool_stays_text() {
    let up = FakeOpenAi::start().await;
    let s = Scratch::new();
    config_for(&s, "local", &up.base_url(), "m1");
    let answer = r#"{"name": "deploy", "arguments": {"target": "prod"}}"#;
    up.push(Reply::text(answer));
    let rt = s.runtime();
    let mut session = s.session(&rt, None);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let out = session
        .run_turn(UserInput::text("x"), &tx, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(out.text, answer);
    assert_eq!(up.requests().len(), 1);
    // Held while it might have been a call, then shown whole.
    assert_eq!(shown_text(&collect(&mut rx)), answer);
}

#[tokio::test]
async fn think_tags_in_streamed_content_become_reasoning() {
    let up = FakeOpenAi::start().await;
    let s = Scratch::new();
    config_for(&s, "local", &up.base_url(), "m1");
    let mut reply = Reply::text("<think>\nThe user wants a greeting.\n</think>\n\nHello there.");
    // Tags cut across chunks, as a token-by-token server sends them.
    reply.chunk_chars = 3;
    up.push(reply);
    let rt = s.runtime();
    let mut session = s.session(&rt, None);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let out = session
        .run_turn(UserInput::text("hi"), &tx, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(out.text, "Hello there.");
    assert_eq!(out.reasoning, "The user wants a greeting.\n");
    let events = collect(&mut rx);
    let shown: String = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::TextDelta { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    let thought: String = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::ReasoningDelta { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(shown, "Hello there.");
    assert_eq!(thought, "The user wants a greeting.\n");
    let AgentMessage::Assistant(a) = session.messages().last().unwrap() else {
        panic!("last message is not the reply");
    };
    assert!(
        matches!(&a.content[0], ContentBlock::Thinking { thinking, signature: None } if thinking == "The user wants a greeting.\n")
    );
}

#[tokio::test]
async fn think_tags_in_a_non_streamed_reply_become_reasoning() {
    // Some servers ignore `stream: true` and answer with one JSON object.
    let body = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m1",
        "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": "<reasoning>count the rs</reasoning>There are 3."}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
    });
    let (base, _task) = raw_server(
        200,
        vec![("content-type".into(), "application/json".into())],
        body.to_string(),
    )
    .await;
    let s = Scratch::new();
    config_for(&s, "local", &base, "m1");
    let rt = s.runtime();
    let mut session = s.session(&rt, None);
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let out = session
        .run_turn(
            UserInput::text("strawberry"),
            &tx,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(out.text, "There are 3.");
    assert_eq!(out.reasoning, "count the rs");
}

#[tokio::test]
async fn the_same_failing_call_is_corrected_then_the_turn_stops() {
    let up = FakeOpenAi::start().await;
    let s = Scratch::new();
    config_for(&s, "local", &up.base_url(), "m1");
    up.set_default(Reply::tool_call(
        "call_r",
        "read",
        json!({"path": "does-not-exist.txt"}),
    ));
    let rt = s.runtime();
    let mut session = s.session(&rt, None);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let err = session
        .run_turn(UserInput::text("read it"), &tx, &CancellationToken::new())
        .await
        .unwrap_err();
    match &err {
        AgentError::RepeatedToolCall { name, count } => {
            assert_eq!(name, "read");
            assert_eq!(*count, STOP_AT);
        }
        other => panic!("expected RepeatedToolCall, got {other:?}"),
    }
    assert_eq!(err.kind(), "loop");
    // Stopped after the STOP_AT-th identical call; no further model call was made.
    assert_eq!(up.requests().len(), STOP_AT as usize);
    // The second result carried the corrective note; the first did not.
    let tool_texts = |i: usize| -> Vec<String> {
        up.requests()[i].body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "tool")
            .map(|m| m["content"].to_string())
            .collect()
    };
    let third = tool_texts(2);
    assert_eq!(third.len(), 2);
    assert!(!third[0].contains("[idlehands]"), "{}", third[0]);
    assert!(third[1].contains("[idlehands]"), "{}", third[1]);
    assert!(third[1].contains("exactly these arguments"), "{}", third[1]);
    let events = collect(&mut rx);
    assert!(events.iter().any(|e| matches!(e,
        AgentEvent::Error { kind, message } if kind == "loop" && message.contains("`read` 4 times"))));
    // Every call in the transcript has its result, and the failed turn is recorded last.
    let calls = session
        .messages()
        .iter()
        .filter(|m| matches!(m, AgentMessage::Assistant(a) if !a.tool_calls().is_empty()))
        .count();
    assert!(matches!(session.messages().last(),
        Some(AgentMessage::Assistant(a)) if a.error_message.as_deref().is_some_and(|e| e.contains("`read` 4 times"))));
    let results = session
        .messages()
        .iter()
        .filter(|m| matches!(m, AgentMessage::ToolResult { .. }))
        .count();
    assert_eq!(calls, results);
}

#[tokio::test]
async fn system_prompt_and_tools_are_byte_identical_across_turns() {
    let up = FakeOpenAi::start().await;
    let s = Scratch::new();
    config_for(&s, "local", &up.base_url(), "m1");
    up.push(Reply::text("one"));
    up.push(Reply::text("two"));
    let rt = s.runtime();
    let mut session = s.session(&rt, None);
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    for text in ["first", "second"] {
        session
            .run_turn(UserInput::text(text), &tx, &CancellationToken::new())
            .await
            .unwrap();
    }
    let reqs = up.requests();
    assert_eq!(reqs.len(), 2);
    let (a, b) = (&reqs[0].body, &reqs[1].body);
    assert_eq!(a["messages"][0]["role"], "system");
    assert_eq!(a["messages"][0].to_string(), b["messages"][0].to_string());
    assert_eq!(a["tools"].to_string(), b["tools"].to_string());
    // The whole first request is a prefix of the second: a prefix-caching server
    // (llama-server, vLLM, Ollama) has to process only the new messages.
    let first = a["messages"].as_array().unwrap();
    let second = b["messages"].as_array().unwrap();
    assert_eq!(second.len(), first.len() + 2);
    for (x, y) in first.iter().zip(second) {
        assert_eq!(x.to_string(), y.to_string());
    }
    // The date at most: the line under the heading carries no clock.
    let system = a["messages"][0]["content"].as_str().unwrap();
    let date_line = system
        .split("## Current Date\n")
        .nth(1)
        .and_then(|r| r.lines().next())
        .unwrap();
    assert!(!date_line.contains(':'), "{date_line}");
}
