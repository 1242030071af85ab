#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Two gateways on loopback sharing one Postgres schema and one Redis: a key's budget and rpm
//! limit hold across both, a block on one is refused by the other within a second, and every
//! spend row from both is stored. Plus `general_settings.redis_failure_mode` when Redis is
//! unreachable.

mod store_support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use store_support::{
    Backend, MASTER, Place, Proxy, chat, client, error_of, generate, get, post, redis_url, send,
    spend_rows,
};

fn fleet_yaml(redis: &str, prefix: &str, mode: &str) -> String {
    store_support::yaml(&format!(
        "  redis_key_prefix: \"{prefix}\"
  redis_failure_mode: {mode}
  user_api_key_cache_ttl: 3600
router_settings:
  redis_url: {redis}
"
    ))
}

async fn instance(place: &Place, yaml: &str) -> Proxy {
    let cfg = store_support::config(yaml);
    let s = store_support::settings(&cfg, place);
    assert!(s.redis.is_some(), "redis configured");
    store_support::start_with(cfg, s).await
}

async fn pair(place: &Place) -> (Proxy, Proxy) {
    let prefix = format!("t{}:", uuid::Uuid::new_v4().simple());
    let yaml = fleet_yaml(&redis_url(), &prefix, "closed");
    (instance(place, &yaml).await, instance(place, &yaml).await)
}

fn bounded_chat() -> Value {
    json!({"model": "mocky", "max_tokens": 50, "messages": [{"role": "user", "content": "Say hi"}]})
}

/// 200 bounded calls of `key` at once, split over two instances: how many were answered and
/// refused for budget (each refusal saying `refusal`), and what one answered call cost.
async fn split_calls(a: &Proxy, b: &Proxy, key: &str, refusal: &str) -> (usize, usize, f64) {
    split_calls_of(a, b, [key, key], refusal).await
}

/// [`split_calls`], the calls to `b` made with the second key.
async fn split_calls_of(
    a: &Proxy,
    b: &Proxy,
    keys: [&str; 2],
    refusal: &str,
) -> (usize, usize, f64) {
    let http = client();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (target, key) = if i % 2 == 0 {
            (a, keys[0])
        } else {
            (b, keys[1])
        };
        let req = http
            .post(target.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&bounded_chat());
        tasks.push(tokio::spawn(send(req)));
    }
    let (mut answered, mut refused, mut one_call) = (0usize, 0usize, 0.0f64);
    for t in tasks {
        let r = t.await.unwrap();
        match r.status.as_u16() {
            200 => {
                answered += 1;
                one_call = store_support::cost_of(&r);
            }
            422 => {
                refused += 1;
                assert!(error_of(&r).1.contains(refusal), "{}", r.body);
            }
            s => panic!("unexpected {s}: {}", r.body),
        }
    }
    assert_eq!(answered + refused, 200);
    (answered, refused, one_call)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn budget_holds_across_two_instances() {
    let place = Place::new(Backend::Postgres);
    let (a, b) = pair(&place).await;
    let budget = 0.001;
    let (key, generated) = generate(&a, json!({"max_budget": budget})).await;
    let token = generated["token_id"].as_str().unwrap().to_string();
    let (answered, refused, one_call) = split_calls(&a, &b, &key, "Budget has been exceeded").await;
    assert!(answered > 0 && refused > 0);
    a.stop().await;
    b.stop().await;

    // Every row from both instances, read by a third.
    let prefix = format!("t{}:", uuid::Uuid::new_v4().simple());
    let c = instance(&place, &fleet_yaml(&redis_url(), &prefix, "closed")).await;
    let rows = spend_rows(&c, &format!("?api_key={token}"), 200).await;
    assert_eq!(rows.len(), 200);
    let ok = rows.iter().filter(|r| r["status"] == "success").count();
    assert_eq!(ok, answered);
    let spend: f64 = rows.iter().map(|r| r["spend"].as_f64().unwrap()).sum();
    assert!(
        spend <= budget + one_call + 1e-12,
        "spend {spend} over budget {budget} by more than one call ({one_call})"
    );
    let info = get(&c, &format!("/key/info?key={token}"), MASTER).await;
    assert!((info.body["info"]["spend"].as_f64().unwrap() - spend).abs() < 1e-9);
    c.stop().await;
    place.cleanup().await;
}

/// The proxy-wide budget (`litellm_settings.max_budget`) is one level for the whole fleet:
/// calls of two keys split over two instances overspend it by at most one call, and its
/// user's stored spend is the sum of every row.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_proxy_wide_budget_holds_across_two_instances() {
    let place = Place::new(Backend::Postgres);
    let prefix = format!("t{}:", uuid::Uuid::new_v4().simple());
    let budget = 0.001;
    let yaml = format!(
        "{}litellm_settings:\n  max_budget: {budget}\n  budget_duration: 30d\n",
        fleet_yaml(&redis_url(), &prefix, "closed")
    );
    let (a, b) = (instance(&place, &yaml).await, instance(&place, &yaml).await);
    let (first, _) = generate(&a, json!({})).await;
    let (second, _) = generate(&b, json!({})).await;
    let (answered, refused, one_call) = split_calls_of(
        &a,
        &b,
        [&first, &second],
        "Budget has been exceeded! Current cost: ",
    )
    .await;
    assert!(answered > 0 && refused > 0, "{answered} answered");
    let rows = spend_rows(&a, "", 200).await;
    let spend: f64 = rows.iter().map(|r| r["spend"].as_f64().unwrap()).sum();
    assert!(
        spend <= budget + one_call + 1e-12,
        "spend {spend} over budget {budget} by more than one call ({one_call})"
    );
    a.stop().await;
    b.stop().await;
    let c = instance(&place, &yaml).await;
    let info = get(&c, "/user/info?user_id=litellm-proxy-budget", MASTER).await;
    assert!(
        (info.body["user_info"]["spend"].as_f64().unwrap() - spend).abs() < 1e-9,
        "{} vs {spend}",
        info.body
    );
    c.stop().await;
    place.cleanup().await;
}

/// A key's per-model budget (`model_max_budget`) is one level shared by the fleet: 200 calls
/// split over two instances overspend it by at most one call, and its stored spend equals its
/// rows'.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_model_budget_holds_across_two_instances() {
    let place = Place::new(Backend::Postgres);
    let (a, b) = pair(&place).await;
    let budget = 0.001;
    let (key, generated) = generate(
        &a,
        json!({"model_max_budget": {"mocky": {"budget_limit": budget, "time_period": "1d"}}}),
    )
    .await;
    let token = generated["token_id"].as_str().unwrap().to_string();
    let (answered, refused, one_call) =
        split_calls(&a, &b, &key, "exceeded budget for model=mocky").await;
    assert!(answered > 0 && refused > 0, "{answered} {refused}");
    // Its other models are not limited.
    let other = json!({"model": "other", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(status_of(&b, &key, other).await, 200);
    a.stop().await;
    b.stop().await;
    let prefix = format!("t{}:", uuid::Uuid::new_v4().simple());
    let c = instance(&place, &fleet_yaml(&redis_url(), &prefix, "closed")).await;
    let rows = spend_rows(&c, &format!("?api_key={token}"), 201).await;
    let on_mocky: f64 = rows
        .iter()
        .filter(|r| r["model_group"] == "mocky")
        .map(|r| r["spend"].as_f64().unwrap())
        .sum();
    assert!(
        on_mocky <= budget + one_call + 1e-12,
        "spend {on_mocky} over the model budget {budget} by more than one call ({one_call})"
    );
    c.stop().await;
    let store = place.open_store().await;
    let entity = idlehands_store::key_model_budgets::entity(&token, "mocky");
    let kept = store.get_budget(&entity).await.unwrap().unwrap();
    store.close().await;
    assert!(
        (kept.spend as f64 / 1e9 - on_mocky).abs() < 1e-9,
        "{kept:?} vs {on_mocky}"
    );
    place.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rpm_limit_and_blocks_are_shared() {
    let place = Place::new(Backend::Postgres);
    let (a, b) = pair(&place).await;
    let (key, _) = generate(&a, json!({"rpm_limit": 4})).await;
    let mut statuses = Vec::new();
    for i in 0..6 {
        let target = if i % 2 == 0 { &a } else { &b };
        let r = post(target, "/v1/chat/completions", &key, chat("mocky")).await;
        if r.status == 429 {
            assert_eq!(error_of(&r).0, "rate_limit_error");
            assert!(r.headers.contains_key("retry-after"));
        }
        statuses.push(r.status.as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        4,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        2,
        "{statuses:?}"
    );

    // A fresh key, cached on b by use, blocked through a.
    let (other, _) = generate(&a, json!({})).await;
    assert_eq!(
        post(&b, "/v1/chat/completions", &other, chat("mocky"))
            .await
            .status,
        200
    );
    let blocked_at = Instant::now();
    assert_eq!(
        post(&a, "/key/block", MASTER, json!({"key": other}))
            .await
            .status,
        200
    );
    let mut refused_after = None;
    while blocked_at.elapsed() < CHANNEL_DEADLINE {
        if post(&b, "/v1/chat/completions", &other, chat("mocky"))
            .await
            .status
            == 401
        {
            refused_after = Some(blocked_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    refused_after.expect("the other instance refuses the blocked key");
    a.stop().await;
    b.stop().await;
    place.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unreachable_redis_is_explicit() {
    // Port 9 (discard) is closed on loopback.
    let place = Place::new(Backend::Sqlite);
    let closed = fleet_yaml("redis://127.0.0.1:9", "down:", "closed");
    let cfg = store_support::config(&closed);
    let s = store_support::settings(&cfg, &place);
    let err = match idlehands_proxy::ledger::StoreHandle::open(&s).await {
        Ok(_) => panic!("closed mode must not start without Redis"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("redis_failure_mode"), "{err}");

    // Open mode starts, and limits hold per instance.
    let open = fleet_yaml("redis://127.0.0.1:9", "down:", "open");
    let p = instance(&place, &open).await;
    let (key, _) = generate(&p, json!({"rpm_limit": 1})).await;
    assert_eq!(
        post(&p, "/v1/chat/completions", &key, chat("mocky"))
            .await
            .status,
        200
    );
    assert_eq!(
        post(&p, "/v1/chat/completions", &key, chat("mocky"))
            .await
            .status,
        429
    );
    p.stop().await;

    // A bad mode is a config error naming the setting.
    let bad = store_support::config(&fleet_yaml("redis://127.0.0.1:9", "x:", "sometimes"));
    let err = idlehands_proxy::ledger::StoreSettings::from_config(&bad, &|_| None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("redis_failure_mode"), "{err}");
}

/// A TCP relay to the real Redis that can be cut, to take Redis away mid-run.
struct Relay {
    url: String,
    tasks: std::sync::Arc<parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Relay {
    async fn start() -> Relay {
        let target = redis_url()
            .trim_start_matches("redis://")
            .trim_end_matches('/')
            .to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let tasks = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
        let inner = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let target = target.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                inner.lock().push(conn);
            }
        });
        tasks.lock().push(accept);
        Relay { url, tasks }
    }

    /// Closes the port and every relayed connection.
    fn cut(&self) {
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_outage_mid_run_follows_the_failure_mode() {
    let place = Place::new(Backend::Sqlite);
    let prefix = format!("t{}:", uuid::Uuid::new_v4().simple());

    let relay = Relay::start().await;
    let closed = instance(&place, &fleet_yaml(&relay.url, &prefix, "closed")).await;
    let (key, _) = generate(&closed, json!({"rpm_limit": 100})).await;
    assert_eq!(
        post(&closed, "/v1/chat/completions", &key, chat("mocky"))
            .await
            .status,
        200
    );
    relay.cut();
    let r = post(&closed, "/v1/chat/completions", &key, chat("mocky")).await;
    assert_eq!(r.status, 503, "{}", r.body);
    let (kind, message) = error_of(&r);
    assert_eq!(kind, "service_unavailable");
    assert!(message.contains("redis_failure_mode"), "{message}");
    // The master key does not depend on Redis.
    assert_eq!(
        post(&closed, "/v1/chat/completions", MASTER, chat("mocky"))
            .await
            .status,
        200
    );
    closed.stop().await;

    let relay = Relay::start().await;
    let open = instance(&place, &fleet_yaml(&relay.url, &prefix, "open")).await;
    let (key, _) = generate(&open, json!({"rpm_limit": 2})).await;
    assert_eq!(
        post(&open, "/v1/chat/completions", &key, chat("mocky"))
            .await
            .status,
        200
    );
    relay.cut();
    // Admitted on this instance's counters, which still limit.
    assert_eq!(
        post(&open, "/v1/chat/completions", &key, chat("mocky"))
            .await
            .status,
        200
    );
    assert_eq!(
        post(&open, "/v1/chat/completions", &key, chat("mocky"))
            .await
            .status,
        200
    );
    assert_eq!(
        post(&open, "/v1/chat/completions", &key, chat("mocky"))
            .await
            .status,
        429
    );
    open.stop().await;
}

/// How long a test waits for a change to reach another instance before failing. Far above
/// what it takes (the bench's business, not a test's) and far below the key cache's re-read
/// (`user_api_key_cache_ttl: 3600` in these configs): a change seen in time came over the
/// invalidation channel, not from the cache expiring.
const CHANNEL_DEADLINE: Duration = Duration::from_secs(30);

/// Waits (polling, bounded by `limit`) until `check` holds; returns how long it took, or
/// `None` if it never did.
async fn within<F, Fut>(limit: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

async fn status_of(p: &Proxy, key: &str, body: Value) -> u16 {
    post(p, "/v1/chat/completions", key, body)
        .await
        .status
        .as_u16()
}

/// Whatever the other instance cached (the key refused as unknown, blocked, or limited to
/// other models), a change made on one instance is honoured by the other within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_changes_reach_every_instance_whatever_it_cached() {
    let place = Place::new(Backend::Postgres);
    let (a, b) = pair(&place).await;

    // A client retries a key before it exists: b refuses it, repeatedly.
    let early = format!("sk-early-{}", uuid::Uuid::new_v4().simple());
    for _ in 0..3 {
        let r = post(&b, "/v1/chat/completions", &early, chat("mocky")).await;
        assert_eq!(r.status, 401, "{}", r.body);
        assert_eq!(error_of(&r).0, "auth_error");
    }
    generate(&a, json!({"key": early})).await;
    within(CHANNEL_DEADLINE, || async {
        status_of(&b, &early, chat("mocky")).await == 200
    })
    .await
    .expect("a key created on a is accepted by b");

    // A regenerated key's new value, refused by b before the regeneration.
    let new_value = format!("sk-new-{}", uuid::Uuid::new_v4().simple());
    assert_eq!(status_of(&b, &new_value, chat("mocky")).await, 401);
    let r = post(
        &a,
        &format!("/key/{early}/regenerate"),
        MASTER,
        json!({"new_key": new_value}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    within(CHANNEL_DEADLINE, || async {
        status_of(&b, &new_value, chat("mocky")).await == 200
    })
    .await
    .expect("the regenerated value is accepted by b");
    assert_eq!(status_of(&b, &early, chat("mocky")).await, 401);

    // Blocked, seen blocked by b, unblocked on a.
    assert_eq!(
        post(&a, "/key/block", MASTER, json!({"key": new_value}))
            .await
            .status,
        200
    );
    within(CHANNEL_DEADLINE, || async {
        status_of(&b, &new_value, chat("mocky")).await == 401
    })
    .await
    .expect("b refuses the blocked key");
    assert_eq!(
        post(&a, "/key/unblock", MASTER, json!({"key": new_value}))
            .await
            .status,
        200
    );
    within(CHANNEL_DEADLINE, || async {
        status_of(&b, &new_value, chat("mocky")).await == 200
    })
    .await
    .expect("b accepts the unblocked key");

    // Limited to another model, cached so by b, then opened up on a.
    let (narrow, _) = generate(&a, json!({"models": ["other"]})).await;
    let r = post(&b, "/v1/chat/completions", &narrow, chat("mocky")).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(error_of(&r).0, "key_model_access_denied");
    let r = post(
        &a,
        "/key/update",
        MASTER,
        json!({"key": narrow, "models": []}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    within(CHANNEL_DEADLINE, || async {
        status_of(&b, &narrow, chat("mocky")).await == 200
    })
    .await
    .expect("b serves the widened key");

    a.stop().await;
    b.stop().await;
    place.cleanup().await;
}

/// A named budget changed on one instance bounds its followers on the other at once, though
/// that instance cached them for an hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_named_budget_change_reaches_followers_on_every_instance() {
    let place = Place::new(Backend::Postgres);
    let (a, b) = pair(&place).await;
    let (key, _) = generate(&a, json!({})).await;
    let r = post(
        &a,
        "/budget/new",
        MASTER,
        json!({"budget_id": "tier", "max_budget": 0.00001}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = post(
        &a,
        "/customer/new",
        MASTER,
        json!({"user_id": "fleet-user", "budget_id": "tier"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let as_user = || {
        json!({"model": "mocky", "max_tokens": 50, "user": "fleet-user",
               "messages": [{"role": "user", "content": "Say hi"}]})
    };
    // b spends the budget and caches the end user as over it.
    within(CHANNEL_DEADLINE, || async {
        status_of(&b, &key, as_user()).await == 422
    })
    .await
    .expect("b refuses the end user once the budget is spent");
    let r = post(
        &a,
        "/budget/update",
        MASTER,
        json!({"budget_id": "tier", "max_budget": 5.0}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    within(CHANNEL_DEADLINE, || async {
        status_of(&b, &key, as_user()).await == 200
    })
    .await
    .expect("b serves the end user under the raised budget");
    a.stop().await;
    b.stop().await;
    place.cleanup().await;
}

/// `/key/info` answers from the shared counters: the same spend on every instance, whichever
/// served the calls, with what calls in progress hold shown apart as `reserved_spend`; a
/// budget refusal caused by reservations says how much is reserved.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_info_and_budget_errors_agree_across_instances() {
    let place = Place::new(Backend::Postgres);
    let upstream = idlehands_testkit::FakeOpenAi::start().await;
    let prefix = format!("t{}:", uuid::Uuid::new_v4().simple());
    let yaml = slow_fleet_yaml(&upstream, &redis_url(), &prefix);
    let (a, b) = (instance(&place, &yaml).await, instance(&place, &yaml).await);
    let (key, generated) = generate(&a, json!({"max_budget": 0.01})).await;
    let token = generated["token_id"].as_str().unwrap().to_string();

    // Three finished calls, served by both instances.
    for (i, p) in [&a, &b, &a].into_iter().enumerate() {
        upstream.push(idlehands_testkit::Reply::text(format!("answer {i}")));
        let body = json!({"model": "slow", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]});
        assert_eq!(status_of(p, &key, body).await, 200);
    }
    let (spend_a, reserved_a) = key_spend_of(&a, &token).await;
    let (spend_b, reserved_b) = key_spend_of(&b, &token).await;
    assert!(spend_a > 0.0);
    assert_eq!(spend_a, spend_b, "both instances report the shared spend");
    assert_eq!((reserved_a, reserved_b), (0.0, 0.0));
    let rows = spend_rows(&a, &format!("?api_key={token}"), 3).await;
    let logged: f64 = rows.iter().map(|r| r["spend"].as_f64().unwrap()).sum();
    assert!((logged - spend_a).abs() < 1e-12, "{logged} vs {spend_a}");

    // Two long calls in flight, each reserving its 4000 output tokens (0.008 USD) and its
    // prompt: the first leaves the budget open, the second closes it.
    let long = json!({"model": "slow", "max_tokens": 4000, "messages": [{"role": "user", "content": "hi"}]});
    let mut pending = Vec::new();
    let gate = idlehands_testkit::Gate::new();
    for (n, p) in [&a, &b].into_iter().enumerate() {
        upstream.push(idlehands_testkit::Reply::text("slow answer").held_by(&gate));
        let req = client()
            .post(p.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&long);
        pending.push(tokio::spawn(send(req)));
        let served = 3 + n + 1;
        within(CHANNEL_DEADLINE, || async { upstream.served() >= served })
            .await
            .expect("the long call reaches the upstream");
    }
    let (spend_a2, reserved_a2) = key_spend_of(&a, &token).await;
    let (spend_b2, reserved_b2) = key_spend_of(&b, &token).await;
    assert_eq!((spend_a2, reserved_a2), (spend_b2, reserved_b2));
    assert_eq!(spend_a2, spend_a, "nothing settled yet");
    assert!(
        (0.016..0.0161).contains(&reserved_a2),
        "two calls of 4000 output tokens at 2e-6 plus their prompts: {reserved_a2}"
    );
    let r = post(
        &b,
        "/v1/chat/completions",
        &key,
        json!({"model": "slow", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.body);
    let (kind, message) = error_of(&r);
    assert_eq!(kind, "budget_exceeded");
    assert!(
        message.starts_with("Budget has been exceeded! Key=None (sk-..."),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "Current cost: {}, Max budget: 0.01, Reserved by calls in progress: 0.016",
            r_spend(spend_a)
        )),
        "{message}"
    );

    gate.open();
    for p in pending {
        assert_eq!(p.await.unwrap().status, 200);
    }
    let rows = spend_rows(&a, &format!("?api_key={token}"), 6).await;
    assert_eq!(rows.len(), 6, "three calls, two long ones and one refusal");
    let logged: f64 = rows.iter().map(|r| r["spend"].as_f64().unwrap()).sum();
    let (spend_a3, reserved_a3) = key_spend_of(&a, &token).await;
    let (spend_b3, reserved_b3) = key_spend_of(&b, &token).await;
    assert_eq!((reserved_a3, reserved_b3), (0.0, 0.0), "released on finish");
    assert_eq!(spend_a3, spend_b3);
    assert!((logged - spend_a3).abs() < 1e-12, "{logged} vs {spend_a3}");

    a.stop().await;
    b.stop().await;
    place.cleanup().await;
}

/// A fleet config with a model `slow` served by `upstream` (1e-6 USD per input token, 2e-6 per
/// output token) besides the usual ones, `closed` mode.
fn slow_fleet_yaml(upstream: &idlehands_testkit::FakeOpenAi, redis: &str, prefix: &str) -> String {
    format!(
        "model_list:
{}{}",
        upstream.priced_entry("slow"),
        fleet_yaml(redis, prefix, "closed")
            .split_once("model_list:\n")
            .unwrap()
            .1
    )
}

/// `/key/info`'s `spend` and `reserved_spend`.
async fn key_spend_of(p: &Proxy, token: &str) -> (f64, f64) {
    let r = get(p, &format!("/key/info?key={token}"), MASTER).await;
    assert_eq!(r.status, 200, "{}", r.body);
    (
        r.body["info"]["spend"].as_f64().unwrap(),
        r.body["info"]["reserved_spend"].as_f64().unwrap(),
    )
}

/// The spend as LiteLLM's message prints it (Python's float repr).
fn r_spend(usd: f64) -> String {
    idlehands_store::money::usd_string(idlehands_store::money::usd_to_nanos(usd).unwrap())
}

/// A `redis-server` of this test's own on a free port, which the test kills and restarts.
struct PrivateRedis {
    port: u16,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    async fn start() -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = PrivateRedis { port, child: None };
        r.restart().await;
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        self.child = Some(child);
        let url = self.url();
        within(CHANNEL_DEADLINE, || {
            let url = url.clone();
            async move {
                let Ok(client) = redis::Client::open(url.as_str()) else {
                    return false;
                };
                match client.get_multiplexed_async_connection().await {
                    Ok(mut c) => redis::cmd("PING")
                        .query_async::<String>(&mut c)
                        .await
                        .is_ok(),
                    Err(_) => false,
                }
            }
        })
        .await
        .expect("the private redis-server answers");
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn readiness(p: &Proxy) -> (u16, Value) {
    let r = send(client().get(p.url("/health/readiness"))).await;
    (r.status.as_u16(), r.body)
}

/// Redis killed and restarted under two `closed` instances and one `open` instance: while it
/// is down the closed ones refuse at once and say so in readiness, the open one serves on
/// its own counters; when it returns every instance is back within 5 s, the invalidation
/// channel works again, and a change made during the outage (whose announcement was lost)
/// is applied by the other instance anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_restart_is_survived_by_every_instance() {
    let place = Place::new(Backend::Postgres);
    let mut redis = PrivateRedis::start().await;
    let closed = fleet_yaml(&redis.url(), "restart:", "closed");
    let (a, b) = (
        instance(&place, &closed).await,
        instance(&place, &closed).await,
    );
    let c = instance(&place, &fleet_yaml(&redis.url(), "restart:", "open")).await;
    let (key, _) = generate(&a, json!({"rpm_limit": 1000})).await;
    let (doomed, _) = generate(&a, json!({})).await;
    for p in [&a, &b, &c] {
        assert_eq!(status_of(p, &key, chat("mocky")).await, 200);
        assert_eq!(status_of(p, &doomed, chat("mocky")).await, 200);
        let (status, body) = readiness(p).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["redis"], "connected", "{body}");
        assert_eq!(body["limits"], "shared", "{body}");
    }
    assert_eq!(readiness(&a).await.1["redis_failure_mode"], "closed");
    assert_eq!(readiness(&c).await.1["redis_failure_mode"], "open");

    redis.kill();
    for p in [&a, &b] {
        within(CHANNEL_DEADLINE, || async {
            readiness(p).await.1["limits"] == "refusing"
        })
        .await
        .expect("a closed instance notices the outage");
        let (status, body) = readiness(p).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["status"], "unhealthy", "{body}");
        assert_eq!(body["redis"], "Not connected", "{body}");
        let r = post(p, "/v1/chat/completions", &key, chat("mocky")).await;
        assert_eq!(r.status, 503, "{}", r.body);
        assert_eq!(error_of(&r).0, "service_unavailable");
        // The master key does not depend on Redis.
        assert_eq!(status_of(p, MASTER, chat("mocky")).await, 200);
    }
    within(CHANNEL_DEADLINE, || async {
        readiness(&c).await.1["limits"] == "per_instance"
    })
    .await
    .expect("the open instance notices the outage");
    let (status, body) = readiness(&c).await;
    assert_eq!(status, 200, "an open instance stays ready: {body}");
    for _ in 0..5 {
        assert_eq!(status_of(&c, &key, chat("mocky")).await, 200);
    }
    // Changed during the outage: the announcement cannot be published.
    assert_eq!(
        post(&a, "/key/block", MASTER, json!({"key": doomed}))
            .await
            .status,
        200
    );

    redis.restart().await;
    for p in [&a, &b, &c] {
        within(CHANNEL_DEADLINE, || async {
            status_of(p, &key, chat("mocky")).await == 200
                && readiness(p).await.1["limits"] == "shared"
        })
        .await
        .expect("the instance uses Redis again");
    }
    // b and c re-read every key after the gap, so the block made during it holds.
    for p in [&b, &c] {
        within(CHANNEL_DEADLINE, || async {
            status_of(p, &doomed, chat("mocky")).await == 401
        })
        .await
        .expect("the block made during the outage reaches every instance");
    }
    // The invalidation channel is live again: a block now reaches b within a second.
    assert_eq!(
        post(&a, "/key/block", MASTER, json!({"key": key}))
            .await
            .status,
        200
    );
    within(CHANNEL_DEADLINE, || async {
        status_of(&b, &key, chat("mocky")).await == 401
    })
    .await
    .expect("b refuses the key blocked after the restart");

    a.stop().await;
    b.stop().await;
    c.stop().await;
    place.cleanup().await;
}

/// A TCP relay to the shared Redis that can refuse service (dropping every connection and
/// each new one) and serve again: an outage in which Redis itself keeps its data.
struct Switch {
    url: String,
    off: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Switch {
    async fn start() -> Switch {
        let target = redis_url()
            .trim_start_matches("redis://")
            .trim_end_matches('/')
            .to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let off = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let conns = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
        let (off2, conns2) = (off.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if off2.load(std::sync::atomic::Ordering::SeqCst) {
                    continue;
                }
                let target = target.clone();
                conns2.lock().push(tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }));
            }
        });
        Switch {
            url,
            off,
            conns,
            accept,
        }
    }

    fn cut(&self) {
        self.off.store(true, std::sync::atomic::Ordering::SeqCst);
        for t in self.conns.lock().drain(..) {
            t.abort();
        }
    }

    fn restore(&self) {
        self.off.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// A call admitted before Redis became unreachable and finished during the outage: its
/// settlement waits and is applied when Redis answers again, so the shared counters hold no
/// stale reservation and count its spend.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn settlements_during_an_outage_reach_redis_afterwards() {
    let place = Place::new(Backend::Postgres);
    let upstream = idlehands_testkit::FakeOpenAi::start().await;
    let switch = Switch::start().await;
    let prefix = format!("t{}:", uuid::Uuid::new_v4().simple());
    let a = instance(&place, &slow_fleet_yaml(&upstream, &switch.url, &prefix)).await;
    let (key, generated) = generate(&a, json!({"max_budget": 1.0})).await;
    let token = generated["token_id"].as_str().unwrap().to_string();

    let gate = idlehands_testkit::Gate::new();
    upstream.push(idlehands_testkit::Reply::text("slow answer").held_by(&gate));
    let long = json!({"model": "slow", "max_tokens": 4000, "messages": [{"role": "user", "content": "hi"}]});
    let req = client()
        .post(a.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&long);
    let pending = tokio::spawn(send(req));
    within(CHANNEL_DEADLINE, || async { upstream.served() >= 1 })
        .await
        .expect("the call reaches the upstream");
    let (spend, reserved) = key_spend_of(&a, &token).await;
    assert_eq!(spend, 0.0);
    assert!(reserved > 0.008, "{reserved}");

    switch.cut();
    within(CHANNEL_DEADLINE, || async {
        readiness(&a).await.1["limits"] == "refusing"
    })
    .await
    .expect("the instance notices the outage");
    // The call finishes during the outage: its settlement must wait for Redis.
    gate.open();
    let r = pending.await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let cost: f64 = store_support::cost_of(&r);
    assert!(cost > 0.0);

    switch.restore();
    within(CHANNEL_DEADLINE, || async {
        readiness(&a).await.1["limits"] == "shared"
    })
    .await
    .expect("the instance uses Redis again");
    let (spend, reserved) = key_spend_of(&a, &token).await;
    assert_eq!(reserved, 0.0, "the reservation was given back");
    assert!((spend - cost).abs() < 1e-12, "{spend} vs {cost}");
    let rows = spend_rows(&a, &format!("?api_key={token}"), 1).await;
    assert_eq!(rows.len(), 1);

    a.stop().await;
    place.cleanup().await;
}

/// An `open` instance started while Redis is down serves on its own counters, and once Redis
/// answers it shares limits and hears key changes like the rest of the fleet.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_open_instance_started_without_redis_joins_the_fleet_when_it_answers() {
    let place = Place::new(Backend::Postgres);
    let mut redis = PrivateRedis::start().await;
    redis.kill();
    let late = instance(&place, &fleet_yaml(&redis.url(), "late:", "open")).await;
    let (status, body) = readiness(&late).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["limits"], "per_instance", "{body}");
    let (key, _) = generate(&late, json!({})).await;
    assert_eq!(status_of(&late, &key, chat("mocky")).await, 200);

    redis.restart().await;
    within(CHANNEL_DEADLINE, || async {
        readiness(&late).await.1["limits"] == "shared"
    })
    .await
    .expect("the instance connects to Redis once it answers");
    // Another instance, started with Redis up, blocks the key. The late one cached it as
    // usable; it refuses it only once subscribed (by the announcement, or by re-reading every
    // key right after subscribing).
    let other = instance(&place, &fleet_yaml(&redis.url(), "late:", "closed")).await;
    assert_eq!(
        post(&other, "/key/block", MASTER, json!({"key": key}))
            .await
            .status,
        200
    );
    within(CHANNEL_DEADLINE, || async {
        status_of(&late, &key, chat("mocky")).await == 401
    })
    .await
    .expect("the late instance learns of the block");
    // Subscribed now: an unblock reaches it within a second.
    assert_eq!(
        post(&other, "/key/unblock", MASTER, json!({"key": key}))
            .await
            .status,
        200
    );
    within(CHANNEL_DEADLINE, || async {
        status_of(&late, &key, chat("mocky")).await == 200
    })
    .await
    .expect("the late instance accepts the key unblocked elsewhere");

    late.stop().await;
    other.stop().await;
    place.cleanup().await;
}

/// Leases through the gateway: calls of a key with a roomy budget on one instance leave a
/// lease reserved in Redis (`reserved_spend` on both instances), later calls settle against
/// it, and once the instance has no call of the key for a while its heartbeat gives the rest
/// back: `reserved_spend` returns to 0 and `spend` is exactly the rows' sum, on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leases_show_as_reserved_and_go_back_when_idle() {
    let place = Place::new(Backend::Postgres);
    let (a, b) = pair(&place).await;
    let (key, generated) = generate(&a, json!({"max_budget": 100.0})).await;
    let token = generated["token_id"].as_str().unwrap().to_string();
    for _ in 0..20 {
        assert_eq!(status_of(&a, &key, bounded_chat()).await, 200);
    }
    let leased = within(CHANNEL_DEADLINE, || async {
        key_spend_of(&b, &token).await.1 > 0.0
    })
    .await;
    assert!(leased.is_some(), "no lease reserved after 20 calls");
    let (spend_a, reserved_a) = key_spend_of(&a, &token).await;
    assert_eq!((spend_a, reserved_a), key_spend_of(&b, &token).await);
    assert!(spend_a > 0.0);

    let back = within(CHANNEL_DEADLINE, || async {
        key_spend_of(&b, &token).await.1 == 0.0
    })
    .await
    .expect("the idle lease goes back");
    assert!(
        back >= Duration::from_millis(500),
        "given back after {back:?}"
    );
    let rows = spend_rows(&b, &format!("?api_key={token}"), 20).await;
    assert_eq!(rows.len(), 20);
    let logged: f64 = rows.iter().map(|r| r["spend"].as_f64().unwrap()).sum();
    let (spend, reserved) = key_spend_of(&a, &token).await;
    assert_eq!(reserved, 0.0);
    assert!((logged - spend).abs() < 1e-12, "{logged} vs {spend}");
    a.stop().await;
    b.stop().await;
    place.cleanup().await;
}

/// A budget lowered on one instance while another holds a lease on it: the change's
/// announcement drops the lease, so the other's next call is judged by Redis against the new
/// budget instead of being admitted against what is left of the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_budget_lowered_elsewhere_drops_the_lease() {
    let place = Place::new(Backend::Postgres);
    let (a, b) = pair(&place).await;
    let (key, generated) = generate(&a, json!({"max_budget": 100.0})).await;
    let token = generated["token_id"].as_str().unwrap().to_string();
    for _ in 0..5 {
        assert_eq!(status_of(&a, &key, bounded_chat()).await, 200);
    }
    within(CHANNEL_DEADLINE, || async {
        key_spend_of(&b, &token).await.1 > 0.0
    })
    .await
    .expect("a holds a lease");
    let (spend, _) = key_spend_of(&b, &token).await;
    let r = post(
        &b,
        "/key/update",
        MASTER,
        json!({"key": token, "max_budget": spend}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Calls on a from now on: admitted until the announcement arrives (normally none), then
    // refused. Against the lease (64 calls' worth, never idle while calls keep coming) there
    // would be dozens.
    let mut admitted = 0;
    let refused = loop {
        let r = post(&a, "/v1/chat/completions", &key, bounded_chat()).await;
        if r.status == 422 {
            break r;
        }
        assert_eq!(r.status, 200, "{}", r.body);
        admitted += 1;
        assert!(admitted < 30, "a kept admitting against its lease");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(error_of(&refused).0, "budget_exceeded");
    within(CHANNEL_DEADLINE, || async {
        key_spend_of(&b, &token).await.1 == 0.0
    })
    .await
    .expect("the lease was given back");
    a.stop().await;
    b.stop().await;
    place.cleanup().await;
}
