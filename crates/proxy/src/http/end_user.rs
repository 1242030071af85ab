//! Who a call is for (its end user, LiteLLM's customer), found where LiteLLM looks, in its
//! order: the `x-litellm-customer-id` / `x-litellm-end-user-id` headers, the headers
//! `general_settings.user_header_mappings` maps to the `customer` role (else
//! `user_header_name`), the body's `user`, `litellm_metadata.user`, `metadata.user_id`, then
//! `safety_identifier`. The end user's budget, block and spend follow from it.
//!
//! As LiteLLM, an identifier is trimmed and an empty one does not count; a number counts as
//! its text, an object or list does not.

use http::{HeaderMap, HeaderName};
use serde_json::Value;
use serde_json::value::RawValue;

use super::body::RequestBody;

const STANDARD: [HeaderName; 2] = [
    HeaderName::from_static("x-litellm-customer-id"),
    HeaderName::from_static("x-litellm-end-user-id"),
];

fn usable(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim()).filter(|s| !s.is_empty()).map(str::to_owned),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The first of the standard headers, then of `configured`, that the request carries with a
/// usable value. One pass over the request's few headers: a lookup per name hashed each name
/// (about 110 instructions each, on every call).
fn from_headers(headers: &HeaderMap, configured: &[HeaderName]) -> Option<String> {
    let mut best: Option<(usize, &str)> = None;
    for (name, value) in headers {
        let n = name.as_str();
        let standard = if n.len() == 21 && n.starts_with("x-litellm-") {
            STANDARD.iter().position(|s| s == name)
        } else {
            None
        };
        let Some(rank) = standard.or_else(|| {
            configured
                .iter()
                .position(|c| c == name)
                .map(|i| i + STANDARD.len())
        }) else {
            continue;
        };
        let Some(v) = value.to_str().ok().map(str::trim).filter(|v| !v.is_empty()) else {
            continue;
        };
        if best.is_none_or(|(b, _)| rank < b) {
            best = Some((rank, v));
        }
    }
    best.map(|(_, v)| v.to_owned())
}

/// The call's end user; `configured` are the headers the config names (see the module doc).
pub(crate) fn of(
    body: &RequestBody<'_>,
    metadata: Option<&Value>,
    headers: &HeaderMap,
    configured: &[HeaderName],
) -> Option<String> {
    if let Some(u) = from_headers(headers, configured) {
        return Some(u);
    }
    // The body's `user` is already read when it is a string (the common case).
    if let Some(u) = body
        .user
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
    {
        return Some(u.to_owned());
    }
    let parsed = |r: &RawValue| serde_json::from_str::<Value>(r.get()).ok();
    let (mut user, mut litellm_metadata, mut safety_identifier) = (None, None, None);
    for (k, v) in body.fields() {
        match k {
            "user" => user = Some(v),
            "litellm_metadata" => litellm_metadata = Some(v),
            "safety_identifier" => safety_identifier = Some(v),
            _ => {}
        }
    }
    if body.user.is_none()
        && let Some(u) = user.and_then(parsed).as_ref().and_then(usable)
    {
        return Some(u);
    }
    if let Some(u) = litellm_metadata
        .and_then(parsed)
        .as_ref()
        .and_then(|m| m.get("user"))
        .and_then(usable)
    {
        return Some(u);
    }
    if let Some(u) = metadata.and_then(|m| m.get("user_id")).and_then(usable) {
        return Some(u);
    }
    safety_identifier.and_then(parsed).as_ref().and_then(usable)
}

/// The headers `general_settings.user_header_mappings` (and `user_header_name`) name.
#[derive(Debug, Default)]
pub(crate) struct MappedHeaders {
    /// The end user's: the `litellm_user_role: customer` entries, else `user_header_name`.
    pub end_user: Vec<HeaderName>,
    /// The call's user's: the first `litellm_user_role: internal_user` entry (LiteLLM's).
    pub internal_user: Option<HeaderName>,
}

/// The user a call is made for when `general_settings.user_header_mappings` maps a header to
/// `internal_user` and the call sends it (trimmed, not empty): LiteLLM's call user, which the
/// spend row names and whose budget holds the call.
pub(crate) fn acting_user(headers: &HeaderMap, header: Option<&HeaderName>) -> Option<String> {
    let v = headers.get(header?)?.to_str().ok()?.trim();
    (!v.is_empty()).then(|| v.to_owned())
}

/// What `general_settings` names (see [`MappedHeaders`]).
pub(crate) fn configured_headers(
    cfg: &crate::config::ProxyConfig,
) -> Result<MappedHeaders, crate::config::ConfigError> {
    let gs = &cfg.file.general_settings.extra;
    let invalid = |path: String, message: String| crate::config::ConfigError::Invalid {
        file: cfg.source.clone(),
        path,
        message,
    };
    let header = |path: String, name: &str| crate::config::header_name(cfg, &path, name.trim());
    let mut out = Vec::new();
    let mut internal_user = None;
    match gs.get("user_header_mappings") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let at = format!("general_settings.user_header_mappings[{i}]");
                let (Some(name), Some(role)) = (
                    item.get("header_name").and_then(Value::as_str),
                    item.get("litellm_user_role").and_then(Value::as_str),
                ) else {
                    return Err(invalid(
                        at,
                        "expected {header_name, litellm_user_role}".to_string(),
                    ));
                };
                if role.trim().eq_ignore_ascii_case("customer") {
                    out.push(header(format!("{at}.header_name"), name)?);
                } else if role.trim().eq_ignore_ascii_case("internal_user")
                    && internal_user.is_none()
                {
                    internal_user = Some(header(format!("{at}.header_name"), name)?);
                }
            }
        }
        Some(_) => {
            return Err(invalid(
                "general_settings.user_header_mappings".to_string(),
                "expected a list of {header_name, litellm_user_role}".to_string(),
            ));
        }
    }
    if out.is_empty()
        && let Some(name) = gs.get("user_header_name")
    {
        let path = "general_settings.user_header_name".to_string();
        match name.as_str() {
            Some(n) if !n.trim().is_empty() => out.push(header(path, n)?),
            Some(_) => {}
            None => return Err(invalid(path, "expected a header name".to_string())),
        }
    }
    Ok(MappedHeaders {
        end_user: out,
        internal_user,
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::HeaderValue;
    use serde_json::json;

    use super::*;

    fn end_user(body: Value, headers: &[(&'static str, &'static str)]) -> Option<String> {
        let bytes = Bytes::from(body.to_string());
        let b = RequestBody::parse(&bytes).unwrap_or_else(|e| panic!("{e}"));
        let metadata = b
            .raw("metadata")
            .and_then(|r| serde_json::from_str::<Value>(r.get()).ok());
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        of(
            &b,
            metadata.as_ref(),
            &h,
            &[HeaderName::from_static("x-openwebui-user-email")],
        )
    }

    #[test]
    fn litellms_order_headers_first_then_the_body() {
        let body = json!({"model": "m", "user": "from-body", "metadata": {"user_id": "from-meta"}});
        assert_eq!(
            end_user(
                body.clone(),
                &[
                    ("x-openwebui-user-email", "a@example.com"),
                    ("x-litellm-end-user-id", "std")
                ]
            )
            .as_deref(),
            Some("std")
        );
        assert_eq!(
            end_user(
                body.clone(),
                &[("x-openwebui-user-email", " a@example.com ")]
            )
            .as_deref(),
            Some("a@example.com")
        );
        assert_eq!(
            end_user(
                body.clone(),
                &[
                    ("x-litellm-end-user-id", "second"),
                    ("x-litellm-customer-id", "first"),
                    ("x-litellm-tags", "t")
                ]
            )
            .as_deref(),
            Some("first")
        );
        assert_eq!(end_user(body, &[]).as_deref(), Some("from-body"));
        assert_eq!(
            end_user(
                json!({"model": "m", "user": "  ", "litellm_metadata": {"user": 42}}),
                &[]
            )
            .as_deref(),
            Some("42")
        );
        assert_eq!(
            end_user(json!({"model": "m", "metadata": {"user_id": "meta"}}), &[]).as_deref(),
            Some("meta")
        );
        assert_eq!(
            end_user(
                json!({"model": "m", "user": {"id": 1}, "safety_identifier": "sid"}),
                &[]
            )
            .as_deref(),
            Some("sid")
        );
        assert_eq!(end_user(json!({"model": "m"}), &[("x-other", "x")]), None);
    }
}
