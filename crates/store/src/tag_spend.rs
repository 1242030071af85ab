//! Spend by request tag (`/spend/tags`, `/global/spend/tags`, `/tag/daily/activity`): each
//! spend-log row counts once for every tag it carries. Read from the rows (as LiteLLM reads
//! its view over them): tags are not in the daily rollups.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::Row;

use crate::daily_activity::{ActivityPage, Paged, list, restrict};
use crate::daily_spend::DAY_MS;
use crate::db::{Backend, Store, on_db};
use crate::error::StoreError;
use crate::spend::{STATUS_FAILURE, STATUS_SUCCESS};
use crate::spend_db::wide_sum;

/// A page of [`Store::tag_activity`].
#[derive(Debug, Clone)]
pub struct TagActivityQuery {
    /// Only these tags (`None`: every tag).
    pub tags: Option<Vec<String>>,
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

/// One tag's calls over a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagSpend {
    pub tag: String,
    pub requests: i64,
    /// Nano-USD.
    pub spend: i64,
}

/// The UTC days `first` to `last` (both included) as `[lo, hi)` in epoch milliseconds, the
/// spend rows' `start_time`.
fn days_ms(first: NaiveDate, last: NaiveDate) -> (i64, i64) {
    let ms = |d: NaiveDate| {
        d.and_hms_opt(0, 0, 0)
            .map_or(0, |t| t.and_utc().timestamp_millis())
    };
    (ms(first), ms(last).saturating_add(DAY_MS))
}

/// A tag passed in calls: its first and last call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagSeen {
    pub tag: String,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
}

impl Store {
    /// Requests and spend per tag over `[start, end)` (unbounded where `None`), biggest spend
    /// first; `user` keeps only that user's rows.
    pub async fn spend_by_tag(
        &self,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
        user: Option<&str>,
    ) -> Result<Vec<TagSpend>, StoreError> {
        let lo = start.map_or(i64::MIN, |t| t.timestamp_millis());
        let hi = end.map_or(i64::MAX, |t| t.timestamp_millis());
        let user_clause = if user.is_some() {
            " AND s.user_id = $3"
        } else {
            ""
        };
        let sql = format!(
            "SELECT t.value AS tag, CAST(COUNT(*) AS BIGINT) AS n, {} \
             FROM idlehands_spend_logs s{} \
             WHERE s.start_time >= $1 AND s.start_time < $2{user_clause} GROUP BY t.value",
            wide_sum_of("spend", "s"),
            self.each_tag(),
        );
        let mut out = on_db!(&self.db, pool => {
            let mut q = sqlx::query(&sql).bind(lo).bind(hi);
            if let Some(u) = user {
                q = q.bind(u);
            }
            let rows = q.fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(TagSpend {
                    tag: r.try_get("tag")?,
                    requests: r.try_get("n")?,
                    spend: wide_sum(r.try_get("s_hi")?, r.try_get("s_lo")?),
                });
            }
            out
        });
        out.sort_by(|a, b| b.spend.cmp(&a.spend).then_with(|| a.tag.cmp(&b.tag)));
        Ok(out)
    }

    /// One page of daily activity by tag (LiteLLM's `/tag/daily/activity`): the rows of the
    /// range grouped by day, tag, key, model, model group and provider (the rows of LiteLLM's
    /// daily tag table), newest day first, each [`ActivityRow::entity`] the tag. A call with
    /// several tags counts in each of them, as it does in LiteLLM's table.
    pub async fn tag_activity(&self, q: &TagActivityQuery) -> Result<ActivityPage, StoreError> {
        let (lo, hi) = days_ms(q.first_day, q.last_day);
        let mut texts: Vec<&str> = Vec::new();
        let mut conds = String::from("s.start_time >= $1 AND s.start_time < $2");
        if let Some(tags) = &q.tags {
            restrict(&mut conds, "t.value", tags, &mut texts);
        }
        if let Some(model) = &q.model {
            let at = list(std::slice::from_ref(model), &mut texts);
            conds.push_str(&format!(" AND s.model = {at}"));
        }
        if let Some(keys) = &q.api_keys {
            restrict(&mut conds, "s.api_key", keys, &mut texts);
        }
        let groups = format!(
            "SELECT s.start_time / {DAY_MS} AS day, t.value AS tag, s.api_key AS api_key, \
             s.model AS model, COALESCE(s.model_group, '') AS model_group, \
             COALESCE(s.custom_llm_provider, '') AS custom_llm_provider, {}, {}, {}, \
             CAST(COUNT(*) AS BIGINT) AS n, \
             CAST(SUM(CASE WHEN s.status = '{STATUS_SUCCESS}' THEN 1 ELSE 0 END) AS BIGINT) AS ok, \
             CAST(SUM(CASE WHEN s.status = '{STATUS_FAILURE}' THEN 1 ELSE 0 END) AS BIGINT) AS failed \
             FROM idlehands_spend_logs s{} WHERE {conds} GROUP BY 1, 2, 3, 4, 5, 6",
            wide_sum_of("spend", "s"),
            wide_sum_of("prompt_tokens", "p"),
            wide_sum_of("completion_tokens", "c"),
            self.each_tag(),
        );
        let n = texts.len() + 2;
        let page_sql = format!(
            "{groups} ORDER BY 1 DESC, 2, 3, 4, 5, 6 LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        );
        let count_sql = format!("SELECT COUNT(*) FROM ({groups}) g");
        self.activity_page(
            &Paged {
                page: &page_sql,
                count: &count_sql,
                lo,
                hi,
                texts: &texts,
            },
            "tag",
            q.page,
            q.page_size,
        )
        .await
    }

    /// Every tag the spend rows carry with its first and last call, by tag (`/tag/list`'s
    /// tags passed in calls): only the rows of `api_keys` (hashes) when given, only the UTC
    /// `days` (both included) when given.
    pub async fn tags_seen(
        &self,
        api_keys: Option<&[String]>,
        days: Option<(NaiveDate, NaiveDate)>,
    ) -> Result<Vec<TagSeen>, StoreError> {
        let (lo, hi) = days.map_or((i64::MIN, i64::MAX), |(a, b)| days_ms(a, b));
        let mut texts: Vec<&str> = Vec::new();
        let mut conds = String::from("s.start_time >= $1 AND s.start_time < $2");
        if let Some(keys) = api_keys {
            restrict(&mut conds, "s.api_key", keys, &mut texts);
        }
        let sql = format!(
            "SELECT t.value AS tag, MIN(s.start_time) AS first, MAX(s.start_time) AS last \
             FROM idlehands_spend_logs s{} WHERE {conds} GROUP BY t.value ORDER BY t.value",
            self.each_tag(),
        );
        let mut out = on_db!(&self.db, pool => {
            let mut q = sqlx::query(&sql).bind(lo).bind(hi);
            for t in &texts {
                q = q.bind(*t);
            }
            let rows = q.fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(TagSeen {
                    tag: r.try_get("tag")?,
                    first: crate::db::from_ms(r.try_get("first")?),
                    last: crate::db::from_ms(r.try_get("last")?),
                });
            }
            out
        });
        // By bytes, whatever the database's collation.
        out.sort_by(|a, b| a.tag.cmp(&b.tag));
        Ok(out)
    }

    /// Every tag any spend row carries (`/global/spend/all_tag_names`).
    pub async fn all_tag_names(&self) -> Result<Vec<String>, StoreError> {
        let sql = format!(
            "SELECT DISTINCT t.value AS tag FROM idlehands_spend_logs s{}",
            self.each_tag()
        );
        let mut tags = on_db!(&self.db, pool => {
            sqlx::query_scalar::<_, String>(&sql).fetch_all(pool).await?
        });
        // By bytes, whatever the database's collation.
        tags.sort_unstable();
        Ok(tags)
    }

    /// Every end user any spend row names (`/global/all_end_users`).
    pub async fn all_end_users(&self) -> Result<Vec<String>, StoreError> {
        let sql = "SELECT DISTINCT end_user FROM idlehands_spend_logs \
                   WHERE end_user IS NOT NULL AND end_user <> ''";
        let mut users = on_db!(&self.db, pool => {
            sqlx::query_scalar::<_, String>(sql).fetch_all(pool).await?
        });
        users.sort_unstable();
        Ok(users)
    }

    /// The join that gives each spend row (`s`) one row per tag (`t.value`): SQLite spreads a
    /// JSON array with `json_each`, Postgres with a lateral join.
    fn each_tag(&self) -> &'static str {
        match self.backend() {
            Backend::Sqlite => ", json_each(s.request_tags) t",
            Backend::Postgres => {
                " CROSS JOIN LATERAL jsonb_array_elements_text(s.request_tags::jsonb) AS t(value)"
            }
        }
    }
}

/// `SUM` of a spend row's (`s`) column as `{alias}_hi` and `{alias}_lo`, whole units and the
/// rest apart (a sum of nano-dollars can pass what one BIGINT holds; add them with
/// [`wide_sum`]), as the rollups keep them.
fn wide_sum_of(col: &str, alias: &str) -> String {
    format!(
        "CAST(SUM(s.{col} / 1000000000) AS BIGINT) AS {alias}_hi, \
         CAST(SUM(s.{col} % 1000000000) AS BIGINT) AS {alias}_lo"
    )
}
