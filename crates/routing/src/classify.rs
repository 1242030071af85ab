//! Turning an upstream failure (HTTP status + provider error text) into the error class LiteLLM
//! would raise, plus the retry-after and back-off arithmetic that goes with it.

use std::time::{Duration, SystemTime};

/// LiteLLM's exception classes, as far as routing decisions care.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    BadRequest,
    ContextWindowExceeded,
    ContentPolicy,
    Auth,
    PermissionDenied,
    NotFound,
    RateLimit,
    Timeout,
    InternalServer,
    ServiceUnavailable,
    /// No HTTP response at all (refused, reset, DNS). Retried, never cools a deployment down.
    Connection,
}

/// Lower-case fragments providers use when the prompt does not fit the model. The texts are
/// those LiteLLM's exception mapping recognises, per provider:
const CONTEXT_WINDOW_MARKERS: &[&str] = &[
    // Ours, and anything LiteLLM (or a gateway in front of us) already classified.
    "contextwindowexceedederror",
    // OpenAI's error code; vLLM and other OpenAI-compatible servers ("This model's maximum
    // context length is N tokens. However, you requested ...").
    "context_length_exceeded",
    "maximum context length",
    "model's maximum context limit",
    "exceed context limit",
    "is longer than the model's context length",
    "input tokens exceed the configured limit",
    "`inputs` tokens + `max_new_tokens` must be",
    // llama.cpp's server (`exceed_context_size_error`) and Lemonade.
    "exceeds the available context size",
    "exceed_context_size_error",
    // Ollama ("the input length exceeds the context length", "input exceeds maximum context
    // length") and LM Studio ("... when context the overflows ... context length of only N
    // tokens"; "Context length exceeded").
    "exceeds the context length",
    "exceeds maximum context length",
    "context the overflows",
    "context length exceeded",
    "context overflow",
    // Anthropic.
    "prompt is too long",
    "prompt: length",
    // Bedrock, Replicate.
    "input is too long",
    // Gemini / Vertex.
    "exceeds the maximum number of tokens allowed",
    "request payload size exceeds",
    "input token count",
    // Older generic wordings kept from before.
    "context window",
    "too many tokens",
    "too many input tokens",
    "reduce the length of the messages",
    "string too long. expected a string with maximum length",
];

/// Pairs of fragments that together mean an overflow (Cerebras: "Current length is X while
/// limit is Y"; "maximum input length is N tokens"; "Input too long: N input tokens, limit is M").
const CONTEXT_WINDOW_PAIRS: &[(&str, &str)] = &[
    ("current length is", "while limit is"),
    ("maximum input length is", "tokens"),
    ("input too long:", "input tokens, limit is"),
];

/// Over-length errors about a parameter, not the prompt (OpenAI's 64-character `user`).
fn is_param_length_error(lower: &str) -> bool {
    lower.contains("string_above_max_length")
        || (lower.contains("invalid 'user'") && lower.contains("string too long"))
}

/// Whether an error text says the prompt does not fit the model's context window.
pub fn is_context_window_text(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    if is_param_length_error(&lower) {
        return false;
    }
    CONTEXT_WINDOW_MARKERS.iter().any(|m| lower.contains(m))
        || CONTEXT_WINDOW_PAIRS
            .iter()
            .any(|(a, b)| lower.contains(a) && lower.contains(b))
}

/// Lower-case fragments of provider safety-filter refusals.
const CONTENT_POLICY_MARKERS: &[&str] = &[
    "content_policy_violation",
    "content policy",
    "content management policy",
    "content_filter",
    "responsibleaipolicyviolation",
    "safety system",
    "flagged as potentially violating",
];

impl ErrorClass {
    /// Classify an upstream HTTP error from its status and body text.
    pub fn classify(status: u16, text: &str) -> ErrorClass {
        match status {
            0 => ErrorClass::Connection,
            401 => ErrorClass::Auth,
            403 => ErrorClass::PermissionDenied,
            404 => ErrorClass::NotFound,
            408 | 504 => ErrorClass::Timeout,
            429 => ErrorClass::RateLimit,
            503 => ErrorClass::ServiceUnavailable,
            // Some local servers answer an overflow with a 5xx; LiteLLM looks at the text first.
            500.. if is_context_window_text(text) => ErrorClass::ContextWindowExceeded,
            400..=499 => {
                if is_context_window_text(text) {
                    ErrorClass::ContextWindowExceeded
                } else if contains_any(text, CONTENT_POLICY_MARKERS) {
                    ErrorClass::ContentPolicy
                } else {
                    ErrorClass::BadRequest
                }
            }
            _ => ErrorClass::InternalServer,
        }
    }

    /// The status LiteLLM reports for this class when no upstream status is known.
    pub fn default_status(self) -> u16 {
        match self {
            ErrorClass::BadRequest
            | ErrorClass::ContextWindowExceeded
            | ErrorClass::ContentPolicy => 400,
            ErrorClass::Auth => 401,
            ErrorClass::PermissionDenied => 403,
            ErrorClass::NotFound => 404,
            ErrorClass::Timeout => 408,
            ErrorClass::RateLimit => 429,
            ErrorClass::InternalServer | ErrorClass::Connection => 500,
            ErrorClass::ServiceUnavailable => 503,
        }
    }

    /// LiteLLM's exception name, for the `litellm.<Name>: ...` message prefix.
    pub fn litellm_name(self) -> &'static str {
        match self {
            ErrorClass::BadRequest => "BadRequestError",
            ErrorClass::ContextWindowExceeded => "ContextWindowExceededError",
            ErrorClass::ContentPolicy => "ContentPolicyViolationError",
            ErrorClass::Auth => "AuthenticationError",
            ErrorClass::PermissionDenied => "PermissionDeniedError",
            ErrorClass::NotFound => "NotFoundError",
            ErrorClass::RateLimit => "RateLimitError",
            ErrorClass::Timeout => "Timeout",
            ErrorClass::InternalServer => "InternalServerError",
            ErrorClass::ServiceUnavailable => "ServiceUnavailableError",
            ErrorClass::Connection => "APIConnectionError",
        }
    }
}

fn contains_any(text: &str, needles: &[&str]) -> bool {
    // Provider bodies are short; one lowercase copy on the error path is fine.
    let lower = text.to_ascii_lowercase();
    needles.iter().any(|n| lower.contains(n))
}

/// LiteLLM `_should_retry(status)`: 408, 409, 429 and every 5xx.
pub fn status_is_retryable(status: u16) -> bool {
    matches!(status, 408 | 409 | 429) || status >= 500
}

/// One failed upstream attempt, as routing sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Failure {
    pub class: ErrorClass,
    pub status: u16,
    /// From the upstream `retry-after-ms` / `retry-after` headers.
    pub retry_after: Option<Duration>,
    /// The caller brought it on (a timeout it set itself, a mock error it asked for): it is
    /// retried and falls back like any failure but says nothing about the deployment's
    /// health, so it never cools one down (LiteLLM's `client_side_timeout`).
    pub caller_caused: bool,
}

impl Failure {
    pub fn new(class: ErrorClass, status: u16, retry_after: Option<Duration>) -> Failure {
        Failure {
            class,
            status,
            retry_after,
            caller_caused: false,
        }
    }

    /// The same failure, marked as brought on by the caller.
    pub fn by_caller(mut self) -> Failure {
        self.caller_caused = true;
        self
    }

    /// An HTTP error response from the upstream.
    pub fn from_response(status: u16, body: &str, retry_after: Option<Duration>) -> Failure {
        let class = ErrorClass::classify(status, body);
        Failure::new(class, status, retry_after)
    }

    /// The upstream did not answer within the timeout (LiteLLM `Timeout`, status 408).
    pub fn timeout() -> Failure {
        Failure::new(ErrorClass::Timeout, 408, None)
    }

    /// No response at all (LiteLLM `APIConnectionError`, status 500).
    pub fn connection() -> Failure {
        Failure::new(ErrorClass::Connection, 500, None)
    }
}

/// Read the upstream wait hint: `retry-after-ms` first, then `retry-after` as seconds or an
/// HTTP date. Nonsense values give `None`.
pub fn parse_retry_after(
    retry_after_ms: Option<&str>,
    retry_after: Option<&str>,
    now: SystemTime,
) -> Option<Duration> {
    if let Some(ms) = retry_after_ms.and_then(|v| v.trim().parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Duration::try_from_secs_f64(ms / 1000.0).ok();
    }
    let v = retry_after?.trim();
    if let Ok(s) = v.parse::<f64>() {
        return if s.is_finite() && s >= 0.0 {
            Duration::try_from_secs_f64(s).ok()
        } else {
            None
        };
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let at: SystemTime = at.with_timezone(&chrono::Utc).into();
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

const INITIAL_RETRY_DELAY: f64 = 0.5;
const MAX_RETRY_DELAY: f64 = 8.0;
/// Provider hints longer than this are ignored in favour of back-off (a minute-long sleep inside
/// a request is worse than trying elsewhere).
const MAX_HONOURED_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Sleep before retry number `retries_done + 1` when no other deployment is available:
/// the provider's hint if it is in (0, 60] s, else exponential back-off from 0.5 s capped at
/// 8 s with up to 25 % jitter taken off; never below `min` (`router_settings.retry_after`).
/// `jitter` is a uniform sample in [0, 1).
pub fn backoff_delay(
    retries_done: u32,
    hint: Option<Duration>,
    min: Duration,
    jitter: f64,
) -> Duration {
    if let Some(h) = hint
        && !h.is_zero()
        && h <= MAX_HONOURED_RETRY_AFTER
    {
        return h.max(min);
    }
    let exp = INITIAL_RETRY_DELAY * 2f64.powi(retries_done.min(16) as i32);
    let secs = exp.min(MAX_RETRY_DELAY) * (1.0 - 0.25 * jitter.clamp(0.0, 1.0));
    Duration::from_secs_f64(secs).max(min)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn classification_table() {
        use ErrorClass::*;
        let cases: &[(u16, &str, ErrorClass)] = &[
            (
                400,
                "This model's maximum context length is 8192 tokens",
                ContextWindowExceeded,
            ),
            (
                400,
                r#"{"error":{"code":"context_length_exceeded"}}"#,
                ContextWindowExceeded,
            ),
            (
                400,
                "prompt is too long: 210000 tokens > 200000 maximum",
                ContextWindowExceeded,
            ),
            (
                400,
                "The input token count (1200000) exceeds the maximum number of tokens allowed",
                ContextWindowExceeded,
            ),
            (413, "Too many tokens in request", ContextWindowExceeded),
            (
                400,
                "Your request was rejected as a result of our safety system",
                ContentPolicy,
            ),
            (
                400,
                r#"{"error":{"code":"content_policy_violation"}}"#,
                ContentPolicy,
            ),
            (
                400,
                "The response was filtered due to the prompt triggering Azure OpenAI's content management policy",
                ContentPolicy,
            ),
            (400, "temperature must be <= 2", BadRequest),
            (422, "unprocessable", BadRequest),
            (401, "invalid api key", Auth),
            (403, "forbidden", PermissionDenied),
            (404, "model not found", NotFound),
            (408, "", Timeout),
            (504, "gateway timeout", Timeout),
            (
                429,
                "Request too large for gpt-4 on tokens per min",
                RateLimit,
            ),
            (500, "context length", InternalServer),
            (502, "bad gateway", InternalServer),
            (503, "overloaded", ServiceUnavailable),
            (0, "connection refused", Connection),
        ];
        for (status, text, want) in cases {
            assert_eq!(
                ErrorClass::classify(*status, text),
                *want,
                "{status} {text}"
            );
        }
    }

    #[test]
    fn every_providers_overflow_text_is_a_context_window_error() {
        let cases: &[(&str, u16, &str)] = &[
            (
                "llama.cpp",
                400,
                r#"{"error":{"code":400,"message":"request (3030 tokens) exceeds the available context size (2048 tokens), try increasing it","type":"exceed_context_size_error","n_prompt_tokens":3030,"n_ctx":2048}}"#,
            ),
            (
                "vLLM",
                400,
                "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens (4000 in the messages, 1000 in the completion). Please reduce the length of the messages or completion.",
            ),
            ("Ollama", 400, "the input length exceeds the context length"),
            (
                "Ollama (older)",
                500,
                "input exceeds maximum context length",
            ),
            (
                "LM Studio",
                400,
                "Trying to keep the first 5191 tokens when context the overflows. However, the model is loaded with context length of only 4096 tokens, which is not enough.",
            ),
            (
                "OpenAI",
                400,
                r#"{"error":{"message":"Your input exceeds the context window of this model.","type":"invalid_request_error","param":"input","code":"context_length_exceeded"}}"#,
            ),
            (
                "Anthropic",
                400,
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#,
            ),
            (
                "Gemini",
                400,
                "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
            ),
            (
                "Bedrock",
                400,
                "ValidationException: Input is too long for requested model.",
            ),
            (
                "Cerebras",
                400,
                "Please reduce the length of the messages or completion. Current length is 9000 while limit is 8192",
            ),
            (
                "Bedrock Nova",
                400,
                "Input too long: 300001 input tokens, limit is 300000",
            ),
        ];
        for (who, status, text) in cases {
            assert_eq!(
                ErrorClass::classify(*status, text),
                ErrorClass::ContextWindowExceeded,
                "{who}: {text}"
            );
        }
        // Over-length parameters are the caller's mistake, not an overflow.
        assert_eq!(
            ErrorClass::classify(
                400,
                "Invalid 'user': string too long. Expected a string with maximum length 64"
            ),
            ErrorClass::BadRequest
        );
        assert_eq!(
            ErrorClass::classify(
                400,
                r#"{"code":"string_above_max_length","message":"maximum context length"}"#
            ),
            ErrorClass::BadRequest
        );
    }

    #[test]
    fn caller_caused_failures_never_cool_down() {
        let f = Failure::timeout().by_caller();
        assert!(f.caller_caused);
        assert_eq!(f.class, ErrorClass::Timeout);
        assert!(!crate::cooldown_required(&f));
        assert!(crate::cooldown_required(&Failure::timeout()));
    }

    #[test]
    fn retryable_statuses_follow_litellm() {
        for s in [408, 409, 429, 500, 502, 503, 504, 529] {
            assert!(status_is_retryable(s), "{s}");
        }
        for s in [400, 401, 403, 404, 413, 422] {
            assert!(!status_is_retryable(s), "{s}");
        }
    }

    #[test]
    fn retry_after_headers_parse() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470);
        assert_eq!(
            parse_retry_after(Some("1500"), Some("9"), now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after(None, Some("7"), now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after(None, Some("Wed, 21 Oct 2015 07:28:00 GMT"), now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(parse_retry_after(None, Some("soon"), now), None);
        assert_eq!(parse_retry_after(None, Some("-3"), now), None);
        assert_eq!(parse_retry_after(None, None, now), None);
    }

    #[test]
    fn backoff_grows_caps_and_respects_hints_and_minimum() {
        let z = Duration::ZERO;
        assert_eq!(backoff_delay(0, None, z, 0.0), Duration::from_millis(500));
        assert_eq!(backoff_delay(1, None, z, 0.0), Duration::from_secs(1));
        assert_eq!(backoff_delay(10, None, z, 0.0), Duration::from_secs(8));
        assert_eq!(backoff_delay(10, None, z, 1.0), Duration::from_secs(6));
        assert_eq!(
            backoff_delay(0, Some(Duration::from_secs(3)), z, 0.5),
            Duration::from_secs(3)
        );
        // An hour-long hint is not honoured inside a request.
        assert_eq!(
            backoff_delay(0, Some(Duration::from_secs(3600)), z, 0.0),
            Duration::from_millis(500)
        );
        assert_eq!(
            backoff_delay(0, None, Duration::from_secs(2), 0.0),
            Duration::from_secs(2)
        );
    }
}
