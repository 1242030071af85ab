//! `/spend/logs/v2` and `/spend/logs/ui`: the spend log as LiteLLM's Logs page reads it, a page
//! of rows under many filters, sorted by one of seven columns, with a count of the matches that
//! stops at [`SPEND_LOG_COUNT_CAP`] (a month of a busy store must not be counted for a page).

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::db::{Backend, Store, from_ms, on_db, to_ms};
use crate::error::StoreError;
use crate::keygen::token_of;
use crate::spend::SpendLogRow;
use crate::spend_db::{ROW_COLS, row_from_db};
use crate::types::JsonObjectText;

/// Matches counted at most (LiteLLM's `SPEND_LOGS_PAGINATION_COUNT_CAP`); past it the answer
/// says `total_is_capped`.
pub const SPEND_LOG_COUNT_CAP: u64 = 10_000;

/// LiteLLM's call types of MCP tool calls, agent messages and batches (`span_type`).
const MCP_CALLS: &str = "('call_mcp_tool', 'list_mcp_tools')";
const AGENT_CALL: &str = "'asend_message'";
const BATCH_CALLS: &str = "('acreate_batch', 'create_batch', 'aretrieve_batch', 'retrieve_batch')";

/// What a page is sorted by (`sort_by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogSort {
    #[default]
    StartTime,
    EndTime,
    Spend,
    TotalTokens,
    /// `request_duration_ms`, else end minus start.
    Duration,
    Model,
    /// Time to the first token; rows without one (not streamed) last in either direction.
    Ttft,
}

impl LogSort {
    /// LiteLLM's `sort_by` names.
    pub const NAMES: [&'static str; 7] = [
        "endTime",
        "model",
        "request_duration_ms",
        "spend",
        "startTime",
        "total_tokens",
        "ttft_ms",
    ];

    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "startTime" => Self::StartTime,
            "endTime" => Self::EndTime,
            "spend" => Self::Spend,
            "total_tokens" => Self::TotalTokens,
            "request_duration_ms" => Self::Duration,
            "model" => Self::Model,
            "ttft_ms" => Self::Ttft,
            _ => return None,
        })
    }

    fn sql(self) -> &'static str {
        match self {
            Self::StartTime => "start_time",
            Self::EndTime => "end_time",
            Self::Spend => "spend",
            Self::TotalTokens => "total_tokens",
            Self::Duration => "COALESCE(request_duration_ms, end_time - start_time)",
            Self::Model => "model",
            Self::Ttft => {
                "CASE WHEN completion_start_time IS NULL OR completion_start_time = end_time \
                 THEN NULL ELSE completion_start_time - start_time END"
            }
        }
    }
}

/// LiteLLM's `span_type`: what kind of call a row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanType {
    Llm,
    Agent,
    Mcp,
    Batch,
}

impl SpanType {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "llm" => Self::Llm,
            "agent" => Self::Agent,
            "mcp" => Self::Mcp,
            "batch" => Self::Batch,
            _ => return None,
        })
    }

    fn sql(self) -> String {
        match self {
            Self::Mcp => format!("call_type IN {MCP_CALLS}"),
            Self::Agent => format!("call_type = {AGENT_CALL}"),
            Self::Batch => format!("call_type IN {BATCH_CALLS}"),
            Self::Llm => format!(
                "(call_type NOT IN {MCP_CALLS} AND call_type <> {AGENT_CALL} \
                 AND call_type NOT IN {BATCH_CALLS})"
            ),
        }
    }
}

/// Whose rows a caller may see.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LogScope {
    /// Everyone's (proxy admins).
    #[default]
    All,
    /// Rows of this user, of these teams, or of this key (a hash); none of them: no rows.
    Owned {
        user: Option<String>,
        teams: Vec<String>,
        key: Option<String>,
    },
}

/// One page's ask. Dates bound `startTime` inclusively at both ends, as LiteLLM compares them.
#[derive(Debug, Clone, Default)]
pub struct LogPageQuery {
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    /// A key's hash, or the key itself (`sk-...`, hashed here).
    pub api_key: Option<String>,
    pub user_id: Option<String>,
    pub team_id: Option<String>,
    /// The call id, `litellm_call_id` or the upstream's response id; the exact call id first.
    pub request_id: Option<String>,
    /// A part of the session id.
    pub session_id: Option<String>,
    /// The whole session id (`/spend/logs/session/ui`).
    pub session_exact: Option<String>,
    pub model: Option<String>,
    pub model_id: Option<String>,
    pub model_group: Option<String>,
    pub end_user: Option<String>,
    /// A part of the key's alias (`metadata.user_api_key_alias`).
    pub key_alias: Option<String>,
    /// `metadata.error_information.error_code`, the HTTP status as text.
    pub error_code: Option<String>,
    /// A part of `metadata.error_information.error_message`.
    pub error_message: Option<String>,
    /// `success` or `failure` (any other value matches rows with that status: none).
    pub status: Option<String>,
    /// `Some(true)`: cache hits only; `Some(false)`: everything else.
    pub cache_hit: Option<bool>,
    /// `metadata.used_client_oauth_token`; no row of ours carries it, so either value matches none.
    pub used_client_oauth_token: Option<bool>,
    pub span_type: Option<SpanType>,
    /// Nano-dollars, inclusive.
    pub min_spend: Option<i64>,
    pub max_spend: Option<i64>,
    /// A value that the call id matches over all time, or, inside `search_window`, the
    /// `litellm_call_id`, key hash, team, user, end user, session or deployment id.
    pub search: Option<String>,
    pub search_window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    pub sort: LogSort,
    pub ascending: bool,
    pub page: u32,
    pub page_size: u32,
    pub scope: LogScope,
}

/// A page of rows (without `messages` and `response`, which only the one-call view reads).
#[derive(Debug, Clone, PartialEq)]
pub struct LogPage {
    pub rows: Vec<SpendLogRow>,
    /// Matches, at most [`SPEND_LOG_COUNT_CAP`].
    pub total: u64,
    pub capped: bool,
}

/// A session's calls under one key, for the Logs page's session column.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionTotals {
    pub calls: i64,
    /// Nano-dollars.
    pub spend: i64,
    pub duration_ms: i64,
    pub mcp_calls: i64,
    /// Nano-dollars.
    pub mcp_spend: i64,
    pub cache_hits: i64,
    pub llm_calls: i64,
    pub agent_calls: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    /// Distinct models, sorted.
    pub models: Vec<String>,
}

/// One call's request and answer, for the Logs page's detail view.
#[derive(Debug, Clone, PartialEq)]
pub struct CallPayload {
    pub request_id: String,
    pub user: Option<String>,
    pub team_id: Option<String>,
    pub api_key: String,
    pub messages: Option<serde_json::Value>,
    pub response: Option<serde_json::Value>,
}

/// One bound value of a page's query.
enum Bind {
    Text(String),
    Number(i64),
}

/// Conditions and the values they bind, numbered `$1..` in the order they are added.
#[derive(Default)]
struct Where {
    conds: Vec<String>,
    binds: Vec<Bind>,
}

impl Where {
    fn text(&mut self, v: String) -> String {
        self.binds.push(Bind::Text(v));
        format!("${}", self.binds.len())
    }

    fn number(&mut self, v: i64) -> String {
        self.binds.push(Bind::Number(v));
        format!("${}", self.binds.len())
    }

    /// The `WHERE` clause (empty without conditions).
    fn sql(&self) -> String {
        if self.conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.conds.join(" AND "))
        }
    }
}

/// Binds `binds` to `query` in order.
macro_rules! bind_all {
    ($query:expr, $binds:expr) => {{
        let mut query = $query;
        for b in $binds {
            query = match b {
                Bind::Text(t) => query.bind(t.clone()),
                Bind::Number(n) => query.bind(*n),
            };
        }
        query
    }};
}

impl Store {
    /// `/spend/logs/v2`, `/spend/logs/ui`: a page of rows and how many match.
    pub async fn spend_log_page(&self, q: &LogPageQuery) -> Result<LogPage, StoreError> {
        let mut w = self.log_page_where(q);
        let where_sql = w.sql();
        let filters = w.binds.len();
        let count_sql = format!(
            "SELECT COUNT(*) FROM (SELECT 1 FROM idlehands_spend_logs{where_sql} LIMIT ${}) AS m",
            filters + 1
        );
        let dir = if q.ascending { "ASC" } else { "DESC" };
        let nulls = if q.sort == LogSort::Ttft {
            " NULLS LAST"
        } else {
            ""
        };
        let list_cols = ROW_COLS.replace(
            "messages, response,",
            "CAST(NULL AS TEXT) AS messages, CAST(NULL AS TEXT) AS response,",
        );
        // The exact call id, bound once more after the filters, sorts its own row first.
        let exact_first = match &q.request_id {
            Some(id) => format!("(request_id = {}) DESC, ", w.text(id.clone())),
            None => String::new(),
        };
        let limit = w.number(i64::from(q.page_size));
        let offset = w.number(i64::from(q.page.saturating_sub(1)) * i64::from(q.page_size));
        let page_sql = format!(
            "SELECT {list_cols} FROM idlehands_spend_logs{where_sql} \
             ORDER BY {exact_first}{} {dir}{nulls}, request_id {dir} LIMIT {limit} OFFSET {offset}",
            q.sort.sql(),
        );
        let cap = i64::try_from(SPEND_LOG_COUNT_CAP).unwrap_or(i64::MAX);
        let (count, rows) = on_db!(&self.db, pool => {
            let count = bind_all!(sqlx::query_scalar::<_, i64>(&count_sql), &w.binds[..filters])
                .bind(cap + 1)
                .fetch_one(pool)
                .await?;
            let found = bind_all!(sqlx::query(&page_sql), &w.binds).fetch_all(pool).await?;
            let mut rows = Vec::with_capacity(found.len());
            for r in &found {
                rows.push(row_from_db!(r));
            }
            (count, rows)
        });
        let count = u64::try_from(count).unwrap_or(0);
        Ok(LogPage {
            rows,
            total: count.min(SPEND_LOG_COUNT_CAP),
            capped: count > SPEND_LOG_COUNT_CAP,
        })
    }

    fn log_page_where(&self, q: &LogPageQuery) -> Where {
        let sqlite = self.backend() == Backend::Sqlite;
        // JSON text stored as TEXT on both: SQLite reads it with json_extract, Postgres casts.
        let meta = |path: &[&str]| -> String {
            if sqlite {
                format!("json_extract(metadata, '$.{}')", path.join("."))
            } else {
                let (last, init) = path.split_last().unwrap_or((&"", &[]));
                let mut e = "metadata::jsonb".to_owned();
                for p in init {
                    e.push_str(&format!(" -> '{p}'"));
                }
                format!("({e} ->> '{last}')")
            }
        };
        // A case-sensitive part of a text, with no LIKE wildcards to escape.
        let contains = |col: &str, p: &str| -> String {
            if sqlite {
                format!("instr({col}, {p}) > 0")
            } else {
                format!("strpos({col}, {p}) > 0")
            }
        };
        let mut w = Where::default();
        if let Some(k) = &q.api_key {
            let p = w.text(token_of(k));
            w.conds.push(format!("api_key = {p}"));
        }
        for (col, v) in [
            ("user_id", &q.user_id),
            ("team_id", &q.team_id),
            ("model", &q.model),
            ("model_id", &q.model_id),
            ("model_group", &q.model_group),
            ("end_user", &q.end_user),
        ] {
            if let Some(v) = v {
                let p = w.text(v.clone());
                w.conds.push(format!("{col} = {p}"));
            }
        }
        if let Some(id) = &q.request_id {
            let p = w.text(id.clone());
            w.conds.push(format!(
                "(request_id = {p} OR litellm_call_id = {p} OR upstream_response_id = {p})"
            ));
        }
        if let Some(s) = &q.session_id {
            let p = w.text(s.clone());
            w.conds.push(contains("session_id", &p));
        }
        if let Some(s) = &q.session_exact {
            let p = w.text(s.clone());
            w.conds.push(format!("session_id = {p}"));
        }
        if let Some(a) = &q.key_alias {
            let p = w.text(a.clone());
            w.conds.push(contains(&meta(&["user_api_key_alias"]), &p));
        }
        if let Some(c) = &q.error_code {
            let p = w.text(c.clone());
            w.conds.push(format!(
                "{} = {p}",
                meta(&["error_information", "error_code"])
            ));
        }
        if let Some(m) = &q.error_message {
            let p = w.text(m.clone());
            w.conds
                .push(contains(&meta(&["error_information", "error_message"]), &p));
        }
        if let Some(s) = &q.status {
            let p = w.text(s.clone());
            w.conds.push(format!("status = {p}"));
        }
        match q.cache_hit {
            Some(true) => w.conds.push("LOWER(cache_hit) = 'true'".into()),
            Some(false) => w
                .conds
                .push("(cache_hit IS NULL OR LOWER(cache_hit) <> 'true')".into()),
            None => {}
        }
        if let Some(used) = q.used_client_oauth_token {
            let p = w.text(used.to_string());
            // SQLite's json_extract reads a JSON boolean as 1 or 0; json_type names it.
            let e = if sqlite {
                "json_type(metadata, '$.used_client_oauth_token')".to_owned()
            } else {
                meta(&["used_client_oauth_token"])
            };
            w.conds.push(format!("{e} = {p}"));
        }
        if let Some(t) = q.span_type {
            w.conds.push(t.sql());
        }
        if let Some(s) = &q.search {
            let p = w.text(token_of(s));
            let raw = w.text(s.clone());
            let window = match q.search_window {
                Some((from, to)) => {
                    let (a, b) = (w.number(to_ms(from)), w.number(to_ms(to)));
                    format!(
                        " OR (start_time >= {a} AND start_time <= {b} AND (litellm_call_id = {raw} \
                         OR api_key = {p} OR team_id = {raw} OR user_id = {raw} \
                         OR end_user = {raw} OR session_id = {raw} OR model_id = {raw}))"
                    )
                }
                None => String::new(),
            };
            w.conds.push(format!("(request_id = {raw}{window})"));
        }
        match &q.scope {
            LogScope::All => {}
            LogScope::Owned { user, teams, key } => {
                let mut any = Vec::new();
                if let Some(u) = user {
                    let p = w.text(u.clone());
                    any.push(format!("user_id = {p}"));
                }
                if !teams.is_empty() {
                    let ps: Vec<String> = teams.iter().map(|t| w.text(t.clone())).collect();
                    any.push(format!("team_id IN ({})", ps.join(", ")));
                }
                if let Some(k) = key {
                    let p = w.text(k.clone());
                    any.push(format!("api_key = {p}"));
                }
                if any.is_empty() {
                    w.conds.push("1 = 0".into());
                } else {
                    w.conds.push(format!("({})", any.join(" OR ")));
                }
            }
        }
        if let Some(from) = q.start {
            let p = w.number(to_ms(from));
            w.conds.push(format!("start_time >= {p}"));
        }
        if let Some(to) = q.end {
            let p = w.number(to_ms(to));
            w.conds.push(format!("start_time <= {p}"));
        }
        if let Some(v) = q.min_spend {
            let p = w.number(v);
            w.conds.push(format!("spend >= {p}"));
        }
        if let Some(v) = q.max_spend {
            let p = w.number(v);
            w.conds.push(format!("spend <= {p}"));
        }
        w
    }

    /// Each (session, key) pair's totals over all its rows.
    pub async fn session_totals(
        &self,
        pairs: &[(String, String)],
    ) -> Result<HashMap<(String, String), SessionTotals>, StoreError> {
        let sessions: BTreeSet<&str> = pairs.iter().map(|(s, _)| s.as_str()).collect();
        let keys: BTreeSet<&str> = pairs.iter().map(|(_, k)| k.as_str()).collect();
        if sessions.is_empty() {
            return Ok(HashMap::new());
        }
        let mut texts: Vec<String> = Vec::new();
        let list = |vals: &BTreeSet<&str>, texts: &mut Vec<String>| -> String {
            vals.iter()
                .map(|v| {
                    texts.push((*v).to_owned());
                    format!("${}", texts.len())
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let in_sessions = list(&sessions, &mut texts);
        let in_keys = list(&keys, &mut texts);
        let filter = format!("session_id IN ({in_sessions}) AND api_key IN ({in_keys})");
        let sums = format!(
            "SELECT session_id, api_key, COUNT(*) AS calls, \
             CAST(COALESCE(SUM(spend), 0) AS BIGINT) AS spend, \
             CAST(COALESCE(SUM(COALESCE(request_duration_ms, end_time - start_time)), 0) AS BIGINT) AS duration, \
             CAST(COALESCE(SUM(CASE WHEN call_type IN {MCP_CALLS} THEN 1 ELSE 0 END), 0) AS BIGINT) AS mcp_calls, \
             CAST(COALESCE(SUM(CASE WHEN call_type IN {MCP_CALLS} THEN spend ELSE 0 END), 0) AS BIGINT) AS mcp_spend, \
             CAST(COALESCE(SUM(CASE WHEN LOWER(cache_hit) = 'true' THEN 1 ELSE 0 END), 0) AS BIGINT) AS hits, \
             CAST(COALESCE(SUM(CASE WHEN call_type NOT IN {MCP_CALLS} AND call_type <> {AGENT_CALL} THEN 1 ELSE 0 END), 0) AS BIGINT) AS llm, \
             CAST(COALESCE(SUM(CASE WHEN call_type = {AGENT_CALL} THEN 1 ELSE 0 END), 0) AS BIGINT) AS agent, \
             CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT) AS pt, \
             CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT) AS ct, \
             CAST(COALESCE(SUM(total_tokens), 0) AS BIGINT) AS tt \
             FROM idlehands_spend_logs WHERE {filter} GROUP BY session_id, api_key"
        );
        let models = format!(
            "SELECT DISTINCT session_id, api_key, model FROM idlehands_spend_logs \
             WHERE {filter} AND model <> '' ORDER BY model"
        );
        let wanted: BTreeSet<(&str, &str)> = pairs
            .iter()
            .map(|(s, k)| (s.as_str(), k.as_str()))
            .collect();
        let mut out: HashMap<(String, String), SessionTotals> = HashMap::new();
        on_db!(&self.db, pool => {
            let mut query = sqlx::query(&sums);
            for t in &texts { query = query.bind(t.clone()); }
            for r in query.fetch_all(pool).await? {
                let (s, k): (String, String) = (r.try_get("session_id")?, r.try_get("api_key")?);
                if !wanted.contains(&(s.as_str(), k.as_str())) {
                    continue;
                }
                out.insert((s, k), SessionTotals {
                    calls: r.try_get("calls")?,
                    spend: r.try_get("spend")?,
                    duration_ms: r.try_get("duration")?,
                    mcp_calls: r.try_get("mcp_calls")?,
                    mcp_spend: r.try_get("mcp_spend")?,
                    cache_hits: r.try_get("hits")?,
                    llm_calls: r.try_get("llm")?,
                    agent_calls: r.try_get("agent")?,
                    prompt_tokens: r.try_get("pt")?,
                    completion_tokens: r.try_get("ct")?,
                    total_tokens: r.try_get("tt")?,
                    models: Vec::new(),
                });
            }
            let mut query = sqlx::query(&models);
            for t in &texts { query = query.bind(t.clone()); }
            for r in query.fetch_all(pool).await? {
                let key: (String, String) = (r.try_get("session_id")?, r.try_get("api_key")?);
                if let Some(t) = out.get_mut(&key) {
                    t.models.push(r.try_get("model")?);
                }
            }
        });
        Ok(out)
    }

    /// The rows a call id names (`request_id` or `litellm_call_id`), the exact call id first:
    /// who owns each, and its request and answer.
    pub async fn call_payloads(&self, id: &str) -> Result<Vec<CallPayload>, StoreError> {
        let sql = "SELECT request_id, user_id, team_id, api_key, messages, response \
             FROM idlehands_spend_logs WHERE request_id = $1 OR litellm_call_id = $1 \
             ORDER BY CASE WHEN request_id = $1 THEN 0 ELSE 1 END, start_time DESC LIMIT 100";
        let json = |t: Option<String>| t.and_then(|t| serde_json::from_str(&t).ok());
        let rows = on_db!(&self.db, pool => {
            let found = sqlx::query(sql).bind(id).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(found.len());
            for r in &found {
                out.push(CallPayload {
                    request_id: r.try_get("request_id")?,
                    user: r.try_get("user_id")?,
                    team_id: r.try_get("team_id")?,
                    api_key: r.try_get("api_key")?,
                    messages: json(r.try_get("messages")?),
                    response: json(r.try_get("response")?),
                });
            }
            out
        });
        Ok(rows)
    }
}
