#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! LiteLLM's provider budget routing through HTTP: `router_settings.provider_budget_config`,
//! a deployment's `max_budget` with `budget_duration`, and `litellm_settings.tag_budget_config`.
//! A spent budget takes its deployments out of routing (the group's others answer, then its
//! fallbacks), a group left with none is refused in LiteLLM's words, `/provider/budgets`
//! shows the spend, which is the sum of the rows and survives a restart. SQLite and Postgres,
//! and a fleet sharing Redis.

mod store_support;

use serde_json::{Value, json};
use store_support::{
    Answer, Backend, MASTER, Place, Proxy, cost_of, error_of, generate, get, post, redis_url,
    spend_rows,
};

/// Every deployment is a priced mock: a bounded call (`call`) costs about 1.7e-5 USD, more than
/// each budget (1e-5), so one call spends one.
fn yaml(extra_general: &str, extra: &str) -> String {
    let price = "input_cost_per_token: 0.000001\n      output_cost_per_token: 0.000002";
    format!(
        "model_list:
  - model_name: chat
    litellm_params:
      model: openai/gpt-a
      mock_response: Hello from openai
      {price}
    model_info: {{id: chat-openai}}
  - model_name: chat
    litellm_params:
      model: anthropic/claude-b
      mock_response: Hello from anthropic
      {price}
    model_info: {{id: chat-anthropic}}
  - model_name: solo
    litellm_params:
      model: openai/solo
      mock_response: Hello from solo
      {price}
    model_info: {{id: solo-1}}
  - model_name: spill
    litellm_params:
      model: openai/spill
      mock_response: Hello from spill
      {price}
    model_info: {{id: spill-1}}
  - model_name: own
    litellm_params:
      model: hosted_vllm/own
      api_base: http://127.0.0.1:9/v1
      mock_response: Hello from own
      max_budget: 0.00001
      budget_duration: 1d
      {price}
    model_info: {{id: own-1}}
general_settings:
  master_key: {MASTER}
{extra_general}router_settings:
  fallbacks: [{{spill: [chat]}}]
  provider_budget_config:
    openai: {{budget_limit: 0.00001, time_period: 1d}}
{extra}litellm_settings:
  tag_budget_config:
    tight: {{max_budget: 0.00001, budget_duration: 1d}}
"
    )
}

async fn start(place: &Place) -> Proxy {
    let cfg = store_support::config(&yaml("", ""));
    let s = store_support::settings(&cfg, place);
    store_support::start_with(cfg, s).await
}

fn call(model: &str) -> Value {
    json!({"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": "Say hi"}]})
}

fn model_id(a: &Answer) -> &str {
    a.headers["x-litellm-model-id"].to_str().unwrap()
}

/// `/provider/budgets`' entry for openai.
async fn openai_budget(p: &Proxy, key: &str) -> Value {
    let a = get(p, "/provider/budgets", key).await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["providers"]["openai"].clone()
}

async fn a_spent_provider_is_passed_over_and_then_refused(b: Backend) {
    let place = Place::new(b);
    let p = start(&place).await;
    let (key, _) = generate(&p, json!({})).await;
    let before = openai_budget(&p, &key).await;
    assert_eq!(before["spend"], 0.0, "{before}");
    assert_eq!(before["budget_limit"], 0.00001);
    assert_eq!(before["time_period"], "1d");
    assert!(before["budget_reset_at"].is_string(), "{before}");

    let first = post(&p, "/v1/chat/completions", &key, call("solo")).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let spent = cost_of(&first);
    assert!(spent > 0.00001, "one call spends the budget: {spent}");

    // openai is spent: its only deployment of `solo` is passed over, and nothing is left.
    let refused = post(&p, "/v1/chat/completions", &key, call("solo")).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    let (kind, msg) = error_of(&refused);
    assert_eq!(kind, "budget_exceeded");
    assert!(
        msg.starts_with(
            "No deployments available - crossed budget: Exceeded budget for provider openai: "
        ),
        "{msg}"
    );
    assert!(msg.ends_with(">= 1e-05"), "{msg}");
    // The group's other provider answers every call; a group with fallbacks falls back.
    for _ in 0..4 {
        let a = post(&p, "/v1/chat/completions", &key, call("chat")).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(model_id(&a), "chat-anthropic");
    }
    let spilled = post(&p, "/v1/chat/completions", &key, call("spill")).await;
    assert_eq!(spilled.status, 200, "{}", spilled.body);
    assert_eq!(model_id(&spilled), "chat-anthropic");
    assert_eq!(spilled.headers["x-litellm-attempted-fallbacks"], "1");

    // One row per call, refused or answered; openai's spend is its rows'.
    let rows = spend_rows(&p, "", 7).await;
    assert_eq!(rows.len(), 7);
    let openai_rows: f64 = rows
        .iter()
        .filter(|r| r["custom_llm_provider"] == "openai")
        .map(|r| r["spend"].as_f64().unwrap())
        .sum();
    assert!(
        (openai_rows - spent).abs() < 1e-12,
        "{openai_rows} vs {spent}"
    );
    let after = openai_budget(&p, &key).await;
    assert!(
        (after["spend"].as_f64().unwrap() - spent).abs() < 1e-12,
        "{after}"
    );
    let window = after["budget_reset_at"].clone();
    // Prometheus shows what is left of it (nothing: the call went past it).
    let scrape = get(&p, "/metrics", MASTER).await;
    let text = scrape.body.as_str().unwrap_or_default();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("litellm_provider_remaining_budget_metric{api_provider=\"openai\"}")
        })
        .unwrap_or_else(|| panic!("no provider budget gauge in {text}"));
    let left: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((left - (0.00001 - spent)).abs() < 1e-12, "{line}");

    // The spend and its window outlive the process.
    p.stop().await;
    let p = start(&place).await;
    let again = post(&p, "/v1/chat/completions", &key, call("solo")).await;
    assert_eq!(again.status, 422, "{}", again.body);
    let restarted = openai_budget(&p, MASTER).await;
    assert!(
        (restarted["spend"].as_f64().unwrap() - spent).abs() < 1e-12,
        "{restarted}"
    );
    assert_eq!(restarted["budget_reset_at"], window);
    p.stop().await;
    place.cleanup().await;
}

async fn deployment_and_tag_budgets_bound_their_calls(b: Backend) {
    let place = Place::new(b);
    let clock = store_support::clock_at_minute_start();
    let cfg = store_support::config(&yaml("", ""));
    let mut s = store_support::settings(&cfg, &place);
    s.ledger.clock = clock.clone();
    let p = store_support::start_with(cfg, s).await;
    let (key, _) = generate(&p, json!({})).await;
    let first = post(&p, "/v1/chat/completions", &key, call("own")).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let over = post(&p, "/v1/chat/completions", &key, call("own")).await;
    assert_eq!(over.status, 422, "{}", over.body);
    let msg = error_of(&over).1;
    assert!(
        msg.starts_with(
            "No deployments available - crossed budget: Exceeded budget for deployment model_name: own, litellm_params.model: hosted_vllm/own, model_id: own-1: "
        ),
        "{msg}"
    );
    assert!(msg.ends_with(">= 1e-05"), "{msg}");
    // A new window, a new budget: a day on (the window is `1d`), the deployment answers again.
    clock.advance(std::time::Duration::from_secs(86_400 + 1));
    let next_day = post(&p, "/v1/chat/completions", &key, call("own")).await;
    assert_eq!(next_day.status, 200, "{}", next_day.body);

    // A tag's budget bounds the calls that carry it, on whichever deployment.
    let tagged = |n: u32| {
        json!({"model": "chat", "max_tokens": 50, "metadata": {"tags": ["tight"]},
               "messages": [{"role": "user", "content": format!("Say hi {n}")}]})
    };
    let first = post(&p, "/v1/chat/completions", &key, tagged(1)).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let over = post(&p, "/v1/chat/completions", &key, tagged(2)).await;
    assert_eq!(over.status, 422, "{}", over.body);
    let msg = error_of(&over).1;
    assert!(
        msg.contains("Exceeded budget for tag='tight', tag_spend="),
        "{msg}"
    );
    assert!(msg.contains("tag_budget_limit=1e-05"), "{msg}");
    let untagged = post(&p, "/v1/chat/completions", &key, call("chat")).await;
    assert_eq!(untagged.status, 200, "{}", untagged.body);
    // The master key's calls count too.
    let master = post(&p, "/v1/chat/completions", MASTER, tagged(3)).await;
    assert_eq!(master.status, 422, "{}", master.body);
    assert_eq!(spend_rows(&p, "", 7).await.len(), 7);
    p.stop().await;
    place.cleanup().await;
}

both_backends!(
    a_spent_provider_is_passed_over_and_then_refused,
    deployment_and_tag_budgets_bound_their_calls,
);

/// Two instances on one Postgres schema and one Redis: calls at once on both never spend more
/// than one call past the provider's budget, and both see the same spend, the rows' sum.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fleet_shares_provider_budgets() {
    let place = Place::new(Backend::Postgres);
    let prefix = format!("t{}:", uuid::Uuid::new_v4().simple());
    let yaml = yaml(
        &format!("  redis_key_prefix: \"{prefix}\"\n  redis_failure_mode: closed\n"),
        &format!("  redis_url: {}\n", redis_url()),
    );
    let instance = || async {
        let cfg = store_support::config(&yaml);
        let s = store_support::settings(&cfg, &place);
        assert!(s.redis.is_some(), "redis configured");
        store_support::start_with(cfg, s).await
    };
    let (a, b) = (instance().await, instance().await);
    let (key, _) = generate(&a, json!({})).await;
    let http = store_support::client();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let url = if i % 2 == 0 { a.url("") } else { b.url("") };
        let req = http
            .post(format!("{url}/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&call("solo"));
        tasks.push(tokio::spawn(store_support::send(req)));
    }
    let mut answered = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        match r.status.as_u16() {
            200 => answered.push(cost_of(&r)),
            422 => assert!(
                error_of(&r)
                    .1
                    .contains("Exceeded budget for provider openai"),
                "{}",
                r.body
            ),
            other => panic!("unexpected {other}: {}", r.body),
        }
    }
    assert!(!answered.is_empty());
    let spent: f64 = answered.iter().sum();
    // Each call holds its estimate while it runs: the last one admitted may pass the budget.
    assert!(
        spent <= 0.00001 + answered[0] + 1e-12,
        "{} calls answered, {spent} USD",
        answered.len()
    );
    let rows = spend_rows(&a, "", 40).await;
    let by_rows: f64 = rows.iter().map(|r| r["spend"].as_f64().unwrap()).sum();
    assert!((by_rows - spent).abs() < 1e-12, "{by_rows} vs {spent}");
    for p in [&a, &b] {
        let seen = openai_budget(p, MASTER).await;
        assert!(
            (seen["spend"].as_f64().unwrap() - spent).abs() < 1e-12,
            "{seen} vs {spent}"
        );
    }
    // Spent on one instance is spent on the other.
    let later = post(&b, "/v1/chat/completions", &key, call("solo")).await;
    assert_eq!(later.status, 422, "{}", later.body);
    a.stop().await;
    b.stop().await;
    place.cleanup().await;
}

/// `/provider/budgets` without provider budgets is a 400 in LiteLLM's words; unknown keys are
/// refused as on any route.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn provider_budgets_route_without_budgets_or_key() {
    let place = Place::new(Backend::Sqlite);
    let p = store_support::start(&place, "").await;
    let none = get(&p, "/provider/budgets", MASTER).await;
    assert_eq!(none.status, 400, "{}", none.body);
    assert!(
        error_of(&none)
            .1
            .starts_with("No provider budget config found."),
        "{}",
        none.body
    );
    let stranger = get(&p, "/provider/budgets", "sk-not-a-key").await;
    assert_eq!(stranger.status, 401, "{}", stranger.body);
    p.stop().await;
}
