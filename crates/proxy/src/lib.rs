//! The LiteLLM-compatible gateway, as a library. A request flows
//! http -> auth -> limits -> router -> providers -> pricing -> store.

// Virtual keys, budgets and limits, persistence.
pub mod keys;
pub mod limits;
pub mod store;

// Pure wire translations between OpenAI chat and other providers' formats.
pub mod translate;
