//! `idlehands`: argument parsing and wiring only; the logic lives in the library crates.

mod agent_cmd;
mod anton_cmd;
mod interactive;
mod models_cmd;
mod onboard_cmd;
mod proxy_cmd;

use clap::{Parser, Subcommand};

// The gateway allocates a little for every request; glibc's malloc and free were a fifth of
// its instructions in callgrind.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "idlehands",
    version,
    about = "IdleHands: a coding agent and a LiteLLM-compatible gateway in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the LiteLLM-compatible gateway (drop-in for `litellm --config` / `litellm --model`).
    Proxy(Box<proxy_cmd::ProxyArgs>),
    /// Run one headless agent turn in the current workspace.
    Agent(agent_cmd::AgentArgs),
    /// Set up the config and credentials (e.g. `--auth-choice litellm-api-key`).
    Onboard(onboard_cmd::OnboardArgs),
    /// List configured models and probe providers.
    Models(models_cmd::ModelsArgs),
    /// Run a markdown task list, one fresh agent per task.
    Anton(anton_cmd::AntonArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Proxy(args)) => proxy_cmd::run(*args),
        Some(Command::Agent(args)) => agent_cmd::run(args),
        Some(Command::Onboard(args)) => onboard_cmd::run(args),
        Some(Command::Models(args)) => models_cmd::run(args),
        Some(Command::Anton(args)) => anton_cmd::run(args),
        None => agent_cmd::interactive(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
