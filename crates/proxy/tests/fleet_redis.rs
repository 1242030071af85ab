#![allow(clippy::unwrap_used, clippy::expect_used)]
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn budget_holds_across_two_instances() {
    let place = Place::new(Backend::Postgres);
    let (a, b) = pair(&place).await;
    let budget = 0.001;
    let (key, generated) = generate(&a, json!({"max_budget": budget})).await;
    let token = generated["token_id"].as_str().unwrap().to_string();
    let http = client();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let target = if i % 2 == 0 { &a } else { &b };
        let req = http
            .post(target.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&bounded_chat());
        tasks.push(tokio::spawn(send(req)));
    }
    let (mut answered, mut refused, mut one_call) = (0usize, 0usize, 0.0f64);
    for t in tasks {
        let r = t.await.unwrap();
        match r.status.as_u16() {
            200 => {
                answered += 1;
                one_call = r.headers["x-litellm-response-cost"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
            }
            422 => refused += 1,
            s => panic!("unexpected {s}: {}", r.body),
        }
    }
    assert_eq!(answered + refused, 200);
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
    while blocked_at.elapsed() < Duration::from_secs(5) {
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
    let after = refused_after.expect("the other instance refuses the blocked key");
    assert!(
        after < Duration::from_secs(1),
        "refused only after {after:?}"
    );
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
