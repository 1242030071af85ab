//! Anthropic Messages request (from a client) -> OpenAI chat request.

use serde_json::{Map, Value, json};

use crate::TranslateError;

/// Translate a client's Messages body. The `model` stays as the client wrote it: the gateway
/// resolves it like any other model name.
pub fn to_chat_request(req: &Value) -> Result<Value, TranslateError> {
    let mut out = Map::new();
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| TranslateError::invalid("model: Field required"))?;
    out.insert("model".into(), json!(model));

    let mut messages = Vec::new();
    if let Some(system) = req.get("system").filter(|v| !v.is_null()) {
        messages.push(json!({"role": "system", "content": system_content(system)?}));
    }
    let turns = req
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError::invalid("messages: Field required"))?;
    for (i, turn) in turns.iter().enumerate() {
        match turn.get("role").and_then(Value::as_str) {
            Some("user") => user_turn(turn, &mut messages)?,
            Some("assistant") => messages.push(assistant_turn(turn)?),
            other => {
                return Err(TranslateError::invalid(format!(
                    "messages.{i}.role: expected 'user' or 'assistant', got {other:?}"
                )));
            }
        }
    }
    out.insert("messages".into(), Value::Array(messages));

    if let Some(n) = req.get("max_tokens").filter(|v| !v.is_null()) {
        out.insert("max_tokens".into(), n.clone());
    }
    for key in ["temperature", "top_p", "top_k"] {
        if let Some(v) = req.get(key).filter(|v| !v.is_null()) {
            out.insert(key.into(), v.clone());
        }
    }
    if let Some(stops) = req
        .get("stop_sequences")
        .and_then(Value::as_array)
        .filter(|s| !s.is_empty())
    {
        out.insert("stop".into(), Value::Array(stops.clone()));
    }
    if let Some(user) = req.pointer("/metadata/user_id").and_then(Value::as_str) {
        out.insert("user".into(), json!(user));
    }
    if req.get("stream").and_then(Value::as_bool) == Some(true) {
        out.insert("stream".into(), json!(true));
        // message_delta must carry usage, which OpenAI streams only when asked.
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    add_tools(req, &mut out)?;
    // Only `reasoning_effort` is understood by every upstream (OpenAI rejects `thinking`);
    // the Anthropic translation turns it back into a budget.
    if let Some(budget) = req
        .get("thinking")
        .filter(|t| t.get("type").and_then(Value::as_str) == Some("enabled"))
        .and_then(|t| t.get("budget_tokens"))
        .and_then(Value::as_u64)
    {
        let effort = match budget {
            0..=1024 => "low",
            1025..=2048 => "medium",
            _ => "high",
        };
        out.insert("reasoning_effort".into(), json!(effort));
    }
    Ok(Value::Object(out))
}

/// `system` is a string or a list of text blocks; blocks with `cache_control` stay parts so
/// the marker survives, otherwise one string is friendlier to every upstream.
fn system_content(system: &Value) -> Result<Value, TranslateError> {
    match system {
        Value::String(_) => Ok(system.clone()),
        Value::Array(blocks) => {
            if blocks.iter().any(|b| b.get("cache_control").is_some()) {
                Ok(Value::Array(blocks.iter().filter_map(text_part).collect()))
            } else {
                Ok(json!(
                    blocks
                        .iter()
                        .filter_map(|b| b.get("text").and_then(Value::as_str))
                        .collect::<Vec<_>>()
                        .join("\n")
                ))
            }
        }
        _ => Err(TranslateError::invalid(
            "system: expected a string or a list of text blocks",
        )),
    }
}

fn text_part(block: &Value) -> Option<Value> {
    let text = block.get("text").and_then(Value::as_str)?;
    let mut p = json!({"type": "text", "text": text});
    if let Some(cc) = block.get("cache_control") {
        p["cache_control"] = cc.clone();
    }
    Some(p)
}

/// The blocks of a turn's `content` (a bare string is one text block).
fn blocks(turn: &Value) -> Vec<Value> {
    match turn.get("content") {
        Some(Value::String(s)) => vec![json!({"type": "text", "text": s})],
        Some(Value::Array(a)) => a.clone(),
        _ => Vec::new(),
    }
}

/// Non-tool blocks of a user turn as OpenAI content parts.
fn user_part(block: &Value) -> Result<Option<Value>, TranslateError> {
    let kind = block.get("type").and_then(Value::as_str).unwrap_or("");
    let source = block.get("source");
    let s = |p: &str| source.and_then(|s| s.pointer(p)).and_then(Value::as_str);
    Ok(match (kind, s("/type")) {
        ("text", _) => text_part(block),
        ("image", Some("base64")) => Some(json!({"type": "image_url", "image_url": {
            "url": format!("data:{};base64,{}", s("/media_type").unwrap_or("image/png"), s("/data").unwrap_or("")),
        }})),
        ("image", Some("url")) => {
            Some(json!({"type": "image_url", "image_url": {"url": s("/url").unwrap_or("")}}))
        }
        ("document", Some("base64")) => Some(json!({"type": "file", "file": {
            "file_data": format!("data:{};base64,{}", s("/media_type").unwrap_or("application/pdf"), s("/data").unwrap_or("")),
        }})),
        ("document", Some("text")) => {
            Some(json!({"type": "text", "text": s("/data").unwrap_or("")}))
        }
        _ => {
            return Err(TranslateError::invalid(format!(
                "content block of type '{kind}' is not supported on this endpoint"
            )));
        }
    })
}

/// A user turn: `tool_result` blocks become `tool` messages (first, as OpenAI wants the
/// results right after the assistant's calls), the rest one user message.
fn user_turn(turn: &Value, out: &mut Vec<Value>) -> Result<(), TranslateError> {
    let mut parts = Vec::new();
    for block in blocks(turn) {
        if block.get("type").and_then(Value::as_str) == Some("tool_result") {
            out.push(tool_message(&block)?);
        } else if let Some(p) = user_part(&block)? {
            parts.push(p);
        }
    }
    match parts.as_slice() {
        [] => {}
        [only] if only.get("cache_control").is_none() && only["type"] == "text" => {
            out.push(json!({"role": "user", "content": only["text"]}));
        }
        _ => out.push(json!({"role": "user", "content": parts})),
    }
    Ok(())
}

fn tool_message(block: &Value) -> Result<Value, TranslateError> {
    let id = block
        .get("tool_use_id")
        .and_then(Value::as_str)
        .ok_or_else(|| TranslateError::invalid("tool_result block needs tool_use_id"))?;
    let content = match block.get("content") {
        Some(Value::String(s)) => json!(s),
        Some(Value::Array(items)) => {
            let parts: Vec<Value> = items
                .iter()
                .map(user_part)
                .filter_map(Result::transpose)
                .collect::<Result<_, _>>()?;
            // Most OpenAI-compatible servers accept only text in tool messages.
            if parts.iter().all(|p| p["type"] == "text") {
                json!(
                    parts
                        .iter()
                        .filter_map(|p| p["text"].as_str())
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            } else {
                Value::Array(parts)
            }
        }
        _ => json!(""),
    };
    Ok(json!({"role": "tool", "tool_call_id": id, "content": content}))
}

fn assistant_turn(turn: &Value) -> Result<Value, TranslateError> {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut thinking_blocks = Vec::new();
    let mut tool_calls = Vec::new();
    for block in blocks(turn) {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("thinking") => {
                reasoning.push_str(block.get("thinking").and_then(Value::as_str).unwrap_or(""));
                thinking_blocks.push(block.clone());
            }
            Some("redacted_thinking") => thinking_blocks.push(block.clone()),
            Some("tool_use") => tool_calls.push(json!({
                "id": block.get("id"),
                "type": "function",
                "function": {
                    "name": block.get("name"),
                    "arguments": block.get("input").cloned().unwrap_or_else(|| json!({})).to_string(),
                },
            })),
            other => {
                return Err(TranslateError::invalid(format!(
                    "assistant content block of type '{}' is not supported",
                    other.unwrap_or("?")
                )));
            }
        }
    }
    let mut msg = json!({
        "role": "assistant",
        "content": if text.is_empty() && !tool_calls.is_empty() { Value::Null } else { json!(text) },
    });
    if !tool_calls.is_empty() {
        msg["tool_calls"] = Value::Array(tool_calls);
    }
    if !thinking_blocks.is_empty() {
        msg["reasoning_content"] = json!(reasoning);
        msg["thinking_blocks"] = Value::Array(thinking_blocks);
    }
    Ok(msg)
}

fn add_tools(req: &Value, out: &mut Map<String, Value>) -> Result<(), TranslateError> {
    if let Some(tools) = req.get("tools").and_then(Value::as_array) {
        let tools: Vec<Value> = tools
            .iter()
            .map(|t| {
                // Server tools (web search, code execution...) exist only at Anthropic.
                if let Some(kind) = t.get("type").and_then(Value::as_str).filter(|k| *k != "custom") {
                    return Err(TranslateError::invalid(format!(
                        "tool type '{kind}' is not supported on this endpoint"
                    )));
                }
                let mut f = json!({
                    "name": t.get("name").and_then(Value::as_str).ok_or_else(|| TranslateError::invalid("tool needs a name"))?,
                    "parameters": t.get("input_schema").cloned().unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                });
                if let Some(d) = t.get("description") {
                    f["description"] = d.clone();
                }
                Ok(json!({"type": "function", "function": f}))
            })
            .collect::<Result<_, TranslateError>>()?;
        if !tools.is_empty() {
            out.insert("tools".into(), Value::Array(tools));
        }
    }
    if let Some(choice) = req.get("tool_choice").filter(|v| !v.is_null()) {
        let mapped = match choice.get("type").and_then(Value::as_str) {
            Some("auto") => json!("auto"),
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => json!({"type": "function", "function": {"name": choice.get("name")}}),
            other => {
                return Err(TranslateError::invalid(format!(
                    "tool_choice.type {other:?} is not one of auto, any, tool, none"
                )));
            }
        };
        out.insert("tool_choice".into(), mapped);
        if choice
            .get("disable_parallel_tool_use")
            .and_then(Value::as_bool)
            == Some(true)
        {
            out.insert("parallel_tool_calls".into(), json!(false));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_request() {
        let req = json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 1024,
            "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
                ]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "Look closer.", "signature": "sig"},
                    {"type": "text", "text": "Let me zoom."},
                    {"type": "tool_use", "id": "toolu_1", "name": "zoom", "input": {"factor": 2}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "zoomed"}]},
                    {"type": "text", "text": "Now?"}
                ]}
            ],
            "tools": [{"name": "zoom", "description": "Zoom in", "input_schema": {"type": "object", "properties": {"factor": {"type": "number"}}}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "stop_sequences": ["###"],
            "temperature": 0.5,
            "metadata": {"user_id": "u-1"},
            "thinking": {"type": "enabled", "budget_tokens": 2048},
            "stream": true
        });
        insta::assert_json_snapshot!(to_chat_request(&req).unwrap_or(Value::Null));
    }

    #[test]
    fn plain_string_system_and_content() {
        let req = json!({"model": "m", "max_tokens": 10, "system": "S", "messages": [{"role": "user", "content": "hi"}]});
        assert_eq!(
            to_chat_request(&req).ok(),
            Some(
                json!({"model": "m", "max_tokens": 10, "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"}]})
            )
        );
    }

    #[test]
    fn unsupported_things_are_400s() {
        let server_tool = json!({"model": "m", "messages": [], "tools": [{"type": "web_search_20250305", "name": "web_search"}]});
        assert!(matches!(
            to_chat_request(&server_tool),
            Err(TranslateError::InvalidRequest(_))
        ));
        let err = to_chat_request(&json!({"messages": []}))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("model: Field required"), "{err:?}");
        let bad_role = json!({"model": "m", "messages": [{"role": "system", "content": "x"}]});
        let err = to_chat_request(&bad_role)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("expected 'user' or 'assistant'"), "{err:?}");
    }
}
