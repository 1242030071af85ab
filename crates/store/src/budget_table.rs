//! Named budgets (`/budget/*`, LiteLLM's `LiteLLM_BudgetTable`): a set of limits that end users
//! and organizations follow by `budget_id`. Each follower keeps its own spend and window (its
//! `customer:ID` or `org:ID` row of `idlehands_budgets`); the named budget's limits are copied
//! onto a follower when it begins to follow, and onto every follower in the transaction that
//! changes the budget, so the request path reads one row per follower as before.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::Row;

use crate::budgets::{Budget, BudgetPatch, put_budget, read_budget};
use crate::db::{BeginWrite, Db, Store, on_db, to_ms};
use crate::entities;
use crate::error::StoreError;

/// A named budget. Its limits' `spend` and `budget_reset_at` stay empty: windows and spend
/// are each follower's own.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetRow {
    pub budget_id: String,
    pub limits: Budget,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<String>,
    pub updated_at: DateTime<Utc>,
    pub updated_by: Option<String>,
}

/// Who follows a named budget.
#[derive(Debug, Default)]
pub(crate) struct Followers {
    pub end_users: Vec<String>,
    pub orgs: Vec<String>,
}

/// `POST /budget/new` and `/budget/update`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BudgetRequest {
    pub budget_id: Option<String>,
    #[serde(flatten)]
    pub limits: BudgetPatch,
}

const COLS: &str = "budget_id, max_budget, soft_budget, budget_duration, tpm_limit, rpm_limit, \
    max_parallel_requests, created_at, created_by, updated_at, updated_by";

macro_rules! budget_row {
    ($r:expr) => {{
        let r = $r;
        let id: String = r.try_get("budget_id")?;
        $crate::budget_table::BudgetRow {
            limits: $crate::budgets::Budget {
                entity: $crate::budget_table::entity(&id),
                spend: 0,
                max_budget: r.try_get("max_budget")?,
                soft_budget: r.try_get("soft_budget")?,
                budget_duration: r.try_get("budget_duration")?,
                budget_reset_at: None,
                tpm_limit: r.try_get("tpm_limit")?,
                rpm_limit: r.try_get("rpm_limit")?,
                max_parallel_requests: r.try_get("max_parallel_requests")?,
            },
            budget_id: id,
            created_at: $crate::db::from_ms(r.try_get("created_at")?),
            created_by: r.try_get("created_by")?,
            updated_at: $crate::db::from_ms(r.try_get("updated_at")?),
            updated_by: r.try_get("updated_by")?,
        }
    }};
}

pub(crate) use budget_row;

/// The named budget by id, read inside a write transaction; on Postgres the row stays locked
/// (`lock` is `FOR SHARE` for a follower, `FOR UPDATE` for a change or delete of the budget)
/// until the transaction ends, so a follower's write and a change of what it follows take
/// turns. SQLite's writers take turns already (`BEGIN IMMEDIATE`).
pub(crate) fn locked_select(db: &Db, lock: &str) -> String {
    let lock = if matches!(db, Db::Postgres(_)) {
        lock
    } else {
        ""
    };
    format!("SELECT {COLS} FROM idlehands_budget_table WHERE budget_id = $1 {lock}")
}

/// Inside a follower's write transaction, after its change: the named budget it follows (if
/// any) is read again with [`locked_select`]'s `FOR SHARE` and its limits copied again. The
/// copy the request took before its transaction may be older: a `/budget/update` committed in
/// between did not see this follower yet, and a `/budget/delete` in between leaves it nothing
/// to follow (404, nothing written).
macro_rules! follow_current {
    ($tx:expr, $sql:expr, $followed:expr, $budget:expr, $now:expr) => {{
        if let Some(id) = $followed {
            let Some(r) = sqlx::query($sql).bind(id).fetch_optional(&mut *$tx).await? else {
                return Err($crate::budget_table::budget_not_found(id));
            };
            let named = $crate::budget_table::budget_row!(&r);
            $crate::budget_table::follow($budget, &named.limits, $now);
        }
    }};
}
pub(crate) use follow_current;

/// The in-memory name of a named budget's limits (never a row of `idlehands_budgets`).
pub(crate) fn entity(id: &str) -> String {
    format!("budget:{id}")
}

pub(crate) fn budget_not_found(id: &str) -> StoreError {
    StoreError::NotFound {
        message: format!("Budget with id '{id}' does not exist."),
        param: Some("budget_id"),
    }
}

/// Copies `from`'s limits onto a follower's budget; a changed duration starts its window now.
pub(crate) fn follow(target: &mut Budget, from: &Budget, now: DateTime<Utc>) {
    if target.budget_duration != from.budget_duration {
        target.budget_reset_at = from
            .budget_duration
            .as_deref()
            .and_then(crate::duration::LlmDuration::parse)
            .map(|d| d.next_reset(now));
        target.budget_duration = from.budget_duration.clone();
    }
    target.max_budget = from.max_budget;
    target.soft_budget = from.soft_budget;
    target.tpm_limit = from.tpm_limit;
    target.rpm_limit = from.rpm_limit;
    target.max_parallel_requests = from.max_parallel_requests;
}

impl Store {
    pub(crate) async fn insert_budget_row(&self, row: &BudgetRow) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO idlehands_budget_table ({COLS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (budget_id) DO NOTHING"
        );
        let l = &row.limits;
        let n = on_db!(&self.db, pool => {
            sqlx::query(&sql)
                .bind(&row.budget_id)
                .bind(l.max_budget)
                .bind(l.soft_budget)
                .bind(l.budget_duration.clone())
                .bind(l.tpm_limit)
                .bind(l.rpm_limit)
                .bind(l.max_parallel_requests)
                .bind(to_ms(row.created_at))
                .bind(row.created_by.clone())
                .bind(to_ms(row.updated_at))
                .bind(row.updated_by.clone())
                .execute(pool)
                .await?
                .rows_affected()
        });
        if n == 0 {
            return Err(StoreError::bad_request(
                format!("Budget with id '{}' already exists.", row.budget_id),
                "budget_id",
            ));
        }
        Ok(())
    }

    /// One named budget.
    pub async fn budget_row(&self, id: &str) -> Result<Option<BudgetRow>, StoreError> {
        let sql = format!("SELECT {COLS} FROM idlehands_budget_table WHERE budget_id = $1");
        let row = on_db!(&self.db, pool => {
            match sqlx::query(&sql).bind(id).fetch_optional(pool).await? {
                Some(r) => Some(budget_row!(&r)),
                None => None,
            }
        });
        Ok(row)
    }

    /// The named budgets among `ids` (all of them with `None`), by id.
    pub async fn budget_rows(&self, ids: Option<&[String]>) -> Result<Vec<BudgetRow>, StoreError> {
        let Some(ids) = ids else {
            let sql = format!("SELECT {COLS} FROM idlehands_budget_table ORDER BY budget_id");
            let all = on_db!(&self.db, pool => {
                let rows = sqlx::query(&sql).fetch_all(pool).await?;
                let mut out = Vec::with_capacity(rows.len());
                for r in &rows {
                    out.push(budget_row!(r));
                }
                out
            });
            return Ok(all);
        };
        let mut wanted: Vec<&String> = ids.iter().collect();
        wanted.sort_unstable();
        wanted.dedup();
        let mut out = Vec::with_capacity(wanted.len());
        for id in wanted {
            out.extend(self.budget_row(id).await?);
        }
        Ok(out)
    }

    /// Changes a named budget and copies its limits onto every end user and organization that
    /// follows it, in one transaction; the changed row and the followers' ids.
    pub(crate) async fn update_budget_row(
        &self,
        id: &str,
        patch: &BudgetPatch,
        by: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(BudgetRow, Followers), StoreError> {
        let select = locked_select(&self.db, "FOR UPDATE");
        let at = to_ms(now);
        let out = on_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            let Some(r) = sqlx::query(&select).bind(id).fetch_optional(&mut *tx).await? else {
                return Err(budget_not_found(id));
            };
            let mut row = budget_row!(&r);
            row.limits.apply(patch, now)?;
            row.limits.budget_reset_at = None;
            row.updated_at = now;
            row.updated_by = by.map(str::to_owned);
            let l = &row.limits;
            sqlx::query(
                "UPDATE idlehands_budget_table SET max_budget = $2, soft_budget = $3, \
                 budget_duration = $4, tpm_limit = $5, rpm_limit = $6, \
                 max_parallel_requests = $7, updated_at = $8, updated_by = $9 WHERE budget_id = $1",
            )
            .bind(id)
            .bind(l.max_budget)
            .bind(l.soft_budget)
            .bind(l.budget_duration.clone())
            .bind(l.tpm_limit)
            .bind(l.rpm_limit)
            .bind(l.max_parallel_requests)
            .bind(at)
            .bind(row.updated_by.clone())
            .execute(&mut *tx)
            .await?;
            let end_users: Vec<String> = sqlx::query_scalar(
                "SELECT user_id FROM idlehands_end_users WHERE budget_id = $1 ORDER BY user_id",
            )
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
            let orgs: Vec<String> = sqlx::query_scalar(
                "SELECT organization_id FROM idlehands_organizations WHERE budget_id = $1 \
                 ORDER BY organization_id",
            )
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
            let entities = end_users
                .iter()
                .map(|u| entities::customer(u))
                .chain(orgs.iter().map(|o| entities::org(o)));
            for e in entities {
                let mut b = read_budget!(&mut *tx, &e).unwrap_or_else(|| Budget::new(e.clone()));
                follow(&mut b, &row.limits, now);
                put_budget!(tx, &b, at);
            }
            tx.commit().await?;
            (row, Followers { end_users, orgs })
        });
        Ok(out)
    }

    /// Deletes a named budget nobody follows (else a 400 naming how many do).
    pub(crate) async fn delete_budget_row(&self, id: &str) -> Result<(), StoreError> {
        let select = locked_select(&self.db, "FOR UPDATE");
        on_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            // Locked first: a follower linking now either committed (counted below) or waits
            // and then finds the budget gone.
            if sqlx::query(&select).bind(id).fetch_optional(&mut *tx).await?.is_none() {
                return Err(budget_not_found(id));
            }
            let end_users: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM idlehands_end_users WHERE budget_id = $1",
            )
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            let orgs: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM idlehands_organizations WHERE budget_id = $1",
            )
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            let keys: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM idlehands_verification_tokens WHERE budget_id = $1",
            )
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            let tags: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM idlehands_tags WHERE budget_id = $1",
            )
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            if end_users + orgs + keys + tags > 0 {
                let who = if tags > 0 {
                    format!("{end_users} end user(s), {orgs} organization(s), {keys} key(s) and {tags} tag(s)")
                } else if keys > 0 {
                    format!("{end_users} end user(s), {orgs} organization(s) and {keys} key(s)")
                } else {
                    format!("{end_users} end user(s) and {orgs} organization(s)")
                };
                return Err(StoreError::bad_request(
                    format!(
                        "Budget with id '{id}' is used by {who}: link them to another budget (or `budget_id: null`) first."
                    ),
                    "id",
                ));
            }
            sqlx::query("DELETE FROM idlehands_budget_table WHERE budget_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }
}

impl BudgetRow {
    /// A new named budget; `id` is the given one or a new UUID.
    pub fn new(
        req: &BudgetRequest,
        by: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<BudgetRow, StoreError> {
        let id = match req.budget_id.as_deref().map(str::trim) {
            Some("") => {
                return Err(StoreError::bad_request(
                    "budget_id must not be empty",
                    "budget_id",
                ));
            }
            Some(id) => id.to_owned(),
            None => uuid::Uuid::new_v4().to_string(),
        };
        let mut limits = Budget::new(entity(&id));
        limits.apply(&req.limits, now)?;
        limits.budget_reset_at = None;
        Ok(BudgetRow {
            budget_id: id,
            limits,
            created_at: now,
            created_by: by.map(str::to_owned),
            updated_at: now,
            updated_by: by.map(str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_follower_takes_the_limits_and_a_new_window_only_when_the_duration_changes() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let mut from = Budget::new("budget:b".into());
        from.max_budget = Some(5);
        from.rpm_limit = Some(7);
        from.budget_duration = Some("1d".into());
        let mut f = Budget::new("customer:c".into());
        f.spend = 3;
        follow(&mut f, &from, now);
        assert_eq!((f.max_budget, f.rpm_limit, f.spend), (Some(5), Some(7), 3));
        let window = f.budget_reset_at.unwrap();
        assert!(window > now);
        // Same duration later: the window it is in is kept.
        from.max_budget = Some(9);
        follow(&mut f, &from, now + chrono::TimeDelta::hours(3));
        assert_eq!((f.max_budget, f.budget_reset_at), (Some(9), Some(window)));
        from.budget_duration = None;
        follow(&mut f, &from, now);
        assert_eq!(
            (f.budget_duration.as_deref(), f.budget_reset_at),
            (None, None)
        );
    }
}
