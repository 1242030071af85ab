//! The retry/fallback loop around upstream calls. The routing crate's [`Plan`] decides which
//! deployment takes each attempt, whether a failure is retried (and after how long) and which
//! fallback group comes next; this module makes the calls, sleeps, and turns the outcome into
//! the response headers LiteLLM sends (`x-litellm-attempted-retries`, ...).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue};
use idlehands_routing::{
    Failure, Fallbacks, FinalError, NoDeployment, NoDeploymentReason, Pick, PickContext, Plan,
    PlanOptions, Step, parse_retry_after,
};

use super::body::RequestBody;
use super::trace::Trace;
use crate::error::ProxyError;
use crate::router::{Deployment, ModelGroup, RoutingTable};

static ATTEMPTED_RETRIES: HeaderName = HeaderName::from_static("x-litellm-attempted-retries");
static ATTEMPTED_FALLBACKS: HeaderName = HeaderName::from_static("x-litellm-attempted-fallbacks");
static MAX_RETRIES: HeaderName = HeaderName::from_static("x-litellm-max-retries");
static NUM_RETRIES_HEADER: HeaderName = HeaderName::from_static("x-litellm-num-retries");

/// How routing sees a failed attempt.
pub(crate) fn failure_of(e: &ProxyError) -> Failure {
    match e {
        ProxyError::UpstreamTimeout { .. } => Failure::timeout(),
        ProxyError::UpstreamUnreachable { .. } => Failure::connection(),
        ProxyError::Upstream {
            status,
            message,
            retry_after,
            ..
        } => {
            let hint = retry_after
                .as_deref()
                .and_then(|r| parse_retry_after(None, Some(r), SystemTime::now()));
            Failure::from_response(*status, message, hint)
        }
        other => Failure::from_response(other.status(), &other.to_string(), None),
    }
}

/// The error a client gets when a group had nothing to offer: LiteLLM's 429 "No deployments
/// available for selected model, Try again in N seconds. Passed model=..." (with `retry-after`),
/// or a 400 when waiting would not help.
pub(crate) fn no_deployment_error(nd: &NoDeployment) -> ProxyError {
    let status = nd.status();
    let mut headers = Vec::new();
    let kind = if status == 429 {
        headers.push((
            http::header::RETRY_AFTER,
            HeaderValue::from(nd.retry_after_secs),
        ));
        "rate_limit_error"
    } else {
        "invalid_request_error"
    };
    ProxyError::Custom {
        status,
        kind: kind.to_string(),
        message: nd.to_string(),
        param: matches!(nd.reason, NoDeploymentReason::UnknownGroup).then(|| "model".to_string()),
        headers,
    }
}

/// Per-request routing overrides: `num_retries`, `fallbacks`, `context_window_fallbacks`,
/// `content_policy_fallbacks` and `disable_fallbacks` in the body, `x-litellm-num-retries`.
/// Unreadable values are ignored, as LiteLLM ignores what it cannot use.
pub(crate) fn plan_options(body: &RequestBody<'_>, headers: &HeaderMap) -> PlanOptions {
    let mut o = PlanOptions::default();
    let num = |s: &str| s.trim().trim_matches('"').parse::<u32>().ok();
    o.num_retries = body
        .raw("num_retries")
        .and_then(|r| num(r.get()))
        .or_else(|| {
            headers
                .get(&NUM_RETRIES_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(num)
        });
    let table = |k: &str| {
        body.raw(k)
            .and_then(|r| serde_json::from_str::<Fallbacks>(r.get()).ok())
    };
    o.fallbacks = table("fallbacks");
    o.context_window_fallbacks = table("context_window_fallbacks");
    o.content_policy_fallbacks = table("content_policy_fallbacks");
    o.disable_fallbacks = body
        .raw("disable_fallbacks")
        .is_some_and(|r| r.get().trim() == "true");
    o
}

/// LiteLLM's testing aids (`mock_testing_fallbacks: true`, ...): the requested group fails with
/// the named error so fallbacks can be tried without a broken upstream.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) enum MockFailure {
    #[default]
    None,
    InternalServer,
    ContextWindow,
    ContentPolicy,
}

impl MockFailure {
    pub fn from_body(body: &RequestBody<'_>) -> MockFailure {
        let on = |k: &str| body.raw(k).is_some_and(|r| r.get().trim() == "true");
        if on("mock_testing_fallbacks") {
            MockFailure::InternalServer
        } else if on("mock_testing_context_fallbacks") {
            MockFailure::ContextWindow
        } else if on("mock_testing_content_policy_fallbacks") {
            MockFailure::ContentPolicy
        } else {
            MockFailure::None
        }
    }

    /// The error for an attempt on `d`, when it is in the requested group.
    pub fn error(self, d: &Deployment, requested: &str) -> Option<ProxyError> {
        if d.model_name != requested {
            return None;
        }
        let (status, message) = match self {
            MockFailure::None => return None,
            MockFailure::InternalServer => (
                500,
                "litellm.InternalServerError: This is a mock exception for model fallbacks.",
            ),
            MockFailure::ContextWindow => (
                400,
                "litellm.ContextWindowExceededError: This is a mock exception: maximum context length exceeded.",
            ),
            MockFailure::ContentPolicy => (
                400,
                "litellm.ContentPolicyViolationError: This is a mock exception: content_policy_violation.",
            ),
        };
        Some(ProxyError::Upstream {
            status,
            message: message.to_string(),
            kind: None,
            retry_after: None,
        })
    }
}

/// A successful attempt: what it produced, the routing pick to report the outcome on, and how
/// long the attempt took.
pub(crate) struct Won<T> {
    pub value: T,
    pub pick: Pick,
    pub started: Instant,
}

/// One request's attempts over one model group and its fallbacks.
pub(crate) struct Attempts {
    table: Arc<RoutingTable>,
    plan: Plan<ProxyError>,
    ctx: PickContext,
}

impl Attempts {
    pub fn new(group: &ModelGroup, options: PlanOptions, estimated_input_tokens: u64) -> Self {
        let table = group.table.clone();
        let plan = table.router.plan(&group.name, options);
        Attempts {
            table,
            plan,
            ctx: PickContext {
                estimated_input_tokens,
            },
        }
    }

    /// Call `attempt` on each deployment the plan picks until one succeeds or the plan gives
    /// up. `trace.deployment` follows the attempts, so records and headers name the
    /// deployment that answered (or failed last).
    pub async fn run<T, F, Fut>(
        &mut self,
        trace: &mut Trace,
        mut attempt: F,
    ) -> Result<Won<T>, ProxyError>
    where
        F: FnMut(&Arc<Deployment>) -> Fut,
        Fut: Future<Output = Result<T, ProxyError>>,
    {
        loop {
            let pick = match self.plan.next(&self.ctx) {
                Step::Attempt(p) => p,
                Step::GiveUp(FinalError::Upstream(e)) => return Err(e),
                Step::GiveUp(FinalError::NoDeployment(nd)) => return Err(no_deployment_error(&nd)),
            };
            let Some(d) = self.table.deployments.get(pick.index()) else {
                return Err(ProxyError::Internal(
                    "routing picked an unknown deployment".to_string(),
                ));
            };
            if !Arc::ptr_eq(&trace.deployment, d) {
                trace.deployment = d.clone();
            }
            let started = Instant::now();
            let result = attempt(d).await;
            trace.upstream += started.elapsed();
            match result {
                Ok(value) => {
                    if self.plan.attempted_fallbacks() > 0 {
                        trace.app.metrics.record_fallback(
                            self.plan.requested_group(),
                            &d.model_name,
                            &trace.principal,
                            true,
                        );
                    }
                    return Ok(Won {
                        value,
                        pick,
                        started,
                    });
                }
                Err(e) => {
                    tracing::debug!(
                        deployment = d.id.as_str(),
                        group = d.model_name.as_str(),
                        status = e.status(),
                        "upstream attempt failed"
                    );
                    // Counted per failed attempt on a fallback group.
                    if d.model_name != self.plan.requested_group() {
                        trace.app.metrics.record_fallback(
                            self.plan.requested_group(),
                            &d.model_name,
                            &trace.principal,
                            false,
                        );
                    }
                    let failure = failure_of(&e);
                    let delay = self.plan.failed(pick, failure, e).delay();
                    if !delay.is_zero() {
                        let slept = Instant::now();
                        tokio::time::sleep(delay).await;
                        trace.upstream += slept.elapsed();
                    }
                }
            }
        }
    }

    /// `x-litellm-attempted-retries` (always), `x-litellm-max-retries` (once a retry was made)
    /// and `x-litellm-attempted-fallbacks` (once a fallback was tried).
    pub fn headers(&self, h: &mut HeaderMap) {
        let retries = self.plan.attempted_retries();
        h.insert(ATTEMPTED_RETRIES.clone(), HeaderValue::from(retries));
        if retries > 0 {
            h.insert(
                MAX_RETRIES.clone(),
                HeaderValue::from(self.plan.max_retries()),
            );
        }
        let fallbacks = self.plan.attempted_fallbacks();
        if fallbacks > 0 {
            h.insert(ATTEMPTED_FALLBACKS.clone(), HeaderValue::from(fallbacks));
        }
    }
}

/// An attempt that must finish within `limit`, whatever the adapter does about timeouts.
pub(crate) async fn within<T>(
    limit: Duration,
    d: &Deployment,
    fut: impl Future<Output = Result<T, ProxyError>>,
) -> Result<T, ProxyError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r,
        Err(_) => Err(ProxyError::UpstreamTimeout {
            secs: limit.as_secs_f64(),
            model: d.model.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use idlehands_routing::ErrorClass;

    #[test]
    fn proxy_errors_map_to_routing_failures() {
        let f = failure_of(&ProxyError::UpstreamTimeout {
            secs: 1.0,
            model: "m".into(),
        });
        assert_eq!((f.class, f.status), (ErrorClass::Timeout, 408));
        let f = failure_of(&ProxyError::UpstreamUnreachable {
            label: "OpenAIException".into(),
            message: "Connection error".into(),
        });
        assert_eq!(f.class, ErrorClass::Connection);
        let f = failure_of(&ProxyError::Upstream {
            status: 429,
            message: "slow down".into(),
            kind: None,
            retry_after: Some("2".into()),
        });
        assert_eq!(f.class, ErrorClass::RateLimit);
        assert_eq!(f.retry_after, Some(Duration::from_secs(2)));
        let f = failure_of(&ProxyError::Upstream {
            status: 400,
            message: "This model's maximum context length is 8192 tokens".into(),
            kind: None,
            retry_after: None,
        });
        assert_eq!(f.class, ErrorClass::ContextWindowExceeded);
    }

    #[test]
    fn no_deployment_is_a_429_with_retry_after() {
        let nd = NoDeployment {
            model: "gpt-4o".into(),
            reason: NoDeploymentReason::CoolingDown,
            retry_after_secs: 4,
            cooldown_list: vec!["a".into()],
            pre_call_checks: false,
            estimated_input_tokens: 0,
        };
        let e = no_deployment_error(&nd);
        assert_eq!(e.status(), 429);
        assert!(e.to_string().contains("Passed model=gpt-4o"));
        let ProxyError::Custom { headers, .. } = e else {
            panic!("custom error expected")
        };
        assert_eq!(headers[0].1, HeaderValue::from(4u64));
    }
}
