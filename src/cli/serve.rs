//! `smtp-prober serve` (the default command): the exporter on HTTP(S) until SIGTERM or SIGINT,
//! SIGHUP reloading the configuration.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use super::args::{LogArgs, LogFormat, LogLevel, WebArgs};
use super::DEFAULT_CONFIG_FILE;
use crate::exporter::{ConfigSource, Exporter};
use crate::http::web_config::WebConfig;
use crate::http::{self as web, ProbeSettings};
use crate::shard::Shard;

#[derive(Args, Debug, Clone)]
pub(crate) struct ServeArgs {
    /// Configuration file.
    #[arg(long = "config.file", default_value = DEFAULT_CONFIG_FILE)]
    config_file: PathBuf,
    #[command(flatten)]
    web: WebArgs,
    #[command(flatten)]
    log: LogArgs,
    /// Run only the scheduled targets of shard I of N (counted from 0): N instances with one
    /// configuration, each with its own I, probe every target exactly once.
    #[arg(long = "scheduler.shard", value_name = "I/N", default_value = "0/1")]
    shard: Shard,
}

/// How long open HTTP requests may run on after SIGTERM before the process exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Sets up logging on stderr.
pub(crate) fn init_logging(args: &LogArgs) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let level = match args.level {
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error => LevelFilter::ERROR,
    };
    // Debug output of the libraries (hyper, rustls) would drown ours.
    let filter = Targets::new()
        .with_target("smtp_prober", level)
        .with_default(level.min(LevelFilter::INFO));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match args.format {
        LogFormat::Logfmt => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .event_format(super::logfmt::Logfmt)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    if let Err(e) = result {
        eprintln!("warning: logging already set up: {e}");
    }
}

pub(crate) async fn run_serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    if let Some(missing) = super::no_config_file(&args.config_file) {
        return Err(missing);
    }
    init_logging(&args.log);
    let settings = args.web.probe_settings()?;
    let web = args.web.web_config()?;
    let exporter = Exporter::start(ConfigSource::File(args.config_file.clone()), args.shard)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    serve_until_signal(exporter, &args.web, &web, settings, |_| ()).await
}

/// Serves HTTP (or HTTPS, as `web` says) until SIGTERM or SIGINT; SIGHUP reloads the
/// configuration (not `web`, which is read at start). `started` is told the bound address.
pub(crate) async fn serve_until_signal(
    exporter: std::sync::Arc<Exporter>,
    args: &WebArgs,
    web: &WebConfig,
    settings: ProbeSettings,
    started: impl FnOnce(std::net::SocketAddr),
) -> anyhow::Result<ExitCode> {
    use tokio::signal::unix::{signal, SignalKind};
    let listen = &args.listen_address;
    let listener = web::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let address = listener.local_addr().context("listening address")?;
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tracing::info!(
        address = %address,
        version = env!("CARGO_PKG_VERSION"),
        tls = web.tls_enabled(),
        basic_auth_users = web.basic_auth_users(),
        "listening"
    );
    for warning in web.warnings() {
        tracing::warn!("--web.config.file: {warning}");
    }
    started(address);

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let signals = {
        let exporter = exporter.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = hangup.recv() => {
                        tracing::info!("SIGHUP: reloading the configuration");
                        // The outcome is logged and shown in the reload metrics.
                        let _ = exporter.reload().await;
                    }
                    _ = terminate.recv() => break,
                    _ = interrupt.recv() => break,
                }
            }
            tracing::info!("shutting down");
            // Scheduled probes stop first; open /probe requests get the grace period.
            exporter.shutdown();
            let _ = stop_tx.send(());
        })
    };
    let router = web::router(exporter.clone(), settings);
    let shutdown = async move {
        let _ = stop_rx.await;
    };
    let limits = args.server_limits()?;
    let result = web::serve(listener, router, web, limits, shutdown, SHUTDOWN_GRACE).await;
    signals.abort();
    exporter.shutdown();
    exporter.stopped().await;
    result.context("serving HTTP")?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}
