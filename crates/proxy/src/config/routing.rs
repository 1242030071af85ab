//! `router_settings` and the routing keys of `litellm_settings`, read a second time with the
//! routing crate's own LiteLLM-compatible types (the typed sections in `types.rs` stay what the
//! rest of the config code reads).

use serde_json::Value;

use super::ConfigError;
use idlehands_routing::{LitellmRoutingSettings, RouterSettings};

/// The two sections as written (after `os.environ/` resolution), kept before the typed parse
/// consumes the document.
pub(super) struct RawSections {
    router: Value,
    litellm: Value,
}

impl RawSections {
    pub(super) fn take(doc: &Value) -> Self {
        let section = |name: &str| match doc.get(name) {
            Some(v) if !v.is_null() => v.clone(),
            _ => Value::Object(Default::default()),
        };
        RawSections {
            router: section("router_settings"),
            litellm: section("litellm_settings"),
        }
    }

    /// `router_settings`, with `litellm_settings` filling what it leaves unset.
    pub(super) fn parse(self, source: &str) -> Result<RouterSettings, ConfigError> {
        let invalid = |section: &str, e: serde_path_to_error::Error<serde_json::Error>| {
            ConfigError::Invalid {
                file: source.to_string(),
                path: format!("{section}.{}", e.path()),
                message: e.inner().to_string(),
            }
        };
        let router: RouterSettings = serde_path_to_error::deserialize(self.router)
            .map_err(|e| invalid("router_settings", e))?;
        let litellm: LitellmRoutingSettings = serde_path_to_error::deserialize(self.litellm)
            .map_err(|e| invalid("litellm_settings", e))?;
        Ok(router.with_litellm_settings(litellm))
    }
}
