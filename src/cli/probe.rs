//! `smtp-prober probe`: one probe, printed as a transcript, JSON or the `/probe` metrics. The
//! transcript is printed as the probe runs, a line as soon as it is known (a command when it
//! is sent, a reply when it is in), so that a hang shows where it hangs while it hangs; the
//! summary and the verdict follow at the end.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};

use super::args::{one_shot, ConnectionArgs, OneShot};
use super::EXIT_PROBE_FAILED;
use crate::probe::module::{AuthSettings, Credential, MechanismChoice, MessageSettings};
use crate::probe::{self, Budget, PreparedModule};
use crate::report::{self, text};
use crate::secret::Secret;
use crate::smtp::command::Mailbox;
use crate::smtp::transcript::{Step, Watch, Watcher};
use crate::vocab::{Audience, StepName};

/// Output format of `probe`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// A human transcript.
    Text,
    /// One JSON object: the transcript's facts, for scripts.
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
    let OneShot {
        name,
        mut module,
        target,
    } = one_shot(&args.conn)?;
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
    let timeout = module.timeout;
    let prepared = PreparedModule::new(name, module).context("building the TLS configuration")?;
    let budget = Budget::new(timeout);
    let outcome = match args.format {
        Format::Text => {
            print!(
                "{}",
                text::header(&target.to_string(), &prepared.name, timeout)
            );
            let follow = Watcher(Arc::new(Follow::default()));
            let outcome = probe::run(&prepared, &target, budget.watched_by(follow)).await;
            print!("{}", text::summary(&outcome, Audience::Cli));
            outcome
        }
        Format::Json => {
            let outcome = probe::run(&prepared, &target, budget).await;
            println!("{}", report::json::to_json(&outcome));
            outcome
        }
        Format::Prometheus => {
            let outcome = probe::run(&prepared, &target, budget).await;
            print!("{}", report::metrics::render(&outcome));
            outcome
        }
    };
    Ok(if outcome.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_PROBE_FAILED)
    })
}

/// Prints each step of a running probe as soon as it is known: a command's line when it goes
/// out, the reply's when it is in (stdout is line-buffered: each line shows at once).
#[derive(Default)]
struct Follow {
    /// The step whose command line is printed and whose reply is awaited (name and offset).
    announced: Mutex<Option<(StepName, Duration)>>,
}

impl Watch for Follow {
    fn sending(&self, step: StepName, offset: Duration, shown: &str) {
        let mut announced = self.announced.lock().unwrap_or_else(|e| e.into_inner());
        // A step that sends several times (a SASL exchange) shows its command once.
        if *announced != Some((step, offset)) {
            *announced = Some((step, offset));
            print!("{}", text::sending_line(step, offset, shown));
        }
    }

    fn ended(&self, step: &Step) {
        let mut announced = self.announced.lock().unwrap_or_else(|e| e.into_inner());
        let lines = if step.sent.is_some() && *announced == Some((step.name, step.offset)) {
            text::ended_lines(step)
        } else {
            text::step_lines(step)
        };
        *announced = None;
        print!("{lines}");
    }
}
