//! LiteLLM's `/{user,team,organization,customer}/daily/activity` reads: the daily rollup by
//! key, grouped per day, key, model, model group, provider and one entity (user, team,
//! organization or end user), newest day first, a page at a time ([`Store::daily_activity`];
//! these groups are the rows of LiteLLM's per-entity daily tables, so pages hold what
//! LiteLLM's would), or the whole range at once ([`Store::daily_activity_all`], its
//! `/aggregated` routes).

use std::collections::HashMap;

use chrono::NaiveDate;
use sqlx::Row;

use crate::daily_spend::{self, Rollup};
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
    /// The rollup's key columns after the provider, up to and with this entity's: grouping
    /// by a prefix of the primary key reads the table in its order, with no sort (see
    /// [`Store::daily_activity`]).
    fn columns(self) -> &'static [&'static str] {
        const AFTER_PROVIDER: [&str; 4] = ["user_id", "team_id", "organization_id", "end_user"];
        let n = match self {
            ActivityEntity::User => 1,
            ActivityEntity::Team => 2,
            ActivityEntity::Organization => 3,
            ActivityEntity::EndUser => 4,
        };
        AFTER_PROVIDER.split_at(n).0
    }

    fn column(self) -> &'static str {
        self.columns().last().copied().unwrap_or("user_id")
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

/// An [`ActivityRow`] from a row with the group's columns (`api_key` may be `''`), the
/// entity's column by its name, and [`sums_sql`]. `''` dimensions read as missing.
macro_rules! activity_row {
    ($r:expr, $col:expr) => {{
        let r = $r;
        let stated = |s: String| Some(s).filter(|s| !s.is_empty());
        ActivityRow {
            day_ms: r
                .try_get::<i64, _>("day")?
                .saturating_mul(daily_spend::DAY_MS),
            api_key: r.try_get("api_key")?,
            model: r.try_get("model")?,
            model_group: stated(r.try_get("model_group")?),
            provider: stated(r.try_get("custom_llm_provider")?),
            entity: stated(r.try_get($col)?),
            spend: wide_sum(r.try_get("s_hi")?, r.try_get("s_lo")?),
            prompt_tokens: wide_sum(r.try_get("p_hi")?, r.try_get("p_lo")?),
            completion_tokens: wide_sum(r.try_get("c_hi")?, r.try_get("c_lo")?),
            requests: r.try_get("n")?,
            successful_requests: r.try_get("ok")?,
            failed_requests: r.try_get("failed")?,
        }
    }};
}

/// The sums a group's row carries, as [`activity_row!`] reads them.
fn sums_sql() -> String {
    format!(
        "{}, {}, {}, CAST(SUM(requests) AS BIGINT) AS n, \
         CAST(SUM(successful_requests) AS BIGINT) AS ok, \
         CAST(SUM(failed_requests) AS BIGINT) AS failed",
        daily_spend::sum_parts("spend", "s"),
        daily_spend::sum_parts("prompt_tokens", "p"),
        daily_spend::sum_parts("completion_tokens", "c"),
    )
}

/// The whole range at once (LiteLLM's `/daily/activity/aggregated`).
#[derive(Debug, Clone, Default)]
pub struct ActivityAll {
    /// Per day, model, model group, provider and entity, every key's calls (`api_key` empty).
    pub sums: Vec<ActivityRow>,
    /// The same per key as well, for the keys of most spend only.
    pub top_keys: Vec<ActivityRow>,
    /// Keys with calls in the range and filters.
    pub total_keys: i64,
    /// Keys with calls, per entity (`None`: calls without one).
    pub entity_keys: Vec<(Option<String>, i64)>,
}

impl Store {
    /// One page of daily activity: groups of the rollup by key, by day, key, model, model
    /// group, provider and [`ActivityEntity::columns`]. Those are a prefix of the rollup's
    /// primary key, so SQLite (and Postgres, when it picks the index) reads the range in
    /// key order, sums each group as it passes and stops after the page; unless the page is
    /// the last one, the count reads the range once more, without a sort. Groups also split
    /// by the columns before the entity's (a team's calls by user): those follow from the
    /// key in all but rare cases
    /// (a key moved to another team), so the groups are LiteLLM's rows. A dimension the
    /// calls did not have is read as `''` (as stored), which the answer names as LiteLLM
    /// names a missing one.
    pub async fn daily_activity(&self, q: &ActivityQuery) -> Result<ActivityPage, StoreError> {
        let col = q.entity.column();
        let Sql {
            page: page_sql,
            count: count_sql,
            at: Filters { texts, lo, hi, .. },
        } = activity_sql(q);
        self.activity_page(
            &Paged {
                page: &page_sql,
                count: &count_sql,
                lo,
                hi,
                texts: &texts,
            },
            col,
            q.page,
            q.page_size,
        )
        .await
    }

    /// One page of groups read by `page.page` (`$1` and `$2` the range, then the texts, then
    /// the page size and offset), each an [`ActivityRow`] whose entity is the column `col`;
    /// unless the page is the last one, `page.count` counts them all.
    pub(crate) async fn activity_page(
        &self,
        sql: &Paged<'_>,
        col: &str,
        page: u32,
        page_size: u32,
    ) -> Result<ActivityPage, StoreError> {
        let (lo, hi, texts) = (sql.lo, sql.hi, sql.texts);
        let offset = i64::from(page.max(1) - 1) * i64::from(page_size);
        let (total, rows) = on_db!(&self.db, pool => {
            let mut found = sqlx::query(sql.page).bind(lo).bind(hi);
            for t in texts { found = found.bind(*t); }
            let found = found
                .bind(i64::from(page_size))
                .bind(offset)
                .fetch_all(pool)
                .await?;
            let mut rows = Vec::with_capacity(found.len());
            for r in &found {
                rows.push(activity_row!(r, col));
            }
            // A short page is the last one: the groups are counted without reading the
            // range again.
            let last = rows.len() < page_size as usize && (!rows.is_empty() || offset == 0);
            let total = if last {
                offset.saturating_add(i64::try_from(rows.len()).unwrap_or(i64::MAX))
            } else {
                let mut count = sqlx::query_scalar::<_, i64>(sql.count).bind(lo).bind(hi);
                for t in texts { count = count.bind(*t); }
                count.fetch_one(pool).await?
            };
            (total, rows)
        });
        Ok(ActivityPage { total, rows })
    }

    /// The whole range of `q` at once (its page fields unused): the sums by day, model,
    /// model group, provider and entity over every key, and the same per key for the
    /// `key_limit` keys of most spend (ties by hash), with the number of keys overall and per
    /// entity. Three reads of the range: the sums (from the rollup without the key when no
    /// key is asked for), each key's spend per entity, and the top keys' groups (by the
    /// key's index).
    pub async fn daily_activity_all(
        &self,
        q: &ActivityQuery,
        key_limit: usize,
    ) -> Result<ActivityAll, StoreError> {
        let col = q.entity.column();
        let Filters {
            conds,
            texts,
            lo,
            hi,
        } = filters(q);
        let table = Rollup::ByKey.table();
        // Every key's sums: without a key filter from the rollup without the key, grouped by
        // a prefix of its primary key (read in its order, no sort; groups split by the
        // columns before the entity's add up the same).
        let (sums_table, dims) = if q.api_keys.is_none() {
            let mut dims = vec!["day", "model", "model_group", "custom_llm_provider"];
            dims.extend(q.entity.columns());
            (Rollup::AllKeys.table(), dims.join(", "))
        } else {
            (
                table,
                format!("day, model, model_group, custom_llm_provider, {col}"),
            )
        };
        let by_dims_sql = format!(
            "SELECT {dims}, '' AS api_key, {} FROM {sums_table} WHERE {conds} GROUP BY {dims}",
            sums_sql()
        );
        // Each key's spend per entity: the keys' ranking, and how many keys each entity has.
        let keys_sql = format!(
            "SELECT api_key, {col}, {} FROM {table} WHERE {conds} GROUP BY api_key, {col}",
            daily_spend::sum_parts("spend", "s")
        );
        let (sums, key_parts) = on_db!(&self.db, pool => {
            let mut query = sqlx::query(&by_dims_sql).bind(lo).bind(hi);
            for t in &texts { query = query.bind(*t); }
            let mut sums = Vec::new();
            for r in &query.fetch_all(pool).await? {
                sums.push(activity_row!(r, col));
            }
            let mut query = sqlx::query(&keys_sql).bind(lo).bind(hi);
            for t in &texts { query = query.bind(*t); }
            let mut parts: Vec<(String, String, i64)> = Vec::new();
            for r in &query.fetch_all(pool).await? {
                parts.push((
                    r.try_get("api_key")?,
                    r.try_get(col)?,
                    wide_sum(r.try_get("s_hi")?, r.try_get("s_lo")?),
                ));
            }
            (sums, parts)
        });
        let mut by_key: HashMap<String, i64> = HashMap::new();
        let mut by_entity: HashMap<String, i64> = HashMap::new();
        for (key, entity, spend) in key_parts {
            *by_entity.entry(entity).or_default() += 1;
            let k = by_key.entry(key).or_default();
            *k = k.saturating_add(spend);
        }
        let mut entity_keys: Vec<(Option<String>, i64)> = by_entity
            .into_iter()
            .map(|(e, n)| (Some(e).filter(|e| !e.is_empty()), n))
            .collect();
        entity_keys.sort();
        let mut keys: Vec<(i64, String)> = by_key.into_iter().map(|(k, s)| (s, k)).collect();
        let total_keys = i64::try_from(keys.len()).unwrap_or(i64::MAX);
        keys.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        keys.truncate(key_limit);
        let top: Vec<String> = keys.into_iter().map(|(_, k)| k).collect();
        let mut top_keys = Vec::new();
        if !top.is_empty() {
            let mut texts = texts;
            let mut conds = conds;
            restrict(&mut conds, "api_key", &top, &mut texts);
            let group = format!("day, api_key, model, model_group, custom_llm_provider, {col}");
            let keyed_sql = format!(
                "SELECT {group}, {} FROM {table} WHERE {conds} GROUP BY {group}",
                sums_sql()
            );
            top_keys = on_db!(&self.db, pool => {
                let mut query = sqlx::query(&keyed_sql).bind(lo).bind(hi);
                for t in &texts { query = query.bind(*t); }
                let mut rows = Vec::new();
                for r in &query.fetch_all(pool).await? {
                    rows.push(activity_row!(r, col));
                }
                rows
            });
        }
        Ok(ActivityAll {
            sums,
            top_keys,
            total_keys,
            entity_keys,
        })
    }
}

/// The page and count queries of [`Store::daily_activity`]: `$1` and `$2` are `lo` and `hi`,
/// then `texts`; the page's last two are its size and offset.
fn activity_sql(q: &ActivityQuery) -> Sql<'_> {
    let at = filters(q);
    let conds = &at.conds;
    let mut group = vec![
        "day",
        "api_key",
        "model",
        "model_group",
        "custom_llm_provider",
    ];
    group.extend(q.entity.columns());
    let order: Vec<String> = group.iter().map(|c| format!("{c} DESC")).collect();
    let group = group.join(", ");
    let table = Rollup::ByKey.table();
    let count_sql = format!(
        "SELECT COUNT(*) FROM (SELECT 1 AS one FROM {table} WHERE {conds} GROUP BY {group}) g"
    );
    let n = at.texts.len() + 2;
    let page_sql = format!(
        "SELECT {group}, {} FROM {table} WHERE {conds} GROUP BY {group} ORDER BY {} \
         LIMIT ${} OFFSET ${}",
        sums_sql(),
        order.join(", "),
        n + 1,
        n + 2,
    );
    Sql {
        page: page_sql,
        count: count_sql,
        at,
    }
}

/// The query's `WHERE` on the rollup by key: `$1` and `$2` the days `[lo, hi)`, then `texts`.
struct Filters<'q> {
    conds: String,
    texts: Vec<&'q str>,
    lo: i64,
    hi: i64,
}

fn filters(q: &ActivityQuery) -> Filters<'_> {
    let col = q.entity.column();
    let day = |d: NaiveDate| {
        daily_spend::day_of_ms(
            d.and_hms_opt(0, 0, 0)
                .map_or(0, |t| t.and_utc().timestamp_millis()),
        )
    };
    let (lo, hi) = (day(q.first_day), day(q.last_day) + 1);
    let mut texts: Vec<&str> = Vec::new();
    let mut conds = String::from("day >= $1 AND day < $2");
    if let Some(ids) = &q.ids {
        restrict(&mut conds, col, ids, &mut texts);
    }
    if !q.exclude.is_empty() {
        let ids = list(&q.exclude, &mut texts);
        conds.push_str(&format!(" AND {col} NOT IN ({ids})"));
    }
    if let Some(model) = &q.model {
        let at = list(std::slice::from_ref(model), &mut texts);
        conds.push_str(&format!(" AND model = {at}"));
    }
    if let Some(keys) = &q.api_keys {
        restrict(&mut conds, "api_key", keys, &mut texts);
    }
    Filters {
        conds,
        texts,
        lo,
        hi,
    }
}

/// Placeholders for `values`, bound after the texts so far (`$1` and `$2` are the days).
pub(crate) fn list<'a>(values: &'a [String], texts: &mut Vec<&'a str>) -> String {
    let from = texts.len() + 3;
    texts.extend(values.iter().map(String::as_str));
    placeholders(from, values.len())
}

/// Only rows whose `col` is one of `values` (none: no row), bound as [`list`] binds.
pub(crate) fn restrict<'a>(
    conds: &mut String,
    col: &str,
    values: &'a [String],
    texts: &mut Vec<&'a str>,
) {
    if values.is_empty() {
        conds.push_str(" AND 1 = 0");
    } else {
        conds.push_str(&format!(" AND {col} IN ({})", list(values, texts)));
    }
}

/// A page query of activity groups, its count, and what both bind (see
/// [`Store::activity_page`]).
pub(crate) struct Paged<'a> {
    pub page: &'a str,
    pub count: &'a str,
    pub lo: i64,
    pub hi: i64,
    pub texts: &'a [&'a str],
}

struct Sql<'q> {
    page: String,
    count: String,
    /// What both bind.
    at: Filters<'q>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use crate::db::Db;

    fn query(entity: ActivityEntity, ids: Option<Vec<String>>) -> ActivityQuery {
        ActivityQuery {
            entity,
            ids,
            exclude: Vec::new(),
            first_day: NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
            last_day: NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
            model: None,
            api_keys: None,
            page: 1,
            page_size: 50,
        }
    }

    /// SQLite reads the range in the rollup's key order for every entity: no sort of all
    /// the groups before the first page (what made the admin's first page take seconds on
    /// a big store), and none for the count.
    #[tokio::test]
    async fn sqlite_pages_and_counts_without_sorting() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a.db").display().to_string())
            .await
            .unwrap();
        let Db::Sqlite(pool, _) = &store.db else {
            panic!("a path opens SQLite")
        };
        for entity in [
            ActivityEntity::User,
            ActivityEntity::Team,
            ActivityEntity::Organization,
            ActivityEntity::EndUser,
        ] {
            for ids in [None, Some(vec!["a".to_owned(), "b".to_owned()])] {
                let q = query(entity, ids);
                let sql = activity_sql(&q);
                for (text, extra) in [(&sql.page, 2), (&sql.count, 0)] {
                    let explain = format!("EXPLAIN QUERY PLAN {text}");
                    let mut plan = sqlx::query(&explain).bind(sql.at.lo).bind(sql.at.hi);
                    for t in &sql.at.texts {
                        plan = plan.bind(*t);
                    }
                    for _ in 0..extra {
                        plan = plan.bind(1i64);
                    }
                    let plan: Vec<String> = plan
                        .fetch_all(pool)
                        .await
                        .unwrap()
                        .iter()
                        .map(|r| r.get::<String, _>("detail"))
                        .collect();
                    let plan = plan.join("\n");
                    assert!(!plan.contains("TEMP B-TREE"), "{entity:?}: {plan}");
                    assert!(plan.contains("idlehands_daily_spend_by_key"), "{plan}");
                }
            }
        }
        store.close().await;
    }
}
