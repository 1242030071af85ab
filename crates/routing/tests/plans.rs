#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{dep, router, settings};
use idlehands_routing::{
    Decision, Failure, FinalError, NoDeploymentReason, PickContext, Plan, PlanOptions,
    RouterSettings, Step, TokenUsage,
};

const CTX: PickContext = PickContext {
    estimated_input_tokens: 1,
    tags: None,
    exclude: None,
};

/// What the scripted upstream returns for one attempt.
#[derive(Clone)]
enum Reply {
    Ok,
    Err(u16, &'static str, Option<Duration>),
}

/// One recorded attempt: which group and deployment, and what the plan decided afterwards.
#[derive(Debug)]
struct Trace {
    attempts: Vec<(String, String)>,
    decisions: Vec<Decision>,
    outcome: Result<(), FinalError<String>>,
}

/// Drive a plan the way the proxy's request loop does, answering each attempt with `script`
/// (indexed by attempt number; the last entry repeats).
fn drive(plan: &mut Plan<String>, script: &[Reply]) -> Trace {
    let mut attempts = Vec::new();
    let mut decisions = Vec::new();
    loop {
        let pick = match plan.next(&CTX) {
            Step::Attempt(p) => p,
            Step::GiveUp(e) => {
                return Trace {
                    attempts,
                    decisions,
                    outcome: Err(e),
                };
            }
        };
        let reply = script[attempts.len().min(script.len() - 1)].clone();
        attempts.push((
            pick.deployment().model_group.clone(),
            pick.deployment().id.clone(),
        ));
        match reply {
            Reply::Ok => {
                pick.success(Duration::from_millis(10), TokenUsage::default());
                return Trace {
                    attempts,
                    decisions,
                    outcome: Ok(()),
                };
            }
            Reply::Err(status, body, retry_after) => {
                let f = Failure::from_response(status, body, retry_after);
                let d = plan.failed(pick, f, format!("{status} {body}"));
                decisions.push(d);
            }
        }
    }
}

fn groups(t: &Trace) -> Vec<&str> {
    t.attempts.iter().map(|(g, _)| g.as_str()).collect()
}

#[test]
fn a_5xx_then_success_is_one_retry() {
    let (r, _) = router(
        vec![dep("a", "g"), dep("b", "g")],
        RouterSettings::default(),
    );
    let mut plan = r.plan("g", PlanOptions::default());
    let t = drive(&mut plan, &[Reply::Err(500, "boom", None), Reply::Ok]);
    assert!(t.outcome.is_ok());
    assert_eq!(groups(&t), ["g", "g"]);
    // Another deployment is healthy, so the retry goes at once.
    assert_eq!(
        t.decisions,
        [Decision::Retry {
            delay: Duration::ZERO
        }]
    );
    assert_eq!(plan.attempted_retries(), 1);
    assert_eq!(plan.attempted_fallbacks(), 0);
    assert_eq!(plan.max_retries(), 2);
}

#[test]
fn retries_stop_at_num_retries_then_give_up_with_the_last_error() {
    let (r, _) = router(
        vec![dep("a", "g"), dep("b", "g")],
        settings(r#"{"num_retries": 3}"#),
    );
    let mut plan = r.plan("g", PlanOptions::default());
    let t = drive(&mut plan, &[Reply::Err(502, "bad gateway", None)]);
    assert_eq!(t.attempts.len(), 4);
    assert_eq!(t.decisions.last(), Some(&Decision::GiveUp));
    match t.outcome {
        Err(FinalError::Upstream(e)) => assert_eq!(e, "502 bad gateway"),
        other => panic!("{other:?}"),
    }
    assert_eq!(plan.attempted_retries(), 3);
    assert_eq!(plan.max_retries(), 3);
}

#[test]
fn a_400_is_not_retried() {
    let (r, _) = router(
        vec![dep("a", "g"), dep("b", "g")],
        settings(r#"{"num_retries": 5}"#),
    );
    let mut plan = r.plan("g", PlanOptions::default());
    let t = drive(
        &mut plan,
        &[Reply::Err(400, "temperature out of range", None)],
    );
    assert_eq!(t.attempts.len(), 1);
    assert_eq!(t.decisions, [Decision::GiveUp]);
    assert!(matches!(t.outcome, Err(FinalError::Upstream(_))));
    assert_eq!(plan.attempted_retries(), 0);
}

#[test]
fn auth_errors_retry_only_when_the_group_has_another_deployment() {
    let (r, _) = router(vec![dep("only", "g")], RouterSettings::default());
    let mut plan = r.plan("g", PlanOptions::default());
    let t = drive(&mut plan, &[Reply::Err(401, "bad key", None), Reply::Ok]);
    assert_eq!(t.attempts.len(), 1);

    let (r, _) = router(
        vec![dep("a", "g"), dep("b", "g")],
        RouterSettings::default(),
    );
    let mut plan = r.plan("g", PlanOptions::default());
    let t = drive(&mut plan, &[Reply::Err(401, "bad key", None), Reply::Ok]);
    assert!(t.outcome.is_ok());
    // The 401 cooled the first deployment down, so the retry went to the other one, at once.
    assert_ne!(t.attempts[0].1, t.attempts[1].1);
    assert_eq!(
        t.decisions,
        [Decision::Retry {
            delay: Duration::ZERO
        }]
    );
}

#[test]
fn context_window_error_goes_to_context_window_fallbacks() {
    let (r, _) = router(
        vec![dep("a", "small"), dep("b", "big"), dep("c", "other")],
        settings(
            r#"{"fallbacks": [{"small": ["other"]}],
                "context_window_fallbacks": [{"small": ["big"]}]}"#,
        ),
    );
    let mut plan = r.plan("small", PlanOptions::default());
    let t = drive(
        &mut plan,
        &[
            Reply::Err(
                400,
                "This model's maximum context length is 8192 tokens",
                None,
            ),
            Reply::Ok,
        ],
    );
    assert!(t.outcome.is_ok());
    assert_eq!(groups(&t), ["small", "big"]);
    assert_eq!(
        t.decisions,
        [Decision::Fallback {
            group: "big".into()
        }]
    );
    assert_eq!(plan.attempted_fallbacks(), 1);
    assert_eq!(plan.current_group(), "big");

    // Any other error uses the regular list.
    let mut plan = r.plan("small", PlanOptions::default());
    let t = drive(&mut plan, &[Reply::Err(400, "bad param", None), Reply::Ok]);
    assert_eq!(groups(&t), ["small", "other"]);
}

#[test]
fn content_policy_error_uses_its_list_or_else_the_regular_one() {
    let (r, _) = router(
        vec![dep("a", "g"), dep("b", "safe"), dep("c", "reg")],
        settings(
            r#"{"fallbacks": [{"g": ["reg"]}],
                "content_policy_fallbacks": [{"g": ["safe"]}]}"#,
        ),
    );
    let mut plan = r.plan("g", PlanOptions::default());
    let t = drive(
        &mut plan,
        &[
            Reply::Err(
                400,
                r#"{"error":{"code":"content_policy_violation"}}"#,
                None,
            ),
            Reply::Ok,
        ],
    );
    assert_eq!(groups(&t), ["g", "safe"]);

    let (r, _) = router(
        vec![dep("a", "g"), dep("c", "reg")],
        settings(r#"{"fallbacks": [{"g": ["reg"]}]}"#),
    );
    let mut plan = r.plan("g", PlanOptions::default());
    let t = drive(
        &mut plan,
        &[
            Reply::Err(400, "maximum context length exceeded", None),
            Reply::Ok,
        ],
    );
    assert_eq!(groups(&t), ["g", "reg"]);
}

#[test]
fn rate_limit_with_retry_after_on_a_lone_deployment_waits_that_long() {
    let (r, _) = router(
        vec![dep("only", "g")],
        settings(r#"{"num_retries": 2, "retry_after": 1}"#),
    );
    let mut plan = r.plan("g", PlanOptions::default());
    let t = drive(
        &mut plan,
        &[
            Reply::Err(429, "slow down", Some(Duration::from_secs(3))),
            Reply::Err(429, "slow down", Some(Duration::from_millis(200))),
            Reply::Ok,
        ],
    );
    assert!(t.outcome.is_ok());
    assert_eq!(
        t.decisions,
        [
            Decision::Retry {
                delay: Duration::from_secs(3)
            },
            // router_settings.retry_after is the floor.
            Decision::Retry {
                delay: Duration::from_secs(1)
            },
        ]
    );
    assert_eq!(plan.attempted_retries(), 2);
}

#[test]
fn lone_deployment_backs_off_exponentially_without_a_hint() {
    let (r, _) = router(vec![dep("only", "g")], settings(r#"{"num_retries": 3}"#));
    let mut plan = r.plan("g", PlanOptions::default());
    let t = drive(&mut plan, &[Reply::Err(503, "overloaded", None)]);
    let delays: Vec<Duration> = t.decisions.iter().map(Decision::delay).collect();
    assert_eq!(delays.len(), 4);
    let bounds = [(375, 500), (750, 1000), (1500, 2000)];
    for (d, (lo, hi)) in delays.iter().zip(bounds) {
        let ms = d.as_millis();
        assert!((lo..=hi).contains(&ms), "{delays:?}");
    }
    assert_eq!(t.decisions[3], Decision::GiveUp);
}

#[test]
fn fallbacks_exhausted_give_the_requested_groups_error() {
    let (r, _) = router(
        vec![dep("a", "g"), dep("b", "f1"), dep("c", "f2")],
        settings(r#"{"num_retries": 0, "fallbacks": [{"g": ["f1", "f2"]}]}"#),
    );
    let mut plan = r.plan("g", PlanOptions::default());
    let t = drive(
        &mut plan,
        &[
            Reply::Err(500, "primary down", None),
            Reply::Err(500, "f1 down", None),
            Reply::Err(500, "f2 down", None),
        ],
    );
    assert_eq!(groups(&t), ["g", "f1", "f2"]);
    assert_eq!(
        t.decisions,
        [
            Decision::Fallback { group: "f1".into() },
            Decision::Fallback { group: "f2".into() },
            Decision::GiveUp
        ]
    );
    match t.outcome {
        Err(FinalError::Upstream(e)) => assert_eq!(e, "500 primary down"),
        other => panic!("{other:?}"),
    }
    assert_eq!(plan.attempted_fallbacks(), 2);
}

#[test]
fn max_fallbacks_caps_the_hops() {
    let (r, _) = router(
        vec![
            dep("a", "g"),
            dep("b", "f1"),
            dep("c", "f2"),
            dep("d", "f3"),
        ],
        settings(
            r#"{"num_retries": 0, "max_fallbacks": 2,
                "fallbacks": [{"g": ["f1", "f2", "f3"]}]}"#,
        ),
    );
    let mut plan = r.plan("g", PlanOptions::default());
    let t = drive(&mut plan, &[Reply::Err(500, "down", None)]);
    assert_eq!(groups(&t), ["g", "f1", "f2"]);
    assert_eq!(plan.attempted_fallbacks(), 2);
}

#[test]
fn each_fallback_group_gets_its_own_retries() {
    let (r, _) = router(
        vec![
            dep("a1", "g"),
            dep("a2", "g"),
            dep("b1", "f"),
            dep("b2", "f"),
        ],
        settings(r#"{"num_retries": 1, "fallbacks": [{"g": ["f"]}]}"#),
    );
    let mut plan = r.plan("g", PlanOptions::default());
    let t = drive(
        &mut plan,
        &[
            Reply::Err(500, "x", None),
            Reply::Err(500, "x", None),
            Reply::Err(500, "x", None),
            Reply::Ok,
        ],
    );
    assert!(t.outcome.is_ok());
    assert_eq!(groups(&t), ["g", "g", "f", "f"]);
    assert_eq!(plan.attempted_retries(), 1);
    assert_eq!(plan.total_retries(), 2);
    assert_eq!(plan.attempted_fallbacks(), 1);
}

#[test]
fn generic_and_default_fallbacks_apply_to_groups_without_their_own() {
    let (r, _) = router(
        vec![dep("a", "g"), dep("b", "star")],
        settings(r#"{"num_retries": 0, "fallbacks": [{"*": ["star"]}]}"#),
    );
    let t = drive(
        &mut r.plan("g", PlanOptions::default()),
        &[Reply::Err(503, "", None), Reply::Ok],
    );
    assert_eq!(groups(&t), ["g", "star"]);

    let (r, _) = router(
        vec![dep("a", "g"), dep("b", "dflt")],
        settings(r#"{"num_retries": 0, "default_fallbacks": ["dflt"]}"#),
    );
    let t = drive(
        &mut r.plan("g", PlanOptions::default()),
        &[Reply::Err(503, "", None), Reply::Ok],
    );
    assert_eq!(groups(&t), ["g", "dflt"]);
}

#[test]
fn request_options_override_retries_and_fallbacks() {
    let (r, _) = router(
        vec![
            dep("a", "g"),
            dep("a2", "g"),
            dep("b", "f"),
            dep("c", "mine"),
        ],
        settings(r#"{"num_retries": 5, "fallbacks": [{"g": ["f"]}]}"#),
    );
    let opts = PlanOptions {
        num_retries: Some(0),
        fallbacks: Some(serde_json::from_str(r#"["mine"]"#).unwrap()),
        ..PlanOptions::default()
    };
    let mut plan = r.plan("g", opts);
    let t = drive(&mut plan, &[Reply::Err(500, "", None), Reply::Ok]);
    assert_eq!(groups(&t), ["g", "mine"]);
    assert_eq!(plan.max_retries(), 0);

    // A request table with no entry for the group switches configured fallbacks off.
    let opts = PlanOptions {
        num_retries: Some(0),
        fallbacks: Some(serde_json::from_str(r#"[{"elsewhere": ["f"]}]"#).unwrap()),
        ..PlanOptions::default()
    };
    let t = drive(
        &mut r.plan("g", opts),
        &[Reply::Err(500, "", None), Reply::Ok],
    );
    assert_eq!(groups(&t), ["g"]);

    // Request-level context window fallbacks.
    let opts = PlanOptions {
        context_window_fallbacks: Some(serde_json::from_str(r#"[{"g": ["mine"]}]"#).unwrap()),
        ..PlanOptions::default()
    };
    let t = drive(
        &mut r.plan("g", opts),
        &[Reply::Err(400, "context length exceeded", None), Reply::Ok],
    );
    assert_eq!(groups(&t), ["g", "mine"]);

    let opts = PlanOptions {
        num_retries: Some(0),
        disable_fallbacks: true,
        ..PlanOptions::default()
    };
    let t = drive(
        &mut r.plan("g", opts),
        &[Reply::Err(500, "", None), Reply::Ok],
    );
    assert_eq!(groups(&t), ["g"]);
    let err = t
        .outcome
        .err()
        .map(|e| format!("{e:?}"))
        .unwrap_or_default();
    assert!(err.contains("Upstream(\"500"), "{err:?}");
}

#[test]
fn retry_policy_overrides_the_count_per_error_class() {
    // A fresh router per case: failures pile up per minute and would cool deployments down.
    let attempts = |reply: Reply| {
        let (r, _) = router(
            vec![
                dep("a", "g"),
                dep("b", "g"),
                dep("c", "g"),
                dep("d", "g"),
                dep("e", "g"),
            ],
            settings(
                r#"{"num_retries": 4,
                    "retry_policy": {"RateLimitErrorRetries": 0, "TimeoutErrorRetries": 1}}"#,
            ),
        );
        drive(&mut r.plan("g", PlanOptions::default()), &[reply])
            .attempts
            .len()
    };
    assert_eq!(attempts(Reply::Err(429, "", None)), 1);
    assert_eq!(attempts(Reply::Err(408, "", None)), 2);
    assert_eq!(attempts(Reply::Err(500, "", None)), 5);
}

#[test]
fn cooled_down_group_falls_back_without_an_upstream_call() {
    let (r, _) = router(
        vec![dep("a", "g"), dep("b", "g"), dep("c", "f")],
        settings(r#"{"fallbacks": [{"g": ["f"]}]}"#),
    );
    // Cool both deployments of g down.
    for _ in 0..2 {
        let p = r.pick("g", &CTX).unwrap();
        assert!(p.failure(&Failure::from_response(429, "", None)));
    }
    let mut plan = r.plan("g", PlanOptions::default());
    let t = drive(&mut plan, &[Reply::Ok]);
    assert!(t.outcome.is_ok());
    assert_eq!(groups(&t), ["f"]);
    assert_eq!(plan.attempted_fallbacks(), 1);

    // Without fallbacks the 429 "No deployments available" error comes back.
    let mut plan = r.plan(
        "g",
        PlanOptions {
            disable_fallbacks: true,
            ..PlanOptions::default()
        },
    );
    match drive(&mut plan, &[Reply::Ok]).outcome {
        Err(FinalError::NoDeployment(nd)) => {
            assert_eq!(nd.reason, NoDeploymentReason::CoolingDown);
            assert_eq!(nd.status(), 429);
            assert!(nd.to_string().starts_with(
                "No deployments available for selected model, Try again in 5 seconds. Passed model=g."
            ));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn no_retry_once_the_group_has_no_healthy_deployment() {
    // Two deployments, both answer 429 and cool down: the second 429 leaves none healthy.
    let (r, _) = router(
        vec![dep("a", "g"), dep("b", "g"), dep("c", "f")],
        settings(r#"{"num_retries": 5, "fallbacks": [{"g": ["f"]}]}"#),
    );
    let mut plan = r.plan("g", PlanOptions::default());
    let t = drive(
        &mut plan,
        &[
            Reply::Err(429, "", None),
            Reply::Err(429, "", None),
            Reply::Ok,
        ],
    );
    assert_eq!(groups(&t), ["g", "g", "f"]);
    assert!(t.outcome.is_ok());
}

#[test]
fn a_group_emptied_by_cooldowns_mid_retry_keeps_the_upstream_error() {
    let (r, _) = router(
        vec![dep("a", "g"), dep("b", "g")],
        settings(r#"{"num_retries": 3}"#),
    );
    let mut plan: Plan<String> = r.plan("g", PlanOptions::default());
    let Step::Attempt(first) = plan.next(&CTX) else {
        panic!("expected an attempt")
    };
    let other = if first.deployment().id == "a" {
        "b"
    } else {
        "a"
    };
    let d = plan.failed(
        first,
        Failure::from_response(429, "", None),
        "429 slow down".into(),
    );
    assert_eq!(
        d,
        Decision::Retry {
            delay: Duration::ZERO
        }
    );
    // Meanwhile a concurrent request cools the other deployment down too.
    let p = r.pick("g", &CTX).unwrap();
    assert_eq!(p.deployment().id, other);
    assert!(p.failure(&Failure::from_response(429, "", None)));
    match plan.next(&CTX) {
        Step::GiveUp(FinalError::Upstream(e)) => assert_eq!(e, "429 slow down"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn context_window_pre_call_check_routes_to_context_window_fallbacks() {
    let (r, _) = router(
        vec![
            idlehands_routing::DeploymentSpec {
                max_input_tokens: Some(100),
                ..dep("a", "small")
            },
            dep("b", "big"),
        ],
        settings(
            r#"{"enable_pre_call_checks": true,
                "context_window_fallbacks": [{"small": ["big"]}]}"#,
        ),
    );
    let mut plan: Plan<String> = r.plan("small", PlanOptions::default());
    let ctx = PickContext {
        estimated_input_tokens: 5000,
        tags: None,
        exclude: None,
    };
    match plan.next(&ctx) {
        Step::Attempt(p) => assert_eq!(p.deployment().id, "b"),
        Step::GiveUp(e) => panic!("{e:?}"),
    }
}

#[test]
fn excluded_deployments_are_passed_over_and_a_group_left_with_none_falls_back() {
    let (r, _) = router(
        vec![dep("a", "g"), dep("b", "g"), dep("c", "reg")],
        settings(r#"{"fallbacks": [{"g": ["reg"]}]}"#),
    );
    // `a` (index 0) is excluded: every pick in `g` is `b`.
    let only_b = PickContext {
        exclude: Some(idlehands_routing::Exclude(std::sync::Arc::new(|i| i == 0))),
        ..CTX
    };
    for _ in 0..50 {
        let pick = r.pick("g", &only_b).unwrap();
        assert_eq!(pick.deployment().id, "b");
    }
    // Both excluded: the group has nothing, in the budget's words, and the plan falls back.
    let none = PickContext {
        exclude: Some(idlehands_routing::Exclude(std::sync::Arc::new(|i| i < 2))),
        ..CTX
    };
    let nd = r.pick("g", &none).unwrap_err();
    assert_eq!(nd.reason, NoDeploymentReason::Budget);
    assert_eq!(nd.to_string(), "No deployments available - crossed budget");
    let mut plan: Plan<String> = r.plan("g", PlanOptions::default());
    match plan.next(&none) {
        Step::Attempt(p) => assert_eq!(p.deployment().id, "c"),
        Step::GiveUp(e) => panic!("expected the fallback, got {e:?}"),
    }
    assert_eq!(plan.attempted_fallbacks(), 1);
    // Without fallbacks the budget is the final answer.
    let mut alone: Plan<String> = r.plan(
        "g",
        PlanOptions {
            disable_fallbacks: true,
            ..PlanOptions::default()
        },
    );
    match alone.next(&none) {
        Step::GiveUp(FinalError::NoDeployment(nd)) => {
            assert_eq!(nd.reason, NoDeploymentReason::Budget)
        }
        other => panic!("expected the budget refusal, got {other:?}"),
    }
}
