//! What `/user/new` fills in, as LiteLLM does: `litellm_settings.default_internal_user_params`
//! for every user not created as a proxy admin (a field the body leaves out or null, and
//! `models` when empty), then, for a user created as `internal_user`,
//! `max_internal_user_budget` and `internal_user_budget_duration` where the budget is still
//! unset. `teams` among the defaults is not applied (LiteLLM drops it too; named at start-up);
//! `available_teams` are the teams a user may join on their own (`/team/available`, and
//! `/team/member_add` of themselves).

use idlehands_store::duration::LlmDuration;
use serde_json::{Map, Value};

use crate::config::inert::USER_DEFAULT_FIELDS;
use crate::config::{ConfigError, ProxyConfig, loose_number};

#[derive(Debug, Clone, Default)]
pub(crate) struct UserDefaults {
    params: Map<String, Value>,
    max_budget: Option<f64>,
    budget_duration: Option<String>,
    /// `default_internal_user_params.available_teams`.
    available_teams: Vec<String>,
}

impl UserDefaults {
    pub(crate) fn from_config(cfg: &ProxyConfig) -> Result<UserDefaults, ConfigError> {
        let ls = &cfg.file.litellm_settings.extra;
        let invalid = |key: &str, message: &str| ConfigError::Invalid {
            file: cfg.source.clone(),
            path: format!("litellm_settings.{key}"),
            message: message.to_string(),
        };
        let params = match ls.get("default_internal_user_params") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m
                .iter()
                .filter(|(k, _)| USER_DEFAULT_FIELDS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            Some(_) => {
                return Err(invalid(
                    "default_internal_user_params",
                    "expected a mapping of /user/new fields",
                ));
            }
        };
        if let Err(e) = serde_path_to_error::deserialize::<_, idlehands_store::users::NewUserRequest>(
            Value::Object(params.clone()),
        ) {
            return Err(invalid(
                &format!("default_internal_user_params.{}", e.path()),
                &e.inner().to_string(),
            ));
        }
        let available_teams = match ls
            .get("default_internal_user_params")
            .and_then(|p| p.get("available_teams"))
        {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|t| t.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    invalid(
                        "default_internal_user_params.available_teams",
                        "expected a list of team ids",
                    )
                })?,
            Some(_) => {
                return Err(invalid(
                    "default_internal_user_params.available_teams",
                    "expected a list of team ids",
                ));
            }
        };
        let max_budget =
            match ls.get("max_internal_user_budget") {
                None | Some(Value::Null) => None,
                Some(v) => Some(loose_number(v).ok_or_else(|| {
                    invalid("max_internal_user_budget", "expected a number of USD")
                })?),
            };
        let budget_duration = match ls.get("internal_user_budget_duration") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if LlmDuration::parse(s).is_some() => Some(s.clone()),
            Some(_) => {
                return Err(invalid(
                    "internal_user_budget_duration",
                    "not a duration (30s, 30m, 30h, 30d, 1mo, ...)",
                ));
            }
        };
        Ok(UserDefaults {
            params,
            max_budget,
            budget_duration,
            available_teams,
        })
    }

    /// The teams a user may join on their own.
    pub(crate) fn available_teams(&self) -> &[String] {
        &self.available_teams
    }

    /// Fills a `/user/new` body in place.
    pub(crate) fn apply(&self, body: &mut Map<String, Value>) {
        let asked_role = body
            .get("user_role")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if asked_role.as_deref() != Some("proxy_admin") {
            for (k, v) in &self.params {
                let unset = match body.get(k) {
                    None | Some(Value::Null) => true,
                    Some(Value::Array(a)) => k == "models" && a.is_empty(),
                    Some(_) => false,
                };
                if unset {
                    body.insert(k.clone(), v.clone());
                }
            }
        }
        // As LiteLLM: by the role the request asked for, not one a default gave.
        if asked_role.as_deref() == Some("internal_user") {
            if let Some(b) = self.max_budget
                && body.get("max_budget").is_none_or(Value::is_null)
            {
                body.insert("max_budget".into(), Value::from(b));
            }
            if let Some(d) = &self.budget_duration
                && body.get("budget_duration").is_none_or(Value::is_null)
            {
                body.insert("budget_duration".into(), Value::from(d.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn defaults(yaml: &str) -> UserDefaults {
        let cfg =
            ProxyConfig::from_yaml(yaml, "c.yaml", &|_| None).unwrap_or_else(|e| panic!("{e}"));
        UserDefaults::from_config(&cfg).unwrap_or_else(|e| panic!("{e}"))
    }

    fn applied(d: &UserDefaults, body: Value) -> Value {
        let Value::Object(mut m) = body else {
            panic!("a body is an object")
        };
        d.apply(&mut m);
        Value::Object(m)
    }

    #[test]
    fn litellms_order_and_conditions() {
        let d = defaults(
            "litellm_settings:
  default_internal_user_params: {user_role: internal_user_viewer, models: [m1], max_budget: 3, available_teams: [t]}
  max_internal_user_budget: 10
  internal_user_budget_duration: 1mo
",
        );
        // Nothing asked: the defaults, and no internal-user budget (the role was not asked).
        assert_eq!(
            applied(&d, json!({"user_id": "a"})),
            json!({"user_id": "a", "user_role": "internal_user_viewer", "models": ["m1"], "max_budget": 3})
        );
        // An internal user: the defaults' budget first, then the duration.
        assert_eq!(
            applied(&d, json!({"user_role": "internal_user", "models": []})),
            json!({"user_role": "internal_user", "models": ["m1"], "max_budget": 3, "budget_duration": "1mo"})
        );
        // A proxy admin gets no defaults.
        assert_eq!(
            applied(&d, json!({"user_role": "proxy_admin"})),
            json!({"user_role": "proxy_admin"})
        );
        let only_budget = defaults("litellm_settings:\n  max_internal_user_budget: '10'\n");
        assert_eq!(
            applied(
                &only_budget,
                json!({"user_role": "internal_user", "max_budget": 2})
            ),
            json!({"user_role": "internal_user", "max_budget": 2})
        );
        assert_eq!(
            applied(&only_budget, json!({"user_role": "internal_user"})),
            json!({"user_role": "internal_user", "max_budget": 10.0})
        );
    }

    #[test]
    fn wrong_values_stop_start_up() {
        for (yaml, want) in [
            (
                "litellm_settings:\n  max_internal_user_budget: lots\n",
                "c.yaml: litellm_settings.max_internal_user_budget: expected a number of USD",
            ),
            (
                "litellm_settings:\n  default_internal_user_params: {models: m1}\n",
                "c.yaml: litellm_settings.default_internal_user_params.models: invalid type: string \"m1\", expected a sequence",
            ),
            (
                "litellm_settings:\n  internal_user_budget_duration: often\n",
                "c.yaml: litellm_settings.internal_user_budget_duration: not a duration (30s, 30m, 30h, 30d, 1mo, ...)",
            ),
        ] {
            let cfg =
                ProxyConfig::from_yaml(yaml, "c.yaml", &|_| None).unwrap_or_else(|e| panic!("{e}"));
            let e = UserDefaults::from_config(&cfg).err().map(|e| e.to_string());
            assert_eq!(e.as_deref(), Some(want));
        }
    }
}
