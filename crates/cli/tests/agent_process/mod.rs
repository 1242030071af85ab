//! Running the agent commands (`idlehands agent|onboard|models`) as child processes in a
//! throwaway home. Shared by the CLI test files that drive them.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Environment that would point the agent at the real user's state or proxy.
pub const AGENT_ENV: [&str; 6] = [
    "LITELLM_API_KEY",
    "LITELLM_BASE_URL",
    "IDLEHANDS_HOME",
    "IDLEHANDS_STATE_DIR",
    "IDLEHANDS_CONFIG_PATH",
    "IDLEHANDS_AGENT_DIR",
];

/// A temporary folder with an empty `home/` in it.
pub fn home() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("home")).unwrap();
    d
}

/// `idlehands` run in `dir` with `HOME` set to `home`, without [`AGENT_ENV`] or `also_remove`.
pub fn command(dir: &Path, home: &Path, also_remove: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_idlehands"));
    c.current_dir(dir).env("HOME", home);
    for v in AGENT_ENV.iter().chain(also_remove) {
        c.env_remove(v);
    }
    c
}

/// The agent's state directory under [`home`]'s folder.
pub fn state(d: &tempfile::TempDir) -> PathBuf {
    d.path().join("home/.idlehands")
}

/// Runs `c` to its end, with `stdin` piped in when given; off the async runtime, so that the
/// fake upstreams keep serving while it waits.
pub async fn run(mut c: Command, stdin: Option<&str>) -> Output {
    let stdin = stdin.map(str::to_string);
    tokio::task::spawn_blocking(move || {
        c.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        if let Some(s) = stdin {
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}
