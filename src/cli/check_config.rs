//! `smtp-prober check-config`: validates the configuration (and the web configuration) the way
//! `serve` would load them, TLS clients included.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use super::{DEFAULT_CONFIG_FILE, EXIT_USAGE};
use crate::config::Config;
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
}

pub(crate) async fn run_check_config(args: &CheckConfigArgs) -> ExitCode {
    let path = args.config_file.clone();
    let checked = tokio::task::spawn_blocking(move || -> anyhow::Result<Loaded> {
        let config = Config::load(&path)?;
        Loaded::prepare(config).with_context(|| path.display().to_string())
    })
    .await
    .unwrap_or_else(|e| Err(anyhow::Error::new(e).context("checking was interrupted")));
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
