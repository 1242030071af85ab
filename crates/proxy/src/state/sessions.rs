//! Dashboard sign-ins: the in-memory session store behind the `idlehands_session` cookie (the
//! sign-in routes are `http/ui.rs`). Sessions live in this process only: a restart signs
//! everyone out.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::auth::hash_key;

/// LiteLLM's UI sessions last a day.
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// More live sessions than this and the oldest are dropped.
const MAX_SESSIONS: usize = 10_000;

/// Live sessions, by the sha256 of their token: a lookup compares hashes, so its timing says
/// nothing about the token, and a memory dump holds no usable cookie.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    live: Mutex<HashMap<String, Instant>>,
}

impl Sessions {
    /// Start a session; returns the token for the cookie.
    pub fn create(&self) -> String {
        let token = hex::encode(rand::random::<[u8; 32]>());
        let now = Instant::now();
        let mut live = self.live.lock();
        live.retain(|_, until| *until > now);
        if live.len() >= MAX_SESSIONS
            && let Some(oldest) = live.iter().min_by_key(|(_, u)| **u).map(|(k, _)| k.clone())
        {
            live.remove(&oldest);
        }
        live.insert(hash_key(&token), now + SESSION_TTL);
        token
    }

    pub fn is_live(&self, token: &str) -> bool {
        let h = hash_key(token);
        let mut live = self.live.lock();
        match live.get(&h) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                live.remove(&h);
                false
            }
            None => false,
        }
    }

    pub fn end(&self, token: &str) {
        self.live.lock().remove(&hash_key(token));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_random_live_until_ended_and_keyed_by_hash() {
        let s = Sessions::default();
        let a = s.create();
        let b = s.create();
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(s.is_live(&a) && s.is_live(&b));
        assert!(!s.live.lock().contains_key(&a));
        s.end(&a);
        assert!(!s.is_live(&a));
        assert!(s.is_live(&b));
        assert!(!s.is_live(""));
    }

    #[test]
    fn expired_sessions_are_refused() {
        let s = Sessions::default();
        let t = s.create();
        if let Some(until) = s.live.lock().get_mut(&hash_key(&t)) {
            *until = Instant::now();
        }
        assert!(!s.is_live(&t));
        assert!(s.live.lock().is_empty());
    }
}
