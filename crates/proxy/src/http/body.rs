//! The request body, read once at the top level only: `messages`, `input` and everything else
//! stay raw JSON text that is copied, never rebuilt. When the gateway must change something
//! (the model sent upstream, `stream_options`), it writes the top level again around the raw
//! values; otherwise the client's bytes go upstream as they came.

use std::collections::HashMap;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::ProxyError;
use crate::providers::Deployment;
use crate::providers::params;

/// The raw request body; a body that cannot be read (too large, broken) is answered with the
/// JSON error envelope rather than axum's plain-text rejection.
pub(crate) struct RawBody(pub Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for RawBody {
    type Rejection = axum::response::Response;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        use axum::response::IntoResponse;
        match Bytes::from_request(req, state).await {
            Ok(b) => Ok(RawBody(b)),
            Err(e) => Err(ProxyError::Custom {
                status: e.status().as_u16(),
                kind: "invalid_request_error".to_string(),
                message: format!("Cannot read the request body: {}", e.body_text()),
                param: None,
                headers: Vec::new(),
            }
            .into_response()),
        }
    }
}

/// Request fields that steer the gateway (LiteLLM's own parameters and client-side
/// credentials); they are never sent upstream.
const GATEWAY_ONLY: &[&str] = &[
    "metadata",
    "litellm_metadata",
    "fallbacks",
    "context_window_fallbacks",
    "content_policy_fallbacks",
    "num_retries",
    "mock_response",
    "mock_testing_fallbacks",
    "mock_testing_context_fallbacks",
    "mock_testing_content_policy_fallbacks",
    "disable_fallbacks",
    "caching",
    "cache",
    "tags",
    "guardrails",
    "api_key",
    "api_base",
    "base_url",
    "api_version",
    "timeout",
    "request_timeout",
    "stream_timeout",
    "drop_params",
    "additional_drop_params",
    "allowed_openai_params",
    "extra_headers",
    "mock_timeout",
    "mock_testing_rate_limit_error",
    "fastest_response",
    // The call's session (see `super::session`).
    "litellm_session_id",
    "litellm_trace_id",
];

/// The body's top-level fields, unparsed. foldhash: SipHash over every key showed in profiles.
type Fields<'a> = HashMap<String, &'a RawValue, foldhash::fast::RandomState>;

pub struct RequestBody<'a> {
    fields: Fields<'a>,
    pub model: Option<String>,
    pub stream: bool,
    pub include_usage: bool,
    pub user: Option<String>,
    pub max_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
struct StreamOptionsPeek {
    #[serde(default)]
    include_usage: Option<bool>,
}

impl<'a> RequestBody<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ProxyError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ProxyError::InvalidJson(
                "the request body is empty".to_string(),
            ));
        }
        let fields: Fields<'a> = serde_json::from_slice(bytes).map_err(|e| {
            if e.classify() == serde_json::error::Category::Data {
                ProxyError::InvalidJson("expected a JSON object".to_string())
            } else {
                ProxyError::InvalidJson(e.to_string())
            }
        })?;
        let get = |k: &str| fields.get(k).map(|r| r.get());
        let model =
            match get("model") {
                None | Some("null") => None,
                Some(raw) => Some(serde_json::from_str::<String>(raw).map_err(|_| {
                    ProxyError::InvalidParam {
                        param: "model",
                        message: "expected a string".to_string(),
                    }
                })?),
            };
        let stream = match get("stream") {
            None | Some("null") | Some("false") => false,
            Some("true") => true,
            Some(_) => {
                return Err(ProxyError::InvalidParam {
                    param: "stream",
                    message: "expected true or false".to_string(),
                });
            }
        };
        let include_usage = get("stream_options")
            .and_then(|raw| serde_json::from_str::<StreamOptionsPeek>(raw).ok())
            .and_then(|s| s.include_usage)
            .unwrap_or(false);
        let user = get("user").and_then(|raw| serde_json::from_str::<String>(raw).ok());
        let max_tokens = get("max_completion_tokens")
            .or_else(|| get("max_tokens"))
            .and_then(|raw| raw.parse::<u64>().ok());
        Ok(Self {
            fields,
            model: model.filter(|m| !m.is_empty()),
            stream,
            include_usage,
            user,
            max_tokens,
        })
    }

    /// Whether the client's bytes carry a field that must not go upstream.
    pub fn has_gateway_only_fields(&self) -> bool {
        self.fields
            .keys()
            .any(|k| GATEWAY_ONLY.contains(&k.as_str()))
    }

    pub fn has(&self, key: &str) -> bool {
        self.fields.get(key).is_some_and(|r| r.get() != "null")
    }

    /// `messages` must be a list.
    pub fn has_list(&self, key: &str) -> bool {
        self.fields
            .get(key)
            .is_some_and(|r| r.get().trim_start().starts_with('['))
    }

    pub fn raw(&self, key: &str) -> Option<&'a RawValue> {
        self.fields.get(key).copied()
    }

    /// Every top-level field: one pass finds several rare ones for less than a lookup each.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &'a RawValue)> + '_ {
        self.fields.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// Whether the request carries `key` with a value other than `null`.
    fn sets(&self, key: &str) -> bool {
        self.fields.get(key).is_some_and(|r| r.get() != "null")
    }

    /// The body for one deployment (`original` is the request as it came): the deployment's
    /// call parameters filled in where the request has none, `additional_drop_params` (the
    /// deployment's and the request's) left out, and parameters the provider cannot take
    /// refused, or left out under `drop_params` (the request's, else the deployment's, or
    /// `litellm_settings.drop_params` for every call).
    pub fn for_deployment(
        &self,
        original: &Bytes,
        d: &Deployment,
        force_usage: bool,
        drop_params: bool,
    ) -> Result<Bytes, ProxyError> {
        let p = &d.params;
        let request_drops = self
            .raw("additional_drop_params")
            .map(|r| params::request_drop_list(Some(r)))
            .unwrap_or_default();
        let plain = p.is_passthrough() && request_drops.is_empty();
        if plain {
            return Ok(
                if !force_usage
                    && !self.has_gateway_only_fields()
                    && self.model.as_deref() == Some(d.upstream_model.as_str())
                {
                    original.clone()
                } else {
                    self.rewrite_with(&d.upstream_model, force_usage, &[], &[])
                },
            );
        }
        let mut skip: Vec<&str> = p
            .additional_drop_params
            .iter()
            .chain(&request_drops)
            .map(String::as_str)
            .collect();
        let mut add: Vec<(&str, &str)> = p
            .defaults
            .iter()
            .filter(|(k, _)| !self.sets(k) && !skip.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v.get()))
            .collect();
        if let Some(sup) = p.supported {
            let mut unsupported: Vec<&str> = self
                .fields
                .iter()
                .map(|(k, v)| (k.as_str(), v.get()))
                .chain(add.iter().copied())
                .filter(|(k, v)| {
                    params::CHECKED.contains(k)
                        && !sup.contains(k)
                        && !params::is_default_value(k, v)
                        && !skip.contains(k)
                })
                .map(|(k, _)| k)
                .collect();
            if !unsupported.is_empty() {
                unsupported.sort_unstable();
                let drop = drop_params
                    || match self.raw("drop_params").map(|r| r.get().trim()) {
                        Some("true") => true,
                        Some("false") => false,
                        _ => p.drop_params == Some(true),
                    };
                if !drop {
                    return Err(params::unsupported_error(
                        &d.provider,
                        &d.upstream_model,
                        &unsupported,
                    ));
                }
                add.retain(|(k, _)| !unsupported.contains(k));
                skip.extend(unsupported);
            }
        } else {
            // OpenAI-compatible upstreams get `extra_body` in the body itself, as the OpenAI
            // SDK sends it; translating adapters add it to the body they build.
            for (k, v) in &p.extra_body_fields {
                if !self.sets(k) && !skip.contains(&k.as_str()) && !add.iter().any(|(a, _)| a == k)
                {
                    add.push((k.as_str(), v.get()));
                }
            }
        }
        if add.is_empty()
            && skip.is_empty()
            && !force_usage
            && !self.has_gateway_only_fields()
            && self.model.as_deref() == Some(d.upstream_model.as_str())
        {
            return Ok(original.clone());
        }
        Ok(self.rewrite_with(&d.upstream_model, force_usage, &skip, &add))
    }

    /// The body to send upstream: `model` replaced; with `force_usage`, `stream_options`
    /// gets `include_usage: true` (its other fields kept).
    pub fn rewrite(&self, model: &str, force_usage: bool) -> Bytes {
        self.rewrite_with(model, force_usage, &[], &[])
    }

    /// [`Self::rewrite`] for an API whose own `metadata` field the request's is (OpenAI's
    /// Responses API): it stays in the body (LiteLLM's own fields still go).
    pub fn rewrite_keeping_metadata(&self, model: &str) -> Bytes {
        match self.raw("metadata") {
            Some(m) => self.rewrite_with(model, false, &[], &[("metadata", m.get())]),
            None => self.rewrite(model, false),
        }
    }

    /// [`Self::rewrite`], leaving out the fields in `skip` and adding those in `add` (JSON
    /// text), which the request does not have.
    fn rewrite_with(
        &self,
        model: &str,
        force_usage: bool,
        skip: &[&str],
        add: &[(&str, &str)],
    ) -> Bytes {
        let mut out: Vec<u8> = Vec::with_capacity(
            self.fields
                .values()
                .map(|v| v.get().len() + 24)
                .sum::<usize>()
                + 64,
        );
        out.push(b'{');
        let mut first = true;
        let mut put = |out: &mut Vec<u8>, k: &str, v: &str| {
            if !first {
                out.push(b',');
            }
            first = false;
            // A key is a plain string; serializing it cannot fail.
            let _ = serde_json::to_writer(&mut *out, k);
            out.push(b':');
            out.extend_from_slice(v.as_bytes());
        };
        for (k, v) in &self.fields {
            if k == "model"
                || (force_usage && k == "stream_options")
                || GATEWAY_ONLY.contains(&k.as_str())
                || skip.contains(&k.as_str())
            {
                continue;
            }
            // A deployment's value replaces a request's `null`.
            if v.get() == "null" && add.iter().any(|(a, _)| a == k) {
                continue;
            }
            put(&mut out, k, v.get());
        }
        for (k, v) in add {
            put(&mut out, k, v);
        }
        let model_json = serde_json::to_string(model).unwrap_or_else(|_| "\"\"".to_string());
        put(&mut out, "model", &model_json);
        if force_usage {
            let mut opts = self
                .raw("stream_options")
                .and_then(|r| {
                    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(r.get()).ok()
                })
                .unwrap_or_default();
            opts.insert("include_usage".to_string(), serde_json::Value::Bool(true));
            let s = serde_json::to_string(&opts).unwrap_or_else(|_| "{}".to_string());
            put(&mut out, "stream_options", &s);
        }
        out.push(b'}');
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn rewrite_replaces_model_and_forces_usage_keeping_the_rest() {
        let src = br#"{"model":"g","messages":[{"role":"user","content":"hi \"x\""}],"stream":true,"stream_options":{"foo":1},"seed":7}"#;
        let b = RequestBody::parse(src).ok();
        let b = b.as_ref();
        assert_eq!(b.map(|b| b.stream), Some(true));
        assert_eq!(b.map(|b| b.include_usage), Some(false));
        let out = b.map(|b| b.rewrite("up/m", true)).unwrap_or_default();
        let v: Value = serde_json::from_slice(&out).unwrap_or(Value::Null);
        assert_eq!(v["model"], "up/m");
        assert_eq!(
            v["stream_options"],
            json!({"foo": 1, "include_usage": true})
        );
        assert_eq!(v["messages"][0]["content"], "hi \"x\"");
        assert_eq!(v["seed"], 7);
    }

    #[test]
    fn gateway_only_fields_are_not_forwarded() {
        let src = br#"{"model":"g","messages":[],"metadata":{"a":1},"mock_testing_fallbacks":true,"user":"u"}"#;
        let b = RequestBody::parse(src).ok();
        assert_eq!(
            b.as_ref().map(RequestBody::has_gateway_only_fields),
            Some(true)
        );
        let out = b.map(|b| b.rewrite("g", false)).unwrap_or_default();
        let v: Value = serde_json::from_slice(&out).unwrap_or(Value::Null);
        assert_eq!(v, json!({"model": "g", "messages": [], "user": "u"}));
    }

    #[test]
    fn errors_are_client_errors() {
        assert!(matches!(
            RequestBody::parse(b"{"),
            Err(ProxyError::InvalidJson(_))
        ));
        assert!(matches!(
            RequestBody::parse(b"[1]"),
            Err(ProxyError::InvalidJson(_))
        ));
        assert!(matches!(
            RequestBody::parse(b""),
            Err(ProxyError::InvalidJson(_))
        ));
        assert!(matches!(
            RequestBody::parse(br#"{"model":3}"#),
            Err(ProxyError::InvalidParam { param: "model", .. })
        ));
    }
}
