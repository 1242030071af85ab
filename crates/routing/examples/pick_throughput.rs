//! Rough pick+complete throughput per strategy, to spot regressions on the hot path.
//! `cargo run --release -p idlehands-routing --example pick_throughput [threads] [picks_per_thread]`

use std::time::{Duration, Instant};

use idlehands_routing::{
    DeploymentSpec, PickContext, Router, RouterSettings, RoutingStrategy, TokenUsage,
};

fn main() {
    let mut args = std::env::args().skip(1);
    let threads: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(4);
    let per_thread: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let deployments: Vec<DeploymentSpec> = (0..8)
        .map(|i| DeploymentSpec {
            id: format!("d{i}"),
            model_group: "g".into(),
            rpm: Some(u64::MAX / 2),
            tpm: Some(u64::MAX / 2),
            ..DeploymentSpec::default()
        })
        .collect();
    for strategy in [
        RoutingStrategy::SimpleShuffle,
        RoutingStrategy::LeastBusy,
        RoutingStrategy::LatencyBasedRouting,
        RoutingStrategy::UsageBasedRoutingV2,
    ] {
        let settings = RouterSettings {
            routing_strategy: strategy,
            ..RouterSettings::default()
        };
        let router = Router::new(deployments.clone(), settings);
        let ctx = PickContext {
            estimated_input_tokens: 100,
            tags: None,
            exclude: None,
        };
        let start = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..threads {
                let router = router.clone();
                let ctx = &ctx;
                s.spawn(move || {
                    for _ in 0..per_thread {
                        if let Ok(p) = router.pick("g", ctx) {
                            p.success(
                                Duration::from_millis(20),
                                TokenUsage {
                                    input_tokens: 100,
                                    output_tokens: 20,
                                },
                            );
                        }
                    }
                });
            }
        });
        let elapsed = start.elapsed();
        let total = (threads * per_thread) as f64;
        println!(
            "{strategy:?}: {threads} threads, {:.0} picks/s, {:.0} ns/pick/thread",
            total / elapsed.as_secs_f64(),
            elapsed.as_nanos() as f64 / per_thread as f64
        );
    }
}
