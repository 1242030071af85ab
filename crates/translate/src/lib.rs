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
//! 5. Streamed answer: `AnthropicStreamToOpenAi`, `GeminiStreamToOpenAi` or
//!    `ConverseStreamToOpenAi` (one [`stream_to_openai::StreamToOpenAi`] each, differing only
//!    in the provider's event mapping), wrapped in [`stream_to_openai::BodyToOpenAi`]: push the
//!    raw body bytes as they arrive (it cuts them into SSE events or event-stream messages),
//!    forward the chunks it returns, and call `finish()` when the body ends: it yields the
//!    usage chunk (none when the provider reported no counts), or an error when the stream
//!    was cut short.
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
pub mod stream_to_openai;

pub use error::TranslateError;
