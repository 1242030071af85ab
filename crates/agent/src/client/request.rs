//! The `/chat/completions` request body built from the agent's history.

use serde_json::{Map, Value, json};

use crate::message::{AgentMessage, ContentBlock, StopReason};
use crate::models::ResolvedModel;
use crate::thinking::ThinkingLevel;

/// A tool as offered to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub parameters: Value,
}

#[derive(Debug, Clone, Default)]
pub struct CompletionRequest {
    pub system_prompt: String,
    pub messages: Vec<AgentMessage>,
    pub tools: Vec<ToolSpec>,
    pub thinking: ThinkingLevel,
    /// Overrides the model's `maxTokens`.
    pub max_tokens: Option<u64>,
    /// Output tokens the context window leaves after this prompt; caps the allowance.
    pub output_room: Option<u64>,
    /// A stable number for the session, for llama-server slot affinity.
    pub session_key: Option<u64>,
    /// The session's id, sent as `x-litellm-session-id` so a LiteLLM-style gateway groups
    /// the session's calls (its Logs page, `/spend/logs/session/ui`); servers ignore it.
    pub session_id: Option<String>,
    /// The context window the config or the server gave (not the built-in default); Ollama's
    /// native API is told it as `num_ctx`.
    pub context_window: Option<u64>,
}

/// Output tokens asked for when the caller does not say: the model's limit, at most 32000.
pub const MAX_TOKENS_CAP: u64 = 32_000;

fn uses_developer_role(model: &ResolvedModel) -> bool {
    model.reasoning && model.compat.supports_developer_role.unwrap_or(true)
}

/// `store` is only sent where it is known to be accepted: LiteLLM routing to Anthropic
/// rejects it as an extra input, so this build sends it for api.openai.com only unless the
/// model's `compat.supportsStore` says otherwise.
fn sends_store(model: &ResolvedModel) -> bool {
    model
        .compat
        .supports_store
        .unwrap_or_else(|| model.base_url.contains("api.openai.com"))
}

pub fn build_body(model: &ResolvedModel, req: &CompletionRequest) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(model.id));
    body.insert("messages".into(), Value::Array(build_messages(model, req)));
    body.insert("stream".into(), json!(true));
    if model.compat.supports_usage_in_streaming.unwrap_or(true) {
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if sends_store(model) {
        body.insert("store".into(), json!(false));
    }
    let param_max = model
        .params
        .get("maxTokens")
        .and_then(Value::as_u64)
        .filter(|n| *n > 0);
    let max = req
        .max_tokens
        .or(param_max)
        .unwrap_or(model.max_tokens.min(MAX_TOKENS_CAP))
        .min(model.max_tokens)
        .min(req.output_room.unwrap_or(u64::MAX));
    let field = match model.compat.max_tokens_field {
        Some(crate::config::MaxTokensField::MaxTokens) => "max_tokens",
        _ => "max_completion_tokens",
    };
    body.insert(field.into(), json!(max));
    if let Some(t) = model.params.get("temperature").filter(|t| t.is_number()) {
        body.insert("temperature".into(), t.clone());
    }
    let strict = model.compat.supports_strict_mode.unwrap_or(true);
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let mut f = json!({"name": t.name, "description": t.description, "parameters": t.parameters});
                if strict {
                    f["strict"] = json!(false);
                }
                json!({"type": "function", "function": f})
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    } else if history_has_tool_calls(&req.messages) {
        // LiteLLM translating to Anthropic needs the key when the history holds tool calls.
        body.insert("tools".into(), json!([]));
    }
    match model.compat.thinking_format.as_deref() {
        // Qwen3 chat templates (vLLM, llama-server, SGLang) read this switch; off is sent too,
        // since these models think unless told not to.
        Some("qwen") => {
            body.insert(
                "chat_template_kwargs".into(),
                json!({"enable_thinking": req.thinking != ThinkingLevel::Off}),
            );
        }
        // Z.ai (GLM) takes a thinking object instead of an effort.
        Some("zai") => {
            body.insert(
                "thinking".into(),
                json!({"type": if req.thinking == ThinkingLevel::Off { "disabled" } else { "enabled" }}),
            );
        }
        _ => {
            if model.reasoning
                && model.compat.supports_reasoning_effort.unwrap_or(true)
                && let Some(effort) = req.thinking.reasoning_effort()
            {
                body.insert("reasoning_effort".into(), json!(effort));
            }
        }
    }
    // llama-server: the same slot for every call of a session keeps its KV cache warm.
    if let (Some(slots), Some(key)) = (model.slot_count, req.session_key) {
        body.insert("id_slot".into(), json!(key % slots.max(1)));
        body.insert("cache_prompt".into(), json!(true));
    }
    Value::Object(body)
}

fn history_has_tool_calls(messages: &[AgentMessage]) -> bool {
    messages.iter().any(|m| match m {
        AgentMessage::Assistant(a) => !a.tool_calls().is_empty(),
        AgentMessage::ToolResult { .. } => true,
        _ => false,
    })
}

/// Every tool call answered exactly once, right after its assistant message: a result missing
/// (the process died mid-tool) gets a stand-in, a result without its call is dropped.
/// Providers reject the request otherwise, which would make such a session unresumable.
pub fn paired(messages: &[AgentMessage]) -> Vec<AgentMessage> {
    let mut out: Vec<AgentMessage> = Vec::with_capacity(messages.len());
    let mut i = 0;
    while i < messages.len() {
        let m = &messages[i];
        i += 1;
        match m {
            AgentMessage::ToolResult { .. } => {}
            AgentMessage::Assistant(a) if !a.tool_calls().is_empty() => {
                out.push(m.clone());
                let mut results = Vec::new();
                while let Some(r @ AgentMessage::ToolResult { .. }) = messages.get(i) {
                    results.push(r);
                    i += 1;
                }
                for (id, name, _) in a.tool_calls() {
                    let found = results.iter().find(|r| {
                        matches!(r, AgentMessage::ToolResult { tool_call_id, .. } if tool_call_id == id)
                    });
                    match found {
                        Some(r) => out.push((*r).clone()),
                        None => out.push(AgentMessage::ToolResult {
                            tool_call_id: id.to_string(),
                            tool_name: name.to_string(),
                            content: vec![ContentBlock::Text {
                                text: "Tool execution was interrupted before it returned a result."
                                    .into(),
                            }],
                            is_error: true,
                            timestamp: a.timestamp,
                        }),
                    }
                }
            }
            other => out.push(other.clone()),
        }
    }
    out
}

fn data_uri(mime: &str, data: &str) -> String {
    format!("data:{mime};base64,{data}")
}

/// Tool-call ids of the form `call|item` keep the part before `|`, cut to 40 characters.
fn normalize_call_id(id: &str) -> String {
    let base = id.split('|').next().unwrap_or(id);
    let clean: String = base
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(40)
        .collect();
    if clean.is_empty() {
        "call".into()
    } else {
        clean
    }
}

pub fn build_messages(model: &ResolvedModel, req: &CompletionRequest) -> Vec<Value> {
    let mut out = Vec::new();
    if !req.system_prompt.is_empty() {
        let role = if uses_developer_role(model) {
            "developer"
        } else {
            "system"
        };
        out.push(json!({"role": role, "content": req.system_prompt}));
    }
    let images_ok = model.accepts_images();
    let name_on_results = model.compat.requires_tool_result_name.unwrap_or(false);
    // Images from tool results follow the whole run of tool messages: a user message between
    // two tool results would break the assistant/tool pairing.
    let mut pending_images: Vec<Value> = Vec::new();
    let flush = |out: &mut Vec<Value>, pending: &mut Vec<Value>| {
        if !pending.is_empty() {
            let mut parts =
                vec![json!({"type": "text", "text": "Attached image(s) from tool result:"})];
            parts.append(pending);
            out.push(json!({"role": "user", "content": parts}));
        }
    };
    for m in &paired(&req.messages) {
        if !matches!(m, AgentMessage::ToolResult { .. }) {
            flush(&mut out, &mut pending_images);
        }
        match m {
            AgentMessage::User { content, .. } => {
                let mut parts = Vec::new();
                for b in content {
                    match b {
                        ContentBlock::Text { text } if !text.is_empty() => {
                            parts.push(json!({"type": "text", "text": text}));
                        }
                        ContentBlock::Image { data, mime_type } if images_ok => parts.push(
                            json!({"type": "image_url", "image_url": {"url": data_uri(mime_type, data)}}),
                        ),
                        _ => {}
                    }
                }
                match parts.as_slice() {
                    [] => {}
                    [one] if one["type"] == "text" => {
                        out.push(json!({"role": "user", "content": one["text"]}));
                    }
                    _ => out.push(json!({"role": "user", "content": parts})),
                }
            }
            AgentMessage::Assistant(a) => {
                let calls = a.tool_calls();
                if matches!(a.stop_reason, StopReason::Error | StopReason::Aborted)
                    && calls.is_empty()
                {
                    continue;
                }
                let text = a.text();
                let mut msg = Map::new();
                msg.insert("role".into(), json!("assistant"));
                if model.compat.requires_thinking_as_text.unwrap_or(false) {
                    let r = a.reasoning();
                    let joined = if r.is_empty() {
                        text.clone()
                    } else {
                        format!("{r}\n\n{text}")
                    };
                    msg.insert(
                        "content".into(),
                        if joined.is_empty() {
                            Value::Null
                        } else {
                            json!(joined)
                        },
                    );
                } else {
                    msg.insert(
                        "content".into(),
                        if text.is_empty() {
                            Value::Null
                        } else {
                            json!(text)
                        },
                    );
                    for b in &a.content {
                        if let ContentBlock::Thinking {
                            thinking,
                            signature: Some(field),
                        } = b
                        {
                            let entry = msg.entry(field.clone()).or_insert_with(|| json!(""));
                            let joined = match entry.as_str() {
                                Some("") | None => thinking.clone(),
                                Some(prev) => format!("{prev}\n{thinking}"),
                            };
                            *entry = json!(joined);
                        }
                    }
                }
                if !calls.is_empty() {
                    let tc: Vec<Value> = calls
                        .iter()
                        .map(|(id, name, args)| {
                            let args = match args {
                                Value::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            json!({"id": normalize_call_id(id), "type": "function", "function": {"name": name, "arguments": args}})
                        })
                        .collect();
                    msg.insert("tool_calls".into(), Value::Array(tc));
                }
                if msg.get("content").is_some_and(Value::is_null) && !msg.contains_key("tool_calls")
                {
                    continue;
                }
                out.push(Value::Object(msg));
            }
            AgentMessage::ToolResult {
                tool_call_id,
                tool_name,
                content,
                ..
            } => {
                let text: Vec<&str> = content
                    .iter()
                    .filter_map(|b| match b {
                        ContentBlock::Text { text } => Some(text.as_str()),
                        _ => None,
                    })
                    .collect();
                let images: Vec<Value> = content
                    .iter()
                    .filter_map(|b| match b {
                        ContentBlock::Image { data, mime_type } if images_ok => Some(
                            json!({"type": "image_url", "image_url": {"url": data_uri(mime_type, data)}}),
                        ),
                        _ => None,
                    })
                    .collect();
                let body = if text.is_empty() && !images.is_empty() {
                    "(see attached image)".to_string()
                } else {
                    text.join("\n")
                };
                let mut msg = json!({"role": "tool", "tool_call_id": normalize_call_id(tool_call_id), "content": body});
                if name_on_results {
                    msg["name"] = json!(tool_name);
                }
                out.push(msg);
                pending_images.extend(images);
            }
        }
    }
    flush(&mut out, &mut pending_images);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{AssistantMessage, TokenUsage};

    fn call(id: &str) -> AgentMessage {
        AgentMessage::Assistant(AssistantMessage {
            content: vec![ContentBlock::ToolCall {
                id: id.into(),
                name: "exec".into(),
                arguments: json!({}),
            }],
            provider: "p".into(),
            model: "m".into(),
            usage: TokenUsage::default(),
            stop_reason: StopReason::ToolUse,
            error_message: None,
            timestamp: 0,
        })
    }

    fn result(id: &str) -> AgentMessage {
        AgentMessage::ToolResult {
            tool_call_id: id.into(),
            tool_name: "exec".into(),
            content: vec![ContentBlock::Text { text: "r".into() }],
            is_error: false,
            timestamp: 0,
        }
    }

    #[test]
    fn dangling_calls_get_stand_in_results_and_orphans_are_dropped() {
        let user = AgentMessage::User {
            content: vec![ContentBlock::Text { text: "u".into() }],
            timestamp: 0,
        };
        let fixed = paired(&[
            result("orphan"),
            call("a"),
            user.clone(),
            call("b"),
            result("b"),
        ]);
        let ids: Vec<String> = fixed
            .iter()
            .map(|m| match m {
                AgentMessage::User { .. } => "user".into(),
                AgentMessage::Assistant(_) => "call".into(),
                AgentMessage::ToolResult {
                    tool_call_id,
                    is_error,
                    ..
                } => {
                    format!("result:{tool_call_id}:{is_error}")
                }
            })
            .collect();
        assert_eq!(
            ids,
            ["call", "result:a:true", "user", "call", "result:b:false"]
        );
    }
}
