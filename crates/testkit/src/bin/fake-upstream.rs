//! A standalone fake OpenAI-compatible upstream for `bench/`:
//! `fake-upstream [ADDR] [--flaky] [--junk N] [--absurd-usage] [--repeat-ids]` (default
//! 127.0.0.1:18080).
//! Request recording is off so memory stays flat under load. For `bench/soak.sh`: `--flaky`
//! makes every 10th answer a 500 and every 97th never come; `--junk N` makes every Nth a 200
//! whose body is not JSON; `--absurd-usage` reports `u64::MAX` tokens both ways in every answer;
//! `--repeat-ids` answers every call with the same response id, as llama.cpp and Ollama may.

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flaky = args.iter().any(|a| a == "--flaky");
    let addr = args
        .iter()
        .enumerate()
        .find(|(i, a)| !a.starts_with("--") && (*i == 0 || args[i - 1] != "--junk"))
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
    if let Some(n) = args
        .iter()
        .position(|a| a == "--junk")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
    {
        up.set_junk_every(n);
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
