//! Secrets of deployments kept in the store, and what answers show of any deployment's params.
//!
//! Stored: every string under a secret-looking key of `litellm_params` (`api_key`,
//! `aws_secret_access_key`, an `extra_headers` `authorization`, ...) is sealed with AES-256-GCM
//! under sha256 of `LITELLM_SALT_KEY` (else the master key), written as LiteLLM's
//! `encryption_algorithm: aes_gcm` does: `v2:gcm:` + base64url(nonce || ciphertext || tag).
//! Shown: those keys LiteLLM drops are dropped, other secret-looking values masked whole.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

const PREFIX: &str = "v2:gcm:";

/// Keys LiteLLM removes from `litellm_params` before showing them.
const DROPPED: [&str; 6] = [
    "api_key",
    "client_secret",
    "vertex_credentials",
    "vertex_ai_credentials",
    "aws_access_key_id",
    "aws_secret_access_key",
];

/// Key segments that make a value secret (LiteLLM's masker's list).
const SECRET_SEGMENTS: [&str; 14] = [
    "password",
    "secret",
    "key",
    "token",
    "auth",
    "authorization",
    "cookie",
    "credential",
    "credentials",
    "access",
    "private",
    "certificate",
    "fingerprint",
    "tenancy",
];

/// Whether a value under `key` is a secret: a `_`/`-` separated segment names one, and no
/// segment is `cost` (`input_cost_per_token` is a price).
pub fn is_secret_key(key: &str) -> bool {
    let lower = key.to_ascii_lowercase().replace('-', "_");
    let segments: Vec<&str> = lower.split('_').collect();
    !segments.contains(&"cost") && segments.iter().any(|s| SECRET_SEGMENTS.contains(s))
}

/// `litellm_params` as answers show them: dropped and masked as above, recursively.
pub fn redact_params(params: &Value) -> Value {
    let Value::Object(map) = params else {
        return params.clone();
    };
    let mut out = Map::new();
    for (k, v) in map {
        if DROPPED.contains(&k.as_str()) {
            continue;
        }
        out.insert(k.clone(), redact_value(k, v));
    }
    Value::Object(out)
}

fn redact_value(key: &str, v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), redact_value(k, v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|i| redact_value(key, i)).collect()),
        Value::Null => Value::Null,
        _ if is_secret_key(key) => Value::String("********".to_string()),
        other => other.clone(),
    }
}

/// Seals and opens stored secrets.
#[derive(Clone)]
pub struct Cipher {
    key: std::sync::Arc<LessSafeKey>,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher(***)")
    }
}

/// Why a stored value could not be opened (never the value).
#[derive(Debug, thiserror::Error)]
#[error("a stored secret cannot be decrypted (was LITELLM_SALT_KEY or the master key changed?)")]
pub struct OpenError;

impl Cipher {
    /// From `LITELLM_SALT_KEY`, else the master key.
    pub fn new(signing_key: &str) -> Cipher {
        let digest = Sha256::digest(signing_key.as_bytes());
        let key = UnboundKey::new(&AES_256_GCM, &digest).map(LessSafeKey::new);
        // 32 bytes is always a valid AES-256 key.
        #[expect(clippy::expect_used)]
        let key = key.expect("a 32-byte key");
        Cipher {
            key: std::sync::Arc::new(key),
        }
    }

    pub fn seal(&self, plain: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        // The system generator does not fail on supported platforms; if it ever did, a zero
        // nonce must not be reused, so fall back to rand's CSPRNG.
        if SystemRandom::new().fill(&mut nonce).is_err() {
            rand::fill(&mut nonce);
        }
        let mut buf = plain.as_bytes().to_vec();
        let sealed = self.key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::empty(),
            &mut buf,
        );
        if sealed.is_err() {
            // Only inputs beyond AES-GCM's size limit (64 GiB) fail.
            return String::new();
        }
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        format!("{PREFIX}{}", URL_SAFE.encode(out))
    }

    /// A sealed value's plaintext; a value without the prefix is returned as it is (written
    /// by hand into the table, or before encryption).
    pub fn open(&self, value: &str) -> Result<String, OpenError> {
        let Some(b64) = value.strip_prefix(PREFIX) else {
            return Ok(value.to_string());
        };
        let raw = URL_SAFE.decode(b64.trim()).map_err(|_| OpenError)?;
        if raw.len() < NONCE_LEN {
            return Err(OpenError);
        }
        let (nonce, rest) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| OpenError)?;
        let mut buf = rest.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::empty(), &mut buf)
            .map_err(|_| OpenError)?;
        String::from_utf8(plain.to_vec()).map_err(|_| OpenError)
    }

    /// `litellm_params` with every secret string sealed (recursively, by key).
    pub fn seal_params(&self, params: &Value) -> Value {
        self.map_secrets(params, "", &|s| Ok(self.seal(s)))
            .unwrap_or_else(|_| params.clone())
    }

    /// `litellm_params` with every sealed string opened.
    pub fn open_params(&self, params: &Value) -> Result<Value, OpenError> {
        self.map_secrets(params, "", &|s| self.open(s))
    }

    fn map_secrets(
        &self,
        v: &Value,
        key: &str,
        f: &dyn Fn(&str) -> Result<String, OpenError>,
    ) -> Result<Value, OpenError> {
        Ok(match v {
            Value::Object(map) => {
                let mut out = Map::new();
                for (k, v) in map {
                    out.insert(k.clone(), self.map_secrets(v, k, f)?);
                }
                Value::Object(out)
            }
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|i| self.map_secrets(i, key, f))
                    .collect::<Result<_, _>>()?,
            ),
            Value::String(s) if is_secret_key(key) && !s.starts_with("os.environ/") => {
                Value::String(f(s)?)
            }
            other => other.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_sealed_and_opened_and_the_rest_is_left_alone() {
        let c = Cipher::new("sk-master-for-unit-tests");
        let params = json!({
            "model": "openai/gpt-4o",
            "api_key": "sk-upstream-secret",
            "input_cost_per_token": 0.001,
            "max_tokens": 5,
            "extra_headers": {"Authorization": "Bearer abc", "x-trace": "t"},
            "aws_secret_access_key": "os.environ/AWS_SECRET"
        });
        let sealed = c.seal_params(&params);
        let text = sealed.to_string();
        assert!(!text.contains("sk-upstream-secret"), "{text}");
        assert!(!text.contains("Bearer abc"), "{text}");
        assert!(sealed["api_key"].as_str().unwrap().starts_with("v2:gcm:"));
        assert_eq!(sealed["model"], "openai/gpt-4o");
        assert_eq!(sealed["extra_headers"]["x-trace"], "t");
        // An env reference is not a secret; it is resolved when the deployment loads.
        assert_eq!(sealed["aws_secret_access_key"], "os.environ/AWS_SECRET");
        assert_eq!(c.open_params(&sealed).unwrap(), params);
        // Fresh nonce each time.
        assert_ne!(c.seal("x"), c.seal("x"));
        // Another key cannot open it.
        assert!(
            Cipher::new("another-key-entirely")
                .open_params(&sealed)
                .is_err()
        );
    }

    #[test]
    fn answers_drop_and_mask_secrets_but_keep_prices_and_limits() {
        let shown = redact_params(&json!({
            "model": "openai/gpt-4o",
            "api_key": "sk-upstream-secret",
            "aws_access_key_id": "AKIA",
            "input_cost_per_token": 0.001,
            "max_tokens": 5,
            "rpm": 10,
            "extra_headers": {"x-api-key": "hdr-secret", "x-trace": "t"},
        }));
        assert_eq!(
            shown,
            json!({
                "model": "openai/gpt-4o",
                "input_cost_per_token": 0.001,
                "max_tokens": 5,
                "rpm": 10,
                "extra_headers": {"x-api-key": "********", "x-trace": "t"},
            })
        );
    }
}
