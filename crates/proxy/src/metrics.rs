//! Prometheus metrics with LiteLLM's names, served as text at `/metrics`.
//!
//! Hand-rolled on purpose: a finished call touches a few atomics in series found through a
//! sharded read-mostly map, so recording never takes a lock shared by every request, and
//! rendering formats what is there. Money is counted in integer nano-dollars and printed as
//! USD with nine decimals, so the exposed spend is exact.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hash};

// Series are looked up several times per request by labels that include a 64-character
// key hash: SipHash showed up in profiles, foldhash does not.
use foldhash::fast::RandomState;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::RwLock;

use crate::auth::Principal;
use crate::hooks::{CallRecord, CallStatus};

/// Upper bounds (seconds) of LiteLLM's latency histogram buckets; `+Inf` follows.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.00625, 0.0125, 0.025, 0.05, 0.1, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0,
    5.5, 6.0, 6.5, 7.0, 7.5, 8.0, 8.5, 9.0, 9.5, 10.0, 15.0, 20.0, 25.0, 30.0, 60.0, 120.0, 180.0,
    240.0, 300.0,
];

const SHARDS: usize = 16;

/// Content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

struct Histogram {
    /// Per bucket, not cumulative; the last one is `+Inf`.
    counts: Box<[AtomicU64]>,
    sum_micros: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: (0..=LATENCY_BUCKETS.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            sum_micros: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Ordering::Relaxed);
            let le = LATENCY_BUCKETS
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| format!("{b:?}"));
            let sep = if labels.is_empty() { "" } else { "," };
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        let sum = self.sum_micros.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_sum{{{labels}}} {}.{:06}",
            sum / 1_000_000,
            sum % 1_000_000
        );
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// A map from label set to series, split in shards so that recording only takes a shard's
/// read lock once the series exists.
struct Family<K, V> {
    hasher: RandomState,
    shards: Box<[Shard<K, V>]>,
}

/// Series by their labels' encoding (see [`Family::get`]), with the labels for rendering.
type Shard<K, V> = RwLock<HashMap<Box<[u8]>, (K, Arc<V>), RandomState>>;

/// A metric family's name, help text and how to find its value in a series.
type Pick<S, T> = (&'static str, &'static str, fn(&S) -> &T);

impl<K: Hash + Eq + Clone + Ord, V: Default> Family<K, V> {
    fn new() -> Self {
        Self {
            hasher: RandomState::default(),
            shards: (0..SHARDS)
                .map(|_| RwLock::new(HashMap::with_hasher(RandomState::default())))
                .collect(),
        }
    }

    /// The series for `labels` (the key's fields in order), made by `key` the first time.
    /// Found through an encoding of the labels written to a reused buffer, so recording a call
    /// allocates nothing once its series exist.
    fn get(&self, labels: &[&str], key: impl FnOnce() -> K) -> Option<Arc<V>> {
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BUF.with(|buf| {
            let mut buf = buf.try_borrow_mut().ok()?;
            buf.clear();
            for l in labels {
                // Length-prefixed, so no label text can make two label sets encode alike.
                buf.extend_from_slice(&(l.len() as u64).to_le_bytes());
                buf.extend_from_slice(l.as_bytes());
            }
            let i = (self.hasher.hash_one(buf.as_slice()) as usize) % SHARDS;
            let shard = self.shards.get(i)?;
            if let Some((_, v)) = shard.read().get(buf.as_slice()) {
                return Some(v.clone());
            }
            let mut w = shard.write();
            let entry = w
                .entry(Box::from(buf.as_slice()))
                .or_insert_with(|| (key(), Arc::default()));
            Some(entry.1.clone())
        })
    }

    /// Every series, sorted by labels so scrapes are stable.
    fn sorted(&self) -> Vec<(K, Arc<V>)> {
        let mut all: Vec<(K, Arc<V>)> = self
            .shards
            .iter()
            .flat_map(|s| {
                s.read()
                    .values()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

#[derive(Default)]
struct Counter(AtomicU64);

impl Counter {
    /// Saturates: a wrapped counter would read as a reset to Prometheus and lose the series'
    /// history, and usage near the ceilings adds up to `u64::MAX` in a few thousand calls.
    fn add(&self, n: u64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_add(n))
            });
    }
    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
struct Gauge(AtomicU64);

/// Who called which model: the labels shared by the per-call series.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct CallKey {
    requested_model: String,
    model: String,
    api_provider: String,
    hashed_api_key: String,
    api_key_alias: String,
}

#[derive(Default)]
struct CallSeries {
    total_latency: Histogram,
    api_latency: Histogram,
    overhead_latency: Histogram,
    input_tokens: Counter,
    output_tokens: Counter,
    total_tokens: Counter,
    spend_nanos: Counter,
}

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct StatusKey {
    requested_model: String,
    hashed_api_key: String,
    api_key_alias: String,
    status_code: u16,
}

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct KeyKey {
    hashed_api_key: String,
    api_key_alias: String,
}

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct FallbackKey {
    requested_model: String,
    fallback_model: String,
    hashed_api_key: String,
    api_key_alias: String,
}

/// One deployment's state at scrape time, for `litellm_deployment_*` (see
/// [`Metrics::set_deployment_source`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeploymentGauge {
    /// The deployment's `litellm_params.model`.
    pub litellm_model_name: String,
    pub model_id: String,
    pub model_group: String,
    pub api_base: String,
    pub api_provider: String,
    /// 0 healthy, 1 partial outage, 2 complete outage (cooling down), as LiteLLM.
    pub state: u8,
    /// Times the deployment was put into cooldown since start.
    pub cooled_down_total: u64,
    pub success_responses_total: u64,
    pub failure_responses_total: u64,
}

/// Reads the router's per-deployment state; called once per scrape.
pub type DeploymentSource = Arc<dyn Fn() -> Vec<DeploymentGauge> + Send + Sync>;

/// The gateway's metrics. One per gateway; reach it with `Gateway::metrics`.
pub struct Metrics {
    calls: Family<CallKey, CallSeries>,
    requests: Family<StatusKey, Counter>,
    failures: Family<StatusKey, Counter>,
    remaining_budget: Family<KeyKey, Gauge>,
    fallbacks_ok: Family<FallbackKey, Counter>,
    fallbacks_failed: Family<FallbackKey, Counter>,
    deployments: RwLock<Option<DeploymentSource>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// A status code as text without allocating: `[u8; 5]` holds any u16.
struct Digits {
    buf: [u8; 5],
    start: usize,
}

impl Digits {
    fn as_str(&self) -> &str {
        self.buf
            .get(self.start..)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }
}

fn itoa_u16(mut n: u16) -> Digits {
    let mut d = Digits {
        buf: [0; 5],
        start: 5,
    };
    loop {
        d.start -= 1;
        if let Some(b) = d.buf.get_mut(d.start) {
            *b = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || d.start == 0 {
            return d;
        }
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self {
            calls: Family::new(),
            requests: Family::new(),
            failures: Family::new(),
            remaining_budget: Family::new(),
            fallbacks_ok: Family::new(),
            fallbacks_failed: Family::new(),
            deployments: RwLock::new(None),
        }
    }

    /// Count a finished call (the gateway calls this once per [`CallRecord`]).
    pub fn observe(&self, record: &CallRecord, principal: &Principal) {
        let hashed = record.api_key_hash.as_deref().unwrap_or("");
        let key_alias = record.key_alias.as_deref().unwrap_or("");
        let group = record.model_group.as_str();
        let code = itoa_u16(record.http_status);
        let code = code.as_str();
        let status_labels = [group, hashed, key_alias, code];
        let status = || StatusKey {
            requested_model: group.to_string(),
            hashed_api_key: hashed.to_string(),
            api_key_alias: key_alias.to_string(),
            status_code: record.http_status,
        };
        if record.status == CallStatus::Failure
            && let Some(c) = self.failures.get(&status_labels, status)
        {
            c.add(1);
        }
        if let Some(c) = self.requests.get(&status_labels, status) {
            c.add(1);
        }
        let call_labels = [
            group,
            record.model.as_str(),
            record.custom_llm_provider.as_str(),
            hashed,
            key_alias,
        ];
        let key = || CallKey {
            requested_model: group.to_string(),
            model: record.model.clone(),
            api_provider: record.custom_llm_provider.clone(),
            hashed_api_key: hashed.to_string(),
            api_key_alias: key_alias.to_string(),
        };
        if let Some(s) = self.calls.get(&call_labels, key) {
            let total = record.duration();
            let overhead = record.overhead.min(total);
            s.total_latency.observe(total);
            s.overhead_latency.observe(overhead);
            if record.status == CallStatus::Success {
                s.api_latency.observe(total - overhead);
            }
            s.input_tokens.add(record.prompt_tokens);
            s.output_tokens.add(record.completion_tokens);
            s.total_tokens.add(record.total_tokens);
            s.spend_nanos.add(record.cost_nanos);
        }
        if let Principal::VirtualKey(k) = principal
            && let Some(max) = k.max_budget_nanos
        {
            // The key's spend as resolved at auth plus this call: what LiteLLM reports too,
            // without a database read per request.
            let left = max.saturating_sub(k.spend_nanos.saturating_add(record.cost_nanos));
            let key = || KeyKey {
                hashed_api_key: hashed.to_string(),
                api_key_alias: key_alias.to_string(),
            };
            if let Some(g) = self.remaining_budget.get(&[hashed, key_alias], key) {
                g.0.store(left, Ordering::Relaxed);
            }
        }
    }

    /// Count a fallback from `requested_model` to `fallback_model` (for the routing loop).
    pub fn record_fallback(
        &self,
        requested_model: &str,
        fallback_model: &str,
        principal: &Principal,
        succeeded: bool,
    ) {
        let hashed = principal.key_hash().unwrap_or("");
        let key_alias = principal.key_alias().unwrap_or("");
        let key = || FallbackKey {
            requested_model: requested_model.to_string(),
            fallback_model: fallback_model.to_string(),
            hashed_api_key: hashed.to_string(),
            api_key_alias: key_alias.to_string(),
        };
        let family = if succeeded {
            &self.fallbacks_ok
        } else {
            &self.fallbacks_failed
        };
        if let Some(c) = family.get(&[requested_model, fallback_model, hashed, key_alias], key) {
            c.add(1);
        }
    }

    /// Where `litellm_deployment_state` and `litellm_deployment_cooled_down` come from (the
    /// router's snapshot). Without one, those metrics are absent.
    pub fn set_deployment_source(&self, source: DeploymentSource) {
        *self.deployments.write() = Some(source);
    }

    /// The text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let requests = self.requests.sorted();
        let failures = self.failures.sorted();
        let calls = self.calls.sorted();

        header(
            &mut out,
            "litellm_proxy_total_requests_metric",
            "counter",
            "Total requests made to the proxy server",
        );
        for (k, c) in &requests {
            let labels = status_labels(k, "status_code");
            let _ = writeln!(
                out,
                "litellm_proxy_total_requests_metric{{{labels}}} {}",
                c.get()
            );
        }
        header(
            &mut out,
            "litellm_proxy_failed_requests_metric",
            "counter",
            "Requests that failed, by exception status",
        );
        for (k, c) in &failures {
            let labels = status_labels(k, "exception_status");
            let _ = writeln!(
                out,
                "litellm_proxy_failed_requests_metric{{{labels}}} {}",
                c.get()
            );
        }

        let histograms: [Pick<CallSeries, Histogram>; 3] = [
            (
                "litellm_request_total_latency_metric",
                "Total latency (seconds) of a request to the proxy",
                |s| &s.total_latency,
            ),
            (
                "litellm_llm_api_latency_metric",
                "Latency (seconds) of the LLM API call, successful calls",
                |s| &s.api_latency,
            ),
            (
                "litellm_overhead_latency_metric",
                "Latency (seconds) the proxy added to a request",
                |s| &s.overhead_latency,
            ),
        ];
        for (name, help, pick) in histograms {
            header(&mut out, name, "histogram", help);
            for (k, s) in &calls {
                pick(s).render(&mut out, name, &call_labels(k));
            }
        }

        let counters: [Pick<CallSeries, Counter>; 3] = [
            (
                "litellm_total_tokens_metric",
                "Input plus output tokens",
                |s| &s.total_tokens,
            ),
            (
                "litellm_input_tokens_metric",
                "Input (prompt) tokens",
                |s| &s.input_tokens,
            ),
            (
                "litellm_output_tokens_metric",
                "Output (completion) tokens",
                |s| &s.output_tokens,
            ),
        ];
        for (name, help, pick) in counters {
            header(&mut out, name, "counter", help);
            for (k, s) in &calls {
                let _ = writeln!(out, "{name}{{{}}} {}", call_labels(k), pick(s).get());
            }
        }
        header(
            &mut out,
            "litellm_spend_metric",
            "counter",
            "Spend on LLM requests (USD)",
        );
        for (k, s) in &calls {
            let _ = writeln!(
                out,
                "litellm_spend_metric{{{}}} {}",
                call_labels(k),
                usd(s.spend_nanos.get())
            );
        }

        header(
            &mut out,
            "litellm_remaining_api_key_budget_metric",
            "gauge",
            "Remaining budget of a key (USD)",
        );
        for (k, g) in self.remaining_budget.sorted() {
            let _ = writeln!(
                out,
                "litellm_remaining_api_key_budget_metric{{hashed_api_key=\"{}\",api_key_alias=\"{}\"}} {}",
                esc(&k.hashed_api_key),
                esc(&k.api_key_alias),
                usd(g.0.load(Ordering::Relaxed))
            );
        }

        for (name, family, help) in [
            (
                "litellm_deployment_successful_fallbacks",
                &self.fallbacks_ok,
                "Successful fallbacks from one model group to another",
            ),
            (
                "litellm_deployment_failed_fallbacks",
                &self.fallbacks_failed,
                "Failed fallbacks from one model group to another",
            ),
        ] {
            header(&mut out, name, "counter", help);
            for (k, c) in family.sorted() {
                let _ = writeln!(
                    out,
                    "{name}{{requested_model=\"{}\",fallback_model=\"{}\",hashed_api_key=\"{}\",api_key_alias=\"{}\"}} {}",
                    esc(&k.requested_model),
                    esc(&k.fallback_model),
                    esc(&k.hashed_api_key),
                    esc(&k.api_key_alias),
                    c.get()
                );
            }
        }

        let source = self.deployments.read().clone();
        if let Some(source) = source {
            let mut deps = source();
            deps.sort_by(|a, b| (&a.model_group, &a.model_id).cmp(&(&b.model_group, &b.model_id)));
            #[allow(clippy::type_complexity)]
            let gauges: [(&str, &str, &str, fn(&DeploymentGauge) -> u64); 4] = [
                (
                    "litellm_deployment_state",
                    "gauge",
                    "0 healthy, 1 partial outage, 2 complete outage",
                    |d| u64::from(d.state),
                ),
                (
                    "litellm_deployment_cooled_down",
                    "counter",
                    "Times a deployment was put into cooldown",
                    |d| d.cooled_down_total,
                ),
                (
                    "litellm_deployment_success_responses",
                    "counter",
                    "Successful responses from a deployment",
                    |d| d.success_responses_total,
                ),
                (
                    "litellm_deployment_failure_responses",
                    "counter",
                    "Failed responses from a deployment",
                    |d| d.failure_responses_total,
                ),
            ];
            for (name, kind, help, pick) in gauges {
                header(&mut out, name, kind, help);
                for d in &deps {
                    let _ = writeln!(
                        out,
                        "{name}{{litellm_model_name=\"{}\",model_id=\"{}\",model_group=\"{}\",api_base=\"{}\",api_provider=\"{}\"}} {}",
                        esc(&d.litellm_model_name),
                        esc(&d.model_id),
                        esc(&d.model_group),
                        esc(&d.api_base),
                        esc(&d.api_provider),
                        pick(d)
                    );
                }
            }
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn status_labels(k: &StatusKey, status_name: &str) -> String {
    format!(
        "requested_model=\"{}\",hashed_api_key=\"{}\",api_key_alias=\"{}\",{status_name}=\"{}\"",
        esc(&k.requested_model),
        esc(&k.hashed_api_key),
        esc(&k.api_key_alias),
        k.status_code
    )
}

fn call_labels(k: &CallKey) -> String {
    format!(
        "requested_model=\"{}\",model_group=\"{}\",model=\"{}\",api_provider=\"{}\",hashed_api_key=\"{}\",api_key_alias=\"{}\"",
        esc(&k.requested_model),
        esc(&k.requested_model),
        esc(&k.model),
        esc(&k.api_provider),
        esc(&k.hashed_api_key),
        esc(&k.api_key_alias)
    )
}

/// A label value with `\`, `"` and newlines escaped as the format requires.
fn esc(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// Integer nano-dollars as a decimal USD number.
fn usd(nanos: u64) -> String {
    format!("{}.{:09}", nanos / 1_000_000_000, nanos % 1_000_000_000)
}

/// The routing crate's per-deployment state, labelled with each deployment's model, base URL
/// and provider; `None` when the model list has no exact deployment.
pub(crate) fn routing_source(router: &crate::router::Router) -> Option<DeploymentSource> {
    let routing = router.routing()?.clone();
    // The snapshot lists deployments in slot order; slots index these labels.
    let mut labels: Vec<Option<(String, String, String)>> = Vec::new();
    for d in router.deployments() {
        if labels.len() <= d.slot {
            labels.resize(d.slot + 1, None);
        }
        labels[d.slot] = Some((
            d.model.clone(),
            d.api_base.clone().unwrap_or_default(),
            d.provider.clone(),
        ));
    }
    Some(Arc::new(move || {
        routing
            .snapshot()
            .into_iter()
            .enumerate()
            .map(|(slot, s)| {
                let (model, api_base, provider) =
                    labels.get(slot).cloned().flatten().unwrap_or_default();
                DeploymentGauge {
                    litellm_model_name: model,
                    model_id: s.id,
                    model_group: s.model_group,
                    api_base,
                    api_provider: provider,
                    state: s.health.metric_value(),
                    cooled_down_total: s.cooldowns_total,
                    success_responses_total: s.successes_total,
                    failure_responses_total: s.failures_total,
                }
            })
            .collect()
    }))
}

/// `GET /metrics`: the master key (or a dashboard session) unless
/// `litellm_settings.require_auth_for_metrics_endpoint: false`.
pub(crate) async fn scrape(
    axum::extract::State(app): axum::extract::State<Arc<crate::gateway::App>>,
    headers: http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if app.metrics_need_auth {
        match crate::http::ui::authenticate_admin(&app, &headers).await {
            Ok(Principal::Master { .. } | Principal::Anonymous) => {}
            Ok(Principal::VirtualKey(_)) => {
                return crate::error::ProxyError::Custom {
                    status: 401,
                    kind: "auth_error".to_string(),
                    message: "/metrics needs the master key".to_string(),
                    param: None,
                    headers: Vec::new(),
                }
                .into_response();
            }
            Err(e) => return e.into_response(),
        }
    }
    (
        [(http::header::CONTENT_TYPE, CONTENT_TYPE)],
        app.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_print_without_allocating() {
        for n in [0u16, 7, 42, 200, 429, 9999, 65535] {
            assert_eq!(itoa_u16(n).as_str(), n.to_string());
        }
    }

    #[test]
    fn label_sets_that_join_alike_are_different_series() {
        let f: Family<KeyKey, Counter> = Family::new();
        let key = |a: &str, b: &str| KeyKey {
            hashed_api_key: a.to_string(),
            api_key_alias: b.to_string(),
        };
        let add = |a: &str, b: &str, n: u64| {
            let series = f.get(&[a, b], || key(a, b));
            assert!(series.is_some());
            if let Some(c) = series {
                c.add(n);
            }
        };
        add("a:1", "", 1);
        add("a", "1:", 5);
        // The same labels again find the same series.
        add("a", "1:", 1);
        let all = f.sorted();
        let counts: Vec<(String, String, u64)> = all
            .iter()
            .map(|(k, c)| (k.hashed_api_key.clone(), k.api_key_alias.clone(), c.get()))
            .collect();
        assert_eq!(
            counts,
            vec![
                ("a".to_string(), "1:".to_string(), 6),
                ("a:1".to_string(), String::new(), 1)
            ]
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_sum_is_exact() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(70));
        h.observe(Duration::from_secs(400));
        let mut out = String::new();
        h.render(&mut out, "x", "a=\"b\"");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.005\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.1\"} 2\n"));
        assert!(out.contains("x_bucket{a=\"b\",le=\"300.0\"} 2\n"));
        assert!(out.contains("x_bucket{a=\"b\",le=\"+Inf\"} 3\n"));
        assert!(out.contains("x_sum{a=\"b\"} 400.073000\n"));
        assert!(out.contains("x_count{a=\"b\"} 3\n"));
    }

    #[test]
    fn label_values_are_escaped_and_usd_is_exact() {
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(usd(1_500_000_001), "1.500000001");
        assert_eq!(usd(0), "0.000000000");
    }

    #[test]
    fn deployment_source_is_rendered_when_set() {
        let m = Metrics::new();
        assert!(!m.render().contains("litellm_deployment_state"));
        m.set_deployment_source(Arc::new(|| {
            vec![DeploymentGauge {
                litellm_model_name: "openai/gpt-4o".into(),
                model_id: "d1".into(),
                model_group: "gpt-4o".into(),
                state: 2,
                cooled_down_total: 3,
                ..Default::default()
            }]
        }));
        let text = m.render();
        assert!(text.contains("litellm_deployment_state{litellm_model_name=\"openai/gpt-4o\",model_id=\"d1\",model_group=\"gpt-4o\",api_base=\"\",api_provider=\"\"} 2"));
        assert!(text.contains("litellm_deployment_cooled_down{") && text.contains("} 3\n"));
    }
}
