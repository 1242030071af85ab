//! Responses request -> chat completions request.

use serde_json::{Map, Value, json};

use crate::TranslateError;

/// Fields with the same name and meaning in both APIs.
const SAME: [&str; 10] = [
    "model",
    "temperature",
    "top_p",
    "parallel_tool_calls",
    "user",
    "metadata",
    // LiteLLM's testing aids, acted on by the gateway as on chat completions.
    "mock_response",
    "mock_timeout",
    "mock_testing_fallbacks",
    "mock_testing_rate_limit_error",
];

/// The chat request for a Responses request. Streams ask for usage (the gateway costs them).
pub fn to_chat_request(req: &Value) -> Result<Value, TranslateError> {
    let whole = req;
    let req = req
        .as_object()
        .ok_or_else(|| TranslateError::invalid("the request body must be a JSON object"))?;
    if req
        .get("previous_response_id")
        .is_some_and(|v| !v.is_null())
    {
        return Err(TranslateError::invalid(
            "previous_response_id must be resolved into input (the stored conversation) before translation",
        ));
    }
    let mut out = Map::new();
    for key in SAME {
        if let Some(v) = req.get(key).filter(|v| !v.is_null()) {
            out.insert(key.to_string(), v.clone());
        }
    }
    let mut messages = Vec::new();
    if let Some(instructions) = req.get("instructions").and_then(Value::as_str) {
        messages.push(json!({"role": "system", "content": instructions}));
    }
    match req.get("input") {
        Some(Value::String(s)) => messages.push(json!({"role": "user", "content": s})),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                push_item(&mut messages, item, i)?;
            }
        }
        _ => {
            return Err(TranslateError::invalid(
                "input is required: a string or a list of input items",
            ));
        }
    }
    out.insert("messages".into(), Value::Array(messages));
    if let Some(tools) = req.get("tools").and_then(Value::as_array)
        && !tools.is_empty()
    {
        let tools = tools.iter().map(chat_tool).collect::<Result<Vec<_>, _>>()?;
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = req.get("tool_choice").filter(|v| !v.is_null()) {
        out.insert("tool_choice".into(), tool_choice(choice));
    }
    if let Some(n) = req.get("max_output_tokens").filter(|v| !v.is_null()) {
        out.insert("max_tokens".into(), n.clone());
    }
    if let Some(effort) = whole.pointer("/reasoning/effort").filter(|v| !v.is_null()) {
        out.insert("reasoning_effort".into(), effort.clone());
    }
    if let Some(format) = whole.pointer("/text/format")
        && let Some(rf) = response_format(format)?
    {
        out.insert("response_format".into(), rf);
    }
    if req.get("stream").and_then(Value::as_bool) == Some(true) {
        out.insert("stream".into(), Value::Bool(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(Value::Object(out))
}

/// One input item onto the chat messages. Consecutive function calls become one assistant
/// message with several `tool_calls`, as chat servers expect.
fn push_item(messages: &mut Vec<Value>, item: &Value, i: usize) -> Result<(), TranslateError> {
    let kind = item.get("type").and_then(Value::as_str);
    match kind {
        Some("function_call") => {
            let field = |k: &str| {
                item.get(k).and_then(Value::as_str).ok_or_else(|| {
                    TranslateError::invalid(format!("input[{i}]: a function_call needs {k}"))
                })
            };
            let call = json!({"id": field("call_id")?, "type": "function",
                              "function": {"name": field("name")?, "arguments": field("arguments")?}});
            match messages.last_mut() {
                Some(last)
                    if last["role"] == "assistant"
                        && last.get("tool_calls").is_some_and(Value::is_array) =>
                {
                    if let Some(calls) = last["tool_calls"].as_array_mut() {
                        calls.push(call);
                    }
                }
                _ => messages
                    .push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
            }
        }
        Some("function_call_output") => {
            let call_id = item.get("call_id").and_then(Value::as_str).ok_or_else(|| {
                TranslateError::invalid(format!("input[{i}]: a function_call_output needs call_id"))
            })?;
            let output = match item.get("output") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => text_of(parts),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            messages.push(json!({"role": "tool", "tool_call_id": call_id, "content": output}));
        }
        // Reasoning items carry the model's own earlier thoughts; chat servers take none.
        Some("reasoning") => {}
        None | Some("message") => {
            let role = match item.get("role").and_then(Value::as_str) {
                Some("developer" | "system") => "system",
                Some("assistant") => "assistant",
                Some("user") => "user",
                other => {
                    return Err(TranslateError::invalid(format!(
                        "input[{i}]: unknown role {}",
                        other.map_or("(none)".to_string(), |r| format!("{r:?}"))
                    )));
                }
            };
            let content = match item.get("content") {
                Some(Value::String(s)) => Value::String(s.clone()),
                Some(Value::Array(parts)) if role == "user" => user_parts(parts, i)?,
                Some(Value::Array(parts)) => Value::String(text_of(parts)),
                _ => Value::String(String::new()),
            };
            messages.push(json!({"role": role, "content": content}));
        }
        Some(other) => {
            return Err(TranslateError::invalid(format!(
                "input[{i}]: items of type {other:?} cannot be sent to a chat completions backend"
            )));
        }
    }
    Ok(())
}

/// The text of content parts (`input_text`, `output_text`, `text`), joined.
fn text_of(parts: &[Value]) -> String {
    parts
        .iter()
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("")
}

/// A user message's parts as chat content parts (text and images).
fn user_parts(parts: &[Value], i: usize) -> Result<Value, TranslateError> {
    let mut out = Vec::new();
    for p in parts {
        match p.get("type").and_then(Value::as_str) {
            Some("input_text" | "output_text" | "text") => {
                out.push(
                    json!({"type": "text", "text": p.get("text").cloned().unwrap_or(Value::Null)}),
                );
            }
            Some("input_image") => {
                let url = p.get("image_url").and_then(Value::as_str).ok_or_else(|| {
                    TranslateError::invalid(format!(
                        "input[{i}]: an input_image needs image_url (file ids are not supported)"
                    ))
                })?;
                let mut image = json!({"url": url});
                if let Some(detail) = p.get("detail").filter(|d| !d.is_null()) {
                    image["detail"] = detail.clone();
                }
                out.push(json!({"type": "image_url", "image_url": image}));
            }
            other => {
                return Err(TranslateError::invalid(format!(
                    "input[{i}]: content parts of type {} cannot be sent to a chat completions backend",
                    other.unwrap_or("(none)")
                )));
            }
        }
    }
    Ok(Value::Array(out))
}

fn chat_tool(tool: &Value) -> Result<Value, TranslateError> {
    match tool.get("type").and_then(Value::as_str) {
        Some("function") => {
            let mut function = Map::new();
            for key in ["name", "description", "parameters", "strict"] {
                if let Some(v) = tool.get(key).filter(|v| !v.is_null()) {
                    function.insert(key.to_string(), v.clone());
                }
            }
            Ok(json!({"type": "function", "function": function}))
        }
        other => Err(TranslateError::invalid(format!(
            "tools of type {} need a backend with a Responses API; only function tools can be translated to chat completions",
            other.unwrap_or("(none)")
        ))),
    }
}

fn tool_choice(choice: &Value) -> Value {
    match choice.get("type").and_then(Value::as_str) {
        Some("function") => {
            json!({"type": "function", "function": {"name": choice.get("name").cloned().unwrap_or(Value::Null)}})
        }
        _ => choice.clone(),
    }
}

/// `text.format` as chat's `response_format` (`None` for plain text).
fn response_format(format: &Value) -> Result<Option<Value>, TranslateError> {
    match format.get("type").and_then(Value::as_str) {
        None | Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let mut schema = Map::new();
            for key in ["name", "description", "schema", "strict"] {
                if let Some(v) = format.get(key).filter(|v| !v.is_null()) {
                    schema.insert(key.to_string(), v.clone());
                }
            }
            Ok(Some(json!({"type": "json_schema", "json_schema": schema})))
        }
        Some(other) => Err(TranslateError::invalid(format!(
            "text.format type {other:?} is not supported"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_request_becomes_a_chat_request() {
        let req = json!({
            "model": "qwen", "instructions": "Be brief.", "stream": true,
            "max_output_tokens": 64, "temperature": 0.2, "metadata": {"k": "v"},
            "reasoning": {"effort": "low"},
            "text": {"format": {"type": "json_schema", "name": "answer", "strict": true,
                                "schema": {"type": "object"}}},
            "tools": [{"type": "function", "name": "read", "description": "Read a file",
                       "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}],
            "tool_choice": {"type": "function", "name": "read"},
            "input": [
                {"role": "developer", "content": "Use tools."},
                {"role": "user", "content": [{"type": "input_text", "text": "Open a.txt"},
                                             {"type": "input_image", "image_url": "data:image/png;base64,AA"}]},
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "function_call", "call_id": "call_1", "name": "read", "arguments": "{\"path\":\"a.txt\"}"},
                {"type": "function_call", "call_id": "call_2", "name": "read", "arguments": "{\"path\":\"b.txt\"}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "hello"},
                {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "world"}]},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Both read."}]}
            ]
        });
        insta::assert_json_snapshot!(to_chat_request(&req).unwrap());
    }

    #[test]
    fn a_string_input_is_one_user_message() {
        let chat = to_chat_request(&json!({"model": "m", "input": "hi"})).unwrap();
        assert_eq!(
            chat,
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
        );
    }

    #[test]
    fn what_chat_cannot_express_is_a_400_naming_it() {
        for (req, says) in [
            (json!({"model": "m"}), "input is required"),
            (
                json!({"model": "m", "input": "x", "previous_response_id": "resp_1"}),
                "previous_response_id",
            ),
            (
                json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}),
                "web_search",
            ),
            (
                json!({"model": "m", "input": [{"type": "file_search_call"}]}),
                "file_search_call",
            ),
            (
                json!({"model": "m", "input": [{"role": "robot", "content": "x"}]}),
                "robot",
            ),
        ] {
            let e = to_chat_request(&req).unwrap_err();
            assert_eq!(e.status(), 400);
            assert!(e.to_string().contains(says), "{e}");
        }
    }
}
