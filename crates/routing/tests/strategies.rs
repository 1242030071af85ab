#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{dep, router, settings};
use idlehands_routing::{
    DeploymentSpec, NoDeploymentReason, PickContext, RouterSettings, TokenUsage,
};

const CTX: PickContext = PickContext {
    estimated_input_tokens: 10,
    tags: None,
    exclude: None,
};

fn counts(r: &idlehands_routing::Router, group: &str, n: usize) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for _ in 0..n {
        let p = r.pick(group, &CTX).unwrap();
        *out.entry(p.deployment().id.clone()).or_default() += 1;
    }
    out
}

#[test]
fn simple_shuffle_follows_weights() {
    let deps = vec![
        DeploymentSpec {
            weight: Some(1.0),
            rpm: Some(1_000_000),
            ..dep("light", "g")
        },
        DeploymentSpec {
            weight: Some(3.0),
            ..dep("heavy", "g")
        },
    ];
    let (r, _) = router(deps, RouterSettings::default());
    let c = counts(&r, "g", 8000);
    // Expected 2000 / 6000; sigma is about 39, so these bounds never flake.
    let light = c["light"];
    assert!((1600..=2400).contains(&light), "light={light}");
    assert_eq!(c["heavy"], 8000 - light);
}

#[test]
fn simple_shuffle_uses_rpm_when_no_weights() {
    let deps = vec![
        DeploymentSpec {
            rpm: Some(100_000),
            ..dep("small", "g")
        },
        DeploymentSpec {
            rpm: Some(900_000),
            ..dep("big", "g")
        },
    ];
    let (r, _) = router(deps, RouterSettings::default());
    let c = counts(&r, "g", 5000);
    let small = c.get("small").copied().unwrap_or(0);
    assert!((250..=750).contains(&small), "small={small}");
}

#[test]
fn simple_shuffle_without_weights_is_uniform() {
    let deps = vec![dep("a", "g"), dep("b", "g"), dep("c", "g")];
    let (r, _) = router(deps, RouterSettings::default());
    let c = counts(&r, "g", 6000);
    for id in ["a", "b", "c"] {
        assert!((1600..=2400).contains(&c[id]), "{id}={}", c[id]);
    }
}

#[test]
fn least_busy_picks_the_idle_deployment() {
    let deps = vec![dep("a", "g"), dep("b", "g"), dep("c", "g")];
    let (r, _) = router(deps, settings(r#"{"routing_strategy": "least-busy"}"#));
    let held_a = r.pick("g", &CTX).unwrap();
    let held_b = r.pick("g", &CTX).unwrap();
    let mut ids = vec![
        held_a.deployment().id.clone(),
        held_b.deployment().id.clone(),
    ];
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        2,
        "two concurrent picks go to different deployments"
    );
    let idle = ["a", "b", "c"]
        .into_iter()
        .find(|id| !ids.iter().any(|x| x == id))
        .unwrap();
    for _ in 0..20 {
        let p = r.pick("g", &CTX).unwrap();
        assert_eq!(p.deployment().id, idle);
    }
    drop(held_a);
    drop(held_b);
    assert!(r.snapshot().iter().all(|s| s.in_flight == 0));
}

#[test]
fn latency_routing_prefers_the_fast_deployment() {
    let deps = vec![dep("slow", "g"), dep("fast", "g")];
    let (r, _) = router(
        deps,
        settings(r#"{"routing_strategy": "latency-based-routing"}"#),
    );
    // Until every deployment has a sample, unmeasured ones go first.
    let mut seen = Vec::new();
    for _ in 0..2 {
        let p = r.pick("g", &CTX).unwrap();
        let ms = if p.deployment().id == "slow" { 900 } else { 50 };
        seen.push(p.deployment().id.clone());
        p.success(Duration::from_millis(ms), TokenUsage::default());
    }
    seen.sort();
    assert_eq!(seen, ["fast", "slow"]);
    for _ in 0..50 {
        let p = r.pick("g", &CTX).unwrap();
        assert_eq!(p.deployment().id, "fast");
        p.success(Duration::from_millis(50), TokenUsage::default());
    }
}

#[test]
fn latency_buffer_spreads_over_near_ties() {
    let deps = vec![dep("a", "g"), dep("b", "g"), dep("far", "g")];
    let (r, _) = router(
        deps,
        settings(
            r#"{"routing_strategy": "latency-based-routing",
                "routing_strategy_args": {"lowest_latency_buffer": 0.5}}"#,
        ),
    );
    // Warm every deployment with one sample.
    let mut warmed = 0;
    while warmed < 3 {
        let p = r.pick("g", &CTX).unwrap();
        let ms = match p.deployment().id.as_str() {
            "a" => 100,
            "b" => 120,
            _ => 1000,
        };
        p.success(Duration::from_millis(ms), TokenUsage::default());
        warmed += 1;
    }
    let c = counts(&r, "g", 2000);
    assert!(!c.contains_key("far"));
    assert!(c["a"] > 700 && c["b"] > 700, "{c:?}");
}

#[test]
fn usage_routing_picks_the_least_used_deployment() {
    for strategy in ["usage-based-routing", "usage-based-routing-v2"] {
        let deps = vec![dep("a", "g"), dep("b", "g")];
        let (r, _) = router(
            deps,
            settings(&format!(r#"{{"routing_strategy": "{strategy}"}}"#)),
        );
        let p = r.pick("g", &CTX).unwrap();
        let busy = p.deployment().id.clone();
        p.success(
            Duration::from_millis(10),
            TokenUsage {
                input_tokens: 500,
                output_tokens: 500,
            },
        );
        for _ in 0..10 {
            let p = r.pick("g", &CTX).unwrap();
            assert_ne!(p.deployment().id, busy, "{strategy}");
        }
    }
}

#[test]
fn usage_routing_balances_tokens_over_time() {
    let deps = vec![dep("a", "g"), dep("b", "g")];
    let (r, _) = router(
        deps,
        settings(r#"{"routing_strategy": "usage-based-routing-v2"}"#),
    );
    for _ in 0..100 {
        let p = r.pick("g", &CTX).unwrap();
        p.success(
            Duration::from_millis(10),
            TokenUsage {
                input_tokens: 10,
                output_tokens: 10,
            },
        );
    }
    let snap = r.snapshot();
    let diff = snap[0].tpm_used.abs_diff(snap[1].tpm_used);
    assert!(diff <= 20, "{snap:?}");
}

#[test]
fn rpm_limit_skips_a_full_deployment() {
    let deps = vec![
        DeploymentSpec {
            rpm: Some(2),
            weight: Some(1000.0),
            ..dep("tiny", "g")
        },
        DeploymentSpec {
            weight: Some(0.001),
            ..dep("other", "g")
        },
    ];
    let (r, clock) = router(deps, RouterSettings::default());
    let mut tiny = 0;
    for _ in 0..50 {
        if r.pick("g", &CTX).unwrap().deployment().id == "tiny" {
            tiny += 1;
        }
    }
    assert_eq!(tiny, 2, "rpm=2 admits two requests this minute");
    clock.advance(Duration::from_secs(60));
    assert_eq!(r.pick("g", &CTX).unwrap().deployment().id, "tiny");
}

#[test]
fn all_deployments_at_limit_give_429_until_the_minute_ends() {
    let deps = vec![
        DeploymentSpec {
            rpm: Some(1),
            ..dep("a", "g")
        },
        DeploymentSpec {
            tpm: Some(100),
            ..dep("b", "g")
        },
    ];
    let (r, clock) = router(deps, RouterSettings::default());
    clock.advance(Duration::from_millis(45_500));
    let big = PickContext {
        estimated_input_tokens: 101,
        tags: None,
        exclude: None,
    };
    let p = r.pick("g", &big).unwrap();
    assert_eq!(p.deployment().id, "a");
    let err = r.pick("g", &big).unwrap_err();
    assert_eq!(err.reason, NoDeploymentReason::RateLimited);
    assert_eq!(err.status(), 429);
    assert_eq!(
        err.to_string(),
        "No deployments available for selected model, Try again in 15 seconds. \
         Passed model=g. pre-call-checks=False, cooldown_list=[]"
    );
}

#[test]
fn tpm_limit_counts_used_tokens() {
    let deps = vec![
        DeploymentSpec {
            tpm: Some(1000),
            weight: Some(1000.0),
            ..dep("capped", "g")
        },
        DeploymentSpec {
            weight: Some(0.001),
            ..dep("spare", "g")
        },
    ];
    let (r, _) = router(deps, RouterSettings::default());
    let p = r.pick("g", &CTX).unwrap();
    assert_eq!(p.deployment().id, "capped");
    p.success(
        Duration::from_millis(5),
        TokenUsage {
            input_tokens: 600,
            output_tokens: 395,
        },
    );
    let ctx = PickContext {
        estimated_input_tokens: 6,
        tags: None,
        exclude: None,
    };
    assert_eq!(r.pick("g", &ctx).unwrap().deployment().id, "spare");
    let ctx = PickContext {
        estimated_input_tokens: 5,
        tags: None,
        exclude: None,
    };
    let mut capped = 0;
    for _ in 0..20 {
        if r.pick("g", &ctx).unwrap().deployment().id == "capped" {
            capped += 1;
        }
    }
    assert!(capped >= 15, "capped={capped}");
}

#[test]
fn order_tiers_use_lowest_order_first() {
    let deps = vec![
        DeploymentSpec {
            order: Some(2),
            ..dep("backup", "g")
        },
        DeploymentSpec {
            order: Some(1),
            rpm: Some(3),
            ..dep("primary", "g")
        },
        dep("unordered", "g"),
    ];
    let (r, _) = router(deps, RouterSettings::default());
    let ids: Vec<String> = (0..5)
        .map(|_| r.pick("g", &CTX).unwrap().deployment().id.clone())
        .collect();
    assert_eq!(ids, ["primary", "primary", "primary", "backup", "backup"]);
}

#[test]
fn higher_order_tier_serves_while_lower_is_cooling_down() {
    let deps = vec![
        DeploymentSpec {
            order: Some(1),
            ..dep("primary", "g")
        },
        DeploymentSpec {
            order: Some(2),
            ..dep("backup", "g")
        },
    ];
    let (r, clock) = router(deps, RouterSettings::default());
    let p = r.pick("g", &CTX).unwrap();
    assert_eq!(p.deployment().id, "primary");
    assert!(p.failure(&idlehands_routing::Failure::from_response(
        429,
        "slow down",
        None
    )));
    assert_eq!(r.pick("g", &CTX).unwrap().deployment().id, "backup");
    clock.advance(Duration::from_secs(6));
    assert_eq!(r.pick("g", &CTX).unwrap().deployment().id, "primary");
}

#[test]
fn pre_call_checks_skip_deployments_whose_context_is_too_small() {
    let deps = vec![
        DeploymentSpec {
            max_input_tokens: Some(8_000),
            weight: Some(1000.0),
            ..dep("small", "g")
        },
        DeploymentSpec {
            max_input_tokens: Some(128_000),
            weight: Some(0.001),
            ..dep("large", "g")
        },
    ];
    let (r, _) = router(
        deps.clone(),
        settings(r#"{"enable_pre_call_checks": true}"#),
    );
    let long = PickContext {
        estimated_input_tokens: 20_000,
        tags: None,
        exclude: None,
    };
    for _ in 0..10 {
        assert_eq!(r.pick("g", &long).unwrap().deployment().id, "large");
    }
    let huge = PickContext {
        estimated_input_tokens: 200_000,
        tags: None,
        exclude: None,
    };
    let err = r.pick("g", &huge).unwrap_err();
    assert_eq!(err.reason, NoDeploymentReason::ContextWindow);
    assert_eq!(err.status(), 400);

    // Without pre-call checks the window is not consulted.
    let (r, _) = router(deps, RouterSettings::default());
    assert!(r.pick("g", &huge).is_ok());
}

#[test]
fn aliases_and_unknown_groups() {
    let (r, _) = router(
        vec![dep("a", "gpt-4o")],
        settings(r#"{"model_group_alias": {"gpt-4": "gpt-4o"}}"#),
    );
    assert_eq!(r.resolve_group("gpt-4"), Some("gpt-4o"));
    assert_eq!(r.pick("gpt-4", &CTX).unwrap().deployment().id, "a");
    let err = r.pick("nope", &CTX).unwrap_err();
    assert_eq!(err.reason, NoDeploymentReason::UnknownGroup);
    assert_eq!(err.status(), 400);
    assert!(err.to_string().contains("model=nope"));
}
