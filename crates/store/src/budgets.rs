//! Budgets and limits of teams, team members, users, organizations and end users: one row
//! each in `idlehands_budgets` (named as in [`crate::entities`]), with LiteLLM's budget fields.
//! Their spend grows with the spend writer's commits; configuration changes never touch it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::db::to_ms;
use crate::duration::LlmDuration;
use crate::error::StoreError;
use crate::limiter::KeyLimits;
use crate::money::{ser_usd, ser_usd_opt};
use crate::types::{Patch, iso_opt, patch};
use crate::validate::{limit, money};

/// An entity's budget and limits, shown inside LiteLLM's objects (`max_budget`, `spend`, ...).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Budget {
    #[serde(skip)]
    pub entity: String,
    #[serde(serialize_with = "ser_usd")]
    pub spend: i64,
    #[serde(serialize_with = "ser_usd_opt")]
    pub max_budget: Option<i64>,
    #[serde(serialize_with = "ser_usd_opt")]
    pub soft_budget: Option<i64>,
    pub budget_duration: Option<String>,
    #[serde(serialize_with = "iso_opt")]
    pub budget_reset_at: Option<DateTime<Utc>>,
    pub tpm_limit: Option<i64>,
    pub rpm_limit: Option<i64>,
    pub max_parallel_requests: Option<i64>,
}

/// Budget fields of a create or update body: absent leaves a field, `null` clears it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BudgetPatch {
    #[serde(default, deserialize_with = "patch")]
    pub max_budget: Patch<f64>,
    #[serde(default, deserialize_with = "patch")]
    pub soft_budget: Patch<f64>,
    #[serde(default, deserialize_with = "patch")]
    pub budget_duration: Patch<String>,
    #[serde(default, deserialize_with = "patch")]
    pub tpm_limit: Patch<i64>,
    #[serde(default, deserialize_with = "patch")]
    pub rpm_limit: Patch<i64>,
    #[serde(default, deserialize_with = "patch")]
    pub max_parallel_requests: Patch<i64>,
}

impl BudgetPatch {
    /// Whether the request sets any budget field (`null` included).
    pub fn sets_any(&self) -> bool {
        self.max_budget.is_some()
            || self.soft_budget.is_some()
            || self.budget_duration.is_some()
            || self.tpm_limit.is_some()
            || self.rpm_limit.is_some()
            || self.max_parallel_requests.is_some()
    }
}

impl Budget {
    pub fn new(entity: String) -> Budget {
        Budget {
            entity,
            ..Budget::default()
        }
    }

    /// Applies the fields present; checks every value before changing anything (400 naming
    /// the field). A new `budget_duration` starts a window now.
    pub fn apply(&mut self, p: &BudgetPatch, now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut next = self.clone();
        if let Some(v) = p.max_budget {
            next.max_budget = money(v, "max_budget")?;
        }
        if let Some(v) = p.soft_budget {
            next.soft_budget = money(v, "soft_budget")?;
        }
        if let Some(d) = &p.budget_duration {
            next.budget_reset_at = match d {
                Some(d) => Some(LlmDuration::parse_field(d, "budget_duration")?.next_reset(now)),
                None => None,
            };
            next.budget_duration = d.clone();
        }
        if let Some(v) = p.tpm_limit {
            next.tpm_limit = limit(v, "tpm_limit")?;
        }
        if let Some(v) = p.rpm_limit {
            next.rpm_limit = limit(v, "rpm_limit")?;
        }
        if let Some(v) = p.max_parallel_requests {
            next.max_parallel_requests = limit(v, "max_parallel_requests")?;
        }
        *self = next;
        Ok(())
    }

    /// Whether anything here limits calls.
    pub fn limits_calls(&self) -> bool {
        self.max_budget.is_some()
            || self.tpm_limit.is_some()
            || self.rpm_limit.is_some()
            || self.max_parallel_requests.is_some()
    }

    /// The limiter's view, under the entity's name.
    pub fn key_limits(&self) -> KeyLimits {
        let nonneg = |v: Option<i64>| v.map(|v| v.max(0) as u64);
        KeyLimits {
            token: self.entity.clone(),
            key_alias: None,
            key_name: self.entity.clone(),
            spend: self.spend,
            max_budget: self.max_budget,
            budget_duration: self.budget_duration.as_deref().and_then(LlmDuration::parse),
            budget_reset_at: self.budget_reset_at,
            rpm_limit: nonneg(self.rpm_limit),
            tpm_limit: nonneg(self.tpm_limit),
            max_parallel_requests: nonneg(self.max_parallel_requests),
        }
    }
}

pub(crate) const BUDGET_COLS: &str = "entity, spend, max_budget, soft_budget, budget_duration, \
    budget_reset_at, tpm_limit, rpm_limit, max_parallel_requests";

macro_rules! budget_from_row {
    ($row:expr) => {{
        let row = $row;
        $crate::budgets::Budget {
            entity: row.try_get("entity")?,
            spend: row.try_get("spend")?,
            max_budget: row.try_get("max_budget")?,
            soft_budget: row.try_get("soft_budget")?,
            budget_duration: row.try_get("budget_duration")?,
            budget_reset_at: row
                .try_get::<Option<i64>, _>("budget_reset_at")?
                .map($crate::db::from_ms),
            tpm_limit: row.try_get("tpm_limit")?,
            rpm_limit: row.try_get("rpm_limit")?,
            max_parallel_requests: row.try_get("max_parallel_requests")?,
        }
    }};
}
pub(crate) use budget_from_row;

/// Writes a budget's configuration (creating the row at spend 0); the spend of an existing
/// row is kept. Runs inside the caller's transaction.
macro_rules! put_budget {
    ($tx:expr, $b:expr, $now:expr) => {{
        let b = $b;
        sqlx::query(
            "INSERT INTO idlehands_budgets (entity, spend, max_budget, soft_budget, \
             budget_duration, budget_reset_at, tpm_limit, rpm_limit, max_parallel_requests, \
             updated_at) VALUES ($1, 0, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (entity) DO UPDATE SET max_budget = $2, soft_budget = $3, \
             budget_duration = $4, budget_reset_at = $5, tpm_limit = $6, rpm_limit = $7, \
             max_parallel_requests = $8, updated_at = $9",
        )
        .bind(&b.entity)
        .bind(b.max_budget)
        .bind(b.soft_budget)
        .bind(b.budget_duration.clone())
        .bind(b.budget_reset_at.map($crate::db::to_ms))
        .bind(b.tpm_limit)
        .bind(b.rpm_limit)
        .bind(b.max_parallel_requests)
        .bind($now)
        .execute(&mut *$tx)
        .await?;
    }};
}
pub(crate) use put_budget;

/// Reads one budget row inside the caller's transaction (or pool).
macro_rules! read_budget {
    ($exec:expr, $entity:expr) => {{
        let sql = format!(
            "SELECT {} FROM idlehands_budgets WHERE entity = $1",
            $crate::budgets::BUDGET_COLS
        );
        match sqlx::query(&sql)
            .bind($entity)
            .fetch_optional($exec)
            .await?
        {
            Some(row) => Some($crate::budgets::budget_from_row!(&row)),
            None => None,
        }
    }};
}
pub(crate) use read_budget;

/// A spend reset (`reset_to`, shown as the caller gave it) may lower a spend, never raise it or
/// hand out budget: at most the spend and the `max_budget`.
pub(crate) fn check_lowering(
    to: i64,
    spend: i64,
    max_budget: Option<i64>,
    shown: f64,
) -> Result<(), StoreError> {
    let field = "reset_to";
    if to > spend {
        return Err(StoreError::bad_request(
            format!(
                "reset_to ({shown:?}) must be <= current spend ({:?})",
                crate::money::nanos_to_usd(spend)
            ),
            field,
        ));
    }
    if let Some(max) = max_budget
        && to > max
    {
        return Err(StoreError::bad_request(
            format!(
                "reset_to ({shown:?}) must be <= budget ({:?})",
                crate::money::nanos_to_usd(max)
            ),
            field,
        ));
    }
    Ok(())
}

impl crate::db::Store {
    /// One entity's budget row, if it has one.
    pub async fn get_budget(&self, entity: &str) -> Result<Option<Budget>, StoreError> {
        let b = crate::db::on_db!(&self.db, pool => { read_budget!(pool, entity) });
        Ok(b)
    }

    /// Lowers an entity's spend to `to` nano-USD, which may not be above its spend or its
    /// `max_budget` (a reset never hands out budget); checked and written in one transaction.
    /// The budget as it is now, and the spend it had.
    pub(crate) async fn lower_budget_spend(
        &self,
        entity: &str,
        to: i64,
        shown: f64,
    ) -> Result<(Budget, i64), StoreError> {
        use crate::db::BeginWrite;
        let out = crate::db::on_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            let mut b = read_budget!(&mut *tx, entity).unwrap_or_else(|| Budget::new(entity.to_owned()));
            let previous = b.spend;
            check_lowering(to, b.spend, b.max_budget, shown)?;
            sqlx::query("UPDATE idlehands_budgets SET spend = $2 WHERE entity = $1")
                .bind(entity)
                .bind(to)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            b.spend = to;
            (b, previous)
        });
        Ok(out)
    }

    /// Entities whose budget window has passed, for the reset sweep: (entity, duration, at).
    pub(crate) async fn due_entity_resets(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        let rows = crate::db::on_db!(&self.db, pool => {
            let rows = sqlx::query(
                "SELECT entity, budget_duration, budget_reset_at FROM idlehands_budgets \
                 WHERE budget_reset_at IS NOT NULL AND budget_reset_at <= $1",
            )
            .bind(to_ms(now))
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let dur: Option<String> = row.try_get("budget_duration")?;
                out.push((row.try_get("entity")?, dur.unwrap_or_default(), row.try_get("budget_reset_at")?));
            }
            out
        });
        Ok(rows)
    }
}
