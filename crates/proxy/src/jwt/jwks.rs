//! The identity provider's signing keys (JWKS), fetched from `JWT_PUBLIC_KEY_URL` and kept for
//! `public_key_ttl`. One fetch at a time per gateway; a token signed with a key the copy lacks
//! refetches (at most every [`UNKNOWN_KID_REFETCH`]), so a rotated key works at once rather
//! than after the TTL (LiteLLM waits for the TTL). When the provider cannot be reached, the
//! last copy serves for `public_key_stale_ttl` more, as LiteLLM does, and a failed fetch is
//! not retried for [`UNREACHABLE_BACKOFF`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::Jwk;
use parking_lot::RwLock;
use serde_json::Value;

/// LiteLLM's `JWKS_UNREACHABLE_BACKOFF_SECONDS`.
const UNREACHABLE_BACKOFF: Duration = Duration::from_secs(30);
const UNKNOWN_KID_REFETCH: Duration = Duration::from_secs(2);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// One key of a set, ready to verify with.
pub(crate) struct SigningKey {
    pub kid: Option<String>,
    pub key: DecodingKey,
}

struct KeySet {
    keys: Vec<Arc<SigningKey>>,
    fetched: Instant,
}

#[derive(Default)]
struct UrlState {
    set: Option<Arc<KeySet>>,
    failed: Option<(Instant, String)>,
}

/// Why no key was found.
#[derive(Debug)]
pub(crate) enum KeyError {
    /// No set holds the token's `kid`.
    NoMatch,
    /// A provider could not be reached and no usable copy is left; the reason.
    Unreachable(String),
}

pub(crate) struct Jwks {
    urls: Vec<String>,
    ttl: Duration,
    stale_ttl: Duration,
    client: reqwest::Client,
    state: RwLock<HashMap<String, UrlState>>,
    /// One refresh at a time: a TTL lapse under load costs one fetch, not one per call.
    refreshing: tokio::sync::Mutex<()>,
}

impl Jwks {
    pub(crate) fn new(
        urls: Vec<String>,
        ttl: Duration,
        stale_ttl: Duration,
        client: reqwest::Client,
    ) -> Jwks {
        Jwks {
            urls,
            ttl,
            stale_ttl,
            client,
            state: RwLock::new(HashMap::new()),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    pub(crate) fn urls(&self) -> &[String] {
        &self.urls
    }

    /// The key for `kid`, from the first URL whose set has it (LiteLLM's order).
    pub(crate) async fn key(&self, kid: Option<&str>) -> Result<Arc<SigningKey>, KeyError> {
        for url in &self.urls {
            if let Some(k) = self.key_at(url, kid).await? {
                return Ok(k);
            }
        }
        Err(KeyError::NoMatch)
    }

    async fn key_at(
        &self,
        url: &str,
        kid: Option<&str>,
    ) -> Result<Option<Arc<SigningKey>>, KeyError> {
        if let Some(set) = self.fresh(url) {
            match pick(&set.keys, kid) {
                Some(k) => return Ok(Some(k)),
                None if set.fetched.elapsed() < UNKNOWN_KID_REFETCH => return Ok(None),
                None => {}
            }
        }
        let _one = self.refreshing.lock().await;
        // Another call may have refreshed it while this one waited.
        if let Some(set) = self.fresh(url)
            && set.fetched.elapsed() < UNKNOWN_KID_REFETCH
        {
            return Ok(pick(&set.keys, kid));
        }
        let set = self.refresh(url).await?;
        Ok(pick(&set.keys, kid))
    }

    /// The copy of `url`'s set younger than the TTL.
    fn fresh(&self, url: &str) -> Option<Arc<KeySet>> {
        let state = self.state.read();
        let set = state.get(url)?.set.as_ref()?;
        (set.fetched.elapsed() < self.ttl).then(|| set.clone())
    }

    /// Fetches `url`'s set; on failure, the last copy while it is within the stale window.
    async fn refresh(&self, url: &str) -> Result<Arc<KeySet>, KeyError> {
        let recent_failure = self
            .state
            .read()
            .get(url)
            .and_then(|s| s.failed.clone())
            .filter(|(at, _)| at.elapsed() < UNREACHABLE_BACKOFF);
        let tried = recent_failure.is_none();
        let outcome = match recent_failure {
            Some((_, why)) => Err(why),
            None => self.fetch(url).await,
        };
        let mut state = self.state.write();
        let entry = state.entry(url.to_owned()).or_default();
        match outcome {
            Ok(keys) => {
                let set = Arc::new(KeySet {
                    keys,
                    fetched: Instant::now(),
                });
                entry.set = Some(set.clone());
                entry.failed = None;
                Ok(set)
            }
            Err(why) => {
                if tried {
                    entry.failed = Some((Instant::now(), why.clone()));
                }
                match &entry.set {
                    Some(set) if set.fetched.elapsed() < self.ttl + self.stale_ttl => {
                        tracing::warn!(
                            url,
                            error = %why,
                            age_s = set.fetched.elapsed().as_secs(),
                            "JWT auth: the identity provider is unreachable; verifying against the last copy of its keys"
                        );
                        Ok(set.clone())
                    }
                    _ => Err(KeyError::Unreachable(why)),
                }
            }
        }
    }

    /// GETs `url` (following an OIDC discovery document to its `jwks_uri`) and reads its keys.
    async fn fetch(&self, url: &str) -> Result<Vec<Arc<SigningKey>>, String> {
        let mut doc = self.get_json(url).await?;
        if url.contains(".well-known/openid-configuration") {
            let Some(jwks_uri) = doc.get("jwks_uri").and_then(Value::as_str) else {
                return Err(format!(
                    "the OIDC discovery document at {url} has no `jwks_uri`"
                ));
            };
            let jwks_uri = jwks_uri.to_owned();
            doc = self.get_json(&jwks_uri).await?;
        }
        let keys = match doc {
            Value::Object(mut m) if m.contains_key("keys") => m.remove("keys").unwrap_or_default(),
            other => other,
        };
        let keys = match keys {
            Value::Array(a) => a,
            single @ Value::Object(_) => vec![single],
            _ => return Err(format!("{url} holds no JSON Web Key Set")),
        };
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            let kid = k.get("kid").and_then(Value::as_str).map(str::to_owned);
            // A key of a type this gateway cannot verify with (or an `oct` secret, which a
            // public key set must not hold) is left out, not the whole set.
            let parsed = serde_json::from_value::<Jwk>(k)
                .ok()
                .filter(|j| {
                    !matches!(
                        j.algorithm,
                        jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_)
                    )
                })
                .and_then(|j| DecodingKey::from_jwk(&j).ok());
            match parsed {
                Some(key) => out.push(Arc::new(SigningKey { kid, key })),
                None => {
                    tracing::warn!(url, kid = ?kid, "JWT auth: a key of the set cannot verify tokens here and is left out")
                }
            }
        }
        Ok(out)
    }

    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let resp = self
            .client
            .get(url)
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .map_err(|e| format!("fetching {url}: {e}"))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("{url} answered {}", status.as_u16()));
        }
        resp.json::<Value>()
            .await
            .map_err(|e| format!("{url} did not answer JSON: {e}"))
    }
}

/// LiteLLM's `parse_keys`: a set of one key serves a token naming its `kid` or none; in a
/// larger set the token must name the key.
fn pick(keys: &[Arc<SigningKey>], kid: Option<&str>) -> Option<Arc<SigningKey>> {
    if let [only] = keys {
        return (only.kid.as_deref() == kid || kid.is_none()).then(|| only.clone());
    }
    let kid = kid?;
    keys.iter().find(|k| k.kid.as_deref() == Some(kid)).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kid: Option<&str>) -> Arc<SigningKey> {
        Arc::new(SigningKey {
            kid: kid.map(str::to_owned),
            key: DecodingKey::from_ed_components("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
                .unwrap_or_else(|e| panic!("{e}")),
        })
    }

    #[test]
    fn a_lone_key_serves_its_kid_or_none_and_a_set_needs_the_kid() {
        let one = [key(Some("a"))];
        assert!(pick(&one, Some("a")).is_some());
        assert!(pick(&one, None).is_some());
        assert!(pick(&one, Some("b")).is_none());
        let two = [key(Some("a")), key(Some("b"))];
        assert_eq!(
            pick(&two, Some("b")).and_then(|k| k.kid.clone()).as_deref(),
            Some("b")
        );
        assert!(pick(&two, None).is_none());
        assert!(pick(&two, Some("c")).is_none());
        assert!(pick(&[], None).is_none());
    }
}
