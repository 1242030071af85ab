//! What the dashboard's headless-browser tests need from the machine, checked in one place:
//! Debian's Chromium, node, and playwright-core installed in `crates/dashboard/tests/browser`.

use std::path::{Path, PathBuf};

/// The workspace's target dir (`CARGO_TARGET_DIR` when set); test artifacts go below it.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

/// `(chromium, browser_dir)`. Missing prerequisites fail the test; they are never a reason to
/// skip it.
///
/// # Panics
/// When Chromium, node or playwright-core is missing, naming each and how to install it.
pub fn prerequisites() -> (PathBuf, PathBuf) {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboard/tests/browser");
    let chromium = PathBuf::from(
        std::env::var("IDLEHANDS_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
    );
    let mut missing = Vec::new();
    if !chromium.exists() {
        missing.push(format!(
            "{} (Debian package `chromium`)",
            chromium.display()
        ));
    }
    if !browser_dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        missing.push(format!(
            "{}/node_modules/playwright-core (npm ci in that folder)",
            browser_dir.display()
        ));
    }
    if std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_err()
    {
        missing.push("node (Debian package `nodejs`)".into());
    }
    assert!(
        missing.is_empty(),
        "dashboard browser test prerequisites missing: {}. Run scripts/test.sh (it installs them).",
        missing.join("; ")
    );
    (chromium, browser_dir)
}

/// Where the browser scripts leave their screenshots (made if missing).
///
/// # Panics
/// When the folder cannot be made.
#[expect(clippy::expect_used)]
pub fn artifacts_dir() -> PathBuf {
    let dir = target_dir().join("ui-artifacts");
    std::fs::create_dir_all(&dir).expect("make the ui-artifacts folder");
    dir
}

/// Runs the browser script `script` (in the browser test folder) against `base`, signed in with
/// `password`, with `env` besides `CHROMIUM`, `DASHBOARD_ARTIFACTS` and `DASHBOARD_PASSWORD`;
/// its output is printed. Returns its stdout.
///
/// # Panics
/// When the prerequisites are missing, the script runs past 300 s (a liveness bound only: a
/// wedged browser must not hang CI), exits non-zero, or never prints `done`.
#[expect(clippy::expect_used)]
pub async fn run_script(
    script: &str,
    base: &str,
    password: &str,
    env: &[(&str, &str)],
    done: &str,
) -> String {
    let (chromium, browser_dir) = prerequisites();
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(browser_dir.join(script))
        .arg(base)
        .current_dir(&browser_dir)
        .env("CHROMIUM", &chromium)
        .env("DASHBOARD_ARTIFACTS", artifacts_dir())
        .env("DASHBOARD_PASSWORD", password)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().expect("spawn node");
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(300),
        child.wait_with_output(),
    )
    .await
    .expect("browser script did not finish within 300 s")
    .expect("wait for node");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("--- browser stdout ---\n{stdout}\n--- browser stderr ---\n{stderr}");
    assert!(out.status.success(), "browser script failed: {stderr}");
    assert!(stdout.contains(done), "script did not finish");
    stdout
}
