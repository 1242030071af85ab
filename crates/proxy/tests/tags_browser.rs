#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The dashboard's Tags page in Debian's headless Chromium (playwright-core) against the REAL
//! gateway on a fresh SQLite file: a tag passed in a call is listed as seen in calls; the
//! script makes two tags through the form (one with a budget and limits), has a taken name
//! refused and deletes one; afterwards the gateway's own API must agree with what the browser
//! did, and the budget made in the browser must hold the calls carrying the tag. Needs what
//! `scripts/test.sh` installs: `chromium` and `npm ci` in `crates/dashboard/tests/browser`.

mod store_support;

use idlehands_testkit::browser::{artifacts_dir, prerequisites, run_script};
use serde_json::json;
use store_support::{Backend, MASTER, Place, get, post, spend_rows, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_page_on_the_real_gateway_in_headless_chromium() {
    // Fails at once, before the gateway starts, when the browser is missing.
    prerequisites();
    let place = Place::new(Backend::Sqlite);
    let proxy = start(&place, "").await;
    let seen = post(
        &proxy,
        "/v1/chat/completions",
        MASTER,
        json!({"model": "mocky", "metadata": {"tags": ["seen-in-a-call"]},
               "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(seen.status, 200, "{}", seen.body);
    spend_rows(&proxy, "", 1).await;

    let shot = artifacts_dir().join("real-gateway-tags.png");
    let _ = std::fs::remove_file(&shot);

    run_script(
        "tags-page.mjs",
        &proxy.base,
        MASTER,
        &[],
        "TAGS-PAGE-E2E OK",
    )
    .await;

    // What the browser did is what the gateway holds now.
    let listed = get(&proxy, "/tag/list", MASTER).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let names: Vec<&str> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["browser-team", "seen-in-a-call"]);
    let team = &listed.body[0];
    assert_eq!(team["description"], "made in the browser");
    let budget = &team["litellm_budget_table"];
    assert_eq!(budget["max_budget"], 5.0);
    assert_eq!(budget["budget_duration"], "30d");
    assert_eq!(budget["rpm_limit"], 10);
    assert_eq!(budget["tpm_limit"], 5000);
    // ... and its 10 rpm holds: the eleventh call of the minute is refused.
    let tagged = json!({"model": "mocky", "metadata": {"tags": ["browser-team"]},
                        "messages": [{"role": "user", "content": "hi"}]});
    for _ in 0..10 {
        let a = post(&proxy, "/v1/chat/completions", MASTER, tagged.clone()).await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let over = post(&proxy, "/v1/chat/completions", MASTER, tagged).await;
    assert_eq!(over.status, 429, "{}", over.body);

    let png = std::fs::read(&shot).expect("screenshot artifact written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    proxy.stop().await;
    place.cleanup().await;
}
