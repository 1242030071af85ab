//! Pure translations between OpenAI chat completions and other providers' wire formats.
//!
//! Nothing here does I/O: functions take and return JSON values, URLs and header lists, so a
//! provider adapter in the gateway owns the HTTP call and this crate owns the shapes. Each
//! provider family is one module; every failure is a [`TranslateError`] that knows the HTTP
//! status the gateway should answer with (400 for a request the provider cannot express, 502
//! with an upstream excerpt for an answer that cannot be translated, the mapped status for an
//! error the provider reported).
//!
//! An adapter's shape is the same for every provider:
//!
//! 1. URL + headers: `anthropic::endpoint` + `anthropic::request_headers`,
//!    `gemini::endpoint` + `gemini::request_headers`, `azure::chat_url` +
//!    `azure::request_headers`, `bedrock::converse_url` + `bedrock::sign`.
//! 2. Body: `anthropic::to_messages_request`, `gemini::to_generate_content_request`,
//!    `bedrock::to_converse_request` (Azure: the OpenAI body unchanged).
//! 3. Non-2xx answer: the module's `map_error`.
//! 4. Plain answer: `anthropic::from_messages_response`,
//!    `gemini::from_generate_content_response`, `bedrock::from_converse_response`.
//! 5. Streamed answer: decode SSE with `idlehands_wire::SseDecoder` (or
//!    `bedrock::EventStreamDecoder`), push each event into `AnthropicStreamToOpenAi`,
//!    `GeminiStreamToOpenAi` or `ConverseStreamToOpenAi`, forward the chunks they return,
//!    and call `finish()` when the body ends: it yields the usage chunk, or an error when the
//!    stream was cut short.
//!
//! The gateway's own Anthropic-format endpoint runs the other way round, see
//! [`anthropic_inbound`].

pub mod anthropic;
pub mod anthropic_inbound;
pub mod azure;
pub mod bedrock;
pub mod error;
pub mod gemini;
pub mod openai;
pub mod responses;

pub use error::TranslateError;
