#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `POST /reload/model_cost_map` and `GET /model/cost_map/source`: the prices fetched from a
//! price list served over real HTTP on loopback (as LiteLLM's file is served from GitHub)
//! reprice the next call at once; a list that cannot be read or trusted keeps the prices in
//! use; `LITELLM_LOCAL_MODEL_COST_MAP=True` reloads the built-in copy; only proxy admins
//! reload; in a fleet (Postgres and Redis) the other instance reprices too.

mod store_support;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::IntoResponse;
use idlehands_proxy::ProxyConfig;
use parking_lot::Mutex;
use serde_json::{Value, json};
use store_support::{Backend, MASTER, Place, generate, get, post, redis_url, settings, start_with};

/// What the price-list server answers: a body and its ETag; and how many times it was fetched.
type Served = Arc<Mutex<(String, Option<&'static str>, usize)>>;

/// A loopback HTTP server answering every GET with what `served` holds now.
async fn price_server(served: Served) -> String {
    let app = axum::Router::new()
        .route(
            "/model_prices_and_context_window.json",
            axum::routing::get(|State(s): State<Served>| async move {
                let (body, etag) = {
                    let mut served = s.lock();
                    served.2 += 1;
                    (served.0.clone(), served.1)
                };
                let mut resp = body.into_response();
                if let Some(e) = etag {
                    resp.headers_mut()
                        .insert("etag", HeaderValue::from_static(e));
                }
                resp
            }),
        )
        .with_state(served);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/model_prices_and_context_window.json")
}

/// A price list in LiteLLM's format: `models` made-up chat models, and `gpt-4o-mini` at
/// `input`/`output` USD a token.
fn price_list(models: usize, input: f64, output: f64) -> String {
    let mut list = serde_json::Map::new();
    for i in 0..models {
        list.insert(
            format!("made-up-model-{i}"),
            json!({"litellm_provider": "openai", "mode": "chat",
                   "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}),
        );
    }
    list.insert(
        "gpt-4o-mini".into(),
        json!({"litellm_provider": "openai", "mode": "chat", "max_input_tokens": 128000,
               "input_cost_per_token": input, "output_cost_per_token": output}),
    );
    Value::Object(list).to_string()
}

const YAML: &str = "model_list:
  - model_name: mini
    litellm_params:
      model: openai/gpt-4o-mini
      mock_response: Hello from the mock deployment
general_settings:
  master_key: sk-store-master-0001
";

fn config(env: &[(&str, &str)]) -> ProxyConfig {
    config_of(YAML, env)
}

fn config_of(yaml: &str, env: &[(&str, &str)]) -> ProxyConfig {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
    ProxyConfig::from_yaml(yaml, "config.yaml", &move |k: &str| env.get(k).cloned())
        .expect("config loads")
}

/// A call's cost as its header says, and what its usage comes to at `input`/`output`.
async fn call(p: &store_support::Proxy, input: f64, output: f64) -> (f64, f64) {
    let a = post(
        p,
        "/v1/chat/completions",
        MASTER,
        json!({"model": "mini", "messages": [{"role": "user", "content": "Say hi"}]}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let charged: f64 = store_support::cost_of(&a);
    let usage = &a.body["usage"];
    let expected = usage["prompt_tokens"].as_f64().unwrap() * input
        + usage["completion_tokens"].as_f64().unwrap() * output;
    (charged, expected)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= b.abs() * 1e-6 + 1e-12
}

#[tokio::test]
async fn reloaded_prices_price_the_next_call() {
    let served: Served = Arc::new(Mutex::new((
        price_list(2000, 1e-3, 2e-3),
        Some("\"v1\""),
        0,
    )));
    let url = price_server(served.clone()).await;
    let place = Place::new(Backend::Sqlite);
    let cfg = config(&[("LITELLM_MODEL_COST_MAP_URL", &url)]);
    let s = settings(&cfg, &place);
    let p = start_with(cfg, s).await;

    // At start: the built-in copy, nothing fetched.
    let src = get(&p, "/model/cost_map/source", MASTER).await;
    assert_eq!(src.status, 200, "{}", src.body);
    assert_eq!(src.body["source"], "local");
    assert_eq!(src.body["url"], Value::Null);
    assert_eq!(src.body["is_env_forced"], false);
    let builtin_count = src.body["model_count"].as_u64().unwrap();
    assert!(builtin_count > 2000, "{}", src.body);
    let (before, builtin_cost) = call(&p, 0.15e-6, 0.6e-6).await;
    assert!(close(before, builtin_cost), "{before} vs {builtin_cost}");

    // Only proxy admins reload.
    let (user_key, _) = generate(&p, json!({})).await;
    let refused = post(&p, "/reload/model_cost_map", &user_key, json!({})).await;
    assert_eq!(refused.status, 403, "{}", refused.body);

    let done = post(&p, "/reload/model_cost_map", MASTER, json!({})).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.body["status"], "success");
    assert_eq!(done.body["source"], "remote");
    assert_eq!(done.body["url"], url.as_str());
    assert_eq!(done.body["etag"], "\"v1\"");
    let count = done.body["models_count"].as_u64().unwrap();
    assert_eq!(count, builtin_count + 2000, "{}", done.body);
    assert_eq!(
        done.body["message"],
        format!("Price data reloaded successfully! {count} models updated.")
    );
    // The next call is priced by the fetched list, and so is what the catalog shows.
    let (charged, expected) = call(&p, 1e-3, 2e-3).await;
    assert!(close(charged, expected), "{charged} vs {expected}");
    assert!(charged > before * 100.0, "{charged} vs {before}");
    let info = get(&p, "/model/info", MASTER).await;
    assert_eq!(
        info.body["data"][0]["model_info"]["input_cost_per_token"], 1e-3,
        "{}",
        info.body
    );
    let src = get(&p, "/model/cost_map/source", MASTER).await;
    assert_eq!(
        (&src.body["source"], &src.body["url"], &src.body["etag"]),
        (&json!("remote"), &json!(url), &json!("\"v1\""))
    );

    // Lists that cannot be trusted or read change nothing.
    for (body, why) in [
        (price_list(10, 9e-3, 9e-3), "fewer than half"),
        ("<html>rate limited</html>".to_string(), "not valid JSON"),
        (
            "[1, 2]".to_string(),
            "expected a JSON object keyed by model name",
        ),
    ] {
        *served.lock() = (body, None, 0);
        let failed = post(&p, "/reload/model_cost_map", MASTER, json!({})).await;
        assert_eq!(failed.status, 502, "{}", failed.body);
        let message = failed.body["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("Failed to reload model cost map: "),
            "{message}"
        );
        assert!(message.contains(why), "{message}");
        assert!(
            message.ends_with("Current pricing data was kept."),
            "{message}"
        );
        let (charged, expected) = call(&p, 1e-3, 2e-3).await;
        assert!(close(charged, expected), "{why}: {charged} vs {expected}");
    }
    p.stop().await;

    // With LITELLM_LOCAL_MODEL_COST_MAP=True the built-in copy is reloaded, nothing fetched.
    *served.lock() = (price_list(2000, 5e-3, 5e-3), None, 0);
    let cfg = config(&[
        ("LITELLM_MODEL_COST_MAP_URL", &url),
        ("LITELLM_LOCAL_MODEL_COST_MAP", "True"),
    ]);
    let s = settings(&cfg, &place);
    let p = start_with(cfg, s).await;
    let done = post(&p, "/reload/model_cost_map", MASTER, json!({})).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.body["source"], "local");
    assert_eq!(done.body["url"], Value::Null);
    let (charged, _) = call(&p, 0.15e-6, 0.6e-6).await;
    assert!(close(charged, before), "{charged} vs {before}");
    let src = get(&p, "/model/cost_map/source", MASTER).await;
    assert_eq!(src.body["is_env_forced"], true);
    p.stop().await;
    place.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reload_reprices_every_instance_of_a_fleet() {
    let served: Served = Arc::new(Mutex::new((price_list(2000, 1e-3, 2e-3), None, 0)));
    let url = price_server(served.clone()).await;
    let place = Place::new(Backend::Postgres);
    let prefix = format!("t{}:", uuid::Uuid::new_v4().simple());
    let yaml = format!(
        "{YAML}  redis_key_prefix: \"{prefix}\"
  redis_failure_mode: closed
router_settings:
  redis_url: {}
",
        redis_url()
    );
    let start = || async {
        let cfg = config_of(&yaml, &[("LITELLM_MODEL_COST_MAP_URL", &url)]);
        let s = settings(&cfg, &place);
        assert!(s.redis.is_some(), "redis configured");
        start_with(cfg, s).await
    };
    let (a, b) = (start().await, start().await);
    let (before, builtin) = call(&b, 0.15e-6, 0.6e-6).await;
    assert!(close(before, builtin), "{before} vs {builtin}");
    let done = post(&a, "/reload/model_cost_map", MASTER, json!({})).await;
    assert_eq!(done.status, 200, "{}", done.body);
    // B hears of it and reloads from its own source.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (charged, expected) = call(&b, 1e-3, 2e-3).await;
        if close(charged, expected) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the other instance still charges {charged}, not {expected}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let src = get(&b, "/model/cost_map/source", MASTER).await;
    assert_eq!(src.body["source"], "remote", "{}", src.body);
    // Each instance fetched the list once: the announcer does not hear its own notice.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(served.lock().2, 2, "fetches of the price list");
    a.stop().await;
    b.stop().await;
    place.cleanup().await;
}
