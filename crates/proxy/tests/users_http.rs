#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Users through HTTP: `/user/*` with LiteLLM's bodies and statuses, roles enforced on the
//! admin routes (an internal user manages only their own keys, a viewer changes nothing,
//! nobody raises their own role), user budgets and models on calls. SQLite and Postgres.

mod store_support;

use serde_json::{Value, json};
use store_support::{Backend, MASTER, Place, Proxy, chat, error_of, get, post, start};

fn bounded_chat() -> Value {
    json!({"model": "mocky", "max_tokens": 50, "messages": [{"role": "user", "content": "Say hi"}]})
}

async fn new_user(p: &Proxy, body: Value) -> (String, Value) {
    let a = post(p, "/user/new", MASTER, body).await;
    assert_eq!(a.status, 200, "{}", a.body);
    (
        a.body["key"].as_str().unwrap_or_default().to_string(),
        a.body,
    )
}

async fn users_roles_and_budgets(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    assert_eq!(
        post(&p, "/team/new", MASTER, json!({"team_id": "t1"}))
            .await
            .status,
        200
    );
    assert_eq!(
        post(&p, "/team/new", MASTER, json!({"team_id": "t2"}))
            .await
            .status,
        200
    );
    let (admin, _) = new_user(&p, json!({"user_id": "admin1", "user_role": "proxy_admin"})).await;
    let (viewer, _) = new_user(
        &p,
        json!({"user_id": "viewer", "user_role": "proxy_admin_viewer"}),
    )
    .await;
    let (alice, created) = new_user(
        &p,
        json!({"user_id": "alice", "user_email": "alice@example.com", "max_budget": 0.00001,
               "models": ["mocky"], "teams": ["t1"]}),
    )
    .await;
    assert_eq!(created["user_role"], "internal_user");
    assert_eq!(created["max_budget"], 1e-5);
    assert!(created["token_id"].is_string());
    let (_, quiet) = new_user(&p, json!({"user_id": "carol", "auto_create_key": false})).await;
    assert!(quiet["key"].is_null());

    // Bad input: nothing half-written.
    let dup = post(&p, "/user/new", MASTER, json!({"user_id": "alice"})).await;
    assert_eq!(dup.status, 400);
    let bad = post(
        &p,
        "/user/new",
        MASTER,
        json!({"user_id": "x", "user_role": "god"}),
    )
    .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["error"]["param"], "user_role");
    let no_team = post(
        &p,
        "/user/new",
        MASTER,
        json!({"user_id": "dave", "teams": ["nope"]}),
    )
    .await;
    assert_eq!(no_team.status, 404, "{}", no_team.body);
    assert_eq!(get(&p, "/user/info?user_id=dave", MASTER).await.status, 404);

    // Nobody but an admin changes users, roles included.
    let up = post(
        &p,
        "/user/update",
        &alice,
        json!({"user_id": "alice", "user_role": "proxy_admin"}),
    )
    .await;
    assert_eq!(up.status, 403, "{}", up.body);
    assert!(error_of(&up).1.contains("Your role=internal_user"));
    assert_eq!(
        post(&p, "/user/new", &alice, json!({"user_id": "eve"}))
            .await
            .status,
        403
    );
    assert_eq!(
        post(&p, "/user/new", &viewer, json!({"user_id": "eve"}))
            .await
            .status,
        403
    );

    // A viewer reads everything and changes nothing.
    assert_eq!(get(&p, "/key/list", &viewer).await.status, 200);
    assert_eq!(get(&p, "/user/list", &viewer).await.status, 200);
    assert_eq!(get(&p, "/global/spend/report", &viewer).await.status, 200);
    assert_eq!(get(&p, "/team/info?team_id=t2", &viewer).await.status, 200);
    let g = post(&p, "/key/generate", &viewer, json!({})).await;
    assert_eq!(g.status, 403);
    assert!(error_of(&g).1.contains("Your role=proxy_admin_viewer"));
    assert_eq!(
        post(&p, "/team/new", &viewer, json!({"team_id": "v"}))
            .await
            .status,
        403
    );

    // An admin user's key administers.
    let t = post(&p, "/team/new", &admin, json!({"team_id": "t3"})).await;
    assert_eq!(t.status, 200, "{}", t.body);
    assert_eq!(t.body["created_by"], "admin1");
    let up = post(
        &p,
        "/user/update",
        &admin,
        json!({"user_id": "carol", "user_alias": "Carol"}),
    )
    .await;
    assert_eq!(up.status, 200);
    assert_eq!(up.body["user_alias"], "Carol");

    // An internal user manages their own keys only.
    let own = post(&p, "/key/generate", &alice, json!({"key_alias": "alice-2"})).await;
    assert_eq!(own.status, 200, "{}", own.body);
    assert_eq!(own.body["user_id"], "alice");
    let other = post(&p, "/key/generate", &alice, json!({"user_id": "carol"})).await;
    assert_eq!(other.status, 403);
    let not_member = post(&p, "/key/generate", &alice, json!({"team_id": "t2"})).await;
    assert_eq!(not_member.status, 403);
    let in_team = post(&p, "/key/generate", &alice, json!({"team_id": "t1"})).await;
    assert_eq!(in_team.status, 200, "{}", in_team.body);
    let listed = get(&p, "/key/list?return_full_object=true", &alice).await;
    assert_eq!(listed.status, 200);
    let keys = listed.body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3);
    assert!(keys.iter().all(|k| k["user_id"] == "alice"));
    let admin_token = get(&p, "/user/info?user_id=admin1", MASTER).await.body["keys"][0]["token"]
        .as_str()
        .unwrap()
        .to_string();
    let theirs = post(
        &p,
        "/key/update",
        &alice,
        json!({"key": admin_token, "max_budget": 1}),
    )
    .await;
    assert_eq!(theirs.status, 403);
    let block = post(&p, "/key/block", &alice, json!({"key": admin_token})).await;
    assert_eq!(block.status, 403);
    let move_it = post(
        &p,
        "/key/update",
        &alice,
        json!({"key": own.body["key"], "user_id": "carol"}),
    )
    .await;
    assert_eq!(move_it.status, 403);
    let del = post(
        &p,
        "/key/delete",
        &alice,
        json!({"key_aliases": ["alice-2"]}),
    )
    .await;
    assert_eq!(del.status, 200, "{}", del.body);
    assert_eq!(
        get(&p, "/user/info?user_id=admin1", &alice).await.status,
        403
    );
    assert_eq!(get(&p, "/user/list", &alice).await.status, 403);

    // A team admin manages the team's members, and only that team's.
    let member = json!({"team_id": "t1", "member": {"user_id": "carol"}});
    assert_eq!(
        post(&p, "/team/member_add", &alice, member.clone())
            .await
            .status,
        403
    );
    let up = post(
        &p,
        "/team/member_update",
        MASTER,
        json!({"team_id": "t1", "user_id": "alice", "role": "admin"}),
    )
    .await;
    assert_eq!(up.status, 200, "{}", up.body);
    let add = post(&p, "/team/member_add", &alice, member).await;
    assert_eq!(add.status, 200, "{}", add.body);
    assert_eq!(add.body["members"], json!(["alice", "carol"]));
    let other = post(
        &p,
        "/team/member_add",
        &alice,
        json!({"team_id": "t2", "member": {"user_id": "carol"}}),
    )
    .await;
    assert_eq!(other.status, 403);
    assert_eq!(
        post(
            &p,
            "/team/update",
            &alice,
            json!({"team_id": "t1", "max_budget": 100})
        )
        .await
        .status,
        403
    );
    let gone = post(
        &p,
        "/team/member_delete",
        &alice,
        json!({"team_id": "t1", "user_id": "carol"}),
    )
    .await;
    assert_eq!(gone.status, 200, "{}", gone.body);

    // The user's models bound their keys without a team; the user's budget all their keys.
    assert_eq!(
        post(&p, "/v1/chat/completions", &alice, chat("other"))
            .await
            .status,
        403
    );
    let first = post(&p, "/v1/chat/completions", &alice, bounded_chat()).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let cost: f64 = store_support::cost_of(&first);
    let over = post(&p, "/v1/chat/completions", &alice, bounded_chat()).await;
    assert_eq!(over.status, 422, "{}", over.body);
    let (kind, msg) = error_of(&over);
    assert_eq!(kind, "budget_exceeded");
    assert!(
        msg.starts_with("ExceededBudget: User=alice over budget. Spend="),
        "{msg}"
    );
    assert!(msg.contains("Budget=1e-05"), "{msg}");
    // `/user/info` without a user id: the caller's own, with keys, teams and spend.
    let me = get(&p, "/user/info", &alice).await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.body["user_id"], "alice");
    assert_eq!(me.body["keys"].as_array().unwrap().len(), 2);
    assert_eq!(me.body["teams"][0]["team_id"], "t1");
    assert_eq!(me.body["user_info"]["teams"], json!(["t1"]));
    assert!((me.body["user_info"]["spend"].as_f64().unwrap() - cost).abs() < 1e-12);
    // An admin raises the budget: calls go through again.
    post(
        &p,
        "/user/update",
        MASTER,
        json!({"user_id": "alice", "max_budget": 1}),
    )
    .await;
    assert_eq!(
        post(&p, "/v1/chat/completions", &alice, bounded_chat())
            .await
            .status,
        200
    );

    // List and delete.
    let all = get(&p, "/user/list?page_size=2", MASTER).await;
    assert_eq!(all.body["total"], 4, "{}", all.body);
    assert_eq!(all.body["users"].as_array().unwrap().len(), 2);
    assert_eq!(all.body["total_pages"], 2);
    let gone = post(
        &p,
        "/user/delete",
        MASTER,
        json!({"user_ids": ["alice", "nope"]}),
    )
    .await;
    assert_eq!(gone.status, 404);
    let gone = post(&p, "/user/delete", MASTER, json!({"user_ids": ["alice"]})).await;
    assert_eq!(gone.status, 200, "{}", gone.body);
    assert_eq!(gone.body["deleted_keys"].as_array().unwrap().len(), 2);
    assert_eq!(
        post(&p, "/v1/chat/completions", &alice, chat("mocky"))
            .await
            .status,
        401
    );
    let t1 = get(&p, "/team/info?team_id=t1", MASTER).await;
    assert_eq!(t1.body["team_info"]["members"], json!([]));
    p.stop().await;
    place.cleanup().await;
}

/// `/v2/user/info`: the user alone (team ids, live spend), to admins, the teams' admins and
/// the user; anyone else gets the 404 a missing user gets.
async fn user_info_v2_is_the_user_alone(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    for (id, role) in [
        ("lead", "internal_user"),
        ("u1", "internal_user"),
        ("u2", "internal_user"),
    ] {
        let a = post(
            &p,
            "/user/new",
            MASTER,
            json!({"user_id": id, "user_role": role, "max_budget": 5, "user_email": format!("{id}@x.io")}),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let team = post(
        &p,
        "/team/new",
        MASTER,
        json!({"team_id": "t1", "members_with_roles": [
            {"user_id": "lead", "role": "admin"}, {"user_id": "u1", "role": "user"}]}),
    )
    .await;
    assert_eq!(team.status, 200, "{}", team.body);
    let key_of = |user: &'static str| {
        let p = &p;
        async move {
            let a = post(p, "/key/generate", MASTER, json!({"user_id": user})).await;
            a.body["key"].as_str().unwrap().to_string()
        }
    };
    let (lead, u1, u2) = (key_of("lead").await, key_of("u1").await, key_of("u2").await);
    // u1 spends, and the answer shows it at once.
    let called = post(&p, "/v1/chat/completions", &u1, chat("mocky")).await;
    assert_eq!(called.status, 200, "{}", called.body);
    let cost: f64 = store_support::cost_of(&called);

    let a = get(&p, "/v2/user/info?user_id=u1", MASTER).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["user_email"], "u1@x.io");
    assert_eq!(a.body["user_role"], "internal_user");
    assert_eq!(a.body["max_budget"], 5.0);
    assert_eq!(a.body["teams"], json!(["t1"]));
    assert!(
        (a.body["spend"].as_f64().unwrap() - cost).abs() < 1e-12,
        "{}",
        a.body
    );
    assert_eq!(a.body.get("keys"), None);
    // Themselves, with or without user_id; their team's admin; not another member.
    assert_eq!(get(&p, "/v2/user/info", &u1).await.body["user_id"], "u1");
    assert_eq!(get(&p, "/v2/user/info?user_id=u1", &lead).await.status, 200);
    for (key, id) in [(&u2, "u1"), (&u1, "u2"), (&u1, "lead")] {
        let a = get(&p, &format!("/v2/user/info?user_id={id}"), key).await;
        assert_eq!(a.status, 404, "{id}: {}", a.body);
        assert!(error_of(&a).1.contains(&format!("User not found: {id}")));
    }
    // The roles a user can be given, to any key.
    let roles = get(&p, "/user/available_roles", &u2).await;
    assert_eq!(roles.status, 200, "{}", roles.body);
    let mut names: Vec<&String> = roles.body.as_object().unwrap().keys().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "internal_user",
            "internal_user_viewer",
            "proxy_admin",
            "proxy_admin_viewer"
        ]
    );
    assert!(roles.body["proxy_admin"]["ui_label"].is_string());
    let missing = get(&p, "/v2/user/info?user_id=nobody", MASTER).await;
    assert_eq!(missing.status, 404, "{}", missing.body);
    let (plain, _) = store_support::generate(&p, json!({})).await;
    let a = get(&p, "/v2/user/info", &plain).await;
    assert_eq!(a.status, 400, "{}", a.body);
    p.stop().await;
    place.cleanup().await;
}

/// `/user/bulk_update`: each listed update on its own (one failing leaves the others done), or
/// one update for every user; proxy admins only.
async fn user_bulk_update(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    for id in ["b1", "b2"] {
        let a = post(
            &p,
            "/user/new",
            MASTER,
            json!({"user_id": id, "user_email": format!("{id}@x.io"), "auto_create_key": false}),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let a = post(
        &p,
        "/user/bulk_update",
        MASTER,
        json!({"users": [
            {"user_id": "b1", "max_budget": 3.0},
            {"user_email": "b2@x.io", "user_alias": "Bee", "favourite_colour": "blue"},
            {"user_id": "nobody", "max_budget": 1.0}
        ]}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["total_requested"], 3);
    assert_eq!(a.body["successful_updates"], 2);
    assert_eq!(a.body["failed_updates"], 1);
    let r = a.body["results"].as_array().unwrap();
    assert_eq!(r[0]["updated_user"]["max_budget"], 3.0);
    assert_eq!(r[1]["updated_user"]["user_alias"], "Bee");
    assert!(
        r[1]["ignored_fields"]["favourite_colour"].is_string(),
        "{}",
        a.body
    );
    assert_eq!(r[2]["success"], false);
    assert!(
        r[2]["error"].as_str().unwrap().contains("nobody"),
        "{}",
        a.body
    );
    let b1 = get(&p, "/user/info?user_id=b1", MASTER).await;
    assert_eq!(b1.body["user_info"]["max_budget"], 3.0);

    // Everyone at once.
    let a = post(
        &p,
        "/user/bulk_update",
        MASTER,
        json!({"all_users": true, "user_updates": {"tpm_limit": 777}}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["successful_updates"], 2);
    for id in ["b1", "b2"] {
        let u = get(&p, &format!("/user/info?user_id={id}"), MASTER).await;
        assert_eq!(u.body["user_info"]["tpm_limit"], 777, "{}", u.body);
    }
    for body in [
        json!({}),
        json!({"users": []}),
        json!({"all_users": true}),
        json!({"all_users": true, "user_updates": {"password": "x"}}),
    ] {
        let a = post(&p, "/user/bulk_update", MASTER, body.clone()).await;
        assert_eq!(a.status, 400, "{body}: {}", a.body);
    }
    let (key, _) = store_support::generate(&p, json!({"user_id": "b1"})).await;
    let a = post(
        &p,
        "/user/bulk_update",
        &key,
        json!({"users": [{"user_id": "b1"}]}),
    )
    .await;
    assert_eq!(a.status, 403, "{}", a.body);
    p.stop().await;
    place.cleanup().await;
}

/// `default_internal_user_params`, `max_internal_user_budget` and
/// `internal_user_budget_duration` fill `/user/new` as LiteLLM fills it, and the filled
/// models and budget hold on calls.
async fn new_users_get_the_configured_defaults(b: Backend) {
    let place = Place::new(b);
    let p = start(
        &place,
        "litellm_settings:
  default_internal_user_params: {models: [mocky], budget_duration: 30d}
  max_internal_user_budget: 0.00001
  internal_user_budget_duration: 1mo
",
    )
    .await;
    let (key, made) = new_user(&p, json!({"user_id": "dana", "user_role": "internal_user"})).await;
    assert_eq!(made["models"], json!(["mocky"]));
    assert_eq!(made["max_budget"], 1e-5);
    // The defaults' duration was there first.
    assert_eq!(made["budget_duration"], "30d");
    let (_, own) = new_user(
        &p,
        json!({"user_id": "erin", "user_role": "internal_user", "max_budget": 5, "models": ["other"]}),
    )
    .await;
    assert_eq!(own["max_budget"], 5.0);
    assert_eq!(own["models"], json!(["other"]));
    let (_, admin) = new_user(&p, json!({"user_id": "root", "user_role": "proxy_admin"})).await;
    assert!(admin["max_budget"].is_null(), "{admin}");

    // The defaulted models and budget bound dana's calls.
    let other = post(&p, "/v1/chat/completions", &key, chat("other")).await;
    assert_eq!(other.status, 403, "{}", other.body);
    assert_eq!(
        post(&p, "/v1/chat/completions", &key, bounded_chat())
            .await
            .status,
        200
    );
    let over = post(&p, "/v1/chat/completions", &key, bounded_chat()).await;
    assert_ne!(over.status, 200, "{}", over.body);
    assert!(error_of(&over).1.contains("dana"), "{}", over.body);
    p.stop().await;
    place.cleanup().await;
}

both_backends!(
    users_roles_and_budgets,
    user_info_v2_is_the_user_alone,
    user_bulk_update,
    new_users_get_the_configured_defaults
);
