//! The flags two commands share: how to reach and check a server (`probe`, `chain`), the HTTP
//! server (`serve`, `demo`) and logging (`serve`, `demo`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};

use crate::config::Config;
use crate::http::web_config::WebConfig;
use crate::http::{self as web, ProbeSettings, ServerLimits};
use crate::networks::NetworkPolicy;
use crate::probe::module::{Module, TlsMode};
use crate::probe::target::{parse_target, Target};
use crate::smtp::command::ClientName;
use crate::tls::TrustKind;

/// How to reach the server and what to check: the flags `probe` and `chain` share.
#[derive(Args, Debug, Clone)]
pub(crate) struct ConnectionArgs {
    /// host[:port] to probe (default port: 465 with --tls=implicit, 25 with --tls=none, else
    /// 587).
    #[arg(required_unless_present = "target_name")]
    pub(crate) target: Option<String>,
    /// Configuration file to take the module (or the scheduled target) from.
    #[arg(long = "config.file")]
    pub(crate) config_file: Option<PathBuf>,
    /// Module of the configuration file to use.
    #[arg(long, requires = "config_file")]
    pub(crate) module: Option<String>,
    /// A scheduled target of the configuration file, run as configured: its address and its
    /// module (other flags still override the module's settings).
    #[arg(long = "target-name", requires = "config_file", conflicts_with_all = ["target", "module"])]
    pub(crate) target_name: Option<String>,
    /// TLS mode; auto: implicit TLS on port 465 (SMTPS), STARTTLS elsewhere. Default: the
    /// module's with --config.file, else auto.
    #[arg(long, value_enum)]
    pub(crate) tls: Option<TlsModeArg>,
    /// The probe deadline.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) timeout: Option<Duration>,
    /// EHLO name (default: this machine's host name).
    #[arg(long)]
    pub(crate) ehlo: Option<String>,
    /// Extra trusted CA certificates (PEM); repeatable.
    #[arg(long = "ca-file")]
    pub(crate) ca_files: Vec<PathBuf>,
    /// Trust sources: system, bundled (comma separated); `--trust=` for CA files only.
    #[arg(long, value_delimiter = ',')]
    pub(crate) trust: Option<Vec<String>>,
    /// Name for SNI and the certificate check (default: the target host).
    #[arg(long = "server-name")]
    pub(crate) server_name: Option<String>,
    /// Verify and report the chain, but do not fail the probe on it.
    #[arg(long = "insecure-skip-verify")]
    pub(crate) insecure_skip_verify: bool,
}

/// The `--tls` values.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum TlsModeArg {
    /// By port: implicit on 465 (SMTPS), STARTTLS elsewhere.
    Auto,
    /// No TLS.
    None,
    /// STARTTLS.
    Starttls,
    /// TLS from the first byte.
    Implicit,
}

/// Log flags of the long-running commands.
#[derive(Args, Debug, Clone)]
pub(crate) struct LogArgs {
    /// Only log messages of this level or higher.
    #[arg(long = "log.level", value_enum, default_value = "info")]
    pub(crate) level: LogLevel,
    /// Log line format (on stderr).
    #[arg(long = "log.format", value_enum, default_value = "logfmt")]
    pub(crate) format: LogFormat,
}

/// `--log.level` values.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogLevel {
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
pub(crate) enum LogFormat {
    /// `key=value` pairs.
    Logfmt,
    /// One JSON object per line.
    Json,
}

/// The HTTP server's flags, shared by `serve` and `demo`.
#[derive(Args, Debug, Clone)]
pub(crate) struct WebArgs {
    /// Address to listen on: `HOST:PORT`, or `:PORT` for every address (`demo`: loopback by
    /// default, since its /probe is unrestricted).
    #[arg(long = "web.listen-address", default_value = SERVE_LISTEN_ADDRESS)]
    pub(crate) listen_address: String,
    /// Exporter-toolkit web configuration file: TLS, client certificates, basic auth.
    #[arg(long = "web.config.file")]
    pub(crate) web_config_file: Option<PathBuf>,
    /// Subtracted from Prometheus' scrape timeout to get the /probe deadline.
    #[arg(long = "timeout-offset", default_value = "0.5s", value_parser = humantime::parse_duration)]
    pub(crate) timeout_offset: Duration,
    /// Only targets this regular expression matches in full may be probed through /probe.
    #[arg(long = "probe.allowed-targets")]
    pub(crate) allowed_targets: Option<String>,
    /// Let /probe run modules that send a token mail (each request sends one).
    #[arg(long = "probe.allow-send")]
    pub(crate) allow_send: bool,
    /// /probe requests that may run at once; more are answered 503 at once. Default: an eighth
    /// of the file descriptor limit (128 under `ulimit -n 1024`).
    #[arg(long = "probe.max-concurrency")]
    pub(crate) probe_max_concurrency: Option<usize>,
    /// Networks (CIDR, comma-separated or repeated) /probe may reach: every address the target
    /// resolves to must be in one. Default: everywhere.
    #[arg(long = "probe.allowed-networks", value_delimiter = ',')]
    pub(crate) allowed_networks: Vec<String>,
    /// Networks (CIDR, comma-separated or repeated) /probe must not reach, checked on every
    /// address the target resolves to, before --probe.allowed-networks.
    #[arg(long = "probe.denied-networks", value_delimiter = ',')]
    pub(crate) denied_networks: Vec<String>,
    /// Open HTTP connections at most; one client address may hold half. Default: a quarter of
    /// the file descriptor limit.
    #[arg(long = "web.max-connections")]
    pub(crate) max_connections: Option<usize>,
    /// Time for a request head to arrive, from the connection's start or the previous answer
    /// (also how long an idle kept-alive connection stays open).
    #[arg(long = "web.read-header-timeout", default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) read_header_timeout: Duration,
    /// Time an answer may wait for the client to read it before the connection is closed.
    #[arg(long = "web.send-timeout", default_value = "30s", value_parser = humantime::parse_duration)]
    pub(crate) send_timeout: Duration,
}

/// What a one-shot command runs: the module (from the configuration, or defaults), its name,
/// and the target.
pub(crate) struct OneShot {
    /// The module's name (`cli` without a configuration).
    pub(crate) name: String,
    /// The module, with the flags applied.
    pub(crate) module: Module,
    /// Where to connect.
    pub(crate) target: Target,
}

/// The SMTPS port (RFC 8314): implicit TLS.
const SMTPS_PORT: u16 = 465;

/// Builds what a one-shot command runs: the module from the configuration when `--module` or
/// `--target-name` is given, else defaults; then the flags override. `--tls=auto` (the default
/// without a configuration) chooses implicit TLS for port 465.
pub(crate) fn one_shot(args: &ConnectionArgs) -> anyhow::Result<OneShot> {
    let (name, mut module, configured_target) = configured(args)?;
    let from_config = args.config_file.is_some();
    // The port the target names (a bare host: the module's), for --tls=auto.
    let port = match (&configured_target, &args.target) {
        (Some(t), _) => t.port,
        (None, Some(text)) => parse_target(text, module.port).map_or(module.port, |t| t.port),
        (None, None) => module.port,
    };
    let tls = match args.tls {
        None if from_config => None,
        None | Some(TlsModeArg::Auto) if port == SMTPS_PORT => Some(TlsMode::Implicit),
        None | Some(TlsModeArg::Auto) => Some(TlsMode::Starttls),
        Some(TlsModeArg::None) => Some(TlsMode::None),
        Some(TlsModeArg::Starttls) => Some(TlsMode::Starttls),
        Some(TlsModeArg::Implicit) => Some(TlsMode::Implicit),
    };
    if let Some(tls) = tls {
        module.tls = tls;
        if !from_config {
            module.port = match tls {
                TlsMode::Implicit => SMTPS_PORT,
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
    let target = match (configured_target, &args.target) {
        (Some(target), _) => target,
        (None, Some(text)) => parse_target(text, module.port)?,
        (None, None) => bail!("give a TARGET (host[:port]) or --target-name with --config.file"),
    };
    Ok(OneShot {
        name,
        module,
        target,
    })
}

/// The module name, module and target a one-shot command starts from: a configured target's
/// (`--target-name`), a configured module (`--module`), or the defaults.
fn configured(args: &ConnectionArgs) -> anyhow::Result<(String, Module, Option<Target>)> {
    Ok(match (&args.config_file, &args.module, &args.target_name) {
        (Some(path), _, Some(target_name)) => {
            let config = load_config(path)?;
            let Some(target) = config.targets.iter().find(|t| &t.name == target_name) else {
                let known: Vec<&str> = config.targets.iter().map(|t| t.name.as_str()).collect();
                bail!(
                    "no target named {target_name:?} in {} (targets: {})",
                    path.display(),
                    known.join(", ")
                );
            };
            let module = config.module(&target.module).cloned().unwrap_or_default();
            (target.module.clone(), module, Some(target.address.clone()))
        }
        (Some(path), Some(name), None) => {
            let config = load_config(path)?;
            let Some(module) = config.module(name) else {
                let known: Vec<&str> = config.modules.keys().map(String::as_str).collect();
                bail!(
                    "module {name:?} is not in {} (modules: {})",
                    path.display(),
                    known.join(", ")
                );
            };
            (name.clone(), module.clone(), None)
        }
        (Some(_), None, None) => bail!(
            "--config.file needs --module=NAME (with a TARGET) or --target-name=NAME for a \
             one-shot probe"
        ),
        _ => ("cli".to_string(), Module::default(), None),
    })
}

/// Loads a configuration file for a one-shot command.
fn load_config(path: &std::path::Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Where `serve` listens unless told otherwise: every address.
pub(crate) const SERVE_LISTEN_ADDRESS: &str = ":9741";

/// Where `demo` listens unless told otherwise: loopback only, since its `/probe` lets anyone who
/// reaches it make the machine connect anywhere.
pub(crate) const DEMO_LISTEN_ADDRESS: &str = "127.0.0.1:9741";

impl WebArgs {
    /// `--web.config.file`, read and checked; plain HTTP without it.
    pub(crate) fn web_config(&self) -> anyhow::Result<WebConfig> {
        match &self.web_config_file {
            Some(path) => WebConfig::load(path).map_err(|e| anyhow::anyhow!("{e}")),
            None => Ok(WebConfig::default()),
        }
    }

    pub(crate) fn probe_settings(&self) -> anyhow::Result<ProbeSettings> {
        let allowed_targets = match &self.allowed_targets {
            Some(pattern) => Some(
                web::allowed_targets(pattern)
                    .with_context(|| format!("--probe.allowed-targets {pattern:?}"))?,
            ),
            None => None,
        };
        let networks = NetworkPolicy::new(&self.allowed_networks, &self.denied_networks)
            .context("--probe.allowed-networks / --probe.denied-networks")?;
        let max_concurrency = match self.probe_max_concurrency {
            Some(0) => anyhow::bail!("--probe.max-concurrency must be at least 1"),
            Some(n) => n,
            None => web::default_probe_concurrency(web::open_files_limit()),
        };
        Ok(ProbeSettings {
            timeout_offset: self.timeout_offset,
            allowed_targets,
            allow_send: self.allow_send,
            networks: (!networks.is_empty()).then(|| std::sync::Arc::new(networks)),
            max_concurrency,
        })
    }

    /// What one HTTP connection may cost.
    pub(crate) fn server_limits(&self) -> anyhow::Result<ServerLimits> {
        let mut limits = ServerLimits {
            header_timeout: self.read_header_timeout,
            send_timeout: self.send_timeout,
            ..ServerLimits::default()
        };
        match self.max_connections {
            Some(0) => anyhow::bail!("--web.max-connections must be at least 1"),
            Some(n) => limits.max_connections = n,
            None => {}
        }
        if limits.header_timeout.is_zero() || limits.send_timeout.is_zero() {
            anyhow::bail!("--web.read-header-timeout and --web.send-timeout must be above 0");
        }
        Ok(limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        conn: ConnectionArgs,
    }

    fn one_shot_of(args: &[&str]) -> OneShot {
        let cli = Cli::try_parse_from([&["probe"][..], args].concat()).unwrap();
        one_shot(&cli.conn).unwrap()
    }

    #[test]
    fn tls_is_chosen_by_port_unless_given() {
        let smtps = one_shot_of(&["mail.example.test:465"]);
        assert_eq!(smtps.module.tls, TlsMode::Implicit);
        assert_eq!(smtps.target.port, 465);
        let submission = one_shot_of(&["mail.example.test:587"]);
        assert_eq!(submission.module.tls, TlsMode::Starttls);
        let bare = one_shot_of(&["mail.example.test"]);
        assert_eq!(
            (bare.module.tls, bare.target.port),
            (TlsMode::Starttls, 587)
        );
        let auto = one_shot_of(&["mail.example.test:465", "--tls=auto"]);
        assert_eq!(auto.module.tls, TlsMode::Implicit);
        let forced = one_shot_of(&["mail.example.test:465", "--tls=starttls"]);
        assert_eq!(forced.module.tls, TlsMode::Starttls);
        let implicit = one_shot_of(&["mail.example.test", "--tls=implicit"]);
        assert_eq!(implicit.target.port, 465);
    }
}
