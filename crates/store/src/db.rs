//! Opening the database (SQLite file by default, Postgres for `postgres://` URLs) and the
//! versioned schema migrations that run at open.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{Executor, PgPool, SqlitePool};

use crate::error::StoreError;

/// Runs `$body` with `$pool` bound to the concrete pool; SQL is written once with `$N`
/// placeholders, which both SQLite and Postgres accept.
macro_rules! on_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite($pool, _) => $body,
            $crate::db::Db::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_db;

/// Starts a transaction that will write. SQLite needs `BEGIN IMMEDIATE`: a deferred transaction
/// that reads first and writes later fails with "database is locked" when another connection
/// commits in between, instead of waiting on the busy timeout.
pub(crate) trait BeginWrite {
    type Db: sqlx::Database;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<Output = Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>>
    + Send;

    /// [`BeginWrite::begin_write`] for a rewrite of whole tables (schema migrations, rollup
    /// rebuilds), whose sorts and groupings may hold millions of rows.
    fn begin_bulk_write(
        &self,
    ) -> impl std::future::Future<Output = Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>>
    + Send {
        self.begin_write()
    }
}

impl BeginWrite for SqlitePool {
    type Db = sqlx::Sqlite;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<
        Output = Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error>,
    > + Send {
        self.begin_with("BEGIN IMMEDIATE")
    }

    /// On a connection whose temporary B-trees go to files: the store's `temp_store = memory`
    /// put a 10M-row upgrade's sorts on the heap, and the gateway kept 1.4 GB of RSS after it
    /// (300 MB against 100 MB for a 2M-row rebuild in `sqlite3`). The connection is closed
    /// afterwards rather than returned to the pool with that setting.
    async fn begin_bulk_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        let mut conn = self.acquire().await?;
        conn.close_on_drop();
        sqlx::query("PRAGMA temp_store = FILE")
            .execute(&mut *conn)
            .await?;
        sqlx::Transaction::begin(conn, Some("BEGIN IMMEDIATE".into())).await
    }
}

impl BeginWrite for PgPool {
    type Db = sqlx::Postgres;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<
        Output = Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error>,
    > + Send {
        self.begin()
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Db {
    /// The pool, and the spend writer's own connection (see `sqlite_rows`).
    Sqlite(SqlitePool, std::sync::Arc<crate::sqlite_rows::RowWriter>),
    Postgres(PgPool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// How to open a [`Store`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `postgresql://...` / `postgres://...`, `sqlite://path`, `sqlite:path` or a plain path.
    pub url: String,
    /// `general_settings.database_connection_pool_limit`.
    pub max_connections: u32,
    /// `general_settings.database_connection_timeout`.
    pub connect_timeout: Duration,
    /// Postgres only: keep every table in this schema (created if missing). Tests use a fresh
    /// one each so they can share one database.
    pub pg_schema: Option<String>,
    /// Postgres only: where the spend writer puts rows its final commit could not write (a
    /// SQLite store keeps them next to its file). `None`: such rows are counted and lost.
    pub pg_spill: Option<std::path::PathBuf>,
}

impl StoreOptions {
    pub fn new(url: impl Into<String>) -> Self {
        StoreOptions {
            url: url.into(),
            max_connections: 10,
            connect_timeout: Duration::from_secs(30),
            pg_schema: None,
            pg_spill: None,
        }
    }
}

/// The database behind keys and spend logs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) db: Db,
    /// Where the spend writer puts rows its final commit could not write (see `writer`).
    spill: Option<std::path::PathBuf>,
    /// Postgres: the closed cells of the last key-model report (see `pg_reads`).
    pub(crate) closed_cells: std::sync::Arc<crate::pg_reads::ClosedCells>,
    /// Postgres: the key-model pairs' names read so far (see `pair_names`).
    pub(crate) pair_names: std::sync::Arc<crate::pair_names::PairNames>,
}

impl Store {
    /// Opens (creating the SQLite file and its directory if missing) and migrates.
    pub async fn open(url_or_path: &str) -> Result<Store, StoreError> {
        Store::open_with(StoreOptions::new(url_or_path)).await
    }

    pub async fn open_with(opts: StoreOptions) -> Result<Store, StoreError> {
        let url = opts.url.trim();
        let (db, spill) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (
                Db::Postgres(open_postgres(url, &opts).await?),
                opts.pg_spill.clone(),
            )
        } else {
            let pool = open_sqlite(url, &opts).await?;
            let path = sqlite_path(url);
            // Its statements are prepared on first use, after the migrations below.
            let rows = crate::sqlite_rows::RowWriter::open(path)?;
            let spill = (!path.starts_with(':') && !path.starts_with("file:"))
                .then(|| std::path::PathBuf::from(format!("{path}.spill.jsonl")));
            (Db::Sqlite(pool, std::sync::Arc::new(rows)), spill)
        };
        let store = Store {
            db,
            spill,
            closed_cells: Default::default(),
            pair_names: Default::default(),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// The file that holds spend-log rows a stop could not commit, replayed at the next start:
    /// next to a SQLite database; for Postgres, [`StoreOptions::pg_spill`].
    pub fn spill_path(&self) -> Option<&std::path::Path> {
        self.spill.as_deref()
    }

    pub fn backend(&self) -> Backend {
        match self.db {
            Db::Sqlite(..) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// A round trip to the database, for `/health/readiness`.
    pub async fn readiness(&self) -> Result<(), StoreError> {
        on_db!(&self.db, pool => { sqlx::query("SELECT 1").execute(pool).await?; });
        Ok(())
    }

    pub async fn close(&self) {
        if let Db::Sqlite(_, rows) = &self.db {
            rows.close().await;
        }
        on_db!(&self.db, pool => pool.close().await)
    }

    /// The schema versions applied, oldest first.
    pub async fn schema_versions(&self) -> Result<Vec<i64>, StoreError> {
        let sql = "SELECT version FROM idlehands_schema_migrations ORDER BY version";
        let versions = on_db!(&self.db, pool => {
            sqlx::query_scalar::<_, i64>(sql).fetch_all(pool).await?
        });
        Ok(versions)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        const CREATE: &str = "CREATE TABLE IF NOT EXISTS idlehands_schema_migrations (
            version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)";
        let now = to_ms(Utc::now());
        on_db!(&self.db, pool => {
            let mut tx = pool.begin_bulk_write().await?;
            if matches!(self.db, Db::Postgres(_)) {
                // Several instances may start together against one Postgres.
                sqlx::query("SELECT pg_advisory_xact_lock(7413029911)").execute(&mut *tx).await?;
            }
            sqlx::query(CREATE).execute(&mut *tx).await?;
            let applied: Vec<i64> =
                sqlx::query_scalar("SELECT version FROM idlehands_schema_migrations")
                    .fetch_all(&mut *tx)
                    .await?;
            // A store made by an older version: its upgrade may rewrite big tables (migration
            // 11 took 24 s on SQLite and 104 s on Postgres at 10 million spend rows), so say so
            // before the wait rather than only after it.
            let upgrading = !applied.is_empty();
            for m in MIGRATIONS {
                if applied.contains(&m.version) {
                    continue;
                }
                if upgrading {
                    tracing::warn!(
                        version = m.version,
                        name = m.name,
                        "upgrading the store's schema; on a large store this can take minutes"
                    );
                }
                let sql = if matches!(self.db, Db::Postgres(_)) { m.postgres } else { m.sqlite };
                tx.execute(sqlx::raw_sql(sql)).await?;
                sqlx::query(
                    "INSERT INTO idlehands_schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                )
                .bind(m.version)
                .bind(m.name)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tracing::info!(version = m.version, name = m.name, "applied schema migration");
            }
            tx.commit().await?;
        });
        Ok(())
    }
}

/// How long a SQLite connection waits for another one's write lock.
pub(crate) const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of every SQLite connection of the store: the pool's and the spend-row writer's
/// (`sqlite_rows`).
pub(crate) const SQLITE_PRAGMAS: [(&str, &str); 5] = [
    // WAL with synchronous=NORMAL: a commit survives a crash of the process (kill -9); only an
    // OS crash or power loss can drop the last commits.
    ("journal_mode", "WAL"),
    ("synchronous", "NORMAL"),
    // Up to 32 MiB of pages per connection (SQLite's default is 2 MiB), filled only as used:
    // spend-log indexes keyed by provider response ids take inserts all over, and with a
    // small cache each one re-read pages from the OS.
    ("cache_size", "-32768"),
    // Checkpoint every ~40 MiB of WAL instead of ~4 MiB: a page changed by many commits is
    // copied back into the database once per checkpoint.
    ("wal_autocheckpoint", "10000"),
    // Statement journals (a many-row INSERT keeps one) in memory, not in temp files.
    ("temp_store", "memory"),
];

/// The file of a `sqlite://path`, `sqlite:path` or plain-path URL.
fn sqlite_path(url: &str) -> &str {
    url.strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url)
}

async fn open_sqlite(url: &str, opts: &StoreOptions) -> Result<SqlitePool, StoreError> {
    let path = sqlite_path(url);
    if path.is_empty() {
        return Err(StoreError::bad_request("empty SQLite path", "database_url"));
    }
    if let Some(parent) = std::path::Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|e| {
            StoreError::Internal(format!("cannot create directory {}: {e}", parent.display()))
        })?;
    }
    create_private(path)?;
    let mut connect = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .busy_timeout(SQLITE_BUSY_TIMEOUT);
    for (name, value) in SQLITE_PRAGMAS {
        connect = connect.pragma(name, value);
    }
    let pool = SqlitePoolOptions::new()
        .max_connections(opts.max_connections.max(1))
        .acquire_timeout(opts.connect_timeout)
        .connect_with(connect)
        .await?;
    Ok(pool)
}

/// Creates a missing database file readable by its owner only: keys' hashes and prompts live
/// there, and SQLite gives the `-wal` and `-shm` files the mode of the database file. An
/// existing file keeps the mode its owner chose.
fn create_private(path: &str) -> Result<(), StoreError> {
    if path.starts_with(':') || path.starts_with("file:") {
        return Ok(());
    }
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    match open.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Internal(format!("cannot create {path}: {e}"))),
    }
}

async fn open_postgres(url: &str, opts: &StoreOptions) -> Result<PgPool, StoreError> {
    let connect = PgConnectOptions::from_str(url)?;
    let mut pool = PgPoolOptions::new()
        .max_connections(opts.max_connections.max(1))
        .acquire_timeout(opts.connect_timeout);
    if let Some(schema) = &opts.pg_schema {
        if !schema
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
            || schema.is_empty()
        {
            return Err(StoreError::bad_request(
                format!("invalid Postgres schema name '{schema}'"),
                "pg_schema",
            ));
        }
        let setup = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(connect.clone())
            .await?;
        sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
            .execute(&setup)
            .await?;
        setup.close().await;
        let set_path = format!("SET search_path TO {schema}");
        pool = pool.after_connect(move |conn, _meta| {
            let set_path = set_path.clone();
            Box::pin(async move {
                conn.execute(set_path.as_str()).await?;
                Ok(())
            })
        });
    }
    Ok(pool.connect_with(connect).await?)
}

pub(crate) fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// A JSON column's text.
pub(crate) fn json_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned())
}

/// `$from, $from+1, ...`: `n` numbered parameters.
pub(crate) fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

// Times are epoch milliseconds and money nano-USD (BIGINT) so one schema reads the same on
// both backends; JSON columns are TEXT.
const V1_TABLES: &str = "
CREATE TABLE idlehands_verification_tokens (
    token TEXT PRIMARY KEY,
    key_name TEXT NOT NULL,
    key_alias TEXT,
    user_id TEXT,
    team_id TEXT,
    organization_id TEXT,
    spend BIGINT NOT NULL DEFAULT 0,
    max_budget BIGINT,
    soft_budget BIGINT,
    budget_duration TEXT,
    budget_reset_at BIGINT,
    expires BIGINT,
    models TEXT NOT NULL DEFAULT '[]',
    aliases TEXT NOT NULL DEFAULT '{}',
    config TEXT NOT NULL DEFAULT '{}',
    permissions TEXT NOT NULL DEFAULT '{}',
    metadata TEXT NOT NULL DEFAULT '{}',
    tpm_limit BIGINT,
    rpm_limit BIGINT,
    max_parallel_requests BIGINT,
    blocked BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL,
    created_by TEXT,
    updated_at BIGINT NOT NULL,
    updated_by TEXT
);
CREATE UNIQUE INDEX idlehands_vt_alias ON idlehands_verification_tokens (key_alias);
CREATE INDEX idlehands_vt_reset ON idlehands_verification_tokens (budget_reset_at);
CREATE INDEX idlehands_vt_user ON idlehands_verification_tokens (user_id);
CREATE INDEX idlehands_vt_team ON idlehands_verification_tokens (team_id);

CREATE TABLE idlehands_deleted_verification_tokens (
    token TEXT NOT NULL,
    key_name TEXT NOT NULL,
    key_alias TEXT,
    user_id TEXT,
    team_id TEXT,
    organization_id TEXT,
    spend BIGINT NOT NULL DEFAULT 0,
    max_budget BIGINT,
    soft_budget BIGINT,
    budget_duration TEXT,
    budget_reset_at BIGINT,
    expires BIGINT,
    models TEXT NOT NULL DEFAULT '[]',
    aliases TEXT NOT NULL DEFAULT '{}',
    config TEXT NOT NULL DEFAULT '{}',
    permissions TEXT NOT NULL DEFAULT '{}',
    metadata TEXT NOT NULL DEFAULT '{}',
    tpm_limit BIGINT,
    rpm_limit BIGINT,
    max_parallel_requests BIGINT,
    blocked BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL,
    created_by TEXT,
    updated_at BIGINT NOT NULL,
    updated_by TEXT,
    deleted_at BIGINT NOT NULL,
    deleted_by TEXT
);
CREATE INDEX idlehands_dvt_token ON idlehands_deleted_verification_tokens (token);

CREATE TABLE idlehands_spend_logs (
    request_id TEXT PRIMARY KEY,
    call_type TEXT NOT NULL,
    api_key TEXT NOT NULL DEFAULT '',
    spend BIGINT NOT NULL DEFAULT 0,
    total_tokens BIGINT NOT NULL DEFAULT 0,
    prompt_tokens BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    start_time BIGINT NOT NULL,
    end_time BIGINT NOT NULL,
    completion_start_time BIGINT,
    request_duration_ms BIGINT,
    model TEXT NOT NULL DEFAULT '',
    model_id TEXT,
    model_group TEXT,
    custom_llm_provider TEXT,
    api_base TEXT,
    user_id TEXT,
    team_id TEXT,
    end_user TEXT,
    requester_ip_address TEXT,
    session_id TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    cache_hit TEXT,
    cache_key TEXT,
    request_tags TEXT NOT NULL DEFAULT '[]',
    messages TEXT,
    response TEXT,
    status TEXT NOT NULL,
    litellm_call_id TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX idlehands_sl_start ON idlehands_spend_logs (start_time);
CREATE INDEX idlehands_sl_key ON idlehands_spend_logs (api_key);
CREATE INDEX idlehands_sl_user ON idlehands_spend_logs (user_id);
CREATE INDEX idlehands_sl_call ON idlehands_spend_logs (litellm_call_id);
";

// A regenerated key's old token keeps working until `revoke_at` (the grace period), as the
// key it was replaced by.
const V2_DEPRECATED: &str = "
CREATE TABLE idlehands_deprecated_tokens (
    token TEXT PRIMARY KEY,
    active_token TEXT NOT NULL,
    revoke_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX idlehands_dt_active ON idlehands_deprecated_tokens (active_token);
";

// Most spend rows have no user: a partial index skips them (`user_id = x` still uses it).
const V3_PARTIAL_USER_INDEX: &str = "
DROP INDEX idlehands_sl_user;
CREATE INDEX idlehands_sl_user ON idlehands_spend_logs (user_id) WHERE user_id IS NOT NULL;
";

// Spend rows are keyed by the gateway's call id from here on (upstream response ids repeat);
// the upstream's id keeps a column of its own, indexed for `/spend/logs?request_id=`, and a
// row says when its token counts are the gateway's estimate. Older rows keep their keys.
const V4_UPSTREAM_ID_AND_ESTIMATE: &str = "
ALTER TABLE idlehands_spend_logs ADD COLUMN upstream_response_id TEXT;
ALTER TABLE idlehands_spend_logs ADD COLUMN usage_estimated BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX idlehands_sl_upstream ON idlehands_spend_logs (upstream_response_id)
    WHERE upstream_response_id IS NOT NULL;
";

// Stored `/v1/responses` answers: the conversation's input items and the response object, as
// JSON text, readable only by the key (hash) that created them.
const V5_RESPONSES: &str = "
CREATE TABLE idlehands_responses (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    input_items TEXT NOT NULL,
    response TEXT NOT NULL
);
CREATE INDEX idlehands_resp_created ON idlehands_responses (created_at);
";

// Teams, users, organizations and end users (LiteLLM's tables of the same names), and one
// budget table for all of them and for team members: `entity` is `team:ID`, `user:ID`,
// `org:ID`, `customer:ID` or `member:TEAM:USER` (a key's own budget stays on its row). The
// spend writer adds a row's spend to each entity the row names, in the row's commit. Member
// lists are JSON on their team or organization, as LiteLLM's `members_with_roles`.
const V6_TEAMS_USERS_ORGS: &str = "
CREATE TABLE idlehands_budgets (
    entity TEXT PRIMARY KEY,
    spend BIGINT NOT NULL DEFAULT 0,
    max_budget BIGINT,
    soft_budget BIGINT,
    budget_duration TEXT,
    budget_reset_at BIGINT,
    tpm_limit BIGINT,
    rpm_limit BIGINT,
    max_parallel_requests BIGINT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX idlehands_budgets_reset ON idlehands_budgets (budget_reset_at);
CREATE TABLE idlehands_teams (
    team_id TEXT PRIMARY KEY,
    team_alias TEXT,
    organization_id TEXT,
    models TEXT NOT NULL DEFAULT '[]',
    metadata TEXT NOT NULL DEFAULT '{}',
    members TEXT NOT NULL DEFAULT '[]',
    blocked BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL,
    created_by TEXT,
    updated_at BIGINT NOT NULL,
    updated_by TEXT
);
CREATE INDEX idlehands_teams_org ON idlehands_teams (organization_id);
CREATE TABLE idlehands_users (
    user_id TEXT PRIMARY KEY,
    user_email TEXT,
    user_alias TEXT,
    user_role TEXT NOT NULL,
    models TEXT NOT NULL DEFAULT '[]',
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE idlehands_organizations (
    organization_id TEXT PRIMARY KEY,
    organization_alias TEXT,
    models TEXT NOT NULL DEFAULT '[]',
    metadata TEXT NOT NULL DEFAULT '{}',
    members TEXT NOT NULL DEFAULT '[]',
    created_at BIGINT NOT NULL,
    created_by TEXT,
    updated_at BIGINT NOT NULL
);
CREATE TABLE idlehands_end_users (
    user_id TEXT PRIMARY KEY,
    alias TEXT,
    blocked BOOLEAN NOT NULL DEFAULT FALSE,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
ALTER TABLE idlehands_spend_logs ADD COLUMN organization_id TEXT;
CREATE INDEX idlehands_sl_team ON idlehands_spend_logs (team_id) WHERE team_id IS NOT NULL;
CREATE INDEX idlehands_sl_end_user ON idlehands_spend_logs (end_user) WHERE end_user IS NOT NULL;
";

// Deployments added over `/model/new` (`store_model_in_db`): LiteLLM's proxy model table. The
// params and model info are JSON text; the gateway encrypts secret values before they get here.
const V7_PROXY_MODELS: &str = "
CREATE TABLE idlehands_proxy_models (
    model_id TEXT PRIMARY KEY,
    model_name TEXT NOT NULL,
    litellm_params TEXT NOT NULL,
    model_info TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    created_by TEXT,
    updated_at BIGINT NOT NULL,
    updated_by TEXT
);
CREATE INDEX idlehands_pm_name ON idlehands_proxy_models (model_name);
";

// `/spend/logs` for one key and a day: with the key alone indexed, a busy key's every row was
// read to find one day's (31,000 rows for the busiest of 100,000 keys over 10 million rows,
// bench/store_growth.sh). The pair serves lookups by key alone too, so it replaces that index
// and a spend row still updates as many indexes as before.
const V8_KEY_TIME_INDEX: &str = "
CREATE INDEX idlehands_sl_key_start ON idlehands_spend_logs (api_key, start_time);
DROP INDEX idlehands_sl_key;
";

// Daily spend rollups (see `daily_spend`): per UTC day and dimensions, the sums of the spend
// rows, kept in each spend commit and filled here from the rows already stored, so that
// reports read a day's cells instead of its every row. A missing dimension is '' with its bit
// in null_dims (model_group 1, custom_llm_provider 2, user_id 4, team_id 8, organization_id 16,
// end_user 32); amounts are the two-part sums (whole billions, remainder) the scans added.
macro_rules! v9_rollup {
    ($table:literal, $key_col:literal, $key_expr:literal, $without_rowid:literal) => {
        concat!(
            "CREATE TABLE ",
            $table,
            " (
    day BIGINT NOT NULL,",
            $key_col,
            "
    model TEXT NOT NULL,
    model_group TEXT NOT NULL,
    custom_llm_provider TEXT NOT NULL,
    user_id TEXT NOT NULL,
    team_id TEXT NOT NULL,
    organization_id TEXT NOT NULL,
    end_user TEXT NOT NULL,
    null_dims BIGINT NOT NULL,
    spend_hi BIGINT NOT NULL,
    spend_lo BIGINT NOT NULL,
    prompt_tokens_hi BIGINT NOT NULL,
    prompt_tokens_lo BIGINT NOT NULL,
    completion_tokens_hi BIGINT NOT NULL,
    completion_tokens_lo BIGINT NOT NULL,
    total_tokens_hi BIGINT NOT NULL,
    total_tokens_lo BIGINT NOT NULL,
    requests BIGINT NOT NULL,
    successful_requests BIGINT NOT NULL,
    failed_requests BIGINT NOT NULL,
    PRIMARY KEY (day,",
            $key_expr,
            " model, model_group, custom_llm_provider, user_id, team_id,
        organization_id, end_user, null_dims)
)",
            $without_rowid,
            ";
"
        )
    };
}

macro_rules! v9_backfill {
    ($table:literal, $key_expr:literal) => {
        concat!(
            "INSERT INTO ", $table, " (day,", $key_expr, " model, model_group, custom_llm_provider,
    user_id, team_id, organization_id, end_user, null_dims, spend_hi, spend_lo, prompt_tokens_hi,
    prompt_tokens_lo, completion_tokens_hi, completion_tokens_lo, total_tokens_hi,
    total_tokens_lo, requests, successful_requests, failed_requests)
SELECT start_time / 86400000,", $key_expr, " model, COALESCE(model_group, ''),
    COALESCE(custom_llm_provider, ''), COALESCE(user_id, ''), COALESCE(team_id, ''),
    COALESCE(organization_id, ''), COALESCE(end_user, ''),
    (CASE WHEN model_group IS NULL THEN 1 ELSE 0 END)
        + (CASE WHEN custom_llm_provider IS NULL THEN 2 ELSE 0 END)
        + (CASE WHEN user_id IS NULL THEN 4 ELSE 0 END)
        + (CASE WHEN team_id IS NULL THEN 8 ELSE 0 END)
        + (CASE WHEN organization_id IS NULL THEN 16 ELSE 0 END)
        + (CASE WHEN end_user IS NULL THEN 32 ELSE 0 END),
    SUM(spend / 1000000000), SUM(spend % 1000000000),
    SUM(prompt_tokens / 1000000000), SUM(prompt_tokens % 1000000000),
    SUM(completion_tokens / 1000000000), SUM(completion_tokens % 1000000000),
    SUM(total_tokens / 1000000000), SUM(total_tokens % 1000000000),
    COUNT(*), SUM(CASE WHEN status = 'success' THEN 1 ELSE 0 END),
    SUM(CASE WHEN status = 'failure' THEN 1 ELSE 0 END)
FROM idlehands_spend_logs
GROUP BY start_time / 86400000,", $key_expr, " model, model_group, custom_llm_provider, user_id,
    team_id, organization_id, end_user;
")
    };
}

/// Fills both rollups from the spend rows (migration 9, and [`Store::rebuild_daily_spend`]).
pub(crate) const V9_BACKFILL: &str = concat!(
    v9_backfill!("idlehands_daily_spend_by_key", " api_key,"),
    v9_backfill!("idlehands_daily_spend", "")
);

// The by-key table is also read by key (`/spend/logs?api_key=` summaries).
macro_rules! v9_daily_spend {
    ($without_rowid:literal) => {
        concat!(
            v9_rollup!(
                "idlehands_daily_spend_by_key",
                "\n    api_key TEXT NOT NULL,",
                " api_key,",
                $without_rowid
            ),
            "CREATE INDEX idlehands_dsk_key ON idlehands_daily_spend_by_key (api_key, day);\n",
            v9_rollup!("idlehands_daily_spend", "", "", $without_rowid),
            v9_backfill!("idlehands_daily_spend_by_key", " api_key,"),
            v9_backfill!("idlehands_daily_spend", "")
        )
    };
}
// SQLite keeps each table in primary-key order (WITHOUT ROWID): a range of days is one
// stretch of the file.
const V9_DAILY_SPEND_SQLITE: &str = v9_daily_spend!(" WITHOUT ROWID");
const V9_DAILY_SPEND_POSTGRES: &str = v9_daily_spend!("");

/// Fills migration 10's `idlehands_spend_by_key_model` (keyed by text) from the by-key
/// rollup; migration 11 replaces it (see [`V11_BACKFILL`]). The first day of a
/// span is floored (a day before 1970 is negative), as `daily_spend::span_start` does.
macro_rules! v10_backfill {
    () => {
        "INSERT INTO idlehands_spend_by_key_model (span, day, api_key, model, spend_hi, spend_lo,
    prompt_tokens_hi, prompt_tokens_lo, completion_tokens_hi, completion_tokens_lo)
SELECT s.span, d.day - (((d.day % s.span) + s.span) % s.span), d.api_key, d.model,
    SUM(d.spend_hi), SUM(d.spend_lo), SUM(d.prompt_tokens_hi), SUM(d.prompt_tokens_lo),
    SUM(d.completion_tokens_hi), SUM(d.completion_tokens_lo)
FROM idlehands_daily_spend_by_key d,
    (SELECT 1 AS span UNION ALL SELECT 4 UNION ALL SELECT 16) s
GROUP BY s.span, d.day - (((d.day % s.span) + s.span) % s.span), d.api_key, d.model;
"
    };
}

// Per key and model, the sums `/global/spend/report?group_by=api_key` adds up, over aligned
// stretches of 1, 4 and 16 days (`daily_spend::SPANS`; `day` is the first, a multiple of
// `span`). The by-key rollup carries every dimension, and with many keys a month of it held
// nearly as many cells as there were rows; a 30-day range reads here a few 16- and 4-day cells
// per key and model plus the days at its ends. Filled from the by-key rollup, which keeps the
// history the retention sweep deleted from the rows.
macro_rules! v10_key_model {
    ($without_rowid:literal) => {
        concat!(
            "CREATE TABLE idlehands_spend_by_key_model (
    span BIGINT NOT NULL,
    day BIGINT NOT NULL,
    api_key TEXT NOT NULL,
    model TEXT NOT NULL,
    spend_hi BIGINT NOT NULL,
    spend_lo BIGINT NOT NULL,
    prompt_tokens_hi BIGINT NOT NULL,
    prompt_tokens_lo BIGINT NOT NULL,
    completion_tokens_hi BIGINT NOT NULL,
    completion_tokens_lo BIGINT NOT NULL,
    PRIMARY KEY (span, day, api_key, model)
)",
            $without_rowid,
            ";
",
            v10_backfill!()
        )
    };
}

const V10_KEY_MODEL_SQLITE: &str = v10_key_model!(" WITHOUT ROWID");
const V10_KEY_MODEL_POSTGRES: &str = v10_key_model!("");

/// Fills `idlehands_spend_by_key_model` from the by-key rollup, naming each (key, model) pair
/// by its id in `idlehands_key_models` (made where missing), in day order: a Postgres heap
/// keeps rows where they were written, and a report then finds a range's days together (the
/// commits of a live store write them day by day, too). For
/// [`Store::rebuild_daily_spend`](crate::Store::rebuild_daily_spend); the first day of a span
/// is floored as `daily_spend::span_start` does.
pub(crate) const V11_BACKFILL: &str = "INSERT INTO idlehands_key_models (api_key, model)
SELECT DISTINCT d.api_key, d.model FROM idlehands_daily_spend_by_key d
WHERE NOT EXISTS (SELECT 1 FROM idlehands_key_models k
    WHERE k.api_key = d.api_key AND k.model = d.model)
ORDER BY 1, 2;
INSERT INTO idlehands_spend_by_key_model (span, day, key_model_id, spend_hi, spend_lo,
    prompt_tokens_hi, prompt_tokens_lo, completion_tokens_hi, completion_tokens_lo)
SELECT s.span, d.day - (((d.day % s.span) + s.span) % s.span), k.id,
    SUM(d.spend_hi), SUM(d.spend_lo), SUM(d.prompt_tokens_hi), SUM(d.prompt_tokens_lo),
    SUM(d.completion_tokens_hi), SUM(d.completion_tokens_lo)
FROM idlehands_daily_spend_by_key d
    JOIN idlehands_key_models k ON k.api_key = d.api_key AND k.model = d.model,
    (SELECT 1 AS span UNION ALL SELECT 4 UNION ALL SELECT 16) s
GROUP BY s.span, d.day - (((d.day % s.span) + s.span) % s.span), k.id
ORDER BY 2, 1, 3;
";

// Migration 11: the key-model cells name their (key, model) pair by an integer id instead of
// the 64-character key hash and the model. At 100,000 keys a 30-day report reads 2.2 million
// cells: compared, copied and stored as text they cost most of its time (see `sqlite_reads`).
// Ids are never reused or deleted, so a pair's id stays valid for the life of the store. The
// cells are converted as they are (not recomputed), in day order (see [`V11_BACKFILL`]), then the
// text table is dropped.
macro_rules! v11_key_model_ids {
    ($id:literal, $without_rowid:literal) => {
        concat!(
            "CREATE TABLE idlehands_key_models (
    id ",
            $id,
            " PRIMARY KEY,
    api_key TEXT NOT NULL,
    model TEXT NOT NULL,
    UNIQUE (api_key, model)
);
INSERT INTO idlehands_key_models (api_key, model)
SELECT DISTINCT api_key, model FROM idlehands_spend_by_key_model ORDER BY 1, 2;
CREATE TABLE idlehands_spend_by_key_model_v11 (
    span BIGINT NOT NULL,
    day BIGINT NOT NULL,
    key_model_id BIGINT NOT NULL,
    spend_hi BIGINT NOT NULL,
    spend_lo BIGINT NOT NULL,
    prompt_tokens_hi BIGINT NOT NULL,
    prompt_tokens_lo BIGINT NOT NULL,
    completion_tokens_hi BIGINT NOT NULL,
    completion_tokens_lo BIGINT NOT NULL,
    PRIMARY KEY (span, day, key_model_id)
)",
            $without_rowid,
            ";
INSERT INTO idlehands_spend_by_key_model_v11 (span, day, key_model_id, spend_hi, spend_lo,
    prompt_tokens_hi, prompt_tokens_lo, completion_tokens_hi, completion_tokens_lo)
SELECT c.span, c.day, k.id, c.spend_hi, c.spend_lo, c.prompt_tokens_hi, c.prompt_tokens_lo,
    c.completion_tokens_hi, c.completion_tokens_lo
FROM idlehands_spend_by_key_model c
    JOIN idlehands_key_models k ON k.api_key = c.api_key AND k.model = c.model
ORDER BY c.day, c.span, k.id;
DROP TABLE idlehands_spend_by_key_model;
ALTER TABLE idlehands_spend_by_key_model_v11 RENAME TO idlehands_spend_by_key_model;
"
        )
    };
}
const V11_KEY_MODEL_IDS_SQLITE: &str = v11_key_model_ids!("INTEGER", " WITHOUT ROWID");
const V11_KEY_MODEL_IDS_POSTGRES: &str =
    v11_key_model_ids!("BIGINT GENERATED BY DEFAULT AS IDENTITY", "");

// Migration 12: a count of the late writes to each key-model cell: writes to a cell whose
// days had all passed, by the writing instance's clock, when its commit was built (a call that
// began before midnight and ended after it, or a spend writer retrying an old batch). The
// Postgres report keeps the sums of cells that closed over a day ago and reads them again
// only when their count here moved, so it must learn of every write to them from this table.
// Row (0, 0) counts rebuilds of all the cells (`rebuild_daily_spend`).
const V12_KEY_MODEL_LATE_WRITES: &str = "CREATE TABLE idlehands_key_model_late (
    span BIGINT NOT NULL,
    day BIGINT NOT NULL,
    writes BIGINT NOT NULL,
    PRIMARY KEY (span, day)
)";

// Migration 13: since the gateway's call id became the spend row's key, new rows repeat it in
// `litellm_call_id`, so the index on that column only duplicated the primary key at the cost
// of a B-tree insert (and its pages) per row. Rows of the first store version can differ, and
// `/spend/logs?request_id=` must still find those by their call id: the index keeps just them.
const V13_PARTIAL_CALL_ID_INDEX: &str = "
DROP INDEX idlehands_sl_call;
CREATE INDEX idlehands_sl_call ON idlehands_spend_logs (litellm_call_id)
    WHERE litellm_call_id <> request_id;
";

// Migration 14: a key's `allowed_routes` and `key_type` (LiteLLM's route restrictions) and its
// `model_max_budget` (per-model budgets, whose spend and windows are budget rows named
// `keymodel:<token>:<entry>`), kept with the key and with its archived copy when deleted.
const V14_KEY_ROUTES: &str = "
ALTER TABLE idlehands_verification_tokens ADD COLUMN allowed_routes TEXT NOT NULL DEFAULT '[]';
ALTER TABLE idlehands_verification_tokens ADD COLUMN key_type TEXT;
ALTER TABLE idlehands_verification_tokens ADD COLUMN model_max_budget TEXT NOT NULL DEFAULT '{}';
ALTER TABLE idlehands_deleted_verification_tokens ADD COLUMN allowed_routes TEXT NOT NULL DEFAULT '[]';
ALTER TABLE idlehands_deleted_verification_tokens ADD COLUMN key_type TEXT;
ALTER TABLE idlehands_deleted_verification_tokens ADD COLUMN model_max_budget TEXT NOT NULL DEFAULT '{}';
";

// Migration 18: a key's `allowed_cache_controls` (the response-cache controls its calls may
// send; empty: any), kept with the key and with its archived copy when deleted.
const V18_KEY_CACHE_CONTROLS: &str = "
ALTER TABLE idlehands_verification_tokens ADD COLUMN allowed_cache_controls TEXT NOT NULL DEFAULT '[]';
ALTER TABLE idlehands_deleted_verification_tokens ADD COLUMN allowed_cache_controls TEXT NOT NULL DEFAULT '[]';
";

// Migration 19: the named budget a key follows (LiteLLM's `budget_id` rate-limit tiers),
// kept with the key and with its archived copy when deleted.
const V19_KEY_BUDGET_ID: &str = "
ALTER TABLE idlehands_verification_tokens ADD COLUMN budget_id TEXT;
ALTER TABLE idlehands_deleted_verification_tokens ADD COLUMN budget_id TEXT;
CREATE INDEX idlehands_vt_budget ON idlehands_verification_tokens (budget_id);
";

// Migration 15: kept health-check results (LiteLLM's `LiteLLM_HealthCheckTable`), read by
// `/health/history` (newest first, by model name) and `/health/latest` (newest per model).
const V15_HEALTH_CHECKS: &str = "
CREATE TABLE idlehands_health_checks (
    health_check_id TEXT PRIMARY KEY,
    model_name TEXT NOT NULL,
    model_id TEXT,
    status TEXT NOT NULL,
    healthy_count BIGINT NOT NULL DEFAULT 0,
    unhealthy_count BIGINT NOT NULL DEFAULT 0,
    error_message TEXT,
    response_time_ms DOUBLE PRECISION,
    checked_by TEXT,
    checked_at BIGINT NOT NULL
);
CREATE INDEX idlehands_hc_checked ON idlehands_health_checks (checked_at);
CREATE INDEX idlehands_hc_model ON idlehands_health_checks (model_name, checked_at);
";

// Migration 16: named budgets (LiteLLM's `LiteLLM_BudgetTable`, `/budget/*`) that end users
// follow by `budget_id`; the limits are copied onto each follower's own budget row.
const V16_BUDGET_TABLE: &str = "
CREATE TABLE idlehands_budget_table (
    budget_id TEXT PRIMARY KEY,
    max_budget BIGINT,
    soft_budget BIGINT,
    budget_duration TEXT,
    tpm_limit BIGINT,
    rpm_limit BIGINT,
    max_parallel_requests BIGINT,
    created_at BIGINT NOT NULL,
    created_by TEXT,
    updated_at BIGINT NOT NULL,
    updated_by TEXT
);
ALTER TABLE idlehands_end_users ADD COLUMN budget_id TEXT;
CREATE INDEX idlehands_eu_budget ON idlehands_end_users (budget_id);
";

// Migration 17: organizations follow named budgets too.
const V17_ORG_BUDGET_ID: &str = "
ALTER TABLE idlehands_organizations ADD COLUMN budget_id TEXT;
CREATE INDEX idlehands_org_budget ON idlehands_organizations (budget_id);
";

// Migration 20: credentials added over the API (`POST /credentials`), LiteLLM's credentials
// table. Values are JSON text with secrets sealed by the gateway.
const V20_CREDENTIALS: &str = "
CREATE TABLE idlehands_credentials (
    credential_name TEXT PRIMARY KEY,
    display_name TEXT,
    credential_values TEXT NOT NULL,
    credential_info TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    created_by TEXT,
    updated_at BIGINT NOT NULL,
    updated_by TEXT
);
";

// Migration 21: tags made over the API (`/tag/new`), LiteLLM's tag table. `models` and
// `model_info` are JSON text; `budget_id` names a row of `idlehands_budget_table`.
const V21_TAGS: &str = "
CREATE TABLE idlehands_tags (
    tag_name TEXT PRIMARY KEY,
    description TEXT,
    models TEXT NOT NULL DEFAULT '[]',
    model_info TEXT NOT NULL DEFAULT '{}',
    budget_id TEXT,
    created_at BIGINT NOT NULL,
    created_by TEXT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX idlehands_tags_budget ON idlehands_tags (budget_id);
";

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "keys_deleted_keys_spend_logs",
        sqlite: V1_TABLES,
        postgres: V1_TABLES,
    },
    Migration {
        version: 2,
        name: "deprecated_tokens_for_grace_periods",
        sqlite: V2_DEPRECATED,
        postgres: V2_DEPRECATED,
    },
    Migration {
        version: 3,
        name: "partial_spend_log_user_index",
        sqlite: V3_PARTIAL_USER_INDEX,
        postgres: V3_PARTIAL_USER_INDEX,
    },
    Migration {
        version: 4,
        name: "spend_log_upstream_response_id_and_usage_estimated",
        sqlite: V4_UPSTREAM_ID_AND_ESTIMATE,
        postgres: V4_UPSTREAM_ID_AND_ESTIMATE,
    },
    Migration {
        version: 5,
        name: "stored_responses",
        sqlite: V5_RESPONSES,
        postgres: V5_RESPONSES,
    },
    Migration {
        version: 6,
        name: "teams_users_organizations_end_users_budgets",
        sqlite: V6_TEAMS_USERS_ORGS,
        postgres: V6_TEAMS_USERS_ORGS,
    },
    Migration {
        version: 7,
        name: "proxy_models",
        sqlite: V7_PROXY_MODELS,
        postgres: V7_PROXY_MODELS,
    },
    Migration {
        version: 8,
        name: "spend_log_key_and_time_index",
        sqlite: V8_KEY_TIME_INDEX,
        postgres: V8_KEY_TIME_INDEX,
    },
    Migration {
        version: 9,
        name: "daily_spend_rollups",
        sqlite: V9_DAILY_SPEND_SQLITE,
        postgres: V9_DAILY_SPEND_POSTGRES,
    },
    Migration {
        version: 10,
        name: "spend_by_key_and_model_spans",
        sqlite: V10_KEY_MODEL_SQLITE,
        postgres: V10_KEY_MODEL_POSTGRES,
    },
    Migration {
        version: 11,
        name: "key_model_ids",
        sqlite: V11_KEY_MODEL_IDS_SQLITE,
        postgres: V11_KEY_MODEL_IDS_POSTGRES,
    },
    Migration {
        version: 12,
        name: "key_model_late_writes",
        sqlite: V12_KEY_MODEL_LATE_WRITES,
        postgres: V12_KEY_MODEL_LATE_WRITES,
    },
    Migration {
        version: 13,
        name: "partial_spend_log_call_id_index",
        sqlite: V13_PARTIAL_CALL_ID_INDEX,
        postgres: V13_PARTIAL_CALL_ID_INDEX,
    },
    Migration {
        version: 14,
        name: "key_allowed_routes_type_and_model_budgets",
        sqlite: V14_KEY_ROUTES,
        postgres: V14_KEY_ROUTES,
    },
    Migration {
        version: 15,
        name: "health_check_results",
        sqlite: V15_HEALTH_CHECKS,
        postgres: V15_HEALTH_CHECKS,
    },
    Migration {
        version: 16,
        name: "named_budgets",
        sqlite: V16_BUDGET_TABLE,
        postgres: V16_BUDGET_TABLE,
    },
    Migration {
        version: 17,
        name: "organizations_follow_named_budgets",
        sqlite: V17_ORG_BUDGET_ID,
        postgres: V17_ORG_BUDGET_ID,
    },
    Migration {
        version: 18,
        name: "key_allowed_cache_controls",
        sqlite: V18_KEY_CACHE_CONTROLS,
        postgres: V18_KEY_CACHE_CONTROLS,
    },
    Migration {
        version: 19,
        name: "key_budget_id",
        sqlite: V19_KEY_BUDGET_ID,
        postgres: V19_KEY_BUDGET_ID,
    },
    Migration {
        version: 20,
        name: "stored_credentials",
        sqlite: V20_CREDENTIALS,
        postgres: V20_CREDENTIALS,
    },
    Migration {
        version: 21,
        name: "tags",
        sqlite: V21_TAGS,
        postgres: V21_TAGS,
    },
];

/// The tables each schema migration from 9 on made (11 remade 10's under the same name).
#[cfg(test)]
const TABLES_SINCE_9: [(i64, &[&str]); 8] = [
    (
        9,
        &["idlehands_daily_spend_by_key", "idlehands_daily_spend"],
    ),
    (10, &["idlehands_spend_by_key_model"]),
    (11, &["idlehands_key_models"]),
    (12, &["idlehands_key_model_late"]),
    (15, &["idlehands_health_checks"]),
    (16, &["idlehands_budget_table"]),
    (20, &["idlehands_credentials"]),
    (21, &["idlehands_tags"]),
];

/// Held by the tests that upgrade a store: the upgrade test counts the "upgrading" lines it
/// logs, and another thread's first use of that log line at the same moment can leave the
/// line unseen by the test's scoped subscriber (tracing caches each line's interest).
#[cfg(test)]
pub(crate) static UPGRADE_TESTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[cfg(test)]
impl Store {
    /// Takes the store back to before migration `version` (9 or later), as a store of an older
    /// version would be: drops what that migration and the later ones made (tables, and 14's
    /// key columns), and forgets that they ran. The next open runs them again.
    pub(crate) async fn roll_back_to_before(&self, version: i64) -> Result<(), StoreError> {
        let mut sql = String::new();
        for (v, tables) in TABLES_SINCE_9 {
            if v >= version {
                for t in tables {
                    sql.push_str(&format!("DROP TABLE {t}; "));
                }
            }
        }
        if version <= 19 {
            sql.push_str("DROP INDEX idlehands_vt_budget; ");
            for t in [
                "idlehands_verification_tokens",
                "idlehands_deleted_verification_tokens",
            ] {
                sql.push_str(&format!("ALTER TABLE {t} DROP COLUMN budget_id; "));
            }
        }
        if version <= 18 {
            for t in [
                "idlehands_verification_tokens",
                "idlehands_deleted_verification_tokens",
            ] {
                sql.push_str(&format!(
                    "ALTER TABLE {t} DROP COLUMN allowed_cache_controls; "
                ));
            }
        }
        if version <= 17 {
            sql.push_str("DROP INDEX idlehands_org_budget; ALTER TABLE idlehands_organizations DROP COLUMN budget_id; ");
        }
        if version <= 16 {
            sql.push_str("DROP INDEX idlehands_eu_budget; ALTER TABLE idlehands_end_users DROP COLUMN budget_id; ");
        }
        if version <= 14 {
            for t in [
                "idlehands_verification_tokens",
                "idlehands_deleted_verification_tokens",
            ] {
                for c in ["allowed_routes", "key_type", "model_max_budget"] {
                    sql.push_str(&format!("ALTER TABLE {t} DROP COLUMN {c}; "));
                }
            }
        }
        sql.push_str(&format!(
            "DELETE FROM idlehands_schema_migrations WHERE version >= {version}"
        ));
        on_db!(&self.db, pool => {
            sqlx::raw_sql(&sql).execute(pool).await?;
        });
        Ok(())
    }
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::os::unix::fs::PermissionsExt;

    use crate::Store;

    /// Upgrading an existing store names each migration before it runs (a big store's can take
    /// minutes); making a new one says nothing.
    #[tokio::test]
    async fn an_upgrade_is_announced_and_a_new_store_is_not() {
        let _one_upgrade = super::UPGRADE_TESTS.lock().await;
        let logs = idlehands_testkit::CapturedLogs::default();
        let _guard = tracing::subscriber::set_default(logs.subscriber());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("up.db").display().to_string();
        let store = Store::open(&path).await.unwrap();
        assert!(!logs.text().contains("upgrading"), "{}", logs.text());
        // Back to schema 9, as a store of an older version would be.
        store.roll_back_to_before(10).await.unwrap();
        store.close().await;
        let store = Store::open(&path).await.unwrap();
        let text = logs.text();
        let upgrades: Vec<&str> = text.lines().filter(|l| l.contains("upgrading")).collect();
        assert_eq!(upgrades.len(), 12, "{text}");
        assert!(upgrades[0].contains("version=10"), "{text}");
        assert!(upgrades[1].contains("version=11") && upgrades[1].contains("key_model_ids"));
        assert!(upgrades[2].contains("version=12") && upgrades[2].contains("late_writes"));
        assert!(upgrades[3].contains("version=13") && upgrades[3].contains("call_id_index"));
        assert!(upgrades[4].contains("version=14") && upgrades[4].contains("allowed_routes"));
        assert!(upgrades[5].contains("version=15") && upgrades[5].contains("health_check"));
        assert!(upgrades[6].contains("version=16") && upgrades[6].contains("named_budgets"));
        assert!(upgrades[7].contains("version=17") && upgrades[7].contains("organizations_follow"));
        assert!(upgrades[8].contains("version=18") && upgrades[8].contains("cache_controls"));
        assert!(upgrades[9].contains("version=19") && upgrades[9].contains("key_budget_id"));
        assert!(upgrades[10].contains("version=20") && upgrades[10].contains("stored_credentials"));
        assert!(upgrades[11].contains("version=21") && upgrades[11].contains("tags"));
        store.close().await;
    }

    /// A bulk write's sorts go to temporary files, on a connection that is closed afterwards:
    /// every connection of the pool still keeps them in memory.
    #[tokio::test]
    async fn a_bulk_write_sorts_in_files_on_a_connection_of_its_own() {
        use crate::db::{BeginWrite, Db};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bulk.db").display().to_string();
        let store = Store::open(&path).await.unwrap();
        let Db::Sqlite(pool, _) = &store.db else {
            panic!("a SQLite store")
        };
        // SQLite's temp_store: 1 is FILE, 2 is MEMORY.
        let mut tx = pool.begin_bulk_write().await.unwrap();
        let bulk: i64 = sqlx::query_scalar("PRAGMA temp_store")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(bulk, 1);
        let mut all = Vec::new();
        for _ in 0..pool.options().get_max_connections() {
            all.push(pool.acquire().await.unwrap());
        }
        for conn in &mut all {
            let mode: i64 = sqlx::query_scalar("PRAGMA temp_store")
                .fetch_one(&mut **conn)
                .await
                .unwrap();
            assert_eq!(mode, 2);
        }
        drop(all);
        store.close().await;
    }

    #[tokio::test]
    async fn a_new_database_and_its_wal_and_shm_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("private.db");
        let store = Store::open(&path.display().to_string()).await.unwrap();
        // The migrations wrote through the WAL, so all three files exist while it is open.
        for suffix in ["", "-wal", "-shm"] {
            let file = format!("{}{suffix}", path.display());
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{file}: {mode:o}");
        }
        store.close().await;
    }
}
