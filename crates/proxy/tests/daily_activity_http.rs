#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! LiteLLM's daily activity (the dashboard's Usage page) over HTTP: `/user/daily/activity`,
//! `/team/daily/activity`, `/customer/daily/activity` and `/organization/daily/activity` in
//! LiteLLM's shape, their sums equal to the spend-log rows', pages, filters, and who may see
//! what. SQLite and Postgres.

mod store_support;

use chrono::{Duration, Utc};
use serde_json::{Value, json};
use store_support::{
    Backend, MASTER, Place, Proxy, error_of, generate, get, post, spend_rows, start, write_rows,
};

async fn ok(p: &Proxy, path: &str, key: &str) -> Value {
    let a = get(p, path, key).await;
    assert_eq!(a.status, 200, "{path}: {}", a.body);
    a.body
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("a number: {v}"))
}

/// The `metrics` of every day on every page of `path` (which has no `page` yet), added up:
/// spend, requests.
async fn all_pages(p: &Proxy, path: &str, key: &str) -> (f64, i64, usize) {
    let mut spend = 0.0;
    let mut requests = 0;
    let mut pages = 0;
    for page in 1.. {
        let body = ok(p, &format!("{path}&page={page}&page_size=1"), key).await;
        pages += 1;
        for day in body["results"].as_array().unwrap() {
            spend += num(&day["metrics"]["spend"]);
            requests += day["metrics"]["api_requests"].as_i64().unwrap();
        }
        if !body["metadata"]["has_more"].as_bool().unwrap() {
            assert_eq!(body["metadata"]["total_pages"], json!(page));
            break;
        }
    }
    (spend, requests, pages)
}

async fn usage_page_answers(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    for (id, role) in [("u1", "internal_user"), ("lead", "internal_user")] {
        let a = post(
            &p,
            "/user/new",
            MASTER,
            json!({"user_id": id, "user_email": format!("{id}@example.com"), "user_role": role}),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let a = post(
        &p,
        "/team/new",
        MASTER,
        json!({"team_id": "alpha", "team_alias": "Alpha",
               "members_with_roles": [{"user_id": "lead", "role": "admin"}, {"user_id": "u1", "role": "user"}]}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let (k1, g1) = generate(
        &p,
        json!({"user_id": "u1", "team_id": "alpha", "key_alias": "k-one"}),
    )
    .await;
    let (k3, g3) = generate(&p, json!({"user_id": "lead", "team_id": "alpha"})).await;
    let (service, _) = generate(&p, json!({})).await;
    let t1 = g1["token_id"].as_str().unwrap().to_owned();
    let t3 = g3["token_id"].as_str().unwrap().to_owned();
    let call = |model: &str, user: &str| json!({"model": model, "user": user, "messages": [{"role": "user", "content": "Say hi"}]});
    for (key, model, end_user) in [
        (&k1, "mocky", "e1"),
        (&k1, "mocky", "e1"),
        (&k1, "other", "e2"),
        (&k3, "mocky", "e1"),
        (&service, "mocky", "e2"),
    ] {
        let a = post(&p, "/v1/chat/completions", key, call(model, end_user)).await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let master_call = post(&p, "/v1/chat/completions", MASTER, call("mocky", "e3")).await;
    assert_eq!(master_call.status, 200);
    let rows = spend_rows(&p, "", 6).await;
    let today = Utc::now().date_naive();
    p.stop().await;

    // Two days ago, as another instance's writer would have stored them.
    let earlier = today - Duration::days(2);
    let store = place.open_store().await;
    let at = earlier.and_hms_opt(12, 0, 0).unwrap().and_utc();
    let old = |id: &str, spend: i64| idlehands_store::SpendLogRow {
        request_id: id.into(),
        call_type: "acompletion".into(),
        model: "openai/mock-model".into(),
        model_group: Some("mocky".into()),
        custom_llm_provider: Some("openai".into()),
        api_key: t1.clone(),
        user: Some("u1".into()),
        team_id: Some("alpha".into()),
        start_time: at,
        end_time: at,
        spend,
        prompt_tokens: 10,
        completion_tokens: 5,
        total_tokens: 15,
        status: "success".into(),
        ..Default::default()
    };
    write_rows(
        &store,
        vec![old("old-1", 1_000_000), old("old-2", 2_500_000)],
    )
    .await;
    store.close().await;
    let p = start(&place, "").await;

    let range = format!("start_date={earlier}&end_date={today}");
    let body = ok(&p, &format!("/user/daily/activity?{range}"), MASTER).await;
    let days = body["results"].as_array().unwrap();
    let dates: Vec<&str> = days.iter().map(|d| d["date"].as_str().unwrap()).collect();
    assert_eq!(
        dates,
        [today.to_string(), earlier.to_string()],
        "newest first"
    );
    // Today's sums are the rows' sums.
    let row_spend: f64 = rows.iter().map(|r| num(&r["spend"])).sum();
    let row_prompt: i64 = rows
        .iter()
        .map(|r| r["prompt_tokens"].as_i64().unwrap())
        .sum();
    let m = &days[0]["metrics"];
    assert!((num(&m["spend"]) - row_spend).abs() < 1e-12, "{m}");
    assert_eq!(m["api_requests"], 6);
    assert_eq!(m["successful_requests"], 6);
    assert_eq!(m["failed_requests"], 0);
    assert_eq!(m["prompt_tokens"], row_prompt);
    assert_eq!(
        m["total_tokens"].as_i64().unwrap(),
        row_prompt + m["completion_tokens"].as_i64().unwrap()
    );
    assert_eq!(days[1]["metrics"]["spend"], json!(0.0035));
    assert_eq!(days[1]["metrics"]["api_requests"], 2);
    let meta = &body["metadata"];
    assert!((num(&meta["total_spend"]) - row_spend - 0.0035).abs() < 1e-12);
    assert_eq!(meta["total_api_requests"], 8);
    assert_eq!(meta["page"], 1);
    assert_eq!(meta["has_more"], false);

    // The breakdown.
    let bd = &days[0]["breakdown"];
    let k1_today = &bd["api_keys"][&t1];
    assert_eq!(k1_today["metrics"]["api_requests"], 3, "{bd}");
    assert_eq!(
        k1_today["metadata"],
        json!({"key_alias": "k-one", "team_id": "alpha", "user_id": "u1",
               "user_email": "u1@example.com", "key_exists": true})
    );
    assert_eq!(bd["api_keys"].as_object().unwrap().len(), 4, "{bd}");
    assert_eq!(bd["model_groups"]["mocky"]["metrics"]["api_requests"], 5);
    assert_eq!(bd["model_groups"]["other"]["metrics"]["api_requests"], 1);
    assert_eq!(
        bd["model_groups"]["mocky"]["api_key_breakdown"][&t1]["metrics"]["api_requests"],
        2
    );
    assert_eq!(
        bd["models"]["openai/mock-model"]["metrics"]["api_requests"],
        5
    );
    assert_eq!(bd["providers"]["openai"]["metrics"]["api_requests"], 6);
    // Entities of the user route are users, named by e-mail; calls without one unassigned.
    assert_eq!(bd["entities"]["u1"]["metrics"]["api_requests"], 3);
    assert_eq!(
        bd["entities"]["u1"]["metadata"]["user_email"],
        "u1@example.com"
    );
    assert_eq!(bd["entities"]["Unassigned"]["metrics"]["api_requests"], 2);
    for empty in ["mcp_servers", "endpoints", "guardrails"] {
        assert_eq!(bd[empty], json!({}), "{empty}");
    }

    // Pages of one group each cover the same sums.
    let (spend, requests, pages) =
        all_pages(&p, &format!("/user/daily/activity?{range}"), MASTER).await;
    assert!((spend - row_spend - 0.0035).abs() < 1e-12);
    assert_eq!(requests, 8);
    // Groups: day x key x model x model group x provider x user.
    assert_eq!(
        pages, 6,
        "k1 on two models today, k3, service, master; k1 earlier"
    );
    // A short last page counts the groups from where it starts; a page past the end counts
    // them in the store.
    for (q, empty, total_pages, has_more) in [
        ("page=2&page_size=4", false, 2, false),
        ("page=1&page_size=4", false, 2, true),
        ("page=7&page_size=1", true, 6, false),
    ] {
        let body = ok(&p, &format!("/user/daily/activity?{range}&{q}"), MASTER).await;
        assert_eq!(
            body["results"].as_array().unwrap().is_empty(),
            empty,
            "{q}: {body}"
        );
        assert_eq!(body["metadata"]["total_pages"], total_pages, "{q}");
        assert_eq!(body["metadata"]["has_more"], has_more, "{q}");
    }

    // The whole range in one answer, the key breakdowns cut to the keys of most spend.
    let body = ok(
        &p,
        &format!("/user/daily/activity/aggregated?{range}&api_key_limit=2"),
        MASTER,
    )
    .await;
    let meta = &body["metadata"];
    assert_eq!(
        (&meta["page"], &meta["total_pages"], &meta["has_more"]),
        (&json!(1), &json!(1), &json!(false))
    );
    assert_eq!(meta["total_api_requests"], 8);
    assert!((num(&meta["total_spend"]) - row_spend - 0.0035).abs() < 1e-12);
    assert_eq!(meta["api_key_limit"], 2);
    assert_eq!(meta["total_api_keys"], 4, "k1, k3, service, master");
    assert_eq!(
        meta["entity_total_api_keys"],
        json!({"u1": 1, "lead": 1, "Unassigned": 2})
    );
    let days = body["results"].as_array().unwrap();
    assert_eq!(days.len(), 2);
    let bd = &days[0]["breakdown"];
    // Buckets count every key; their key parts only the top two (k1 spent the most).
    assert_eq!(bd["model_groups"]["mocky"]["metrics"]["api_requests"], 5);
    let parts = bd["model_groups"]["mocky"]["api_key_breakdown"]
        .as_object()
        .unwrap();
    assert!(parts.len() <= 2 && parts.contains_key(&t1), "{bd}");
    assert_eq!(bd["api_keys"].as_object().unwrap().len(), 2, "{bd}");
    assert_eq!(
        bd["api_keys"][&t1]["metadata"]["key_alias"], "k-one",
        "{bd}"
    );
    assert_eq!(
        bd["entities"]["u1"]["metadata"]["user_email"],
        "u1@example.com"
    );
    assert_eq!(days[0]["metrics"]["api_requests"], 6);
    // Same rules: a user sees their own; the range and the limit are bounded.
    let body = ok(&p, &format!("/user/daily/activity/aggregated?{range}"), &k1).await;
    assert_eq!(body["metadata"]["total_api_requests"], 5);
    assert_eq!(body["metadata"]["api_key_limit"], 100);
    for q in [
        "start_date=2025-01-01&end_date=2026-12-01",
        &format!("{range}&api_key_limit=0"),
    ] {
        let a = get(&p, &format!("/user/daily/activity/aggregated?{q}"), MASTER).await;
        assert_eq!(a.status, 400, "{q}: {}", a.body);
    }
    let body = ok(
        &p,
        &format!("/team/daily/activity/aggregated?{range}&team_ids=alpha"),
        MASTER,
    )
    .await;
    let alpha = &body["results"][0]["breakdown"]["entities"]["alpha"];
    assert_eq!(alpha["metadata"], json!({"team_alias": "Alpha"}));
    assert_eq!(alpha["metrics"]["api_requests"], 4);
    assert_eq!(
        body["metadata"]["entity_total_api_keys"],
        json!({"alpha": 2})
    );

    // Filters.
    let body = ok(
        &p,
        &format!("/user/daily/activity?{range}&user_id=u1&model=openai/mock-model"),
        MASTER,
    )
    .await;
    assert_eq!(body["metadata"]["total_api_requests"], 4, "{body}");
    let body = ok(
        &p,
        &format!("/user/daily/activity?{range}&api_key={t3}"),
        MASTER,
    )
    .await;
    assert_eq!(body["metadata"]["total_api_requests"], 1);
    // The key itself names its hash too.
    let body = ok(
        &p,
        &format!("/user/daily/activity?{range}&api_key={k3}"),
        MASTER,
    )
    .await;
    assert_eq!(body["metadata"]["total_api_requests"], 1);

    // An internal user sees their own user; another's is refused, as is a key without a user.
    let body = ok(&p, &format!("/user/daily/activity?{range}"), &k1).await;
    assert_eq!(body["metadata"]["total_api_requests"], 5);
    let a = get(
        &p,
        &format!("/user/daily/activity?{range}&user_id=lead"),
        &k1,
    )
    .await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(error_of(&a).1.contains("only view their own spend data"));
    let a = get(&p, &format!("/user/daily/activity?{range}"), &service).await;
    assert_eq!(a.status, 403, "{}", a.body);

    // Dates as LiteLLM checks them.
    for (q, msg) in [
        ("", "Please provide start_date and end_date"),
        (
            "start_date=2026-1-05&end_date=2026-01-06",
            "must be valid YYYY-MM-DD dates",
        ),
        (
            "start_date=2026-01-06&end_date=2026-01-05",
            "end_date must be on or after start_date",
        ),
    ] {
        let a = get(&p, &format!("/user/daily/activity?{q}"), MASTER).await;
        assert_eq!(a.status, 400, "{q}: {}", a.body);
        assert!(error_of(&a).1.contains(msg), "{q}: {}", a.body);
    }
    let a = get(
        &p,
        &format!("/user/daily/activity?{range}&page_size=1001"),
        MASTER,
    )
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.body["error"]["param"], "page_size");

    // Teams: entities are teams with their alias.
    let body = ok(
        &p,
        &format!("/team/daily/activity?{range}&team_ids=alpha"),
        MASTER,
    )
    .await;
    assert_eq!(body["metadata"]["total_api_requests"], 6);
    let alpha = &body["results"][0]["breakdown"]["entities"]["alpha"];
    assert_eq!(alpha["metadata"], json!({"team_alias": "Alpha"}));
    assert_eq!(alpha["metrics"]["api_requests"], 4);
    let body = ok(
        &p,
        &format!("/team/daily/activity?{range}&exclude_team_ids=alpha"),
        MASTER,
    )
    .await;
    assert_eq!(body["metadata"]["total_api_requests"], 2, "{body}");
    // Every team: still named.
    let body = ok(&p, &format!("/team/daily/activity?{range}"), MASTER).await;
    let entities = &body["results"][0]["breakdown"]["entities"];
    assert_eq!(
        entities["alpha"]["metadata"],
        json!({"team_alias": "Alpha"})
    );
    assert_eq!(entities["Unassigned"]["metrics"]["api_requests"], 2);
    // The team's admin sees its keys; a member only their own; a stranger team is refused.
    let body = ok(&p, &format!("/team/daily/activity?{range}"), &k3).await;
    assert_eq!(body["metadata"]["total_api_requests"], 6);
    let body = ok(&p, &format!("/team/daily/activity?{range}"), &k1).await;
    assert_eq!(body["metadata"]["total_api_requests"], 5);
    let a = get(
        &p,
        &format!("/team/daily/activity?{range}&team_ids=beta"),
        &k1,
    )
    .await;
    assert_eq!(a.status, 404, "{}", a.body);
    assert!(
        error_of(&a)
            .1
            .contains("User does not belong to Team= beta")
    );

    // End users: admins only.
    let body = ok(
        &p,
        &format!("/customer/daily/activity?start_date={today}&end_date={today}&end_user_ids=e1,e3"),
        MASTER,
    )
    .await;
    assert_eq!(body["metadata"]["total_api_requests"], 4);
    let entities = body["results"][0]["breakdown"]["entities"]
        .as_object()
        .unwrap();
    assert_eq!(entities.len(), 2);
    assert_eq!(entities["e1"]["metrics"]["api_requests"], 3);
    let a = get(&p, &format!("/end_user/daily/activity?{range}"), &k1).await;
    assert_eq!(a.status, 401, "{}", a.body);

    // Organizations: none here, so every call is unassigned.
    let body = ok(&p, &format!("/organization/daily/activity?{range}"), MASTER).await;
    assert_eq!(
        body["results"][0]["breakdown"]["entities"]["Unassigned"]["metrics"]["api_requests"],
        6
    );
    p.stop().await;
    place.cleanup().await;
}

both_backends!(usage_page_answers);
