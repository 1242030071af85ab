//! Running `idlehands proxy` as a child process: start it on a free port, read its start-up
//! lines, stop it with SIGTERM. Shared by the CLI test files that need a real process.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `idlehands` with none of the environment variables that would point the gateway
/// elsewhere (master key, database, Redis, port, host), its state in `state_dir`.
pub fn gateway_cmd(state_dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_idlehands"));
    c.env_remove("LITELLM_MASTER_KEY")
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("REDIS_HOST")
        .env_remove("PORT")
        .env_remove("HOST")
        .env("IDLEHANDS_STATE_DIR", state_dir);
    c
}

/// An HTTP client for the gateway on loopback (no proxy from the environment).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// Sends `r` and returns the status and the JSON body (`null` when it is not JSON).
pub async fn json_of(r: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

/// Starts the gateway on 127.0.0.1 and a free port; returns it, its base URL (from the
/// "listening on" line) and the lines it printed before that line.
pub fn spawn(mut c: Command) -> (Child, String, Vec<String>) {
    let mut child = c
        .args(["--host", "127.0.0.1", "--port", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut before = Vec::new();
    let line = loop {
        let l = lines
            .next()
            .unwrap_or_else(|| panic!("the gateway exited before listening: {before:?}"))
            .unwrap();
        if l.contains("listening on ") {
            break l;
        }
        before.push(l);
    };
    let url = line
        .split("listening on ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, url, before)
}

/// Sends SIGTERM and returns the exit code once the process has ended.
pub fn terminate(child: &mut Child) -> i32 {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    for _ in 0..600 {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("the gateway did not stop within 30s of SIGTERM");
}

/// An upstream whose next answer streams for about 40 s (400 chunks, one every 100 ms), and
/// the config's `model_list` entry `slow` on it (1e-6 USD per input token, 2e-6 per output
/// token): a call still running when a test stops or kills the gateway.
pub async fn slow_upstream() -> (idlehands_testkit::FakeOpenAi, String) {
    let up = idlehands_testkit::FakeOpenAi::start().await;
    up.push(
        idlehands_testkit::Reply::text("tick ".repeat(400))
            .with_chunk_chars(5)
            .with_chunk_delay(Duration::from_millis(100)),
    );
    let model = up.priced_entry("slow");
    (up, model)
}

/// Starts a streamed call of the `slow` model ([`slow_upstream`]) on the gateway at `url` and
/// reads it until `ticks` chunks of the answer have come: the call is then surely in flight.
/// Gives back the response, to read on, and what was read.
pub async fn slow_stream(url: &str, key: &str, ticks: usize) -> (reqwest::Response, String) {
    let mut resp = http()
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&serde_json::json!({"model": "slow", "stream": true,
                      "messages": [{"role": "user", "content": "count"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut seen = String::new();
    while seen.matches("tick").count() < ticks {
        seen.push_str(&String::from_utf8_lossy(
            &resp.chunk().await.unwrap().unwrap(),
        ));
    }
    (resp, seen)
}
