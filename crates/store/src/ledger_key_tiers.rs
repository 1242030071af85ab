//! Keys that follow a named budget (`budget_id`, LiteLLM's rate-limit tiers): the budget's
//! `max_budget`, `soft_budget`, `tpm_limit`, `rpm_limit`, `max_parallel_requests` and
//! `budget_duration` apply where the key sets none of its own; a key taking the budget's window
//! starts its own when it begins to follow (as end users and organizations do), so its spend
//! resets on that window. The key's stored record keeps its own values (what
//! `/key/info` shows and `/key/update` changes); the ledger's cached copy, which calls are
//! checked against, has the tier's filled in. A change of the tier drops its keys' cached
//! copies here and, through the key-change channel, on every instance.

use std::collections::HashMap;

use crate::budget_table::{BudgetRow, budget_not_found};
use crate::budgets::Budget;
use crate::error::StoreError;
use crate::ledger::Ledger;
use crate::types::KeyRecord;

/// The key's limits with the tier's filled in where the key has none.
pub(crate) fn fill(mut record: KeyRecord, tier: &Budget) -> KeyRecord {
    record.max_budget = record.max_budget.or(tier.max_budget);
    record.soft_budget = record.soft_budget.or(tier.soft_budget);
    record.tpm_limit = record.tpm_limit.or(tier.tpm_limit);
    record.rpm_limit = record.rpm_limit.or(tier.rpm_limit);
    record.max_parallel_requests = record.max_parallel_requests.or(tier.max_parallel_requests);
    if record.budget_duration.is_none() {
        record.budget_duration.clone_from(&tier.budget_duration);
    }
    record
}

impl Ledger {
    /// A key as calls are checked against it: with its tier's limits, when it follows one
    /// (a tier that is gone adds nothing).
    pub(crate) async fn with_tier(&self, record: KeyRecord) -> Result<KeyRecord, StoreError> {
        let Some(id) = record.budget_id.clone() else {
            return Ok(record);
        };
        Ok(match self.store().budget_row(&id).await? {
            Some(tier) => fill(record, &tier.limits),
            None => record,
        })
    }

    /// [`Ledger::with_tier`] for many keys, reading every tier once.
    pub(crate) async fn with_tiers(
        &self,
        keys: Vec<KeyRecord>,
    ) -> Result<Vec<KeyRecord>, StoreError> {
        if keys.iter().all(|k| k.budget_id.is_none()) {
            return Ok(keys);
        }
        let tiers: HashMap<String, BudgetRow> = self
            .store()
            .budget_rows(None)
            .await?
            .into_iter()
            .map(|row| (row.budget_id.clone(), row))
            .collect();
        Ok(keys
            .into_iter()
            .map(
                |k| match k.budget_id.as_deref().and_then(|id| tiers.get(id)) {
                    Some(tier) => fill(k, &tier.limits),
                    None => k,
                },
            )
            .collect())
    }

    /// A `budget_id` a key is to follow must name a named budget (404 otherwise). Gives when
    /// a key without a window of its own that begins to follow it now would end its first
    /// window (`None`: the budget has none).
    pub(crate) async fn check_tier(
        &self,
        id: Option<&str>,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
        let Some(id) = crate::validate::tier_id(id) else {
            return Ok(None);
        };
        let tier = self
            .store()
            .budget_row(&id)
            .await?
            .ok_or_else(|| budget_not_found(&id))?;
        let now = self.config().clock.now();
        Ok(tier
            .limits
            .budget_duration
            .as_deref()
            .and_then(crate::duration::LlmDuration::parse)
            .map(|d| d.next_reset(now)))
    }

    /// After a tier changed: its keys are read again (with the new limits) on their next use,
    /// here and on every instance.
    pub(crate) async fn tier_changed(&self, id: &str) -> Result<(), StoreError> {
        for token in self.store().keys_following(id).await? {
            self.invalidate_and_announce(&token);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_key_s_own_limits_win_and_the_tier_fills_the_rest() {
        let req = crate::types::GenerateKeyRequest::default();
        let mut key =
            crate::validate::new_key_record(&req, "sk-tier-test", None, chrono::Utc::now())
                .unwrap();
        key.max_budget = Some(5);
        key.tpm_limit = Some(100);
        let tier = Budget {
            max_budget: Some(1),
            rpm_limit: Some(2),
            tpm_limit: Some(3),
            soft_budget: Some(4),
            max_parallel_requests: Some(6),
            ..Budget::default()
        };
        let k = fill(key, &tier);
        assert_eq!(
            (
                k.max_budget,
                k.rpm_limit,
                k.tpm_limit,
                k.soft_budget,
                k.max_parallel_requests
            ),
            (Some(5), Some(2), Some(100), Some(4), Some(6))
        );
    }
}
