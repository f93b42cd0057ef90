//! The demo server driven by a raw client over loopback: plain TCP, then tokio-rustls trusting
//! the demo root.

use super::*;
use crate::secret::Secret;
use rustls_pki_types::ServerName;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Longest a test waits for a reply that should come.
const WAIT: Duration = Duration::from_secs(2);

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A bare SMTP client: send a line, read a reply as text (lines joined by `\n`).
struct Client {
    io: BufReader<Box<dyn Io>>,
}

fn connector(pki: &DemoPki) -> TlsConnector {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(pki.root_store())
    .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

impl Client {
    async fn connect(server: &DemoServer) -> Client {
        let tcp = TcpStream::connect(server.addr()).await.expect("connects");
        Client {
            io: BufReader::new(Box::new(tcp)),
        }
    }

    async fn connect_tls(server: &DemoServer) -> io::Result<Client> {
        let tcp = TcpStream::connect(server.addr()).await?;
        Client {
            io: BufReader::new(Box::new(tcp)),
        }
        .tls(server.pki())
        .await
    }

    /// Reads one line, or None when the server closed.
    async fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        let n = tokio::time::timeout(WAIT, self.io.read_line(&mut line))
            .await
            .expect("a line in time")
            .ok()?;
        (n > 0).then(|| line.trim_end().to_string())
    }

    async fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let line = self
                .line()
                .await
                .unwrap_or_else(|| panic!("server closed; had {lines:?}"));
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines.join("\n");
            }
        }
    }

    async fn send(&mut self, line: &str) {
        let stream = self.io.get_mut();
        stream
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .expect("writes");
        stream.flush().await.expect("flushes");
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.send(line).await;
        self.reply().await
    }

    async fn tls(self, pki: &DemoPki) -> io::Result<Client> {
        let name = ServerName::try_from("localhost").expect("valid name");
        let tls = connector(pki).connect(name, self.io.into_inner()).await?;
        Ok(Client {
            io: BufReader::new(Box::new(tls)),
        })
    }

    /// Greeting, EHLO, STARTTLS and EHLO again: a client ready to AUTH.
    async fn ready(server: &DemoServer) -> Client {
        let mut client = Client::connect(server).await;
        client.reply().await;
        client.cmd("EHLO probe.test").await;
        assert!(client.cmd("STARTTLS").await.starts_with("220 "));
        let mut client = client.tls(server.pki()).await.expect("handshake");
        client.cmd("EHLO probe.test").await;
        client
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes)
}

async fn start(config: ServerConfig) -> DemoServer {
    DemoServer::start(config).await.expect("server starts")
}

#[tokio::test]
async fn greets_and_lists_extensions_without_auth_before_tls() {
    let server = start(ServerConfig::default()).await;
    let mut client = Client::connect(&server).await;
    assert_eq!(client.reply().await, "220 localhost ESMTP smtp-prober demo");
    assert_eq!(
        client.cmd("EHLO probe.test").await,
        "250-localhost Hello probe.test\n250-PIPELINING\n250-SIZE 10485760\n250-STARTTLS\n\
         250-ENHANCEDSTATUSCODES\n250-8BITMIME\n250 SMTPUTF8"
    );
    assert_eq!(
        client.cmd("AUTH PLAIN AHByb2JlAHNlY3JldA==").await,
        "503 5.5.1 Error: authentication not enabled"
    );
    assert_eq!(client.cmd("HELO probe.test").await, "250 localhost");
    assert_eq!(client.cmd("QUIT").await, "221 2.0.0 Bye");
    assert_eq!(client.line().await, None);
    assert_eq!(server.sessions(), 1);
}

#[tokio::test]
async fn starttls_upgrades_and_forgets_the_plaintext_ehlo() {
    let server = start(ServerConfig::default()).await;
    let mut client = Client::connect(&server).await;
    client.reply().await;
    client.cmd("EHLO probe.test").await;
    assert_eq!(client.cmd("STARTTLS").await, "220 2.0.0 Ready to start TLS");
    let mut client = client.tls(server.pki()).await.expect("handshake");
    // RFC 3207: after TLS the client must EHLO again.
    assert_eq!(
        client.cmd("MAIL FROM:<a@probe.test>").await,
        "503 5.5.1 Error: send HELO/EHLO first"
    );
    let ehlo = client.cmd("EHLO probe.test").await;
    assert!(ehlo.contains("250-AUTH PLAIN LOGIN\n"), "{ehlo}");
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    assert_eq!(
        client.cmd("STARTTLS").await,
        "503 5.5.1 Error: TLS already active"
    );
}

#[tokio::test]
async fn auth_plain_and_login_accept_the_user_and_refuse_a_wrong_password() {
    let server = start(ServerConfig::default()).await;
    let mut client = Client::ready(&server).await;
    let wrong = b64(b"\0probe\0wrong");
    assert_eq!(
        client.cmd(&format!("AUTH PLAIN {wrong}")).await,
        "535 5.7.8 Authentication credentials invalid"
    );
    // Without an initial response: an empty 334 challenge first (our reader trims its space).
    assert_eq!(client.cmd("AUTH PLAIN").await, "334");
    assert_eq!(
        client.cmd(&b64(b"\0probe\0secret")).await,
        "235 2.7.0 Authentication successful"
    );
    assert_eq!(
        client.cmd("AUTH PLAIN =").await,
        "503 5.5.1 Error: already authenticated"
    );

    let mut client = Client::ready(&server).await;
    assert_eq!(client.cmd("AUTH LOGIN").await, "334 VXNlcm5hbWU6");
    assert_eq!(client.cmd(&b64(b"probe")).await, "334 UGFzc3dvcmQ6");
    assert_eq!(
        client.cmd(&b64(b"secret")).await,
        "235 2.7.0 Authentication successful"
    );
    assert_eq!(
        client.cmd("MAIL FROM:<probe@probe.test>").await,
        "250 2.1.0 Ok"
    );
}

/// An Office 365 style server: AUTH LOGIN XOAUTH2, plus OAUTHBEARER, one token for `probe`.
async fn oauth_server(tokens: &BearerTokens) -> DemoServer {
    start(ServerConfig {
        auth_mechanisms: vec![Mechanism::Login, Mechanism::Xoauth2, Mechanism::Oauthbearer],
        bearer_tokens: tokens.clone(),
        ..ServerConfig::default()
    })
    .await
}

#[tokio::test]
async fn xoauth2_accepts_a_registered_token_for_its_user() {
    let tokens = BearerTokens::new();
    tokens.insert("probe", &Secret::new("tok-1"));
    let server = oauth_server(&tokens).await;
    let mut client = Client::connect(&server).await;
    client.reply().await;
    client.cmd("EHLO probe.test").await;
    client.cmd("STARTTLS").await;
    let mut client = client.tls(server.pki()).await.expect("handshake");
    let ehlo = client.cmd("EHLO probe.test").await;
    assert!(
        ehlo.contains("250-AUTH LOGIN XOAUTH2 OAUTHBEARER\n"),
        "{ehlo}"
    );
    assert_eq!(
        client
            .cmd(&format!(
                "AUTH XOAUTH2 {}",
                b64(b"user=probe\x01auth=Bearer tok-1\x01\x01")
            ))
            .await,
        "235 2.7.0 Authentication successful"
    );

    // Without an initial response: an empty challenge, then the response.
    let mut client = Client::ready(&server).await;
    assert_eq!(client.cmd("AUTH XOAUTH2").await, "334");
    assert_eq!(
        client
            .cmd(&b64(b"user=probe\x01auth=bearer tok-1\x01\x01"))
            .await,
        "235 2.7.0 Authentication successful"
    );
    assert_eq!(
        client.cmd("MAIL FROM:<probe@probe.test>").await,
        "250 2.1.0 Ok"
    );
}

#[tokio::test]
async fn a_refused_bearer_gets_the_json_challenge_then_535() {
    let tokens = BearerTokens::new();
    tokens.insert("probe", &Secret::new("tok-1"));
    let server = oauth_server(&tokens).await;
    let xoauth2_challenge = format!(
        "334 {}",
        b64(br#"{"status":"401","schemes":"bearer","scope":"mail"}"#)
    );
    for payload in [
        // Unknown token.
        &b"user=probe\x01auth=Bearer nope\x01\x01"[..],
        // A valid token, but for another user than the one logging in.
        &b"user=other\x01auth=Bearer tok-1\x01\x01"[..],
    ] {
        let mut client = Client::ready(&server).await;
        let reply = client.cmd(&format!("AUTH XOAUTH2 {}", b64(payload))).await;
        assert_eq!(reply, xoauth2_challenge);
        assert_eq!(
            client.cmd("").await,
            "535 5.7.8 Authentication credentials invalid"
        );
    }
    let mut client = Client::ready(&server).await;
    let reply = client
        .cmd(&format!(
            "AUTH OAUTHBEARER {}",
            b64(b"n,a=probe,\x01host=localhost\x01port=587\x01auth=Bearer nope\x01\x01")
        ))
        .await;
    assert_eq!(
        reply,
        format!("334 {}", b64(br#"{"status":"invalid_token"}"#))
    );
    // RFC 7628 §3.2.3: the client's dummy response is ^A.
    assert_eq!(
        client.cmd(&b64(b"\x01")).await,
        "535 5.7.8 Authentication credentials invalid"
    );

    // Revoked: the same token that worked is refused now.
    tokens.revoke(&Secret::new("tok-1"));
    let mut client = Client::ready(&server).await;
    let reply = client
        .cmd(&format!(
            "AUTH XOAUTH2 {}",
            b64(b"user=probe\x01auth=Bearer tok-1\x01\x01")
        ))
        .await;
    assert_eq!(reply, xoauth2_challenge);
}

#[tokio::test]
async fn oauthbearer_takes_the_user_from_the_gs2_header_or_the_token() {
    let tokens = BearerTokens::new();
    tokens.insert("u,1=@x", &Secret::new("tok-2"));
    tokens.insert_expiring("probe", &Secret::new("gone"), Duration::ZERO);
    let server = oauth_server(&tokens).await;
    for payload in [
        &b"n,a=u=2C1=3D@x,\x01host=localhost\x01port=587\x01auth=Bearer tok-2\x01\x01"[..],
        &b"n,,\x01auth=Bearer tok-2\x01\x01"[..],
    ] {
        let mut client = Client::ready(&server).await;
        assert_eq!(
            client
                .cmd(&format!("AUTH OAUTHBEARER {}", b64(payload)))
                .await,
            "235 2.7.0 Authentication successful"
        );
    }
    // An expired token is refused like an unknown one.
    let mut client = Client::ready(&server).await;
    let reply = client
        .cmd(&format!(
            "AUTH OAUTHBEARER {}",
            b64(b"n,a=probe,\x01auth=Bearer gone\x01\x01")
        ))
        .await;
    assert!(reply.starts_with("334 "), "{reply}");
}

#[tokio::test]
async fn malformed_bearer_responses_are_refused_without_a_challenge() {
    let tokens = BearerTokens::new();
    tokens.insert("probe", &Secret::new("tok-1"));
    let server = oauth_server(&tokens).await;
    for line in [
        format!("AUTH XOAUTH2 {}", b64(b"auth=Bearer tok-1\x01\x01")),
        format!(
            "AUTH XOAUTH2 {}",
            b64(b"user=probe\x01auth=Basic tok-1\x01\x01")
        ),
        format!("AUTH XOAUTH2 {}", b64(b"user=probe\x01auth=Bearer tok-1")),
        format!(
            "AUTH OAUTHBEARER {}",
            b64(b"p=tls-unique,,\x01auth=Bearer tok-1\x01\x01")
        ),
        "AUTH XOAUTH2 !!notbase64".to_string(),
    ] {
        let mut client = Client::ready(&server).await;
        assert_eq!(
            client.cmd(&line).await,
            "501 5.5.2 Cannot decode response",
            "{line}"
        );
    }
    assert_eq!(tokens.len(), 1);
    assert_eq!(format!("{tokens:?}"), "BearerTokens { len: 1 }");
}

#[tokio::test]
async fn a_message_is_stored_dot_unstuffed() {
    let server = start(ServerConfig {
        require_auth: true,
        ..ServerConfig::default()
    })
    .await;
    let mut client = Client::ready(&server).await;
    assert_eq!(
        client.cmd("MAIL FROM:<probe@probe.test>").await,
        "530 5.7.0 Authentication required"
    );
    client
        .cmd(&format!("AUTH PLAIN {}", b64(b"\0probe\0secret")))
        .await;
    // Pipelined, as RFC 2920 allows: the replies come back in order.
    client
        .send("MAIL FROM:<probe@probe.test> SIZE=100\r\nRCPT TO:<a@demo.test>\r\nRCPT TO:<b@demo.test>\r\nDATA")
        .await;
    assert_eq!(client.reply().await, "250 2.1.0 Ok");
    assert_eq!(client.reply().await, "250 2.1.5 Ok");
    assert_eq!(client.reply().await, "250 2.1.5 Ok");
    assert_eq!(client.reply().await, "354 End data with <CR><LF>.<CR><LF>");
    client
        .send("Subject: token 123\r\n\r\n..leading dot\r\n..\r\n...\r\nlast")
        .await;
    let done = client.cmd(".").await;
    assert!(done.starts_with("250 2.0.0 Ok: queued as "), "{done}");

    let received = server.received();
    assert_eq!(received.len(), 1);
    let message = &received[0];
    assert_eq!(
        String::from_utf8_lossy(&message.data),
        "Subject: token 123\r\n\r\n.leading dot\r\n.\r\n..\r\nlast\r\n"
    );
    assert_eq!(message.from, "probe@probe.test");
    assert_eq!(message.rcpts, ["a@demo.test", "b@demo.test"]);
    assert_eq!(message.auth_user.as_deref(), Some("probe"));
    assert_eq!(message.helo, "probe.test");
    assert!(message.tls);
    assert!(done.ends_with(&message.queue_id));
}

#[tokio::test]
async fn sequence_errors_and_long_lines_get_5xx() {
    let server = start(ServerConfig {
        tls: TlsMode::None,
        ..ServerConfig::default()
    })
    .await;
    let mut client = Client::connect(&server).await;
    client.reply().await;
    let ehlo = client.cmd("EHLO probe.test").await;
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    assert_eq!(
        client.cmd("STARTTLS").await,
        "502 5.5.1 Error: command not implemented"
    );
    assert_eq!(
        client.cmd("RCPT TO:<a@demo.test>").await,
        "503 5.5.1 Error: need MAIL command"
    );
    assert_eq!(client.cmd("MAIL FROM:<>").await, "250 2.1.0 Ok");
    assert_eq!(
        client.cmd("DATA").await,
        "503 5.5.1 Error: need RCPT command"
    );
    assert_eq!(
        client.cmd("MAIL FROM:<>").await,
        "503 5.5.1 Error: nested MAIL command"
    );
    assert_eq!(client.cmd("RSET").await, "250 2.0.0 Ok");
    assert_eq!(
        client.cmd(&"X".repeat(20_000)).await,
        "500 5.5.2 Error: line too long"
    );
    assert_eq!(
        client.cmd("BDAT 10").await,
        "500 5.5.2 Error: command not recognized"
    );
    assert_eq!(client.cmd("NOOP").await, "250 2.0.0 Ok");
}

#[tokio::test]
async fn scripted_refusal_changes_nothing() {
    let server = start(
        ServerConfig {
            tls: TlsMode::None,
            ..ServerConfig::default()
        }
        .reply_to(
            Verb::Rcpt,
            "550 5.1.1 <x@demo.test>: Recipient address rejected",
        ),
    )
    .await;
    let mut client = Client::connect(&server).await;
    client.reply().await;
    client.cmd("EHLO probe.test").await;
    client.cmd("MAIL FROM:<a@probe.test>").await;
    assert_eq!(
        client.cmd("RCPT TO:<x@demo.test>").await,
        "550 5.1.1 <x@demo.test>: Recipient address rejected"
    );
    assert_eq!(
        client.cmd("DATA").await,
        "503 5.5.1 Error: need RCPT command"
    );
}

#[tokio::test]
async fn scripted_positive_reply_replaces_the_text_only() {
    let server = start(
        ServerConfig {
            tls: TlsMode::None,
            multiline_greeting: true,
            ..ServerConfig::default()
        }
        .reply_to(Verb::Ehlo, "250-mx.demo.test\n250 AUTH=LOGIN"),
    )
    .await;
    let mut client = Client::connect(&server).await;
    assert_eq!(
        client.reply().await,
        "220-localhost ESMTP smtp-prober demo\n\
         220-This server keeps mail in memory for tests only\n220 localhost ready"
    );
    assert_eq!(
        client.cmd("EHLO probe.test").await,
        "250-mx.demo.test\n250 AUTH=LOGIN"
    );
    // The EHLO still counted: a transaction can start.
    assert_eq!(client.cmd("MAIL FROM:<>").await, "250 2.1.0 Ok");
}

#[tokio::test]
async fn refused_greeting_allows_only_quit() {
    let server =
        start(ServerConfig::default().reply_to(Verb::Greeting, "554 5.3.2 No SMTP service here"))
            .await;
    let mut client = Client::connect(&server).await;
    assert_eq!(client.reply().await, "554 5.3.2 No SMTP service here");
    assert_eq!(
        client.cmd("EHLO probe.test").await,
        "503 5.5.1 Error: no service, only QUIT"
    );
    assert_eq!(client.cmd("QUIT").await, "221 2.0.0 Bye");
}

#[tokio::test]
async fn a_stalled_ehlo_times_out_the_client() {
    let server = start(ServerConfig::default().stall_at(Verb::Ehlo)).await;
    let mut client = Client::connect(&server).await;
    client.reply().await;
    client.send("EHLO probe.test").await;
    let mut line = String::new();
    let waited =
        tokio::time::timeout(Duration::from_millis(200), client.io.read_line(&mut line)).await;
    assert!(waited.is_err(), "got {line:?}");
    assert_eq!(server.active_sessions(), 1);
    drop(client);
    // The server notices the client leaving.
    let deadline = Instant::now() + WAIT;
    while server.active_sessions() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(server.active_sessions(), 0);
}

#[tokio::test]
async fn delay_close_raw_and_drip_faults() {
    let server = start(
        ServerConfig {
            tls: TlsMode::None,
            ..ServerConfig::default()
        }
        .delay(Verb::Greeting, Duration::from_millis(150))
        .raw_at(Verb::Noop, b"\x00\xffgarbage\r\n".to_vec())
        .drip_at(Verb::Rset, "451 4.3.0 slow", Duration::from_millis(5))
        .close_at(Verb::Mail),
    )
    .await;
    let started = Instant::now();
    let mut client = Client::connect(&server).await;
    assert_eq!(client.reply().await, "220 localhost ESMTP smtp-prober demo");
    assert!(started.elapsed() >= Duration::from_millis(150));

    client.send("NOOP").await;
    let mut raw = Vec::new();
    client.io.read_until(b'\n', &mut raw).await.expect("reads");
    assert_eq!(raw, b"\x00\xffgarbage\r\n");

    let started = Instant::now();
    assert_eq!(client.cmd("RSET").await, "451 4.3.0 slow");
    assert!(started.elapsed() >= Duration::from_millis(5 * 15));

    client.cmd("EHLO probe.test").await;
    client.send("MAIL FROM:<>").await;
    assert_eq!(client.line().await, None);
}

#[tokio::test]
async fn an_endless_reply_never_ends() {
    let server = start(ServerConfig::default().endless_at(Verb::Ehlo)).await;
    let mut client = Client::connect(&server).await;
    client.reply().await;
    client.send("EHLO probe.test").await;
    for _ in 0..1000 {
        let line = client.line().await.expect("more lines");
        assert_eq!(line, "250-this reply never ends");
    }
}

#[tokio::test]
async fn implicit_tls_greets_after_the_handshake() {
    let server = start(ServerConfig {
        tls: TlsMode::Implicit,
        sent: Sent::WithRoot,
        ..ServerConfig::default()
    })
    .await;
    let mut client = Client::connect_tls(&server).await.expect("handshake");
    assert_eq!(client.reply().await, "220 localhost ESMTP smtp-prober demo");
    let ehlo = client.cmd("EHLO probe.test").await;
    assert!(ehlo.contains("250-AUTH PLAIN LOGIN"), "{ehlo}");
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
}

#[tokio::test]
async fn chains_are_sent_as_configured() {
    // WithRoot: three certificates reach the client.
    let server = start(ServerConfig {
        tls: TlsMode::Implicit,
        sent: Sent::WithRoot,
        ..ServerConfig::default()
    })
    .await;
    let tcp = TcpStream::connect(server.addr()).await.expect("connects");
    let name = ServerName::try_from("localhost").expect("valid name");
    let tls = connector(server.pki())
        .connect(name, tcp)
        .await
        .expect("handshake");
    let certs = tls.get_ref().1.peer_certificates().expect("certificates");
    assert_eq!(certs.len(), 3);
    assert_eq!(certs[2], server.pki().root.der);

    // LeafOnly: a client holding only the root cannot build the chain.
    let server = start(ServerConfig {
        tls: TlsMode::Implicit,
        sent: Sent::LeafOnly,
        ..ServerConfig::default()
    })
    .await;
    let err = Client::connect_tls(&server).await.err().expect("fails");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
}

#[tokio::test]
async fn broken_pki_options_fail_verification() {
    let mut options = PkiOptions::new(&[]);
    options.key = KeyKind::EcdsaP384;
    options.leaf_not_after = SystemTime::now() - Duration::from_secs(3600);
    let pki = Arc::new(DemoPki::with_options(&options).expect("generates"));
    let server = start(ServerConfig {
        tls: TlsMode::Implicit,
        pki,
        ..ServerConfig::default()
    })
    .await;
    let err = Client::connect_tls(&server).await.err().expect("fails");
    assert!(err.to_string().contains("certificate expired"), "{err}");
}

#[tokio::test]
async fn tls_handshake_faults_and_version_mismatch() {
    let server =
        start(ServerConfig::default().raw_at(Verb::TlsHandshake, b"garbage\r\n".to_vec())).await;
    let mut client = Client::connect(&server).await;
    client.reply().await;
    client.cmd("EHLO probe.test").await;
    assert!(client.cmd("STARTTLS").await.starts_with("220 "));
    assert!(client.tls(server.pki()).await.is_err());

    let server = start(ServerConfig {
        tls: TlsMode::Implicit,
        tls_versions: TlsVersions::Tls12Only,
        ..ServerConfig::default()
    })
    .await;
    let tcp = TcpStream::connect(server.addr()).await.expect("connects");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("versions")
    .with_root_certificates(server.pki().root_store())
    .with_no_client_auth();
    let name = ServerName::try_from("localhost").expect("valid name");
    let result = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await;
    assert!(result.is_err());
}

#[tokio::test]
async fn plaintext_pipelined_after_starttls_is_discarded() {
    let server = start(ServerConfig::default()).await;
    let mut client = Client::connect(&server).await;
    client.reply().await;
    client.cmd("EHLO probe.test").await;
    client
        .send("STARTTLS\r\nMAIL FROM:<injected@evil.test>")
        .await;
    assert!(client.reply().await.starts_with("220 "));
    let mut client = client.tls(server.pki()).await.expect("handshake");
    // Had the injected MAIL been kept, it would be answered here before the EHLO.
    let ehlo = client.cmd("EHLO probe.test").await;
    assert!(ehlo.starts_with("250-localhost"), "{ehlo}");
}

#[tokio::test]
async fn received_keeps_the_latest_messages_only() {
    let server = start(ServerConfig {
        tls: TlsMode::None,
        max_received: 2,
        max_message_bytes: 64,
        ..ServerConfig::default()
    })
    .await;
    let mut client = Client::connect(&server).await;
    client.reply().await;
    client.cmd("EHLO probe.test").await;
    for i in 0..3 {
        client.cmd(&format!("MAIL FROM:<m{i}@probe.test>")).await;
        client.cmd("RCPT TO:<a@demo.test>").await;
        client.cmd("DATA").await;
        assert!(client.cmd(&format!("n{i}\r\n.")).await.starts_with("250 "));
    }
    client.cmd("MAIL FROM:<big@probe.test>").await;
    client.cmd("RCPT TO:<a@demo.test>").await;
    client.cmd("DATA").await;
    assert_eq!(
        client.cmd(&format!("{}\r\n.", "x".repeat(100))).await,
        "552 5.3.4 Error: message too big"
    );
    let from: Vec<String> = server.received().into_iter().map(|m| m.from).collect();
    assert_eq!(from, ["m1@probe.test", "m2@probe.test"]);
}

#[tokio::test]
async fn shutdown_closes_the_port() {
    let server = start(ServerConfig::default()).await;
    let addr = server.addr();
    let mut client = Client::connect(&server).await;
    client.reply().await;
    server.shutdown().await;
    assert_eq!(client.line().await, None);
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn bad_tls_settings_fail_start() {
    let err = DemoServer::start(ServerConfig {
        sent: Sent::Custom(Vec::new()),
        ..ServerConfig::default()
    })
    .await
    .expect_err("no certificate");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

#[tokio::test]
async fn many_sessions_are_cheap() {
    let server = start(ServerConfig::default()).await;
    let started = Instant::now();
    for _ in 0..50 {
        let mut client = Client::ready(&server).await;
        assert_eq!(client.cmd("QUIT").await, "221 2.0.0 Bye");
    }
    assert_eq!(server.sessions(), 50);
    // Debug build, two shared cores: a generous bound that still catches per-session setup.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}
