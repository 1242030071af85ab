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
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

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
    for note in idlehands_proxy::config::inert_settings(&cfg) {
        tracing::warn!("{source}: {note}");
    }
    let settings = StoreSettings::from_config(&cfg, &process_env)?;
    // Config mistakes (master key, headers) are reported before the database is touched.
    let gateway = Gateway::builder(cfg.clone()).build()?;
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
        let gateway = store.install(Gateway::builder(cfg)).build()?;
        let gateway = gateway.clone().with_routes(store.routes(&gateway));
        let addr = format!("{}:{}", args.host, args.port);
        let listener = std::net::TcpListener::bind(&addr)
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        let shutdown = shutdown_signal()?;
        let mut serving = idlehands_proxy::serve_threads(&gateway, listener, serving_threads)
            .context("cannot start the serving threads")?;
        eprintln!(
            "idlehands proxy: listening on http://{local} ({} model groups: {})",
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
        let served = match tokio::time::timeout(DRAIN_TIMEOUT, serving.wait()).await {
            Ok(r) => r.context("server error"),
            Err(_) => {
                eprintln!(
                    "idlehands proxy: requests still running after {}s; exiting anyway",
                    DRAIN_TIMEOUT.as_secs()
                );
                Ok(())
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
