//! Kept health-check results (LiteLLM's `LiteLLM_HealthCheckTable`): a row per model each time
//! `/health` checks a named model, and from the background checks a row per model when its
//! status changed or its last row is an hour old. Read back by `/health/history` and
//! `/health/latest`.

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::Store;
use crate::db::{BeginWrite, from_ms, on_db, to_ms};
use crate::error::StoreError;

/// A background check rewrites a model's unchanged status after this long, so that the
/// history shows it was still being checked.
pub const UNCHANGED_REFRESH: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// LiteLLM keeps the first 500 characters of an error.
const ERROR_CHARS: usize = 500;

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheckRow {
    pub health_check_id: String,
    pub model_name: String,
    pub model_id: Option<String>,
    /// `healthy` or `unhealthy`.
    pub status: String,
    pub healthy_count: i64,
    pub unhealthy_count: i64,
    pub error_message: Option<String>,
    pub response_time_ms: Option<f64>,
    pub checked_by: Option<String>,
    pub checked_at: DateTime<Utc>,
}

impl HealthCheckRow {
    /// A row for a check of `model_name` that just ended; the status follows LiteLLM: healthy
    /// when any of its deployments answered.
    pub fn new(
        model_name: &str,
        model_id: Option<&str>,
        (healthy_count, unhealthy_count): (i64, i64),
        error_message: Option<&str>,
        response_time_ms: f64,
        checked_by: Option<&str>,
        checked_at: DateTime<Utc>,
    ) -> Self {
        HealthCheckRow {
            health_check_id: uuid::Uuid::new_v4().to_string(),
            model_name: model_name.to_string(),
            model_id: model_id.map(str::to_string),
            status: if healthy_count > 0 {
                "healthy"
            } else {
                "unhealthy"
            }
            .to_string(),
            healthy_count,
            unhealthy_count,
            error_message: error_message.map(|e| e.chars().take(ERROR_CHARS).collect()),
            response_time_ms: response_time_ms.is_finite().then_some(response_time_ms),
            checked_by: checked_by.map(str::to_string),
            checked_at,
        }
    }

    /// What `/health/latest` keys a model by: its deployment id, else its name.
    pub fn model_key(&self) -> &str {
        self.model_id.as_deref().unwrap_or(&self.model_name)
    }
}

/// Which of a background run's `rows` to keep: those whose model has no row yet, whose status
/// changed, or whose last row is older than [`UNCHANGED_REFRESH`].
pub fn changed_or_stale(
    rows: Vec<HealthCheckRow>,
    latest: &[HealthCheckRow],
) -> Vec<HealthCheckRow> {
    rows.into_iter()
        .filter(|r| {
            match latest
                .iter()
                .filter(|l| l.model_key() == r.model_key())
                .max_by_key(|l| l.checked_at)
            {
                None => true,
                Some(last) => {
                    last.status != r.status || r.checked_at - last.checked_at >= UNCHANGED_REFRESH
                }
            }
        })
        .collect()
}

const COLUMNS: &str = "health_check_id, model_name, model_id, status, healthy_count, \
    unhealthy_count, error_message, response_time_ms, checked_by, checked_at";

/// A row of [`COLUMNS`], on either database.
macro_rules! health_row {
    ($r:expr) => {
        (|| -> Result<HealthCheckRow, sqlx::Error> {
            Ok(HealthCheckRow {
                health_check_id: $r.try_get("health_check_id")?,
                model_name: $r.try_get("model_name")?,
                model_id: $r.try_get("model_id")?,
                status: $r.try_get("status")?,
                healthy_count: $r.try_get("healthy_count")?,
                unhealthy_count: $r.try_get("unhealthy_count")?,
                error_message: $r.try_get("error_message")?,
                response_time_ms: $r.try_get("response_time_ms")?,
                checked_by: $r.try_get("checked_by")?,
                checked_at: from_ms($r.try_get("checked_at")?),
            })
        })()
    };
}

impl Store {
    /// Keeps `rows` in one transaction.
    pub async fn add_health_checks(&self, rows: &[HealthCheckRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "INSERT INTO idlehands_health_checks ({COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        );
        on_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            for r in rows {
                sqlx::query(&sql)
                    .bind(&r.health_check_id)
                    .bind(&r.model_name)
                    .bind(&r.model_id)
                    .bind(&r.status)
                    .bind(r.healthy_count)
                    .bind(r.unhealthy_count)
                    .bind(&r.error_message)
                    .bind(r.response_time_ms)
                    .bind(&r.checked_by)
                    .bind(to_ms(r.checked_at))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Rows newest first, optionally of one model name and one status.
    pub async fn health_check_history(
        &self,
        model_name: Option<&str>,
        status: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<HealthCheckRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM idlehands_health_checks \
             WHERE ($1 IS NULL OR model_name = $1) AND ($2 IS NULL OR status = $2) \
             ORDER BY checked_at DESC, health_check_id LIMIT $3 OFFSET $4"
        );
        let rows = on_db!(&self.db, pool => {
            sqlx::query(&sql)
                .bind(model_name)
                .bind(status)
                .bind(limit)
                .bind(offset)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|r| health_row!(r))
                .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }

    /// The newest row of each model (by deployment id and name), ordered by name and id.
    pub async fn latest_health_checks(&self) -> Result<Vec<HealthCheckRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM (SELECT {COLUMNS}, ROW_NUMBER() OVER (\
                 PARTITION BY model_name, COALESCE(model_id, '') \
                 ORDER BY checked_at DESC, health_check_id) AS n \
             FROM idlehands_health_checks) newest \
             WHERE n = 1 ORDER BY model_name, COALESCE(model_id, '')"
        );
        let rows = on_db!(&self.db, pool => {
            sqlx::query(&sql)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|r| health_row!(r))
                .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn row(model: &str, id: Option<&str>, healthy: i64, secs: i64) -> HealthCheckRow {
        HealthCheckRow::new(model, id, (healthy, 1 - healthy), None, 3.0, None, at(secs))
    }

    #[test]
    fn a_background_run_keeps_new_models_changes_and_hour_old_statuses() {
        let latest = vec![
            row("a", Some("a1"), 1, 0),
            row("a", Some("a1"), 0, 100),
            row("b", None, 1, 0),
            row("c", None, 1, 0),
        ];
        let run = vec![
            // Was unhealthy at 100: a change.
            row("a", Some("a1"), 1, 200),
            // Healthy, as it was 40 minutes ago: not kept.
            row("b", None, 1, 2400),
            // Healthy, as an hour ago: kept again.
            row("c", None, 1, 3600),
            row("d", Some("d1"), 0, 200),
        ];
        let kept: Vec<String> = changed_or_stale(run, &latest)
            .iter()
            .map(|r| r.model_name.clone())
            .collect();
        assert_eq!(kept, ["a", "c", "d"]);
    }

    #[test]
    fn errors_are_cut_to_500_characters_and_status_follows_the_counts() {
        let long = "é".repeat(600);
        let r = HealthCheckRow::new("m", None, (0, 2), Some(&long), f64::NAN, None, at(0));
        assert_eq!(r.error_message.unwrap().chars().count(), 500);
        assert_eq!(r.status, "unhealthy");
        assert_eq!(r.response_time_ms, None);
        assert_eq!(row("m", None, 1, 0).status, "healthy");
    }
}
