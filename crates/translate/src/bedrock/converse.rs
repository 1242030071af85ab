//! OpenAI chat request -> Converse request, and Converse response -> chat completion.

use serde_json::{Map, Value, json};

use super::finish_reason;
use crate::TranslateError;
use crate::openai::{self, Image, Part, TokenCounts, ToolChoice};

/// Translate an OpenAI chat request into a Converse body for `model_id` (which goes in the
/// URL; it is read here only to decide Claude-specific fields).
pub fn to_converse_request(req: &Value, model_id: &str) -> Result<Value, TranslateError> {
    let mut system = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    for (i, msg) in openai::messages(req)?.iter().enumerate() {
        let (role, mut blocks) = match openai::role(msg) {
            "system" | "developer" => {
                system.extend(content_blocks(msg, false)?);
                continue;
            }
            "user" => ("user", content_blocks(msg, true)?),
            "assistant" => ("assistant", assistant_blocks(msg)?),
            "tool" | "function" => ("user", vec![tool_result(msg)?]),
            other => {
                return Err(TranslateError::invalid(format!(
                    "messages[{i}] has unsupported role '{other}'"
                )));
            }
        };
        if blocks.is_empty() {
            continue;
        }
        // Converse, like Anthropic, wants strictly alternating roles.
        match messages.last_mut() {
            Some(prev) if prev["role"] == role => {
                if let Some(c) = prev["content"].as_array_mut() {
                    c.append(&mut blocks);
                }
            }
            _ => messages.push(json!({"role": role, "content": blocks})),
        }
    }

    let mut out = Map::new();
    out.insert("messages".into(), Value::Array(messages));
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    let mut inference = Map::new();
    if let Some(n) = openai::max_tokens(req) {
        inference.insert("maxTokens".into(), json!(n));
    }
    for (from, to) in [("temperature", "temperature"), ("top_p", "topP")] {
        if let Some(v) = req.get(from).filter(|v| !v.is_null()) {
            inference.insert(to.into(), v.clone());
        }
    }
    let stops = openai::stop_sequences(req);
    if !stops.is_empty() {
        inference.insert("stopSequences".into(), json!(stops));
    }
    if !inference.is_empty() {
        out.insert("inferenceConfig".into(), Value::Object(inference));
    }
    if let Some(tc) = tool_config(req)? {
        out.insert("toolConfig".into(), tc);
    }
    let extra = additional_fields(req, model_id)?;
    if !extra.is_empty() {
        out.insert("additionalModelRequestFields".into(), Value::Object(extra));
    }
    Ok(Value::Object(out))
}

/// Text (and, for users, images and PDFs) as Converse blocks; `cache_control` becomes a
/// `cachePoint` after the block it marks.
fn content_blocks(msg: &Value, media: bool) -> Result<Vec<Value>, TranslateError> {
    let mut out = Vec::new();
    for part in openai::content_parts(msg.get("content"))? {
        match part {
            Part::Text { text: "", .. } => {}
            Part::Text {
                text,
                cache_control,
            } => {
                out.push(json!({"text": text}));
                if cache_control.is_some() {
                    out.push(json!({"cachePoint": {"type": "default"}}));
                }
            }
            Part::Image(img) if media => out.push(image_block(&img)?),
            Part::Image(_) => {}
            Part::Other(v) => {
                return Err(TranslateError::invalid(format!(
                    "content part of type '{}' cannot be sent to Bedrock",
                    v.get("type").and_then(Value::as_str).unwrap_or("?")
                )));
            }
        }
    }
    if msg.get("cache_control").is_some() && !out.is_empty() {
        out.push(json!({"cachePoint": {"type": "default"}}));
    }
    Ok(out)
}

fn image_block(img: &Image) -> Result<Value, TranslateError> {
    match img {
        Image::Inline { media_type, data } => {
            let format = media_type.rsplit('/').next().unwrap_or("png");
            if format == "pdf" {
                Ok(
                    json!({"document": {"format": "pdf", "name": "document", "source": {"bytes": data}}}),
                )
            } else {
                Ok(json!({"image": {"format": format, "source": {"bytes": data}}}))
            }
        }
        // Converse takes image bytes only; fetching URLs is I/O, which this crate does not do.
        Image::Url(url) => Err(TranslateError::invalid(format!(
            "Bedrock needs images inline (as data: URIs), not by URL: {url}"
        ))),
    }
}

fn assistant_blocks(msg: &Value) -> Result<Vec<Value>, TranslateError> {
    let mut out = Vec::new();
    // Claude on Bedrock wants its signed reasoning back before the rest of the turn.
    for b in msg
        .get("thinking_blocks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(text) = b.get("thinking").and_then(Value::as_str) {
            let mut rt = json!({"text": text});
            if let Some(sig) = b.get("signature") {
                rt["signature"] = sig.clone();
            }
            out.push(json!({"reasoningContent": {"reasoningText": rt}}));
        }
    }
    out.extend(content_blocks(msg, false)?);
    for call in msg
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = call
            .pointer("/function/name")
            .and_then(Value::as_str)
            .ok_or_else(|| TranslateError::invalid("assistant tool call has no function.name"))?;
        out.push(json!({"toolUse": {
            "toolUseId": call.get("id").and_then(Value::as_str).unwrap_or(""),
            "name": name,
            "input": openai::tool_arguments(call.pointer("/function/arguments"))?,
        }}));
    }
    Ok(out)
}

fn tool_result(msg: &Value) -> Result<Value, TranslateError> {
    let id = msg
        .get("tool_call_id")
        .and_then(Value::as_str)
        .ok_or_else(|| TranslateError::invalid("tool message has no tool_call_id"))?;
    let text = openai::content_text(msg.get("content"))?;
    Ok(json!({"toolResult": {"toolUseId": id, "content": [{"text": text}]}}))
}

fn tool_config(req: &Value) -> Result<Option<Value>, TranslateError> {
    let tools: Vec<Value> = openai::function_tools(req)?
        .into_iter()
        .map(|(name, description, parameters)| {
            let mut spec = json!({
                "name": name,
                "inputSchema": {"json": parameters.cloned().unwrap_or_else(|| json!({"type": "object", "properties": {}}))},
            });
            if let Some(d) = description {
                spec["description"] = json!(d);
            }
            json!({"toolSpec": spec})
        })
        .collect();
    if tools.is_empty() {
        return Ok(None);
    }
    let mut config = json!({"tools": tools});
    match openai::tool_choice(req)? {
        Some(ToolChoice::Auto) => config["toolChoice"] = json!({"auto": {}}),
        Some(ToolChoice::Required) => config["toolChoice"] = json!({"any": {}}),
        Some(ToolChoice::Function(name)) => config["toolChoice"] = json!({"tool": {"name": name}}),
        // Converse has no "none": leaving tools out is the only way to forbid them.
        Some(ToolChoice::None) => return Ok(None),
        None => {}
    }
    Ok(Some(config))
}

/// Model-specific fields Converse passes through: `top_k`, and Claude's thinking budget.
fn additional_fields(req: &Value, model_id: &str) -> Result<Map<String, Value>, TranslateError> {
    let mut extra = Map::new();
    if let Some(k) = req.get("top_k").filter(|v| !v.is_null()) {
        extra.insert("top_k".into(), k.clone());
    }
    if let Some(t) = req.get("thinking").filter(|v| !v.is_null()) {
        extra.insert("thinking".into(), t.clone());
    } else if let Some(effort) = req.get("reasoning_effort").and_then(Value::as_str)
        && model_id.contains("claude")
        && let Some(budget) = openai::reasoning_budget(effort)?
    {
        extra.insert(
            "thinking".into(),
            json!({"type": "enabled", "budget_tokens": budget}),
        );
    }
    Ok(extra)
}

/// Converse `usage` -> counts; like Anthropic, `inputTokens` leaves out cache reads and writes.
pub(super) fn token_counts(usage: &Value) -> TokenCounts {
    let n = |k: &str| usage.get(k).and_then(Value::as_u64);
    let read = n("cacheReadInputTokens");
    let write = n("cacheWriteInputTokens");
    TokenCounts {
        prompt: n("inputTokens")
            .unwrap_or(0)
            .saturating_add(read.unwrap_or(0))
            .saturating_add(write.unwrap_or(0)),
        completion: n("outputTokens").unwrap_or(0),
        cache_read: read,
        cache_creation: write,
        reasoning: None,
    }
}

/// Translate a Converse response. `model` is the name the client asked for, `id` the
/// completion id to use (Converse answers carry none; the `x-amzn-requestid` header is a
/// good choice) and `created` the Unix time to stamp.
pub fn from_converse_response(
    resp: &Value,
    model: &str,
    id: &str,
    created: u64,
) -> Result<Value, TranslateError> {
    let blocks = resp
        .pointer("/output/message/content")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            TranslateError::untranslatable(
                "no output.message.content in the Converse response",
                &resp.to_string(),
            )
        })?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut thinking_blocks = Vec::new();
    let mut tool_calls = Vec::new();
    for b in blocks {
        if let Some(t) = b.get("text").and_then(Value::as_str) {
            text.push_str(t);
        } else if let Some(tu) = b.get("toolUse") {
            tool_calls.push(json!({
                "id": tu.get("toolUseId"),
                "type": "function",
                "function": {
                    "name": tu.get("name"),
                    "arguments": tu.get("input").cloned().unwrap_or_else(|| json!({})).to_string(),
                },
            }));
        } else if let Some(rt) = b.pointer("/reasoningContent/reasoningText") {
            let t = rt.get("text").and_then(Value::as_str).unwrap_or("");
            reasoning.push_str(t);
            let mut tb = json!({"type": "thinking", "thinking": t});
            if let Some(sig) = rt.get("signature") {
                tb["signature"] = sig.clone();
            }
            thinking_blocks.push(tb);
        }
    }
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() && !tool_calls.is_empty() { Value::Null } else { json!(text) },
    });
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    if !thinking_blocks.is_empty() {
        message["reasoning_content"] = json!(reasoning);
        message["thinking_blocks"] = Value::Array(thinking_blocks);
    }
    let stop = resp.get("stopReason").and_then(Value::as_str);
    let usage = resp.get("usage").map(|u| token_counts(u).to_usage());
    Ok(openai::completion(
        id,
        model,
        created,
        message,
        finish_reason(stop),
        usage,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_with_everything() {
        let req = json!({
            "messages": [
                {"role": "system", "content": [{"type": "text", "text": "Be exact.", "cache_control": {"type": "ephemeral"}}]},
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather for the city in this image?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
                ]},
                {"role": "assistant", "content": "Checking.", "thinking_blocks": [{"type": "thinking", "thinking": "Paris.", "signature": "c2ln"}],
                 "tool_calls": [{"id": "tooluse_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "tooluse_1", "content": "18C"},
                {"role": "user", "content": "Thanks"}
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            "tool_choice": "required",
            "max_tokens": 800, "temperature": 0.1, "top_p": 0.9, "top_k": 40, "stop": "STOP",
            "reasoning_effort": "low"
        });
        insta::assert_json_snapshot!(
            to_converse_request(&req, "anthropic.claude-3-7-sonnet-20250219-v1:0")
                .unwrap_or(Value::Null)
        );
    }

    #[test]
    fn url_images_and_tool_choice_none() {
        let req = json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}]}]});
        assert!(matches!(
            to_converse_request(&req, "m"),
            Err(TranslateError::InvalidRequest(_))
        ));
        let req = json!({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "none", "reasoning_effort": "high"});
        let out = to_converse_request(&req, "amazon.nova-pro-v1:0").unwrap_or(Value::Null);
        assert!(out.get("toolConfig").is_none());
        assert!(out.get("additionalModelRequestFields").is_none());
    }

    #[test]
    fn response_with_reasoning_tool_use_and_cache() {
        let resp = json!({
            "output": {"message": {"role": "assistant", "content": [
                {"reasoningContent": {"reasoningText": {"text": "Need weather.", "signature": "c2ln"}}},
                {"text": "Let me check."},
                {"toolUse": {"toolUseId": "tooluse_9", "name": "get_weather", "input": {"city": "Oslo"}}}
            ]}},
            "stopReason": "tool_use",
            "usage": {"inputTokens": 20, "outputTokens": 15, "totalTokens": 135, "cacheReadInputTokens": 100, "cacheWriteInputTokens": 0},
            "metrics": {"latencyMs": 420}
        });
        insta::assert_json_snapshot!(
            from_converse_response(&resp, "bedrock-claude", "req-1", 1_700_000_000)
                .unwrap_or(Value::Null)
        );
    }

    #[test]
    fn odd_response_is_untranslatable() {
        let err = from_converse_response(&json!({"Output": {"__type": "x"}}), "m", "i", 0);
        assert!(matches!(err, Err(TranslateError::Untranslatable { .. })));
    }
}
