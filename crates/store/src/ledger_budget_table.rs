//! `/budget/*` on the ledger: named budgets, and how an end user or organization follows one.

use chrono::{DateTime, Utc};

use crate::budget_table::{BudgetRequest, BudgetRow, Followers, budget_not_found, follow};
use crate::budgets::{Budget, BudgetPatch};
use crate::error::StoreError;
use crate::ledger::Ledger;
use crate::types::Patch;

/// What a create or update does to the named budget an end user or organization follows.
pub(crate) enum Link {
    Keep,
    Follow(Box<BudgetRow>),
    Stop,
}

/// Applies `link` and the request's own limits to an entity (`who` names it in errors).
/// While it keeps following a budget, limits of its own are refused: the budget's next change
/// would overwrite them.
pub(crate) fn apply_link(
    link: &Link,
    followed: &mut Option<String>,
    budget: &mut Budget,
    own: &BudgetPatch,
    who: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if let (Link::Keep, Some(b)) = (link, followed.as_deref())
        && own.sets_any()
    {
        return Err(StoreError::bad_request(
            format!(
                "{who} follows budget '{b}': change that budget (/budget/update), or stop following it with `budget_id: null` in this request"
            ),
            "budget_id",
        ));
    }
    match link {
        Link::Follow(n) => {
            follow(budget, &n.limits, now);
            *followed = Some(n.budget_id.clone());
        }
        Link::Stop => *followed = None,
        Link::Keep => {}
    }
    budget.apply(own, now)
}

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
        let (row, Followers { end_users, orgs }) = self
            .store()
            .update_budget_row(id, &req.limits, by, now)
            .await?;
        for user in &end_users {
            if let Some(c) = self.store().get_customer(user).await? {
                self.after_customer_change(&c);
            }
        }
        for org in &orgs {
            if let Some(o) = self.store().get_org(org).await? {
                self.after_org_change(&o);
            }
        }
        self.tier_changed(id).await?;
        Ok(row)
    }

    /// `/budget/delete`.
    pub async fn delete_named_budget(&self, id: &str) -> Result<(), StoreError> {
        self.store().delete_budget_row(id).await
    }

    /// What a request's `budget_id` does: the budget it names is read here (404 if none), and
    /// a request that names one and limits of its own as well is refused.
    pub(crate) async fn link_for(
        &self,
        budget_id: &Patch<String>,
        own: &BudgetPatch,
    ) -> Result<Link, StoreError> {
        Ok(match budget_id {
            None => Link::Keep,
            Some(None) => Link::Stop,
            Some(Some(id)) => {
                Link::Follow(Box::new(self.named_budget_for_link(id.trim(), own).await?))
            }
        })
    }

    async fn named_budget_for_link(
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
        self.store()
            .budget_row(id)
            .await?
            .ok_or_else(|| budget_not_found(id))
    }
}
