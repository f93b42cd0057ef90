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
use crate::smtp::command::ClientName;
use crate::tls::TrustKind;

/// How to reach the server and what to check: the flags `probe` and `chain` share.
#[derive(Args, Debug, Clone)]
pub(crate) struct ConnectionArgs {
    /// host[:port] to probe.
    pub(crate) target: String,
    /// Configuration file to take the module from.
    #[arg(long = "config.file")]
    pub(crate) config_file: Option<PathBuf>,
    /// Module of the configuration file to use.
    #[arg(long, requires = "config_file")]
    pub(crate) module: Option<String>,
    /// TLS mode.
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
    /// Address to listen on: `HOST:PORT`, or `:PORT` for every address.
    #[arg(long = "web.listen-address", default_value = ":9741")]
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

/// Builds the module a one-shot command uses: from the configuration when `--module` is given,
/// else defaults; then the flags override.
pub(crate) fn module_from_args(args: &ConnectionArgs) -> anyhow::Result<(String, Module)> {
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
