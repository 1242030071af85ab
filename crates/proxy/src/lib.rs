//! The LiteLLM-compatible gateway, as a library. A request flows
//! http -> auth -> hooks.pre_call -> router -> providers -> pricing -> hooks.post_call + sink
//! -> response with x-litellm-* headers.
//!
//! ```ignore
//! let cfg = ProxyConfig::load(Path::new("config.yaml"))?;        // all env reads happen here
//! let gw = Gateway::builder(cfg)
//!     .key_resolver(store.clone())   // SEAM auth::KeyResolver: virtual keys
//!     .hooks(limits.clone())         // SEAM hooks::CallHooks: reserve before, settle after
//!     .sink(spend_writer.clone())    // SEAM hooks::CallSink: one CallRecord per finished call
//!     .db_probe(probe)               // SEAM: /health/readiness database state
//!     .build()?;
//! let gw = gw.clone().with_routes(management_routes(gw)); // SEAM: /key/*, /spend/* ...
//! serve(gw, TcpListener::bind("0.0.0.0:4000").await?, shutdown).await?; // returns once drained
//! spend_writer.flush().await;
//! ```
//!
//! Provider adapters (SEAM `providers::Provider`) are modules under `providers/`.

pub mod alerting;
mod allowed_ips;
pub mod auth;
mod batch;
pub mod config;
mod diagnostics;
pub mod error;
mod forward_headers;
mod gateway;
pub mod generic_api;
mod header_values;
pub mod hooks;
mod http;
pub mod jwt;
mod keepalive;
mod key_bounds;
mod key_generation;
pub mod ledger;
pub mod logging;
pub mod metrics;
pub mod models;
pub mod offload;
pub mod otel;
mod passthrough;
pub mod pricing;
pub mod providers;
mod response_cache;
mod route_access;
pub mod router;
pub mod router_redis;
mod serving;
mod state;
mod team_defaults;
pub mod tls;
mod user_defaults;

pub use auth::{KeyResolver, Principal, VirtualKey};
pub use config::{ConfigError, ProxyConfig};
pub use error::ProxyError;
pub use gateway::{Gateway, GatewayBuilder};
pub use hooks::{
    CallHooks, CallRecord, CallSink, CallStatus, MemoryResponses, MemorySink, PreCall, Reservation,
    ResponseStore, StoredResponse,
};
pub use pricing::{ModelPrice, PriceTable};
pub use serving::{Serving, serve, serve_threads, serve_threads_tls};
pub use state::{DbProbe, SpendProbe};
