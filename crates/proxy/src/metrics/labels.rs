//! LiteLLM's metric names, help texts, types and label sets (its `PrometheusMetricLabels`),
//! and the label values of one call.
//!
//! A label the gateway has no value for reads `"None"`, as LiteLLM's Python client prints an
//! unset label, so that dashboards and alerts written against LiteLLM match the same series.

use prometheus_client::metrics::MetricType;

/// LiteLLM's latency buckets (seconds); `+Inf` follows.
pub(crate) const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 420.0,
    600.0,
];

/// The Python client's default buckets, which LiteLLM keeps for the per-output-token latency.
pub(crate) const DEFAULT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// What an unset label reads.
pub(crate) const NONE: &str = "None";

/// One metric family: its name (a counter's samples get `_total`), help, type and labels.
pub(crate) struct Def {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricType,
    pub labels: &'static [&'static str],
}

impl Def {
    /// Where the key hash sits among the labels: series with one are evicted when idle.
    pub fn key_label(&self) -> Option<usize> {
        self.labels.iter().position(|l| *l == "hashed_api_key")
    }
}

const fn counter(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Def {
    Def {
        name,
        help,
        kind: MetricType::Counter,
        labels,
    }
}

const fn gauge(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Def {
    Def {
        name,
        help,
        kind: MetricType::Gauge,
        labels,
    }
}

const fn histogram(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Def {
    Def {
        name,
        help,
        kind: MetricType::Histogram,
        labels,
    }
}

pub(crate) const PROXY_TOTAL_REQUESTS: Def = counter(
    "litellm_proxy_total_requests_metric",
    "Total number of requests made to the proxy server - track number of client side requests",
    &[
        "end_user",
        "hashed_api_key",
        "api_key_alias",
        "requested_model",
        "team",
        "team_alias",
        "user",
        "status_code",
        "user_email",
        "route",
        "client_ip",
        "user_agent",
        "model_id",
        "api_provider",
        "org_id",
        "org_alias",
    ],
);

pub(crate) const PROXY_FAILED_REQUESTS: Def = counter(
    "litellm_proxy_failed_requests_metric",
    "Total number of failed responses from proxy - the client did not get a success response from the proxy",
    &[
        "end_user",
        "hashed_api_key",
        "api_key_alias",
        "requested_model",
        "team",
        "team_alias",
        "user",
        "user_email",
        "exception_status",
        "exception_class",
        "route",
        "client_ip",
        "user_agent",
        "model_id",
        "api_provider",
        "org_id",
        "org_alias",
    ],
);

const LLM_API_LABELS: &[&str] = &[
    "model_group",
    "model",
    "hashed_api_key",
    "api_key_alias",
    "team",
    "team_alias",
    "requested_model",
    "end_user",
    "user",
    "model_id",
    "api_provider",
    "service_tier",
    "org_id",
    "org_alias",
];

pub(crate) const REQUEST_TOTAL_LATENCY: Def = histogram(
    "litellm_request_total_latency_metric",
    "End-to-end latency (seconds) for a request to the proxy, from its arrival to the end of its answer",
    &[
        "model_group",
        "end_user",
        "hashed_api_key",
        "api_key_alias",
        "requested_model",
        "team",
        "team_alias",
        "user",
        "model",
        "model_id",
        "api_provider",
        "service_tier",
        "org_id",
        "org_alias",
    ],
);

pub(crate) const LLM_API_LATENCY: Def = histogram(
    "litellm_llm_api_latency_metric",
    "Total latency (seconds) for a model's LLM API call",
    LLM_API_LABELS,
);

pub(crate) const TIME_TO_FIRST_TOKEN: Def = histogram(
    "litellm_llm_api_time_to_first_token_metric",
    "Time to first token for a model's LLM API call (streams)",
    LLM_API_LABELS,
);

pub(crate) const OVERHEAD_LATENCY: Def = histogram(
    "litellm_overhead_latency_metric",
    "Latency overhead (seconds) added by the proxy",
    &[
        "model_group",
        "api_provider",
        "api_base",
        "litellm_model_name",
        "hashed_api_key",
        "api_key_alias",
        "model_id",
    ],
);

pub(crate) const LATENCY_PER_OUTPUT_TOKEN: Def = histogram(
    "litellm_deployment_latency_per_output_token",
    "LLM Deployment Analytics - Latency per output token",
    &[
        "model_group",
        "litellm_model_name",
        "model_id",
        "api_base",
        "api_provider",
        "hashed_api_key",
        "api_key_alias",
        "team",
        "team_alias",
    ],
);

pub(crate) const REQUESTS: Def = counter(
    "litellm_requests_metric",
    "deprecated - use litellm_proxy_total_requests_metric. Total number of LLM calls - track total per API Key, team, user",
    &[
        "end_user",
        "hashed_api_key",
        "api_key_alias",
        "model",
        "team",
        "team_alias",
        "user",
        "user_email",
        "client_ip",
        "user_agent",
        "requested_model",
        "model_id",
        "api_provider",
        "org_id",
        "org_alias",
    ],
);

pub(crate) const SPEND: Def = counter(
    "litellm_spend_metric",
    "Total spend on LLM requests",
    &[
        "end_user",
        "hashed_api_key",
        "api_key_alias",
        "model",
        "team",
        "team_alias",
        "user",
        "user_email",
        "client_ip",
        "user_agent",
        "requested_model",
        "model_id",
        "api_provider",
        "service_tier",
        "org_id",
        "org_alias",
    ],
);

const TOKEN_LABELS: &[&str] = &[
    "end_user",
    "hashed_api_key",
    "api_key_alias",
    "model",
    "team",
    "team_alias",
    "user",
    "user_email",
    "requested_model",
    "model_id",
    "api_provider",
    "org_id",
    "org_alias",
];

pub(crate) const TOTAL_TOKENS: Def = counter(
    "litellm_total_tokens_metric",
    "Total number of input + output tokens from LLM requests",
    TOKEN_LABELS,
);

pub(crate) const INPUT_TOKENS: Def = counter(
    "litellm_input_tokens_metric",
    "Total number of input tokens from LLM requests",
    TOKEN_LABELS,
);

pub(crate) const OUTPUT_TOKENS: Def = counter(
    "litellm_output_tokens_metric",
    "Total number of output tokens from LLM requests",
    TOKEN_LABELS,
);

const KEY_LABELS: &[&str] = &["hashed_api_key", "api_key_alias"];

pub(crate) const REMAINING_KEY_BUDGET: Def = gauge(
    "litellm_remaining_api_key_budget_metric",
    "Remaining budget for api key",
    KEY_LABELS,
);

pub(crate) const KEY_MAX_BUDGET: Def = gauge(
    "litellm_api_key_max_budget_metric",
    "Maximum budget set for api key",
    KEY_LABELS,
);

/// LiteLLM's labels of its response-cache counters (`team_alias` is always "None" here).
const CACHE_LABELS: &[&str] = &[
    "model",
    "hashed_api_key",
    "api_key_alias",
    "team",
    "team_alias",
    "end_user",
    "user",
    "model_id",
    "api_provider",
];

pub(crate) const CACHE_HITS: Def = counter(
    "litellm_cache_hits_metric",
    "Total number of LiteLLM cache hits",
    CACHE_LABELS,
);

pub(crate) const CACHE_MISSES: Def = counter(
    "litellm_cache_misses_metric",
    "Total number of LiteLLM cache misses",
    CACHE_LABELS,
);

pub(crate) const CACHED_TOKENS: Def = counter(
    "litellm_cached_tokens_metric",
    "Total tokens served from LiteLLM cache",
    CACHE_LABELS,
);

const FALLBACK_LABELS: &[&str] = &[
    "requested_model",
    "fallback_model",
    "hashed_api_key",
    "api_key_alias",
    "team",
    "team_alias",
    "exception_status",
    "exception_class",
    "model_id",
];

pub(crate) const SUCCESSFUL_FALLBACKS: Def = counter(
    "litellm_deployment_successful_fallbacks",
    "LLM Deployment Analytics - Number of successful fallback requests from primary model -> fallback model",
    FALLBACK_LABELS,
);

pub(crate) const FAILED_FALLBACKS: Def = counter(
    "litellm_deployment_failed_fallbacks",
    "LLM Deployment Analytics - Number of failed fallback requests from primary model -> fallback model",
    FALLBACK_LABELS,
);

/// Budget left in each `router_settings.provider_budget_config` window (LiteLLM sets it when
/// its budget filter runs; here it is read at scrape time).
pub(crate) const PROVIDER_REMAINING_BUDGET: Def = gauge(
    "litellm_provider_remaining_budget_metric",
    "Remaining budget for provider - used when you set provider budget limits",
    &["api_provider"],
);

const DEPLOYMENT_LABELS: &[&str] = &["litellm_model_name", "model_id", "api_base", "api_provider"];

pub(crate) const DEPLOYMENT_STATE: Def = gauge(
    "litellm_deployment_state",
    "LLM Deployment Analytics - The state of the deployment: 0 = healthy, 1 = partial outage, 2 = complete outage",
    DEPLOYMENT_LABELS,
);

/// LiteLLM adds `exception_status`; the router counts cooldowns without the cause.
pub(crate) const DEPLOYMENT_COOLED_DOWN: Def = counter(
    "litellm_deployment_cooled_down",
    "LLM Deployment Analytics - Number of times a deployment has been cooled down by the load balancing logic",
    DEPLOYMENT_LABELS,
);

const DEPLOYMENT_RESPONSE_LABELS: &[&str] = &[
    "model_group",
    "litellm_model_name",
    "model_id",
    "api_base",
    "api_provider",
];

/// Counted per attempt by the router, so without LiteLLM's caller labels (key, team, client).
pub(crate) const DEPLOYMENT_SUCCESS: Def = counter(
    "litellm_deployment_success_responses",
    "LLM Deployment Analytics - Total number of successful LLM API calls via the proxy",
    DEPLOYMENT_RESPONSE_LABELS,
);

pub(crate) const DEPLOYMENT_FAILURE: Def = counter(
    "litellm_deployment_failure_responses",
    "LLM Deployment Analytics - Total number of failed LLM API calls to a specific LLM deployment",
    DEPLOYMENT_RESPONSE_LABELS,
);

pub(crate) const DEPLOYMENT_TOTAL: Def = counter(
    "litellm_deployment_total_requests",
    "LLM Deployment Analytics - Total number of LLM API calls via the proxy - success + failure",
    DEPLOYMENT_RESPONSE_LABELS,
);

/// LiteLLM's `exception_class` label: the provider, capitalised, then the class LiteLLM maps
/// the upstream's status to (`Openai.RateLimitError`).
pub(crate) fn exception_class(provider: &str, status: u16) -> String {
    let class = match status {
        400 => "BadRequestError",
        401 => "AuthenticationError",
        403 => "PermissionDeniedError",
        404 => "NotFoundError",
        408 | 504 => "Timeout",
        422 => "UnprocessableEntityError",
        429 => "RateLimitError",
        500 => "InternalServerError",
        502 => "BadGatewayError",
        503 => "ServiceUnavailableError",
        499 => "ClientDisconnected",
        _ => "APIError",
    };
    let mut chars = provider.chars();
    match chars.next() {
        Some(first) => format!("{}{}.{class}", first.to_uppercase(), chars.as_str()),
        None => class.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exception_class_prefixes_the_capitalised_provider_as_litellm() {
        assert_eq!(exception_class("openai", 429), "Openai.RateLimitError");
        assert_eq!(exception_class("azure", 400), "Azure.BadRequestError");
        assert_eq!(exception_class("", 503), "ServiceUnavailableError");
        assert_eq!(exception_class("bedrock", 418), "Bedrock.APIError");
    }

    #[test]
    fn every_label_name_is_a_valid_prometheus_name_and_unique_per_metric() {
        for d in [
            &PROXY_TOTAL_REQUESTS,
            &PROXY_FAILED_REQUESTS,
            &REQUEST_TOTAL_LATENCY,
            &LLM_API_LATENCY,
            &OVERHEAD_LATENCY,
            &LATENCY_PER_OUTPUT_TOKEN,
            &REQUESTS,
            &SPEND,
            &TOTAL_TOKENS,
            &REMAINING_KEY_BUDGET,
            &CACHE_HITS,
            &SUCCESSFUL_FALLBACKS,
            &DEPLOYMENT_STATE,
            &DEPLOYMENT_SUCCESS,
        ] {
            let mut seen = std::collections::HashSet::new();
            assert!(!d.labels.is_empty(), "{}", d.name);
            for l in d.labels {
                assert!(seen.insert(*l), "{} repeats {l}", d.name);
                assert!(l.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{l}");
            }
        }
    }
}
