//! `idlehands sessions [--json]`, the picker behind `idlehands --resume`, and the session
//! list the chats show for `/sessions`.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use anyhow::Context;
use idlehands_agent::session::{SessionStore, SessionSummary};
use idlehands_agent::{Env, Paths};

#[derive(clap::Args)]
pub struct SessionsArgs {
    /// Print a JSON array instead of a table.
    #[arg(long)]
    json: bool,
}

/// How the chat should start: a fresh session or an old one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Resume {
    #[default]
    Fresh,
    /// `--resume <id>` (an id or a unique prefix).
    Id(String),
    /// `--resume` alone: pick from the list.
    Pick,
    /// `--continue`: the latest session of this workspace.
    Latest,
}

fn store() -> anyhow::Result<SessionStore> {
    let paths = Paths::resolve(&Env::from_process())?;
    Ok(SessionStore::new(paths.sessions_dir))
}

pub fn run(args: SessionsArgs) -> anyhow::Result<ExitCode> {
    let list = store()?.list()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else if list.is_empty() {
        println!("No sessions yet.");
    } else {
        print!("{}", table(&list, usize::MAX));
    }
    Ok(ExitCode::SUCCESS)
}

/// "3m ago" for a millisecond timestamp.
fn ago(ms: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let s = (now - ms).max(0) / 1000;
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        3600..86_400 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

/// The newest `limit` sessions, one per line, numbered: id, updated, model, tokens, cost,
/// title.
pub fn table(list: &[SessionSummary], limit: usize) -> String {
    let mut out = String::new();
    for (i, s) in list.iter().take(limit).enumerate() {
        out.push_str(&format!(
            "{:>2}. {}  {}  {}  {} tokens{}  {}\n",
            i + 1,
            s.id,
            ago(s.updated_at),
            s.model.as_deref().unwrap_or("?"),
            s.total_tokens,
            s.cost_usd
                .as_deref()
                .map(|c| format!("  ${c}"))
                .unwrap_or_default(),
            if s.title.is_empty() {
                "(no prompt)"
            } else {
                &s.title
            }
        ));
    }
    if list.len() > limit {
        out.push_str(&format!(
            "    … {} more (idlehands sessions)\n",
            list.len() - limit
        ));
    }
    out
}

/// The session id to open for `resume`, or `None` for a fresh one.
pub fn resolve(resume: &Resume, workspace: &std::path::Path) -> anyhow::Result<Option<String>> {
    let store = store()?;
    match resume {
        Resume::Fresh => Ok(None),
        Resume::Id(raw) => match store.find(raw)? {
            Some(id) => Ok(Some(id)),
            None => anyhow::bail!(
                "no session \"{raw}\" in {} (`idlehands sessions` lists them)",
                store.dir().display()
            ),
        },
        Resume::Latest => {
            let ws = workspace
                .canonicalize()
                .unwrap_or_else(|_| workspace.to_path_buf());
            match store.latest_in(&ws)? {
                Some(id) => Ok(Some(id)),
                None => anyhow::bail!(
                    "no session to continue in {} (`idlehands sessions` lists them all)",
                    ws.display()
                ),
            }
        }
        Resume::Pick => {
            let list = store.list()?;
            if list.is_empty() {
                anyhow::bail!("no sessions to resume yet");
            }
            let mut err = std::io::stderr();
            let _ = write!(err, "{}Resume which session? [1] ", table(&list, 20));
            let _ = err.flush();
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the choice failed")?;
            let line = line.trim();
            let n: usize = if line.is_empty() {
                1
            } else {
                line.parse()
                    .ok()
                    .filter(|n| (1..=list.len().min(20)).contains(n))
                    .with_context(|| format!("\"{line}\" is not a number from the list"))?
            };
            Ok(list.get(n - 1).map(|s| s.id.clone()))
        }
    }
}
