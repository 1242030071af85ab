#![allow(dead_code)]

use std::sync::Arc;

use idlehands_routing::{DeploymentSpec, InMemoryState, ManualClock, Router, RouterSettings};

/// A minute-aligned start so tests know how far the next minute is.
pub const T0: u64 = 1_700_000_040_000;

pub fn dep(id: &str, group: &str) -> DeploymentSpec {
    DeploymentSpec {
        id: id.to_owned(),
        model_group: group.to_owned(),
        ..DeploymentSpec::default()
    }
}

pub fn router(deps: Vec<DeploymentSpec>, settings: RouterSettings) -> (Router, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::at_ms(T0));
    let state = Arc::new(InMemoryState::new(deps.len()));
    let r = Router::with_state(deps, settings, state, clock.clone());
    (r, clock)
}

pub fn settings(json: &str) -> RouterSettings {
    serde_json::from_str(json).expect("settings json")
}
