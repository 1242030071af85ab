//! The ledger's side of keys' per-model budgets (`crate::key_model_budgets`): each entry's
//! budget as the limiter enforces it, read once and kept like the other levels' views.

use std::time::Instant;

use serde_json::json;

use crate::budgets::Budget;
use crate::error::{AccessError, StoreError};
use crate::key_model_budgets::{self, ModelBudget};
use crate::ledger::Ledger;
use crate::money::nanos_to_usd;
use crate::types::JsonMap;
use crate::types::KeyRecord;

impl Ledger {
    /// The budget of `entry` of the key's `model_max_budget` (`None`: no such entry): the
    /// limit and window length as configured, the spend and window as the store keeps them.
    pub(crate) async fn key_model_budget(
        &self,
        record: &KeyRecord,
        entry: &str,
    ) -> Result<Option<Budget>, AccessError> {
        // A key's change drops its entries from the cache (`Ledger::invalidate`), so a kept
        // one still matches the key's configuration: only a miss reads it.
        let entity = key_model_budgets::entity(&record.token, entry);
        let cached = self.key_models_cache().read().get(&entity).cloned();
        if let Some((at, b)) = &cached
            && at.elapsed() < self.config().cache_ttl
        {
            return Ok(Some(b.clone()));
        }
        let Some(config) = configured(record, entry) else {
            return Ok(None);
        };
        let now = self.config().clock.now();
        let budget = match self.store().get_budget(&entity).await {
            Ok(Some(mut row)) => {
                row.max_budget = Some(config.max_budget);
                row.budget_duration = config.budget_duration.clone();
                row
            }
            Ok(None) => config.budget(&record.token, now),
            Err(e) => {
                tracing::warn!(error = %e, "a key's model budget could not be read");
                return match cached {
                    Some((_, b)) => Ok(Some(b)),
                    None => Err(AccessError::Unavailable),
                };
            }
        };
        self.limiter().reconfigure(&budget.key_limits(), false);
        let mut map = self.key_models_cache().write();
        if map.len() > 100_000 {
            map.clear();
        }
        map.insert(entity, (Instant::now(), budget.clone()));
        Ok(Some(budget))
    }

    /// After a change of the key: the limiter takes each entry's new limit and window, and
    /// each model's new rate limits.
    pub(crate) fn model_budgets_changed(&self, record: &KeyRecord) {
        let now = self.config().clock.now();
        for b in key_model_budgets::parse(&record.model_max_budget).unwrap_or_default() {
            self.limiter()
                .reconfigure(&b.budget(&record.token, now).key_limits(), false);
        }
        let md = &record.metadata;
        let mut models: Vec<&String> = ["model_rpm_limit", "model_tpm_limit"]
            .iter()
            .filter_map(|f| md.get(*f).and_then(|v| v.as_object()))
            .flat_map(|m| m.keys())
            .chain(record.model_max_budget.keys())
            .collect();
        models.sort_unstable();
        models.dedup();
        for model in models {
            let id = format!("{}:{model}", record.token);
            let limit = |field| {
                key_model_budgets::model_limit(md, &record.model_max_budget, None, field, model)
            };
            let limits = key_model_budgets::rate_limits(
                &id,
                limit("model_rpm_limit"),
                limit("model_tpm_limit"),
            );
            self.limiter().reconfigure(&limits, false);
        }
    }
}

impl Ledger {
    /// `/key/info`'s `model_max_budget_usage`: for each entry, the spend of its open window
    /// (what the limiter counts, committed or not; else the stored row's), rounded to four
    /// places as LiteLLM shows it, the limit, the period and when the window ends.
    pub(crate) async fn model_budget_usage(
        &self,
        record: &KeyRecord,
    ) -> Result<Option<JsonMap>, StoreError> {
        if record.model_max_budget.is_empty() {
            return Ok(None);
        }
        let mut out = JsonMap::new();
        for b in key_model_budgets::parse(&record.model_max_budget).unwrap_or_default() {
            let entity = key_model_budgets::entity(&record.token, &b.entry);
            let row = self.store().get_budget(&entity).await?;
            let spend = match self.limiter().live(&entity).await {
                Some(live) => live.spend,
                None => row.as_ref().map_or(0, |r| r.spend),
            };
            let usd = nanos_to_usd(spend);
            let rounded: f64 = format!("{usd:.4}").parse().unwrap_or(usd);
            let reset_at = row
                .and_then(|r| r.budget_reset_at)
                .map(|t| crate::types::py_isoformat(&t));
            out.insert(
                b.entry.clone(),
                json!({
                    "current_spend": rounded,
                    "budget_limit": nanos_to_usd(b.max_budget),
                    "time_period": b.budget_duration,
                    "budget_reset_at": reset_at,
                }),
            );
        }
        Ok(Some(out))
    }
}

fn configured(record: &KeyRecord, entry: &str) -> Option<ModelBudget> {
    key_model_budgets::parse(&record.model_max_budget)
        .ok()?
        .into_iter()
        .find(|b| b.entry == entry)
}
