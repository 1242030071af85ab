#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! What a key's `models` and `aliases` do to requests and to `/v1/models`, over HTTP on the
//! store: wildcards (`openai/*`), model access groups (`model_info.access_groups`), key
//! aliases, and the `/key/generate` / `/key/info` answers around them. SQLite and Postgres.

mod store_support;

use idlehands_proxy::auth::hash_key;
use serde_json::{Value, json};
use store_support::{
    Answer, Backend, MASTER, Place, Proxy, chat, config, error_of, generate, get, post, settings,
    spend_rows, start_with,
};

/// Mock deployments (nothing leaves the machine), each answering with its own name:
/// `gpt-4o` (a name the price table files under openai), two self-hosted groups in the access
/// group `beta-group`, and an `anthropic/*` wildcard route, in that group too.
fn yaml() -> String {
    format!(
        "model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      mock_response: from gpt-4o
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000002
    model_info: {{id: dep-gpt4o}}
  - model_name: house-llama
    litellm_params: {{model: hosted_vllm/llama, mock_response: from house-llama}}
    model_info: {{id: dep-llama, access_groups: [beta-group]}}
  - model_name: house-qwen
    litellm_params: {{model: hosted_vllm/qwen, mock_response: from house-qwen}}
    model_info: {{id: dep-qwen, access_groups: [beta-group]}}
  - model_name: anthropic/*
    litellm_params: {{model: anthropic/*, mock_response: from the anthropic route}}
    model_info: {{access_groups: [beta-group]}}
general_settings:
  master_key: {MASTER}
"
    )
}

async fn start(place: &Place) -> Proxy {
    let cfg = config(&yaml());
    let s = settings(&cfg, place);
    start_with(cfg, s).await
}

fn content(a: &Answer) -> &str {
    a.body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_else(|| panic!("a chat answer: {}", a.body))
}

async fn model_ids(p: &Proxy, key: &str) -> Vec<String> {
    let a = get(p, "/v1/models", key).await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

/// `first`, then what the `anthropic/*` route stands for in `/v1/models`: the price map's
/// Anthropic models (as LiteLLM lists a wildcard route), as the master key sees them.
async fn with_anthropic(p: &Proxy, first: &[&str]) -> Vec<String> {
    let all = model_ids(p, MASTER).await;
    let routed: Vec<String> = all
        .into_iter()
        .filter(|m| m.starts_with("anthropic/"))
        .collect();
    assert!(
        routed.contains(&"anthropic/claude-opus-4-6".to_string()),
        "{routed:?}"
    );
    assert!(!routed.contains(&"anthropic/*".to_string()));
    first.iter().map(|m| m.to_string()).chain(routed).collect()
}

fn assert_denied(a: &Answer, model: &str) {
    assert_eq!(a.status, 403, "{}", a.body);
    let (kind, message) = error_of(a);
    assert_eq!(kind, "key_model_access_denied");
    assert_eq!(
        message,
        format!(
            "The requested model '{model}' is not available for this API key, or the model name is invalid. Check the models available to you and try again."
        )
    );
    assert_eq!(a.body["error"]["param"], "model");
}

async fn wildcard_entries(b: Backend) {
    let place = Place::new(b);
    let p = start(&place).await;

    // `openai/*` matches requested names: `gpt-4o` is an OpenAI model by name (LiteLLM's
    // provider lookup), `house-llama` is a custom name and is refused although its
    // deployment speaks the OpenAI protocol.
    let (openai, _) = generate(&p, json!({"models": ["openai/*"]})).await;
    let a = post(&p, "/v1/chat/completions", &openai, chat("gpt-4o")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(content(&a), "from gpt-4o");
    assert_denied(
        &post(&p, "/v1/chat/completions", &openai, chat("house-llama")).await,
        "house-llama",
    );
    assert_denied(
        &post(
            &p,
            "/v1/chat/completions",
            &openai,
            chat("anthropic/claude-opus-4-6"),
        )
        .await,
        "anthropic/claude-opus-4-6",
    );
    assert_eq!(model_ids(&p, &openai).await, ["gpt-4o"]);

    // `anthropic/*` reaches the wildcard route, and only it.
    let (anthropic, _) = generate(&p, json!({"models": ["anthropic/*"]})).await;
    let a = post(
        &p,
        "/v1/chat/completions",
        &anthropic,
        chat("anthropic/claude-opus-4-6"),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(content(&a), "from the anthropic route");
    assert_eq!(
        a.headers["x-litellm-model-group"],
        "anthropic/claude-opus-4-6"
    );
    assert_denied(
        &post(&p, "/v1/chat/completions", &anthropic, chat("gpt-4o")).await,
        "gpt-4o",
    );
    assert_eq!(
        model_ids(&p, &anthropic).await,
        with_anthropic(&p, &[]).await
    );

    // A limited key is refused any other name before the lookup (LiteLLM's order); a key
    // without limits learns that the model does not exist.
    let (limited, _) = generate(&p, json!({"models": ["gpt-4o"]})).await;
    assert_denied(
        &post(&p, "/v1/chat/completions", &limited, chat("no-such-model")).await,
        "no-such-model",
    );
    let (open, _) = generate(&p, json!({})).await;
    let a = post(&p, "/v1/chat/completions", &open, chat("no-such-model")).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(error_of(&a).1.contains("no-such-model"), "{}", a.body);

    // `all-proxy-models` and `*` grant everything.
    for entry in ["all-proxy-models", "*"] {
        let (all, _) = generate(&p, json!({"models": [entry]})).await;
        let a = post(&p, "/v1/chat/completions", &all, chat("house-qwen")).await;
        assert_eq!(a.status, 200, "{entry}: {}", a.body);
        assert_eq!(
            model_ids(&p, &all).await,
            with_anthropic(&p, &["gpt-4o", "house-llama", "house-qwen"]).await
        );
    }
    p.stop().await;
    place.cleanup().await;
}

async fn access_groups(b: Backend) {
    let place = Place::new(b);
    let p = start(&place).await;

    let (key, generated) = generate(&p, json!({"models": ["beta-group"]})).await;
    // Stored as given: the group's name, not its members.
    assert_eq!(generated["models"], json!(["beta-group"]));
    for (model, answer) in [
        ("house-llama", "from house-llama"),
        ("house-qwen", "from house-qwen"),
        ("anthropic/claude-opus-4-6", "from the anthropic route"),
    ] {
        let a = post(&p, "/v1/chat/completions", &key, chat(model)).await;
        assert_eq!(a.status, 200, "{model}: {}", a.body);
        assert_eq!(content(&a), answer);
    }
    assert_denied(
        &post(&p, "/v1/chat/completions", &key, chat("gpt-4o")).await,
        "gpt-4o",
    );
    assert_eq!(
        model_ids(&p, &key).await,
        with_anthropic(&p, &["house-llama", "house-qwen"]).await
    );
    assert_eq!(get(&p, "/v1/models/house-qwen", &key).await.status, 200);
    let a = get(&p, "/v1/models/gpt-4o", &key).await;
    assert_eq!(a.status, 404, "{}", a.body);

    // A change of the key's models applies to the next request.
    let a = post(
        &p,
        "/key/update",
        MASTER,
        json!({"key": key, "models": ["beta-group", "gpt-4o"]}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = post(&p, "/v1/chat/completions", &key, chat("gpt-4o")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        model_ids(&p, &key).await,
        with_anthropic(&p, &["gpt-4o", "house-llama", "house-qwen"]).await
    );

    // A name nobody serves is stored, as LiteLLM stores it, and grants nothing.
    let (typo, generated) = generate(&p, json!({"models": ["beta-grup"]})).await;
    assert_eq!(generated["models"], json!(["beta-grup"]));
    assert_denied(
        &post(&p, "/v1/chat/completions", &typo, chat("house-llama")).await,
        "house-llama",
    );
    assert_eq!(model_ids(&p, &typo).await, Vec::<String>::new());
    p.stop().await;
    place.cleanup().await;
}

async fn key_aliases(b: Backend) {
    let place = Place::new(b);
    let p = start(&place).await;

    let (key, generated) = generate(
        &p,
        json!({"models": ["gpt-4o"], "aliases": {"gpt-4": "gpt-4o", "cheap": "house-llama"}}),
    )
    .await;
    assert_eq!(
        generated["aliases"],
        json!({"gpt-4": "gpt-4o", "cheap": "house-llama"})
    );
    let token = generated["token_id"].as_str().unwrap().to_string();

    // The alias is sent to its target's deployment, and accounted under the target.
    let a = post(&p, "/v1/chat/completions", &key, chat("gpt-4")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(content(&a), "from gpt-4o");
    assert_eq!(a.headers["x-litellm-model-group"], "gpt-4o");
    assert_eq!(a.headers["x-litellm-model-id"], "dep-gpt4o");
    let cost: f64 = store_support::cost_of(&a);
    assert!(cost > 0.0);

    // An alias is checked by its target: `house-llama` is not in the key's models.
    assert_denied(
        &post(&p, "/v1/chat/completions", &key, chat("cheap")).await,
        "cheap",
    );

    // `/v1/models` lists the alias whose target the key may call, beside that target.
    assert_eq!(model_ids(&p, &key).await, ["gpt-4o", "gpt-4"]);
    let a = get(&p, "/v1/models/gpt-4", &key).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["id"], "gpt-4");
    assert_eq!(get(&p, "/v1/models/cheap", &key).await.status, 404);

    // The answered call's row, under the target; the refusal, like every auth refusal
    // (and as in LiteLLM), is answered before a call exists and leaves none.
    let rows = spend_rows(&p, &format!("?api_key={token}"), 1).await;
    let ok: Vec<&Value> = rows.iter().filter(|r| r["status"] == "success").collect();
    assert_eq!((rows.len(), ok.len()), (1, 1), "{rows:?}");
    assert_eq!(ok[0]["model_group"], "gpt-4o");
    assert_eq!(ok[0]["model_id"], "dep-gpt4o");
    assert_eq!(ok[0]["model"], "openai/gpt-4o");
    assert!((ok[0]["spend"].as_f64().unwrap() - cost).abs() < 1e-12);
    let info = get(&p, &format!("/key/info?key={token}"), MASTER).await;
    assert!((info.body["info"]["spend"].as_f64().unwrap() - cost).abs() < 1e-12);

    // An alias whose target is no model name is refused, naming it, and changes nothing.
    let a = post(
        &p,
        "/key/update",
        MASTER,
        json!({"key": key, "aliases": {"gpt-4": ["gpt-4o"]}}),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.body["error"]["param"], "aliases.gpt-4");
    let a = post(&p, "/key/generate", MASTER, json!({"aliases": {"x": 1}})).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.body["error"]["param"], "aliases.x");

    // Repointing the alias applies to the next request.
    let a = post(
        &p,
        "/key/update",
        MASTER,
        json!({"key": key, "models": ["gpt-4o", "house-qwen"], "aliases": {"gpt-4": "house-qwen"}}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = post(&p, "/v1/chat/completions", &key, chat("gpt-4")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(content(&a), "from house-qwen");
    p.stop().await;
    place.cleanup().await;
}

async fn generate_token_and_unknown_key_info(b: Backend) {
    let place = Place::new(b);
    let p = start(&place).await;

    // `token` is the hash, the same as `token_id` and as what `/key/list` shows.
    let (key, generated) = generate(&p, json!({"key_alias": "tok"})).await;
    let token = generated["token"].as_str().expect("token on /key/generate");
    assert_eq!(token, hash_key(&key));
    assert_eq!(generated["token_id"], token);
    let list = get(&p, "/key/list?key_alias=tok", MASTER).await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.body["keys"], json!([token]));
    // Regeneration answers with the new hash in `token_id` and `token: null`, as LiteLLM.
    let a = post(&p, "/key/regenerate", MASTER, json!({"key": key})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["token"], Value::Null);
    assert_eq!(
        a.body["token_id"],
        hash_key(a.body["key"].as_str().unwrap()).as_str()
    );

    // An unknown key on /key/info: 404 in LiteLLM's envelope, for the admin and for a key
    // asking about another one.
    let want = json!({"error": {
        "message": "Key not found in database",
        "type": "not_found_error",
        "param": "key",
        "code": "404",
    }});
    let a = get(&p, "/key/info?key=sk-unknown-0000", MASTER).await;
    assert_eq!(a.status, 404, "{}", a.body);
    assert_eq!(a.body, want);
    let (other, _) = generate(&p, json!({})).await;
    let a = get(&p, "/key/info?key=sk-unknown-0000", &other).await;
    assert_eq!(a.status, 404, "{}", a.body);
    assert_eq!(a.body, want);
    // An unknown bearer never gets that far: authentication refuses it first.
    let a = get(&p, "/key/info", "sk-unknown-0000").await;
    assert_eq!(a.status, 401, "{}", a.body);
    let (kind, message) = error_of(&a);
    assert_eq!(kind, "auth_error");
    assert!(
        message.starts_with("Authentication Error, Invalid proxy server token passed."),
        "{message}"
    );
    p.stop().await;
    place.cleanup().await;
}

both_backends!(
    wildcard_entries,
    access_groups,
    key_aliases,
    generate_token_and_unknown_key_info,
);
