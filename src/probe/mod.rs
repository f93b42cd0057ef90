//! The probe: runs one module against one target, within a [`Budget`], and returns what it found
//! as plain data ([`ProbeOutcome`]). Reading the credentials, the SMTP session (with the OAuth
//! token retry) and the delivery check over IMAP are its three parts. Every output format is
//! rendered from the outcome by [`crate::report`]; nothing here knows about Prometheus.

pub mod delivery;
pub(crate) mod graph;
pub mod kept;
pub mod module;
pub(crate) mod oauth;
pub mod target;
pub(crate) mod token;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::cancel::Cancel;
use crate::clock::days;
use crate::networks::NetworkPolicy;
use crate::secret::Secret;
use crate::smtp::auth::SecretKind;
use crate::smtp::reply::ReplyLimits;
use crate::smtp::session::{self, AuthPlan, SessionPlan, SessionReport};
use crate::smtp::transcript::{Failure, Transcript, Watcher};
use crate::tls::{TlsClient, TlsSetupError};
use crate::vocab::{Reason, StepName};
pub use delivery::DeliveryReport;
use module::{Credential, Module};
use oauth::TokenFetch;
use target::Target;
use token::TokenMail;

/// A module with everything built that probes share: its TLS client and trust store.
/// Built once per configuration load, never inside a probe.
#[derive(Clone, Debug)]
pub struct PreparedModule {
    /// The module's name in the configuration.
    pub name: String,
    /// The settings.
    pub module: Module,
    /// TLS client for the SMTP connection.
    pub tls: TlsClient,
    /// What the delivery check connects with, when configured.
    pub mailbox: Option<delivery::MailboxClient>,
    /// The OAuth 2.0 token cache, when the module authenticates with client credentials.
    pub(crate) token_source: Option<Arc<oauth::TokenSource>>,
}

impl PreparedModule {
    /// Builds the TLS client of a module.
    pub fn new(
        name: impl Into<String>,
        module: Module,
    ) -> Result<Arc<PreparedModule>, TlsSetupError> {
        let tls = TlsClient::new(&module.tls_config)?;
        let mailbox = match &module.delivery {
            Some(d) => Some(delivery::MailboxClient::new(d)?),
            None => None,
        };
        let token_source = match module.auth.as_ref().map(|a| &a.credential) {
            Some(Credential::OAuth2(o)) => Some(Arc::new(oauth::TokenSource::new(
                o.clone(),
                &module.tls_config,
            )?)),
            _ => None,
        };
        Ok(Arc::new(PreparedModule {
            name: name.into(),
            module,
            tls,
            mailbox,
            token_source,
        }))
    }
}

/// Everything one probe found out: plain data, read by every output format.
#[derive(Clone, Debug)]
pub struct ProbeOutcome {
    /// The target as probed (`host:port`).
    pub target: String,
    /// The module name.
    pub module: String,
    /// Wall-clock start.
    pub started_at: SystemTime,
    /// The whole probe.
    pub duration: Duration,
    /// The deadline in force.
    pub timeout: Duration,
    /// The SMTP session.
    pub session: SessionReport,
    /// The probe's failure: the session's, or one found after it (`cert_expiring_soon`).
    pub failure: Option<Failure>,
    /// The token mail's id, when one was composed (the token itself stays inside the probe).
    pub probe_id: Option<String>,
    /// The delivery check, when configured.
    pub delivery: Option<DeliveryReport>,
    /// Whether the probe was cancelled before it ended (its verdict means nothing then).
    pub cancelled: bool,
    /// Whether the module sends a token mail (`probe_smtp_message_accepted` is exported).
    pub message_configured: bool,
}

impl ProbeOutcome {
    /// Whether every configured step passed.
    pub fn success(&self) -> bool {
        self.failure.is_none()
    }

    /// A provider-specific hint for the reply that failed the probe, when the table knows it.
    pub fn provider_hint(&self) -> Option<&'static crate::smtp::hints::ProviderHint> {
        let failure = self.failure.as_ref()?;
        let step = self
            .session
            .transcript
            .steps()
            .iter()
            .find(|s| s.failure.is_some() && s.name == failure.step)?;
        crate::smtp::hints::lookup(step.reply.as_ref()?)
    }
}

/// How long a probe may take and what may stop it early.
#[derive(Clone, Debug)]
pub struct Budget {
    /// The SMTP session's deadline, counted from the probe's start; the delivery check has the
    /// module's own `delivery.timeout`. Exported as `probe_timeout_seconds`.
    pub timeout: Duration,
    /// When set, the whole probe, delivery check included, ends by then at the latest (a
    /// `/probe` request cannot wait minutes for a mail).
    pub cap: Option<Instant>,
    /// Stops the probe early, with a best-effort QUIT (shutdown, reload).
    pub cancel: Cancel,
    /// When set, the only addresses the session may connect to (`/probe`'s
    /// `--probe.allowed-networks` and `--probe.denied-networks`).
    pub networks: Option<Arc<NetworkPolicy>>,
    /// Told about each step as it happens (the `probe` command prints them as they come).
    pub watcher: Option<Watcher>,
}

impl Budget {
    /// `timeout` for the session, no cap, never cancelled.
    pub fn new(timeout: Duration) -> Budget {
        Budget {
            timeout,
            cap: None,
            cancel: Cancel::never(),
            networks: None,
            watcher: None,
        }
    }

    /// The same budget, with `watcher` told about each step as it happens.
    pub fn watched_by(self, watcher: Watcher) -> Budget {
        Budget {
            watcher: Some(watcher),
            ..self
        }
    }

    /// The same budget, connecting only where `networks` allows.
    pub fn within(self, networks: Option<Arc<NetworkPolicy>>) -> Budget {
        Budget { networks, ..self }
    }

    /// The same budget, with the whole probe ending by `cap`.
    pub fn capped(self, cap: Instant) -> Budget {
        Budget {
            cap: Some(cap),
            ..self
        }
    }

    /// The same budget, stopped early when `cancel` fires.
    pub fn cancelled_by(self, cancel: Cancel) -> Budget {
        Budget { cancel, ..self }
    }
}

/// Runs one probe of `prepared` against `target`: the SMTP session within the budget's
/// timeout, then the delivery check (if configured) within the module's delivery timeout and
/// the budget's cap.
pub async fn run(prepared: &PreparedModule, target: &Target, budget: Budget) -> ProbeOutcome {
    run_awaiting(prepared, target, budget, &[]).await
}

/// [`run`], with the delivery check also looking for `pending`: the ids of earlier probes'
/// mails that did not arrive in time (scheduled mode counts them late when they turn up).
pub async fn run_awaiting(
    prepared: &PreparedModule,
    target: &Target,
    budget: Budget,
    pending: &[String],
) -> ProbeOutcome {
    let started = Instant::now();
    let started_at = SystemTime::now();
    let deadline = started + budget.timeout;
    let module = &prepared.module;

    // Everything that is not talking to the server happens before the clock matters: composing
    // the mail and reading secrets are not part of any step.
    let (mail, mail_failure) = match &module.message {
        Some(settings) => match TokenMail::compose(settings, started_at) {
            Ok(mail) => (Some(mail), None),
            Err(e) => {
                let failure = Failure::new(StepName::Mail, Reason::ProtocolError, e.to_string());
                (None, Some(failure))
            }
        },
        None => (None, None),
    };
    let mut credentials = Credentials::read(prepared, deadline).await;
    let early_failure = mail_failure.or(credentials.failure.take());
    let mut transcript = Transcript::new(started).watched_by(budget.watcher.clone());
    if let Some(fetch) = &credentials.fetch {
        record_token_fetch(&mut transcript, module, fetch);
    }

    let mut session = if early_failure.is_some() || credentials.token_failed() {
        SessionReport::recorded_in(transcript)
    } else {
        let plan = SessionPlan {
            host: &target.host,
            port: target.port,
            ip_protocol: module.ip_protocol,
            tls_mode: module.tls,
            tls: &prepared.tls,
            ehlo: &module.ehlo,
            auth: None,
            envelope: mail.as_ref().map(|m| &m.envelope),
            deadline,
            transcript,
            limits: ReplyLimits::default(),
            cancel: budget.cancel.clone(),
            networks: budget.networks.as_deref(),
        };
        converse(prepared, plan, &mut credentials).await
    };
    if let Some(f) = &early_failure {
        session
            .transcript
            .record(f.step, Instant::now())
            .finish(Some(f.clone()));
    }
    let mut failure = session
        .failure()
        .cloned()
        .or_else(|| check_expectations(module, &session, SystemTime::now()));
    let delivery = match (&mail, session.message_accepted_at) {
        (Some(mail), Some(accepted_at)) => {
            let checked =
                deliver(prepared, &mut session, mail, accepted_at, &budget, pending).await;
            checked.map(|(report, delivery_failure)| {
                failure = failure.take().or(delivery_failure);
                report
            })
        }
        _ => None,
    };
    ProbeOutcome {
        target: target.to_string(),
        module: prepared.name.clone(),
        started_at,
        duration: started.elapsed(),
        timeout: budget.timeout,
        session,
        failure,
        probe_id: mail.map(|m| m.probe_id),
        delivery,
        cancelled: budget.cancel.is_cancelled(),
        message_configured: module.message.is_some(),
    }
}

/// What the probe proves who it is with, read before the conversation starts.
#[derive(Default)]
struct Credentials {
    /// The AUTH plan, when the module authenticates and its secret could be read.
    auth: Option<AuthPlan>,
    /// The token request this probe made (shown as the `oauth_token` step), if it made one.
    fetch: Option<TokenFetch>,
    /// Whether the token came from the cache: a rejection then earns one retry with a fresh one.
    cached: bool,
    /// Why no secret could be read, when that is not a failed token request.
    failure: Option<Failure>,
}

impl Credentials {
    /// Reads the module's secret: a password, a token file, or an OAuth 2.0 token (from the
    /// cache, or fetched within `deadline`).
    async fn read(prepared: &PreparedModule, deadline: Instant) -> Credentials {
        let mut c = Credentials::default();
        let Some(a) = &prepared.module.auth else {
            return c;
        };
        let secret = match (&a.credential, &prepared.token_source) {
            (Credential::OAuth2(_), Some(source)) => {
                let (token, fetch) = source.token(deadline).await;
                c.cached = fetch.is_none();
                let failure = fetch.as_ref().and_then(|f| f.failure.clone());
                c.fetch = fetch;
                match (token, failure) {
                    (Some(t), _) => Ok((t, SecretKind::BearerToken)),
                    (None, Some(f)) => Err(f),
                    (None, None) => Err(Failure::new(
                        StepName::OauthToken,
                        Reason::OauthTokenFailed,
                        "no token",
                    )),
                }
            }
            (credential, _) => resolve_secret(credential, deadline).await,
        };
        match secret {
            Ok((secret, kind)) => {
                c.auth = Some(AuthPlan {
                    mechanism: a.mechanism,
                    username: a.username.clone(),
                    secret,
                    kind,
                });
            }
            // A failed token request is its own step; any other failure ends the probe early.
            Err(failure) if c.fetch.is_none() => c.failure = Some(failure),
            Err(_) => {}
        }
        c
    }

    /// Whether the token request this probe made failed.
    fn token_failed(&self) -> bool {
        self.fetch.as_ref().is_some_and(|f| f.failure.is_some())
    }
}

/// The SMTP session. A cached OAuth token the server rejects may have been revoked early: the
/// session then runs once more with a freshly fetched token.
async fn converse(
    prepared: &PreparedModule,
    mut plan: SessionPlan<'_>,
    credentials: &mut Credentials,
) -> SessionReport {
    plan.auth = credentials.auth.clone();
    let retry_plan = plan.clone();
    let first = session::run(plan).await;
    let rejected = first
        .failure()
        .is_some_and(|f| f.reason == Reason::AuthFailed);
    let (Some(source), Some(mut retry)) = (&prepared.token_source, credentials.auth.take()) else {
        return first;
    };
    if !(rejected && credentials.cached) {
        return first;
    }
    source.invalidate_rejected(&retry.secret).await;
    let (token, fetch) = source.token(retry_plan.deadline).await;
    let mut transcript = retry_plan.transcript.clone();
    if let Some(fetch) = &fetch {
        record_token_fetch(&mut transcript, &prepared.module, fetch);
    }
    match token {
        Some(t) => {
            retry.secret = t;
            session::run(SessionPlan {
                auth: Some(retry),
                transcript,
                ..retry_plan
            })
            .await
        }
        None => SessionReport::recorded_in(transcript),
    }
}

/// Adds the token request to the transcript, at the time it ran.
fn record_token_fetch(transcript: &mut Transcript, module: &Module, fetch: &TokenFetch) {
    let url = match module.auth.as_ref().map(|a| &a.credential) {
        Some(Credential::OAuth2(o)) => o.token_url.as_str(),
        _ => "",
    };
    transcript
        .record(StepName::OauthToken, fetch.began)
        .took(fetch.duration)
        .sent(format!("POST {url}"))
        .reply(fetch.as_reply())
        .finish(fetch.failure.clone());
}

/// The delivery check, when the module has one: waits for the token mail over IMAP (within the
/// budget's cap; a cancelled wait just ends, and the mail, if it arrives, is swept later) and
/// records the `delivery` step.
async fn deliver(
    prepared: &PreparedModule,
    session: &mut SessionReport,
    mail: &TokenMail,
    accepted_at: Instant,
    budget: &Budget,
    pending: &[String],
) -> Option<(DeliveryReport, Option<Failure>)> {
    let (Some(settings), Some(client)) = (&prepared.module.delivery, &prepared.mailbox) else {
        return None;
    };
    // The first server stamps its Received: field when the transaction begins, at MAIL.
    let transcript = &session.transcript;
    let submitting = transcript
        .step(StepName::Mail)
        .map(|mail| accepted_at.saturating_duration_since(transcript.started() + mail.offset))
        .unwrap_or_default();
    let awaited = delivery::Awaited {
        probe_id: &mail.probe_id,
        accepted_at,
        submitting,
        pending,
        domain: &mail.domain,
    };
    let began = Instant::now();
    let (report, failure) = tokio::select! {
        biased;
        _ = budget.cancel.cancelled() => (DeliveryReport::default(), None),
        checked = delivery::check(settings, client, awaited, budget.cap) => checked,
    };
    session
        .transcript
        .record(StepName::Delivery, began)
        .finish(failure.clone());
    Some((report, failure))
}

/// Reads the secret the credential names. OAuth 2.0 token fetching is its own step.
/// A token file is read on every probe (it may be rotated), off the async runtime and by the
/// probe's deadline.
async fn resolve_secret(
    credential: &Credential,
    deadline: Instant,
) -> Result<(Secret, SecretKind), Failure> {
    match credential {
        Credential::Password(p) => Ok((p.clone(), SecretKind::Password)),
        Credential::BearerTokenFile(path) => Secret::from_file_by(path, deadline)
            .await
            .map(|s| (s, SecretKind::BearerToken))
            .map_err(|e| Failure::new(StepName::Auth, Reason::OauthTokenFailed, e.to_string())),
        Credential::OAuth2(_) => Err(Failure::new(
            StepName::OauthToken,
            Reason::OauthTokenFailed,
            "the module has OAuth 2.0 settings but no token source: it was not built with PreparedModule::new",
        )),
    }
}

/// Checks what the module expects beyond every step passing.
fn check_expectations(
    module: &Module,
    session: &SessionReport,
    now: SystemTime,
) -> Option<Failure> {
    let min = module.expect.cert_min_validity?;
    let tls = session.tls.as_ref()?;
    let now = crate::clock::unix_seconds(now);
    let limit = now.saturating_add(min.as_secs() as i64);
    let soonest = tls
        .chain
        .built
        .iter()
        .filter(|c| c.not_after > 0)
        .min_by_key(|c| c.not_after)?;
    (soonest.not_after < limit).then(|| {
        let left = soonest.not_after - now;
        let when = if left < 0 {
            format!("expired {} ago", days(left))
        } else {
            format!("expires in {}", days(left))
        };
        Failure::new(
            StepName::TlsHandshake,
            Reason::CertExpiringSoon,
            format!(
                "certificate at depth {} ({}) {when}, sooner than the {} expect.cert_min_validity \
                 asks for",
                soonest.depth,
                soonest.subject,
                days(i64::try_from(min.as_secs()).unwrap_or(i64::MAX)),
            ),
        )
    })
}
