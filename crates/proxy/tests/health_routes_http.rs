#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! LiteLLM's health and diagnostic routes beyond `/health`: the kept results
//! (`/health/history`, `/health/latest`, from `/health?model=` and the background checks),
//! `/health/readiness/details`, `/health/backlog`, `/active/callbacks` and `/settings`,
//! `/health/services`, `/health/test_connection`, `/health/drain` and `/test`. The kept
//! results on SQLite and Postgres.

mod store_support;

use std::collections::HashMap;
use std::time::Duration;

use idlehands_proxy::config::ProxyConfig;
use idlehands_testkit::{FakeOpenAi, Gate, Reply, Webhooks};
use serde_json::{Value, json};
use store_support::{
    Backend, MASTER, Place, Proxy, client, error_of, generate, get, internal_user, post, send,
    settings, start_with,
};

/// `mocky` (a mock) and `down` (an upstream that refuses connections), plus `extra`.
fn yaml_with(extra: &str) -> String {
    format!(
        "model_list:
  - model_name: mocky
    litellm_params:
      model: openai/mock-model
      mock_response: Hello
  - model_name: down
    litellm_params:
      model: openai/down-model
      api_base: http://127.0.0.1:9/v1
      api_key: sk-down
general_settings:
  master_key: {MASTER}
{extra}"
    )
}

fn config_with(yaml: &str, env: HashMap<String, String>) -> ProxyConfig {
    ProxyConfig::from_yaml(yaml, "config.yaml", &move |k: &str| env.get(k).cloned())
        .expect("config loads")
}

async fn start_yaml(place: &Place, extra: &str, env: HashMap<String, String>) -> Proxy {
    let cfg = config_with(&yaml_with(extra), env);
    let s = settings(&cfg, place);
    start_with(cfg, s).await
}

async fn history(p: &Proxy, query: &str) -> Vec<Value> {
    let a = get(p, &format!("/health/history{query}"), MASTER).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.body["total_records"].as_u64().unwrap() as usize,
        a.body["health_checks"].as_array().unwrap().len()
    );
    a.body["health_checks"].as_array().unwrap().clone()
}

fn models_of(rows: &[Value]) -> Vec<&str> {
    rows.iter()
        .map(|r| r["model_name"].as_str().unwrap())
        .collect()
}

async fn named_checks_are_kept(b: Backend) {
    let place = Place::new(b);
    let p = start_yaml(&place, "", HashMap::new()).await;

    // A check of every model is not kept (LiteLLM keeps only checks that name a model).
    let all = get(&p, "/health", MASTER).await;
    assert_eq!(all.status, 200, "{}", all.body);
    assert_eq!(all.body["unhealthy_count"], 1, "{}", all.body);
    assert!(history(&p, "").await.is_empty());

    let ok = get(&p, "/health?model=mocky", MASTER).await;
    assert_eq!(ok.body["healthy_count"], 1, "{}", ok.body);
    let bad = get(&p, "/health?model=down", MASTER).await;
    assert_eq!(bad.body["unhealthy_count"], 1, "{}", bad.body);
    let down_id = bad.body["unhealthy_endpoints"][0]["model_id"]
        .as_str()
        .unwrap()
        .to_string();
    let by_id = get(&p, &format!("/health?model_id={down_id}"), MASTER).await;
    assert_eq!(by_id.body["unhealthy_count"], 1, "{}", by_id.body);

    // Newest first; the error, the counts and who asked are kept.
    let rows = history(&p, "").await;
    assert_eq!(models_of(&rows), ["down", "down", "mocky"], "{rows:?}");
    assert_eq!(rows[0]["model_id"], down_id);
    assert_eq!(rows[1]["model_id"], Value::Null);
    assert_eq!(rows[0]["status"], "unhealthy");
    assert_eq!(rows[0]["healthy_count"], 0);
    assert_eq!(rows[0]["unhealthy_count"], 1);
    assert!(
        !rows[0]["error_message"].as_str().unwrap().is_empty(),
        "{rows:?}"
    );
    assert_eq!(rows[2]["status"], "healthy");
    assert_eq!(rows[2]["error_message"], Value::Null);
    assert_eq!(rows[2]["checked_by"], "default_user_id");
    assert!(rows[2]["response_time_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(rows[2]["checked_at"], rows[2]["created_at"]);
    assert!(rows[0]["checked_at"].as_str().unwrap() >= rows[2]["checked_at"].as_str().unwrap());

    // Filters and pages.
    assert_eq!(models_of(&history(&p, "?model=mocky").await), ["mocky"]);
    assert_eq!(
        models_of(&history(&p, "?status_filter=unhealthy").await),
        ["down", "down"]
    );
    let page = get(&p, "/health/history?limit=1&offset=2", MASTER).await;
    assert_eq!(page.body["limit"], 1);
    assert_eq!(page.body["offset"], 2);
    assert_eq!(
        models_of(page.body["health_checks"].as_array().unwrap()),
        ["mocky"]
    );
    for q in ["limit=0", "limit=1001", "offset=-1"] {
        let a = get(&p, &format!("/health/history?{q}"), MASTER).await;
        assert_eq!(a.status, 400, "{q}: {}", a.body);
    }

    // The newest per model: by deployment id where one was named, else by name.
    let latest = get(&p, "/health/latest", MASTER).await;
    assert_eq!(latest.status, 200, "{}", latest.body);
    assert_eq!(latest.body["total_models"], 3, "{}", latest.body);
    let by = &latest.body["latest_health_checks"];
    assert_eq!(by["mocky"]["status"], "healthy");
    assert_eq!(by["down"]["model_id"], Value::Null);
    assert_eq!(by[down_id.as_str()]["model_name"], "down");

    // Only those who read everything: the rows name every model and its errors.
    internal_user(&p, "u1").await;
    let (key, _) = generate(&p, json!({"user_id": "u1"})).await;
    for route in ["/health/history", "/health/latest"] {
        let a = get(&p, route, &key).await;
        assert_eq!(a.status, 403, "{route}: {}", a.body);
    }
    p.stop().await;

    // Kept across a restart.
    let p = start_yaml(&place, "", HashMap::new()).await;
    assert_eq!(history(&p, "").await.len(), 3);
    p.stop().await;
    place.cleanup().await;
}

/// Background checks keep a row per deployment when its status is new or changed, and again
/// an hour later (the store's clock, moved by the test).
async fn background_checks_keep_changes_and_hourly_rows(b: Backend) {
    let place = Place::new(b);
    let clock = store_support::clock_at_minute_start();
    let cfg = config_with(
        &yaml_with("  background_health_checks: true\n  health_check_interval: 0.1\n"),
        HashMap::new(),
    );
    let mut s = settings(&cfg, &place);
    s.ledger.clock = clock.clone();
    let p = start_with(cfg, s).await;
    let rows = wait_for_rows(&p, 2).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    for r in &rows {
        assert_eq!(r["checked_by"], "background_health_check");
        assert!(r["model_id"].is_string());
        let want = if r["model_name"] == "mocky" {
            "healthy"
        } else {
            "unhealthy"
        };
        assert_eq!(r["status"], want, "{r}");
    }
    // Ten more runs or so with nothing changed and no time passed: nothing more is kept.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(history(&p, "").await.len(), 2);
    // An hour on, each status is written again.
    clock.advance(Duration::from_secs(3601));
    let rows = wait_for_rows(&p, 4).await;
    assert_eq!(rows.len(), 4, "{rows:?}");
    p.stop().await;
    place.cleanup().await;
}

async fn wait_for_rows(p: &Proxy, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let rows = history(p, "").await;
        if rows.len() >= n {
            return rows;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {n} kept health checks within 20 s, got {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

both_backends!(
    named_checks_are_kept,
    background_checks_keep_changes_and_hourly_rows
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn diagnostics_report_the_configuration() {
    let place = Place::new(Backend::Sqlite);
    let p = start_yaml(
        &place,
        "  alerting: [slack]
litellm_settings:
  callbacks: [prometheus]
  success_callback: [langfuse]
  request_timeout: 600
",
        HashMap::from([(
            "SLACK_WEBHOOK_URL".to_string(),
            "http://127.0.0.1:9/slack".to_string(),
        )]),
    )
    .await;
    let details = get(&p, "/health/readiness/details", MASTER).await;
    assert_eq!(details.status, 200, "{}", details.body);
    assert_eq!(details.body["status"], "healthy");
    assert_eq!(details.body["db"], "connected");
    assert_eq!(details.body["cache"], Value::Null);
    assert_eq!(
        details.body["success_callbacks"],
        json!(["langfuse", "prometheus"])
    );
    assert!(details.body["litellm_version"].is_string());
    assert!(details.body["log_level"].is_string());
    assert!(details.body["is_detailed_debug"].is_boolean());
    // The public probe stays short unless asked otherwise.
    let public = send(client().get(p.url("/health/readiness"))).await;
    assert_eq!(public.body.get("litellm_version"), None, "{}", public.body);

    let cb = get(&p, "/active/callbacks", MASTER).await;
    assert_eq!(cb.status, 200, "{}", cb.body);
    assert_eq!(cb.body["alerting"], "['slack']");
    assert_eq!(cb.body["litellm.callbacks"], json!(["prometheus"]));
    assert_eq!(cb.body["litellm.success_callback"], json!(["langfuse"]));
    assert_eq!(cb.body["num_callbacks"], 2);
    assert_eq!(cb.body["num_alerting"], 1);
    assert_eq!(cb.body["litellm.request_timeout"], 600);
    assert_eq!(cb.body["not_acted_on"], json!(["langfuse"]));
    let settings_route = get(&p, "/settings", MASTER).await;
    assert_eq!(settings_route.body, cb.body);

    let backlog = get(&p, "/health/backlog", MASTER).await;
    assert_eq!(backlog.status, 200, "{}", backlog.body);
    // This request is being answered.
    assert!(backlog.body["in_flight_requests"].as_u64().unwrap() >= 1);
    assert_eq!(backlog.body["queued_requests"], 0);
    assert_eq!(backlog.body["admitted_requests"], 0);

    // Admin routes: a plain key is refused.
    let (key, _) = generate(&p, json!({})).await;
    for route in [
        "/health/readiness/details",
        "/active/callbacks",
        "/settings",
        "/health/backlog",
    ] {
        let a = get(&p, route, &key).await;
        assert_eq!(a.status, 403, "{route}: {}", a.body);
    }
    // No key at all: 401.
    let a = send(client().get(p.url("/active/callbacks"))).await;
    assert_eq!(a.status, 401, "{}", a.body);
    // Any key: no shared health checks, no license.
    let shared = get(&p, "/health/shared-status", &key).await;
    assert_eq!(shared.status, 200, "{}", shared.body);
    assert_eq!(shared.body["shared_health_check_enabled"], false);
    let license = get(&p, "/health/license", &key).await;
    assert_eq!(license.body["has_license"], false, "{}", license.body);
    assert_eq!(license.body["license_type"], "community");
    assert_eq!(
        send(client().get(p.url("/health/license"))).await.status,
        401
    );
    // `/test` is public.
    let t = send(client().get(p.url("/test"))).await;
    assert_eq!(t.body, json!({"route": "/test"}));
    p.stop().await;

    // Public details when configured.
    let p = start_yaml(
        &place,
        "  allow_public_health_readiness_details: true\n",
        HashMap::new(),
    )
    .await;
    let public = send(client().get(p.url("/health/readiness"))).await;
    assert_eq!(public.status, 200, "{}", public.body);
    assert!(
        public.body["litellm_version"].is_string(),
        "{}",
        public.body
    );
    p.stop().await;
    place.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn services_test_what_is_configured() {
    let mut webhooks = Webhooks::start().await;
    let hooks = webhooks.base.clone();
    let place = Place::new(Backend::Sqlite);
    let env = HashMap::from([
        ("SLACK_WEBHOOK_URL".to_string(), format!("{hooks}/slack")),
        ("WEBHOOK_URL".to_string(), format!("{hooks}/webhook")),
        (
            "GENERIC_LOGGER_ENDPOINT".to_string(),
            format!("{hooks}/generic"),
        ),
        ("DEFAULT_BATCH_SIZE".to_string(), "1".to_string()),
        (
            "DEFAULT_FLUSH_INTERVAL_SECONDS".to_string(),
            "1".to_string(),
        ),
    ]);
    let p = start_yaml(
        &place,
        "  alerting: [slack, webhook]
  alert_types: [llm_exceptions]
litellm_settings:
  callbacks: [generic_api, langfuse]
",
        env,
    )
    .await;
    let (key, _) = generate(&p, json!({"key_alias": "plain"})).await;

    let slack = get(&p, "/health/services?service=slack", &key).await;
    assert_eq!(slack.status, 200, "{}", slack.body);
    assert_eq!(slack.body["status"], "success");
    assert_eq!(slack.body["alert_types"], json!(["llm_exceptions"]));
    let (name, body) = webhooks.next().await;
    assert_eq!(name, "slack");
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .contains("This is a test slack alert message"),
        "{body}"
    );

    // The webhook test is for proxy admins.
    let refused = get(&p, "/health/services?service=webhook", &key).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let hook = get(&p, "/health/services?service=webhook", MASTER).await;
    assert_eq!(hook.status, 200, "{}", hook.body);
    let (name, body) = webhooks.next().await;
    assert_eq!(name, "webhook");
    assert_eq!(body["event"], "budget_crossed");
    assert_eq!(body["event_group"], "key");

    let generic = get(&p, "/health/services?service=generic_api", &key).await;
    assert_eq!(generic.status, 200, "{}", generic.body);
    assert_eq!(
        generic.body["message"],
        "Mock LLM request made - check generic_api."
    );
    let (name, body) = webhooks.next().await;
    assert_eq!(name, "generic");
    let first = if body.is_array() { &body[0] } else { &body };
    assert_eq!(
        first["model"], "openai/litellm-mock-response-model",
        "{body}"
    );
    assert_eq!(first["end_user"], "litellm:/health/services", "{body}");
    // The mock call is not a call anyone made: no spend row.
    let rows = get(&p, "/spend/logs", MASTER).await;
    assert_eq!(rows.body, json!([]), "{}", rows.body);

    for (service, status, words) in [
        ("langfuse", 400, "does not build it"),
        ("datadog", 400, "is not configured as a callback"),
        ("nonsense", 400, "Service must be in list"),
        ("email", 400, "is not configured as a callback"),
    ] {
        let a = get(&p, &format!("/health/services?service={service}"), &key).await;
        assert_eq!(a.status.as_u16(), status, "{service}: {}", a.body);
        let (_, message) = error_of(&a);
        assert!(message.contains(words), "{service}: {message}");
    }
    let missing = get(&p, "/health/services", &key).await;
    assert_eq!(missing.status, 400, "{}", missing.body);
    p.stop().await;

    // Slack not among the alerting: 422 in LiteLLM's words.
    let p = start_yaml(&place, "", HashMap::new()).await;
    let a = get(&p, "/health/services?service=slack", MASTER).await;
    assert_eq!(a.status, 422, "{}", a.body);
    let (_, message) = error_of(&a);
    assert!(message.contains("not in proxy config"), "{message}");
    p.stop().await;
    place.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_connection_probes_one_deployment() {
    let up = FakeOpenAi::start().await;
    let place = Place::new(Backend::Sqlite);
    let p = start_yaml(&place, "", HashMap::new()).await;
    let test = |body: Value| {
        let p = &p;
        async move { post(p, "/health/test_connection", MASTER, body).await }
    };

    // A configured model, by its name, its litellm model, or its id.
    let a = test(json!({"litellm_params": {"model": "mocky"}})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["status"], "success", "{}", a.body);
    assert_eq!(a.body["result"]["model_name"], "mocky");
    let a = test(json!({"litellm_params": {"model": "openai/down-model"}, "mode": "chat"})).await;
    assert_eq!(a.body["status"], "error", "{}", a.body);
    assert_eq!(a.body["result"]["model_name"], "down");
    assert!(a.body["result"]["error"].is_string(), "{}", a.body);
    let id = a.body["result"]["model_id"].as_str().unwrap().to_string();
    let a = test(json!({"litellm_params": {}, "model_info": {"id": id}})).await;
    assert_eq!(a.body["status"], "error", "{}", a.body);
    assert_eq!(a.body["result"]["model_id"], id.as_str());
    // The configured key never appears in the answer.
    assert!(!a.body.to_string().contains("sk-down"), "{}", a.body);

    // A connection of its own, from the request alone.
    let own = json!({"litellm_params": {
        "model": "openai/gpt-4o-mini", "api_base": up.base_url(), "api_key": "sk-own"}});
    let a = test(own).await;
    assert_eq!(a.body["status"], "success", "{}", a.body);
    assert_eq!(a.body["result"]["model_name"], "test_model");
    assert!(!a.body.to_string().contains("sk-own"), "{}", a.body);
    let a = test(json!({"litellm_params": {
        "model": "openai/gpt-4o-mini", "api_base": "http://127.0.0.1:9/v1", "api_key": "sk-own"}}))
    .await;
    assert_eq!(a.body["status"], "error", "{}", a.body);

    // Refused: environment references, other modes, nothing named, non-admins.
    let a = test(json!({"litellm_params": {
        "model": "openai/x", "api_base": up.base_url(), "api_key": "os.environ/OPENAI_API_KEY"}}))
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(error_of(&a).1.contains("Environment variable references"));
    let a = test(json!({"litellm_params": {"model": "mocky"}, "mode": "image_generation"})).await;
    assert_eq!(a.status, 400, "{}", a.body);
    let a = test(json!({"mode": "chat"})).await;
    assert_eq!(a.status, 400, "{}", a.body);
    let (key, _) = generate(&p, json!({})).await;
    let a = post(
        &p,
        "/health/test_connection",
        &key,
        json!({"litellm_params": {"model": "mocky"}}),
    )
    .await;
    assert_eq!(a.status, 403, "{}", a.body);
    p.stop().await;
    place.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drain_takes_the_instance_out_of_rotation() {
    let place = Place::new(Backend::Sqlite);
    // Off unless enabled.
    let p = start_yaml(&place, "", HashMap::new()).await;
    let a = send(client().get(p.url("/health/drain"))).await;
    assert_eq!(a.status, 404, "{}", a.body);
    p.stop().await;

    let p = start_yaml(
        &place,
        "  enable_drain_endpoint: true\n  drain_endpoint_token: drain-s3cret\n",
        HashMap::new(),
    )
    .await;
    for token in [None, Some("wrong")] {
        let mut req = client().get(p.url("/health/drain"));
        if let Some(t) = token {
            req = req.header("x-drain-token", t);
        }
        let a = send(req).await;
        assert_eq!(a.status, 401, "{}", a.body);
        assert!(!a.body.to_string().contains("drain-s3cret"));
    }
    let live = send(client().get(p.url("/health/liveliness"))).await;
    assert_eq!(live.status, 200, "a refused drain changes nothing");
    let a = send(
        client()
            .get(p.url("/health/drain"))
            .header("x-drain-token", "drain-s3cret"),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["status"], "drained");
    assert_eq!(a.body["drained_requests"], 0);
    let live = send(client().get(p.url("/health/liveliness"))).await;
    assert_eq!(live.status, 503);
    let ready = send(client().get(p.url("/health/readiness"))).await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.body, json!({"status": "shutting_down"}));
    p.stop().await;
    place.cleanup().await;
}

/// The drain answers once the calls already running have been answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drain_waits_for_the_calls_in_flight() {
    let up = FakeOpenAi::start().await;
    let gate = Gate::new();
    up.push(Reply::text("late answer").held_by(&gate));
    let place = Place::new(Backend::Sqlite);
    let yaml = format!(
        "model_list:
  - model_name: held
    litellm_params:
      model: openai/held-model
      api_base: {}
      api_key: sk-up
general_settings:
  master_key: {MASTER}
  enable_drain_endpoint: true
",
        up.base_url()
    );
    let cfg = config_with(&yaml, HashMap::new());
    let s = settings(&cfg, &place);
    let p = start_with(cfg, s).await;
    let call_url = p.url("/v1/chat/completions");
    let call = tokio::spawn(async move {
        let a = send(
            client()
                .post(call_url)
                .bearer_auth(MASTER)
                .json(&store_support::chat("held")),
        )
        .await;
        (a, tokio::time::Instant::now())
    });
    // The call is at the upstream, held there.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while up.in_flight() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the call reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain_url = p.url("/health/drain");
    let drain = tokio::spawn(async move {
        let a = send(client().get(drain_url)).await;
        (a, tokio::time::Instant::now())
    });
    // Out of rotation at once, while the call still runs.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let live = send(client().get(p.url("/health/liveliness"))).await;
        if live.status == 503 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "liveness turned 503"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!drain.is_finished(), "the drain waits for the held call");
    gate.open();
    let (answer, answered_at) = call.await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    let (drained, drained_at) = drain.await.unwrap();
    assert_eq!(drained.status, 200, "{}", drained.body);
    assert_eq!(drained.body["status"], "drained");
    assert!(
        drained.body["drained_requests"].as_u64().unwrap() >= 1,
        "{}",
        drained.body
    );
    assert!(drained_at >= answered_at);
    p.stop().await;
    place.cleanup().await;
}

/// `/utils/supported_openai_params`: a translated provider's own list, an OpenAI-compatible
/// upstream's full one, LiteLLM's 400 for a name that maps to nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn supported_params_follow_the_provider() {
    let place = Place::new(Backend::Sqlite);
    let p = start_yaml(&place, "", HashMap::new()).await;
    let (key, _) = generate(&p, json!({})).await;
    let params = |model: &str| {
        let (p, key, model) = (&p, key.clone(), model.to_string());
        async move {
            get(
                p,
                &format!("/utils/supported_openai_params?model={model}"),
                &key,
            )
            .await
        }
    };
    let list = |a: &store_support::Answer| -> Vec<String> {
        a.body["supported_openai_params"]
            .as_array()
            .unwrap_or_else(|| panic!("{}", a.body))
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    // A configured OpenAI-compatible group: everything is passed on.
    let mocky = list(&params("mocky").await);
    for p in [
        "tools",
        "response_format",
        "logprobs",
        "seed",
        "user",
        "reasoning_effort",
    ] {
        assert!(mocky.contains(&p.to_string()), "{p}: {mocky:?}");
    }
    // Anthropic through the translation: what it maps, and not what it cannot.
    let claude = list(&params("anthropic/claude-3-5-haiku-20241022").await);
    assert!(claude.contains(&"tools".to_string()), "{claude:?}");
    assert!(!claude.contains(&"logprobs".to_string()), "{claude:?}");
    assert!(
        !claude.contains(&"reasoning_effort".to_string()),
        "{claude:?}"
    );
    let thinking = list(&params("anthropic/claude-sonnet-4-20250514").await);
    assert!(
        thinking.contains(&"reasoning_effort".to_string()),
        "{thinking:?}"
    );
    // A bare name the price list files under a provider.
    let haiku = list(&params("claude-haiku-4-5").await);
    assert!(!haiku.contains(&"logit_bias".to_string()), "{haiku:?}");
    assert!(haiku.contains(&"tool_choice".to_string()), "{haiku:?}");
    let gemini = list(&params("gemini/gemini-2.0-flash").await);
    assert!(gemini.contains(&"seed".to_string()), "{gemini:?}");
    assert!(!gemini.contains(&"logit_bias".to_string()), "{gemini:?}");
    let unknown = params("no-such-model-anywhere").await;
    assert_eq!(unknown.status, 400, "{}", unknown.body);
    assert!(
        error_of(&unknown)
            .1
            .contains("Could not map model=no-such-model-anywhere")
    );
    let none = send(client().get(p.url("/utils/supported_openai_params?model=mocky"))).await;
    assert_eq!(none.status, 401);
    // `/utils/model_info`: the price list's entry, served here or not (gpt-4o: 2.5 and 10 USD
    // a million tokens).
    let info = get(&p, "/utils/model_info?model=gpt-4o", &key).await;
    assert_eq!(info.status, 200, "{}", info.body);
    assert_eq!(info.body["custom_llm_provider"], "openai");
    let mi = &info.body["model_info"];
    assert!(
        (mi["input_cost_per_token"].as_f64().unwrap() - 2.5e-6).abs() < 1e-15,
        "{mi}"
    );
    assert!(
        (mi["output_cost_per_token"].as_f64().unwrap() - 1e-5).abs() < 1e-15,
        "{mi}"
    );
    assert_eq!(mi["max_input_tokens"], 128000);
    assert_eq!(mi["mode"], "chat");
    assert!(
        mi["supported_openai_params"]
            .as_array()
            .unwrap()
            .contains(&json!("logprobs")),
        "{mi}"
    );
    let claude = get(
        &p,
        "/utils/model_info?model=claude-haiku-4-5&custom_llm_provider=anthropic",
        &key,
    )
    .await;
    assert_eq!(claude.status, 200, "{}", claude.body);
    assert!(claude.body["model_info"]["supported_openai_params"].is_array());
    let unknown = get(&p, "/utils/model_info?model=no-such-model", &key).await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert!(
        error_of(&unknown)
            .1
            .contains("is not in the model cost map")
    );
    p.stop().await;
    place.cleanup().await;
}

/// The ids `/v1/models` lists (master key).
async fn listed(p: &Proxy, query: &str) -> Vec<String> {
    let a = get(p, &format!("/v1/models{query}"), MASTER).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let mut ids: Vec<String> = a.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// Until the background checks have run: `down` is then known unhealthy.
async fn wait_for_background_results(p: &Proxy, query: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while listed(p, query).await.contains(&"down".to_string()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the background check did not mark `down` unhealthy within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `general_settings.model_list_healthy_only` (and `?healthy_only=true` per request): the model
/// listings leave out a group whose every deployment failed the latest background check; the
/// group stays callable, and without the setting or the parameter nothing is hidden.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listings_hide_models_that_failed_their_background_checks_when_asked() {
    let checks = "  background_health_checks: true\n  health_check_interval: 0.1\n";
    let place = Place::new(Backend::Sqlite);
    let p = start_yaml(
        &place,
        &format!("{checks}  model_list_healthy_only: true\n"),
        HashMap::new(),
    )
    .await;
    wait_for_background_results(&p, "").await;
    assert_eq!(listed(&p, "").await, ["mocky"]);
    let one = get(&p, "/v1/models/down", MASTER).await;
    assert_eq!(one.status, 404, "{}", one.body);
    assert_eq!(get(&p, "/v1/models/mocky", MASTER).await.status, 200);
    let info = get(&p, "/model/info", MASTER).await;
    let names: Vec<&str> = info.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["model_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["mocky"], "{}", info.body);
    // Hidden, not removed: a call still goes to it (and fails on its dead upstream).
    let call = post(
        &p,
        "/v1/chat/completions",
        MASTER,
        json!({"model": "down", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_ne!(call.status, 404, "{}", call.body);
    assert!(call.status.is_server_error(), "{}", call.body);
    p.stop().await;

    // Without the setting: everything is listed, unless a request asks.
    let place = Place::new(Backend::Sqlite);
    let p = start_yaml(&place, checks, HashMap::new()).await;
    wait_for_background_results(&p, "?healthy_only=true").await;
    assert_eq!(listed(&p, "").await, ["down", "mocky"]);
    assert_eq!(listed(&p, "?healthy_only=true").await, ["mocky"]);
    p.stop().await;
}
