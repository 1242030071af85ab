//! Thinking levels (`--thinking`, `/think`), mapped to `reasoning_effort`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThinkingLevel {
    #[default]
    Off,
    Minimal,
    Low,
    Medium,
    High,
    Xhigh,
}

impl ThinkingLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Minimal => "minimal",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Xhigh => "xhigh",
        }
    }

    /// The `reasoning_effort` value, `None` for off. `xhigh` is sent as `high`: the
    /// openai-completions models this client targets do not accept `xhigh`.
    pub fn reasoning_effort(self) -> Option<&'static str> {
        match self {
            Self::Off => None,
            Self::Xhigh => Some("high"),
            other => Some(other.as_str()),
        }
    }
}

impl fmt::Display for ThinkingLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid --thinking level. Use one of: off, minimal, low, medium, high, xhigh.")]
pub struct InvalidThinkingLevel;

impl FromStr for ThinkingLevel {
    type Err = InvalidThinkingLevel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "off" => Self::Off,
            "minimal" => Self::Minimal,
            "low" => Self::Low,
            "medium" => Self::Medium,
            "high" => Self::High,
            "xhigh" => Self::Xhigh,
            _ => return Err(InvalidThinkingLevel),
        })
    }
}

/// The `compat.thinkingFormat` values this client sends.
pub const THINKING_FORMATS: &[&str] = &["openai", "qwen", "zai"];

/// Why a thinking level other than off would not reach `model`, if it would not.
pub fn unsupported_reason(model: &crate::models::ResolvedModel) -> Option<String> {
    match model.compat.thinking_format.as_deref() {
        Some("qwen" | "zai") => None,
        Some(f) if !THINKING_FORMATS.contains(&f) => Some(format!(
            "{} has compat.thinkingFormat \"{f}\", which this build does not know (use openai, qwen or zai); no thinking setting is sent",
            model.model_ref()
        )),
        _ if !model.reasoning => Some(format!(
            "{} is not marked reasoning: true and has no compat.thinkingFormat, so no thinking setting is sent; set reasoning: true (reasoning_effort) or compat.thinkingFormat \"qwen\" or \"zai\" on the model",
            model.model_ref()
        )),
        _ if !model.compat.supports_reasoning_effort.unwrap_or(true) => Some(format!(
            "{} has compat.supportsReasoningEffort false, so no thinking setting is sent",
            model.model_ref()
        )),
        _ => None,
    }
}
