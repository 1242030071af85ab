#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The rest of LiteLLM's dashboard spend routes: `/global/spend/logs`, `/global/spend/teams`,
//! `/global/spend/end_users`, `/global/spend/provider` (each equal to the spend rows it adds
//! up), `/global/spend/reset` (spend to 0, budgets usable again, the logs kept), `/spend/keys`
//! and `/spend/users`, with who may read what. SQLite and Postgres.

mod store_support;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Duration, NaiveDate, Utc};
use idlehands_store::SpendLogRow;
use idlehands_store::keygen::hash_key;
use serde_json::{Value, json};
use store_support::{
    Backend, MASTER, Place, chat, close, error_of, generate, get, internal_user, post, spend_rows,
    start, write_rows,
};

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap()
}

fn day_of(r: &Value) -> NaiveDate {
    let t = r["startTime"].as_str().unwrap();
    NaiveDate::parse_from_str(&t[..10], "%Y-%m-%d").unwrap()
}

fn cents(x: f64) -> f64 {
    format!("{x:.2}").parse().unwrap()
}

async fn dashboard_routes_equal_their_rows(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    internal_user(&p, "u1").await;
    internal_user(&p, "u2").await;
    for team in [
        json!({"team_id": "alpha", "team_alias": "Alpha Team"}),
        json!({"team_id": "beta"}),
    ] {
        let a = post(&p, "/team/new", MASTER, team).await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let (mine, _) = generate(&p, json!({"user_id": "u1", "team_id": "alpha"})).await;
    let (plain, _) = generate(&p, json!({})).await;
    let (capped, _) = generate(&p, json!({"max_budget": 0.000_000_001})).await;
    p.stop().await;

    // Older calls, as another instance would have stored them: three days ago (in the 30
    // days) and forty (outside them).
    let today = Utc::now().date_naive();
    let old = |id: &str, days: i64, team: Option<&str>, end_user: Option<&str>, spend: i64| {
        let at = (today - Duration::days(days))
            .and_hms_opt(9, 30, 0)
            .unwrap()
            .and_utc();
        SpendLogRow {
            request_id: id.into(),
            call_type: "acompletion".into(),
            api_key: hash_key(&plain),
            spend,
            total_tokens: 10,
            start_time: at,
            end_time: at,
            model: "claude-x".into(),
            model_group: Some("claude".into()),
            model_id: Some("dep-c".into()),
            custom_llm_provider: Some(if days > 30 { "bedrock" } else { "anthropic" }.into()),
            team_id: team.map(str::to_owned),
            end_user: end_user.map(str::to_owned),
            user: None,
            status: "success".into(),
            ..Default::default()
        }
    };
    let store = place.open_store().await;
    write_rows(
        &store,
        vec![
            old("old-1", 3, Some("alpha"), Some("cust-1"), 1_234_567_891),
            old("old-2", 3, Some("beta"), Some("cust-2"), 2_005_000_000),
            old("old-3", 3, None, None, 7_000_000),
            old("ancient", 40, Some("alpha"), Some("cust-1"), 9_000_000_000),
        ],
    )
    .await;
    store.close().await;
    let p = start(&place, "").await;
    for (key, model, user) in [
        (&mine, "mocky", None),
        (&mine, "other", Some("cust-1")),
        (&plain, "mocky", Some("cust-3")),
        (&plain, "mocky", None),
        (&capped, "mocky", None),
    ] {
        let mut body = chat(model);
        if let Some(u) = user {
            body["user"] = json!(u);
        }
        let a = post(&p, "/v1/chat/completions", key, body).await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let rows = spend_rows(&p, "", 9).await;
    let month_start = today - Duration::days(30);
    let recent: Vec<&Value> = rows.iter().filter(|r| day_of(r) >= month_start).collect();
    assert_eq!(recent.len(), 8);

    // Per day over 30 days, all keys.
    let mut per_day: BTreeMap<NaiveDate, f64> = BTreeMap::new();
    for r in &recent {
        *per_day.entry(day_of(r)).or_default() += num(&r["spend"]);
    }
    let a = get(&p, "/global/spend/logs", MASTER).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let got = a.body.as_array().unwrap();
    assert_eq!(got.len(), per_day.len(), "{}", a.body);
    for (g, (day, spend)) in got.iter().zip(&per_day) {
        assert_eq!(g["date"], day.to_string());
        assert!(close(num(&g["spend"]), *spend), "{g} vs {spend}");
    }
    // One key, by its plaintext or hash.
    let plain_hash = hash_key(&plain);
    for k in [plain.clone(), plain_hash.clone()] {
        let a = get(&p, &format!("/global/spend/logs?api_key={k}"), MASTER).await;
        assert_eq!(a.status, 200, "{}", a.body);
        let mut want: BTreeMap<NaiveDate, f64> = BTreeMap::new();
        for r in recent.iter().filter(|r| r["api_key"] == plain_hash) {
            *want.entry(day_of(r)).or_default() += num(&r["spend"]);
        }
        let got = a.body.as_array().unwrap();
        assert_eq!(got.len(), want.len(), "{}", a.body);
        for (g, (day, spend)) in got.iter().zip(&want) {
            assert_eq!(g["date"], day.to_string());
            assert_eq!(g["api_key"], plain_hash);
            assert!(close(num(&g["spend"]), *spend), "{g}");
        }
    }
    // An internal user: their own calls, per day and key.
    let a = get(&p, "/global/spend/logs", &mine).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let own: f64 = recent
        .iter()
        .filter(|r| r["user"] == "u1")
        .map(|r| num(&r["spend"]))
        .sum();
    let got = a.body.as_array().unwrap();
    assert_eq!(got.len(), 1, "{}", a.body);
    assert_eq!(got[0]["user"], "u1");
    assert_eq!(got[0]["api_key"], hash_key(&mine));
    assert!(close(num(&got[0]["spend"]), own));
    assert_eq!(get(&p, "/global/spend/logs", &plain).await.status, 403);

    // Per day and team alias, in cents; the ten teams of most spend.
    let a = get(&p, "/global/spend/teams", MASTER).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let mut want: BTreeMap<(NaiveDate, &str), f64> = BTreeMap::new();
    for r in &recent {
        let alias = if r["team_id"] == "alpha" {
            "Alpha Team"
        } else {
            "Unassigned"
        };
        *want.entry((day_of(r), alias)).or_default() += num(&r["spend"]);
    }
    let mut totals: BTreeMap<&str, f64> = BTreeMap::new();
    let daily = a.body["daily_spend"].as_array().unwrap();
    let days: BTreeSet<NaiveDate> = want.keys().map(|(d, _)| *d).collect();
    assert_eq!(daily.len(), days.len(), "{}", a.body);
    for d in daily {
        let day = NaiveDate::parse_from_str(d["date"].as_str().unwrap(), "%Y-%m-%d").unwrap();
        for ((wd, alias), spend) in &want {
            if *wd == day {
                assert_eq!(num(&d[*alias]), cents(*spend), "{d} {alias}");
                *totals.entry(alias).or_default() += cents(*spend);
            }
        }
        assert_eq!(
            d.as_object().unwrap().len(),
            1 + want.keys().filter(|(wd, _)| *wd == day).count()
        );
    }
    assert_eq!(a.body["teams"], json!(["Alpha Team", "Unassigned"]));
    let top = a.body["total_spend_per_team"].as_array().unwrap();
    assert_eq!(top.len(), 2);
    assert!(num(&top[0]["total_spend"]) >= num(&top[1]["total_spend"]));
    for t in top {
        assert!(
            close(
                num(&t["total_spend"]),
                totals[t["team_id"].as_str().unwrap()]
            ),
            "{t}"
        );
    }
    assert_eq!(get(&p, "/global/spend/teams", &mine).await.status, 403);

    // End users of most spend: the last 30 days by default, one key, a range.
    let a = post(&p, "/global/spend/end_users", MASTER, json!({})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let mut want: BTreeMap<Option<String>, (i64, f64)> = BTreeMap::new();
    for r in &recent {
        let e = want
            .entry(r["end_user"].as_str().map(str::to_owned))
            .or_default();
        e.0 += 1;
        e.1 += num(&r["spend"]);
    }
    let got = a.body.as_array().unwrap();
    assert_eq!(got.len(), want.len(), "{}", a.body);
    let mut last = f64::INFINITY;
    for g in got {
        let (n, s) = want[&g["end_user"].as_str().map(str::to_owned)];
        assert_eq!(g["total_count"], n, "{g}");
        assert!(close(num(&g["total_spend"]), s), "{g}");
        assert!(num(&g["total_spend"]) <= last);
        last = num(&g["total_spend"]);
    }
    let a = post(
        &p,
        "/global/spend/end_users",
        MASTER,
        json!({"api_key": mine, "startTime": today.to_string()}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let users: BTreeSet<Option<&str>> = a
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["end_user"].as_str())
        .collect();
    assert_eq!(users, BTreeSet::from([None, Some("cust-1")]), "{}", a.body);
    let three = today - Duration::days(3);
    let a = post(
        &p,
        "/global/spend/end_users",
        MASTER,
        json!({"startTime": format!("{three}T00:00:00"), "endTime": format!("{three}T23:59:59Z")}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.body[0],
        json!({"end_user": "cust-2", "total_count": 1, "total_spend": 2.005})
    );
    assert_eq!(a.body.as_array().unwrap().len(), 3, "{}", a.body);
    let a = post(
        &p,
        "/global/spend/end_users",
        MASTER,
        json!({"startTime": "soon"}),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);

    // Per provider over whole days, the end day included.
    let q = format!("/global/spend/provider?start_date={month_start}&end_date={today}");
    let a = get(&p, &q, MASTER).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let mut want: BTreeMap<&str, f64> = BTreeMap::new();
    for r in &recent {
        *want
            .entry(r["custom_llm_provider"].as_str().unwrap())
            .or_default() += num(&r["spend"]);
    }
    let got: BTreeMap<&str, f64> = a
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["provider"].as_str().unwrap(), num(&g["spend"])))
        .collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (k, v) in &want {
        assert!(close(got[k], *v), "{k}");
    }
    let a = get(&p, "/global/spend/provider?start_date=2026-01-01", MASTER).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(
        error_of(&a)
            .1
            .contains("Please provide start_date and end_date")
    );
    let a = get(&p, &q, &mine).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body.as_array().unwrap().len(), 1, "{}", a.body);
    assert!(close(num(&a.body[0]["spend"]), own));

    // The key and user tables.
    let a = get(&p, "/spend/keys", MASTER).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let keys = a.body.as_array().unwrap();
    // Three generated, and one made with each user by /user/new.
    assert_eq!(keys.len(), 5, "{}", a.body);
    assert_eq!(keys[0]["token"], plain_hash, "most spend first: {}", a.body);
    let a = get(&p, "/spend/keys", &mine).await;
    let own_keys = a.body.as_array().unwrap();
    assert_eq!(own_keys.len(), 2, "{}", a.body);
    assert!(own_keys.iter().all(|k| k["user_id"] == "u1"), "{}", a.body);
    assert_eq!(own_keys[0]["token"], hash_key(&mine), "{}", a.body);
    assert_eq!(get(&p, "/spend/keys", &plain).await.body, json!([]));
    let a = get(&p, "/spend/users", MASTER).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let ids: BTreeSet<&str> = a
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, BTreeSet::from(["u1", "u2"]));
    let a = get(&p, "/spend/users?user_id=u2", MASTER).await;
    assert_eq!(a.body[0]["user_id"], "u2");
    assert_eq!(
        get(&p, "/spend/users?user_id=nobody", MASTER).await.body,
        json!([null])
    );
    let a = get(&p, "/spend/users", &mine).await;
    assert_eq!(a.body.as_array().unwrap().len(), 1, "{}", a.body);
    assert_eq!(a.body[0]["user_id"], "u1");
    assert_eq!(a.body[0]["teams"], json!([]), "{}", a.body);
    let a = get(&p, "/spend/users?user_id=u2", &mine).await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(
        error_of(&a)
            .1
            .contains("Not authorized to view spend for another user.")
    );
    assert_eq!(get(&p, "/spend/users", &plain).await.body, json!([]));

    // The reset: admins only; every key and team at 0, the rows kept, the budget usable again.
    let a = post(&p, "/v1/chat/completions", &capped, chat("mocky")).await;
    assert_eq!(a.status, 422, "over its budget: {}", a.body);
    let a = post(&p, "/global/spend/reset", &mine, json!({})).await;
    assert_eq!(a.status, 403, "{}", a.body);
    let a = post(&p, "/global/spend/reset", MASTER, json!({})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.body,
        json!({"message": "Spend for all API Keys and Teams reset successfully", "status": "success"})
    );
    for k in [&mine, &plain, &capped] {
        let a = get(&p, &format!("/key/info?key={k}"), MASTER).await;
        assert_eq!(a.body["info"]["spend"], json!(0.0), "{}", a.body);
    }
    for t in ["alpha", "beta"] {
        let a = get(&p, &format!("/team/info?team_id={t}"), MASTER).await;
        assert_eq!(a.body["team_info"]["spend"], json!(0.0), "{}", a.body);
    }
    let a = post(&p, "/v1/chat/completions", &capped, chat("mocky")).await;
    assert_eq!(a.status, 200, "served again after the reset: {}", a.body);
    let after = spend_rows(&p, "", 11).await;
    assert_eq!(
        after.len(),
        11,
        "the rows are kept (10 answered + 1 refused)"
    );
    let newest = after
        .iter()
        .find(|r| r["request_id"] == a.headers["x-litellm-call-id"].to_str().unwrap())
        .unwrap();
    let a = get(&p, &format!("/key/info?key={capped}"), MASTER).await;
    assert!(
        close(num(&a.body["info"]["spend"]), num(&newest["spend"])),
        "{}",
        a.body
    );
    p.stop().await;
    place.cleanup().await;
}

/// `/global/activity` and `/global/activity/model` equal the rows they count: requests and
/// tokens per day (and per model group), whole days, an internal user's own calls.
async fn activity_charts_equal_their_rows(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    internal_user(&p, "u1").await;
    let (mine, _) = generate(&p, json!({"user_id": "u1"})).await;
    p.stop().await;
    let today = Utc::now().date_naive();
    let row = |id: &str, days: i64, group: &str, user: Option<&str>, tokens: i64| {
        let at = (today - Duration::days(days))
            .and_hms_opt(23, 59, 0)
            .unwrap()
            .and_utc();
        SpendLogRow {
            request_id: id.into(),
            call_type: "acompletion".into(),
            api_key: hash_key(&mine),
            spend: 1_000,
            total_tokens: tokens,
            start_time: at,
            end_time: at,
            model: format!("openai/{group}"),
            model_group: Some(group.into()),
            user: user.map(str::to_owned),
            status: "success".into(),
            ..Default::default()
        }
    };
    let store = place.open_store().await;
    write_rows(
        &store,
        vec![
            row("a", 2, "alpha", Some("u1"), 10),
            row("b", 2, "alpha", None, 20),
            row("c", 1, "beta", Some("u1"), 40),
            row("d", 1, "alpha", None, 80),
            row("e", 5, "alpha", None, 160),
        ],
    )
    .await;
    store.close().await;
    let p = start(&place, "").await;
    let range = format!(
        "start_date={}&end_date={}",
        today - Duration::days(2),
        today - Duration::days(1)
    );
    let label = |days: i64| (today - Duration::days(days)).format("%b %d").to_string();

    let a = get(&p, &format!("/global/activity?{range}"), MASTER).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.body,
        json!({"daily_data": [
            {"date": label(2), "api_requests": 2, "total_tokens": 30},
            {"date": label(1), "api_requests": 2, "total_tokens": 120}],
            "sum_api_requests": 4, "sum_total_tokens": 150})
    );
    let a = get(&p, &format!("/global/activity/model?{range}"), MASTER).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let models = a.body.as_array().unwrap();
    assert_eq!(models.len(), 2, "{}", a.body);
    assert_eq!(models[0]["model"], "alpha");
    assert_eq!(models[0]["sum_api_requests"], 3);
    assert_eq!(models[0]["sum_total_tokens"], 110);
    assert_eq!(models[0]["daily_data"][0]["date"], label(2));
    assert_eq!(models[0]["daily_data"][1]["api_requests"], 1);
    assert_eq!(models[1]["model"], "beta");
    assert_eq!(models[1]["sum_total_tokens"], 40);
    // An internal user: their own calls only.
    let a = get(&p, &format!("/global/activity?{range}"), &mine).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["sum_api_requests"], 2, "{}", a.body);
    assert_eq!(a.body["sum_total_tokens"], 50, "{}", a.body);
    // Both dates required, as dates.
    for q in [
        "",
        "start_date=2026-01-01",
        "start_date=yesterday&end_date=2026-01-02",
    ] {
        let a = get(&p, &format!("/global/activity?{q}"), MASTER).await;
        assert_eq!(a.status, 400, "{q}: {}", a.body);
    }
    p.stop().await;
    place.cleanup().await;
}

/// `/model/metrics`: seconds per completion token by deployment and day, cache hits and calls
/// without completion tokens left out, each deployment named as LiteLLM names it.
async fn model_latency_chart(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    p.stop().await;
    let today = Utc::now().date_naive();
    let row = |id: &str, days: i64, model: &str, base: &str, secs: i64, tokens: i64| {
        let at = (today - Duration::days(days))
            .and_hms_opt(10, 0, 0)
            .unwrap()
            .and_utc();
        SpendLogRow {
            request_id: id.into(),
            call_type: "acompletion".into(),
            api_key: "k".into(),
            completion_tokens: tokens,
            total_tokens: tokens,
            start_time: at,
            end_time: at + Duration::seconds(secs),
            model: model.into(),
            model_group: Some("grp".into()),
            api_base: Some(base.into()),
            status: "success".into(),
            ..Default::default()
        }
    };
    let azure = "https://x.openai.azure.com/openai/deployments/a";
    let local = "http://127.0.0.1:8080/v1";
    let mut hit = row("hit", 1, "azure/a", azure, 100, 1);
    hit.cache_hit = Some("True".into());
    let store = place.open_store().await;
    write_rows(
        &store,
        vec![
            row("a1", 1, "azure/a", azure, 2, 10),
            row("a2", 1, "azure/a", azure, 6, 10),
            row("b1", 1, "openai/b", local, 1, 4),
            row("b0", 1, "openai/b", local, 9, 0),
            row("b2", 2, "openai/b", local, 3, 3),
            hit,
        ],
    )
    .await;
    store.close().await;
    let p = start(&place, "").await;
    let a = get(&p, "/model/metrics?_selected_model_group=grp", MASTER).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let day = |d: i64| (today - Duration::days(d)).to_string();
    assert_eq!(
        a.body,
        json!({"data": [
            {"date": day(2), "openai/b": 1.0},
            {"date": day(1), "https://x.openai.azure.com": 0.4, "openai/b": 0.25}],
            "all_api_bases": ["https://x.openai.azure.com", "openai/b"]})
    );
    // A range that leaves the older day out; another group is empty.
    let since = format!("{}T00:00:00", today - Duration::days(1));
    let a = get(
        &p,
        &format!("/model/metrics?_selected_model_group=grp&startTime={since}"),
        MASTER,
    )
    .await;
    assert_eq!(a.body["data"].as_array().unwrap().len(), 1, "{}", a.body);
    let a = get(&p, "/model/metrics?_selected_model_group=other", MASTER).await;
    assert_eq!(a.body, json!({"data": [], "all_api_bases": []}));
    assert_eq!(get(&p, "/model/metrics", MASTER).await.status, 400);
    let (key, _) = generate(&p, json!({})).await;
    assert_eq!(
        get(&p, "/model/metrics?_selected_model_group=grp", &key)
            .await
            .status,
        403
    );
    // Slow calls by API base at the default threshold (300 s): none.
    let slow = get(
        &p,
        "/model/metrics/slow_responses?_selected_model_group=grp",
        MASTER,
    )
    .await;
    assert_eq!(slow.status, 200, "{}", slow.body);
    assert_eq!(
        slow.body,
        json!([
            {"api_base": "http://127.0.0.1:8080/v1", "total_count": 3, "slow_count": 0},
            {"api_base": "https://x.openai.azure.com", "total_count": 2, "slow_count": 0}])
    );
    p.stop().await;
    // At 3 s: the calls of 3 s and more (the cache hit is left out).
    let p = start(&place, "  alerting_threshold: 3\n").await;
    let slow = get(
        &p,
        "/model/metrics/slow_responses?_selected_model_group=grp",
        MASTER,
    )
    .await;
    assert_eq!(
        slow.body,
        json!([
            {"api_base": "http://127.0.0.1:8080/v1", "total_count": 3, "slow_count": 2},
            {"api_base": "https://x.openai.azure.com", "total_count": 2, "slow_count": 1}])
    );
    p.stop().await;
    place.cleanup().await;
}

both_backends!(
    dashboard_routes_equal_their_rows,
    activity_charts_equal_their_rows,
    model_latency_chart
);
