//! A standalone fake OpenAI-compatible upstream for `bench/`: `fake-upstream [ADDR]`
//! (default 127.0.0.1:18080). Request recording is off so memory stays flat under load.

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18080".to_string());
    let up = idlehands_testkit::FakeOpenAi::start_on(&addr).await;
    up.set_recording(false);
    println!("fake-upstream listening on {}", up.addr());
    let _ = tokio::signal::ctrl_c().await;
}
