//! The whole loop against a fake OpenAI-compatible upstream: tool calls executed, transcript
//! and index written, events emitted, sessions resumed, fallbacks taken or not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use idlehands_agent::agent::{AgentError, AgentEvent};
use idlehands_agent::{CancellationToken, UserInput};
use idlehands_testkit::{FakeOpenAi, Reply};
use serde_json::json;

#[tokio::test]
async fn tool_call_turn_writes_a_file_runs_cat_and_records_everything() {
    let up = FakeOpenAi::start().await;
    let s = Scratch::new();
    s.write_config(&format!(
        "{{ models: {{ providers: {{ {} }} }}, agents: {{ defaults: {{ model: {{ primary: 'local/m1' }} }} }} }}",
        provider_json("local", &up.base_url(), "m1", "")
    ));
    up.push(
        Reply::tool_call(
            "call_w",
            "write",
            json!({"path": "notes/hello.txt", "content": "hi there\n"}),
        )
        .with_usage(100, 10),
    );
    up.push(
        Reply::tool_call("call_x", "exec", json!({"command": "cat notes/hello.txt"}))
            .with_usage(120, 8),
    );
    up.push(Reply::text("Wrote and checked the file.").with_usage(150, 6));

    let rt = s.runtime();
    let mut session = s.session(&rt, None);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let out = session
        .run_turn(
            UserInput::text("make a note"),
            &tx,
            &CancellationToken::new(),
        )
        .await
        .unwrap();

    assert_eq!(out.text, "Wrote and checked the file.");
    assert_eq!(out.model.to_string(), "local/m1");
    assert_eq!(out.usage.input, 370);
    assert_eq!(out.usage.output, 24);
    assert_eq!(
        std::fs::read_to_string(s.workspace().join("notes/hello.txt")).unwrap(),
        "hi there\n"
    );

    let events = collect(&mut rx);
    let types = event_types(&events);
    assert_eq!(types.first().map(String::as_str), Some("turn_start"));
    assert_eq!(types.last().map(String::as_str), Some("turn_end"));
    let tool_events: Vec<&AgentEvent> = events
        .iter()
        .filter(|e| {
            matches!(
                e,
                AgentEvent::ToolCall { .. } | AgentEvent::ToolResult { .. }
            )
        })
        .collect();
    assert!(matches!(tool_events[0], AgentEvent::ToolCall { name, .. } if name == "write"));
    assert!(
        matches!(tool_events[1], AgentEvent::ToolResult { name, ok: true, .. } if name == "write")
    );
    assert!(
        matches!(tool_events[2], AgentEvent::ToolCall { name, arguments, .. } if name == "exec" && arguments["command"] == "cat notes/hello.txt")
    );
    assert!(
        matches!(tool_events[3], AgentEvent::ToolResult { name, ok: true, .. } if name == "exec")
    );
    assert_eq!(types.iter().filter(|t| *t == "usage").count(), 3);
    let text: String = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::TextDelta { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, "Wrote and checked the file.");

    // The model saw the command's output in the third request.
    let reqs = up.requests();
    assert_eq!(reqs.len(), 3);
    let msgs = reqs[2].body["messages"].as_array().unwrap();
    let tool_msgs: Vec<_> = msgs.iter().filter(|m| m["role"] == "tool").collect();
    assert_eq!(tool_msgs.len(), 2);
    assert_eq!(tool_msgs[1]["tool_call_id"], "call_x");
    assert!(
        tool_msgs[1]["content"]
            .as_str()
            .unwrap()
            .contains("hi there")
    );
    assert_eq!(reqs[0].header("authorization"), Some("Bearer key-local"));
    assert_eq!(
        reqs[0].header("user-agent"),
        Some(concat!("idlehands/", env!("CARGO_PKG_VERSION")))
    );
    assert_eq!(reqs[0].path, "/v1/chat/completions");

    // Transcript: header, then user, assistant, tool, assistant, tool, assistant.
    let lines = read_jsonl(session.transcript_path());
    assert_eq!(lines[0]["type"], "session");
    assert_eq!(lines[0]["version"], 3);
    let roles: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l["message"]["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        [
            "user",
            "assistant",
            "toolResult",
            "assistant",
            "toolResult",
            "assistant"
        ]
    );
    assert_eq!(lines[2]["parentId"], lines[1]["id"]);
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(s.state_dir().join("agents/main/sessions/sessions.json")).unwrap(),
    )
    .unwrap();
    let entry = &index[format!("agent:main:{}", session.id())];
    assert_eq!(entry["sessionId"], session.id());
    assert_eq!(entry["totalTokens"], 394);
}

#[tokio::test]
async fn resuming_a_session_id_sends_the_earlier_history() {
    let up = FakeOpenAi::start().await;
    let s = Scratch::new();
    s.write_config(&format!(
        "{{ models: {{ providers: {{ {} }} }}, agents: {{ defaults: {{ model: 'local/m1' }} }} }}",
        provider_json("local", &up.origin(), "m1", "")
    ));
    up.push(Reply::text("first answer"));
    up.push(Reply::text("second answer"));
    let rt = s.runtime();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let mut a = s.session(&rt, Some("work-1"));
    a.run_turn(
        UserInput::text("remember 42"),
        &tx,
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    drop(a);
    let mut b = s.session(&rt, Some("work-1"));
    assert!(b.resumed());
    assert_eq!(b.messages().len(), 2);
    b.run_turn(
        UserInput::text("what number?"),
        &tx,
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    let req = up.last_request().unwrap();
    // A base URL without /v1 posts to /chat/completions.
    assert_eq!(req.path, "/chat/completions");
    let contents: Vec<String> = req.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] != "system")
        .map(|m| m["content"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(contents, ["remember 42", "first answer", "what number?"]);
}

fn two_provider_config(a: &FakeOpenAi, b: &FakeOpenAi) -> String {
    format!(
        "{{ models: {{ providers: {{ {}, {} }} }}, agents: {{ defaults: {{ model: {{ primary: 'a/m1', fallbacks: ['b/m2'] }} }} }} }}",
        provider_json("a", &a.base_url(), "m1", ""),
        provider_json("b", &b.base_url(), "m2", "")
    )
}

#[tokio::test]
async fn falls_back_in_order_on_5xx_and_429() {
    for first in [
        Reply::error(503, "upstream overloaded"),
        Reply::rate_limited(0),
    ] {
        let a = FakeOpenAi::start().await;
        let b = FakeOpenAi::start().await;
        let s = Scratch::new();
        s.write_config(&two_provider_config(&a, &b));
        a.push(first);
        b.push(Reply::text("from the fallback"));
        let rt = s.runtime();
        let mut session = s.session(&rt, None);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let out = session
            .run_turn(UserInput::text("hi"), &tx, &CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(out.text, "from the fallback");
        assert_eq!(out.model.to_string(), "b/m2");
        assert_eq!(a.served(), 1);
        assert_eq!(b.served(), 1);
        assert_eq!(
            b.last_request().unwrap().header("authorization"),
            Some("Bearer key-b")
        );
        let events = collect(&mut rx);
        assert!(events.iter().any(
            |e| matches!(e, AgentEvent::Fallback { from, to, .. } if from == "a/m1" && to == "b/m2")
        ));
    }
}

#[tokio::test]
async fn all_models_failing_lists_each_failure() {
    let a = FakeOpenAi::start().await;
    let b = FakeOpenAi::start().await;
    let s = Scratch::new();
    s.write_config(&two_provider_config(&a, &b));
    a.push(Reply::error(500, "boom a"));
    b.push(Reply::error(502, "boom b"));
    let rt = s.runtime();
    let mut session = s.session(&rt, None);
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let err = session
        .run_turn(UserInput::text("hi"), &tx, &CancellationToken::new())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("All models failed (2): a/m1: "), "{msg}");
    assert!(
        msg.contains("boom a") && msg.contains("| b/m2: ") && msg.contains("boom b"),
        "{msg}"
    );
}

#[tokio::test]
async fn context_overflow_does_not_fall_back() {
    let a = FakeOpenAi::start().await;
    let b = FakeOpenAi::start().await;
    let s = Scratch::new();
    s.write_config(&two_provider_config(&a, &b));
    a.push(Reply::error(
        400,
        "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.",
    ));
    let rt = s.runtime();
    let mut session = s.session(&rt, None);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let err = session
        .run_turn(UserInput::text("hi"), &tx, &CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "context_overflow");
    assert_eq!(b.served(), 0);
    let events = collect(&mut rx);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, AgentEvent::Error { kind, .. } if kind == "context_overflow"))
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, AgentEvent::Fallback { .. }))
    );
}

#[tokio::test]
async fn budget_and_auth_refusals_do_not_fall_back() {
    for refusal in [
        Reply::error(
            429,
            "Budget has been exceeded! Current cost: 1.2, Max budget: 1.0",
        ),
        Reply::error(400, "ExceededBudget: User=u over budget"),
        Reply::error(
            401,
            "Authentication Error, Invalid proxy server token passed.",
        ),
    ] {
        let a = FakeOpenAi::start().await;
        let b = FakeOpenAi::start().await;
        let s = Scratch::new();
        s.write_config(&two_provider_config(&a, &b));
        a.push(refusal);
        let rt = s.runtime();
        let mut session = s.session(&rt, None);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let err = session
            .run_turn(UserInput::text("hi"), &tx, &CancellationToken::new())
            .await
            .unwrap_err();
        assert!(matches!(err.kind(), "billing" | "auth"), "{err}");
        assert_eq!(b.served(), 0, "{err}");
        assert!(
            !collect(&mut rx)
                .iter()
                .any(|e| matches!(e, AgentEvent::Fallback { .. }))
        );
    }
}

#[tokio::test]
async fn only_configured_models_are_fallbacks_and_they_can_be_switched_off() {
    // No primary configured: the built-in default is not tried after a/m1 fails.
    let a = FakeOpenAi::start().await;
    let s = Scratch::new();
    s.write_config(&format!(
        "{{ models: {{ providers: {{ {} }} }} }}",
        provider_json("a", &a.base_url(), "m1", "")
    ));
    a.push(Reply::error(502, "bad gateway"));
    let rt = s.runtime();
    let mut session = idlehands_agent::Session::open(
        rt.clone(),
        idlehands_agent::SessionOptions {
            workspace: s.workspace(),
            model: Some("a/m1".into()),
            approval: idlehands_agent::ApprovalMode::Never,
            ..Default::default()
        },
    )
    .unwrap();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let err = session
        .run_turn(UserInput::text("hi"), &tx, &CancellationToken::new())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(!msg.contains("claude-opus"), "{msg}");
    assert!(!msg.contains("All models failed"), "{msg}");

    // Configured fallbacks, switched off (an explicit --model without --allow-fallback).
    let a = FakeOpenAi::start().await;
    let b = FakeOpenAi::start().await;
    let s = Scratch::new();
    s.write_config(&two_provider_config(&a, &b));
    a.push(Reply::error(503, "down"));
    let rt = s.runtime();
    let mut session = s.session(&rt, None);
    session.set_fallbacks(false);
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let err = session
        .run_turn(UserInput::text("hi"), &tx, &CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "timeout", "{err}");
    assert_eq!(b.served(), 0);
}

#[tokio::test]
async fn cancelling_aborts_the_turn_without_falling_back() {
    let a = FakeOpenAi::start().await;
    let b = FakeOpenAi::start().await;
    let s = Scratch::new();
    s.write_config(&two_provider_config(&a, &b));
    a.push(Reply::text("never").with_delay(Duration::from_secs(60)));
    let rt = s.runtime();
    let mut session = s.session(&rt, None);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    let c2 = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        c2.cancel();
    });
    let err = tokio::time::timeout(
        Duration::from_secs(30),
        session.run_turn(UserInput::text("hi"), &tx, &cancel),
    )
    .await
    .expect("the turn stops when cancelled")
    .unwrap_err();
    assert!(matches!(err, AgentError::Aborted));
    assert_eq!(b.served(), 0);
    let events = collect(&mut rx);
    assert!(
        events.iter().any(
            |e| matches!(e, AgentEvent::TurnEnd { stop_reason, .. } if stop_reason == "aborted")
        )
    );
}

#[tokio::test]
async fn request_uses_developer_role_reasoning_effort_and_capped_max_tokens() {
    let up = FakeOpenAi::start().await;
    let s = Scratch::new();
    s.write_config(&format!(
        "{{ models: {{ providers: {{ {} }} }}, agents: {{ defaults: {{ model: 'local/r1' }} }} }}",
        provider_json(
            "local",
            &format!("{}/", up.base_url()),
            "r1",
            ", reasoning: true, input: ['text', 'image'], contextWindow: 100000, maxTokens: 64000"
        )
    ));
    up.push(Reply::text("ok").with_reasoning("thinking hard"));
    let rt = s.runtime();
    let mut session = idlehands_agent::Session::open(
        rt.clone(),
        idlehands_agent::SessionOptions {
            workspace: s.workspace(),
            thinking: Some(idlehands_agent::ThinkingLevel::High),
            ..Default::default()
        },
    )
    .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let input = UserInput {
        text: "what is this?".into(),
        images: vec![idlehands_agent::Image {
            mime_type: "image/png".into(),
            data_base64: "iVBORw0KGgo=".into(),
        }],
    };
    let out = session
        .run_turn(input, &tx, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(out.reasoning, "thinking hard");
    let body = up.last_request().unwrap().body;
    assert_eq!(body["messages"][0]["role"], "developer");
    assert_eq!(body["reasoning_effort"], "high");
    assert_eq!(body["max_completion_tokens"], 32000);
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert!(body.get("store").is_none());
    assert_eq!(body["tools"][0]["type"], "function");
    let names: Vec<&str> = body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["read", "write", "edit", "exec", "process", "grep", "glob"]
    );
    let user = &body["messages"][1]["content"];
    assert_eq!(user[0], json!({"type": "text", "text": "what is this?"}));
    assert_eq!(
        user[1]["image_url"]["url"],
        "data:image/png;base64,iVBORw0KGgo="
    );
    let events = collect(&mut rx);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, AgentEvent::ReasoningDelta { text } if text == "thinking hard"))
    );
}

#[tokio::test]
async fn litellm_cost_header_is_reported_per_turn() {
    let sse = [
        r#"data:{"choices":[{"index":0,"delta":{"content":"priced"}}]}"#,
        r#"data:{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
        r#"data:{"choices":[],"usage":{"prompt_tokens":11,"completion_tokens":3,"total_tokens":14,"prompt_tokens_details":{"cached_tokens":4}}}"#,
        "data:[DONE]",
    ]
    .join("\n\n")
        + "\n\n";
    let (base, _task) = raw_server(
        200,
        vec![
            ("content-type".into(), "text/event-stream".into()),
            ("x-litellm-response-cost".into(), "0.000123".into()),
        ],
        sse,
    )
    .await;
    let s = Scratch::new();
    s.write_config(&format!(
        "{{ models: {{ providers: {{ {} }} }}, agents: {{ defaults: {{ model: 'litellm/x' }} }} }}",
        provider_json("litellm", &base, "x", "")
    ));
    let rt = s.runtime();
    let mut session = s.session(&rt, None);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let out = session
        .run_turn(UserInput::text("hi"), &tx, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(out.text, "priced");
    assert_eq!(out.usage.cost_nanos, Some(123_000));
    assert_eq!(out.usage.input, 7);
    assert_eq!(out.usage.cache_read, 4);
    let events = collect(&mut rx);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, AgentEvent::TurnEnd { cost_usd: Some(c), .. } if c == "0.000123"))
    );
}

#[tokio::test]
async fn stream_with_tool_calls_but_no_finish_reason_still_runs_the_tool() {
    let tool_turn = [
        r#"data:{"choices":[{"index":0,"delta":{"role":"assistant","tool_calls":[]}}]}"#,
        r#"data:{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c1","type":"function","function":{"name":"glob","arguments":"{\"pattern\":"}}]}}]}"#,
        r#"data:{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"*.md\"}"}}]}}]}"#,
        "data:[DONE]",
    ]
    .join("\n\n")
        + "\n\n";
    let (base, _task) = raw_server(
        200,
        vec![("content-type".into(), "text/event-stream".into())],
        tool_turn,
    )
    .await;
    let s = Scratch::new();
    std::fs::write(s.workspace().join("README.md"), "x").unwrap();
    // The raw server answers every call the same way; the first call proves the point, so the
    // loop is stopped by cancelling once the tool has run.
    s.write_config(&format!(
        "{{ models: {{ providers: {{ {} }} }}, agents: {{ defaults: {{ model: 'p/x' }} }} }}",
        provider_json("p", &base, "x", "")
    ));
    let rt = s.runtime();
    let mut session = s.session(&rt, None);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    let c2 = cancel.clone();
    let watcher = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(e) = rx.recv().await {
            if matches!(e, AgentEvent::ToolResult { .. }) {
                c2.cancel();
            }
            seen.push(e);
        }
        seen
    });
    let err = session
        .run_turn(UserInput::text("list docs"), &tx, &cancel)
        .await
        .unwrap_err();
    assert!(matches!(err, AgentError::Aborted));
    drop(tx);
    drop(session);
    let seen = watcher.await.unwrap();
    assert!(seen.iter().any(|e| matches!(e, AgentEvent::ToolResult { name, ok: true, summary, .. } if name == "glob" && summary.contains("1 files"))));
}

#[tokio::test]
async fn a_server_that_ignores_stream_true_still_works() {
    let body = json!({
        "id": "x", "object": "chat.completion", "model": "x",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "plain json reply"}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    });
    let (base, _task) = raw_server(
        200,
        vec![("content-type".into(), "application/json".into())],
        body.to_string(),
    )
    .await;
    let s = Scratch::new();
    s.write_config(&format!(
        "{{ models: {{ providers: {{ {} }} }}, agents: {{ defaults: {{ model: 'p/x' }} }} }}",
        provider_json("p", &base, "x", "")
    ));
    let rt = s.runtime();
    let mut session = s.session(&rt, None);
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let out = session
        .run_turn(UserInput::text("hi"), &tx, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(out.text, "plain json reply");
    assert_eq!(out.usage.total_tokens, 8);
}

#[tokio::test]
async fn run_headless_answers_and_times_out() {
    let up = FakeOpenAi::start().await;
    let s = Scratch::new();
    s.write_config(&format!(
        "{{ models: {{ providers: {{ {} }} }}, agents: {{ defaults: {{ model: 'local/m1' }} }} }}",
        provider_json("local", &up.base_url(), "m1", "")
    ));
    up.push(Reply::text("headless ok"));
    up.push(Reply::text("too late").with_delay(Duration::from_secs(60)));
    let opts = || idlehands_agent::SessionOptions {
        session_id: Some("anton-impl-1".into()),
        workspace: s.workspace(),
        extra_system_prompt: Some("Your working directory is: here".into()),
        ..Default::default()
    };
    let out = idlehands_agent::run_headless(
        s.runtime(),
        opts(),
        UserInput::text("task"),
        Duration::from_secs(60),
        None,
    )
    .await
    .unwrap();
    assert_eq!(out.text, "headless ok");
    let sys = up.last_request().unwrap().body["messages"][0]["content"].clone();
    assert!(
        sys.as_str()
            .unwrap()
            .ends_with("Your working directory is: here\n")
    );
    let err = idlehands_agent::run_headless(
        s.runtime(),
        opts(),
        UserInput::text("task 2"),
        Duration::from_millis(300),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(err.to_string(), "Agent call timed out after 0s");
}

/// Through `idlehands proxy` (or OpenRouter) a stream carries its final cost as `usage.cost`;
/// that figure wins over a header sent before the cost was known.
#[tokio::test]
async fn streamed_usage_cost_is_the_turn_cost() {
    let sse = [
        r#"data:{"choices":[{"index":0,"delta":{"content":"priced"}}]}"#,
        r#"data:{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
        r#"data:{"choices":[],"usage":{"prompt_tokens":11,"completion_tokens":3,"total_tokens":14,"cost":0.00042}}"#,
        "data:[DONE]",
    ]
    .join("\n\n")
        + "\n\n";
    let (base, _task) = raw_server(
        200,
        vec![
            ("content-type".into(), "text/event-stream".into()),
            ("x-litellm-response-cost".into(), "0.0".into()),
        ],
        sse,
    )
    .await;
    let s = Scratch::new();
    s.write_config(&format!(
        "{{ models: {{ providers: {{ {} }} }}, agents: {{ defaults: {{ model: 'litellm/x' }} }} }}",
        provider_json("litellm", &base, "x", "")
    ));
    let rt = s.runtime();
    let mut session = s.session(&rt, None);
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..2 {
        session
            .run_turn(UserInput::text("hi"), &tx, &CancellationToken::new())
            .await
            .unwrap();
    }
    assert_eq!(session.totals.cost_nanos, Some(840_000));
}
