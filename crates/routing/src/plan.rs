//! The retry/fallback loop of one request, as a state machine the caller drives: ask for the
//! next attempt, report how it went, sleep for the returned delay. No async runtime needed.

use std::time::Duration;

use crate::Fallbacks;
use crate::router::{NoDeployment, NoDeploymentReason, Pick, PickContext, Router};
use crate::{ErrorClass, Failure, backoff_delay, status_is_retryable};

/// Per-request overrides (request body / headers).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// `num_retries` in the body or `x-litellm-num-retries`.
    pub num_retries: Option<u32>,
    /// `fallbacks` in the body (`[{"gpt-4o": ["b"]}]` or `["b"]`): replaces the configured
    /// `fallbacks` and `default_fallbacks` for this request.
    pub fallbacks: Option<Fallbacks>,
    /// `context_window_fallbacks` in the body: replaces the configured table.
    pub context_window_fallbacks: Option<Fallbacks>,
    /// `content_policy_fallbacks` in the body: replaces the configured table.
    pub content_policy_fallbacks: Option<Fallbacks>,
    /// `disable_fallbacks: true`, or a guardrail intervention.
    pub disable_fallbacks: bool,
}

/// What to return to the client when the plan gives up.
#[derive(Debug)]
pub enum FinalError<E> {
    /// An upstream error the caller reported through [`Plan::failed`].
    Upstream(E),
    /// No deployment could be picked (the 429 "No deployments available..." and friends).
    NoDeployment(NoDeployment),
}

/// What [`Plan::next`] hands out.
#[derive(Debug)]
pub enum Step<E> {
    /// Call this deployment, then report with [`Plan::failed`] or [`Pick::success`].
    Attempt(Pick),
    /// Stop: return this error. The error of the requested group is reported even when
    /// fallback groups failed after it, as LiteLLM does.
    GiveUp(FinalError<E>),
}

/// What the plan will do after a failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Sleep `delay`, then call [`Plan::next`] for another pick in the same group.
    Retry { delay: Duration },
    /// Call [`Plan::next`] now; it picks from this fallback group.
    Fallback { group: String },
    /// Call [`Plan::next`] to collect the final error.
    GiveUp,
}

impl Decision {
    /// How long to wait before the next call to [`Plan::next`].
    pub fn delay(&self) -> Duration {
        match self {
            Decision::Retry { delay } => *delay,
            _ => Duration::ZERO,
        }
    }
}

/// One request's walk through retries and fallbacks. Create it with [`Router::plan`].
#[derive(Debug)]
pub struct Plan<E> {
    router: Router,
    primary: String,
    group: String,
    options: PlanOptions,
    num_retries: u32,
    retries_in_group: u32,
    total_retries: u32,
    fallbacks_attempted: u32,
    queue: Vec<String>,
    next_fallback: usize,
    in_primary: bool,
    original: Option<FinalError<E>>,
    /// Class of the requested group's latest upstream failure.
    last_class: ErrorClass,
    done: bool,
}

impl<E> Plan<E> {
    pub(crate) fn new(router: Router, model: &str, options: PlanOptions) -> Plan<E> {
        let primary = router.resolve_group(model).unwrap_or(model).to_owned();
        let num_retries = options
            .num_retries
            .unwrap_or_else(|| router.settings().effective_num_retries());
        Plan {
            group: primary.clone(),
            primary,
            router,
            options,
            num_retries,
            retries_in_group: 0,
            total_retries: 0,
            fallbacks_attempted: 0,
            queue: Vec::new(),
            next_fallback: 0,
            in_primary: true,
            original: None,
            last_class: ErrorClass::InternalServer,
            done: false,
        }
    }

    /// The next deployment to call, or the final error. Groups with nothing available are
    /// skipped over to their fallbacks here, without a round trip to the caller.
    pub fn next(&mut self, ctx: &PickContext) -> Step<E> {
        loop {
            if self.done {
                return Step::GiveUp(self.take_final(ctx));
            }
            match self.router.pick(&self.group, ctx) {
                Ok(pick) => return Step::Attempt(pick),
                Err(nd) => {
                    // The fallback table is chosen by the requested group's last upstream error
                    // when there was one; "nothing left to retry on" adds nothing to it.
                    let class = match &self.original {
                        Some(FinalError::Upstream(_)) if self.in_primary => self.last_class,
                        _ => {
                            let class = nd.class();
                            self.record(FinalError::NoDeployment(nd));
                            class
                        }
                    };
                    if !self.advance(class) {
                        self.done = true;
                    }
                }
            }
        }
    }

    /// Report a failed attempt: records it on the deployment (cooldowns, stats) and decides
    /// what happens next. `error` is kept in case it becomes the final error.
    pub fn failed(&mut self, pick: Pick, failure: Failure, error: E) -> Decision {
        let cooled = pick.failure(&failure);
        self.record(FinalError::Upstream(error));
        if self.in_primary {
            self.last_class = failure.class;
        }
        if let Some(delay) = self.retry_delay(&failure, cooled) {
            self.retries_in_group += 1;
            self.total_retries += 1;
            return Decision::Retry { delay };
        }
        if self.advance(failure.class) {
            Decision::Fallback {
                group: self.group.clone(),
            }
        } else {
            self.done = true;
            Decision::GiveUp
        }
    }

    /// Group the next attempt goes to.
    pub fn current_group(&self) -> &str {
        &self.group
    }

    /// The group the request asked for (alias resolved).
    pub fn requested_group(&self) -> &str {
        &self.primary
    }

    /// `x-litellm-attempted-retries`: retries within the group now being tried (the one that
    /// answered, once the request succeeded), as LiteLLM counts them.
    pub fn attempted_retries(&self) -> u32 {
        self.retries_in_group
    }

    /// Retries across all groups.
    pub fn total_retries(&self) -> u32 {
        self.total_retries
    }

    /// `x-litellm-attempted-fallbacks`.
    pub fn attempted_fallbacks(&self) -> u32 {
        self.fallbacks_attempted
    }

    /// `x-litellm-max-retries`.
    pub fn max_retries(&self) -> u32 {
        self.num_retries
    }

    fn record(&mut self, e: FinalError<E>) {
        if self.in_primary {
            self.original = Some(e);
        }
    }

    fn take_final(&mut self, ctx: &PickContext) -> FinalError<E> {
        match self.original.take() {
            Some(e) => e,
            // Only reachable if next() is called again after GiveUp was returned.
            None => FinalError::NoDeployment(match self.router.pick(&self.primary, ctx) {
                Err(nd) => nd,
                Ok(_) => NoDeployment {
                    model: self.primary.clone(),
                    reason: NoDeploymentReason::UnknownGroup,
                    retry_after_secs: 0,
                    cooldown_list: Vec::new(),
                    pre_call_checks: self.router.settings().enable_pre_call_checks,
                    estimated_input_tokens: ctx.estimated_input_tokens,
                    tags: Vec::new(),
                },
            }),
        }
    }

    /// LiteLLM `should_retry_this_error` + retry count + `_time_to_sleep_before_retry`.
    /// `cooled`: the failed deployment was just put into cooldown.
    fn retry_delay(&self, f: &Failure, cooled: bool) -> Option<Duration> {
        let auth = matches!(f.status, 401 | 403);
        if f.class == ErrorClass::NotFound || (!status_is_retryable(f.status) && !auth) {
            return None;
        }
        // Credentials errors only make sense to retry on another deployment.
        if auth && self.router.group_size(&self.group) <= 1 {
            return None;
        }
        let healthy = self.router.healthy_count(&self.group);
        if healthy == 0 {
            return None;
        }
        let settings = self.router.settings();
        let allowed = settings.retries_for(&self.group, f.class, self.num_retries);
        if self.retries_in_group >= allowed {
            return None;
        }
        let min = settings.retry_after_duration();
        // Another healthy deployment can take the retry at once; when only the one that just
        // failed is left, it needs time to recover. (LiteLLM waits whenever at most one
        // deployment is healthy, even if that one is not the one that failed.)
        let others = if cooled {
            healthy
        } else {
            healthy.saturating_sub(1)
        };
        Some(if others > 0 {
            min
        } else {
            backoff_delay(self.retries_in_group, f.retry_after, min, rand::random())
        })
    }

    /// Move to the next fallback group; false when there is none left.
    fn advance(&mut self, class: ErrorClass) -> bool {
        if self.in_primary {
            self.in_primary = false;
            self.queue = self.fallback_list(class);
        }
        let max = self.router.settings().max_fallbacks;
        while self.fallbacks_attempted < max {
            let Some(next) = self.queue.get(self.next_fallback) else {
                return false;
            };
            self.next_fallback += 1;
            let next = self.router.resolve_group(next).unwrap_or(next).to_owned();
            if next == self.primary {
                continue;
            }
            self.group = next;
            self.retries_in_group = 0;
            self.fallbacks_attempted += 1;
            return true;
        }
        false
    }

    /// Context-window and content-policy errors use their own tables when the group has an
    /// entry there; everything else uses `fallbacks`, then `default_fallbacks`.
    fn fallback_list(&self, class: ErrorClass) -> Vec<String> {
        let o = &self.options;
        if o.disable_fallbacks {
            return Vec::new();
        }
        let s = self.router.settings();
        let g = self.primary.as_str();
        let table = |req: &Option<Fallbacks>, cfg: &Fallbacks| -> Option<Vec<String>> {
            req.as_ref()
                .unwrap_or(cfg)
                .for_group(g)
                .map(<[String]>::to_vec)
        };
        let specific = match class {
            ErrorClass::ContextWindowExceeded => {
                table(&o.context_window_fallbacks, &s.context_window_fallbacks)
            }
            ErrorClass::ContentPolicy => {
                table(&o.content_policy_fallbacks, &s.content_policy_fallbacks)
            }
            _ => None,
        };
        specific
            .or_else(|| match &o.fallbacks {
                Some(req) => req.for_group(g).map(<[String]>::to_vec),
                None => table(&None, &s.fallbacks).or_else(|| Some(s.default_fallbacks.clone())),
            })
            .unwrap_or_default()
    }
}
