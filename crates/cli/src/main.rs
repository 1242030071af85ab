//! `idlehands`: argument parsing and wiring only; the logic lives in the library crates.

mod agent_cmd;
mod anton_cmd;
mod chat_extras;
mod interactive;
mod mcp_cmd;
mod models_cmd;
mod onboard_cmd;
mod proxy_cmd;
mod sessions_cmd;

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
    /// Reopen a stored session in the chat: by id (or a unique prefix), or pick from a list.
    #[arg(long, num_args = 0..=1, default_missing_value = "", value_name = "ID")]
    resume: Option<String>,
    /// Reopen the latest session of this workspace in the chat.
    #[arg(long = "continue", short = 'c', conflicts_with = "resume")]
    continue_: bool,
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
    /// List stored sessions: id, title (first prompt), model, tokens, cost, last update.
    Sessions(sessions_cmd::SessionsArgs),
    /// MCP servers (mcp.servers): `mcp list` starts them and lists their tools.
    Mcp(mcp_cmd::McpArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let resume = match (cli.resume, cli.continue_) {
        (Some(id), _) if id.is_empty() => sessions_cmd::Resume::Pick,
        (Some(id), _) => sessions_cmd::Resume::Id(id),
        (None, true) => sessions_cmd::Resume::Latest,
        (None, false) => sessions_cmd::Resume::Fresh,
    };
    if cli.command.is_some() && resume != sessions_cmd::Resume::Fresh {
        eprintln!(
            "error: --resume and --continue open the chat; use `agent --session-id` to resume headless"
        );
        return std::process::ExitCode::from(2);
    }
    let result = match cli.command {
        Some(Command::Proxy(args)) => proxy_cmd::run(*args),
        Some(Command::Agent(args)) => agent_cmd::run(args),
        Some(Command::Onboard(args)) => onboard_cmd::run(args),
        Some(Command::Models(args)) => models_cmd::run(args),
        Some(Command::Anton(args)) => anton_cmd::run(args),
        Some(Command::Sessions(args)) => sessions_cmd::run(args),
        Some(Command::Mcp(args)) => mcp_cmd::run(args),
        None => agent_cmd::interactive(resume),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
