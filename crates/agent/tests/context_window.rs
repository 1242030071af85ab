//! The context window comes from the server when the config does not set it (llama-server,
//! vLLM, Ollama, LM Studio, a LiteLLM-style gateway), and bounds what a request carries:
//! tool output cut to fit with a marker, the output allowance sized to what is left.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use idlehands_agent::agent::AgentEvent;
use idlehands_agent::{CancellationToken, ModelRef, UserInput};
use idlehands_testkit::replay::{FakeLlamaServer, MODEL};
use idlehands_testkit::{FakeOpenAi, Reply};
use serde_json::{Value, json};

fn config_for(s: &Scratch, provider: &str, base: &str, model: &str, extra: &str) {
    s.write_config(&format!(
        "{{ models: {{ providers: {{ {} }} }}, agents: {{ defaults: {{ model: {{ primary: '{provider}/{model}' }} }} }} }}",
        provider_json(provider, base, model, extra)
    ));
}

type Routes = Vec<(&'static str, String)>;

/// The window `rt` learns for `provider/model`, and where from.
async fn learnt(s: &Scratch, provider: &str, model: &str) -> (u64, String) {
    let rt = s.runtime();
    let m = rt
        .registry
        .resolve(&ModelRef::new(provider, model))
        .unwrap();
    rt.context_window(&m).await
}

#[tokio::test]
async fn llama_servers_n_ctx_bounds_the_output_allowance() {
    let server = FakeLlamaServer::start().await;
    let s = Scratch::new();
    config_for(&s, "llamacpp", &server.base_url(), MODEL, "");
    let rt = s.runtime();
    let mut session = s.session(&rt, None);
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let out = session
        .run_turn(UserInput::text("hi"), &tx, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(out.text, "Hello! How can I assist you today?");
    // The captured `/v1/models` says n_ctx 2048 (no /props on the fake: a 404 is skipped).
    assert_eq!(session.context_window(), Some(2048));
    assert_eq!(
        session.context_window_source(),
        "llama-server /v1/models meta.n_ctx"
    );
    // The same list says 0.6B parameters: a small model, so the minimal tool profile.
    let (profile, why) = session.tool_profile();
    assert_eq!(profile, idlehands_agent::tools::ToolProfile::Minimal);
    assert_eq!(
        why,
        "llama-server /v1/models meta.n_params: 0.6B parameters"
    );
    let body = &server.requests()[0].body;
    let tools: Vec<&str> = body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(tools, ["read", "write", "edit", "exec"]);
    let max = body["max_completion_tokens"].as_u64().unwrap();
    // Even the short prompt and tool list of the minimal profile take over 200 tokens.
    assert!(max < 2048 - 200, "max_completion_tokens {max}");
    assert!(max >= 256, "max_completion_tokens {max}");
}

#[tokio::test]
async fn each_local_servers_own_route_is_read() {
    // (server, its routes, window, source, the request that told it)
    type Case = (&'static str, Routes, u64, &'static str, &'static str);
    let cases: Vec<Case> = vec![
        (
            "llama-server",
            vec![(
                "GET /props",
                json!({"default_generation_settings": {"n_ctx": 32768, "n_predict": -1}, "total_slots": 1, "model_path": "/m/q.gguf"}).to_string(),
            )],
            32768,
            "llama-server /props n_ctx",
            "GET /props",
        ),
        (
            "vllm",
            vec![(
                "GET /v1/models",
                json!({"object": "list", "data": [{"id": "m1", "object": "model", "created": 1, "owned_by": "vllm", "root": "Qwen/Qwen3-8B", "parent": null, "max_model_len": 40960, "permission": []}]}).to_string(),
            )],
            40960,
            "vLLM /v1/models max_model_len",
            "GET /v1/models",
        ),
        (
            "lmstudio",
            vec![
                ("GET /v1/models", json!({"object": "list", "data": [{"id": "m1", "object": "model", "owned_by": "organization_owner"}]}).to_string()),
                ("GET /api/v0/models/m1", json!({"id": "m1", "object": "model", "type": "llm", "arch": "qwen2", "compatibility_type": "gguf", "quantization": "Q4_K_M", "state": "loaded", "max_context_length": 32768, "loaded_context_length": 8192}).to_string()),
            ],
            8192,
            "LM Studio /api/v0/models loaded_context_length",
            "GET /api/v0/models/m1",
        ),
        (
            "ollama",
            vec![
                ("GET /v1/models", json!({"object": "list", "data": [{"id": "m1", "object": "model", "created": 1, "owned_by": "library"}]}).to_string()),
                ("POST /api/show", json!({"modelfile": "FROM m1", "parameters": "num_ctx                        16384\nstop                           \"<|im_end|>\"", "template": "{{ .Prompt }}", "details": {"family": "qwen2"}, "model_info": {"general.architecture": "qwen2", "qwen2.context_length": 32768}}).to_string()),
            ],
            16384,
            "Ollama /api/show num_ctx",
            "POST /api/show {\"model\":\"m1\"}",
        ),
        (
            "gateway",
            vec![
                ("GET /v1/models", json!({"object": "list", "data": [{"id": "m1", "object": "model", "created": 1, "owned_by": "openai"}]}).to_string()),
                ("GET /model/info", json!({"data": [{"model_name": "m1", "litellm_params": {"model": "openai/gpt-4o"}, "model_info": {"max_input_tokens": 128000, "max_tokens": 16384}}]}).to_string()),
            ],
            128000,
            "gateway /model/info max_input_tokens",
            "GET /model/info",
        ),
    ];
    for (what, routes, want, source, asked) in cases {
        let (base, log, _task) = routed_server(routes).await;
        let s = Scratch::new();
        config_for(&s, "local", &format!("{base}/v1"), "m1", "");
        assert_eq!(
            learnt(&s, "local", "m1").await,
            (want, source.to_string()),
            "{what}"
        );
        assert!(
            log.lock().iter().any(|l| l == asked),
            "{what}: {:?}",
            log.lock()
        );
    }
}

#[tokio::test]
async fn config_wins_and_nothing_is_asked() {
    let (base, log, _task) = routed_server(vec![(
        "GET /props",
        json!({"default_generation_settings": {"n_ctx": 4096}}).to_string(),
    )])
    .await;
    let s = Scratch::new();
    config_for(
        &s,
        "local",
        &format!("{base}/v1"),
        "m1",
        ", contextWindow: 65536",
    );
    assert_eq!(
        learnt(&s, "local", "m1").await,
        (65536, "config".to_string())
    );
    assert!(log.lock().is_empty(), "{:?}", log.lock());

    // A server that says nothing leaves the default, named as such.
    let (base, _log, _task) = routed_server(Vec::new()).await;
    let s = Scratch::new();
    config_for(&s, "local", &format!("{base}/v1"), "m1", "");
    assert_eq!(
        learnt(&s, "local", "m1").await,
        (200_000, "default".to_string())
    );
}

#[tokio::test]
async fn a_huge_tool_output_is_cut_to_fit_with_head_tail_and_a_marker() {
    let up = FakeOpenAi::start().await;
    let s = Scratch::new();
    config_for(&s, "local", &up.base_url(), "m1", ", contextWindow: 16000");
    up.push(Reply::tool_call(
        "call_x",
        "exec",
        json!({"command": "seq 1 30000"}),
    ));
    up.push(Reply::text("Counted."));
    let rt = s.runtime();
    let mut session = s.session(&rt, None);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let out = session
        .run_turn(UserInput::text("count"), &tx, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(out.text, "Counted.");
    assert_eq!(session.context_window_source(), "config");
    let events = collect(&mut rx);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, AgentEvent::ToolResult { ok: true, .. }))
    );
    let reqs = up.requests();
    let tool = reqs[1].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .cloned()
        .unwrap();
    let text = match &tool["content"] {
        Value::String(t) => t.clone(),
        other => other.to_string(),
    };
    // `seq 1 30000` prints 168,894 characters; a 16000-token window leaves far less room.
    assert!(text.len() < 16_000 * 3, "{} characters sent", text.len());
    assert!(text.starts_with("1\n2\n3\n"), "{}", &text[..40]);
    assert!(text.contains("29999\n30000"), "the tail is kept");
    assert!(
        text.contains("characters cut here to fit the model's context window"),
        "the marker says so"
    );
    // What was sent fits: the second request's allowance is what the window leaves.
    let max = reqs[1].body["max_completion_tokens"].as_u64().unwrap();
    assert!(max <= 16_000 - (text.len() as u64 / 4), "{max}");
}
