//! The `anton` section of the IdleHands config, and how it combines with CLI flags.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::AntonError;

/// `direct`: one implementation call per task. `preflight`: discovery writes a plan file first,
/// then implementation follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AntonMode {
    #[default]
    Direct,
    Preflight,
}

impl std::fmt::Display for AntonMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AntonMode::Direct => "direct",
            AntonMode::Preflight => "preflight",
        })
    }
}

impl std::str::FromStr for AntonMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "direct" => Ok(AntonMode::Direct),
            "preflight" => Ok(AntonMode::Preflight),
            other => Err(format!(
                "Invalid --mode {other:?}. Use one of: direct, preflight."
            )),
        }
    }
}

/// `cfg.anton` from `idlehands.json`. Every field is optional; defaults are applied in
/// [`Settings::resolve`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AntonConfig {
    pub mode: Option<AntonMode>,
    pub task_timeout_sec: Option<u64>,
    pub discovery_timeout_sec: Option<u64>,
    pub review_timeout_sec: Option<u64>,
    pub preflight_max_retries: Option<u32>,
    pub requirements_review: Option<bool>,
    pub preflight: Option<PreflightConfig>,
    pub plan_dir: Option<PathBuf>,
    pub thinking: Option<ThinkingConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PreflightConfig {
    /// `false` forces direct mode, whatever `mode` or `--mode` say.
    pub enabled: Option<bool>,
    /// Run the one-off codebase analysis before the first task (default true).
    pub codebase_snapshot: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ThinkingConfig {
    pub direct: Option<String>,
    pub preflight: Option<PreflightThinking>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PreflightThinking {
    /// Codebase analysis, discovery and review.
    pub phase1: Option<String>,
    /// Implementation.
    pub phase2: Option<String>,
}

pub const THINKING_LEVELS: [&str; 6] = ["off", "minimal", "low", "medium", "high", "xhigh"];

/// Checks a thinking level and returns it normalized (trimmed, lower case).
pub fn validate_thinking_level(value: &str) -> Result<String, AntonError> {
    let v = value.trim().to_ascii_lowercase();
    if THINKING_LEVELS.contains(&v.as_str()) {
        Ok(v)
    } else {
        Err(AntonError::InvalidThinkingLevel {
            value: value.to_string(),
        })
    }
}

/// Overrides from the command line (`anton run` flags) and the wider agent config.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub mode: Option<AntonMode>,
    pub thinking: Option<String>,
    /// `--timeout` in seconds.
    pub timeout_sec: Option<u64>,
    /// `agents.defaults.timeoutSeconds` from the IdleHands config.
    pub agents_default_timeout_sec: Option<u64>,
}

/// Everything the runner needs, with defaults applied and levels validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub mode: AntonMode,
    pub requirements_review: bool,
    pub codebase_snapshot: bool,
    pub preflight_max_retries: u32,
    /// Implementation calls.
    pub task_timeout: Duration,
    pub discovery_timeout: Duration,
    pub review_timeout: Duration,
    pub plan_dir: PathBuf,
    pub thinking_direct: Option<String>,
    pub thinking_phase1: Option<String>,
    pub thinking_phase2: Option<String>,
}

pub const DEFAULT_TASK_TIMEOUT_SEC: u64 = 1200;
pub const DEFAULT_PREFLIGHT_MAX_RETRIES: u32 = 2;

impl Settings {
    pub fn resolve(
        cfg: &AntonConfig,
        ov: &Overrides,
        task_file: &Path,
    ) -> Result<Settings, AntonError> {
        let preflight_enabled = cfg.preflight.as_ref().and_then(|p| p.enabled) != Some(false);
        let mut mode = ov.mode.or(cfg.mode).unwrap_or_default();
        if !preflight_enabled {
            mode = AntonMode::Direct;
        }
        let task_timeout_sec = cfg.task_timeout_sec.unwrap_or(DEFAULT_TASK_TIMEOUT_SEC);
        // The global agent timeout wins over anton's own taskTimeoutSec, as in the original.
        let call_timeout_sec = ov
            .timeout_sec
            .filter(|s| *s > 0)
            .or(ov.agents_default_timeout_sec.filter(|s| *s > 0))
            .unwrap_or(task_timeout_sec);
        let task_dir = task_file.parent().unwrap_or(Path::new("."));
        let plan_dir = match &cfg.plan_dir {
            Some(p) if p.is_absolute() => p.clone(),
            Some(p) => crate::tasks::absolute(p),
            None => task_dir.join(".agents").join("tasks"),
        };
        let level = |v: Option<&String>| v.map(|s| validate_thinking_level(s)).transpose();
        let (direct, phase1, phase2) = match &ov.thinking {
            Some(t) => {
                let t = validate_thinking_level(t)?;
                (Some(t.clone()), Some(t.clone()), Some(t))
            }
            None => {
                let th = cfg.thinking.as_ref();
                let pf = th.and_then(|t| t.preflight.as_ref());
                (
                    level(th.and_then(|t| t.direct.as_ref()))?,
                    level(pf.and_then(|p| p.phase1.as_ref()))?,
                    level(pf.and_then(|p| p.phase2.as_ref()))?,
                )
            }
        };
        Ok(Settings {
            mode,
            requirements_review: cfg.requirements_review.unwrap_or(false),
            codebase_snapshot: cfg
                .preflight
                .as_ref()
                .and_then(|p| p.codebase_snapshot)
                .unwrap_or(true),
            preflight_max_retries: cfg
                .preflight_max_retries
                .unwrap_or(DEFAULT_PREFLIGHT_MAX_RETRIES),
            task_timeout: Duration::from_secs(call_timeout_sec),
            discovery_timeout: Duration::from_secs(
                cfg.discovery_timeout_sec.unwrap_or(task_timeout_sec),
            ),
            review_timeout: Duration::from_secs(cfg.review_timeout_sec.unwrap_or(task_timeout_sec)),
            plan_dir,
            thinking_direct: direct,
            thinking_phase1: phase1,
            thinking_phase2: phase2,
        })
    }

    /// `[Anton] Mode: …` as printed by the CLI.
    pub fn mode_line(&self) -> String {
        match self.mode {
            AntonMode::Direct => "[Anton] Mode: direct".to_string(),
            AntonMode::Preflight if self.requirements_review => {
                "[Anton] Mode: preflight (with review)".to_string()
            }
            AntonMode::Preflight => {
                "[Anton] Mode: preflight (discovery → implementation)".to_string()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn resolve(cfg: &AntonConfig, ov: &Overrides) -> Result<Settings, AntonError> {
        Settings::resolve(cfg, ov, Path::new("/repo/docs/TASKS.md"))
    }

    #[test]
    fn defaults() {
        let s = resolve(&AntonConfig::default(), &Overrides::default()).unwrap();
        assert_eq!(s.mode, AntonMode::Direct);
        assert_eq!(s.task_timeout, Duration::from_secs(1200));
        assert_eq!(s.discovery_timeout, Duration::from_secs(1200));
        assert_eq!(s.review_timeout, Duration::from_secs(1200));
        assert_eq!(s.preflight_max_retries, 2);
        assert!(!s.requirements_review);
        assert!(s.codebase_snapshot);
        assert_eq!(s.plan_dir, PathBuf::from("/repo/docs/.agents/tasks"));
        assert_eq!(s.mode_line(), "[Anton] Mode: direct");
    }

    #[test]
    fn config_parses_camel_case_json() {
        let cfg: AntonConfig = serde_json::from_str(
            r#"{"mode":"preflight","taskTimeoutSec":60,"discoveryTimeoutSec":30,"reviewTimeoutSec":20,
                "preflightMaxRetries":1,"requirementsReview":true,"planDir":"/plans",
                "preflight":{"enabled":true,"codebaseSnapshot":false},
                "thinking":{"direct":"low","preflight":{"phase1":"high","phase2":"medium"}}}"#,
        )
        .unwrap();
        let s = resolve(&cfg, &Overrides::default()).unwrap();
        assert_eq!(s.mode, AntonMode::Preflight);
        assert_eq!(s.task_timeout, Duration::from_secs(60));
        assert_eq!(s.discovery_timeout, Duration::from_secs(30));
        assert_eq!(s.review_timeout, Duration::from_secs(20));
        assert_eq!(s.preflight_max_retries, 1);
        assert!(!s.codebase_snapshot);
        assert_eq!(s.plan_dir, PathBuf::from("/plans"));
        assert_eq!(
            (
                s.thinking_direct.as_deref(),
                s.thinking_phase1.as_deref(),
                s.thinking_phase2.as_deref()
            ),
            (Some("low"), Some("high"), Some("medium"))
        );
        assert_eq!(s.mode_line(), "[Anton] Mode: preflight (with review)");
    }

    #[test]
    fn cli_mode_wins_but_preflight_disabled_forces_direct() {
        let ov = Overrides {
            mode: Some(AntonMode::Preflight),
            ..Overrides::default()
        };
        let s = resolve(&AntonConfig::default(), &ov).unwrap();
        assert_eq!(s.mode, AntonMode::Preflight);
        assert_eq!(
            s.mode_line(),
            "[Anton] Mode: preflight (discovery → implementation)"
        );
        let cfg = AntonConfig {
            preflight: Some(PreflightConfig {
                enabled: Some(false),
                codebase_snapshot: None,
            }),
            ..AntonConfig::default()
        };
        assert_eq!(resolve(&cfg, &ov).unwrap().mode, AntonMode::Direct);
    }

    #[test]
    fn timeout_precedence_cli_then_agents_default_then_task_timeout() {
        let cfg = AntonConfig {
            task_timeout_sec: Some(100),
            ..AntonConfig::default()
        };
        let mut ov = Overrides {
            agents_default_timeout_sec: Some(600),
            ..Overrides::default()
        };
        assert_eq!(
            resolve(&cfg, &ov).unwrap().task_timeout,
            Duration::from_secs(600)
        );
        ov.timeout_sec = Some(5);
        assert_eq!(
            resolve(&cfg, &ov).unwrap().task_timeout,
            Duration::from_secs(5)
        );
        ov = Overrides::default();
        let s = resolve(&cfg, &ov).unwrap();
        assert_eq!(s.task_timeout, Duration::from_secs(100));
        assert_eq!(s.discovery_timeout, Duration::from_secs(100));
    }

    #[test]
    fn cli_thinking_overrides_all_and_is_validated() {
        let cfg = AntonConfig {
            thinking: Some(ThinkingConfig {
                direct: Some("low".into()),
                preflight: None,
            }),
            ..AntonConfig::default()
        };
        let ov = Overrides {
            thinking: Some("XHigh".into()),
            ..Overrides::default()
        };
        let s = resolve(&cfg, &ov).unwrap();
        assert_eq!(s.thinking_direct.as_deref(), Some("xhigh"));
        assert_eq!(s.thinking_phase1.as_deref(), Some("xhigh"));
        assert_eq!(s.thinking_phase2.as_deref(), Some("xhigh"));

        let bad = Overrides {
            thinking: Some("max".into()),
            ..Overrides::default()
        };
        assert_eq!(
            resolve(&cfg, &bad).unwrap_err().to_string(),
            "Invalid --thinking level. Use one of: off, minimal, low, medium, high, xhigh."
        );
    }
}
