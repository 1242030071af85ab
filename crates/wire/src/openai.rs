//! OpenAI chat-completions types. Unknown fields are kept in `extra` so that a request or
//! response can pass through the gateway without losing what newer clients send.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The most tokens one usage field may count: a million times the largest context window
/// offered today. Upstream reports above it (a bug or a hostile server: `prompt_tokens: 9e18`)
/// are clamped to it, so that a call's cost and a key's spend stay far inside `i64` nano-USD.
pub const MAX_USAGE_TOKENS: u64 = 1_000_000_000_000;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default, deserialize_with = "token_count")]
    pub prompt_tokens: u64,
    #[serde(default, deserialize_with = "token_count")]
    pub completion_tokens: u64,
    #[serde(default, deserialize_with = "token_count")]
    pub total_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
    #[serde(
        default,
        deserialize_with = "token_count_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(
        default,
        deserialize_with = "token_count_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub cache_read_input_tokens: Option<u64>,
}

impl Usage {
    pub fn new(prompt: u64, completion: u64) -> Self {
        Self {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt.saturating_add(completion),
            ..Self::default()
        }
    }

    pub fn cached_tokens(&self) -> u64 {
        self.prompt_tokens_details
            .as_ref()
            .and_then(|d| d.cached_tokens)
            .or(self.cache_read_input_tokens)
            .unwrap_or(0)
    }

    /// Every count at most [`MAX_USAGE_TOKENS`]; `true` when one was above it.
    pub fn clamp(&mut self) -> bool {
        let mut clamped = false;
        let mut cap = |v: &mut u64| {
            if *v > MAX_USAGE_TOKENS {
                *v = MAX_USAGE_TOKENS;
                clamped = true;
            }
        };
        cap(&mut self.prompt_tokens);
        cap(&mut self.completion_tokens);
        cap(&mut self.total_tokens);
        for v in [
            self.cache_creation_input_tokens.as_mut(),
            self.cache_read_input_tokens.as_mut(),
            self.prompt_tokens_details
                .as_mut()
                .and_then(|d| d.cached_tokens.as_mut()),
            self.completion_tokens_details
                .as_mut()
                .and_then(|d| d.reasoning_tokens.as_mut()),
        ]
        .into_iter()
        .flatten()
        {
            cap(v);
        }
        clamped
    }

    /// A copy within [`MAX_USAGE_TOKENS`], or `None` when this one already is.
    pub fn clamped(&self) -> Option<Usage> {
        let mut c = self.clone();
        c.clamp().then_some(c)
    }
}

/// A token count as upstreams send it: an integer, or a float (`9e18`, `12.0`) as Python
/// servers may write one. Fractions are dropped, negatives are 0, and anything beyond `u64`
/// saturates (then [`Usage::clamp`] brings it down to the ceiling); only a non-number is an
/// error. A strict parse would turn one odd usage report into a failed call.
fn token_count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Ok(token_count_opt(d)?.unwrap_or(0))
}

fn token_count_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(v) = n.as_u64() {
        return Ok(Some(v));
    }
    if n.as_i64().is_some() {
        return Ok(Some(0));
    }
    // `as` saturates (NaN is 0); JSON carries no NaN or infinity anyway.
    Ok(Some(n.as_f64().map_or(0, |f| f.max(0.0) as u64)))
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    #[serde(
        default,
        deserialize_with = "token_count_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub cached_tokens: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletionTokensDetails {
    #[serde(
        default,
        deserialize_with = "token_count_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub reasoning_tokens: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Message {
    pub fn text(role: &str, text: impl Into<String>) -> Self {
        Self {
            role: role.to_string(),
            content: Some(Content::Text(text.into())),
            ..Self::default()
        }
    }

    /// All text of the message, parts joined, images skipped.
    pub fn text_content(&self) -> String {
        match &self.content {
            None => String::new(),
            Some(Content::Text(t)) => t.clone(),
            Some(Content::Parts(parts)) => parts
                .iter()
                .filter_map(|p| match p {
                    ContentPart::Text { text } => Some(text.as_str()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join(""),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ContentPart {
    #[serde(rename = "text")]
    Text { text: String },
    #[serde(rename = "image_url")]
    ImageUrl { image_url: ImageUrl },
    #[serde(untagged)]
    Other(Value),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageUrl {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    pub function: FunctionCall,
}

fn function_type() -> String {
    "function".to_string()
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    #[serde(default)]
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    pub function: FunctionDef,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionDef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    #[serde(default)]
    pub id: String,
    #[serde(default = "completion_object")]
    pub object: String,
    #[serde(default)]
    pub created: u64,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub choices: Vec<Choice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn completion_object() -> String {
    "chat.completion".to_string()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    #[serde(default)]
    pub index: u32,
    pub message: Message,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatChunk {
    #[serde(default)]
    pub id: String,
    #[serde(default = "chunk_object")]
    pub object: String,
    #[serde(default)]
    pub created: u64,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

fn chunk_object() -> String {
    "chat.completion.chunk".to_string()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    #[serde(default)]
    pub index: u32,
    #[serde(default)]
    pub delta: Delta,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// DeepSeek, vLLM and LiteLLM name reasoning differently; all three are read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolCallDelta {
    #[serde(default)]
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionDelta>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionDelta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelList {
    pub object: String,
    pub data: Vec<ModelCard>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub owned_by: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_usage_parses_and_clamps_to_the_ceiling() {
        let mut u: Usage = serde_json::from_str(
            r#"{"prompt_tokens":9e18,"completion_tokens":18446744073709551615,"total_tokens":1e300,
                "prompt_tokens_details":{"cached_tokens":-5},"cache_read_input_tokens":12.7,
                "completion_tokens_details":{"reasoning_tokens":99999999999999999999}}"#,
        )
        .unwrap_or_default();
        assert_eq!(u.prompt_tokens, 9_000_000_000_000_000_000);
        assert_eq!(u.completion_tokens, u64::MAX);
        assert_eq!(u.total_tokens, u64::MAX);
        assert_eq!(u.cached_tokens(), 0);
        assert_eq!(u.cache_read_input_tokens, Some(12));
        assert!(u.clamp());
        assert_eq!(u.prompt_tokens, MAX_USAGE_TOKENS);
        assert_eq!(u.completion_tokens, MAX_USAGE_TOKENS);
        assert_eq!(u.total_tokens, MAX_USAGE_TOKENS);
        assert_eq!(
            u.completion_tokens_details
                .as_ref()
                .and_then(|d| d.reasoning_tokens),
            Some(MAX_USAGE_TOKENS)
        );
        let mut plain = Usage::new(10, 2);
        assert!(!plain.clamp());
        assert_eq!(plain, Usage::new(10, 2));
        let err = serde_json::from_str::<Usage>(r#"{"prompt_tokens":"many"}"#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("expected a JSON number"), "{err:?}");
    }

    #[test]
    fn request_keeps_unknown_fields_and_parses_parts() {
        let raw = serde_json::json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "hi "},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "input_audio", "input_audio": {"data": "x"}}
                ]}
            ],
            "seed": 7
        });
        let req: ChatRequest = serde_json::from_value(raw.clone()).unwrap_or_default();
        assert_eq!(req.extra.get("seed"), Some(&serde_json::json!(7)));
        assert_eq!(req.messages[0].text_content(), "hi ");
        assert_eq!(serde_json::to_value(&req).ok(), Some(raw));
    }

    #[test]
    fn chunk_with_tool_call_delta_parses() {
        let chunk: ChatChunk = serde_json::from_str(
            r#"{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"a\""}}]},"finish_reason":null}]}"#,
        )
        .unwrap_or_default();
        let calls = chunk.choices[0]
            .delta
            .tool_calls
            .clone()
            .unwrap_or_default();
        assert_eq!(calls[0].index, 1);
        assert_eq!(
            calls[0]
                .function
                .as_ref()
                .and_then(|f| f.arguments.as_deref()),
            Some("{\"a\"")
        );
    }

    #[test]
    fn usage_cached_tokens_from_either_field() {
        let u: Usage = serde_json::from_str(
            r#"{"prompt_tokens":10,"completion_tokens":2,"total_tokens":12,"prompt_tokens_details":{"cached_tokens":4}}"#,
        )
        .unwrap_or_default();
        assert_eq!(u.cached_tokens(), 4);
        let u = Usage {
            cache_read_input_tokens: Some(3),
            ..Usage::new(1, 1)
        };
        assert_eq!(u.cached_tokens(), 3);
    }
}
