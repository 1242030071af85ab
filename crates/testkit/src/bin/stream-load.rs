//! The load client of `bench/streams.sh`: opens C concurrent streaming chat completions (one
//! connection each, spread over `--ramp-ms`), against the fake upstream's paced streams
//! (`fake-upstream --stream-every-ms`) directly or through a gateway, and checks that every
//! call answers 200 with every chunk in order and a closing `[DONE]`. Reports how late each
//! chunk arrived against the time the upstream scheduled it (p50/p99/max; run it once direct
//! and once through the gateway: the difference is what the gateway adds), the errors by kind,
//! and with `--pid` the peak RSS of that process while the streams ran.
//!
//! `stream-load --url http://127.0.0.1:18082/v1/chat/completions --concurrency C --expect N
//!  [--keys-file FILE | --key KEY] [--pid PID] [--ramp-ms MS] [--model NAME] [--label NAME]`
//!
//! Keys in the file (one a line) are used in turn. Prints a `RESULT` line for the bench script
//! and exits 1 when any stream failed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use http::{Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use idlehands_testkit::paced::{markers, unix_us};
use tokio::net::TcpStream;
use tokio::time::Instant;

struct Args {
    addr: SocketAddr,
    host: String,
    path: String,
    keys: Vec<String>,
    concurrency: usize,
    expect: u32,
    pid: Option<u32>,
    ramp: Duration,
    model: String,
    label: String,
}

fn fail(msg: &str) -> ! {
    eprintln!("stream-load: {msg}");
    std::process::exit(2);
}

fn args() -> Args {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let get = |flag: &str| {
        argv.iter().position(|a| a == flag).map(|i| {
            argv.get(i + 1)
                .cloned()
                .unwrap_or_else(|| fail(&format!("{flag} takes a value")))
        })
    };
    let num = |flag: &str, default: u64| -> u64 {
        get(flag).map_or(default, |v| {
            v.parse()
                .unwrap_or_else(|_| fail(&format!("{flag} takes a whole number, got {v:?}")))
        })
    };
    let url = get("--url").unwrap_or_else(|| fail("--url is required"));
    let uri: Uri = url
        .parse()
        .unwrap_or_else(|_| fail(&format!("--url {url:?} is not a URL")));
    if uri.scheme_str() != Some("http") {
        fail("--url must be http://host:port/path (plain HTTP on loopback)");
    }
    let host = uri.authority().map(|a| a.to_string()).unwrap_or_default();
    let addr: SocketAddr = host
        .parse()
        .unwrap_or_else(|_| fail(&format!("--url needs an IP:port, got {host:?}")));
    let mut keys = Vec::new();
    if let Some(path) = get("--keys-file") {
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| fail(&format!("--keys-file {path}: {e}")));
        keys.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from),
        );
        if keys.is_empty() {
            fail(&format!("--keys-file {path}: no keys in it"));
        }
    }
    if let Some(k) = get("--key") {
        keys.push(k);
    }
    let expect = num("--expect", 0);
    if expect == 0 {
        fail("--expect N (content chunks per stream) is required");
    }
    Args {
        addr,
        host,
        path: uri.path_and_query().map_or("/".into(), |p| p.to_string()),
        keys,
        concurrency: usize::try_from(num("--concurrency", 100))
            .unwrap_or(usize::MAX)
            .max(1),
        expect: u32::try_from(expect).unwrap_or(u32::MAX),
        pid: get("--pid").map(|p| {
            p.parse()
                .unwrap_or_else(|_| fail(&format!("--pid takes a process id, got {p:?}")))
        }),
        ramp: Duration::from_millis(num("--ramp-ms", 1000)),
        model: get("--model").unwrap_or_else(|| "bench-model".into()),
        label: get("--label").unwrap_or_else(|| "run".into()),
    }
}

/// One streaming call: the lateness of each chunk in µs, or what went wrong.
async fn one(
    addr: SocketAddr,
    host: String,
    path: String,
    key: Option<String>,
    body: Bytes,
    expect: u32,
) -> Result<Vec<u32>, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {}", e.kind()))?;
    let _ = tcp.set_nodelay(true);
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let mut req = Request::post(path)
        .header(header::HOST, host)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(k) = key {
        req = req.header(header::AUTHORIZATION, format!("Bearer {k}"));
    }
    let req = req
        .body(Full::new(body))
        .map_err(|e| format!("request: {e}"))?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = resp.status();
    let mut body = resp.into_body();
    if status != http::StatusCode::OK {
        let text = body
            .collect()
            .await
            .map(|b| {
                String::from_utf8_lossy(&b.to_bytes())
                    .chars()
                    .take(200)
                    .collect::<String>()
            })
            .unwrap_or_default();
        return Err(format!("status {}: {text}", status.as_u16()));
    }
    let mut buf = String::new();
    let mut next = 1u32;
    let mut late = Vec::with_capacity(expect as usize);
    let mut done = false;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("body after {} chunks: {e}", next - 1))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let now = unix_us(SystemTime::now());
        buf.push_str(&String::from_utf8_lossy(&data).replace('\r', ""));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            if event.contains("data: [DONE]") {
                done = true;
            }
            for (seq, at) in markers(&event) {
                if seq != next {
                    return Err(format!("chunk {seq} came where {next} was due"));
                }
                next += 1;
                late.push(u32::try_from(now.saturating_sub(at)).unwrap_or(u32::MAX));
            }
        }
    }
    if next - 1 != expect {
        return Err(format!("{} of {expect} chunks", next - 1));
    }
    if !done {
        return Err("no [DONE]".into());
    }
    Ok(late)
}

fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn pct(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p / 100.0).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let a = args();
    let body = Bytes::from(
        serde_json::json!({
            "model": a.model, "stream": true,
            "messages": [{"role": "user", "content": "Say hello"}],
        })
        .to_string(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = a.pid.map(|pid| {
        let (stop, peak) = (stop.clone(), peak.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Some(kb) = rss_kb(pid) {
                    peak.fetch_max(kb, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    });
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(a.concurrency);
    for i in 0..a.concurrency {
        // Spread the connects so the accept queue is not the thing measured.
        let at = a.ramp.mul_f64(i as f64 / a.concurrency as f64);
        tokio::time::sleep_until(start + at).await;
        let key = (!a.keys.is_empty()).then(|| a.keys[i % a.keys.len()].clone());
        tasks.push(tokio::spawn(one(
            a.addr,
            a.host.clone(),
            a.path.clone(),
            key,
            body.clone(),
            a.expect,
        )));
    }
    let mut late: Vec<u32> = Vec::new();
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut ok = 0usize;
    for t in tasks {
        match t.await {
            Ok(Ok(l)) => {
                ok += 1;
                late.extend(l);
            }
            Ok(Err(e)) => {
                // Group by kind: the message without its numbers.
                let kind: String = e.chars().filter(|c| !c.is_ascii_digit()).collect();
                *errors.entry(kind).or_default() += 1;
            }
            Err(e) => *errors.entry(format!("task: {e}")).or_default() += 1,
        }
    }
    let wall = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    if let Some(s) = sampler {
        let _ = s.await;
    }
    late.sort_unstable();
    let failed: usize = errors.values().sum();
    for (kind, n) in &errors {
        eprintln!("stream-load [{}]: {n} x {kind}", a.label);
    }
    println!(
        "RESULT label={} streams={} ok={ok} errors={failed} chunks={} expected_chunks={} \
         p50_us={} p99_us={} max_us={} rss_peak_kb={} wall_s={wall:.1}",
        a.label,
        a.concurrency,
        late.len(),
        u64::from(a.expect) * a.concurrency as u64,
        pct(&late, 50.0),
        pct(&late, 99.0),
        late.last().copied().unwrap_or(0),
        peak.load(Ordering::Relaxed),
    );
    if failed > 0 {
        std::process::exit(1);
    }
}
