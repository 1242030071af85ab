//! Routing and resilience for the LiteLLM-compatible gateway: which deployment of a model group
//! takes a request, when a failed attempt is retried, where it falls back to, and when a
//! deployment is cooled down. Pure logic over in-memory (or pluggable) state; the proxy makes
//! the HTTP calls and sleeps for the delays this crate returns.
//!
//! How a request loop drives it (synchronous here; an async caller awaits its own sleep):
//!
//! ```
//! use std::time::Duration;
//! use idlehands_routing::*;
//!
//! let deployments = vec![
//!     DeploymentSpec { id: "a".into(), model_group: "gpt-4o".into(), ..Default::default() },
//!     DeploymentSpec { id: "b".into(), model_group: "claude".into(), ..Default::default() },
//! ];
//! let settings: RouterSettings = serde_json::from_str(
//!     r#"{"num_retries": 0, "fallbacks": [{"gpt-4o": ["claude"]}]}"#,
//! ).unwrap();
//! let router = Router::new(deployments, settings);
//!
//! // Stand-in for the upstream call: deployment "a" is down.
//! let call = |d: &DeploymentSpec| -> Result<&'static str, (u16, String)> {
//!     if d.id == "a" { Err((503, "overloaded".into())) } else { Ok("hello") }
//! };
//!
//! let ctx = PickContext { estimated_input_tokens: 12, ..Default::default() };
//! let mut plan: Plan<(u16, String)> = router.plan("gpt-4o", PlanOptions::default());
//! let answer = loop {
//!     let pick = match plan.next(&ctx) {
//!         Step::Attempt(pick) => pick,
//!         Step::GiveUp(FinalError::Upstream((status, body))) => break Err(format!("{status} {body}")),
//!         Step::GiveUp(FinalError::NoDeployment(nd)) => break Err(format!("{} {nd}", nd.status())),
//!     };
//!     match call(pick.deployment()) {
//!         Ok(body) => {
//!             pick.success(Duration::from_millis(80), TokenUsage { input_tokens: 12, output_tokens: 3 });
//!             break Ok(body);
//!         }
//!         Err((status, body)) => {
//!             let failure = Failure::from_response(status, &body, None);
//!             let delay = plan.failed(pick, failure, (status, body)).delay();
//!             std::thread::sleep(delay);
//!         }
//!     }
//! };
//! assert_eq!(answer, Ok("hello"));
//! assert_eq!(plan.attempted_fallbacks(), 1); // x-litellm-attempted-fallbacks
//! assert_eq!(plan.attempted_retries(), 0); // x-litellm-attempted-retries
//! assert_eq!(plan.max_retries(), 0); // x-litellm-max-retries
//! ```

mod classify;
mod clock;
mod cooldown;
pub mod lenient;
mod plan;
mod router;
mod settings;
mod state;
mod tags;
pub use tags::python_list;

pub use classify::{
    ErrorClass, Failure, backoff_delay, is_context_window_text, parse_retry_after,
    status_is_retryable,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use cooldown::{cooldown_required, should_cooldown};
pub use plan::{Decision, FinalError, Plan, PlanOptions, Step};
pub use router::{
    DeploymentHealth, DeploymentSnapshot, DeploymentSpec, Exclude, NoDeployment,
    NoDeploymentReason, Pick, PickContext, Router, TokenUsage,
};
pub use settings::{
    AllowedFailsPolicy, DEFAULT_ALLOWED_FAILS, DEFAULT_COOLDOWN_TIME_SECS, DEFAULT_MAX_FALLBACKS,
    DEFAULT_NUM_RETRIES, Fallbacks, GroupAlias, LitellmRoutingSettings, RetryPolicy,
    RouterSettings, RoutingStrategy, RoutingStrategyArgs,
};
pub use state::{DeploymentKey, InMemoryState, MinuteOutcomes, RouterState};
pub use tags::RequestTags;
