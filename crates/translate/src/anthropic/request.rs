//! OpenAI chat request -> Anthropic Messages request.

use serde_json::{Map, Value, json};

use super::{DEFAULT_MAX_TOKENS, JSON_TOOL_NAME};
use crate::TranslateError;
use crate::openai::{self, Image, Part, ToolChoice};

/// What the request alone does not say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessagesOptions {
    /// `max_tokens` when the client sent none: the model's `max_output_tokens` from the price
    /// map if the caller knows it, else [`DEFAULT_MAX_TOKENS`].
    pub default_max_tokens: Option<u64>,
}

/// Translate an OpenAI chat request into a Messages API body for `model` (the provider's
/// model name, without any `anthropic/` prefix).
pub fn to_messages_request(
    req: &Value,
    model: &str,
    opts: &MessagesOptions,
) -> Result<Value, TranslateError> {
    let mut out = Map::new();
    out.insert("model".into(), json!(model));

    let (system, messages) = split_messages(openai::messages(req)?)?;
    out.insert("messages".into(), Value::Array(messages));
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }

    let max_tokens = openai::max_tokens(req)
        .or(opts.default_max_tokens)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    out.insert("max_tokens".into(), json!(max_tokens));

    for key in ["temperature", "top_p", "top_k"] {
        if let Some(v) = req.get(key).filter(|v| !v.is_null()) {
            out.insert(key.into(), v.clone());
        }
    }
    let stops = openai::stop_sequences(req);
    if !stops.is_empty() {
        out.insert("stop_sequences".into(), json!(stops));
    }
    if let Some(user) = req.get("user").and_then(Value::as_str) {
        out.insert("metadata".into(), json!({"user_id": user}));
    }
    if req.get("stream").and_then(Value::as_bool) == Some(true) {
        out.insert("stream".into(), json!(true));
    }

    // Thinking first: it decides whether the JSON tool can be forced.
    add_thinking(req, max_tokens, &mut out)?;
    add_tools(req, &mut out)?;
    Ok(Value::Object(out))
}

/// System and developer messages go to the top-level `system`; the rest become alternating
/// user/assistant turns.
fn split_messages(msgs: &[Value]) -> Result<(Vec<Value>, Vec<Value>), TranslateError> {
    let mut system = Vec::new();
    let mut turns: Vec<Value> = Vec::new();
    for (i, msg) in msgs.iter().enumerate() {
        let role = openai::role(msg);
        let (anthropic_role, mut blocks) = match role {
            "system" | "developer" => {
                system.extend(text_blocks(msg)?);
                continue;
            }
            "user" => ("user", user_blocks(msg)?),
            "assistant" => ("assistant", assistant_blocks(msg)?),
            // Anthropic has no tool role: results travel in the next user turn.
            "tool" | "function" => ("user", vec![tool_result_block(msg)?]),
            other => {
                return Err(TranslateError::invalid(format!(
                    "messages[{i}] has unsupported role '{other}'"
                )));
            }
        };
        if let (Some(cc), Some(last)) = (msg.get("cache_control"), blocks.last_mut()) {
            last["cache_control"] = cc.clone();
        }
        if blocks.is_empty() {
            continue;
        }
        // Anthropic rejects two turns in a row from the same role, so they merge.
        match turns.last_mut() {
            Some(prev) if prev["role"] == anthropic_role => {
                if let Some(content) = prev["content"].as_array_mut() {
                    content.append(&mut blocks);
                }
            }
            _ => turns.push(json!({"role": anthropic_role, "content": blocks})),
        }
    }
    Ok((system, turns))
}

/// Text blocks of a message, empty ones dropped (the API rejects them).
fn text_blocks(msg: &Value) -> Result<Vec<Value>, TranslateError> {
    Ok(openai::content_parts(msg.get("content"))?
        .into_iter()
        .filter_map(|p| match p {
            Part::Text {
                text,
                cache_control,
            } if !text.is_empty() => Some(text_block(text, cache_control)),
            _ => None,
        })
        .collect())
}

fn text_block(text: &str, cache_control: Option<&Value>) -> Value {
    let mut b = json!({"type": "text", "text": text});
    if let Some(cc) = cache_control {
        b["cache_control"] = cc.clone();
    }
    b
}

fn user_blocks(msg: &Value) -> Result<Vec<Value>, TranslateError> {
    openai::content_parts(msg.get("content"))?
        .into_iter()
        .filter_map(|p| part_block(p).transpose())
        .collect()
}

fn part_block(p: Part<'_>) -> Result<Option<Value>, TranslateError> {
    Ok(match p {
        Part::Text { text: "", .. } => None,
        Part::Text {
            text,
            cache_control,
        } => Some(text_block(text, cache_control)),
        Part::Image(img) => Some(image_block(&img)),
        Part::Other(v) => Some(other_block(v)?),
    })
}

fn image_block(img: &Image) -> Value {
    match img {
        Image::Inline { media_type, data } => {
            // PDFs sent as data URIs are documents to Anthropic, not images.
            let kind = if media_type == "application/pdf" {
                "document"
            } else {
                "image"
            };
            json!({"type": kind, "source": {"type": "base64", "media_type": media_type, "data": data}})
        }
        Image::Url(url) => json!({"type": "image", "source": {"type": "url", "url": url}}),
    }
}

/// OpenAI `file` parts carrying a PDF data URI become documents; other kinds are refused
/// rather than silently dropped.
fn other_block(v: &Value) -> Result<Value, TranslateError> {
    let file_data = v
        .pointer("/file/file_data")
        .and_then(Value::as_str)
        .filter(|_| v.get("type").and_then(Value::as_str) == Some("file"));
    if let Some(data) = file_data
        && let Image::Inline { media_type, data } = Image::parse(data)?
    {
        return Ok(
            json!({"type": "document", "source": {"type": "base64", "media_type": media_type, "data": data}}),
        );
    }
    Err(TranslateError::invalid(format!(
        "content part of type '{}' cannot be sent to Anthropic",
        v.get("type").and_then(Value::as_str).unwrap_or("?")
    )))
}

fn assistant_blocks(msg: &Value) -> Result<Vec<Value>, TranslateError> {
    // Thinking blocks must come back first and unchanged (their signature is checked).
    let mut blocks: Vec<Value> = msg
        .get("thinking_blocks")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    blocks.extend(text_blocks(msg)?);
    for call in msg
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let id = call.get("id").and_then(Value::as_str).unwrap_or_default();
        let name = call
            .pointer("/function/name")
            .and_then(Value::as_str)
            .ok_or_else(|| TranslateError::invalid("assistant tool call has no function.name"))?;
        let input = openai::tool_arguments(call.pointer("/function/arguments"))?;
        blocks.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
    }
    Ok(blocks)
}

fn tool_result_block(msg: &Value) -> Result<Value, TranslateError> {
    let id = msg
        .get("tool_call_id")
        .and_then(Value::as_str)
        .ok_or_else(|| TranslateError::invalid("tool message has no tool_call_id"))?;
    let content = match msg.get("content") {
        Some(Value::String(s)) => json!(s),
        other => {
            let blocks: Vec<Value> = openai::content_parts(other)?
                .into_iter()
                .filter_map(|p| part_block(p).transpose())
                .collect::<Result<_, _>>()?;
            Value::Array(blocks)
        }
    };
    Ok(json!({"type": "tool_result", "tool_use_id": id, "content": content}))
}

fn add_tools(req: &Value, out: &mut Map<String, Value>) -> Result<(), TranslateError> {
    let tools: Vec<Value> = openai::function_tools(req)?
        .into_iter()
        .map(|(name, description, parameters)| {
            let mut t = json!({
                "name": name,
                "input_schema": parameters.cloned().unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            });
            if let Some(d) = description {
                t["description"] = json!(d);
            }
            t
        })
        .collect();
    let mut tools = tools;
    let json_schema = response_format_schema(req);
    if let Some(schema) = &json_schema {
        tools.push(json!({"name": JSON_TOOL_NAME, "input_schema": schema}));
    }
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
    }
    let mut choice = match openai::tool_choice(req)? {
        None => None,
        Some(ToolChoice::Auto) => Some(json!({"type": "auto"})),
        Some(ToolChoice::Required) => Some(json!({"type": "any"})),
        Some(ToolChoice::None) => Some(json!({"type": "none"})),
        Some(ToolChoice::Function(name)) => Some(json!({"type": "tool", "name": name})),
    };
    // The JSON tool is forced only when it is the sole tool and no choice was made: the API
    // refuses forced tools while thinking, and forcing it would hide the client's own tools.
    let only_json_tool = json_schema.is_some() && openai::function_tools(req)?.is_empty();
    if choice.is_none() && only_json_tool && !out.contains_key("thinking") {
        choice = Some(json!({"type": "tool", "name": JSON_TOOL_NAME}));
    }
    // Anthropic keeps the parallel switch inside tool_choice, so one is made if needed.
    if req.get("parallel_tool_calls").and_then(Value::as_bool) == Some(false) {
        let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
        if c["type"] != "none" {
            c["disable_parallel_tool_use"] = json!(true);
        }
    }
    if let Some(c) = choice {
        out.insert("tool_choice".into(), c);
    }
    Ok(())
}

/// The schema a `response_format` asks the answer to follow, if it asks for JSON.
fn response_format_schema(req: &Value) -> Option<Value> {
    match req
        .pointer("/response_format/type")
        .and_then(Value::as_str)?
    {
        "json_schema" => Some(
            req.pointer("/response_format/json_schema/schema")
                .cloned()
                .unwrap_or_else(|| json!({"type": "object"})),
        ),
        "json_object" => Some(json!({"type": "object"})),
        _ => None,
    }
}

fn add_thinking(
    req: &Value,
    max_tokens: u64,
    out: &mut Map<String, Value>,
) -> Result<(), TranslateError> {
    if let Some(t) = req.get("thinking").filter(|v| !v.is_null()) {
        out.insert("thinking".into(), t.clone());
        return Ok(());
    }
    let Some(effort) = req.get("reasoning_effort").and_then(Value::as_str) else {
        return Ok(());
    };
    if let Some(budget) = openai::reasoning_budget(effort)? {
        // The API requires budget_tokens < max_tokens.
        let budget = budget.min(max_tokens.saturating_sub(1));
        out.insert(
            "thinking".into(),
            json!({"type": "enabled", "budget_tokens": budget}),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(req: Value) -> Value {
        match to_messages_request(&req, "claude-sonnet-4-5", &MessagesOptions::default()) {
            Ok(v) => v,
            Err(e) => panic!("translation failed: {e}"),
        }
    }

    #[test]
    fn system_multi_turn_images_and_params() {
        insta::assert_json_snapshot!(translate(json!({
            "model": "claude",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "developer", "content": [{"type": "text", "text": "Cite sources.", "cache_control": {"type": "ephemeral"}}, {"type": "text", "text": ""}]},
                {"role": "user", "content": "Hi"},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is in these?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}
                ]},
                {"role": "assistant", "content": "A cat."},
                {"role": "user", "content": "Thanks", "cache_control": {"type": "ephemeral"}}
            ],
            "max_completion_tokens": 300,
            "temperature": 0.2,
            "top_p": 0.9,
            "stop": "END",
            "user": "user-42",
            "stream": true
        })));
    }

    #[test]
    fn tools_tool_calls_and_results() {
        insta::assert_json_snapshot!(translate(json!({
            "model": "claude",
            "messages": [
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "toolu_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
                {"role": "tool", "tool_call_id": "toolu_2", "content": [{"type": "text", "text": "22C"}]},
                {"role": "user", "content": "Which is warmer?"}
            ],
            "tools": [
                {"type": "function", "function": {"name": "get_weather", "description": "Current weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
                {"type": "function", "function": {"name": "now"}}
            ],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "parallel_tool_calls": false,
            "stop": ["a", "b"]
        })));
    }

    #[test]
    fn reasoning_effort_becomes_thinking_and_blocks_round_trip() {
        insta::assert_json_snapshot!(translate(json!({
            "model": "claude",
            "messages": [
                {"role": "user", "content": "2+2?"},
                {"role": "assistant", "content": "4", "thinking_blocks": [{"type": "thinking", "thinking": "add", "signature": "sig=="}]},
                {"role": "user", "content": "and 3+3?"}
            ],
            "reasoning_effort": "medium"
        })));
    }

    #[test]
    fn response_format_becomes_a_forced_json_tool() {
        insta::assert_json_snapshot!(translate(json!({
            "messages": [{"role": "user", "content": "Give me a city."}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "city", "schema": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}}}
        })));
        // With thinking on, the tool is offered but not forced.
        let out = translate(json!({
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_object"},
            "reasoning_effort": "low"
        }));
        assert_eq!(out["tools"][0]["name"], JSON_TOOL_NAME);
        assert!(out.get("tool_choice").is_none());
    }

    #[test]
    fn thinking_budget_is_capped_below_max_tokens() {
        let out = translate(json!({
            "messages": [{"role": "user", "content": "x"}],
            "max_tokens": 2000,
            "reasoning_effort": "max"
        }));
        assert_eq!(out["thinking"]["budget_tokens"], 1999);
        let out = translate(
            json!({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "none"}),
        );
        assert!(out.get("thinking").is_none());
    }

    #[test]
    fn tool_choice_words() {
        for (openai, anthropic) in [("auto", "auto"), ("required", "any"), ("none", "none")] {
            let out = translate(
                json!({"messages": [{"role": "user", "content": "x"}], "tool_choice": openai}),
            );
            assert_eq!(out["tool_choice"]["type"], anthropic);
        }
    }

    #[test]
    fn default_max_tokens_comes_from_options() {
        let req = json!({"messages": [{"role": "user", "content": "x"}]});
        let opts = MessagesOptions {
            default_max_tokens: Some(64000),
        };
        let out = to_messages_request(&req, "m", &opts).ok();
        assert_eq!(out.map(|o| o["max_tokens"].clone()), Some(json!(64000)));
        assert_eq!(translate(req)["max_tokens"], 4096);
    }

    #[test]
    fn bad_requests_are_explained() {
        let bad_args = json!({"messages": [{"role": "assistant", "tool_calls": [{"id": "a", "function": {"name": "f", "arguments": "{nope"}}]}]});
        let err = to_messages_request(&bad_args, "m", &MessagesOptions::default());
        assert!(
            matches!(err, Err(TranslateError::InvalidRequest(m)) if m.contains("not valid JSON"))
        );
        let bad_role = json!({"messages": [{"role": "wizard", "content": "x"}]});
        let err = to_messages_request(&bad_role, "m", &MessagesOptions::default())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("unsupported role 'wizard'"), "{err:?}");
        let no_messages = json!({});
        let err = to_messages_request(&no_messages, "m", &MessagesOptions::default())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("no 'messages' array"), "{err:?}");
    }
}
