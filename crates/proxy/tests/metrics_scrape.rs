#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `/metrics` scraped after real calls through the gateway: LiteLLM's metric names, counts,
//! tokens, spend and latency histograms by model group and key alias, and the endpoint's auth.

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{KEY, chat_body, client, config, start_cfg, two_models};
use futures_util::future::BoxFuture;
use idlehands_proxy::metrics::Fallback;
use idlehands_proxy::{KeyResolver, Principal, ProxyError, VirtualKey};
use idlehands_testkit::{FakeOpenAi, Reply};
use serde::Deserialize;

/// One virtual key, `sk-team-a-key`, alias `team-a`, with a $1 budget of which $0.25 is spent.
struct OneKey;

impl KeyResolver for OneKey {
    fn resolve<'a>(
        &'a self,
        key: &'a str,
        hash: &'a str,
    ) -> BoxFuture<'a, Result<Principal, ProxyError>> {
        Box::pin(async move {
            if key == "sk-team-a-key" {
                Ok(Principal::VirtualKey(Arc::new(VirtualKey {
                    token_hash: hash.to_string(),
                    key_alias: Some("team-a".to_string()),
                    max_budget_nanos: Some(1_000_000_000),
                    spend_nanos: 250_000_000,
                    ..VirtualKey::default()
                })))
            } else {
                Err(idlehands_proxy::auth::invalid_key(key, hash))
            }
        })
    }
}

/// One metric family as the Prometheus Python client's OpenMetrics parser read it.
#[derive(Debug, Deserialize)]
struct Family {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    samples: Vec<Sample>,
}

#[derive(Debug, Deserialize)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    /// Python's `repr` of the float (`inf` for +Inf, which JSON cannot carry).
    value: String,
}

impl Sample {
    fn value(&self) -> f64 {
        self.value.parse().expect("a float")
    }
}

/// The scrape parsed by a real exposition parser (tests/python/metrics_parse.py), which
/// fails on anything malformed.
fn parse(text: &str) -> Vec<Family> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/metrics_parse.py");
    let mut child = std::process::Command::new("python3")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 must be installed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the OpenMetrics parser rejected the scrape:\n{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The type of family `name`, if the scrape has it.
fn kind<'a>(families: &'a [Family], name: &str) -> Option<&'a str> {
    families
        .iter()
        .find(|f| f.name == name)
        .map(|f| f.kind.as_str())
}

/// The samples named `name` whose labels include every `k="v"` in `want`.
fn samples<'a>(families: &'a [Family], name: &str, want: &[(&str, &str)]) -> Vec<&'a Sample> {
    families
        .iter()
        .flat_map(|f| &f.samples)
        .filter(|s| {
            s.name == name
                && want
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

/// Those samples' values, summed.
fn sum(families: &[Family], name: &str, want: &[(&str, &str)]) -> f64 {
    samples(families, name, want)
        .iter()
        .map(|s| s.value())
        .sum()
}

async fn scrape(base: &str, key: Option<&str>) -> reqwest::Response {
    let mut r = client().get(format!("{base}/metrics"));
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    r.send().await.unwrap()
}

/// LiteLLM's latency buckets (litellm/types/integrations/prometheus.py, 1.108.7).
const LITELLM_LATENCY_BUCKETS: [&str; 18] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.0", "5.0", "10.0", "30.0",
    "60.0", "120.0", "300.0", "420.0", "600.0", "+Inf",
];

async fn chat(gw: &common::Running, path: &str, key: &str, body: &serde_json::Value) -> u16 {
    let r = client()
        .post(gw.url(path))
        .bearer_auth(key)
        .header("user-agent", "tester \"quoted\" \\ agent")
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    r.text().await.unwrap();
    status
}

#[tokio::test]
async fn scrape_after_real_calls_has_litellm_names_labels_and_buckets() {
    let up = FakeOpenAi::start().await;
    up.push(Reply::text("hello there").with_usage(1000, 500));
    up.push(Reply::text("streamed answer").with_usage(10, 20));
    // A 400 is not retried, so it stays one failed call.
    up.push(Reply::error(400, "bad request upstream"));
    let gw = start_cfg(config(&two_models(&up.base_url()), &[]), |b| {
        b.key_resolver(Arc::new(OneKey))
    })
    .await;

    let mut body = chat_body("gpt-4o", false);
    // Not a label unless enable_end_user_cost_tracking_prometheus_only is on, as LiteLLM.
    body["user"] = serde_json::json!("end-user-1");
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("sk-team-a-key")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cost: f64 = r.headers()["x-litellm-response-cost"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    r.text().await.unwrap();
    let stream = chat_body("gpt-4o", true);
    assert_eq!(
        chat(&gw, "/v1/chat/completions", "sk-team-a-key", &stream).await,
        200
    );
    let plain = chat_body("gpt-4o", false);
    assert_eq!(chat(&gw, "/v1/chat/completions", KEY, &plain).await, 400);
    for _ in 0..2 {
        assert_eq!(
            chat(&gw, "/chat/completions", KEY, &chat_body("mocky", false)).await,
            200
        );
    }
    gw.records(5).await;

    let r = scrape(&gw.base, Some(KEY)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = r.text().await.unwrap();
    let s = parse(&text);
    // The families LiteLLM's Prometheus e2e tests and Grafana dashboard read, with its types.
    for (name, want) in [
        ("litellm_proxy_total_requests_metric", "counter"),
        ("litellm_proxy_failed_requests_metric", "counter"),
        ("litellm_requests_metric", "counter"),
        ("litellm_request_total_latency_metric", "histogram"),
        ("litellm_llm_api_latency_metric", "histogram"),
        ("litellm_llm_api_time_to_first_token_metric", "histogram"),
        ("litellm_overhead_latency_metric", "histogram"),
        ("litellm_deployment_latency_per_output_token", "histogram"),
        ("litellm_total_tokens_metric", "counter"),
        ("litellm_input_tokens_metric", "counter"),
        ("litellm_output_tokens_metric", "counter"),
        ("litellm_spend_metric", "counter"),
        ("litellm_remaining_api_key_budget_metric", "gauge"),
        ("litellm_api_key_max_budget_metric", "gauge"),
        ("litellm_deployment_successful_fallbacks", "counter"),
        ("litellm_deployment_failed_fallbacks", "counter"),
        ("litellm_deployment_state", "gauge"),
        ("litellm_deployment_success_responses", "counter"),
        ("litellm_deployment_failure_responses", "counter"),
        ("litellm_deployment_total_requests", "counter"),
    ] {
        assert_eq!(kind(&s, name), Some(want), "{name}:\n{text}");
    }
    // Counters' samples carry `_total`, as LiteLLM's series do.
    let team = ("api_key_alias", "team-a");
    let gpt = ("requested_model", "gpt-4o");
    let total = "litellm_proxy_total_requests_metric_total";
    assert_eq!(sum(&s, total, &[gpt, team]), 2.0);
    assert_eq!(sum(&s, total, &[gpt, ("status_code", "200")]), 2.0);
    assert_eq!(sum(&s, total, &[gpt, ("status_code", "400")]), 1.0);
    // The route is the path the client called; unset labels read "None", as LiteLLM prints them.
    assert_eq!(
        sum(
            &s,
            total,
            &[
                ("requested_model", "mocky"),
                ("route", "/chat/completions"),
                ("api_key_alias", "None"),
                ("team", "None"),
                ("team_alias", "None"),
                ("user", "None"),
                ("end_user", "None"),
                ("api_provider", "openai"),
            ]
        ),
        2.0
    );
    assert_eq!(
        sum(&s, total, &[gpt, team, ("route", "/v1/chat/completions")]),
        2.0
    );
    assert!(samples(&s, total, &[("end_user", "end-user-1")]).is_empty());
    // A user agent with quotes and a backslash is escaped on the wire and reads back intact.
    assert_eq!(
        sum(&s, total, &[("user_agent", "tester \"quoted\" \\ agent")]),
        4.0
    );
    let failed = "litellm_proxy_failed_requests_metric_total";
    assert_eq!(
        sum(
            &s,
            failed,
            &[
                gpt,
                ("exception_status", "400"),
                ("exception_class", "Openai.BadRequestError"),
                ("route", "/v1/chat/completions"),
            ]
        ),
        1.0
    );
    assert_eq!(sum(&s, failed, &[team]), 0.0);
    assert_eq!(sum(&s, "litellm_requests_metric_total", &[gpt]), 2.0);
    assert_eq!(
        sum(&s, "litellm_input_tokens_metric_total", &[gpt, team]),
        1010.0
    );
    assert_eq!(
        sum(&s, "litellm_output_tokens_metric_total", &[gpt, team]),
        520.0
    );
    assert_eq!(
        sum(&s, "litellm_total_tokens_metric_total", &[gpt, team]),
        1530.0
    );
    // As LiteLLM, the latency histograms count answered calls only.
    assert_eq!(
        sum(
            &s,
            "litellm_request_total_latency_metric_count",
            &[gpt, ("model", "openai/gpt-4o")]
        ),
        2.0
    );
    assert_eq!(sum(&s, "litellm_llm_api_latency_metric_count", &[gpt]), 2.0);
    // LiteLLM labels the overhead by model group, not requested model.
    assert_eq!(
        sum(
            &s,
            "litellm_overhead_latency_metric_count",
            &[("model_group", "gpt-4o")]
        ),
        2.0
    );
    // Time to first token: the stream only.
    assert_eq!(
        sum(
            &s,
            "litellm_llm_api_time_to_first_token_metric_count",
            &[gpt]
        ),
        1.0
    );
    assert_eq!(
        sum(
            &s,
            "litellm_deployment_latency_per_output_token_count",
            &[("model_group", "gpt-4o")]
        ),
        2.0
    );
    // LiteLLM's buckets, in order, ending at +Inf with every observation.
    let buckets = samples(
        &s,
        "litellm_request_total_latency_metric_bucket",
        &[gpt, team],
    );
    let les: Vec<&str> = buckets.iter().map(|b| b.labels["le"].as_str()).collect();
    assert_eq!(les, LITELLM_LATENCY_BUCKETS);
    assert_eq!(buckets.last().map(|b| b.value()), Some(2.0));
    // Spend: the first call's cost header plus the stream's.
    let spend = sum(&s, "litellm_spend_metric_total", &[gpt, team]);
    assert!(spend >= cost && cost > 0.0, "spend {spend} cost {cost}");
    let mock_spend = sum(
        &s,
        "litellm_spend_metric_total",
        &[("requested_model", "mocky")],
    );
    assert!(mock_spend > 0.0);
    // The key's budget: $1 max, $1 - $0.25 already spent - this call left.
    let left = sum(&s, "litellm_remaining_api_key_budget_metric", &[team]);
    assert!(left < 0.75 && left > 0.74, "{left}");
    assert_eq!(sum(&s, "litellm_api_key_max_budget_metric", &[team]), 1.0);
    // The master key has no budget: +Inf, with the empty alias LiteLLM gives these gauges.
    let master = samples(
        &s,
        "litellm_remaining_api_key_budget_metric",
        &[("api_key_alias", "")],
    );
    assert_eq!(master.len(), 1, "{text}");
    assert!(master[0].value().is_infinite() && master[0].value() > 0.0);
    gw.shutdown().await.unwrap();
}

/// A gateway served on loopback, with its metrics at hand (to move their clock).
async fn start_with_metrics(
    cfg: idlehands_proxy::ProxyConfig,
) -> (common::Running, Arc<idlehands_proxy::metrics::Metrics>) {
    let running = common::start_cfg(cfg, |b| b).await;
    let metrics = running.gateway.metrics();
    (running, metrics)
}

#[tokio::test]
async fn idle_per_key_series_are_evicted_and_the_rest_stay() {
    let (gw, metrics) = start_with_metrics(config(&two_models("http://127.0.0.1:9"), &[])).await;
    assert_eq!(
        chat(&gw, "/chat/completions", KEY, &chat_body("mocky", false)).await,
        200
    );
    gw.records(1).await;
    let total = "litellm_proxy_total_requests_metric_total";
    let before = parse(&scrape(&gw.base, Some(KEY)).await.text().await.unwrap());
    assert_eq!(sum(&before, total, &[("requested_model", "mocky")]), 1.0);
    // Not idle yet: nothing goes.
    assert_eq!(metrics.evict_idle_at(Instant::now()), 0);
    // The metrics' clock moved past the idle TTL instead of waiting it out.
    let later =
        Instant::now() + idlehands_proxy::metrics::IDLE_SERIES_TTL + Duration::from_secs(120);
    let gone = metrics.evict_idle_at(later);
    assert!(gone >= 10, "{gone}");
    let after = parse(&scrape(&gw.base, Some(KEY)).await.text().await.unwrap());
    assert!(samples(&after, total, &[]).is_empty());
    assert!(samples(&after, "litellm_spend_metric_total", &[]).is_empty());
    assert!(samples(&after, "litellm_remaining_api_key_budget_metric", &[]).is_empty());
    // The families stay, and so do the router's deployment series, which carry no key.
    assert_eq!(
        kind(&after, "litellm_proxy_total_requests_metric"),
        Some("counter")
    );
    assert_eq!(samples(&after, "litellm_deployment_state", &[]).len(), 2);
    // A new call starts the key's series again, from zero.
    assert_eq!(
        chat(&gw, "/chat/completions", KEY, &chat_body("mocky", false)).await,
        200
    );
    gw.records(2).await;
    let again = parse(&scrape(&gw.base, Some(KEY)).await.text().await.unwrap());
    assert_eq!(sum(&again, total, &[("requested_model", "mocky")]), 1.0);
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn end_user_is_a_label_only_when_litellm_setting_says_so() {
    let yaml = format!(
        "{}litellm_settings:\n  enable_end_user_cost_tracking_prometheus_only: true\n",
        two_models("http://127.0.0.1:9")
    );
    let gw = start_cfg(config(&yaml, &[]), |b| b).await;
    let mut body = chat_body("mocky", false);
    body["user"] = serde_json::json!("end-user-7");
    assert_eq!(chat(&gw, "/v1/chat/completions", KEY, &body).await, 200);
    gw.records(1).await;
    let s = parse(&scrape(&gw.base, Some(KEY)).await.text().await.unwrap());
    assert_eq!(
        sum(
            &s,
            "litellm_proxy_total_requests_metric_total",
            &[("end_user", "end-user-7")]
        ),
        1.0
    );
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn metrics_need_the_master_key_unless_configured_off() {
    let gw = start_cfg(config(&two_models("http://127.0.0.1:9"), &[]), |b| {
        b.key_resolver(Arc::new(OneKey))
    })
    .await;
    assert_eq!(scrape(&gw.base, None).await.status(), 401);
    assert_eq!(
        scrape(&gw.base, Some("sk-wrong-key-123")).await.status(),
        401
    );
    assert_eq!(scrape(&gw.base, Some("sk-team-a-key")).await.status(), 401);
    assert_eq!(scrape(&gw.base, Some(KEY)).await.status(), 200);
    gw.shutdown().await.unwrap();

    let yaml = format!(
        "{}litellm_settings:\n  require_auth_for_metrics_endpoint: false\n",
        two_models("http://127.0.0.1:9")
    );
    let gw = start_cfg(config(&yaml, &[]), |b| b).await;
    let r = scrape(&gw.base, None).await;
    assert_eq!(r.status(), 200);
    let s = parse(&r.text().await.unwrap());
    assert_eq!(kind(&s, "litellm_spend_metric"), Some("counter"));
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn fallbacks_and_deployment_state_reach_the_scrape() {
    let cfg = config(&two_models("http://127.0.0.1:9"), &[]);
    let gw = idlehands_proxy::Gateway::builder(cfg).build().unwrap();
    let m = gw.metrics();
    let p = Principal::Master {
        key_hash: "h".into(),
    };
    let ok = Fallback {
        requested_model: "gpt-4o",
        fallback_model: "mocky",
        model_id: "dep-2",
        succeeded: true,
        cause: Some((429, "openai")),
    };
    m.record_fallback(&ok, &p);
    m.record_fallback(&ok, &p);
    m.record_fallback(
        &Fallback {
            fallback_model: "other",
            succeeded: false,
            cause: Some((500, "azure")),
            ..ok
        },
        &p,
    );
    m.set_deployment_source(Arc::new(|| {
        vec![idlehands_proxy::metrics::DeploymentGauge {
            litellm_model_name: "openai/gpt-4o".into(),
            model_id: "dep-1".into(),
            model_group: "gpt-4o".into(),
            state: 2,
            cooled_down_total: 4,
            success_responses_total: 5,
            failure_responses_total: 2,
            ..Default::default()
        }]
    }));
    let s = parse(&m.render());
    assert_eq!(
        sum(
            &s,
            "litellm_deployment_successful_fallbacks_total",
            &[
                ("requested_model", "gpt-4o"),
                ("fallback_model", "mocky"),
                ("exception_status", "429"),
                ("exception_class", "Openai.RateLimitError"),
                ("model_id", "dep-2"),
                ("hashed_api_key", "h"),
                ("api_key_alias", "None"),
            ]
        ),
        2.0
    );
    assert_eq!(
        sum(
            &s,
            "litellm_deployment_failed_fallbacks_total",
            &[
                ("fallback_model", "other"),
                ("exception_class", "Azure.InternalServerError")
            ]
        ),
        1.0
    );
    assert_eq!(
        sum(&s, "litellm_deployment_state", &[("model_id", "dep-1")]),
        2.0
    );
    assert_eq!(
        sum(
            &s,
            "litellm_deployment_cooled_down_total",
            &[("model_id", "dep-1")]
        ),
        4.0
    );
    let dep = [("model_group", "gpt-4o"), ("model_id", "dep-1")];
    assert_eq!(
        sum(&s, "litellm_deployment_success_responses_total", &dep),
        5.0
    );
    assert_eq!(
        sum(&s, "litellm_deployment_failure_responses_total", &dep),
        2.0
    );
    assert_eq!(
        sum(&s, "litellm_deployment_total_requests_total", &dep),
        7.0
    );
}

#[tokio::test]
async fn fallbacks_and_cooldowns_from_real_calls_reach_the_scrape() {
    let up = FakeOpenAi::start().await;
    for _ in 0..4 {
        up.push(Reply::rate_limited(30));
    }
    let yaml = format!(
        "{}router_settings:\n  num_retries: 0\n  allowed_fails: 0\n  cooldown_time: 60\n  fallbacks: [{{\"gpt-4o\": [\"mocky\"]}}]\n",
        two_models(&up.base_url())
    );
    let gw = start_cfg(config(&yaml, &[]), |b| b).await;
    // The test aid makes gpt-4o fail without an upstream; the fallback answers.
    let mut body = chat_body("gpt-4o", false);
    body["mock_testing_fallbacks"] = serde_json::json!(true);
    assert_eq!(chat(&gw, "/v1/chat/completions", KEY, &body).await, 200);
    // A 429 from the real upstream: falls back too, and cools the deployment down.
    assert_eq!(
        chat(
            &gw,
            "/v1/chat/completions",
            KEY,
            &chat_body("gpt-4o", false)
        )
        .await,
        200
    );
    gw.records(2).await;

    let s = parse(&scrape(&gw.base, Some(KEY)).await.text().await.unwrap());
    let pair = [("requested_model", "gpt-4o"), ("fallback_model", "mocky")];
    assert_eq!(
        sum(&s, "litellm_deployment_successful_fallbacks_total", &pair),
        2.0
    );
    // The upstream's 429 is what the second fallback is counted under.
    assert_eq!(
        sum(
            &s,
            "litellm_deployment_successful_fallbacks_total",
            &[
                pair[0],
                pair[1],
                ("exception_class", "Openai.RateLimitError")
            ]
        ),
        1.0
    );
    assert_eq!(
        sum(&s, "litellm_deployment_failed_fallbacks_total", &pair),
        0.0
    );
    let gpt = ("litellm_model_name", "openai/gpt-4o");
    let mock = ("litellm_model_name", "openai/mock-model");
    assert_eq!(sum(&s, "litellm_deployment_state", &[mock]), 0.0);
    assert!(sum(&s, "litellm_deployment_state", &[gpt]) >= 1.0, "{s:?}");
    assert!(
        sum(&s, "litellm_deployment_cooled_down_total", &[gpt]) >= 1.0,
        "{s:?}"
    );
    assert!(sum(&s, "litellm_deployment_success_responses_total", &[mock]) >= 2.0);
    gw.shutdown().await.unwrap();
}
