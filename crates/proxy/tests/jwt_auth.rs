#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! LiteLLM's JWT auth (`general_settings.enable_jwt_auth`) against an identity provider served
//! by Python's own HTTP stack (`fixtures/jwt/idp.py`), with tokens signed by test keys
//! (RS256, ES256): a team's token calls as the team (its models, budget, routes; the row names
//! the team, the user and no key; spend the rows' sum across a restart) on SQLite and
//! Postgres; the admin scope; what a bad token gets; the key set's caching, rotation, OIDC
//! discovery and the stale copy while the provider is down.

mod store_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use idlehands_testkit::child_server::ChildServer;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use store_support::{
    Answer, Backend, MASTER, Place, Proxy, cost_of, error_of, get, post, send, spend_rows,
    start_with,
};
use tokio::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name)
}

fn jwk(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(&format!("{name}.jwk.json"))).unwrap())
        .unwrap()
}

/// The identity provider: `idp.py` serving a key set the test rewrites.
struct Idp {
    dir: tempfile::TempDir,
    server: ChildServer,
}

impl Idp {
    async fn start(keys: &[&str]) -> Idp {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("python3");
        cmd.arg(fixture("idp.py")).arg(dir.path());
        let server = ChildServer::start(cmd, "python3 (the identity provider)").await;
        let idp = Idp { dir, server };
        idp.publish(keys);
        idp
    }

    fn publish(&self, keys: &[&str]) {
        let set = json!({"keys": keys.iter().map(|k| jwk(k)).collect::<Vec<_>>()});
        std::fs::write(self.dir.path().join("jwks.json"), set.to_string()).unwrap();
    }

    fn set_down(&self, down: bool) {
        let flag = self.dir.path().join("down");
        if down {
            std::fs::write(flag, "").unwrap();
        } else {
            let _ = std::fs::remove_file(flag);
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.origin())
    }

    async fn fetches(&self) -> u64 {
        let a = send(store_support::client().get(self.url("/fetches"))).await;
        a.body["fetches"].as_u64().unwrap()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token signed with the fixture key `key` (`rsa1`, `rsa2`: RS256; `ec1`: ES256), naming
/// `kid` in its header.
fn token(key: &str, kid: Option<&str>, claims: Value) -> String {
    let pem = std::fs::read(fixture(&format!("{key}.pem"))).unwrap();
    let (alg, enc) = if key.starts_with("rsa") {
        (Algorithm::RS256, EncodingKey::from_rsa_pem(&pem).unwrap())
    } else {
        (Algorithm::ES256, EncodingKey::from_ec_pem(&pem).unwrap())
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, &claims, &enc).unwrap()
}

/// Claims for `team` and `sub`, valid for ten minutes.
fn claims(team: Option<&str>, sub: Option<&str>) -> Value {
    let mut c = json!({"exp": now() + 600, "iat": now(), "aud": "idlehands-gw"});
    if let Some(t) = team {
        c["groups"] = json!([t, "other-group"]);
    }
    if let Some(s) = sub {
        c["sub"] = json!(s);
    }
    c
}

const JWT_YAML: &str = "  enable_jwt_auth: true
  litellm_jwtauth:
    team_id_jwt_field: groups
    user_id_jwt_field: sub
    user_id_upsert: true
    end_user_id_jwt_field: customer
";

async fn start_gw(place: &Place, extra: &str, key_url: &str) -> Proxy {
    start_gw_with(place, &format!("{JWT_YAML}{extra}"), key_url).await
}

/// The gateway with `general_settings` lines `jwt_yaml` (after the master key).
async fn start_gw_with(place: &Place, jwt_yaml: &str, key_url: &str) -> Proxy {
    let yaml = store_support::yaml(jwt_yaml);
    let env = [
        ("JWT_PUBLIC_KEY_URL", key_url.to_owned()),
        ("JWT_AUDIENCE", "idlehands-gw".to_owned()),
    ];
    let cfg = idlehands_proxy::config::ProxyConfig::from_yaml(&yaml, "config.yaml", &|k: &str| {
        env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    })
    .expect("config loads");
    let s = store_support::settings(&cfg, place);
    start_with(cfg, s).await
}

async fn chat(p: &Proxy, bearer: &str, model: &str, n: u32) -> Answer {
    let body = json!({"model": model, "max_tokens": 50,
                      "messages": [{"role": "user", "content": format!("Say hi {n}")}]});
    send(
        store_support::client()
            .post(p.url("/v1/chat/completions"))
            .bearer_auth(bearer)
            .json(&body),
    )
    .await
}

async fn team_spend(p: &Proxy, team: &str) -> f64 {
    let a = get(p, &format!("/team/info?team_id={team}"), MASTER).await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["team_info"]["spend"].as_f64().unwrap()
}

/// A team's token calls as the team: its models, its budget, its routes; the user it names is
/// created (`user_id_upsert`); the rows name the team, user and end user and no key, and the
/// team's stored spend is their sum, across a restart.
async fn a_team_token_calls_as_its_team(b: Backend) {
    let place = Place::new(b);
    let idp = Idp::start(&["rsa1", "ec1"]).await;
    let p = start_gw(&place, "", &idp.url("/jwks.json")).await;
    let team = post(
        &p,
        "/team/new",
        MASTER,
        json!({"team_id": "t-jwt", "models": ["mocky"]}),
    )
    .await;
    assert_eq!(team.status, 200, "{}", team.body);

    let rs = token("rsa1", Some("rsa-1"), claims(Some("t-jwt"), Some("alice")));
    let first = chat(&p, &rs, "mocky", 1).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert!(first.headers.get("x-litellm-key-spend").is_none());
    let mut es_claims = claims(Some("t-jwt"), Some("alice"));
    es_claims["customer"] = json!("cust-9");
    let es = token("ec1", Some("ec-1"), es_claims);
    let second = chat(&p, &es, "mocky", 2).await;
    assert_eq!(second.status, 200, "{}", second.body);

    let rows = spend_rows(&p, "", 2).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    for r in &rows {
        assert_eq!(r["team_id"], "t-jwt", "{r}");
        assert_eq!(r["user"], "alice", "{r}");
        assert_eq!(r["api_key"], "", "{r}");
    }
    assert!(rows.iter().any(|r| r["end_user"] == "cust-9"), "{rows:?}");
    let spent = cost_of(&first) + cost_of(&second);
    assert!(store_support::close(team_spend(&p, "t-jwt").await, spent));
    let user = get(&p, "/user/info?user_id=alice", MASTER).await;
    assert_eq!(user.status, 200, "the upserted user: {}", user.body);

    // The team's models bound its tokens.
    let other = chat(&p, &rs, "other", 3).await;
    assert!(
        other.status == 401 || other.status == 403,
        "{} {}",
        other.status,
        other.body
    );
    // Its routes are team_allowed_routes (LiteLLM's default: the model APIs and info).
    let keygen = post(&p, "/key/generate", &rs, json!({})).await;
    assert_eq!(keygen.status, 403, "{}", keygen.body);
    let (_, msg) = error_of(&keygen);
    assert!(
        msg.starts_with("Team not allowed to access this route. Route=/key/generate"),
        "{msg}"
    );
    let models = get(&p, "/v1/models", &rs).await;
    assert_eq!(models.status, 200, "{}", models.body);

    // The team's budget holds its tokens' calls.
    let upd = post(
        &p,
        "/team/update",
        MASTER,
        json!({"team_id": "t-jwt", "max_budget": spent / 2.0}),
    )
    .await;
    assert_eq!(upd.status, 200, "{}", upd.body);
    let refused = chat(&p, &rs, "mocky", 4).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    let (kind, msg) = error_of(&refused);
    assert_eq!(kind, "budget_exceeded", "{msg}");
    assert!(msg.contains("Team=t-jwt"), "{msg}");

    // Kept across a restart: the stored spend still refuses.
    p.stop().await;
    let p = start_gw(&place, "", &idp.url("/jwks.json")).await;
    assert!(store_support::close(team_spend(&p, "t-jwt").await, spent));
    assert_eq!(chat(&p, &rs, "mocky", 5).await.status, 422);
    p.stop().await;
    place.cleanup().await;
}

/// A token naming only a user is that user's (its budget, its row); a missing team is
/// LiteLLM's 404; without `user_id_upsert` a missing user is refused.
async fn user_tokens_and_missing_teams_and_users(b: Backend) {
    let place = Place::new(b);
    let idp = Idp::start(&["rsa1"]).await;
    let p = start_gw(&place, "", &idp.url("/jwks.json")).await;
    let bob = post(
        &p,
        "/user/new",
        MASTER,
        json!({"user_id": "bob", "auto_create_key": false, "max_budget": 0.00001}),
    )
    .await;
    assert_eq!(bob.status, 200, "{}", bob.body);
    let t = token("rsa1", Some("rsa-1"), claims(None, Some("bob")));
    let first = chat(&p, &t, "mocky", 1).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let rows = spend_rows(&p, "", 1).await;
    assert_eq!(rows[0]["user"], "bob", "{}", rows[0]);
    assert_eq!(rows[0]["team_id"], Value::Null, "{}", rows[0]);
    let refused = chat(&p, &t, "mocky", 2).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(
        error_of(&refused).1.contains("User=bob"),
        "{}",
        refused.body
    );

    let ghost_team = token("rsa1", Some("rsa-1"), claims(Some("no-such-team"), None));
    let a = chat(&p, &ghost_team, "mocky", 3).await;
    assert_eq!(a.status, 404, "{}", a.body);
    assert!(
        error_of(&a)
            .1
            .contains("Team doesn't exist in db. Team=no-such-team."),
        "{}",
        a.body
    );
    p.stop().await;

    // Without user_id_upsert, an unknown user is LiteLLM's UserNotFoundError.
    let strict = JWT_YAML.replace("    user_id_upsert: true\n", "");
    let p = start_gw_with(&place, &strict, &idp.url("/jwks.json")).await;
    let nobody = token("rsa1", Some("rsa-1"), claims(None, Some("carol")));
    let a = chat(&p, &nobody, "mocky", 4).await;
    assert_eq!(a.status, 401, "{}", a.body);
    assert_eq!(
        error_of(&a).1,
        "Authentication Error, User doesn't exist in db. 'user_id'=carol. Create user via `/user/new` call."
    );
    p.stop().await;
    place.cleanup().await;
}

both_backends!(
    a_team_token_calls_as_its_team,
    user_tokens_and_missing_teams_and_users
);

/// What a token that does not verify gets, in LiteLLM's words; a virtual key still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_that_do_not_verify_are_refused() {
    let place = Place::new(Backend::Sqlite);
    let idp = Idp::start(&["rsa1", "ec1"]).await;
    let p = start_gw(&place, "", &idp.url("/jwks.json")).await;
    assert_eq!(
        post(&p, "/team/new", MASTER, json!({"team_id": "t1"}))
            .await
            .status,
        200
    );
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "expired",
            token("rsa1", Some("rsa-1"), {
                let mut c = claims(Some("t1"), None);
                c["exp"] = json!(now() - 120);
                c
            }),
            401,
            "Token Expired",
        ),
        (
            "signed by another key under this kid",
            token("rsa2", Some("rsa-1"), claims(Some("t1"), None)),
            401,
            "Authentication Error, Validation fails: InvalidSignature",
        ),
        (
            "unknown kid",
            token("rsa2", Some("rsa-2"), claims(Some("t1"), None)),
            401,
            "Authentication Error, No matching public key found. keys=['",
        ),
        (
            "another audience",
            token("rsa1", Some("rsa-1"), {
                let mut c = claims(Some("t1"), None);
                c["aud"] = json!("someone-else");
                c
            }),
            401,
            "Authentication Error, Validation fails: InvalidAudience",
        ),
        (
            "a symmetric algorithm",
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims(Some("t1"), None),
                &EncodingKey::from_secret(b"anyone-with-the-public-key"),
            )
            .unwrap(),
            401,
            "Authentication Error, Validation fails: the algorithm HS256 is not accepted",
        ),
        (
            "names nobody",
            token("rsa1", Some("rsa-1"), claims(None, None)),
            403,
            "Unmatched token passed in.",
        ),
        (
            "not a token",
            "aaa.bbb.ccc".to_owned(),
            401,
            "Authentication Error, Validation fails:",
        ),
    ];
    for (what, t, status, start) in cases {
        let a = chat(&p, &t, "mocky", 1).await;
        assert_eq!(a.status, status, "{what}: {}", a.body);
        let (_, msg) = error_of(&a);
        assert!(msg.starts_with(start), "{what}: {msg}");
        assert!(!msg.contains(&t), "{what}: the token is not echoed: {msg}");
    }
    // Keys and the master key are untouched by JWT auth.
    let (key, _) = store_support::generate(&p, json!({})).await;
    assert_eq!(chat(&p, &key, "mocky", 2).await.status, 200);
    assert_eq!(chat(&p, MASTER, "mocky", 3).await.status, 200);
    p.stop().await;
    place.cleanup().await;
}

/// The admin scope makes a proxy admin on `admin_allowed_routes` only; keys are fetched once
/// per TTL, a rotated key works within seconds, and the set is found through OIDC discovery.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_scope_caching_rotation_and_discovery() {
    let place = Place::new(Backend::Sqlite);
    let idp = Idp::start(&["rsa1"]).await;
    let p = start_gw(&place, "", &idp.url("/.well-known/openid-configuration")).await;
    let mut c = claims(None, Some("root-admin"));
    c["scope"] = json!("openid litellm_proxy_admin");
    let admin = token("rsa1", Some("rsa-1"), c);
    let made = post(&p, "/team/new", &admin, json!({"team_id": "t-admin"})).await;
    assert_eq!(made.status, 200, "{}", made.body);
    let key = post(&p, "/key/generate", &admin, json!({"team_id": "t-admin"})).await;
    assert_eq!(key.status, 200, "{}", key.body);
    let call = chat(&p, &admin, "mocky", 1).await;
    assert_eq!(call.status, 401, "{}", call.body);
    let (_, msg) = error_of(&call);
    assert!(
        msg.starts_with(
            "Authentication Error, Admin not allowed to access this route. Route=/v1/chat/completions, Allowed Routes=['management_routes'"
        ),
        "{msg}"
    );
    // One fetch served every call so far.
    for n in 0..5 {
        assert_eq!(
            get(&p, "/team/info?team_id=t-admin", &admin).await.status,
            200,
            "{n}"
        );
    }
    assert_eq!(idp.fetches().await, 1);

    // A key added at the provider works once the set is refetched for its unknown kid.
    idp.publish(&["rsa1", "rsa2"]);
    let mut c = claims(None, Some("root-admin"));
    c["scope"] = json!(["litellm_proxy_admin"]);
    let rotated = token("rsa2", Some("rsa-2"), c);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let a = get(&p, "/team/info?team_id=t-admin", &rotated).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(idp.fetches().await, 2);
    p.stop().await;
    place.cleanup().await;
}

/// A provider that cannot be reached: the last copy of its keys serves for
/// `public_key_stale_ttl` after `public_key_ttl`; with no stale window, LiteLLM's 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_provider_falls_back_to_the_last_copy_or_503() {
    let place = Place::new(Backend::Sqlite);
    let idp = Idp::start(&["rsa1"]).await;
    let ttl = "    public_key_ttl: 1\n";
    let stale = start_gw(&place, ttl, &idp.url("/jwks.json")).await;
    assert_eq!(
        post(&stale, "/team/new", MASTER, json!({"team_id": "t1"}))
            .await
            .status,
        200
    );
    let t = token("rsa1", Some("rsa-1"), claims(Some("t1"), None));
    assert_eq!(chat(&stale, &t, "mocky", 1).await.status, 200);
    idp.set_down(true);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let a = chat(&stale, &t, "mocky", 2).await;
    assert_eq!(a.status, 200, "the stale copy serves: {}", a.body);
    stale.stop().await;

    let closed = start_gw(
        &place,
        &format!("{ttl}    public_key_stale_ttl: 0\n"),
        &idp.url("/jwks.json"),
    )
    .await;
    let a = chat(&closed, &t, "mocky", 3).await;
    assert_eq!(a.status, 503, "{}", a.body);
    let (kind, msg) = error_of(&a);
    assert_eq!(kind, "auth_provider_unavailable");
    assert!(
        msg.starts_with(
            "Service Unavailable, the identity provider's JWKS endpoint is temporarily unreachable"
        ),
        "{msg}"
    );
    idp.set_down(false);
    closed.stop().await;
    place.cleanup().await;
}

/// `user_email_jwt_field` names the user when the token has no user id (a created user gets
/// the email), and `user_allowed_email_domain` refuses other domains in LiteLLM's words.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn email_claims_name_the_user_within_the_allowed_domain() {
    let place = Place::new(Backend::Sqlite);
    let idp = Idp::start(&["rsa1"]).await;
    let jwt_yaml = "  enable_jwt_auth: true
  litellm_jwtauth:
    user_email_jwt_field: email
    user_allowed_email_domain: corp.example
    user_id_upsert: true
";
    let p = start_gw_with(&place, jwt_yaml, &idp.url("/jwks.json")).await;
    let with_email = |email: Option<&str>| {
        let mut c = claims(None, None);
        if let Some(e) = email {
            c["email"] = json!(e);
        }
        token("rsa1", Some("rsa-1"), c)
    };
    let ok = chat(&p, &with_email(Some("dana@corp.example")), "mocky", 1).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let rows = spend_rows(&p, "", 1).await;
    assert_eq!(rows[0]["user"], "dana@corp.example", "{}", rows[0]);
    let user = get(&p, "/user/info?user_id=dana@corp.example", MASTER).await;
    assert_eq!(user.status, 200, "{}", user.body);
    assert_eq!(
        user.body["user_info"]["user_email"], "dana@corp.example",
        "{}",
        user.body
    );

    for (email, shown) in [
        (Some("eve@corp.example.evil"), "eve@corp.example.evil"),
        (None, "None"),
    ] {
        let a = chat(&p, &with_email(email), "mocky", 2).await;
        assert_eq!(a.status, 403, "{}", a.body);
        assert_eq!(
            error_of(&a).1,
            format!("Email domain not allowed. User email: {shown}. Allowed domain: corp.example")
        );
    }
    p.stop().await;
    place.cleanup().await;
}

/// Two instances on one Postgres and Redis: a team token's calls on either are held by the
/// team's one budget (the shared limiter), and each row, whichever instance wrote it, names
/// the team and no key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fleet_holds_a_team_token_by_one_budget() {
    let place = Place::new(Backend::Postgres);
    let idp = Idp::start(&["rsa1"]).await;
    let prefix = format!("j{}:", uuid::Uuid::new_v4().simple());
    let fleet_yaml = format!(
        "{JWT_YAML}  redis_key_prefix: \"{prefix}\"\nrouter_settings:\n  redis_url: {}\n",
        store_support::redis_url()
    );
    let a = start_gw_with(&place, &fleet_yaml, &idp.url("/jwks.json")).await;
    let b = start_gw_with(&place, &fleet_yaml, &idp.url("/jwks.json")).await;
    let team = post(
        &a,
        "/team/new",
        MASTER,
        json!({"team_id": "t-fleet", "max_budget": 0.00001}),
    )
    .await;
    assert_eq!(team.status, 200, "{}", team.body);
    let t = token("rsa1", Some("rsa-1"), claims(Some("t-fleet"), Some("fay")));
    let first = chat(&a, &t, "mocky", 1).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let on_b = chat(&b, &t, "mocky", 2).await;
    assert_eq!(on_b.status, 422, "{}", on_b.body);
    assert!(error_of(&on_b).1.contains("Team=t-fleet"), "{}", on_b.body);
    let rows = spend_rows(&a, "", 2).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    for r in &rows {
        assert_eq!(r["api_key"], "", "{r}");
        assert_eq!(r["team_id"], "t-fleet", "{r}");
    }
    assert!(store_support::close(
        team_spend(&b, "t-fleet").await,
        cost_of(&first)
    ));
    a.stop().await;
    b.stop().await;
    place.cleanup().await;
}
