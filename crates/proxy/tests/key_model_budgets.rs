#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A key's per-model budgets (LiteLLM's `model_max_budget`): calls to a model stop when the
//! key's spend on it reaches the entry's limit (by name, access group or glob), other models
//! go on; the entry's spend is the sum of its rows and survives a restart and a
//! regeneration; an update applies at once. And per-model rate limits (`model_rpm_limit`,
//! `model_tpm_limit`). SQLite and Postgres.

mod store_support;

use idlehands_store::key_model_budgets::entity;
use idlehands_store::keygen::hash_key;
use serde_json::{Value, json};
use store_support::{
    Backend, MASTER, Place, Proxy, chat, close, config, error_of, generate, get, post, settings,
    spend_rows, start_with,
};

const MODELS: &str = "model_list:
  - model_name: mocky
    litellm_params:
      model: openai/mock-model
      mock_response: Hello from the mock deployment
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000002
  - model_name: other
    litellm_params:
      model: openai/other-model
      mock_response: Hello from the other deployment
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000002
    model_info:
      access_groups: [beta-group]
  - model_name: claude-x
    litellm_params:
      model: anthropic/claude-x
      mock_response: Hello from claude
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000002
general_settings:
  master_key: sk-store-master-0001
";

async fn up(place: &Place) -> Proxy {
    let cfg = config(MODELS);
    let s = settings(&cfg, place);
    start_with(cfg, s).await
}

async fn call(p: &Proxy, key: &str, model: &str) -> store_support::Answer {
    post(p, "/v1/chat/completions", key, chat(model)).await
}

/// The spend of the key's rows on a model group, from `/spend/logs`.
fn spend_on(rows: &[Value], token: &str, group: &str) -> f64 {
    rows.iter()
        .filter(|r| r["api_key"] == token && r["model_group"] == group)
        .map(|r| r["spend"].as_f64().unwrap())
        .sum()
}

async fn entry_spend(place: &Place, token: &str, entry: &str) -> Option<f64> {
    let store = place.open_store().await;
    let b = store.get_budget(&entity(token, entry)).await.unwrap();
    store.close().await;
    b.map(|b| b.spend as f64 / 1e9)
}

async fn per_model_budgets(b: Backend) {
    let place = Place::new(b);
    let p = up(&place).await;
    let budgets = json!({
        "mocky": {"budget_limit": 0.00001, "time_period": "1d"},
        "beta-group": {"budget_limit": 1.0},
        "claude-*": {"max_budget": 0.0},
    });
    let (key, made) = generate(&p, json!({"model_max_budget": budgets, "key_alias": "kb"})).await;
    assert_eq!(made["model_max_budget"], budgets);
    assert!(made.get("ignored_fields").is_none(), "{made}");
    let token = hash_key(&key);

    // Under its budget, then over it: refused with LiteLLM's text; other models go on.
    assert_eq!(call(&p, &key, "mocky").await.status, 200);
    let a = call(&p, &key, "mocky").await;
    assert!(a.status.is_client_error(), "{}", a.body);
    let (kind, message) = error_of(&a);
    assert_eq!(kind, "budget_exceeded");
    assert_eq!(
        message,
        format!("LiteLLM Virtual Key: {token}, key_alias: kb, exceeded budget for model=mocky")
    );
    assert_eq!(
        call(&p, &key, "other").await.status,
        200,
        "beta-group's budget"
    );
    assert_eq!(call(&p, &key, "other").await.status, 200);
    // A zero budget by glob refuses at once, naming the entry.
    let a = call(&p, &key, "claude-x").await;
    assert!(a.status.is_client_error(), "{}", a.body);
    assert!(
        error_of(&a)
            .1
            .ends_with("exceeded budget for model=claude-x, budget_model=claude-*"),
        "{}",
        a.body
    );
    // A key without model budgets is not affected.
    let (free, _) = generate(&p, json!({})).await;
    assert_eq!(call(&p, &free, "mocky").await.status, 200);

    // Each entry's spend is the sum of its rows (the refused calls' rows cost nothing).
    let rows = spend_rows(&p, "", 6).await;
    assert_eq!(
        rows.len(),
        6,
        "every call has its row, the refused ones too"
    );
    let mocky = spend_on(&rows, &token, "mocky");
    let other = spend_on(&rows, &token, "other");
    // `/key/info` shows each entry's window, as LiteLLM does.
    let a = get(&p, &format!("/key/info?key={key}"), MASTER).await;
    let usage = &a.body["info"]["model_max_budget_usage"];
    let four = |x: f64| format!("{x:.4}").parse::<f64>().unwrap();
    assert_eq!(
        usage["mocky"]["current_spend"],
        json!(four(mocky)),
        "{usage}"
    );
    assert_eq!(usage["mocky"]["budget_limit"], json!(0.00001));
    assert_eq!(usage["mocky"]["time_period"], "1d");
    assert!(usage["mocky"]["budget_reset_at"].is_string(), "{usage}");
    assert_eq!(usage["beta-group"]["current_spend"], json!(four(other)));
    assert_eq!(usage["beta-group"]["budget_reset_at"], Value::Null);
    let a = get(&p, &format!("/key/info?key={free}"), MASTER).await;
    assert!(
        a.body["info"].get("model_max_budget_usage").is_none(),
        "{}",
        a.body
    );
    p.stop().await;
    assert!(mocky > 0.00001 && other > 0.0, "{mocky} {other}");
    assert!(close(
        entry_spend(&place, &token, "mocky").await.unwrap(),
        mocky
    ));
    assert!(close(
        entry_spend(&place, &token, "beta-group").await.unwrap(),
        other
    ));
    assert!(close(
        entry_spend(&place, &token, "claude-*").await.unwrap(),
        0.0
    ));

    // Kept across a restart; a higher limit applies at once; an entry removed goes away.
    let p = up(&place).await;
    assert!(call(&p, &key, "mocky").await.status.is_client_error());
    let raised = json!({"mocky": {"budget_limit": 1.0, "time_period": "1d"}});
    let a = post(
        &p,
        "/key/update",
        MASTER,
        json!({"key": key, "model_max_budget": raised}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(call(&p, &key, "mocky").await.status, 200);
    assert_eq!(
        call(&p, &key, "claude-x").await.status,
        200,
        "its entry is gone"
    );
    p.stop().await;
    assert_eq!(entry_spend(&place, &token, "claude-*").await, None);
    assert!(
        entry_spend(&place, &token, "mocky").await.unwrap() > mocky,
        "the window kept"
    );

    // Regenerated, the key keeps its entries' spend; deleted, they go.
    let p = up(&place).await;
    let low = json!({"mocky": {"budget_limit": 0.00001, "time_period": "1d"}});
    let a = post(
        &p,
        "/key/update",
        MASTER,
        json!({"key": key, "model_max_budget": low}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(call(&p, &key, "mocky").await.status.is_client_error());
    let a = post(&p, "/key/regenerate", MASTER, json!({"key": key})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let renewed = a.body["key"].as_str().unwrap().to_owned();
    assert!(call(&p, &renewed, "mocky").await.status.is_client_error());
    assert_eq!(call(&p, &renewed, "other").await.status, 200);
    let new_token = hash_key(&renewed);
    let a = get(&p, &format!("/key/info?key={renewed}"), MASTER).await;
    assert_eq!(a.body["info"]["model_max_budget"], low);
    p.stop().await;
    assert_eq!(entry_spend(&place, &token, "mocky").await, None);
    assert!(entry_spend(&place, &new_token, "mocky").await.unwrap() > mocky);
    let p = up(&place).await;
    let a = post(&p, "/key/delete", MASTER, json!({"keys": [renewed]})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    p.stop().await;
    assert_eq!(entry_spend(&place, &new_token, "mocky").await, None);

    // What is refused, naming the entry.
    let p = up(&place).await;
    for (bad, says) in [
        (
            json!({"mocky": 5}),
            "model_max_budget.mocky: must be an object",
        ),
        (
            json!({"mocky": {"time_period": "1d"}}),
            "budget_limit is required",
        ),
        (
            json!({"mocky": {"budget_limit": 1, "tpm": 5}}),
            "unknown field",
        ),
    ] {
        let a = post(
            &p,
            "/key/generate",
            MASTER,
            json!({"model_max_budget": bad}),
        )
        .await;
        assert_eq!(a.status, 400, "{}", a.body);
        assert!(error_of(&a).1.contains(says), "{}", a.body);
    }
    p.stop().await;
    place.cleanup().await;
}

async fn per_model_rate_limits(b: Backend) {
    let place = Place::new(b);
    let p = up(&place).await;
    let (key, made) = generate(
        &p,
        json!({"model_rpm_limit": {"mocky": 2}, "model_tpm_limit": {"other": 1}}),
    )
    .await;
    // Kept in the key's metadata, as LiteLLM keeps them.
    assert_eq!(made["metadata"]["model_rpm_limit"], json!({"mocky": 2}));
    assert!(made.get("ignored_fields").is_none(), "{made}");
    let token = hash_key(&key);
    assert_eq!(call(&p, &key, "mocky").await.status, 200);
    assert_eq!(call(&p, &key, "mocky").await.status, 200);
    let a = call(&p, &key, "mocky").await;
    assert_eq!(a.status, 429, "{}", a.body);
    let (kind, message) = error_of(&a);
    assert_eq!(kind, "rate_limit_error");
    assert!(
        message.starts_with(&format!(
            "Rate limit exceeded for model_per_key: {token}:mocky. Limit type: requests. Current limit: 2, Remaining: 0."
        )),
        "{message}"
    );
    assert!(a.headers.contains_key("retry-after"), "{:?}", a.headers);
    // Tokens: the first call fits, the next finds the minute's tokens spent.
    assert_eq!(call(&p, &key, "other").await.status, 200);
    let a = call(&p, &key, "other").await;
    assert_eq!(a.status, 429, "{}", a.body);
    assert!(
        error_of(&a).1.contains(
            "model_per_key: {token}:other. Limit type: tokens"
                .replace("{token}", &token)
                .as_str()
        ),
        "{}",
        a.body
    );
    // Models without a limit go on.
    assert_eq!(call(&p, &key, "claude-x").await.status, 200);
    // An update applies at once: raised, and removed.
    let a = post(
        &p,
        "/key/update",
        MASTER,
        json!({"key": key, "model_rpm_limit": {"mocky": 10}}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(call(&p, &key, "mocky").await.status, 200);
    let a = post(
        &p,
        "/key/update",
        MASTER,
        json!({"key": key, "model_tpm_limit": null}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        a.body["metadata"].get("model_tpm_limit").is_none(),
        "{}",
        a.body
    );
    assert_eq!(call(&p, &key, "other").await.status, 200);
    // Without a map of its own, a key's limits come from its model_max_budget entries, then
    // from its team's metadata (LiteLLM's order); a team's change applies at once.
    let (by_entry, _) = generate(
        &p,
        json!({"model_max_budget": {"claude-x": {"rpm_limit": 1}}}),
    )
    .await;
    assert_eq!(call(&p, &by_entry, "claude-x").await.status, 200);
    let a = call(&p, &by_entry, "claude-x").await;
    assert_eq!(a.status, 429, "{}", a.body);
    let entry_token = hash_key(&by_entry);
    assert!(
        error_of(&a)
            .1
            .contains(&format!("model_per_key: {entry_token}:claude-x")),
        "{}",
        a.body
    );
    let a = post(
        &p,
        "/team/new",
        MASTER,
        json!({"team_id": "rt", "metadata": {"model_rpm_limit": {"other": 1}}}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let (in_team, _) = generate(&p, json!({"team_id": "rt"})).await;
    assert_eq!(call(&p, &in_team, "other").await.status, 200);
    assert_eq!(call(&p, &in_team, "other").await.status, 429);
    let a = post(
        &p,
        "/team/update",
        MASTER,
        json!({"team_id": "rt", "metadata": {"model_rpm_limit": {"other": 5}}}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(call(&p, &in_team, "other").await.status, 200);
    let a = post(
        &p,
        "/key/generate",
        MASTER,
        json!({"model_rpm_limit": {"mocky": -1}}),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(
        error_of(&a).1.contains("model_rpm_limit.mocky"),
        "{}",
        a.body
    );
    p.stop().await;
    place.cleanup().await;
}

both_backends!(per_model_budgets, per_model_rate_limits);
