//! Wire types shared by the gateway and the agent: OpenAI chat completions, error bodies, and
//! Server-Sent Events framing. No I/O lives here.

pub mod error;
pub mod multipart;
pub mod openai;
pub mod sse;

pub use error::ErrorBody;
pub use openai::{MAX_USAGE_TOKENS, Usage};
pub use sse::{SseDecoder, SseEvent};
