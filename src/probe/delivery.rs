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

use std::time::{Duration, Instant, SystemTime};

use async_imap::imap_proto::{Response, Status};
use async_imap::Client;
use futures::TryStreamExt as _;
use tokio::net::TcpStream;
use tokio::time::timeout_at;

use super::module::{DeliverySettings, ImapTls};
use super::token::PROBE_ID_HEADER;
use crate::imap::{BoundedStream, Limits, Trouble};
use crate::printable::printable;
use crate::smtp::command::Mailbox;
use crate::smtp::transcript::Failure;
use crate::tls::TlsClient;
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
    /// The `Received:` headers of the delivered mail, newest first, unfolded: the hops it took
    /// (kept so that per-hop timing needs no second round trip).
    pub received: Vec<String>,
    /// How many searches it took.
    pub polls: u32,
    /// Whether our mail was deleted afterwards.
    pub cleaned_up: bool,
}

/// How many UIDs one FETCH of the sweep asks for: the answers to one command stay well within
/// the transport's per-command caps.
const SWEEP_BATCH: usize = 100;
/// The most `Received:` headers kept, and the most bytes of each.
const MAX_HOPS: usize = 32;
const MAX_HOP_TEXT: usize = 1024;
/// The most time LOGOUT may take (within the deadline): it is a courtesy.
const LOGOUT_GRACE: Duration = Duration::from_millis(500);

/// Waits for the mail carrying `probe_id`. `accepted_at` is when the message's final 2xx came;
/// `cap` bounds the whole check (a `/probe` request's deadline), besides `settings.timeout`.
pub async fn check(
    settings: &DeliverySettings,
    tls: &TlsClient,
    probe_id: &str,
    accepted_at: Instant,
    cap: Option<Instant>,
) -> (DeliveryReport, Option<Failure>) {
    let mut deadline = accepted_at + settings.timeout;
    if let Some(cap) = cap {
        deadline = deadline.min(cap);
    }
    let mut report = DeliveryReport::default();
    let result = async {
        let mut store = Store::login(settings, tls, deadline).await?;
        let found = poll(&mut store, settings, probe_id, accepted_at, &mut report).await?;
        if let Some((mailbox, uid)) = &found {
            // The hops and the cleanup are extras: a refusal or the deadline leaves them out,
            // but a server breaking the protocol fails the check all the same.
            match store.received_headers(*uid).await {
                Ok(received) => report.received = received,
                Err(t) if t.is_protocol() => {
                    return Err(failure("FETCH of the Received headers", t))
                }
                Err(_) => {}
            }
            if settings.cleanup {
                match store.delete_uids(mailbox, &[*uid]).await {
                    Ok(done) => report.cleaned_up = done,
                    Err(t) if t.is_protocol() => return Err(failure("cleanup", t)),
                    Err(_) => {}
                }
            }
        }
        store.logout().await;
        Ok(())
    }
    .await;
    match result {
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

type Transport<S> = BoundedStream<S>;
type TlsTransport = Transport<tokio_rustls::client::TlsStream<TcpStream>>;

/// A logged-in IMAP session over the bounded transport, with the deadline of its exchanges.
struct Store {
    session: async_imap::Session<TlsTransport>,
    deadline: Instant,
}

impl Store {
    /// Connects, upgrades to TLS, verifies the chain and logs in.
    async fn login(
        settings: &DeliverySettings,
        tls: &TlsClient,
        deadline: Instant,
    ) -> Result<Store, Failure> {
        let within =
            |what: &'static str| move |_| imap_error(format!("IMAP {what} did not finish in time"));
        let addr = (
            settings.host.trim_start_matches('[').trim_end_matches(']'),
            settings.port,
        );
        let tcp = timeout_at(deadline.into(), TcpStream::connect(addr))
            .await
            .map_err(within("connect"))?
            .map_err(|e| {
                imap_error(format!(
                    "IMAP connect to {}:{}: {e}",
                    settings.host, settings.port
                ))
            })?;
        let _ = tcp.set_nodelay(true);
        let tcp = match settings.tls {
            ImapTls::Implicit => tcp,
            ImapTls::Starttls => {
                let mut client = Client::new(Transport::new(tcp, Limits::DELIVERY, deadline));
                greeting(&mut client, deadline)
                    .await
                    .map_err(greeting_failure)?;
                let result = timeout_at(
                    deadline.into(),
                    client.run_command_and_check_ok("STARTTLS", None),
                )
                .await;
                settle(result, client.get_ref()).map_err(|t| failure("STARTTLS", t))?;
                // Whatever the server sent after its OK stays behind with the transport.
                client.into_inner().into_inner()
            }
        };
        let name = tls.server_name_for(&settings.host).to_string();
        let (stream, tls_report) = timeout_at(
            deadline.into(),
            tls.handshake(tcp, &name, SystemTime::now()),
        )
        .await
        .map_err(within("TLS handshake"))?
        .map_err(|f| imap_error(format!("IMAP TLS handshake: {}", f.detail)))?;
        if let Some(e) = &tls_report.chain.error {
            if !tls.settings().insecure_skip_verify {
                return Err(imap_error(format!(
                    "IMAP certificate chain: {} ({})",
                    e.reason, e.detail
                )));
            }
        }
        let mut client = Client::new(Transport::new(stream, Limits::DELIVERY, deadline));
        if settings.tls == ImapTls::Implicit {
            greeting(&mut client, deadline)
                .await
                .map_err(greeting_failure)?;
        }
        let what = format!("login as {}", settings.username);
        match timeout_at(
            deadline.into(),
            client.login(&settings.username, settings.password.expose()),
        )
        .await
        {
            Err(_) => Err(failure(&what, Trouble::Deadline)),
            Ok(Err((e, client))) => Err(failure(&what, Trouble::of(&e, client.get_ref()))),
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

    /// The unfolded `Received:` headers of `uid` in the selected mailbox.
    async fn received_headers(&mut self, uid: u32) -> Result<Vec<String>, Trouble> {
        let session = &mut self.session;
        let work = async {
            let mut fetches = session
                .uid_fetch(uid.to_string(), "BODY.PEEK[HEADER.FIELDS (RECEIVED)]")
                .await?;
            // Answers about other messages (flag changes) may come too: keep ours only.
            let mut raw: Option<Vec<u8>> = None;
            while let Some(fetch) = fetches.try_next().await? {
                if raw.is_none() && fetch.uid == Some(uid) {
                    raw = Some(fetch.header().unwrap_or_default().to_vec());
                }
            }
            Ok(raw.unwrap_or_default())
        };
        let raw = exchange!(self, work)?;
        // Kept with the outcome and shown later: as bounded and printable as any server text.
        Ok(unfold_headers(&raw, "received")
            .into_iter()
            .take(MAX_HOPS)
            .map(|hop| printable(hop.as_bytes(), MAX_HOP_TEXT))
            .collect())
    }

    /// Of `uids` in the selected mailbox, those that are our own probe mails (a 32-hex-digit
    /// probe id, From `from`) with an internal date before `cutoff` (Unix seconds).
    async fn stale_probe_mails(
        &mut self,
        uids: &[u32],
        from: &Mailbox,
        cutoff: i64,
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
                let id_ok = unfold_headers(header, PROBE_ID_HEADER)
                    .iter()
                    .any(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()));
                let from_ok = unfold_headers(header, "from")
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

/// Searches every mailbox, with backoff, until the mail shows up or the deadline passes.
/// A mailbox that does not exist is an error at once: waiting would only hide it. So is a
/// search the server does not answer before the deadline: the mail may well be there.
async fn poll(
    store: &mut Store,
    settings: &DeliverySettings,
    probe_id: &str,
    accepted_at: Instant,
    report: &mut DeliveryReport,
) -> Result<Option<(String, u32)>, Failure> {
    let deadline = store.deadline;
    let mut pause = Duration::from_millis(100);
    loop {
        report.polls += 1;
        for mailbox in &settings.mailboxes {
            let uids = store.search(mailbox, probe_id).await?;
            if let Some(&uid) = uids.first() {
                report.success = true;
                report.duration = Some(accepted_at.elapsed());
                report.mailbox = Some(mailbox.clone());
                return Ok(Some((mailbox.clone(), uid)));
            }
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

/// An IMAP sequence set naming exactly these UIDs.
fn uid_set(uids: &[u32]) -> String {
    uids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The values of every header `name` (case-insensitive) in a header block, continuation lines
/// joined (RFC 5322 §2.2.3).
pub fn unfold_headers(raw: &[u8], name: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(raw);
    let mut out: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        if line.starts_with([' ', '\t']) {
            if let Some(c) = current.as_mut() {
                c.push(' ');
                c.push_str(line.trim());
            }
            continue;
        }
        if let Some(c) = current.take() {
            out.push(c);
        }
        if let Some((field, value)) = line.split_once(':') {
            if field.trim().eq_ignore_ascii_case(name) {
                current = Some(value.trim().to_string());
            }
        }
    }
    out.extend(current);
    out
}

/// Deletes our own probe mails older than `older_than` from every configured mailbox: mails
/// whose probe-id header is a 32-hex-digit id and whose From is `from`. Returns how many.
/// Candidates are fetched in batches of [`SWEEP_BATCH`], so one command's answers stay small.
pub async fn sweep(
    settings: &DeliverySettings,
    tls: &TlsClient,
    from: &Mailbox,
    older_than: Duration,
    deadline: Instant,
) -> Result<usize, Failure> {
    let mut store = Store::login(settings, tls, deadline).await?;
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
                    .stale_probe_mails(batch, from, cutoff)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfolds_received_headers() {
        let raw = b"Received: from mx1 (mx1 [127.0.0.1])\r\n\tby mx2 with ESMTPS id 1;\r\n Sun, 22 Nov 2026 08:00:00 +0000\r\nSubject: x\r\nreceived: by mx1; Sun, 22 Nov 2026 07:59:59 +0000\r\n\r\n";
        assert_eq!(
            unfold_headers(raw, "Received"),
            vec![
                "from mx1 (mx1 [127.0.0.1]) by mx2 with ESMTPS id 1; Sun, 22 Nov 2026 08:00:00 +0000".to_string(),
                "by mx1; Sun, 22 Nov 2026 07:59:59 +0000".to_string(),
            ]
        );
        assert!(unfold_headers(b"", "received").is_empty());
    }
}
