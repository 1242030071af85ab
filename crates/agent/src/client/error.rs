//! Client failures, classified the way the fallback loop needs them.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Cancelled by the caller; never retried or failed over.
    Aborted,
    /// The prompt does not fit; compaction, not another model, is the remedy.
    ContextOverflow,
    RateLimit,
    /// 5xx, timeouts, connection failures, streams cut short.
    Transient,
    Auth,
    Billing,
    ModelNotFound,
    /// The provider rejected the request's shape (400).
    Format,
    Unknown,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aborted => "aborted",
            Self::ContextOverflow => "context_overflow",
            Self::RateLimit => "rate_limit",
            Self::Transient => "timeout",
            Self::Auth => "auth",
            Self::Billing => "billing",
            Self::ModelNotFound => "model_not_found",
            Self::Format => "format",
            Self::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ClientError {
    pub kind: FailureKind,
    pub status: Option<u16>,
    pub message: String,
    /// Seconds from a `retry-after` header.
    pub retry_after: Option<u64>,
}

const OVERFLOW_PATTERNS: &[&str] = &[
    "prompt is too long",
    "exceeds the context window",
    "maximum context length",
    "context_length_exceeded",
    "exceeds the available context size",
    "greater than the context length",
    "too many tokens",
    "context length exceeded",
    "input is too long",
    "request too large",
];

pub fn is_context_overflow(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    OVERFLOW_PATTERNS.iter().any(|p| m.contains(p))
}

impl ClientError {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            status: None,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn aborted() -> Self {
        Self::new(FailureKind::Aborted, "Request was aborted")
    }

    /// Classify an HTTP error status and the provider's message.
    pub fn from_status(status: u16, message: String, retry_after: Option<u64>) -> Self {
        let lower = message.to_ascii_lowercase();
        let kind = if is_context_overflow(&message) && matches!(status, 400 | 413 | 422) {
            FailureKind::ContextOverflow
        } else if status == 404
            || (lower.contains("model") && lower.contains("not found"))
            || lower.contains("does not exist")
        {
            FailureKind::ModelNotFound
        } else if status >= 500 || status == 408 || status == 409 {
            FailureKind::Transient
        } else if status == 402 || lower.contains("budget") || lower.contains("billing") {
            // Before 429: LiteLLM answers an exhausted key budget with 429 or 400.
            FailureKind::Billing
        } else if status == 429 || lower.contains("overloaded") {
            FailureKind::RateLimit
        } else if status == 401 || status == 403 {
            FailureKind::Auth
        } else if status == 400 || status == 422 {
            FailureKind::Format
        } else {
            FailureKind::Unknown
        };
        Self {
            kind,
            status: Some(status),
            message,
            retry_after,
        }
    }

    /// Failing over to the next model helps for everything except a cancel, an overflowing
    /// prompt (the next model would get the same prompt), and a refusal of the key itself
    /// (auth, budget or billing): spending on another model is not the user's call to skip.
    pub fn should_fall_back(&self) -> bool {
        !matches!(
            self.kind,
            FailureKind::Aborted
                | FailureKind::ContextOverflow
                | FailureKind::Auth
                | FailureKind::Billing
        )
    }

    /// Worth retrying against the same model after a pause.
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, FailureKind::RateLimit | FailureKind::Transient)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_statuses() {
        let c = |s, m: &str| ClientError::from_status(s, m.into(), None).kind;
        assert_eq!(
            c(400, "This model's maximum context length is 8192 tokens"),
            FailureKind::ContextOverflow
        );
        assert_eq!(c(400, "bad param"), FailureKind::Format);
        assert_eq!(c(503, "overloaded"), FailureKind::Transient);
        assert_eq!(c(429, "slow down"), FailureKind::RateLimit);
        assert_eq!(
            c(
                401,
                "Authentication Error, Invalid proxy server token passed"
            ),
            FailureKind::Auth
        );
        assert_eq!(c(404, "nope"), FailureKind::ModelNotFound);
        assert!(
            !ClientError::from_status(400, "prompt is too long".into(), None).should_fall_back()
        );
        assert!(ClientError::from_status(502, "x".into(), None).should_fall_back());
        assert!(!ClientError::from_status(401, "bad key".into(), None).should_fall_back());
        let budget = ClientError::from_status(429, "Budget has been exceeded".into(), None);
        assert_eq!(budget.kind, FailureKind::Billing);
        assert!(!budget.should_fall_back());
    }
}
