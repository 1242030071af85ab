//! `idlehands onboard`.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct OnboardArgs {}

pub fn run(_args: OnboardArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`idlehands onboard` is not built yet")
}
