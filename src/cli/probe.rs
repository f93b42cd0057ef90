//! `smtp-prober probe`: one probe, printed as a transcript, JSON or the `/probe` metrics.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, ValueEnum};

use super::args::{module_from_args, ConnectionArgs};
use super::EXIT_PROBE_FAILED;
use crate::probe::module::{AuthSettings, Credential, MechanismChoice, MessageSettings};
use crate::probe::target::parse_target;
use crate::probe::{self, Budget, PreparedModule, ProbeOutcome};
use crate::report;
use crate::secret::Secret;
use crate::smtp::command::Mailbox;

/// Output format of `probe`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// A human transcript.
    Text,
    /// One JSON object (DESIGN §7).
    Json,
    /// The metrics `/probe` would return.
    Prometheus,
}

#[derive(Args, Debug)]
pub(crate) struct ProbeArgs {
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

pub(crate) async fn run_probe(args: ProbeArgs) -> anyhow::Result<ExitCode> {
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
    let target = parse_target(&args.conn.target, module.port)?;
    let timeout = module.timeout;
    let prepared = PreparedModule::new(name, module).context("building the TLS configuration")?;
    let outcome = probe::run(&prepared, &target, Budget::new(timeout)).await;
    print!("{}", format_outcome(&outcome, args.format));
    Ok(if outcome.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_PROBE_FAILED)
    })
}

/// Renders an outcome in the chosen format.
fn format_outcome(outcome: &ProbeOutcome, format: Format) -> String {
    match format {
        Format::Text => report::text::render(outcome),
        Format::Json => report::json::to_json(outcome) + "\n",
        Format::Prometheus => report::metrics::render(outcome),
    }
}
