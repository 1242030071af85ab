#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The response cache (`litellm_settings.cache`) through HTTP, against a fake OpenAI upstream
//! that counts what reaches it: a repeated call is answered without the upstream at no cost,
//! with one spend row marked `cache_hit` (both stores); the call's controls; streams replayed
//! as the client asked; the `/cache/*` routes; a Redis cache shared by two instances, whose
//! flush leaves the fleet's other Redis data alone; and a Redis that is down costing nothing
//! but the cache.

mod store_support;

use std::time::Duration;

use idlehands_testkit::{FakeOpenAi, Reply};
use serde_json::{Value, json};
use store_support::{
    Backend, MASTER, Place, config, cost_of, error_of, generate, get, post, redis_url, settings,
    spend_rows, start_with,
};

fn yaml(fake: &FakeOpenAi, litellm_settings: &str, general: &str) -> String {
    format!(
        "model_list:\n{}{}general_settings:\n  master_key: {MASTER}\n{general}litellm_settings:\n{litellm_settings}",
        fake.priced_entry("gpt"),
        fake.priced_entry("emb"),
    )
}

fn ask(content: &str) -> Value {
    json!({"model": "gpt", "messages": [{"role": "user", "content": content}]})
}

fn cache_key(a: &store_support::Answer) -> String {
    a.headers["x-litellm-cache-key"]
        .to_str()
        .unwrap()
        .to_string()
}

async fn a_repeated_call_is_answered_from_the_cache(b: Backend) {
    let place = Place::new(b);
    let fake = FakeOpenAi::start().await;
    fake.set_default(Reply::text("cached words").with_usage(10, 5));
    let cfg = config(&yaml(&fake, "  cache: true\n", ""));
    let p = start_with(cfg.clone(), settings(&cfg, &place)).await;
    let (key, _) = generate(&p, json!({})).await;

    let first = post(&p, "/v1/chat/completions", &key, ask("hello")).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(fake.served(), 1);
    assert!(cost_of(&first) > 0.0);
    let k = cache_key(&first);
    assert_eq!(k.len(), 64, "{k}");

    // The same question, spelled differently and labelled: the stored answer, at no cost.
    let again = post(
        &p,
        "/v1/chat/completions",
        &key,
        json!({"messages": [{"content": "hello", "role": "user"}], "model": "gpt",
               "metadata": {"run": 2}}),
    )
    .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(fake.served(), 1, "answered from the cache");
    assert_eq!(again.body, first.body, "the stored answer, id included");
    assert_eq!(cost_of(&again), 0.0);
    assert_eq!(cache_key(&again), k);

    // Another question goes to the model.
    let other = post(&p, "/v1/chat/completions", &key, ask("goodbye")).await;
    assert_eq!(other.status, 200);
    assert_eq!(fake.served(), 2);

    // no-cache: asked again (and the fresh answer replaces the stored one).
    let mut fresh = ask("hello");
    fresh["cache"] = json!({"no-cache": true});
    let fresh = post(&p, "/v1/chat/completions", &key, fresh).await;
    assert_eq!(fake.served(), 3);
    assert_ne!(fresh.body["id"], first.body["id"]);
    let after = post(&p, "/v1/chat/completions", &key, ask("hello")).await;
    assert_eq!(fake.served(), 3);
    assert_eq!(after.body["id"], fresh.body["id"]);

    // no-store: answered, not kept.
    let mut unkept = ask("once");
    unkept["cache"] = json!({"no-store": true});
    post(&p, "/v1/chat/completions", &key, unkept).await;
    post(&p, "/v1/chat/completions", &key, ask("once")).await;
    assert_eq!(fake.served(), 5);

    // A control that is not one is refused, not ignored.
    let mut typo = ask("hello");
    typo["cache"] = json!({"no-cahce": true});
    let refused = post(&p, "/v1/chat/completions", &key, typo).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        error_of(&refused).1.contains("no-cahce"),
        "{}",
        refused.body
    );

    // Embeddings too.
    let emb = json!({"model": "emb", "input": ["a", "b"]});
    let e1 = post(&p, "/v1/embeddings", &key, emb.clone()).await;
    let e2 = post(&p, "/v1/embeddings", &key, emb).await;
    assert_eq!(
        (e1.status.as_u16(), e2.status.as_u16()),
        (200, 200),
        "{}",
        e2.body
    );
    assert_eq!(fake.served(), 6);
    assert_eq!(e1.body, e2.body);
    assert_eq!(cost_of(&e2), 0.0);

    // One row per call: hits marked, free, with the key; the key's spend is its rows' sum.
    let rows = spend_rows(&p, "", 10).await;
    assert_eq!(rows.len(), 10, "one row per call, the refused one too");
    let hits: Vec<&Value> = rows.iter().filter(|r| r["cache_hit"] == "True").collect();
    assert_eq!(hits.len(), 3, "{rows:?}");
    for h in &hits {
        assert_eq!(h["spend"].as_f64(), Some(0.0), "{h}");
        assert!(h["total_tokens"].as_i64().unwrap() > 0, "{h}");
    }
    assert!(
        rows.iter()
            .filter(|r| r["call_type"] == "acompletion" && r["status"] == "success")
            .all(|r| r["cache_key"].as_str().is_some_and(|c| c.len() == 64)),
        "{rows:?}"
    );
    let sum: f64 = rows.iter().map(|r| r["spend"].as_f64().unwrap()).sum();
    let info = get(&p, &format!("/key/info?key={key}"), MASTER).await;
    let spend = info.body["info"]["spend"].as_f64().unwrap();
    assert!((spend - sum).abs() < 1e-9, "key {spend} vs rows {sum}");
    p.stop().await;
    place.cleanup().await;
}

async fn streams_are_replayed_as_the_client_asks(b: Backend) {
    let place = Place::new(b);
    let fake = FakeOpenAi::start().await;
    fake.set_default(Reply::text("one two three four").with_usage(7, 4));
    let cfg = config(&yaml(&fake, "  cache: true\n", ""));
    let p = start_with(cfg.clone(), settings(&cfg, &place)).await;
    let stream = |usage: bool| {
        json!({"model": "gpt", "stream": true, "stream_options": {"include_usage": usage},
               "messages": [{"role": "user", "content": "count"}]})
    };
    let text_of = |body: &str| -> (String, bool, String) {
        let mut text = String::new();
        let mut usage = false;
        for d in body.lines().filter_map(|l| l.strip_prefix("data: ")) {
            if d == "[DONE]" {
                continue;
            }
            let v: Value = serde_json::from_str(d).unwrap();
            usage |= v["usage"].is_object();
            if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
                text.push_str(t);
            }
        }
        let cost = body
            .lines()
            .find_map(|l| l.strip_prefix(": x-litellm-response-cost: "))
            .unwrap_or_default()
            .to_string();
        assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
        (text, usage, cost)
    };
    let send = |body: Value| {
        store_support::client()
            .post(p.url("/v1/chat/completions"))
            .bearer_auth(MASTER)
            .json(&body)
            .send()
    };
    let first = send(stream(true)).await.unwrap().text().await.unwrap();
    let (text, usage, cost) = text_of(&first);
    assert_eq!((text.as_str(), usage), ("one two three four", true));
    assert_ne!(cost.parse::<f64>().unwrap(), 0.0);
    let second = send(stream(true)).await.unwrap();
    assert!(second.headers().contains_key("x-litellm-cache-key"));
    let (text, usage, cost) = text_of(&second.text().await.unwrap());
    assert_eq!(fake.served(), 1, "replayed from the cache");
    assert_eq!(
        (text.as_str(), usage, cost.as_str()),
        ("one two three four", true, "0.0")
    );
    // A non-streamed question is another entry.
    let mut full = stream(true);
    full["stream"] = json!(false);
    full.as_object_mut().unwrap().remove("stream_options");
    let answer = post(&p, "/v1/chat/completions", MASTER, full).await;
    assert_eq!(
        answer.body["choices"][0]["message"]["content"],
        "one two three four"
    );
    assert_eq!(fake.served(), 2);
    let rows = spend_rows(&p, "", 3).await;
    let hit = rows.iter().find(|r| r["cache_hit"] == "True").unwrap();
    assert_eq!(
        (
            hit["prompt_tokens"].as_i64(),
            hit["completion_tokens"].as_i64()
        ),
        (Some(7), Some(4))
    );
    assert_eq!(hit["spend"].as_f64(), Some(0.0));
    p.stop().await;
    place.cleanup().await;
}

/// A key's `allowed_cache_controls` (LiteLLM's: checked whether or not a cache is on): kept
/// with the key on both stores, a control it leaves out is LiteLLM's 403, and an update
/// applies at once.
async fn a_key_sends_only_the_cache_controls_it_is_allowed(b: Backend) {
    let place = Place::new(b);
    let fake = FakeOpenAi::start().await;
    let cfg = config(&yaml(&fake, "  drop_params: true\n", ""));
    let p = start_with(cfg.clone(), settings(&cfg, &place)).await;
    let bad = post(
        &p,
        "/key/generate",
        MASTER,
        json!({"allowed_cache_controls": ["no-cache", "sometimes"]}),
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(
        error_of(&bad).1.contains("allowed_cache_controls[1]"),
        "{}",
        bad.body
    );
    let (key, made) = generate(&p, json!({"allowed_cache_controls": ["no-cache"]})).await;
    assert!(
        made.get("ignored_fields")
            .is_none_or(|f| !f.to_string().contains("allowed_cache_controls")),
        "{made}"
    );
    let info = get(&p, &format!("/key/info?key={key}"), MASTER).await;
    assert_eq!(
        info.body["info"]["allowed_cache_controls"],
        json!(["no-cache"]),
        "{}",
        info.body
    );
    let with = |controls: Value| {
        let mut body = ask("hi");
        body["cache"] = controls;
        body
    };
    let allowed = post(
        &p,
        "/v1/chat/completions",
        &key,
        with(json!({"no-cache": true})),
    )
    .await;
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    let refused = post(
        &p,
        "/v1/chat/completions",
        &key,
        with(json!({"no-cache": true, "no-store": true})),
    )
    .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(
        error_of(&refused).1,
        "Not allowed to set no-store as a cache control. Contact admin to change permissions."
    );
    // The master key is not bound by any key's list.
    let master = post(
        &p,
        "/v1/chat/completions",
        MASTER,
        with(json!({"no-store": true})),
    )
    .await;
    assert_eq!(master.status, 200, "{}", master.body);
    let updated = post(
        &p,
        "/key/update",
        MASTER,
        json!({"key": key, "allowed_cache_controls": []}),
    )
    .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    let now = post(
        &p,
        "/v1/chat/completions",
        &key,
        with(json!({"no-store": true})),
    )
    .await;
    assert_eq!(now.status, 200, "{}", now.body);
    // Every call left its row, the refused one too.
    assert_eq!(spend_rows(&p, "", 4).await.len(), 4);
    p.stop().await;
    place.cleanup().await;
}

both_backends!(
    a_repeated_call_is_answered_from_the_cache,
    streams_are_replayed_as_the_client_asks,
    a_key_sends_only_the_cache_controls_it_is_allowed
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn opt_in_mode_long_conversations_and_the_admin_routes() {
    let place = Place::new(Backend::Sqlite);
    let fake = FakeOpenAi::start().await;
    let cfg = config(&yaml(
        &fake,
        "  cache: true\n  cache_params: {mode: default_off, namespace: team-a}\n",
        "",
    ));
    let p = start_with(cfg.clone(), settings(&cfg, &place)).await;
    // default_off: only calls that ask.
    post(&p, "/v1/chat/completions", MASTER, ask("q")).await;
    let plain = post(&p, "/v1/chat/completions", MASTER, ask("q")).await;
    assert_eq!(fake.served(), 2);
    assert!(!plain.headers.contains_key("x-litellm-cache-key"));
    let mut opted = ask("q");
    opted["cache"] = json!({"use-cache": true});
    let a = post(&p, "/v1/chat/completions", MASTER, opted.clone()).await;
    let k = cache_key(&a);
    assert!(k.starts_with("team-a:"), "{k}");
    post(&p, "/v1/chat/completions", MASTER, opted.clone()).await;
    assert_eq!(fake.served(), 3);
    // More than max_messages (4) messages: not cached, as LiteLLM.
    let mut long = opted.clone();
    long["messages"] = json!([
        {"role": "user", "content": "1"}, {"role": "assistant", "content": "2"},
        {"role": "user", "content": "3"}, {"role": "assistant", "content": "4"},
        {"role": "user", "content": "5"}
    ]);
    post(&p, "/v1/chat/completions", MASTER, long.clone()).await;
    post(&p, "/v1/chat/completions", MASTER, long).await;
    assert_eq!(fake.served(), 5);

    // The admin routes: a key that is not an admin's is refused.
    let (key, _) = generate(&p, json!({})).await;
    let refused = get(&p, "/cache/ping", &key).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let ping = get(&p, "/cache/ping", MASTER).await;
    assert_eq!(ping.status, 200, "{}", ping.body);
    assert_eq!(
        (
            ping.body["status"].as_str(),
            ping.body["cache_type"].as_str()
        ),
        (Some("healthy"), Some("local"))
    );
    let details = get(&p, "/health/readiness/details", MASTER).await;
    assert_eq!(details.body["cache"], "local", "{}", details.body);
    let deleted = post(&p, "/cache/delete", MASTER, json!({"keys": [k]})).await;
    assert_eq!(
        (deleted.status.as_u16(), deleted.body["deleted"].as_u64()),
        (200, Some(1)),
        "{}",
        deleted.body
    );
    post(&p, "/v1/chat/completions", MASTER, opted.clone()).await;
    assert_eq!(fake.served(), 6, "deleted: asked again");
    let flushed = post(&p, "/cache/flushall", MASTER, json!({})).await;
    assert_eq!(
        flushed.body["deleted"].as_u64(),
        Some(1),
        "{}",
        flushed.body
    );
    post(&p, "/v1/chat/completions", MASTER, opted).await;
    assert_eq!(fake.served(), 7, "flushed: asked again");
    let info = get(&p, "/cache/redis/info", MASTER).await;
    assert_eq!(info.status, 500, "{}", info.body);
    // LiteLLM's counters, for the calls the cache was asked about only: one hit, three misses.
    let scraped = get(&p, "/metrics", MASTER).await;
    assert_eq!(scraped.status, 200);
    let text = scraped.body.as_str().unwrap_or_default().to_string();
    let total = |name: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    };
    assert_eq!(total("litellm_cache_hits_metric_total"), 1.0, "{text}");
    assert_eq!(total("litellm_cache_misses_metric_total"), 3.0, "{text}");
    assert!(total("litellm_cached_tokens_metric_total") > 0.0, "{text}");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_cache_the_routes_say_so() {
    let place = Place::new(Backend::Sqlite);
    let fake = FakeOpenAi::start().await;
    let cfg = config(&yaml(&fake, "  drop_params: true\n", ""));
    let p = start_with(cfg.clone(), settings(&cfg, &place)).await;
    let a = post(&p, "/v1/chat/completions", MASTER, ask("x")).await;
    assert!(!a.headers.contains_key("x-litellm-cache-key"));
    let ping = get(&p, "/cache/ping", MASTER).await;
    assert_eq!(ping.status, 503, "{}", ping.body);
    assert!(
        error_of(&ping).1.contains("Cache not initialized"),
        "{}",
        ping.body
    );
    p.stop().await;
}

/// Two instances on one Redis cache: what one stored, the other answers with; entries expire
/// by their TTL; a call's `s-maxage` refuses older ones; and a flush deletes cache entries
/// only (the fleet keeps its budgets and limits in the same Redis).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_cache_is_shared_by_the_fleet_and_flushed_alone() {
    let fake = FakeOpenAi::start().await;
    let prefix = format!("t-{}:", uuid::Uuid::new_v4().simple());
    let url = reqwest::Url::parse(&redis_url()).unwrap();
    let cache = format!(
        "  cache: true\n  cache_params: {{type: redis, host: {}, port: {}}}\n",
        url.host_str().unwrap(),
        url.port().unwrap_or(6379)
    );
    let general = format!("  redis_key_prefix: \"{prefix}\"\n");
    let cfg = config(&yaml(&fake, &cache, &general));
    let (pa, pb) = (Place::new(Backend::Sqlite), Place::new(Backend::Sqlite));
    let a = start_with(cfg.clone(), settings(&cfg, &pa)).await;
    let b = start_with(cfg.clone(), settings(&cfg, &pb)).await;

    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let canary = format!("{prefix}not-the-cache");
    let _: () = redis::cmd("SET")
        .arg(&canary)
        .arg("1")
        .query_async(&mut conn)
        .await
        .unwrap();

    let first = post(&a, "/v1/chat/completions", MASTER, ask("shared")).await;
    let k = cache_key(&first);
    // The write runs beside the call: wait for it to land, not a guess at its time.
    let stored = format!("{prefix}cache:{k}");
    for _ in 0..100 {
        let n: i64 = redis::cmd("EXISTS")
            .arg(&stored)
            .query_async(&mut conn)
            .await
            .unwrap();
        if n == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = post(&b, "/v1/chat/completions", MASTER, ask("shared")).await;
    assert_eq!(fake.served(), 1, "the other instance answered from Redis");
    assert_eq!(second.body, first.body);
    assert_eq!(cost_of(&second), 0.0);

    // s-maxage: an entry older than the call accepts is a miss.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut strict = ask("shared");
    strict["cache"] = json!({"s-maxage": 0.01});
    post(&b, "/v1/chat/completions", MASTER, strict).await;
    assert_eq!(fake.served(), 2);

    // ttl: gone after it.
    let mut short = ask("brief");
    short["cache"] = json!({"ttl": 1});
    let brief = post(&a, "/v1/chat/completions", MASTER, short).await;
    let brief_key = format!("{prefix}cache:{}", cache_key(&brief));
    // -2: not written yet (the write runs beside the call).
    let mut ttl_ms: i64 = -2;
    for _ in 0..100 {
        ttl_ms = redis::cmd("PTTL")
            .arg(&brief_key)
            .query_async(&mut conn)
            .await
            .unwrap();
        if ttl_ms != -2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ttl_ms > 0 && ttl_ms <= 1000, "{ttl_ms}");

    let ping = get(&a, "/cache/ping", MASTER).await;
    assert_eq!(ping.body["cache_type"], "redis", "{}", ping.body);
    assert_eq!(ping.body["ping_response"], true);
    assert!(
        !ping.body.to_string().contains("6379"),
        "no address shown: {}",
        ping.body
    );
    let info = get(&a, "/cache/redis/info", MASTER).await;
    assert_eq!(info.status, 200, "{}", info.body);
    assert!(
        info.body["info"]["redis_version"].is_string(),
        "{}",
        info.body
    );

    let flushed = post(&b, "/cache/flushall", MASTER, json!({})).await;
    assert_eq!(flushed.status, 200, "{}", flushed.body);
    assert!(
        flushed.body["deleted"].as_u64().unwrap() >= 1,
        "{}",
        flushed.body
    );
    let left: Option<String> = redis::cmd("GET")
        .arg(&canary)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        left.as_deref(),
        Some("1"),
        "the flush touched only cache entries"
    );
    post(&a, "/v1/chat/completions", MASTER, ask("shared")).await;
    assert_eq!(fake.served(), 4, "flushed: asked again");
    let _: () = redis::cmd("DEL")
        .arg(&canary)
        .query_async(&mut conn)
        .await
        .unwrap();
    a.stop().await;
    b.stop().await;
}

/// A Redis cache that does not answer (it takes connections and says nothing) costs the calls
/// nothing but the cache: they are answered by the model, and after the first failure they
/// skip Redis for a while instead of each waiting on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_cache_that_is_down_leaves_calls_uncached_not_failed() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncReadExt;
    let fake = FakeOpenAi::start().await;
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let (conns, bytes) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (c, b) = (conns.clone(), bytes.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = silent.accept().await else {
                return;
            };
            c.fetch_add(1, Ordering::SeqCst);
            let b = b.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = sock.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    b.fetch_add(n, Ordering::SeqCst);
                }
            });
        }
    });
    let cache =
        format!("  cache: true\n  cache_params: {{type: redis, host: 127.0.0.1, port: {port}}}\n");
    let cfg = config(&yaml(&fake, &cache, ""));
    let place = Place::new(Backend::Sqlite);
    let p = start_with(cfg.clone(), settings(&cfg, &place)).await;
    let first = post(&p, "/v1/chat/completions", MASTER, ask("x")).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let seen = (conns.load(Ordering::SeqCst), bytes.load(Ordering::SeqCst));
    assert!(seen.0 >= 1, "the cache tried Redis");
    for _ in 0..4 {
        let a = post(&p, "/v1/chat/completions", MASTER, ask("x")).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert!(cost_of(&a) > 0.0);
    }
    assert_eq!(fake.served(), 5);
    assert_eq!(
        (conns.load(Ordering::SeqCst), bytes.load(Ordering::SeqCst)),
        seen,
        "after the failure the calls left Redis alone"
    );
    let ping = get(&p, "/cache/ping", MASTER).await;
    assert_eq!(ping.status, 503, "{}", ping.body);
    p.stop().await;
}

/// Two teams' own deployments under one name (`/model/new` with a `team_id`): each team is
/// answered from its own models, never from the other's cached answer to the same question.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn team_deployments_of_one_name_never_share_answers() {
    let place = Place::new(Backend::Sqlite);
    let p = store_support::start(
        &place,
        "  store_model_in_db: true\nlitellm_settings:\n  cache: true\n",
    )
    .await;
    let mut keys = Vec::new();
    for team in ["alpha", "beta"] {
        let made = post(&p, "/team/new", MASTER, json!({"team_id": team})).await;
        assert_eq!(made.status, 200, "{}", made.body);
        let model = json!({
            "model_name": "team-gpt",
            "litellm_params": {"model": "openai/team-model", "mock_response": format!("from {team}")},
            "model_info": {"team_id": team},
        });
        let added = post(&p, "/model/new", MASTER, model).await;
        assert_eq!(added.status, 200, "{}", added.body);
        keys.push(generate(&p, json!({"team_id": team})).await.0);
    }
    let question = json!({"model": "team-gpt", "messages": [{"role": "user", "content": "who?"}]});
    let words = |a: &store_support::Answer| {
        a.body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let alpha = post(&p, "/v1/chat/completions", &keys[0], question.clone()).await;
    assert_eq!(words(&alpha), "from alpha", "{}", alpha.body);
    let beta = post(&p, "/v1/chat/completions", &keys[1], question.clone()).await;
    assert_eq!(words(&beta), "from beta", "{}", beta.body);
    assert_ne!(cache_key(&alpha), cache_key(&beta));
    // Each team's own answer is cached for it.
    let again = post(&p, "/v1/chat/completions", &keys[0], question).await;
    assert_eq!(words(&again), "from alpha");
    assert_eq!(cost_of(&again), 0.0);
    assert_eq!(cache_key(&again), cache_key(&alpha));
    p.stop().await;
}
