#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! LiteLLM's tag management (`/tag/new|update|info|list|delete`) on SQLite and Postgres: a
//! tag's budget (made from its budget fields, or a `/budget/new` one) holds every call that
//! carries the tag, changes with `/tag/update` and `/budget/update`, outlives a restart and
//! stops with `/tag/delete`; `models` tags stored deployments and refuses config.yaml's; the
//! list shows tags passed in calls too, an internal user only their own keys'; only admins
//! write. Two instances on one Postgres and Redis follow each other's tag changes.

mod store_support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use store_support::{
    Answer, Backend, MASTER, Place, Proxy, cost_of, error_of, generate, get, internal_user, post,
    redis_url, settings, spend_rows, start_with,
};

fn yaml(general: &str, rest: &str) -> String {
    store_support::yaml(&format!("  store_model_in_db: true\n{general}{rest}"))
}

async fn start(place: &Place) -> Proxy {
    let cfg = store_support::config(&yaml("", ""));
    let s = settings(&cfg, place);
    start_with(cfg, s).await
}

/// A bounded call of `mocky` carrying `tags`: it costs more than 1e-5 USD.
fn tagged(tags: &[&str], n: u32) -> Value {
    json!({"model": "mocky", "max_tokens": 50, "metadata": {"tags": tags},
           "messages": [{"role": "user", "content": format!("Say hi {n}")}]})
}

async fn call(p: &Proxy, key: &str, tags: &[&str], n: u32) -> Answer {
    post(p, "/v1/chat/completions", key, tagged(tags, n)).await
}

fn refused_for_tag(a: &Answer, tag: &str) {
    assert_eq!(a.status, 422, "{}", a.body);
    let (kind, msg) = error_of(a);
    assert_eq!(kind, "budget_exceeded");
    // LiteLLM's words for a `/tag` budget (its auth check's, not its router's).
    assert!(
        msg.starts_with(&format!(
            "Budget has been exceeded! Tag={tag} Current cost: "
        )) && msg.contains(", Max budget: "),
        "{msg}"
    );
}

async fn info(p: &Proxy, names: &[&str]) -> Answer {
    post(p, "/tag/info", MASTER, json!({ "names": names })).await
}

async fn lifecycle(backend: Backend) {
    let place = Place::new(backend);
    let p = start(&place).await;
    let (key, _) = generate(&p, json!({})).await;

    // A tag with budget fields gets a budget of its own; what is not enforced is named.
    let made = post(
        &p,
        "/tag/new",
        MASTER,
        json!({"name": "team-a", "description": "Team A's calls", "max_budget": 0.00001,
               "budget_duration": "1d", "soft_budget": 0.000001, "model_info": {"x": "y"}}),
    )
    .await;
    assert_eq!(made.status, 200, "{}", made.body);
    assert_eq!(made.body["message"], "Tag team-a created successfully");
    let tag = &made.body["tag"];
    assert_eq!(tag["name"], "team-a");
    assert_eq!(tag["description"], "Team A's calls");
    assert_eq!(tag["models"], json!([]));
    assert_eq!(tag["model_info"], json!({}));
    assert_eq!(tag["created_by"], "default_user_id");
    assert!(tag["created_at"].is_string(), "{tag}");
    let budget_id = tag["litellm_budget_table"]["budget_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(tag["litellm_budget_table"]["max_budget"], 0.00001);
    assert_eq!(tag["litellm_budget_table"]["soft_budget"], 0.000001);
    let ignored = &made.body["ignored_fields"];
    assert!(
        ignored["soft_budget"]
            .as_str()
            .unwrap()
            .contains("no alert"),
        "{ignored}"
    );
    assert!(ignored["model_info"].is_string(), "{ignored}");

    let again = post(&p, "/tag/new", MASTER, json!({"name": "team-a"})).await;
    assert_eq!(again.status, 400, "{}", again.body);
    assert_eq!(error_of(&again).1, "Tag team-a already exists");
    let nameless = post(&p, "/tag/new", MASTER, json!({"description": "x"})).await;
    assert_eq!(nameless.status, 400, "{}", nameless.body);
    let both = post(
        &p,
        "/tag/new",
        MASTER,
        json!({"name": "both", "budget_id": budget_id, "max_budget": 1}),
    )
    .await;
    assert_eq!(both.status, 400, "{}", both.body);
    let no_budget = post(
        &p,
        "/tag/new",
        MASTER,
        json!({"name": "lost", "budget_id": "no-such-budget"}),
    )
    .await;
    assert_eq!(no_budget.status, 404, "{}", no_budget.body);
    assert_eq!(info(&p, &["lost"]).await.status, 404);

    // The budget holds every call carrying the tag, on any key; others are not touched.
    let first = call(&p, &key, &["team-a"], 1).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert!(cost_of(&first) > 0.00001);
    refused_for_tag(&call(&p, &key, &["team-a"], 2).await, "team-a");
    refused_for_tag(&call(&p, MASTER, &["other", "team-a"], 3).await, "team-a");
    let untagged = call(&p, &key, &["dyn"], 4).await;
    assert_eq!(untagged.status, 200, "{}", untagged.body);
    // One row per call, refused or answered.
    assert_eq!(spend_rows(&p, "", 4).await.len(), 4);

    // A larger max_budget lets the calls through at once; the description stays.
    let raised = post(
        &p,
        "/tag/update",
        MASTER,
        json!({"name": "team-a", "max_budget": 1, "spend": 0}),
    )
    .await;
    assert_eq!(raised.status, 200, "{}", raised.body);
    assert_eq!(raised.body["message"], "Tag team-a updated successfully");
    assert_eq!(raised.body["tag"]["description"], "Team A's calls");
    assert_eq!(
        raised.body["tag"]["litellm_budget_table"]["budget_id"],
        budget_id.as_str()
    );
    assert!(
        raised.body["ignored_fields"]["spend"].is_string(),
        "{}",
        raised.body
    );
    assert_eq!(call(&p, &key, &["team-a"], 5).await.status, 200);
    // ... and so does its budget changed with /budget/update.
    let lowered = post(
        &p,
        "/budget/update",
        MASTER,
        json!({"budget_id": budget_id, "max_budget": 0.00001}),
    )
    .await;
    assert_eq!(lowered.status, 200, "{}", lowered.body);
    refused_for_tag(&call(&p, &key, &["team-a"], 6).await, "team-a");
    // The budget is not deleted while the tag follows it.
    let kept = post(&p, "/budget/delete", MASTER, json!({"id": budget_id})).await;
    assert_eq!(kept.status, 400, "{}", kept.body);
    assert!(error_of(&kept).1.contains("1 tag(s)"), "{}", kept.body);

    let cleared = post(
        &p,
        "/tag/update",
        MASTER,
        json!({"name": "team-a", "description": null}),
    )
    .await;
    assert_eq!(cleared.status, 200, "{}", cleared.body);
    assert_eq!(cleared.body["tag"]["description"], Value::Null);
    let missing = post(&p, "/tag/update", MASTER, json!({"name": "nope"})).await;
    assert_eq!(missing.status, 404, "{}", missing.body);
    assert_eq!(error_of(&missing).1, "Tag nope not found");

    // Info: every tag asked for, with its budget; a missing one is named.
    let some_missing = info(&p, &["team-a", "nope", "zz"]).await;
    assert_eq!(some_missing.status, 404, "{}", some_missing.body);
    assert_eq!(error_of(&some_missing).1, "Tags not found: ['nope', 'zz']");
    let shown = info(&p, &["team-a"]).await;
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert_eq!(
        shown.body["team-a"]["litellm_budget_table"]["max_budget"],
        0.00001
    );

    // The list: stored tags, then those only passed in calls.
    let listed = get(&p, "/tag/list", MASTER).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let names: Vec<&str> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["team-a", "dyn", "other"], "{}", listed.body);
    let dynamic = &listed.body[1];
    assert_eq!(dynamic["models"], Value::Null);
    assert!(
        dynamic["description"]
            .as_str()
            .unwrap()
            .starts_with("This is just a spend tag")
    );
    let dated = get(&p, "/tag/list?start_date=2020-01-01", MASTER).await;
    assert_eq!(dated.status, 400, "{}", dated.body);
    let old = get(
        &p,
        "/tag/list?start_date=2020-01-01&end_date=2020-01-02",
        MASTER,
    )
    .await;
    assert_eq!(old.status, 200, "{}", old.body);
    assert_eq!(
        old.body.as_array().unwrap().len(),
        1,
        "stored tags always: {}",
        old.body
    );

    // An internal user lists the tags of their own keys' calls, and writes nothing.
    internal_user(&p, "ann").await;
    let (ann, _) = generate(&p, json!({"user_id": "ann"})).await;
    let empty = get(&p, "/tag/list", &ann).await;
    assert_eq!(empty.status, 200, "{}", empty.body);
    assert_eq!(empty.body, json!([]));
    assert_eq!(call(&p, &ann, &["ann-tag"], 7).await.status, 200);
    spend_rows(&p, "", 7).await;
    let own = get(&p, "/tag/list", &ann).await;
    let names: Vec<&str> = own
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ann-tag"], "{}", own.body);
    for (path, body) in [
        ("/tag/new", json!({"name": "x"})),
        ("/tag/update", json!({"name": "team-a"})),
        ("/tag/delete", json!({"name": "team-a"})),
        ("/tag/info", json!({"names": ["team-a"]})),
    ] {
        let a = post(&p, path, &ann, body).await;
        assert_eq!(a.status, 403, "{path}: {}", a.body);
    }

    // The tag's budget and its spend outlive a restart.
    p.stop().await;
    let p = start(&place).await;
    refused_for_tag(&call(&p, &key, &["team-a"], 8).await, "team-a");

    // Deleted, the tag holds no call; deleting it again is a 404.
    let deleted = post(&p, "/tag/delete", MASTER, json!({"name": "team-a"})).await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(deleted.body["message"], "Tag team-a deleted successfully");
    assert_eq!(call(&p, &key, &["team-a"], 9).await.status, 200);
    let twice = post(&p, "/tag/delete", MASTER, json!({"name": "team-a"})).await;
    assert_eq!(twice.status, 404, "{}", twice.body);
    // Its budget is free to go now.
    let gone = post(&p, "/budget/delete", MASTER, json!({"id": budget_id})).await;
    assert_eq!(gone.status, 200, "{}", gone.body);
    p.stop().await;
    place.cleanup().await;
}

/// `models`: the stored deployments named (by id or by model name) get the tag; a config.yaml
/// one is refused before anything is written. A tag may follow a `/budget/new` budget, which
/// never resets without `budget_duration`.
async fn models_and_named_budgets(backend: Backend) {
    let place = Place::new(backend);
    let p = start(&place).await;
    let added = post(
        &p,
        "/model/new",
        MASTER,
        json!({"model_name": "stored-chat", "litellm_params": {"model": "openai/stored", "mock_response": "hi", "tags": ["pre"]}}),
    )
    .await;
    assert_eq!(added.status, 200, "{}", added.body);
    let id = added.body["model_id"].as_str().unwrap().to_string();

    let config_one = post(
        &p,
        "/tag/new",
        MASTER,
        json!({"name": "routed", "models": [id, "mocky"]}),
    )
    .await;
    assert_eq!(config_one.status, 400, "{}", config_one.body);
    assert!(
        error_of(&config_one).1.contains("config.yaml"),
        "{}",
        config_one.body
    );
    assert_eq!(info(&p, &["routed"]).await.status, 404);

    let routed = post(
        &p,
        "/tag/new",
        MASTER,
        json!({"name": "routed", "models": [id]}),
    )
    .await;
    assert_eq!(routed.status, 200, "{}", routed.body);
    assert_eq!(
        routed.body["tag"]["model_info"],
        json!({ id.clone(): "stored-chat" })
    );
    let params: Value = serde_json::from_str(
        &store_support::stored_text(
            &place,
            "idlehands_proxy_models",
            "litellm_params",
            "model_id",
            &id,
        )
        .await,
    )
    .unwrap();
    assert_eq!(params["tags"], json!(["pre", "routed"]));
    // By model name too, once.
    let by_name = post(
        &p,
        "/tag/new",
        MASTER,
        json!({"name": "second", "models": ["stored-chat"]}),
    )
    .await;
    assert_eq!(by_name.status, 200, "{}", by_name.body);
    assert_eq!(by_name.body["tag"]["model_info"], json!({}));
    let params: Value = serde_json::from_str(
        &store_support::stored_text(
            &place,
            "idlehands_proxy_models",
            "litellm_params",
            "model_id",
            &id,
        )
        .await,
    )
    .unwrap();
    assert_eq!(params["tags"], json!(["pre", "routed", "second"]));

    // A lifetime budget made with /budget/new, followed by a tag.
    let budget = post(
        &p,
        "/budget/new",
        MASTER,
        json!({"budget_id": "life", "max_budget": 0.00001}),
    )
    .await;
    assert_eq!(budget.status, 200, "{}", budget.body);
    let follows = post(
        &p,
        "/tag/new",
        MASTER,
        json!({"name": "capped", "budget_id": "life"}),
    )
    .await;
    assert_eq!(follows.status, 200, "{}", follows.body);
    assert_eq!(
        follows.body["tag"]["litellm_budget_table"]["budget_id"],
        "life"
    );
    assert_eq!(call(&p, MASTER, &["capped"], 1).await.status, 200);
    refused_for_tag(&call(&p, MASTER, &["capped"], 2).await, "capped");
    // Unlinked, the tag holds nothing.
    let unlinked = post(
        &p,
        "/tag/update",
        MASTER,
        json!({"name": "capped", "budget_id": null}),
    )
    .await;
    assert_eq!(unlinked.status, 200, "{}", unlinked.body);
    assert!(
        unlinked.body["tag"].get("litellm_budget_table").is_none(),
        "{}",
        unlinked.body
    );
    assert_eq!(call(&p, MASTER, &["capped"], 3).await.status, 200);
    p.stop().await;
    place.cleanup().await;
}

/// A tag's `rpm_limit`, `tpm_limit` and `max_parallel_requests` hold every call carrying it
/// (any key, the master key too) with LiteLLM's 429; untagged calls are not touched.
async fn rate_limits(backend: Backend) {
    let place = Place::new(backend);
    let clock = store_support::clock_at_minute_start();
    let cfg = store_support::config(&yaml("", ""));
    let mut s = settings(&cfg, &place);
    s.ledger.clock = clock.clone();
    let p = start_with(cfg, s).await;
    let (key, _) = generate(&p, json!({})).await;
    let made = post(
        &p,
        "/tag/new",
        MASTER,
        json!({"name": "rpm", "rpm_limit": 1}),
    )
    .await;
    assert_eq!(made.status, 200, "{}", made.body);
    assert!(made.body.get("ignored_fields").is_none(), "{}", made.body);
    assert_eq!(call(&p, &key, &["rpm"], 1).await.status, 200);
    let limited = call(&p, MASTER, &["rpm"], 2).await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    let (kind, msg) = error_of(&limited);
    assert_eq!(kind, "rate_limit_error");
    assert!(
        msg.starts_with("Rate limit exceeded for tag: rpm. Limit type: requests. Current limit: 1, Remaining: 0."),
        "{msg}"
    );
    assert!(limited.headers.contains_key("retry-after"));
    assert_eq!(call(&p, &key, &["other"], 3).await.status, 200);
    // A raised limit holds at once.
    let raised = post(
        &p,
        "/tag/update",
        MASTER,
        json!({"name": "rpm", "rpm_limit": 5}),
    )
    .await;
    assert_eq!(raised.status, 200, "{}", raised.body);
    assert_eq!(call(&p, &key, &["rpm"], 4).await.status, 200);

    // Tokens: the first call's tokens use the minute's limit up.
    let tpm = post(
        &p,
        "/tag/new",
        MASTER,
        json!({"name": "tpm", "tpm_limit": 10}),
    )
    .await;
    assert_eq!(tpm.status, 200, "{}", tpm.body);
    assert_eq!(call(&p, &key, &["tpm"], 5).await.status, 200);
    let limited = call(&p, &key, &["tpm"], 6).await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert!(
        error_of(&limited).1.contains("Limit type: tokens"),
        "{}",
        limited.body
    );

    // Calls in flight: one held by a hanging upstream, the next refused.
    let up = idlehands_testkit::FakeOpenAi::start().await;
    up.set_default(idlehands_testkit::Reply::fault(
        idlehands_testkit::Fault::Hang,
    ));
    let added = post(
        &p,
        "/model/new",
        MASTER,
        json!({"model_name": "slow", "litellm_params": {"model": "openai/slow", "api_base": up.base_url(), "api_key": "k"}}),
    )
    .await;
    assert_eq!(added.status, 200, "{}", added.body);
    let par = post(
        &p,
        "/tag/new",
        MASTER,
        json!({"name": "par", "max_parallel_requests": 1}),
    )
    .await;
    assert_eq!(par.status, 200, "{}", par.body);
    let slow = |n: u32| {
        json!({"model": "slow", "metadata": {"tags": ["par"]},
                               "messages": [{"role": "user", "content": format!("wait {n}")}]})
    };
    let held = {
        let (url, key, body) = (p.url("/v1/chat/completions"), key.clone(), slow(1));
        tokio::spawn(async move {
            store_support::client()
                .post(url)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while up.in_flight() == 0 {
        assert!(
            Instant::now() < deadline,
            "the first call never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let second = post(&p, "/v1/chat/completions", &key, slow(2)).await;
    assert_eq!(second.status, 429, "{}", second.body);
    assert!(
        error_of(&second)
            .1
            .contains("Limit type: max_parallel_requests. Current limit: 1"),
        "{}",
        second.body
    );
    assert_eq!(up.served(), 1, "the refused call reached the upstream");
    held.abort();
    p.stop().await;
    place.cleanup().await;
}

both_backends!(lifecycle, models_and_named_budgets, rate_limits);

async fn fleet_instance(place: &Place, prefix: &str) -> Proxy {
    let cfg = store_support::config(&yaml(
        &format!("  redis_key_prefix: \"{prefix}\"\n"),
        &format!("router_settings:\n  redis_url: {}\n", redis_url()),
    ));
    let mut s = settings(&cfg, place);
    // Hour-long periodic reloads: only the announcement can carry a change.
    s.models.as_mut().expect("store_model_in_db").reload_every = Duration::from_secs(3600);
    start_with(cfg, s).await
}

/// Polls `b` with calls carrying `tag` until one answers `status`.
async fn until_status(b: &Proxy, tag: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut n = 100;
    loop {
        n += 1;
        let a = call(b, MASTER, &[tag], n).await;
        if a.status == status {
            return;
        }
        assert!(Instant::now() < deadline, "{}", a.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two instances on one Postgres and Redis: a tag budget made on one holds the other's calls,
/// and its change on one reaches the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tag_change_on_one_instance_reaches_the_other() {
    let place = Place::new(Backend::Postgres);
    let prefix = format!("t{}:", uuid::Uuid::new_v4().simple());
    let a = fleet_instance(&place, &prefix).await;
    let b = fleet_instance(&place, &prefix).await;
    let made = post(
        &a,
        "/tag/new",
        MASTER,
        json!({"name": "shared", "max_budget": 0.00001, "budget_duration": "30d"}),
    )
    .await;
    assert_eq!(made.status, 200, "{}", made.body);
    assert_eq!(call(&a, MASTER, &["shared"], 1).await.status, 200);
    until_status(&b, "shared", 422).await;
    let raised = post(
        &a,
        "/tag/update",
        MASTER,
        json!({"name": "shared", "max_budget": 1}),
    )
    .await;
    assert_eq!(raised.status, 200, "{}", raised.body);
    until_status(&b, "shared", 200).await;
    let deleted = post(&a, "/tag/delete", MASTER, json!({"name": "shared"})).await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    a.stop().await;
    b.stop().await;
    place.cleanup().await;
}
