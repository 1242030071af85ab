//! Errors with the HTTP status, LiteLLM error `type` and message the gateway must answer with.
//! The proxy renders any of them as `{"error":{"message","type","param","code"}}` through
//! [`ApiError`], so every text here is the user-visible one.

use chrono::{DateTime, Utc};

use crate::money::usd_string;

/// What the HTTP layer needs to render an error in LiteLLM's envelope.
pub trait ApiError {
    fn status(&self) -> u16;
    /// LiteLLM's `error.type`.
    fn error_type(&self) -> &'static str;
    fn message(&self) -> String;
    /// LiteLLM's `error.param` (the offending request field), when there is one.
    fn param(&self) -> Option<&str> {
        None
    }
    /// Seconds for a `retry-after` header (rate limits only).
    fn retry_after(&self) -> Option<u64> {
        None
    }
}

/// Failures of management operations and queries.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// 400: malformed or invalid input; `param` names the field.
    #[error("{message}")]
    BadRequest {
        message: String,
        param: Option<String>,
    },
    /// 404, e.g. `Key not found in database`; `param` names the request field.
    #[error("{message}")]
    NotFound {
        message: String,
        param: Option<&'static str>,
    },
    /// 403, e.g. `You are not allowed to access this key's info. Your role=internal_user`.
    #[error("{0}")]
    Forbidden(String),
    /// The database failed; the operation was rolled back.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// SQLite refused a spend-log row (a constraint, a value too large): not transient.
    #[error("database refused a row: {0}")]
    RowRefused(String),
    /// Redis (the shared limiter of a fleet) failed.
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("{0}")]
    Internal(String),
}

impl StoreError {
    pub fn bad_request(message: impl Into<String>, param: impl Into<String>) -> Self {
        StoreError::BadRequest {
            message: message.into(),
            param: Some(param.into()),
        }
    }

    /// The database refused the data itself (not a lost connection or a lock): retrying
    /// the same rows cannot help.
    pub(crate) fn is_refusal(&self) -> bool {
        matches!(
            self,
            StoreError::Database(sqlx::Error::Database(_)) | StoreError::RowRefused(_)
        )
    }

    pub(crate) fn key_not_found() -> Self {
        StoreError::NotFound {
            message: "Key not found in database".to_owned(),
            param: None,
        }
    }

    /// `/key/info`'s answer for a key that does not exist (LiteLLM names the `key` param).
    pub(crate) fn key_info_not_found() -> Self {
        StoreError::NotFound {
            message: "Key not found in database".to_owned(),
            param: Some("key"),
        }
    }
}

impl ApiError for StoreError {
    fn status(&self) -> u16 {
        match self {
            StoreError::BadRequest { .. } => 400,
            StoreError::NotFound { .. } => 404,
            StoreError::Forbidden(_) => 403,
            StoreError::Database(_)
            | StoreError::RowRefused(_)
            | StoreError::Redis(_)
            | StoreError::Internal(_) => 500,
        }
    }

    fn error_type(&self) -> &'static str {
        match self {
            StoreError::BadRequest { .. } => "bad_request_error",
            StoreError::NotFound { .. } => "not_found_error",
            StoreError::Forbidden(_) => "auth_error",
            StoreError::Database(_)
            | StoreError::RowRefused(_)
            | StoreError::Redis(_)
            | StoreError::Internal(_) => "internal_server_error",
        }
    }

    fn message(&self) -> String {
        self.to_string()
    }

    fn param(&self) -> Option<&str> {
        match self {
            StoreError::BadRequest { param, .. } => param.as_deref(),
            StoreError::NotFound { param, .. } => *param,
            _ => None,
        }
    }
}

/// Which rolling-window limit a request hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    Requests,
    Tokens,
    Parallel,
}

impl LimitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Requests => "requests",
            LimitKind::Tokens => "tokens",
            LimitKind::Parallel => "max_parallel_requests",
        }
    }
}

/// Request-path refusals: authentication, model access, budget and rate limits.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AccessError {
    #[error(
        "Authentication Error, Invalid proxy server token passed. Received API Key = {masked}, Key Hash (Token) ={hash}. Unable to find token in cache or `LiteLLM_VerificationTokenTable`"
    )]
    InvalidKey { masked: String, hash: String },
    #[error(
        "Authentication Error - Expired Key. Key Expiry time {} and current time {}",
        py_datetime(expires),
        py_datetime(now)
    )]
    ExpiredKey {
        expires: DateTime<Utc>,
        now: DateTime<Utc>,
    },
    #[error("Authentication Error, Key is blocked. Update via `/key/unblock` if you're an admin.")]
    Blocked,
    #[error(
        "The requested model '{model}' is not available for this API key, or the model name is invalid. Check the models available to you and try again."
    )]
    ModelDenied { model: String },
    #[error(
        "Budget has been exceeded! Key={} ({key_name}) Current cost: {}, Max budget: {}{}",
        key_alias.as_deref().unwrap_or("None"),
        usd_string(*spend_nanos),
        usd_string(*max_budget_nanos),
        reserved_note(*reserved_nanos)
    )]
    BudgetExceeded {
        key_alias: Option<String>,
        key_name: String,
        /// Settled spend only.
        spend_nanos: i64,
        max_budget_nanos: i64,
        /// Held by calls still in progress (their estimates), counted against the budget.
        reserved_nanos: i64,
        /// `litellm_settings.budget_exceeded_status_code`; 422 unless configured.
        status: u16,
    },
    #[error(
        "Rate limit exceeded for {scope}: {key_hash}. Limit type: {}. Current limit: {limit}, Remaining: 0. Limit resets at: {}",
        kind.as_str(),
        reset_at.format("%Y-%m-%d %H:%M:%S UTC")
    )]
    RateLimited {
        /// `api_key`, `team`, `user`, `organization` or `end_user` (LiteLLM's descriptor).
        scope: &'static str,
        /// The key's hash, or the id of the team, user, ... whose limit was hit.
        key_hash: String,
        kind: LimitKind,
        limit: u64,
        reset_at: DateTime<Utc>,
        retry_after_secs: u64,
    },
    /// A budget above the key's (team, team member, user, organization, end user) is spent,
    /// with LiteLLM's text for that level.
    #[error("{}{}", level.text(id, *spend_nanos, *max_budget_nanos), reserved_note(*reserved_nanos))]
    LevelBudgetExceeded {
        level: BudgetLevel,
        id: String,
        spend_nanos: i64,
        max_budget_nanos: i64,
        reserved_nanos: i64,
        status: u16,
    },
    #[error("Team={team_id} is blocked. Update via `/team/unblock` if you're an admin.")]
    TeamBlocked { team_id: String },
    /// The key names a team that is not there (deleted, or never created: a proxy admin may
    /// create a key for any team id). LiteLLM refuses the call with its 404, whose message is
    /// Python's text of the `{"error": ...}` detail; nothing stands in for the missing team.
    #[error(
        "{{'error': {}}}",
        py_repr(&format!("Team doesn't exist in db. Team={team_id}. Create team via `/team/new` call."))
    )]
    TeamNotFound { team_id: String },
    /// A JWT names a user that is not there (LiteLLM's `UserNotFoundError`, raised through
    /// its generic auth error).
    #[error(
        "Authentication Error, User doesn't exist in db. 'user_id'={user_id}. Create user via `/user/new` call."
    )]
    UserNotFound { user_id: String },
    #[error("End user={id} is blocked. Update via `/customer/unblock` if you're an admin.")]
    EndUserBlocked { id: String },
    /// The key's team does not allow the model (LiteLLM's `team_model_access_denied`).
    #[error(
        "The requested model '{model}' is not available for this API key, or the model name is invalid. Check the models available to you and try again."
    )]
    TeamModelDenied { model: String },
    /// The key was not cached and the database could not be asked.
    #[error("Authentication Error, could not look up the key: the database is unavailable")]
    Unavailable,
}

/// Python's `repr()` of a string (the quote it picks, the escapes it writes; characters
/// outside ASCII are kept as they are, as Python 3 does for printable ones).
fn py_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

impl ApiError for AccessError {
    fn status(&self) -> u16 {
        match self {
            AccessError::InvalidKey { .. }
            | AccessError::ExpiredKey { .. }
            | AccessError::Blocked => 401,
            AccessError::ModelDenied { .. } => 403,
            AccessError::BudgetExceeded { status, .. }
            | AccessError::LevelBudgetExceeded { status, .. } => *status,
            AccessError::TeamBlocked { .. } => 401,
            AccessError::TeamNotFound { .. } => 404,
            AccessError::UserNotFound { .. } => 401,
            AccessError::EndUserBlocked { .. } => 403,
            AccessError::TeamModelDenied { .. } => 403,
            AccessError::RateLimited { .. } => 429,
            AccessError::Unavailable => 503,
        }
    }

    fn error_type(&self) -> &'static str {
        match self {
            AccessError::InvalidKey { .. } | AccessError::Blocked => "auth_error",
            AccessError::ExpiredKey { .. } => "expired_key",
            AccessError::ModelDenied { .. } => "key_model_access_denied",
            AccessError::BudgetExceeded { .. } | AccessError::LevelBudgetExceeded { .. } => {
                "budget_exceeded"
            }
            AccessError::TeamBlocked { .. }
            | AccessError::TeamNotFound { .. }
            | AccessError::UserNotFound { .. }
            | AccessError::EndUserBlocked { .. } => "auth_error",
            AccessError::TeamModelDenied { .. } => "team_model_access_denied",
            AccessError::RateLimited { .. } => "rate_limit_error",
            AccessError::Unavailable => "service_unavailable",
        }
    }

    fn message(&self) -> String {
        self.to_string()
    }

    fn param(&self) -> Option<&str> {
        match self {
            AccessError::ModelDenied { .. } | AccessError::TeamModelDenied { .. } => Some("model"),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            AccessError::RateLimited {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        }
    }
}

/// The budgets above a key's, each refused with LiteLLM's own text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BudgetLevel {
    Team,
    /// A user's budget within the team (the field is the team's id; `id` the user's).
    TeamMember(String),
    User,
    Organization,
    EndUser,
    /// The proxy-wide budget (`litellm_settings.max_budget`); `id` is its user's.
    Proxy,
    /// A key's budget for a model (`model_max_budget`): the model asked for, the entry that
    /// governs it, and the key's alias (`id` is the key's hash).
    KeyModel {
        model: String,
        entry: String,
        key_alias: Option<String>,
    },
    /// A key's rate limits on one model (`model_rpm_limit`, `model_tpm_limit`; `id` is
    /// `<key hash>:<model>`, LiteLLM's descriptor value). It has no budget.
    ModelPerKey,
}

impl BudgetLevel {
    fn text(&self, id: &str, spend: i64, max: i64) -> String {
        let (spend, max) = (usd_string(spend), usd_string(max));
        match self {
            BudgetLevel::Team => {
                format!(
                    "Budget has been exceeded! Team={id} Current cost: {spend}, Max budget: {max}"
                )
            }
            BudgetLevel::TeamMember(team) => format!(
                "Budget has been exceeded! User={id} in Team={team} Current cost: {spend}, Max budget: {max}"
            ),
            BudgetLevel::User => {
                format!("ExceededBudget: User={id} over budget. Spend={spend}, Budget={max}")
            }
            BudgetLevel::Organization => format!(
                "Budget has been exceeded! Organization={id} Current cost: {spend}, Max budget: {max}"
            ),
            BudgetLevel::EndUser => {
                format!("ExceededBudget: End User={id} over budget. Spend={spend}, Budget={max}")
            }
            BudgetLevel::Proxy => {
                format!("Budget has been exceeded! Current cost: {spend}, Max budget: {max}")
            }
            BudgetLevel::KeyModel {
                model,
                entry,
                key_alias,
            } => {
                let alias = key_alias.as_deref().unwrap_or("None");
                let own_name = entry == model || model.rsplit('/').next() == Some(entry.as_str());
                let budget_model = if own_name {
                    String::new()
                } else {
                    format!(", budget_model={entry}")
                };
                format!(
                    "LiteLLM Virtual Key: {id}, key_alias: {alias}, exceeded budget for model={model}{budget_model}"
                )
            }
            BudgetLevel::ModelPerKey => {
                format!(
                    "Budget has been exceeded! model_per_key={id} Current cost: {spend}, Max budget: {max}"
                )
            }
        }
    }

    /// LiteLLM's rate-limit descriptor for the level.
    pub fn scope(&self) -> &'static str {
        match self {
            BudgetLevel::Team => "team",
            BudgetLevel::TeamMember(_) | BudgetLevel::User => "user",
            BudgetLevel::Organization => "organization",
            BudgetLevel::EndUser => "end_user",
            BudgetLevel::Proxy => "proxy",
            BudgetLevel::KeyModel { .. } => "api_key",
            BudgetLevel::ModelPerKey => "model_per_key",
        }
    }
}

/// LiteLLM's budget text ends at the max budget; a refusal caused by reservations says so
/// after it, so `Current cost` under the budget is not a puzzle.
fn reserved_note(reserved_nanos: i64) -> String {
    if reserved_nanos > 0 {
        format!(
            ", Reserved by calls in progress: {}",
            usd_string(reserved_nanos)
        )
    } else {
        String::new()
    }
}

/// Python's `str(datetime)` for an aware UTC datetime, as LiteLLM's messages show it.
pub(crate) fn py_datetime(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f+00:00").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(reserved_nanos: i64) -> String {
        AccessError::BudgetExceeded {
            key_alias: Some("team".to_string()),
            key_name: "sk-...abcd".to_string(),
            spend_nanos: 2_000_000,
            max_budget_nanos: 10_000_000,
            reserved_nanos,
            status: 422,
        }
        .to_string()
    }

    #[test]
    fn budget_text_is_litellm_s_with_reservations_appended() {
        assert_eq!(
            budget(0),
            "Budget has been exceeded! Key=team (sk-...abcd) Current cost: 0.002, Max budget: 0.01"
        );
        assert_eq!(
            budget(8_016_000),
            "Budget has been exceeded! Key=team (sk-...abcd) Current cost: 0.002, Max budget: 0.01, Reserved by calls in progress: 0.008016"
        );
    }

    #[test]
    fn missing_team_text_is_python_s_text_of_litellm_s_detail() {
        let text = |id: &str| {
            AccessError::TeamNotFound {
                team_id: id.to_string(),
            }
            .to_string()
        };
        // What CPython 3.11 prints for str({"error": ...}) with these ids.
        assert_eq!(
            text("ghost"),
            "{'error': \"Team doesn't exist in db. Team=ghost. Create team via `/team/new` call.\"}"
        );
        assert_eq!(
            text("a\"b"),
            "{'error': 'Team doesn\\'t exist in db. Team=a\"b. Create team via `/team/new` call.'}"
        );
        assert_eq!(
            text("t\\1\n"),
            "{'error': \"Team doesn't exist in db. Team=t\\\\1\\n. Create team via `/team/new` call.\"}"
        );
    }
}
