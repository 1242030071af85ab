//! What a fake provider answers to one request.

use std::time::Duration;

use serde_json::{Value, json};

/// Holds the answers scripted with [`Reply::held_by`] until the test opens it: a call kept
/// in flight for exactly as long as the test needs, where a delay would only guess.
#[derive(Debug, Clone, Default)]
pub struct Gate(std::sync::Arc<tokio::sync::watch::Sender<bool>>);

impl Gate {
    pub fn new() -> Self {
        Self::default()
    }

    /// Let every held answer (and every later one) go.
    pub fn open(&self) {
        self.0.send_replace(true);
    }

    pub(crate) async fn wait(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`, so the wait ends only when the gate opens.
        let _ = rx.wait_for(|open| *open).await;
    }
}

impl PartialEq for Gate {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Gate {}

/// The token counts a fake reports, written by each fake in its own provider's shape (the
/// testkit shares no types with the gateway, so a wire bug cannot be written and read back
/// identically).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Of the completion, the reasoning ("thinking") tokens.
    pub reasoning_tokens: Option<u64>,
    /// Of the prompt, the tokens read from the provider's prompt cache.
    pub cache_read_input_tokens: Option<u64>,
    /// Of the prompt, the tokens written to the provider's prompt cache.
    pub cache_creation_input_tokens: Option<u64>,
}

impl Usage {
    pub fn new(prompt: u64, completion: u64) -> Self {
        Self {
            prompt_tokens: prompt,
            completion_tokens: completion,
            ..Self::default()
        }
    }

    pub fn total(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }

    /// OpenAI's `usage` object: cached prompt tokens under `prompt_tokens_details`, reasoning
    /// under `completion_tokens_details`. Cache writes have no OpenAI field; they go top-level
    /// as `cache_creation_input_tokens`, as LiteLLM's own OpenAI-format answers carry them.
    pub fn openai_json(&self) -> Value {
        let mut u = json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total(),
        });
        if let Some(n) = self.cache_read_input_tokens {
            u["prompt_tokens_details"] = json!({"cached_tokens": n});
        }
        if let Some(n) = self.reasoning_tokens {
            u["completion_tokens_details"] = json!({"reasoning_tokens": n});
        }
        if let Some(n) = self.cache_creation_input_tokens {
            u["cache_creation_input_tokens"] = json!(n);
        }
        u
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptedToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// How a reply goes wrong, if it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// An HTTP error with the provider's error envelope; `retry_after` in seconds.
    Status {
        status: u16,
        message: String,
        retry_after: Option<u64>,
    },
    /// Accept the request and never answer.
    Hang,
    /// Stream `after` chunks, then reset the connection.
    ResetMidStream { after: usize },
    /// Stream `after` chunks, then end the body cleanly without a finish or `[DONE]`.
    TruncateStream { after: usize },
    /// Stream `after` chunks, then send nothing more and keep the connection open (a server
    /// stuck mid-generation). OpenAI-compatible fake only.
    StallMidStream { after: usize },
    /// Answer with this status and this raw body (for untranslatable responses).
    Raw { status: u16, body: String },
    /// Stream `after` frames, then the provider's own in-stream error (Anthropic's `error`
    /// event, e.g. `overloaded_error`; a Bedrock exception message, e.g.
    /// `throttlingException`; an OpenAI-style `{"error": ...}` data frame; Gemini's error
    /// object) and end the body cleanly, as the real APIs do under load.
    ErrorMidStream {
        after: usize,
        kind: String,
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub text: String,
    pub reasoning: Option<String>,
    pub tool_calls: Vec<ScriptedToolCall>,
    pub usage: Usage,
    /// Streamed text is cut into pieces of this many characters.
    pub chunk_chars: usize,
    /// Wait before the first byte.
    pub delay: Duration,
    /// Wait between streamed chunks.
    pub chunk_delay: Duration,
    pub fault: Option<Fault>,
    /// The response id to answer with instead of the fake's own (`chatcmpl-fake-...`).
    pub id: Option<String>,
    /// How a streamed answer's SSE frames are laid out on the wire.
    pub framing: crate::Framing,
    /// Answer only once this gate opens.
    pub gate: Option<Gate>,
    /// Leave the token counts out of the answer: a ConverseStream without its `metadata`
    /// event, a Gemini answer without `usageMetadata` (providers that end a stream early or
    /// proxies in front of them do). Only the Bedrock and Gemini fakes act on it; the
    /// OpenAI-compatible fake has its own no-usage captures (`replay`).
    pub usage_omitted: bool,
}

impl Default for Reply {
    fn default() -> Self {
        Self {
            text: "Hello from the fake provider.".to_string(),
            reasoning: None,
            tool_calls: Vec::new(),
            usage: Usage::new(10, 5),
            chunk_chars: 8,
            delay: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            fault: None,
            id: None,
            framing: crate::Framing::default(),
            gate: None,
            usage_omitted: false,
        }
    }
}

impl Reply {
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            ..Self::default()
        }
    }

    /// A turn that asks for one tool call.
    pub fn tool_call(id: &str, name: &str, arguments: serde_json::Value) -> Self {
        Self {
            text: String::new(),
            tool_calls: vec![ScriptedToolCall {
                id: id.to_string(),
                name: name.to_string(),
                arguments: arguments.to_string(),
            }],
            ..Self::default()
        }
    }

    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Self {
            fault: Some(Fault::Status {
                status,
                message: message.into(),
                retry_after: None,
            }),
            ..Self::default()
        }
    }

    pub fn rate_limited(retry_after: u64) -> Self {
        Self {
            fault: Some(Fault::Status {
                status: 429,
                message: "Rate limit reached".to_string(),
                retry_after: Some(retry_after),
            }),
            ..Self::default()
        }
    }

    /// The in-stream error of [`Fault::ErrorMidStream`] after `after` frames.
    pub fn with_error_mid_stream(mut self, after: usize, kind: &str, message: &str) -> Self {
        self.fault = Some(Fault::ErrorMidStream {
            after,
            kind: kind.to_string(),
            message: message.to_string(),
        });
        self
    }

    /// Cut `frames` for [`Fault::ErrorMidStream`] and append the fake's own error frame.
    pub(crate) fn error_mid_stream<T>(&self, frames: &mut Vec<T>, error: impl Fn(&str, &str) -> T) {
        if let Some(Fault::ErrorMidStream {
            after,
            kind,
            message,
        }) = &self.fault
        {
            frames.truncate(*after);
            frames.push(error(kind, message));
        }
    }

    pub fn fault(fault: Fault) -> Self {
        Self {
            fault: Some(fault),
            ..Self::default()
        }
    }

    pub fn with_usage(mut self, prompt: u64, completion: u64) -> Self {
        self.usage = Usage::new(prompt, completion);
        self
    }

    /// Answer without token counts (see [`Reply::usage_omitted`]).
    pub fn without_usage(mut self) -> Self {
        self.usage_omitted = true;
        self
    }

    /// Answer with this response id, as upstreams that reuse ids do (a fixed id, or
    /// Ollama's `chatcmpl-<number below 1000>`).
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Send nothing until `gate` opens (after the request was recorded and counted).
    pub fn held_by(mut self, gate: &Gate) -> Self {
        self.gate = Some(gate.clone());
        self
    }

    /// Before the first byte: the scripted hold, then the scripted delay.
    pub(crate) async fn wait_to_answer(&self) {
        if let Some(g) = &self.gate {
            g.wait().await;
        }
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
    }

    /// Stream with this SSE layout (CRLF, split frames, keep-alive comments).
    pub fn with_framing(mut self, framing: crate::Framing) -> Self {
        self.framing = framing;
        self
    }

    pub fn with_reasoning(mut self, reasoning: impl Into<String>) -> Self {
        self.reasoning = Some(reasoning.into());
        self
    }

    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub fn with_chunk_delay(mut self, delay: Duration) -> Self {
        self.chunk_delay = delay;
        self
    }

    pub fn with_chunk_chars(mut self, n: usize) -> Self {
        self.chunk_chars = n.max(1);
        self
    }

    pub fn with_tool_call(mut self, id: &str, name: &str, arguments: serde_json::Value) -> Self {
        self.tool_calls.push(ScriptedToolCall {
            id: id.to_string(),
            name: name.to_string(),
            arguments: arguments.to_string(),
        });
        self
    }

    pub fn finish_reason(&self) -> &'static str {
        if self.tool_calls.is_empty() {
            "stop"
        } else {
            "tool_calls"
        }
    }

    /// The text cut into streaming pieces on character boundaries.
    pub fn text_pieces(&self) -> Vec<String> {
        let chars: Vec<char> = self.text.chars().collect();
        chars
            .chunks(self.chunk_chars.max(1))
            .map(|c| c.iter().collect())
            .collect()
    }
}
