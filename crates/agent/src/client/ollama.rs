//! Ollama's native API (`api: "ollama"`): `POST <root>/api/chat`, streamed as NDJSON. Its
//! OpenAI-compatible endpoint ignores a context length set by the client and runs with the
//! server's default `num_ctx`; here `options.num_ctx` carries the window the user configured
//! (or the server reported), so long sessions are not silently truncated by Ollama.
//!
//! The request reuses the chat-completions message builder and reshapes it (string content
//! with an `images` list, tool-call arguments as objects, `tool_name` on results); each NDJSON
//! line is rewritten as a chat-completions chunk for [`StreamParser`], so reasoning, inline
//! `<think>` tags and tool calls are handled in one place.

use serde_json::{Map, Value, json};

use super::request::{CompletionRequest, build_messages};
use super::{ClientError, FailureKind};
use crate::models::ResolvedModel;
use crate::thinking::ThinkingLevel;

/// `<root>/api/chat`, the base URL taken with or without `/v1`.
pub fn chat_url(base_url: &str) -> String {
    format!("{}/api/chat", super::discovery::server_root(base_url))
}

/// The `/api/chat` body. `num_ctx` is the context window when one is known.
pub fn build_body(model: &ResolvedModel, req: &CompletionRequest, num_ctx: Option<u64>) -> Value {
    let openai = build_messages(model, req);
    let mut names: Map<String, Value> = Map::new();
    let mut messages = Vec::new();
    for m in openai {
        let role = m["role"].as_str().unwrap_or("user");
        let role = if role == "developer" { "system" } else { role };
        let mut out = Map::new();
        out.insert("role".into(), json!(role));
        let mut text = String::new();
        let mut images = Vec::new();
        match &m["content"] {
            Value::String(s) => text.push_str(s),
            Value::Array(parts) => {
                for p in parts {
                    if let Some(t) = p["text"].as_str() {
                        if !text.is_empty() {
                            text.push('\n');
                        }
                        text.push_str(t);
                    } else if let Some(url) = p.pointer("/image_url/url").and_then(Value::as_str) {
                        // Ollama takes bare base64, not data URIs.
                        images.push(json!(url.split_once(',').map_or(url, |(_, d)| d)));
                    }
                }
            }
            _ => {}
        }
        out.insert("content".into(), json!(text));
        if !images.is_empty() {
            out.insert("images".into(), Value::Array(images));
        }
        if let Some(calls) = m["tool_calls"].as_array() {
            let calls: Vec<Value> = calls
                .iter()
                .map(|c| {
                    let name = c.pointer("/function/name").cloned().unwrap_or(Value::Null);
                    if let Some(id) = c["id"].as_str() {
                        names.insert(id.to_string(), name.clone());
                    }
                    let args = c
                        .pointer("/function/arguments")
                        .and_then(Value::as_str)
                        .and_then(|a| serde_json::from_str::<Value>(a).ok())
                        .unwrap_or_else(|| json!({}));
                    json!({"function": {"name": name, "arguments": args}})
                })
                .collect();
            out.insert("tool_calls".into(), Value::Array(calls));
        }
        if role == "tool"
            && let Some(name) = m["tool_call_id"].as_str().and_then(|id| names.get(id))
        {
            out.insert("tool_name".into(), name.clone());
        }
        messages.push(Value::Object(out));
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(model.id));
    body.insert("messages".into(), Value::Array(messages));
    body.insert("stream".into(), json!(true));
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}))
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    let mut options = Map::new();
    if let Some(n) = num_ctx {
        options.insert("num_ctx".into(), json!(n));
    }
    let max = req
        .max_tokens
        .unwrap_or(model.max_tokens)
        .min(model.max_tokens)
        .min(req.output_room.unwrap_or(u64::MAX));
    options.insert("num_predict".into(), json!(max));
    if let Some(t) = model.params.get("temperature").filter(|t| t.is_number()) {
        options.insert("temperature".into(), t.clone());
    }
    body.insert("options".into(), Value::Object(options));
    if model.reasoning {
        body.insert("think".into(), json!(req.thinking != ThinkingLevel::Off));
    }
    Value::Object(body)
}

/// Rewrites Ollama's NDJSON lines as chat-completions chunks.
#[derive(Debug, Default)]
pub struct LineTranslator {
    calls: u32,
}

impl LineTranslator {
    /// One NDJSON line as the `data` of an SSE chunk; `None` for a blank line.
    pub fn chunk(&mut self, line: &str) -> Result<Option<String>, ClientError> {
        let line = line.trim();
        if line.is_empty() {
            return Ok(None);
        }
        let v: Value = serde_json::from_str(line).map_err(|e| {
            ClientError::new(
                FailureKind::Transient,
                format!("invalid stream line from Ollama: {e}"),
            )
        })?;
        if let Some(e) = v.get("error") {
            let message = e.as_str().map_or_else(|| e.to_string(), str::to_string);
            return Ok(Some(json!({"error": {"message": message}}).to_string()));
        }
        let msg = &v["message"];
        let mut delta = Map::new();
        if let Some(c) = msg["content"].as_str().filter(|c| !c.is_empty()) {
            delta.insert("content".into(), json!(c));
        }
        if let Some(t) = msg["thinking"].as_str().filter(|t| !t.is_empty()) {
            delta.insert("reasoning".into(), json!(t));
        }
        if let Some(calls) = msg["tool_calls"].as_array() {
            let mut out = Vec::new();
            for c in calls {
                let index = self.calls;
                self.calls += 1;
                let args = c
                    .pointer("/function/arguments")
                    .cloned()
                    .unwrap_or(json!({}));
                let args = match args {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                out.push(json!({
                    "index": index,
                    "id": format!("call_{}", uuid::Uuid::new_v4().simple()),
                    "type": "function",
                    "function": {"name": c.pointer("/function/name").cloned().unwrap_or(Value::Null), "arguments": args},
                }));
            }
            delta.insert("tool_calls".into(), Value::Array(out));
        }
        let done = v["done"].as_bool() == Some(true);
        let finish = done.then(|| match v["done_reason"].as_str() {
            Some("length") => "length",
            _ if self.calls > 0 => "tool_calls",
            _ => "stop",
        });
        let mut chunk = json!({
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        });
        if done {
            let p = v["prompt_eval_count"].as_u64().unwrap_or(0);
            let c = v["eval_count"].as_u64().unwrap_or(0);
            chunk["usage"] =
                json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c});
        }
        Ok(Some(chunk.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::StreamParser;
    use crate::message::StopReason;

    fn parse(lines: &[&str]) -> crate::client::ParsedTurn {
        let mut t = LineTranslator::default();
        let mut p = StreamParser::new();
        for l in lines {
            if let Some(c) = t.chunk(l).unwrap_or_else(|e| panic!("{e}")) {
                p.push_data(&c).unwrap_or_else(|e| panic!("{e}"));
            }
        }
        p.finish(false).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn text_thinking_and_usage_are_read() {
        let t = parse(&[
            r#"{"model":"qwen3:8b","created_at":"2026-01-01T00:00:00Z","message":{"role":"assistant","content":"","thinking":"Greet back."},"done":false}"#,
            r#"{"model":"qwen3:8b","created_at":"2026-01-01T00:00:00Z","message":{"role":"assistant","content":"Hi"},"done":false}"#,
            r#"{"model":"qwen3:8b","created_at":"2026-01-01T00:00:00Z","message":{"role":"assistant","content":"!"},"done":false}"#,
            r#"{"model":"qwen3:8b","created_at":"2026-01-01T00:00:00Z","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","total_duration":1,"load_duration":1,"prompt_eval_count":26,"prompt_eval_duration":1,"eval_count":5,"eval_duration":1}"#,
        ]);
        assert_eq!(t.text, "Hi!");
        assert_eq!(t.reasoning, "Greet back.");
        assert_eq!(t.stop_reason, StopReason::Stop);
        assert_eq!(
            t.usage.map(|u| (u.prompt_tokens, u.completion_tokens)),
            Some((26, 5))
        );
    }

    #[test]
    fn whole_tool_calls_in_separate_lines_stay_separate() {
        let t = parse(&[
            r#"{"model":"m","created_at":"x","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"read","arguments":{"path":"a"}}}]},"done":false}"#,
            r#"{"model":"m","created_at":"x","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"read","arguments":{"path":"b"}}}]},"done":false}"#,
            r#"{"model":"m","created_at":"x","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":3,"eval_count":2}"#,
        ]);
        assert_eq!(t.stop_reason, StopReason::ToolUse);
        assert_eq!(t.tool_calls.len(), 2);
        assert_eq!(t.tool_calls[1].2, json!({"path": "b"}));
    }

    #[test]
    fn an_error_line_is_an_error() {
        let mut t = LineTranslator::default();
        let c = t
            .chunk(r#"{"error":"model requires more system memory (5.6 GiB) than is available (1.2 GiB)"}"#)
            .unwrap_or_default()
            .unwrap_or_default();
        let e = StreamParser::new().push_data(&c).err();
        assert!(e.is_some_and(|e| e.message.contains("more system memory")));
    }
}
