//! The LiteLLM-compatible gateway, as a library. A request flows
//! http -> auth -> (hooks.pre_call) -> router -> providers -> pricing -> (hooks.post_call,
//! sink) -> response with x-litellm-* headers.
//!
//! ```ignore
//! let cfg = ProxyConfig::load(Path::new("config.yaml"))?;
//! let gw = Gateway::builder(cfg).sink(my_sink).build()?;
//! serve(gw, TcpListener::bind("0.0.0.0:4000").await?, shutdown_signal()).await?;
//! ```

pub mod auth;
pub mod config;
pub mod error;
mod gateway;
pub mod hooks;
mod http;
pub mod pricing;
pub mod providers;
pub mod router;

pub use auth::{KeyResolver, Principal, VirtualKey};
pub use config::{ConfigError, ProxyConfig};
pub use error::ProxyError;
pub use gateway::{DbProbe, Gateway, GatewayBuilder, serve};
pub use hooks::{CallHooks, CallRecord, CallSink, CallStatus, MemorySink, PreCall, Reservation};
pub use pricing::{ModelPrice, PriceTable};
