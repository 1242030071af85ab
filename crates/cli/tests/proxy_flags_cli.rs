#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! LiteLLM's `litellm` command-line flags on `idlehands proxy`: TLS from PEM files, the flags that
//! act, and the server-tuning flags that are accepted and named at start-up.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

mod proxy_process;
use proxy_process::{spawn, terminate};

const MASTER: &str = "sk-cli-flags-master-1";

fn config(dir: &Path) -> PathBuf {
    let path = dir.join("config.yaml");
    std::fs::write(
        &path,
        format!(
            "model_list:
  - model_name: mocky
    litellm_params:
      model: openai/mock-model
      mock_response: Hello over the wire
general_settings:
  master_key: {MASTER}
"
        ),
    )
    .unwrap();
    path
}

fn cmd(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_idlehands"));
    c.env_remove("LITELLM_MASTER_KEY")
        .env_remove("DATABASE_URL")
        .env_remove("SSL_KEYFILE_PATH")
        .env_remove("SSL_CERTFILE_PATH")
        .env_remove("PORT")
        .env_remove("HOST")
        .env("IDLEHANDS_STATE_DIR", dir)
        .args(["proxy", "--config"])
        .arg(config(dir));
    c
}

async fn chat(client: &reqwest::Client, url: &str) -> Value {
    let resp = client
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(MASTER)
        .json(&json!({"model": "mocky", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// A self-signed certificate for 127.0.0.1 and localhost, as PEM files; returns the
/// certificate's PEM for the client to trust.
fn certificate(dir: &Path) -> (PathBuf, PathBuf, String) {
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let pem = cert.cert.pem();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, &pem).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    (cert_path, key_path, pem)
}

#[tokio::test]
async fn ssl_flags_serve_https_with_the_given_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, pem) = certificate(dir.path());
    let mut c = cmd(dir.path());
    c.arg("--ssl_certfile_path")
        .arg(&cert)
        .arg("--ssl_keyfile_path")
        .arg(&key);
    let (mut child, url, _) = spawn(c);
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    let trusted = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let body = chat(&trusted, &url).await;
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Hello over the wire"
    );
    // Several calls on one TLS connection (keep-alive through the handshaken stream).
    for _ in 0..3 {
        chat(&trusted, &url).await;
    }

    // A client that does not trust the certificate is refused by its own TLS check...
    let untrusting = reqwest::Client::builder().no_proxy().build().unwrap();
    let err = untrusting
        .get(format!("{url}/health/liveliness"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    // ...and plain HTTP on the TLS port gets no HTTP answer, while the server keeps serving.
    let plain = url.replacen("https://", "http://", 1);
    let answer = untrusting
        .get(format!("{plain}/health/liveliness"))
        .send()
        .await;
    assert!(answer.is_err(), "{answer:?}");
    chat(&trusted, &url).await;
    assert_eq!(terminate(&mut child), 0);
}

/// `litellm_settings.ssl_verify` on a gateway whose provider is another gateway serving HTTPS
/// with a self-signed certificate: refused by default, trusted with `false` (named at
/// start-up) or with the certificate as the CA bundle; a bundle that cannot be read stops
/// start-up naming the setting and the file.
#[tokio::test]
async fn ssl_verify_decides_whether_an_https_provider_is_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = certificate(dir.path());
    let mut c = cmd(dir.path());
    c.arg("--ssl_certfile_path")
        .arg(&cert)
        .arg("--ssl_keyfile_path")
        .arg(&key);
    let (mut upstream, upstream_url, _) = spawn(c);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    for (setting, trusted) in [
        (String::new(), false),
        ("  ssl_verify: false\n".to_string(), true),
        (format!("  ssl_verify: {}\n", cert.display()), true),
    ] {
        let state = tempfile::tempdir().unwrap();
        let path = state.path().join("downstream.yaml");
        std::fs::write(
            &path,
            format!(
                "model_list:
  - model_name: via-https
    litellm_params:
      model: openai/mocky
      api_base: {upstream_url}/v1
      api_key: {MASTER}
router_settings:
  num_retries: 0
litellm_settings:
{setting}general_settings:
  master_key: {MASTER}
"
            ),
        )
        .unwrap();
        let mut d = proxy_process::gateway_cmd(state.path());
        d.args(["proxy", "--config"]).arg(&path);
        let (mut downstream, url, logged) = spawn(d);
        let resp = client
            .post(format!("{url}/v1/chat/completions"))
            .bearer_auth(MASTER)
            .json(&json!({"model": "via-https", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if trusted {
            assert_eq!(status, 200, "{setting}: {body}");
            assert_eq!(
                body["choices"][0]["message"]["content"],
                "Hello over the wire"
            );
        } else {
            assert_ne!(status, 200, "an untrusted certificate was accepted: {body}");
        }
        let warned = logged.iter().any(|l| l.contains("ssl_verify is off"));
        assert_eq!(warned, setting.contains("false"), "{logged:?}");
        assert_eq!(terminate(&mut downstream), 0);
    }

    let state = tempfile::tempdir().unwrap();
    let path = state.path().join("bad.yaml");
    std::fs::write(
        &path,
        "litellm_settings:\n  ssl_verify: /nonexistent/ca.pem\ngeneral_settings:\n  master_key: sk-bad-bundle-key-0001\n",
    )
    .unwrap();
    let out = proxy_process::gateway_cmd(state.path())
        .args(["proxy", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("litellm_settings.ssl_verify: /nonexistent/ca.pem: cannot read"),
        "{err}"
    );
    assert_eq!(terminate(&mut upstream), 0);
}

#[test]
fn a_bad_certificate_or_key_file_stops_start_up_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = certificate(dir.path());
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let missing = dir.path().join("missing.pem");
    for (cert_arg, key_arg, named, says) in [
        (&junk, &key, &junk, "no PEM"),
        (&cert, &missing, &missing, "cannot read"),
        (&cert, &junk, &junk, "no PEM"),
    ] {
        let out = cmd(dir.path())
            .args(["--host", "127.0.0.1", "--port", "0"])
            .arg("--ssl_certfile_path")
            .arg(cert_arg)
            .arg("--ssl_keyfile_path")
            .arg(key_arg)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains(&named.display().to_string()) && stderr.contains(says),
            "{stderr}"
        );
        assert!(!stderr.contains("BEGIN PRIVATE KEY"), "{stderr}");
    }
    // One of the pair alone is a usage error, not a plain-HTTP start.
    let out = cmd(dir.path())
        .args(["--host", "127.0.0.1", "--port", "0"])
        .arg("--ssl_certfile_path")
        .arg(&cert)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--ssl_keyfile_path"), "{stderr}");
}

#[tokio::test]
async fn litellm_server_flags_are_accepted_and_named_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cmd(dir.path());
    c.args([
        "--run_gunicorn",
        "--num_workers",
        "1",
        "--telemetry",
        "False",
        "--use_prisma_db_push",
        "--drop_params",
        "--keepalive_timeout",
        "30",
        "--limit_concurrency",
        "50",
    ]);
    let (mut child, url, before) = spawn(c);
    for flag in [
        "--run_gunicorn has no effect here",
        "--telemetry has no effect here",
        "--use_prisma_db_push has no effect here",
    ] {
        assert!(
            before.iter().any(|l| l.contains(flag)),
            "{flag}: {before:?}"
        );
    }
    // Flags that act are not named as having no effect.
    assert!(
        !before
            .iter()
            .any(|l| l.contains("--drop_params has no effect")
                || l.contains("--num_workers has no effect")
                || l.contains("--keepalive_timeout")
                || l.contains("--limit_concurrency")),
        "{before:?}"
    );
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    chat(&client, &url).await;
    assert_eq!(terminate(&mut child), 0);
}

#[test]
fn skip_server_startup_prepares_the_database_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keys.db");
    let out = cmd(dir.path())
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--skip_server_startup",
            "--db",
        ])
        .arg(&db)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("not serving"), "{stderr}");
    assert!(!stderr.contains("listening on"), "{stderr}");
    // The migrated store is there: its file (or write-ahead log) holds the spend-log table.
    let mut bytes = std::fs::read(&db).unwrap();
    bytes.extend(std::fs::read(dir.path().join("keys.db-wal")).unwrap_or_default());
    assert!(
        bytes
            .windows(b"idlehands_spend_logs".len())
            .any(|w| w == b"idlehands_spend_logs"),
        "the database file has no spend-log table"
    );
}
