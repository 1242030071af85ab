//! `idlehands onboard`: LiteLLM setup, interactive (plain line prompts, answerable from a
//! pipe) or `--non-interactive --accept-risk`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use idlehands_agent::auth::AuthStore;
use idlehands_agent::onboard::{
    self, InteractiveOptions, LinePrompter, LitellmSetup, OnboardResult,
};
use idlehands_agent::{Env, Paths, config, models};

#[derive(clap::Args)]
pub struct OnboardArgs {
    /// What to set up: litellm-api-key (or skip).
    #[arg(long = "auth-choice")]
    pub auth_choice: Option<String>,
    /// Take everything from flags and the environment; requires --accept-risk.
    #[arg(long = "non-interactive")]
    pub non_interactive: bool,
    /// Acknowledge that IdleHands acts on your machine on a model's behalf.
    #[arg(long = "accept-risk")]
    pub accept_risk: bool,
    /// The LiteLLM key (else LITELLM_API_KEY, else an existing profile).
    #[arg(long = "litellm-api-key")]
    pub litellm_api_key: Option<String>,
    /// The LiteLLM proxy URL (default: the configured one, else http://localhost:4000).
    #[arg(long = "base-url")]
    pub base_url: Option<String>,
    /// The primary model id served by the proxy (default: claude-opus-4-6).
    #[arg(long)]
    pub model: Option<String>,
    /// Workspace directory (default: agents.defaults.workspace or ~/.idlehands/workspace).
    #[arg(long)]
    pub workspace: Option<PathBuf>,
    /// plaintext (store the key) or ref (store a reference to LITELLM_API_KEY).
    #[arg(long = "secret-input-mode")]
    pub secret_input_mode: Option<String>,
    /// Print a JSON summary (non-interactive).
    #[arg(long)]
    pub json: bool,
    /// custom-api-key: the server's OpenAI-compatible base URL (e.g. http://127.0.0.1:8080/v1);
    /// ollama|vllm|llamacpp|lmstudio: instead of the server's default URL.
    #[arg(long = "custom-base-url")]
    pub custom_base_url: Option<String>,
    /// The model to use (default: the first the server lists).
    #[arg(long = "custom-model-id")]
    pub custom_model_id: Option<String>,
    /// The provider id models are referred to by (default: custom).
    #[arg(long = "custom-provider-id")]
    pub custom_provider_id: Option<String>,
    /// The server's API key, if it needs one.
    #[arg(long = "custom-api-key")]
    pub custom_api_key: Option<String>,
    /// The API the server speaks: openai.
    #[arg(long = "custom-compatibility")]
    pub custom_compatibility: Option<String>,
    /// Accepted for compatibility; gateway, channels, skills and daemons are not part of this build.
    #[arg(long, hide = true)]
    pub flow: Option<String>,
    #[arg(long, hide = true)]
    pub mode: Option<String>,
    #[arg(long = "skip-channels", hide = true)]
    pub skip_channels: bool,
    #[arg(long = "skip-skills", hide = true)]
    pub skip_skills: bool,
    #[arg(long = "skip-health", hide = true)]
    pub skip_health: bool,
    #[arg(long = "skip-ui", hide = true)]
    pub skip_ui: bool,
    #[arg(long = "skip-daemon", hide = true)]
    pub skip_daemon: bool,
    #[arg(long = "no-install-daemon", hide = true)]
    pub no_install_daemon: bool,
}

fn print_result(r: &OnboardResult, json: bool) {
    if json {
        let v = serde_json::json!({
            "ok": true,
            "authChoice": "litellm-api-key",
            "configPath": r.config_path,
            "authProfilesPath": r.auth_path,
            "profileId": onboard::LITELLM_PROFILE_ID,
            "workspace": r.workspace,
            "sessionsDir": r.sessions_dir,
            "baseUrl": r.base_url,
            "primaryModel": r.primary,
        });
        println!("{v}");
        return;
    }
    println!("Config updated: {}", r.config_path.display());
    println!(
        "Auth profile {}: {}",
        onboard::LITELLM_PROFILE_ID,
        r.auth_path.display()
    );
    println!("Workspace OK: {}", r.workspace.display());
    println!("Sessions OK: {}", r.sessions_dir.display());
    println!("Default model set to {} (via {})", r.primary, r.base_url);
    println!("Try it: idlehands agent -m \"hello\"");
}

pub fn run(args: OnboardArgs) -> anyhow::Result<ExitCode> {
    if let Some(m) = args.secret_input_mode.as_deref()
        && m != "plaintext"
        && m != "ref"
    {
        anyhow::bail!("Invalid --secret-input-mode. Use plaintext or ref.");
    }
    if args.non_interactive && !args.accept_risk {
        anyhow::bail!(
            "Non-interactive onboarding requires explicit risk acknowledgement. Re-run with --accept-risk."
        );
    }
    let choice = match args.auth_choice.clone() {
        Some(c) => c,
        None if args.litellm_api_key.is_some() => "litellm-api-key".into(),
        None if args.non_interactive => "skip".into(),
        None => ask_where_models_run()?,
    };
    match choice.as_str() {
        "litellm-api-key" => {}
        "custom-api-key" | "ollama" | "vllm" | "llamacpp" | "lmstudio" => {
            return run_local(&args, &choice);
        }
        "skip" => {
            println!("Skipped auth setup (no --auth-choice or key flag given).");
            return Ok(ExitCode::SUCCESS);
        }
        other => anyhow::bail!(
            "Auth choice \"{other}\" is not supported by this build yet; use --auth-choice litellm-api-key, custom-api-key, ollama, vllm, llamacpp or lmstudio."
        ),
    }
    let env = Env::from_process();
    let paths = Paths::resolve(&env)?;
    let workspace = args
        .workspace
        .clone()
        .map(|w| std::path::absolute(&w).unwrap_or(w));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    if !args.non_interactive {
        let stdin = std::io::stdin();
        let tty = stdin.is_terminal();
        let mut prompter = LinePrompter::new(stdin.lock(), std::io::stdout(), tty);
        let result = rt.block_on(onboard::interactive_litellm(
            &mut prompter,
            &paths,
            &env,
            InteractiveOptions {
                accept_risk: args.accept_risk,
                workspace,
                secret_input_mode: args.secret_input_mode.clone(),
                base_url: args.base_url.clone(),
                model: args.model.clone(),
            },
        ))?;
        print_result(&result, false);
        return Ok(ExitCode::SUCCESS);
    }
    let loaded = config::load(&paths.config_path, &env)?;
    let store = AuthStore::load(&paths.auth_profiles_path())?;
    let has_profile = store
        .api_key_profile(&loaded, models::LITELLM_PROVIDER)
        .is_some();
    let key = onboard::non_interactive_key(
        args.litellm_api_key.as_deref(),
        args.secret_input_mode.as_deref(),
        &env,
        has_profile,
    )?;
    let base_url = args
        .base_url
        .clone()
        .map(|u| u.trim().trim_end_matches('/').to_string())
        .unwrap_or_else(|| onboard::default_base_url(&loaded.raw));
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        anyhow::bail!("--base-url must start with http:// or https:// (got \"{base_url}\")");
    }
    let model = args
        .model
        .clone()
        .map(|m| m.strip_prefix("litellm/").unwrap_or(&m).to_string())
        .unwrap_or_else(|| models::LITELLM_DEFAULT_MODEL.to_string());
    let workspace = workspace
        .or_else(|| {
            loaded
                .defaults()
                .and_then(|d| d.workspace.as_deref())
                .map(|w| idlehands_agent::paths::expand_tilde(w, &paths.home))
        })
        .unwrap_or_else(|| paths.default_workspace());
    // Check the model against the proxy when it answers; never fail onboarding over it.
    let probe_key = match &key {
        Some(idlehands_agent::auth::KeyMaterial::Plain(k)) => Some(k.clone()),
        Some(idlehands_agent::auth::KeyMaterial::EnvRef(n)) => env.get(n).map(str::to_string),
        None => idlehands_agent::auth::resolve_api_key(
            models::LITELLM_PROVIDER,
            &loaded,
            &store,
            &env,
            &paths,
        )
        .ok()
        .map(|k| k.key),
    };
    match rt.block_on(onboard::fetch_models(&base_url, probe_key.as_deref())) {
        Ok(ids) if !ids.is_empty() && !ids.contains(&model) => eprintln!(
            "warning: {base_url} does not list \"{model}\" among its {} models ({}{}); the agent will fail until it does.",
            ids.len(),
            ids.iter().take(5).cloned().collect::<Vec<_>>().join(", "),
            if ids.len() > 5 { ", ..." } else { "" }
        ),
        Ok(_) => {}
        Err(e) => eprintln!("note: could not check the model against the proxy: {e}"),
    }
    let result = onboard::write_litellm(
        &paths,
        &env,
        &LitellmSetup {
            key,
            base_url,
            model,
            workspace,
        },
    )?;
    print_result(&result, args.json);
    Ok(ExitCode::SUCCESS)
}

/// `--auth-choice custom-api-key|ollama|vllm|llamacpp|lmstudio`: a local or custom
/// OpenAI-compatible server; no key unless one is given; the model is the one named or the
/// first the server lists (offered as a list when interactive).
fn run_local(args: &OnboardArgs, choice: &str) -> anyhow::Result<ExitCode> {
    use idlehands_agent::local;
    if let Some(c) = args.custom_compatibility.as_deref()
        && c != "openai"
    {
        anyhow::bail!(
            "--custom-compatibility {c} is not supported by this build; use openai (an OpenAI-compatible /v1/chat/completions server)."
        );
    }
    let custom = choice == "custom-api-key";
    let provider_id = if custom {
        args.custom_provider_id
            .clone()
            .unwrap_or_else(|| "custom".into())
    } else {
        choice.to_string()
    };
    if provider_id.is_empty()
        || !provider_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        anyhow::bail!(
            "--custom-provider-id must be letters, digits, - or _ (got \"{provider_id}\")"
        );
    }
    let env = Env::from_process();
    let paths = Paths::resolve(&env)?;
    let loaded = config::load(&paths.config_path, &env)?;
    let workspace = args
        .workspace
        .clone()
        .map(|w| std::path::absolute(&w).unwrap_or(w))
        .or_else(|| {
            loaded
                .defaults()
                .and_then(|d| d.workspace.as_deref())
                .map(|w| idlehands_agent::paths::expand_tilde(w, &paths.home))
        })
        .unwrap_or_else(|| paths.default_workspace());
    let default_url = args
        .custom_base_url
        .clone()
        .or_else(|| local::base_url(&provider_id, &env));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    if !args.non_interactive {
        let stdin = std::io::stdin();
        let tty = stdin.is_terminal();
        let mut prompter = LinePrompter::new(stdin.lock(), std::io::stdout(), tty);
        let result = rt.block_on(local::interactive(
            &mut prompter,
            &paths,
            &env,
            &provider_id,
            default_url.as_deref().unwrap_or("http://127.0.0.1:8080/v1"),
            args.custom_model_id.as_deref(),
            workspace,
            args.accept_risk,
        ))?;
        print_local_result(&result, choice, false);
        return Ok(ExitCode::SUCCESS);
    }
    let Some(base_url) = default_url else {
        anyhow::bail!("--auth-choice custom-api-key needs --custom-base-url URL");
    };
    let base_url = base_url.trim().trim_end_matches('/').to_string();
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        anyhow::bail!("--custom-base-url must start with http:// or https:// (got \"{base_url}\")");
    }
    let key = args
        .custom_api_key
        .as_deref()
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(onboard::key_material_from_input);
    let probe_key = match &key {
        Some(idlehands_agent::auth::KeyMaterial::Plain(k)) => Some(k.clone()),
        Some(idlehands_agent::auth::KeyMaterial::EnvRef(n)) => env.get(n).map(str::to_string),
        None => None,
    };
    let served = rt.block_on(onboard::fetch_models(&base_url, probe_key.as_deref()));
    if let (Some(m), Ok(ids)) = (&args.custom_model_id, &served)
        && !ids.is_empty()
        && !ids.contains(m)
    {
        eprintln!(
            "warning: {base_url} does not list \"{m}\" among its {} models ({}); the agent will fail until it does.",
            ids.len(),
            ids.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let model = local::choose_model(args.custom_model_id.as_deref(), served, &base_url)?;
    let result = local::write(
        &paths,
        &env,
        &local::LocalSetup {
            provider_id,
            base_url,
            model,
            key,
            workspace,
        },
    )?;
    print_local_result(&result, choice, args.json);
    Ok(ExitCode::SUCCESS)
}

fn print_local_result(r: &OnboardResult, choice: &str, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({
                "ok": true,
                "authChoice": choice,
                "configPath": r.config_path,
                "workspace": r.workspace,
                "sessionsDir": r.sessions_dir,
                "baseUrl": r.base_url,
                "primaryModel": r.primary,
            })
        );
        return;
    }
    println!("Config updated: {}", r.config_path.display());
    println!("Workspace OK: {}", r.workspace.display());
    println!("Sessions OK: {}", r.sessions_dir.display());
    println!("Default model set to {} (via {})", r.primary, r.base_url);
    println!("Try it: idlehands agent -m \"hello\"");
}

/// Interactive onboarding without `--auth-choice`: where the models run (Enter keeps the
/// LiteLLM proxy, as before).
fn ask_where_models_run() -> anyhow::Result<String> {
    use idlehands_agent::onboard::Prompter;
    const CHOICES: &[(&str, &str)] = &[
        (
            "litellm-api-key",
            "A LiteLLM proxy or idlehands proxy (API key)",
        ),
        ("ollama", "Ollama on this machine"),
        ("vllm", "vLLM"),
        ("llamacpp", "llama.cpp (llama-server)"),
        ("lmstudio", "LM Studio"),
        (
            "custom-api-key",
            "Another OpenAI-compatible server (URL, optional key)",
        ),
    ];
    let stdin = std::io::stdin();
    let tty = stdin.is_terminal();
    let mut p = LinePrompter::new(stdin.lock(), std::io::stdout(), tty);
    let options: Vec<String> = CHOICES
        .iter()
        .map(|(_, label)| (*label).to_string())
        .collect();
    let i = p
        .select("Where do your models run?", &options, 0)
        .context("reading your answer failed")?;
    Ok(CHOICES[i].0.to_string())
}
