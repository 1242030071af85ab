//! Alerts (`general_settings.alerting: ["slack"]` and/or `["webhook"]`), as LiteLLM sends them:
//!
//! - `slack`: a `{"text": ...}` message to `SLACK_WEBHOOK_URL` (or `ALERTING_WEBHOOK_URL`) for
//!   slow calls (over `general_settings.alerting_threshold` seconds, default 300), failed
//!   calls, key budget crossings (a soft budget crossed; 15% and 5% left, then exhausted), deployments put into
//!   cooldown, and database failures (the spend writer or the database probe failing).
//! - `webhook`: key budget crossings as LiteLLM's `WebhookEvent` JSON to `WEBHOOK_URL`.
//!
//! `general_settings.alert_types` narrows the Slack alerts to the listed types. Alerts are
//! queued and sent off the request path; a budget event is sent once a day per key and event.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use idlehands_routing::DeploymentSnapshot;
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::auth::Principal;
use crate::batch::BatchQueue;
use crate::config::ProxyConfig;
use crate::hooks::{CallRecord, CallStatus};

/// LiteLLM's alert types that the gateway raises.
pub const ALERT_TYPES: [&str; 5] = [
    "llm_exceptions",
    "llm_too_slow",
    "budget_alerts",
    "db_exceptions",
    "cooldown_deployment",
];

/// How often the watcher looks at deployments and the database.
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// A budget event for a key is not repeated within this.
const BUDGET_REPEAT: Duration = Duration::from_secs(24 * 3600);
const RETRIES: u32 = 2;

#[derive(Debug, Clone)]
pub struct AlertingSettings {
    /// Where Slack-style alerts go, when `slack` is listed.
    pub slack_url: Option<String>,
    /// Where budget `WebhookEvent`s go, when `webhook` is listed.
    pub webhook_url: Option<String>,
    pub threshold: Duration,
    /// The Slack alert types to send.
    pub types: Vec<String>,
}

fn url(var: &str, v: Option<&String>) -> Result<String, String> {
    let v = v
        .ok_or_else(|| format!("{var} is not set"))?
        .trim()
        .to_string();
    match reqwest::Url::parse(&v) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(v),
        _ => Err(format!("{var} is not an http(s) URL")),
    }
}

impl AlertingSettings {
    /// The settings when `general_settings.alerting` lists `slack` or `webhook`; `Err` says
    /// what is missing (named at start-up; the gateway serves without alerts).
    pub fn from_config(cfg: &ProxyConfig) -> Option<Result<Self, String>> {
        let gs = &cfg.file.general_settings;
        let slack = gs.alerting.iter().any(|a| a.trim() == "slack");
        let webhook = gs.alerting.iter().any(|a| a.trim() == "webhook");
        if !slack && !webhook {
            return None;
        }
        let env = |k: &str| cfg.observe_env.get(k).filter(|v| !v.trim().is_empty());
        Some((|| {
            let slack_url = if slack {
                let v = env("SLACK_WEBHOOK_URL").or_else(|| env("ALERTING_WEBHOOK_URL"));
                Some(url("SLACK_WEBHOOK_URL", v)?)
            } else {
                None
            };
            let webhook_url = if webhook {
                Some(url("WEBHOOK_URL", env("WEBHOOK_URL"))?)
            } else {
                None
            };
            let threshold = match gs.extra.get("alerting_threshold") {
                None | Some(Value::Null) => 300.0,
                Some(v) => crate::config::loose_number(v)
                    .filter(|n: &f64| *n > 0.0 && n.is_finite())
                    .ok_or(
                        "general_settings.alerting_threshold must be a positive number of seconds",
                    )?,
            };
            let types = match gs.extra.get("alert_types") {
                None | Some(Value::Null) => ALERT_TYPES.iter().map(|t| t.to_string()).collect(),
                Some(Value::Array(list)) => list
                    .iter()
                    .filter_map(|t| t.as_str().map(|s| s.trim().to_string()))
                    .collect(),
                Some(_) => return Err("general_settings.alert_types must be a list".to_string()),
            };
            Ok(AlertingSettings {
                slack_url,
                webhook_url,
                threshold: Duration::from_secs_f64(threshold),
                types,
            })
        })())
    }
}

/// One message to send.
struct Outgoing {
    url: String,
    body: Value,
}

pub struct Alerting {
    settings: AlertingSettings,
    queue: BatchQueue<Outgoing>,
    /// Budget events already sent: `event:key hash` -> when.
    sent: Mutex<HashMap<String, Instant>>,
    /// Per deployment id, the cooldown count last seen; whether the database was failing.
    watched: Mutex<(HashMap<String, u64>, bool)>,
}

impl std::fmt::Debug for Alerting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerting").finish_non_exhaustive()
    }
}

impl Alerting {
    pub fn new(settings: AlertingSettings, client: reqwest::Client) -> Arc<Self> {
        let queue = BatchQueue::new(
            "alerting",
            1000,
            1,
            Duration::ZERO,
            move |b: Vec<Outgoing>| {
                let client = client.clone();
                async move {
                    for o in b {
                        if let Err(e) = post(&client, &o).await {
                            tracing::warn!(error = %e, "alerting: an alert could not be sent");
                        }
                    }
                }
            },
        );
        Arc::new(Self {
            settings,
            queue,
            sent: Mutex::new(HashMap::new()),
            watched: Mutex::new((HashMap::new(), false)),
        })
    }

    fn wants(&self, alert_type: &str) -> bool {
        self.settings.slack_url.is_some() && self.settings.types.iter().any(|t| t == alert_type)
    }

    /// A Slack-style alert, formatted as LiteLLM's.
    fn slack(&self, alert_type: &str, level: &str, message: &str) {
        let Some(url) = self.settings.slack_url.clone() else {
            return;
        };
        if !self.wants(alert_type) {
            return;
        }
        let now = chrono::Utc::now().format("%H:%M:%S");
        let text = format!(
            "Alert type: `{alert_type}`\nLevel: `{level}`\nTimestamp: `{now}`\n\nMessage: {message}"
        );
        self.queue.push(Outgoing {
            url,
            body: json!({ "text": text }),
        });
    }

    /// After each call: slow, failed, and key budget alerts.
    pub(crate) fn on_call(&self, r: &CallRecord, principal: &Principal) {
        let secs = r.duration().as_secs_f64();
        let request_info = format!(
            "\nRequest Model: `{}`\nAPI Base: `{}`\nMessages: `Message not logged`{}",
            r.model_group,
            r.api_base.as_deref().unwrap_or(""),
            key_and_team(r)
        );
        if r.status == CallStatus::Failure {
            let error = r.error_message.as_deref().unwrap_or("");
            self.slack(
                "llm_exceptions",
                "High",
                &format!(
                    "LLM API call failed: `{}`{request_info}",
                    crate::logging::redact_str(error)
                ),
            );
        } else if r.duration() > self.settings.threshold {
            self.slack(
                "llm_too_slow",
                "Low",
                &format!(
                    "`Responses are slow - {secs:.2}s response time > Alerting threshold: {}s`{request_info}",
                    self.settings.threshold.as_secs_f64()
                ),
            );
        }
        if let Principal::VirtualKey(k) = principal {
            let max = k.max_budget_nanos.filter(|m| *m > 0);
            let soft = k.soft_budget_nanos.filter(|s| *s > 0);
            if max.is_some() || soft.is_some() {
                let spent = k.spend_nanos.saturating_add(r.cost_nanos);
                self.budget(k, max, soft, spent);
            }
        }
    }

    /// As LiteLLM decides: a crossed soft budget, unless the max budget's crossing or its
    /// last 15% or 5% says more.
    fn budget(&self, k: &crate::auth::VirtualKey, max: Option<u64>, soft: Option<u64>, spent: u64) {
        let mut found = soft.filter(|s| spent >= *s).map(|s| {
            (
                "soft_budget_crossed",
                format!("Total Soft Budget:`{}`", usd(s)),
            )
        });
        if let Some(max) = max {
            let left = (max as f64 - spent as f64) / max as f64;
            if spent >= max {
                found = Some((
                    "budget_crossed",
                    format!("Budget Crossed\n Total Budget:`{}`", usd(max)),
                ));
            } else if left <= 0.05 {
                found = Some((
                    "threshold_crossed",
                    "5% or less of budget remaining".to_string(),
                ));
            } else if left <= 0.15 {
                found = Some((
                    "threshold_crossed",
                    "15% or less of budget remaining".to_string(),
                ));
            }
        }
        let Some((event, what)) = found else {
            return;
        };
        let dedupe = format!("{event}:{what}:{}", k.token_hash);
        {
            let mut sent = self.sent.lock();
            if sent
                .get(&dedupe)
                .is_some_and(|t| t.elapsed() < BUDGET_REPEAT)
            {
                return;
            }
            if sent.len() > 10_000 {
                sent.retain(|_, t| t.elapsed() < BUDGET_REPEAT);
            }
            sent.insert(dedupe, Instant::now());
        }
        let event_message = format!("Key Budget: {what}");
        if let Some(url) = self.settings.webhook_url.clone() {
            self.queue.push(Outgoing {
                url,
                body: json!({
                    "spend": spent as f64 / 1e9,
                    "max_budget": max.map(|m| m as f64 / 1e9),
                    "soft_budget": soft.map(|s| s as f64 / 1e9),
                    "token": k.token_hash,
                    "user_id": k.user_id,
                    "team_id": k.team_id,
                    "key_alias": k.key_alias,
                    "event": event,
                    "event_group": "key",
                    "event_message": event_message,
                }),
            });
        }
        self.slack(
            "budget_alerts",
            "High",
            &format!(
                "{event_message}\n\nKey Alias: `{}`\nSpend: `{}`\nMax Budget: `{}`",
                k.key_alias.as_deref().unwrap_or(""),
                usd(spent),
                max.map_or_else(|| "None".to_owned(), usd)
            ),
        );
    }

    /// `/health/services?service=slack`: a test message to the Slack webhook, whatever
    /// `alert_types` lists (a test of the channel); the alert types sent, or `None` without a
    /// Slack webhook.
    pub(crate) fn test_slack(&self) -> Option<Vec<String>> {
        let url = self.settings.slack_url.clone()?;
        let now = chrono::Utc::now().format("%H:%M:%S");
        let text = format!(
            "Alert type: `budget_alerts`\nLevel: `Low`\nTimestamp: `{now}`\n\nMessage: This is a test slack alert message"
        );
        self.queue.push(Outgoing {
            url,
            body: json!({ "text": text }),
        });
        Some(self.settings.types.clone())
    }

    /// `/health/services?service=webhook`: a budget event as LiteLLM's test sends it (spend 1
    /// over a budget of 0) for the caller's key; `false` without a webhook.
    pub(crate) fn test_webhook(&self, principal: &Principal) -> bool {
        let Some(url) = self.settings.webhook_url.clone() else {
            return false;
        };
        let key = match principal {
            Principal::VirtualKey(k) => Some(k.as_ref()),
            _ => None,
        };
        let token = match principal {
            Principal::Master { key_hash } => Some(key_hash.to_string()),
            Principal::VirtualKey(k) if !k.via_jwt => Some(k.token_hash.clone()),
            Principal::VirtualKey(_) | Principal::Anonymous | Principal::JwtAdmin(_) => None,
        };
        self.queue.push(Outgoing {
            url,
            body: json!({
                "spend": 1.0,
                "max_budget": 0.0,
                "soft_budget": Value::Null,
                "token": token,
                "user_id": key.and_then(|k| k.user_id.clone()),
                "team_id": key.and_then(|k| k.team_id.clone()),
                "key_alias": key.and_then(|k| k.key_alias.clone()),
                "event": "budget_crossed",
                "event_group": "key",
                "event_message": "User Budget: Budget Crossed",
            }),
        });
        true
    }

    /// One look at the deployments' cooldowns and the database state.
    fn watch(&self, deployments: Vec<DeploymentSnapshot>, db_problem: Option<String>) {
        let mut w = self.watched.lock();
        for d in deployments {
            let seen = w.0.insert(d.id.clone(), d.cooldowns_total).unwrap_or(0);
            if d.cooldowns_total > seen {
                let secs = d.cooldown_remaining.map_or(0.0, |r| r.as_secs_f64());
                self.slack(
                    "cooldown_deployment",
                    "Low",
                    &format!(
                        "Deployment `{}` of model group `{}` is cooling down for {secs:.0}s after failing",
                        d.id, d.model_group
                    ),
                );
            }
        }
        let failing = db_problem.is_some();
        if let Some(problem) = db_problem
            && !w.1
        {
            self.slack(
                "db_exceptions",
                "High",
                &format!("DB read/write call failed: {problem}"),
            );
        }
        w.1 = failing;
    }
}

fn usd(nanos: u64) -> String {
    crate::pricing::nanos_to_usd_string(nanos)
}

fn key_and_team(r: &CallRecord) -> String {
    let mut s = String::new();
    if let Some(a) = &r.key_alias {
        s.push_str(&format!("\nKey Alias: `{a}`"));
    }
    if let Some(t) = &r.team_id {
        s.push_str(&format!("\nTeam: `{t}`"));
    }
    s
}

/// The watcher for cooldowns and database failures: every [`WATCH_EVERY`], `look` gives the
/// routing crate's deployment states and the database's problem, if any; `None` (the gateway
/// is gone) ends it.
pub(crate) fn spawn_watcher<F>(alerting: Arc<Alerting>, look: F)
where
    F: Fn() -> Option<(Vec<DeploymentSnapshot>, Option<String>)> + Send + 'static,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(WATCH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some((deployments, db_problem)) = look() else {
                return;
            };
            alerting.watch(deployments, db_problem);
        }
    });
}

async fn post(client: &reqwest::Client, o: &Outgoing) -> Result<(), String> {
    let body = bytes::Bytes::from(o.body.to_string());
    let mut delay = Duration::from_millis(500);
    let mut last = String::new();
    for attempt in 0..=RETRIES {
        if attempt > 0 {
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
        let req = client
            .post(&o.url)
            .timeout(Duration::from_secs(30))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.clone());
        match req.send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) if r.status().is_server_error() => {
                last = format!("the webhook answered {}", r.status().as_u16());
            }
            Ok(r) => return Err(format!("the webhook answered {}", r.status().as_u16())),
            Err(_) => last = "the webhook could not be reached".to_string(),
        }
    }
    Err(last)
}
