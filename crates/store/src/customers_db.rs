//! End-user rows in the database; their budgets are `customer:ID` rows of `idlehands_budgets`.

use chrono::Utc;
use sqlx::Row;

use crate::budget_table::{follow_current, locked_select};
use crate::budgets::{Budget, put_budget, read_budget};
use crate::customers::CustomerRecord;
use crate::db::{BeginWrite, Store, from_ms, json_text, on_db, to_ms};
use crate::entities;
use crate::error::StoreError;

const CUSTOMER_COLS: &str = "user_id, alias, blocked, metadata, created_at, updated_at, budget_id";

macro_rules! customer_from_row {
    ($row:expr, $budget:expr) => {{
        let row = $row;
        let budget: Budget = $budget;
        CustomerRecord {
            user_id: row.try_get("user_id")?,
            alias: row.try_get("alias")?,
            blocked: row.try_get("blocked")?,
            metadata: serde_json::from_str(&row.try_get::<String, _>("metadata")?)
                .unwrap_or_default(),
            spend: budget.spend,
            litellm_budget_table: budget,
            budget_id: row.try_get("budget_id")?,
            created_at: from_ms(row.try_get("created_at")?),
            updated_at: from_ms(row.try_get("updated_at")?),
        }
    }};
}

pub(crate) fn customer_not_found(id: &str) -> StoreError {
    StoreError::NotFound {
        message: format!("End User Id={id} does not exist in db"),
        param: Some("end_user_id"),
    }
}

impl Store {
    /// Creates the end user; their spend so far (calls that named them before) is kept.
    /// Inserts the end user; a followed budget's limits are taken as they are now.
    pub(crate) async fn insert_customer(&self, c: &mut CustomerRecord) -> Result<(), StoreError> {
        let named = locked_select(&self.db, "FOR SHARE");
        let insert = format!(
            "INSERT INTO idlehands_end_users ({CUSTOMER_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        );
        let now = to_ms(Utc::now());
        on_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            let taken: Option<String> =
                sqlx::query_scalar("SELECT user_id FROM idlehands_end_users WHERE user_id = $1")
                    .bind(&c.user_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if taken.is_some() {
                return Err(StoreError::bad_request(
                    format!("Customer already exists, passed user_id={}. Please pass a new user_id.", c.user_id),
                    "user_id",
                ));
            }
            sqlx::query(&insert)
                .bind(&c.user_id)
                .bind(c.alias.clone())
                .bind(c.blocked)
                .bind(json_text(&c.metadata))
                .bind(to_ms(c.created_at))
                .bind(to_ms(c.updated_at))
                .bind(c.budget_id.clone())
                .execute(&mut *tx)
                .await?;
            follow_current!(tx, &named, c.budget_id.as_deref(), &mut c.litellm_budget_table, c.updated_at);
            put_budget!(tx, &c.litellm_budget_table, now);
            tx.commit().await?;
        });
        Ok(())
    }

    /// Whether any end user was created.
    pub(crate) async fn any_customer(&self) -> Result<bool, StoreError> {
        let one = on_db!(&self.db, pool => {
            sqlx::query_scalar::<_, String>("SELECT user_id FROM idlehands_end_users LIMIT 1")
                .fetch_optional(pool)
                .await?
        });
        Ok(one.is_some())
    }

    /// The end user's row (with budget), if created.
    pub async fn get_customer(&self, id: &str) -> Result<Option<CustomerRecord>, StoreError> {
        let sql = format!("SELECT {CUSTOMER_COLS} FROM idlehands_end_users WHERE user_id = $1");
        let entity = entities::customer(id);
        let c = on_db!(&self.db, pool => {
            match sqlx::query(&sql).bind(id).fetch_optional(pool).await? {
                Some(row) => {
                    let budget = read_budget!(pool, &entity).unwrap_or_else(|| Budget::new(entity.clone()));
                    Some(customer_from_row!(&row, budget))
                }
                None => None,
            }
        });
        Ok(c)
    }

    pub(crate) async fn list_customers(&self) -> Result<Vec<CustomerRecord>, StoreError> {
        let sql =
            format!("SELECT {CUSTOMER_COLS} FROM idlehands_end_users ORDER BY created_at, user_id");
        let out = on_db!(&self.db, pool => {
            let rows = sqlx::query(&sql).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let id: String = row.try_get("user_id")?;
                let entity = entities::customer(&id);
                let budget = read_budget!(pool, &entity).unwrap_or_else(|| Budget::new(entity.clone()));
                out.push(customer_from_row!(row, budget));
            }
            out
        });
        Ok(out)
    }

    /// Applies `change` to each named end user in one transaction; all exist or nothing
    /// changes (404).
    pub(crate) async fn update_customers_with<F>(
        &self,
        ids: &[String],
        mut change: F,
    ) -> Result<Vec<CustomerRecord>, StoreError>
    where
        F: FnMut(&mut CustomerRecord) -> Result<(), StoreError>,
    {
        let select = format!("SELECT {CUSTOMER_COLS} FROM idlehands_end_users WHERE user_id = $1");
        let named = locked_select(&self.db, "FOR SHARE");
        let now = to_ms(Utc::now());
        let out = on_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                let entity = entities::customer(id);
                let Some(row) = sqlx::query(&select).bind(id).fetch_optional(&mut *tx).await? else {
                    return Err(customer_not_found(id));
                };
                let budget = read_budget!(&mut *tx, &entity).unwrap_or_else(|| Budget::new(entity.clone()));
                let mut c = customer_from_row!(&row, budget);
                change(&mut c)?;
                sqlx::query("UPDATE idlehands_end_users SET alias = $2, blocked = $3, metadata = $4, updated_at = $5, budget_id = $6 WHERE user_id = $1")
                    .bind(id)
                    .bind(c.alias.clone())
                    .bind(c.blocked)
                    .bind(json_text(&c.metadata))
                    .bind(to_ms(c.updated_at))
                    .bind(c.budget_id.clone())
                    .execute(&mut *tx)
                    .await?;
                follow_current!(tx, &named, c.budget_id.as_deref(), &mut c.litellm_budget_table, c.updated_at);
                put_budget!(tx, &c.litellm_budget_table, now);
                out.push(c);
            }
            tx.commit().await?;
            out
        });
        Ok(out)
    }

    /// Deletes the end users and their budgets; all or nothing (404).
    pub(crate) async fn delete_customers(&self, ids: &[String]) -> Result<(), StoreError> {
        on_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            for id in ids {
                let gone = sqlx::query("DELETE FROM idlehands_end_users WHERE user_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                if gone.rows_affected() == 0 {
                    return Err(customer_not_found(id));
                }
                sqlx::query("DELETE FROM idlehands_budgets WHERE entity = $1")
                    .bind(entities::customer(id))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }
}
