//! The command line (DESIGN §3): `serve` (default), `probe`, `chain`, `check-config`, `demo`,
//! one file per command, the flags two commands share in `args`. Exit codes: 0 the probe
//! succeeded (or the command did its job), 1 the probe failed, 2 usage or configuration error.
//!
//! `serve` and `demo` run until SIGTERM or SIGINT (exit 0); SIGHUP reloads the configuration.

mod args;
pub mod chain;
mod check_config;
mod demo;
mod logfmt;
mod probe;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code of a failed probe.
pub(crate) const EXIT_PROBE_FAILED: u8 = 1;
/// Exit code of a usage or configuration error.
pub(crate) const EXIT_USAGE: u8 = 2;

/// The default configuration file.
const DEFAULT_CONFIG_FILE: &str = "smtp-prober.yml";

/// What to say when the configuration file is not there: the first run, usually.
fn no_config_file(path: &std::path::Path) -> Option<anyhow::Error> {
    if path.exists() {
        return None;
    }
    Some(anyhow::anyhow!(
        "no configuration file at {}.\n\
         For a first look, run `smtp-prober demo`: an embedded mail server and the exporter \
         probing it, with the URLs to open.\n\
         To probe your servers, write a configuration (config/smtp-prober.yml in the source \
         shows every option) and give it with --config.file=PATH; \
         `smtp-prober probe HOST:PORT` runs one probe without any.",
        path.display()
    ))
}

/// smtp-prober: Prometheus exporter and synthetic SMTP delivery prober.
#[derive(Parser, Debug)]
#[command(
    name = "smtp-prober",
    version,
    about,
    long_about = None,
    args_conflicts_with_subcommands = true
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// `serve`'s flags, for when no command is given.
    #[command(flatten)]
    serve: serve::ServeArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the exporter: /probe, scheduled targets, /metrics (the default).
    Serve(serve::ServeArgs),
    /// Run one probe and print a transcript.
    Probe(probe::ProbeArgs),
    /// Explain the server's certificate chain and export what a client must import.
    Chain(chain::ChainArgs),
    /// Validate a configuration file: exit 0, or 2 with every problem found.
    CheckConfig(check_config::CheckConfigArgs),
    /// Start an embedded STARTTLS server and the exporter probing it: the zero-setup first run.
    #[command(mut_arg("listen_address", |a| a.default_value(args::DEMO_LISTEN_ADDRESS)))]
    Demo(demo::DemoArgs),
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
            Some(Command::Probe(args)) => probe::run_probe(args).await,
            Some(Command::Serve(args)) => serve::run_serve(args).await,
            Some(Command::CheckConfig(args)) => Ok(check_config::run_check_config(&args).await),
            Some(Command::Demo(args)) => demo::run_demo(args).await,
            Some(Command::Chain(args)) => chain::run_chain(args).await,
            None => serve::run_serve(cli.serve).await,
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
