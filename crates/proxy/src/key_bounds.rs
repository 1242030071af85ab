//! `litellm_settings.default_key_generate_params` and `upperbound_key_generate_params`, as
//! LiteLLM applies them to `/key/generate`: defaults fill what the request leaves out
//! (`models` and `metadata` when empty), then the upper bounds fill what is still unset and
//! refuse a value over them (LiteLLM's 400 and words). Updates and regenerations are checked
//! against the bounds too. Unlike LiteLLM, an update that removes a bounded limit (`null`)
//! is refused as well: it would lift the key above the bound.

use idlehands_store::StoreError;
use idlehands_store::duration::LlmDuration;
use idlehands_store::types::{GenerateKeyRequest, JsonMap, UpdateKeyRequest};
use serde::Deserialize;

use crate::config::{ConfigError, ProxyConfig};

/// Fields other than these are named at start-up (`crate::config::inert`).
#[derive(Debug, Clone, Default, Deserialize)]
struct Defaults {
    max_budget: Option<f64>,
    user_id: Option<String>,
    team_id: Option<String>,
    max_parallel_requests: Option<i64>,
    tpm_limit: Option<i64>,
    rpm_limit: Option<i64>,
    budget_duration: Option<String>,
    duration: Option<String>,
    models: Option<Vec<String>>,
    metadata: Option<JsonMap>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Upper {
    max_budget: Option<f64>,
    budget_duration: Option<String>,
    duration: Option<String>,
    max_parallel_requests: Option<i64>,
    tpm_limit: Option<i64>,
    rpm_limit: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct KeyBounds {
    defaults: Option<Defaults>,
    upper: Option<Upper>,
}

/// A duration's length in seconds (`-1`: never ends), for comparing with a bound.
fn seconds(text: &str) -> Option<u64> {
    if text.trim() == "-1" {
        return Some(u64::MAX);
    }
    LlmDuration::parse(text).map(LlmDuration::approx_seconds)
}

/// Python's `str()` of a float, as LiteLLM's message shows numbers.
fn py_float(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e16 {
        format!("{v:.1}")
    } else {
        v.to_string()
    }
}

fn over(field: &str, value: &str, max: &str) -> StoreError {
    StoreError::bad_request(
        format!("{field} is over max limit set in config - user_value={value}; max_value={max}"),
        field,
    )
}

impl KeyBounds {
    pub(crate) fn from_config(cfg: &ProxyConfig) -> Result<KeyBounds, ConfigError> {
        let defaults: Option<Defaults> =
            crate::config::litellm_section(cfg, "default_key_generate_params")?;
        let upper: Option<Upper> =
            crate::config::litellm_section(cfg, "upperbound_key_generate_params")?;
        let bad_duration = |section: &str, field: &str| ConfigError::Invalid {
            file: cfg.source.clone(),
            path: format!("litellm_settings.{section}.{field}"),
            message: "not a duration (30s, 30m, 30h, 30d, 1mo, ...)".to_string(),
        };
        for (section, field, v) in [
            (
                "default_key_generate_params",
                "duration",
                defaults.as_ref().and_then(|d| d.duration.as_deref()),
            ),
            (
                "default_key_generate_params",
                "budget_duration",
                defaults.as_ref().and_then(|d| d.budget_duration.as_deref()),
            ),
            (
                "upperbound_key_generate_params",
                "duration",
                upper.as_ref().and_then(|u| u.duration.as_deref()),
            ),
            (
                "upperbound_key_generate_params",
                "budget_duration",
                upper.as_ref().and_then(|u| u.budget_duration.as_deref()),
            ),
        ] {
            if v.is_some_and(|v| seconds(v).is_none()) {
                return Err(bad_duration(section, field));
            }
        }
        Ok(KeyBounds { defaults, upper })
    }

    /// `/key/generate`: the defaults, then the bounds (filling what is still unset).
    pub(crate) fn apply_to_new(&self, req: &mut GenerateKeyRequest) -> Result<(), StoreError> {
        if let Some(d) = &self.defaults {
            fill(&mut req.max_budget, &d.max_budget);
            fill(&mut req.user_id, &d.user_id);
            fill(&mut req.team_id, &d.team_id);
            fill(&mut req.max_parallel_requests, &d.max_parallel_requests);
            fill(&mut req.tpm_limit, &d.tpm_limit);
            fill(&mut req.rpm_limit, &d.rpm_limit);
            fill(&mut req.budget_duration, &d.budget_duration);
            fill(&mut req.duration, &d.duration);
            if req.models.as_ref().is_none_or(Vec::is_empty) && d.models.is_some() {
                req.models.clone_from(&d.models);
            }
            if req.metadata.as_ref().is_none_or(JsonMap::is_empty) && d.metadata.is_some() {
                req.metadata.clone_from(&d.metadata);
            }
        }
        let Some(u) = &self.upper else {
            return Ok(());
        };
        fill(&mut req.max_budget, &u.max_budget);
        fill(&mut req.budget_duration, &u.budget_duration);
        fill(&mut req.duration, &u.duration);
        fill(&mut req.max_parallel_requests, &u.max_parallel_requests);
        fill(&mut req.tpm_limit, &u.tpm_limit);
        fill(&mut req.rpm_limit, &u.rpm_limit);
        self.check(&Asked {
            max_budget: req.max_budget.map(Some),
            budget_duration: req.budget_duration.clone().map(Some),
            duration: req.duration.clone().map(Some),
            max_parallel_requests: req.max_parallel_requests.map(Some),
            tpm_limit: req.tpm_limit.map(Some),
            rpm_limit: req.rpm_limit.map(Some),
        })
    }

    /// `/key/update`, `/key/regenerate`: the values the change sets, against the bounds.
    pub(crate) fn check_change(&self, req: &UpdateKeyRequest) -> Result<(), StoreError> {
        if self.upper.is_none() {
            return Ok(());
        }
        self.check(&Asked {
            max_budget: req.max_budget,
            budget_duration: req.budget_duration.clone(),
            duration: req.duration.clone(),
            max_parallel_requests: req.max_parallel_requests,
            tpm_limit: req.tpm_limit,
            rpm_limit: req.rpm_limit,
        })
    }

    fn check(&self, a: &Asked) -> Result<(), StoreError> {
        let Some(u) = &self.upper else {
            return Ok(());
        };
        let removed = |field: &str, max: String| {
            StoreError::bad_request(
                format!(
                    "{field} cannot be removed: upperbound_key_generate_params sets max_value={max}"
                ),
                field,
            )
        };
        if let (Some(max), Some(v)) = (u.max_budget, a.max_budget) {
            match v {
                None => return Err(removed("max_budget", py_float(max))),
                Some(v) if v > max => return Err(over("max_budget", &py_float(v), &py_float(max))),
                Some(_) => {}
            }
        }
        for (field, max, v) in [
            (
                "max_parallel_requests",
                u.max_parallel_requests,
                a.max_parallel_requests,
            ),
            ("tpm_limit", u.tpm_limit, a.tpm_limit),
            ("rpm_limit", u.rpm_limit, a.rpm_limit),
        ] {
            if let (Some(max), Some(v)) = (max, v) {
                match v {
                    None => return Err(removed(field, max.to_string())),
                    Some(v) if v > max => {
                        return Err(over(field, &v.to_string(), &max.to_string()));
                    }
                    Some(_) => {}
                }
            }
        }
        for (field, max, v) in [
            ("budget_duration", &u.budget_duration, &a.budget_duration),
            ("duration", &u.duration, &a.duration),
        ] {
            if let (Some(max), Some(v)) = (max, v) {
                let limit = seconds(max).unwrap_or(u64::MAX);
                match v {
                    None => return Err(removed(field, max.clone())),
                    Some(v) => {
                        let asked = seconds(v).ok_or_else(|| {
                            StoreError::bad_request(
                                format!("{field} is not a duration (30s, 30m, 30h, 30d, 1mo, ...): {v:?}"),
                                field,
                            )
                        })?;
                        if asked > limit {
                            return Err(over(field, v, max));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// The bounded fields a request asks for: `Some(None)` removes the limit.
#[derive(Default)]
struct Asked {
    max_budget: Option<Option<f64>>,
    budget_duration: Option<Option<String>>,
    duration: Option<Option<String>>,
    max_parallel_requests: Option<Option<i64>>,
    tpm_limit: Option<Option<i64>>,
    rpm_limit: Option<Option<i64>>,
}

fn fill<T: Clone>(field: &mut Option<T>, default: &Option<T>) {
    if field.is_none() {
        field.clone_from(default);
    }
}

/// The configured value of a section, for tests that build one.
#[cfg(test)]
fn from_yaml(yaml: &str) -> Result<KeyBounds, ConfigError> {
    let cfg = ProxyConfig::from_yaml(yaml, "c.yaml", &|_| None)?;
    KeyBounds::from_config(&cfg)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn bounds(yaml: &str) -> KeyBounds {
        from_yaml(yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    fn message(e: StoreError) -> String {
        e.to_string()
    }

    #[test]
    fn defaults_fill_then_bounds_fill_and_refuse() {
        let b = bounds(
            "litellm_settings:
  default_key_generate_params: {max_budget: 5, models: [m1], metadata: {tier: free}, duration: 7d}
  upperbound_key_generate_params: {max_budget: 10, rpm_limit: 100, duration: 30d, budget_duration: 1mo}
",
        );
        let mut req = GenerateKeyRequest::default();
        b.apply_to_new(&mut req).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(req.max_budget, Some(5.0));
        assert_eq!(req.models, Some(vec!["m1".to_string()]));
        assert_eq!(
            req.metadata.as_ref().and_then(|m| m.get("tier")),
            Some(&Value::from("free"))
        );
        assert_eq!(req.duration.as_deref(), Some("7d"));
        assert_eq!(req.rpm_limit, Some(100));
        assert_eq!(req.budget_duration.as_deref(), Some("1mo"));

        let mut req = GenerateKeyRequest {
            max_budget: Some(11.0),
            ..GenerateKeyRequest::default()
        };
        assert_eq!(
            b.apply_to_new(&mut req).err().map(message).as_deref(),
            Some("max_budget is over max limit set in config - user_value=11.0; max_value=10.0")
        );
        let mut req = GenerateKeyRequest {
            duration: Some("-1".into()),
            ..GenerateKeyRequest::default()
        };
        assert_eq!(
            b.apply_to_new(&mut req).err().map(message).as_deref(),
            Some("duration is over max limit set in config - user_value=-1; max_value=30d")
        );
        let mut req = GenerateKeyRequest {
            rpm_limit: Some(101),
            ..GenerateKeyRequest::default()
        };
        assert_eq!(
            b.apply_to_new(&mut req).err().map(message).as_deref(),
            Some("rpm_limit is over max limit set in config - user_value=101; max_value=100")
        );
    }

    #[test]
    fn changes_are_checked_and_removing_a_bounded_limit_is_refused() {
        let b = bounds(
            "litellm_settings:\n  upperbound_key_generate_params: {max_budget: 10, budget_duration: 30d}\n",
        );
        let ok = UpdateKeyRequest {
            max_budget: Some(Some(9.5)),
            budget_duration: Some(Some("1d".into())),
            ..UpdateKeyRequest::default()
        };
        assert!(b.check_change(&ok).is_ok());
        let untouched = UpdateKeyRequest::default();
        assert!(b.check_change(&untouched).is_ok());
        let cleared = UpdateKeyRequest {
            max_budget: Some(None),
            ..UpdateKeyRequest::default()
        };
        assert_eq!(
            b.check_change(&cleared).err().map(message).as_deref(),
            Some(
                "max_budget cannot be removed: upperbound_key_generate_params sets max_value=10.0"
            )
        );
        let longer = UpdateKeyRequest {
            budget_duration: Some(Some("1mo".into())),
            ..UpdateKeyRequest::default()
        };
        assert_eq!(
            b.check_change(&longer).err().map(message).as_deref(),
            Some("budget_duration is over max limit set in config - user_value=1mo; max_value=30d")
        );
    }

    #[test]
    fn a_wrong_section_is_a_start_up_error_naming_the_field() {
        for (yaml, want) in [
            (
                "litellm_settings:\n  upperbound_key_generate_params: {max_budget: lots}\n",
                "c.yaml: litellm_settings.upperbound_key_generate_params.max_budget: invalid type: string \"lots\", expected f64",
            ),
            (
                "litellm_settings:\n  upperbound_key_generate_params: {budget_duration: often}\n",
                "c.yaml: litellm_settings.upperbound_key_generate_params.budget_duration: not a duration (30s, 30m, 30h, 30d, 1mo, ...)",
            ),
        ] {
            let e = from_yaml(yaml).err().map(|e| e.to_string());
            assert_eq!(e.as_deref(), Some(want), "{yaml}");
        }
    }
}
