//! `idlehands anton`.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct AntonArgs {}

pub fn run(_args: AntonArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`idlehands anton` is not built yet")
}
