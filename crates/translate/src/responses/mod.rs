//! The OpenAI Responses API (`/v1/responses`) onto chat completions and back, for backends
//! that have no Responses API of their own (llama.cpp, vLLM, Ollama, Anthropic, Gemini,
//! Bedrock behind the gateway's chat pipeline).
//!
//! 1. Request: [`to_chat_request`] (instructions, string or item-list input, function tools
//!    and their outputs, reasoning effort, `text.format`, `max_output_tokens`).
//! 2. Plain answer: [`from_chat_response`] (message, function-call and reasoning items, usage
//!    as `input_tokens`/`output_tokens`).
//! 3. Streamed answer: push each chat chunk into [`ChatStreamToResponses`] and call
//!    `finish()` at `[DONE]`: it yields the Responses event sequence (`response.created`,
//!    `response.output_item.added`, `response.output_text.delta`, ..., `response.completed`).

mod request;
mod response;
mod stream;

pub use request::to_chat_request;
pub use response::{ResponseContext, from_chat_response};
pub use stream::{ChatStreamToResponses, ResponseEvent};
