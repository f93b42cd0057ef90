//! The delivery check (DESIGN §4 `delivery:`): after the server accepted the token mail, log in
//! over IMAP (RFC 3501; implicit TLS per RFC 8314 or STARTTLS) and look for the mail by its
//! probe-id header in the configured mailboxes until it shows up or the delivery timeout passes.
//!
//! Cleanup never loses data: only messages whose `X-Smtp-Prober-Id` header carries *this* probe's
//! id are deleted, with `UID EXPUNGE` (RFC 4315 UIDPLUS) of exactly their UIDs, so messages a
//! person flagged `\Deleted` elsewhere in the mailbox are not expunged with ours. A server
//! without UIDPLUS gets its probe mail flagged, never expunged. The sweep of stale probe mails
//! applies the same rule, and also requires the From address of the module.
//!
//! A misbehaving IMAP server costs a failed check, never the exporter: every exchange goes
//! through the [bounded transport](crate::imap) (caps on lines, literals, responses and bytes,
//! the deadline enforced in every read), responses are consumed one by one keeping only what
//! the check needs, and what the server did wrong is reported as `imap_protocol_error` (it broke
//! the protocol or the limits) or `imap_error` (it refused, closed, or stopped answering), never
//! as `delivery_timeout`, which is kept for mail that did not arrive while the server answered.
//!
//! Once the mail is found, one FETCH reads its `Received:` and `Authentication-Results:` fields
//! (a partial fetch of at most [`HEADER_BYTES`]: a mail with an endless trace costs the server
//! nothing beyond that, and the transport's caps stay the server's, not the mail's), from which
//! come the hop split ([`crate::headers::received::hops`]) and the SPF/DKIM/DMARC verdicts. A
//! mailbox with the `\Junk` special use (RFC 6154, asked with LIST) or a Junk/Spam name counts
//! as Junk.
//!
//! Scheduled mode also passes the ids of earlier probes' mails that did not arrive in time: each
//! search round looks for them as well (one more SEARCH per mailbox), and the ones found are
//! reported with their INTERNALDATE (when they really arrived) and cleaned up like our own.

use std::time::{Duration, Instant, SystemTime};

use async_imap::imap_proto::{Response, Status};
use async_imap::Client;
use futures::TryStreamExt as _;
use tokio::net::TcpStream;
use tokio::time::timeout_at;

use std::sync::Arc;

use super::module::{Credential, DeliverySettings, ImapAccess, ImapTls, MailboxAccess};
use super::oauth::TokenSource;
use super::token::PROBE_ID_HEADER;
use crate::headers::auth_results::{self, Verdict};
use crate::headers::received::{self, Hop};
use crate::headers::{self, MAX_FIELDS, MAX_FIELD_TEXT};
use crate::imap::{BoundedStream, Limits, Trouble};
use crate::printable::printable;
use crate::secret::Secret;
use crate::smtp::auth::{Mechanism, SaslClient};
use crate::smtp::command::Mailbox;
use crate::smtp::transcript::Failure;
use crate::tls::{TlsClient, TlsSetupError};
use crate::vocab::{Reason, StepName};

/// What the delivery check found.
#[derive(Clone, Debug, Default)]
pub struct DeliveryReport {
    /// Whether the token mail was found in time.
    pub success: bool,
    /// From the end of DATA to the mail being visible.
    pub duration: Option<Duration>,
    /// The mailbox it was found in.
    pub mailbox: Option<String>,
    /// The `Received:` headers of the delivered mail, newest first, unfolded, bounded and
    /// printable: the hops it took.
    pub received: Vec<String>,
    /// The hops, oldest first, with the time each took (see [`received::hops`]). Empty when
    /// the trace is incomplete (longer than what is read of it).
    pub hops: Vec<Hop>,
    /// The SPF, DKIM, DMARC and ARC verdicts of the delivered mail's
    /// `Authentication-Results:`.
    pub auth: Vec<Verdict>,
    /// Whether the mailbox it landed in is a Junk folder.
    pub junk: bool,
    /// How many searches it took.
    pub polls: u32,
    /// Whether our mail was deleted afterwards.
    pub cleaned_up: bool,
    /// Mails of earlier probes (the pending ids passed in) that turned up.
    pub late: Vec<LateMail>,
    /// When every mailbox was last searched for the pending ids (all of them, with nothing
    /// failing): a pending mail not found by then was not there.
    pub pending_searched_at: Option<SystemTime>,
}

/// A mail of an earlier probe, found by a later one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LateMail {
    /// Its probe id.
    pub probe_id: String,
    /// The mailbox it was in.
    pub mailbox: String,
    /// When it arrived there (Unix seconds): the date of its newest `Received:` field (the
    /// mailbox server's stamp), else its INTERNALDATE; `None` when neither is readable.
    pub arrived_at: Option<i64>,
    /// Whether it was deleted.
    pub cleaned_up: bool,
}

/// What a delivery check connects with, built once per module: the TLS client for the mailbox
/// server and, for `oauth2`, the token cache.
#[derive(Clone, Debug)]
pub struct MailboxClient {
    /// TLS for the IMAP server (or the Graph endpoint).
    pub tls: TlsClient,
    /// The OAuth 2.0 token cache, when the mailbox is read with client credentials.
    pub(crate) token_source: Option<Arc<TokenSource>>,
}

impl MailboxClient {
    /// Builds the TLS client (and the token source) of `settings`.
    pub fn new(settings: &DeliverySettings) -> Result<MailboxClient, TlsSetupError> {
        let tls_config = settings.access.tls_config();
        let oauth2 = match &settings.access {
            MailboxAccess::Imap(ImapAccess {
                credential: Credential::OAuth2(o),
                ..
            }) => Some(o),
            MailboxAccess::Graph(g) => Some(&g.oauth2),
            MailboxAccess::Imap(_) => None,
        };
        Ok(MailboxClient {
            tls: TlsClient::new(tls_config)?,
            token_source: match oauth2 {
                Some(o) => Some(Arc::new(TokenSource::new(o.clone(), tls_config)?)),
                None => None,
            },
        })
    }

    /// The secret `credential` names, and whether it is a cached token (worth one retry with a
    /// fresh one when refused).
    async fn secret(
        &self,
        credential: &Credential,
        deadline: Instant,
    ) -> Result<(Secret, bool), Failure> {
        let token_failed =
            |detail: String| Failure::new(StepName::Delivery, Reason::OauthTokenFailed, detail);
        match (credential, &self.token_source) {
            (Credential::Password(p), _) => Ok((p.clone(), false)),
            (Credential::BearerTokenFile(path), _) => Secret::from_file_by(path, deadline)
                .await
                .map(|s| (s, false))
                .map_err(|e| token_failed(e.to_string())),
            (Credential::OAuth2(_), Some(source)) => {
                let (token, fetch) = source.token(deadline).await;
                match (token, fetch) {
                    (Some(t), fetch) => Ok((t, fetch.is_none())),
                    (None, Some(f)) => Err(Failure {
                        step: StepName::Delivery,
                        ..f.failure.unwrap_or_else(|| token_failed("no token".into()))
                    }),
                    (None, None) => Err(token_failed("no token".into())),
                }
            }
            (Credential::OAuth2(_), None) => Err(token_failed(
                "OAuth 2.0 settings but no token source: the client was not built with MailboxClient::new".into(),
            )),
        }
    }
}

/// The mail a delivery check waits for.
#[derive(Clone, Copy, Debug)]
pub struct Awaited<'a> {
    /// Its probe id (the `X-Smtp-Prober-Id` header).
    pub probe_id: &'a str,
    /// When the server accepted it (its final reply after DATA).
    pub accepted_at: Instant,
    /// How long the mail transaction took before that (MAIL to the final reply): the first
    /// server stamps its `Received:` when the transaction begins.
    pub submitting: Duration,
    /// Ids of earlier probes' mails still awaited, looked for as well (scheduled mode).
    pub pending: &'a [String],
    /// The domain of the probe mails' Message-IDs (`<probe id@domain>`, the sender's domain):
    /// what a mail API finds them by.
    pub domain: &'a str,
}

impl<'a> Awaited<'a> {
    /// The mail with `probe_id`, accepted at `accepted_at`; no transaction time, nothing
    /// pending.
    pub fn new(probe_id: &'a str, accepted_at: Instant) -> Awaited<'a> {
        Awaited {
            probe_id,
            accepted_at,
            submitting: Duration::ZERO,
            pending: &[],
            domain: "",
        }
    }
}

/// How many UIDs one FETCH of the sweep asks for: the answers to one command stay well within
/// the transport's per-command caps.
const SWEEP_BATCH: usize = 100;
/// The most bytes of the delivered mail's trace fields read (a partial FETCH): well within the
/// transport's literal cap, and far more than any real trace.
pub const HEADER_BYTES: usize = 48 * 1024;
/// The most pending ids looked for in one search (the oldest first); more wait for later rounds.
pub const PENDING_PER_SEARCH: usize = 64;
/// The most time LOGOUT may take (within the deadline): it is a courtesy.
const LOGOUT_GRACE: Duration = Duration::from_millis(500);

/// Waits for the `awaited` mail (and looks for the pending ones). `cap` bounds the whole check
/// (a `/probe` request's deadline), besides `settings.timeout` counted from the acceptance.
pub async fn check(
    settings: &DeliverySettings,
    client: &MailboxClient,
    awaited: Awaited<'_>,
    cap: Option<Instant>,
) -> (DeliveryReport, Option<Failure>) {
    let accepted_at = awaited.accepted_at;
    let mut deadline = accepted_at + settings.timeout;
    if let Some(cap) = cap {
        deadline = deadline.min(cap);
    }
    let mut report = DeliveryReport::default();
    // Kept outside the check: late mail found (and deleted) before a failure still counts.
    let mut late = Late::new(awaited.pending);
    let result = match &settings.access {
        MailboxAccess::Imap(access) => {
            let work = imap_check(access, client, deadline);
            work.run(settings, &awaited, &mut late, &mut report).await
        }
        MailboxAccess::Graph(access) => {
            let work = super::graph::Check::new(access, client, deadline);
            work.run(settings, &awaited, &mut late, &mut report).await
        }
    };
    report.late = late.found;
    match result {
        Ok(()) if report.success && report.junk && settings.junk_is_failure => {
            let failure = Failure::new(
                StepName::Delivery,
                Reason::DeliveredToJunk,
                format!(
                    "the token mail landed in {} (a Junk folder){}",
                    report.mailbox.as_deref().unwrap_or("Junk"),
                    verdict_words(&report.auth)
                ),
            );
            (report, Some(failure))
        }
        Ok(()) if report.success => (report, None),
        Ok(()) => {
            let waited = accepted_at.elapsed();
            let failure = Failure::new(
                StepName::Delivery,
                Reason::DeliveryTimeout,
                format!(
                    "the token mail did not appear in {} within {:.1}s ({} searches)",
                    settings.mailboxes.join(", "),
                    waited.as_secs_f64(),
                    report.polls
                ),
            );
            (report, Some(failure))
        }
        Err(failure) => {
            // The server's misbehaviour decides the verdict, whatever was found before it.
            (report, Some(failure))
        }
    }
}

/// The IMAP side of [`check`].
fn imap_check<'a>(
    access: &'a ImapAccess,
    client: &'a MailboxClient,
    deadline: Instant,
) -> ImapCheck<'a> {
    ImapCheck {
        access,
        client,
        deadline,
    }
}

/// A delivery check over IMAP, ready to run.
struct ImapCheck<'a> {
    access: &'a ImapAccess,
    client: &'a MailboxClient,
    deadline: Instant,
}

impl ImapCheck<'_> {
    /// Logs in, waits for the mail, reads its trace and whether its folder is Junk, cleans up.
    async fn run(
        self,
        settings: &DeliverySettings,
        awaited: &Awaited<'_>,
        late: &mut Late,
        report: &mut DeliveryReport,
    ) -> Result<(), Failure> {
        let mut store = Store::login(self.access, self.client, self.deadline).await?;
        let found = poll(&mut store, settings, awaited, late, report).await?;
        if let Some((mailbox, uid)) = &found {
            // The trace, the verdicts, the folder's use and the cleanup are extras: a refusal
            // or the deadline leaves them out, but a server breaking the protocol fails the
            // check all the same.
            let extra = |what: &str, t: Trouble| {
                if t.is_protocol() {
                    Err(failure(what, t))
                } else {
                    Ok(())
                }
            };
            match store.trace(*uid).await {
                Ok(trace) => report.read_trace(trace, awaited),
                Err(t) => extra("FETCH of the trace fields", t)?,
            }
            match store.is_junk(mailbox).await {
                Ok(junk) => report.junk = junk,
                Err(t) => extra("LIST", t)?,
            }
            if settings.cleanup {
                match store.delete_uids(mailbox, &[*uid]).await {
                    Ok(done) => report.cleaned_up = done,
                    Err(t) => extra("cleanup", t)?,
                }
            }
        }
        store.logout().await;
        Ok(())
    }
}

impl DeliveryReport {
    /// Takes in the delivered mail's trace fields: the hops (when the trace is whole) and the
    /// authentication verdicts.
    pub(crate) fn read_trace(&mut self, trace: Trace, awaited: &Awaited<'_>) {
        let accepted = SystemTime::now() - awaited.accepted_at.elapsed();
        self.hops = match trace.complete {
            true => received::hops(
                &trace.received,
                crate::clock::unix_seconds_f64(accepted),
                awaited.submitting.as_secs_f64(),
            ),
            false => Vec::new(),
        };
        self.received = trace.received;
        self.auth = auth_results::verdicts(&trace.auth_results);
    }

    /// Notes that the awaited mail was found in `mailbox`.
    pub(crate) fn found(&mut self, mailbox: &str, awaited: &Awaited<'_>) {
        self.success = true;
        self.duration = Some(awaited.accepted_at.elapsed());
        self.mailbox = Some(mailbox.to_string());
    }
}

/// `: dkim=fail, spf=pass` when there are verdicts: the usual reason for Junk.
fn verdict_words(auth: &[Verdict]) -> String {
    if auth.is_empty() {
        return String::new();
    }
    let words: Vec<String> = auth
        .iter()
        .map(|v| format!("{}={}", v.method, v.result))
        .collect();
    format!("; authentication results: {}", words.join(", "))
}

/// Whether a mailbox named `name` is a Junk folder by its name alone (servers without RFC 6154
/// special use): its last level is Junk, Spam, Junk E-mail or Bulk Mail, in any case.
pub fn junk_name(name: &str) -> bool {
    let leaf = name.rsplit(['/', '.']).next().unwrap_or(name).trim();
    [
        "junk",
        "spam",
        "junk e-mail",
        "junk email",
        "bulk mail",
        "junkemail",
    ]
    .iter()
    .any(|j| leaf.eq_ignore_ascii_case(j))
}

/// The pending mails of a check: those still to find, and those found.
pub(crate) struct Late {
    /// Still looked for.
    pub(crate) wanted: Vec<String>,
    found: Vec<LateMail>,
}

impl Late {
    fn new(pending: &[String]) -> Late {
        Late {
            wanted: pending.to_vec(),
            found: Vec::new(),
        }
    }

    /// Notes a pending mail that turned up (once per id).
    pub(crate) fn record(&mut self, mail: LateMail) {
        self.wanted
            .retain(|w| !w.eq_ignore_ascii_case(&mail.probe_id));
        if !self.found.iter().any(|m| m.probe_id == mail.probe_id) {
            self.found.push(mail);
        }
    }

    /// Looks for the wanted mails in `mailbox`, and deletes those found right away (with
    /// `cleanup`), while the check still has time.
    async fn look(
        &mut self,
        store: &mut Store,
        mailbox: &str,
        cleanup: bool,
    ) -> Result<(), Trouble> {
        let hits = store.pending(mailbox, &self.wanted).await?;
        if hits.is_empty() {
            return Ok(());
        }
        let mut uids: Vec<u32> = hits.iter().map(|(uid, _, _)| *uid).collect();
        uids.sort_unstable();
        uids.dedup();
        let mut new = Vec::new();
        for (_, id, arrived_at) in hits {
            self.wanted.retain(|w| !w.eq_ignore_ascii_case(&id));
            if !self
                .found
                .iter()
                .chain(&new)
                .any(|m: &LateMail| m.probe_id == id)
            {
                new.push(LateMail {
                    probe_id: id,
                    mailbox: mailbox.to_string(),
                    arrived_at,
                    cleaned_up: false,
                });
            }
        }
        let deleted = match cleanup {
            true => store.delete_uids(mailbox, &uids).await,
            false => Ok(false),
        };
        let done = match deleted {
            Ok(done) => done,
            Err(t) if t.is_protocol() => return Err(t),
            // Found all the same; the sweep deletes it later.
            Err(_) => false,
        };
        for mut mail in new {
            mail.cleaned_up = done;
            self.found.push(mail);
        }
        Ok(())
    }
}

/// The failure for `trouble` during `what`: a protocol or limit violation is
/// `imap_protocol_error`, anything else (refusals, closed connections, no answer in time)
/// `imap_error`.
fn failure(what: &str, trouble: Trouble) -> Failure {
    let (reason, detail) = match &trouble {
        Trouble::Protocol(_) => (Reason::ImapProtocolError, format!("IMAP {what}: {trouble}")),
        Trouble::Deadline => (
            Reason::ImapError,
            format!("the IMAP server did not answer {what} before the deadline"),
        ),
        Trouble::Refused(_) | Trouble::Connection(_) => {
            (Reason::ImapError, format!("IMAP {what}: {trouble}"))
        }
    };
    Failure::new(StepName::Delivery, reason, detail)
}

fn greeting_failure(trouble: Trouble) -> Failure {
    match trouble {
        Trouble::Deadline => imap_error("the IMAP server sent no greeting before the deadline"),
        t => failure("greeting", t),
    }
}

fn imap_error(detail: impl Into<String>) -> Failure {
    Failure::new(StepName::Delivery, Reason::ImapError, detail)
}

/// The outcome of one exchange bounded by the deadline, classified from the transport's facts.
fn settle<T, S>(
    result: Result<Result<T, async_imap::error::Error>, tokio::time::error::Elapsed>,
    stream: &BoundedStream<S>,
) -> Result<T, Trouble> {
    match result {
        Err(_) => Err(stream
            .violation()
            .map(|v| Trouble::of_violation(v, stream))
            .unwrap_or(Trouble::Deadline)),
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Trouble::of(&e, stream)),
    }
}

/// Runs one exchange on `$store` under its deadline, then drops the unsolicited responses it
/// brought (async-imap queues up to 100 of them; the check reads none).
macro_rules! exchange {
    ($store:expr, $op:expr) => {{
        let result = timeout_at($store.deadline.into(), $op).await;
        let settled = settle(result, $store.session.get_ref());
        while $store.session.unsolicited_responses.try_recv().is_ok() {}
        settled
    }};
}

/// What stopped a login.
enum Login {
    /// The server said NO to our credentials.
    Refused(Failure),
    /// Anything else.
    Failed(Failure),
}

impl Login {
    fn into_failure(self) -> Failure {
        match self {
            Login::Refused(f) | Login::Failed(f) => f,
        }
    }
}

impl From<Failure> for Login {
    fn from(f: Failure) -> Login {
        Login::Failed(f)
    }
}

/// SASL XOAUTH2 for async-imap, which hands over challenges decoded and encodes the answers:
/// the initial response carries the token; a later challenge is the server's JSON error, answered
/// with an empty line (the server then says NO).
struct Xoauth2(Option<Vec<u8>>);

impl Xoauth2 {
    fn new(user: &str, token: &Secret) -> Xoauth2 {
        use base64::Engine as _;
        let mut sasl = SaslClient::new(Mechanism::Xoauth2, user, token, "", 0);
        Xoauth2(
            sasl.initial_response()
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok()),
        )
    }
}

impl async_imap::Authenticator for Xoauth2 {
    type Response = Vec<u8>;

    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        self.0.take().unwrap_or_default()
    }
}

type Transport<S> = BoundedStream<S>;
type TlsTransport = Transport<tokio_rustls::client::TlsStream<TcpStream>>;

/// A logged-in IMAP session over the bounded transport, with the deadline of its exchanges.
struct Store {
    session: async_imap::Session<TlsTransport>,
    deadline: Instant,
}

impl Store {
    /// Connects, upgrades to TLS, verifies the chain and logs in: LOGIN with a password,
    /// `AUTHENTICATE XOAUTH2` with a bearer token. A cached OAuth token the server refuses may
    /// have been revoked early: the login is tried once more with a fresh one.
    async fn login(
        access: &ImapAccess,
        client: &MailboxClient,
        deadline: Instant,
    ) -> Result<Store, Failure> {
        let (secret, cached) = client.secret(&access.credential, deadline).await?;
        match Store::connect(access, client, &secret, deadline).await {
            Err(Login::Refused(_)) if cached => {
                if let Some(source) = &client.token_source {
                    source.invalidate_rejected(&secret).await;
                }
                let (fresh, _) = client.secret(&access.credential, deadline).await?;
                Store::connect(access, client, &fresh, deadline)
                    .await
                    .map_err(Login::into_failure)
            }
            other => other.map_err(Login::into_failure),
        }
    }

    async fn connect(
        access: &ImapAccess,
        client: &MailboxClient,
        secret: &Secret,
        deadline: Instant,
    ) -> Result<Store, Login> {
        let within =
            |what: &'static str| move |_| imap_error(format!("IMAP {what} did not finish in time"));
        let addr = (
            access.host.trim_start_matches('[').trim_end_matches(']'),
            access.port,
        );
        let tcp = timeout_at(deadline.into(), TcpStream::connect(addr))
            .await
            .map_err(within("connect"))?
            .map_err(|e| {
                imap_error(format!(
                    "IMAP connect to {}:{}: {e}",
                    access.host, access.port
                ))
            })?;
        let _ = tcp.set_nodelay(true);
        let tcp = match access.tls {
            ImapTls::Implicit => tcp,
            ImapTls::Starttls => {
                let mut imap = Client::new(Transport::new(tcp, Limits::DELIVERY, deadline));
                greeting(&mut imap, deadline)
                    .await
                    .map_err(greeting_failure)?;
                let result = timeout_at(
                    deadline.into(),
                    imap.run_command_and_check_ok("STARTTLS", None),
                )
                .await;
                settle(result, imap.get_ref()).map_err(|t| failure("STARTTLS", t))?;
                // Whatever the server sent after its OK stays behind with the transport.
                imap.into_inner().into_inner()
            }
        };
        let tls = &client.tls;
        let name = tls.server_name_for(&access.host).to_string();
        let (stream, tls_report) = timeout_at(
            deadline.into(),
            tls.handshake(tcp, &name, SystemTime::now()),
        )
        .await
        .map_err(within("TLS handshake"))?
        .map_err(|f| imap_error(format!("IMAP TLS handshake: {}", f.detail)))?;
        if let Some(e) = &tls_report.chain.error {
            if !tls.settings().insecure_skip_verify {
                return Err(Login::Failed(imap_error(format!(
                    "IMAP certificate chain: {} ({})",
                    e.reason, e.detail
                ))));
            }
        }
        let mut imap = Client::new(Transport::new(stream, Limits::DELIVERY, deadline));
        if access.tls == ImapTls::Implicit {
            greeting(&mut imap, deadline)
                .await
                .map_err(greeting_failure)?;
        }
        let user = &access.username;
        let (what, result) = match &access.credential {
            Credential::Password(_) => (
                format!("login as {user}"),
                timeout_at(deadline.into(), imap.login(user, secret.expose())).await,
            ),
            _ => {
                let sasl = Xoauth2::new(user, secret);
                (
                    format!("AUTHENTICATE XOAUTH2 as {user}"),
                    timeout_at(deadline.into(), imap.authenticate("XOAUTH2", sasl)).await,
                )
            }
        };
        match result {
            Err(_) => Err(Login::Failed(failure(&what, Trouble::Deadline))),
            Ok(Err((e, imap))) => match Trouble::of(&e, imap.get_ref()) {
                t @ Trouble::Refused(_) => Err(Login::Refused(failure(&what, t))),
                t => Err(Login::Failed(failure(&what, t))),
            },
            Ok(Ok(session)) => Ok(Store { session, deadline }),
        }
    }

    /// Selects `mailbox` and returns the UIDs there whose probe-id header contains `value`
    /// (all probe mails when it is empty), in ascending order.
    async fn search(&mut self, mailbox: &str, value: &str) -> Result<Vec<u32>, Failure> {
        exchange!(self, self.session.select(mailbox))
            .map_err(|t| failure(&format!("SELECT {mailbox:?}"), t))?;
        // The id is 32 hex characters: nothing to quote or escape.
        let query = format!("HEADER {PROBE_ID_HEADER} \"{value}\"");
        // async-imap gathers the SEARCH answer into a set: at most what the transport lets
        // through for one command (256 KiB of digits).
        let found = exchange!(self, self.session.uid_search(&query))
            .map_err(|t| failure(&format!("SEARCH in {mailbox:?}"), t))?;
        let mut uids: Vec<u32> = found.into_iter().collect();
        uids.sort_unstable();
        Ok(uids)
    }

    /// The trace fields of `uid` in the selected mailbox: one partial FETCH of its
    /// `Received:` and `Authentication-Results:` fields, each kept bounded and printable.
    async fn trace(&mut self, uid: u32) -> Result<Trace, Trouble> {
        let query =
            format!("BODY.PEEK[HEADER.FIELDS (RECEIVED AUTHENTICATION-RESULTS)]<0.{HEADER_BYTES}>");
        let session = &mut self.session;
        let work = async {
            let mut fetches = session.uid_fetch(uid.to_string(), &query).await?;
            // Answers about other messages (flag changes) may come too: keep ours only.
            let mut raw: Option<Vec<u8>> = None;
            while let Some(fetch) = fetches.try_next().await? {
                if raw.is_none() && fetch.uid == Some(uid) {
                    raw = Some(fetch.header().unwrap_or_default().to_vec());
                }
            }
            Ok(raw.unwrap_or_default())
        };
        let mut raw = exchange!(self, work)?;
        // A block cut at the partial fetch's end lost its last field (maybe half of it) and
        // whatever came after: the oldest hops.
        let mut complete = raw.len() < HEADER_BYTES;
        if !complete {
            let cut = raw
                .windows(2)
                .rposition(|w| w[0] == b'\n' && !matches!(w[1], b' ' | b'\t'))
                .map_or(0, |i| i + 1);
            raw.truncate(cut);
        }
        // Kept with the outcome and shown later: as bounded and printable as any server text.
        let kept = |name: &str| -> (Vec<String>, bool) {
            let all = headers::unfold(&raw, name);
            let whole = all.len() <= MAX_FIELDS;
            let fields = all
                .into_iter()
                .take(MAX_FIELDS)
                .map(|f| printable(f.as_bytes(), MAX_FIELD_TEXT))
                .collect();
            (fields, whole)
        };
        let (received, all_received) = kept("received");
        let (auth_results, _) = kept("authentication-results");
        complete &= all_received;
        Ok(Trace {
            received,
            auth_results,
            complete,
        })
    }

    /// Whether `mailbox` is a Junk folder: it has the `\Junk` special use (RFC 6154), or a
    /// Junk name.
    async fn is_junk(&mut self, mailbox: &str) -> Result<bool, Trouble> {
        if junk_name(mailbox) {
            return Ok(true);
        }
        let pattern = quoted(mailbox);
        let session = &mut self.session;
        exchange!(self, async {
            let mut names = std::pin::pin!(session.list(Some(""), Some(&pattern)).await?);
            let mut junk = false;
            while let Some(name) = names.try_next().await? {
                junk |= name
                    .attributes()
                    .iter()
                    .any(|a| matches!(a, async_imap::types::NameAttribute::Junk));
            }
            Ok(junk)
        })
    }

    /// Looks for the pending ids in `mailbox`: the UIDs that carry them, with the id each
    /// carries and its INTERNALDATE. Selects the mailbox.
    async fn pending(
        &mut self,
        mailbox: &str,
        wanted: &[String],
    ) -> Result<Vec<(u32, String, Option<i64>)>, Trouble> {
        exchange!(self, self.session.select(mailbox))?;
        let mut out = Vec::new();
        for ids in wanted.chunks(PENDING_PER_SEARCH) {
            // Ids are 32 hex digits (checked where they are kept): nothing to quote.
            let mut query = "OR ".repeat(ids.len() - 1);
            for id in ids {
                query.push_str(&format!("HEADER {PROBE_ID_HEADER} \"{id}\" "));
            }
            let found = exchange!(self, self.session.uid_search(query.trim_end()))?;
            let mut uids: Vec<u32> = found.into_iter().collect();
            uids.sort_unstable();
            for batch in uids.chunks(SWEEP_BATCH) {
                let set = uid_set(batch);
                // The newest Received: field is the mailbox server's own stamp of the delivery;
                // INTERNALDATE, which some servers set from the envelope, only if it is absent.
                let query = format!(
                    "(INTERNALDATE BODY.PEEK[HEADER.FIELDS ({PROBE_ID_HEADER} RECEIVED)]<0.{HEADER_BYTES}>)"
                );
                let session = &mut self.session;
                let work = async {
                    let mut fetches = session.uid_fetch(&set, &query).await?;
                    let mut seen = Vec::new();
                    while let Some(f) = fetches.try_next().await? {
                        let Some(uid) = f.uid.filter(|u| batch.binary_search(u).is_ok()) else {
                            continue;
                        };
                        let header = f.header().unwrap_or_default();
                        let id = headers::unfold(header, PROBE_ID_HEADER)
                            .into_iter()
                            .find(|v| ids.iter().any(|w| w.eq_ignore_ascii_case(v)));
                        if let Some(id) = id {
                            let stamped = headers::unfold(header, "received")
                                .first()
                                .and_then(|r| received::parse(r).date);
                            let arrived =
                                stamped.or_else(|| f.internal_date().map(|d| d.timestamp()));
                            seen.push((uid, id.to_ascii_lowercase(), arrived));
                        }
                    }
                    Ok(seen)
                };
                out.extend(exchange!(self, work)?);
            }
        }
        Ok(out)
    }

    /// Of `uids` in the selected mailbox, those that are our own probe mails (a 32-hex-digit
    /// probe id not in `spare`, From `from`) with an internal date before `cutoff` (Unix
    /// seconds).
    async fn stale_probe_mails(
        &mut self,
        uids: &[u32],
        from: &Mailbox,
        cutoff: i64,
        spare: &[String],
    ) -> Result<Vec<u32>, Trouble> {
        let set = uid_set(uids);
        let query = format!("(INTERNALDATE BODY.PEEK[HEADER.FIELDS (FROM {PROBE_ID_HEADER})])");
        let from = from.as_str().to_ascii_lowercase();
        let session = &mut self.session;
        let work = async {
            let mut fetches = session.uid_fetch(&set, &query).await?;
            let mut ours = Vec::new();
            while let Some(f) = fetches.try_next().await? {
                let Some(uid) = f.uid.filter(|u| uids.binary_search(u).is_ok()) else {
                    continue;
                };
                let old = f
                    .internal_date()
                    .map(|d| d.timestamp() < cutoff)
                    .unwrap_or(false);
                let header = f.header().unwrap_or_default();
                let id_ok = headers::unfold(header, PROBE_ID_HEADER).iter().any(|v| {
                    v.len() == 32
                        && v.bytes().all(|b| b.is_ascii_hexdigit())
                        && !spare.iter().any(|s| s.eq_ignore_ascii_case(v))
                });
                let from_ok = headers::unfold(header, "from")
                    .iter()
                    .any(|v| v.to_ascii_lowercase().contains(&from));
                if old && id_ok && from_ok && !ours.contains(&uid) {
                    ours.push(uid);
                }
            }
            Ok(ours)
        };
        exchange!(self, work)
    }

    /// Deletes exactly these UIDs from `mailbox`. Returns whether they were expunged.
    async fn delete_uids(&mut self, mailbox: &str, uids: &[u32]) -> Result<bool, Trouble> {
        if uids.is_empty() {
            return Ok(false);
        }
        let set = uid_set(uids);
        exchange!(self, self.session.select(mailbox))?;
        let caps = exchange!(self, self.session.capabilities())?;
        let session = &mut self.session;
        exchange!(self, async {
            let mut answers = session.uid_store(&set, "+FLAGS.SILENT (\\Deleted)").await?;
            while answers.try_next().await?.is_some() {}
            Ok(())
        })?;
        if !caps.has_str("UIDPLUS") {
            // Without UIDPLUS, EXPUNGE would also remove mail someone else flagged: leave it
            // flagged.
            return Ok(false);
        }
        let session = &mut self.session;
        exchange!(self, async {
            let mut answers = std::pin::pin!(session.uid_expunge(&set).await?);
            while answers.try_next().await?.is_some() {}
            Ok(())
        })?;
        Ok(true)
    }

    /// Says LOGOUT, briefly and within the deadline; a connection the server spoiled is just
    /// dropped.
    async fn logout(mut self) {
        if self.session.get_ref().violation().is_some() {
            return;
        }
        let until = self.deadline.min(Instant::now() + LOGOUT_GRACE);
        let _ = timeout_at(until.into(), self.session.logout()).await;
    }
}

/// Reads the server's untagged greeting (there is none after STARTTLS): `* OK` or `* PREAUTH`.
async fn greeting<S>(client: &mut Client<Transport<S>>, deadline: Instant) -> Result<(), Trouble>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    let response = timeout_at(deadline.into(), client.read_response()).await;
    let stream = client.get_ref();
    let response = match response {
        Err(_) => return Err(Trouble::Deadline),
        Ok(Err(e)) => return Err(Trouble::of(&async_imap::error::Error::Io(e), stream)),
        Ok(Ok(None)) => {
            return Err(Trouble::Connection(
                "the server closed the connection without a greeting".into(),
            ))
        }
        Ok(Ok(Some(response))) => response,
    };
    let shown = || stream.shown_last_line(crate::imap::SHOWN_TEXT);
    match response.parsed() {
        Response::Data {
            status: Status::Ok | Status::PreAuth,
            ..
        } => Ok(()),
        Response::Data {
            status: Status::Bye,
            ..
        } => Err(Trouble::Refused(shown())),
        _ => Err(Trouble::Protocol(format!(
            "the server's greeting is not an untagged OK (line: {})",
            shown()
        ))),
    }
}

/// Searches every mailbox, with backoff, until the mail shows up or the deadline passes; each
/// round also looks for the pending mails still missing.
/// A mailbox that does not exist is an error at once: waiting would only hide it. So is a
/// search the server does not answer before the deadline: the mail may well be there.
async fn poll(
    store: &mut Store,
    settings: &DeliverySettings,
    awaited: &Awaited<'_>,
    late: &mut Late,
    report: &mut DeliveryReport,
) -> Result<Option<(String, u32)>, Failure> {
    let deadline = store.deadline;
    let mut pause = Duration::from_millis(100);
    loop {
        report.polls += 1;
        let mut found = None;
        for mailbox in &settings.mailboxes {
            let uids = store.search(mailbox, awaited.probe_id).await?;
            if let Some(&uid) = uids.first() {
                report.found(mailbox, awaited);
                found = Some((mailbox.clone(), uid));
                break;
            }
        }
        if !late.wanted.is_empty() {
            let mut complete = true;
            for mailbox in &settings.mailboxes {
                match late.look(store, mailbox, settings.cleanup).await {
                    Ok(()) => {}
                    Err(t) if t.is_protocol() => {
                        return Err(failure(&format!("search for late mail in {mailbox:?}"), t))
                    }
                    // Not this round: they stay pending, and the next probe looks again.
                    Err(_) => complete = false,
                }
            }
            if complete {
                report.pending_searched_at = Some(SystemTime::now());
            }
        } else {
            report.pending_searched_at = Some(SystemTime::now());
        }
        if found.is_some() {
            return Ok(found);
        }
        let now = Instant::now();
        if now + pause >= deadline {
            tokio::time::sleep_until(deadline.into()).await;
            return Ok(None);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 3 / 2).min(Duration::from_secs(5));
    }
}

/// A quoted string (RFC 3501 §4.3) of `text`; line breaks are rejected where mailbox names are
/// configured.
fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The trace fields of a delivered mail, bounded and printable.
pub(crate) struct Trace {
    /// `Received:` values, newest first.
    pub(crate) received: Vec<String>,
    /// `Authentication-Results:` values, newest first.
    pub(crate) auth_results: Vec<String>,
    /// Whether `received` is the whole trace.
    pub(crate) complete: bool,
}

impl Trace {
    /// The trace fields among `fields` (name, value pairs as a mail API lists them), kept as
    /// bounded as those read over IMAP.
    pub(crate) fn of_fields<'a>(fields: impl Iterator<Item = (&'a str, &'a str)>) -> Trace {
        let mut trace = Trace {
            received: Vec::new(),
            auth_results: Vec::new(),
            complete: true,
        };
        for (name, value) in fields {
            let shown = || printable(value.as_bytes(), MAX_FIELD_TEXT);
            if name.eq_ignore_ascii_case("received") {
                match trace.received.len() < MAX_FIELDS {
                    true => trace.received.push(shown()),
                    false => trace.complete = false,
                }
            } else if name.eq_ignore_ascii_case("authentication-results")
                && trace.auth_results.len() < MAX_FIELDS
            {
                trace.auth_results.push(shown());
            }
        }
        trace
    }
}

/// An IMAP sequence set naming exactly these UIDs.
fn uid_set(uids: &[u32]) -> String {
    uids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Deletes our own probe mails older than `older_than` from every configured mailbox: mails
/// whose probe-id header is a 32-hex-digit id and whose From is `from`, except those in
/// `spare` (mails still awaited, which a later probe will count late and clean up). Returns
/// how many.
/// Candidates are fetched in batches of [`SWEEP_BATCH`], so one command's answers stay small.
pub async fn sweep(
    settings: &DeliverySettings,
    client: &MailboxClient,
    from: &Mailbox,
    older_than: Duration,
    spare: &[String],
    deadline: Instant,
) -> Result<usize, Failure> {
    let access = match &settings.access {
        MailboxAccess::Imap(access) => access,
        MailboxAccess::Graph(access) => {
            let work =
                super::graph::sweep(settings, access, client, from, older_than, spare, deadline);
            return Box::pin(work).await;
        }
    };
    let mut store = Store::login(access, client, deadline).await?;
    let cutoff = SystemTime::now()
        .checked_sub(older_than)
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut deleted = 0;
    for mailbox in &settings.mailboxes {
        let candidates = store.search(mailbox, "").await?;
        let mut ours = Vec::new();
        for batch in candidates.chunks(SWEEP_BATCH) {
            ours.extend(
                store
                    .stale_probe_mails(batch, from, cutoff, spare)
                    .await
                    .map_err(|t| failure(&format!("FETCH in {mailbox:?}"), t))?,
            );
        }
        store
            .delete_uids(mailbox, &ours)
            .await
            .map_err(|t| failure(&format!("delete in {mailbox:?}"), t))?;
        deleted += ours.len();
    }
    store.logout().await;
    Ok(deleted)
}
