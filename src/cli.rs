//! The command line (DESIGN §3): `serve` (default), `probe`, `chain`, `check-config`, `demo`.
//! Exit codes: 0 the probe succeeded (or the command did its job), 1 the probe failed, 2 usage
//! or configuration error.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand, ValueEnum};

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
#[command(name = "smtp-prober", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one probe and print a transcript.
    Probe(ProbeArgs),
    /// Explain the server's certificate chain and export what a client must import.
    Chain(ChainArgs),
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
            Some(Command::Chain(args)) => run_chain(args).await,
            None => bail!("no command given; see --help"),
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
            let config = crate::config::Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
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
