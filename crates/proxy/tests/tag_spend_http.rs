#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Request tags, LiteLLM's `request_tags`: what a call is tagged with (its metadata's tags,
//! its key's, the `x-litellm-tags` header or the body's `tags`, its user agent), stored on its
//! spend row, and added up by `/spend/tags` and `/global/spend/tags`, with who may see what.
//! SQLite and Postgres.

mod store_support;

use std::collections::HashMap;

use chrono::{Duration, Utc};
use serde_json::{Value, json};
use store_support::{
    Backend, MASTER, Place, Proxy, client, close, error_of, generate, get, internal_user, post,
    send, spend_rows, start,
};

async fn call(p: &Proxy, key: &str, body: Value, headers: &[(&str, &str)]) {
    let mut req = client()
        .post(p.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let a = send(req).await;
    assert_eq!(a.status, 200, "{}", a.body);
}

fn tags_of(row: &Value) -> Vec<String> {
    row["request_tags"]
        .as_array()
        .unwrap_or_else(|| panic!("request_tags in {row}"))
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect()
}

/// `/spend/tags` as tag -> (log_count, total_spend).
async fn by_tag(p: &Proxy, query: &str, key: &str) -> HashMap<String, (i64, f64)> {
    let a = get(p, &format!("/spend/tags{query}"), key).await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["individual_request_tag"].as_str().unwrap().to_owned(),
                (
                    r["log_count"].as_i64().unwrap(),
                    r["total_spend"].as_f64().unwrap(),
                ),
            )
        })
        .collect()
}

async fn tags_are_recorded_and_added_up(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    internal_user(&p, "u1").await;
    let a = post(
        &p,
        "/team/new",
        MASTER,
        json!({"team_id": "alpha", "metadata": {"tags": ["team-tag"]},
               "members_with_roles": [{"user_id": "u1", "role": "user"}]}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    // A key's tags are kept as its metadata's, as LiteLLM keeps them, and not reported ignored.
    let (kt, g) = generate(
        &p,
        json!({"user_id": "u1", "team_id": "alpha", "tags": ["team-a"]}),
    )
    .await;
    assert_eq!(g["metadata"]["tags"], json!(["team-a"]), "{g}");
    assert!(g["ignored_fields"].get("tags").is_none(), "{g}");

    let chat = |extra: Value| {
        let mut body =
            json!({"model": "mocky", "messages": [{"role": "user", "content": "Say hi"}]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    call(
        &p,
        &kt,
        chat(json!({"metadata": {"tags": ["m1"]}})),
        &[
            ("x-litellm-tags", "exp-1, exp-2"),
            ("user-agent", "tagtest/1.0"),
        ],
    )
    .await;
    // The body's tags win over the header's.
    call(
        &p,
        &kt,
        chat(json!({"tags": ["exp-1"]})),
        &[
            ("x-litellm-tags", "not-this"),
            ("user-agent", "tagtest/1.0"),
        ],
    )
    .await;
    call(
        &p,
        MASTER,
        chat(json!({"tags": ["solo"]})),
        &[("user-agent", "other")],
    )
    .await;

    let rows = spend_rows(&p, "", 3).await;
    let mut seen: Vec<Vec<String>> = rows.iter().map(tags_of).collect();
    seen.sort();
    let mut want = vec![
        vec![
            "m1",
            "team-a",
            "team-tag",
            "exp-1",
            "exp-2",
            "User-Agent: tagtest",
            "User-Agent: tagtest/1.0",
        ],
        vec![
            "team-a",
            "team-tag",
            "exp-1",
            "User-Agent: tagtest",
            "User-Agent: tagtest/1.0",
        ],
        vec!["solo", "User-Agent: other"],
    ];
    want.sort();
    assert_eq!(seen, want);
    let spend_with = |tag: &str| -> f64 {
        rows.iter()
            .filter(|r| tags_of(r).iter().any(|t| t == tag))
            .map(|r| r["spend"].as_f64().unwrap())
            .sum()
    };
    assert!(spend_with("team-a") > 0.0);

    // Admins see every tag; each row counts once for each of its tags.
    let all = by_tag(&p, "", MASTER).await;
    for (tag, n) in [
        ("team-a", 2),
        ("team-tag", 2),
        ("exp-1", 2),
        ("exp-2", 1),
        ("m1", 1),
        ("solo", 1),
        ("User-Agent: tagtest", 2),
        ("User-Agent: other", 1),
    ] {
        let (count, spend) = all
            .get(tag)
            .copied()
            .unwrap_or_else(|| panic!("{tag} in {all:?}"));
        assert_eq!(count, n, "{tag}");
        assert!(close(spend, spend_with(tag)), "{tag}: {spend} vs its rows'");
    }
    assert!(!all.contains_key("not-this"), "{all:?}");
    // An internal user sees the tags of their own calls only.
    let own = by_tag(&p, "", &kt).await;
    assert_eq!(own.get("team-a").map(|t| t.0), Some(2));
    assert!(!own.contains_key("solo"), "{own:?}");
    // Days are UTC days, both ends included.
    let today = Utc::now().date_naive();
    let tomorrow = today + Duration::days(1);
    assert_eq!(
        by_tag(&p, &format!("?start_date={today}&end_date={today}"), MASTER).await,
        all
    );
    assert!(
        by_tag(&p, &format!("?start_date={tomorrow}"), MASTER)
            .await
            .is_empty()
    );

    // The dashboard's shape: chosen tags, biggest spend first.
    let a = get(
        &p,
        &format!("/global/spend/tags?start_date={today}&end_date={today}&tags=exp-1,solo"),
        MASTER,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let list = a.body["spend_per_tag"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{}", a.body);
    let names: Vec<&str> = list.iter().map(|t| t["name"].as_str().unwrap()).collect();
    let mut by_spend = [("exp-1", spend_with("exp-1")), ("solo", spend_with("solo"))];
    by_spend.sort_by(|a, b| b.1.total_cmp(&a.1));
    assert_eq!(names, by_spend.iter().map(|t| t.0).collect::<Vec<_>>());
    assert_eq!(
        list[0]["log_count"],
        json!(if names[0] == "exp-1" { 2 } else { 1 })
    );
    let a = get(
        &p,
        &format!("/global/spend/tags?start_date={today}&end_date={today}&tags=all-tags"),
        MASTER,
    )
    .await;
    assert_eq!(a.body["spend_per_tag"].as_array().unwrap().len(), all.len());
    let a = get(&p, "/global/spend/tags", MASTER).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(
        error_of(&a).1.contains("start_date and end_date"),
        "{}",
        a.body
    );
    let a = get(
        &p,
        &format!("/global/spend/tags?start_date={today}&end_date={today}"),
        &kt,
    )
    .await;
    assert_eq!(a.status, 403, "{}", a.body);
    let a = get(&p, "/spend/tags?start_date=yesterday", MASTER).await;
    assert_eq!(a.status, 400, "{}", a.body);

    // Daily activity by tag: each tag an entity of today's bucket, with its rows' calls and
    // spend (a call counts under each of its tags, in the day's sums too, as in LiteLLM).
    let day = format!("/tag/daily/activity?start_date={today}&end_date={today}");
    let a = get(&p, &format!("{day}&page_size=100"), MASTER).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let results = a.body["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{}", a.body);
    assert_eq!(results[0]["date"], json!(today.to_string()));
    let entities = results[0]["breakdown"]["entities"].as_object().unwrap();
    let mut names: Vec<&String> = entities.keys().collect();
    names.sort();
    let mut want: Vec<&String> = all.keys().collect();
    want.sort();
    assert_eq!(names, want);
    for (tag, e) in entities {
        let (count, _) = all[tag];
        assert_eq!(e["metrics"]["api_requests"], json!(count), "{tag}");
        assert!(
            close(e["metrics"]["spend"].as_f64().unwrap(), spend_with(tag)),
            "{tag}: {e}"
        );
    }
    let calls_by_tag: i64 = all.values().map(|t| t.0).sum();
    assert_eq!(
        a.body["metadata"]["total_api_requests"],
        json!(calls_by_tag)
    );
    // The key's part, named as the entity routes name keys.
    let keyed = entities["team-a"]["api_key_breakdown"].as_object().unwrap();
    assert_eq!(keyed.len(), 1, "{keyed:?}");
    let (_, part) = keyed.iter().next().unwrap();
    assert_eq!(part["metadata"]["user_id"], "u1", "{part}");
    // Chosen tags; a page at a time (one group per tag here).
    let a = get(&p, &format!("{day}&tags=exp-1,solo"), MASTER).await;
    let chosen = a.body["results"][0]["breakdown"]["entities"]
        .as_object()
        .unwrap();
    assert_eq!(chosen.len(), 2, "{}", a.body);
    let a = get(&p, &format!("{day}&page_size=1&page=2"), MASTER).await;
    assert_eq!(
        a.body["metadata"]["total_pages"],
        json!(all.len()),
        "{}",
        a.body
    );
    assert_eq!(a.body["metadata"]["has_more"], json!(true));
    assert_eq!(a.body["metadata"]["page"], json!(2));
    // An internal user sees their own keys' calls; a model filter narrows.
    let a = get(&p, &day, &kt).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let own = a.body["results"][0]["breakdown"]["entities"]
        .as_object()
        .unwrap();
    assert!(
        own.contains_key("team-a") && !own.contains_key("solo"),
        "{}",
        a.body
    );
    let a = get(&p, &format!("{day}&model=nothing-like-it"), MASTER).await;
    assert_eq!(a.body["results"], json!([]), "{}", a.body);
    let a = get(&p, "/tag/daily/activity", MASTER).await;
    assert_eq!(a.status, 400, "{}", a.body);

    // The whole range at once: the same sums, every key counted, the breakdowns cut to the
    // keys of most spend.
    let whole = format!("/tag/daily/activity/aggregated?start_date={today}&end_date={today}");
    let a = get(&p, &whole, MASTER).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let agg = a.body["results"][0]["breakdown"]["entities"]
        .as_object()
        .unwrap();
    assert_eq!(agg.len(), entities.len(), "{}", a.body);
    let mut keys_seen = std::collections::BTreeSet::new();
    for (tag, e) in entities {
        assert_eq!(agg[tag]["metrics"], e["metrics"], "{tag}");
        let keys = e["api_key_breakdown"].as_object().unwrap();
        keys_seen.extend(keys.keys().cloned());
        assert_eq!(
            a.body["metadata"]["entity_total_api_keys"][tag],
            json!(keys.len()),
            "{tag}: {}",
            a.body["metadata"]
        );
    }
    assert_eq!(a.body["metadata"]["total_api_keys"], json!(keys_seen.len()));
    assert_eq!(
        a.body["metadata"]["total_api_requests"],
        json!(calls_by_tag)
    );
    let a = get(&p, &format!("{whole}&api_key_limit=1"), MASTER).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let day_keys = a.body["results"][0]["breakdown"]["api_keys"]
        .as_object()
        .unwrap();
    assert_eq!(day_keys.len(), 1, "{}", a.body);
    assert_eq!(
        a.body["metadata"]["total_api_requests"],
        json!(calls_by_tag)
    );
    let a = get(&p, &format!("{whole}&api_key_limit=0"), MASTER).await;
    assert_eq!(a.status, 400, "{}", a.body);

    // Every tag and every end user ever logged (LiteLLM's dashboard filters).
    call(
        &p,
        MASTER,
        chat(json!({"user": "end-2"})),
        &[("user-agent", "other")],
    )
    .await;
    call(
        &p,
        &kt,
        chat(json!({"user": "end-1", "tags": ["solo"]})),
        &[("user-agent", "other")],
    )
    .await;
    let rows = spend_rows(&p, "", 5).await;
    let mut tags: Vec<String> = rows.iter().flat_map(tags_of).collect();
    tags.sort();
    tags.dedup();
    let a = get(&p, "/global/spend/all_tag_names", MASTER).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body, json!({"tag_names": tags}));
    let a = get(&p, "/global/all_end_users", MASTER).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body, json!({"end_users": ["end-1", "end-2"]}));
    for path in ["/global/spend/all_tag_names", "/global/all_end_users"] {
        assert_eq!(get(&p, path, &kt).await.status, 403, "{path}");
    }
    p.stop().await;
    place.cleanup().await;
}

async fn user_agent_tags_can_be_turned_off(b: Backend) {
    let place = Place::new(b);
    let p = start(
        &place,
        "litellm_settings:\n  disable_add_user_agent_to_request_tags: true\n",
    )
    .await;
    call(
        &p,
        MASTER,
        json!({"model": "mocky", "messages": [{"role": "user", "content": "Say hi"}]}),
        &[("user-agent", "tagtest/1.0"), ("x-litellm-tags", "only")],
    )
    .await;
    let rows = spend_rows(&p, "", 1).await;
    assert_eq!(tags_of(&rows[0]), ["only"]);
    p.stop().await;
    place.cleanup().await;
}

both_backends!(
    tags_are_recorded_and_added_up,
    user_agent_tags_can_be_turned_off
);
