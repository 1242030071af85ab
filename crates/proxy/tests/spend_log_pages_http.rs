#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! LiteLLM's paged spend log, `/spend/logs/v2` and `/spend/logs/ui` (and one call's payload at
//! `/spend/logs/ui/{id}`), against rows written as the spend writer writes them: every
//! filter, every sort and the pages give what the same filter over the rows in Rust gives;
//! who may read which rows; the count cap. SQLite and Postgres.

mod store_support;

use std::cmp::Ordering;

use chrono::{DateTime, Duration, TimeZone, Utc};
use idlehands_store::SpendLogRow;
use idlehands_store::keygen::hash_key;
use idlehands_store::types::JsonObjectText;
use serde_json::{Value, json};
use store_support::{
    Backend, MASTER, Place, Proxy, error_of, generate, get, internal_user, post, spend_rows, start,
    write_rows,
};

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 10, 8, 0, 0).unwrap()
}

/// `YYYY-MM-DD HH:MM:SS`, escaped for a query string.
fn at(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d%%20%H:%M:%S").to_string()
}

/// Sixty rows that differ in everything a filter or sort reads.
fn rows(keys: &[String; 3]) -> Vec<SpendLogRow> {
    (0..60i64)
        .map(|i| {
            let start = base() + Duration::minutes(i);
            let end = start + Duration::milliseconds((i * 7919) % 13_000 + 1);
            let failed = i % 9 == 4;
            let mut meta = serde_json::Map::new();
            meta.insert(
                "user_api_key_alias".into(),
                json!(format!("alias-{}", i % 4)),
            );
            if failed {
                let code = if i % 2 == 0 { "429" } else { "500" };
                meta.insert(
                    "error_information".into(),
                    json!({"error_code": code, "error_message": format!("upstream said no #{i}")}),
                );
            }
            SpendLogRow {
                request_id: format!("r{i:02}"),
                call_type: match i {
                    17 => "call_mcp_tool".into(),
                    23 => "asend_message".into(),
                    41 => "acreate_batch".into(),
                    _ => "acompletion".into(),
                },
                api_key: keys[(i % 3) as usize].clone(),
                spend: (i * 37) % 23 * 1_000_000 + i,
                prompt_tokens: (i * 13) % 50,
                completion_tokens: (i * 5) % 30,
                total_tokens: (i * 13) % 50 + (i * 5) % 30,
                start_time: start,
                end_time: end,
                completion_start_time: (i % 4 == 1)
                    .then(|| start + Duration::milliseconds((i * 31) % 997 + 1)),
                request_duration_ms: (i % 5 == 0).then_some((i * 101) % 4000),
                model: ["alpha-model", "beta-model", "gamma-model"][(i % 3) as usize].into(),
                model_id: Some(format!("dep-{}", i % 2)),
                model_group: Some(["mocky", "other"][(i % 2) as usize].into()),
                custom_llm_provider: Some("openai".into()),
                user: match i % 4 {
                    0 => Some("u1".into()),
                    1 => Some("u2".into()),
                    _ => None,
                },
                team_id: match i % 5 {
                    0 | 1 => Some("alpha".into()),
                    2 => Some("beta".into()),
                    _ => None,
                },
                end_user: (i % 6 == 0).then(|| "customer-1".into()),
                session_id: (i % 3 != 2).then(|| format!("session-{}", i % 4)),
                metadata: JsonObjectText::from_map(&meta),
                cache_hit: match i % 7 {
                    0 => Some("True".into()),
                    1 => None,
                    _ => Some("False".into()),
                },
                status: if failed { "failure" } else { "success" }.into(),
                litellm_call_id: Some(if i == 33 {
                    "client-set-id".into()
                } else {
                    format!("r{i:02}")
                }),
                messages: (i == 5).then(|| json!([{"role": "user", "content": "hi five"}])),
                response: (i == 5).then(|| json!({"choices": [{"message": {"content": "5"}}]})),
                ..Default::default()
            }
        })
        .collect()
}

fn meta_str(r: &SpendLogRow, path: &[&str]) -> Option<String> {
    let mut v = Value::Object(r.metadata.to_map());
    for p in path {
        v = v.get(*p)?.clone();
    }
    v.as_str().map(str::to_owned)
}

fn duration(r: &SpendLogRow) -> i64 {
    r.request_duration_ms
        .unwrap_or_else(|| (r.end_time - r.start_time).num_milliseconds())
}

fn ttft(r: &SpendLogRow) -> Option<i64> {
    match r.completion_start_time {
        Some(c) if c != r.end_time => Some((c - r.start_time).num_milliseconds()),
        _ => None,
    }
}

/// The ids a sort gives, by the same rule in Rust: ties by call id in the same direction,
/// rows without a time to first token last either way.
fn sorted(mut rs: Vec<&SpendLogRow>, by: &str, asc: bool) -> Vec<String> {
    rs.sort_by(|a, b| {
        let o = match by {
            "startTime" => a.start_time.cmp(&b.start_time),
            "endTime" => a.end_time.cmp(&b.end_time),
            "spend" => a.spend.cmp(&b.spend),
            "total_tokens" => a.total_tokens.cmp(&b.total_tokens),
            "request_duration_ms" => duration(a).cmp(&duration(b)),
            "model" => a.model.cmp(&b.model),
            "ttft_ms" => match (ttft(a), ttft(b)) {
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => return Ordering::Less,
                (None, Some(_)) => return Ordering::Greater,
                (None, None) => Ordering::Equal,
            },
            other => panic!("no sort {other}"),
        };
        let o = o.then_with(|| a.request_id.cmp(&b.request_id));
        if asc { o } else { o.reverse() }
    });
    rs.into_iter().map(|r| r.request_id.clone()).collect()
}

fn ids(a: &Value) -> Vec<String> {
    a["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["request_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Every page of an ask, joined; checks each page's count fields on the way.
async fn all_pages(p: &Proxy, path: &str, query: &str, key: &str, size: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut page = 1;
    loop {
        let a = get(
            p,
            &format!("{path}?{query}&page={page}&page_size={size}"),
            key,
        )
        .await;
        assert_eq!(a.status, 200, "{query}: {}", a.body);
        let total = a.body["total"].as_u64().unwrap() as usize;
        assert_eq!(a.body["page"], page);
        assert_eq!(a.body["page_size"], size);
        assert_eq!(a.body["total_pages"], total.div_ceil(size), "{}", a.body);
        assert_eq!(a.body["total_is_capped"], false);
        let got = ids(&a.body);
        out.extend(got.iter().cloned());
        if got.len() < size {
            assert_eq!(out.len(), total, "{query}: pages add up to the total");
            return out;
        }
        page += 1;
    }
}

async fn filters_sorts_and_pages_match_the_rows(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    internal_user(&p, "u1").await;
    let a = post(
        &p,
        "/team/new",
        MASTER,
        json!({"team_id": "alpha", "members_with_roles": [{"role": "admin", "user_id": "u1"}]}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = post(&p, "/team/new", MASTER, json!({"team_id": "beta"})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let (mine, _) = generate(&p, json!({"user_id": "u1"})).await;
    let (plain, _) = generate(&p, json!({})).await;
    p.stop().await;
    let keys = [hash_key(&mine), hash_key(&plain), "f".repeat(64)];
    let all = rows(&keys);
    let store = place.open_store().await;
    write_rows(&store, all.clone()).await;
    store.close().await;
    let p = start(&place, "").await;

    let window = format!(
        "start_date={}&end_date={}",
        at(base()),
        at(base() + Duration::hours(2))
    );
    let every: Vec<&SpendLogRow> = all.iter().collect();
    for path in ["/spend/logs/v2", "/spend/logs/ui"] {
        let got = all_pages(&p, path, &window, MASTER, 7).await;
        assert_eq!(got, sorted(every.clone(), "startTime", false), "{path}");
    }

    // Each filter alone, against the same filter in Rust.
    type Pick = Box<dyn Fn(&SpendLogRow) -> bool>;
    let k0 = keys[0].clone();
    let cases: Vec<(String, Pick)> = vec![
        (
            format!("api_key={}", keys[0]),
            Box::new(move |r| r.api_key == k0),
        ),
        (format!("api_key={mine}"), {
            let k = keys[0].clone();
            Box::new(move |r| r.api_key == k)
        }),
        (
            "user_id=u2".into(),
            Box::new(|r| r.user.as_deref() == Some("u2")),
        ),
        (
            "team_id=beta".into(),
            Box::new(|r| r.team_id.as_deref() == Some("beta")),
        ),
        (
            "model=beta-model".into(),
            Box::new(|r| r.model == "beta-model"),
        ),
        (
            "model_id=dep-1".into(),
            Box::new(|r| r.model_id.as_deref() == Some("dep-1")),
        ),
        (
            "model_group=other".into(),
            Box::new(|r| r.model_group.as_deref() == Some("other")),
        ),
        (
            "end_user=customer-1".into(),
            Box::new(|r| r.end_user.is_some()),
        ),
        (
            "session_id=ion-3".into(),
            Box::new(|r| r.session_id.as_deref() == Some("session-3")),
        ),
        (
            "key_alias=as-2".into(),
            Box::new(|r| meta_str(r, &["user_api_key_alias"]).as_deref() == Some("alias-2")),
        ),
        (
            "error_code=429".into(),
            Box::new(|r| {
                meta_str(r, &["error_information", "error_code"]).as_deref() == Some("429")
            }),
        ),
        (
            "error_message=said%20no%20%2331".into(),
            Box::new(|r| {
                meta_str(r, &["error_information", "error_message"])
                    .is_some_and(|m| m.contains("said no #31"))
            }),
        ),
        (
            "status_filter=failure".into(),
            Box::new(|r| r.status == "failure"),
        ),
        (
            "status_filter=success".into(),
            Box::new(|r| r.status == "success"),
        ),
        (
            "cache_hit_filter=hit".into(),
            Box::new(|r| r.cache_hit.as_deref() == Some("True")),
        ),
        (
            "cache_hit_filter=miss".into(),
            Box::new(|r| r.cache_hit.as_deref() != Some("True")),
        ),
        (
            "min_spend=0.01&max_spend=0.015".into(),
            Box::new(|r| (10_000_000..=15_000_000).contains(&r.spend)),
        ),
        (
            "span_type=mcp".into(),
            Box::new(|r| r.call_type == "call_mcp_tool"),
        ),
        (
            "span_type=agent".into(),
            Box::new(|r| r.call_type == "asend_message"),
        ),
        (
            "span_type=batch".into(),
            Box::new(|r| r.call_type == "acreate_batch"),
        ),
        (
            "span_type=llm".into(),
            Box::new(|r| r.call_type == "acompletion"),
        ),
        ("used_client_oauth_token=true".into(), Box::new(|_| false)),
        (
            "request_id=client-set-id".into(),
            Box::new(|r| r.request_id == "r33"),
        ),
        (
            "search=u2".into(),
            Box::new(|r| r.user.as_deref() == Some("u2")),
        ),
        ("search=r07".into(), Box::new(|r| r.request_id == "r07")),
        (format!("search={}", keys[2]), {
            let k = keys[2].clone();
            Box::new(move |r| r.api_key == k)
        }),
    ];
    for (q, pick) in &cases {
        let want = sorted(all.iter().filter(|r| pick(r)).collect(), "startTime", false);
        let got = all_pages(&p, "/spend/logs/v2", &format!("{window}&{q}"), MASTER, 9).await;
        assert_eq!(got, want, "{q}");
    }

    // Every sort, both ways.
    for by in [
        "startTime",
        "endTime",
        "spend",
        "total_tokens",
        "request_duration_ms",
        "model",
        "ttft_ms",
    ] {
        for (order, asc) in [("asc", true), ("desc", false), ("DESC", false)] {
            let q = format!("{window}&sort_by={by}&sort_order={order}");
            let got = all_pages(&p, "/spend/logs/v2", &q, MASTER, 11).await;
            assert_eq!(got, sorted(every.clone(), by, asc), "{by} {order}");
        }
    }

    // Both ends of the window are inclusive; v2 takes bare dates, the Logs page does not.
    let q = format!(
        "start_date={}&end_date={}",
        at(base() + Duration::minutes(10)),
        at(base() + Duration::minutes(12))
    );
    assert_eq!(
        all_pages(&p, "/spend/logs/v2", &q, MASTER, 50).await,
        ["r12", "r11", "r10"]
    );
    let a = get(
        &p,
        "/spend/logs/v2?start_date=2026-03-10&end_date=2026-03-11",
        MASTER,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["total"], 60);
    let a = get(
        &p,
        "/spend/logs/ui?start_date=2026-03-10&end_date=2026-03-11",
        MASTER,
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(
        error_of(&a).1.contains("Expected: 'YYYY-MM-DD HH:MM:SS'"),
        "{}",
        a.body
    );

    // The refusals, in LiteLLM's words.
    for (q, says) in [
        ("", "Start date and end date are required"),
        (
            "start_date=yesterday&end_date=today",
            "Invalid date format: yesterday",
        ),
        (
            "sort_by=cost",
            "Invalid sort_by: cost. Must be one of: endTime, model",
        ),
        (
            "sort_order=up",
            "Invalid sort_order: up. Must be one of: asc, desc",
        ),
        ("cache_hit_filter=maybe", "Invalid cache_hit_filter: maybe"),
        ("span_type=tool", "Invalid span_type: tool"),
        ("page=0", "page must be >= 1"),
        ("page_size=1001", "page_size must be between 1 and 1000"),
        ("group_by_session=true", "group_by_session is not supported"),
    ] {
        let sep = if q.is_empty() || q.starts_with("start_date") {
            ""
        } else {
            "&"
        };
        let dates = if q.is_empty() || q.starts_with("start_date") {
            ""
        } else {
            &window
        };
        let a = get(&p, &format!("/spend/logs/v2?{dates}{sep}{q}"), MASTER).await;
        assert_eq!(a.status, 400, "{q}: {}", a.body);
        let (_, message) = error_of(&a);
        assert!(message.contains(says), "{q}: {message}");
    }

    // The Logs page: an id over all time, the exact call first; session totals per key.
    let a = get(&p, "/spend/logs/ui?request_id=r33", MASTER).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(ids(&a.body), ["r33"]);
    let a = get(&p, &format!("/spend/logs/ui?{window}&page_size=60"), MASTER).await;
    assert_eq!(a.status, 200, "{}", a.body);
    for row in a.body["data"].as_array().unwrap() {
        assert!(
            row.get("messages").is_none() && row.get("response").is_none(),
            "{row}"
        );
        let id = row["request_id"].as_str().unwrap();
        let r = all.iter().find(|r| r.request_id == id).unwrap();
        assert_eq!(row["request_duration_ms"], duration(r), "{row}");
        let mates: Vec<&SpendLogRow> = match &r.session_id {
            Some(s) => all
                .iter()
                .filter(|o| o.session_id.as_ref() == Some(s) && o.api_key == r.api_key)
                .collect(),
            None => vec![r],
        };
        assert_eq!(row["session_total_count"], mates.len(), "{row}");
        if r.session_id.is_some() {
            let spend: i64 = mates.iter().map(|o| o.spend).sum();
            assert_eq!(
                row["session_total_spend"],
                json!(spend as f64 / 1e9),
                "{row}"
            );
            let tokens: i64 = mates.iter().map(|o| o.total_tokens).sum();
            assert_eq!(row["session_total_tokens"], tokens, "{row}");
            let hits = mates
                .iter()
                .filter(|o| o.cache_hit.as_deref() == Some("True"))
                .count();
            assert_eq!(row["session_cache_hit_count"], hits, "{row}");
            let ms: i64 = mates.iter().map(|o| duration(o)).sum();
            assert_eq!(row["session_total_duration_ms"], ms, "{row}");
            let mut models: Vec<&str> = mates.iter().map(|o| o.model.as_str()).collect();
            models.sort_unstable();
            models.dedup();
            assert_eq!(row["session_models"], json!(models), "{row}");
        } else {
            assert!(row.get("session_total_spend").is_none(), "{row}");
        }
    }
    let a = get(&p, "/spend/logs/ui/r05", MASTER).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["messages"][0]["content"], "hi five");
    assert_eq!(a.body["response"]["choices"][0]["message"]["content"], "5");
    assert_eq!(
        get(&p, "/spend/logs/ui/no-such-call", MASTER).await.body,
        Value::Null
    );

    // An internal user: their own calls and those of the team they administer.
    let theirs: Vec<&SpendLogRow> = all
        .iter()
        .filter(|r| r.user.as_deref() == Some("u1") || r.team_id.as_deref() == Some("alpha"))
        .collect();
    let got = all_pages(&p, "/spend/logs/v2", &window, &mine, 13).await;
    assert_eq!(got, sorted(theirs, "startTime", false));
    let team: Vec<&SpendLogRow> = all
        .iter()
        .filter(|r| r.team_id.as_deref() == Some("alpha"))
        .collect();
    let got = all_pages(
        &p,
        "/spend/logs/v2",
        &format!("{window}&team_id=alpha"),
        &mine,
        13,
    )
    .await;
    assert_eq!(got, sorted(team, "startTime", false));
    let a = get(&p, &format!("/spend/logs/v2?{window}&team_id=beta"), &mine).await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(
        error_of(&a)
            .1
            .contains("Not authorized to view team spend for team_id=beta")
    );
    // r01 (u2's, of the team they administer) is theirs; r13 (u2's, of no team) is not.
    assert_eq!(get(&p, "/spend/logs/ui/r01", &mine).await.status, 200);
    let a = get(&p, "/spend/logs/ui/r13", &mine).await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(error_of(&a).1.contains("request_id=r13"), "{}", a.body);
    // The Logs page's lookup of one call: theirs answers (even when another filter leaves it
    // out), another's or a missing one is LiteLLM's 403; v2 only filters.
    let a = get(
        &p,
        &format!("/spend/logs/ui?{window}&request_id=r01"),
        &mine,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["data"][0]["request_id"], "r01", "{}", a.body);
    let a = get(
        &p,
        &format!("/spend/logs/ui?{window}&request_id=r01&model=no-such-model"),
        &mine,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["data"], json!([]), "{}", a.body);
    for id in ["r13", "no-such-call"] {
        let a = get(
            &p,
            &format!("/spend/logs/ui?{window}&request_id={id}"),
            &mine,
        )
        .await;
        assert_eq!(a.status, 403, "{id}: {}", a.body);
        assert!(
            error_of(&a).1.contains(&format!("request_id={id}")),
            "{}",
            a.body
        );
    }
    let a = get(
        &p,
        &format!("/spend/logs/v2?{window}&request_id=r13"),
        &mine,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["data"], json!([]), "{}", a.body);
    // One session's calls over all time (LiteLLM's session view), newest first; the id
    // matched whole; an internal user sees their part of it.
    let in_session = |r: &&SpendLogRow| r.session_id.as_deref() == Some("session-1");
    let session: Vec<&SpendLogRow> = all.iter().filter(in_session).collect();
    assert!(session.len() > 7, "the session spans pages");
    let got = all_pages(
        &p,
        "/spend/logs/session/ui",
        "session_id=session-1",
        MASTER,
        7,
    )
    .await;
    assert_eq!(got, sorted(session, "startTime", false));
    let a = get(&p, "/spend/logs/session/ui?session_id=session", MASTER).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["total"], 0, "{}", a.body);
    let theirs: Vec<&SpendLogRow> = all
        .iter()
        .filter(in_session)
        .filter(|r| r.user.as_deref() == Some("u1") || r.team_id.as_deref() == Some("alpha"))
        .collect();
    let got = all_pages(
        &p,
        "/spend/logs/session/ui",
        "session_id=session-1",
        &mine,
        5,
    )
    .await;
    assert_eq!(got, sorted(theirs, "startTime", false));
    for bad in [
        "",
        "session_id=session-1&page_size=101",
        "session_id=session-1&page=0",
    ] {
        let a = get(&p, &format!("/spend/logs/session/ui?{bad}"), MASTER).await;
        assert_eq!(a.status, 400, "{bad}: {}", a.body);
    }
    // A key without a user: its own calls.
    let own: Vec<&SpendLogRow> = all.iter().filter(|r| r.api_key == keys[1]).collect();
    let got = all_pages(&p, "/spend/logs/v2", &window, &plain, 13).await;
    assert_eq!(got, sorted(own, "startTime", false));
    p.stop().await;
    place.cleanup().await;
}

/// Past 10,000 matches the count stops and says so.
async fn the_count_stops_at_ten_thousand(b: Backend) {
    let place = Place::new(b);
    let store = place.open_store().await;
    let t = base();
    let many: Vec<SpendLogRow> = (0..10_003)
        .map(|i| SpendLogRow {
            request_id: format!("c{i:05}"),
            call_type: "acompletion".into(),
            api_key: "a".repeat(64),
            start_time: t + Duration::milliseconds(i),
            end_time: t + Duration::milliseconds(i + 5),
            model: "m".into(),
            status: "success".into(),
            ..Default::default()
        })
        .collect();
    write_rows(&store, many).await;
    store.close().await;
    let p = start(&place, "").await;
    let q = format!(
        "/spend/logs/v2?start_date={}&end_date={}&page_size=1000&page=11",
        at(t),
        at(t + Duration::hours(1))
    );
    let a = get(&p, &q, MASTER).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["total"], 10_000);
    assert_eq!(a.body["total_is_capped"], true);
    assert_eq!(a.body["total_pages"], 10);
    // The rows past the cap are still there to page to.
    assert_eq!(ids(&a.body), ["c00002", "c00001", "c00000"]);
    p.stop().await;
    place.cleanup().await;
}

/// Live calls carry their session: a session header, the body's `litellm_session_id`, or a
/// client's own session header; one session's calls are read together.
async fn live_calls_carry_their_session(b: Backend) {
    let place = Place::new(b);
    let p = start(&place, "").await;
    let call = |body: Value, headers: Vec<(&'static str, &'static str)>| {
        let p = &p;
        async move {
            let mut req = store_support::client()
                .post(p.url("/v1/chat/completions"))
                .bearer_auth(MASTER)
                .json(&body);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            let a = store_support::send(req).await;
            assert_eq!(a.status, 200, "{}", a.body);
        }
    };
    let hi = json!({"model": "mocky", "messages": [{"role": "user", "content": "Say hi"}]});
    call(hi.clone(), vec![("x-litellm-session-id", "agent-run-1")]).await;
    let mut with_field = hi.clone();
    with_field["litellm_session_id"] = json!("agent-run-1");
    call(with_field, vec![]).await;
    call(
        hi.clone(),
        vec![(
            "x-claude-code-session-id",
            "0f9c2a5e-1111-2222-3333-444455556666",
        )],
    )
    .await;
    call(hi, vec![]).await;
    let rows = spend_rows(&p, "", 4).await;
    let mut sessions: Vec<Value> = rows.iter().map(|r| r["session_id"].clone()).collect();
    sessions.sort_by_key(Value::to_string);
    assert_eq!(
        sessions,
        vec![
            json!("0f9c2a5e-1111-2222-3333-444455556666"),
            json!("agent-run-1"),
            json!("agent-run-1"),
            Value::Null,
        ]
    );
    let a = get(&p, "/spend/logs/session/ui?session_id=agent-run-1", MASTER).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["total"], 2, "{}", a.body);
    assert!(
        a.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["session_id"] == "agent-run-1")
    );
    p.stop().await;
    place.cleanup().await;
}

both_backends!(
    filters_sorts_and_pages_match_the_rows,
    the_count_stops_at_ten_thousand,
    live_calls_carry_their_session
);
