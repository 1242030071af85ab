//! `router_settings` as LiteLLM spells it, so the proxy can deserialize the YAML section straight
//! into [`RouterSettings`]. Unknown keys are ignored; `null` means "use the default".

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::ErrorClass;
use crate::lenient::{bool_or_false, bool_or_true, f64_or_zero, opt_f64, opt_u32};

/// LiteLLM's `DEFAULT_MAX_RETRIES` (the openai client default the Router falls back to).
pub const DEFAULT_NUM_RETRIES: u32 = 2;
/// `DEFAULT_COOLDOWN_TIME_SECONDS`.
pub const DEFAULT_COOLDOWN_TIME_SECS: f64 = 5.0;
/// `ROUTER_MAX_FALLBACKS`.
pub const DEFAULT_MAX_FALLBACKS: u32 = 5;
/// `DEFAULT_ALLOWED_FAILS`, used only when the legacy allowed-fails rule is switched on.
pub const DEFAULT_ALLOWED_FAILS: u32 = 3;

/// How a deployment is chosen inside a model group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum RoutingStrategy {
    #[default]
    #[serde(rename = "simple-shuffle")]
    SimpleShuffle,
    #[serde(rename = "least-busy")]
    LeastBusy,
    #[serde(rename = "usage-based-routing")]
    UsageBasedRouting,
    #[serde(rename = "usage-based-routing-v2")]
    UsageBasedRoutingV2,
    #[serde(rename = "latency-based-routing")]
    LatencyBasedRouting,
    /// Accepted so configs load; needs the price map, so it routes like `simple-shuffle` for now.
    #[serde(rename = "cost-based-routing")]
    CostBasedRouting,
    /// `lar1`, `provider-budget-routing` and anything newer: routed like `simple-shuffle`.
    #[serde(other)]
    Other,
}

/// `routing_strategy_args`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct RoutingStrategyArgs {
    /// Latency routing: deployments within `lowest * (1 + buffer)` are picked at random.
    #[serde(deserialize_with = "f64_or_zero")]
    pub lowest_latency_buffer: f64,
    /// Seconds latency samples stay relevant (accepted; samples decay through the moving average).
    #[serde(deserialize_with = "opt_f64")]
    pub ttl: Option<f64>,
}

/// Per-error-class retry counts (`retry_policy`, `model_group_retry_policy` values).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct RetryPolicy {
    #[serde(deserialize_with = "opt_u32")]
    pub bad_request_error_retries: Option<u32>,
    #[serde(deserialize_with = "opt_u32")]
    pub authentication_error_retries: Option<u32>,
    #[serde(deserialize_with = "opt_u32")]
    pub timeout_error_retries: Option<u32>,
    #[serde(deserialize_with = "opt_u32")]
    pub rate_limit_error_retries: Option<u32>,
    #[serde(deserialize_with = "opt_u32")]
    pub content_policy_violation_error_retries: Option<u32>,
    #[serde(deserialize_with = "opt_u32")]
    pub internal_server_error_retries: Option<u32>,
    #[serde(deserialize_with = "opt_u32")]
    pub service_unavailable_error_retries: Option<u32>,
    #[serde(deserialize_with = "opt_u32")]
    pub not_found_error_retries: Option<u32>,
    #[serde(deserialize_with = "opt_u32")]
    pub default_retries: Option<u32>,
}

impl RetryPolicy {
    /// The count this policy sets for `class`, if any. Context-window and content-policy errors
    /// are bad requests in LiteLLM's class tree, so they inherit `BadRequestErrorRetries`.
    pub fn retries_for(&self, class: ErrorClass) -> Option<u32> {
        let specific = match class {
            ErrorClass::BadRequest => self.bad_request_error_retries,
            ErrorClass::ContextWindowExceeded => self.bad_request_error_retries,
            ErrorClass::ContentPolicy => self
                .content_policy_violation_error_retries
                .or(self.bad_request_error_retries),
            ErrorClass::Auth | ErrorClass::PermissionDenied => self.authentication_error_retries,
            ErrorClass::NotFound => self.not_found_error_retries,
            ErrorClass::RateLimit => self.rate_limit_error_retries,
            ErrorClass::Timeout => self.timeout_error_retries,
            ErrorClass::InternalServer => self.internal_server_error_retries,
            ErrorClass::ServiceUnavailable => self.service_unavailable_error_retries,
            ErrorClass::Connection => None,
        };
        specific.or(self.default_retries)
    }
}

/// Per-error-class allowed failures per minute (`allowed_fails_policy`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct AllowedFailsPolicy {
    #[serde(deserialize_with = "opt_u32")]
    pub bad_request_error_allowed_fails: Option<u32>,
    #[serde(deserialize_with = "opt_u32")]
    pub authentication_error_allowed_fails: Option<u32>,
    #[serde(deserialize_with = "opt_u32")]
    pub timeout_error_allowed_fails: Option<u32>,
    #[serde(deserialize_with = "opt_u32")]
    pub rate_limit_error_allowed_fails: Option<u32>,
    #[serde(deserialize_with = "opt_u32")]
    pub content_policy_violation_error_allowed_fails: Option<u32>,
    #[serde(deserialize_with = "opt_u32")]
    pub internal_server_error_allowed_fails: Option<u32>,
}

impl AllowedFailsPolicy {
    pub fn allowed_fails_for(&self, class: ErrorClass) -> Option<u32> {
        match class {
            ErrorClass::BadRequest | ErrorClass::ContextWindowExceeded => {
                self.bad_request_error_allowed_fails
            }
            ErrorClass::ContentPolicy => self
                .content_policy_violation_error_allowed_fails
                .or(self.bad_request_error_allowed_fails),
            ErrorClass::Auth | ErrorClass::PermissionDenied => {
                self.authentication_error_allowed_fails
            }
            ErrorClass::Timeout => self.timeout_error_allowed_fails,
            ErrorClass::RateLimit => self.rate_limit_error_allowed_fails,
            ErrorClass::InternalServer | ErrorClass::ServiceUnavailable => {
                self.internal_server_error_allowed_fails
            }
            ErrorClass::NotFound | ErrorClass::Connection => None,
        }
    }
}

/// A fallback table: `[{"gpt-4o": ["claude-sonnet", "gemini"]}, {"*": ["gpt-4o-mini"]}]`,
/// kept in declaration order. `"*"` matches any group without an entry of its own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fallbacks(pub Vec<(String, Vec<String>)>);

impl Fallbacks {
    /// The list declared for exactly `group`.
    pub fn exact(&self, group: &str) -> Option<&[String]> {
        self.0
            .iter()
            .find(|(k, _)| k == group)
            .map(|(_, v)| v.as_slice())
    }

    /// The list for `group`, else the generic `"*"` list.
    pub fn for_group(&self, group: &str) -> Option<&[String]> {
        self.exact(group).or_else(|| self.exact("*"))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for Fallbacks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Targets {
            Many(Vec<String>),
            One(String),
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Item {
            Table(HashMap<String, Targets>),
            // Request bodies may list plain group names: fallbacks for whatever was asked.
            Name(String),
        }
        let raw: Option<Vec<Item>> = Option::deserialize(d)?;
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        let mut bare = Vec::new();
        for item in raw.unwrap_or_default() {
            let entry = match item {
                Item::Name(n) => {
                    bare.push(n);
                    continue;
                }
                Item::Table(t) => t,
            };
            // Each list item is a one-key map in practice; a multi-key item is read key by key
            // in name order so the result does not depend on hash order.
            let mut pairs: Vec<(String, Targets)> = entry.into_iter().collect();
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
            for (k, v) in pairs {
                let targets = match v {
                    Targets::Many(v) => v,
                    Targets::One(s) => vec![s],
                };
                out.push((k, targets));
            }
        }
        if !bare.is_empty() {
            out.push(("*".to_owned(), bare));
        }
        Ok(Fallbacks(out))
    }
}

/// A `model_group_alias` value: `"gpt-4o"` or `{model: "gpt-4o", hidden: true}`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum GroupAlias {
    Name(String),
    Detailed {
        model: String,
        #[serde(default)]
        hidden: bool,
    },
}

impl GroupAlias {
    pub fn target(&self) -> &str {
        match self {
            GroupAlias::Name(s) => s,
            GroupAlias::Detailed { model, .. } => model,
        }
    }

    pub fn hidden(&self) -> bool {
        matches!(self, GroupAlias::Detailed { hidden: true, .. })
    }
}

/// `router_settings` (plus the routing keys LiteLLM also accepts under `litellm_settings`; the
/// proxy merges those in before building the router).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default)]
pub struct RouterSettings {
    #[serde(deserialize_with = "null_default")]
    pub routing_strategy: RoutingStrategy,
    #[serde(deserialize_with = "null_default")]
    pub routing_strategy_args: RoutingStrategyArgs,
    /// `None`: [`DEFAULT_NUM_RETRIES`].
    #[serde(deserialize_with = "opt_u32")]
    pub num_retries: Option<u32>,
    /// Minimum seconds to sleep before a retry.
    #[serde(deserialize_with = "f64_or_zero")]
    pub retry_after: f64,
    /// Seconds; carried for the proxy's upstream call.
    #[serde(deserialize_with = "opt_f64")]
    pub timeout: Option<f64>,
    #[serde(deserialize_with = "opt_f64")]
    pub stream_timeout: Option<f64>,
    /// Setting this (or `allowed_fails_policy`) switches cooldowns to the legacy rule.
    #[serde(deserialize_with = "opt_u32")]
    pub allowed_fails: Option<u32>,
    #[serde(deserialize_with = "cooldown_default")]
    pub cooldown_time: f64,
    #[serde(deserialize_with = "bool_or_false")]
    pub disable_cooldowns: bool,
    #[serde(deserialize_with = "null_default")]
    pub fallbacks: Fallbacks,
    #[serde(deserialize_with = "null_default")]
    pub context_window_fallbacks: Fallbacks,
    #[serde(deserialize_with = "null_default")]
    pub content_policy_fallbacks: Fallbacks,
    /// Used for any group without an entry in `fallbacks` (LiteLLM turns it into a `"*"` entry).
    #[serde(deserialize_with = "null_default")]
    pub default_fallbacks: Vec<String>,
    #[serde(deserialize_with = "max_fallbacks_default")]
    pub max_fallbacks: u32,
    pub retry_policy: Option<RetryPolicy>,
    #[serde(deserialize_with = "null_default")]
    pub model_group_retry_policy: HashMap<String, RetryPolicy>,
    pub allowed_fails_policy: Option<AllowedFailsPolicy>,
    #[serde(deserialize_with = "null_default")]
    pub model_group_alias: HashMap<String, GroupAlias>,
    #[serde(deserialize_with = "bool_or_false")]
    pub enable_pre_call_checks: bool,
    /// Route by request tags (see `tags.rs`).
    #[serde(deserialize_with = "bool_or_false")]
    pub enable_tag_filtering: bool,
    /// A deployment serves a tagged request when it carries any of the tags (else all of them).
    #[serde(deserialize_with = "bool_or_true")]
    pub tag_filtering_match_any: bool,
}

impl Default for RouterSettings {
    fn default() -> Self {
        RouterSettings {
            routing_strategy: RoutingStrategy::default(),
            routing_strategy_args: RoutingStrategyArgs::default(),
            num_retries: None,
            retry_after: 0.0,
            timeout: None,
            stream_timeout: None,
            allowed_fails: None,
            cooldown_time: DEFAULT_COOLDOWN_TIME_SECS,
            disable_cooldowns: false,
            fallbacks: Fallbacks::default(),
            context_window_fallbacks: Fallbacks::default(),
            content_policy_fallbacks: Fallbacks::default(),
            default_fallbacks: Vec::new(),
            max_fallbacks: DEFAULT_MAX_FALLBACKS,
            retry_policy: None,
            model_group_retry_policy: HashMap::new(),
            allowed_fails_policy: None,
            model_group_alias: HashMap::new(),
            enable_pre_call_checks: false,
            enable_tag_filtering: false,
            tag_filtering_match_any: true,
        }
    }
}

impl RouterSettings {
    pub fn effective_num_retries(&self) -> u32 {
        self.num_retries.unwrap_or(DEFAULT_NUM_RETRIES)
    }

    pub fn cooldown_duration(&self) -> Duration {
        secs(self.cooldown_time)
    }

    pub fn retry_after_duration(&self) -> Duration {
        secs(self.retry_after)
    }

    /// Whether the legacy "more than `allowed_fails` failures this minute" cooldown rule applies.
    pub fn legacy_allowed_fails(&self) -> bool {
        self.allowed_fails.is_some() || self.allowed_fails_policy.is_some()
    }

    /// Retry count for an error of `class` in `group`: `model_group_retry_policy`, then
    /// `retry_policy`, then `default`.
    pub fn retries_for(&self, group: &str, class: ErrorClass, default: u32) -> u32 {
        self.model_group_retry_policy
            .get(group)
            .and_then(|p| p.retries_for(class))
            .or_else(|| {
                self.retry_policy
                    .as_ref()
                    .and_then(|p| p.retries_for(class))
            })
            .unwrap_or(default)
    }
}

/// The routing keys LiteLLM also reads from `litellm_settings` (module globals the Router falls
/// back to). Deserialize the `litellm_settings` section into this and pass it to
/// [`RouterSettings::with_litellm_settings`].
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct LitellmRoutingSettings {
    #[serde(deserialize_with = "opt_u32")]
    pub num_retries: Option<u32>,
    /// `request_timeout`, seconds.
    #[serde(deserialize_with = "opt_f64")]
    pub request_timeout: Option<f64>,
    #[serde(deserialize_with = "null_default")]
    pub fallbacks: Fallbacks,
    #[serde(deserialize_with = "null_default")]
    pub context_window_fallbacks: Fallbacks,
    #[serde(deserialize_with = "null_default")]
    pub content_policy_fallbacks: Fallbacks,
    #[serde(deserialize_with = "null_default")]
    pub default_fallbacks: Vec<String>,
    #[serde(deserialize_with = "opt_u32")]
    pub allowed_fails: Option<u32>,
}

impl RouterSettings {
    /// Fill what `router_settings` left unset from `litellm_settings`; `router_settings` wins.
    pub fn with_litellm_settings(mut self, l: LitellmRoutingSettings) -> RouterSettings {
        self.num_retries = self.num_retries.or(l.num_retries);
        self.timeout = self.timeout.or(l.request_timeout);
        self.allowed_fails = self.allowed_fails.or(l.allowed_fails);
        if self.fallbacks.is_empty() {
            self.fallbacks = l.fallbacks;
        }
        if self.context_window_fallbacks.is_empty() {
            self.context_window_fallbacks = l.context_window_fallbacks;
        }
        if self.content_policy_fallbacks.is_empty() {
            self.content_policy_fallbacks = l.content_policy_fallbacks;
        }
        if self.default_fallbacks.is_empty() {
            self.default_fallbacks = l.default_fallbacks;
        }
        self
    }
}

/// Seconds from config to a `Duration`; negative, NaN or absurd values clamp instead of panicking.
pub(crate) fn secs(s: f64) -> Duration {
    if s.is_finite() && s > 0.0 {
        Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX)
    } else {
        Duration::ZERO
    }
}

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn cooldown_default<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(opt_f64(d)?.unwrap_or(DEFAULT_COOLDOWN_TIME_SECS))
}

fn max_fallbacks_default<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    Ok(opt_u32(d)?.unwrap_or(DEFAULT_MAX_FALLBACKS))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn empty_settings_take_litellm_defaults() {
        let s: RouterSettings = serde_json::from_str("{}").unwrap();
        assert_eq!(s, RouterSettings::default());
        assert_eq!(s.routing_strategy, RoutingStrategy::SimpleShuffle);
        assert_eq!(s.effective_num_retries(), 2);
        assert_eq!(s.cooldown_duration(), Duration::from_secs(5));
        assert_eq!(s.max_fallbacks, 5);
        assert!(!s.legacy_allowed_fails());
    }

    #[test]
    fn yaml_router_settings_deserialize_with_litellm_names() {
        let yaml = r#"
routing_strategy: latency-based-routing
routing_strategy_args: {lowest_latency_buffer: 0.5, ttl: 60}
num_retries: 4
retry_after: 1.5
timeout: 30
allowed_fails: 2
cooldown_time: 30
disable_cooldowns: false
fallbacks: [{"gpt-4o": ["claude-sonnet", "gemini"]}, {"*": "gpt-4o-mini"}]
context_window_fallbacks: [{"gpt-4o": ["gpt-4o-128k"]}]
content_policy_fallbacks: null
default_fallbacks: ["cheap"]
max_fallbacks: 2
retry_policy: {RateLimitErrorRetries: 5, BadRequestErrorRetries: 0, DefaultRetries: 1}
allowed_fails_policy: {InternalServerErrorAllowedFails: 7}
model_group_alias: {"gpt-4": "gpt-4o", "old": {model: "gpt-4o", hidden: true}}
enable_pre_call_checks: true
redis_host: localhost
some_future_key: 1
"#;
        let s: RouterSettings = serde_yaml_ng::from_str(yaml).unwrap();
        assert_eq!(s.routing_strategy, RoutingStrategy::LatencyBasedRouting);
        assert_eq!(s.routing_strategy_args.lowest_latency_buffer, 0.5);
        assert_eq!(s.num_retries, Some(4));
        assert_eq!(s.retry_after_duration(), Duration::from_millis(1500));
        assert_eq!(s.cooldown_duration(), Duration::from_secs(30));
        assert_eq!(
            s.fallbacks.for_group("gpt-4o").unwrap(),
            ["claude-sonnet", "gemini"]
        );
        assert_eq!(s.fallbacks.for_group("other").unwrap(), ["gpt-4o-mini"]);
        assert_eq!(
            s.context_window_fallbacks.exact("gpt-4o").unwrap(),
            ["gpt-4o-128k"]
        );
        assert!(s.content_policy_fallbacks.is_empty());
        assert_eq!(s.default_fallbacks, ["cheap"]);
        assert_eq!(s.max_fallbacks, 2);
        assert_eq!(s.retries_for("g", ErrorClass::RateLimit, 9), 5);
        assert_eq!(s.retries_for("g", ErrorClass::ContextWindowExceeded, 9), 0);
        assert_eq!(s.retries_for("g", ErrorClass::Timeout, 9), 1);
        assert_eq!(
            s.allowed_fails_policy
                .as_ref()
                .unwrap()
                .allowed_fails_for(ErrorClass::InternalServer),
            Some(7)
        );
        assert_eq!(s.model_group_alias["gpt-4"].target(), "gpt-4o");
        assert!(s.model_group_alias["old"].hidden());
        assert!(s.enable_pre_call_checks);
        assert!(s.legacy_allowed_fails());
    }

    #[test]
    fn plain_names_in_a_fallback_list_apply_to_any_group() {
        let f: Fallbacks = serde_json::from_str(r#"["a", {"g": ["b"]}, "c"]"#).unwrap();
        assert_eq!(f.for_group("g").unwrap(), ["b"]);
        assert_eq!(f.for_group("x").unwrap(), ["a", "c"]);
    }

    #[test]
    fn litellm_settings_fill_only_what_router_settings_left_unset() {
        let router: RouterSettings =
            serde_yaml_ng::from_str("num_retries: 1\nfallbacks: [{g: [r]}]\n").unwrap();
        let litellm: LitellmRoutingSettings = serde_yaml_ng::from_str(
            "num_retries: 7\nrequest_timeout: 30\nfallbacks: [{g: [l]}]\n\
             context_window_fallbacks: [{g: [big]}]\ndrop_params: true\n",
        )
        .unwrap();
        let s = router.with_litellm_settings(litellm);
        assert_eq!(s.num_retries, Some(1));
        assert_eq!(s.timeout, Some(30.0));
        assert_eq!(s.fallbacks.for_group("g").unwrap(), ["r"]);
        assert_eq!(s.context_window_fallbacks.for_group("g").unwrap(), ["big"]);
    }

    #[test]
    fn numbers_and_flags_may_be_strings_from_environment_references() {
        let s: RouterSettings = serde_json::from_str(
            r#"{"num_retries": "4", "cooldown_time": "12.5", "disable_cooldowns": "True",
                "enable_pre_call_checks": "false", "max_fallbacks": 3.0, "retry_after": null,
                "retry_policy": {"RateLimitErrorRetries": "1"}}"#,
        )
        .unwrap();
        assert_eq!(s.num_retries, Some(4));
        assert_eq!(s.cooldown_time, 12.5);
        assert!(s.disable_cooldowns);
        assert!(!s.enable_pre_call_checks);
        assert_eq!(s.max_fallbacks, 3);
        assert_eq!(s.retry_after, 0.0);
        assert_eq!(s.retries_for("g", ErrorClass::RateLimit, 2), 1);
        let bad = serde_json::from_str::<RouterSettings>(r#"{"num_retries": "lots"}"#);
        assert!(bad.unwrap_err().to_string().contains("lots"));
        let err = serde_json::from_str::<RouterSettings>(r#"{"num_retries": -1}"#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("expected a whole number of at least 0, got -1"),
            "{err:?}"
        );
    }

    #[test]
    fn unknown_strategies_still_load() {
        let s: RouterSettings =
            serde_json::from_str(r#"{"routing_strategy": "provider-budget-routing"}"#).unwrap();
        assert_eq!(s.routing_strategy, RoutingStrategy::Other);
    }

    #[test]
    fn model_group_retry_policy_wins_over_global() {
        let s: RouterSettings = serde_json::from_str(
            r#"{"retry_policy": {"TimeoutErrorRetries": 3},
                "model_group_retry_policy": {"slow": {"TimeoutErrorRetries": 0}}}"#,
        )
        .unwrap();
        assert_eq!(s.retries_for("slow", ErrorClass::Timeout, 2), 0);
        assert_eq!(s.retries_for("fast", ErrorClass::Timeout, 2), 3);
        assert_eq!(s.retries_for("fast", ErrorClass::RateLimit, 2), 2);
    }
}
