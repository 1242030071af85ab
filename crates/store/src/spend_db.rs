//! Spend-log rows and key spend in the database: the writer's group commit, `/spend/logs`
//! queries and aggregates.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::OnceLock;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use sqlx::{PgPool, Row};

use crate::daily_spend::{self, Cell, Delta, Rollup, Source};
use crate::day_group_sums::DayGroupParts;
use crate::db::{BeginWrite, Db, Store, from_ms, json_text, on_db, to_ms};
use crate::duration::LlmDuration;
use crate::error::StoreError;
use crate::money::nanos_to_usd;
use crate::spend::{SpendAggregate, SpendGroup, SpendLogRow};
use crate::types::{DailySpend, JsonObjectText, SpendLogsQuery, SpendLogsResponse};

pub(crate) const ROW_COLS: &str = "request_id, call_type, api_key, spend, total_tokens, prompt_tokens, \
    completion_tokens, start_time, end_time, completion_start_time, request_duration_ms, model, \
    model_id, model_group, custom_llm_provider, api_base, user_id, team_id, end_user, \
    requester_ip_address, session_id, metadata, cache_hit, cache_key, request_tags, messages, \
    response, status, litellm_call_id, created_at, upstream_response_id, usage_estimated, \
    organization_id";
/// Rows `/spend/logs` returns at most per page.
pub const SPEND_LOGS_MAX_PAGE: u32 = 10_000;
pub const SPEND_LOGS_DEFAULT_PAGE: u32 = 1_000;

/// A budget window rolled over: `$1` token, `$2` next reset (ms).
pub(crate) const RESET_SPEND_SQL: &str =
    "UPDATE idlehands_verification_tokens SET spend = 0, budget_reset_at = $2 WHERE token = $1";
/// A commit's spend for one key: `$1` token, `$2` nano-USD (never negative). Saturates at
/// `i64::MAX` rather than failing the commit (Postgres: bigint out of range) or turning the
/// column into a float (SQLite).
pub(crate) const ADD_SPEND_SQL: &str = "UPDATE idlehands_verification_tokens SET spend = \
     CASE WHEN spend > 9223372036854775807 - $2 THEN 9223372036854775807 ELSE spend + $2 END \
     WHERE token = $1";

/// A commit's spend for one team, user, organization, end user or team member (see
/// [`crate::entities`]): created at its first spend, as LiteLLM creates end-user rows.
pub(crate) const ADD_ENTITY_SPEND_SQL: &str = "INSERT INTO idlehands_budgets \
     (entity, spend, updated_at) VALUES ($1, $2, $3) ON CONFLICT (entity) DO UPDATE SET spend = \
     CASE WHEN idlehands_budgets.spend > 9223372036854775807 - excluded.spend \
     THEN 9223372036854775807 ELSE idlehands_budgets.spend + excluded.spend END";
/// An entity's budget window rolled over: `$1` entity, `$2` next reset (ms).
pub(crate) const RESET_ENTITY_SQL: &str =
    "UPDATE idlehands_budgets SET spend = 0, budget_reset_at = $2 WHERE entity = $1";

/// One entry of a group commit, in the order the ledger produced them.
#[derive(Debug, Clone)]
pub enum BatchItem {
    /// A spend-log row; its `spend` is added to the key `api_key`.
    Row(Box<SpendLogRow>),
    /// The key's budget window rolled over: spend 0 from here on.
    Reset {
        token: String,
        budget_reset_at: DateTime<Utc>,
    },
}

/// What one group commit writes: the rows, the budget resets, and each key's spend increment.
pub(crate) struct CommitPlan<'a> {
    pub rows: Vec<&'a SpendLogRow>,
    pub resets: Vec<(&'a str, i64)>,
    /// Sorted by key: a fixed order keeps concurrent writers (fleet instances) from
    /// deadlocking.
    pub increments: Vec<(&'a str, i64)>,
    /// The same for the entities the rows name (`team:T`, `user:U`, ...), sorted.
    pub entity_increments: Vec<(String, i64)>,
    pub entity_resets: Vec<(&'a str, i64)>,
    /// What the rows (stored or not) add to the daily rollups, sorted (see
    /// `daily_spend::cells`).
    pub daily: Vec<(Rollup, Cell<'a>, Delta)>,
    /// What they add to `idlehands_spend_by_key_model`, sorted.
    pub key_model: Vec<daily_spend::KeyModelCell<'a>>,
}

impl<'a> CommitPlan<'a> {
    pub(crate) fn new(items: &'a [BatchItem], store_rows: bool) -> Self {
        let mut increments: HashMap<&str, i64> = HashMap::new();
        let mut entity_increments: HashMap<String, i64> = HashMap::new();
        let mut entity_resets = Vec::new();
        let mut resets = Vec::new();
        let mut rows = Vec::new();
        // Every row counts in the rollups, stored or not: with `disable_spend_logs` the reports
        // still work, as LiteLLM keeps its daily tables without its spend logs.
        let mut counted = Vec::new();
        for item in items {
            match item {
                BatchItem::Row(row) => {
                    if !row.api_key.is_empty() && row.spend > 0 {
                        let sum = increments.entry(row.api_key.as_str()).or_default();
                        *sum = sum.saturating_add(row.spend);
                    }
                    if row.spend > 0 {
                        for entity in crate::entities::entities_of(row) {
                            let sum = entity_increments.entry(entity).or_default();
                            *sum = sum.saturating_add(row.spend);
                        }
                    }
                    if store_rows {
                        rows.push(&**row);
                    }
                    counted.push(&**row);
                }
                BatchItem::Reset {
                    token,
                    budget_reset_at,
                } => {
                    // Spend before the rollover belongs to the old window.
                    if crate::entities::is_entity(token) {
                        entity_increments.remove(token.as_str());
                        entity_resets.push((token.as_str(), to_ms(*budget_reset_at)));
                    } else {
                        increments.remove(token.as_str());
                        resets.push((token.as_str(), to_ms(*budget_reset_at)));
                    }
                }
            }
        }
        let mut increments: Vec<_> = increments.into_iter().collect();
        increments.sort_unstable();
        let mut entity_increments: Vec<_> = entity_increments.into_iter().collect();
        entity_increments.sort_unstable();
        let daily = crate::daily_spend::cells(&counted);
        CommitPlan {
            key_model: crate::daily_spend::key_model_cells(&daily),
            daily,
            rows,
            resets,
            increments,
            entity_increments,
            entity_resets,
        }
    }
}

macro_rules! row_from_db {
    ($row:expr) => {{
        let row = $row;
        SpendLogRow {
            request_id: row.try_get("request_id")?,
            call_type: row.try_get("call_type")?,
            api_key: row.try_get("api_key")?,
            spend: row.try_get("spend")?,
            total_tokens: row.try_get("total_tokens")?,
            prompt_tokens: row.try_get("prompt_tokens")?,
            completion_tokens: row.try_get("completion_tokens")?,
            start_time: from_ms(row.try_get("start_time")?),
            end_time: from_ms(row.try_get("end_time")?),
            completion_start_time: row
                .try_get::<Option<i64>, _>("completion_start_time")?
                .map(from_ms),
            request_duration_ms: row.try_get("request_duration_ms")?,
            model: row.try_get("model")?,
            model_id: row.try_get("model_id")?,
            model_group: row.try_get("model_group")?,
            custom_llm_provider: row.try_get("custom_llm_provider")?,
            api_base: row.try_get("api_base")?,
            user: row.try_get("user_id")?,
            team_id: row.try_get("team_id")?,
            end_user: row.try_get("end_user")?,
            requester_ip_address: row.try_get("requester_ip_address")?,
            session_id: row.try_get("session_id")?,
            metadata: JsonObjectText::from_text(row.try_get("metadata")?).unwrap_or_default(),
            cache_hit: row.try_get("cache_hit")?,
            cache_key: row.try_get("cache_key")?,
            request_tags: serde_json::from_str(&row.try_get::<String, _>("request_tags")?)
                .unwrap_or_default(),
            messages: row
                .try_get::<Option<String>, _>("messages")?
                .and_then(|t| serde_json::from_str(&t).ok()),
            response: row
                .try_get::<Option<String>, _>("response")?
                .and_then(|t| serde_json::from_str(&t).ok()),
            status: row.try_get("status")?,
            litellm_call_id: row.try_get("litellm_call_id")?,
            upstream_response_id: row.try_get("upstream_response_id")?,
            usage_estimated: row.try_get("usage_estimated")?,
            organization_id: row.try_get("organization_id")?,
            model_budget: None,
            proxy_budget: false,
            route_budgets: Vec::new(),
        }
    }};
}
pub(crate) use row_from_db;

/// A day's spend, by user and by model.
type DayParts = (i64, BTreeMap<String, i64>, BTreeMap<String, i64>);

/// A sum kept in two parts, whole billions and the rest (`SUM(col / 1000000000)` and
/// `SUM(col % 1000000000)`, as the rollups store them), as one total saturated to `i64`. A plain
/// `SUM` of `BIGINT`s fails on SQLite once the total passes `i64::MAX` (and Postgres'
/// `CAST(SUM(..) AS BIGINT)` likewise), which one absurd row was enough to do; `TOTAL()` would
/// not fail but rounds past 2^53. Each part stays exact until billions of rows at the per-call
/// ceilings.
pub(crate) fn wide_sum(hi: i64, lo: i64) -> i64 {
    wide_sum_i128(i128::from(hi), i128::from(lo))
}

/// [`wide_sum`] of parts added up in `i128` (where SQL's `SUM` would have failed, this
/// saturates).
pub(crate) fn wide_sum_i128(hi: i128, lo: i128) -> i64 {
    let total = hi.saturating_mul(1_000_000_000).saturating_add(lo);
    i64::try_from(total).unwrap_or(if total < 0 { i64::MIN } else { i64::MAX })
}

/// SQLite's one-row `INSERT`, built once, with plain `?` placeholders: with numbered ones every
/// execution looked each parameter up by name, which cost more than the insert itself. No `ON
/// CONFLICT` clause: a row the table will not take fails the commit, and the writer says so and
/// keeps it. (Postgres takes a commit's rows in one statement, [`unnest_insert_sql`].)
pub(crate) fn insert_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        let cols = ROW_COLS.split(',').count();
        format!(
            "INSERT INTO idlehands_spend_logs ({ROW_COLS}) VALUES ({})",
            vec!["?"; cols].join(", ")
        )
    })
}

/// Most rows one Postgres `INSERT` carries (as arrays, one per column): a commit holds what
/// the instance served in a flush interval, thousands of rows at load.
const ROWS_PER_UNNEST: usize = 4096;

/// The Postgres spend-row insert: one statement for up to [`ROWS_PER_UNNEST`] rows, each
/// column bound as one array and taken apart by `UNNEST`, so a commit's rows cost Postgres
/// one parse-free execution (the statement stays prepared) instead of one per 32 rows with
/// 1,056 parameters each (which was most of the database's CPU per request in the fleet
/// bench). `created_at` is the commit's, bound once.
fn unnest_insert_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        let cols: Vec<&str> = ROW_COLS
            .split(',')
            .map(str::trim)
            .filter(|c| *c != "created_at")
            .collect();
        let arrays: Vec<String> = cols
            .iter()
            .enumerate()
            .map(|(i, c)| format!("${}::{}[]", i + 1, pg_type_of(c)))
            .collect();
        format!(
            "INSERT INTO idlehands_spend_logs ({}, created_at) SELECT r.*, ${}::BIGINT FROM UNNEST({}) AS r",
            cols.join(", "),
            cols.len() + 1,
            arrays.join(", ")
        )
    })
}

/// The Postgres type of a spend-row column (see migration 1 and the later `ADD COLUMN`s).
fn pg_type_of(col: &str) -> &'static str {
    match col {
        "spend"
        | "total_tokens"
        | "prompt_tokens"
        | "completion_tokens"
        | "start_time"
        | "end_time"
        | "completion_start_time"
        | "request_duration_ms"
        | "created_at" => "BIGINT",
        "usage_estimated" => "BOOLEAN",
        _ => "TEXT",
    }
}

async fn insert_rows_unnest(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    rows: &[&SpendLogRow],
    now: i64,
) -> Result<(), StoreError> {
    /// One column of the rows, as the array its `UNNEST` argument binds.
    fn col<'r, T>(rows: &[&'r SpendLogRow], f: impl Fn(&'r SpendLogRow) -> T) -> Vec<T> {
        rows.iter().map(|r| f(r)).collect()
    }
    // In ROW_COLS order, created_at left out (bound once, last).
    sqlx::query(unnest_insert_sql())
        .bind(col(rows, |r| text(&r.request_id)))
        .bind(col(rows, |r| text(&r.call_type)))
        .bind(col(rows, |r| text(&r.api_key)))
        .bind(col(rows, |r| r.spend))
        .bind(col(rows, |r| r.total_tokens))
        .bind(col(rows, |r| r.prompt_tokens))
        .bind(col(rows, |r| r.completion_tokens))
        .bind(col(rows, |r| to_ms(r.start_time)))
        .bind(col(rows, |r| to_ms(r.end_time)))
        .bind(col(rows, |r| r.completion_start_time.map(to_ms)))
        .bind(col(rows, |r| r.request_duration_ms))
        .bind(col(rows, |r| text(&r.model)))
        .bind(col(rows, |r| opt_text(&r.model_id)))
        .bind(col(rows, |r| opt_text(&r.model_group)))
        .bind(col(rows, |r| opt_text(&r.custom_llm_provider)))
        .bind(col(rows, |r| opt_text(&r.api_base)))
        .bind(col(rows, |r| opt_text(&r.user)))
        .bind(col(rows, |r| opt_text(&r.team_id)))
        .bind(col(rows, |r| opt_text(&r.end_user)))
        .bind(col(rows, |r| opt_text(&r.requester_ip_address)))
        .bind(col(rows, |r| opt_text(&r.session_id)))
        .bind(col(rows, |r| r.metadata.as_str()))
        .bind(col(rows, |r| opt_text(&r.cache_hit)))
        .bind(col(rows, |r| opt_text(&r.cache_key)))
        .bind(col(rows, |r| tags_text(&r.request_tags)))
        .bind(col(rows, |r| r.messages.as_ref().map(json_text)))
        .bind(col(rows, |r| r.response.as_ref().map(json_text)))
        .bind(col(rows, |r| text(&r.status)))
        .bind(col(rows, |r| opt_text(&r.litellm_call_id)))
        .bind(col(rows, |r| opt_text(&r.upstream_response_id)))
        .bind(col(rows, |r| r.usage_estimated))
        .bind(col(rows, |r| opt_text(&r.organization_id)))
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The Postgres commit (SQLite's runs on its own connection, `sqlite_rows`).
async fn write_batch_postgres(
    pool: &PgPool,
    items: &[BatchItem],
    store_rows: bool,
) -> Result<(), StoreError> {
    let plan = CommitPlan::new(items, store_rows);
    let now = to_ms(Utc::now());
    let mut tx = pool.begin_write().await?;
    for chunk in plan.rows.chunks(ROWS_PER_UNNEST) {
        insert_rows_unnest(&mut tx, chunk, now).await?;
    }
    for (rollup, cell, delta) in &plan.daily {
        let mut q = sqlx::query(crate::daily_spend::upsert_sql(*rollup)).bind(cell.day);
        for t in crate::daily_spend::upsert_texts(cell) {
            q = q.bind(t);
        }
        for n in crate::daily_spend::upsert_numbers(cell, delta) {
            q = q.bind(n);
        }
        q.execute(&mut *tx).await?;
    }
    let mut ids = HashMap::new();
    for (key, model) in crate::daily_spend::key_model_pairs(&plan.key_model) {
        let find = || {
            sqlx::query_scalar::<_, i64>(crate::daily_spend::KEY_MODEL_ID)
                .bind(key)
                .bind(model)
        };
        let mut id = find().fetch_optional(&mut *tx).await?;
        if id.is_none() {
            // Another instance may make the same pair at once: the insert then waits for its
            // commit and makes nothing, and the second look finds its id.
            id = sqlx::query_scalar::<_, i64>(crate::daily_spend::NEW_KEY_MODEL_ID)
                .bind(key)
                .bind(model)
                .fetch_optional(&mut *tx)
                .await?;
        }
        let id = match id {
            Some(id) => id,
            None => find().fetch_one(&mut *tx).await?,
        };
        ids.insert((key, model), id);
    }
    let cells = crate::daily_spend::cells_by_id(&plan.key_model, &ids);
    for (span, day, id, sums) in &cells {
        let mut q = sqlx::query(crate::daily_spend::KEY_MODEL_UPSERT)
            .bind(span)
            .bind(day)
            .bind(id);
        for n in sums {
            q = q.bind(n);
        }
        q.execute(&mut *tx).await?;
    }
    for (span, day) in crate::daily_spend::late_cells(&cells, now) {
        sqlx::query(crate::daily_spend::LATE_WRITE)
            .bind(span)
            .bind(day)
            .execute(&mut *tx)
            .await?;
    }
    for (token, reset_at) in &plan.resets {
        sqlx::query(RESET_SPEND_SQL)
            .bind(*token)
            .bind(*reset_at)
            .execute(&mut *tx)
            .await?;
    }
    for (token, delta) in &plan.increments {
        sqlx::query(ADD_SPEND_SQL)
            .bind(*token)
            .bind(*delta)
            .execute(&mut *tx)
            .await?;
    }
    for (entity, reset_at) in &plan.entity_resets {
        sqlx::query(RESET_ENTITY_SQL)
            .bind(*entity)
            .bind(*reset_at)
            .execute(&mut *tx)
            .await?;
    }
    for (entity, delta) in &plan.entity_increments {
        sqlx::query(ADD_ENTITY_SPEND_SQL)
            .bind(entity)
            .bind(*delta)
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The text as stored: NUL bytes dropped (Postgres TEXT cannot hold them, a row carrying one
/// would be refused); borrowed when there are none. JSON text (a row's metadata) needs no
/// pass: JSON escapes every control character, NUL included.
pub(crate) fn text(v: &str) -> Cow<'_, str> {
    if v.contains('\0') {
        Cow::Owned(v.replace('\0', ""))
    } else {
        Cow::Borrowed(v)
    }
}

/// Most rows have no tags: their `[]` needs no serializer.
pub(crate) fn tags_text(tags: &[String]) -> Cow<'static, str> {
    if tags.is_empty() {
        Cow::Borrowed("[]")
    } else {
        Cow::Owned(json_text(&tags))
    }
}

fn opt_text(v: &Option<String>) -> Option<Cow<'_, str>> {
    v.as_deref().map(text)
}

fn parse_date(text: &str, field: &str) -> Result<DateTime<Utc>, StoreError> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
        .ok_or_else(|| {
            StoreError::bad_request(
                format!("Invalid {field} '{text}': expected YYYY-MM-DD"),
                field,
            )
        })
}

pub(crate) fn day_of(ms_day: i64) -> String {
    from_ms(ms_day * 86_400_000).format("%Y-%m-%d").to_string()
}

impl Store {
    /// One group commit: inserts the rows (unless `store_rows` is off: `disable_spend_logs`),
    /// adds them to the daily rollups (either way) and applies key spend increments and budget
    /// resets in a single transaction, so key spend never disagrees with the logs.
    pub async fn write_batch(
        &self,
        items: &[BatchItem],
        store_rows: bool,
    ) -> Result<(), StoreError> {
        match &self.db {
            Db::Sqlite(_, rows) => rows.write(items.to_vec(), store_rows).await.1,
            Db::Postgres(pool) => write_batch_postgres(pool, items, store_rows).await,
        }
    }

    /// [`Store::write_batch`] for the spend writer, which hands its batch over and gets it
    /// back with the outcome (no copy on the SQLite path).
    pub(crate) async fn write_batch_owned(
        &self,
        items: Vec<BatchItem>,
        store_rows: bool,
    ) -> (Vec<BatchItem>, Result<(), StoreError>) {
        match &self.db {
            Db::Sqlite(_, rows) => rows.write(items, store_rows).await,
            Db::Postgres(pool) => {
                let result = write_batch_postgres(pool, &items, store_rows).await;
                (items, result)
            }
        }
    }

    /// Resets the budget of keys whose window has passed, except `skip` (keys the ledger holds
    /// in memory: it resets those itself, in order with their spend).
    pub async fn sweep_budget_resets(
        &self,
        now: DateTime<Utc>,
        skip: &HashSet<String>,
    ) -> Result<usize, StoreError> {
        let due = self.due_budget_resets(now).await?;
        let mut n = 0;
        for (token, duration, old) in due {
            if skip.contains(&token) {
                continue;
            }
            let next = LlmDuration::parse(&duration)
                .map(|d| d.next_reset(now))
                .unwrap_or_else(|| now + Duration::days(1));
            let done = on_db!(&self.db, pool => {
                sqlx::query(
                    "UPDATE idlehands_verification_tokens SET spend = 0, budget_reset_at = $2 \
                     WHERE token = $1 AND budget_reset_at = $3",
                )
                .bind(&token)
                .bind(to_ms(next))
                .bind(old)
                .execute(pool)
                .await?
                .rows_affected()
            });
            n += done as usize;
        }
        // Teams, users, organizations, end users and team members likewise.
        for (entity, duration, old) in self.due_entity_resets(now).await? {
            if skip.contains(&entity) {
                continue;
            }
            let next = LlmDuration::parse(&duration)
                .map(|d| d.next_reset(now))
                .unwrap_or_else(|| now + Duration::days(1));
            let done = on_db!(&self.db, pool => {
                sqlx::query(
                    "UPDATE idlehands_budgets SET spend = 0, budget_reset_at = $2 \
                     WHERE entity = $1 AND budget_reset_at = $3",
                )
                .bind(&entity)
                .bind(to_ms(next))
                .bind(old)
                .execute(pool)
                .await?
                .rows_affected()
            });
            n += done as usize;
        }
        Ok(n)
    }

    /// `/spend/logs`: rows newest first (paged), or with both dates and `summarize` (default
    /// true, like LiteLLM) a daily summary.
    pub async fn spend_logs(&self, q: &SpendLogsQuery) -> Result<SpendLogsResponse, StoreError> {
        let start = q
            .start_date
            .as_deref()
            .map(|d| parse_date(d, "start_date"))
            .transpose()?;
        let end = q
            .end_date
            .as_deref()
            .map(|d| parse_date(d, "end_date").map(|d| d + Duration::days(1)))
            .transpose()?;
        let page = q.page.unwrap_or(1);
        if page == 0 {
            return Err(StoreError::bad_request("page must be >= 1", "page"));
        }
        let page_size = q.page_size.unwrap_or(SPEND_LOGS_DEFAULT_PAGE);
        if page_size == 0 || page_size > SPEND_LOGS_MAX_PAGE {
            return Err(StoreError::bad_request(
                format!("page_size must be between 1 and {SPEND_LOGS_MAX_PAGE}"),
                "page_size",
            ));
        }
        let mut conds: Vec<String> = Vec::new();
        let mut texts: Vec<String> = Vec::new();
        let mut times: Vec<i64> = Vec::new();
        if let Some(k) = &q.api_key {
            texts.push(crate::keygen::token_of(k));
            conds.push(format!("api_key = ${}", texts.len()));
        }
        if let Some(id) = &q.request_id {
            texts.push(id.clone());
            conds.push(request_id_match(texts.len()));
        }
        let by_column = [
            ("user_id", &q.user_id),
            ("team_id", &q.team_id),
            ("organization_id", &q.organization_id),
            ("end_user", &q.end_user),
        ];
        for (col, v) in by_column {
            if let Some(v) = v {
                texts.push(v.clone());
                conds.push(format!("{col} = ${}", texts.len()));
            }
        }
        if let Some(s) = start {
            times.push(to_ms(s));
            conds.push(format!("start_time >= ${}", texts.len() + times.len()));
        }
        if let Some(e) = end {
            times.push(to_ms(e));
            conds.push(format!("start_time < ${}", texts.len() + times.len()));
        }
        let where_sql = if conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conds.join(" AND "))
        };
        if let (Some(start), Some(end), true) = (start, end, q.summarize.unwrap_or(true)) {
            let rollup = if q.api_key.is_some() {
                Rollup::ByKey
            } else {
                Rollup::AllKeys
            };
            let (mut source, mut lo, mut hi) =
                daily_spend::source_for(rollup, Some(to_ms(start)), Some(to_ms(end)));
            // A call id is no rollup dimension: its few rows are read.
            if q.request_id.is_some() {
                (source, lo, hi) = (Source::Rows, to_ms(start), to_ms(end));
            }
            return self.daily_summary(source, lo, hi, q).await;
        }
        let n = texts.len() + times.len();
        let sql = format!(
            "SELECT {ROW_COLS} FROM idlehands_spend_logs{where_sql} \
             ORDER BY start_time DESC, request_id DESC LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        );
        let offset = i64::from(page - 1) * i64::from(page_size);
        let rows = on_db!(&self.db, pool => {
            let mut query = sqlx::query(&sql);
            for t in &texts { query = query.bind(t.clone()); }
            for t in &times { query = query.bind(*t); }
            let rows = query.bind(i64::from(page_size)).bind(offset).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(row_from_db!(r));
            }
            out
        });
        Ok(SpendLogsResponse::Rows(rows))
    }

    /// `/spend/logs`' daily summary over `[lo, hi)` of `source`, with the query's filters.
    pub(crate) async fn daily_summary(
        &self,
        source: Source,
        lo: i64,
        hi: i64,
        q: &SpendLogsQuery,
    ) -> Result<SpendLogsResponse, StoreError> {
        let mut texts: Vec<String> = Vec::new();
        let mut conds: Vec<String> = Vec::new();
        let by_column = [
            ("api_key", q.api_key.as_deref().map(crate::keygen::token_of)),
            ("user_id", q.user_id.clone()),
            ("team_id", q.team_id.clone()),
            ("organization_id", q.organization_id.clone()),
            ("end_user", q.end_user.clone()),
        ];
        for (col, v) in by_column {
            if let Some(v) = v {
                texts.push(v);
                conds.push(format!("{col} = ${}", texts.len() + 2));
            }
        }
        let mut extra = String::new();
        if let Some(id) = &q.request_id {
            texts.push(id.clone());
            extra = format!(" AND {}", request_id_match(texts.len() + 2));
        }
        let where_sql = if conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conds.join(" AND "))
        };
        let sql = format!(
            "SELECT day, COALESCE(user_id, '') AS u, COALESCE(model_group, model) AS m, {} \
             FROM {}{where_sql} GROUP BY day, COALESCE(user_id, ''), \
             COALESCE(model_group, model) ORDER BY day",
            daily_spend::sum_parts("spend", "s"),
            daily_spend::relation(source, "$1", "$2", &extra),
        );
        let parts: Vec<(i64, String, String, i64)> = on_db!(&self.db, pool => {
            let mut query = sqlx::query(&sql).bind(lo).bind(hi);
            for t in &texts { query = query.bind(t.clone()); }
            let rows = query.fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let spend = wide_sum(r.try_get("s_hi")?, r.try_get("s_lo")?);
                out.push((r.try_get("day")?, r.try_get("u")?, r.try_get("m")?, spend));
            }
            out
        });
        let mut days: BTreeMap<i64, DayParts> = BTreeMap::new();
        for (day, user, model, spend) in parts {
            let d = days.entry(day).or_default();
            d.0 = d.0.saturating_add(spend);
            if !user.is_empty() {
                let u = d.1.entry(user).or_default();
                *u = u.saturating_add(spend);
            }
            let m = d.2.entry(model).or_default();
            *m = m.saturating_add(spend);
        }
        let usd =
            |m: BTreeMap<String, i64>| m.into_iter().map(|(k, v)| (k, nanos_to_usd(v))).collect();
        Ok(SpendLogsResponse::Summary(
            days.into_iter()
                .map(|(day, (spend, users, models))| DailySpend {
                    start_time: day_of(day),
                    spend: nanos_to_usd(spend),
                    users: usd(users),
                    models: usd(models),
                })
                .collect(),
        ))
    }

    /// Whether a spend-log row with this `request_id` is stored: after a commit whose answer
    /// was lost, its rows are found here and not written twice.
    pub(crate) async fn spend_row_exists(&self, request_id: &str) -> Result<bool, StoreError> {
        let n = on_db!(&self.db, pool => {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM idlehands_spend_logs WHERE request_id = $1",
            )
            .bind(request_id)
            .fetch_one(pool)
            .await?
        });
        Ok(n > 0)
    }

    pub async fn count_spend_logs(&self) -> Result<i64, StoreError> {
        let n = on_db!(&self.db, pool => {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM idlehands_spend_logs")
                .fetch_one(pool)
                .await?
        });
        Ok(n)
    }

    /// Spend, request count and tokens grouped by key, model, user or UTC day, over
    /// `[start, end)`, biggest spend first (days in date order).
    pub async fn spend_by(
        &self,
        group: SpendGroup,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
    ) -> Result<Vec<SpendAggregate>, StoreError> {
        self.spend_of_user_by(group, start, end, None).await
    }

    /// [`Store::spend_by`], of one user's calls only when `user` is given.
    pub async fn spend_of_user_by(
        &self,
        group: SpendGroup,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
        user: Option<&str>,
    ) -> Result<Vec<SpendAggregate>, StoreError> {
        let rollup = if group == SpendGroup::Key {
            Rollup::ByKey
        } else {
            Rollup::AllKeys
        };
        let (source, lo, hi) = daily_spend::source_for(rollup, start.map(to_ms), end.map(to_ms));
        self.spend_by_in(source, group, lo, hi, user).await
    }

    /// [`Store::spend_by`] over `[lo, hi)` of `source`, of `user`'s calls when given.
    pub(crate) async fn spend_by_in(
        &self,
        source: Source,
        group: SpendGroup,
        lo: i64,
        hi: i64,
        user: Option<&str>,
    ) -> Result<Vec<SpendAggregate>, StoreError> {
        let expr = match group {
            SpendGroup::Key => "api_key",
            SpendGroup::Model => "COALESCE(model_group, model)",
            SpendGroup::User => "COALESCE(user_id, '')",
            SpendGroup::Day => "CAST(day AS TEXT)",
        };
        // Biggest spend first is sorted below, on the exact totals SQL cannot add up safely.
        let order = if group == SpendGroup::Day {
            "MIN(day)"
        } else {
            "g"
        };
        let only_user = if user.is_some() {
            " WHERE user_id = $3"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {expr} AS g, {}, CAST(SUM(requests) AS BIGINT) AS n, {}, {} \
             FROM {}{only_user} GROUP BY {expr} ORDER BY {order}",
            daily_spend::sum_parts("spend", "s"),
            daily_spend::sum_parts("prompt_tokens", "p"),
            daily_spend::sum_parts("completion_tokens", "c"),
            daily_spend::relation(source, "$1", "$2", ""),
        );
        let mut out = on_db!(&self.db, pool => {
            let mut q = sqlx::query(&sql).bind(lo).bind(hi);
            if let Some(u) = user {
                q = q.bind(u);
            }
            let rows = q.fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(SpendAggregate {
                    group: r.try_get("g")?,
                    spend: wide_sum(r.try_get("s_hi")?, r.try_get("s_lo")?),
                    requests: r.try_get("n")?,
                    prompt_tokens: wide_sum(r.try_get("p_hi")?, r.try_get("p_lo")?),
                    completion_tokens: wide_sum(r.try_get("c_hi")?, r.try_get("c_lo")?),
                });
            }
            out
        });
        if group != SpendGroup::Day {
            out.sort_by_key(|a| std::cmp::Reverse(a.spend));
        }
        if group == SpendGroup::Day {
            for a in &mut out {
                a.group = a.group.parse::<i64>().map(day_of).unwrap_or_default();
            }
        }
        Ok(out)
    }
}

impl Store {
    /// Recomputes the daily rollups from the spend-log rows, in one transaction. For tools that
    /// write rows straight into the table (`seed_store`); the spend writer keeps the rollups
    /// itself. Days whose rows the retention sweep deleted lose their history.
    pub async fn rebuild_daily_spend(&self) -> Result<(), StoreError> {
        on_db!(&self.db, pool => {
            let mut tx = pool.begin_bulk_write().await?;
            for table in [
                Rollup::ByKey.table(),
                Rollup::AllKeys.table(),
                "idlehands_spend_by_key_model",
            ] {
                sqlx::query(&format!("DELETE FROM {table}")).execute(&mut *tx).await?;
            }
            sqlx::Executor::execute(&mut *tx, sqlx::raw_sql(crate::db::V9_BACKFILL)).await?;
            sqlx::Executor::execute(&mut *tx, sqlx::raw_sql(crate::db::V11_BACKFILL)).await?;
            let (span, day) = crate::daily_spend::REBUILDS;
            sqlx::query(crate::daily_spend::LATE_WRITE)
                .bind(span)
                .bind(day)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }
}

impl Store {
    /// Deletes spend-log rows that started before `cutoff`
    /// (`general_settings.maximum_spend_logs_retention_period`). Key spend is unchanged. Runs
    /// in slices so that a large purge never holds the write lock (and the spend writer) long.
    pub async fn delete_spend_logs_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        const SLICE: i64 = 5_000;
        let cutoff = to_ms(cutoff);
        let mut total = 0;
        loop {
            let n = on_db!(&self.db, pool => {
                sqlx::query(
                    "DELETE FROM idlehands_spend_logs WHERE request_id IN \
                     (SELECT request_id FROM idlehands_spend_logs WHERE start_time < $1 LIMIT $2)",
                )
                .bind(cutoff)
                .bind(SLICE)
                .execute(pool)
                .await?
                .rows_affected()
            });
            total += n;
            if n < SLICE.unsigned_abs() {
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
    }
}

/// One (day, group, model, key) of [`Store::spend_by_day_and`]: spend for LiteLLM's
/// `/global/spend/report?group_by=team|customer`.
#[derive(Debug, Clone, PartialEq)]
pub struct DayGroupSpend {
    /// UTC midnight of the day, epoch ms.
    pub day_ms: i64,
    /// The team id or end user; `None` for calls without one.
    pub group: Option<String>,
    pub model: String,
    pub api_key: String,
    pub spend: i64,
    pub total_tokens: i64,
}

/// What [`Store::spend_by_day_and`] groups by besides day, model and key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportGroup {
    Team,
    Customer,
}

impl Store {
    /// Spend between `start` and `end` per UTC day, team (or end user), model and key, days
    /// in order.
    pub async fn spend_by_day_and(
        &self,
        group: ReportGroup,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<DayGroupParts, StoreError> {
        let (source, lo, hi) =
            daily_spend::source_for(Rollup::ByKey, Some(to_ms(start)), Some(to_ms(end)));
        self.spend_by_day_and_in(source, group, lo, hi).await
    }

    /// [`Store::spend_by_day_and`] over `[lo, hi)` of `source`.
    pub(crate) async fn spend_by_day_and_in(
        &self,
        source: Source,
        group: ReportGroup,
        lo: i64,
        hi: i64,
    ) -> Result<DayGroupParts, StoreError> {
        let col = match group {
            ReportGroup::Team => "team_id",
            ReportGroup::Customer => "end_user",
        };
        // The range's rows, summed into parts outside SQL (`day_group_sums`).
        let sql = |lo: &str, hi: &str| {
            format!(
                "SELECT day, {col}, model, api_key, spend_hi, spend_lo, total_tokens_hi, \
                 total_tokens_lo FROM {}",
                daily_spend::relation(source, lo, hi, ""),
            )
        };
        match &self.db {
            Db::Sqlite(_, writer) => {
                crate::sqlite_reads::spend_by_day_and(writer.path(), sql("$1", "$2"), lo, hi).await
            }
            // `COPY` takes no parameters: the bounds are our numbers, written as literals.
            Db::Postgres(pool) => {
                let sql = sql(&format!("'{lo}'::bigint"), &format!("'{hi}'::bigint"));
                crate::pg_reads::spend_by_day_and(pool, &sql).await
            }
        }
    }
}

/// One key's spend on one model, over a range: a row of [`Store::spend_by_key_and_model`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyModelSpend {
    pub api_key: String,
    pub model: String,
    pub spend: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
}

impl Store {
    /// Spend between `start` and `end` per key and model (LiteLLM's
    /// `/global/spend/report?group_by=api_key`).
    pub async fn spend_by_key_and_model(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<KeyModelSpend>, StoreError> {
        let (source, lo, hi) =
            daily_spend::source_for(Rollup::ByKey, Some(to_ms(start)), Some(to_ms(end)));
        self.spend_by_key_and_model_in(source, lo, hi).await
    }

    /// [`Store::spend_by_key_and_model`] over `[lo, hi)` of `source`. From the by-key rollup
    /// it reads `idlehands_spend_by_key_model` instead (the same sums, a few cells per key
    /// and model for the range: see `daily_spend::SPANS`), summed by key-model id and then
    /// named outside SQL (`sqlite_reads`, `pg_reads`). Pairs come in byte order.
    pub(crate) async fn spend_by_key_and_model_in(
        &self,
        source: Source,
        lo: i64,
        hi: i64,
    ) -> Result<Vec<KeyModelSpend>, StoreError> {
        if source == Source::Rollup(Rollup::ByKey) {
            return match &self.db {
                Db::Sqlite(_, writer) => {
                    crate::sqlite_reads::spend_by_key_and_model(writer.path(), lo, hi).await
                }
                Db::Postgres(pool) => {
                    let now = to_ms(Utc::now());
                    crate::pg_reads::spend_by_key_and_model(
                        pool,
                        &self.closed_cells,
                        &self.pair_names,
                        lo,
                        hi,
                        now,
                    )
                    .await
                }
            };
        }
        let sums = format!(
            "{}, {}, {}",
            daily_spend::sum_parts("spend", "s"),
            daily_spend::sum_parts("prompt_tokens", "p"),
            daily_spend::sum_parts("completion_tokens", "c"),
        );
        // Byte order on both stores, as the cells are named in (SQLite's own is BINARY).
        let collate = if matches!(self.db, Db::Postgres(_)) {
            " COLLATE \"C\""
        } else {
            ""
        };
        let sql = format!(
            "SELECT api_key, model, {sums} FROM {} GROUP BY api_key, model \
             ORDER BY api_key{collate}, model{collate}",
            daily_spend::relation(source, "$1", "$2", "")
        );
        let out = on_db!(&self.db, pool => {
            let rows = sqlx::query(&sql).bind(lo).bind(hi).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(KeyModelSpend {
                    api_key: r.try_get("api_key")?,
                    model: r.try_get("model")?,
                    spend: wide_sum(r.try_get("s_hi")?, r.try_get("s_lo")?),
                    prompt_tokens: wide_sum(r.try_get("p_hi")?, r.try_get("p_lo")?),
                    completion_tokens: wide_sum(r.try_get("c_hi")?, r.try_get("c_lo")?),
                });
            }
            out
        });
        Ok(out)
    }
}

/// `/spend/logs?request_id=`: the row's key, its `litellm_call_id` or the upstream's response
/// id, bound as parameter `n`. The index on `litellm_call_id` holds only the rows whose call id
/// differs from their key (migration 13): rows written since the call id became the key repeat
/// it, and indexing them again cost every insert a B-tree write. Saying `<> request_id` in the
/// query is what lets SQLite and Postgres use that partial index (a row whose two ids are equal
/// is found by its key).
fn request_id_match(n: usize) -> String {
    format!(
        "(request_id = ${n} OR (litellm_call_id = ${n} AND litellm_call_id <> request_id) \
         OR upstream_response_id = ${n})"
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::test_postgres::{drop_schema, postgres_schema};
    use crate::{SpendLogRow, Store};

    fn row(id: &str, call_id: &str, upstream_id: &str) -> BatchItem {
        let at = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        BatchItem::Row(Box::new(SpendLogRow {
            request_id: id.to_owned(),
            litellm_call_id: Some(call_id.to_owned()),
            upstream_response_id: Some(upstream_id.to_owned()),
            api_key: "k".to_owned(),
            model: "m".to_owned(),
            status: crate::spend::STATUS_SUCCESS.to_owned(),
            start_time: at,
            end_time: at,
            ..SpendLogRow::default()
        }))
    }

    #[test]
    fn stored_text_drops_nul_bytes_and_borrows_text_without_them() {
        assert!(matches!(text("gpt-4o"), Cow::Borrowed("gpt-4o")));
        assert!(matches!(text(""), Cow::Borrowed("")));
        let cut = text("a\0b\0\0c\0");
        assert!(matches!(cut, Cow::Owned(_)));
        assert_eq!(cut, "abc");
        // Long enough for the word-at-a-time search, the NUL at the far end.
        let long = format!("{}\0", "x".repeat(200));
        assert_eq!(text(&long), "x".repeat(200));
    }

    /// A row of the first store version (call id unlike its key) and rows written since (the
    /// same id twice) are all found by each of their ids, and the lookup reads indexes only:
    /// the call-id index, which holds just the old kind of row, included.
    async fn request_ids_are_found_through_indexes(store: Store) {
        let mut items = vec![row("old-key", "old-call", "chatcmpl-old")];
        for i in 0..50 {
            items.push(row(
                &format!("call-{i}"),
                &format!("call-{i}"),
                "chatcmpl-same",
            ));
        }
        store.write_batch(&items, true).await.unwrap();
        let found = |id: &str| {
            let q = SpendLogsQuery {
                request_id: Some(id.to_owned()),
                ..SpendLogsQuery::default()
            };
            let store = &store;
            async move {
                match store.spend_logs(&q).await.unwrap() {
                    SpendLogsResponse::Rows(rows) => {
                        let mut ids: Vec<String> = rows.into_iter().map(|r| r.request_id).collect();
                        ids.sort();
                        ids
                    }
                    other => panic!("rows, not {other:?}"),
                }
            }
        };
        assert_eq!(found("old-key").await, ["old-key"]);
        assert_eq!(found("old-call").await, ["old-key"]);
        assert_eq!(found("chatcmpl-old").await, ["old-key"]);
        assert_eq!(found("call-7").await, ["call-7"]);
        assert_eq!(found("chatcmpl-same").await.len(), 50);
        assert!(found("nothing").await.is_empty());

        let sql = format!(
            "SELECT request_id FROM idlehands_spend_logs WHERE {}",
            request_id_match(1)
        );
        let plan: Vec<String> = match &store.db {
            Db::Sqlite(pool, _) => sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
                .bind("old-call")
                .fetch_all(pool)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<String, _>("detail"))
                .collect(),
            Db::Postgres(pool) => {
                // The table is tiny, so a scan would win on cost: rule it out to see whether
                // the indexes can answer at all.
                let mut tx = pool.begin().await.unwrap();
                sqlx::query("SET LOCAL enable_seqscan = off")
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                let plan = sqlx::query(&format!("EXPLAIN {sql}"))
                    .bind("old-call")
                    .fetch_all(&mut *tx)
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| r.get::<String, _>(0))
                    .collect();
                tx.rollback().await.unwrap();
                plan
            }
        };
        let plan = plan.join("\n");
        assert!(!plan.contains("SCAN idlehands_spend_logs"), "{plan}");
        assert!(!plan.contains("Seq Scan"), "{plan}");
        assert!(plan.contains("idlehands_sl_call"), "{plan}");

        // Rows whose call id is their key get no entry in that index.
        let def: String = match &store.db {
            Db::Sqlite(pool, _) => sqlx::query_scalar(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = 'idlehands_sl_call'",
            )
            .fetch_one(pool)
            .await
            .unwrap(),
            Db::Postgres(pool) => sqlx::query_scalar(
                "SELECT indexdef FROM pg_indexes \
                 WHERE indexname = 'idlehands_sl_call' AND schemaname = current_schema()",
            )
            .fetch_one(pool)
            .await
            .unwrap(),
        };
        assert!(def.contains("<> request_id"), "{def}");
        store.close().await;
    }

    #[tokio::test]
    async fn sqlite_request_ids_are_found_through_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ids.db").display().to_string();
        request_ids_are_found_through_indexes(Store::open(&path).await.unwrap()).await;
    }

    #[tokio::test]
    async fn postgres_request_ids_are_found_through_indexes() {
        let (pool, opts, schema) = postgres_schema().await;
        request_ids_are_found_through_indexes(Store::open_with(opts).await.unwrap()).await;
        drop_schema(&pool, &schema).await;
    }
}
