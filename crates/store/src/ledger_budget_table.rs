//! `/budget/*` on the ledger: named budgets, and the end users that follow them.

use crate::budget_table::{BudgetRequest, BudgetRow, budget_not_found};
use crate::budgets::BudgetPatch;
use crate::error::StoreError;
use crate::ledger::Ledger;

impl Ledger {
    /// `/budget/new`.
    pub async fn new_named_budget(
        &self,
        req: &BudgetRequest,
        by: Option<&str>,
    ) -> Result<BudgetRow, StoreError> {
        let row = BudgetRow::new(req, by, self.config().clock.now())?;
        self.store().insert_budget_row(&row).await?;
        Ok(row)
    }

    /// `/budget/update`: the followers take the new limits at once (their cached views and
    /// the limiter's copies are refreshed, here and, through Redis, on every instance).
    pub async fn update_named_budget(
        &self,
        req: &BudgetRequest,
        by: Option<&str>,
    ) -> Result<BudgetRow, StoreError> {
        let id = req
            .budget_id
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| StoreError::bad_request("budget_id is required", "budget_id"))?;
        let now = self.config().clock.now();
        let (row, followers) = self
            .store()
            .update_budget_row(id, &req.limits, by, now)
            .await?;
        for user in &followers {
            if let Some(c) = self.store().get_customer(user).await? {
                self.after_customer_change(&c);
            }
        }
        Ok(row)
    }

    /// `/budget/delete`.
    pub async fn delete_named_budget(&self, id: &str) -> Result<(), StoreError> {
        self.store().delete_budget_row(id).await
    }

    /// The named budget an end user is about to follow; a request that sets limits of its own
    /// as well is refused (they would be overwritten by the budget's on its next change).
    pub(crate) async fn named_budget_for_link(
        &self,
        id: &str,
        own: &BudgetPatch,
    ) -> Result<BudgetRow, StoreError> {
        if own.sets_any() {
            return Err(StoreError::bad_request(
                "set limits on the named budget (/budget/update) or on the end user, not both: this request names budget_id and limits of its own",
                "budget_id",
            ));
        }
        let ids = [id.to_owned()];
        self.store()
            .budget_rows(Some(&ids))
            .await?
            .pop()
            .ok_or_else(|| budget_not_found(id))
    }
}
