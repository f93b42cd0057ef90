//! Smoke tests of the test mail stack (`tests/support/mailstack.rs`) with raw protocol
//! exchanges, independent of the project's own SMTP client: greetings, STARTTLS with chain
//! verification against the generated root, AUTH PLAIN (RFC 4954) success and failure, relay
//! rules, delivery through Postfix and Dovecot LMTP to IMAP (RFC 9051), and that stacks stop.

mod support;

use anyhow::{bail, Context};
use async_imap::types::Fetch;
use base64::Engine as _;
use futures::TryStreamExt;
use rustls_pki_types::ServerName;
use std::path::Path;
use std::time::{Duration, Instant};
use support::mailstack::{MailStack, DOMAIN, INBOX, PROBE, SERVER_NAME, SMTP_HOSTNAME};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Bounds for the raw SMTP reader.
const MAX_LINE: u64 = 2048;
const MAX_LINES: usize = 64;
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// One SMTP reply: code and the text of each line.
#[derive(Debug)]
struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    fn text(&self) -> String {
        self.lines.join("\n")
    }
}

/// A minimal raw SMTP client side: send a line, read a (multiline) reply.
struct Smtp<S> {
    stream: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Smtp<S> {
    fn new(stream: S) -> Self {
        Smtp {
            stream: BufReader::new(stream),
        }
    }

    async fn reply(&mut self) -> anyhow::Result<Reply> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let read = tokio::time::timeout(
                IO_TIMEOUT,
                (&mut self.stream).take(MAX_LINE).read_line(&mut line),
            )
            .await
            .context("reply timed out")??;
            if read == 0 {
                bail!("connection closed after {lines:?}");
            }
            let line = line.trim_end_matches(['\r', '\n']);
            let (Some(code), Some(sep)) = (line.get(..3), line.as_bytes().get(3).copied()) else {
                bail!("malformed reply line {line:?}");
            };
            let code: u16 = code
                .parse()
                .with_context(|| format!("bad code in {line:?}"))?;
            lines.push(line.get(4..).unwrap_or("").to_owned());
            if sep == b' ' {
                return Ok(Reply { code, lines });
            }
            if sep != b'-' || lines.len() >= MAX_LINES {
                bail!("malformed or endless reply: {lines:?}");
            }
        }
    }

    async fn command(&mut self, line: &str) -> anyhow::Result<Reply> {
        self.stream
            .get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .await?;
        self.reply().await
    }

    /// The stream for the TLS handshake; nothing may be buffered past the 220 to STARTTLS.
    fn into_inner(self) -> anyhow::Result<S> {
        if !self.stream.buffer().is_empty() {
            bail!("server sent data after the STARTTLS reply");
        }
        Ok(self.stream.into_inner())
    }
}

async fn tls_connect<S: AsyncRead + AsyncWrite + Unpin>(
    stack: &MailStack,
    stream: S,
) -> anyhow::Result<TlsStream<S>> {
    let connector = tokio_rustls::TlsConnector::from(stack.client_tls_config());
    let name = ServerName::try_from(SERVER_NAME)?.to_owned();
    Ok(tokio::time::timeout(IO_TIMEOUT, connector.connect(name, stream)).await??)
}

/// Connects to the submission port, reads the greeting, EHLO, STARTTLS, handshake, EHLO again.
async fn submission_after_starttls(
    stack: &MailStack,
) -> anyhow::Result<(Smtp<TlsStream<TcpStream>>, Reply)> {
    let mut smtp = Smtp::new(TcpStream::connect(stack.submission_addr()).await?);
    assert_eq!(smtp.reply().await?.code, 220);
    assert_eq!(smtp.command("EHLO probe.test").await?.code, 250);
    let starttls = smtp.command("STARTTLS").await?;
    assert_eq!(starttls.code, 220, "{starttls:?}");
    let tls = tls_connect(stack, smtp.into_inner()?).await?;
    let mut smtp = Smtp::new(tls);
    let ehlo = smtp.command("EHLO probe.test").await?;
    assert_eq!(ehlo.code, 250, "{ehlo:?}");
    Ok((smtp, ehlo))
}

fn auth_plain(user: &str, password: &str) -> String {
    let raw = format!("\0{user}\0{password}");
    format!(
        "AUTH PLAIN {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// Sends one message in an open session (after AUTH where needed); returns the final reply.
async fn send_mail<S: AsyncRead + AsyncWrite + Unpin>(
    smtp: &mut Smtp<S>,
    from: &str,
    to: &str,
    subject: &str,
) -> anyhow::Result<Reply> {
    let mail = smtp.command(&format!("MAIL FROM:<{from}>")).await?;
    assert_eq!(mail.code, 250, "{mail:?}");
    let rcpt = smtp.command(&format!("RCPT TO:<{to}>")).await?;
    assert_eq!(rcpt.code, 250, "{rcpt:?}");
    let data = smtp.command("DATA").await?;
    assert_eq!(data.code, 354, "{data:?}");
    let message = format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n\
         Message-ID: <{}@probe.test>\r\n\r\nmailstack smoke test body\r\n.",
        subject.replace(' ', ".")
    );
    smtp.command(&message).await
}

/// A subject no other test (or earlier run) uses.
fn unique_subject(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("mailstack {what} {nanos}")
}

type ImapSession = async_imap::Session<TlsStream<TcpStream>>;

async fn imaps_login(stack: &MailStack, user: &str, password: &str) -> anyhow::Result<ImapSession> {
    let tcp = TcpStream::connect(stack.imaps_addr()).await?;
    let tls = tls_connect(stack, tcp).await?;
    let mut client = async_imap::Client::new(tls);
    let greeting = client.read_response().await?.context("no IMAP greeting")?;
    assert!(
        matches!(
            greeting.parsed(),
            async_imap::imap_proto::Response::Data {
                status: async_imap::imap_proto::Status::Ok,
                ..
            }
        ),
        "{:?}",
        greeting.parsed()
    );
    client
        .login(user, password)
        .await
        .map_err(|(e, _)| anyhow::anyhow!("IMAP login failed: {e}"))
}

/// Polls `mailbox` until a message with exactly `subject` is there; returns its subject as
/// read back from the ENVELOPE and the time it took.
async fn wait_for_subject(
    session: &mut ImapSession,
    mailbox: &str,
    subject: &str,
    timeout: Duration,
) -> anyhow::Result<(String, Duration)> {
    let began = Instant::now();
    session.select(mailbox).await?;
    loop {
        let found = session.search(format!("SUBJECT \"{subject}\"")).await?;
        if let Some(seq) = found.iter().next() {
            let fetches: Vec<Fetch> = session
                .fetch(seq.to_string(), "ENVELOPE")
                .await?
                .try_collect()
                .await?;
            let envelope_subject = fetches
                .iter()
                .filter_map(|f| f.envelope())
                .filter_map(|e| e.subject.as_deref())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .next()
                .context("no ENVELOPE subject in FETCH")?;
            return Ok((envelope_subject, began.elapsed()));
        }
        // Unsolicited EXISTS/RECENT go to a bounded channel; keep it from filling up.
        while session.unsolicited_responses.try_recv().is_ok() {}
        if began.elapsed() > timeout {
            bail!("no message {subject:?} in {mailbox} after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn every_smtp_port_greets_with_220() -> anyhow::Result<()> {
    if !MailStack::available("every_smtp_port_greets_with_220") {
        return Ok(());
    }
    let stack = MailStack::shared();
    let expected = format!("{SMTP_HOSTNAME} ESMTP {}", stack.id());

    let mut submission = Smtp::new(TcpStream::connect(stack.submission_addr()).await?);
    let greeting = submission.reply().await?;
    assert_eq!((greeting.code, greeting.text()), (220, expected.clone()));

    let mut plain = Smtp::new(TcpStream::connect(stack.smtp_addr()).await?);
    let greeting = plain.reply().await?;
    assert_eq!((greeting.code, greeting.text()), (220, expected.clone()));

    let tcp = TcpStream::connect(stack.smtps_addr()).await?;
    let mut smtps = Smtp::new(tls_connect(stack, tcp).await?);
    let greeting = smtps.reply().await?;
    assert_eq!((greeting.code, greeting.text()), (220, expected));
    Ok(())
}

#[tokio::test]
async fn submission_requires_starttls_and_sends_a_chain_to_the_root() -> anyhow::Result<()> {
    if !MailStack::available("submission_requires_starttls_and_sends_a_chain_to_the_root") {
        return Ok(());
    }
    let stack = MailStack::shared();
    let mut smtp = Smtp::new(TcpStream::connect(stack.submission_addr()).await?);
    assert_eq!(smtp.reply().await?.code, 220);
    let ehlo = smtp.command("EHLO probe.test").await?;
    assert_eq!(ehlo.code, 250);
    assert!(ehlo.lines.iter().any(|l| l == "STARTTLS"), "{ehlo:?}");
    assert!(
        !ehlo.lines.iter().any(|l| l.starts_with("AUTH")),
        "AUTH must not be offered before STARTTLS: {ehlo:?}"
    );
    let mail = smtp
        .command(&format!("MAIL FROM:<{}>", PROBE.address))
        .await?;
    assert_eq!(mail.code, 530, "{mail:?}");
    assert_eq!(mail.text(), "5.7.0 Must issue a STARTTLS command first");

    assert_eq!(smtp.command("STARTTLS").await?.code, 220);
    // The handshake verifies the chain against the generated root only (client_tls_config).
    let tls = tls_connect(stack, smtp.into_inner()?).await?;
    let sent = tls
        .get_ref()
        .1
        .peer_certificates()
        .map(|c| c.len())
        .unwrap_or_default();
    assert_eq!(sent, 2, "leaf and intermediate are sent, the root is not");
    let mut smtp = Smtp::new(tls);
    let ehlo = smtp.command("EHLO probe.test").await?;
    assert!(
        ehlo.lines.iter().any(|l| l == "AUTH PLAIN LOGIN"),
        "{ehlo:?}"
    );
    assert!(!ehlo.lines.iter().any(|l| l == "STARTTLS"), "{ehlo:?}");
    Ok(())
}

#[tokio::test]
async fn auth_plain_accepts_the_right_password_and_rejects_a_wrong_one() -> anyhow::Result<()> {
    if !MailStack::available("auth_plain_accepts_the_right_password_and_rejects_a_wrong_one") {
        return Ok(());
    }
    let stack = MailStack::shared();
    let (mut smtp, _) = submission_after_starttls(stack).await?;
    let wrong = smtp
        .command(&auth_plain(PROBE.address, "not-the-password"))
        .await?;
    assert_eq!(wrong.code, 535, "{wrong:?}");
    assert!(
        wrong
            .text()
            .starts_with("5.7.8 Error: authentication failed"),
        "{wrong:?}"
    );
    let right = smtp
        .command(&auth_plain(PROBE.address, PROBE.password))
        .await?;
    assert_eq!(
        (right.code, right.text()),
        (235, "2.7.0 Authentication successful".into())
    );
    assert_eq!(smtp.command("QUIT").await?.code, 221);
    Ok(())
}

#[tokio::test]
async fn submission_refuses_to_relay_without_auth() -> anyhow::Result<()> {
    if !MailStack::available("submission_refuses_to_relay_without_auth") {
        return Ok(());
    }
    let stack = MailStack::shared();
    let (mut smtp, _) = submission_after_starttls(stack).await?;
    assert_eq!(
        smtp.command(&format!("MAIL FROM:<{}>", PROBE.address))
            .await?
            .code,
        250
    );
    let rcpt = smtp
        .command(&format!("RCPT TO:<{}>", INBOX.address))
        .await?;
    assert_eq!(rcpt.code, 554, "{rcpt:?}");
    assert!(rcpt.text().starts_with("5.7.1 "), "{rcpt:?}");
    Ok(())
}

#[tokio::test]
async fn submitted_mail_arrives_in_the_inbox_over_imaps() -> anyhow::Result<()> {
    if !MailStack::available("submitted_mail_arrives_in_the_inbox_over_imaps") {
        return Ok(());
    }
    let stack = MailStack::shared();
    let subject = unique_subject("submission delivery");
    let (mut smtp, _) = submission_after_starttls(stack).await?;
    let auth = smtp
        .command(&auth_plain(PROBE.address, PROBE.password))
        .await?;
    assert_eq!(auth.code, 235);
    let accepted = send_mail(&mut smtp, PROBE.address, INBOX.address, &subject).await?;
    assert_eq!(accepted.code, 250, "{accepted:?}");
    assert!(
        accepted.text().starts_with("2.0.0 Ok: queued as "),
        "{accepted:?}"
    );
    let accepted_at = Instant::now();
    let _ = smtp.command("QUIT").await;

    let mut imap = imaps_login(stack, INBOX.address, INBOX.password).await?;
    let (found, _) = wait_for_subject(&mut imap, "INBOX", &subject, Duration::from_secs(10))
        .await
        .with_context(|| stack.log_tail())?;
    eprintln!(
        "mailstack: delivery latency (250 after DATA -> visible over IMAPS): {:?}",
        accepted_at.elapsed()
    );
    assert_eq!(found, subject);
    imap.logout().await?;
    Ok(())
}

#[tokio::test]
async fn smtps_accepts_auth_and_mail() -> anyhow::Result<()> {
    if !MailStack::available("smtps_accepts_auth_and_mail") {
        return Ok(());
    }
    let stack = MailStack::shared();
    let tcp = TcpStream::connect(stack.smtps_addr()).await?;
    let mut smtp = Smtp::new(tls_connect(stack, tcp).await?);
    assert_eq!(smtp.reply().await?.code, 220);
    let ehlo = smtp.command("EHLO probe.test").await?;
    assert!(
        ehlo.lines.iter().any(|l| l == "AUTH PLAIN LOGIN"),
        "{ehlo:?}"
    );
    let auth = smtp
        .command(&auth_plain(PROBE.address, PROBE.password))
        .await?;
    assert_eq!(auth.code, 235);
    let subject = unique_subject("smtps");
    let accepted = send_mail(&mut smtp, PROBE.address, INBOX.address, &subject).await?;
    assert_eq!(accepted.code, 250, "{accepted:?}");
    Ok(())
}

#[tokio::test]
async fn plain_port_takes_mail_for_the_test_domain_only() -> anyhow::Result<()> {
    if !MailStack::available("plain_port_takes_mail_for_the_test_domain_only") {
        return Ok(());
    }
    let stack = MailStack::shared();
    let mut smtp = Smtp::new(TcpStream::connect(stack.smtp_addr()).await?);
    assert_eq!(smtp.reply().await?.code, 220);
    let ehlo = smtp.command("EHLO probe.test").await?;
    assert!(!ehlo.lines.iter().any(|l| l == "STARTTLS"), "{ehlo:?}");
    assert!(
        !ehlo.lines.iter().any(|l| l.starts_with("AUTH")),
        "{ehlo:?}"
    );
    assert_eq!(
        smtp.command("MAIL FROM:<sender@elsewhere.test>")
            .await?
            .code,
        250
    );
    let unknown = smtp.command(&format!("RCPT TO:<nobody@{DOMAIN}>")).await?;
    assert_eq!(unknown.code, 550, "{unknown:?}");
    assert!(unknown.text().starts_with("5.1.1 "), "{unknown:?}");
    let foreign = smtp.command("RCPT TO:<someone@elsewhere.test>").await?;
    assert_eq!(foreign.code, 554, "{foreign:?}");
    assert!(
        foreign.text().contains("Relay access denied"),
        "{foreign:?}"
    );
    let known = smtp
        .command(&format!("RCPT TO:<{}>", INBOX.address))
        .await?;
    assert_eq!(known.code, 250, "{known:?}");
    Ok(())
}

#[tokio::test]
async fn detail_address_lands_in_junk() -> anyhow::Result<()> {
    if !MailStack::available("detail_address_lands_in_junk") {
        return Ok(());
    }
    let stack = MailStack::shared();
    let subject = unique_subject("junk");
    let mut smtp = Smtp::new(TcpStream::connect(stack.smtp_addr()).await?);
    assert_eq!(smtp.reply().await?.code, 220);
    assert_eq!(smtp.command("EHLO probe.test").await?.code, 250);
    let junk = format!("inbox+Junk@{DOMAIN}");
    let accepted = send_mail(&mut smtp, "sender@elsewhere.test", &junk, &subject).await?;
    assert_eq!(accepted.code, 250, "{accepted:?}");

    let mut imap = imaps_login(stack, INBOX.address, INBOX.password).await?;
    let (found, _) = wait_for_subject(&mut imap, "Junk", &subject, Duration::from_secs(10))
        .await
        .with_context(|| stack.log_tail())?;
    assert_eq!(found, subject);
    imap.select("INBOX").await?;
    let in_inbox = imap.search(format!("SUBJECT \"{subject}\"")).await?;
    assert!(in_inbox.is_empty(), "also in INBOX: {in_inbox:?}");
    Ok(())
}

#[tokio::test]
async fn imap_starttls_then_login() -> anyhow::Result<()> {
    if !MailStack::available("imap_starttls_then_login") {
        return Ok(());
    }
    let stack = MailStack::shared();
    let tcp = TcpStream::connect(stack.imap_addr()).await?;
    let mut client = async_imap::Client::new(tcp);
    let greeting = client.read_response().await?.context("no IMAP greeting")?;
    let async_imap::imap_proto::Response::Data {
        status: async_imap::imap_proto::Status::Ok,
        code: Some(async_imap::imap_proto::ResponseCode::Capabilities(capabilities)),
        information: Some(text),
    } = greeting.parsed()
    else {
        bail!("unexpected IMAP greeting {:?}", greeting.parsed());
    };
    assert_eq!(text.as_ref(), format!("{} ready.", stack.id()));
    assert!(
        capabilities.contains(&async_imap::imap_proto::Capability::Atom("STARTTLS".into())),
        "{capabilities:?}"
    );
    client.run_command_and_check_ok("STARTTLS", None).await?;
    let tls = tls_connect(stack, client.into_inner()).await?;

    let client = async_imap::Client::new(tls);
    let refused = client.login(INBOX.address, "not-the-password").await;
    let Err((error, client)) = refused else {
        bail!("login with a wrong password succeeded");
    };
    assert!(
        error.to_string().contains("AUTHENTICATIONFAILED"),
        "{error}"
    );
    let mut session = client
        .login(INBOX.address, INBOX.password)
        .await
        .map_err(|(e, _)| anyhow::anyhow!("IMAP login failed: {e}"))?;
    let names: Vec<String> = session
        .list(Some(""), Some("*"))
        .await?
        .map_ok(|n| n.name().to_owned())
        .try_collect()
        .await?;
    assert!(names.contains(&"INBOX".to_owned()), "{names:?}");
    assert!(names.contains(&"Junk".to_owned()), "{names:?}");
    session.logout().await?;
    Ok(())
}

/// The master pids of a stack, from its pid files.
fn master_pids(dir: &Path) -> Vec<u32> {
    [
        "postfix/spool/queue/pid/master.pid",
        "dovecot/run/master.pid",
    ]
    .iter()
    .filter_map(|f| std::fs::read_to_string(dir.join(f)).ok())
    .filter_map(|s| s.trim().parse().ok())
    .collect()
}

/// Alive and not a zombie (PID 1 of a container may reap late).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|s| {
            !s.lines()
                .any(|l| l.starts_with("State:") && l.contains('Z'))
        })
        .unwrap_or(false)
}

#[tokio::test]
async fn dropping_a_stack_stops_it_and_removes_its_directory() -> anyhow::Result<()> {
    if !MailStack::available("dropping_a_stack_stops_it_and_removes_its_directory") {
        return Ok(());
    }
    let began = Instant::now();
    let stack = MailStack::start()?;
    let started = began.elapsed();
    let dir = stack.dir().to_owned();
    let pids = master_pids(&dir);
    assert_eq!(pids.len(), 2, "postfix and dovecot pid files");
    assert!(pids.iter().all(|&p| alive(p)));
    let submission = stack.submission_addr();
    let imaps = stack.imaps_addr();

    let stopping = Instant::now();
    drop(stack);
    let stopped = stopping.elapsed();
    eprintln!("mailstack: start {started:?}, stop {stopped:?}");

    assert!(!dir.exists(), "{} still exists", dir.display());
    assert_eq!(pids.iter().filter(|&&p| alive(p)).count(), 0);
    for addr in [submission, imaps] {
        let refused = TcpStream::connect(addr).await;
        assert!(refused.is_err(), "{addr} still accepts connections");
    }
    Ok(())
}

/// In a child test process (see below): start the shared stack, print its directory and pids,
/// and end the process without dropping it.
#[test]
fn shared_stack_child_process() {
    if std::env::var_os("MAILSTACK_SHARED_CHILD").is_none() {
        return;
    }
    let stack = MailStack::shared();
    let pids = master_pids(stack.dir());
    println!("MAILSTACK_DIR={}", stack.dir().display());
    println!("MAILSTACK_PIDS={pids:?}");
}

#[test]
fn shared_stack_is_stopped_after_the_test_process_exits() -> anyhow::Result<()> {
    if !MailStack::available("shared_stack_is_stopped_after_the_test_process_exits") {
        return Ok(());
    }
    let output = std::process::Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "shared_stack_child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("MAILSTACK_SHARED_CHILD", "1")
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dir = stdout
        .lines()
        .find_map(|l| l.split_once("MAILSTACK_DIR=").map(|(_, dir)| dir))
        .with_context(|| format!("child printed no MAILSTACK_DIR: {stdout}"))?;
    let pids: Vec<u32> = stdout
        .lines()
        .find_map(|l| l.split_once("MAILSTACK_PIDS=").map(|(_, pids)| pids))
        .context("child printed no MAILSTACK_PIDS")?
        .trim_matches(['[', ']'])
        .split(", ")
        .filter_map(|p| p.parse().ok())
        .collect();
    assert_eq!(pids.len(), 2, "{stdout}");

    // The child has exited; its watchdog now stops the stack.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(dir).exists() || pids.iter().any(|&p| alive(p)) {
        if Instant::now() > deadline {
            bail!("stack {dir} of an exited process still there after 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
