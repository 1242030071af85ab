//! `/customer/*` on the ledger, and the end user's budget on the request path.

use std::sync::Arc;
use std::time::Instant;

use crate::budgets::Budget;
use crate::customers::{
    CustomerIdsRequest, CustomerIdsResponse, CustomerRecord, EndUserView, NewCustomerRequest,
    UpdateCustomerRequest,
};
use crate::customers_db::customer_not_found;
use crate::entities;
use crate::error::{AccessError, StoreError};
use crate::ledger::Ledger;
use crate::ledger_budget_table::apply_link;

impl Ledger {
    /// The end user named by a request's `user`, cached like teams. `budget` is `None` when
    /// nothing bounds them (no own limits and no `max_end_user_budget`).
    pub(crate) async fn end_user_view(&self, id: &str) -> Result<Arc<EndUserView>, AccessError> {
        let cached = self.customers_cache().read().get(id).cloned();
        if let Some((at, view)) = &cached
            && at.elapsed() < self.config().cache_ttl
        {
            return Ok(view.clone());
        }
        let entity = entities::customer(id);
        let read = async {
            let record = self.store().get_customer(id).await?;
            let budget = match &record {
                Some(c) if c.litellm_budget_table.limits_calls() => {
                    Some(c.litellm_budget_table.clone())
                }
                _ => match self.config().max_end_user_budget {
                    Some(max) => {
                        let mut b = self
                            .store()
                            .get_budget(&entity)
                            .await?
                            .unwrap_or_else(|| Budget::new(entity.clone()));
                        b.max_budget = Some(max);
                        Some(b)
                    }
                    None => None,
                },
            };
            Ok::<_, StoreError>(EndUserView { record, budget })
        };
        match read.await {
            Ok(view) => {
                let view = Arc::new(view);
                if let Some(b) = &view.budget {
                    self.limiter().reconfigure(&b.key_limits(), false);
                }
                let mut map = self.customers_cache().write();
                if map.len() > 100_000 {
                    map.clear();
                }
                map.insert(id.to_owned(), (Instant::now(), view.clone()));
                Ok(view)
            }
            Err(e) => {
                tracing::warn!(error = %e, "end-user lookup failed");
                match cached {
                    Some((_, view)) => Ok(view),
                    None => Err(AccessError::Unavailable),
                }
            }
        }
    }

    pub(crate) fn after_customer_change(&self, c: &CustomerRecord) {
        self.limiter()
            .reconfigure(&c.litellm_budget_table.key_limits(), false);
        self.invalidate_and_announce(&entities::customer(&c.user_id));
    }

    /// `/customer/new`.
    pub async fn new_customer(
        &self,
        req: NewCustomerRequest,
    ) -> Result<CustomerRecord, StoreError> {
        let now = self.config().clock.now();
        let id = req.user_id.trim().to_owned();
        if id.is_empty() {
            return Err(StoreError::bad_request("`user_id` is required", "user_id"));
        }
        let mut budget = Budget::new(entities::customer(&id));
        let link = self
            .link_for(&req.budget_id.clone().map(Some), &req.budget)
            .await?;
        let mut budget_id = None;
        let who = format!("End user {id}");
        apply_link(&link, &mut budget_id, &mut budget, &req.budget, &who, now)?;
        let mut c = CustomerRecord {
            user_id: id,
            alias: req.alias.clone(),
            blocked: req.blocked.unwrap_or(false),
            metadata: req.metadata.clone().unwrap_or_default(),
            spend: 0,
            litellm_budget_table: budget,
            budget_id,
            created_at: now,
            updated_at: now,
        };
        // Spend already queued for them lands first, so the answer shows it.
        self.writer().flush().await?;
        self.store().insert_customer(&mut c).await?;
        self.after_customer_change(&c);
        self.customer_info(&c.user_id).await
    }

    /// `/customer/info`: spend as the enforcing limiter counts it.
    pub async fn customer_info(&self, id: &str) -> Result<CustomerRecord, StoreError> {
        let mut c = self
            .store()
            .get_customer(id)
            .await?
            .ok_or_else(|| customer_not_found(id))?;
        if let Some(live) = self.limiter().live(&entities::customer(id)).await {
            c.spend = live.spend;
            c.litellm_budget_table.spend = live.spend;
        }
        Ok(c)
    }

    pub async fn list_customers(&self) -> Result<Vec<CustomerRecord>, StoreError> {
        self.store().list_customers().await
    }

    /// `/customer/update`: only the fields present change.
    pub async fn update_customer(
        &self,
        req: UpdateCustomerRequest,
    ) -> Result<CustomerRecord, StoreError> {
        let now = self.config().clock.now();
        let link = self.link_for(&req.budget_id, &req.budget).await?;
        let mut out = self
            .store()
            .update_customers_with(std::slice::from_ref(&req.user_id), |c| {
                let mut next = c.clone();
                let who = format!("End user {}", c.user_id);
                apply_link(
                    &link,
                    &mut next.budget_id,
                    &mut next.litellm_budget_table,
                    &req.budget,
                    &who,
                    now,
                )?;
                if let Some(a) = &req.alias {
                    next.alias = a.clone();
                }
                if let Some(b) = req.blocked {
                    next.blocked = b;
                }
                if let Some(m) = &req.metadata {
                    next.metadata = m.clone();
                }
                next.updated_at = now;
                *c = next;
                Ok(())
            })
            .await?;
        let c = out.pop().ok_or_else(|| customer_not_found(&req.user_id))?;
        self.after_customer_change(&c);
        Ok(c)
    }

    /// `/customer/block` and `/customer/unblock`: all named end users or none (404).
    pub async fn set_customers_blocked(
        &self,
        req: CustomerIdsRequest,
        blocked: bool,
    ) -> Result<CustomerIdsResponse, StoreError> {
        let now = self.config().clock.now();
        let changed = self
            .store()
            .update_customers_with(&req.user_ids, |c| {
                c.blocked = blocked;
                c.updated_at = now;
                Ok(())
            })
            .await?;
        for c in &changed {
            self.after_customer_change(c);
        }
        Ok(CustomerIdsResponse {
            user_ids: req.user_ids,
        })
    }

    /// `/customer/delete`: all named end users or none (404).
    pub async fn delete_customers(
        &self,
        req: CustomerIdsRequest,
    ) -> Result<CustomerIdsResponse, StoreError> {
        if req.user_ids.is_empty() {
            return Err(StoreError::bad_request(
                "`user_ids` must list at least one end user",
                "user_ids",
            ));
        }
        self.writer().flush().await?;
        self.store().delete_customers(&req.user_ids).await?;
        self.forget_and_announce(req.user_ids.iter().map(|id| entities::customer(id)));
        Ok(CustomerIdsResponse {
            user_ids: req.user_ids,
        })
    }
}
