//! The fake OpenAI's `POST /v1/responses` (and Azure's `/openai/responses`): the Responses
//! API's answer object and its streamed event sequence, in the shapes of OpenAI's API
//! reference, and its refusals of a request the real API refuses (no model, an unknown
//! parameter, an `input` that is neither text nor a list of items).

use axum::body::Bytes;
use serde_json::{Value, json};

use crate::reply::Reply;

/// The request body's parameters the real API takes (API reference, "Create a model
/// response"); any other is a 400 `Unknown parameter`.
const PARAMETERS: &[&str] = &[
    "background",
    "conversation",
    "include",
    "input",
    "instructions",
    "max_output_tokens",
    "max_tool_calls",
    "metadata",
    "model",
    "parallel_tool_calls",
    "previous_response_id",
    "prompt",
    "prompt_cache_key",
    "reasoning",
    "safety_identifier",
    "service_tier",
    "store",
    "stream",
    "stream_options",
    "temperature",
    "text",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "truncation",
    "user",
];

/// Why the real API would refuse `body` (message, param), if it would.
pub(crate) fn refusal(body: &Value) -> Option<(String, Option<&'static str>)> {
    let Some(obj) = body.as_object() else {
        return Some(("The request body must be a JSON object.".to_string(), None));
    };
    if let Some(k) = obj.keys().find(|k| !PARAMETERS.contains(&k.as_str())) {
        return Some((format!("Unknown parameter: '{k}'."), None));
    }
    if !obj.get("model").is_some_and(Value::is_string) {
        return Some((
            "Missing required parameter: 'model'.".to_string(),
            Some("model"),
        ));
    }
    match obj.get("input") {
        None | Some(Value::String(_)) | Some(Value::Array(_)) => None,
        Some(_) => Some((
            "Invalid type for 'input': expected a string or an array of input items.".to_string(),
            Some("input"),
        )),
    }
}

fn usage(reply: &Reply) -> Value {
    let u = &reply.usage;
    json!({
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cache_read_input_tokens.unwrap_or(0)},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    })
}

fn message_item(n: usize, text: &str, status: &str) -> Value {
    let content = if status == "completed" {
        json!([{"type": "output_text", "text": text, "annotations": [], "logprobs": []}])
    } else {
        json!([])
    };
    json!({"id": format!("msg_fake_{n}"), "type": "message", "status": status,
           "role": "assistant", "content": content})
}

fn output(n: usize, reply: &Reply) -> Vec<Value> {
    let mut out = Vec::new();
    if !reply.text.is_empty() || reply.tool_calls.is_empty() {
        out.push(message_item(n, &reply.text, "completed"));
    }
    for (i, t) in reply.tool_calls.iter().enumerate() {
        out.push(
            json!({"id": format!("fc_fake_{n}_{i}"), "type": "function_call",
                        "status": "completed", "call_id": t.id, "name": t.name,
                        "arguments": t.arguments}),
        );
    }
    out
}

/// The `response` object; `status` `in_progress` has no output or usage yet.
pub(crate) fn response_object(n: usize, body: &Value, reply: &Reply, status: &str) -> Value {
    let done = status == "completed";
    let field = |k: &str, default: Value| body.get(k).cloned().unwrap_or(default);
    json!({
        "id": reply.id.clone().unwrap_or_else(|| format!("resp_fake_{n}")),
        "object": "response",
        "created_at": 1_700_000_000u64,
        "status": status,
        "background": false,
        "error": null,
        "incomplete_details": null,
        "instructions": field("instructions", Value::Null),
        "max_output_tokens": field("max_output_tokens", Value::Null),
        "max_tool_calls": null,
        "model": body.get("model").cloned().unwrap_or(Value::Null),
        "output": if done { Value::Array(output(n, reply)) } else { json!([]) },
        "parallel_tool_calls": field("parallel_tool_calls", json!(true)),
        "previous_response_id": field("previous_response_id", Value::Null),
        "reasoning": {"effort": null, "summary": null},
        "service_tier": "default",
        "store": field("store", json!(true)),
        "temperature": field("temperature", json!(1.0)),
        "text": field("text", json!({"format": {"type": "text"}, "verbosity": "medium"})),
        "tool_choice": field("tool_choice", json!("auto")),
        "tools": field("tools", json!([])),
        "top_logprobs": 0,
        "top_p": field("top_p", json!(1.0)),
        "truncation": "disabled",
        "usage": if done { usage(reply) } else { Value::Null },
        "user": field("user", Value::Null),
        "metadata": field("metadata", json!({})),
    })
}

/// The streamed events of an answer (its text, then its function calls), each
/// `event: <type>` with a `sequence_number`.
pub(crate) fn stream_frames(n: usize, body: &Value, reply: &Reply) -> Vec<Bytes> {
    let mut events: Vec<Value> = vec![
        json!({"type": "response.created", "response": response_object(n, body, reply, "in_progress")}),
        json!({"type": "response.in_progress", "response": response_object(n, body, reply, "in_progress")}),
    ];
    let done = output(n, reply);
    for (index, item) in done.iter().enumerate() {
        let mut started = item.clone();
        started["status"] = json!("in_progress");
        let item_id = item["id"].clone();
        if item["type"] == "message" {
            started["content"] = json!([]);
            events.push(json!({"type": "response.output_item.added", "output_index": index, "item": started}));
            events.push(json!({"type": "response.content_part.added", "item_id": item_id,
                               "output_index": index, "content_index": 0,
                               "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}}));
            let chars: Vec<char> = reply.text.chars().collect();
            for piece in chars.chunks(reply.chunk_chars.max(1)) {
                let delta: String = piece.iter().collect();
                events.push(
                    json!({"type": "response.output_text.delta", "item_id": item_id,
                                   "output_index": index, "content_index": 0, "delta": delta,
                                   "logprobs": []}),
                );
            }
            events.push(
                json!({"type": "response.output_text.done", "item_id": item_id,
                               "output_index": index, "content_index": 0, "text": reply.text,
                               "logprobs": []}),
            );
            events.push(
                json!({"type": "response.content_part.done", "item_id": item_id,
                               "output_index": index, "content_index": 0,
                               "part": item["content"][0].clone()}),
            );
        } else {
            started["arguments"] = json!("");
            events.push(json!({"type": "response.output_item.added", "output_index": index, "item": started}));
            let args = item["arguments"].as_str().unwrap_or_default();
            events.push(
                json!({"type": "response.function_call_arguments.delta", "item_id": item_id,
                               "output_index": index, "delta": args}),
            );
            events.push(
                json!({"type": "response.function_call_arguments.done", "item_id": item_id,
                               "output_index": index, "arguments": args}),
            );
        }
        events.push(
            json!({"type": "response.output_item.done", "output_index": index, "item": item}),
        );
    }
    events.push(json!({"type": "response.completed",
                       "response": response_object(n, body, reply, "completed")}));
    events
        .into_iter()
        .enumerate()
        .map(|(i, mut ev)| {
            ev["sequence_number"] = json!(i);
            let name = ev["type"].as_str().unwrap_or_default().to_string();
            crate::frame::event(&name, &ev.to_string())
        })
        .collect()
}
