//! LiteLLM's `/{user,team,organization,customer}/daily/activity` reads: the daily rollup by
//! key, grouped per day, key, model, model group, provider and one entity (user, team,
//! organization or end user), newest day first, a page at a time. These groups are the rows
//! of LiteLLM's per-entity daily tables, so pages hold what LiteLLM's would.

use std::collections::HashMap;

use chrono::NaiveDate;
use sqlx::Row;

use crate::daily_spend::{self, Rollup, Source};
use crate::db::{Store, on_db, placeholders};
use crate::error::StoreError;
use crate::spend_db::wide_sum;

/// Whose activity: the rollup column a page is grouped and filtered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivityEntity {
    User,
    Team,
    Organization,
    EndUser,
}

impl ActivityEntity {
    fn column(self) -> &'static str {
        match self {
            ActivityEntity::User => "user_id",
            ActivityEntity::Team => "team_id",
            ActivityEntity::Organization => "organization_id",
            ActivityEntity::EndUser => "end_user",
        }
    }
}

/// A page of [`Store::daily_activity`].
#[derive(Debug, Clone)]
pub struct ActivityQuery {
    pub entity: ActivityEntity,
    /// Only these entities (`None`: every one, those without one included).
    pub ids: Option<Vec<String>>,
    /// Not these (calls without the entity stay in).
    pub exclude: Vec<String>,
    /// UTC days, both included.
    pub first_day: NaiveDate,
    pub last_day: NaiveDate,
    pub model: Option<String>,
    /// Only these keys (hashes; `None`: every key).
    pub api_keys: Option<Vec<String>>,
    /// From 1.
    pub page: u32,
    pub page_size: u32,
}

/// One group's sums. Spend in nano-dollars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityRow {
    /// UTC midnight of the day, epoch ms.
    pub day_ms: i64,
    pub api_key: String,
    pub model: String,
    pub model_group: Option<String>,
    pub provider: Option<String>,
    pub entity: Option<String>,
    pub spend: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub requests: i64,
    pub successful_requests: i64,
    pub failed_requests: i64,
}

#[derive(Debug, Clone)]
pub struct ActivityPage {
    /// Groups over every page.
    pub total: i64,
    pub rows: Vec<ActivityRow>,
}

/// What a daily-activity answer says of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFacts {
    pub key_alias: Option<String>,
    pub team_id: Option<String>,
    pub user_id: Option<String>,
}

const GROUP: &str = "day, api_key, model, model_group, custom_llm_provider";

impl Store {
    /// One page of daily activity (see the module's note).
    pub async fn daily_activity(&self, q: &ActivityQuery) -> Result<ActivityPage, StoreError> {
        let col = q.entity.column();
        let day = |d: NaiveDate| {
            d.and_hms_opt(0, 0, 0)
                .map_or(0, |t| t.and_utc().timestamp_millis())
                / daily_spend::DAY_MS
        };
        let (lo, hi) = (day(q.first_day), day(q.last_day) + 1);
        let mut texts: Vec<&str> = Vec::new();
        let mut conds: Vec<String> = Vec::new();
        // `$1` and `$2` are the days.
        fn list<'a>(values: &'a [String], texts: &mut Vec<&'a str>) -> String {
            let from = texts.len() + 3;
            texts.extend(values.iter().map(String::as_str));
            placeholders(from, values.len())
        }
        match &q.ids {
            Some(ids) if ids.is_empty() => conds.push("1 = 0".to_owned()),
            Some(ids) => conds.push(format!("{col} IN ({})", list(ids, &mut texts))),
            None => {}
        }
        if !q.exclude.is_empty() {
            conds.push(format!(
                "({col} IS NULL OR {col} NOT IN ({}))",
                list(&q.exclude, &mut texts)
            ));
        }
        if let Some(model) = &q.model {
            conds.push(format!(
                "model = {}",
                list(std::slice::from_ref(model), &mut texts)
            ));
        }
        match &q.api_keys {
            Some(keys) if keys.is_empty() => conds.push("1 = 0".to_owned()),
            Some(keys) => conds.push(format!("api_key IN ({})", list(keys, &mut texts))),
            None => {}
        }
        let where_sql = if conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conds.join(" AND "))
        };
        let relation = daily_spend::relation(Source::Rollup(Rollup::ByKey), "$1", "$2", "");
        let count_sql = format!(
            "SELECT COUNT(*) FROM (SELECT 1 AS one FROM {relation}{where_sql} \
             GROUP BY {GROUP}, {col}) g"
        );
        let n = texts.len() + 2;
        let page_sql = format!(
            "SELECT {GROUP}, {col} AS entity, {}, {}, {}, \
             CAST(SUM(requests) AS BIGINT) AS n, CAST(SUM(successful_requests) AS BIGINT) AS ok, \
             CAST(SUM(failed_requests) AS BIGINT) AS failed \
             FROM {relation}{where_sql} GROUP BY {GROUP}, {col} \
             ORDER BY day DESC, api_key, model, model_group, custom_llm_provider, {col} \
             LIMIT ${} OFFSET ${}",
            daily_spend::sum_parts("spend", "s"),
            daily_spend::sum_parts("prompt_tokens", "p"),
            daily_spend::sum_parts("completion_tokens", "c"),
            n + 1,
            n + 2,
        );
        let offset = i64::from(q.page.max(1) - 1) * i64::from(q.page_size);
        let (total, rows) = on_db!(&self.db, pool => {
            let mut count = sqlx::query_scalar::<_, i64>(&count_sql).bind(lo).bind(hi);
            for t in &texts { count = count.bind(*t); }
            let total = count.fetch_one(pool).await?;
            let mut page = sqlx::query(&page_sql).bind(lo).bind(hi);
            for t in &texts { page = page.bind(*t); }
            let found = page
                .bind(i64::from(q.page_size))
                .bind(offset)
                .fetch_all(pool)
                .await?;
            let mut rows = Vec::with_capacity(found.len());
            for r in &found {
                rows.push(ActivityRow {
                    day_ms: r.try_get::<i64, _>("day")?.saturating_mul(daily_spend::DAY_MS),
                    api_key: r.try_get("api_key")?,
                    model: r.try_get("model")?,
                    model_group: r.try_get("model_group")?,
                    provider: r.try_get("custom_llm_provider")?,
                    entity: r.try_get("entity")?,
                    spend: wide_sum(r.try_get("s_hi")?, r.try_get("s_lo")?),
                    prompt_tokens: wide_sum(r.try_get("p_hi")?, r.try_get("p_lo")?),
                    completion_tokens: wide_sum(r.try_get("c_hi")?, r.try_get("c_lo")?),
                    requests: r.try_get("n")?,
                    successful_requests: r.try_get("ok")?,
                    failed_requests: r.try_get("failed")?,
                });
            }
            (total, rows)
        });
        Ok(ActivityPage { total, rows })
    }

    /// Alias, team and user of each token that has a key (deleted keys are not in the map),
    /// one query per 500 tokens.
    pub async fn key_facts(
        &self,
        tokens: &[String],
    ) -> Result<HashMap<String, KeyFacts>, StoreError> {
        let mut out = HashMap::with_capacity(tokens.len());
        for part in tokens.chunks(500) {
            let sql = format!(
                "SELECT token, key_alias, team_id, user_id FROM idlehands_verification_tokens \
                 WHERE token IN ({})",
                placeholders(1, part.len())
            );
            type Found = (String, Option<String>, Option<String>, Option<String>);
            let found: Vec<Found> = on_db!(&self.db, pool => {
                let mut q = sqlx::query_as(&sql);
                for t in part {
                    q = q.bind(t);
                }
                q.fetch_all(pool).await?
            });
            for (token, key_alias, team_id, user_id) in found {
                out.insert(
                    token,
                    KeyFacts {
                        key_alias,
                        team_id,
                        user_id,
                    },
                );
            }
        }
        Ok(out)
    }
}
