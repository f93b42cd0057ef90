//! Hostile IMAP servers against the delivery check: each case is a scripted in-process server
//! (implicit TLS on 127.0.0.1:0, the demo PKI) that answers normally up to one command and then
//! misbehaves. Every case asserts the reason, a short printable detail, the wall time within the
//! deadline plus 100 ms, and a memory ceiling.
//!
//! Memory is measured as the peak of heap bytes live on the thread that runs the check
//! (allocation-counter's per-thread counts): the check runs alone on a current-thread runtime,
//! the server on a thread of its own, so neither the server's buffers nor tests running in
//! parallel count, and a figure does not depend on what the allocator keeps from earlier tests
//! (as process RSS would). Everything the check holds (async-imap's buffer, the transport's,
//! the TLS session's, what the check collects) is allocated on that thread.

mod support;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::PrivateKeyDer;
use smtp_prober::demo::pki::{DemoPki, Sent};
use smtp_prober::probe::delivery::{self, Awaited, DeliveryReport, MailboxClient};
use smtp_prober::probe::module::{
    Credential, DeliverySettings, ImapAccess, ImapTls, MailboxAccess,
};
use smtp_prober::secret::Secret;
use smtp_prober::smtp::command::Mailbox;
use smtp_prober::smtp::transcript::Failure;
use smtp_prober::tls::TlsSettings;
use smtp_prober::vocab::{Reason, StepName};
use support::measure::measured;
use tokio::io::{AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// The most heap a delivery check may hold at once against any of these servers. A healthy
/// check holds well under this (see `a_well_behaved_server_passes`); before the transport was
/// bounded, these servers made it hold hundreds of megabytes to gigabytes.
const HEAP_CEILING: u64 = 4 * 1024 * 1024;
/// How long past its deadline a check may take.
const GRACE: Duration = Duration::from_millis(100);
const PROBE_ID: &str = "0123456789abcdef0123456789abcdef";
/// An earlier probe's mail, pending: the scripted server has it as UID 8.
const PENDING_ID: &str = "fedcba9876543210fedcba9876543210";

/// The command after which the server misbehaves.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum At {
    Greeting,
    Starttls,
    Login,
    Select,
    Search,
    Fetch,
    List,
}

/// How it misbehaves.
#[derive(Clone, Debug)]
enum Act {
    /// These bytes, over and over, as fast as the client takes them.
    Endless(Vec<u8>),
    /// These bytes, then silence with the connection open.
    Raw(Vec<u8>),
    /// One byte of these every interval, forever.
    Drip(Vec<u8>, Duration),
    /// Nothing at all, with the connection open.
    Silent,
}

#[derive(Clone, Debug)]
struct Fault {
    at: At,
    act: Act,
}

/// What a scripted server does besides answering normally.
#[derive(Clone, Debug, Default)]
struct Script {
    fault: Option<Fault>,
    /// A plaintext greeting and STARTTLS (these bytes sent right behind its OK) instead of
    /// implicit TLS.
    starttls: Option<Vec<u8>>,
    /// Stale probe mails, UIDs 1 to n, that the sweep's search finds.
    stale: u32,
    /// The header block FETCH answers with, instead of one `Received:` header.
    received: Option<String>,
    /// The attributes LIST gives the mailbox.
    list_attributes: Option<&'static str>,
}

impl Script {
    fn faulty(&self, at: At) -> Option<Act> {
        self.fault
            .as_ref()
            .filter(|f| f.at == at)
            .map(|f| f.act.clone())
    }
}

fn fault(at: At, act: Act) -> Script {
    Script {
        fault: Some(Fault { at, act }),
        ..Script::default()
    }
}

/// What a scripted server was asked for.
#[derive(Debug, Default)]
struct Seen {
    /// How many UIDs each FETCH of the sweep named.
    sweep_fetches: Vec<usize>,
    /// How many UIDs were flagged deleted and expunged.
    stored: usize,
    expunged: usize,
    /// Searches for the pending id.
    pending_searches: usize,
}

/// A scripted IMAP server on its own thread and runtime.
struct ImapServer {
    port: u16,
    seen: Arc<Mutex<Seen>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl ImapServer {
    fn start(script: Script) -> ImapServer {
        let acceptor = acceptor();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let seen_by_server = seen.clone();
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                port_tx.send(listener.local_addr().unwrap().port()).unwrap();
                let serve = async {
                    loop {
                        let Ok((tcp, _)) = listener.accept().await else {
                            continue;
                        };
                        let acceptor = acceptor.clone();
                        let script = script.clone();
                        let seen = seen_by_server.clone();
                        tokio::spawn(async move {
                            let mut tcp = tcp;
                            let upgraded = match &script.starttls {
                                None => false,
                                Some(injected) => {
                                    match plaintext(&mut tcp, &script, injected).await {
                                        Ok(true) => true,
                                        _ => return,
                                    }
                                }
                            };
                            if let Ok(tls) = acceptor.accept(tcp).await {
                                let _ = session(tls, &script, upgraded, &seen).await;
                            }
                        });
                    }
                };
                tokio::select! {
                    _ = serve => {}
                    _ = stopped => {}
                }
            });
            // Dropping the runtime drops every session still writing or waiting.
        });
        ImapServer {
            port: port_rx.recv().unwrap(),
            seen,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for ImapServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn acceptor() -> TlsAcceptor {
    let pki = DemoPki::localhost();
    let key: PrivateKeyDer<'static> = pki.leaf_key();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(pki.chain(&Sent::Full), key)
        .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

/// The plaintext part of a STARTTLS session: greeting, then STARTTLS. Returns whether to go on
/// with TLS.
async fn plaintext(tcp: &mut TcpStream, script: &Script, injected: &[u8]) -> std::io::Result<bool> {
    let (r, mut w) = tcp.split();
    let mut lines = BufReader::new(r);
    if let Some(act) = script.faulty(At::Greeting) {
        misbehave(&mut w, act).await?;
        return Ok(false);
    }
    send(
        &mut w,
        b"* OK [CAPABILITY IMAP4rev1 STARTTLS] plaintext\r\n",
    )
    .await?;
    let mut line = String::new();
    while lines.read_line(&mut line).await? > 0 {
        let tag = line.split_whitespace().next().unwrap_or("*").to_string();
        if line.to_ascii_uppercase().contains("STARTTLS") {
            if let Some(act) = script.faulty(At::Starttls) {
                misbehave(&mut w, act).await?;
                return Ok(false);
            }
            let mut ok = format!("{tag} OK Begin TLS now\r\n").into_bytes();
            ok.extend_from_slice(injected);
            send(&mut w, &ok).await?;
            return Ok(true);
        }
        send(&mut w, format!("{tag} BAD STARTTLS first\r\n").as_bytes()).await?;
        line.clear();
    }
    Ok(false)
}

/// One IMAP session: normal answers until the faulty command. No greeting after STARTTLS.
async fn session<S>(
    stream: S,
    script: &Script,
    after_starttls: bool,
    seen: &Mutex<Seen>,
) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + AsyncWrite + Unpin,
{
    let (r, mut w) = tokio::io::split(stream);
    let mut lines = BufReader::new(r);
    let faulty = |at: At| script.faulty(at);
    if !after_starttls {
        if let Some(act) = faulty(At::Greeting) {
            return misbehave(&mut w, act).await;
        }
        send(
            &mut w,
            b"* OK [CAPABILITY IMAP4rev1 UIDPLUS] scripted server ready\r\n",
        )
        .await?;
    }
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut words = line.split_whitespace();
        let tag = words.next().unwrap_or("*").to_string();
        let mut verb = words.next().unwrap_or("").to_ascii_uppercase();
        if verb == "UID" {
            verb = format!("UID {}", words.next().unwrap_or("").to_ascii_uppercase());
        }
        let at = match verb.as_str() {
            "LOGIN" => Some(At::Login),
            "SELECT" => Some(At::Select),
            "UID SEARCH" => Some(At::Search),
            "UID FETCH" => Some(At::Fetch),
            "LIST" => Some(At::List),
            _ => None,
        };
        if let Some(act) = at.and_then(faulty) {
            return misbehave(&mut w, act).await;
        }
        let answer = match verb.as_str() {
            "LOGIN" => format!("{tag} OK LOGIN completed\r\n"),
            "SELECT" => format!(
                "* 1 EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 1] UIDs valid\r\n{tag} OK [READ-WRITE] SELECT completed\r\n"
            ),
            "UID SEARCH" if line.contains("\"\"") && script.stale > 0 => {
                let uids: Vec<String> = (1..=script.stale).map(|u| u.to_string()).collect();
                format!("* SEARCH {}\r\n{tag} OK SEARCH completed\r\n", uids.join(" "))
            }
            "UID SEARCH" if line.contains(PENDING_ID) => {
                lock(seen).pending_searches += 1;
                format!("* SEARCH 8\r\n{tag} OK SEARCH completed\r\n")
            }
            "UID SEARCH" => format!("* SEARCH 7\r\n{tag} OK SEARCH completed\r\n"),
            "UID FETCH" if line.contains("INTERNALDATE") => {
                let set = words.next().unwrap_or("");
                let uids: Vec<&str> = set.split(',').collect();
                lock(seen).sweep_fetches.push(uids.len());
                let mut out = String::new();
                for uid in uids {
                    let id = if uid == "8" { PENDING_ID } else { PROBE_ID };
                    let header = format!(
                        "From: probe@example.test\r\nX-Smtp-Prober-Id: {id}\r\n\r\n"
                    );
                    out.push_str(&format!(
                        "* {uid} FETCH (UID {uid} INTERNALDATE \"01-Jan-2020 00:00:00 +0000\" BODY[HEADER.FIELDS (FROM X-SMTP-PROBER-ID)] {{{}}}\r\n{header})\r\n",
                        header.len()
                    ));
                }
                out + &format!("{tag} OK FETCH completed\r\n")
            }
            "UID FETCH" => {
                let header = script.received.as_deref().unwrap_or(
                    "Received: from mx1 by mx2 with ESMTPS;\r\n Sun, 22 Nov 2026 08:00:00 +0000\r\n\r\n",
                );
                format!(
                    "* 1 FETCH (UID 7 BODY[HEADER.FIELDS (RECEIVED)] {{{}}}\r\n{header})\r\n{tag} OK FETCH completed\r\n",
                    header.len()
                )
            }
            "CAPABILITY" => format!("* CAPABILITY IMAP4rev1 UIDPLUS\r\n{tag} OK done\r\n"),
            "LIST" => format!(
                "* LIST ({}) \"/\" INBOX\r\n{tag} OK LIST completed\r\n",
                script.list_attributes.unwrap_or("\\HasNoChildren")
            ),
            "UID STORE" => {
                lock(seen).stored += words.next().unwrap_or("").split(',').count();
                format!("{tag} OK STORE completed\r\n")
            }
            "UID EXPUNGE" => {
                lock(seen).expunged += words.next().unwrap_or("").split(',').count();
                format!("* 1 EXPUNGE\r\n{tag} OK EXPUNGE completed\r\n")
            }
            "LOGOUT" => {
                send(&mut w, format!("* BYE logging out\r\n{tag} OK LOGOUT completed\r\n").as_bytes()).await?;
                return Ok(());
            }
            _ => format!("{tag} BAD unknown command\r\n"),
        };
        send(&mut w, answer.as_bytes()).await?;
    }
}

fn lock(seen: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock().unwrap()
}

async fn send<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    w.write_all(bytes).await?;
    w.flush().await
}

async fn misbehave<W: AsyncWrite + Unpin>(w: &mut W, act: Act) -> std::io::Result<()> {
    match act {
        Act::Endless(unit) => {
            let chunk = unit.repeat((64 * 1024 / unit.len()).max(1));
            loop {
                send(w, &chunk).await?;
            }
        }
        Act::Raw(bytes) => {
            send(w, &bytes).await?;
            std::future::pending().await
        }
        Act::Drip(bytes, every) => {
            for b in bytes.iter().cycle() {
                send(w, &[*b]).await?;
                tokio::time::sleep(every).await;
            }
            Ok(())
        }
        Act::Silent => std::future::pending().await,
    }
}

/// What one delivery check against a scripted server did.
struct Run {
    report: DeliveryReport,
    failure: Option<Failure>,
    took: Duration,
    peak_heap: u64,
}

fn settings(port: u16, timeout: Duration, ca_file: PathBuf) -> DeliverySettings {
    DeliverySettings {
        access: MailboxAccess::Imap(ImapAccess {
            host: "127.0.0.1".into(),
            port,
            tls: ImapTls::Implicit,
            tls_config: TlsSettings {
                server_name: Some("localhost".into()),
                trust: vec![],
                ca_files: vec![ca_file],
                ..TlsSettings::default()
            },
            username: "probe@example.test".into(),
            credential: Credential::Password(Secret::new("secret")),
        }),
        mailboxes: vec!["INBOX".into()],
        timeout,
        cleanup: true,
        sweep_older_than: Duration::from_secs(3600),
        lost_after: Duration::from_secs(3600),
        junk_is_failure: false,
    }
}

/// The settings and TLS client for a server on `port`.
fn client(port: u16, timeout: Duration) -> (DeliverySettings, MailboxClient) {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("root.pem");
    std::fs::write(&ca, DemoPki::localhost().root_pem()).unwrap();
    let s = settings(port, timeout, ca);
    let tls = MailboxClient::new(&s).unwrap();
    (s, tls)
}

/// A server following `script` and the settings and TLS client to reach it.
fn serve(script: Script, timeout: Duration) -> (ImapServer, DeliverySettings, MailboxClient) {
    let starttls = script.starttls.is_some();
    let server = ImapServer::start(script);
    let (mut settings, tls) = client(server.port, timeout);
    if starttls {
        let MailboxAccess::Imap(imap) = &mut settings.access else {
            unreachable!("an IMAP check")
        };
        imap.tls = ImapTls::Starttls;
    }
    (server, settings, tls)
}

/// Runs one delivery check with `timeout` against a server following `script`, measuring it.
fn check(script: Script, timeout: Duration) -> Run {
    check_awaiting(script, timeout, &[]).0
}

/// [`check`], also looking for the `pending` mails of earlier probes; the server as it ends.
fn check_awaiting(script: Script, timeout: Duration, pending: &[String]) -> (Run, ImapServer) {
    let (server, settings, tls) = serve(script, timeout);
    let began = Instant::now();
    let awaited = Awaited {
        pending,
        ..Awaited::new(PROBE_ID, began)
    };
    let ((report, failure), took, peak_heap) =
        measured(delivery::check(&settings, &tls, awaited, None));
    let run = Run {
        report,
        failure,
        took,
        peak_heap,
    };
    (run, server)
}

/// Runs the sweep against a server following `script`, measuring it.
fn sweep(script: Script) -> (Result<usize, Failure>, Duration, u64, ImapServer) {
    let (server, settings, tls) = serve(script, TIMEOUT);
    let from = Mailbox::new("probe@example.test").unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let (result, took, peak) = measured(delivery::sweep(
        &settings,
        &tls,
        &from,
        Duration::from_secs(60),
        &[],
        deadline,
    ));
    (result, took, peak, server)
}

/// The failure of `run`, after checking what every hostile case must hold to.
fn bounded_failure(run: &Run, timeout: Duration) -> &Failure {
    let f = run
        .failure
        .as_ref()
        .expect("a hostile server never makes a success");
    assert_eq!(f.step, StepName::Delivery, "{f:?}");
    assert!(f.detail.len() <= 1024, "detail of {} bytes", f.detail.len());
    assert!(
        !f.detail.chars().any(char::is_control),
        "control characters in {:?}",
        f.detail
    );
    assert!(
        run.took <= timeout + GRACE,
        "took {:?} against a deadline of {timeout:?}",
        run.took
    );
    assert!(
        run.peak_heap <= HEAP_CEILING,
        "held {} bytes at once",
        run.peak_heap
    );
    eprintln!(
        "{:?} after {:?}, peak heap {} KiB: {}",
        f.reason,
        run.took,
        run.peak_heap / 1024,
        f.detail
    );
    f
}

/// [`bounded_failure`] with this reason and a detail that says `says`.
fn expect_failure<'r>(run: &'r Run, reason: Reason, says: &str) -> &'r Failure {
    let f = bounded_failure(run, TIMEOUT);
    assert_eq!(f.reason, reason, "{f:?}");
    assert!(f.detail.contains(says), "{}", f.detail);
    f
}

const TIMEOUT: Duration = Duration::from_millis(1500);

#[test]
fn a_well_behaved_server_passes() {
    let run = check(Script::default(), TIMEOUT);
    assert!(run.failure.is_none(), "{:?}", run.failure);
    assert!(run.report.success);
    assert_eq!(run.report.mailbox.as_deref(), Some("INBOX"));
    assert_eq!(
        run.report.received,
        vec!["from mx1 by mx2 with ESMTPS; Sun, 22 Nov 2026 08:00:00 +0000".to_string()]
    );
    assert!(run.report.cleaned_up);
    eprintln!(
        "healthy check: {:?}, peak heap {} KiB",
        run.took,
        run.peak_heap / 1024
    );
    assert!(run.peak_heap <= HEAP_CEILING);
}

/// Finding 1: endless untagged FETCH answers and no tagged OK. Before: every answer collected
/// (GBs of RSS, past the deadline, and a SUCCESS verdict).
#[test]
fn endless_fetch_answers_are_cut_off() {
    let run = check(
        fault(
            At::Fetch,
            Act::Endless(b"* 7 FETCH (UID 7 FLAGS (\\Seen))\r\n".to_vec()),
        ),
        TIMEOUT,
    );
    expect_failure(
        &run,
        Reason::ImapProtocolError,
        "more than 1000 responses to one command",
    );
    assert!(
        run.took < TIMEOUT / 2,
        "cut off at the cap, not at the deadline: {:?}",
        run.took
    );
}

/// Finding 1, scheduled side: the sweep meets the same server.
#[test]
fn the_sweep_cuts_off_endless_fetch_answers_too() {
    let (result, took, peak, _server) = sweep(Script {
        stale: 3,
        ..fault(
            At::Fetch,
            Act::Endless(b"* 7 FETCH (UID 7 FLAGS (\\Seen))\r\n".to_vec()),
        )
    });
    let f = result.unwrap_err();
    assert_eq!(f.reason, Reason::ImapProtocolError, "{f:?}");
    assert!(
        f.detail.contains("more than 1000 responses"),
        "{}",
        f.detail
    );
    assert!(took <= TIMEOUT + GRACE, "{took:?}");
    assert!(peak <= HEAP_CEILING, "{peak}");
}

/// The sweep asks for its candidates in batches, so that one command's answers stay small
/// however many stale probe mails there are; it still deletes them all.
#[test]
fn the_sweep_fetches_in_small_batches() {
    let (result, took, peak, server) = sweep(Script {
        stale: 250,
        ..Script::default()
    });
    assert_eq!(result.unwrap(), 250);
    let seen = lock(&server.seen);
    assert_eq!(seen.sweep_fetches, vec![100, 100, 50]);
    assert_eq!((seen.stored, seen.expunged), (250, 250));
    eprintln!(
        "sweep of 250 stale probe mails: {took:?}, peak heap {} KiB",
        peak / 1024
    );
    assert!(peak <= HEAP_CEILING, "{peak}");
}

/// Finding 2: a 40 MiB literal and garbage. Before: the failure detail was async-imap's Debug
/// of the whole input (291 MB).
#[test]
fn a_huge_literal_is_refused_with_a_short_detail() {
    let mut bytes = b"* 7 FETCH (UID 7 BODY[HEADER.FIELDS (RECEIVED)] {41943040}\r\n".to_vec();
    bytes.extend(std::iter::repeat_n(b'*', 40 << 20));
    let run = check(fault(At::Fetch, Act::Raw(bytes)), TIMEOUT);
    expect_failure(
        &run,
        Reason::ImapProtocolError,
        "announced a literal of 41943040 bytes",
    );
}

/// Finding 2, the other half: input that does not parse, with terminal escapes in it, after a
/// literal that fills async-imap's buffer. The detail names the line, escaped and cut short.
#[test]
fn garbage_is_reported_short_and_escaped() {
    let mut bytes = b"* 1 FETCH (BODY[] {60000}\r\n".to_vec();
    bytes.extend(std::iter::repeat_n(b'x', 60_000));
    bytes.extend_from_slice(b")\x1b[2J\x1b[31mFAKE: verdict: SUCCESS ");
    bytes.extend(std::iter::repeat_n(b'#', 3000));
    bytes.extend_from_slice(b"\r\n");
    let run = check(fault(At::Select, Act::Raw(bytes)), TIMEOUT);
    let f = expect_failure(&run, Reason::ImapProtocolError, "not IMAP");
    assert!(f.detail.contains("\\u{1b}[2J"), "{}", f.detail);
    assert!(!f.detail.contains("xxxxxxxxxxxxxxxxxxxx"), "{}", f.detail);
}

/// Finding 3: an announced literal size is not allocated up front. Before: `{536000000}` cost
/// 537 MB of RSS from one line.
#[test]
fn an_announced_literal_is_not_allocated() {
    let run = check(
        fault(
            At::Select,
            Act::Raw(b"* 1 FETCH (BODY[] {536000000}\r\n".to_vec()),
        ),
        TIMEOUT,
    );
    expect_failure(&run, Reason::ImapProtocolError, "536000000");
    assert!(run.peak_heap < 1024 * 1024, "{}", run.peak_heap);
}

/// Finding 4: a never-ending greeting, fast. Before: quadratic re-parsing, 17.6 s and as much
/// CPU for a 5 s deadline.
#[test]
fn a_never_ending_greeting_stops_at_the_line_cap() {
    let run = check(
        fault(At::Greeting, Act::Endless(b"* OK ".to_vec())),
        TIMEOUT,
    );
    let f = expect_failure(
        &run,
        Reason::ImapProtocolError,
        "line longer than 65536 bytes",
    );
    assert!(f.detail.contains("greeting"), "{}", f.detail);
}

/// Finding 4: a never-ending line dripped slowly never reaches the cap: the deadline ends it.
#[test]
fn a_dripped_never_ending_line_ends_at_the_deadline() {
    let run = check(
        fault(
            At::Select,
            Act::Drip(b"* OK still going ".to_vec(), Duration::from_millis(2)),
        ),
        TIMEOUT,
    );
    expect_failure(
        &run,
        Reason::ImapError,
        "did not answer SELECT \"INBOX\" before the deadline",
    );
    assert!(run.took >= TIMEOUT);
}

/// Finding 4: an untagged flood. Before: the deadline held but 14 s of CPU burnt.
#[test]
fn an_untagged_flood_is_cut_off() {
    let run = check(
        fault(At::Select, Act::Endless(b"* 1 EXISTS\r\n".to_vec())),
        TIMEOUT,
    );
    expect_failure(&run, Reason::ImapProtocolError, "SELECT \"INBOX\"");
    assert!(run.took < TIMEOUT / 2, "{:?}", run.took);
}

/// Finding 10: an IMAP server that stops answering is an IMAP problem, not a delivery timeout.
#[test]
fn a_silent_imap_server_is_not_a_delivery_timeout() {
    for at in [At::Login, At::Select, At::Search] {
        let run = check(fault(at, Act::Silent), TIMEOUT);
        let f = bounded_failure(&run, TIMEOUT);
        assert_eq!(f.reason, Reason::ImapError, "{at:?}: {f:?}");
        assert!(f.detail.contains("did not answer"), "{at:?}: {}", f.detail);
        assert!(run.took >= TIMEOUT);
    }
}

/// The hops kept from the delivered mail are as bounded and printable as any server text.
#[test]
fn received_headers_are_kept_bounded_and_printable() {
    let mut block = String::new();
    for hop in 0..40 {
        block.push_str(&format!(
            "Received: from hop{hop} \x1b[2J{}\r\n",
            "x".repeat(hop * 40)
        ));
    }
    block.push_str("\r\n");
    let run = check(
        Script {
            received: Some(block),
            ..Script::default()
        },
        TIMEOUT,
    );
    assert!(run.failure.is_none(), "{:?}", run.failure);
    let hops = &run.report.received;
    assert_eq!(hops.len(), 32);
    assert!(hops[0].starts_with("from hop0 \\u{1b}[2J"), "{}", hops[0]);
    assert!(hops
        .iter()
        .all(|h| h.len() <= 1024 + 32 && !h.chars().any(char::is_control)));
    // "from hop31 \x1b[2J" and 1240 x's: cut.
    assert!(hops[31].ends_with("… (1255 bytes)"), "{}", hops[31]);
}

/// Whatever the server sends right behind its OK to STARTTLS is not taken as part of the
/// session (RFC 3501 §6.2.1): the TLS handshake starts clean and the check goes on.
#[test]
fn bytes_injected_before_tls_are_discarded() {
    let run = check(
        Script {
            starttls: Some(b"* OK [ALERT] injected before TLS\r\nA9 OK forged\r\n".to_vec()),
            ..Script::default()
        },
        TIMEOUT,
    );
    assert!(run.failure.is_none(), "{:?}", run.failure);
    assert!(run.report.success);
}

/// The plaintext part of STARTTLS is bounded like the rest.
#[test]
fn a_flood_in_answer_to_starttls_is_cut_off() {
    let run = check(
        Script {
            starttls: Some(Vec::new()),
            ..fault(At::Starttls, Act::Endless(b"* OK not yet\r\n".to_vec()))
        },
        TIMEOUT,
    );
    expect_failure(
        &run,
        Reason::ImapProtocolError,
        "IMAP STARTTLS: the server sent more than 1000 responses",
    );
    assert!(run.took < TIMEOUT / 2, "{:?}", run.took);
}

/// A BYE greeting is the server refusing, in its own (escaped) words.
#[test]
fn a_bye_greeting_is_a_refusal() {
    let run = check(
        fault(At::Greeting, Act::Raw(b"* BYE too busy\x07\r\n".to_vec())),
        TIMEOUT,
    );
    expect_failure(&run, Reason::ImapError, "* BYE too busy\\u{7}");
    assert!(run.took < TIMEOUT / 2);
}

/// A mail whose trace is longer than the partial FETCH reads (a server honouring `<0.49152>`):
/// no hop split (its oldest hops are missing), the newest 32 fields kept, bounded, success.
#[test]
fn a_trace_longer_than_the_partial_fetch_has_no_split() {
    let line = "Received: from relay.example.net by mx.example.org with ESMTP; Mon, 30 Nov 2026 13:00:00 +0000\r\n";
    let block: String = line
        .repeat(delivery::HEADER_BYTES / line.len() + 1)
        .chars()
        .take(delivery::HEADER_BYTES)
        .collect();
    let run = check(
        Script {
            received: Some(block),
            ..Script::default()
        },
        TIMEOUT,
    );
    assert!(run.failure.is_none(), "{:?}", run.failure);
    assert!(run.report.success && run.report.cleaned_up);
    assert_eq!(run.report.received.len(), 32);
    assert!(run.report.hops.is_empty(), "{:?}", run.report.hops);
    assert!(
        run.peak_heap <= HEAP_CEILING,
        "held {} bytes",
        run.peak_heap
    );
    eprintln!(
        "a 48 KiB trace: {:?}, peak heap {} KiB",
        run.took,
        run.peak_heap / 1024
    );
}

/// A flood of Authentication-Results (fields and results): a few verdicts kept, plain words.
#[test]
fn an_authentication_results_flood_keeps_a_few_plain_verdicts() {
    let mut block =
        String::from("Received: by mx.example.org with LMTP; Mon, 30 Nov 2026 13:00:00 +0000\r\n");
    while block.len() < 40 * 1024 {
        block.push_str("Authentication-Results: mx\x1b[2J; ");
        for _ in 0..30 {
            block.push_str("dkim=fail header.d=\x07evil.example; spf=\u{202e}pass; ");
        }
        block.push_str("\r\n");
    }
    block.push_str("\r\n");
    let run = check(
        Script {
            received: Some(block),
            ..Script::default()
        },
        TIMEOUT,
    );
    assert!(run.failure.is_none(), "{:?}", run.failure);
    let auth = &run.report.auth;
    assert!(
        !auth.is_empty() && auth.len() <= 16,
        "{} verdicts",
        auth.len()
    );
    assert!(auth.iter().all(|v| ["dkim", "spf"].contains(&v.method)));
    for v in auth {
        for text in v.authserv_id.iter().chain(&v.property) {
            assert!(
                text.len() <= 90 && !text.chars().any(|c| c.is_control()),
                "{text:?}"
            );
        }
    }
    assert_eq!(run.report.hops.len(), 1);
    assert!(
        run.peak_heap <= HEAP_CEILING,
        "held {} bytes",
        run.peak_heap
    );
}

/// Endless LIST answers (asking whether the mailbox is Junk) are cut off like any flood.
#[test]
fn endless_list_answers_are_cut_off() {
    let run = check(
        fault(
            At::List,
            Act::Endless(b"* LIST (\\Junk) \"/\" INBOX\r\n".to_vec()),
        ),
        TIMEOUT,
    );
    expect_failure(&run, Reason::ImapProtocolError, "LIST");
}

/// The Junk special use comes from LIST (RFC 6154), whatever the mailbox is called.
#[test]
fn the_junk_special_use_is_read_from_list() {
    let run = check(
        Script {
            list_attributes: Some("\\HasNoChildren \\Junk"),
            ..Script::default()
        },
        TIMEOUT,
    );
    assert!(run.failure.is_none(), "{:?}", run.failure);
    assert!(run.report.junk);
    let run = check(Script::default(), TIMEOUT);
    assert!(!run.report.junk);
}

/// A pending mail of an earlier probe is looked for, reported late with its arrival, and
/// deleted by exactly its UID; the probe's own mail is found as usual.
#[test]
fn a_pending_mail_turns_up_late_and_is_deleted() {
    let (run, server) = check_awaiting(Script::default(), TIMEOUT, &[PENDING_ID.to_string()]);
    assert!(run.failure.is_none(), "{:?}", run.failure);
    assert!(run.report.success);
    let late = &run.report.late;
    assert_eq!(late.len(), 1, "{late:?}");
    assert_eq!(late[0].probe_id, PENDING_ID);
    assert_eq!(late[0].mailbox, "INBOX");
    assert!(late[0].cleaned_up);
    // The scripted INTERNALDATE (no Received: field in its answer): 2020-01-01T00:00:00Z.
    assert_eq!(late[0].arrived_at, Some(1_577_836_800));
    assert!(run.report.pending_searched_at.is_some());
    let seen = lock(&server.seen);
    assert_eq!(seen.pending_searches, 1);
    // Our own mail (UID 7) and the late one (UID 8), each deleted by its UID.
    assert_eq!((seen.stored, seen.expunged), (2, 2));
}
