//! LiteLLM's provider budget routing settings: `router_settings.provider_budget_config`
//! (provider -> `{budget_limit, time_period}`), `litellm_settings.tag_budget_config` (tag ->
//! `{max_budget, budget_duration}`; each section takes either spelling, as LiteLLM's budget
//! config does) and a deployment's `litellm_params.max_budget` with `budget_duration`.
//!
//! A value that cannot be enforced stops the start naming its field; LiteLLM fails only on a
//! provider without any config, and otherwise skips an entry without a limit or a window in
//! silence.

use idlehands_store::duration::LlmDuration;
use idlehands_store::money::usd_to_nanos;
use idlehands_store::{RouteBudget, RouteKind};
use serde_json::Value;

use super::{BadEntry, ConfigError, LitellmParams, ProxyConfig};

/// The configured provider and tag budgets, each list in name order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteBudgets {
    pub providers: Vec<RouteBudget>,
    pub tags: Vec<RouteBudget>,
}

impl RouteBudgets {
    /// The provider's budget, when it has one.
    pub fn provider(&self, provider: &str) -> Option<&RouteBudget> {
        self.providers.iter().find(|b| b.name == provider)
    }

    pub fn is_empty(&self) -> bool {
        self.providers.is_empty() && self.tags.is_empty()
    }
}

/// Both sections, checked (at load: see [`ProxyConfig::route_budgets`]).
pub(super) fn from_config(cfg: &ProxyConfig) -> Result<RouteBudgets, ConfigError> {
    let f = &cfg.file;
    let section = |path: &str, v: Option<&Value>, kind| {
        read_section(v, kind).map_err(|(at, why)| super::invalid(cfg, &format!("{path}{at}"), why))
    };
    Ok(RouteBudgets {
        providers: section(
            "router_settings.provider_budget_config",
            f.router_settings.extra.get("provider_budget_config"),
            RouteKind::Provider,
        )?,
        tags: section(
            "litellm_settings.tag_budget_config",
            f.litellm_settings.extra.get("tag_budget_config"),
            RouteKind::Tag,
        )?,
    })
}

/// A deployment's own budget (`id`: its deployment id): `None` without both `max_budget` and
/// `budget_duration` (the start-up notices name one set alone).
pub fn of_deployment(p: &LitellmParams, id: &str) -> Result<Option<RouteBudget>, BadEntry> {
    let (Some(max), Some(duration)) = (p.max_budget, p.budget_duration.as_deref()) else {
        return Ok(None);
    };
    let bad = |key: &str, message: String| BadEntry {
        path: format!("litellm_params.{key}"),
        message,
    };
    Ok(Some(RouteBudget::new(
        RouteKind::Deployment,
        id.to_owned(),
        money(max).map_err(|m| bad("max_budget", m))?,
        Some(window(duration).map_err(|m| bad("budget_duration", m))?),
    )))
}

fn money(usd: f64) -> Result<i64, String> {
    usd_to_nanos(usd)
        .filter(|n| *n >= 0 && usd >= 0.0)
        .ok_or_else(|| "must be a number of USD, 0 or more".to_string())
}

fn window(text: &str) -> Result<String, String> {
    let text = text.trim();
    match LlmDuration::parse(text) {
        Some(_) => Ok(text.to_owned()),
        None => Err(format!(
            "{text:?} is not a budget window (30s, 30m, 1h, 1d, 7d, 1mo, daily ...)"
        )),
    }
}

/// `(path under the section, why)` for the first entry that cannot be enforced.
fn read_section(v: Option<&Value>, kind: RouteKind) -> Result<Vec<RouteBudget>, (String, String)> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let Some(map) = v.as_object() else {
        return Err((
            String::new(),
            format!(
                "expected a map of {} names to {{budget_limit, time_period}}",
                kind.as_str()
            ),
        ));
    };
    let mut out = Vec::with_capacity(map.len());
    for (name, entry) in map {
        let at = |key: &str| format!(".{name}{key}");
        let Some(fields) = entry.as_object() else {
            return Err((at(""), "expected {budget_limit, time_period}".to_string()));
        };
        let field = |a: &str, b: &str| {
            fields
                .get(a)
                .or_else(|| fields.get(b))
                .filter(|v| !v.is_null())
        };
        let limit = field("budget_limit", "max_budget").ok_or_else(|| {
            (
                at(""),
                "budget_limit (or max_budget) is required".to_string(),
            )
        })?;
        let max_budget = super::loose_number(limit)
            .ok_or_else(|| "must be a number of USD, 0 or more".to_string())
            .and_then(money)
            .map_err(|m| (at(".budget_limit"), m))?;
        let duration = field("time_period", "budget_duration").ok_or_else(|| {
            (
                at(""),
                "time_period (or budget_duration) is required".to_string(),
            )
        })?;
        let budget_duration = duration
            .as_str()
            .ok_or_else(|| "must be a budget window such as 1d".to_string())
            .and_then(window)
            .map_err(|m| (at(".time_period"), m))?;
        out.push(RouteBudget::new(
            kind,
            name.clone(),
            max_budget,
            Some(budget_duration),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(yaml: &str) -> Result<RouteBudgets, ConfigError> {
        let env: HashMap<String, String> = HashMap::new();
        // Loading reads and checks them: a refusal stops the load itself.
        let cfg = ProxyConfig::from_yaml(yaml, "config.yaml", &move |k: &str| env.get(k).cloned())?;
        Ok(cfg.route_budgets)
    }

    #[test]
    fn both_spellings_are_read_in_order() {
        let b = load(
            "router_settings:\n  provider_budget_config:\n    openai: {budget_limit: 0.5, time_period: 1d}\n    anthropic: {max_budget: 100, budget_duration: 7d}\nlitellm_settings:\n  tag_budget_config:\n    product:chat-bot: {max_budget: 0.000000001, budget_duration: 1d}\n",
        )
        .unwrap();
        assert_eq!(b.providers.len(), 2);
        assert_eq!(b.providers[1].name, "openai");
        assert_eq!(b.providers[1].max_budget, Some(500_000_000));
        assert_eq!(b.providers[0].budget_duration.as_deref(), Some("7d"));
        assert_eq!(
            b.provider("anthropic").unwrap().max_budget,
            Some(100_000_000_000)
        );
        assert_eq!(b.tags[0].kind, RouteKind::Tag);
        assert_eq!(b.tags[0].name, "product:chat-bot");
        assert_eq!(b.tags[0].max_budget, Some(1));
        assert!(load("model_list: []\n").unwrap().is_empty());
    }

    #[test]
    fn what_cannot_be_enforced_names_its_field() {
        for (yaml, path, words) in [
            (
                "router_settings:\n  provider_budget_config:\n    openai: {time_period: 1d}\n",
                "router_settings.provider_budget_config.openai",
                "budget_limit (or max_budget) is required",
            ),
            (
                "router_settings:\n  provider_budget_config:\n    openai: {budget_limit: 1}\n",
                "router_settings.provider_budget_config.openai",
                "time_period (or budget_duration) is required",
            ),
            (
                "router_settings:\n  provider_budget_config:\n    openai: {budget_limit: -1, time_period: 1d}\n",
                "router_settings.provider_budget_config.openai.budget_limit",
                "0 or more",
            ),
            (
                "router_settings:\n  provider_budget_config:\n    openai: {budget_limit: 1, time_period: fortnight}\n",
                "router_settings.provider_budget_config.openai.time_period",
                "is not a budget window",
            ),
            (
                "router_settings:\n  provider_budget_config:\n    openai: 5\n",
                "router_settings.provider_budget_config.openai",
                "expected {budget_limit, time_period}",
            ),
            (
                "litellm_settings:\n  tag_budget_config: [a]\n",
                "litellm_settings.tag_budget_config",
                "expected a map of tag names",
            ),
        ] {
            match load(yaml) {
                Err(ConfigError::Invalid {
                    path: p, message, ..
                }) => {
                    assert_eq!(p, path, "{yaml}");
                    assert!(message.contains(words), "{yaml}: {message}");
                }
                other => panic!("{yaml}: expected a refusal, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_deployment_budget_needs_both_fields() {
        let mut p = LitellmParams {
            max_budget: Some(2.0),
            ..LitellmParams::default()
        };
        assert_eq!(of_deployment(&p, "d1").unwrap(), None);
        p.budget_duration = Some("30d".into());
        let b = of_deployment(&p, "d1").unwrap().unwrap();
        assert_eq!((b.kind, b.name.as_str()), (RouteKind::Deployment, "d1"));
        assert_eq!(b.max_budget, Some(2_000_000_000));
        p.budget_duration = Some("1 month".into());
        let bad = of_deployment(&p, "d1").unwrap_err();
        assert_eq!(bad.path, "litellm_params.budget_duration");
    }
}
