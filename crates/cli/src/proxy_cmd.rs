//! `idlehands proxy`: LiteLLM's `litellm --config` / `litellm --model` flags, spelled the same
//! (underscores; dashed aliases accepted too).

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use idlehands_proxy::config::process_env;
use idlehands_proxy::ledger::{StoreHandle, StoreSettings};
use idlehands_proxy::{Gateway, ProxyConfig};

/// How long in-flight requests may run after SIGTERM/SIGINT.
/// LiteLLM's default for `GRACEFUL_SHUTDOWN_TIMEOUT`: how long a stop waits for in-flight
/// requests before ending them.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// After the drain: how long calls ended with an error get to send it and write their rows.
const CUT_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// `GRACEFUL_SHUTDOWN_TIMEOUT` (LiteLLM's name, seconds, default 30). A value that is not a
/// number stops start-up instead of being replaced by the default (as LiteLLM does, with a
/// warning): a stop that waits other than asked is found out only when it matters.
fn drain_timeout(env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<std::time::Duration> {
    let Some(raw) = env("GRACEFUL_SHUTDOWN_TIMEOUT") else {
        return Ok(DRAIN_TIMEOUT);
    };
    match raw.trim().parse::<f64>() {
        Ok(secs) if (0.0..=86_400.0).contains(&secs) => {
            Ok(std::time::Duration::from_secs_f64(secs))
        }
        _ => anyhow::bail!(
            "GRACEFUL_SHUTDOWN_TIMEOUT={raw:?}: must be a number of seconds from 0 to 86400"
        ),
    }
}

#[derive(clap::Args, Debug)]
pub struct ProxyArgs {
    /// LiteLLM-format config.yaml (model_list, general_settings, ...).
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Address to bind.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: String,
    /// Port to bind (0: any free port).
    #[arg(long, env = "PORT", default_value_t = 4000)]
    pub port: u16,
    /// Single-model mode: serve this `provider/model`; it overrides the model clients send.
    #[arg(long, short = 'm')]
    pub model: Option<String>,
    /// The name clients use for `--model` (defaults to the model itself).
    #[arg(long)]
    pub alias: Option<String>,
    /// Base URL for `--model`.
    #[arg(long = "api_base", alias = "api-base")]
    pub api_base: Option<String>,
    /// Database for keys and spend: a SQLite file path (or a postgresql:// URL). Overrides
    /// general_settings.database_url and DATABASE_URL; default
    /// $IDLEHANDS_STATE_DIR/proxy.db, else ~/.idlehands/proxy.db.
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Log at info level.
    #[arg(long, env = "DEBUG")]
    pub debug: bool,
    /// Log at debug level.
    #[arg(
        long = "detailed_debug",
        alias = "detailed-debug",
        env = "DETAILED_DEBUG"
    )]
    pub detailed_debug: bool,
    /// Serving threads (default: one per core). LiteLLM starts this many processes.
    #[arg(long = "num_workers", alias = "num-workers", env = "NUM_WORKERS")]
    pub num_workers: Option<u32>,
    /// Load and check the config, then exit (0 when valid).
    #[arg(long = "validate_config", alias = "validate-config")]
    pub validate_config: bool,
    /// Serve HTTPS with this PEM private key (with --ssl_certfile_path).
    #[arg(
        long = "ssl_keyfile_path",
        alias = "ssl-keyfile-path",
        env = "SSL_KEYFILE_PATH",
        requires = "ssl_certfile_path"
    )]
    pub ssl_keyfile_path: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain, leaf first (with --ssl_keyfile_path).
    #[arg(
        long = "ssl_certfile_path",
        alias = "ssl-certfile-path",
        env = "SSL_CERTFILE_PATH",
        requires = "ssl_keyfile_path"
    )]
    pub ssl_certfile_path: Option<PathBuf>,
    /// Drop request params a provider cannot take instead of refusing the call
    /// (litellm_settings.drop_params: true).
    #[arg(long = "drop_params", alias = "drop-params")]
    pub drop_params: bool,
    /// Azure API version for --model.
    #[arg(long = "api_version", alias = "api-version")]
    pub api_version: Option<String>,
    /// Open the database and apply its migrations, then exit without serving.
    #[arg(long = "skip_server_startup", alias = "skip-server-startup")]
    pub skip_server_startup: bool,
    #[command(flatten)]
    pub litellm_only: LitellmOnlyFlags,
}

/// LiteLLM flags that tune its Python server, its Prisma migrations or client-side helpers.
/// They are accepted so that scripts written for `litellm` start this gateway unchanged, and each
/// one given is named at start-up with why it changes nothing here ([`LitellmOnlyFlags::notes`]).
#[derive(clap::Args, Debug, Default)]
pub struct LitellmOnlyFlags {
    #[arg(long = "run_gunicorn", alias = "run-gunicorn", hide = true)]
    run_gunicorn: bool,
    #[arg(long = "run_hypercorn", alias = "run-hypercorn", hide = true)]
    run_hypercorn: bool,
    #[arg(long = "run_granian", alias = "run-granian", hide = true)]
    run_granian: bool,
    #[arg(long = "granian_threads", alias = "granian-threads", hide = true)]
    granian_threads: Option<u32>,
    /// `--telemetry False` as LiteLLM takes it (a bare `--telemetry` too).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", hide = true)]
    telemetry: Option<String>,
    #[arg(long = "use_queue", alias = "use-queue", hide = true)]
    use_queue: bool,
    #[arg(long, hide = true)]
    local: bool,
    #[arg(long = "use_prisma_db_push", alias = "use-prisma-db-push", hide = true)]
    use_prisma_db_push: bool,
    #[arg(
        long = "enforce_prisma_migration_check",
        alias = "enforce-prisma-migration-check",
        hide = true
    )]
    enforce_prisma_migration_check: bool,
    #[arg(long = "use_v2_migration_resolver", hide = true)]
    use_v2_migration_resolver: bool,
    #[arg(long = "use_legacy_migration_resolver", hide = true)]
    use_legacy_migration_resolver: bool,
    #[arg(long = "iam_token_db_auth", hide = true)]
    iam_token_db_auth: bool,
    #[arg(long = "azure_postgresql_auth", hide = true)]
    azure_postgresql_auth: bool,
    #[arg(long, hide = true)]
    reload: bool,
    #[arg(long = "keepalive_timeout", alias = "keepalive-timeout", hide = true)]
    keepalive_timeout: Option<u64>,
    #[arg(long = "timeout_worker_healthcheck", hide = true)]
    timeout_worker_healthcheck: Option<u64>,
    #[arg(long = "max_requests_before_restart", hide = true)]
    max_requests_before_restart: Option<u64>,
    #[arg(long = "max_requests_before_restart_jitter", hide = true)]
    max_requests_before_restart_jitter: Option<u64>,
    #[arg(long = "limit_concurrency", alias = "limit-concurrency", hide = true)]
    limit_concurrency: Option<u64>,
    #[arg(long, hide = true)]
    ciphers: Option<String>,
    #[arg(long = "log_config", alias = "log-config", hide = true)]
    log_config: Option<String>,
    #[arg(long = "prometheus_metrics_port", hide = true)]
    prometheus_metrics_port: Option<u16>,
    #[arg(long = "max_budget", alias = "max-budget", hide = true)]
    max_budget: Option<f64>,
    #[arg(long, hide = true)]
    temperature: Option<f64>,
    #[arg(long = "max_tokens", alias = "max-tokens", hide = true)]
    max_tokens: Option<u64>,
    #[arg(long = "request_timeout", alias = "request-timeout", hide = true)]
    request_timeout: Option<f64>,
}

impl LitellmOnlyFlags {
    /// `--flag has no effect here: why`, for every flag given.
    pub fn notes(&self) -> Vec<String> {
        const SERVER: &str =
            "the gateway is one native process with serving threads (--num_workers sets how many)";
        const PRISMA: &str = "the store applies its own versioned migrations at start-up";
        let mut out = Vec::new();
        let mut say = |given: bool, flag: &str, why: &str| {
            if given {
                out.push(format!("--{flag} has no effect here: {why}"));
            }
        };
        say(self.run_gunicorn, "run_gunicorn", SERVER);
        say(self.run_hypercorn, "run_hypercorn", SERVER);
        say(self.run_granian, "run_granian", SERVER);
        say(self.granian_threads.is_some(), "granian_threads", SERVER);
        say(
            self.reload,
            "reload",
            "restart the process to load a changed config",
        );
        say(
            self.max_requests_before_restart.is_some()
                || self.max_requests_before_restart_jitter.is_some(),
            "max_requests_before_restart",
            "serving threads are never recycled",
        );
        say(
            self.timeout_worker_healthcheck.is_some(),
            "timeout_worker_healthcheck",
            SERVER,
        );
        say(
            self.telemetry.is_some(),
            "telemetry",
            "the gateway sends no telemetry anywhere, so there is nothing to switch",
        );
        say(
            self.use_queue,
            "use_queue",
            "calls are never queued; every request is served as it arrives",
        );
        say(
            self.local,
            "local",
            "there is no local-development import mode",
        );
        say(self.use_prisma_db_push, "use_prisma_db_push", PRISMA);
        say(
            self.enforce_prisma_migration_check,
            "enforce_prisma_migration_check",
            PRISMA,
        );
        say(
            self.use_v2_migration_resolver,
            "use_v2_migration_resolver",
            PRISMA,
        );
        say(
            self.use_legacy_migration_resolver,
            "use_legacy_migration_resolver",
            PRISMA,
        );
        say(
            self.iam_token_db_auth,
            "iam_token_db_auth",
            "AWS IAM database tokens are not supported; put the password in database_url",
        );
        say(
            self.azure_postgresql_auth,
            "azure_postgresql_auth",
            "Azure AD database tokens are not supported; put the password in database_url",
        );
        say(
            self.ciphers.is_some(),
            "ciphers",
            "TLS uses rustls's safe default cipher suites",
        );
        say(
            self.log_config.is_some(),
            "log_config",
            "logging is set with --debug, --detailed_debug, LITELLM_LOG, RUST_LOG and json_logs",
        );
        say(
            self.prometheus_metrics_port.is_some(),
            "prometheus_metrics_port",
            "/metrics is served on the gateway's own port",
        );
        say(
            self.max_budget.is_some(),
            "max_budget",
            "there is no proxy-wide budget; set budgets on keys",
        );
        say(
            self.temperature.is_some(),
            "temperature",
            "set temperature per deployment in litellm_params",
        );
        say(
            self.max_tokens.is_some(),
            "max_tokens",
            "set max_tokens per deployment in litellm_params",
        );
        say(
            self.request_timeout.is_some(),
            "request_timeout",
            "set litellm_settings.request_timeout or a deployment's timeout",
        );
        out
    }
}

fn load_config(args: &ProxyArgs) -> anyhow::Result<ProxyConfig> {
    let mut cfg = match (&args.config, &args.model) {
        (Some(path), _) => ProxyConfig::load(path)?,
        (None, Some(model)) => ProxyConfig::single_model(model, None, &process_env),
        (None, None) => anyhow::bail!(
            "nothing to serve: pass --config config.yaml or --model provider/model (try --config examples/quickstart.yaml)"
        ),
    };
    if let Some(model) = &args.model {
        let name = args.alias.clone().unwrap_or_else(|| model.clone());
        cfg.add_cli_model(model, args.api_base.clone());
        if let Some(version) = &args.api_version {
            for entry in &mut cfg.file.model_list {
                if entry.model_name == *model {
                    entry.litellm_params.api_version = Some(version.clone());
                }
            }
        }
        if name != *model {
            for entry in &mut cfg.file.model_list {
                if entry.model_name == *model {
                    entry.model_name = name.clone();
                }
            }
            cfg.cli_model = Some(name);
        }
        let overlay = cfg.environment.clone();
        cfg.read_env(&move |k: &str| overlay.get(k).cloned().or_else(|| process_env(k)));
    }
    if args.drop_params {
        cfg.file.litellm_settings.drop_params = Some(true);
    }
    // uvicorn's server settings, as LiteLLM passes them: over the config's general_settings.
    let gs = &mut cfg.file.general_settings;
    if let Some(secs) = args.litellm_only.keepalive_timeout {
        if !(1..86_400).contains(&secs) {
            anyhow::bail!("--keepalive_timeout: must be a whole number of seconds from 1 to 86399");
        }
        gs.keepalive_timeout = Some(secs as f64);
    }
    if let Some(n) = args.litellm_only.limit_concurrency {
        if n == 0 {
            anyhow::bail!("--limit_concurrency: must be at least 1");
        }
        gs.limit_concurrency = Some(u32::try_from(n).unwrap_or(u32::MAX));
    }
    cfg.database_path = args.db.clone();
    Ok(cfg)
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM. The handlers are installed before this returns, so
/// a signal that arrives right after the "listening" line is not lost. Must run in the runtime.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        Ok(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            tracing::info!("shutdown signal received; finishing in-flight requests");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

/// Opens the database (and Redis) named by the settings; says where, without credentials.
async fn open_store(settings: &StoreSettings) -> anyhow::Result<StoreHandle> {
    let place = match settings.sqlite_path() {
        Some(p) => format!("SQLite file {}", p.display()),
        None => format!("Postgres ({})", settings.database_source),
    };
    let store = StoreHandle::open(settings)
        .await
        .with_context(|| format!("cannot open the key and spend database: {place}"))?;
    let redis = match store.redis_mode() {
        Some(mode) => format!(
            "; budgets and limits shared through Redis (redis_failure_mode: {})",
            mode.as_str()
        ),
        None => String::new(),
    };
    eprintln!("idlehands proxy: keys and spend in {place}{redis}");
    Ok(store)
}

/// Commits the spend rows still queued; after the server has drained, so none are lost.
async fn close_store(store: &StoreHandle) {
    match store.shutdown().await {
        Ok(()) => eprintln!("idlehands proxy: spend logs committed"),
        Err(e) => eprintln!("idlehands proxy: committing spend logs failed: {e}"),
    }
}

pub fn run(args: ProxyArgs) -> anyhow::Result<ExitCode> {
    // Config errors are returned, not logged, so logging can wait for the config's json_logs.
    let cfg = load_config(&args)?;
    idlehands_proxy::logging::init(&idlehands_proxy::logging::LogOptions::resolve(
        Some(&cfg),
        args.debug,
        args.detailed_debug,
        &process_env,
    ));
    let source = cfg.source.clone();
    for f in &cfg.included_files {
        tracing::info!("{source}: included {}", f.display());
    }
    for note in idlehands_proxy::config::inert_settings(&cfg) {
        tracing::warn!("{source}: {note}");
    }
    for note in args.litellm_only.notes() {
        tracing::warn!("{note}");
    }
    let tls = match (&args.ssl_certfile_path, &args.ssl_keyfile_path) {
        (Some(cert), Some(key)) => Some(idlehands_proxy::tls::Tls::from_pem_files(cert, key)?),
        _ => None,
    };
    let settings = StoreSettings::from_config(&cfg, &process_env)?;
    let drain = drain_timeout(&process_env)?;
    // Config mistakes (master key, headers) are reported before the database is touched. The
    // gateway is built again with the store below: its start-up warnings are given there, once
    // (or here, for `--validate_config` and for a config this build refuses).
    let gateway = if args.validate_config {
        Gateway::builder(cfg.clone()).build()?
    } else {
        let quiet =
            tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
                Gateway::builder(cfg.clone()).build()
            });
        match quiet {
            Ok(g) => g,
            Err(_) => Gateway::builder(cfg.clone()).build()?,
        }
    };
    if args.validate_config {
        eprintln!(
            "{source}: config OK ({} model groups)",
            gateway.model_names().len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    // Requests are served on one thread per core (`--num_workers` sets how many; uvicorn's
    // worker processes in LiteLLM), each with its own runtime (idlehands_proxy::serve_threads).
    // This runtime holds the rest: the database and Redis clients, the spend writer, sweeps,
    // health checks and signals.
    let serving_threads = args
        .num_workers
        .filter(|n| *n > 0)
        .map(|n| n as usize)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    drop(gateway);
    let result = runtime.block_on(async move {
        let store = open_store(&settings).await?;
        if args.skip_server_startup {
            close_store(&store).await;
            eprintln!("idlehands proxy: database ready; not serving (--skip_server_startup)");
            return Ok(ExitCode::SUCCESS);
        }
        let gateway = store.install(Gateway::builder(cfg)).build()?;
        let gateway = gateway.clone().with_routes(store.routes(&gateway));
        let addr = format!("{}:{}", args.host, args.port);
        let listener = std::net::TcpListener::bind(&addr)
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        let shutdown = shutdown_signal()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut serving =
            idlehands_proxy::serve_threads_tls(&gateway, listener, serving_threads, tls)
                .context("cannot start the serving threads")?;
        eprintln!(
            "idlehands proxy: listening on {scheme}://{local} ({} model groups: {})",
            gateway.model_names().len(),
            gateway.model_names().join(", ")
        );
        tokio::select! {
            r = serving.wait() => {
                close_store(&store).await;
                serving.release();
                r.context("server error")?;
                return Ok(ExitCode::SUCCESS);
            }
            _ = shutdown => {}
        }
        serving.stop();
        // Long streams must not hold the process forever after a signal.
        let served = match tokio::time::timeout(drain, serving.wait()).await {
            Ok(r) => r.context("server error"),
            Err(_) => {
                eprintln!(
                    "idlehands proxy: requests still running after {}s (GRACEFUL_SHUTDOWN_TIMEOUT); ending them with an error",
                    drain.as_secs_f64()
                );
                // Each ends with an error (a stream with a final error event) and writes its
                // row, while the spend writer still takes rows.
                gateway.cut_off();
                match tokio::time::timeout(CUT_GRACE, serving.wait()).await {
                    Ok(r) => r.context("server error"),
                    Err(_) => {
                        eprintln!("idlehands proxy: connections still open after ending every call; exiting anyway");
                        Ok(())
                    }
                }
            }
        };
        close_store(&store).await;
        serving.release();
        served?;
        eprintln!("idlehands proxy: stopped");
        Ok(ExitCode::SUCCESS)
    });
    // Nothing left to wait for once the server has drained; don't let an idle worker thread
    // hold up the exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    result
}
