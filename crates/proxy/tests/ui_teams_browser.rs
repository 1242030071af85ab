#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The dashboard's Teams and Users pages in Debian's headless Chromium (playwright-core) against
//! the REAL gateway on a fresh SQLite file: a team and a user seeded through the API with spend
//! from real calls; the script reads their budgets, creates a team and a user, edits budgets
//! and blocks a team; afterwards the gateway's own API must agree with what the browser did.
//! Needs what `scripts/test.sh` installs: `chromium` and `npm ci` in
//! `crates/dashboard/tests/browser`.

mod store_support;

use std::time::Duration;

use serde_json::json;
use store_support::{Backend, MASTER, Place, config, get, post, settings, spend_rows, start_with};

use idlehands_testkit::browser::{artifacts_dir, prerequisites, run_script};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teams_and_users_pages_on_the_real_gateway_in_headless_chromium() {
    // Fails at once, before the gateway starts, when the browser is missing.
    prerequisites();
    let place = Place::new(Backend::Sqlite);
    let cfg = config(&store_support::yaml(""));
    let s = settings(&cfg, &place);
    let proxy = start_with(cfg, s).await;

    let a = post(
        &proxy,
        "/team/new",
        MASTER,
        json!({"team_id": "research", "team_alias": "Research", "max_budget": 10, "rpm_limit": 60, "models": ["mocky"]}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = post(
        &proxy,
        "/user/new",
        MASTER,
        json!({"user_id": "alice", "max_budget": 2, "teams": ["research"], "auto_create_key": false}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let (key, _) =
        store_support::generate(&proxy, json!({"team_id": "research", "user_id": "alice"})).await;
    let chat = post(
        &proxy,
        "/v1/chat/completions",
        &key,
        store_support::chat("mocky"),
    )
    .await;
    assert_eq!(chat.status, 200, "{}", chat.body);
    assert_eq!(spend_rows(&proxy, "", 1).await.len(), 1);
    // The pages read committed spend: wait until the team's shows.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while proxy
        .store
        .ledger
        .store()
        .get_budget("team:research")
        .await
        .unwrap()
        .unwrap()
        .spend
        == 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "team spend never committed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let shot = artifacts_dir().join("teams-page.png");
    let _ = std::fs::remove_file(&shot);
    let stdout = run_script(
        "teams-page.mjs",
        &proxy.base,
        MASTER,
        &[],
        "TEAMS-PAGE-E2E OK",
    )
    .await;

    // What the browser did is what the gateway holds now.
    let t = get(&proxy, "/team/info?team_id=browser-team", MASTER).await;
    assert_eq!(t.status, 200, "{}", t.body);
    let team = &t.body["team_info"];
    assert_eq!(team["team_alias"], "Browser Team");
    assert_eq!(team["models"], json!(["mocky"]));
    assert_eq!(team["max_budget"], 7.0);
    assert_eq!(team["rpm_limit"], 30);
    assert_eq!(team["members"], json!(["u-browser", "bob"]));
    let r = get(&proxy, "/team/info?team_id=research", MASTER).await;
    assert_eq!(r.body["team_info"]["blocked"], true);
    let blocked = post(
        &proxy,
        "/v1/chat/completions",
        &key,
        store_support::chat("mocky"),
    )
    .await;
    assert_eq!(blocked.status, 401, "{}", blocked.body);
    let u = get(&proxy, "/user/info?user_id=bob", MASTER).await;
    assert_eq!(u.status, 200, "{}", u.body);
    assert_eq!(u.body["user_info"]["user_role"], "proxy_admin_viewer");
    assert_eq!(u.body["user_info"]["max_budget"], 3.0);
    assert_eq!(u.body["user_info"]["user_email"], "bob@example.com");
    // The key the dialog showed is bob's, and acts with his role: it reads, it does not change.
    let shown: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("created-user-key: "))
        .collect();
    assert_eq!(shown.len(), 1);
    assert_eq!(get(&proxy, "/team/list", shown[0]).await.status, 200);
    assert_eq!(
        post(&proxy, "/team/new", shown[0], json!({"team_id": "nope"}))
            .await
            .status,
        403
    );

    let png = std::fs::read(&shot).expect("screenshot artifact written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 20_000);
    proxy.stop().await;
    place.cleanup().await;
}
