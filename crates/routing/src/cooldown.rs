//! When a failed deployment is taken out of rotation (LiteLLM `_is_cooldown_required` +
//! `_should_cooldown_deployment`).

use crate::settings::{DEFAULT_ALLOWED_FAILS, RouterSettings};
use crate::state::MinuteOutcomes;
use crate::{ErrorClass, Failure, status_is_retryable};

/// Fail rate above which a multi-deployment group member cools down...
const FAILURE_THRESHOLD_PERCENT: f64 = 0.5;
/// ...once it has seen at least this many requests this minute.
const FAILURE_THRESHOLD_MIN_REQUESTS: u64 = 5;
/// A single-deployment group cools down only on total failure at this volume.
const SINGLE_DEPLOYMENT_TRAFFIC_FAILURE_THRESHOLD: u64 = 1000;

/// Statuses that may cool a deployment down at all: 401, 404, 408, 429 and anything that is not
/// a 4xx. Other 4xx (400, 403, 422...) say nothing about the deployment's health, and
/// connection errors are excluded so a flaky network does not empty a group.
pub fn cooldown_required(f: &Failure) -> bool {
    if f.class == ErrorClass::Connection || f.caller_caused {
        return false;
    }
    match f.status {
        429 | 401 | 408 | 404 => true,
        400..=499 => false,
        _ => true,
    }
}

/// Decide whether this failure puts the deployment into cooldown.
///
/// `outcomes` are the deployment's totals this minute including this failure; `group_size` is
/// the number of deployments in its model group.
pub fn should_cooldown(
    settings: &RouterSettings,
    f: &Failure,
    group_size: usize,
    outcomes: MinuteOutcomes,
) -> bool {
    if settings.disable_cooldowns || !cooldown_required(f) {
        return false;
    }
    if settings.legacy_allowed_fails() {
        let allowed = settings
            .allowed_fails_policy
            .as_ref()
            .and_then(|p| p.allowed_fails_for(f.class))
            .or(settings.allowed_fails)
            .unwrap_or(DEFAULT_ALLOWED_FAILS);
        return outcomes.failures > u64::from(allowed);
    }
    let single = group_size <= 1;
    let total = outcomes.total();
    let fail_rate = if total == 0 {
        0.0
    } else {
        outcomes.failures as f64 / total as f64
    };
    if f.status == 429 && !single {
        return true;
    }
    if outcomes.successes == 0 && total >= SINGLE_DEPLOYMENT_TRAFFIC_FAILURE_THRESHOLD {
        return true;
    }
    if fail_rate > FAILURE_THRESHOLD_PERCENT && total >= FAILURE_THRESHOLD_MIN_REQUESTS && !single {
        return true;
    }
    !status_is_retryable(f.status)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn o(successes: u64, failures: u64) -> MinuteOutcomes {
        MinuteOutcomes {
            successes,
            failures,
        }
    }

    fn f(status: u16, body: &str) -> Failure {
        Failure::from_response(status, body, None)
    }

    #[test]
    fn cooldown_table() {
        let s = RouterSettings::default();
        // (failure, group size, outcomes this minute, expected)
        let cases = [
            (f(429, ""), 2, o(10, 1), true),
            (f(429, ""), 1, o(10, 1), false),
            (f(401, ""), 1, o(0, 1), true),
            (f(404, ""), 1, o(0, 1), true),
            (f(400, "bad"), 3, o(0, 50), false),
            (f(400, "maximum context length"), 3, o(0, 50), false),
            (f(403, ""), 3, o(0, 50), false),
            (f(422, ""), 3, o(0, 50), false),
            (f(500, ""), 3, o(10, 1), false),
            (f(500, ""), 3, o(2, 3), true),
            (f(500, ""), 3, o(1, 3), false),
            (f(500, ""), 1, o(2, 3), false),
            (f(500, ""), 1, o(0, 1000), true),
            (Failure::timeout(), 3, o(10, 1), false),
            (Failure::timeout(), 3, o(0, 6), true),
            (Failure::connection(), 3, o(0, 100), false),
        ];
        for (fail, size, outcomes, want) in cases {
            assert_eq!(
                should_cooldown(&s, &fail, size, outcomes),
                want,
                "{fail:?} size={size} {outcomes:?}"
            );
        }
    }

    #[test]
    fn disable_cooldowns_wins() {
        let s = RouterSettings {
            disable_cooldowns: true,
            ..RouterSettings::default()
        };
        assert!(!should_cooldown(&s, &f(401, ""), 2, o(0, 1)));
        assert!(!should_cooldown(&s, &f(429, ""), 2, o(0, 1)));
    }

    #[test]
    fn legacy_allowed_fails_counts_failures_this_minute() {
        let s = RouterSettings {
            allowed_fails: Some(2),
            ..RouterSettings::default()
        };
        assert!(!should_cooldown(&s, &f(500, ""), 3, o(0, 2)));
        assert!(should_cooldown(&s, &f(500, ""), 3, o(0, 3)));
        // Even a 429 waits for the allowance under the legacy rule.
        assert!(!should_cooldown(&s, &f(429, ""), 3, o(0, 1)));
        // Statuses that never cool down stay exempt.
        assert!(!should_cooldown(&s, &f(400, ""), 3, o(0, 30)));

        let p: RouterSettings =
            serde_json::from_str(r#"{"allowed_fails_policy": {"RateLimitErrorAllowedFails": 0}}"#)
                .unwrap();
        assert!(should_cooldown(&p, &f(429, ""), 3, o(0, 1)));
        assert!(!should_cooldown(&p, &f(500, ""), 3, o(0, 3)));
        assert!(should_cooldown(&p, &f(500, ""), 3, o(0, 4)));
    }
}
