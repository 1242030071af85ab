#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `GET /v2/team/list`: filters, sorts and pages over the teams, each with its member and key
//! counts, and who sees which teams (admins all, an organization's admins its teams, anyone
//! else their own). SQLite and Postgres.

mod store_support;

use serde_json::{Value, json};
use store_support::{Backend, MASTER, Place, error_of, generate, get, post, start};

fn ids(v: &Value) -> Vec<String> {
    v["teams"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|t| t["team_id"].as_str().unwrap().to_string())
        .collect()
}

async fn teams_listed_in_pages(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    for u in ["u1", "u2", "lead"] {
        let a = post(
            &p,
            "/user/new",
            MASTER,
            json!({"user_id": u, "user_role": "internal_user", "auto_create_key": false}),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let org = post(
        &p,
        "/organization/new",
        MASTER,
        json!({"organization_id": "acme", "organization_alias": "Acme"}),
    )
    .await;
    assert_eq!(org.status, 200, "{}", org.body);
    let a = post(
        &p,
        "/organization/member_add",
        MASTER,
        json!({"organization_id": "acme", "member": {"user_id": "lead", "user_role": "org_admin"}}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    // Made in this order: a1, a2, b1.
    for team in [
        json!({"team_id": "a1", "team_alias": "First", "organization_id": "acme", "max_budget": 5,
               "members_with_roles": [{"user_id": "u1", "role": "admin"}, {"user_id": "u2", "role": "user"}]}),
        json!({"team_id": "a2", "team_alias": "Second", "organization_id": "acme", "max_budget": 1}),
        json!({"team_id": "b1", "team_alias": "Third", "members_with_roles": [{"user_id": "u1", "role": "user"}]}),
    ] {
        let a = post(&p, "/team/new", MASTER, team).await;
        assert_eq!(a.status, 200, "{}", a.body);
        // Distinct creation times, to the millisecond.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    for team in ["a1", "a1", "b1"] {
        generate(&p, json!({"team_id": team})).await;
    }
    let list = |q: &str, key: &str| {
        let (p, q, key) = (&p, q.to_string(), key.to_string());
        async move { get(p, &format!("/v2/team/list{q}"), &key).await }
    };

    // Newest first by default; pages.
    let all = list("", MASTER).await;
    assert_eq!(all.status, 200, "{}", all.body);
    assert_eq!(ids(&all.body), ["b1", "a2", "a1"]);
    assert_eq!(
        (
            all.body["total"].as_i64(),
            all.body["page"].as_i64(),
            all.body["page_size"].as_i64(),
            all.body["total_pages"].as_i64()
        ),
        (Some(3), Some(1), Some(10), Some(1))
    );
    let a1 = all.body["teams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["team_id"] == "a1")
        .unwrap()
        .clone();
    assert_eq!(
        (a1["members_count"].as_i64(), a1["keys_count"].as_i64()),
        (Some(2), Some(2))
    );
    assert_eq!(all.body["teams"][0]["keys_count"], 1);
    assert_eq!(all.body["teams"][1]["keys_count"], 0);
    let p2 = list("?page=2&page_size=2", MASTER).await;
    assert_eq!(ids(&p2.body), ["a1"]);
    assert_eq!(p2.body["total_pages"], 2);

    // Filters.
    assert_eq!(ids(&list("?team_alias=SEC", MASTER).await.body), ["a2"]);
    assert_eq!(ids(&list("?team_id=b1", MASTER).await.body), ["b1"]);
    assert_eq!(
        ids(&list("?organization_id=acme&sort_by=team_id", MASTER)
            .await
            .body),
        ["a1", "a2"]
    );
    assert_eq!(ids(&list("?user_id=u2", MASTER).await.body), ["a1"]);
    assert_eq!(
        ids(&list("?search=a", MASTER).await.body),
        Vec::<String>::new()
    );
    assert_eq!(
        ids(&list(
            "?search=a&search_team_id_match=prefix&sort_by=team_id",
            MASTER
        )
        .await
        .body),
        ["a1", "a2"]
    );
    assert_eq!(ids(&list("?search=thi", MASTER).await.body), ["b1"]);

    // Sorts: ascending unless asked; a missing budget last going up, first going down.
    assert_eq!(
        ids(&list("?sort_by=team_id", MASTER).await.body),
        ["a1", "a2", "b1"]
    );
    assert_eq!(
        ids(&list("?sort_by=team_id&sort_order=desc", MASTER).await.body),
        ["b1", "a2", "a1"]
    );
    assert_eq!(
        ids(&list("?sort_by=max_budget", MASTER).await.body),
        ["a2", "a1", "b1"]
    );
    assert_eq!(
        ids(&list("?sort_by=max_budget&sort_order=desc", MASTER)
            .await
            .body),
        ["b1", "a1", "a2"]
    );

    // Who sees what.
    let (u1, _) = generate(&p, json!({"user_id": "u1"})).await;
    let (lead, _) = generate(&p, json!({"user_id": "lead"})).await;
    let (plain, _) = generate(&p, json!({})).await;
    assert_eq!(ids(&list("?sort_by=team_id", &u1).await.body), ["a1", "b1"]);
    let other = list("?user_id=u2", &u1).await;
    assert_eq!(other.status, 401, "{}", other.body);
    assert!(
        error_of(&other)
            .1
            .contains("Only admin users can query all teams/other teams")
    );
    assert_eq!(
        ids(&list("?sort_by=team_id", &lead).await.body),
        ["a1", "a2"]
    );
    let outside = list("?organization_id=elsewhere", &lead).await;
    assert_eq!(outside.status, 403, "{}", outside.body);
    assert_eq!(list("", &plain).await.status, 401);

    // Refused asks.
    for q in [
        "?status=deleted",
        "?status=gone",
        "?sort_by=nonsense",
        "?page_size=101",
        "?page=0",
        "?search_team_id_match=fuzzy",
    ] {
        let a = list(q, MASTER).await;
        assert_eq!(a.status, 400, "{q}: {}", a.body);
    }
    p.stop().await;
    place.cleanup().await;
}

both_backends!(teams_listed_in_pages);
