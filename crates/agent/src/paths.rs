//! Where IdleHands keeps its files: the state dir, the config file, the agent dir (auth
//! profiles) and the sessions dir, with the `IDLEHANDS_*` overrides.

use std::path::{Path, PathBuf};

use crate::env::Env;

pub const DEFAULT_AGENT_ID: &str = "main";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub home: PathBuf,
    pub state_dir: PathBuf,
    pub config_path: PathBuf,
    pub agent_dir: PathBuf,
    pub sessions_dir: PathBuf,
}

impl Paths {
    /// Resolve every location from the environment:
    /// home = `$IDLEHANDS_HOME` or `$HOME`; state dir = `$IDLEHANDS_STATE_DIR` or `<home>/.idlehands`;
    /// config = `$IDLEHANDS_CONFIG_PATH` or `<stateDir>/idlehands.json`;
    /// agent dir = `$IDLEHANDS_AGENT_DIR` or `<stateDir>/agents/main/agent`.
    pub fn resolve(env: &Env) -> Result<Self, PathsError> {
        let home = env.home().ok_or(PathsError::NoHome)?;
        let state_dir = env
            .get("IDLEHANDS_STATE_DIR")
            .map(|s| expand_tilde(s, &home))
            .unwrap_or_else(|| home.join(".idlehands"));
        let config_path = env
            .get("IDLEHANDS_CONFIG_PATH")
            .map(|s| expand_tilde(s, &home))
            .unwrap_or_else(|| state_dir.join("idlehands.json"));
        let agent_root = state_dir.join("agents").join(DEFAULT_AGENT_ID);
        let agent_dir = env
            .get("IDLEHANDS_AGENT_DIR")
            .map(|s| expand_tilde(s, &home))
            .unwrap_or_else(|| agent_root.join("agent"));
        Ok(Self {
            home,
            sessions_dir: agent_root.join("sessions"),
            state_dir,
            config_path,
            agent_dir,
        })
    }

    pub fn auth_profiles_path(&self) -> PathBuf {
        self.agent_dir.join("auth-profiles.json")
    }

    pub fn default_workspace(&self) -> PathBuf {
        self.state_dir.join("workspace")
    }
}

/// `~` and `~/x` against the resolved home.
pub fn expand_tilde(raw: &str, home: &Path) -> PathBuf {
    if raw == "~" {
        return home.to_path_buf();
    }
    match raw.strip_prefix("~/") {
        Some(rest) => home.join(rest),
        None => PathBuf::from(raw),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PathsError {
    #[error("cannot find a home directory: set HOME or IDLEHANDS_HOME")]
    NoHome,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_win_over_home() {
        let env = Env::from_pairs([("HOME", "/h"), ("IDLEHANDS_STATE_DIR", "~/st")]);
        let p = Paths::resolve(&env).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.state_dir, PathBuf::from("/h/st"));
        assert_eq!(p.config_path, PathBuf::from("/h/st/idlehands.json"));
        assert_eq!(p.agent_dir, PathBuf::from("/h/st/agents/main/agent"));
        assert_eq!(p.sessions_dir, PathBuf::from("/h/st/agents/main/sessions"));
        let env = Env::from_pairs([
            ("HOME", "/h"),
            ("IDLEHANDS_HOME", "/ih"),
            ("IDLEHANDS_CONFIG_PATH", "/c.json"),
        ]);
        let p = Paths::resolve(&env).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.state_dir, PathBuf::from("/ih/.idlehands"));
        assert_eq!(p.config_path, PathBuf::from("/c.json"));
    }
}
