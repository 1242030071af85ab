//! Routing and resilience for the LiteLLM-compatible gateway: which deployment of a model group
//! takes a request, when a failed attempt is retried, where it falls back to, and when a
//! deployment is cooled down. Pure logic over in-memory (or pluggable) state; the proxy makes
//! the HTTP calls and sleeps for the delays this crate returns.

mod classify;
mod clock;
mod cooldown;
mod plan;
mod router;
mod settings;
mod state;

pub use classify::{ErrorClass, Failure, backoff_delay, parse_retry_after, status_is_retryable};
pub use clock::{Clock, ManualClock, SystemClock};
pub use cooldown::{cooldown_required, should_cooldown};
pub use plan::{Decision, FinalError, Plan, PlanOptions, Step};
pub use router::{
    DeploymentHealth, DeploymentSnapshot, DeploymentSpec, NoDeployment, NoDeploymentReason, Pick,
    PickContext, Router, TokenUsage,
};
pub use settings::{
    AllowedFailsPolicy, DEFAULT_ALLOWED_FAILS, DEFAULT_COOLDOWN_TIME_SECS, DEFAULT_MAX_FALLBACKS,
    DEFAULT_NUM_RETRIES, Fallbacks, GroupAlias, RetryPolicy, RouterSettings, RoutingStrategy,
    RoutingStrategyArgs,
};
pub use state::{DeploymentKey, InMemoryState, MinuteOutcomes, RouterState};
