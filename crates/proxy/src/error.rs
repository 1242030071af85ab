//! The one error type of the request path, and the one place it becomes HTTP: status, the
//! `{"error":{"message","type","param","code"}}` envelope (code = status as a string), and any
//! headers (such as `retry-after`).

use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, StatusCode};
use idlehands_wire::ErrorBody;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProxyError {
    #[error("Authentication Error, No api key passed in.")]
    NoApiKey,
    #[error("Authentication Error, Malformed API Key passed in. Ensure Key has `Bearer ` prefix.")]
    MalformedApiKey,
    /// `shown` is the key's last characters only (`sk-...abcd`).
    #[error(
        "Authentication Error, Invalid proxy server token passed. Received API Key = {shown}, Key Hash (Token) ={hash}. Unable to find token in cache or `LiteLLM_VerificationTokenTable`"
    )]
    InvalidApiKey { shown: String, hash: String },
    #[error(
        "The requested model '{model}' is not available for this API key, or the model name is invalid. Check the models available to you and try again."
    )]
    ModelNotAllowed { model: String },
    #[error("Invalid JSON payload: {0}")]
    InvalidJson(String),
    #[error("Missing required parameter: '{0}'")]
    MissingParam(&'static str),
    #[error("Invalid value for '{param}': {message}")]
    InvalidParam {
        param: &'static str,
        message: String,
    },
    #[error(
        "{call_type}: Invalid model name passed in model={model}. Call `/v1/models` to view available models for your key."
    )]
    UnknownModel {
        call_type: &'static str,
        model: String,
    },
    #[error("The model `{0}` does not exist")]
    ModelNotFound(String),
    #[error(
        "litellm.BadRequestError: LLM Provider NOT provided. Provider '{provider}' (model={model}) is not supported by this gateway yet"
    )]
    UnsupportedProvider { provider: String, model: String },
    /// The upstream answered with an error; `message` already carries the
    /// `litellm.<Class>: ...` prefix.
    #[error("{message}")]
    Upstream {
        status: u16,
        message: String,
        kind: Option<String>,
        retry_after: Option<String>,
    },
    #[error("litellm.Timeout: Request timed out after {secs} seconds. model={model}")]
    UpstreamTimeout { secs: f64, model: String },
    #[error("litellm.APIConnectionError: {label} - {message}")]
    UpstreamUnreachable { label: String, message: String },
    /// For hooks (budgets, rate limits) and future callers that need their own status, type
    /// and headers.
    #[error("{message}")]
    Custom {
        status: u16,
        kind: String,
        message: String,
        param: Option<String>,
        headers: Vec<(HeaderName, HeaderValue)>,
    },
    #[error("Internal server error: {0}")]
    Internal(String),
}

/// LiteLLM's exception class for a status, used for the `litellm.<Class>:` prefix.
pub fn litellm_class(status: u16) -> &'static str {
    match status {
        400 => "BadRequestError",
        401 => "AuthenticationError",
        402 => "PaymentRequiredError",
        403 => "PermissionDeniedError",
        404 => "NotFoundError",
        408 => "Timeout",
        422 => "UnprocessableEntityError",
        429 => "RateLimitError",
        503 => "ServiceUnavailableError",
        s if s >= 500 => "InternalServerError",
        _ => "APIError",
    }
}

/// An error answer of the upstream, worded as LiteLLM words it: `litellm.<Class>: <Class>:
/// <text>` by status, except that a prompt too long for the model becomes LiteLLM's
/// `ContextWindowExceededError` (always a 400) whatever status the provider used, so that
/// `context_window_fallbacks` apply. `hint` is more of the provider's answer (an error code)
/// that helps recognise an overflow without being shown.
pub fn upstream_failure(
    status: u16,
    text: &str,
    hint: &str,
    kind: Option<String>,
    retry_after: Option<String>,
) -> ProxyError {
    use idlehands_routing::ErrorClass;
    let class = ErrorClass::classify(status, text);
    let overflow = class == ErrorClass::ContextWindowExceeded
        || (!matches!(status, 401 | 403 | 404 | 408 | 429 | 503 | 504)
            && !hint.is_empty()
            && idlehands_routing::is_context_window_text(hint));
    if overflow {
        return ProxyError::Upstream {
            status: 400,
            message: format!(
                "litellm.ContextWindowExceededError: litellm.BadRequestError: ContextWindowExceededError: {text}"
            ),
            kind,
            retry_after: None,
        };
    }
    let class = litellm_class(status);
    ProxyError::Upstream {
        status,
        message: format!("litellm.{class}: {class}: {text}"),
        kind,
        retry_after,
    }
}

fn kind_for_status(status: u16) -> &'static str {
    match status {
        400 | 404 | 422 => "invalid_request_error",
        401 => "auth_error",
        403 => "permission_error",
        408 => "timeout_error",
        429 => "rate_limit_error",
        _ => "internal_server_error",
    }
}

impl ProxyError {
    pub fn status(&self) -> u16 {
        match self {
            Self::NoApiKey | Self::MalformedApiKey | Self::InvalidApiKey { .. } => 401,
            Self::ModelNotAllowed { .. } => 403,
            Self::InvalidJson(_)
            | Self::MissingParam(_)
            | Self::InvalidParam { .. }
            | Self::UnknownModel { .. }
            | Self::UnsupportedProvider { .. } => 400,
            Self::ModelNotFound(_) => 404,
            Self::Upstream { status, .. } | Self::Custom { status, .. } => *status,
            Self::UpstreamTimeout { .. } => 408,
            Self::UpstreamUnreachable { .. } | Self::Internal(_) => 500,
        }
    }

    pub fn kind(&self) -> String {
        match self {
            Self::NoApiKey | Self::MalformedApiKey | Self::InvalidApiKey { .. } => {
                "auth_error".to_string()
            }
            Self::ModelNotAllowed { .. } => "key_model_access_denied".to_string(),
            Self::Upstream { kind: Some(k), .. } => k.clone(),
            Self::Custom { kind, .. } => kind.clone(),
            Self::Internal(_) => "internal_server_error".to_string(),
            other => kind_for_status(other.status()).to_string(),
        }
    }

    pub fn param(&self) -> Option<String> {
        match self {
            Self::MissingParam(p) | Self::InvalidParam { param: p, .. } => Some((*p).to_string()),
            Self::UnknownModel { .. } | Self::ModelNotAllowed { .. } => Some("model".to_string()),
            Self::Custom { param, .. } => param.clone(),
            _ => None,
        }
    }

    pub fn body(&self) -> ErrorBody {
        let mut b = ErrorBody::new(self.to_string(), self.kind(), self.status());
        b.error.param = self.param();
        b
    }

    /// The SSE frame sent when a stream fails after it started.
    pub fn sse_frame(&self) -> bytes::Bytes {
        let json = serde_json::to_string(&self.body()).unwrap_or_default();
        idlehands_wire::sse::encode_data(&json)
    }
}

impl IntoResponse for ProxyError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, axum::Json(self.body())).into_response();
        match self {
            Self::Upstream {
                retry_after: Some(r),
                ..
            } => {
                if let Ok(v) = HeaderValue::from_str(&r) {
                    resp.headers_mut().insert(http::header::RETRY_AFTER, v);
                }
            }
            Self::Custom { headers, .. } => {
                for (k, v) in headers {
                    resp.headers_mut().insert(k, v);
                }
            }
            _ => {}
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_carries_status_as_string_code() {
        let b = ProxyError::UnknownModel {
            call_type: "acompletion",
            model: "nope".into(),
        }
        .body();
        assert_eq!(b.error.code.as_deref(), Some("400"));
        assert_eq!(b.error.kind, "invalid_request_error");
        assert!(
            b.error
                .message
                .contains("Invalid model name passed in model=nope")
        );
        assert_eq!(
            ProxyError::NoApiKey.body().error.code.as_deref(),
            Some("401")
        );
    }
}
