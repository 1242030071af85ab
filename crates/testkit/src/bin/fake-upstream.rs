//! A standalone fake OpenAI-compatible upstream for `bench/`:
//! `fake-upstream [ADDR] [--flaky] [--junk N] [--absurd-usage] [--repeat-ids]` (default
//! 127.0.0.1:18080).
//! Request recording is off so memory stays flat under load. For `bench/soak.sh`: `--flaky`
//! makes every 10th answer a 500 and every 97th never come; `--junk N` makes every Nth a 200
//! whose body is not JSON; `--absurd-usage` reports `u64::MAX` tokens both ways in every answer;
//! `--repeat-ids` answers every call with the same response id, as llama.cpp and Ollama may.
//! For `bench/streams.sh`: `--stream-every-ms MS --stream-secs S` streams every streamed chat
//! completion as one content chunk every MS milliseconds for S seconds, each chunk stamped with
//! its sequence number and scheduled send time (`idlehands_testkit::paced`).

/// Flags followed by a value (which is then not the address).
const TAKES_VALUE: &[&str] = &["--junk", "--stream-every-ms", "--stream-secs"];

fn value(args: &[String], flag: &str) -> Option<u64> {
    let i = args.iter().position(|a| a == flag)?;
    match args.get(i + 1).map(|v| v.parse::<u64>()) {
        Some(Ok(n)) => Some(n),
        _ => {
            eprintln!("fake-upstream: {flag} takes a whole number");
            std::process::exit(2);
        }
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flaky = args.iter().any(|a| a == "--flaky");
    let addr = args
        .iter()
        .enumerate()
        .find(|(i, a)| {
            !a.starts_with("--") && (*i == 0 || !TAKES_VALUE.contains(&args[i - 1].as_str()))
        })
        .map(|(_, a)| a)
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:18080".to_string());
    let up = idlehands_testkit::FakeOpenAi::start_on(&addr).await;
    up.set_recording(false);
    if args.iter().any(|a| a == "--repeat-ids") {
        up.set_fixed_id(Some("chatcmpl-1"));
    }
    if flaky {
        up.set_flaky(10, 97);
    }
    if let Some(n) = value(&args, "--junk") {
        up.set_junk_every(usize::try_from(n).unwrap_or(usize::MAX));
    }
    let every = value(&args, "--stream-every-ms");
    let secs = value(&args, "--stream-secs");
    if every.is_some() || secs.is_some() {
        up.set_paced(Some(idlehands_testkit::paced::Paced::new(
            every.unwrap_or(100),
            secs.unwrap_or(30),
        )));
    }
    if args.iter().any(|a| a == "--absurd-usage") {
        up.set_default(idlehands_testkit::Reply::default().with_usage(u64::MAX, u64::MAX));
    }
    println!(
        "fake-upstream listening on {}{}",
        up.addr(),
        if flaky { " (flaky)" } else { "" }
    );
    let _ = tokio::signal::ctrl_c().await;
}
