//! A standalone fake OpenAI-compatible upstream for `bench/`: `fake-upstream [ADDR] [--flaky]`
//! (default 127.0.0.1:18080). Request recording is off so memory stays flat under load.
//! `--flaky` (for `bench/soak.sh`): every 10th answer is a 500 and every 97th never comes.

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flaky = args.iter().any(|a| a == "--flaky");
    let addr = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:18080".to_string());
    let up = idlehands_testkit::FakeOpenAi::start_on(&addr).await;
    up.set_recording(false);
    // Spend rows are keyed by response id: fakes on different ports must not share ids.
    up.set_id_tag(&format!("{}-", up.addr().port()));
    if flaky {
        up.set_flaky(10, 97);
    }
    println!(
        "fake-upstream listening on {}{}",
        up.addr(),
        if flaky { " (flaky)" } else { "" }
    );
    let _ = tokio::signal::ctrl_c().await;
}
