#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Named budgets (`/budget/*`) and the end users that follow them by `budget_id`: a budget's
//! limits bound every follower, each with its own spend; a change reaches them at once; a
//! budget in use cannot be deleted; who may do what. SQLite and Postgres.

mod store_support;

use serde_json::{Value, json};
use store_support::{Backend, MASTER, Place, error_of, generate, get, post, start};

fn chat_as(user: &str) -> Value {
    json!({"model": "mocky", "max_tokens": 50, "user": user,
           "messages": [{"role": "user", "content": "Say hi"}]})
}

async fn end_users_follow_a_named_budget(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    let (key, _) = generate(&p, json!({})).await;
    let call = |user: &'static str| {
        let (p, key) = (&p, key.clone());
        async move { post(p, "/v1/chat/completions", &key, chat_as(user)).await }
    };

    // A budget of 1e-5 USD: about one call each.
    let made = post(
        &p,
        "/budget/new",
        MASTER,
        json!({"budget_id": "free-tier", "max_budget": 0.00001, "budget_duration": "30d",
               "tpd_limit": 5}),
    )
    .await;
    assert_eq!(made.status, 200, "{}", made.body);
    assert_eq!(made.body["budget_id"], "free-tier");
    assert_eq!(made.body["max_budget"], 0.00001);
    assert_eq!(made.body["budget_duration"], "30d");
    assert_eq!(made.body["created_by"], "default_user_id");
    assert!(
        made.body["ignored_fields"]["tpd_limit"].is_string(),
        "{}",
        made.body
    );
    let dup = post(&p, "/budget/new", MASTER, json!({"budget_id": "free-tier"})).await;
    assert_eq!(dup.status, 400, "{}", dup.body);
    assert!(
        error_of(&dup)
            .1
            .contains("Budget with id 'free-tier' already exists.")
    );
    let generated = post(&p, "/budget/new", MASTER, json!({"rpm_limit": 3})).await;
    assert_eq!(generated.status, 200, "{}", generated.body);
    let other_id = generated.body["budget_id"].as_str().unwrap().to_string();
    assert_eq!(other_id.len(), 36, "a UUID: {other_id}");

    for user in ["f1", "f2"] {
        let a = post(
            &p,
            "/customer/new",
            MASTER,
            json!({"user_id": user, "budget_id": "free-tier"}),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.body["budget_id"], "free-tier");
        assert_eq!(a.body["litellm_budget_table"]["max_budget"], 0.00001);
        assert!(a.body["litellm_budget_table"]["budget_reset_at"].is_string());
    }
    // Each follower spends on their own.
    assert_eq!(call("f1").await.status, 200);
    let over = call("f1").await;
    assert_eq!(over.status, 422, "{}", over.body);
    assert!(
        error_of(&over)
            .1
            .starts_with("ExceededBudget: End User=f1 over budget."),
        "{}",
        over.body
    );
    assert_eq!(call("f2").await.status, 200);

    // Raising the budget frees every follower at once.
    let raised = post(
        &p,
        "/budget/update",
        MASTER,
        json!({"budget_id": "free-tier", "max_budget": 10.0}),
    )
    .await;
    assert_eq!(raised.status, 200, "{}", raised.body);
    assert_eq!(raised.body["max_budget"], 10.0);
    assert_eq!(call("f1").await.status, 200);
    assert_eq!(call("f2").await.status, 200);
    let f1 = get(&p, "/customer/info?end_user_id=f1", MASTER).await;
    assert_eq!(
        f1.body["litellm_budget_table"]["max_budget"], 10.0,
        "{}",
        f1.body
    );
    // So does a rate limit.
    post(
        &p,
        "/budget/update",
        MASTER,
        json!({"budget_id": "free-tier", "rpm_limit": 1}),
    )
    .await;
    let limited = call("f2").await;
    assert_eq!(limited.status, 200, "{}", limited.body);
    let limited = call("f2").await;
    assert_eq!(limited.status, 429, "{}", limited.body);

    // A follower's own limits: refused while following; allowed once it stops.
    let own = post(
        &p,
        "/customer/update",
        MASTER,
        json!({"user_id": "f1", "max_budget": 1.0}),
    )
    .await;
    assert_eq!(own.status, 400, "{}", own.body);
    assert!(error_of(&own).1.contains("follows budget 'free-tier'"));
    let both = post(
        &p,
        "/customer/new",
        MASTER,
        json!({"user_id": "f3", "budget_id": "free-tier", "max_budget": 1.0}),
    )
    .await;
    assert_eq!(both.status, 400, "{}", both.body);
    let missing = post(
        &p,
        "/customer/new",
        MASTER,
        json!({"user_id": "f3", "budget_id": "no-such-budget"}),
    )
    .await;
    assert_eq!(missing.status, 404, "{}", missing.body);
    assert!(error_of(&missing).1.contains("no-such-budget"));

    // In use: not deleted. Once nobody follows it: deleted.
    let refused = post(&p, "/budget/delete", MASTER, json!({"id": "free-tier"})).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        error_of(&refused).1.contains("used by 2 end user(s)"),
        "{}",
        refused.body
    );
    let unlinked = post(
        &p,
        "/customer/update",
        MASTER,
        json!({"user_id": "f1", "budget_id": null, "max_budget": 20.0}),
    )
    .await;
    assert_eq!(unlinked.status, 200, "{}", unlinked.body);
    assert_eq!(unlinked.body["budget_id"], Value::Null);
    assert_eq!(unlinked.body["litellm_budget_table"]["max_budget"], 20.0);
    let moved = post(
        &p,
        "/customer/update",
        MASTER,
        json!({"user_id": "f2", "budget_id": other_id}),
    )
    .await;
    assert_eq!(moved.status, 200, "{}", moved.body);
    assert_eq!(moved.body["litellm_budget_table"]["rpm_limit"], 3);
    assert_eq!(
        moved.body["litellm_budget_table"]["max_budget"],
        Value::Null
    );

    // Read routes.
    let info = post(
        &p,
        "/budget/info",
        &key,
        json!({"budgets": ["free-tier", "nope"]}),
    )
    .await;
    assert_eq!(info.status, 200, "{}", info.body);
    assert_eq!(info.body.as_array().unwrap().len(), 1);
    assert_eq!(info.body[0]["rpm_limit"], 1);
    let empty = post(&p, "/budget/info", &key, json!({"budgets": []})).await;
    assert_eq!(empty.status, 400, "{}", empty.body);
    let all = get(&p, "/budget/list", MASTER).await;
    assert_eq!(all.body.as_array().unwrap().len(), 2, "{}", all.body);
    let settings = get(&p, "/budget/settings?budget_id=free-tier", MASTER).await;
    let max = settings
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field_name"] == "max_budget")
        .unwrap()
        .clone();
    assert_eq!(max["field_value"], 10.0);
    assert_eq!(max["field_type"], "Float");

    // Only proxy admins change budgets; only those who read everything list them.
    for (route, body) in [
        ("/budget/new", json!({"budget_id": "x"})),
        (
            "/budget/update",
            json!({"budget_id": "free-tier", "max_budget": 99}),
        ),
        ("/budget/delete", json!({"id": "free-tier"})),
    ] {
        let a = post(&p, route, &key, body).await;
        assert_eq!(a.status, 403, "{route}: {}", a.body);
    }
    assert_eq!(get(&p, "/budget/list", &key).await.status, 403);
    p.stop().await;

    // Kept across a restart, links included.
    let p = start(&place, "").await;
    let f2 = get(&p, "/customer/info?end_user_id=f2", MASTER).await;
    assert_eq!(f2.body["budget_id"], other_id.as_str(), "{}", f2.body);
    let deleted = post(&p, "/budget/delete", MASTER, json!({"id": "free-tier"})).await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(deleted.body["budget_id"], "free-tier");
    let again = post(&p, "/budget/delete", MASTER, json!({"id": "free-tier"})).await;
    assert_eq!(again.status, 404, "{}", again.body);
    p.stop().await;
    place.cleanup().await;
}

/// An organization follows a named budget as end users do: its teams' keys are bounded by it,
/// a change reaches it at once, and the budget is kept while it follows.
async fn organizations_follow_a_named_budget(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    let made = post(
        &p,
        "/budget/new",
        MASTER,
        json!({"budget_id": "org-tier", "max_budget": 0.00001}),
    )
    .await;
    assert_eq!(made.status, 200, "{}", made.body);
    let org = post(
        &p,
        "/organization/new",
        MASTER,
        json!({"organization_id": "acme", "organization_alias": "Acme", "budget_id": "org-tier"}),
    )
    .await;
    assert_eq!(org.status, 200, "{}", org.body);
    assert_eq!(org.body["budget_id"], "org-tier");
    assert_eq!(org.body["litellm_budget_table"]["max_budget"], 0.00001);
    assert_eq!(org.body.get("ignored_fields"), None, "{}", org.body);
    let t = post(
        &p,
        "/team/new",
        MASTER,
        json!({"team_id": "t", "organization_id": "acme"}),
    )
    .await;
    assert_eq!(t.status, 200, "{}", t.body);
    let (key, _) = generate(&p, json!({"team_id": "t"})).await;
    let call = || {
        let (p, key) = (&p, key.clone());
        async move {
            post(
                p,
                "/v1/chat/completions",
                &key,
                json!({"model": "mocky", "max_tokens": 50,
                       "messages": [{"role": "user", "content": "Say hi"}]}),
            )
            .await
        }
    };
    assert_eq!(call().await.status, 200);
    let over = call().await;
    assert_eq!(over.status, 422, "{}", over.body);
    assert!(
        error_of(&over)
            .1
            .starts_with("Budget has been exceeded! Organization=acme"),
        "{}",
        over.body
    );
    let raised = post(
        &p,
        "/budget/update",
        MASTER,
        json!({"budget_id": "org-tier", "max_budget": 10.0}),
    )
    .await;
    assert_eq!(raised.status, 200, "{}", raised.body);
    assert_eq!(call().await.status, 200);
    let own = post(
        &p,
        "/organization/update",
        MASTER,
        json!({"organization_id": "acme", "max_budget": 1.0}),
    )
    .await;
    assert_eq!(own.status, 400, "{}", own.body);
    assert!(
        error_of(&own)
            .1
            .contains("Organization acme follows budget 'org-tier'")
    );
    let refused = post(&p, "/budget/delete", MASTER, json!({"id": "org-tier"})).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        error_of(&refused)
            .1
            .contains("0 end user(s) and 1 organization(s)")
    );
    let left = post(
        &p,
        "/organization/update",
        MASTER,
        json!({"organization_id": "acme", "budget_id": null}),
    )
    .await;
    assert_eq!(left.status, 200, "{}", left.body);
    assert_eq!(left.body["budget_id"], Value::Null);
    assert_eq!(left.body["litellm_budget_table"]["max_budget"], 10.0);
    let gone = post(&p, "/budget/delete", MASTER, json!({"id": "org-tier"})).await;
    assert_eq!(gone.status, 200, "{}", gone.body);
    p.stop().await;
    place.cleanup().await;
}

/// The admin calls all sent at once; their answers in order.
async fn at_once(p: &store_support::Proxy, calls: &[(&str, Value)]) -> Vec<store_support::Answer> {
    futures_util::future::join_all(
        calls
            .iter()
            .map(|(path, body)| post(p, path, MASTER, body.clone())),
    )
    .await
}

/// Followers that link while their budget changes or goes: the budget's change and the
/// follower's write take turns, so every follower ends with the budget's last limits, and a
/// budget deleted while some link to it leaves nobody following nothing.
async fn links_take_turns_with_budget_changes(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    for round in 0..10 {
        let id = format!("race-{round}");
        let made = post(
            &p,
            "/budget/new",
            MASTER,
            json!({"budget_id": id, "max_budget": 1.0}),
        )
        .await;
        assert_eq!(made.status, 200, "{}", made.body);
        let users: Vec<String> = (0..4).map(|i| format!("u{round}-{i}")).collect();
        let orgs: Vec<String> = (0..2).map(|i| format!("o{round}-{i}")).collect();
        for u in &users {
            let c = post(&p, "/customer/new", MASTER, json!({"user_id": u})).await;
            assert_eq!(c.status, 200, "{}", c.body);
        }
        for o in &orgs {
            let c = post(
                &p,
                "/organization/new",
                MASTER,
                json!({"organization_id": o, "organization_alias": o}),
            )
            .await;
            assert_eq!(c.status, 200, "{}", c.body);
        }
        let mut calls = Vec::new();
        for (i, u) in users.iter().enumerate() {
            calls.push(("/customer/update", json!({"user_id": u, "budget_id": id})));
            if i == 1 {
                calls.push((
                    "/budget/update",
                    json!({"budget_id": id, "max_budget": 2.0}),
                ));
            }
        }
        for o in &orgs {
            calls.push((
                "/organization/update",
                json!({"organization_id": o, "budget_id": id}),
            ));
        }
        let answers = at_once(&p, &calls).await;
        for a in &answers {
            assert_eq!(a.status, 200, "{}", a.body);
        }
        for u in &users {
            let c = get(&p, &format!("/customer/info?end_user_id={u}"), MASTER).await;
            assert_eq!(c.body["budget_id"], id.as_str(), "{}", c.body);
            assert_eq!(
                c.body["litellm_budget_table"]["max_budget"], 2.0,
                "round {round}: {}",
                c.body
            );
        }
        for o in &orgs {
            let c = get(
                &p,
                &format!("/organization/info?organization_id={o}"),
                MASTER,
            )
            .await;
            assert_eq!(
                c.body["litellm_budget_table"]["max_budget"], 2.0,
                "round {round}: {}",
                c.body
            );
        }
    }
    for round in 0..10 {
        let id = format!("gone-{round}");
        let made = post(
            &p,
            "/budget/new",
            MASTER,
            json!({"budget_id": id, "max_budget": 1.0}),
        )
        .await;
        assert_eq!(made.status, 200, "{}", made.body);
        let mut calls: Vec<(&str, Value)> = (0..4)
            .map(|i| {
                (
                    "/customer/new",
                    json!({"user_id": format!("d{round}-{i}"), "budget_id": id}),
                )
            })
            .collect();
        calls.insert(1, ("/budget/delete", json!({"id": id})));
        let answers = at_once(&p, &calls).await;
        let deleted = answers[1].status == 200;
        for (i, a) in answers.iter().enumerate() {
            if i == 1 {
                assert!(a.status == 200 || a.status == 400, "{}", a.body);
                continue;
            }
            // Linked before the delete (which then refused), or after it (404): never to a
            // budget that is gone.
            let expected = if deleted { 404 } else { 200 };
            assert_eq!(
                a.status, expected,
                "round {round}, delete {}: {}",
                answers[1].status, a.body
            );
        }
        let info = post(&p, "/budget/info", MASTER, json!({"budgets": [id]})).await;
        assert_eq!(
            info.body.as_array().map(Vec::len),
            Some(usize::from(!deleted)),
            "{}",
            info.body
        );
    }
    p.stop().await;
    place.cleanup().await;
}

both_backends!(
    end_users_follow_a_named_budget,
    organizations_follow_a_named_budget,
    links_take_turns_with_budget_changes
);
