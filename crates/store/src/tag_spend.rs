//! Spend by request tag (`/spend/tags`, `/global/spend/tags`): each spend-log row counts once
//! for every tag it carries. Read from the rows (as LiteLLM reads its view over them): tags
//! are not in the daily rollups.

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::db::{Backend, Store, on_db};
use crate::error::StoreError;
use crate::spend_db::wide_sum;

/// One tag's calls over a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagSpend {
    pub tag: String,
    pub requests: i64,
    /// Nano-USD.
    pub spend: i64,
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
        // Whole dollars and the nano rest summed apart: a tag's total can pass what one
        // BIGINT sum of nano-dollars holds.
        let select = "SELECT t.value AS tag, CAST(COUNT(*) AS BIGINT) AS n, \
             CAST(SUM(s.spend / 1000000000) AS BIGINT) AS s_hi, \
             CAST(SUM(s.spend % 1000000000) AS BIGINT) AS s_lo";
        // SQLite spreads a JSON array with `json_each`, Postgres with a lateral join.
        let tags = match self.backend() {
            Backend::Sqlite => ", json_each(s.request_tags) t",
            Backend::Postgres => {
                " CROSS JOIN LATERAL jsonb_array_elements_text(s.request_tags::jsonb) AS t(value)"
            }
        };
        let sql = format!(
            "{select} FROM idlehands_spend_logs s{tags} \
             WHERE s.start_time >= $1 AND s.start_time < $2{user_clause} GROUP BY t.value"
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
}
