//! OpenAI chat request -> Gemini `generateContent` request.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use crate::TranslateError;
use crate::openai::{self, Image, Part, ToolChoice};

/// Gemini 2.5+ signs its reasoning and wants the signature back beside the function call it
/// preceded. OpenAI clients only echo ids, so the signature rides inside the tool call id.
pub(crate) const THOUGHT_SIGNATURE_MARK: &str = "__thought__";

/// Translate an OpenAI chat request into a `generateContent` body (the model goes in the URL).
pub fn to_generate_content_request(req: &Value) -> Result<Value, TranslateError> {
    let msgs = openai::messages(req)?;
    let mut out = Map::new();
    let mut system_parts = Vec::new();
    let mut contents: Vec<Value> = Vec::new();
    // functionResponse needs the function's name, which OpenAI tool messages only carry by id.
    let mut call_names: HashMap<&str, &str> = HashMap::new();

    for (i, msg) in msgs.iter().enumerate() {
        let (role, parts) = match openai::role(msg) {
            "system" | "developer" => {
                let text = openai::content_text(msg.get("content"))?;
                if !text.is_empty() {
                    system_parts.push(json!({"text": text}));
                }
                continue;
            }
            "user" => ("user", user_parts(msg)?),
            "assistant" => ("model", model_parts(msg, &mut call_names)?),
            "tool" | "function" => ("user", vec![function_response(msg, &call_names)?]),
            other => {
                return Err(TranslateError::invalid(format!(
                    "messages[{i}] has unsupported role '{other}'"
                )));
            }
        };
        if parts.is_empty() {
            continue;
        }
        // Gemini wants turns to alternate, and all responses to one model turn's calls together.
        match contents.last_mut() {
            Some(prev) if prev["role"] == role => {
                if let Some(p) = prev["parts"].as_array_mut() {
                    p.extend(parts);
                }
            }
            _ => contents.push(json!({"role": role, "parts": parts})),
        }
    }
    if !system_parts.is_empty() {
        out.insert("systemInstruction".into(), json!({"parts": system_parts}));
    }
    out.insert("contents".into(), Value::Array(contents));
    add_tools(req, &mut out)?;
    let config = generation_config(req)?;
    if !config.is_empty() {
        out.insert("generationConfig".into(), Value::Object(config));
    }
    Ok(Value::Object(out))
}

fn user_parts(msg: &Value) -> Result<Vec<Value>, TranslateError> {
    openai::content_parts(msg.get("content"))?
        .into_iter()
        .filter_map(|p| match p {
            Part::Text { text: "", .. } => None,
            Part::Text { text, .. } => Some(Ok(json!({"text": text}))),
            Part::Image(Image::Inline { media_type, data }) => Some(Ok(
                json!({"inlineData": {"mimeType": media_type, "data": data}}),
            )),
            Part::Image(Image::Url(url)) => Some(Ok(json!({"fileData": {
                "mimeType": Image::guess_media_type(&url),
                "fileUri": url,
            }}))),
            Part::Other(v) => Some(Err(TranslateError::invalid(format!(
                "content part of type '{}' cannot be sent to Gemini",
                v.get("type").and_then(Value::as_str).unwrap_or("?")
            )))),
        })
        .collect()
}

fn model_parts<'a>(
    msg: &'a Value,
    call_names: &mut HashMap<&'a str, &'a str>,
) -> Result<Vec<Value>, TranslateError> {
    let mut parts = Vec::new();
    let text = openai::content_text(msg.get("content"))?;
    if !text.is_empty() {
        parts.push(json!({"text": text}));
    }
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
        let id = call.get("id").and_then(Value::as_str).unwrap_or("");
        call_names.insert(id, name);
        let args = openai::tool_arguments(call.pointer("/function/arguments"))?;
        let mut part = json!({"functionCall": {"name": name, "args": args}});
        if let Some((_, sig)) = id.split_once(THOUGHT_SIGNATURE_MARK) {
            part["thoughtSignature"] = json!(sig);
        }
        parts.push(part);
    }
    Ok(parts)
}

fn function_response(
    msg: &Value,
    call_names: &HashMap<&str, &str>,
) -> Result<Value, TranslateError> {
    let id = msg
        .get("tool_call_id")
        .and_then(Value::as_str)
        .unwrap_or("");
    let name = msg
        .get("name")
        .and_then(Value::as_str)
        .or_else(|| call_names.get(id).copied())
        .ok_or_else(|| {
            TranslateError::invalid(format!(
                "tool message for '{id}' answers no earlier tool call (Gemini needs the function name)"
            ))
        })?;
    let text = openai::content_text(msg.get("content"))?;
    // `response` must be an object: JSON objects go as they are, anything else is wrapped.
    let response = match serde_json::from_str::<Value>(&text) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({"content": text}),
    };
    Ok(json!({"functionResponse": {"name": name, "response": response}}))
}

fn add_tools(req: &Value, out: &mut Map<String, Value>) -> Result<(), TranslateError> {
    let decls: Vec<Value> = openai::function_tools(req)?
        .into_iter()
        .map(|(name, description, parameters)| {
            let mut d = json!({"name": name});
            if let Some(desc) = description {
                d["description"] = json!(desc);
            }
            // An object schema without properties is rejected by the API; no parameters is fine.
            if let Some(p) = parameters.filter(|p| !is_empty_object_schema(p)) {
                d["parameters"] = clean_schema(p);
            }
            d
        })
        .collect();
    if !decls.is_empty() {
        out.insert("tools".into(), json!([{"functionDeclarations": decls}]));
    }
    let config = match openai::tool_choice(req)? {
        None => return Ok(()),
        Some(ToolChoice::Auto) => json!({"mode": "AUTO"}),
        Some(ToolChoice::Required) => json!({"mode": "ANY"}),
        Some(ToolChoice::None) => json!({"mode": "NONE"}),
        Some(ToolChoice::Function(name)) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
    };
    out.insert(
        "toolConfig".into(),
        json!({"functionCallingConfig": config}),
    );
    Ok(())
}

fn is_empty_object_schema(p: &Value) -> bool {
    p.get("properties")
        .and_then(Value::as_object)
        .is_none_or(Map::is_empty)
        && p.get("type")
            .and_then(Value::as_str)
            .is_none_or(|t| t == "object")
}

/// Gemini's schema dialect is OpenAPI-like and rejects some JSON Schema keywords.
fn clean_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| {
                    !matches!(k.as_str(), "$schema" | "additionalProperties" | "strict")
                })
                .map(|(k, v)| (k.clone(), clean_schema(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(clean_schema).collect()),
        other => other.clone(),
    }
}

fn generation_config(req: &Value) -> Result<Map<String, Value>, TranslateError> {
    let mut c = Map::new();
    for (from, to) in [
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("top_k", "topK"),
        ("n", "candidateCount"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ] {
        if let Some(v) = req.get(from).filter(|v| !v.is_null()) {
            c.insert(to.into(), v.clone());
        }
    }
    if let Some(n) = openai::max_tokens(req) {
        c.insert("maxOutputTokens".into(), json!(n));
    }
    let stops = openai::stop_sequences(req);
    if !stops.is_empty() {
        c.insert("stopSequences".into(), json!(stops));
    }
    match req.pointer("/response_format/type").and_then(Value::as_str) {
        Some("json_object") => {
            c.insert("responseMimeType".into(), json!("application/json"));
        }
        Some("json_schema") => {
            c.insert("responseMimeType".into(), json!("application/json"));
            if let Some(s) = req.pointer("/response_format/json_schema/schema") {
                c.insert("responseSchema".into(), clean_schema(s));
            }
        }
        _ => {}
    }
    if let Some(effort) = req.get("reasoning_effort").and_then(Value::as_str) {
        let thinking = match openai::reasoning_budget(effort)? {
            Some(budget) => json!({"thinkingBudget": budget, "includeThoughts": true}),
            None => json!({"thinkingBudget": 0}),
        };
        c.insert("thinkingConfig".into(), thinking);
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(req: Value) -> Value {
        match to_generate_content_request(&req) {
            Ok(v) => v,
            Err(e) => panic!("translation failed: {e}"),
        }
    }

    #[test]
    fn text_images_and_generation_config() {
        insta::assert_json_snapshot!(translate(json!({
            "model": "gemini-2.5-flash",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "text", "text": "Compare:"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/b.webp"}}
                ]},
                {"role": "assistant", "content": "They differ."},
                {"role": "user", "content": "How?"}
            ],
            "temperature": 0.3, "top_p": 0.8, "max_tokens": 256, "stop": ["\n\n"], "n": 1, "seed": 7,
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"$schema": "x", "type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false}}},
            "reasoning_effort": "low"
        })));
    }

    #[test]
    fn tools_calls_and_responses() {
        insta::assert_json_snapshot!(translate(json!({
            "messages": [
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_0__thought__c2lnMQ==", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_0__thought__c2lnMQ==", "content": "{\"temp\":18}"},
                {"role": "tool", "tool_call_id": "call_1", "content": "22C"}
            ],
            "tools": [
                {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false}}},
                {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}
            ],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}}
        })));
    }

    #[test]
    fn tool_choice_modes_and_disabled_thinking() {
        for (choice, mode) in [("auto", "AUTO"), ("required", "ANY"), ("none", "NONE")] {
            let out = translate(
                json!({"messages": [{"role": "user", "content": "x"}], "tool_choice": choice}),
            );
            assert_eq!(out["toolConfig"]["functionCallingConfig"]["mode"], mode);
        }
        let out = translate(
            json!({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "none"}),
        );
        assert_eq!(
            out["generationConfig"]["thinkingConfig"],
            json!({"thinkingBudget": 0})
        );
    }

    #[test]
    fn orphan_tool_message_is_a_400() {
        let req = json!({"messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]});
        assert!(matches!(
            to_generate_content_request(&req),
            Err(TranslateError::InvalidRequest(_))
        ));
    }
}
