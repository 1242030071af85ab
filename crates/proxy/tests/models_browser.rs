#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The dashboard's Models page in Debian's headless Chromium (playwright-core) against the REAL
//! gateway with `store_model_in_db` on a fresh SQLite file: the script lists the config's
//! models, adds two through the form (one with an upstream key), has a bad one refused and
//! deletes one; afterwards the gateway's own API must agree with what the browser did, and
//! the key typed into the form must be nowhere in its answers. Needs what `scripts/test.sh`
//! installs: `chromium` and `npm ci` in `crates/dashboard/tests/browser`.

mod store_support;

use idlehands_testkit::browser::{artifacts_dir, prerequisites, run_script};
use serde_json::Value;
use store_support::{Backend, MASTER, Place, get, start};

const UPSTREAM_KEY: &str = "sk-typed-into-the-browser-0001";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_page_on_the_real_gateway_in_headless_chromium() {
    // Fails at once, before the gateway starts, when the browser is missing.
    prerequisites();
    let place = Place::new(Backend::Sqlite);
    let proxy = start(&place, "  store_model_in_db: true\n").await;

    let shot = artifacts_dir().join("real-gateway-models.png");
    let _ = std::fs::remove_file(&shot);

    run_script(
        "models-page.mjs",
        &proxy.base,
        MASTER,
        &[("UPSTREAM_KEY", UPSTREAM_KEY)],
        "MODELS-PAGE-E2E OK",
    )
    .await;

    // What the browser did is what the gateway holds now.
    let info = get(&proxy, "/model/info", MASTER).await;
    assert_eq!(info.status, 200, "{}", info.body);
    assert!(!info.body.to_string().contains(UPSTREAM_KEY));
    let names: Vec<&str> = info.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["model_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["mocky", "other", "browser-kept"]);
    let kept: &Value = &info.body["data"][2];
    assert_eq!(kept["model_info"]["db_model"], true);
    assert_eq!(kept["litellm_params"]["model"], "openai/browser-kept-model");
    assert_eq!(kept["litellm_params"]["api_base"], "http://127.0.0.1:9/v1");
    assert_eq!(kept["litellm_params"]["rpm"], 5);
    assert_eq!(kept["model_info"]["input_cost_per_token"], 0.000003);
    assert_eq!(kept["model_info"]["output_cost_per_token"], 0.000015);

    let png = std::fs::read(&shot).expect("screenshot artifact written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    proxy.stop().await;
    place.cleanup().await;
}
