#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use common::{dep, router, settings};
use idlehands_routing::{
    DeploymentSpec, Failure, PickContext, Plan, PlanOptions, Step, TokenUsage,
};

const THREADS: usize = 8;
const PER_THREAD: usize = 2_000;

#[test]
fn concurrent_picks_and_completions_leave_no_request_in_flight() {
    for strategy in [
        "simple-shuffle",
        "least-busy",
        "latency-based-routing",
        "usage-based-routing-v2",
    ] {
        let deps = vec![dep("a", "g"), dep("b", "g"), dep("c", "g")];
        let (r, _) = router(
            deps,
            settings(&format!(
                r#"{{"routing_strategy": "{strategy}", "disable_cooldowns": true}}"#
            )),
        );
        let ok = Arc::new(AtomicU64::new(0));
        thread::scope(|s| {
            for t in 0..THREADS {
                let r = r.clone();
                let ok = ok.clone();
                s.spawn(move || {
                    let ctx = PickContext {
                        estimated_input_tokens: 3,
                        tags: None,
                        exclude: None,
                    };
                    for i in 0..PER_THREAD {
                        let p = r.pick("g", &ctx).unwrap();
                        match (t + i) % 3 {
                            0 => {
                                p.failure(&Failure::from_response(500, "x", None));
                            }
                            1 => {
                                p.success(
                                    Duration::from_micros(100 + (i % 7) as u64),
                                    TokenUsage {
                                        input_tokens: 3,
                                        output_tokens: 2,
                                    },
                                );
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            // A cancelled request: dropped without an outcome.
                            _ => drop(p),
                        }
                    }
                });
            }
        });
        let snap = r.snapshot();
        assert!(
            snap.iter().all(|s| s.in_flight == 0),
            "{strategy}: {snap:?}"
        );
        let picks: u64 = snap.iter().map(|s| s.rpm_used).sum();
        assert_eq!(picks, (THREADS * PER_THREAD) as u64, "{strategy}");
        let tokens: u64 = snap.iter().map(|s| s.tpm_used).sum();
        assert_eq!(tokens, ok.load(Ordering::Relaxed) * 5, "{strategy}");
        let successes: u64 = snap.iter().map(|s| s.outcomes_this_minute.successes).sum();
        assert_eq!(successes, ok.load(Ordering::Relaxed), "{strategy}");
    }
}

#[test]
fn concurrent_picks_never_exceed_rpm_limits() {
    let deps = vec![
        DeploymentSpec {
            rpm: Some(300),
            ..dep("a", "g")
        },
        DeploymentSpec {
            rpm: Some(200),
            ..dep("b", "g")
        },
    ];
    let (r, _) = router(deps, Default::default());
    let granted = Arc::new(AtomicU64::new(0));
    thread::scope(|s| {
        for _ in 0..THREADS {
            let r = r.clone();
            let granted = granted.clone();
            s.spawn(move || {
                for _ in 0..200 {
                    if r.pick("g", &PickContext::default()).is_ok() {
                        granted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(granted.load(Ordering::Relaxed), 500);
    let snap = r.snapshot();
    assert_eq!(snap[0].rpm_used, 300);
    assert_eq!(snap[1].rpm_used, 200);
}

#[test]
fn concurrent_plans_with_failures_settle_cleanly() {
    let (r, _) = router(
        vec![dep("a", "g"), dep("b", "g"), dep("c", "f")],
        settings(r#"{"num_retries": 1, "fallbacks": [{"g": ["f"]}], "cooldown_time": 0}"#),
    );
    thread::scope(|s| {
        for t in 0..THREADS {
            let r = r.clone();
            s.spawn(move || {
                for i in 0..500 {
                    let mut plan: Plan<u16> = r.plan("g", PlanOptions::default());
                    let mut n = 0;
                    while let Step::Attempt(p) = plan.next(&PickContext::default()) {
                        n += 1;
                        if (t + i + n) % 2 == 0 {
                            p.success(Duration::from_millis(1), TokenUsage::default());
                            break;
                        }
                        let _ = plan.failed(p, Failure::from_response(503, "", None), 503);
                    }
                    assert!(plan.attempted_fallbacks() <= 1);
                }
            });
        }
    });
    assert!(r.snapshot().iter().all(|s| s.in_flight == 0));
}

#[test]
fn router_pick_and_plan_can_cross_threads_and_awaits() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<idlehands_routing::Router>();
    send_sync::<idlehands_routing::Pick>();
    send_sync::<Plan<String>>();
    send_sync::<idlehands_routing::NoDeployment>();
}
