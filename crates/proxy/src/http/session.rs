//! Which conversation a call belongs to (the spend row's `session_id`, LiteLLM's), so the Logs
//! page and `/spend/logs/session/ui` can show an agent's session as one: the first of the
//! `x-litellm-session-id` or `x-litellm-trace-id` header, the body's `litellm_session_id` or
//! `litellm_trace_id`, the `metadata`'s `session_id`, then a client's own session header
//! (`x-claude-code-session-id` and any other `x-<client>-session-id`, or `x-session-id`)
//! whose value looks like an id (8 to 128 letters, digits, `-` and `_`, as LiteLLM checks it).
//! A call with none has no session (LiteLLM makes up one per call, which groups nothing).

use http::HeaderMap;
use serde_json::Value;

use super::body::RequestBody;

/// Longest session id kept from the explicit fields; a longer one is not an id.
const MAX_LEN: usize = 256;

fn kept(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty() && s.len() <= MAX_LEN && !s.chars().any(char::is_control)).then(|| s.to_owned())
}

/// A client's own session header's value, if it looks like an id.
fn id_like(s: &str) -> Option<String> {
    let s = s.trim();
    ((8..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    .then(|| s.to_owned())
}

fn text(v: Option<&http::HeaderValue>) -> Option<&str> {
    v.and_then(|v| v.to_str().ok())
}

/// One pass over the header names (this runs on every call): the explicit headers and the
/// first client's own session header.
pub(crate) fn of(
    body: Option<&RequestBody<'_>>,
    metadata: Option<&Value>,
    headers: &HeaderMap,
) -> Option<String> {
    let (mut session, mut trace, mut client) = (None, None, None);
    for (name, value) in headers {
        let n = name.as_str();
        if !(n.starts_with("x-") && n.ends_with("-id")) {
            continue;
        }
        match n {
            "x-litellm-session-id" => session = Some(value),
            "x-litellm-trace-id" => trace = Some(value),
            _ if client.is_none() && n.ends_with("-session-id") => client = Some(value),
            _ => {}
        }
    }
    if let Some(s) = text(session)
        .and_then(kept)
        .or_else(|| text(trace).and_then(kept))
    {
        return Some(s);
    }
    if let Some(body) = body {
        for field in ["litellm_session_id", "litellm_trace_id"] {
            let named = body
                .raw(field)
                .and_then(|r| serde_json::from_str::<String>(r.get()).ok());
            if let Some(s) = named.as_deref().and_then(kept) {
                return Some(s);
            }
        }
    }
    if let Some(s) = metadata
        .and_then(|m| m.get("session_id"))
        .and_then(Value::as_str)
        .and_then(kept)
    {
        return Some(s);
    }
    text(client).and_then(id_like)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn explicit_ids_come_first_then_a_clients_own_header() {
        let meta = serde_json::json!({"session_id": "from-metadata"});
        let h = headers(&[
            (
                "x-claude-code-session-id",
                "0f9c2a5e-1111-2222-3333-444455556666",
            ),
            ("x-litellm-trace-id", "trace-1"),
        ]);
        assert_eq!(of(None, Some(&meta), &h).as_deref(), Some("trace-1"));
        let h = headers(&[(
            "x-claude-code-session-id",
            "0f9c2a5e-1111-2222-3333-444455556666",
        )]);
        assert_eq!(of(None, Some(&meta), &h).as_deref(), Some("from-metadata"));
        assert_eq!(
            of(None, None, &h).as_deref(),
            Some("0f9c2a5e-1111-2222-3333-444455556666")
        );
        // A client's header whose value does not look like an id is not a session.
        let h = headers(&[
            ("x-session-id", "short"),
            ("x-foo-session-id", "has spaces in it"),
        ]);
        assert_eq!(of(None, None, &h), None);
        assert_eq!(
            of(None, None, &headers(&[("x-session-id", "abc_12345")])).as_deref(),
            Some("abc_12345")
        );
        assert_eq!(of(None, None, &HeaderMap::new()), None);
    }
}
