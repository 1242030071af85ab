//! What both chats (the terminal one and the line one) offer beyond a turn: `!cmd` runs a
//! shell command for the user, `/model` lists the configured models to pick by number,
//! `/usage` shows what the session used.

use std::path::Path;
use std::time::Duration;

use idlehands_agent::agent::format_usd;
use idlehands_agent::{ModelRef, Runtime, Session};

/// Most characters of a `!cmd`'s output shown.
const SHELL_OUTPUT_CHARS: usize = 20_000;
/// A `!cmd` still running after this is killed.
const SHELL_TIMEOUT: Duration = Duration::from_secs(600);

/// Runs `command` with `sh -c` in `cwd` for the user (not the model: it is neither shown to the
/// model nor checked by the tool policy) and returns its output and exit status.
pub async fn shell(command: &str, cwd: &Path) -> String {
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(cwd)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(SHELL_TIMEOUT, child).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return format!("cannot run `{command}`: {e}"),
        Err(_) => return format!("`{command}` ran past {}s; killed", SHELL_TIMEOUT.as_secs()),
    };
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    if text.chars().count() > SHELL_OUTPUT_CHARS {
        text = text.chars().take(SHELL_OUTPUT_CHARS).collect();
        text.push_str("\n… (output cut)");
    }
    let status = match out.status.code() {
        Some(0) => String::new(),
        Some(c) => format!("[exit {c}]"),
        None => "[killed by a signal]".into(),
    };
    match (text.trim_end().is_empty(), status.is_empty()) {
        (true, true) => "(no output)".into(),
        (true, false) => status,
        (false, true) => text.trim_end().to_string(),
        (false, false) => format!("{}\n{status}", text.trim_end()),
    }
}

/// The models the config names: the primary, the fallbacks, then every listed model of every
/// provider, each once.
pub fn model_choices(rt: &Runtime) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |r: String| {
        if !out.contains(&r) {
            out.push(r);
        }
    };
    if let Ok(p) = rt.registry.primary() {
        add(p.to_string());
    }
    for f in rt.registry.fallbacks() {
        add(f.to_string());
    }
    for (provider, p) in rt.registry.providers() {
        for m in &p.models {
            add(ModelRef::new(provider, &m.id).to_string());
        }
    }
    out
}

/// The numbered list `/model` shows, the current model marked.
pub fn model_list(choices: &[String], current: &ModelRef) -> String {
    let current = current.to_string();
    let mut text: Vec<String> = choices
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mark = if *m == current { "*" } else { " " };
            format!("{mark}{:>2}. {m}", i + 1)
        })
        .collect();
    if !choices.contains(&current) {
        text.insert(0, format!("* current: {current}"));
    }
    text.push("/model <number or ref> switches".into());
    text.join("\n")
}

/// `/model <arg>`: a number from [`model_list`], else the ref or alias itself.
pub fn picked_model(arg: &str, choices: &[String]) -> String {
    match arg.parse::<usize>() {
        Ok(n) if (1..=choices.len()).contains(&n) => choices[n - 1].clone(),
        _ => arg.to_string(),
    }
}

/// `/usage`: the session's tokens and cost so far, and how full the context is.
pub fn usage_text(s: &Session) -> String {
    let t = s.totals;
    let cost = match t.cost_nanos {
        Some(c) => format!("${}", format_usd(c)),
        None => "unknown (no prices configured and none reported by a gateway)".into(),
    };
    let window = s
        .context_window()
        .map(|w| format!(" of {w}"))
        .unwrap_or_default();
    format!(
        "Tokens this session: {} in ({} cached) / {} out / {} total\nCost: {cost}\nContext: ~{}{window} tokens",
        t.input + t.cache_read,
        t.cache_read,
        t.output,
        t.total_tokens,
        s.context_tokens(),
    )
}
