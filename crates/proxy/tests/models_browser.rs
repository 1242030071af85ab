#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The dashboard's Models page in Debian's headless Chromium (playwright-core) against the REAL
//! gateway with `store_model_in_db` on a fresh SQLite file: the script lists the config's
//! models, adds two through the form (one with an upstream key), has a bad one refused and
//! deletes one; afterwards the gateway's own API must agree with what the browser did, and
//! the key typed into the form must be nowhere in its answers. Needs what `scripts/test.sh`
//! installs: `chromium` and `npm ci` in `crates/dashboard/tests/browser`.

mod store_support;

use std::process::Stdio;
use std::time::Duration;

use idlehands_testkit::browser::{prerequisites, target_dir};
use serde_json::Value;
use store_support::{Backend, MASTER, Place, get, start};

const UPSTREAM_KEY: &str = "sk-typed-into-the-browser-0001";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_page_on_the_real_gateway_in_headless_chromium() {
    let (chromium, browser_dir) = prerequisites();
    let place = Place::new(Backend::Sqlite);
    let proxy = start(&place, "  store_model_in_db: true\n").await;

    let artifacts = target_dir().join("ui-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("real-gateway-models.png");
    let _ = std::fs::remove_file(&shot);

    let child = tokio::process::Command::new("node")
        .arg(browser_dir.join("models-page.mjs"))
        .arg(&proxy.base)
        .current_dir(&browser_dir)
        .env("CHROMIUM", &chromium)
        .env("DASHBOARD_ARTIFACTS", &artifacts)
        .env("DASHBOARD_PASSWORD", MASTER)
        .env("UPSTREAM_KEY", UPSTREAM_KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn node");
    // Liveness bound only: a wedged browser must not hang CI.
    let out = tokio::time::timeout(Duration::from_secs(300), child.wait_with_output())
        .await
        .expect("browser script did not finish within 300 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("--- browser stdout ---\n{stdout}\n--- browser stderr ---\n{stderr}");
    assert!(out.status.success(), "browser script failed: {stderr}");
    assert!(
        stdout.contains("MODELS-PAGE-E2E OK"),
        "script did not finish"
    );

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
