//! `smtp-prober check-config`: validates the configuration (and the web configuration) the way
//! `serve` would load them, TLS clients included; with `--syntax-only`, the file alone, for a
//! machine that does not hold the secrets (CI, a laptop).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use super::{DEFAULT_CONFIG_FILE, EXIT_USAGE};
use crate::config::{Checks, Config};
use crate::exporter::Loaded;
use crate::http::web_config::WebConfig;

#[derive(Args, Debug)]
pub(crate) struct CheckConfigArgs {
    /// Configuration file.
    #[arg(long = "config.file", default_value = DEFAULT_CONFIG_FILE)]
    config_file: PathBuf,
    /// Also check this exporter-toolkit web configuration file.
    #[arg(long = "web.config.file")]
    web_config_file: Option<PathBuf>,
    /// Check the file alone: its syntax and every value, but not the secret, CA and token
    /// files it names nor its ${ENV} variables (for a machine without the secrets, such as CI).
    #[arg(long = "syntax-only")]
    syntax_only: bool,
}

pub(crate) async fn run_check_config(args: &CheckConfigArgs) -> ExitCode {
    if let Some(missing) = super::no_config_file(&args.config_file) {
        eprintln!("error: {missing}");
        return ExitCode::from(EXIT_USAGE);
    }
    let path = args.config_file.clone();
    let checks = if args.syntax_only {
        Checks::SyntaxOnly
    } else {
        Checks::All
    };
    let checked = tokio::task::spawn_blocking(move || -> anyhow::Result<Config> {
        let config = Config::load_checking(&path, checks)?;
        if checks == Checks::All {
            // What serve builds before it runs a probe: the TLS clients, from the CA files.
            Loaded::prepare(config.clone()).with_context(|| path.display().to_string())?;
        }
        Ok(config)
    })
    .await
    .unwrap_or_else(|e| Err(anyhow::Error::new(e).context("checking was interrupted")));
    let file = args.config_file.display();
    let mut ok = match checked {
        Ok(config) if config.modules.is_empty() && config.targets.is_empty() => {
            eprintln!(
                "{file}: warning: no modules and no targets, so the exporter would probe \
                 nothing (an empty file?)"
            );
            true
        }
        Ok(config) => {
            let what = if args.syntax_only {
                "syntax OK (secret, CA and token files and ${ENV} variables not checked)"
            } else {
                "OK"
            };
            println!(
                "{file}: {what}, {} modules, {} targets (checksum {})",
                config.modules.len(),
                config.targets.len(),
                &config.checksum_hex()[..12]
            );
            true
        }
        Err(problems) => {
            eprintln!("{problems:#}");
            false
        }
    };
    if let Some(path) = &args.web_config_file {
        match WebConfig::load(path) {
            Ok(web) => {
                println!("{}: OK, {}", path.display(), web.summary());
                for warning in web.warnings() {
                    eprintln!("{}: warning: {warning}", path.display());
                }
            }
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
