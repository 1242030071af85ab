//! `idlehands models list` and `idlehands models status`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use idlehands_agent::client::FailureKind;
use idlehands_agent::{Env, Runtime};

#[derive(clap::Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub command: ModelsCommand,
}

#[derive(clap::Subcommand)]
pub enum ModelsCommand {
    /// The configured models (and the implicit LiteLLM default), with the primary and fallbacks.
    List {
        #[arg(long)]
        json: bool,
        /// Only this provider.
        #[arg(long)]
        provider: Option<String>,
        /// Also list what each provider serves (`GET /v1/models`), e.g. every model of a
        /// LiteLLM proxy.
        #[arg(long)]
        all: bool,
        /// Accepted for compatibility.
        #[arg(long, hide = true)]
        plain: bool,
    },
    /// The config, the default model, and a probe of each provider (`GET /v1/models`).
    Status {
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: ModelsArgs) -> anyhow::Result<ExitCode> {
    let rt = Runtime::load(Env::from_process())?;
    match args.command {
        ModelsCommand::List {
            json,
            provider,
            all,
            ..
        } => list(&rt, json, provider.as_deref(), all),
        ModelsCommand::Status { json } => status(&rt, json),
    }
}

fn tags(rt: &Runtime, r: &str) -> Vec<String> {
    let mut t = Vec::new();
    if rt.registry.primary().is_ok_and(|p| p.to_string() == r) {
        t.push("default".to_string());
    }
    for (i, f) in rt.registry.fallbacks().iter().enumerate() {
        if f.to_string() == r {
            t.push(format!("fallback#{}", i + 1));
        }
    }
    t
}

fn row(
    rt: &Runtime,
    m: &idlehands_agent::ResolvedModel,
    extra_tag: Option<&str>,
) -> serde_json::Value {
    let r = m.model_ref().to_string();
    let mut t = tags(rt, &r);
    t.extend(extra_tag.map(str::to_string));
    let (window, source) = context_window(rt, m);
    serde_json::json!({
        "key": r,
        "name": m.name,
        "input": m.input.iter().map(|i| format!("{i:?}").to_lowercase()).collect::<Vec<_>>().join("+"),
        "contextWindow": window,
        "contextSource": source,
        "maxTokens": m.max_tokens,
        "reasoning": m.reasoning,
        "baseUrl": m.base_url,
        "implicit": rt.registry.is_implicit(&m.provider),
        "tags": t,
    })
}

/// The window a session would use: the config's, else the server's (asked now), else the
/// default; with where it came from.
fn context_window(rt: &Runtime, m: &idlehands_agent::ResolvedModel) -> (u64, String) {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(rt.context_window(m)),
        Err(_) => (m.context_window, "default".into()),
    }
}

/// Models a provider serves that the config does not list.
fn served_rows(
    rt: &Runtime,
    provider: Option<&str>,
    known: &[String],
) -> anyhow::Result<Vec<serde_json::Value>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut out = Vec::new();
    for (id, p) in rt.registry.providers() {
        if provider.is_some_and(|want| want != id) {
            continue;
        }
        let key = rt.api_key(id).ok().map(|k| k.key);
        match runtime.block_on(rt.client.list_models(
            &p.base_url,
            key.as_deref(),
            Duration::from_secs(10),
        )) {
            Ok(ids) => {
                for m in ids {
                    let r = idlehands_agent::ModelRef::new(id, &m);
                    if known.contains(&r.to_string()) {
                        continue;
                    }
                    match rt.registry.resolve(&r) {
                        Ok(m) => out.push(row(rt, &m, Some("served"))),
                        Err(e) => out.push(
                            serde_json::json!({"key": r.to_string(), "error": e.to_string()}),
                        ),
                    }
                }
            }
            Err(e) => out.push(serde_json::json!({"key": format!("{id}/*"), "error": e.message})),
        }
    }
    Ok(out)
}

fn list(rt: &Runtime, json: bool, provider: Option<&str>, all: bool) -> anyhow::Result<ExitCode> {
    let mut rows = Vec::new();
    for item in rt.registry.list() {
        match item {
            Ok(m) => {
                if provider.is_some_and(|p| p != m.provider) {
                    continue;
                }
                rows.push(row(rt, &m, None));
            }
            Err((r, e)) => {
                rows.push(serde_json::json!({"key": r.to_string(), "error": e.to_string()}))
            }
        }
    }
    if all {
        let known: Vec<String> = rows
            .iter()
            .filter_map(|r| r["key"].as_str().map(str::to_string))
            .collect();
        rows.extend(served_rows(rt, provider, &known)?);
    }
    if json {
        println!(
            "{}",
            serde_json::json!({"count": rows.len(), "models": rows})
        );
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!(
            "No models configured. Run `idlehands onboard --auth-choice litellm-api-key`, or export LITELLM_API_KEY to use a LiteLLM proxy at http://localhost:4000."
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<40} {:<11} {:>8} {:>8}  Tags",
        "Model", "Input", "Ctx", "Max"
    );
    for r in &rows {
        if let Some(e) = r.get("error") {
            println!(
                "{:<40} error: {}",
                r["key"].as_str().unwrap_or(""),
                e.as_str().unwrap_or("")
            );
            continue;
        }
        let mut tags: Vec<String> = r["tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if r["implicit"] == true {
            tags.push("implicit (LITELLM_API_KEY)".into());
        }
        if r["reasoning"] == true {
            tags.push("reasoning".into());
        }
        if let Some(src) = r["contextSource"].as_str() {
            tags.push(format!("ctx from {src}"));
        }
        println!(
            "{:<40} {:<11} {:>8} {:>8}  {}",
            r["key"].as_str().unwrap_or(""),
            r["input"].as_str().unwrap_or(""),
            r["contextWindow"],
            r["maxTokens"],
            tags.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn status(rt: &Runtime, json: bool) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let primary = rt.registry.primary().map(|p| p.to_string());
    let mut providers = Vec::new();
    let mut all_ok = true;
    for (id, p) in rt.registry.providers() {
        let key = rt.api_key(id);
        let (auth, key_value) = match &key {
            Ok(k) => (k.source.to_string(), Some(k.key.clone())),
            Err(e) => (format!("missing: {e}"), None),
        };
        let probe = runtime.block_on(rt.client.list_models(
            &p.base_url,
            key_value.as_deref(),
            Duration::from_secs(10),
        ));
        let (ok, detail) = match probe {
            Ok(ids) => (
                key_value.is_some(),
                format!(
                    "reachable, {} models served{}",
                    ids.len(),
                    if key_value.is_none() {
                        "; no API key configured"
                    } else {
                        ""
                    }
                ),
            ),
            Err(e) => {
                let label = match e.kind {
                    FailureKind::Auth => "key rejected",
                    FailureKind::Transient => "unreachable",
                    _ => "error",
                };
                (false, format!("{label}: {}", e.message))
            }
        };
        all_ok &= ok;
        providers.push(serde_json::json!({
            "provider": id,
            "baseUrl": p.base_url,
            "implicit": rt.registry.is_implicit(id),
            "auth": auth,
            "ok": ok,
            "probe": detail,
        }));
    }
    let window = rt
        .registry
        .primary()
        .and_then(|p| rt.registry.resolve(&p))
        .ok()
        .map(|m| runtime.block_on(rt.context_window(&m)));
    if json {
        println!(
            "{}",
            serde_json::json!({
                "configPath": rt.config.path,
                "configExists": rt.config.exists,
                "defaultModel": primary.as_ref().ok(),
                "defaultContextWindow": window.as_ref().map(|(w, _)| w),
                "defaultContextSource": window.as_ref().map(|(_, s)| s),
                "fallbacks": rt.registry.fallbacks().iter().map(ToString::to_string).collect::<Vec<_>>(),
                "providers": providers,
            })
        );
    } else {
        println!(
            "Config: {}{}",
            rt.config.path.display(),
            if rt.config.exists {
                ""
            } else {
                " (not found; using defaults)"
            }
        );
        match &primary {
            Ok(p) => match &window {
                Some((w, src)) => println!("Default model: {p} (context window {w}, from {src})"),
                None => println!("Default model: {p}"),
            },
            Err(e) => println!("Default model: error: {e}"),
        }
        let fallbacks: Vec<String> = rt
            .registry
            .fallbacks()
            .iter()
            .map(ToString::to_string)
            .collect();
        println!(
            "Fallbacks: {}",
            if fallbacks.is_empty() {
                "(none)".to_string()
            } else {
                fallbacks.join(", ")
            }
        );
        if providers.is_empty() {
            println!(
                "Providers: none. Run `idlehands onboard --auth-choice litellm-api-key`, or export LITELLM_API_KEY."
            );
        }
        for p in &providers {
            println!(
                "\n{}{}\n  baseUrl: {}\n  auth: {}\n  probe: {}",
                p["provider"].as_str().unwrap_or(""),
                if p["implicit"] == true {
                    " (implicit, from LITELLM_API_KEY)"
                } else {
                    ""
                },
                p["baseUrl"].as_str().unwrap_or(""),
                p["auth"].as_str().unwrap_or(""),
                p["probe"].as_str().unwrap_or("")
            );
        }
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
