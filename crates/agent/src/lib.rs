//! The IdleHands coding agent core, as a library.
//!
//! - [`config`]: `~/.idlehands/idlehands.json` (JSON5, `${VAR}` substitution, validation).
//! - [`auth`]: auth profiles and key precedence (profile, env, config).
//! - [`models`]: `provider/model` refs, the provider registry (with the implicit `litellm`
//!   provider), fallbacks.
//! - [`client`]: the `openai-completions` streaming client.
//! - [`tools`]: read, write, edit, exec, process, grep, glob, and the approval policy.
//! - [`session`]: JSONL transcripts and the `sessions.json` index.
//! - [`agent`]: [`Runtime`], [`Session`] and the events a turn emits.
//! - [`compaction`]: summarising older turns when the context nears the window.
//! - [`quirks`]: local-model output quirks (inline `<think>`, text-form tool calls,
//!   repeated identical calls).
//! - [`local`]: Ollama, vLLM, llama.cpp and LM Studio as implicit, keyless providers, and
//!   their onboarding.
//! - [`onboard`]: writing the LiteLLM provider, primary model and auth profile.

pub mod agent;
pub mod auth;
pub mod budget;
pub mod client;
pub mod compaction;
pub mod config;
pub mod env;
pub mod fsutil;
pub mod local;
pub mod mcp;
pub mod message;
pub mod models;
pub mod onboard;
pub mod paths;
pub mod prompt;
pub mod quirks;
pub mod session;
pub mod testcmd;
pub mod thinking;
pub mod tools;

pub use agent::{
    AgentError, AgentEvent, CompactionOutcome, EventSink, HeadlessError, Runtime, Session,
    SessionOptions, TurnOutcome, run_headless, run_headless_with,
};
pub use env::Env;
pub use message::{Image, UserInput};
pub use models::{ModelRef, ModelRegistry, ResolvedModel};
pub use paths::Paths;
pub use thinking::ThinkingLevel;
pub use tokio_util::sync::CancellationToken;
pub use tools::ApprovalMode;
