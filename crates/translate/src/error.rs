//! What can go wrong while translating, in terms the gateway can answer with directly.

/// At most this many characters of an upstream body travel in an error message: enough to
/// recognise the problem, short enough to log.
pub const EXCERPT_CHARS: usize = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// The client's request cannot be expressed in the provider's format (the gateway answers
    /// 400).
    #[error("{0}")]
    InvalidRequest(String),
    /// The provider answered something this translation does not understand (502).
    #[error("Upstream response could not be translated: {reason}: {excerpt}")]
    Untranslatable { reason: String, excerpt: String },
    /// The provider reported an error, inside a stream or in a body; `status` is already mapped
    /// to the HTTP status the gateway should answer with.
    #[error("{message}")]
    Upstream { status: u16, message: String },
}

impl TranslateError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidRequest(msg.into())
    }

    /// An untranslatable upstream body; `body` is shortened and scrubbed of anything that looks
    /// like a credential before it is kept.
    pub fn untranslatable(reason: impl Into<String>, body: &str) -> Self {
        Self::Untranslatable {
            reason: reason.into(),
            excerpt: excerpt(body),
        }
    }

    /// The HTTP status the gateway should answer with.
    pub fn status(&self) -> u16 {
        match self {
            Self::InvalidRequest(_) => 400,
            Self::Untranslatable { .. } => 502,
            Self::Upstream { status, .. } => *status,
        }
    }
}

/// The first [`EXCERPT_CHARS`] characters of `body`, with credential-looking words masked.
pub fn excerpt(body: &str) -> String {
    let scrubbed = scrub_secrets(body);
    let mut out: String = scrubbed.chars().take(EXCERPT_CHARS).collect();
    if scrubbed.chars().nth(EXCERPT_CHARS).is_some() {
        out.push_str("...");
    }
    out
}

/// Prefixes of API keys and tokens that providers sometimes echo back in error bodies
/// ("Incorrect API key provided: sk-..."). Such words keep their prefix and lose the rest.
const SECRET_PREFIXES: &[&str] = &[
    "sk-", "sk_", "AIza", "AKIA", "ASIA", "xai-", "gsk_", "Bearer ",
];

fn scrub_secrets(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    while !rest.is_empty() {
        let hit = SECRET_PREFIXES
            .iter()
            .filter_map(|p| rest.find(p).map(|i| (i, *p)))
            .min_by_key(|(i, _)| *i);
        let Some((i, prefix)) = hit else {
            out.push_str(rest);
            break;
        };
        out.push_str(&rest[..i]);
        out.push_str(prefix);
        let after = &rest[i + prefix.len()..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
            .unwrap_or(after.len());
        if end > 0 {
            out.push_str("***");
        }
        rest = &after[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_is_short_and_hides_keys() {
        let body = format!(
            "{{\"error\":\"Incorrect API key provided: sk-ant-api03-abcdef. Bearer tok.en\"}}{}",
            "x".repeat(400)
        );
        let e = excerpt(&body);
        assert!(!e.contains("abcdef"), "{e}");
        assert!(!e.contains("tok.en"), "{e}");
        assert!(e.contains("sk-***"));
        assert!(e.ends_with("..."));
        assert_eq!(e.chars().count(), EXCERPT_CHARS + 3);
    }

    #[test]
    fn untranslatable_reads_as_a_502_message() {
        let e = TranslateError::untranslatable("no content array", "{\"odd\":true}");
        assert_eq!(e.status(), 502);
        assert_eq!(
            e.to_string(),
            "Upstream response could not be translated: no content array: {\"odd\":true}"
        );
    }
}
