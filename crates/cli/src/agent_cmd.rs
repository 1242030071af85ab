//! `idlehands agent`.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct AgentArgs {}

pub fn run(_args: AgentArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`idlehands agent` is not built yet")
}

/// Bare `idlehands`: the interactive terminal session.
pub fn interactive() -> anyhow::Result<ExitCode> {
    anyhow::bail!("interactive mode is not built yet")
}
