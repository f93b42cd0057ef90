//! `smtp-prober chain`: connects like `probe` (resolve, connect, greeting, EHLO, STARTTLS or
//! implicit TLS), then explains the server's certificate chain ([`crate::report::chain`]) and
//! with `--export-dir` writes the PEM files (RFC 7468) a client trust store must import.
//!
//! The session runs with `insecure_skip_verify` forced on, so that it always completes and the
//! chain report is there whatever the verdict; the verdict decides the exit code instead.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};

use super::args::{one_shot, ConnectionArgs, OneShot};
use super::EXIT_PROBE_FAILED;
use crate::probe::module::{Expect, Module, TlsMode};
use crate::probe::target::Target;
use crate::probe::{self, Budget, PreparedModule};
use crate::report::chain::{exportable, render_json, render_text, ChainRun, Export, ExportError};
use crate::tls::export::export;
use crate::tls::{CertFacts, ChainReport};

/// Why `chain` cannot run with a module.
#[derive(Debug, thiserror::Error)]
pub enum ChainModuleError {
    /// The module does not use TLS: there is no chain to explain.
    #[error("the chain command needs TLS: use --tls=starttls or --tls=implicit")]
    NoTls,
}

/// The module `chain` runs: `module` without AUTH, token mail, delivery check and expectations,
/// and with `insecure_skip_verify`, so that the session completes whatever the chain. Fails when
/// the module does not use TLS.
pub fn chain_module(mut module: Module) -> Result<Module, ChainModuleError> {
    if module.tls == TlsMode::None {
        return Err(ChainModuleError::NoTls);
    }
    module.auth = None;
    module.message = None;
    module.delivery = None;
    module.expect = Expect::default();
    module.tls_config.insecure_skip_verify = true;
    Ok(module)
}

/// Runs the session and, when `export_dir` is given and TLS was established, writes the
/// certificates the report says to import ([`exportable`]: those of the built chain the server
/// did not send, and the one the advice asks to trust).
pub async fn run(
    prepared: &PreparedModule,
    target: &Target,
    timeout: Duration,
    export_dir: Option<&Path>,
) -> ChainRun {
    let outcome = probe::run(prepared, target, Budget::new(timeout)).await;
    let export = match (export_dir, outcome.session.tls.as_ref()) {
        (Some(dir), Some(tls)) => Some(Export {
            dir: dir.to_path_buf(),
            written: export(&certificates(&tls.chain), dir).map_err(|source| ExportError {
                dir: dir.to_path_buf(),
                source,
            }),
        }),
        _ => None,
    };
    ChainRun { outcome, export }
}

/// The certificates `--export-dir` writes, in the report's order.
fn certificates(chain: &ChainReport) -> Vec<&CertFacts> {
    exportable(chain).into_iter().map(|(c, _)| c).collect()
}

/// Output format of `chain`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ChainFormat {
    /// The explanation in words.
    Text,
    /// The same facts, findings and advice as one JSON object.
    Json,
}

#[derive(Args, Debug)]
pub(crate) struct ChainArgs {
    #[command(flatten)]
    conn: ConnectionArgs,
    /// Write the certificates a client trust store must import (PEM) into this directory.
    #[arg(long = "export-dir")]
    export_dir: Option<PathBuf>,
    /// Also print every certificate the server sent as PEM (like openssl s_client -showcerts).
    #[arg(long = "show-sent")]
    show_sent: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: ChainFormat,
}

/// `chain`: exit 0 when the chain verifies, 1 when it does not (or no TLS session), 2 on usage
/// errors and when the export cannot be written.
pub(crate) async fn run_chain(args: ChainArgs) -> anyhow::Result<ExitCode> {
    let OneShot {
        name,
        module,
        target,
    } = one_shot(&args.conn)?;
    let module = chain_module(module)?;
    let timeout = module.timeout;
    let prepared = PreparedModule::new(name, module).context("building the TLS configuration")?;
    let run = run(&prepared, &target, timeout, args.export_dir.as_deref()).await;
    let now = std::time::SystemTime::now();
    match args.format {
        ChainFormat::Text => print!("{}", render_text(&run, now, args.show_sent)),
        ChainFormat::Json => println!("{}", render_json(&run, now, args.show_sent)),
    }
    if let Some(Err(e)) = run.export.as_ref().map(|e| &e.written) {
        bail!("--export-dir: {e}");
    }
    Ok(if run.chain_valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_PROBE_FAILED)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::module::{AuthSettings, Credential, MechanismChoice};
    use crate::secret::Secret;

    #[test]
    fn chain_module_strips_what_chain_does_not_do() {
        let mut m = Module {
            expect: Expect {
                cert_min_validity: Some(Duration::from_secs(86_400)),
            },
            ..Module::default()
        };
        m.auth = Some(AuthSettings {
            mechanism: MechanismChoice::Auto,
            username: "u".into(),
            credential: Credential::Password(Secret::new("p")),
        });
        let c = chain_module(m).unwrap();
        assert!(c.auth.is_none() && c.message.is_none() && c.delivery.is_none());
        assert_eq!(c.expect, Expect::default());
        assert!(c.tls_config.insecure_skip_verify);
        let plain = Module {
            tls: TlsMode::None,
            ..Module::default()
        };
        assert!(chain_module(plain)
            .unwrap_err()
            .to_string()
            .contains("needs TLS"));
    }
}
