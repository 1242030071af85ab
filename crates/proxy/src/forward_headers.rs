//! `general_settings.forward_client_headers_to_llm_api: true` (every model group) or
//! `litellm_settings.model_group_settings.forward_client_headers_to_llm_api: [groups]`: the
//! caller's `x-*` headers (not the OpenAI SDK's `x-stainless-*`) and `anthropic-beta` go to
//! the provider with the call, as LiteLLM forwards them. Headers that carry a key to the
//! gateway (`Authorization`, `x-api-key`, `x-litellm-api-key`, the configured
//! `litellm_key_header_name`, ...) are never forwarded.

use http::{HeaderMap, HeaderName};
use serde_json::Value;

use crate::config::{ConfigError, ProxyConfig, loose_bool};

/// Headers a caller authenticates to the gateway with (LiteLLM's special headers).
const NEVER: [&str; 9] = [
    "authorization",
    "api-key",
    "x-api-key",
    "x-goog-api-key",
    "ocp-apim-subscription-key",
    "x-litellm-api-key",
    "x-mcp-auth",
    "x-mcp-servers",
    "x-mcp-access-groups",
];

#[derive(Debug, Clone)]
pub(crate) struct ForwardHeaders {
    /// `None`: every group; else the groups named (a trailing `*` matches a prefix).
    groups: Option<Vec<String>>,
    key_header: Option<HeaderName>,
}

impl ForwardHeaders {
    /// `None` when neither setting asks for forwarding.
    pub(crate) fn from_config(
        cfg: &ProxyConfig,
        key_header: Option<HeaderName>,
    ) -> Result<Option<ForwardHeaders>, ConfigError> {
        let invalid = |path: &str, message: &str| ConfigError::Invalid {
            file: cfg.source.clone(),
            path: path.to_string(),
            message: message.to_string(),
        };
        let gs = &cfg.file.general_settings;
        let all = match gs.extra.get("forward_client_headers_to_llm_api") {
            None => false,
            Some(v) => loose_bool(v).ok_or_else(|| {
                invalid(
                    "general_settings.forward_client_headers_to_llm_api",
                    "expected true or false",
                )
            })?,
        };
        const GROUPS: &str =
            "litellm_settings.model_group_settings.forward_client_headers_to_llm_api";
        let groups = match cfg
            .file
            .litellm_settings
            .extra
            .get("model_group_settings")
            .and_then(|m| m.get("forward_client_headers_to_llm_api"))
        {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| i.as_str().map(|s| s.trim().to_string()))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| invalid(GROUPS, "expected a list of model group names"))?,
            Some(_) => return Err(invalid(GROUPS, "expected a list of model group names")),
        };
        if !all && groups.is_empty() {
            return Ok(None);
        }
        Ok(Some(ForwardHeaders {
            groups: (!all).then_some(groups),
            key_header,
        }))
    }

    pub(crate) fn applies_to(&self, group: &str) -> bool {
        self.groups.as_ref().is_none_or(|gs| {
            gs.iter().any(|g| match g.strip_suffix('*') {
                Some(prefix) => group.starts_with(prefix),
                None => g == group,
            })
        })
    }

    /// Adds the caller's forwardable headers to `to`.
    pub(crate) fn add(&self, from: &HeaderMap, to: &mut HeaderMap) {
        for (name, value) in from {
            let n = name.as_str();
            let forwardable = (n.starts_with("x-") && !n.starts_with("x-stainless"))
                || n.starts_with("anthropic-beta");
            if forwardable && !NEVER.contains(&n) && self.key_header.as_ref() != Some(name) {
                to.append(name.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn cfg(yaml: &str) -> ProxyConfig {
        ProxyConfig::from_yaml(yaml, "c.yaml", &|_| None).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn only_x_headers_and_anthropic_beta_go_and_never_a_key() {
        let f = ForwardHeaders::from_config(
            &cfg("general_settings:\n  forward_client_headers_to_llm_api: true\n"),
            Some(HeaderName::from_static("x-my-key")),
        )
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("forwarding is on"));
        let mut from = HeaderMap::new();
        for (k, v) in [
            ("x-trace", "t1"),
            ("anthropic-beta", "tools-2024"),
            ("x-stainless-os", "Linux"),
            ("authorization", "Bearer sk-1"),
            ("x-api-key", "sk-2"),
            ("x-litellm-api-key", "sk-3"),
            ("x-my-key", "sk-4"),
            ("user-agent", "curl"),
        ] {
            from.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let mut to = HeaderMap::new();
        f.add(&from, &mut to);
        let mut got: Vec<&str> = to.keys().map(HeaderName::as_str).collect();
        got.sort_unstable();
        assert_eq!(got, ["anthropic-beta", "x-trace"]);
        assert!(f.applies_to("anything"));
    }

    #[test]
    fn per_group_forwarding_names_groups_and_prefixes() {
        let f = ForwardHeaders::from_config(
            &cfg("litellm_settings:\n  model_group_settings:\n    forward_client_headers_to_llm_api: [claude, 'local-*']\n"),
            None,
        )
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("forwarding is on"));
        assert!(f.applies_to("claude") && f.applies_to("local-qwen"));
        assert!(!f.applies_to("claude-2") && !f.applies_to("gpt-4o"));
        assert!(
            ForwardHeaders::from_config(&cfg("general_settings: {}\n"), None)
                .ok()
                .flatten()
                .is_none()
        );
        let e = ForwardHeaders::from_config(
            &cfg("litellm_settings:\n  model_group_settings:\n    forward_client_headers_to_llm_api: claude\n"),
            None,
        )
        .err()
        .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(
                "c.yaml: litellm_settings.model_group_settings.forward_client_headers_to_llm_api: expected a list of model group names"
            )
        );
    }
}
