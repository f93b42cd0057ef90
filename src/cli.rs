//! The command line (DESIGN §3): `serve` (default), `probe`, `chain`, `check-config`, `demo`.
//! Exit codes: 0 the probe succeeded (or the command did its job), 1 the probe failed, 2 usage
//! or configuration error.
//!
//! `serve` and `demo` run until SIGTERM or SIGINT (exit 0); SIGHUP reloads the configuration.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::http::exporter::{ConfigSource, Exporter, Loaded};
use crate::http::web_config::WebConfig;
use crate::http::{self as web, ProbeSettings};
use crate::probe::module::{
    AuthSettings, Credential, MechanismChoice, MessageSettings, Module, TlsMode,
};
use crate::probe::target::parse_target;
use crate::probe::{self, PreparedModule, ProbeOutcome};
use crate::secret::Secret;
use crate::smtp::command::{ClientName, Mailbox};
use crate::tls::TrustKind;

/// Exit code of a failed probe.
pub const EXIT_PROBE_FAILED: u8 = 1;
/// Exit code of a usage or configuration error.
pub const EXIT_USAGE: u8 = 2;

/// smtp-prober: Prometheus exporter and synthetic SMTP delivery prober.
#[derive(Parser, Debug)]
#[command(
    name = "smtp-prober",
    version,
    about,
    long_about = None,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// `serve`'s flags, for when no command is given.
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the exporter: /probe, scheduled targets, /metrics (the default).
    Serve(ServeArgs),
    /// Run one probe and print a transcript.
    Probe(ProbeArgs),
    /// Explain the server's certificate chain and export what a client must import.
    Chain(ChainArgs),
    /// Validate a configuration file: exit 0, or 2 with every problem found.
    CheckConfig(CheckConfigArgs),
    /// Start an embedded STARTTLS server and the exporter probing it: the zero-setup first run.
    Demo(DemoArgs),
}

/// The default configuration file.
const DEFAULT_CONFIG_FILE: &str = "smtp-prober.yml";

/// Log flags of the long-running commands.
#[derive(Args, Debug, Clone)]
pub struct LogArgs {
    /// Only log messages of this level or higher.
    #[arg(long = "log.level", value_enum, default_value = "info")]
    pub level: LogLevel,
    /// Log line format (on stderr).
    #[arg(long = "log.format", value_enum, default_value = "logfmt")]
    pub format: LogFormat,
}

/// `--log.level` values.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Everything, including each probe.
    Debug,
    /// Start, reload, failed scheduled probes.
    Info,
    /// Problems only.
    Warn,
    /// Errors only.
    Error,
}

/// `--log.format` values.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `key=value` pairs.
    Logfmt,
    /// One JSON object per line.
    Json,
}

/// The HTTP server's flags, shared by `serve` and `demo`.
#[derive(Args, Debug, Clone)]
pub struct WebArgs {
    /// Address to listen on: `HOST:PORT`, or `:PORT` for every address.
    #[arg(long = "web.listen-address", default_value = ":9741")]
    pub listen_address: String,
    /// Exporter-toolkit web configuration file: TLS, client certificates, basic auth.
    #[arg(long = "web.config.file")]
    pub web_config_file: Option<PathBuf>,
    /// Subtracted from Prometheus' scrape timeout to get the /probe deadline.
    #[arg(long = "timeout-offset", default_value = "0.5s", value_parser = humantime::parse_duration)]
    pub timeout_offset: Duration,
    /// Only targets this regular expression matches in full may be probed through /probe.
    #[arg(long = "probe.allowed-targets")]
    pub allowed_targets: Option<String>,
    /// Let /probe run modules that send a token mail (each request sends one).
    #[arg(long = "probe.allow-send")]
    pub allow_send: bool,
}

#[derive(Args, Debug, Clone)]
struct ServeArgs {
    /// Configuration file.
    #[arg(long = "config.file", default_value = DEFAULT_CONFIG_FILE)]
    config_file: PathBuf,
    #[command(flatten)]
    web: WebArgs,
    #[command(flatten)]
    log: LogArgs,
}

#[derive(Args, Debug)]
struct CheckConfigArgs {
    /// Configuration file.
    #[arg(long = "config.file", default_value = DEFAULT_CONFIG_FILE)]
    config_file: PathBuf,
    /// Also check this exporter-toolkit web configuration file.
    #[arg(long = "web.config.file")]
    web_config_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct DemoArgs {
    #[command(flatten)]
    web: WebArgs,
    #[command(flatten)]
    log: LogArgs,
    /// How often each demo target is probed.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    interval: Duration,
}

/// Output format of `probe`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A human transcript.
    Text,
    /// One JSON object (DESIGN §7).
    Json,
    /// The metrics `/probe` would return.
    Prometheus,
}

/// How to reach the server and what to check: the flags `probe` and `chain` share.
#[derive(Args, Debug, Clone)]
pub struct ConnectionArgs {
    /// host[:port] to probe.
    pub target: String,
    /// Configuration file to take the module from.
    #[arg(long = "config.file")]
    pub config_file: Option<PathBuf>,
    /// Module of the configuration file to use.
    #[arg(long, requires = "config_file")]
    pub module: Option<String>,
    /// TLS mode.
    #[arg(long, value_enum)]
    pub tls: Option<TlsModeArg>,
    /// The probe deadline.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// EHLO name (default: this machine's host name).
    #[arg(long)]
    pub ehlo: Option<String>,
    /// Extra trusted CA certificates (PEM); repeatable.
    #[arg(long = "ca-file")]
    pub ca_files: Vec<PathBuf>,
    /// Trust sources: system, bundled (comma separated); `--trust=` for CA files only.
    #[arg(long, value_delimiter = ',')]
    pub trust: Option<Vec<String>>,
    /// Name for SNI and the certificate check (default: the target host).
    #[arg(long = "server-name")]
    pub server_name: Option<String>,
    /// Verify and report the chain, but do not fail the probe on it.
    #[arg(long = "insecure-skip-verify")]
    pub insecure_skip_verify: bool,
}

/// The `--tls` values.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum TlsModeArg {
    /// No TLS.
    None,
    /// STARTTLS.
    Starttls,
    /// TLS from the first byte.
    Implicit,
}

#[derive(Args, Debug)]
struct ProbeArgs {
    #[command(flatten)]
    conn: ConnectionArgs,
    /// User name for AUTH.
    #[arg(long = "auth-user", requires = "auth_password_file")]
    auth_user: Option<String>,
    /// File holding the AUTH password.
    #[arg(long = "auth-password-file", requires = "auth_user")]
    auth_password_file: Option<PathBuf>,
    /// Sender of the token mail.
    #[arg(long, requires = "to")]
    from: Option<String>,
    /// Recipient of the token mail; repeatable.
    #[arg(long, requires = "from")]
    to: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Some(Command::Probe(args)) => run_probe(args).await,
            Some(Command::Serve(args)) => run_serve(args).await,
            Some(Command::CheckConfig(args)) => Ok(run_check_config(&args).await),
            Some(Command::Demo(args)) => run_demo(args).await,
            Some(Command::Chain(args)) => run_chain(args).await,
            None => run_serve(cli.serve).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Builds the module a one-shot command uses: from the configuration when `--module` is given,
/// else defaults; then the flags override.
pub fn module_from_args(args: &ConnectionArgs) -> anyhow::Result<(String, Module)> {
    let (name, mut module) = match (&args.config_file, &args.module) {
        (Some(path), Some(name)) => {
            let config = Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
            let Some(module) = config.module(name) else {
                let known: Vec<&str> = config.modules.keys().map(String::as_str).collect();
                bail!(
                    "module {name:?} is not in {} (modules: {})",
                    path.display(),
                    known.join(", ")
                );
            };
            (name.clone(), module.clone())
        }
        (Some(_), None) => bail!("--config.file needs --module=NAME for a one-shot probe"),
        _ => ("cli".to_string(), Module::default()),
    };
    if let Some(tls) = args.tls {
        module.tls = match tls {
            TlsModeArg::None => TlsMode::None,
            TlsModeArg::Starttls => TlsMode::Starttls,
            TlsModeArg::Implicit => TlsMode::Implicit,
        };
        if args.config_file.is_none() {
            module.port = match module.tls {
                TlsMode::Implicit => 465,
                TlsMode::Starttls => 587,
                TlsMode::None => 25,
            };
        }
    }
    if let Some(t) = args.timeout {
        module.timeout = t;
    }
    if let Some(e) = &args.ehlo {
        module.ehlo = ClientName::new(e).context("--ehlo")?;
    }
    if !args.ca_files.is_empty() {
        module
            .tls_config
            .ca_files
            .extend(args.ca_files.iter().cloned());
    }
    if let Some(trust) = &args.trust {
        module.tls_config.trust = trust
            .iter()
            .filter(|t| !t.is_empty())
            .map(|t| match t.as_str() {
                "system" => Ok(TrustKind::System),
                "bundled" => Ok(TrustKind::Bundled),
                other => Err(anyhow::anyhow!(
                    "--trust: unknown source {other:?} (system, bundled)"
                )),
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(n) = &args.server_name {
        module.tls_config.server_name = Some(n.clone());
    }
    if args.insecure_skip_verify {
        module.tls_config.insecure_skip_verify = true;
    }
    Ok((name, module))
}

async fn run_probe(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    let (name, mut module) = module_from_args(&args.conn)?;
    if let (Some(user), Some(file)) = (&args.auth_user, &args.auth_password_file) {
        let password = Secret::from_file(file)
            .with_context(|| format!("reading --auth-password-file {}", file.display()))?;
        module.auth = Some(AuthSettings {
            mechanism: MechanismChoice::Auto,
            username: user.clone(),
            credential: Credential::Password(password),
        });
    }
    if let Some(from) = &args.from {
        module.message = Some(MessageSettings {
            from: Mailbox::new(from).context("--from")?,
            to: args
                .to
                .iter()
                .map(|t| Mailbox::new(t).context("--to"))
                .collect::<anyhow::Result<_>>()?,
            subject: "MFA delivery probe {token}".into(),
            body: "Your authentication token code is {token}.\r\n".into(),
        });
    }
    let target = parse_target(&args.conn.target, module.port).map_err(anyhow::Error::msg)?;
    let timeout = module.timeout;
    let prepared = PreparedModule::new(name, module).context("building the TLS configuration")?;
    let outcome = probe::run(&prepared, &target, timeout).await;
    print!(
        "{}",
        format_outcome(&outcome, args.format, prepared.module.message.is_some())
    );
    Ok(if outcome.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_PROBE_FAILED)
    })
}

/// Renders an outcome in the chosen format.
pub fn format_outcome(outcome: &ProbeOutcome, format: Format, message_configured: bool) -> String {
    match format {
        Format::Text => probe::text::render(outcome),
        Format::Json => probe::json::to_json(outcome) + "\n",
        Format::Prometheus => probe::metrics::render_text(&probe::metrics::outcome_families(
            outcome,
            &[],
            message_configured,
        )),
    }
}

/// How long open HTTP requests may run on after SIGTERM before the process exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Sets up logging on stderr.
fn init_logging(args: &LogArgs) {
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
                tracing_logfmt::builder()
                    .with_span_name(false)
                    .with_span_path(false)
                    .layer()
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

impl WebArgs {
    /// `--web.config.file`, read and checked; plain HTTP without it.
    fn web_config(&self) -> anyhow::Result<WebConfig> {
        match &self.web_config_file {
            Some(path) => WebConfig::load(path).map_err(|e| anyhow::anyhow!("{e}")),
            None => Ok(WebConfig::default()),
        }
    }

    fn probe_settings(&self) -> anyhow::Result<ProbeSettings> {
        let allowed_targets = match &self.allowed_targets {
            Some(pattern) => Some(
                web::allowed_targets(pattern)
                    .with_context(|| format!("--probe.allowed-targets {pattern:?}"))?,
            ),
            None => None,
        };
        Ok(ProbeSettings {
            timeout_offset: self.timeout_offset,
            allowed_targets,
            allow_send: self.allow_send,
        })
    }
}

async fn run_serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    init_logging(&args.log);
    let settings = args.web.probe_settings()?;
    let web = args.web.web_config()?;
    let exporter = Exporter::start(ConfigSource::File(args.config_file.clone()))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    serve_until_signal(exporter, &args.web, &web, settings, |_| ()).await
}

/// Serves HTTP (or HTTPS, as `web` says) until SIGTERM or SIGINT; SIGHUP reloads the
/// configuration (not `web`, which is read at start). `started` is told the bound address.
async fn serve_until_signal(
    exporter: std::sync::Arc<Exporter>,
    args: &WebArgs,
    web: &WebConfig,
    settings: ProbeSettings,
    started: impl FnOnce(std::net::SocketAddr),
) -> anyhow::Result<ExitCode> {
    use tokio::signal::unix::{signal, SignalKind};
    let listener = web::bind(&args.listen_address)
        .await
        .with_context(|| format!("listening on {}", args.listen_address))?;
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
    let result = web::serve(listener, router, web, shutdown, SHUTDOWN_GRACE).await;
    signals.abort();
    exporter.shutdown();
    exporter.stopped().await;
    result.context("serving HTTP")?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn run_check_config(args: &CheckConfigArgs) -> ExitCode {
    let path = args.config_file.clone();
    let checked = tokio::task::spawn_blocking(move || -> Result<Loaded, String> {
        let config = Config::load(&path).map_err(|e| e.to_string())?;
        Loaded::prepare(config).map_err(|e| format!("{}: {e}", path.display()))
    })
    .await
    .unwrap_or_else(|e| Err(format!("checking was interrupted: {e}")));
    let mut ok = match checked {
        Ok(loaded) => {
            println!(
                "{}: OK, {} modules, {} targets (checksum {})",
                args.config_file.display(),
                loaded.modules.len(),
                loaded.config.targets.len(),
                &loaded.config.checksum_hex()[..12]
            );
            true
        }
        Err(problems) => {
            eprintln!("{problems}");
            false
        }
    };
    if let Some(path) = &args.web_config_file {
        match WebConfig::load(path) {
            Ok(web) => println!("{}: OK, {}", path.display(), web.summary()),
            Err(problems) => {
                eprintln!("{problems}");
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_USAGE)
    }
}

/// Files the demo writes for its configuration (the demo root certificate, the AUTH password),
/// removed when the demo ends.
struct DemoFiles(PathBuf);

impl DemoFiles {
    fn create(root_pem: &str, password: &str) -> anyhow::Result<DemoFiles> {
        let dir = std::env::temp_dir().join(format!("smtp-prober-demo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let files = DemoFiles(dir);
        std::fs::write(files.root(), root_pem)
            .with_context(|| format!("writing {}", files.root().display()))?;
        std::fs::write(files.password(), password)
            .with_context(|| format!("writing {}", files.password().display()))?;
        Ok(files)
    }

    fn root(&self) -> PathBuf {
        self.0.join("demo-root.pem")
    }

    fn password(&self) -> PathBuf {
        self.0.join("smtp-password")
    }
}

impl Drop for DemoFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The demo configuration: a submission module (STARTTLS, AUTH, a token mail) for the healthy
/// server, a STARTTLS-only module for the one that sends an incomplete chain. Both trust the
/// demo root alone, so that nothing depends on the machine's trust store.
fn demo_yaml(
    files: &DemoFiles,
    healthy: std::net::SocketAddr,
    broken: std::net::SocketAddr,
    interval: Duration,
) -> String {
    let interval = humantime::format_duration(interval);
    let root = files.root();
    let password = files.password();
    format!(
        r#"# smtp-prober demo: two embedded STARTTLS servers on loopback with a generated PKI.
scheduler:
  max_concurrency: 4
  min_send_interval: 0s
modules:
  demo_submission:
    timeout: 5s
    tls: starttls
    ehlo: smtp-prober.demo
    tls_config:
      server_name: localhost
      trust: []
      ca_files: ["{root}"]
    auth:
      mechanism: auto
      username: probe
      password_file: "{password}"
    message:
      from: probe@smtp-prober.demo
      to: [inbox@smtp-prober.demo]
      subject: "smtp-prober demo {{token}}"
      body: "Your authentication token code is {{token}}."
  demo_starttls:
    timeout: 5s
    tls: starttls
    ehlo: smtp-prober.demo
    tls_config:
      server_name: localhost
      trust: []
      ca_files: ["{root}"]
targets:
  - name: demo-healthy
    target: "{healthy}"
    module: demo_submission
    interval: {interval}
    labels: {{scenario: healthy}}
  - name: demo-incomplete-chain
    target: "{broken}"
    module: demo_starttls
    interval: {interval}
    labels: {{scenario: incomplete_chain}}
"#,
        root = root.display(),
        password = password.display(),
    )
}

async fn run_demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    use crate::demo::{DemoPki, DemoServer, Sent, ServerConfig};
    init_logging(&args.log);
    let settings = args.web.probe_settings()?;
    let web = args.web.web_config()?;
    let pki = DemoPki::localhost();
    let healthy = DemoServer::start(ServerConfig {
        pki: pki.clone(),
        ..ServerConfig::default()
    })
    .await
    .context("starting the healthy demo server")?;
    let broken = DemoServer::start(ServerConfig {
        pki: pki.clone(),
        sent: Sent::LeafOnly,
        ..ServerConfig::default()
    })
    .await
    .context("starting the incomplete-chain demo server")?;
    let password = ServerConfig::default()
        .users
        .get("probe")
        .map(|s| s.expose().to_string())
        .unwrap_or_default();
    let files = DemoFiles::create(pki.root_pem(), &password)?;
    let yaml = demo_yaml(&files, healthy.addr(), broken.addr(), args.interval);
    let config = Config::from_str(&yaml, "demo").map_err(|e| anyhow::anyhow!("{e}"))?;
    let exporter = Exporter::start(ConfigSource::Fixed(Box::new(config)))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (healthy_addr, broken_addr) = (healthy.addr(), broken.addr());
    let scheme = if web.tls_enabled() { "https" } else { "http" };
    let code = serve_until_signal(exporter, &args.web, &web, settings, |bound| {
        let host = if bound.ip().is_unspecified() {
            "localhost".to_string()
        } else {
            match bound {
                std::net::SocketAddr::V6(a) => format!("[{}]", a.ip()),
                std::net::SocketAddr::V4(a) => a.ip().to_string(),
            }
        };
        let base = format!("{scheme}://{host}:{}", bound.port());
        println!(
            "smtp-prober demo\n\
             \n  healthy STARTTLS server (full chain, AUTH, token mail): {healthy_addr}\
             \n  broken STARTTLS server (sends only its leaf):           {broken_addr}\
             \n  both probed every {}\n\
             \nOpen:\
             \n  status page      {base}/\
             \n  metrics          {base}/metrics\
             \n  probe logs       {base}/logs?target=demo-healthy\
             \n                   {base}/logs?target=demo-incomplete-chain\
             \n  one probe        {base}/probe?module=demo_starttls&target={healthy_addr}\
             \n  with its log     {base}/probe?module=demo_starttls&target={broken_addr}&debug=true\
             \n  configuration    {base}/config\
             \n\nStop with Ctrl-C.",
            humantime::format_duration(args.interval)
        );
    })
    .await;
    drop(files);
    healthy.shutdown().await;
    broken.shutdown().await;
    code
}

#[derive(Args, Debug)]
struct ChainArgs {
    #[command(flatten)]
    conn: ConnectionArgs,
    /// Write the certificates a client trust store must import (PEM) into this directory.
    #[arg(long = "export-dir")]
    export_dir: Option<PathBuf>,
}

/// `chain`: exit 0 when the chain verifies, 1 when it does not (or no TLS session), 2 on usage
/// errors and when the export cannot be written.
async fn run_chain(args: ChainArgs) -> anyhow::Result<ExitCode> {
    use crate::probe::chain_cmd;
    let (name, module) = module_from_args(&args.conn)?;
    let module = chain_cmd::chain_module(module).map_err(anyhow::Error::msg)?;
    let target = parse_target(&args.conn.target, module.port).map_err(anyhow::Error::msg)?;
    let timeout = module.timeout;
    let prepared = PreparedModule::new(name, module).context("building the TLS configuration")?;
    let run = chain_cmd::run(&prepared, &target, timeout, args.export_dir.as_deref()).await;
    print!("{}", chain_cmd::render(&run, std::time::SystemTime::now()));
    if let Some(Err(e)) = run.export.as_ref().map(|e| &e.written) {
        bail!("--export-dir: {e}");
    }
    Ok(if run.chain_valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_PROBE_FAILED)
    })
}
