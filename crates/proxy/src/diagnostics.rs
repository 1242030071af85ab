//! What the diagnostic routes (`/active/callbacks`, `/settings`, `/health/readiness/details`,
//! `/health/backlog`, `/health/drain`) report and obey: the configuration, read once at
//! start-up, and the count of requests being answered.

use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

use serde_json::{Value, json};

use crate::config::ProxyConfig;
use crate::config::inert::BUILT_CALLBACKS;

/// LiteLLM's `request_timeout` default, seconds.
const DEFAULT_REQUEST_TIMEOUT: f64 = 6000.0;

/// Requests of every connection whose answer has not been sent in full (`/health/backlog`,
/// `/health/drain`), counted by `serving`: one counter per thread, each on a cache line of its
/// own, so that the serving threads never contend for one line on every request; the reader
/// adds them up. A request may end on another thread than it began on, so a slot can go
/// below zero; the sum is exact.
#[repr(align(128))]
struct Slot(AtomicIsize);

const SLOTS: usize = 64;
static IN_FLIGHT: [Slot; SLOTS] = [const { Slot(AtomicIsize::new(0)) }; SLOTS];
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static MY_SLOT: usize = NEXT_SLOT.fetch_add(1, Ordering::Relaxed) % SLOTS;
}

/// One more request is being answered (`-1`: one less).
pub(crate) fn count_in_flight(delta: isize) {
    let slot = MY_SLOT.with(|s| *s);
    IN_FLIGHT[slot].0.fetch_add(delta, Ordering::Relaxed);
}

/// How many requests are being answered now, the asking one included.
pub(crate) fn requests_in_flight() -> usize {
    let sum: isize = IN_FLIGHT.iter().map(|s| s.0.load(Ordering::Relaxed)).sum();
    usize::try_from(sum).unwrap_or(0)
}

/// LiteLLM's `alerting_threshold` default.
const DEFAULT_SLOW_CALL: std::time::Duration = std::time::Duration::from_secs(300);

/// LiteLLM's `GRACEFUL_SHUTDOWN_TIMEOUT` default.
const DEFAULT_DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, Clone, Default)]
pub(crate) struct Diagnostics {
    /// `litellm_settings.callbacks`, `success_callback`, `failure_callback`, as configured.
    callbacks: Vec<String>,
    success: Vec<String>,
    failure: Vec<String>,
    /// `general_settings.alerting`, when set.
    alerting: Option<Vec<String>>,
    request_timeout: f64,
    /// `general_settings.allow_public_health_readiness_details`.
    pub public_readiness_details: bool,
    /// `general_settings.enable_drain_endpoint`: the token `/health/drain` wants, if any.
    pub drain: Option<Option<String>>,
    /// How long `/health/drain` waits at most (`GRACEFUL_SHUTDOWN_TIMEOUT`, default 30 s).
    pub drain_timeout: std::time::Duration,
    /// `general_settings.alerting_threshold` (default 300 s): a call this long is slow
    /// (`/model/metrics/slow_responses`, as the slow-call alert).
    pub slow_call: std::time::Duration,
}

fn names(list: &[String]) -> Vec<String> {
    list.iter().map(|s| s.trim().to_string()).collect()
}

/// Python's `str()` (and `repr`) of a list of strings, as LiteLLM's messages show one.
pub(crate) fn py_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("'{s}'")).collect();
    format!("[{}]", quoted.join(", "))
}

/// A JSON number as Python prints it: whole values without a fraction.
fn py_number(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        // Whole and within i64's exact range.
        json!(v as i64)
    } else {
        json!(v)
    }
}

impl Diagnostics {
    pub(crate) fn from_config(cfg: &ProxyConfig) -> Self {
        let ls = &cfg.file.litellm_settings;
        let gs = &cfg.file.general_settings;
        let flag = |name: &str| gs.extra.get(name).is_some_and(|v| v == true);
        let token = gs
            .extra
            .get("drain_endpoint_token")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| cfg.observe_env.get("DRAIN_ENDPOINT_TOKEN").cloned())
            .filter(|t| !t.is_empty());
        Diagnostics {
            callbacks: names(&ls.callbacks),
            success: names(&ls.success_callback),
            failure: names(&ls.failure_callback),
            alerting: (!gs.alerting.is_empty()).then(|| names(&gs.alerting)),
            request_timeout: ls.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT),
            public_readiness_details: flag("allow_public_health_readiness_details"),
            drain: flag("enable_drain_endpoint").then_some(token),
            drain_timeout: cfg
                .observe_env
                .get("GRACEFUL_SHUTDOWN_TIMEOUT")
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && (0.0..=86_400.0).contains(s))
                .map_or(DEFAULT_DRAIN_TIMEOUT, std::time::Duration::from_secs_f64),
            slow_call: gs
                .extra
                .get("alerting_threshold")
                .and_then(crate::config::loose_number)
                .filter(|n: &f64| *n > 0.0 && n.is_finite())
                .map_or(DEFAULT_SLOW_CALL, std::time::Duration::from_secs_f64),
        }
    }

    /// The callbacks run on a successful call, by name (`callbacks` run on both outcomes).
    pub(crate) fn success_callbacks(&self) -> Vec<String> {
        let mut out = self.success.clone();
        out.extend(self.callbacks.iter().cloned());
        out
    }

    fn all(&self) -> Vec<String> {
        let mut all = self.callbacks.clone();
        all.extend(self.failure.iter().cloned());
        all.extend(self.success.iter().cloned());
        all
    }

    /// Whether `service` is configured among the logging callbacks.
    pub(crate) fn configured(&self, service: &str) -> bool {
        self.all().iter().any(|c| c == service)
    }

    /// Whether `general_settings.alerting` lists `name`.
    pub(crate) fn alerts_to(&self, name: &str) -> bool {
        self.alerting
            .as_ref()
            .is_some_and(|a| a.iter().any(|x| x == name))
    }

    /// LiteLLM's `/active/callbacks` (and `/settings`) answer, with the configured names that
    /// this gateway does not act on listed under `not_acted_on`.
    pub(crate) fn active_callbacks(&self) -> Value {
        let all = self.all();
        let mut not_acted: Vec<String> = Vec::new();
        for c in all
            .iter()
            .filter(|c| !BUILT_CALLBACKS.contains(&c.as_str()))
        {
            if !not_acted.contains(c) {
                not_acted.push(c.clone());
            }
        }
        let alerting = match &self.alerting {
            None => "None".to_string(),
            Some(a) => py_list(a),
        };
        let num_alerting = self.alerting.as_ref().map_or(0, Vec::len);
        json!({
            "alerting": alerting,
            "litellm.callbacks": self.callbacks,
            "litellm.input_callback": [],
            "litellm.failure_callback": self.failure,
            "litellm.success_callback": self.success,
            "litellm._async_success_callback": [],
            "litellm._async_failure_callback": [],
            "litellm._async_input_callback": [],
            "num_callbacks": all.len(),
            "all_litellm_callbacks": all,
            "num_alerting": num_alerting,
            "litellm.request_timeout": py_number(self.request_timeout),
            "not_acted_on": not_acted,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn diag(yaml: &str) -> Diagnostics {
        let cfg = ProxyConfig::from_yaml(yaml, "test.yaml", &|_| None).unwrap();
        Diagnostics::from_config(&cfg)
    }

    #[test]
    fn callbacks_and_alerting_are_reported_as_litellm_prints_them() {
        let d = diag(
            "model_list: []\nlitellm_settings:\n  callbacks: [otel]\n  success_callback: [langfuse]\n  request_timeout: 600\ngeneral_settings:\n  alerting: [slack, webhook]\n",
        );
        let v = d.active_callbacks();
        assert_eq!(v["alerting"], "['slack', 'webhook']");
        assert_eq!(v["all_litellm_callbacks"], json!(["otel", "langfuse"]));
        assert_eq!(v["num_callbacks"], 2);
        assert_eq!(v["num_alerting"], 2);
        assert_eq!(v["litellm.request_timeout"], json!(600));
        assert_eq!(v["not_acted_on"], json!(["langfuse"]));
        assert_eq!(d.success_callbacks(), ["langfuse", "otel"]);
        assert!(d.alerts_to("slack") && !d.alerts_to("email"));
        let none = diag("model_list: []\n").active_callbacks();
        assert_eq!(none["alerting"], "None");
        assert_eq!(none["litellm.request_timeout"], json!(6000));
    }

    #[test]
    fn the_drain_endpoint_is_off_unless_enabled_and_takes_its_token() {
        assert_eq!(diag("model_list: []\n").drain, None);
        let d = diag(
            "model_list: []\ngeneral_settings:\n  enable_drain_endpoint: true\n  drain_endpoint_token: s3cret\n  allow_public_health_readiness_details: true\n",
        );
        assert_eq!(d.drain, Some(Some("s3cret".to_string())));
        assert!(d.public_readiness_details);
    }
}
