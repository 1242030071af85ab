//! Chat chunk stream -> Responses streaming events (to a client of `/v1/responses`).

use serde_json::{Value, json};

use super::response::{
    ResponseContext, call_item, incomplete_reason, message_item, reasoning_item, usage,
};

/// One Responses SSE event; `data.type` names it.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseEvent {
    pub data: Value,
}

impl ResponseEvent {
    /// `event: <type>\ndata: <json>\n\n`
    pub fn to_sse(&self) -> String {
        let name = self
            .data
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("message");
        format!("event: {name}\ndata: {}\n\n", self.data)
    }
}

/// An output item being streamed.
#[derive(Debug, Clone)]
struct Open {
    output_index: usize,
    text: String,
}

#[derive(Debug, Clone)]
struct OpenCall {
    /// The chat delta's `tool_calls[].index`.
    chat_index: u64,
    output_index: usize,
    call_id: String,
    name: String,
    arguments: String,
}

#[derive(Debug, Clone)]
pub struct ChatStreamToResponses {
    ctx: ResponseContext,
    seq: u64,
    started: bool,
    model: String,
    created: u64,
    /// Finished items by output index (`None` while still open).
    output: Vec<Option<Value>>,
    reasoning: Option<Open>,
    text: Option<Open>,
    calls: Vec<OpenCall>,
    finish: Option<String>,
    usage: Value,
}

impl ChatStreamToResponses {
    /// `model` is the name the client asked for, until a chunk names the answering model.
    pub fn new(ctx: ResponseContext, model: &str, created: u64) -> Self {
        Self {
            ctx,
            seq: 0,
            started: false,
            model: model.to_string(),
            created,
            output: Vec::new(),
            reasoning: None,
            text: None,
            calls: Vec::new(),
            finish: None,
            usage: Value::Null,
        }
    }

    fn event(&mut self, out: &mut Vec<ResponseEvent>, kind: &str, mut data: Value) {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.seq);
        self.seq += 1;
        out.push(ResponseEvent { data });
    }

    fn snapshot(&self, status: &str, incomplete: Option<&str>) -> Value {
        let output = self.output.iter().flatten().cloned().collect();
        self.ctx.object(
            status,
            &self.model,
            self.created,
            output,
            usage(&self.usage),
            incomplete,
        )
    }

    fn start(&mut self, out: &mut Vec<ResponseEvent>) {
        if self.started {
            return;
        }
        self.started = true;
        let response = self.snapshot("in_progress", None);
        self.event(out, "response.created", json!({"response": response}));
        let response = self.snapshot("in_progress", None);
        self.event(out, "response.in_progress", json!({"response": response}));
    }

    fn next_index(&mut self) -> usize {
        self.output.push(None);
        self.output.len() - 1
    }

    /// One parsed chat chunk in, the events it amounts to out.
    pub fn push(&mut self, chunk: &Value) -> Vec<ResponseEvent> {
        let mut out = Vec::new();
        if let Some(m) = chunk
            .get("model")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
        {
            self.model = m.to_string();
        }
        if let Some(c) = chunk.get("created").and_then(Value::as_u64) {
            self.created = c;
        }
        self.start(&mut out);
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.usage = u.clone();
        }
        let Some(choice) = chunk.pointer("/choices/0") else {
            return out;
        };
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(f.to_string());
        }
        let Some(delta) = choice.get("delta") else {
            return out;
        };
        let reasoning = ["reasoning_content", "reasoning"]
            .iter()
            .find_map(|k| delta.get(*k).and_then(Value::as_str))
            .filter(|r| !r.is_empty());
        if let Some(r) = reasoning {
            self.reasoning_delta(&mut out, r);
        }
        if let Some(t) = delta
            .get("content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            self.text_delta(&mut out, t);
        }
        for call in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.call_delta(&mut out, call);
        }
        out
    }

    fn reasoning_delta(&mut self, out: &mut Vec<ResponseEvent>, delta: &str) {
        let id = self.ctx.reasoning_id();
        if self.reasoning.is_none() {
            self.close_text(out);
            self.close_calls(out);
            let output_index = self.next_index();
            self.event(
                out,
                "response.output_item.added",
                json!({"output_index": output_index,
                "item": {"type": "reasoning", "id": id, "summary": []}}),
            );
            self.event(
                out,
                "response.reasoning_summary_part.added",
                json!({"item_id": id,
                "output_index": output_index, "summary_index": 0,
                "part": {"type": "summary_text", "text": ""}}),
            );
            self.reasoning = Some(Open {
                output_index,
                text: String::new(),
            });
        }
        let Some(open) = self.reasoning.as_mut() else {
            return;
        };
        open.text.push_str(delta);
        let output_index = open.output_index;
        self.event(
            out,
            "response.reasoning_summary_text.delta",
            json!({"item_id": id,
            "output_index": output_index, "summary_index": 0, "delta": delta}),
        );
    }

    fn close_reasoning(&mut self, out: &mut Vec<ResponseEvent>) {
        let Some(open) = self.reasoning.take() else {
            return;
        };
        let id = self.ctx.reasoning_id();
        let i = open.output_index;
        self.event(
            out,
            "response.reasoning_summary_text.done",
            json!({"item_id": id,
            "output_index": i, "summary_index": 0, "text": open.text}),
        );
        self.event(out, "response.reasoning_summary_part.done", json!({"item_id": id,
            "output_index": i, "summary_index": 0, "part": {"type": "summary_text", "text": open.text}}));
        let item = reasoning_item(&id, &open.text);
        self.event(
            out,
            "response.output_item.done",
            json!({"output_index": i, "item": item}),
        );
        self.output[i] = Some(item);
    }

    fn text_delta(&mut self, out: &mut Vec<ResponseEvent>, delta: &str) {
        let id = self.ctx.message_id();
        if self.text.is_none() {
            self.close_reasoning(out);
            self.close_calls(out);
            let output_index = self.next_index();
            self.event(out, "response.output_item.added", json!({"output_index": output_index,
                "item": {"type": "message", "id": id, "status": "in_progress", "role": "assistant", "content": []}}));
            self.event(
                out,
                "response.content_part.added",
                json!({"item_id": id,
                "output_index": output_index, "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": []}}),
            );
            self.text = Some(Open {
                output_index,
                text: String::new(),
            });
        }
        let Some(open) = self.text.as_mut() else {
            return;
        };
        open.text.push_str(delta);
        let output_index = open.output_index;
        self.event(
            out,
            "response.output_text.delta",
            json!({"item_id": id,
            "output_index": output_index, "content_index": 0, "delta": delta, "logprobs": []}),
        );
    }

    fn close_text(&mut self, out: &mut Vec<ResponseEvent>) {
        let Some(open) = self.text.take() else { return };
        let id = self.ctx.message_id();
        let i = open.output_index;
        self.event(
            out,
            "response.output_text.done",
            json!({"item_id": id, "output_index": i,
            "content_index": 0, "text": open.text, "logprobs": []}),
        );
        self.event(out, "response.content_part.done", json!({"item_id": id, "output_index": i,
            "content_index": 0, "part": {"type": "output_text", "text": open.text, "annotations": []}}));
        let item = message_item(&id, &open.text, "completed");
        self.event(
            out,
            "response.output_item.done",
            json!({"output_index": i, "item": item}),
        );
        self.output[i] = Some(item);
    }

    fn call_delta(&mut self, out: &mut Vec<ResponseEvent>, call: &Value) {
        let chat_index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        let pos = match self.calls.iter().position(|c| c.chat_index == chat_index) {
            Some(p) => p,
            None => {
                self.close_reasoning(out);
                self.close_text(out);
                let output_index = self.next_index();
                let call_id = call.get("id").and_then(Value::as_str).map_or_else(
                    || format!("call_{}_{chat_index}", self.ctx.response_id()),
                    str::to_string,
                );
                let name = call
                    .pointer("/function/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let item = call_item(&call_id, &name, "", "in_progress");
                self.event(
                    out,
                    "response.output_item.added",
                    json!({"output_index": output_index, "item": item}),
                );
                self.calls.push(OpenCall {
                    chat_index,
                    output_index,
                    call_id,
                    name,
                    arguments: String::new(),
                });
                self.calls.len() - 1
            }
        };
        let Some(args) = call
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
        else {
            return;
        };
        let open = &mut self.calls[pos];
        open.arguments.push_str(args);
        let (item_id, output_index) = (format!("fc_{}", open.call_id), open.output_index);
        self.event(
            out,
            "response.function_call_arguments.delta",
            json!({"item_id": item_id,
            "output_index": output_index, "delta": args}),
        );
    }

    fn close_calls(&mut self, out: &mut Vec<ResponseEvent>) {
        for c in std::mem::take(&mut self.calls) {
            let item_id = format!("fc_{}", c.call_id);
            self.event(
                out,
                "response.function_call_arguments.done",
                json!({"item_id": item_id,
                "output_index": c.output_index, "arguments": c.arguments}),
            );
            let item = call_item(&c.call_id, &c.name, &c.arguments, "completed");
            self.event(
                out,
                "response.output_item.done",
                json!({"output_index": c.output_index, "item": item}),
            );
            self.output[c.output_index] = Some(item);
        }
    }

    /// At `[DONE]`: every open item closed, then `response.completed` (or
    /// `response.incomplete` when the answer was cut at its token limit).
    pub fn finish(&mut self) -> Vec<ResponseEvent> {
        let mut out = Vec::new();
        self.start(&mut out);
        self.close_reasoning(&mut out);
        self.close_text(&mut out);
        self.close_calls(&mut out);
        let incomplete = incomplete_reason(self.finish.as_deref());
        let (kind, status) = match incomplete {
            Some(_) => ("response.incomplete", "incomplete"),
            None => ("response.completed", "completed"),
        };
        let response = self.snapshot(status, incomplete);
        self.event(&mut out, kind, json!({"response": response}));
        out
    }

    /// The stream failed: an `error` event, then `response.failed`.
    pub fn failed(&mut self, status: u16, message: &str) -> Vec<ResponseEvent> {
        let mut out = Vec::new();
        self.start(&mut out);
        self.event(
            &mut out,
            "error",
            json!({"code": status.to_string(), "message": message, "param": null}),
        );
        let mut response = self.snapshot("failed", None);
        response["error"] = json!({"code": "server_error", "message": message});
        self.event(&mut out, "response.failed", json!({"response": response}));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[Value]) -> Vec<Value> {
        let ctx = ResponseContext::new("abc", &json!({"model": "coder", "input": "hi"}));
        let mut t = ChatStreamToResponses::new(ctx, "coder", 1_700_000_000);
        let mut events: Vec<ResponseEvent> = chunks.iter().flat_map(|c| t.push(c)).collect();
        events.extend(t.finish());
        events.into_iter().map(|e| e.data).collect()
    }

    fn chunk(delta: Value, finish: Value) -> Value {
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 1_700_000_001u64, "model": "qwen",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    }

    #[test]
    fn text_stream_has_the_full_event_sequence() {
        let events = run(&[
            chunk(json!({"role": "assistant", "content": ""}), Value::Null),
            chunk(json!({"reasoning_content": "think"}), Value::Null),
            chunk(json!({"content": "Hel"}), Value::Null),
            chunk(json!({"content": "lo"}), Value::Null),
            chunk(json!({}), json!("stop")),
            json!({"id": "c1", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}),
        ]);
        insta::assert_json_snapshot!(events);
    }

    #[test]
    fn interleaved_tool_calls_become_function_call_items() {
        let events = run(&[
            chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_a", "function": {"name": "read", "arguments": ""}}]}),
                Value::Null,
            ),
            chunk(
                json!({"tool_calls": [{"index": 1, "id": "call_b", "function": {"name": "grep", "arguments": "{\"p\":"}}]}),
                Value::Null,
            ),
            chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"path\":\"a\"}"}}]}),
                Value::Null,
            ),
            chunk(
                json!({"tool_calls": [{"index": 1, "function": {"arguments": "\"x\"}"}}]}),
                Value::Null,
            ),
            chunk(json!({}), json!("tool_calls")),
        ]);
        let done = events.last().unwrap();
        assert_eq!(done["type"], "response.completed");
        let output = done["response"]["output"].as_array().unwrap();
        assert_eq!(output.len(), 2);
        assert_eq!(output[0]["call_id"], "call_a");
        assert_eq!(output[0]["arguments"], "{\"path\":\"a\"}");
        assert_eq!(output[1]["arguments"], "{\"p\":\"x\"}");
        let seqs: Vec<u64> = events
            .iter()
            .map(|e| e["sequence_number"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, (0..events.len() as u64).collect::<Vec<_>>());
    }

    #[test]
    fn a_cut_stream_is_incomplete_and_a_failure_is_reported() {
        let events = run(&[chunk(json!({"content": "ab"}), json!("length"))]);
        let last = events.last().unwrap();
        assert_eq!(last["type"], "response.incomplete");
        assert_eq!(
            last["response"]["incomplete_details"]["reason"],
            "max_output_tokens"
        );

        let ctx = ResponseContext::new("abc", &json!({}));
        let mut t = ChatStreamToResponses::new(ctx, "m", 0);
        let kinds: Vec<Value> = t
            .failed(502, "boom")
            .into_iter()
            .map(|e| e.data["type"].clone())
            .collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "error",
                "response.failed"
            ]
        );
    }
}
