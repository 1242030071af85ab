#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Organizations through HTTP: `/organization/*` with LiteLLM's bodies and statuses, teams
//! kept within their organization's models and budget, the organization's budget and models
//! on every call of its teams' keys, spend rows and `/spend/logs` by organization. SQLite and
//! Postgres.

mod store_support;

use serde_json::{Value, json};
use store_support::{
    Backend, MASTER, Place, chat, error_of, generate, get, post, spend_rows, start,
};

fn bounded_chat() -> Value {
    json!({"model": "mocky", "max_tokens": 50, "messages": [{"role": "user", "content": "Say hi"}]})
}

async fn organizations_bound_their_teams(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    let made = post(
        &p,
        "/organization/new",
        MASTER,
        json!({"organization_id": "acme", "organization_alias": "Acme", "models": ["mocky"], "max_budget": 1}),
    )
    .await;
    assert_eq!(made.status, 200, "{}", made.body);
    assert_eq!(made.body["litellm_budget_table"]["max_budget"], 1.0);
    let dup = post(
        &p,
        "/organization/new",
        MASTER,
        json!({"organization_id": "acme", "organization_alias": "A"}),
    )
    .await;
    assert_eq!(dup.status, 400);
    let no_alias = post(
        &p,
        "/organization/new",
        MASTER,
        json!({"organization_id": "x"}),
    )
    .await;
    assert_eq!(no_alias.status, 400);
    let key_only = generate(&p, json!({})).await.0;
    assert_eq!(
        post(
            &p,
            "/organization/new",
            &key_only,
            json!({"organization_alias": "Mine"})
        )
        .await
        .status,
        403
    );

    // Teams stay within their organization.
    let a = post(
        &p,
        "/team/new",
        MASTER,
        json!({"team_id": "t", "organization_id": "nope"}),
    )
    .await;
    assert_eq!(a.status, 400);
    assert!(
        error_of(&a)
            .1
            .contains("Organization not found for organization_id=nope")
    );
    let a = post(
        &p,
        "/team/new",
        MASTER,
        json!({"team_id": "t", "organization_id": "acme", "models": ["other"]}),
    )
    .await;
    assert_eq!(a.status, 400);
    assert!(
        error_of(&a)
            .1
            .starts_with("Model 'other' not in organization's allowed models")
    );
    let a = post(
        &p,
        "/team/new",
        MASTER,
        json!({"team_id": "t", "organization_id": "acme", "max_budget": 5}),
    )
    .await;
    assert_eq!(a.status, 400);
    assert!(error_of(&a).1.contains("exceeds organization's max_budget"));
    assert_eq!(get(&p, "/team/info?team_id=t", MASTER).await.status, 404);
    let a = post(
        &p,
        "/team/new",
        MASTER,
        json!({"team_id": "t", "organization_id": "acme", "max_budget": 0.5}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = post(
        &p,
        "/team/update",
        MASTER,
        json!({"team_id": "t", "models": ["mocky", "other"]}),
    )
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(
        get(&p, "/team/info?team_id=t", MASTER).await.body["team_info"]["models"],
        json!([])
    );

    // The organization's models bound the keys of its teams.
    let (key, _) = generate(&p, json!({"team_id": "t"})).await;
    assert_eq!(
        post(&p, "/v1/chat/completions", &key, chat("other"))
            .await
            .status,
        403
    );
    let first = post(&p, "/v1/chat/completions", &key, bounded_chat()).await;
    assert_eq!(first.status, 200, "{}", first.body);

    // Its budget bounds them too.
    let a = post(
        &p,
        "/organization/update",
        MASTER,
        json!({"organization_id": "acme", "max_budget": 0.00001}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let over = post(&p, "/v1/chat/completions", &key, bounded_chat()).await;
    assert_eq!(over.status, 422, "{}", over.body);
    let (kind, msg) = error_of(&over);
    assert_eq!(kind, "budget_exceeded");
    assert!(
        msg.starts_with("Budget has been exceeded! Organization=acme Current cost: "),
        "{msg}"
    );
    let info = get(&p, "/organization/info?organization_id=acme", MASTER).await;
    assert_eq!(info.status, 200, "{}", info.body);
    let cost: f64 = store_support::cost_of(&first);
    assert!(
        (info.body["spend"].as_f64().unwrap() - cost).abs() < 1e-12,
        "{}",
        info.body
    );
    assert_eq!(info.body["teams"][0]["team_id"], "t");
    // The answered call and the budget refusal (a model refusal leaves no row).
    let rows = spend_rows(&p, "?organization_id=acme", 2).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r["organization_id"] == "acme"));

    // Members.
    let a = post(
        &p,
        "/organization/member_add",
        MASTER,
        json!({"organization_id": "acme", "member": {"user_id": "u1", "user_role": "org_admin"}}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["members"][0]["user_id"], "u1");
    let a = post(
        &p,
        "/organization/member_add",
        MASTER,
        json!({"organization_id": "acme", "member": [{"user_id": "u1"}]}),
    )
    .await;
    assert_eq!(a.status, 400);
    let a = post(
        &p,
        "/organization/member_add",
        MASTER,
        json!({"organization_id": "acme", "member": {"user_id": "u2", "user_role": "proxy_admin"}}),
    )
    .await;
    assert_eq!(a.status, 400, "no escalation through an organization role");
    // LiteLLM's v2 PATCH: the path names the organization.
    let v2 = store_support::send(
        store_support::client()
            .patch(p.url("/v2/organization/acme"))
            .bearer_auth(MASTER)
            .json(&json!({"organization_alias": "Acme Inc", "metadata": {"tier": "gold"}})),
    )
    .await;
    assert_eq!(v2.status, 200, "{}", v2.body);
    assert_eq!(v2.body["organization_alias"], "Acme Inc");
    assert_eq!(v2.body["metadata"], json!({"tier": "gold"}), "{}", v2.body);
    for (body, status) in [
        (json!({"organization_alias": null}), 422),
        (json!({"organization_id": "other", "metadata": {}}), 400),
    ] {
        let a = store_support::send(
            store_support::client()
                .patch(p.url("/v2/organization/acme"))
                .bearer_auth(MASTER)
                .json(&body),
        )
        .await;
        assert_eq!(a.status, status, "{body}: {}", a.body);
    }
    // A member's role changes (LiteLLM's PATCH); a budget of their own is named as ignored.
    let patch = |body: Value| {
        let p = &p;
        async move {
            store_support::send(
                store_support::client()
                    .patch(p.url("/organization/member_update"))
                    .bearer_auth(MASTER)
                    .json(&body),
            )
            .await
        }
    };
    let u = patch(
        json!({"organization_id": "acme", "user_id": "u1", "role": "internal_user",
                         "max_budget_in_organization": 5.0}),
    )
    .await;
    assert_eq!(u.status, 200, "{}", u.body);
    assert_eq!(u.body["user_role"], "internal_user");
    assert_eq!(u.body["organization_id"], "acme");
    assert!(
        u.body["ignored_fields"]["max_budget_in_organization"].is_string(),
        "{}",
        u.body
    );
    let info = get(&p, "/organization/info?organization_id=acme", MASTER).await;
    assert_eq!(info.body["members"][0]["user_role"], "internal_user");
    let u = patch(json!({"organization_id": "acme", "user_id": "u1", "role": "proxy_admin"})).await;
    assert_eq!(
        u.status, 400,
        "no escalation through an organization role: {}",
        u.body
    );
    let u =
        patch(json!({"organization_id": "acme", "user_id": "nobody", "role": "org_admin"})).await;
    assert_eq!(u.status, 404, "{}", u.body);
    assert!(
        error_of(&u)
            .1
            .contains("Member not found in organization for user_id=nobody")
    );
    // LiteLLM's older POST /organization/info: those named that exist.
    let many = post(
        &p,
        "/organization/info",
        MASTER,
        json!({"organizations": ["acme", "nope"]}),
    )
    .await;
    assert_eq!(many.status, 200, "{}", many.body);
    assert_eq!(many.body.as_array().unwrap().len(), 1, "{}", many.body);
    assert_eq!(many.body[0]["organization_id"], "acme");
    let none = post(
        &p,
        "/organization/info",
        MASTER,
        json!({"organizations": []}),
    )
    .await;
    assert_eq!(none.status, 400, "{}", none.body);

    let a = post(
        &p,
        "/organization/member_delete",
        MASTER,
        json!({"organization_id": "acme", "user_id": "u1"}),
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["members"], json!([]));

    // Deleting an organization that still has teams is refused; then it goes.
    let a = post(
        &p,
        "/organization/delete",
        MASTER,
        json!({"organization_ids": ["acme"]}),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    post(&p, "/team/delete", MASTER, json!({"team_ids": ["t"]})).await;
    assert_eq!(
        get(&p, "/organization/list", MASTER)
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let a = post(
        &p,
        "/organization/delete",
        MASTER,
        json!({"organization_ids": ["acme"]}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        get(&p, "/organization/info?organization_id=acme", MASTER)
            .await
            .status,
        404
    );
    p.stop().await;
    place.cleanup().await;
}

both_backends!(organizations_bound_their_teams);
