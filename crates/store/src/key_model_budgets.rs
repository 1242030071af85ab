//! A key's per-model budgets (LiteLLM's `model_max_budget`): `{"<entry>": {"budget_limit": USD,
//! "time_period": "1d"}}`, where an entry names a model, a model access group or a glob
//! (`claude-*`) and the proxy picks the entry a call counts against. Each entry is a budget
//! row and a limiter level named `keymodel:<token>:<entry>` (see [`crate::entities`]), so its
//! spend is committed with the call's row, its window rolls like any budget's, and a fleet
//! shares its counters; the row follows the key (regenerated: renamed; deleted: removed).

use chrono::{DateTime, Utc};

use crate::budgets::Budget;
use crate::duration::LlmDuration;
use crate::error::StoreError;
use crate::money::usd_to_nanos;
use crate::types::JsonMap;

pub(crate) const PREFIX: &str = "keymodel:";
/// The limiter's name for a key's rate limits on one model (`model_rpm_limit`,
/// `model_tpm_limit`): `keymodelrate:<token>:<model>`; counters only, no budget row.
pub(crate) const RATE_PREFIX: &str = "keymodelrate:";

/// The entity of `entry` of the key `token`.
pub fn entity(token: &str, entry: &str) -> String {
    format!("{PREFIX}{token}:{entry}")
}

/// Deletes the entry rows of every key whose `column` is `$1` (a team's or a user's keys,
/// deleted with it), before the keys themselves go.
pub(crate) fn delete_rows_of_keys_by(column: &str) -> String {
    format!(
        "DELETE FROM idlehands_budgets WHERE entity LIKE '{PREFIX}%' AND substr(entity, {}, 64) \
         IN (SELECT token FROM idlehands_verification_tokens WHERE {column} = $1)",
        PREFIX.len() + 1
    )
}

/// Whether a stored `model_max_budget` (JSON text) names any entry.
pub(crate) fn has_entries(stored: &str) -> bool {
    !matches!(stored.trim(), "" | "{}")
}

/// The `LIKE` pattern of every entry's entity of the key (a token is hex: no wildcards).
pub(crate) fn entities_like(token: &str) -> String {
    format!("{PREFIX}{token}:%")
}

/// The limiter's view of a key's rate limits on a model (`id`: `<token>:<model>`).
pub(crate) fn rate_limits(id: &str, rpm: Option<u64>, tpm: Option<u64>) -> crate::KeyLimits {
    crate::KeyLimits {
        token: format!("{RATE_PREFIX}{id}"),
        key_alias: None,
        key_name: id.to_owned(),
        spend: 0,
        max_budget: None,
        budget_duration: None,
        budget_reset_at: None,
        rpm_limit: rpm,
        tpm_limit: tpm,
        max_parallel_requests: None,
    }
}

/// A key's `model_rpm_limit` or `model_tpm_limit` for `model`, where LiteLLM looks: the key's
/// metadata map when it has one, else the `rpm_limit` / `tpm_limit` of the key's
/// `model_max_budget` entry named after the model, else the team's metadata map.
pub fn model_limit(
    metadata: &JsonMap,
    model_max_budget: &JsonMap,
    team_metadata: Option<&JsonMap>,
    field: &str,
    model: &str,
) -> Option<u64> {
    let map_of = |md: &JsonMap| {
        md.get(field)
            .and_then(|v| v.as_object())
            .filter(|m| !m.is_empty())
            .cloned()
    };
    if let Some(own) = map_of(metadata) {
        return own.get(model)?.as_u64();
    }
    let budget_field = if field == "model_rpm_limit" {
        "rpm_limit"
    } else {
        "tpm_limit"
    };
    let from_budgets: JsonMap = model_max_budget
        .iter()
        .filter_map(|(m, b)| Some((m.clone(), b.get(budget_field)?.clone())))
        .filter(|(_, v)| !v.is_null())
        .collect();
    if !from_budgets.is_empty() {
        return from_budgets.get(model)?.as_u64();
    }
    team_metadata.and_then(map_of)?.get(model)?.as_u64()
}

/// Checks a `model_rpm_limit` / `model_tpm_limit` map: model names to whole numbers >= 0.
pub fn check_model_limits(map: &JsonMap, field: &str) -> Result<(), StoreError> {
    for (model, v) in map {
        if v.as_u64().is_none() {
            return Err(StoreError::bad_request(
                format!("{field}.{model} must be a whole number >= 0"),
                format!("{field}.{model}"),
            ));
        }
    }
    Ok(())
}

/// One entry's budget: its limit (nano-USD) and window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelBudget {
    pub entry: String,
    pub max_budget: i64,
    pub budget_duration: Option<String>,
}

impl ModelBudget {
    /// The budget row of a new window starting now.
    pub(crate) fn budget(&self, token: &str, now: DateTime<Utc>) -> Budget {
        Budget {
            entity: entity(token, &self.entry),
            max_budget: Some(self.max_budget),
            budget_duration: self.budget_duration.clone(),
            budget_reset_at: self
                .budget_duration
                .as_deref()
                .and_then(LlmDuration::parse)
                .map(|d| d.next_reset(now)),
            ..Budget::default()
        }
    }
}

/// The entries of a `model_max_budget` map, checked: each an object with `budget_limit` (or
/// LiteLLM's other name for it, `max_budget`), a number >= 0, and optionally `time_period`
/// (or `budget_duration`), a duration. Anything else is refused, naming the entry.
pub fn parse(map: &JsonMap) -> Result<Vec<ModelBudget>, StoreError> {
    let mut out = Vec::with_capacity(map.len());
    for (entry, config) in map {
        let field = format!("model_max_budget.{entry}");
        let bad = |why: &str| StoreError::bad_request(format!("{field}: {why}"), field.clone());
        if entry.trim().is_empty() {
            return Err(bad("the model name is empty"));
        }
        let Some(config) = config.as_object() else {
            return Err(bad(
                "must be an object such as {\"budget_limit\": 10.0, \"time_period\": \"30d\"}",
            ));
        };
        let mut limit = None;
        let mut period = None;
        for (name, value) in config {
            match name.as_str() {
                "budget_limit" | "max_budget" => {
                    let usd = value
                        .as_f64()
                        .filter(|v| *v >= 0.0)
                        .ok_or_else(|| bad(&format!("{name} must be a number >= 0")))?;
                    limit = Some(
                        usd_to_nanos(usd).ok_or_else(|| bad(&format!("{name} is too large")))?,
                    );
                }
                "time_period" | "budget_duration" => {
                    if value.is_null() {
                        continue;
                    }
                    let text = value
                        .as_str()
                        .ok_or_else(|| bad(&format!("{name} must be a duration such as 30d")))?;
                    LlmDuration::parse_field(text, &format!("{field}.{name}"))?;
                    period = Some(text.to_owned());
                }
                // The model's rate limits (LiteLLM reads them when the key's metadata has no
                // `model_rpm_limit` / `model_tpm_limit`): see [`model_limit`].
                "rpm_limit" | "tpm_limit" => {
                    if !value.is_null() && value.as_u64().is_none() {
                        return Err(bad(&format!("{name} must be a whole number >= 0")));
                    }
                }
                other => {
                    return Err(bad(&format!(
                        "unknown field {other:?}: an entry has budget_limit, time_period, rpm_limit and tpm_limit"
                    )));
                }
            }
        }
        // An entry of rate limits alone budgets nothing.
        let Some(max_budget) = limit else {
            if config.contains_key("rpm_limit") || config.contains_key("tpm_limit") {
                continue;
            }
            return Err(bad("budget_limit is required"));
        };
        out.push(ModelBudget {
            entry: entry.clone(),
            max_budget,
            budget_duration: period,
        });
    }
    Ok(out)
}

/// Makes the key's entry rows match `budgets` inside the caller's transaction: new entries
/// start a window now, an entry whose window length is unchanged keeps its window and spend,
/// entries no longer listed are removed. `had` says whether the key had entries before: a key
/// that had none and has none (most keys) costs no statement, since the rows are found by a
/// `LIKE` that no index serves.
macro_rules! sync_key_model_budgets {
    ($tx:expr, $token:expr, $budgets:expr, $had:expr, $now:expr) => {{
        let token: &str = $token;
        let budgets: &[$crate::key_model_budgets::ModelBudget] = $budgets;
        let now: chrono::DateTime<chrono::Utc> = $now;
        if $had || !budgets.is_empty() {
            let rows = sqlx::query(
                "SELECT entity, budget_duration, budget_reset_at FROM idlehands_budgets \
             WHERE entity LIKE $1",
            )
            .bind($crate::key_model_budgets::entities_like(token))
            .fetch_all(&mut *$tx)
            .await?;
            let mut kept: std::collections::HashMap<String, (Option<String>, Option<i64>)> =
                std::collections::HashMap::new();
            for r in &rows {
                kept.insert(
                    r.try_get("entity")?,
                    (r.try_get("budget_duration")?, r.try_get("budget_reset_at")?),
                );
            }
            for b in budgets {
                let mut budget = b.budget(token, now);
                if let Some((duration, reset_at)) = kept.remove(&budget.entity)
                    && duration == budget.budget_duration
                {
                    budget.budget_reset_at = reset_at.map($crate::db::from_ms);
                }
                $crate::budgets::put_budget!($tx, &budget, $crate::db::to_ms(now));
            }
            for (gone, _) in kept {
                sqlx::query("DELETE FROM idlehands_budgets WHERE entity = $1")
                    .bind(gone)
                    .execute(&mut *$tx)
                    .await?;
            }
        }
    }};
}
pub(crate) use sync_key_model_budgets;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: serde_json::Value) -> JsonMap {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn entries_are_checked_and_read_under_either_name() {
        let got = parse(&map(json!({
            "gpt-4o": {"budget_limit": 0.5, "time_period": "1d", "rpm_limit": 3},
            "claude-*": {"max_budget": 2, "budget_duration": null},
            "llama": {"tpm_limit": 100},
        })))
        .unwrap_or_default();
        assert_eq!(
            got,
            [
                ModelBudget {
                    entry: "claude-*".into(),
                    max_budget: 2_000_000_000,
                    budget_duration: None,
                },
                ModelBudget {
                    entry: "gpt-4o".into(),
                    max_budget: 500_000_000,
                    budget_duration: Some("1d".into()),
                },
            ]
        );
        for (bad, says) in [
            (json!({"m": 5}), "must be an object"),
            (
                json!({"m": {"time_period": "1d"}}),
                "budget_limit is required",
            ),
            (json!({"m": {"budget_limit": -1}}), "must be a number >= 0"),
            (
                json!({"m": {"budget_limit": 1, "time_period": "soon"}}),
                "Invalid",
            ),
            (json!({"m": {"budget_limit": 1, "tpm": 5}}), "unknown field"),
            (
                json!({"m": {"rpm_limit": -2}}),
                "rpm_limit must be a whole number",
            ),
            (json!({" ": {"budget_limit": 1}}), "empty"),
        ] {
            let e = parse(&map(bad.clone())).err().map(|e| e.to_string());
            assert!(
                e.as_deref().is_some_and(|e| e.contains(says)),
                "{bad}: {e:?}"
            );
        }
    }

    #[test]
    fn entities_name_the_key_and_the_entry() {
        let e = entity("abc", "bedrock/us.x:0");
        assert_eq!(e, "keymodel:abc:bedrock/us.x:0");
        assert!(e.starts_with(&entity("abc", "")));
        assert!(!e.starts_with(&entity("ab", "")));
        assert!(crate::entities::is_entity(&e));
    }
}
