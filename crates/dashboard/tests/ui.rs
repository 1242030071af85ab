//! Drives the embedded dashboard in Debian's headless Chromium (via playwright-core) against a
//! fake gateway that serves the assets at /ui and implements the management API the pages call,
//! with realistic keys and spend logs. Needs what `scripts/test.sh` installs: the `chromium`
//! package and `npm ci` in `crates/dashboard/tests/browser`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Duration as Span, NaiveDate, Utc};
use idlehands_dashboard::session;
use serde_json::{Value, json};

const MASTER_KEY: &str = "sk-master-e2e-7f3a9c";
const MODELS: [(&str, &str, f64, f64); 3] = [
    // (public name, deployment model, $ per 1M input tokens, $ per 1M output tokens)
    ("gpt-4o-mini", "openai/gpt-4o-mini", 0.15, 0.60),
    (
        "claude-sonnet-4",
        "anthropic/claude-sonnet-4-20250514",
        3.0,
        15.0,
    ),
    ("gemini-2.0-flash", "gemini/gemini-2.0-flash", 0.10, 0.40),
];

#[derive(Clone, Default)]
struct Fake {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    keys: Vec<Value>,
    logs: Vec<Value>,
    sessions: Vec<String>,
    generated: Vec<String>,
    seq: u64,
}

/// Deterministic generator so the data (and the screenshot) look the same run to run.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn hex64(seed: u64) -> String {
    let mut r = Lcg(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    (0..4)
        .map(|_| format!("{:016x}", (r.next() << 31) ^ r.next()))
        .collect()
}

fn key(
    i: u64,
    alias: &str,
    spend: f64,
    max_budget: Option<f64>,
    extra: Value,
    now: DateTime<Utc>,
) -> Value {
    let mut k = json!({
        "token": hex64(i),
        "key_name": format!("sk-...{}", &hex64(i + 100)[..4]),
        "key_alias": alias,
        "spend": spend,
        "max_budget": max_budget,
        "budget_duration": null,
        "budget_reset_at": null,
        "expires": null,
        "models": [],
        "rpm_limit": null,
        "tpm_limit": null,
        "max_parallel_requests": null,
        "blocked": null,
        "user_id": null,
        "team_id": null,
        "created_at": (now - Span::days(40 - i as i64)).to_rfc3339(),
    });
    for (f, v) in extra.as_object().unwrap() {
        k[f] = v.clone();
    }
    k
}

fn seed(now: DateTime<Utc>) -> Inner {
    let keys = vec![
        key(
            1,
            "ci-runner",
            42.18,
            Some(50.0),
            json!({"budget_duration": "30d", "budget_reset_at": (now + Span::days(9)).to_rfc3339(),
                   "rpm_limit": 600, "tpm_limit": 200000, "models": ["gpt-4o-mini", "claude-sonnet-4"],
                   "user_id": "alice", "team_id": "platform", "expires": (now + Span::days(60)).to_rfc3339()}),
            now,
        ),
        key(
            2,
            "research-notebook",
            7.52,
            Some(100.0),
            json!({"user_id": "bob"}),
            now,
        ),
        key(
            3,
            "staging-bot",
            12.9,
            Some(12.0),
            json!({"rpm_limit": 60, "max_parallel_requests": 2, "team_id": "platform"}),
            now,
        ),
        key(
            4,
            "legacy-batch",
            3.1,
            None,
            json!({"blocked": true, "expires": (now - Span::days(10)).to_rfc3339(), "models": ["gemini-2.0-flash"]}),
            now,
        ),
        key(
            5,
            "eval-harness",
            0.84,
            None,
            json!({"max_parallel_requests": 4, "user_id": "carol"}),
            now,
        ),
    ];
    let users = [Some("alice"), Some("bob"), Some("carol"), None];
    let mut rng = Lcg(20_261_125);
    let mut logs = Vec::new();
    for n in 0..260u64 {
        // Newest first: row 0 is a few minutes old, the last ~29 days back.
        let age = Span::minutes((n * 160 + rng.below(120)) as i64 + 3);
        let start = now - age;
        let ki = match rng.below(10) {
            0..=3 => 0,
            4..=5 => 1,
            6..=7 => 2,
            8 => 4,
            _ => 3,
        };
        let k = &keys[ki];
        let (model, deployment, pin, pout) = MODELS[rng.below(3) as usize];
        let prompt = 1_500 + rng.below(38_000);
        let completion = 150 + rng.below(4_000);
        let failed = rng.below(20) == 0;
        let spend = if failed {
            0.0
        } else {
            (prompt as f64 * pin + completion as f64 * pout) / 1e6
        };
        let ms = 300 + rng.below(4200) as i64;
        let user = k["user_id"]
            .as_str()
            .or(users[rng.below(4) as usize])
            .map(str::to_string);
        let mut row = json!({
            "request_id": format!("chatcmpl-{}", &hex64(1000 + n)[..24]),
            "call_type": "acompletion",
            "api_key": k["token"],
            "spend": spend,
            "total_tokens": if failed { 0 } else { prompt + completion },
            "prompt_tokens": if failed { 0 } else { prompt },
            "completion_tokens": if failed { 0 } else { completion },
            "startTime": start.to_rfc3339(),
            "endTime": (start + Span::milliseconds(ms)).to_rfc3339(),
            "request_duration_ms": ms,
            "model": deployment,
            "model_group": model,
            "api_base": format!("https://api.{}.example/v1", deployment.split('/').next().unwrap()),
            "user": user,
            "status": if failed { "failure" } else { "success" },
            "metadata": {
                "user_api_key": k["token"],
                "user_api_key_alias": k["key_alias"],
                "user_api_key_team_id": k["team_id"],
                "user_api_key_user_id": k["user_id"],
                "error_information": if failed { json!({"error_code": "429", "error_class": "RateLimitError", "error_message": "Rate limit reached for requests"}) } else { Value::Null },
            },
        });
        // Prompt storage was turned on part-way: even rows carry the payload, odd rows don't.
        if n % 2 == 0 && !failed {
            row["messages"] = json!([
                {"role": "system", "content": "You are a careful code reviewer."},
                {"role": "user", "content": format!("Review this diff for request {n}: <script>alert('x')</script> fn main() {{ println!(\"hi\"); }}")}
            ]);
            row["response"] = json!({
                "id": row["request_id"], "object": "chat.completion", "model": model,
                "choices": [{"index": 0, "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "The diff looks fine. One note: `println!` panics if stdout is closed; use `writeln!` on a locked handle if that matters here."}}],
            });
        }
        logs.push(row);
    }
    Inner {
        keys,
        logs,
        ..Inner::default()
    }
}

fn authed(fake: &Fake, h: &HeaderMap) -> bool {
    let bearer = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer == Some(MASTER_KEY) {
        return true;
    }
    session::from_headers(h)
        .is_some_and(|s| fake.inner.lock().unwrap().sessions.iter().any(|x| x == s))
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"error": {"message": "Authentication Error, No api key passed in.", "type": "auth_error", "param": "None", "code": "401"}})),
    )
        .into_response()
}

async fn login(State(fake): State<Fake>, h: HeaderMap, body: Bytes) -> Response {
    let ctype = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let login = session::parse_login(ctype, &body);
    if login.as_ref().map(|l| l.password.as_str()) != Some(MASTER_KEY) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {"message": "Invalid master key", "type": "auth_error", "param": null, "code": "401"}})),
        )
            .into_response();
    }
    let token = {
        let mut g = fake.inner.lock().unwrap();
        g.seq += 1;
        let s = hex64(90_000 + g.seq);
        g.sessions.push(s.clone());
        s
    };
    let cookie = session::set_cookie(&token, 86_400, false);
    if login.is_some_and(|l| l.from_form) {
        (
            StatusCode::SEE_OTHER,
            [
                (header::SET_COOKIE, cookie),
                (header::LOCATION, "/ui/".into()),
            ],
        )
            .into_response()
    } else {
        ([(header::SET_COOKIE, cookie)], Json(json!({"ok": true}))).into_response()
    }
}

async fn logout(State(fake): State<Fake>, h: HeaderMap) -> Response {
    if let Some(s) = session::from_headers(&h) {
        fake.inner.lock().unwrap().sessions.retain(|x| x != s);
    }
    (
        [(header::SET_COOKIE, session::clear_cookie(false))],
        Json(json!({"ok": true})),
    )
        .into_response()
}

async fn session(State(fake): State<Fake>, h: HeaderMap) -> Response {
    if authed(&fake, &h) {
        Json(json!({"ok": true})).into_response()
    } else {
        unauthorized()
    }
}

async fn key_list(
    State(fake): State<Fake>,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !authed(&fake, &h) {
        return unauthorized();
    }
    assert_eq!(
        q.get("return_full_object").map(String::as_str),
        Some("true")
    );
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let size: usize = q.get("size").and_then(|p| p.parse().ok()).unwrap_or(10);
    let g = fake.inner.lock().unwrap();
    let total = g.keys.len();
    let keys: Vec<Value> = g
        .keys
        .iter()
        .skip((page - 1) * size)
        .take(size)
        .cloned()
        .collect();
    Json(json!({"keys": keys, "total_count": total, "current_page": page, "total_pages": total.div_ceil(size)})).into_response()
}

async fn key_generate(State(fake): State<Fake>, h: HeaderMap, Json(b): Json<Value>) -> Response {
    if !authed(&fake, &h) {
        return unauthorized();
    }
    let now = Utc::now();
    let mut g = fake.inner.lock().unwrap();
    g.seq += 1;
    let plaintext = format!("sk-{}", &hex64(50_000 + g.seq)[..22]);
    let token = hex64(60_000 + g.seq);
    let expires = b["duration"]
        .as_str()
        .and_then(|d| d.strip_suffix('d'))
        .and_then(|d| d.parse::<i64>().ok())
        .map(|d| (now + Span::days(d)).to_rfc3339());
    let row = json!({
        "token": token, "key_name": format!("sk-...{}", &plaintext[plaintext.len() - 4..]),
        "key_alias": b["key_alias"], "spend": 0.0, "max_budget": b["max_budget"],
        "budget_duration": b["budget_duration"], "budget_reset_at": null, "expires": expires,
        "models": b.get("models").cloned().unwrap_or(json!([])), "rpm_limit": b["rpm_limit"],
        "tpm_limit": b["tpm_limit"], "max_parallel_requests": null, "blocked": null,
        "user_id": null, "team_id": null, "created_at": now.to_rfc3339(),
    });
    g.keys.insert(0, row.clone());
    g.generated.push(plaintext.clone());
    let mut resp = row;
    resp["key"] = json!(plaintext);
    resp["token_id"] = resp["token"].take();
    Json(resp).into_response()
}

async fn key_block(State(fake): State<Fake>, h: HeaderMap, Json(b): Json<Value>) -> Response {
    set_blocked(fake, h, b, true)
}
async fn key_unblock(State(fake): State<Fake>, h: HeaderMap, Json(b): Json<Value>) -> Response {
    set_blocked(fake, h, b, false)
}
fn set_blocked(fake: Fake, h: HeaderMap, b: Value, blocked: bool) -> Response {
    if !authed(&fake, &h) {
        return unauthorized();
    }
    let mut g = fake.inner.lock().unwrap();
    match g.keys.iter_mut().find(|k| k["token"] == b["key"]) {
        Some(k) => {
            k["blocked"] = json!(blocked);
            Json(k.clone()).into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"message": "Key not found", "type": "not_found", "param": "key", "code": "404"}})),
        )
            .into_response(),
    }
}

async fn key_delete(State(fake): State<Fake>, h: HeaderMap, Json(b): Json<Value>) -> Response {
    if !authed(&fake, &h) {
        return unauthorized();
    }
    let gone: Vec<Value> = b["keys"].as_array().cloned().unwrap_or_default();
    fake.inner
        .lock()
        .unwrap()
        .keys
        .retain(|k| !gone.contains(&k["token"]));
    Json(json!({"deleted_keys": gone})).into_response()
}

fn day_of(row: &Value) -> NaiveDate {
    DateTime::parse_from_rfc3339(row["startTime"].as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
        .date_naive()
}

fn date_param(q: &HashMap<String, String>, name: &str) -> Option<NaiveDate> {
    q.get(name)
        .filter(|v| !v.is_empty())
        .map(|v| NaiveDate::parse_from_str(v, "%Y-%m-%d").unwrap())
}

async fn spend_logs(
    State(fake): State<Fake>,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !authed(&fake, &h) {
        return unauthorized();
    }
    let (start, end) = (date_param(&q, "start_date"), date_param(&q, "end_date"));
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let size: usize = q
        .get("page_size")
        .and_then(|p| p.parse().ok())
        .unwrap_or(50);
    let g = fake.inner.lock().unwrap();
    let rows: Vec<Value> = g
        .logs
        .iter()
        .filter(|r| q.get("api_key").is_none_or(|k| r["api_key"] == *k))
        .filter(|r| q.get("user_id").is_none_or(|u| r["user"] == *u))
        .filter(|r| q.get("request_id").is_none_or(|id| r["request_id"] == *id))
        .filter(|r| start.is_none_or(|s| day_of(r) >= s) && end.is_none_or(|e| day_of(r) <= e))
        .skip((page - 1) * size)
        .take(size)
        .cloned()
        .collect();
    Json(Value::Array(rows)).into_response()
}

async fn spend_report(
    State(fake): State<Fake>,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !authed(&fake, &h) {
        return unauthorized();
    }
    let (Some(start), Some(end)) = (date_param(&q, "start_date"), date_param(&q, "end_date"))
    else {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": {"message": "start_date and end_date are required", "type": "bad_request", "param": null, "code": "400"}}))).into_response();
    };
    let by = q.get("group_by").map(String::as_str).unwrap_or("key");
    let g = fake.inner.lock().unwrap();
    // Money adds up in nano-dollars, as the real ledger does, and converts once at the end.
    let mut agg: HashMap<(NaiveDate, Value), (i64, u64, u64)> = HashMap::new();
    for r in &g.logs {
        let d = day_of(r);
        if d < start || d > end {
            continue;
        }
        let group = match by {
            "model" => r["model_group"].clone(),
            "user" => r["user"].clone(),
            _ => r["metadata"]["user_api_key_alias"].clone(),
        };
        let e = agg.entry((d, group)).or_default();
        e.0 += (r["spend"].as_f64().unwrap() * 1e9).round() as i64;
        e.1 += 1;
        e.2 += r["total_tokens"].as_u64().unwrap();
    }
    let rows: Vec<Value> = agg
        .into_iter()
        .map(|((d, group), (nanos, n, tok))| json!({"date": d.to_string(), "group": group, "spend": nanos as f64 / 1e9, "requests": n, "total_tokens": tok}))
        .collect();
    Json(Value::Array(rows)).into_response()
}

fn app(fake: Fake) -> Router {
    Router::new()
        .merge(idlehands_dashboard::router())
        .route("/ui/login", post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/session", get(session))
        .route("/key/list", get(key_list))
        .route("/key/generate", post(key_generate))
        .route("/key/block", post(key_block))
        .route("/key/unblock", post(key_unblock))
        .route("/key/delete", post(key_delete))
        .route("/spend/logs", get(spend_logs))
        .route("/global/spend/report", get(spend_report))
        .with_state(fake)
}

use idlehands_testkit::browser::{artifacts_dir, prerequisites, run_script};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium_logs_in_charts_spend_manages_keys_and_shows_request_detail()
{
    // Fails at once, before the gateway starts, when the browser is missing.
    prerequisites();
    let fake = Fake::default();
    *fake.inner.lock().unwrap() = seed(Utc::now());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(axum::serve(listener, app(fake.clone())).into_future());

    let shot = artifacts_dir().join("dashboard.png");
    let _ = std::fs::remove_file(&shot);

    let stdout = run_script("dashboard.mjs", &base, MASTER_KEY, &[], "DASHBOARD-E2E OK").await;
    server.abort();

    // The page's actions reached the API: what the browser did is what the gateway holds now.
    let g = fake.inner.lock().unwrap();
    let by_alias = |a: &str| g.keys.iter().find(|k| k["key_alias"] == a).cloned();
    assert_eq!(by_alias("ci-runner").unwrap()["blocked"], json!(true));
    assert!(
        by_alias("legacy-batch").is_none(),
        "deleted key still listed"
    );
    let created = by_alias("e2e-created").expect("key created through the form");
    assert_eq!(created["max_budget"].as_f64(), Some(25.0));
    assert_eq!(created["budget_duration"], json!("30d"));
    assert_eq!(created["models"], json!(["gpt-4o-mini", "claude-sonnet-4"]));
    assert_eq!(created["rpm_limit"], json!(100));
    // The plaintext shown in the dialog is the one the gateway returned, and only once.
    let plaintext = g.generated.last().unwrap();
    let shown: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("created-key: "))
        .collect();
    assert_eq!(shown, vec![plaintext.as_str()]);
    assert!(
        g.sessions.is_empty(),
        "sign-out must end the session server side"
    );

    let png = std::fs::read(&shot).expect("screenshot artifact written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 20_000);
}
