//! Latency per output token by deployment and day (LiteLLM's `/model/metrics`, the dashboard's
//! model latency chart) and slow calls by API base (`/model/metrics/slow_responses`), read from
//! the spend rows of one model group.

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::db::{Store, on_db, to_ms};
use crate::error::StoreError;
use crate::keygen::token_of;
use crate::spend_db::day_of;

/// One deployment's (api_base and model's) average seconds per completion token on one day.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyRow {
    pub api_base: Option<String>,
    pub model: String,
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub avg_latency_per_token: f64,
}

/// Calls of one API base, and how many of them took the alerting threshold or longer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlowRow {
    pub api_base: Option<String>,
    pub total_count: i64,
    pub slow_count: i64,
}

/// Which calls: a model group's, started in `[start, end]`, optionally of one key (the key or
/// its hash) and one end user. Cache hits are left out (they took no model time).
#[derive(Debug, Clone)]
pub struct LatencyQuery {
    pub model_group: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub api_key: Option<String>,
    pub end_user: Option<String>,
}

/// The filter both reads share (`$1`..`$5`).
const WHERE: &str = "WHERE start_time >= $1 AND start_time <= $2 AND model_group = $3 \
     AND COALESCE(cache_hit, '') <> 'True' \
     AND ($4 IS NULL OR api_key = $4) AND ($5 IS NULL OR end_user = $5)";

/// `sql` (which filters with [`WHERE`]) with the filter's five values bound.
macro_rules! filtered {
    ($sql:expr, $q:expr, $key:expr) => {
        sqlx::query($sql)
            .bind(to_ms($q.start))
            .bind(to_ms($q.end))
            .bind(&$q.model_group)
            .bind($key)
            .bind($q.end_user.as_deref())
    };
}

impl Store {
    /// Slowest first, as LiteLLM orders them; calls without completion tokens are not counted.
    pub async fn latency_per_token(&self, q: &LatencyQuery) -> Result<Vec<LatencyRow>, StoreError> {
        let sql = format!(
            "SELECT api_base, model, start_time / 86400000 AS d, \
             CAST(AVG((end_time - start_time) / 1000.0 / NULLIF(completion_tokens, 0)) AS DOUBLE PRECISION) AS lat \
             FROM idlehands_spend_logs {WHERE} \
             GROUP BY api_base, model, start_time / 86400000 \
             HAVING SUM(completion_tokens) > 0 \
             ORDER BY lat DESC, model, api_base"
        );
        let key = q.api_key.as_deref().map(token_of);
        let rows = on_db!(&self.db, pool => {
            let found = filtered!(&sql, q, key.as_deref()).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(found.len());
            for r in &found {
                out.push(LatencyRow {
                    api_base: r.try_get("api_base")?,
                    model: r.try_get("model")?,
                    day: day_of(r.try_get::<i64, _>("d")?),
                    avg_latency_per_token: r.try_get::<Option<f64>, _>("lat")?.unwrap_or(0.0),
                });
            }
            out
        });
        Ok(rows)
    }

    /// Calls per API base and those that took `threshold` or longer, most slow calls first.
    pub async fn slow_calls(
        &self,
        q: &LatencyQuery,
        threshold: std::time::Duration,
    ) -> Result<Vec<SlowRow>, StoreError> {
        let sql = format!(
            "SELECT api_base, COUNT(*) AS total_count, \
             SUM(CASE WHEN end_time - start_time >= $6 THEN 1 ELSE 0 END) AS slow_count \
             FROM idlehands_spend_logs {WHERE} \
             GROUP BY api_base ORDER BY slow_count DESC, api_base"
        );
        let key = q.api_key.as_deref().map(token_of);
        let threshold_ms = i64::try_from(threshold.as_millis()).unwrap_or(i64::MAX);
        let rows = on_db!(&self.db, pool => {
            let found = filtered!(&sql, q, key.as_deref())
                .bind(threshold_ms)
                .fetch_all(pool)
                .await?;
            let mut out = Vec::with_capacity(found.len());
            for r in &found {
                out.push(SlowRow {
                    api_base: r.try_get("api_base")?,
                    total_count: r.try_get("total_count")?,
                    slow_count: r.try_get::<Option<i64>, _>("slow_count")?.unwrap_or(0),
                });
            }
            out
        });
        Ok(rows)
    }
}
