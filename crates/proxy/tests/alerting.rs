#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `general_settings.alerting: [slack, webhook]`: alerts for slow and failed calls, key budget
//! crossings, deployment cooldowns and database failures, received by a webhook on loopback.

mod common;

use std::sync::Arc;

use common::{KEY, chat_body, client, config, start_cfg, two_models};
use futures_util::future::BoxFuture;
use idlehands_proxy::{KeyResolver, Principal, ProxyError, VirtualKey};
use idlehands_testkit::{FakeOpenAi, Reply, Webhooks};
use serde_json::Value;

fn slack_text(v: &Value) -> &str {
    v["text"].as_str().expect("a Slack message has text")
}

async fn call(gw: &common::Running, key: &str, model: &str) -> u16 {
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&chat_body(model, false))
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    r.text().await.unwrap();
    s
}

fn yaml(upstream: &str, general: &str) -> String {
    format!(
        "{}general_settings:\n  master_key: {KEY}\n{general}",
        two_models(upstream)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_failed_calls_are_alerted_to_slack() {
    let mut hooks = Webhooks::start().await;
    let base = hooks.base.clone();
    let up = FakeOpenAi::start().await;
    up.push(Reply::text("fine"));
    up.push(Reply::error(400, "bad request upstream"));
    let slack = format!("{base}/slack");
    // A threshold no loopback round trip can beat.
    let cfg = config(
        &yaml(
            &up.base_url(),
            "  alerting: [slack]\n  alerting_threshold: 0.00001\n",
        ),
        &[("SLACK_WEBHOOK_URL", slack.as_str())],
    );
    let gw = start_cfg(cfg, |b| b).await;
    assert_eq!(call(&gw, KEY, "gpt-4o").await, 200);
    let (to, body) = hooks.next().await;
    assert_eq!(to, "slack");
    let text = slack_text(&body);
    assert!(
        text.starts_with("Alert type: `llm_too_slow`\nLevel: `Low`"),
        "{text}"
    );
    assert!(text.contains("Responses are slow - "), "{text}");
    assert!(text.contains("Request Model: `gpt-4o`"), "{text}");
    assert_eq!(call(&gw, KEY, "gpt-4o").await, 400);
    let (_, body) = hooks.next().await;
    let text = slack_text(&body);
    assert!(
        text.starts_with("Alert type: `llm_exceptions`\nLevel: `High`"),
        "{text}"
    );
    assert!(text.contains("bad request upstream"), "{text}");
    gw.shutdown().await.unwrap();
}

/// One key, resolved to the given `VirtualKey` (its hash filled in); any other is refused.
struct OneKey(&'static str, VirtualKey);

impl KeyResolver for OneKey {
    fn resolve<'a>(
        &'a self,
        key: &'a str,
        hash: &'a str,
    ) -> BoxFuture<'a, Result<Principal, ProxyError>> {
        Box::pin(async move {
            if key == self.0 {
                let mut vk = self.1.clone();
                vk.token_hash = hash.to_string();
                Ok(Principal::VirtualKey(Arc::new(vk)))
            } else {
                Err(idlehands_proxy::auth::invalid_key(key, hash))
            }
        })
    }
}

/// A gateway alerting to Slack and the webhook, with `key` resolved as `vk`: one call on it,
/// then its webhook event and Slack text (a budget alert); then, as the alert is not repeated,
/// a second call on it and a failed call on another key raise only the failure's alert.
async fn budget_alert_once(key: &'static str, vk: VirtualKey) -> (Value, String) {
    let mut hooks = Webhooks::start().await;
    let base = hooks.base.clone();
    let up = FakeOpenAi::start().await;
    up.push(Reply::text("one").with_usage(10, 10));
    up.push(Reply::text("two").with_usage(10, 10));
    up.push(Reply::error(400, "bad request upstream"));
    let (slack, hook) = (format!("{base}/slack"), format!("{base}/hook"));
    let cfg = config(
        &yaml(&up.base_url(), "  alerting: [slack, webhook]\n"),
        &[
            ("SLACK_WEBHOOK_URL", slack.as_str()),
            ("WEBHOOK_URL", hook.as_str()),
        ],
    );
    let gw = start_cfg(cfg, |b| b.key_resolver(Arc::new(OneKey(key, vk)))).await;
    assert_eq!(call(&gw, key, "gpt-4o").await, 200);
    let mut got = [hooks.next().await, hooks.next().await];
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let [(hook_to, event), (slack_to, slack_body)] = got;
    assert_eq!((hook_to.as_str(), slack_to.as_str()), ("hook", "slack"));
    let text = slack_text(&slack_body).to_owned();
    assert!(text.starts_with("Alert type: `budget_alerts`"), "{text}");
    assert_eq!(call(&gw, key, "gpt-4o").await, 200);
    assert_eq!(call(&gw, KEY, "gpt-4o").await, 400);
    let (to, body) = hooks.next().await;
    assert_eq!(to, "slack");
    assert!(slack_text(&body).starts_with("Alert type: `llm_exceptions`"));
    gw.shutdown().await.unwrap();
    (event, text)
}

/// $1 budget, $0.90 spent: the 15% crossing, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_crossing_goes_to_the_webhook_and_slack_once() {
    let vk = VirtualKey {
        key_alias: Some("nearly-spent".to_string()),
        team_id: Some("team-1".to_string()),
        max_budget_nanos: Some(1_000_000_000),
        spend_nanos: 900_000_000,
        ..VirtualKey::default()
    };
    let (event, _) = budget_alert_once("sk-budget-key", vk).await;
    assert_eq!(event["event"], "threshold_crossed");
    assert_eq!(event["event_group"], "key");
    assert_eq!(event["key_alias"], "nearly-spent");
    assert_eq!(event["team_id"], "team-1");
    assert_eq!(event["max_budget"], 1.0);
    assert!(event["spend"].as_f64().unwrap() > 0.9);
    assert_eq!(event["token"].as_str().unwrap().len(), 64);
    assert!(
        event["event_message"]
            .as_str()
            .unwrap()
            .contains("15% or less of budget remaining")
    );
}

/// No max budget, a $0.50 soft budget, $0.60 spent: LiteLLM's `soft_budget_crossed`, once;
/// the calls go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crossed_soft_budget_is_alerted_once() {
    let vk = VirtualKey {
        key_alias: Some("soft".to_string()),
        soft_budget_nanos: Some(500_000_000),
        spend_nanos: 600_000_000,
        ..VirtualKey::default()
    };
    let (event, text) = budget_alert_once("sk-soft-key", vk).await;
    assert_eq!(event["event"], "soft_budget_crossed");
    assert_eq!(event["event_group"], "key");
    assert_eq!(event["soft_budget"], 0.5);
    assert_eq!(event["max_budget"], Value::Null);
    assert_eq!(event["key_alias"], "soft");
    assert!(
        event["event_message"]
            .as_str()
            .unwrap()
            .starts_with("Key Budget: Total Soft Budget:`"),
        "{event}"
    );
    assert!(text.contains("Max Budget: `None`"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooldowns_and_database_failures_are_alerted() {
    let mut hooks = Webhooks::start().await;
    let base = hooks.base.clone();
    let up = FakeOpenAi::start().await;
    up.push(Reply::rate_limited(30));
    let slack = format!("{base}/slack");
    let general = "  alerting: [slack]\n  alert_types: [cooldown_deployment, db_exceptions]\n";
    let yaml = format!(
        "{}router_settings:\n  num_retries: 0\n  allowed_fails: 0\n  cooldown_time: 60\n",
        yaml(&up.base_url(), general)
    );
    let cfg = config(&yaml, &[("SLACK_WEBHOOK_URL", slack.as_str())]);
    let probe: idlehands_proxy::DbProbe = Arc::new(|| Some(false));
    let gw = start_cfg(cfg, move |b| b.db_probe(probe)).await;
    // The database probe fails from the start.
    let (_, body) = hooks.next().await;
    let text = slack_text(&body);
    assert!(
        text.starts_with("Alert type: `db_exceptions`\nLevel: `High`"),
        "{text}"
    );
    assert!(text.contains("DB read/write call failed"), "{text}");
    // A 429 puts the deployment into cooldown; the failed call itself is not alerted
    // (alert_types leaves llm_exceptions out).
    assert_eq!(call(&gw, KEY, "gpt-4o").await, 429);
    let (_, body) = hooks.next().await;
    let text = slack_text(&body);
    assert!(
        text.starts_with("Alert type: `cooldown_deployment`"),
        "{text}"
    );
    assert!(text.contains("model group `gpt-4o`"), "{text}");
    gw.shutdown().await.unwrap();
}

#[test]
fn a_missing_webhook_url_is_named() {
    let cfg = config(&yaml("http://127.0.0.1:9", "  alerting: [slack]\n"), &[]);
    let err = idlehands_proxy::alerting::AlertingSettings::from_config(&cfg)
        .unwrap()
        .unwrap_err();
    assert!(err.contains("SLACK_WEBHOOK_URL"), "{err}");
    let cfg = config(&yaml("http://127.0.0.1:9", "  alerting: [webhook]\n"), &[]);
    let err = idlehands_proxy::alerting::AlertingSettings::from_config(&cfg)
        .unwrap()
        .unwrap_err();
    assert!(err.contains("WEBHOOK_URL"), "{err}");
}
