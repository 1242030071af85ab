//! `litellm_settings.key_generation_settings`: who may create keys, as LiteLLM decides it.
//! `team_key_generation` (a key with a `team_id`): the caller's role in the team must be among
//! `allowed_team_member_roles` (proxy admins always may); `personal_key_generation` (a key
//! without one): the caller's proxy role must be among `allowed_user_roles`. Either may list
//! `required_params` the request must carry. Refusals are LiteLLM's 400s, in its words.

use idlehands_store::StoreError;
use serde::Deserialize;

use crate::config::{ConfigError, ProxyConfig};
use crate::diagnostics::py_list;

#[derive(Debug, Clone, Default, Deserialize)]
struct Rule {
    allowed_team_member_roles: Option<Vec<String>>,
    allowed_user_roles: Option<Vec<String>>,
    required_params: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Settings {
    team_key_generation: Option<Rule>,
    personal_key_generation: Option<Rule>,
}

/// `None` inside: the setting is absent and nothing beyond the usual role checks applies.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyGenerationRules(Option<Settings>);

fn required(rule: &Rule, present: &dyn Fn(&str) -> bool) -> Result<(), StoreError> {
    for p in rule.required_params.iter().flatten() {
        if !present(p) {
            return Err(StoreError::bad_request(
                format!("Required param {p} not in data"),
                p.as_str(),
            ));
        }
    }
    Ok(())
}

impl KeyGenerationRules {
    pub(crate) fn from_config(cfg: &ProxyConfig) -> Result<KeyGenerationRules, ConfigError> {
        crate::config::litellm_section(cfg, "key_generation_settings").map(KeyGenerationRules)
    }

    /// A key for a team: `team_role` is the caller's role in it (`admin`, `user`); proxy
    /// admins are not asked. `present` says whether the request carries a field.
    pub(crate) fn check_team_key(
        &self,
        proxy_admin: bool,
        team_role: &str,
        present: &dyn Fn(&str) -> bool,
    ) -> Result<(), StoreError> {
        let Some(s) = &self.0 else { return Ok(()) };
        if proxy_admin {
            return Ok(());
        }
        let default = Rule {
            allowed_team_member_roles: Some(vec!["admin".into(), "user".into()]),
            ..Rule::default()
        };
        let rule = s.team_key_generation.as_ref().unwrap_or(&default);
        if let Some(allowed) = &rule.allowed_team_member_roles
            && !allowed.iter().any(|r| r == team_role)
        {
            return Err(StoreError::bad_request(
                format!(
                    "Team member role {team_role} not in allowed_team_member_roles={}",
                    py_list(allowed)
                ),
                "team_id",
            ));
        }
        required(rule, present)
    }

    /// A key of the caller's own: `role` is the caller's proxy role (`proxy_admin`, ...).
    pub(crate) fn check_personal_key(
        &self,
        role: &str,
        present: &dyn Fn(&str) -> bool,
    ) -> Result<(), StoreError> {
        let Some(rule) = self
            .0
            .as_ref()
            .and_then(|s| s.personal_key_generation.as_ref())
        else {
            return Ok(());
        };
        if let Some(allowed) = &rule.allowed_user_roles
            && !allowed.iter().any(|r| r == role)
        {
            return Err(StoreError::bad_request(
                format!(
                    "Personal key creation has been restricted by admin. Allowed roles={}. Your role={role}",
                    py_list(allowed)
                ),
                "user_id",
            ));
        }
        required(rule, present)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(yaml: &str) -> KeyGenerationRules {
        let cfg =
            ProxyConfig::from_yaml(yaml, "c.yaml", &|_| None).unwrap_or_else(|e| panic!("{e}"));
        KeyGenerationRules::from_config(&cfg).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn roles_and_required_params_decide_in_litellms_words() {
        let r = rules(
            "litellm_settings:
  key_generation_settings:
    team_key_generation: {allowed_team_member_roles: [admin], required_params: [tags]}
    personal_key_generation: {allowed_user_roles: [proxy_admin]}
",
        );
        let tags = |f: &str| f == "tags";
        let nothing = |_: &str| false;
        let msg = |r: Result<(), StoreError>| r.err().map(|e| e.to_string());
        assert_eq!(
            msg(r.check_team_key(false, "user", &tags)).as_deref(),
            Some("Team member role user not in allowed_team_member_roles=['admin']")
        );
        assert_eq!(
            msg(r.check_team_key(false, "admin", &nothing)).as_deref(),
            Some("Required param tags not in data")
        );
        assert!(r.check_team_key(false, "admin", &tags).is_ok());
        assert!(r.check_team_key(true, "none", &nothing).is_ok());
        assert_eq!(
            msg(r.check_personal_key("internal_user", &nothing)).as_deref(),
            Some(
                "Personal key creation has been restricted by admin. Allowed roles=['proxy_admin']. Your role=internal_user"
            )
        );
        assert!(r.check_personal_key("proxy_admin", &nothing).is_ok());
    }

    #[test]
    fn absent_settings_change_nothing_and_a_wrong_type_stops_start_up() {
        let r = rules("general_settings: {}\n");
        assert!(r.check_team_key(false, "user", &|_| false).is_ok());
        assert!(r.check_personal_key("internal_user", &|_| false).is_ok());
        let cfg = ProxyConfig::from_yaml(
            "litellm_settings:\n  key_generation_settings:\n    personal_key_generation: {allowed_user_roles: proxy_admin}\n",
            "c.yaml",
            &|_| None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let e = KeyGenerationRules::from_config(&cfg)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(
                "c.yaml: litellm_settings.key_generation_settings.personal_key_generation.allowed_user_roles: invalid type: string \"proxy_admin\", expected a sequence"
            )
        );
    }
}
