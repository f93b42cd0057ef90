//! The delivery check (DESIGN §4 `delivery:`): after the server accepted the token mail, log in
//! over IMAP (RFC 3501; implicit TLS per RFC 8314 or STARTTLS) and look for the mail by its
//! probe-id header in the configured mailboxes until it shows up or the delivery timeout passes.
//!
//! Cleanup never loses data: only messages whose `X-Smtp-Prober-Id` header carries *this* probe's
//! id are deleted, with `UID EXPUNGE` (RFC 4315 UIDPLUS) of exactly their UIDs, so messages a
//! person flagged `\Deleted` elsewhere in the mailbox are not expunged with ours. A server
//! without UIDPLUS gets its probe mail flagged, never expunged. The sweep of stale probe mails
//! applies the same rule, and also requires the From address of the module.

use std::time::{Duration, Instant, SystemTime};

use async_imap::Client;
use futures::TryStreamExt as _;
use tokio::net::TcpStream;
use tokio::time::timeout_at;

use super::module::{DeliverySettings, ImapTls};
use super::token::PROBE_ID_HEADER;
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

type ImapSession = async_imap::Session<tokio_rustls::client::TlsStream<TcpStream>>;

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
        let mut session = login(settings, tls, deadline).await?;
        let found = poll(
            &mut session,
            settings,
            probe_id,
            accepted_at,
            deadline,
            &mut report,
        )
        .await;
        if let Ok(Some((mailbox, uid))) = &found {
            if settings.cleanup {
                report.cleaned_up =
                    timeout_at(deadline.into(), delete_uids(&mut session, mailbox, &[*uid]))
                        .await
                        .map(|r| r.unwrap_or(false))
                        .unwrap_or(false);
            }
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), session.logout()).await;
        found.map(|_| ())
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
        Err(failure) => (report, Some(failure)),
    }
}

fn imap_error(detail: impl Into<String>) -> Failure {
    Failure::new(StepName::Delivery, Reason::ImapError, detail)
}

/// Connects, upgrades to TLS, verifies the chain and logs in.
async fn login(
    settings: &DeliverySettings,
    tls: &TlsClient,
    deadline: Instant,
) -> Result<ImapSession, Failure> {
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
            let mut client = Client::new(tcp);
            read_greeting(&mut client, deadline).await?;
            timeout_at(
                deadline.into(),
                client.run_command_and_check_ok("STARTTLS", None),
            )
            .await
            .map_err(within("STARTTLS"))?
            .map_err(|e| imap_error(format!("IMAP STARTTLS refused: {e}")))?;
            client.into_inner()
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
    let mut client = Client::new(stream);
    if settings.tls == ImapTls::Implicit {
        read_greeting(&mut client, deadline).await?;
    }
    timeout_at(
        deadline.into(),
        client.login(&settings.username, settings.password.expose()),
    )
    .await
    .map_err(within("login"))?
    .map_err(|(e, _)| imap_error(format!("IMAP login as {} failed: {e}", settings.username)))
}

/// Reads the server's untagged greeting (there is none after STARTTLS).
async fn read_greeting<T>(client: &mut Client<T>, deadline: Instant) -> Result<(), Failure>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    match timeout_at(deadline.into(), client.read_response()).await {
        Err(_) => Err(imap_error("IMAP greeting did not arrive in time")),
        Ok(Ok(Some(_))) => Ok(()),
        Ok(_) => Err(imap_error("IMAP server sent no greeting")),
    }
}

/// Searches every mailbox, with backoff, until the mail shows up or the deadline passes.
/// A mailbox that does not exist is an error at once: waiting would only hide it.
async fn poll(
    session: &mut ImapSession,
    settings: &DeliverySettings,
    probe_id: &str,
    accepted_at: Instant,
    deadline: Instant,
    report: &mut DeliveryReport,
) -> Result<Option<(String, u32)>, Failure> {
    let mut pause = Duration::from_millis(100);
    loop {
        report.polls += 1;
        for mailbox in &settings.mailboxes {
            let found = timeout_at(deadline.into(), search(session, mailbox, probe_id)).await;
            let uids = match found {
                Err(_) => return Ok(None),
                Ok(Err(e)) => return Err(e),
                Ok(Ok(uids)) => uids,
            };
            if let Some(&uid) = uids.first() {
                report.success = true;
                report.duration = Some(accepted_at.elapsed());
                report.mailbox = Some(mailbox.clone());
                if let Ok(Ok(received)) =
                    timeout_at(deadline.into(), received_headers(session, uid)).await
                {
                    report.received = received;
                }
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

/// The UIDs in `mailbox` whose probe-id header is exactly `probe_id`.
async fn search(
    session: &mut ImapSession,
    mailbox: &str,
    probe_id: &str,
) -> Result<Vec<u32>, Failure> {
    session
        .select(mailbox)
        .await
        .map_err(|e| imap_error(format!("IMAP SELECT {mailbox:?}: {e}")))?;
    // The id is 32 hex characters: nothing to quote or escape.
    let query = format!("HEADER {PROBE_ID_HEADER} {probe_id}");
    let mut uids: Vec<u32> = session
        .uid_search(&query)
        .await
        .map_err(|e| imap_error(format!("IMAP SEARCH in {mailbox:?}: {e}")))?
        .into_iter()
        .collect();
    uids.sort_unstable();
    Ok(uids)
}

async fn received_headers(
    session: &mut ImapSession,
    uid: u32,
) -> Result<Vec<String>, async_imap::error::Error> {
    let fetched: Vec<_> = session
        .uid_fetch(uid.to_string(), "BODY.PEEK[HEADER.FIELDS (RECEIVED)]")
        .await?
        .try_collect()
        .await?;
    let raw = fetched.first().and_then(|f| f.header()).unwrap_or_default();
    Ok(unfold_headers(raw, "received"))
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

/// Deletes exactly these UIDs from the selected `mailbox`. Returns whether they were expunged.
async fn delete_uids(
    session: &mut ImapSession,
    mailbox: &str,
    uids: &[u32],
) -> Result<bool, async_imap::error::Error> {
    if uids.is_empty() {
        return Ok(false);
    }
    let set = uids
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    session.select(mailbox).await?;
    let caps = session.capabilities().await?;
    let _: Vec<_> = session
        .uid_store(&set, "+FLAGS.SILENT (\\Deleted)")
        .await?
        .try_collect()
        .await?;
    if !caps.has_str("UIDPLUS") {
        // Without UIDPLUS, EXPUNGE would also remove mail someone else flagged: leave it flagged.
        return Ok(false);
    }
    let _: Vec<_> = session.uid_expunge(&set).await?.try_collect().await?;
    Ok(true)
}

/// Deletes our own probe mails older than `older_than` from every configured mailbox: mails
/// whose probe-id header is a 32-hex-digit id and whose From is `from`. Returns how many.
pub async fn sweep(
    settings: &DeliverySettings,
    tls: &TlsClient,
    from: &Mailbox,
    older_than: Duration,
    deadline: Instant,
) -> Result<usize, Failure> {
    let mut session = login(settings, tls, deadline).await?;
    let cutoff = SystemTime::now()
        .checked_sub(older_than)
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut deleted = 0;
    for mailbox in &settings.mailboxes {
        let work = async {
            session
                .select(mailbox)
                .await
                .map_err(|e| imap_error(format!("IMAP SELECT {mailbox:?}: {e}")))?;
            let candidates: Vec<u32> = session
                .uid_search(format!("HEADER {PROBE_ID_HEADER} \"\""))
                .await
                .map_err(|e| imap_error(format!("IMAP SEARCH in {mailbox:?}: {e}")))?
                .into_iter()
                .collect();
            if candidates.is_empty() {
                return Ok(0);
            }
            let set = candidates
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let query = format!("(INTERNALDATE BODY.PEEK[HEADER.FIELDS (FROM {PROBE_ID_HEADER})])");
            let fetched: Vec<_> = session
                .uid_fetch(&set, &query)
                .await
                .map_err(|e| imap_error(format!("IMAP FETCH: {e}")))?
                .try_collect()
                .await
                .map_err(|e| imap_error(format!("IMAP FETCH: {e}")))?;
            let ours: Vec<u32> = fetched
                .iter()
                .filter(|f| {
                    let old = f
                        .internal_date()
                        .map(|d| d.timestamp() < cutoff)
                        .unwrap_or(false);
                    let header = f.header().unwrap_or_default();
                    let id_ok = unfold_headers(header, PROBE_ID_HEADER)
                        .iter()
                        .any(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()));
                    let from_ok = unfold_headers(header, "from").iter().any(|v| {
                        v.to_ascii_lowercase()
                            .contains(&from.as_str().to_ascii_lowercase())
                    });
                    old && id_ok && from_ok
                })
                .filter_map(|f| f.uid)
                .collect();
            let n = ours.len();
            delete_uids(&mut session, mailbox, &ours)
                .await
                .map_err(|e| imap_error(format!("IMAP delete: {e}")))?;
            Ok::<usize, Failure>(n)
        };
        deleted += timeout_at(deadline.into(), work)
            .await
            .map_err(|_| imap_error("IMAP sweep did not finish in time"))??;
    }
    let _ = tokio::time::timeout(Duration::from_millis(500), session.logout()).await;
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
