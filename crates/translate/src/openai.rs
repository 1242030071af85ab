//! Reading OpenAI chat requests and building OpenAI chat responses and chunks: the side every
//! translation shares.

use serde_json::{Map, Value, json};

use crate::TranslateError;

/// One piece of an OpenAI message's `content`.
#[derive(Debug, Clone, PartialEq)]
pub enum Part<'a> {
    Text {
        text: &'a str,
        /// Anthropic prompt-caching marker that clients put on parts; kept where the target
        /// format has a place for it.
        cache_control: Option<&'a Value>,
    },
    Image(Image),
    /// A part this crate does not translate (audio, files); each provider decides.
    Other(&'a Value),
}

/// An image as OpenAI clients send it: inline (data URI) or by URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Image {
    Inline { media_type: String, data: String },
    Url(String),
}

impl Image {
    /// `data:<media type>;base64,<data>` becomes inline; anything else is a URL.
    pub fn parse(url: &str) -> Result<Self, TranslateError> {
        let Some(rest) = url.strip_prefix("data:") else {
            return Ok(Self::Url(url.to_string()));
        };
        let (meta, data) = rest
            .split_once(',')
            .ok_or_else(|| TranslateError::invalid("image data URI has no ',' before its data"))?;
        let media_type = meta
            .strip_suffix(";base64")
            .ok_or_else(|| TranslateError::invalid("image data URI must be base64-encoded"))?;
        Ok(Self::Inline {
            media_type: media_type.to_string(),
            data: data.to_string(),
        })
    }

    /// The media type of a URL guessed from its extension, for formats that want one.
    pub fn guess_media_type(url: &str) -> &'static str {
        let path = url
            .split(['?', '#'])
            .next()
            .unwrap_or(url)
            .to_ascii_lowercase();
        match path.rsplit('.').next() {
            Some("png") => "image/png",
            Some("gif") => "image/gif",
            Some("webp") => "image/webp",
            Some("pdf") => "application/pdf",
            _ => "image/jpeg",
        }
    }
}

/// The parts of a message's `content`, which may be a string, an array of parts or null.
pub fn content_parts(content: Option<&Value>) -> Result<Vec<Part<'_>>, TranslateError> {
    match content {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![Part::Text {
            text: s,
            cache_control: None,
        }]),
        Some(Value::Array(items)) => items.iter().map(part).collect(),
        Some(other) => Err(TranslateError::invalid(format!(
            "message content must be a string or an array of parts, got {}",
            kind_of(other)
        ))),
    }
}

fn part(item: &Value) -> Result<Part<'_>, TranslateError> {
    match item.get("type").and_then(Value::as_str) {
        Some("text") => Ok(Part::Text {
            text: item.get("text").and_then(Value::as_str).unwrap_or(""),
            cache_control: item.get("cache_control"),
        }),
        Some("image_url") => {
            // Both `{"image_url": "..."}` and `{"image_url": {"url": "..."}}` occur in the wild.
            let url = match item.get("image_url") {
                Some(Value::String(s)) => Some(s.as_str()),
                Some(obj) => obj.get("url").and_then(Value::as_str),
                None => None,
            };
            let url = url.ok_or_else(|| TranslateError::invalid("image_url part has no url"))?;
            Ok(Part::Image(Image::parse(url)?))
        }
        _ => Ok(Part::Other(item)),
    }
}

/// The text of a message's content, parts joined; non-text parts are skipped.
pub fn content_text(content: Option<&Value>) -> Result<String, TranslateError> {
    Ok(content_parts(content)?
        .into_iter()
        .filter_map(|p| match p {
            Part::Text { text, .. } => Some(text),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(""))
}

pub fn messages(req: &Value) -> Result<&Vec<Value>, TranslateError> {
    req.get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError::invalid("request has no 'messages' array"))
}

pub fn role(msg: &Value) -> &str {
    msg.get("role").and_then(Value::as_str).unwrap_or("")
}

/// `stop` may be a string or a list of strings.
pub fn stop_sequences(req: &Value) -> Vec<String> {
    match req.get("stop") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// `max_completion_tokens` is the newer name; either may be sent.
pub fn max_tokens(req: &Value) -> Option<u64> {
    req.get("max_completion_tokens")
        .and_then(Value::as_u64)
        .or_else(|| req.get("max_tokens").and_then(Value::as_u64))
}

/// A tool call's `arguments` string as JSON; an empty string means "no arguments".
pub fn tool_arguments(arguments: Option<&Value>) -> Result<Value, TranslateError> {
    match arguments {
        None | Some(Value::Null) => Ok(json!({})),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(json!({})),
        Some(Value::String(s)) => serde_json::from_str(s).map_err(|e| {
            TranslateError::invalid(format!("tool call arguments are not valid JSON ({e}): {s}"))
        }),
        // Some clients send the object itself.
        Some(other) => Ok(other.clone()),
    }
}

/// A function tool as (name, description, parameters).
pub type FunctionTool<'a> = (&'a str, Option<&'a str>, Option<&'a Value>);

/// The function tools of a request.
pub fn function_tools(req: &Value) -> Result<Vec<FunctionTool<'_>>, TranslateError> {
    let Some(tools) = req.get("tools").and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    tools
        .iter()
        .map(|t| {
            let f = t
                .get("function")
                .ok_or_else(|| TranslateError::invalid("only function tools are supported"))?;
            let name = f
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| TranslateError::invalid("tool function has no name"))?;
            Ok((
                name,
                f.get("description").and_then(Value::as_str),
                f.get("parameters"),
            ))
        })
        .collect()
}

/// What `tool_choice` asks for, independent of any provider's spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    Auto,
    Required,
    None,
    Function(String),
}

pub fn tool_choice(req: &Value) -> Result<Option<ToolChoice>, TranslateError> {
    match req.get("tool_choice") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Ok(Some(ToolChoice::Auto)),
            "required" | "any" => Ok(Some(ToolChoice::Required)),
            "none" => Ok(Some(ToolChoice::None)),
            other => Err(TranslateError::invalid(format!(
                "unknown tool_choice '{other}'"
            ))),
        },
        Some(obj) => obj
            .pointer("/function/name")
            .and_then(Value::as_str)
            .map(|n| Some(ToolChoice::Function(n.to_string())))
            .ok_or_else(|| TranslateError::invalid("tool_choice object needs function.name")),
    }
}

/// Thinking budget in tokens for a `reasoning_effort`; `None` turns thinking off.
/// The numbers are LiteLLM's defaults, so the same request costs the same through either.
pub fn reasoning_budget(effort: &str) -> Result<Option<u64>, TranslateError> {
    match effort {
        "none" | "disable" | "disabled" => Ok(None),
        "minimal" => Ok(Some(128)),
        "low" => Ok(Some(1024)),
        "medium" => Ok(Some(2048)),
        "high" => Ok(Some(4096)),
        "xhigh" => Ok(Some(8192)),
        "max" => Ok(Some(16384)),
        other => Err(TranslateError::invalid(format!(
            "unknown reasoning_effort '{other}' (expected none, minimal, low, medium, high, xhigh or max)"
        ))),
    }
}

/// Token counts as providers report them, before they are shaped into OpenAI `usage`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenCounts {
    /// All prompt tokens, cached ones included.
    pub prompt: u64,
    /// All completion tokens, reasoning included.
    pub completion: u64,
    pub cache_read: Option<u64>,
    pub cache_creation: Option<u64>,
    pub reasoning: Option<u64>,
}

impl TokenCounts {
    /// OpenAI `usage`, with the Anthropic-style cache fields at the top level as LiteLLM
    /// returns them (cost tracking reads them there).
    pub fn to_usage(self) -> Value {
        let mut u = Map::new();
        u.insert("prompt_tokens".into(), json!(self.prompt));
        u.insert("completion_tokens".into(), json!(self.completion));
        u.insert("total_tokens".into(), json!(self.prompt + self.completion));
        if let Some(read) = self.cache_read {
            u.insert(
                "prompt_tokens_details".into(),
                json!({"cached_tokens": read}),
            );
            u.insert("cache_read_input_tokens".into(), json!(read));
        }
        if let Some(created) = self.cache_creation {
            u.insert("cache_creation_input_tokens".into(), json!(created));
        }
        if let Some(r) = self.reasoning {
            u.insert(
                "completion_tokens_details".into(),
                json!({"reasoning_tokens": r}),
            );
        }
        Value::Object(u)
    }
}

/// A `chat.completion` with one choice.
pub fn completion(
    id: &str,
    model: &str,
    created: u64,
    message: Value,
    finish_reason: &str,
    usage: Option<Value>,
) -> Value {
    let mut out = json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
    });
    // Without the provider's counts there is no `usage`: the gateway estimates the call then,
    // where zeros would charge it nothing.
    if let (Some(u), Some(o)) = (usage, out.as_object_mut()) {
        o.insert("usage".into(), u);
    }
    out
}

/// One `chat.completion.chunk` for choice 0.
pub fn chunk(id: &str, model: &str, created: u64, delta: Value, finish: Option<&str>) -> Value {
    json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    })
}

/// The trailing usage chunk OpenAI sends when `stream_options.include_usage` is set.
pub fn usage_chunk(id: &str, model: &str, created: u64, usage: Value) -> Value {
    json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage,
    })
}

pub fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parse an upstream body, or explain with an excerpt why it could not be.
pub fn parse_upstream(body: &str) -> Result<Value, TranslateError> {
    serde_json::from_str(body)
        .map_err(|e| TranslateError::untranslatable(format!("invalid JSON ({e})"), body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_uri_and_url_images() {
        assert_eq!(
            Image::parse("data:image/png;base64,iVBO").ok(),
            Some(Image::Inline {
                media_type: "image/png".into(),
                data: "iVBO".into()
            })
        );
        assert_eq!(
            Image::parse("https://x/cat.jpg").ok(),
            Some(Image::Url("https://x/cat.jpg".into()))
        );
        let err = Image::parse("data:image/png,raw")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("must be base64-encoded"), "{err:?}");
        assert_eq!(Image::guess_media_type("https://x/a.PNG?s=1"), "image/png");
    }

    #[test]
    fn usage_keeps_cache_fields_top_level() {
        let u = TokenCounts {
            prompt: 30,
            completion: 5,
            cache_read: Some(10),
            cache_creation: Some(15),
            reasoning: None,
        }
        .to_usage();
        assert_eq!(u["total_tokens"], 35);
        assert_eq!(u["prompt_tokens_details"]["cached_tokens"], 10);
        assert_eq!(u["cache_creation_input_tokens"], 15);
    }

    #[test]
    fn empty_arguments_mean_no_arguments() {
        assert_eq!(tool_arguments(Some(&json!(""))).ok(), Some(json!({})));
        let err = tool_arguments(Some(&json!("{oops")))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("tool call arguments are not valid JSON"),
            "{err:?}"
        );
    }
}
