#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `/key/*` over HTTP on the store, and what keys do to requests: the seed's curl commands,
//! every refusal status, management rights, cache invalidation. SQLite and Postgres.

mod store_support;

use std::time::Duration;

use serde_json::{Value, json};
use store_support::{
    Backend, MASTER, ManualClock, Place, chat, error_of, generate, get, internal_user, post,
    spend_rows, start, start_at,
};

/// The commands from the LiteLLM guide (docs/providers/litellm.md), verbatim but for the port.
const SEED_GENERATE: &str = r#"curl -X POST "http://localhost:4000/key/generate" \
  -H "Authorization: Bearer $LITELLM_MASTER_KEY" \
  -H "Content-Type: application/json" \
  -d '{
    "key_alias": "idlehands",
    "max_budget": 50.00,
    "budget_duration": "monthly"
  }'"#;
const SEED_KEY_INFO: &str = r#"curl "http://localhost:4000/key/info" \
  -H "Authorization: Bearer sk-litellm-key""#;
const SEED_SPEND_LOGS: &str = r#"curl "http://localhost:4000/spend/logs" \
  -H "Authorization: Bearer $LITELLM_MASTER_KEY""#;

fn curl(command: &str, port: u16, litellm_key: Option<&str>) -> Value {
    let mut command = command.replace("localhost:4000", &format!("localhost:{port}"));
    if let Some(k) = litellm_key {
        command = command.replace("sk-litellm-key", k);
    }
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("{command} --silent --show-error --noproxy '*'"))
        .env("LITELLM_MASTER_KEY", MASTER)
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "JSON from {command}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

async fn seed_curls_verbatim(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    let port: u16 = p.base.rsplit(':').next().unwrap().parse().unwrap();

    let generated = tokio::task::spawn_blocking(move || curl(SEED_GENERATE, port, None))
        .await
        .unwrap();
    let key = generated["key"].as_str().expect("a key").to_string();
    assert!(key.starts_with("sk-"));
    assert_eq!(generated["key_alias"], "idlehands");
    assert_eq!(generated["max_budget"], 50.0);
    assert_eq!(generated["budget_duration"], "monthly");
    assert!(
        generated["budget_reset_at"]
            .as_str()
            .unwrap()
            .ends_with("+00:00")
    );
    let token = generated["token_id"].as_str().unwrap().to_string();

    let answer = post(&p, "/v1/chat/completions", &key, chat("mocky")).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.headers["x-litellm-key-max-budget"], "50.0");
    let cost: f64 = store_support::cost_of(&answer);
    assert!(cost > 0.0);

    let k = key.clone();
    let info = tokio::task::spawn_blocking(move || curl(SEED_KEY_INFO, port, Some(&k)))
        .await
        .unwrap();
    assert_eq!(info["key"], key.as_str());
    assert_eq!(info["info"]["key_alias"], "idlehands");
    assert_eq!(info["info"]["status"], "active");
    assert!((info["info"]["spend"].as_f64().unwrap() - cost).abs() < 1e-9);

    spend_rows(&p, "", 1).await;
    let logs = tokio::task::spawn_blocking(move || curl(SEED_SPEND_LOGS, port, None))
        .await
        .unwrap();
    let rows = logs.as_array().expect("a list of rows");
    let mine: Vec<&Value> = rows
        .iter()
        .filter(|r| r["api_key"] == token.as_str())
        .collect();
    assert_eq!(mine.len(), 1, "{logs}");
    assert_eq!(mine[0]["status"], "success");
    assert_eq!(mine[0]["model_group"], "mocky");
    assert_eq!(mine[0]["metadata"]["user_api_key_alias"], "idlehands");
    p.stop().await;
    place.cleanup().await;
}

async fn refusals_have_litellm_statuses(b: Backend) {
    let place = Place::new(b);
    let clock = std::sync::Arc::new(ManualClock::new());
    let p = start_at(&place, "", &clock).await;

    let a = post(
        &p,
        "/v1/chat/completions",
        "sk-not-a-key-1234",
        chat("mocky"),
    )
    .await;
    assert_eq!(a.status, 401);
    let (kind, msg) = error_of(&a);
    assert_eq!(kind, "auth_error");
    assert!(msg.contains("sk-...1234"), "{msg}");
    assert!(
        !msg.contains("sk-not-a-key"),
        "the key is never echoed: {msg}"
    );

    let (expiring, _) = generate(&p, json!({"duration": "1s"})).await;
    let a = post(&p, "/v1/chat/completions", &expiring, chat("mocky")).await;
    assert_eq!(a.status, 200, "not expired yet: {}", a.body);
    clock.advance(Duration::from_millis(1500));
    let a = post(&p, "/v1/chat/completions", &expiring, chat("mocky")).await;
    assert_eq!(a.status, 401, "{}", a.body);
    assert_eq!(error_of(&a).0, "expired_key");

    let (limited, _) = generate(&p, json!({"models": ["mocky"]})).await;
    let a = post(&p, "/v1/chat/completions", &limited, chat("other")).await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert_eq!(error_of(&a).0, "key_model_access_denied");
    assert_eq!(a.body["error"]["param"], "model");
    let a = post(&p, "/v1/chat/completions", &limited, chat("mocky")).await;
    assert_eq!(a.status, 200, "{}", a.body);

    let models = get(&p, "/v1/models", &limited).await;
    let ids: Vec<&str> = models.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["mocky"]);
    let all = get(&p, "/v1/models", MASTER).await;
    assert_eq!(all.body["data"].as_array().unwrap().len(), 2);

    let (blocked, _) = generate(&p, json!({"blocked": true})).await;
    let a = post(&p, "/v1/chat/completions", &blocked, chat("mocky")).await;
    assert_eq!(a.status, 401);
    assert!(error_of(&a).1.contains("Key is blocked"));
    p.stop().await;
    place.cleanup().await;
}

async fn block_takes_effect_on_the_next_request(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    let (key, _) = generate(&p, json!({})).await;
    // Cached by use.
    for _ in 0..3 {
        assert_eq!(
            post(&p, "/v1/chat/completions", &key, chat("mocky"))
                .await
                .status,
            200
        );
    }
    let a = post(&p, "/key/block", MASTER, json!({"key": key})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["blocked"], true);
    let a = post(&p, "/v1/chat/completions", &key, chat("mocky")).await;
    assert_eq!(a.status, 401, "{}", a.body);
    let a = post(&p, "/key/unblock", MASTER, json!({"key": key})).await;
    assert_eq!(a.status, 200);
    let a = post(&p, "/v1/chat/completions", &key, chat("mocky")).await;
    assert_eq!(a.status, 200, "{}", a.body);

    // Model list changes apply at once too.
    let a = post(
        &p,
        "/key/update",
        MASTER,
        json!({"key": key, "models": ["other"]}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        post(&p, "/v1/chat/completions", &key, chat("mocky"))
            .await
            .status,
        403
    );
    // Deleted: refused.
    let a = post(&p, "/key/delete", MASTER, json!({"keys": [key]})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["deleted_keys"], json!([key]));
    assert_eq!(
        post(&p, "/v1/chat/completions", &key, chat("other"))
            .await
            .status,
        401
    );
    p.stop().await;
    place.cleanup().await;
}

async fn management_rights_and_bad_input(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    let (alice, alice_json) = generate(&p, json!({"key_alias": "alice"})).await;
    let (bob, _) = generate(&p, json!({"key_alias": "bob"})).await;

    // A key reads itself, by bearer or by ?key=, not others.
    let a = get(&p, "/key/info", &alice).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["info"]["key_alias"], "alice");
    let a = get(&p, &format!("/key/info?key={alice}"), &alice).await;
    assert_eq!(a.status, 200);
    let a = get(&p, &format!("/key/info?key={bob}"), &alice).await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(
        error_of(&a)
            .1
            .contains("not allowed to access this key's info")
    );
    // The admin reads anyone, by plaintext or hash.
    let token = alice_json["token_id"].as_str().unwrap();
    let a = get(&p, &format!("/key/info?key={token}"), MASTER).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["info"]["key_alias"], "alice");
    let a = get(&p, "/key/info?key=sk-missing-key", MASTER).await;
    assert_eq!(a.status, 404);
    assert_eq!(error_of(&a).1, "Key not found in database");

    // Admin-only routes.
    for (path, body) in [
        ("/key/generate", json!({})),
        ("/key/update", json!({"key": bob})),
        ("/key/delete", json!({"keys": [bob]})),
        ("/key/block", json!({"key": bob})),
        ("/key/regenerate", json!({"key": bob})),
    ] {
        let a = post(&p, path, &alice, body).await;
        assert_eq!(a.status, 403, "{path}: {}", a.body);
    }
    assert_eq!(get(&p, "/key/list", &alice).await.status, 403);
    assert_eq!(get(&p, "/key/list", "sk-nobody-00").await.status, 401);
    assert_eq!(
        post(&p, "/key/generate", "sk-nobody-00", json!({}))
            .await
            .status,
        401
    );

    // Wrong JSON: 400 naming the field, never 500.
    let a = post(&p, "/key/generate", MASTER, json!({"max_budget": "lots"})).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.body["error"]["param"], "max_budget");
    let a = store_support::send(
        store_support::client()
            .post(p.url("/key/generate"))
            .bearer_auth(MASTER)
            .body("{not json"),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    let a = post(&p, "/key/generate", MASTER, json!({"key": "nope-123"})).await;
    assert_eq!(a.status, 400, "{}", a.body);
    let a = post(
        &p,
        "/key/generate",
        MASTER,
        json!({"budget_duration": "fortnightly"}),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    let a = get(&p, "/key/list?page=zero", MASTER).await;
    assert_eq!(a.status, 400, "{}", a.body);
    let a = post(&p, "/key/update", MASTER, json!({})).await;
    assert_eq!(a.status, 400, "{}", a.body);

    // List, full objects, filters.
    let a = get(
        &p,
        "/key/list?return_full_object=true&key_alias=bob",
        MASTER,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["total_count"], 1);
    assert_eq!(a.body["keys"][0]["key_alias"], "bob");
    let a = get(&p, "/key/list", MASTER).await;
    assert_eq!(a.body["total_count"], 2);
    assert!(a.body["keys"].as_array().unwrap().contains(&json!(token)));

    // Regenerate: the new key works, the old one stops at once; both route forms.
    let a = post(&p, "/key/regenerate", MASTER, json!({"key": alice})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let alice2 = a.body["key"].as_str().unwrap().to_string();
    assert_ne!(alice2, alice);
    assert_eq!(a.body["key_alias"], "alice");
    assert_eq!(
        post(&p, "/v1/chat/completions", &alice, chat("mocky"))
            .await
            .status,
        401
    );
    assert_eq!(
        post(&p, "/v1/chat/completions", &alice2, chat("mocky"))
            .await
            .status,
        200
    );
    let a = post(&p, &format!("/key/{bob}/regenerate"), MASTER, json!({})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let bob2 = a.body["key"].as_str().unwrap().to_string();
    assert_eq!(
        post(&p, "/v1/chat/completions", &bob2, chat("mocky"))
            .await
            .status,
        200
    );
    p.stop().await;
    place.cleanup().await;
}

/// LiteLLM key fields with no effect here are named in the answer, not accepted in silence.
async fn fields_with_no_effect_are_named_in_the_answer(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    let (_, plain) = generate(&p, json!({"key_alias": "plain", "max_budget": 1.0})).await;
    assert!(plain.get("ignored_fields").is_none(), "{plain}");

    let a = post(
        &p,
        "/key/generate",
        MASTER,
        json!({"key_alias": "tagged", "tags": ["team-a"], "soft_budget": 5.0,
               "frobnicate": true, "models": null}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let ignored = a.body["ignored_fields"].as_object().unwrap();
    let mut names: Vec<&str> = ignored.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["frobnicate"],
        "soft_budget acts (its alert), tags too (the key's metadata.tags)"
    );
    // The key was still made, with what does act.
    assert_eq!(a.body["key_alias"], "tagged");
    assert_eq!(a.body["metadata"]["tags"], json!(["team-a"]));

    let key = a.body["key"].as_str().unwrap();
    // On update, as LiteLLM: `tags` become metadata.tags, the rest of the key's metadata kept.
    let u = post(
        &p,
        "/key/update",
        MASTER,
        json!({"key": key, "metadata": {"team": "x"}}),
    )
    .await;
    assert_eq!(u.status, 200, "{}", u.body);
    let u = post(
        &p,
        "/key/update",
        MASTER,
        json!({"key": key, "guardrails": ["pii"], "tags": ["t"], "rpm_limit": 5}),
    )
    .await;
    assert_eq!(u.status, 200, "{}", u.body);
    let ignored = u.body["ignored_fields"].as_object().unwrap();
    assert_eq!(ignored.keys().collect::<Vec<_>>(), ["guardrails"]);
    assert_eq!(u.body["metadata"], json!({"team": "x", "tags": ["t"]}));
    // Beside new metadata, over it.
    let u = post(
        &p,
        "/key/update",
        MASTER,
        json!({"key": key, "metadata": {"tags": ["old"], "y": 1}, "tags": ["new"]}),
    )
    .await;
    assert_eq!(u.status, 200, "{}", u.body);
    assert!(u.body.get("ignored_fields").is_none(), "{}", u.body);
    assert_eq!(u.body["metadata"], json!({"y": 1, "tags": ["new"]}));
    let info = get(&p, &format!("/key/info?key={key}"), MASTER).await;
    assert_eq!(
        info.body["info"]["metadata"]["tags"],
        json!(["new"]),
        "{}",
        info.body
    );
    // A tag list that is not one is bad input.
    let bad = post(&p, "/key/update", MASTER, json!({"key": key, "tags": "t"})).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    let u = post(
        &p,
        "/key/update",
        MASTER,
        json!({"key": key, "rpm_limit": 5}),
    )
    .await;
    assert_eq!(u.body["rpm_limit"], 5);
    p.stop().await;
    place.cleanup().await;
}

/// The key's spend as `/key/info` reads it, once it is at least `at_least`.
async fn key_spend(p: &store_support::Proxy, key: &str, at_least: f64) -> f64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let a = get(p, &format!("/key/info?key={key}"), MASTER).await;
        assert_eq!(a.status, 200, "{}", a.body);
        let spend = a.body["info"]["spend"].as_f64().unwrap();
        if spend >= at_least {
            return spend;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "spend {spend} < {at_least}"
        );
        // Polling interval, not a guess at how long the commit takes.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn reset_spend_gives_a_budget_back(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    for user in ["owner", "lead"] {
        internal_user(&p, user).await;
    }
    let a = post(
        &p,
        "/team/new",
        MASTER,
        json!({"team_id": "t1", "members_with_roles": [{"user_id": "lead", "role": "admin"}]}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let (key, _) = generate(
        &p,
        json!({"max_budget": 0.00001, "team_id": "t1", "user_id": "owner"}),
    )
    .await;
    let a = post(&p, "/v1/chat/completions", &key, chat("mocky")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let spent = key_spend(&p, &key, 1e-12).await;
    assert!(spent >= 0.00001, "one call spends the budget: {spent}");
    let refused = post(&p, "/v1/chat/completions", &key, chat("mocky")).await;
    assert_ne!(refused.status, 200, "over budget: {}", refused.body);

    let reset = |body: Value| {
        let (p, key) = (&p, key.clone());
        async move { post(p, &format!("/key/{key}/reset_spend"), MASTER, body).await }
    };
    // LiteLLM's refusals: not a number, below 0, above the spend or the budget.
    for (body, words) in [
        (json!({"reset_to": "0"}), "reset_to must be a float"),
        (json!({"reset_to": true}), "reset_to must be a float"),
        (json!({}), "reset_to must be a float"),
        (json!({"reset_to": -1}), "reset_to must be >= 0"),
        (json!({"reset_to": spent + 1.0}), "must be <= current spend"),
        (json!({"reset_to": 0.000015}), "must be <= budget (1e-5)"),
    ] {
        let a = reset(body.clone()).await;
        assert_eq!(a.status, 400, "{body}: {}", a.body);
        assert!(error_of(&a).1.contains(words), "{body}: {}", a.body);
    }
    // Nobody but an admin (of the proxy or of the key's team) may, not even the key's owner.
    let (own, _) = generate(&p, json!({"user_id": "owner"})).await;
    let a = post(
        &p,
        &format!("/key/{key}/reset_spend"),
        &own,
        json!({"reset_to": 0}),
    )
    .await;
    assert_eq!(a.status, 403, "{}", a.body);
    let a = post(
        &p,
        "/key/sk-no-such-key-anywhere/reset_spend",
        MASTER,
        json!({"reset_to": 0}),
    )
    .await;
    assert_eq!(a.status, 404, "{}", a.body);
    assert!(
        !a.body.to_string().contains("sk-no-such-key-anywhere"),
        "no key in errors: {}",
        a.body
    );

    // The team's admin may.
    let (lead, _) = generate(&p, json!({"user_id": "lead"})).await;
    let a = post(
        &p,
        &format!("/key/{key}/reset_spend"),
        &lead,
        json!({"reset_to": 0}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["spend"], json!(0.0));
    assert_eq!(a.body["previous_spend"].as_f64(), Some(spent));
    assert_eq!(a.body["max_budget"], json!(0.00001));
    assert_eq!(
        a.body["key_hash"],
        json!(idlehands_store::keygen::hash_key(&key))
    );
    // The budget is back: the next call is served, and the spend is that call's alone.
    let a = post(&p, "/v1/chat/completions", &key, chat("mocky")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let rows = spend_rows(
        &p,
        &format!("?api_key={}", idlehands_store::keygen::hash_key(&key)),
        2,
    )
    .await;
    let newest = rows
        .iter()
        .filter(|r| r["status"] == "success")
        .map(|r| r["spend"].as_f64().unwrap())
        .fold(0.0, f64::max);
    let now = key_spend(&p, &key, newest).await;
    assert!((now - newest).abs() < 1e-12, "{now} vs {newest}");
    p.stop().await;
    place.cleanup().await;
}

async fn key_aliases_page_search_and_scope(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    for user in ["u1", "u2"] {
        internal_user(&p, user).await;
    }
    let a = post(
        &p,
        "/team/new",
        MASTER,
        json!({"team_id": "t1", "members_with_roles": [{"user_id": "u1", "role": "user"}]}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let (u1_key, _) = generate(&p, json!({"key_alias": "alpha", "user_id": "u1"})).await;
    generate(
        &p,
        json!({"key_alias": "Beta", "user_id": "u2", "team_id": "t1"}),
    )
    .await;
    generate(&p, json!({"key_alias": "gamma", "user_id": "u2"})).await;
    generate(&p, json!({"key_alias": "delta"})).await;
    let (plain, _) = generate(&p, json!({})).await;

    let aliases = |a: &store_support::Answer| -> Vec<String> {
        assert_eq!(a.status, 200, "{}", a.body);
        a.body["aliases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    // Byte order on both stores; keys without an alias are not listed.
    let a = get(&p, "/key/aliases", MASTER).await;
    assert_eq!(aliases(&a), ["Beta", "alpha", "delta", "gamma"]);
    assert_eq!(a.body["total_count"], 4);
    assert_eq!(a.body["size"], 50);
    let a = get(&p, "/key/aliases?size=3&page=2", MASTER).await;
    assert_eq!(aliases(&a), ["gamma"]);
    assert_eq!(
        (
            a.body["total_pages"].as_i64(),
            a.body["current_page"].as_i64()
        ),
        (Some(2), Some(2))
    );
    assert_eq!(
        aliases(&get(&p, "/key/aliases?search=ALP", MASTER).await),
        ["alpha"]
    );
    assert_eq!(
        aliases(&get(&p, "/key/aliases?team_id=t1", MASTER).await),
        ["Beta"]
    );
    // An internal user: their own keys and their teams'.
    assert_eq!(
        aliases(&get(&p, "/key/aliases", &u1_key).await),
        ["Beta", "alpha"]
    );
    assert_eq!(get(&p, "/key/aliases", &plain).await.status, 403);
    assert_eq!(get(&p, "/key/aliases?size=101", MASTER).await.status, 400);
    p.stop().await;
    place.cleanup().await;
}

async fn v2_key_info_reads_several_keys(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    internal_user(&p, "u1").await;
    let (mine, _) = generate(&p, json!({"key_alias": "mine", "user_id": "u1"})).await;
    let (other, _) = generate(&p, json!({"key_alias": "other"})).await;
    let aliases = |a: &store_support::Answer| -> Vec<String> {
        assert_eq!(a.status, 200, "{}", a.body);
        let mut v: Vec<String> = a.body["info"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["key_alias"].as_str().unwrap().to_owned())
            .collect();
        v.sort();
        v
    };
    let both = json!({"keys": [mine, other, "sk-not-a-key-of-this-proxy", mine]});
    let a = post(&p, "/v2/key/info", MASTER, both.clone()).await;
    assert_eq!(aliases(&a), ["mine", "other"]);
    assert_eq!(a.body["key"], both["keys"]);
    let a = post(
        &p,
        "/v2/key/info",
        MASTER,
        json!({"key_aliases": ["other"]}),
    )
    .await;
    assert_eq!(aliases(&a), ["other"]);
    // An internal user reads their own keys only.
    assert_eq!(
        aliases(&post(&p, "/v2/key/info", &mine, both).await),
        ["mine"]
    );
    assert_eq!(
        post(&p, "/v2/key/info", MASTER, json!({})).await.status,
        400
    );
    p.stop().await;
    place.cleanup().await;
}

both_backends!(
    v2_key_info_reads_several_keys,
    key_aliases_page_search_and_scope,
    reset_spend_gives_a_budget_back,
    fields_with_no_effect_are_named_in_the_answer,
    seed_curls_verbatim,
    refusals_have_litellm_statuses,
    block_takes_effect_on_the_next_request,
    management_rights_and_bad_input,
);
