#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{dep, router, settings};
use idlehands_routing::{
    DeploymentHealth, Failure, NoDeploymentReason, PickContext, RouterSettings, TokenUsage,
};

const CTX: PickContext = PickContext {
    estimated_input_tokens: 1,
    tags: None,
    exclude: None,
};

fn fail_on(r: &idlehands_routing::Router, id: &str, f: Failure) -> bool {
    for _ in 0..1000 {
        let p = r.pick("g", &CTX).unwrap();
        if p.deployment().id == id {
            return p.failure(&f);
        }
    }
    panic!("never picked {id}");
}

#[test]
fn rate_limited_deployment_cools_down_and_recovers_after_cooldown_time() {
    let (r, clock) = router(
        vec![dep("a", "g"), dep("b", "g")],
        RouterSettings::default(),
    );
    assert!(fail_on(
        &r,
        "a",
        Failure::from_response(429, "rate limited", None)
    ));
    for _ in 0..30 {
        assert_eq!(r.pick("g", &CTX).unwrap().deployment().id, "b");
    }
    assert_eq!(r.cooldown_list("g"), ["a"]);
    clock.advance(Duration::from_millis(4_999));
    assert_eq!(r.healthy_count("g"), 1);
    clock.advance(Duration::from_millis(1));
    assert_eq!(r.healthy_count("g"), 2);
    assert!(r.cooldown_list("g").is_empty());
}

#[test]
fn repeated_5xx_cools_down_after_half_of_five_requests_fail() {
    let (r, _) = router(
        vec![dep("a", "g"), dep("b", "g")],
        RouterSettings::default(),
    );
    let e500 = Failure::from_response(500, "boom", None);
    // Two successes, then failures: 3 of 5 (60 %) crosses the threshold.
    for _ in 0..2 {
        loop {
            let p = r.pick("g", &CTX).unwrap();
            if p.deployment().id == "a" {
                p.success(Duration::from_millis(5), TokenUsage::default());
                break;
            }
        }
    }
    assert!(!fail_on(&r, "a", e500));
    assert!(!fail_on(&r, "a", e500));
    assert_eq!(r.healthy_count("g"), 2);
    assert!(fail_on(&r, "a", e500));
    assert_eq!(r.healthy_count("g"), 1);
}

#[test]
fn upstream_retry_after_sets_the_cooldown_length() {
    let (r, clock) = router(
        vec![dep("a", "g"), dep("b", "g")],
        RouterSettings::default(),
    );
    let f = Failure::from_response(429, "", Some(Duration::from_secs(20)));
    assert!(fail_on(&r, "a", f));
    clock.advance(Duration::from_secs(19));
    assert_eq!(r.cooldown_list("g"), ["a"]);
    clock.advance(Duration::from_secs(1));
    assert!(r.cooldown_list("g").is_empty());
}

#[test]
fn no_cooldown_for_single_deployment_429_connection_errors_or_when_disabled() {
    let (r, _) = router(vec![dep("only", "g")], RouterSettings::default());
    assert!(!fail_on(&r, "only", Failure::from_response(429, "", None)));
    assert!(r.pick("g", &CTX).is_ok());

    let (r, _) = router(
        vec![dep("a", "g"), dep("b", "g")],
        RouterSettings::default(),
    );
    for _ in 0..20 {
        assert!(!fail_on(&r, "a", Failure::connection()));
    }
    assert_eq!(r.healthy_count("g"), 2);

    let (r, _) = router(
        vec![dep("a", "g"), dep("b", "g")],
        settings(r#"{"disable_cooldowns": true}"#),
    );
    assert!(!fail_on(
        &r,
        "a",
        Failure::from_response(401, "bad key", None)
    ));
    assert_eq!(r.healthy_count("g"), 2);
}

#[test]
fn legacy_allowed_fails_tolerates_that_many_failures_per_minute() {
    let (r, clock) = router(
        vec![dep("a", "g"), dep("b", "g")],
        settings(r#"{"allowed_fails": 1, "cooldown_time": 30}"#),
    );
    let e = Failure::from_response(503, "overloaded", None);
    assert!(!fail_on(&r, "a", e));
    assert!(fail_on(&r, "a", e));
    clock.advance(Duration::from_secs(29));
    assert_eq!(r.cooldown_list("g"), ["a"]);
    clock.advance(Duration::from_secs(1));
    assert!(r.cooldown_list("g").is_empty());
    // A new minute starts a new allowance.
    clock.advance(Duration::from_secs(60));
    assert!(!fail_on(&r, "a", e));
}

#[test]
fn all_cooled_down_gives_the_litellm_429_message() {
    let (r, clock) = router(
        vec![dep("dep-a", "gpt-4o"), dep("dep-b", "gpt-4o")],
        RouterSettings::default(),
    );
    let f = Failure::from_response(401, "invalid key", None);
    for _ in 0..2 {
        let p = r.pick("gpt-4o", &CTX).unwrap();
        assert!(p.failure(&f));
        clock.advance(Duration::from_millis(1_500));
    }
    // dep cooled first ends in 5 - 1.5 - 1.5 = 2 s.
    let err = r.pick("gpt-4o", &CTX).unwrap_err();
    assert_eq!(err.reason, NoDeploymentReason::CoolingDown);
    assert_eq!(err.status(), 429);
    assert_eq!(err.retry_after_secs, 2);
    let mut list = err.cooldown_list.clone();
    list.sort();
    assert_eq!(list, ["dep-a", "dep-b"]);
    let msg = err.to_string();
    assert!(
        msg.starts_with(
            "No deployments available for selected model, Try again in 2 seconds. \
             Passed model=gpt-4o. pre-call-checks=False, cooldown_list=['dep-"
        ),
        "{msg}"
    );
    assert!(msg.ends_with("']"), "{msg}");
    assert!(msg.contains("'dep-a'") && msg.contains("'dep-b'") && msg.contains("', '"));
}

#[test]
fn snapshot_reports_healthy_partial_and_cooled_down() {
    let (r, clock) = router(
        vec![dep("a", "g"), dep("b", "g"), dep("c", "g")],
        RouterSettings::default(),
    );
    assert!(fail_on(&r, "a", Failure::from_response(429, "", None)));
    assert!(!fail_on(&r, "b", Failure::from_response(500, "", None)));
    let health = |r: &idlehands_routing::Router, id: &str| {
        r.snapshot().into_iter().find(|s| s.id == id).unwrap()
    };
    let a = health(&r, "a");
    assert_eq!(a.health, DeploymentHealth::CompleteOutage);
    assert_eq!(a.health.metric_value(), 2);
    assert_eq!(a.cooldown_remaining, Some(Duration::from_secs(5)));
    assert_eq!(health(&r, "b").health, DeploymentHealth::PartialOutage);
    assert_eq!(health(&r, "b").outcomes_this_minute.failures, 1);
    assert_eq!(health(&r, "c").health, DeploymentHealth::Healthy);
    // A success clears the partial outage; the cooldown clears with time.
    loop {
        let p = r.pick("g", &CTX).unwrap();
        if p.deployment().id == "b" {
            p.success(Duration::from_millis(3), TokenUsage::default());
            break;
        }
    }
    clock.advance(Duration::from_secs(5));
    assert_eq!(health(&r, "a").health, DeploymentHealth::PartialOutage);
    assert_eq!(health(&r, "b").health, DeploymentHealth::Healthy);
    clock.advance(Duration::from_secs(60));
    assert_eq!(health(&r, "a").health, DeploymentHealth::Healthy);
    // Lifetime counters survive the minute change.
    let a = health(&r, "a");
    assert_eq!((a.failures_total, a.cooldowns_total), (1, 1));
    let b = health(&r, "b");
    assert_eq!(
        (b.successes_total, b.failures_total, b.cooldowns_total),
        (1, 1, 0)
    );
}
