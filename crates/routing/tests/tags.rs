#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::{dep, router, settings};
use idlehands_routing::{
    DeploymentSpec, Failure, FinalError, NoDeploymentReason, PickContext, PlanOptions, RequestTags,
    Router, Step,
};

fn tagged(id: &str, group: &str, tags: &[&str]) -> DeploymentSpec {
    DeploymentSpec {
        tags: tags.iter().map(|t| t.to_string()).collect(),
        ..dep(id, group)
    }
}

fn ctx(tags: &[&str]) -> PickContext {
    PickContext {
        estimated_input_tokens: 1,
        tags: Some(Arc::new(RequestTags {
            tags: tags.iter().map(|t| t.to_string()).collect(),
            user_agent: None,
        })),
        exclude: None,
    }
}

/// The ids `r` picks for `ctx` over many tries.
fn picked(r: &Router, group: &str, ctx: &PickContext) -> HashSet<String> {
    (0..200)
        .map(|_| {
            let p = r.pick(group, ctx).unwrap();
            let id = p.deployment().id.clone();
            drop(p);
            id
        })
        .collect()
}

fn ids(v: &[&str]) -> HashSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn tags_choose_deployments_only_where_tag_filtering_is_on() {
    let deps = vec![
        tagged("free", "g", &["free", "default"]),
        tagged("paid", "g", &["paid"]),
    ];
    let (off, _) = router(deps.clone(), settings("{}"));
    assert!(!off.routes_by_tags());
    assert_eq!(picked(&off, "g", &ctx(&["paid"])), ids(&["free", "paid"]));

    let (on, _) = router(deps, settings(r#"{"enable_tag_filtering": true}"#));
    assert!(on.routes_by_tags());
    assert_eq!(picked(&on, "g", &ctx(&["paid"])), ids(&["paid"]));
    // Untagged, and without any tags in the context at all: the default deployment.
    assert_eq!(picked(&on, "g", &ctx(&[])), ids(&["free"]));
    assert_eq!(picked(&on, "g", &PickContext::default()), ids(&["free"]));
}

#[test]
fn a_groups_own_setting_overrides_the_routers() {
    let mut a = tagged("a", "own", &["x"]);
    a.tag_filtering = Some(true);
    let b = tagged("b", "own", &["y"]);
    let c = tagged("c", "plain", &["x"]);
    let d = tagged("d", "plain", &["y"]);
    let (r, _) = router(vec![a, b, c, d], settings("{}"));
    assert!(r.routes_by_tags());
    assert_eq!(picked(&r, "own", &ctx(&["x"])), ids(&["a"]));
    assert_eq!(picked(&r, "plain", &ctx(&["x"])), ids(&["c", "d"]));

    // The first deployment in config order that sets it decides, whatever the order tiers.
    let mut first = tagged("first", "g", &["x"]);
    first.tag_filtering = Some(false);
    first.order = Some(2);
    let mut second = tagged("second", "g", &["y"]);
    second.tag_filtering = Some(true);
    second.order = Some(1);
    let (r, _) = router(
        vec![first, second],
        settings(r#"{"enable_tag_filtering": true}"#),
    );
    assert!(!r.routes_by_tags());
    // Untouched by the tag, the lower order tier serves.
    assert_eq!(picked(&r, "g", &ctx(&["x"])), ids(&["second"]));
}

#[test]
fn a_refusal_is_litellms_401_and_falls_back() {
    let deps = vec![
        tagged("paid", "g", &["paid"]),
        tagged("other", "backup", &["default"]),
    ];
    let (r, _) = router(
        deps,
        settings(
            r#"{"enable_tag_filtering": true, "num_retries": 0, "fallbacks": [{"g": ["backup"]}]}"#,
        ),
    );
    let nd = match r.pick("g", &ctx(&["gold", "it's"])) {
        Err(nd) => nd,
        Ok(p) => panic!("picked {}", p.deployment().id),
    };
    assert_eq!(nd.reason, NoDeploymentReason::Tags);
    assert_eq!(nd.status(), 401);
    assert_eq!(
        nd.to_string(),
        "Not allowed to access model due to tags configuration. Passed model=g and tags=['gold', \"it's\"]"
    );
    // Tags route in the fallback group too: its default deployment serves "gold".
    let mut plan = r.plan::<()>("g", PlanOptions::default());
    match plan.next(&ctx(&["gold"])) {
        Step::Attempt(p) => assert_eq!(p.deployment().id, "other"),
        Step::GiveUp(_) => panic!("no fallback"),
    }
    // Without fallbacks the refusal is the final error.
    let mut plan = r.plan::<()>(
        "g",
        PlanOptions {
            disable_fallbacks: true,
            ..PlanOptions::default()
        },
    );
    match plan.next(&ctx(&["gold"])) {
        Step::GiveUp(FinalError::NoDeployment(nd)) => {
            assert_eq!(nd.reason, NoDeploymentReason::Tags)
        }
        _ => panic!("expected the tag refusal"),
    }
}

#[test]
fn a_cooling_tagged_deployment_is_refused_as_litellm_does_not_sent_to_the_default() {
    let deps = vec![
        tagged("paid", "g", &["paid"]),
        tagged("base", "g", &["default"]),
    ];
    let (r, clock) = router(
        deps,
        settings(r#"{"enable_tag_filtering": true, "allowed_fails": 0, "cooldown_time": 30}"#),
    );
    let p = r.pick("g", &ctx(&["paid"])).unwrap();
    assert_eq!(p.deployment().id, "paid");
    assert!(p.failure(&Failure::from_response(500, "boom", None)));
    let nd = r.pick("g", &ctx(&["paid"])).err().unwrap();
    assert_eq!(nd.reason, NoDeploymentReason::Tags);
    // Untagged calls still reach the default meanwhile; after the cooldown "paid" serves again.
    assert_eq!(picked(&r, "g", &ctx(&[])), ids(&["base"]));
    clock.advance(Duration::from_secs(31));
    assert_eq!(picked(&r, "g", &ctx(&["paid"])), ids(&["paid"]));
}
