//! Azure OpenAI: the body is OpenAI's; only where it goes and how it is authorised differ.
//!
//! An adapter builds the URL with [`chat_url`] (or [`embeddings_url`]), adds
//! [`request_headers`], sends the OpenAI body unchanged, and reads the OpenAI answer as is.

/// The GA API version used when the config names none.
pub const DEFAULT_API_VERSION: &str = "2024-10-21";

/// `{api_base}/openai/deployments/{deployment}/{operation}?api-version=...`; `api_base` is the
/// resource endpoint (`https://NAME.openai.azure.com`), with or without a trailing `/` or
/// `/openai`.
fn deployment_url(
    api_base: &str,
    deployment: &str,
    api_version: Option<&str>,
    operation: &str,
) -> String {
    let base = api_base.trim_end_matches('/');
    let base = base.strip_suffix("/openai").unwrap_or(base);
    let version = api_version.unwrap_or(DEFAULT_API_VERSION);
    format!(
        "{base}/openai/deployments/{}/{operation}?api-version={}",
        encode_component(deployment),
        encode_component(version)
    )
}

pub fn chat_url(api_base: &str, deployment: &str, api_version: Option<&str>) -> String {
    deployment_url(api_base, deployment, api_version, "chat/completions")
}

pub fn embeddings_url(api_base: &str, deployment: &str, api_version: Option<&str>) -> String {
    deployment_url(api_base, deployment, api_version, "embeddings")
}

/// How the call is authorised: a resource key, or an Entra ID (Azure AD) token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AzureAuth<'a> {
    ApiKey(&'a str),
    AdToken(&'a str),
}

pub fn request_headers(auth: AzureAuth<'_>) -> Vec<(String, String)> {
    let auth = match auth {
        AzureAuth::ApiKey(k) => ("api-key".to_string(), k.to_string()),
        AzureAuth::AdToken(t) => ("authorization".to_string(), format!("Bearer {t}")),
    };
    vec![
        auth,
        ("content-type".to_string(), "application/json".to_string()),
    ]
}

/// Percent-encode everything but RFC 3986 unreserved characters; deployment names are
/// user-chosen and must not break the path.
pub(crate) fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            chat_url(
                "https://res.openai.azure.com/",
                "gpt4o-prod",
                Some("2024-08-01-preview")
            ),
            "https://res.openai.azure.com/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-08-01-preview"
        );
        assert_eq!(
            embeddings_url("https://res.openai.azure.com/openai", "emb", None),
            "https://res.openai.azure.com/openai/deployments/emb/embeddings?api-version=2024-10-21"
        );
        assert_eq!(
            chat_url("http://h", "my deploy", None),
            "http://h/openai/deployments/my%20deploy/chat/completions?api-version=2024-10-21"
        );
    }

    #[test]
    fn headers() {
        assert_eq!(
            request_headers(AzureAuth::ApiKey("k"))[0],
            ("api-key".to_string(), "k".to_string())
        );
        assert_eq!(
            request_headers(AzureAuth::AdToken("t"))[0],
            ("authorization".to_string(), "Bearer t".to_string())
        );
    }
}
