//! `api: "ollama"`: the agent talks to Ollama's own `/api/chat` (NDJSON), telling it the
//! context window as `options.num_ctx`, with tool calls and results in Ollama's shapes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::*;
use idlehands_agent::{CancellationToken, UserInput};
use parking_lot::Mutex;
use serde_json::{Value, json};

const MODEL: &str = "qwen2.5-coder:7b";

fn ndjson(lines: &[Value]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn line(message: Value, done: bool) -> Value {
    let mut l = json!({"model": MODEL, "created_at": "2026-12-05T12:00:00.000000Z", "message": message, "done": done});
    if done {
        l["done_reason"] = json!("stop");
        l["total_duration"] = json!(1_000_000);
        l["load_duration"] = json!(10_000);
        l["prompt_eval_count"] = json!(26);
        l["prompt_eval_duration"] = json!(100_000);
        l["eval_count"] = json!(7);
        l["eval_duration"] = json!(200_000);
    }
    l
}

/// Answers `/api/chat` for [`MODEL`] with the queued NDJSON bodies in order (and Ollama's
/// not-found error for any other model), `/api/show` with a model that runs at `num_ctx`
/// 8192, and 404 elsewhere, as Ollama does for routes it lacks.
async fn fake_ollama(
    answers: Vec<String>,
) -> (String, Arc<Mutex<Vec<Value>>>, tokio::task::JoinHandle<()>) {
    let chats = Arc::new(Mutex::new(Vec::new()));
    let seen = chats.clone();
    let queue = Arc::new(Mutex::new(std::collections::VecDeque::from(answers)));
    let (base, task) = serve(Arc::new(move |line: &str, body: &[u8]| {
        let json_ct = vec![("content-type".to_string(), "application/json; charset=utf-8".to_string())];
        match line {
            "POST /api/chat" => {
                let req: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                if req["model"] != MODEL {
                    // Ollama's answer for a model that was never pulled.
                    return (
                        404,
                        json_ct,
                        json!({"error": format!("model \"{}\" not found, try pulling it first", req["model"].as_str().unwrap_or(""))}).to_string(),
                    );
                }
                seen.lock().push(req);
                match queue.lock().pop_front() {
                    Some(b) => (
                        200,
                        vec![("content-type".to_string(), "application/x-ndjson".to_string())],
                        b,
                    ),
                    None => (500, json_ct, r#"{"error":"no answer queued"}"#.to_string()),
                }
            }
            "POST /api/show" => (
                200,
                json_ct,
                json!({
                    "modelfile": "FROM qwen2.5-coder:7b",
                    "parameters": "num_ctx                        8192\nstop                           \"<|im_end|>\"",
                    "template": "{{ .Prompt }}",
                    "details": {"format": "gguf", "family": "qwen2", "parameter_size": "7.6B", "quantization_level": "Q4_K_M"},
                    "model_info": {"general.architecture": "qwen2", "qwen2.context_length": 32768},
                    "capabilities": ["completion", "tools"]
                })
                .to_string(),
            ),
            _ => (404, vec![("content-type".to_string(), "text/plain".to_string())], "404 page not found".to_string()),
        }
    }))
    .await;
    (base, chats, task)
}

#[tokio::test]
async fn a_tool_turn_over_ollamas_native_api_honours_num_ctx() {
    let (base, chats, _task) = fake_ollama(vec![
        ndjson(&[
            line(json!({"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "write", "arguments": {"path": "a.txt", "content": "from ollama"}}}]}), false),
            line(json!({"role": "assistant", "content": ""}), true),
        ]),
        ndjson(&[
            line(json!({"role": "assistant", "content": "", "thinking": "It is written."}), false),
            line(json!({"role": "assistant", "content": "Done"}), false),
            line(json!({"role": "assistant", "content": "."}), false),
            line(json!({"role": "assistant", "content": ""}), true),
        ]),
    ])
    .await;
    let s = Scratch::new();
    s.write_config(&format!(
        "{{ models: {{ providers: {{ ollama: {{ baseUrl: '{base}', api: 'ollama', models: [{{ id: '{MODEL}', name: 'Qwen coder' }}] }} }} }}, agents: {{ defaults: {{ model: {{ primary: 'ollama/{MODEL}' }} }} }} }}"
    ));
    let rt = s.runtime();
    let mut session = s.session(&rt, None);
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let out = session
        .run_turn(
            UserInput::text("write a.txt"),
            &tx,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(out.text, "Done.");
    assert_eq!(out.reasoning, "It is written.");
    assert_eq!(out.usage.input, 52);
    assert_eq!(out.usage.output, 14);
    assert_eq!(
        std::fs::read_to_string(s.workspace().join("a.txt")).unwrap(),
        "from ollama"
    );
    assert_eq!(session.context_window_source(), "Ollama /api/show num_ctx");

    let chats = chats.lock().clone();
    assert_eq!(chats.len(), 2);
    for c in &chats {
        assert_eq!(c["model"], MODEL);
        assert_eq!(c["stream"], true);
        assert_eq!(c["options"]["num_ctx"], 8192);
        assert!(c["options"]["num_predict"].as_u64().unwrap() < 8192);
        assert_eq!(c["tools"][0]["type"], "function");
    }
    let msgs = chats[1]["messages"].as_array().unwrap();
    assert_eq!(msgs[0]["role"], "system");
    assert_eq!(msgs[1], json!({"role": "user", "content": "write a.txt"}));
    assert_eq!(
        msgs[2]["tool_calls"][0]["function"],
        json!({"name": "write", "arguments": {"path": "a.txt", "content": "from ollama"}})
    );
    assert_eq!(msgs[3]["role"], "tool");
    assert_eq!(msgs[3]["tool_name"], "write");
    assert!(msgs[3]["content"].as_str().unwrap().contains("a.txt"));
}

#[tokio::test]
async fn ollamas_errors_reach_the_user_with_its_words() {
    let (base, chats, _task) = fake_ollama(Vec::new()).await;
    let s = Scratch::new();
    s.write_config(&format!(
        "{{ models: {{ providers: {{ ollama: {{ baseUrl: '{base}', api: 'ollama', models: [{{ id: 'llama3.2:1b', name: 'l', contextWindow: 16384 }}] }} }} }}, agents: {{ defaults: {{ model: {{ primary: 'ollama/llama3.2:1b' }} }} }} }}"
    ));
    let rt = s.runtime();
    let mut session = s.session(&rt, None);
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let err = session
        .run_turn(UserInput::text("hi"), &tx, &CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "model_not_found", "{err}");
    assert!(
        err.to_string()
            .contains("model \"llama3.2:1b\" not found, try pulling it first"),
        "{err}"
    );
    assert!(chats.lock().is_empty());
}
