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
