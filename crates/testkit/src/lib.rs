//! Scriptable fake model providers that speak the providers' real wire formats, started
//! in-process on an ephemeral loopback port. Used by the test suites and by `bench/`.
//!
//! The fakes are as strict as the servers behind them: an absolute-form request target gets
//! 404 and a POST not declared JSON gets 415 (see `strict`), and each keeps the request lines
//! it received (`request_lines()`) and every request it served as sent: request line, headers
//! and body bytes, with the body also parsed ([`Recorded`]). [`replay`] serves recorded
//! llama-server answers byte for byte.
//!
//! ```ignore
//! let up = idlehands_testkit::FakeOpenAi::start().await;
//! up.push(Reply::text("hello"));
//! up.push(Reply::error(503, "overloaded"));
//! // point a client at up.base_url() ...
//! ```

pub mod anthropic;
pub mod bedrock;
pub mod browser;
pub mod child_server;
pub mod frame;
pub mod gemini;
pub mod logs;
pub mod multipart;
pub mod openai;
mod openai_audio;
mod openai_responses;
pub mod paced;
pub mod recorded;
pub mod replay;
pub mod reply;
mod strict;
pub mod webhook;

pub use anthropic::FakeAnthropic;
pub use bedrock::FakeBedrock;
pub use frame::Framing;
pub use gemini::FakeGemini;
pub use logs::CapturedLogs;
pub use openai::FakeOpenAi;
pub use recorded::Recorded;
pub use reply::{Fault, Gate, Reply, ScriptedToolCall, Usage};
pub use webhook::Webhooks;
