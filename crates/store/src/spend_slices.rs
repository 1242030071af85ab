//! Spend summed over a range by any of the daily rollups' dimensions (day, key, user, team, end
//! user, provider, model group), optionally of one key or one user: LiteLLM's small dashboard
//! reports (`/global/spend/logs`, `/teams`, `/end_users`, `/provider`) are each one such sum.
//! Whole days read the rollups, so the retention sweep does not shorten them; a range that is
//! not whole days reads the rows.

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::daily_spend::{self, Rollup};
use crate::db::{Store, on_db, to_ms};
use crate::error::StoreError;
use crate::keygen::token_of;
use crate::spend_db::{day_of, wide_sum};

/// A dimension to sum by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    /// The UTC day, `YYYY-MM-DD`.
    Day,
    /// The key's hash.
    Key,
    User,
    Team,
    EndUser,
    /// `custom_llm_provider`.
    Provider,
    /// The public model name (the deployment's model when there was none).
    ModelGroup,
}

impl Dim {
    fn expr(self) -> &'static str {
        match self {
            Dim::Day => "CAST(day AS TEXT)",
            Dim::Key => "api_key",
            Dim::User => "user_id",
            Dim::Team => "team_id",
            Dim::EndUser => "end_user",
            Dim::Provider => "custom_llm_provider",
            Dim::ModelGroup => "COALESCE(model_group, model)",
        }
    }
}

/// What to sum: by `by`, over `[start, end)` (open ends unbounded), of one key and one user
/// when given.
#[derive(Debug, Clone, Default)]
pub struct SliceQuery {
    pub by: Vec<Dim>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    /// A key's hash, or the key (`sk-...`, hashed here).
    pub api_key: Option<String>,
    pub user: Option<String>,
}

/// One group: its value per dimension of the query (`None` where the calls had none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slice {
    pub parts: Vec<Option<String>>,
    /// Nano-dollars.
    pub spend: i64,
    pub requests: i64,
    pub total_tokens: i64,
}

impl Store {
    /// The groups of [`SliceQuery`], in no particular order.
    pub async fn spend_slices(&self, q: &SliceQuery) -> Result<Vec<Slice>, StoreError> {
        let rollup = if q.by.contains(&Dim::Key) || q.api_key.is_some() {
            Rollup::ByKey
        } else {
            Rollup::AllKeys
        };
        let (source, lo, hi) =
            daily_spend::source_for(rollup, q.start.map(to_ms), q.end.map(to_ms));
        let mut texts = Vec::new();
        let mut conds = Vec::new();
        if let Some(k) = &q.api_key {
            texts.push(token_of(k));
            conds.push(format!("api_key = ${}", texts.len() + 2));
        }
        if let Some(u) = &q.user {
            texts.push(u.clone());
            conds.push(format!("user_id = ${}", texts.len() + 2));
        }
        let where_sql = if conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conds.join(" AND "))
        };
        let exprs: Vec<&str> = q.by.iter().map(|d| d.expr()).collect();
        let select: Vec<String> = exprs
            .iter()
            .enumerate()
            .map(|(i, e)| format!("{e} AS g{i}"))
            .collect();
        let group = if exprs.is_empty() {
            String::new()
        } else {
            format!(" GROUP BY {}", exprs.join(", "))
        };
        let sql = format!(
            "SELECT {}{}, CAST(SUM(requests) AS BIGINT) AS n, {} FROM {}{where_sql}{group}",
            select.iter().map(|s| format!("{s}, ")).collect::<String>(),
            daily_spend::sum_parts("spend", "s"),
            daily_spend::sum_parts("total_tokens", "t"),
            daily_spend::relation(source, "$1", "$2", ""),
        );
        let mut out = on_db!(&self.db, pool => {
            let mut query = sqlx::query(&sql).bind(lo).bind(hi);
            for t in &texts {
                query = query.bind(t.clone());
            }
            let rows = query.fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                // No rows at all still sums to one row of NULLs.
                let Some(requests) = r.try_get::<Option<i64>, _>("n")? else {
                    continue;
                };
                let mut parts = Vec::with_capacity(exprs.len());
                for i in 0..exprs.len() {
                    parts.push(r.try_get::<Option<String>, _>(format!("g{i}").as_str())?);
                }
                out.push(Slice {
                    parts,
                    spend: wide_sum(
                        r.try_get::<Option<i64>, _>("s_hi")?.unwrap_or(0),
                        r.try_get::<Option<i64>, _>("s_lo")?.unwrap_or(0),
                    ),
                    requests,
                    total_tokens: wide_sum(
                        r.try_get::<Option<i64>, _>("t_hi")?.unwrap_or(0),
                        r.try_get::<Option<i64>, _>("t_lo")?.unwrap_or(0),
                    ),
                });
            }
            out
        });
        if let Some(i) = q.by.iter().position(|d| *d == Dim::Day) {
            for s in &mut out {
                if let Some(day) = s.parts[i].as_deref().and_then(|d| d.parse::<i64>().ok()) {
                    s.parts[i] = Some(day_of(day));
                }
            }
        }
        Ok(out)
    }
}
