//! Tool calls written as text. Small local models, and llama-server without `--jinja`, put
//! the call in `content` instead of `tool_calls`: Hermes/Qwen `<tool_call>{...}</tool_call>`,
//! a fenced ```json block, a bare JSON object, Mistral's `[TOOL_CALLS]`, or Llama 3's
//! `{"name": ..., "parameters": ...}` (optionally after `<|python_tag|>`). A call is taken
//! only when tools were offered and the JSON names one of them with arguments that fit its
//! schema (required keys present, no keys it does not declare), so prose that merely contains
//! JSON is left alone.

use serde_json::{Map, Value};

use crate::client::ToolSpec;

#[derive(Debug, Clone, PartialEq)]
pub struct TextToolCall {
    pub name: String,
    pub arguments: Value,
}

/// What was found: the calls, and the text that remains once they are cut out.
#[derive(Debug, Clone, PartialEq)]
pub struct Extracted {
    pub calls: Vec<TextToolCall>,
    pub text: String,
}

pub fn extract(content: &str, tools: &[ToolSpec]) -> Option<Extracted> {
    if tools.is_empty() || content.trim().is_empty() {
        return None;
    }
    tagged(content, tools)
        .or_else(|| mistral(content, tools))
        .or_else(|| fenced(content, tools))
        .or_else(|| bare(content, tools))
}

/// `<tool_call>{json}</tool_call>`, one or more; an unclosed last tag (the model stopped
/// right after the JSON) is accepted.
fn tagged(content: &str, tools: &[ToolSpec]) -> Option<Extracted> {
    const OPEN: &str = "<tool_call>";
    const CLOSE: &str = "</tool_call>";
    let mut calls = Vec::new();
    let mut text = String::new();
    let mut rest = content;
    while let Some(start) = rest.find(OPEN) {
        text.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len()..];
        let (inner, next) = match after.find(CLOSE) {
            Some(end) => (&after[..end], &after[end + CLOSE.len()..]),
            None => (after, ""),
        };
        calls.extend(calls_in(&parse_json(inner)?, tools)?);
        rest = next;
    }
    text.push_str(rest);
    finish(calls, &text)
}

/// `[TOOL_CALLS][{"name":..,"arguments":{..}}]` (v3) or `[TOOL_CALLS]name[ARGS]{..}` (v11).
fn mistral(content: &str, tools: &[ToolSpec]) -> Option<Extracted> {
    const TAG: &str = "[TOOL_CALLS]";
    let start = content.find(TAG)?;
    let before = &content[..start];
    let mut calls = Vec::new();
    for part in content[start..].split(TAG).filter(|p| !p.trim().is_empty()) {
        let part = part.trim();
        if let Some((name, args)) = part.split_once("[ARGS]") {
            let arguments = parse_json(args)?;
            calls.push(fit(name.trim(), arguments, tools)?);
        } else {
            calls.extend(calls_in(&parse_json(part)?, tools)?);
        }
    }
    finish(calls, before)
}

/// ```json ... ``` (or ```tool_call, or no language) blocks whose JSON is a call.
fn fenced(content: &str, tools: &[ToolSpec]) -> Option<Extracted> {
    let mut calls = Vec::new();
    let mut text = String::new();
    let mut rest = content;
    while let Some(start) = rest.find("```") {
        let after = &rest[start + 3..];
        let Some(nl) = after.find('\n') else { break };
        let lang = after[..nl].trim();
        let body = &after[nl + 1..];
        let Some(end) = body.find("```") else { break };
        let inner = &body[..end];
        let next = &body[end + 3..];
        let parsed = matches!(lang, "" | "json" | "json5" | "tool_call" | "tool_code")
            .then(|| parse_json(inner))
            .flatten()
            .and_then(|v| calls_in(&v, tools));
        match parsed {
            Some(found) => {
                text.push_str(&rest[..start]);
                calls.extend(found);
            }
            // Code the model is showing, not a call.
            None => text.push_str(&rest[..start + 3 + nl + 1 + end + 3]),
        }
        rest = next;
    }
    text.push_str(rest);
    finish(calls, &text)
}

/// The whole reply is JSON (after an optional `<|python_tag|>`), or prose with one JSON
/// object in it that is a call.
fn bare(content: &str, tools: &[ToolSpec]) -> Option<Extracted> {
    let trimmed = content.trim();
    let trimmed = trimmed
        .strip_prefix("<|python_tag|>")
        .unwrap_or(trimmed)
        .trim();
    if let Some(v) = parse_json(trimmed) {
        return finish(calls_in(&v, tools)?, "");
    }
    // A fenced block `fenced` turned down is code being shown; its JSON is not a call.
    if content.contains("```") {
        return None;
    }
    // JSON objects embedded in prose: try each `{` that starts a complete object.
    for (i, _) in content.match_indices('{') {
        let mut it = serde_json::Deserializer::from_str(&content[i..]).into_iter::<Value>();
        let Some(Ok(v)) = it.next() else { continue };
        let end = i + it.byte_offset();
        if let Some(calls) = calls_in(&v, tools) {
            let text = format!("{}{}", &content[..i], &content[end..]);
            return finish(calls, &text);
        }
    }
    None
}

fn finish(calls: Vec<TextToolCall>, text: &str) -> Option<Extracted> {
    (!calls.is_empty()).then(|| Extracted {
        calls,
        text: text.trim().to_string(),
    })
}

fn parse_json(s: &str) -> Option<Value> {
    let s = s.trim();
    if !(s.starts_with('{') || s.starts_with('[')) {
        return None;
    }
    serde_json::from_str(s).ok()
}

/// The calls in one JSON value: an object or an array of objects; every one must fit.
fn calls_in(v: &Value, tools: &[ToolSpec]) -> Option<Vec<TextToolCall>> {
    match v {
        Value::Array(items) if !items.is_empty() => {
            items.iter().map(|i| one_call(i, tools)).collect()
        }
        Value::Object(_) => one_call(v, tools).map(|c| vec![c]),
        _ => None,
    }
}

fn one_call(v: &Value, tools: &[ToolSpec]) -> Option<TextToolCall> {
    let o = v.as_object()?;
    // OpenAI's own shape written as text: {"type":"function","function":{...}}.
    if let Some(f) = o.get("function").filter(|f| f.is_object()) {
        return one_call(f, tools);
    }
    let name = o.get("name").and_then(Value::as_str)?;
    let args = ["arguments", "parameters", "args", "input"]
        .iter()
        .find_map(|k| o.get(*k))
        .cloned()
        .unwrap_or_else(|| Value::Object(Map::new()));
    // Keys other than the name and the arguments mean this is data, not a call.
    if o.keys().any(|k| {
        !matches!(
            k.as_str(),
            "name" | "arguments" | "parameters" | "args" | "input" | "id" | "type"
        )
    }) {
        return None;
    }
    fit(name, args, tools)
}

/// `arguments` may be a JSON string (as on the wire); it must be an object that fits.
fn fit(name: &str, args: Value, tools: &[ToolSpec]) -> Option<TextToolCall> {
    let tool = tools.iter().find(|t| t.name == name)?;
    let args = match args {
        Value::String(s) => serde_json::from_str::<Value>(&s).ok()?,
        other => other,
    };
    let obj = args.as_object()?;
    let schema = &tool.parameters;
    // The tools take Claude-style aliases (`file_path` for `path`), so a call may use them.
    fn names(key: &str) -> Vec<&str> {
        crate::tools::fs::ARG_NAMES
            .iter()
            .find(|n| n.contains(&key))
            .map_or_else(|| vec![key], |n| n.to_vec())
    }
    if let Some(required) = schema.get("required").and_then(Value::as_array)
        && required
            .iter()
            .filter_map(Value::as_str)
            .any(|r| !names(r).iter().any(|n| obj.contains_key(*n)))
    {
        return None;
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object)
        && obj
            .keys()
            .any(|k| !names(k).iter().any(|n| props.contains_key(*n)))
    {
        return None;
    }
    Some(TextToolCall {
        name: name.to_string(),
        arguments: args,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tools() -> Vec<ToolSpec> {
        // The tool offered in the captured llama-server request.
        let req: Value = serde_json::from_slice(include_bytes!(
            "../../../testkit/fixtures/llama-server/tool_call_request.json"
        ))
        .unwrap_or_default();
        let f = &req["tools"][0]["function"];
        vec![
            ToolSpec {
                name: f["name"].as_str().unwrap_or_default().into(),
                description: f["description"].as_str().unwrap_or_default().into(),
                parameters: f["parameters"].clone(),
            },
            ToolSpec {
                name: "exec".into(),
                description: "Run a command".into(),
                parameters: json!({"type":"object","properties":{"command":{"type":"string"}},"required":["command"]}),
            },
        ]
    }

    /// The content llama-server streamed in `tool_call_as_bare_json.sse`, put back together.
    fn captured_content() -> String {
        let sse = include_str!("../../../testkit/fixtures/llama-server/tool_call_as_bare_json.sse");
        sse.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|v| {
                v.pointer("/choices/0/delta/content")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .collect()
    }

    fn write_call() -> TextToolCall {
        TextToolCall {
            name: "write".into(),
            arguments: json!({"path": "hello.txt", "content": "hi"}),
        }
    }

    #[test]
    fn the_captured_bare_json_call_is_parsed() {
        let content = captured_content();
        assert!(content.starts_with("{\"name\": \"write\""), "{content}");
        let e = extract(&content, &tools()).unwrap_or_else(|| panic!("no call in {content}"));
        assert_eq!(e.calls, vec![write_call()]);
        assert_eq!(e.text, "");
    }

    #[test]
    fn every_text_form_is_parsed() {
        let call = r#"{"name": "write", "arguments": {"path": "hello.txt", "content": "hi"}}"#;
        let cases = [
            format!("<tool_call>\n{call}\n</tool_call>"),
            format!("I will write it.\n<tool_call>\n{call}\n</tool_call>"),
            format!("<tool_call>{call}"),
            format!("I will write it.\n```json\n{call}\n```"),
            format!("```\n{call}\n```"),
            format!("[TOOL_CALLS][{call}]"),
            "[TOOL_CALLS]write[ARGS]{\"path\": \"hello.txt\", \"content\": \"hi\"}".to_string(),
            r#"{"name": "write", "parameters": {"path": "hello.txt", "content": "hi"}}"#.to_string(),
            r#"<|python_tag|>{"name": "write", "parameters": {"path": "hello.txt", "content": "hi"}}"#.to_string(),
            r#"{"name": "write", "arguments": "{\"path\": \"hello.txt\", \"content\": \"hi\"}"}"#.to_string(),
            format!("I will write it. {call}"),
        ];
        for c in &cases {
            let e = extract(c, &tools()).unwrap_or_else(|| panic!("no call in {c}"));
            assert_eq!(e.calls, vec![write_call()], "{c}");
            assert!(
                e.text.is_empty() || e.text == "I will write it.",
                "{c}: {}",
                e.text
            );
        }
    }

    #[test]
    fn the_argument_aliases_the_tools_accept_fit() {
        let e = extract(
            r#"{"name": "write", "arguments": {"file_path": "hello.txt", "content": "hi"}}"#,
            &tools(),
        )
        .unwrap_or_else(|| panic!("file_path is the write tool's alias for path"));
        assert_eq!(e.calls[0].arguments["file_path"], "hello.txt");
    }

    #[test]
    fn several_calls_in_one_reply_are_all_taken() {
        let c = "<tool_call>{\"name\":\"exec\",\"arguments\":{\"command\":\"ls\"}}</tool_call>\n<tool_call>{\"name\":\"exec\",\"arguments\":{\"command\":\"pwd\"}}</tool_call>";
        let e = extract(c, &tools()).unwrap_or_else(|| panic!("no calls"));
        assert_eq!(e.calls.len(), 2);
        assert_eq!(e.calls[1].arguments, json!({"command": "pwd"}));
    }

    #[test]
    fn json_that_does_not_fit_an_offered_tool_is_left_as_text() {
        let t = tools();
        for c in [
            // Not offered.
            r#"{"name": "delete", "arguments": {"path": "x"}}"#,
            // Missing a required argument.
            r#"{"name": "write", "arguments": {"path": "x"}}"#,
            // An argument the tool does not take.
            r#"{"name": "write", "arguments": {"path": "x", "content": "y", "mode": 7}}"#,
            // Data that happens to have a name.
            r#"{"name": "write", "version": "1.0"}"#,
            // A code block showing JSON in another language.
            "```python\n{\"name\": \"exec\", \"arguments\": {\"command\": \"ls\"}}\n```",
            "Plain answer with no JSON at all.",
        ] {
            assert_eq!(extract(c, &t), None, "{c}");
        }
        assert_eq!(
            extract(r#"{"name": "exec", "arguments": {"command": "ls"}}"#, &[]),
            None,
            "no tools offered"
        );
    }
}

/// Holds back streamed text that may turn out to be a tool call written as text, so the
/// user does not see raw call JSON printed before the tool runs. Ordinary prose streams
/// through; from a marker on (`<tool_call>`, `[TOOL_CALLS]`, `<|python_tag|>`, a JSON-ish
/// fenced block, or a reply that opens with `{` or `[`), text is held until the reply ends:
/// then it is dropped if the calls were taken, or shown if they were not.
#[derive(Debug, Default)]
pub struct StreamGate {
    /// Text received but not yet shown.
    held: String,
    shown_any: bool,
    /// Holding to the end of the reply.
    holding: bool,
    /// Inside a fenced block of code being shown (not a call).
    in_code: bool,
}

const MARKERS: &[&str] = &["<tool_call>", "[TOOL_CALLS]", "<|python_tag|>", "```"];

impl StreamGate {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed streamed text; returns what may be shown now.
    pub fn push(&mut self, text: &str) -> String {
        self.held.push_str(text);
        if self.holding {
            return String::new();
        }
        if !self.shown_any {
            let t = self.held.trim_start();
            if t.is_empty() {
                return String::new();
            }
            if t.starts_with('{') || t.starts_with('[') && !t.starts_with("[TOOL_CALLS]") {
                self.holding = true;
                return String::new();
            }
        }
        let mut out = String::new();
        loop {
            if self.in_code {
                // Inside a code block being shown: everything through its closing fence.
                match self.held.find("```") {
                    Some(end) => {
                        out.push_str(&self.release(end + 3));
                        self.in_code = false;
                        continue;
                    }
                    None => break,
                }
            }
            let found = MARKERS
                .iter()
                .filter_map(|m| self.held.find(m).map(|p| (p, *m)))
                .min_by_key(|(p, _)| *p);
            let Some((pos, marker)) = found else { break };
            if marker == "```" {
                let after = &self.held[pos + 3..];
                let Some(nl) = after.find('\n') else {
                    // The language line is not complete yet.
                    out.push_str(&self.release(pos));
                    return out;
                };
                let lang = after[..nl].trim();
                if !matches!(lang, "" | "json" | "json5" | "tool_call" | "tool_code") {
                    out.push_str(&self.release(pos + 3 + nl + 1));
                    self.in_code = true;
                    continue;
                }
            }
            out.push_str(&self.release(pos));
            self.holding = true;
            return out;
        }
        // A marker may be cut across chunks: keep a tail that could start one.
        let keep = self
            .held
            .char_indices()
            .rev()
            .take(16)
            .map(|(i, _)| i)
            .filter(|i| {
                let tail = &self.held[*i..];
                MARKERS
                    .iter()
                    .any(|m| m.len() > tail.len() && m.starts_with(tail))
            })
            .min()
            .unwrap_or(self.held.len());
        out.push_str(&self.release(keep));
        out
    }

    /// The reply ended: what is left to show when no call was taken from it.
    pub fn finish(&mut self) -> String {
        self.holding = false;
        std::mem::take(&mut self.held)
    }

    fn release(&mut self, upto: usize) -> String {
        let out: String = self.held.drain(..upto).collect();
        if !out.is_empty() {
            self.shown_any = true;
        }
        out
    }
}

#[cfg(test)]
mod gate_tests {
    use super::*;

    fn run(chunks: &[&str]) -> (String, String) {
        let mut g = StreamGate::new();
        let shown: String = chunks.iter().map(|c| g.push(c)).collect();
        (shown, g.finish())
    }

    #[test]
    fn prose_streams_and_calls_are_held() {
        assert_eq!(
            run(&["Hello", " there"]),
            ("Hello there".into(), String::new())
        );
        assert_eq!(
            run(&["{\"", "name", "\": \"write\"}"]),
            (String::new(), "{\"name\": \"write\"}".into())
        );
        assert_eq!(
            run(&["I will write it.\n<tool", "_call>{\"name\":1}</tool_call>"]),
            (
                "I will write it.\n".into(),
                "<tool_call>{\"name\":1}</tool_call>".into()
            )
        );
        assert_eq!(
            run(&["See:\n``", "`json\n{}\n```"]),
            ("See:\n".into(), "```json\n{}\n```".into())
        );
    }

    #[test]
    fn code_that_is_shown_is_not_held() {
        let (shown, rest) = run(&["Run:\n```sh\ncargo", " test\n```\nthen", " commit."]);
        assert_eq!(shown, "Run:\n```sh\ncargo test\n```\nthen commit.");
        assert_eq!(rest, "");
    }
}
