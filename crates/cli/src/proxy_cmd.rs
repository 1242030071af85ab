//! `idlehands proxy`.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ProxyArgs {}

pub fn run(_args: ProxyArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`idlehands proxy` is not built yet")
}
