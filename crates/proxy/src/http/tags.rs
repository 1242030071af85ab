//! A call's request tags, LiteLLM's `request_tags`: what `/spend/tags` and
//! `/global/spend/tags` add spend up by.
//!
//! As LiteLLM merges them: the body's `metadata.tags` (or `litellm_metadata.tags`), then the
//! key's `metadata.tags` and its team's, then the `x-litellm-tags` header (comma-separated) or, over it, the
//! body's `tags`, each tag once in that order; then, unless
//! `litellm_settings.disable_add_user_agent_to_request_tags`, `User-Agent: <product>` (the
//! user agent up to its first `/`, when it has one) and `User-Agent: <user agent>`.
//! Only strings count: a number or object in a tag list is left out.

use http::HeaderMap;
use serde_json::Value;

use super::body::RequestBody;
use crate::auth::Principal;

/// The request's own tags (body, key, team, header): what tag routing reads, as LiteLLM's
/// `metadata.tags`. The spend row adds [`add_user_agent`]'s.
pub(crate) fn of(
    body: &RequestBody<'_>,
    metadata: Option<&Value>,
    headers: &HeaderMap,
    principal: &Principal,
) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    let litellm_metadata = body
        .raw("litellm_metadata")
        .and_then(|r| serde_json::from_str::<Value>(r.get()).ok());
    let from_metadata = [metadata, litellm_metadata.as_ref()]
        .into_iter()
        .flatten()
        .find_map(|m| {
            m.get("tags")
                .and_then(Value::as_array)
                .filter(|t| !t.is_empty())
        });
    add_all(&mut tags, from_metadata);
    if let Principal::VirtualKey(k) = principal {
        add_all(&mut tags, k.metadata.get("tags").and_then(Value::as_array));
        for t in &k.team_tags {
            add(&mut tags, t);
        }
    }
    let body_tags = body
        .raw("tags")
        .and_then(|r| serde_json::from_str::<Vec<Value>>(r.get()).ok());
    match body_tags {
        Some(list) => add_all(&mut tags, Some(&list)),
        None => {
            if let Some(h) = headers.get("x-litellm-tags").and_then(|v| v.to_str().ok()) {
                for t in h.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                    add(&mut tags, t);
                }
            }
        }
    }
    tags
}

/// With `general_settings.reject_clientside_metadata_tags`, a call that sets tags itself is
/// refused with LiteLLM's 400: tags then come only from the key and the team. LiteLLM looks at
/// `metadata.tags` alone; here the other places a client can put tags (`litellm_metadata.tags`,
/// the body's `tags`, the `x-litellm-tags` header) are refused too, or the setting would be
/// one field wide.
pub(crate) fn client_tags_refused(
    body: &RequestBody<'_>,
    metadata: Option<&Value>,
    headers: &HeaderMap,
) -> Option<crate::error::ProxyError> {
    let in_litellm_metadata = || {
        body.raw("litellm_metadata")
            .and_then(|r| serde_json::from_str::<Value>(r.get()).ok())
            .is_some_and(|m| m.get("tags").is_some())
    };
    let place = if metadata.is_some_and(|m| m.get("tags").is_some()) {
        "metadata.tags"
    } else if in_litellm_metadata() {
        "litellm_metadata.tags"
    } else if body.has("tags") {
        "tags"
    } else if headers.contains_key("x-litellm-tags") {
        "x-litellm-tags"
    } else {
        return None;
    };
    Some(crate::error::ProxyError::Custom {
        status: 400,
        kind: "bad_request_error".to_string(),
        message: format!(
            "Client-side '{place}' not allowed in request. 'reject_clientside_metadata_tags'=True. Tags can only be set via key or team metadata, or by configured request_tag_mappings."
        ),
        param: Some(place.to_string()),
        headers: Vec::new(),
    })
}

/// The caller's `User-Agent`, when it is text.
pub(crate) fn user_agent(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
}

/// LiteLLM's spend-row tags for the caller's user agent (unless
/// `disable_add_user_agent_to_request_tags`): its product, then the whole agent.
pub(crate) fn add_user_agent(tags: &mut Vec<String>, headers: &HeaderMap) {
    if let Some(ua) = user_agent(headers) {
        if let Some((product, _)) = ua.split_once('/') {
            tags.push(format!("User-Agent: {product}"));
        }
        tags.push(format!("User-Agent: {ua}"));
    }
}

fn add_all(tags: &mut Vec<String>, list: Option<&Vec<Value>>) {
    for t in list.into_iter().flatten().filter_map(Value::as_str) {
        add(tags, t);
    }
}

fn add(tags: &mut Vec<String>, tag: &str) {
    if !tags.iter().any(|t| t == tag) {
        tags.push(tag.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use serde_json::json;
    use std::sync::Arc;

    fn tags(
        body: &str,
        headers: &[(&str, &str)],
        key_tags: Option<Value>,
        ua: bool,
    ) -> Vec<String> {
        let bytes = Bytes::from(body.to_string());
        let b = RequestBody::parse(&bytes).unwrap();
        let metadata = b
            .raw("metadata")
            .and_then(|r| serde_json::from_str::<Value>(r.get()).ok());
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let principal = match key_tags {
            Some(t) => Principal::VirtualKey(Arc::new(crate::auth::VirtualKey {
                metadata: json!({ "tags": t }),
                team_tags: vec!["team".into(), "k".into()],
                ..Default::default()
            })),
            None => Principal::Anonymous,
        };
        let mut t = of(&b, metadata.as_ref(), &h, &principal);
        if ua {
            add_user_agent(&mut t, &h);
        }
        t
    }

    #[test]
    fn tags_merge_in_litellms_order_each_once() {
        assert_eq!(
            tags(
                r#"{"model":"m","metadata":{"tags":["a","b"]},"tags":["c","a"]}"#,
                &[("x-litellm-tags", "ignored"), ("user-agent", "curl/8.1")],
                Some(json!(["k", "b"])),
                true,
            ),
            [
                "a",
                "b",
                "k",
                "team",
                "c",
                "User-Agent: curl",
                "User-Agent: curl/8.1"
            ]
        );
    }

    #[test]
    fn the_header_counts_without_body_tags_and_the_user_agent_can_be_left_out() {
        assert_eq!(
            tags(
                r#"{"model":"m","litellm_metadata":{"tags":["x", 3]}}"#,
                &[("x-litellm-tags", " p , q,p"), ("user-agent", "bench")],
                None,
                false,
            ),
            ["x", "p", "q"]
        );
        assert_eq!(
            tags(r#"{"model":"m"}"#, &[("user-agent", "bench")], None, true),
            ["User-Agent: bench"]
        );
        assert!(tags(r#"{"model":"m"}"#, &[], None, true).is_empty());
    }
}
