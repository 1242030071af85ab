//! Deployment selection inside a model group, and the per-deployment bookkeeping that feeds it.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use regex::Regex;

use crate::clock::{Clock, SystemClock, minute_of};
use crate::cooldown::should_cooldown;
use crate::settings::{RouterSettings, RoutingStrategy, secs};
use crate::state::{DeploymentKey, InMemoryState, MinuteOutcomes, RouterState};
use crate::tags::{Allowed, RequestTags};
use crate::{ErrorClass, Failure, plan::Plan, plan::PlanOptions};

/// One `model_list` entry, reduced to what routing needs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeploymentSpec {
    /// `model_info.id` (or the generated hash).
    pub id: String,
    /// `model_name`: the public name clients send.
    pub model_group: String,
    /// `litellm_params.weight`: simple-shuffle weight, preferred over rpm/tpm.
    pub weight: Option<f64>,
    /// `litellm_params.rpm`: requests per minute this deployment accepts.
    pub rpm: Option<u64>,
    /// `litellm_params.tpm`: tokens per minute this deployment accepts.
    pub tpm: Option<u64>,
    /// `litellm_params.order`: priority tier, lowest first. Unset sorts after every set order.
    pub order: Option<u32>,
    /// Context window, checked when `enable_pre_call_checks` is on.
    pub max_input_tokens: Option<u64>,
    /// `litellm_params.tags`, for tag routing.
    pub tags: Vec<String>,
    /// `litellm_params.tag_regex`: patterns matched against `User-Agent: <agent>`.
    pub tag_regex: Vec<String>,
    /// `model_info.enable_tag_filtering`: the group's own setting (the first deployment of the
    /// group that has one decides), over `router_settings.enable_tag_filtering`.
    pub tag_filtering: Option<bool>,
}

/// What the caller knows about the request before choosing a deployment.
#[derive(Clone, Debug, Default)]
pub struct PickContext {
    /// Prompt size estimate, for tpm limits and context-window pre-call checks.
    pub estimated_input_tokens: u64,
    /// The request's tags, where a group routes by them ([`Router::routes_by_tags`]).
    pub tags: Option<Arc<RequestTags>>,
    /// Deployments this request may not use (their budgets are spent), by index.
    pub exclude: Option<Exclude>,
}

/// Which deployments (by index) a request may not use: a caller's filter, as LiteLLM's
/// routing callbacks that filter deployments (provider budgets).
#[derive(Clone)]
pub struct Exclude(pub Arc<dyn Fn(usize) -> bool + Send + Sync>);

impl fmt::Debug for Exclude {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Exclude(..)")
    }
}

/// Token counts of a finished call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl TokenUsage {
    pub fn total(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

/// Why a group had nothing to offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoDeploymentReason {
    /// No such model group (after aliases).
    UnknownGroup,
    /// Every candidate is cooling down (possibly alongside full ones).
    CoolingDown,
    /// Every candidate is at its rpm/tpm limit for this minute.
    RateLimited,
    /// The prompt is larger than every deployment's `max_input_tokens`.
    ContextWindow,
    /// Tag routing left no deployment for the request's tags (LiteLLM answers 401).
    Tags,
    /// Every deployment left had a spent budget ([`PickContext::exclude`]); the caller words it.
    Budget,
}

/// No deployment could take the request. Its `Display` is the message LiteLLM sends.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct NoDeployment {
    /// The group name as asked for.
    pub model: String,
    pub reason: NoDeploymentReason,
    /// Whole seconds until a deployment should be free again (at least 1 when waiting helps).
    pub retry_after_secs: u64,
    /// Ids of the group's deployments that are cooling down.
    pub cooldown_list: Vec<String>,
    pub pre_call_checks: bool,
    pub estimated_input_tokens: u64,
    /// The request's tags, for the tag-routing refusal.
    pub tags: Vec<String>,
}

impl NoDeployment {
    pub fn class(&self) -> ErrorClass {
        match self.reason {
            NoDeploymentReason::UnknownGroup => ErrorClass::BadRequest,
            NoDeploymentReason::CoolingDown | NoDeploymentReason::RateLimited => {
                ErrorClass::RateLimit
            }
            NoDeploymentReason::ContextWindow => ErrorClass::ContextWindowExceeded,
            NoDeploymentReason::Tags => ErrorClass::Auth,
            // LiteLLM raises it as a plain error: the general fallbacks apply.
            NoDeploymentReason::Budget => ErrorClass::InternalServer,
        }
    }

    /// HTTP status for the client: 429 when waiting helps, 400 otherwise.
    pub fn status(&self) -> u16 {
        self.class().default_status()
    }

    /// As a [`Failure`], for retry/fallback decisions.
    pub fn as_failure(&self) -> Failure {
        let retry_after = match self.reason {
            NoDeploymentReason::CoolingDown | NoDeploymentReason::RateLimited => {
                Some(Duration::from_secs(self.retry_after_secs))
            }
            _ => None,
        };
        Failure::new(self.class(), self.status(), retry_after)
    }
}

impl fmt::Display for NoDeployment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let checks = if self.pre_call_checks {
            "True"
        } else {
            "False"
        };
        match self.reason {
            NoDeploymentReason::CoolingDown | NoDeploymentReason::RateLimited => {
                write!(
                    f,
                    "No deployments available for selected model, Try again in {} seconds. \
                     Passed model={}. pre-call-checks={checks}, cooldown_list=[",
                    self.retry_after_secs, self.model
                )?;
                for (i, id) in self.cooldown_list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "'{id}'")?;
                }
                f.write_str("]")
            }
            NoDeploymentReason::UnknownGroup => write!(
                f,
                "Invalid model name passed in model={}. Call `/v1/models` to view available models for your key.",
                self.model
            ),
            NoDeploymentReason::ContextWindow => write!(
                f,
                "litellm.ContextWindowExceededError: No deployment of model={} accepts {} input tokens. pre-call-checks={checks}",
                self.model, self.estimated_input_tokens
            ),
            NoDeploymentReason::Tags => write!(
                f,
                "Not allowed to access model due to tags configuration. Passed model={} and tags={}",
                self.model,
                crate::tags::python_list(&self.tags)
            ),
            NoDeploymentReason::Budget => f.write_str("No deployments available - crossed budget"),
        }
    }
}

/// `litellm_deployment_state` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeploymentHealth {
    Healthy,
    PartialOutage,
    CompleteOutage,
}

impl DeploymentHealth {
    /// The gauge value LiteLLM exports: 0 healthy, 1 partial outage, 2 complete outage.
    pub fn metric_value(self) -> u8 {
        match self {
            DeploymentHealth::Healthy => 0,
            DeploymentHealth::PartialOutage => 1,
            DeploymentHealth::CompleteOutage => 2,
        }
    }
}

/// Point-in-time view of one deployment, for metrics and health endpoints.
#[derive(Clone, Debug, PartialEq)]
pub struct DeploymentSnapshot {
    pub id: String,
    pub model_group: String,
    pub health: DeploymentHealth,
    pub in_flight: u64,
    pub rpm_used: u64,
    pub tpm_used: u64,
    pub outcomes_this_minute: MinuteOutcomes,
    pub cooldown_remaining: Option<Duration>,
    /// Moving average latency (per output token when token counts were reported).
    pub latency: Option<Duration>,
    /// Since this router was built (`litellm_deployment_success_responses`).
    pub successes_total: u64,
    /// Since this router was built (`litellm_deployment_failure_responses`).
    pub failures_total: u64,
    /// Times this deployment was put into cooldown (`litellm_deployment_cooled_down`).
    pub cooldowns_total: u64,
}

/// Per-instance bookkeeping that never needs sharing. Cache-line aligned so neighbouring
/// deployments' counters do not contend.
#[derive(Debug)]
#[repr(align(64))]
struct Local {
    in_flight: AtomicU64,
    /// f64 seconds as bits; `NO_LATENCY` until the first sample.
    latency: AtomicU64,
    last_failed: AtomicBool,
    successes_total: AtomicU64,
    failures_total: AtomicU64,
    cooldowns_total: AtomicU64,
}

const NO_LATENCY: u64 = u64::MAX;
/// Weight of a new latency sample, roughly a ten-sample moving average.
const LATENCY_ALPHA: f64 = 0.2;
/// Latency recorded for a timed-out call, so latency routing steers away from it.
const TIMEOUT_LATENCY_PENALTY_SECS: f64 = 1000.0;
/// Candidates kept on the stack; larger groups spill to the heap.
const STACK_CANDIDATES: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WeightSource {
    Weight,
    Rpm,
    Tpm,
    Uniform,
}

#[derive(Debug)]
struct Group {
    /// Deployment slots, sorted by order tier.
    slots: Box<[usize]>,
    /// Ranges of `slots` sharing one order value, lowest order first.
    tiers: Box<[Range<usize>]>,
    weights: WeightSource,
    /// Tag routing applies to this group.
    by_tags: bool,
}

struct Inner {
    deployments: Box<[DeploymentSpec]>,
    /// Each deployment's `tag_regex`, compiled.
    regexes: Box<[Vec<Regex>]>,
    /// Some group routes by tags.
    by_tags: bool,
    local: Box<[Local]>,
    groups: HashMap<String, Group>,
    settings: RouterSettings,
    state: Arc<dyn RouterState>,
    clock: Arc<dyn Clock>,
}

/// Picks deployments and records outcomes. Cheap to clone (one `Arc`); share one per config.
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("deployments", &self.inner.deployments.len())
            .field("groups", &self.inner.groups.len())
            .field("strategy", &self.inner.settings.routing_strategy)
            .finish()
    }
}

#[derive(Clone, Copy)]
struct Candidate {
    slot: usize,
    metric: f64,
}

const EMPTY: Candidate = Candidate {
    slot: 0,
    metric: 0.0,
};

#[derive(Default)]
struct Skipped {
    cooling: bool,
    limited: bool,
    context: bool,
    budget: bool,
}

enum Skip {
    Cooling,
    Limited,
    Context,
    Budget,
}

impl Router {
    /// A router with process-local state and the system clock.
    pub fn new(deployments: Vec<DeploymentSpec>, settings: RouterSettings) -> Router {
        let state = Arc::new(InMemoryState::new(deployments.len()));
        Router::with_state(deployments, settings, state, Arc::new(SystemClock))
    }

    /// A router over the given shared state and clock. `state` is addressed by the index of
    /// each deployment in `deployments`.
    pub fn with_state(
        deployments: Vec<DeploymentSpec>,
        settings: RouterSettings,
        state: Arc<dyn RouterState>,
        clock: Arc<dyn Clock>,
    ) -> Router {
        let mut by_group: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, d) in deployments.iter().enumerate() {
            by_group.entry(d.model_group.clone()).or_default().push(i);
        }
        let groups: HashMap<String, Group> = by_group
            .into_iter()
            .map(|(name, mut slots)| {
                slots.sort_by_key(|&s| (deployments[s].order.unwrap_or(u32::MAX), s));
                let mut tiers = Vec::new();
                let mut start = 0;
                for i in 1..=slots.len() {
                    if i == slots.len()
                        || deployments[slots[i]].order != deployments[slots[start]].order
                    {
                        tiers.push(start..i);
                        start = i;
                    }
                }
                let any =
                    |f: fn(&DeploymentSpec) -> bool| slots.iter().any(|&s| f(&deployments[s]));
                let weights = if any(|d| d.weight.is_some()) {
                    WeightSource::Weight
                } else if any(|d| d.rpm.is_some()) {
                    WeightSource::Rpm
                } else if any(|d| d.tpm.is_some()) {
                    WeightSource::Tpm
                } else {
                    WeightSource::Uniform
                };
                // The first in config order that sets it, as LiteLLM reads its registry.
                let by_tags = slots
                    .iter()
                    .filter_map(|&s| deployments[s].tag_filtering.map(|on| (s, on)))
                    .min_by_key(|(s, _)| *s)
                    .map_or(settings.enable_tag_filtering, |(_, on)| on);
                let group = Group {
                    slots: slots.into_boxed_slice(),
                    tiers: tiers.into_boxed_slice(),
                    weights,
                    by_tags,
                };
                (name, group)
            })
            .collect();
        let local = deployments
            .iter()
            .map(|_| Local {
                in_flight: AtomicU64::new(0),
                latency: AtomicU64::new(NO_LATENCY),
                last_failed: AtomicBool::new(false),
                successes_total: AtomicU64::new(0),
                failures_total: AtomicU64::new(0),
                cooldowns_total: AtomicU64::new(0),
            })
            .collect();
        let regexes = deployments
            .iter()
            .map(|d| crate::tags::compile(&d.tag_regex))
            .collect();
        let by_tags = groups.values().any(|g: &Group| g.by_tags);
        Router {
            inner: Arc::new(Inner {
                regexes,
                by_tags,
                deployments: deployments.into_boxed_slice(),
                local,
                groups,
                settings,
                state,
                clock,
            }),
        }
    }

    pub fn settings(&self) -> &RouterSettings {
        &self.inner.settings
    }

    pub fn deployments(&self) -> &[DeploymentSpec] {
        &self.inner.deployments
    }

    /// The model group a client-facing name routes to: itself if it is a group, else its
    /// `model_group_alias` target if that is a group.
    pub fn resolve_group<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        if let Some((k, _)) = self.inner.groups.get_key_value(name) {
            return Some(k.as_str());
        }
        let target = self.inner.settings.model_group_alias.get(name)?.target();
        self.inner
            .groups
            .get_key_value(target)
            .map(|(k, _)| k.as_str())
    }

    /// Model group names (no aliases), unordered.
    pub fn groups(&self) -> impl Iterator<Item = &str> {
        self.inner.groups.keys().map(String::as_str)
    }

    /// Number of deployments in the group (0 when unknown).
    pub fn group_size(&self, group: &str) -> usize {
        self.group(group).map_or(0, |g| g.slots.len())
    }

    /// Deployments of the group that are not cooling down right now.
    pub fn healthy_count(&self, group: &str) -> usize {
        let Some(g) = self.group(group) else {
            return 0;
        };
        let now = self.inner.clock.now_ms();
        g.slots
            .iter()
            .filter(|&&s| self.cooldown_until(s) <= now)
            .count()
    }

    /// Ids of the group's deployments that are cooling down right now.
    pub fn cooldown_list(&self, group: &str) -> Vec<String> {
        let now = self.inner.clock.now_ms();
        self.group(group).map_or_else(Vec::new, |g| {
            g.slots
                .iter()
                .filter(|&&s| self.cooldown_until(s) > now)
                .map(|&s| self.inner.deployments[s].id.clone())
                .collect()
        })
    }

    /// Whether any group routes by request tags: callers pass [`PickContext::tags`] only then.
    pub fn routes_by_tags(&self) -> bool {
        self.inner.by_tags
    }

    /// Start a retry/fallback plan for a request to `model`.
    pub fn plan<E>(&self, model: &str, options: PlanOptions) -> Plan<E> {
        Plan::new(self.clone(), model, options)
    }

    /// Choose a deployment of `group` (or an alias of one) for one attempt.
    pub fn pick(&self, group: &str, ctx: &PickContext) -> Result<Pick, NoDeployment> {
        let inner = &*self.inner;
        let Some(g) = self.group(group) else {
            return Err(self.no_deployment(group, NoDeploymentReason::UnknownGroup, 0, ctx));
        };
        let now = inner.clock.now_ms();
        let minute = minute_of(now);
        let allowed = if g.by_tags {
            let untagged = RequestTags::default();
            crate::tags::allowed(
                &g.slots,
                |s| crate::tags::Tagged {
                    spec: &inner.deployments[s],
                    regexes: &inner.regexes[s],
                },
                |s| self.cooldown_until(s) <= now,
                ctx.tags.as_deref().unwrap_or(&untagged),
                inner.settings.tag_filtering_match_any,
            )
        } else {
            Allowed::All
        };
        if allowed == Allowed::Refused {
            return Err(self.no_deployment(group, NoDeploymentReason::Tags, 0, ctx));
        }
        let mut skipped = Skipped::default();
        let mut stack = [EMPTY; STACK_CANDIDATES];
        let mut heap = Vec::new();
        let buf: &mut [Candidate] = if g.slots.len() <= STACK_CANDIDATES {
            &mut stack
        } else {
            heap.resize(g.slots.len(), EMPTY);
            &mut heap
        };
        for tier in g.tiers.iter() {
            let mut len = 0;
            for &slot in &g.slots[tier.clone()] {
                if !allowed.admits(slot) {
                    continue;
                }
                match self.candidate_metric(slot, g.weights, now, minute, ctx) {
                    Ok(metric) => {
                        buf[len] = Candidate { slot, metric };
                        len += 1;
                    }
                    Err(Skip::Cooling) => skipped.cooling = true,
                    Err(Skip::Limited) => skipped.limited = true,
                    Err(Skip::Context) => skipped.context = true,
                    Err(Skip::Budget) => skipped.budget = true,
                }
            }
            while len > 0 {
                let i = self.choose(&buf[..len]);
                let slot = buf[i].slot;
                let d = &inner.deployments[slot];
                // The rpm check above was a read; this is the atomic reservation. Losing the
                // race to a concurrent pick just means trying the next best candidate.
                if inner.state.try_acquire_request(key(d, slot), minute, d.rpm) {
                    inner.local[slot].in_flight.fetch_add(1, Ordering::AcqRel);
                    return Ok(Pick {
                        router: self.clone(),
                        slot,
                    });
                }
                skipped.limited = true;
                buf.swap(i, len - 1);
                len -= 1;
            }
        }
        // As LiteLLM, whose budget filter runs on the deployments not cooling down and before
        // the rpm/tpm and context checks: when it leaves none, that is the answer.
        let (reason, wait_ms) = if skipped.budget && !skipped.limited && !skipped.context {
            (NoDeploymentReason::Budget, 0)
        } else if skipped.cooling {
            let soonest = g
                .slots
                .iter()
                .map(|&s| self.cooldown_until(s))
                .filter(|&u| u > now)
                .min()
                .unwrap_or(now);
            (NoDeploymentReason::CoolingDown, soonest - now)
        } else if skipped.limited {
            (NoDeploymentReason::RateLimited, 60_000 - now % 60_000)
        } else if skipped.context {
            (NoDeploymentReason::ContextWindow, 0)
        } else {
            (NoDeploymentReason::UnknownGroup, 0)
        };
        Err(self.no_deployment(group, reason, wait_ms, ctx))
    }

    /// Per-deployment state for metrics (`litellm_deployment_state`) and health output.
    pub fn snapshot(&self) -> Vec<DeploymentSnapshot> {
        let inner = &*self.inner;
        let now = inner.clock.now_ms();
        let minute = minute_of(now);
        inner
            .deployments
            .iter()
            .enumerate()
            .map(|(slot, d)| {
                let k = key(d, slot);
                let until = inner.state.cooldown_until_ms(k);
                let outcomes = inner.state.outcomes(k, minute);
                let local = &inner.local[slot];
                let health = if until > now {
                    DeploymentHealth::CompleteOutage
                } else if outcomes.failures > 0 && local.last_failed.load(Ordering::Acquire) {
                    DeploymentHealth::PartialOutage
                } else {
                    DeploymentHealth::Healthy
                };
                DeploymentSnapshot {
                    id: d.id.clone(),
                    model_group: d.model_group.clone(),
                    health,
                    in_flight: local.in_flight.load(Ordering::Acquire),
                    rpm_used: inner.state.rpm_used(k, minute),
                    tpm_used: inner.state.tpm_used(k, minute),
                    outcomes_this_minute: outcomes,
                    cooldown_remaining: (until > now).then(|| Duration::from_millis(until - now)),
                    latency: latency_secs(local).map(secs),
                    successes_total: local.successes_total.load(Ordering::Relaxed),
                    failures_total: local.failures_total.load(Ordering::Relaxed),
                    cooldowns_total: local.cooldowns_total.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    fn group(&self, name: &str) -> Option<&Group> {
        let inner = &*self.inner;
        inner.groups.get(name).or_else(|| {
            let target = inner.settings.model_group_alias.get(name)?.target();
            inner.groups.get(target)
        })
    }

    fn cooldown_until(&self, slot: usize) -> u64 {
        let d = &self.inner.deployments[slot];
        self.inner.state.cooldown_until_ms(key(d, slot))
    }

    /// Whether `slot` can take the request now, and its score for the configured strategy.
    fn candidate_metric(
        &self,
        slot: usize,
        weights: WeightSource,
        now: u64,
        minute: u64,
        ctx: &PickContext,
    ) -> Result<f64, Skip> {
        let inner = &*self.inner;
        let d = &inner.deployments[slot];
        let k = key(d, slot);
        if inner.state.cooldown_until_ms(k) > now {
            return Err(Skip::Cooling);
        }
        if ctx.exclude.as_ref().is_some_and(|e| (e.0)(slot)) {
            return Err(Skip::Budget);
        }
        if inner.settings.enable_pre_call_checks
            && d.max_input_tokens
                .is_some_and(|max| ctx.estimated_input_tokens > max)
        {
            return Err(Skip::Context);
        }
        if let Some(rpm) = d.rpm
            && inner.state.rpm_used(k, minute) >= rpm
        {
            return Err(Skip::Limited);
        }
        let mut tpm_used = None;
        if let Some(tpm) = d.tpm {
            let used = inner.state.tpm_used(k, minute);
            if used.saturating_add(ctx.estimated_input_tokens) > tpm {
                return Err(Skip::Limited);
            }
            tpm_used = Some(used);
        }
        let local = &inner.local[slot];
        Ok(match inner.settings.routing_strategy {
            RoutingStrategy::LeastBusy => local.in_flight.load(Ordering::Acquire) as f64,
            RoutingStrategy::LatencyBasedRouting => latency_secs(local).unwrap_or(0.0),
            RoutingStrategy::UsageBasedRouting | RoutingStrategy::UsageBasedRoutingV2 => {
                tpm_used.unwrap_or_else(|| inner.state.tpm_used(k, minute)) as f64
            }
            RoutingStrategy::SimpleShuffle
            | RoutingStrategy::CostBasedRouting
            | RoutingStrategy::Other => match weights {
                WeightSource::Weight => d.weight.unwrap_or(0.0),
                WeightSource::Rpm => d.rpm.unwrap_or(0) as f64,
                WeightSource::Tpm => d.tpm.unwrap_or(0) as f64,
                WeightSource::Uniform => 1.0,
            },
        })
    }

    /// Index into `cands` (non-empty) chosen by the configured strategy.
    fn choose(&self, cands: &[Candidate]) -> usize {
        let settings = &self.inner.settings;
        match settings.routing_strategy {
            RoutingStrategy::LeastBusy
            | RoutingStrategy::UsageBasedRouting
            | RoutingStrategy::UsageBasedRoutingV2 => pick_near_min(cands, 0.0),
            RoutingStrategy::LatencyBasedRouting => {
                pick_near_min(cands, settings.routing_strategy_args.lowest_latency_buffer)
            }
            RoutingStrategy::SimpleShuffle
            | RoutingStrategy::CostBasedRouting
            | RoutingStrategy::Other => pick_weighted(cands),
        }
    }

    fn no_deployment(
        &self,
        group: &str,
        reason: NoDeploymentReason,
        wait_ms: u64,
        ctx: &PickContext,
    ) -> NoDeployment {
        let retry_after_secs = match reason {
            // Never "Try again in 0 seconds", even when a cooldown ends this very millisecond.
            NoDeploymentReason::CoolingDown | NoDeploymentReason::RateLimited => {
                wait_ms.div_ceil(1000).max(1)
            }
            NoDeploymentReason::UnknownGroup
            | NoDeploymentReason::ContextWindow
            | NoDeploymentReason::Tags
            | NoDeploymentReason::Budget => 0,
        };
        NoDeployment {
            model: group.to_owned(),
            reason,
            retry_after_secs,
            cooldown_list: self.cooldown_list(group),
            pre_call_checks: self.inner.settings.enable_pre_call_checks,
            estimated_input_tokens: ctx.estimated_input_tokens,
            tags: ctx
                .tags
                .as_ref()
                .map(|t| t.tags.clone())
                .unwrap_or_default(),
        }
    }

    fn on_success(&self, slot: usize, latency: Duration, usage: TokenUsage) {
        let inner = &*self.inner;
        let d = &inner.deployments[slot];
        let k = key(d, slot);
        let minute = minute_of(inner.clock.now_ms());
        if usage.total() > 0 {
            inner.state.add_tokens(k, minute, usage.total());
        }
        inner.state.record_outcome(k, minute, true);
        let local = &inner.local[slot];
        local.last_failed.store(false, Ordering::Release);
        local.successes_total.fetch_add(1, Ordering::Relaxed);
        let sample = if usage.output_tokens > 0 {
            latency.as_secs_f64() / usage.output_tokens as f64
        } else {
            latency.as_secs_f64()
        };
        record_latency(local, sample);
    }

    fn on_failure(&self, slot: usize, failure: &Failure) -> bool {
        let inner = &*self.inner;
        let d = &inner.deployments[slot];
        let k = key(d, slot);
        let now = inner.clock.now_ms();
        let outcomes = inner.state.record_outcome(k, minute_of(now), false);
        let local = &inner.local[slot];
        local.last_failed.store(true, Ordering::Release);
        local.failures_total.fetch_add(1, Ordering::Relaxed);
        if failure.class == ErrorClass::Timeout && !failure.caller_caused {
            record_latency(local, TIMEOUT_LATENCY_PENALTY_SECS);
        }
        let group_size = self.group_size(&d.model_group);
        if !should_cooldown(&inner.settings, failure, group_size, outcomes) {
            return false;
        }
        let period = failure
            .retry_after
            .filter(|d| !d.is_zero())
            .unwrap_or_else(|| inner.settings.cooldown_duration());
        let period_ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX);
        if period_ms == 0 {
            return false;
        }
        inner
            .state
            .extend_cooldown(k, now.saturating_add(period_ms));
        local.cooldowns_total.fetch_add(1, Ordering::Relaxed);
        true
    }
}

fn key(d: &DeploymentSpec, slot: usize) -> DeploymentKey<'_> {
    DeploymentKey { slot, id: &d.id }
}

fn latency_secs(local: &Local) -> Option<f64> {
    let bits = local.latency.load(Ordering::Acquire);
    (bits != NO_LATENCY).then(|| f64::from_bits(bits))
}

fn record_latency(local: &Local, sample: f64) {
    if !sample.is_finite() || sample < 0.0 {
        return;
    }
    let mut cur = local.latency.load(Ordering::Acquire);
    loop {
        let next = if cur == NO_LATENCY {
            sample
        } else {
            let prev = f64::from_bits(cur);
            prev + LATENCY_ALPHA * (sample - prev)
        };
        match local.latency.compare_exchange_weak(
            cur,
            next.to_bits(),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => return,
            Err(actual) => cur = actual,
        }
    }
}

/// Weighted random choice; all-zero weights degrade to uniform.
fn pick_weighted(cands: &[Candidate]) -> usize {
    let total: f64 = cands.iter().map(|c| c.metric.max(0.0)).sum();
    if !total.is_finite() || total <= 0.0 {
        return rand::random_range(0..cands.len());
    }
    let mut r = rand::random::<f64>() * total;
    for (i, c) in cands.iter().enumerate() {
        let w = c.metric.max(0.0);
        if r < w {
            return i;
        }
        r -= w;
    }
    // Float rounding can leave r a hair above the last weight.
    cands.iter().rposition(|c| c.metric > 0.0).unwrap_or(0)
}

/// Uniform choice among candidates whose metric is within `buffer` (relative) of the lowest.
fn pick_near_min(cands: &[Candidate], buffer: f64) -> usize {
    let min = cands.iter().map(|c| c.metric).fold(f64::INFINITY, f64::min);
    let limit = min + min.abs() * buffer.max(0.0);
    let near = cands.iter().filter(|c| c.metric <= limit).count();
    if near <= 1 {
        return cands.iter().position(|c| c.metric <= limit).unwrap_or(0);
    }
    let nth = rand::random_range(0..near);
    cands
        .iter()
        .enumerate()
        .filter(|(_, c)| c.metric <= limit)
        .nth(nth)
        .map_or(0, |(i, _)| i)
}

/// One chosen deployment for one attempt. Holds an in-flight slot until dropped; report the
/// outcome with [`Pick::success`] or [`Pick::failure`] (dropping without either, e.g. when the
/// client went away, only releases the slot).
#[must_use = "report the outcome with success() or failure()"]
pub struct Pick {
    router: Router,
    slot: usize,
}

impl fmt::Debug for Pick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pick")
            .field("id", &self.deployment().id)
            .finish()
    }
}

impl Pick {
    pub fn deployment(&self) -> &DeploymentSpec {
        &self.router.inner.deployments[self.slot]
    }

    /// Index of the deployment in the list given to [`Router::new`].
    pub fn index(&self) -> usize {
        self.slot
    }

    /// Record a successful call: tokens feed usage routing, latency feeds latency routing.
    pub fn success(self, latency: Duration, usage: TokenUsage) {
        self.router.on_success(self.slot, latency, usage);
    }

    /// Record a failed call; returns whether the deployment was put into cooldown.
    pub fn failure(self, failure: &Failure) -> bool {
        self.router.on_failure(self.slot, failure)
    }
}

impl Drop for Pick {
    fn drop(&mut self) {
        self.router.inner.local[self.slot]
            .in_flight
            .fetch_sub(1, Ordering::AcqRel);
    }
}
