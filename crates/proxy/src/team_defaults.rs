//! What `/team/new` fills in, as LiteLLM does: `litellm_settings.default_team_params`
//! (`max_budget`, `tpm_limit`, `rpm_limit` and `organization_id` where the body leaves them out
//! or null; `budget_duration` only where it leaves it out, an explicit null being a budget that
//! never resets), then, while `max_budget` is still unset, the first
//! `litellm_settings.default_team_settings` entry's `max_budget` (LiteLLM's older setting).
//! `team_member_permissions` and `access_group_ids` among the defaults are not applied; they
//! are named at start-up.

use serde_json::{Map, Value};

use crate::config::inert::TEAM_DEFAULT_FIELDS;
use crate::config::{ConfigError, ProxyConfig, loose_number};

#[derive(Debug, Clone, Default)]
pub(crate) struct TeamDefaults {
    params: Map<String, Value>,
    legacy_max_budget: Option<f64>,
}

impl TeamDefaults {
    pub(crate) fn from_config(cfg: &ProxyConfig) -> Result<TeamDefaults, ConfigError> {
        let ls = &cfg.file.litellm_settings.extra;
        let invalid = |key: &str, message: String| crate::config::invalid(cfg, key, message);
        let params: Map<String, Value> = match ls.get("default_team_params") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m
                .iter()
                .filter(|(k, v)| TEAM_DEFAULT_FIELDS.contains(&k.as_str()) && !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            Some(_) => {
                return Err(invalid(
                    "litellm_settings.default_team_params",
                    "expected a mapping of /team/new fields".to_string(),
                ));
            }
        };
        // One field at a time: the budget fields are flattened, which loses the path.
        for (k, v) in &params {
            let one = Value::Object(Map::from_iter([(k.clone(), v.clone())]));
            if let Err(e) = serde_json::from_value::<idlehands_store::teams::NewTeamRequest>(one) {
                return Err(invalid(
                    &format!("litellm_settings.default_team_params.{k}"),
                    e.to_string(),
                ));
            }
        }
        let legacy_max_budget = match ls
            .get("default_team_settings")
            .and_then(Value::as_array)
            .and_then(|l| l.first())
            .and_then(|first| first.get("max_budget"))
        {
            None | Some(Value::Null) => None,
            Some(v) => Some(loose_number(v).filter(|n| *n >= 0.0).ok_or_else(|| {
                invalid(
                    "litellm_settings.default_team_settings[0].max_budget",
                    "expected a number of USD, 0 or more".to_string(),
                )
            })?),
        };
        Ok(TeamDefaults {
            params,
            legacy_max_budget,
        })
    }

    /// Fills a `/team/new` body in place.
    pub(crate) fn apply(&self, body: &mut Map<String, Value>) {
        for (k, v) in &self.params {
            let unset = match body.get(k.as_str()) {
                None => true,
                // An explicit null window is a budget that never resets.
                Some(Value::Null) => k != "budget_duration",
                Some(_) => false,
            };
            if unset {
                body.insert(k.clone(), v.clone());
            }
        }
        if let Some(b) = self.legacy_max_budget
            && body.get("max_budget").is_none_or(Value::is_null)
        {
            body.insert("max_budget".into(), Value::from(b));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn defaults(yaml: &str) -> Result<TeamDefaults, ConfigError> {
        let cfg =
            ProxyConfig::from_yaml(yaml, "c.yaml", &|_| None).unwrap_or_else(|e| panic!("{e}"));
        TeamDefaults::from_config(&cfg)
    }

    fn applied(d: &TeamDefaults, body: Value) -> Value {
        let Value::Object(mut m) = body else {
            panic!("a body is an object")
        };
        d.apply(&mut m);
        Value::Object(m)
    }

    #[test]
    fn litellms_fields_and_order() {
        let d = defaults(
            "litellm_settings:
  default_team_params: {max_budget: 5, budget_duration: 30d, tpm_limit: 100, rpm_limit: 10, organization_id: o1, access_group_ids: [g]}
  default_team_settings: [{team_id: t0, max_budget: 7, success_callback: [langfuse]}]
",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            applied(&d, json!({"team_alias": "a"})),
            json!({"team_alias": "a", "max_budget": 5, "budget_duration": "30d", "tpm_limit": 100,
                   "rpm_limit": 10, "organization_id": "o1"})
        );
        // The body's own values win; an explicit null window stays null, other nulls are unset.
        assert_eq!(
            applied(
                &d,
                json!({"max_budget": 1, "budget_duration": null, "rpm_limit": null})
            ),
            json!({"max_budget": 1, "budget_duration": null, "tpm_limit": 100, "rpm_limit": 10,
                   "organization_id": "o1"})
        );
        // Without default_team_params, the older setting's budget.
        let legacy = defaults(
            "litellm_settings:\n  default_team_settings: [{team_id: t0, max_budget: 7}]\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(applied(&legacy, json!({})), json!({"max_budget": 7.0}));
        assert_eq!(
            applied(&legacy, json!({"max_budget": 2})),
            json!({"max_budget": 2})
        );
    }

    #[test]
    fn values_that_cannot_be_used_stop_the_start() {
        for (yaml, path) in [
            (
                "litellm_settings:\n  default_team_params: [1]\n",
                "litellm_settings.default_team_params",
            ),
            (
                "litellm_settings:\n  default_team_params: {tpm_limit: lots}\n",
                "litellm_settings.default_team_params.tpm_limit",
            ),
            (
                "litellm_settings:\n  default_team_settings: [{max_budget: -1}]\n",
                "litellm_settings.default_team_settings[0].max_budget",
            ),
        ] {
            match defaults(yaml) {
                Err(ConfigError::Invalid { path: p, .. }) => assert_eq!(p, path, "{yaml}"),
                other => panic!("{yaml}: expected a refusal, got {other:?}"),
            }
        }
    }
}
