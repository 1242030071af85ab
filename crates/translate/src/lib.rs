//! Pure translations between OpenAI chat completions and other providers' wire formats.
//!
//! Nothing here does I/O: functions take and return JSON values, URLs and header lists, so a
//! provider adapter in the gateway owns the HTTP call and this crate owns the shapes. Each
//! provider family is one module; every failure is a [`TranslateError`] that knows the HTTP
//! status the gateway should answer with.

pub mod anthropic;
pub mod anthropic_inbound;
pub mod azure;
pub mod bedrock;
pub mod error;
pub mod gemini;
pub mod openai;

pub use error::TranslateError;
