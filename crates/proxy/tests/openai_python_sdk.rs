#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The official OpenAI Python SDK against the gateway (scripts/test.sh installs `openai`).

mod common;

use std::path::Path;

use common::{KEY, start, two_models};
use idlehands_testkit::FakeOpenAi;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_python_sdk_works_against_the_gateway() {
    let up = FakeOpenAi::start().await;
    let gw = start(&two_models(&up.base_url())).await;
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/openai_sdk_check.py");
    let out = tokio::process::Command::new("python3")
        .arg(&script)
        .arg(gw.url("/v1"))
        .arg(KEY)
        .arg("mocky")
        .arg("gpt-4o")
        .output()
        .await
        .expect("python3 must be installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the SDK check failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    for line in [
        "ok plain mocky",
        "ok stream mocky",
        "ok plain gpt-4o",
        "ok stream gpt-4o",
        "ok completions mocky",
        "ok completions gpt-4o",
        "ok responses mocky",
        "ok responses gpt-4o",
        "ok AuthenticationError",
        "ok BadRequestError",
        "ALL OK",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    // The SDK's plain, raw and streamed chats, its two completions and its three responses
    // calls reached the fake upstream.
    assert_eq!(up.served(), 8);
    let paths: Vec<String> = up.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths.iter().filter(|p| *p == "/v1/completions").count(),
        2,
        "{paths:?}"
    );
}
