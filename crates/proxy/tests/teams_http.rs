#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Teams through HTTP: `/team/*` with LiteLLM's bodies and statuses, keys bound by their
//! team's models, budget and limits (also per member), team spend, and 200 concurrent calls
//! on a small team budget: on SQLite, on Postgres, and across two instances sharing Postgres
//! and Redis.

mod store_support;

use serde_json::{Value, json};
use store_support::{
    Backend, MASTER, Place, Proxy, chat, client, clock_at_minute_start, close, error_of, generate,
    get, post, redis_url, send, spend_rows, start, start_at, write_rows,
};

fn bounded_chat() -> Value {
    // max_tokens above what the mock answers, so each reservation covers its call.
    json!({"model": "mocky", "max_tokens": 50, "messages": [{"role": "user", "content": "Say hi"}]})
}

async fn new_team(p: &Proxy, body: Value) -> Value {
    let a = post(p, "/team/new", MASTER, body).await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body
}

async fn team_info(p: &Proxy, team: &str) -> Value {
    let a = get(p, &format!("/team/info?team_id={team}"), MASTER).await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body
}

async fn team_lifecycle_and_bad_input(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    let created = new_team(
        &p,
        json!({"team_id": "core", "team_alias": "Core", "models": ["mocky"], "max_budget": 5,
               "budget_duration": "30d", "metadata": {"cost_center": "42"},
               "members_with_roles": [{"user_id": "lead", "role": "admin"}],
               "guardrails": ["g1"], "soft_budget": 4}),
    )
    .await;
    assert_eq!(created["team_id"], "core");
    // LiteLLM's PATCH: the path names the team, metadata merges (null removes a key).
    let patch = |path: &'static str, body: Value| {
        let p = &p;
        async move { send(client().patch(p.url(path)).bearer_auth(MASTER).json(&body)).await }
    };
    let patched = patch(
        "/team/core",
        json!({"metadata": {"owner": "ops", "cost_center": null}, "team_alias": "Core team"}),
    )
    .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(
        patched.body["metadata"],
        json!({"owner": "ops"}),
        "{}",
        patched.body
    );
    assert_eq!(patched.body["team_alias"], "Core team");
    assert_eq!(patched.body["max_budget"], 5.0, "other fields are kept");
    let patched = patch("/team/core", json!({"metadata": {"cost_center": "42"}})).await;
    assert_eq!(
        patched.body["metadata"],
        json!({"owner": "ops", "cost_center": "42"}),
        "{}",
        patched.body
    );
    let a = patch("/team/core", json!({"team_id": "other", "team_alias": "x"})).await;
    assert_eq!(a.status, 400, "{}", a.body);
    let a = patch("/team/nope", json!({"metadata": {"a": 1}})).await;
    assert_eq!(a.status, 404, "{}", a.body);
    patch("/team/core", json!({"team_alias": "Core"})).await;
    // Stored and shown, but only a key's soft budget raises an alert: named as inert.
    assert_eq!(created["soft_budget"], 4.0, "{created}");
    assert!(
        created["ignored_fields"]["soft_budget"]
            .as_str()
            .unwrap()
            .contains("no alert is sent"),
        "{created}"
    );
    assert_eq!(created["max_budget"], 5.0);
    assert_eq!(created["spend"], 0.0);
    assert_eq!(created["admins"], json!(["lead"]));
    assert!(created["budget_reset_at"].is_string());
    assert!(
        created["ignored_fields"]["guardrails"].is_string(),
        "{created}"
    );
    // A generated id when none is given.
    let other = new_team(&p, json!({"team_alias": "Other"})).await;
    assert_eq!(other["team_id"].as_str().unwrap().len(), 36);

    // Bad input: LiteLLM's statuses, nothing written.
    let dup = post(&p, "/team/new", MASTER, json!({"team_id": "core"})).await;
    assert_eq!(dup.status, 400, "{}", dup.body);
    assert!(error_of(&dup).1.contains("Team id = core already exists"));
    let bad = post(
        &p,
        "/team/new",
        MASTER,
        json!({"team_id": "x", "max_budget": -1}),
    )
    .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["error"]["param"], "max_budget");
    let bad = post(
        &p,
        "/team/new",
        MASTER,
        json!({"team_id": "x", "models": "mocky"}),
    )
    .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["error"]["param"], "models");
    assert_eq!(get(&p, "/team/info?team_id=x", MASTER).await.status, 404);
    let missing = post(
        &p,
        "/team/update",
        MASTER,
        json!({"team_id": "nope", "max_budget": 1}),
    )
    .await;
    assert_eq!(missing.status, 404);
    assert!(
        error_of(&missing)
            .1
            .contains("Team not found, passed team_id=nope")
    );

    // Members.
    let add = post(
        &p,
        "/team/member_add",
        MASTER,
        json!({"team_id": "core", "member": {"user_id": "u1", "role": "user"}, "max_budget_in_team": 2}),
    )
    .await;
    assert_eq!(add.status, 200, "{}", add.body);
    assert_eq!(add.body["members"], json!(["lead", "u1"]));
    assert_eq!(add.body["updated_team_memberships"][0]["user_id"], "u1");
    let twice = post(
        &p,
        "/team/member_add",
        MASTER,
        json!({"team_id": "core", "member": {"user_id": "u1", "role": "user"}}),
    )
    .await;
    assert_eq!(twice.status, 400);
    assert!(
        error_of(&twice)
            .1
            .starts_with("User already in team. Member: user_id=u1")
    );
    let role = post(
        &p,
        "/team/member_add",
        MASTER,
        json!({"team_id": "core", "member": {"user_id": "u9", "role": "owner"}}),
    )
    .await;
    assert_eq!(role.status, 400);
    let upd = post(
        &p,
        "/team/member_update",
        MASTER,
        json!({"team_id": "core", "user_id": "u1", "role": "admin", "max_budget_in_team": 3}),
    )
    .await;
    assert_eq!(upd.status, 200, "{}", upd.body);
    assert_eq!(upd.body["max_budget_in_team"], 3.0);
    let info = team_info(&p, "core").await;
    assert_eq!(info["team_info"]["admins"], json!(["lead", "u1"]));
    assert_eq!(
        info["team_memberships"][0]["litellm_budget_table"]["max_budget"],
        3.0
    );
    assert_eq!(info["team_info"]["metadata"]["cost_center"], "42");

    // Models.
    let a = post(
        &p,
        "/team/model/add",
        MASTER,
        json!({"team_id": "core", "models": ["other"]}),
    )
    .await;
    assert_eq!(a.body["models"], json!(["mocky", "other"]), "{}", a.body);
    let a = post(
        &p,
        "/team/model/delete",
        MASTER,
        json!({"team_id": "core", "models": ["other"]}),
    )
    .await;
    assert_eq!(a.body["models"], json!(["mocky"]));

    // Update keeps what it does not name.
    let a = post(
        &p,
        "/team/update",
        MASTER,
        json!({"team_id": "core", "rpm_limit": 100}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["rpm_limit"], 100);
    assert_eq!(a.body["max_budget"], 5.0);
    assert_eq!(a.body["team_alias"], "Core");

    // List, and by member.
    let all = get(&p, "/team/list", MASTER).await;
    assert_eq!(all.body.as_array().unwrap().len(), 2, "{}", all.body);
    let mine = get(&p, "/team/list?user_id=u1", MASTER).await;
    assert_eq!(mine.body.as_array().unwrap().len(), 1);

    // A key of the team: works, reads its own team, changes nothing.
    let (key, _) = generate(&p, json!({"team_id": "core", "user_id": "u1"})).await;
    let ok = post(&p, "/v1/chat/completions", &key, chat("mocky")).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(get(&p, "/team/info?team_id=core", &key).await.status, 200);
    let other_id = other["team_id"].as_str().unwrap();
    assert_eq!(
        get(&p, &format!("/team/info?team_id={other_id}"), &key)
            .await
            .status,
        403
    );
    let denied = post(&p, "/team/new", &key, json!({"team_id": "mine"})).await;
    assert_eq!(denied.status, 403);
    assert_eq!(
        post(&p, "/team/block", &key, json!({"team_id": "core"}))
            .await
            .status,
        403
    );

    // Blocked team: its keys are refused until it is unblocked.
    let a = post(&p, "/team/block", MASTER, json!({"team_id": "core"})).await;
    assert_eq!(a.body["blocked"], true);
    let refused = post(&p, "/v1/chat/completions", &key, chat("mocky")).await;
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert!(error_of(&refused).1.contains("Team=core is blocked"));
    post(&p, "/team/unblock", MASTER, json!({"team_id": "core"})).await;
    assert_eq!(
        post(&p, "/v1/chat/completions", &key, chat("mocky"))
            .await
            .status,
        200
    );

    // Member delete; twice is a 400.
    let a = post(
        &p,
        "/team/member_delete",
        MASTER,
        json!({"team_id": "core", "user_id": "u1"}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["members"], json!(["lead"]));
    let a = post(
        &p,
        "/team/member_delete",
        MASTER,
        json!({"team_id": "core", "user_id": "u1"}),
    )
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(error_of(&a).1, "User not found in team");

    // Delete: all named teams or none; the team's keys go with it.
    let a = post(
        &p,
        "/team/delete",
        MASTER,
        json!({"team_ids": ["core", "nope"]}),
    )
    .await;
    assert_eq!(a.status, 404);
    assert_eq!(get(&p, "/team/info?team_id=core", MASTER).await.status, 200);
    let a = post(&p, "/team/delete", MASTER, json!({"team_ids": ["core"]})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["deleted_keys"].as_array().unwrap().len(), 1);
    assert_eq!(get(&p, "/team/info?team_id=core", MASTER).await.status, 404);
    assert_eq!(
        post(&p, "/v1/chat/completions", &key, chat("mocky"))
            .await
            .status,
        401
    );
    p.stop().await;
    place.cleanup().await;
}

async fn team_models_bound_their_keys(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    new_team(&p, json!({"team_id": "narrow", "models": ["mocky"]})).await;
    let (inherits, _) = generate(&p, json!({"team_id": "narrow"})).await;
    let (all_team, _) = generate(
        &p,
        json!({"team_id": "narrow", "models": ["all-team-models"]}),
    )
    .await;
    let (wider, _) = generate(&p, json!({"team_id": "narrow", "models": ["other"]})).await;
    for key in [&inherits, &all_team] {
        assert_eq!(
            post(&p, "/v1/chat/completions", key, chat("mocky"))
                .await
                .status,
            200
        );
        let no = post(&p, "/v1/chat/completions", key, chat("other")).await;
        assert_eq!(no.status, 403, "{}", no.body);
    }
    // The key's own list and the team's must both allow the model.
    assert_eq!(
        post(&p, "/v1/chat/completions", &wider, chat("other"))
            .await
            .status,
        403
    );
    assert_eq!(
        post(&p, "/v1/chat/completions", &wider, chat("mocky"))
            .await
            .status,
        403
    );
    // `/v1/models` lists what the team allows.
    let models = get(&p, "/v1/models", &inherits).await;
    let ids: Vec<&str> = models.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["mocky"]);
    // A change reaches the keys at once.
    post(
        &p,
        "/team/model/add",
        MASTER,
        json!({"team_id": "narrow", "models": ["other"]}),
    )
    .await;
    assert_eq!(
        post(&p, "/v1/chat/completions", &inherits, chat("other"))
            .await
            .status,
        200
    );
    p.stop().await;
    place.cleanup().await;
}

/// 200 calls at once through two keys of one team whose budget covers about 58 calls.
async fn team_budget_holds_under_200_concurrent_calls(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    let budget = 0.001;
    new_team(&p, json!({"team_id": "small", "max_budget": budget})).await;
    let (k1, g1) = generate(&p, json!({"team_id": "small"})).await;
    let (k2, g2) = generate(&p, json!({"team_id": "small", "user_id": "u2"})).await;
    let (answered, one_call) = hammer(&[&p], &[&k1, &k2], "Team=small").await;
    let info = team_info(&p, "small").await;
    let spend = info["team_info"]["spend"].as_f64().unwrap();
    assert!(
        spend <= budget + one_call + 1e-12,
        "team spend {spend} exceeds budget {budget} by more than one call ({one_call})"
    );
    assert!((spend - one_call * answered as f64).abs() < 1e-9, "{spend}");
    // Every row names the team; the two keys' spend adds up to the team's.
    let rows = spend_rows(&p, "?team_id=small", 200).await;
    assert_eq!(rows.len(), 200);
    assert!(rows.iter().all(|r| r["team_id"] == "small"));
    let key_spend = |g: &Value| {
        let token = g["token_id"].as_str().unwrap().to_string();
        let p = &p;
        async move {
            let a = get(p, &format!("/key/info?key={token}"), MASTER).await;
            a.body["info"]["spend"].as_f64().unwrap()
        }
    };
    let sum = key_spend(&g1).await + key_spend(&g2).await;
    assert!((sum - spend).abs() < 1e-9, "keys {sum} vs team {spend}");
    // The committed spend says the same once the writer is done (a restart reads it).
    let store = p.store.clone();
    p.stop().await;
    let committed = store
        .ledger
        .store()
        .get_budget("team:small")
        .await
        .unwrap()
        .unwrap();
    assert!((committed.spend as f64 / 1e9 - spend).abs() < 1e-9);
    place.cleanup().await;
}

/// Sends 200 bounded chats spread over `proxies` and `keys`; every one is answered or refused
/// with a budget error naming `refused_for`. Returns the number answered and one call's cost.
async fn hammer(proxies: &[&Proxy], keys: &[&String], refused_for: &str) -> (usize, f64) {
    let http = client();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let target = proxies[i % proxies.len()];
        let req = http
            .post(target.url("/v1/chat/completions"))
            .bearer_auth(keys[i % keys.len()])
            .json(&bounded_chat());
        tasks.push(tokio::spawn(send(req)));
    }
    let (mut answered, mut refused, mut one_call) = (0usize, 0usize, 0.0f64);
    for t in tasks {
        let a = t.await.unwrap();
        match a.status.as_u16() {
            200 => {
                answered += 1;
                one_call = store_support::cost_of(&a);
            }
            422 => {
                refused += 1;
                let (kind, msg) = error_of(&a);
                assert_eq!(kind, "budget_exceeded");
                assert!(
                    msg.starts_with(&format!("Budget has been exceeded! {refused_for} ")),
                    "{msg}"
                );
            }
            s => panic!("unexpected status {s}: {}", a.body),
        }
    }
    assert_eq!(answered + refused, 200);
    assert!(answered > 0 && refused > 0, "{answered} answered");
    (answered, one_call)
}

async fn member_budget_and_team_limits(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    new_team(&p, json!({"team_id": "crew", "rpm_limit": 1000})).await;
    // One call costs about 2e-5 USD: u1's budget in the team covers one.
    let a = post(
        &p,
        "/team/member_add",
        MASTER,
        json!({"team_id": "crew", "member": [{"user_id": "u1"}, {"user_id": "u2"}],
               "max_budget_in_team": 0.00001}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    post(
        &p,
        "/team/member_update",
        MASTER,
        json!({"team_id": "crew", "user_id": "u2", "max_budget_in_team": null}),
    )
    .await;
    let (k1, _) = generate(&p, json!({"team_id": "crew", "user_id": "u1"})).await;
    let (k2, _) = generate(&p, json!({"team_id": "crew", "user_id": "u2"})).await;
    let first = post(&p, "/v1/chat/completions", &k1, bounded_chat()).await;
    assert_eq!(first.status, 200);
    let cost: f64 = store_support::cost_of(&first);
    let over = post(&p, "/v1/chat/completions", &k1, bounded_chat()).await;
    assert_eq!(over.status, 422, "{}", over.body);
    let (kind, msg) = error_of(&over);
    assert_eq!(kind, "budget_exceeded");
    assert!(
        msg.starts_with("Budget has been exceeded! User=u1 in Team=crew Current cost: ")
            && msg.ends_with("Max budget: 1e-05"),
        "{msg}"
    );
    // u2 has no budget of their own in the team.
    for _ in 0..3 {
        assert_eq!(
            post(&p, "/v1/chat/completions", &k2, bounded_chat())
                .await
                .status,
            200
        );
    }
    let info = team_info(&p, "crew").await;
    let u1 = info["team_memberships"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["user_id"] == "u1")
        .unwrap();
    assert!((u1["spend"].as_f64().unwrap() - cost).abs() < 1e-12, "{u1}");

    // Resetting a member's spend frees their budget in the team at once; it never hands out
    // budget, and a team admin may not reset their own.
    let reset = |who: &'static str, key: String, to: Value| {
        let p = &p;
        async move {
            post(
                p,
                &format!("/team/crew/member/{who}/reset_spend"),
                &key,
                json!({"reset_to": to}),
            )
            .await
        }
    };
    let a = reset("u1", MASTER.to_string(), json!(0.00002)).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(error_of(&a).1.contains("must be <= budget"), "{}", a.body);
    let a = reset("nobody", MASTER.to_string(), json!(0)).await;
    assert_eq!(a.status, 404, "{}", a.body);
    assert!(
        error_of(&a)
            .1
            .contains("User nobody is not a member of team crew.")
    );
    store_support::internal_user(&p, "u2").await;
    post(
        &p,
        "/team/member_update",
        MASTER,
        json!({"team_id": "crew", "user_id": "u2", "role": "admin"}),
    )
    .await;
    let (admin_key, _) = generate(&p, json!({"user_id": "u2"})).await;
    let a = reset("u2", admin_key.clone(), json!(0)).await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(error_of(&a).1.contains("Cannot reset your own spend"));
    let a = reset("u1", admin_key, json!(0)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["spend"], 0.0);
    assert!(
        close(a.body["previous_spend"].as_f64().unwrap(), cost),
        "{}",
        a.body
    );
    assert_eq!(a.body["max_budget"], 0.00001);
    assert_eq!(
        post(&p, "/v1/chat/completions", &k1, bounded_chat())
            .await
            .status,
        200,
        "the member's budget is free again"
    );
    let a = reset("u1", MASTER.to_string(), json!(1.0)).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(
        error_of(&a).1.contains("must be <= current spend"),
        "{}",
        a.body
    );

    // The team's rpm limit counts every key of the team.
    post(
        &p,
        "/team/update",
        MASTER,
        json!({"team_id": "crew", "rpm_limit": 5}),
    )
    .await;
    let (k3, _) = generate(&p, json!({"team_id": "crew"})).await;
    let limited = post(&p, "/v1/chat/completions", &k3, bounded_chat()).await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    let (kind, msg) = error_of(&limited);
    assert_eq!(kind, "rate_limit_error");
    assert!(
        msg.starts_with(
            "Rate limit exceeded for team: crew. Limit type: requests. Current limit: 5"
        ),
        "{msg}"
    );
    assert!(limited.headers.contains_key("retry-after"));
    p.stop().await;
    place.cleanup().await;
}

/// `/global/spend/report?group_by=team|customer` in LiteLLM's shape.
async fn spend_report_by_team_and_customer(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    new_team(&p, json!({"team_id": "alpha", "team_alias": "Alpha"})).await;
    // A second team of the same alias: one entry of the answer, as the name is what it shows.
    new_team(&p, json!({"team_id": "beta", "team_alias": "Alpha"})).await;
    let (k1, g1) = generate(&p, json!({"team_id": "alpha"})).await;
    let (k2, _) = generate(&p, json!({})).await;
    let (k3, g3) = generate(&p, json!({"team_id": "beta"})).await;
    let as_user = |u: &str| json!({"model": "mocky", "user": u, "messages": [{"role": "user", "content": "Say hi"}]});
    let mut cost = 0.0f64;
    for (key, user) in [(&k1, "e1"), (&k1, "e1"), (&k2, "e2"), (&k3, "e3")] {
        let a = post(&p, "/v1/chat/completions", key, as_user(user)).await;
        assert_eq!(a.status, 200, "{}", a.body);
        cost = store_support::cost_of(&a);
    }
    assert_eq!(spend_rows(&p, "", 4).await.len(), 4);
    assert_eq!(spend_rows(&p, "?team_id=alpha", 2).await.len(), 2);

    let r = get(&p, "/global/spend/report?group_by=team", MASTER).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let days = r.body.as_array().unwrap();
    assert_eq!(days.len(), 1, "{}", r.body);
    assert!(
        days[0]["group_by_day"]
            .as_str()
            .unwrap()
            .ends_with("T00:00:00+00:00")
    );
    let teams = days[0]["teams"].as_array().unwrap();
    assert_eq!(teams.len(), 2, "{}", r.body);
    let alpha = teams.iter().find(|t| t["team_name"] == "Alpha").unwrap();
    assert!((alpha["total_spend"].as_f64().unwrap() - 3.0 * cost).abs() < 1e-12);
    let alpha_keys: Vec<&Value> = alpha["metadata"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["api_key"])
        .collect();
    // The parts in group order (team id), then model and key.
    assert_eq!(alpha_keys, [&g1["token_id"], &g3["token_id"]], "{}", r.body);
    assert_eq!(alpha["metadata"][0]["model"], "openai/mock-model");
    assert!(alpha["metadata"][0]["total_tokens"].as_i64().unwrap() > 0);
    let none = teams
        .iter()
        .find(|t| t["team_name"] == "Unassigned Team")
        .unwrap();
    assert!((none["total_spend"].as_f64().unwrap() - cost).abs() < 1e-12);

    let r = get(&p, "/global/spend/report?group_by=customer", MASTER).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let customers = r.body[0]["customers"].as_array().unwrap();
    let e1 = customers.iter().find(|c| c["customer"] == "e1").unwrap();
    assert!((e1["total_spend"].as_f64().unwrap() - 2.0 * cost).abs() < 1e-12);
    assert!(customers.iter().any(|c| c["customer"] == "e2"));
    let bad = get(&p, "/global/spend/report?group_by=planet", MASTER).await;
    assert_eq!(bad.status, 400);
    p.stop().await;
    place.cleanup().await;
}

/// A report over several days is one JSON array, the days in order, each day's groups in
/// byte order with calls of no team first (it is written a day at a time); a range with no
/// spend is `[]`.
async fn spend_report_spans_days_in_order(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    new_team(&p, json!({"team_id": "alpha", "team_alias": "Alpha"})).await;
    // Rows of yesterday and today, written through the store as the spend writer would.
    let store = place.open_store().await;
    let now = chrono::Utc::now();
    let day1 = now.date_naive();
    let day0 = day1 - chrono::Duration::days(1);
    let rows = [
        (now - chrono::Duration::days(1), Some("alpha"), Some("c1")),
        (now, None, None),
        (now, Some("alpha"), Some("c1")),
    ];
    let rows = rows
        .into_iter()
        .enumerate()
        .map(|(i, (at, team, end_user))| idlehands_store::SpendLogRow {
            request_id: format!("row-{i}"),
            call_type: "acompletion".into(),
            api_key: format!("key-{i}"),
            model: "openai/mock-model".into(),
            spend: 1_000,
            start_time: at,
            end_time: at,
            team_id: team.map(str::to_owned),
            end_user: end_user.map(str::to_owned),
            status: "success".into(),
            ..Default::default()
        });
    write_rows(&store, rows.collect()).await;
    store.close().await;
    for (group, list, name) in [
        ("team", "teams", "team_name"),
        ("customer", "customers", "customer"),
    ] {
        let r = get(
            &p,
            &format!("/global/spend/report?group_by={group}&start_date={day0}&end_date={day1}"),
            MASTER,
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.headers["content-type"], "application/json");
        let days: Vec<(String, Vec<Value>)> = r
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                let names = d[list].as_array().unwrap().iter().map(|g| g[name].clone());
                (
                    d["group_by_day"].as_str().unwrap().to_owned(),
                    names.collect(),
                )
            })
            .collect();
        let want: Vec<(String, Vec<Value>)> = match group {
            "team" => vec![
                (format!("{day0}T00:00:00+00:00"), vec![json!("Alpha")]),
                (
                    format!("{day1}T00:00:00+00:00"),
                    vec![json!("Unassigned Team"), json!("Alpha")],
                ),
            ],
            _ => vec![
                (format!("{day0}T00:00:00+00:00"), vec![json!("c1")]),
                (
                    format!("{day1}T00:00:00+00:00"),
                    vec![json!(""), json!("c1")],
                ),
            ],
        };
        assert_eq!(days, want, "{}", r.body);
        let none = get(
            &p,
            &format!(
                "/global/spend/report?group_by={group}&start_date={0}&end_date={0}",
                day0 - chrono::Duration::days(3)
            ),
            MASTER,
        )
        .await;
        assert_eq!(none.status, 200, "{}", none.body);
        assert_eq!(none.body, json!([]));
    }
    p.stop().await;
    place.cleanup().await;
}

/// A team's budget window rolls over: refused calls are admitted again, and the team's
/// committed spend starts again from zero.
async fn team_budget_window_resets(b: Backend) {
    let place = Place::new(b);
    // The team made on the minute: its 2 s windows start then.
    let clock = clock_at_minute_start();
    let p = start_at(&place, "", &clock).await;
    new_team(
        &p,
        json!({"team_id": "w", "max_budget": 0.00001, "budget_duration": "2s"}),
    )
    .await;
    let (key, _) = generate(&p, json!({"team_id": "w"})).await;
    let first = post(&p, "/v1/chat/completions", &key, bounded_chat()).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let refused = post(&p, "/v1/chat/completions", &key, bounded_chat()).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(
        error_of(&refused)
            .1
            .starts_with("Budget has been exceeded! Team=w "),
        "{}",
        refused.body
    );
    clock.advance(std::time::Duration::from_millis(1900));
    let still = post(&p, "/v1/chat/completions", &key, bounded_chat()).await;
    assert_eq!(still.status, 422, "within the window: {}", still.body);
    clock.advance(std::time::Duration::from_millis(100));
    let reopened = post(&p, "/v1/chat/completions", &key, bounded_chat()).await;
    assert_eq!(reopened.status, 200, "a new window: {}", reopened.body);
    let cost: f64 = store_support::cost_of(&reopened);
    let store = p.store.clone();
    p.stop().await;
    // The database holds this window's spend only: the call made in it.
    let committed = store
        .ledger
        .store()
        .get_budget("team:w")
        .await
        .unwrap()
        .unwrap();
    assert!(
        (committed.spend as f64 / 1e9 - cost).abs() < 1e-12,
        "{} vs {cost}",
        committed.spend
    );
    place.cleanup().await;
}

/// A key whose team is not there: a proxy admin may create one (as in LiteLLM), but every
/// call of it is refused with LiteLLM's 404; an internal user may not create one, and no key
/// is moved to a team that is not there.
async fn keys_of_a_missing_team_are_refused(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    let (ghostly, created) = generate(&p, json!({"team_id": "ghost"})).await;
    assert_eq!(created["team_id"], "ghost");
    let a = post(&p, "/v1/chat/completions", &ghostly, chat("mocky")).await;
    assert_eq!(a.status, 404, "{}", a.body);
    assert_eq!(
        a.body,
        json!({"error": {
            "message": "{'error': \"Team doesn't exist in db. Team=ghost. Create team via `/team/new` call.\"}",
            "type": "auth_error",
            "param": null,
            "code": "404",
        }})
    );
    // Created afterwards, the team bounds the key from then on.
    new_team(&p, json!({"team_id": "ghost", "models": ["other"]})).await;
    let a = post(&p, "/v1/chat/completions", &ghostly, chat("mocky")).await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert_eq!(
        post(&p, "/v1/chat/completions", &ghostly, chat("other"))
            .await
            .status,
        200
    );

    let made = post(&p, "/user/new", MASTER, json!({"user_id": "intern"})).await;
    assert_eq!(made.status, 200, "{}", made.body);
    let intern = made.body["key"].as_str().unwrap().to_string();
    let a = post(&p, "/key/generate", &intern, json!({"team_id": "nowhere"})).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(
        error_of(&a).1,
        "Team not found for team_id=nowhere. Non-admin users cannot create keys for non-existent teams."
    );
    let a = post(
        &p,
        "/key/update",
        MASTER,
        json!({"key": ghostly, "team_id": "nowhere"}),
    )
    .await;
    assert_eq!(a.status, 404, "{}", a.body);
    assert_eq!(
        error_of(&a).1,
        "{'error': \"Team doesn't exist in db. Team=nowhere. Create team via `/team/new` call.\"}"
    );
    p.stop().await;
    place.cleanup().await;
}

/// A delete that names an id twice deletes it once (it used to fail as not found the second
/// time, and with it the whole delete).
async fn deletes_naming_an_id_twice(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    for t in ["a", "b", "c"] {
        new_team(&p, json!({"team_id": t})).await;
    }
    let a = post(
        &p,
        "/team/delete",
        MASTER,
        json!({"team_ids": ["a", "b", "a"]}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["deleted_teams"], json!(["a", "b"]));
    assert_eq!(get(&p, "/team/info?team_id=c", MASTER).await.status, 200);

    for u in ["x", "y", "z"] {
        let made = post(&p, "/user/new", MASTER, json!({"user_id": u})).await;
        assert_eq!(made.status, 200, "{}", made.body);
    }
    let a = post(
        &p,
        "/user/delete",
        MASTER,
        json!({"user_ids": ["x", "y", "x"]}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["deleted_users"], json!(["x", "y"]));
    assert_eq!(get(&p, "/user/info?user_id=z", MASTER).await.status, 200);

    let (k1, _) = generate(&p, json!({})).await;
    let (k2, _) = generate(&p, json!({})).await;
    let (k3, _) = generate(&p, json!({})).await;
    let a = post(&p, "/key/delete", MASTER, json!({"keys": [k1, k2, k1]})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    for (key, status) in [(&k1, 401), (&k2, 401), (&k3, 200)] {
        assert_eq!(
            post(&p, "/v1/chat/completions", key, chat("mocky"))
                .await
                .status,
            status
        );
    }
    p.stop().await;
    place.cleanup().await;
}

/// `/team/bulk_member_add`: several members in one change, or every user (proxy admins
/// only), answered per member; a team admin may add to their team.
async fn bulk_member_add(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    for u in ["lead", "m1", "m2", "m3"] {
        let a = post(
            &p,
            "/user/new",
            MASTER,
            json!({"user_id": u, "auto_create_key": false}),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let t = post(
        &p,
        "/team/new",
        MASTER,
        json!({"team_id": "bt", "members_with_roles": [{"user_id": "lead", "role": "admin"}]}),
    )
    .await;
    assert_eq!(t.status, 200, "{}", t.body);
    let (lead, _) = generate(&p, json!({"user_id": "lead"})).await;
    let a = post(
        &p,
        "/team/bulk_member_add",
        &lead,
        json!({"team_id": "bt", "members": [{"user_id": "m1"}, {"user_id": "m2", "role": "admin"}],
               "max_budget_in_team": 2.5}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["total_requested"], 2);
    assert_eq!(a.body["successful_additions"], 2);
    assert_eq!(a.body["failed_additions"], 0);
    assert_eq!(a.body["results"][1]["user_id"], "m2");
    assert_eq!(a.body["results"][1]["success"], true);
    assert_eq!(
        a.body["results"][0]["updated_team_membership"]["team_id"], "bt",
        "{}",
        a.body
    );
    let info = get(&p, "/team/info?team_id=bt", MASTER).await;
    let members: Vec<&str> = info.body["team_info"]["members_with_roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(members, ["lead", "m1", "m2"], "{}", info.body);
    // Every user: proxy admins only.
    let refused = post(
        &p,
        "/team/bulk_member_add",
        &lead,
        json!({"team_id": "bt", "all_users": true}),
    )
    .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        error_of(&refused)
            .1
            .contains("`all_users=true` is restricted to PROXY_ADMIN")
    );
    let (m3, _) = generate(&p, json!({"user_id": "m3"})).await;
    let outsider = post(
        &p,
        "/team/bulk_member_add",
        &m3,
        json!({"team_id": "bt", "members": [{"user_id": "m3"}]}),
    )
    .await;
    assert_eq!(outsider.status, 403, "{}", outsider.body);
    // A member's own membership: m1 with the 2.5 USD budget in the team; m3 (not a member
    // yet) and a key without a user are refused.
    let (m1, _) = generate(&p, json!({"user_id": "m1"})).await;
    let mine = get(&p, "/team/bt/members/me", &m1).await;
    assert_eq!(mine.status, 200, "{}", mine.body);
    assert_eq!(mine.body["user_id"], "m1");
    assert_eq!(mine.body["role"], "user");
    assert_eq!(mine.body["spend"], 0.0);
    assert_eq!(
        mine.body["litellm_budget_table"]["max_budget"], 2.5,
        "{}",
        mine.body
    );
    let not_member = get(&p, "/team/bt/members/me", &m3).await;
    assert_eq!(not_member.status, 404, "{}", not_member.body);
    assert!(
        error_of(&not_member)
            .1
            .contains("User user_id=m3 is not a member of team_id=bt.")
    );
    let (teamless, _) = generate(&p, json!({})).await;
    assert_eq!(get(&p, "/team/bt/members/me", &teamless).await.status, 400);
    assert_eq!(get(&p, "/team/nope/members/me", &m1).await.status, 404);
    let empty = post(
        &p,
        "/team/bulk_member_add",
        MASTER,
        json!({"team_id": "bt", "members": []}),
    )
    .await;
    assert_eq!(empty.status, 400, "{}", empty.body);
    let many: Vec<serde_json::Value> = (0..501)
        .map(|i| json!({"user_id": format!("x{i}")}))
        .collect();
    let too_many = post(
        &p,
        "/team/bulk_member_add",
        MASTER,
        json!({"team_id": "bt", "members": many}),
    )
    .await;
    assert_eq!(too_many.status, 400, "{}", too_many.body);
    // All users not yet in: m3 is added, the members already in stay once.
    let all = post(
        &p,
        "/team/bulk_member_add",
        MASTER,
        json!({"team_id": "bt", "all_users": true}),
    )
    .await;
    assert_eq!(all.status, 200, "{}", all.body);
    let info = get(&p, "/team/info?team_id=bt", MASTER).await;
    let mut members: Vec<&str> = info.body["team_info"]["members_with_roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user_id"].as_str().unwrap())
        .collect();
    members.sort_unstable();
    assert_eq!(members, ["lead", "m1", "m2", "m3"], "{}", info.body);
    // A member added by email only sees their budget in the team (kept under the email).
    let made = post(
        &p,
        "/user/new",
        MASTER,
        json!({"user_id": "m9", "user_email": "m9@example.com", "user_role": "internal_user"}),
    )
    .await;
    assert_eq!(made.status, 200, "{}", made.body);
    let added = post(
        &p,
        "/team/member_add",
        MASTER,
        json!({"team_id": "bt", "member": {"user_email": "m9@example.com", "role": "user"},
               "max_budget_in_team": 1.5}),
    )
    .await;
    assert_eq!(added.status, 200, "{}", added.body);
    let (m9, _) = generate(&p, json!({"user_id": "m9"})).await;
    let mine = get(&p, "/team/bt/members/me", &m9).await;
    assert_eq!(mine.status, 200, "{}", mine.body);
    assert_eq!(mine.body["user_email"], "m9@example.com");
    assert_eq!(
        mine.body["litellm_budget_table"]["max_budget"], 1.5,
        "{}",
        mine.body
    );
    p.stop().await;
    place.cleanup().await;
}

/// `default_team_params` (and the older `default_team_settings`' budget) fill what `/team/new`
/// leaves out, and bound the new team's calls.
async fn new_teams_take_the_configured_defaults(b: Backend) {
    let place = Place::new(b);
    let p = start(
        &place,
        "litellm_settings:
  default_team_params: {max_budget: 0.00001, budget_duration: 30d, rpm_limit: 10}
  default_team_settings: [{team_id: t0, max_budget: 7, success_callback: [langfuse]}]
",
    )
    .await;
    let team = new_team(&p, json!({"team_alias": "defaults"})).await;
    assert_eq!(team["max_budget"], 0.00001, "{team}");
    assert_eq!(team["budget_duration"], "30d", "{team}");
    assert_eq!(team["rpm_limit"], 10, "{team}");
    // The body's own values win; an explicit null window stays null.
    let own = new_team(
        &p,
        json!({"team_alias": "own", "max_budget": 3, "budget_duration": null}),
    )
    .await;
    assert_eq!(own["max_budget"], 3.0, "{own}");
    assert_eq!(own["budget_duration"], Value::Null, "{own}");
    // The defaulted budget bounds the team's keys.
    let (key, _) = generate(&p, json!({"team_id": team["team_id"]})).await;
    let first = post(&p, "/v1/chat/completions", &key, bounded_chat()).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let over = post(&p, "/v1/chat/completions", &key, bounded_chat()).await;
    assert_eq!(over.status, 422, "{}", over.body);
    p.stop().await;
    place.cleanup().await;
}

both_backends!(
    new_teams_take_the_configured_defaults,
    bulk_member_add,
    keys_of_a_missing_team_are_refused,
    deletes_naming_an_id_twice,
    team_budget_window_resets,
    spend_report_by_team_and_customer,
    spend_report_spans_days_in_order,
    team_lifecycle_and_bad_input,
    team_models_bound_their_keys,
    team_budget_holds_under_200_concurrent_calls,
    member_budget_and_team_limits,
);

/// Two instances on one Postgres and one Redis: the team budget is one budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn team_budget_holds_across_two_instances() {
    let place = Place::new(Backend::Postgres);
    let prefix = format!("t{}:", uuid::Uuid::new_v4().simple());
    let yaml = store_support::yaml(&format!(
        "  redis_key_prefix: \"{prefix}\"\n  redis_failure_mode: closed\nrouter_settings:\n  redis_url: {}\n",
        redis_url()
    ));
    let instance = || async {
        let cfg = store_support::config(&yaml);
        let s = store_support::settings(&cfg, &place);
        assert!(s.redis.is_some());
        store_support::start_with(cfg, s).await
    };
    let a = instance().await;
    let b = instance().await;
    let budget = 0.001;
    new_team(&a, json!({"team_id": "fleet", "max_budget": budget})).await;
    let (k1, _) = generate(&a, json!({"team_id": "fleet"})).await;
    let (k2, _) = generate(&b, json!({"team_id": "fleet"})).await;
    let (answered, one_call) = hammer(&[&a, &b], &[&k1, &k2], "Team=fleet").await;
    // A call's settlement is queued as its answer leaves and reaches the shared counters with
    // its instance's next Redis batch: the last answers' may still be on their way.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    for p in [&a, &b] {
        loop {
            let spend = team_info(p, "fleet").await["team_info"]["spend"]
                .as_f64()
                .unwrap();
            assert!(spend <= budget + one_call + 1e-12, "{spend}");
            if (spend - one_call * answered as f64).abs() < 1e-9 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{spend} against {answered} calls of {one_call}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    // A change on one instance reaches the other's keys.
    post(&a, "/team/block", MASTER, json!({"team_id": "fleet"})).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = post(&b, "/v1/chat/completions", &k2, chat("mocky")).await;
        if r.status == 401 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "block not seen: {}",
            r.status
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    a.stop().await;
    b.stop().await;
    place.cleanup().await;
}
