//! `idlehands mcp list`: starts each configured MCP server and lists its tools under the
//! names the model sees.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct McpArgs {
    #[command(subcommand)]
    command: McpCommand,
}

#[derive(clap::Subcommand)]
enum McpCommand {
    /// Start every server in `mcp.servers` and list its tools (exit 1 when one fails).
    List,
}

pub fn run(args: McpArgs) -> anyhow::Result<ExitCode> {
    let McpCommand::List = args.command;
    let rt = crate::agent_cmd::load_runtime()?;
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    tokio_rt.block_on(async move {
        if rt.mcp.is_empty() {
            println!(
                "No MCP servers configured (mcp.servers in {}).",
                rt.paths.config_path.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        let mut failed = false;
        for s in rt.mcp.list().await {
            match s.tools {
                Ok(tools) => {
                    println!("{}: {} tool(s)", s.name, tools.len());
                    for t in tools {
                        println!("  {}  {}", t.name, t.description);
                    }
                }
                Err(e) => {
                    failed = true;
                    println!("{}: not available: {e}", s.name);
                }
            }
        }
        rt.mcp.shutdown().await;
        Ok(if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    })
}
