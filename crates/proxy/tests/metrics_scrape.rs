#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `/metrics` scraped after real calls through the gateway: LiteLLM's metric names, counts,
//! tokens, spend and latency histograms by model group and key alias, and the endpoint's auth.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{KEY, chat_body, client, config, start_cfg, two_models};
use futures_util::future::BoxFuture;
use idlehands_proxy::{KeyResolver, Principal, ProxyError, VirtualKey};
use idlehands_testkit::{FakeOpenAi, Reply};

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

/// `name{labels}` -> value, for every sample line.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        out.insert(series.to_string(), value.parse::<f64>().expect("number"));
    }
    out
}

/// The samples of `name` whose labels include every `k="v"` in `want`, summed.
fn sum(samples: &BTreeMap<String, f64>, name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(s, _)| {
            s.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{'))
                && want
                    .iter()
                    .all(|(k, v)| s.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, v)| *v)
        .sum()
}

async fn scrape(base: &str, key: Option<&str>) -> reqwest::Response {
    let mut r = client().get(format!("{base}/metrics"));
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    r.send().await.unwrap()
}

#[tokio::test]
async fn scrape_after_real_calls_counts_requests_tokens_spend_and_latency() {
    let up = FakeOpenAi::start().await;
    up.push(Reply::text("hello there").with_usage(1000, 500));
    up.push(Reply::text("streamed answer").with_usage(10, 20));
    // A 400 is not retried, so it stays one failed call.
    up.push(Reply::error(400, "bad request upstream"));
    let gw = start_cfg(config(&two_models(&up.base_url()), &[]), |b| {
        b.key_resolver(Arc::new(OneKey))
    })
    .await;
    let c = client();

    let r = c
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("sk-team-a-key")
        .json(&chat_body("gpt-4o", false))
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
    let r = c
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("sk-team-a-key")
        .json(&chat_body("gpt-4o", true))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap();
    let r = c
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&chat_body("gpt-4o", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    for _ in 0..2 {
        let r = c
            .post(gw.url("/chat/completions"))
            .bearer_auth(KEY)
            .json(&chat_body("mocky", false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap();
    }
    gw.records(5).await;

    let r = scrape(&gw.base, Some(KEY)).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = r.text().await.unwrap();
    for name in [
        "litellm_proxy_total_requests_metric",
        "litellm_proxy_failed_requests_metric",
        "litellm_request_total_latency_metric",
        "litellm_llm_api_latency_metric",
        "litellm_overhead_latency_metric",
        "litellm_total_tokens_metric",
        "litellm_input_tokens_metric",
        "litellm_output_tokens_metric",
        "litellm_spend_metric",
        "litellm_remaining_api_key_budget_metric",
        "litellm_deployment_successful_fallbacks",
        "litellm_deployment_failed_fallbacks",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} missing:\n{text}"
        );
    }
    let s = parse(&text);
    let team = ("api_key_alias", "team-a");
    let gpt = ("requested_model", "gpt-4o");
    assert_eq!(
        sum(&s, "litellm_proxy_total_requests_metric", &[gpt, team]),
        2.0
    );
    assert_eq!(
        sum(
            &s,
            "litellm_proxy_total_requests_metric",
            &[gpt, ("status_code", "200")]
        ),
        2.0
    );
    assert_eq!(
        sum(
            &s,
            "litellm_proxy_total_requests_metric",
            &[gpt, ("status_code", "400")]
        ),
        1.0
    );
    assert_eq!(
        sum(
            &s,
            "litellm_proxy_total_requests_metric",
            &[("requested_model", "mocky")]
        ),
        2.0
    );
    assert_eq!(
        sum(
            &s,
            "litellm_proxy_failed_requests_metric",
            &[gpt, ("exception_status", "400")]
        ),
        1.0
    );
    assert_eq!(
        sum(&s, "litellm_proxy_failed_requests_metric", &[team]),
        0.0
    );
    assert_eq!(sum(&s, "litellm_input_tokens_metric", &[gpt, team]), 1010.0);
    assert_eq!(sum(&s, "litellm_output_tokens_metric", &[gpt, team]), 520.0);
    assert_eq!(sum(&s, "litellm_total_tokens_metric", &[gpt, team]), 1530.0);
    assert_eq!(
        sum(
            &s,
            "litellm_request_total_latency_metric_count",
            &[gpt, ("model", "openai/gpt-4o")]
        ),
        3.0
    );
    // Only successful calls have an LLM API latency.
    assert_eq!(sum(&s, "litellm_llm_api_latency_metric_count", &[gpt]), 2.0);
    assert_eq!(
        sum(&s, "litellm_overhead_latency_metric_count", &[gpt]),
        3.0
    );
    let inf = sum(
        &s,
        "litellm_request_total_latency_metric_bucket",
        &[gpt, team, ("le", "+Inf")],
    );
    assert_eq!(inf, 2.0);
    // Spend: the first call's cost header plus the stream's; exact decimal text.
    let spend = sum(&s, "litellm_spend_metric", &[gpt, team]);
    assert!(spend >= cost && cost > 0.0, "spend {spend} cost {cost}");
    let mock_spend = sum(&s, "litellm_spend_metric", &[("requested_model", "mocky")]);
    assert!(mock_spend > 0.0);
    // The key's remaining budget: $1 - $0.25 already spent - this call.
    let left = sum(&s, "litellm_remaining_api_key_budget_metric", &[team]);
    assert!(left < 0.75 && left > 0.74, "{left}");
    // The master key's calls carry no alias.
    assert_eq!(
        sum(
            &s,
            "litellm_proxy_total_requests_metric",
            &[("requested_model", "mocky"), ("api_key_alias", "")]
        ),
        2.0
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
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("# TYPE litellm_spend_metric counter")
    );
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
    m.record_fallback("gpt-4o", "mocky", &p, true);
    m.record_fallback("gpt-4o", "mocky", &p, true);
    m.record_fallback("gpt-4o", "other", &p, false);
    m.set_deployment_source(Arc::new(|| {
        vec![idlehands_proxy::metrics::DeploymentGauge {
            litellm_model_name: "openai/gpt-4o".into(),
            model_id: "dep-1".into(),
            model_group: "gpt-4o".into(),
            state: 2,
            cooled_down_total: 4,
            ..Default::default()
        }]
    }));
    let s = parse(&m.render());
    assert_eq!(
        sum(
            &s,
            "litellm_deployment_successful_fallbacks",
            &[("requested_model", "gpt-4o"), ("fallback_model", "mocky")]
        ),
        2.0
    );
    assert_eq!(
        sum(
            &s,
            "litellm_deployment_failed_fallbacks",
            &[("fallback_model", "other")]
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
            "litellm_deployment_cooled_down",
            &[("model_id", "dep-1")]
        ),
        4.0
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
    let c = client();
    // The test aid makes gpt-4o fail without an upstream; the fallback answers.
    let mut body = chat_body("gpt-4o", false);
    body["mock_testing_fallbacks"] = serde_json::json!(true);
    let r = c
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap();
    // A 429 from the real upstream: falls back too, and cools the deployment down.
    let r = c
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&chat_body("gpt-4o", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap();
    gw.records(2).await;

    let s = parse(&scrape(&gw.base, Some(KEY)).await.text().await.unwrap());
    let pair = [("requested_model", "gpt-4o"), ("fallback_model", "mocky")];
    assert_eq!(
        sum(&s, "litellm_deployment_successful_fallbacks", &pair),
        2.0
    );
    assert_eq!(sum(&s, "litellm_deployment_failed_fallbacks", &pair), 0.0);
    let gpt = ("litellm_model_name", "openai/gpt-4o");
    let mock = ("litellm_model_name", "openai/mock-model");
    assert_eq!(sum(&s, "litellm_deployment_state", &[mock]), 0.0);
    assert!(
        sum(
            &s,
            "litellm_deployment_state",
            &[gpt, ("model_group", "gpt-4o")]
        ) >= 1.0,
        "{s:?}"
    );
    assert!(
        sum(&s, "litellm_deployment_cooled_down", &[gpt]) >= 1.0,
        "{s:?}"
    );
    assert!(sum(&s, "litellm_deployment_success_responses", &[mock]) >= 2.0);
    gw.shutdown().await.unwrap();
}
