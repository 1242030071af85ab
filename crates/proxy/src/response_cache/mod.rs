//! The response cache (`litellm_settings.cache`): answers kept by a key over the request, in
//! this instance's memory or in a Redis the fleet shares. A lookup or a store that fails (Redis
//! down, slow) is a miss, logged, never a failed call. What a call asks of the cache (its
//! key, its controls) is worked out by `http::cache`; this module keeps and finds entries.

mod local;
mod redis_store;

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use idlehands_clock::{Clock, SystemClock};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::config::ConfigError;
use crate::config::cache::{CacheMode, CacheSettings, CacheStore};

/// How an answer was sent, and so how it is sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// One JSON body.
    Full,
    /// The upstream's server-sent events, replayed through the stream pipeline.
    Stream,
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub kind: Kind,
    pub body: Bytes,
    /// When it was stored (unix milliseconds), for a call's `s-maxage`.
    pub stored_at_ms: u64,
}

impl Entry {
    /// `version, kind, stored_at_ms (8 bytes, little-endian), body`: binary-safe in Redis,
    /// and the body is not copied into a JSON string.
    fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(10 + self.body.len());
        out.put_u8(1);
        out.put_u8(match self.kind {
            Kind::Full => 0,
            Kind::Stream => 1,
        });
        out.put_u64_le(self.stored_at_ms);
        out.extend_from_slice(&self.body);
        out.freeze()
    }

    fn decode(mut raw: Bytes) -> Option<Entry> {
        if raw.len() < 10 || raw[0] != 1 {
            return None;
        }
        let kind = match raw[1] {
            0 => Kind::Full,
            1 => Kind::Stream,
            _ => return None,
        };
        let stored_at_ms = u64::from_le_bytes(raw[2..10].try_into().ok()?);
        let body = raw.split_off(10);
        Some(Entry {
            kind,
            body,
            stored_at_ms,
        })
    }

    /// Older than `max_age` (a call's `s-maxage`)?
    pub fn older_than(&self, max_age: Duration) -> bool {
        SystemClock.now_ms().saturating_sub(self.stored_at_ms)
            > u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX)
    }
}

enum Store {
    Local(local::Local),
    Redis(redis_store::RedisStore),
}

pub(crate) struct ResponseCache {
    pub settings: CacheSettings,
    store: Store,
}

/// Request fields that do not change the answer: they steer the gateway or label the call.
/// Everything else the client sent is part of the key (as LiteLLM keys every model
/// parameter), with `model` replaced by the model group it resolved to.
const NOT_KEYED: &[&str] = &[
    "model",
    "metadata",
    "litellm_metadata",
    "cache",
    "caching",
    "tags",
    "litellm_session_id",
    "litellm_trace_id",
    "timeout",
    "request_timeout",
    "stream_timeout",
    "num_retries",
    "fallbacks",
    "context_window_fallbacks",
    "content_policy_fallbacks",
    "disable_fallbacks",
    "guardrails",
];

impl ResponseCache {
    pub fn new(settings: CacheSettings, source: &str) -> Result<ResponseCache, ConfigError> {
        let store = match &settings.store {
            CacheStore::Local { max_items } => Store::Local(local::Local::new(*max_items)),
            CacheStore::Redis { url } => Store::Redis(
                redis_store::RedisStore::new(url.expose(), &settings.redis_prefix).map_err(
                    |e| {
                        ConfigError::Invalid {
                            file: source.to_string(),
                            path: "litellm_settings.cache_params".to_string(),
                            // The client's error names the scheme or the part it could not read;
                            // never the URL, which may hold the password.
                            message: format!("not a usable Redis address: {e}"),
                        }
                    },
                )?,
            ),
        };
        Ok(ResponseCache { settings, store })
    }

    /// LiteLLM's `cache_type`: `local` or `redis`.
    pub fn type_name(&self) -> &'static str {
        match self.store {
            Store::Local(_) => "local",
            Store::Redis(_) => "redis",
        }
    }

    pub fn default_on(&self) -> bool {
        self.settings.mode == CacheMode::DefaultOn
    }

    /// The key of a request: sha256 over the model group and every keyed field (its JSON
    /// re-serialized, so that spacing does not matter), after `namespace:` when there is one.
    pub fn key<'a>(
        &self,
        model_group: &str,
        fields: impl Iterator<Item = (&'a str, &'a RawValue)>,
        namespace: Option<&str>,
    ) -> String {
        let mut keyed: Vec<(&str, &RawValue)> =
            fields.filter(|(k, _)| !NOT_KEYED.contains(k)).collect();
        keyed.sort_unstable_by_key(|(k, _)| *k);
        let mut h = Sha256::new();
        h.update(b"model: ");
        h.update(model_group.as_bytes());
        for (name, raw) in keyed {
            h.update(b"\n");
            h.update(name.as_bytes());
            h.update(b": ");
            match serde_json::from_str::<serde_json::Value>(raw.get())
                .ok()
                .and_then(|v| serde_json::to_vec(&v).ok())
            {
                Some(canonical) => h.update(&canonical),
                None => h.update(raw.get().as_bytes()),
            }
        }
        let hex = hex::encode(h.finalize());
        match namespace.or(self.settings.namespace.as_deref()) {
            Some(ns) => format!("{ns}:{hex}"),
            None => hex,
        }
    }

    pub async fn get(&self, key: &str) -> Option<Entry> {
        match &self.store {
            Store::Local(l) => l.get(key),
            Store::Redis(r) => r.get(key).await.and_then(Entry::decode),
        }
    }

    /// Keeps `body` under `key` for `ttl` (else the configured TTL); bodies over
    /// `max_size_per_item` are not kept. Redis writes run beside the call.
    pub fn put(self: &Arc<Self>, key: String, kind: Kind, body: Bytes, ttl: Option<Duration>) {
        if body.len() > self.settings.max_item_bytes {
            tracing::debug!(
                bytes = body.len(),
                "response not cached: larger than cache_params.max_size_per_item"
            );
            return;
        }
        let ttl = ttl.or(self.settings.ttl);
        let entry = Entry {
            kind,
            body,
            stored_at_ms: SystemClock.now_ms(),
        };
        match &self.store {
            Store::Local(l) => l.put(key, entry, ttl),
            Store::Redis(_) => {
                let this = self.clone();
                tokio::spawn(async move {
                    if let Store::Redis(r) = &this.store {
                        r.put(&key, entry.encode(), ttl).await;
                    }
                });
            }
        }
    }

    /// Removes these keys; how many were there.
    pub async fn delete(&self, keys: &[String]) -> Result<u64, String> {
        match &self.store {
            Store::Local(l) => Ok(l.delete(keys)),
            Store::Redis(r) => r.delete(keys).await,
        }
    }

    /// Removes every cached response (only those: other data in the same Redis stays).
    pub async fn flush(&self) -> Result<u64, String> {
        match &self.store {
            Store::Local(l) => Ok(l.clear()),
            Store::Redis(r) => r.flush().await,
        }
    }

    /// Redis answers a `PING` (a local cache always does).
    pub async fn ping(&self) -> Result<(), String> {
        match &self.store {
            Store::Local(_) => Ok(()),
            Store::Redis(r) => r.ping().await,
        }
    }

    /// Redis's `INFO`, as `field: value` pairs; `None` for a local cache.
    pub async fn redis_info(&self) -> Option<Result<Vec<(String, String)>, String>> {
        match &self.store {
            Store::Local(_) => None,
            Store::Redis(r) => Some(r.info().await),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::cache::CachedCalls;

    pub(super) fn settings(store: CacheStore) -> CacheSettings {
        CacheSettings {
            store,
            namespace: None,
            ttl: None,
            mode: CacheMode::DefaultOn,
            calls: CachedCalls {
                chat: true,
                text: true,
                embedding: true,
            },
            max_messages: 4,
            max_item_bytes: 64,
            redis_prefix: "t:".into(),
        }
    }

    fn fields(json: &str) -> Vec<(String, Box<RawValue>)> {
        let m: std::collections::BTreeMap<String, Box<RawValue>> =
            serde_json::from_str(json).unwrap();
        m.into_iter().collect()
    }

    fn key_of(c: &ResponseCache, group: &str, json: &str, ns: Option<&str>) -> String {
        let f = fields(json);
        c.key(group, f.iter().map(|(k, v)| (k.as_str(), v.as_ref())), ns)
    }

    #[test]
    fn the_key_covers_what_changes_the_answer_and_nothing_else() {
        let c = ResponseCache::new(settings(CacheStore::Local { max_items: 2 }), "t").unwrap();
        let base = key_of(
            &c,
            "g",
            r#"{"model":"a","messages":[{"role":"user","content":"hi"}],"temperature":0.2}"#,
            None,
        );
        assert_eq!(base.len(), 64);
        // Spacing, field order, the model's alias, labels and gateway controls: same key.
        let same = key_of(
            &c,
            "g",
            r#"{"temperature": 0.2, "messages": [ {"content": "hi", "role": "user"} ], "model": "b",
                "metadata": {"x": 1}, "cache": {"ttl": 5}, "tags": ["t"], "timeout": 3}"#,
            None,
        );
        assert_eq!(base, same);
        for other in [
            r#"{"messages":[{"role":"user","content":"hi!"}],"temperature":0.2}"#,
            r#"{"messages":[{"role":"user","content":"hi"}],"temperature":0.3}"#,
            r#"{"messages":[{"role":"user","content":"hi"}],"temperature":0.2,"stream":true}"#,
            r#"{"messages":[{"role":"user","content":"hi"}],"temperature":0.2,"user":"u"}"#,
        ] {
            assert_ne!(base, key_of(&c, "g", other, None), "{other}");
        }
        assert_ne!(
            base,
            key_of(
                &c,
                "h",
                r#"{"messages":[{"role":"user","content":"hi"}],"temperature":0.2}"#,
                None
            )
        );
        assert_eq!(
            format!("ns:{base}"),
            key_of(
                &c,
                "g",
                r#"{"messages":[{"role":"user","content":"hi"}],"temperature":0.2}"#,
                Some("ns")
            )
        );
    }

    #[test]
    fn entries_encode_and_decode_and_refuse_foreign_bytes() {
        let e = Entry {
            kind: Kind::Stream,
            body: Bytes::from_static(b"data: {}\n\n"),
            stored_at_ms: 1_700_000_000_123,
        };
        let back = Entry::decode(e.encode()).unwrap();
        assert_eq!(
            (back.kind, back.body, back.stored_at_ms),
            (e.kind, e.body, e.stored_at_ms)
        );
        assert!(Entry::decode(Bytes::from_static(b"{\"timestamp\": 1}")).is_none());
        assert!(Entry::decode(Bytes::from_static(b"\x01\x00")).is_none());
    }
}
