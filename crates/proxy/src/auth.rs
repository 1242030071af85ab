//! Who is calling. The key is read from the headers LiteLLM reads, in its order; the master key
//! is checked here without allocation; any other key goes to the [`KeyResolver`] in app state.
//!
//! SEAM (virtual keys): the store crate implements [`KeyResolver`] (sha256 lookup, cache) and
//! returns [`Principal::VirtualKey`]; install it with `GatewayBuilder::key_resolver`.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use http::HeaderMap;

use crate::error::ProxyError;

/// The caller, as known after auth.
#[derive(Debug, Clone)]
pub enum Principal {
    /// The master key (proxy admin).
    Master { key_hash: Arc<str> },
    /// No master key configured and weak/unset keys explicitly permitted: no auth at all.
    Anonymous,
    /// A key from the store.
    VirtualKey(Arc<VirtualKey>),
}

/// A virtual key as the store resolves it. Limits are carried for the pre/post-call hooks.
#[derive(Debug, Clone, Default)]
pub struct VirtualKey {
    /// sha256 hex of the plaintext key (the store's primary key).
    pub token_hash: String,
    pub key_alias: Option<String>,
    /// `sk-...abcd`
    pub key_name: Option<String>,
    pub user_id: Option<String>,
    pub team_id: Option<String>,
    /// Allowed model groups; empty means all.
    pub models: Vec<String>,
    pub max_budget_nanos: Option<u64>,
    pub spend_nanos: u64,
    pub tpm_limit: Option<u64>,
    pub rpm_limit: Option<u64>,
    pub max_parallel_requests: Option<u32>,
    pub metadata: serde_json::Value,
}

impl Principal {
    pub fn key_hash(&self) -> Option<&str> {
        match self {
            Self::Master { key_hash } => Some(key_hash),
            Self::Anonymous => None,
            Self::VirtualKey(k) => Some(&k.token_hash),
        }
    }

    pub fn key_alias(&self) -> Option<&str> {
        match self {
            Self::VirtualKey(k) => k.key_alias.as_deref(),
            _ => None,
        }
    }

    /// LiteLLM's model access check: a key limited to some models may call only those.
    pub fn check_model(&self, model_group: &str) -> Result<(), ProxyError> {
        match self {
            Self::VirtualKey(k)
                if !k.models.is_empty()
                    && !k
                        .models
                        .iter()
                        .any(|m| m == model_group || m == "*" || m == "all-proxy-models") =>
            {
                Err(ProxyError::ModelNotAllowed {
                    model: model_group.to_string(),
                })
            }
            _ => Ok(()),
        }
    }

    pub fn allows_model(&self, model_group: &str) -> bool {
        self.check_model(model_group).is_ok()
    }
}

/// Resolves keys that are not the master key.
pub trait KeyResolver: Send + Sync {
    /// `key` is the plaintext as sent; `hash` its sha256 hex.
    fn resolve<'a>(
        &'a self,
        key: &'a str,
        hash: &'a str,
    ) -> BoxFuture<'a, Result<Principal, ProxyError>>;
}

/// Without a store every non-master key is invalid.
#[derive(Debug, Default)]
pub struct NoVirtualKeys;

impl KeyResolver for NoVirtualKeys {
    fn resolve<'a>(
        &'a self,
        key: &'a str,
        hash: &'a str,
    ) -> BoxFuture<'a, Result<Principal, ProxyError>> {
        let err = invalid_key(key, hash);
        Box::pin(async move { Err(err) })
    }
}

pub fn invalid_key(key: &str, hash: &str) -> ProxyError {
    ProxyError::InvalidApiKey {
        shown: abbreviate_key(key),
        hash: hash.to_string(),
    }
}

/// `sk-...abcd`: what LiteLLM shows of a key in messages.
pub fn abbreviate_key(key: &str) -> String {
    let tail: String = key
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("sk-...{tail}")
}

pub use idlehands_store::keygen::hash_key;

/// Auth settings fixed at start-up.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// `None`: no auth (explicitly permitted).
    pub master_key: Option<String>,
    pub master_hash: Arc<str>,
    /// `general_settings.litellm_key_header_name`, lower-cased.
    pub custom_header: Option<http::HeaderName>,
}

/// The key from the request, or why there is none usable.
pub fn extract_key<'h>(
    headers: &'h HeaderMap,
    custom: Option<&http::HeaderName>,
) -> Result<&'h str, ProxyError> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    if let Some(h) = custom
        && let Some(v) = headers.get(h).and_then(|v| v.to_str().ok())
    {
        return Ok(strip_bearer(v.trim()));
    }
    if let Some(v) = text("x-litellm-api-key") {
        return Ok(strip_bearer(v));
    }
    let mut malformed = false;
    if let Some(v) = text("authorization") {
        if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") {
            let k = v[7..].trim();
            if !k.is_empty() {
                return Ok(k);
            }
        }
        malformed = true;
    }
    for name in [
        "api-key",
        "x-api-key",
        "x-goog-api-key",
        "ocp-apim-subscription-key",
    ] {
        if let Some(v) = text(name) {
            return Ok(v);
        }
    }
    Err(if malformed {
        ProxyError::MalformedApiKey
    } else {
        ProxyError::NoApiKey
    })
}

fn strip_bearer(v: &str) -> &str {
    if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") {
        v[7..].trim()
    } else {
        v
    }
}

/// Constant-time in the key's length, so a timing probe learns nothing about the master key.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The dashboard's session cookie as the master key, for management routes: only when the
/// request sends no key (an explicit key always decides) and `live` accepts the token.
pub fn session_as_master(
    cfg: &AuthConfig,
    headers: &HeaderMap,
    live: impl Fn(&str) -> bool,
) -> Option<Principal> {
    if extract_key(headers, cfg.custom_header.as_ref()).is_ok() {
        return None;
    }
    let token = idlehands_dashboard::session::from_headers(headers)?;
    live(token).then(|| Principal::Master {
        key_hash: cfg.master_hash.clone(),
    })
}

pub async fn authenticate(
    cfg: &AuthConfig,
    resolver: &dyn KeyResolver,
    headers: &HeaderMap,
) -> Result<Principal, ProxyError> {
    let Some(master) = &cfg.master_key else {
        return Ok(Principal::Anonymous);
    };
    let key = extract_key(headers, cfg.custom_header.as_ref())?;
    if same(key, master) {
        return Ok(Principal::Master {
            key_hash: cfg.master_hash.clone(),
        });
    }
    let hash = hash_key(key);
    resolver.resolve(key, &hash).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn header_order_and_errors() {
        let h = headers(&[
            ("x-litellm-api-key", "sk-a"),
            ("authorization", "Bearer sk-b"),
        ]);
        assert_eq!(extract_key(&h, None).ok(), Some("sk-a"));
        let h = headers(&[("authorization", "Bearer sk-b"), ("x-api-key", "sk-c")]);
        assert_eq!(extract_key(&h, None).ok(), Some("sk-b"));
        let h = headers(&[("x-api-key", "sk-c")]);
        assert_eq!(extract_key(&h, None).ok(), Some("sk-c"));
        let h = headers(&[("authorization", "sk-b")]);
        assert!(matches!(
            extract_key(&h, None),
            Err(ProxyError::MalformedApiKey)
        ));
        assert!(matches!(
            extract_key(&HeaderMap::new(), None),
            Err(ProxyError::NoApiKey)
        ));
        assert_eq!(abbreviate_key("sk-123456"), "sk-...3456");
    }
}
