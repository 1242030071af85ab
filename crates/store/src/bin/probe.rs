//! Durability probe for the tests: writes spend-log rows through a [`SpendWriter`] one every few
//! milliseconds and prints `queued <request_id> <unix_ms>` after each. On SIGTERM or SIGINT it
//! shuts the writer down gracefully and prints `stopped`. Usage:
//! `idlehands-store-probe <db url or path> <flush interval ms> [postgres schema]`.

use std::io::Write;
use std::time::Duration;

use chrono::Utc;
use idlehands_store::{SpendLogRow, SpendWriter, Store, StoreOptions, WriterConfig};
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(url), Some(flush_ms)) = (args.get(1), args.get(2).and_then(|s| s.parse().ok()))
    else {
        eprintln!("usage: idlehands-store-probe <db> <flush_ms>");
        return std::process::ExitCode::from(2);
    };
    let mut opts = StoreOptions::new(url.as_str());
    opts.pg_schema = args.get(3).cloned();
    let store = match Store::open_with(opts).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("open failed: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let writer = SpendWriter::start(
        store,
        WriterConfig {
            flush_interval: Duration::from_millis(flush_ms),
            ..WriterConfig::default()
        },
    );
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::process::ExitCode::from(1);
    };
    let mut out = std::io::stdout().lock();
    let mut i: u64 = 0;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = tokio::time::sleep(Duration::from_millis(2)) => {
                let now = Utc::now();
                let row = SpendLogRow {
                    request_id: format!("probe-{i}"),
                    call_type: "acompletion".to_owned(),
                    model: "probe".to_owned(),
                    start_time: now,
                    end_time: now,
                    status: "success".to_owned(),
                    ..SpendLogRow::default()
                };
                writer.log(row).await;
                let _ = writeln!(out, "queued probe-{i} {}", now.timestamp_millis());
                let _ = out.flush();
                i += 1;
            }
        }
    }
    let code = match writer.shutdown().await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("shutdown failed: {e}");
            1
        }
    };
    let _ = writeln!(out, "stopped");
    let _ = out.flush();
    std::process::ExitCode::from(code)
}
