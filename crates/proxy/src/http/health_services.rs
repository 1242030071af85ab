//! LiteLLM's `GET /health/services?service=` (any key): tests a logging or alerting
//! integration. `slack` sends a test alert to the Slack webhook, `webhook` (proxy admins) a
//! test budget event, `otel` and `generic_api` log a mock call (model
//! `litellm-mock-response-model`, user `litellm:/health/services`; no spend row: nothing was
//! answered), `prometheus` points at `/metrics`. A service that is not configured is refused
//! with LiteLLM's answer; one that is configured but not built here says so instead of
//! pretending to have tested it.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, StatusCode, Uri};
use serde::Deserialize;
use serde_json::json;

use super::keys::{Mgmt, Shared, query, tri};
use super::roles::{Role, caller_role};
use crate::hooks::{CallRecord, CallStatus};

/// The service names LiteLLM's route accepts that this gateway knows of.
const KNOWN: [&str; 25] = [
    "arize",
    "aws_sqs",
    "braintrust",
    "custom_callback_api",
    "datadog",
    "datadog_llm_observability",
    "datadog_metrics",
    "email",
    "galileo",
    "generic_api",
    "langfuse",
    "langfuse_otel",
    "ms_teams",
    "newrelic",
    "openmeter",
    "otel",
    "pointfive",
    "prometheus",
    "signoz",
    "slack",
    "slack_budget_alerts",
    "sqs",
    "webhook",
    "lago",
    "opik",
];

pub(crate) fn routes(state: Arc<Mgmt>) -> Router {
    Router::new()
        .route(
            "/health/services",
            get(|State(m): Shared, h: HeaderMap, u: Uri| services(m, h, u)),
        )
        .with_state(state)
}

#[derive(Deserialize, Default)]
struct Ask {
    service: Option<String>,
}

/// LiteLLM raises these as `{"error": ...}` details, answered OpenAI-style.
fn refuse(status: StatusCode, error: String) -> Response {
    let kind = match status {
        StatusCode::FORBIDDEN => "auth_error",
        StatusCode::UNPROCESSABLE_ENTITY => "unprocessable_entity",
        _ => "bad_request_error",
    };
    crate::error::ProxyError::Custom {
        status: status.as_u16(),
        kind: kind.to_string(),
        message: error,
        param: None,
        headers: Vec::new(),
    }
    .into_response()
}

/// The record of the mock call LiteLLM's test makes.
fn mock_call() -> CallRecord {
    let now = chrono::Utc::now();
    CallRecord {
        response_id: None,
        requester_ip: None,
        call_id: uuid::Uuid::new_v4().to_string(),
        call_type: "acompletion",
        api_key_hash: None,
        key_alias: None,
        user_id: None,
        team_id: None,
        end_user: Some("litellm:/health/services".to_string()),
        metadata: None,
        request_tags: Vec::new(),
        session_id: None,
        model: "openai/litellm-mock-response-model".to_string(),
        model_id: String::new(),
        model_group: "litellm-mock-response-model".to_string(),
        api_base: None,
        custom_llm_provider: "openai".to_string(),
        stream: false,
        prompt_tokens: 0,
        completion_tokens: 0,
        total_tokens: 0,
        cost_nanos: 0,
        usage_estimated: false,
        start_time: now,
        end_time: now,
        completion_start_time: Some(now),
        status: CallStatus::Success,
        error_message: None,
        http_status: 200,
        overhead: std::time::Duration::ZERO,
        messages: None,
        response: None,
        cache_key: None,
        cache_hit: false,
        cache_off: false,
    }
}

async fn services(m: Arc<Mgmt>, headers: HeaderMap, uri: Uri) -> Response {
    let (principal, role) = tri!(caller_role(&m, &headers).await);
    let ask: Ask = tri!(query(&uri));
    let Some(service) = ask.service.map(|s| s.trim().to_string()) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "Service must be specified.".to_string(),
        );
    };
    if !KNOWN.contains(&service.as_str()) {
        let mut known = KNOWN.to_vec();
        known.sort_unstable();
        let list: Vec<String> = known.iter().map(|s| format!("'{s}'")).collect();
        return refuse(
            StatusCode::BAD_REQUEST,
            format!(
                "Service must be in list. Service={service} not in [{}]",
                list.join(", ")
            ),
        );
    }
    let app = &m.app;
    let diag = &app.diagnostics;
    let success = |message: String| axum::Json(json!({"status": "success", "message": message}));
    match service.as_str() {
        "slack" | "slack_budget_alerts" => {
            let sent = diag
                .alerts_to("slack")
                .then(|| app.alerting.as_ref().and_then(|a| a.test_slack()))
                .flatten();
            match sent {
                Some(types) => axum::Json(json!({
                    "status": "success",
                    "alert_types": types,
                    "message": "Mock Slack Alert sent, verify Slack Alert Received on your channel",
                }))
                .into_response(),
                None => not_in_config(&service),
            }
        }
        "webhook" => {
            if !matches!(role, Role::Admin(_)) {
                return refuse(
                    StatusCode::FORBIDDEN,
                    "Only proxy admins can trigger the webhook test alert.".to_string(),
                );
            }
            let sent = diag.alerts_to("webhook")
                && app
                    .alerting
                    .as_ref()
                    .is_some_and(|a| a.test_webhook(&principal));
            if sent {
                success("Mock Webhook Alert sent, verify Webhook Alert Received".to_string())
                    .into_response()
            } else {
                not_in_config(&service)
            }
        }
        "otel" | "generic_api" if diag.configured(&service) => {
            let record = mock_call();
            let logged = match (service.as_str(), &app.otel, &app.generic_api) {
                ("otel", Some(otel), _) => {
                    otel.record(
                        &record,
                        &crate::otel::TraceContext::for_call(None),
                        Vec::new(),
                    );
                    true
                }
                ("generic_api", _, Some(g)) => {
                    g.record(&record, None);
                    true
                }
                _ => false,
            };
            if logged {
                success(format!("Mock LLM request made - check {service}.")).into_response()
            } else {
                // Listed, but its settings were refused at start-up (named in the log then).
                refuse(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "{service} is listed but not running: its settings were refused at start-up (see the log). Unable to test this."
                    ),
                )
            }
        }
        "prometheus" if diag.configured(&service) => {
            success("Metrics are served at /metrics - check prometheus.".to_string())
                .into_response()
        }
        other if diag.configured(other) || diag.alerts_to(other) => refuse(
            StatusCode::BAD_REQUEST,
            format!(
                "Service={other} is configured, but this gateway does not build it (see not_acted_on in /active/callbacks). Unable to test this."
            ),
        ),
        other => refuse(
            StatusCode::BAD_REQUEST,
            format!(
                "Service={other} is not configured as a callback, add it to litellm_settings.callbacks."
            ),
        ),
    }
}

fn not_in_config(service: &str) -> Response {
    refuse(
        StatusCode::UNPROCESSABLE_ENTITY,
        format!("\"{service}\" not in proxy config: general_settings. Unable to test this."),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_known_services_are_listed_once() {
        let mut k = super::KNOWN.to_vec();
        k.sort_unstable();
        k.dedup();
        assert_eq!(k.len(), super::KNOWN.len());
    }
}
