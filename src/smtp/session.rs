//! The timed SMTP session: one probe conversation as a state machine over a buffered connection
//! (RFC 5321 client behaviour, RFC 3207 STARTTLS, RFC 8314 implicit TLS, RFC 4954 AUTH).
//!
//! Every exchange is appended to a [`Transcript`]. A rejection is data (code, enhanced code,
//! text), not an error: the session decides which rejections end the probe and with which
//! reason. Everything is bounded: one deadline for the whole probe (each step gets what is left),
//! reply size limits, and a buffer that never holds more than one reply's worth of bytes.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout_at;
use tokio_rustls::client::TlsStream;

use super::auth::{self, MechanismChoice, SaslClient, SecretKind};
use super::command::{self, ClientName, Mailbox};
use super::extension::ServerInfo;
use super::reply::{Reply, ReplyBuffer, ReplyError, ReplyLimits};
use super::transcript::{Failure, StepRecord, Transcript};
use crate::cancel::Cancel;
use crate::networks::NetworkPolicy;
use crate::secret::Secret;
use crate::tls::{iana_cipher_name, TlsClient, TlsReport};
use crate::vocab::{Reason, StepName};

/// How TLS is used on the SMTP connection.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// Plain text throughout (port 25 without STARTTLS, test setups).
    None,
    /// Plain text greeting and EHLO, then STARTTLS (RFC 3207), usually port 587 or 25.
    #[default]
    Starttls,
    /// TLS from the first byte (RFC 8314), usually port 465.
    Implicit,
}

/// Which address family to connect over.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IpProtocol {
    /// The first address the resolver returns.
    #[default]
    Auto,
    /// IPv4 only.
    Ip4,
    /// IPv6 only.
    Ip6,
}

/// Credentials for the AUTH step, already resolved (a fetched OAuth token is a bearer token).
#[derive(Clone, Debug)]
pub struct AuthPlan {
    /// Which mechanism to use.
    pub mechanism: MechanismChoice,
    /// The authentication identity.
    pub username: String,
    /// Password or bearer token.
    pub secret: Secret,
    /// Which of the two `secret` is.
    pub kind: SecretKind,
}

/// The envelope and content of the token mail, composed before the session starts.
#[derive(Clone)]
pub struct Envelope {
    /// MAIL FROM.
    pub from: Mailbox,
    /// RCPT TO, one step each.
    pub to: Vec<Mailbox>,
    /// The message as it goes on the wire after 354: dot-stuffed, ending with `.` CRLF.
    pub wire_content: Vec<u8>,
}

impl std::fmt::Debug for Envelope {
    // The content carries the token: show its size only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelope")
            .field("from", &self.from)
            .field("to", &self.to)
            .field(
                "wire_content",
                &format_args!("<{} bytes>", self.wire_content.len()),
            )
            .finish()
    }
}

/// Everything one session needs. Built outside the timed steps.
#[derive(Clone, Debug)]
pub struct SessionPlan<'a> {
    /// Host name or IP literal to connect to.
    pub host: &'a str,
    /// TCP port.
    pub port: u16,
    /// Address family.
    pub ip_protocol: IpProtocol,
    /// TLS mode.
    pub tls_mode: TlsMode,
    /// The module's TLS client (unused with `TlsMode::None`).
    pub tls: &'a TlsClient,
    /// The EHLO name.
    pub ehlo: &'a ClientName,
    /// AUTH, when configured.
    pub auth: Option<AuthPlan>,
    /// The token mail, when configured.
    pub envelope: Option<&'a Envelope>,
    /// When the whole probe must be over.
    pub deadline: Instant,
    /// The transcript to record into: empty, or holding what ran before the connection (a token
    /// request), and told to its watcher, if any, as each step happens. Its start is the
    /// instant offsets count from.
    pub transcript: Transcript,
    /// Reply bounds.
    pub limits: ReplyLimits,
    /// Fires when the probe must stop early (shutdown, reload): the session then ends as if its
    /// deadline had come, with a best-effort QUIT.
    pub cancel: Cancel,
    /// When set, the addresses the session may connect to: the first resolved address it
    /// allows is used.
    pub networks: Option<&'a NetworkPolicy>,
}

/// What one session found out.
#[derive(Clone, Debug)]
pub struct SessionReport {
    /// Every step that ran.
    pub transcript: Transcript,
    /// The address connected to.
    pub peer: Option<SocketAddr>,
    /// What EHLO said before TLS (or the only EHLO, without TLS).
    pub server: Option<ServerInfo>,
    /// What EHLO said after TLS.
    pub server_tls: Option<ServerInfo>,
    /// The TLS session, when one was established.
    pub tls: Option<TlsReport>,
    /// The SASL mechanism used.
    pub auth_mechanism: Option<&'static str>,
    /// Whether the token mail got a 2xx after its content.
    pub message_accepted: bool,
    /// When the message's final reply arrived (delivery time counts from here).
    pub message_accepted_at: Option<Instant>,
}

impl SessionReport {
    /// A report of a session that never started.
    pub fn empty(started: Instant) -> SessionReport {
        SessionReport::recorded_in(Transcript::new(started))
    }

    /// A report whose steps go into `transcript`.
    pub fn recorded_in(transcript: Transcript) -> SessionReport {
        SessionReport {
            transcript,
            peer: None,
            server: None,
            server_tls: None,
            tls: None,
            auth_mechanism: None,
            message_accepted: false,
            message_accepted_at: None,
        }
    }

    /// The failure, if the session failed.
    pub fn failure(&self) -> Option<&Failure> {
        self.transcript.failure()
    }

    /// The EHLO facts that count: after TLS when TLS was used.
    pub fn effective_server(&self) -> Option<&ServerInfo> {
        self.server_tls.as_ref().or(self.server.as_ref())
    }
}

/// Runs one session to its end and reports it. Never panics on server input; never outlives
/// `plan.deadline` by more than the time to send a best-effort QUIT after a failure (bounded too).
pub async fn run(plan: SessionPlan<'_>) -> SessionReport {
    let mut s = Session {
        report: SessionReport::recorded_in(plan.transcript.clone()),
        conn: None,
        plan,
    };
    let result = s.converse().await;
    if result.is_err() {
        s.quit_best_effort().await;
    }
    s.report
}

/// The SMTPS port (RFC 8314): implicit TLS, the client speaks first.
const SMTPS_PORT: u16 = 465;

/// How long a server on the SMTPS port may stay silent, in a mode that expects a plain-text
/// greeting, before the probe asks it with a ClientHello whether it waits for TLS. Greetings
/// come within milliseconds; 1.5 s leaves room for a slow network and still answers long
/// before any probe deadline.
const SMTPS_PATIENCE: Duration = Duration::from_millis(1500);

/// Marks a step that ended the probe; the failure itself is already in the transcript.
struct Stop;

type StepResult<T> = Result<T, Stop>;

struct Session<'a> {
    plan: SessionPlan<'a>,
    conn: Option<Connection>,
    report: SessionReport,
}

impl Session<'_> {
    async fn converse(&mut self) -> StepResult<()> {
        let addr = self.resolve().await?;
        let tcp = self.connect(addr).await?;
        match self.plan.tls_mode {
            TlsMode::Implicit => {
                let tls = self.handshake(tcp).await?;
                self.conn = Some(Connection::new(
                    Stream::Tls(Box::new(tls)),
                    self.plan.limits,
                ));
                self.greeting().await?;
                self.report.server_tls = Some(self.ehlo(StepName::Ehlo).await?);
            }
            TlsMode::Starttls => {
                self.conn = Some(Connection::new(Stream::Plain(tcp), self.plan.limits));
                self.greeting().await?;
                let info = self.ehlo(StepName::Ehlo).await?;
                let offered = info.supports_starttls();
                self.report.server = Some(info);
                if !offered {
                    return self.step(StepName::Starttls, Instant::now()).stop(
                        Reason::StarttlsNotOffered,
                        "EHLO reply does not list STARTTLS",
                    );
                }
                self.starttls().await?;
                let tcp = self.take_plain()?;
                let tls = self.handshake(tcp).await?;
                self.conn = Some(Connection::new(
                    Stream::Tls(Box::new(tls)),
                    self.plan.limits,
                ));
                self.report.server_tls = Some(self.ehlo(StepName::EhloTls).await?);
            }
            TlsMode::None => {
                self.conn = Some(Connection::new(Stream::Plain(tcp), self.plan.limits));
                self.greeting().await?;
                self.report.server = Some(self.ehlo(StepName::Ehlo).await?);
            }
        }
        if let Some(auth) = self.plan.auth.clone() {
            self.authenticate(&auth).await?;
        }
        if let Some(envelope) = self.plan.envelope {
            self.send_mail(envelope).await?;
        }
        self.quit().await
    }

    async fn resolve(&mut self) -> StepResult<SocketAddr> {
        let began = Instant::now();
        let host = self.plan.host.trim_start_matches('[').trim_end_matches(']');
        let lookup = until(
            self.plan.deadline,
            &self.plan.cancel,
            tokio::net::lookup_host((host, self.plan.port)),
        )
        .await;
        let want = self.plan.ip_protocol;
        let networks = self.plan.networks;
        let mut refused = None;
        let result = match lookup {
            Err(_) => Err((
                Reason::Timeout,
                format!("resolving {host} did not finish before the deadline"),
            )),
            Ok(Err(e)) if out_of_descriptors(&e) => {
                Err((Reason::ProberOverloaded, format!("resolving {host}: {e}")))
            }
            Ok(Err(e)) => Err((Reason::DnsError, format!("resolving {host}: {e}"))),
            Ok(Ok(addrs)) => addrs
                .into_iter()
                .filter(|a| match want {
                    IpProtocol::Auto => true,
                    IpProtocol::Ip4 => a.is_ipv4(),
                    IpProtocol::Ip6 => a.is_ipv6(),
                })
                .find(|a| match networks.map(|n| n.check(a.ip())) {
                    Some(Err(why)) => {
                        refused.get_or_insert(why);
                        false
                    }
                    _ => true,
                })
                .ok_or_else(|| match refused {
                    Some(why) => (
                        Reason::DnsError,
                        format!("{host} resolves to no address this probe may reach: {why}"),
                    ),
                    None => (Reason::DnsError, format!("{host} has no {want:?} address")),
                }),
        };
        match result {
            Ok(addr) => {
                self.report.peer = Some(addr);
                self.step(StepName::Resolve, began)
                    .found(addr.to_string())
                    .ok();
                Ok(addr)
            }
            Err((reason, detail)) => self.step(StepName::Resolve, began).stop(reason, detail),
        }
    }

    async fn connect(&mut self, addr: SocketAddr) -> StepResult<TcpStream> {
        let began = Instant::now();
        match until(
            self.plan.deadline,
            &self.plan.cancel,
            TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(tcp)) => {
                // Replies are small and every one is timed: do not let Nagle delay our commands.
                let _ = tcp.set_nodelay(true);
                self.step(StepName::Connect, began)
                    .found(addr.to_string())
                    .ok();
                Ok(tcp)
            }
            Ok(Err(e)) => {
                let reason = match e.kind() {
                    _ if out_of_descriptors(&e) => Reason::ProberOverloaded,
                    io::ErrorKind::TimedOut => Reason::ConnectTimeout,
                    _ => Reason::ConnectRefused,
                };
                self.step(StepName::Connect, began)
                    .stop(reason, format!("connect to {addr}: {e}"))
            }
            Err(_) => self.step(StepName::Connect, began).stop(
                Reason::ConnectTimeout,
                format!("connect to {addr}: no answer before the deadline"),
            ),
        }
    }

    async fn handshake(&mut self, tcp: TcpStream) -> StepResult<TlsStream<TcpStream>> {
        let began = Instant::now();
        let tls = self.plan.tls;
        let name =
            tls.server_name_for(self.plan.host.trim_start_matches('[').trim_end_matches(']'));
        let outcome = until(
            self.plan.deadline,
            &self.plan.cancel,
            tls.handshake(tcp, name, SystemTime::now()),
        )
        .await;
        match outcome {
            Err(_) => self.step(StepName::TlsHandshake, began).stop(
                Reason::Timeout,
                "TLS handshake did not finish before the deadline",
            ),
            Ok(Err(failure)) if failure.not_tls && self.plan.tls_mode == TlsMode::Implicit => {
                self.step(StepName::TlsHandshake, began).stop(
                    Reason::TlsModeMismatch,
                    format!(
                        "the server answered the TLS ClientHello with something that is not TLS \
                         ({}): it greets in plain text on this port, so it speaks STARTTLS or \
                         plain SMTP, not implicit TLS",
                        failure.detail
                    ),
                )
            }
            Ok(Err(failure)) => self
                .step(StepName::TlsHandshake, began)
                .stop(failure.reason, failure.detail),
            Ok(Ok((stream, report))) => {
                let error = report.chain.error.clone();
                // As OpenSSL prints them: `TLSv1.3 TLS_AES_256_GCM_SHA384`.
                let found = format!("{} {}", report.version, iana_cipher_name(&report.cipher));
                self.report.tls = Some(report);
                match error {
                    Some(e) if !tls.settings().insecure_skip_verify => {
                        // The chain is not trusted: say nothing more over this connection.
                        drop(stream);
                        self.step(StepName::TlsHandshake, began)
                            .found(found)
                            .stop(e.reason, e.detail)
                    }
                    _ => {
                        self.step(StepName::TlsHandshake, began).found(found).ok();
                        Ok(stream)
                    }
                }
            }
        }
    }

    async fn greeting(&mut self) -> StepResult<()> {
        let began = Instant::now();
        if self.plan.port == SMTPS_PORT && self.plan.tls_mode != TlsMode::Implicit {
            self.expect_plain_greeting(began).await?;
        }
        let reply = self.read(StepName::Greeting, began, None).await?;
        if reply.code == 220 {
            self.step(StepName::Greeting, began).reply(reply).ok();
            Ok(())
        } else {
            let detail = reply.text();
            self.step(StepName::Greeting, began)
                .reply(reply)
                .stop(Reason::GreetingRejected, detail)
        }
    }

    /// On the SMTPS port a server that speaks implicit TLS (RFC 8314) waits silently for a
    /// ClientHello, and a probe that expects a greeting would wait out its whole deadline and
    /// blame the server. After [`SMTPS_PATIENCE`] of silence the probe sends one: a TLS answer
    /// (a handshake or alert record) ends the greeting with `tls_mode_mismatch`; anything else
    /// is kept and read as the greeting. Only on this port: elsewhere a client that speaks
    /// first is a spam bot to some servers (Postfix's postscreen pre-greet test).
    async fn expect_plain_greeting(&mut self, began: Instant) -> StepResult<()> {
        let host = self.plan.host.trim_start_matches('[').trim_end_matches(']');
        let Some(hello) = self
            .plan
            .tls
            .client_hello(self.plan.tls.server_name_for(host))
        else {
            return Ok(());
        };
        let patience = (began + SMTPS_PATIENCE).min(self.plan.deadline);
        let (deadline, cancel) = (self.plan.deadline, self.plan.cancel.clone());
        let Some(Connection {
            stream: Stream::Plain(tcp),
            buf,
        }) = self.conn.as_mut()
        else {
            return Ok(());
        };
        if !buf.is_empty() || until(patience, &cancel, tcp.readable()).await.is_ok() {
            // Something arrived (or the connection broke): the read tells which.
            return Ok(());
        }
        if cancel.is_cancelled()
            || until(deadline, &cancel, write_all(tcp, &hello))
                .await
                .is_err()
        {
            return Ok(());
        }
        let mut first = [0u8; 5];
        let n = match until(deadline, &cancel, read_some(tcp, &mut first)).await {
            Ok(Ok(n)) => n,
            _ => return Ok(()),
        };
        // A TLS record: content type handshake (22) or alert (21), then major version 3.
        let record = match first[..n] {
            [22, 3, ..] => "handshake",
            [21, 3, ..] => "alert",
            _ => {
                buf.extend(&first[..n]);
                return Ok(());
            }
        };
        let expected = match self.plan.tls_mode {
            TlsMode::None => "a plain-text greeting",
            _ => "a plain-text greeting before STARTTLS",
        };
        self.step(StepName::Greeting, began).stop(
            Reason::TlsModeMismatch,
            format!(
                "no greeting within {} ms on port {SMTPS_PORT}, and the server answered a TLS \
                 ClientHello with a TLS {record} record: this looks like implicit TLS (SMTPS), \
                 not {expected}",
                SMTPS_PATIENCE.as_millis()
            ),
        )
    }

    async fn ehlo(&mut self, step: StepName) -> StepResult<ServerInfo> {
        let line = command::Ehlo(self.plan.ehlo).to_string();
        let reply = self
            .exchange(step, &line, |r| r.code == 250, Reason::EhloRejected)
            .await?;
        Ok(ServerInfo::from_ehlo(&reply))
    }

    async fn starttls(&mut self) -> StepResult<()> {
        let line = command::Starttls.to_string();
        self.exchange(
            StepName::Starttls,
            &line,
            |r| r.code == 220,
            Reason::StarttlsRejected,
        )
        .await?;
        Ok(())
    }

    /// Takes the plain TCP stream out for the TLS upgrade. Bytes the server sent after its 220
    /// would be read as if they came over TLS (the STARTTLS command-injection flaw,
    /// CVE-2011-0411 and kin): such a server fails the probe.
    fn take_plain(&mut self) -> StepResult<TcpStream> {
        let conn = self.conn.take();
        match conn {
            Some(Connection {
                stream: Stream::Plain(tcp),
                buf,
                ..
            }) if buf.is_empty() => Ok(tcp),
            Some(c) => {
                self.conn = Some(c);
                self.step(StepName::TlsHandshake, Instant::now()).stop(
                    Reason::ProtocolError,
                    "the server sent data after its STARTTLS reply, before the TLS handshake",
                )
            }
            None => self
                .step(StepName::TlsHandshake, Instant::now())
                .stop(Reason::ConnectionClosed, "no connection"),
        }
    }

    async fn authenticate(&mut self, auth: &AuthPlan) -> StepResult<()> {
        let offered = self
            .report
            .effective_server()
            .map(ServerInfo::auth_mechanisms)
            .unwrap_or_default();
        let Some(mechanism) = auth::choose(auth.mechanism, auth.kind, &offered) else {
            let detail = if offered.is_empty() {
                "the server offers no AUTH mechanism".to_string()
            } else {
                format!(
                    "the server offers AUTH {} but none fits the configuration",
                    offered.join(" ")
                )
            };
            return self
                .step(StepName::Auth, Instant::now())
                .stop(Reason::AuthNotOffered, detail);
        };
        self.report.auth_mechanism = Some(mechanism.name());
        let began = Instant::now();
        let mut sasl = SaslClient::new(
            mechanism,
            &auth.username,
            &auth.secret,
            self.plan.host,
            self.plan.port,
        );
        let initial = sasl.initial_response();
        let line = command::Auth {
            mechanism: mechanism.name(),
            initial_response: initial.as_deref(),
        }
        .to_string();
        let shown = match initial {
            Some(_) => format!("AUTH {} ****", mechanism.name()),
            None => format!("AUTH {}", mechanism.name()),
        };
        self.send(StepName::Auth, began, &line, &shown).await?;
        // A SASL exchange has few rounds; a server that keeps challenging is broken.
        let mut error_challenge = None;
        for _ in 0..4 {
            let reply = self.read(StepName::Auth, began, Some(&shown)).await?;
            if reply.code == 334 {
                let challenge = reply.first_line().to_string();
                if mechanism.uses_token() {
                    error_challenge = SaslClient::decode_challenge(&challenge);
                }
                let answer = sasl.respond(&challenge);
                let answer_line = command::AuthResponse(&answer).to_string();
                self.send(StepName::Auth, began, &answer_line, &shown)
                    .await?;
                continue;
            }
            if reply.is_positive() {
                self.step(StepName::Auth, began)
                    .sent(shown)
                    .reply(reply)
                    .ok();
                return Ok(());
            }
            let mut detail = reply.text();
            if let Some(json) = error_challenge {
                detail = format!("{detail} (server said {json})");
            }
            return self
                .step(StepName::Auth, began)
                .sent(shown)
                .reply(reply)
                .stop(Reason::AuthFailed, detail);
        }
        self.step(StepName::Auth, began)
            .sent(shown)
            .stop(Reason::ProtocolError, "too many AUTH challenges")
    }

    async fn send_mail(&mut self, envelope: &Envelope) -> StepResult<()> {
        let smtputf8 = !envelope.from.is_ascii() || envelope.to.iter().any(|m| !m.is_ascii());
        let line = command::Mail {
            from: &envelope.from,
            smtputf8,
        }
        .to_string();
        self.exchange(
            StepName::Mail,
            &line,
            Reply::is_positive,
            Reason::SenderRejected,
        )
        .await?;
        for rcpt in &envelope.to {
            let line = command::Rcpt(rcpt).to_string();
            self.exchange(
                StepName::Rcpt,
                &line,
                Reply::is_positive,
                Reason::RecipientRejected,
            )
            .await?;
        }
        let line = command::Data.to_string();
        self.exchange(
            StepName::Data,
            &line,
            |r| r.code == 354,
            Reason::DataRejected,
        )
        .await?;
        let shown = format!("<message, {} bytes>", envelope.wire_content.len());
        let began = Instant::now();
        self.send_raw(StepName::Message, began, &envelope.wire_content, &shown)
            .await?;
        let reply = self.read(StepName::Message, began, Some(&shown)).await?;
        if reply.is_positive() {
            self.report.message_accepted = true;
            self.report.message_accepted_at = Some(Instant::now());
            self.step(StepName::Message, began)
                .sent(shown)
                .reply(reply)
                .ok();
            Ok(())
        } else {
            let detail = reply.text();
            self.step(StepName::Message, began)
                .sent(shown)
                .reply(reply)
                .stop(Reason::MessageRejected, detail)
        }
    }

    /// QUIT at the end of a successful conversation: recorded, but a server that hangs up
    /// without a 221 does not fail the probe (everything that matters has happened).
    async fn quit(&mut self) -> StepResult<()> {
        let began = Instant::now();
        let line = command::Quit.to_string();
        if self.conn.is_some() {
            self.report
                .transcript
                .sending(StepName::Quit, began, "QUIT");
        }
        let outcome = match self.conn.as_mut() {
            Some(conn) => timeout_at(self.plan.deadline.into(), async {
                conn.write(line.as_bytes()).await.map_err(ReadError::Io)?;
                conn.read_reply().await
            })
            .await
            .ok(),
            None => None,
        };
        let reply = match outcome {
            Some(Ok(reply)) => Some(reply),
            _ => None,
        };
        let answered = reply.is_some();
        self.step(StepName::Quit, began)
            .sent("QUIT".to_string())
            .reply(reply)
            .ok();
        if let Some(mut conn) = self.conn.take() {
            // A server that answered QUIT closes the connection (RFC 5321 4.1.1.10): a TLS
            // close_notify after that only meets a closed socket and earns a reset. It is sent
            // when the server did not answer.
            if !answered {
                conn.shutdown().await;
            }
        }
        Ok(())
    }

    /// After a failure: QUIT without waiting long, not recorded, then close.
    async fn quit_best_effort(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let until = Instant::now() + Duration::from_millis(250);
        let until = until.min(self.plan.deadline.max(Instant::now()));
        let _ = timeout_at(until.into(), async {
            conn.write(command::Quit.to_string().as_bytes())
                .await
                .map_err(ReadError::Io)?;
            conn.read_reply().await
        })
        .await;
        conn.shutdown().await;
    }

    /// Sends a command and reads its reply as one step; a reply `accept` refuses ends the probe
    /// with `reason`.
    async fn exchange(
        &mut self,
        step: StepName,
        line: &str,
        accept: impl Fn(&Reply) -> bool,
        reason: Reason,
    ) -> StepResult<Reply> {
        let began = Instant::now();
        let shown = line.trim_end().to_string();
        self.send(step, began, line, &shown).await?;
        let reply = self.read(step, began, Some(&shown)).await?;
        if accept(&reply) {
            self.step(step, began).sent(shown).reply(reply.clone()).ok();
            Ok(reply)
        } else {
            let detail = reply.text();
            self.step(step, began)
                .sent(shown)
                .reply(reply)
                .stop(reason, detail)
        }
    }

    async fn send(
        &mut self,
        step: StepName,
        began: Instant,
        line: &str,
        shown: &str,
    ) -> StepResult<()> {
        self.send_raw(step, began, line.as_bytes(), shown).await
    }

    async fn send_raw(
        &mut self,
        step: StepName,
        began: Instant,
        bytes: &[u8],
        shown: &str,
    ) -> StepResult<()> {
        let deadline = self.plan.deadline;
        let Some(conn) = self.conn.as_mut() else {
            return self
                .step(step, began)
                .sent(shown.to_string())
                .stop(Reason::ConnectionClosed, "no connection");
        };
        self.report.transcript.sending(step, began, shown);
        match until(deadline, &self.plan.cancel, conn.write(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => self
                .step(step, began)
                .sent(shown.to_string())
                .stop(Reason::ConnectionClosed, format!("write failed: {e}")),
            Err(_) => self
                .step(step, began)
                .sent(shown.to_string())
                .stop(Reason::Timeout, "write did not finish before the deadline"),
        }
    }

    async fn read(
        &mut self,
        step: StepName,
        began: Instant,
        shown: Option<&str>,
    ) -> StepResult<Reply> {
        let deadline = self.plan.deadline;
        let Some(conn) = self.conn.as_mut() else {
            return self
                .step(step, began)
                .sent(shown.map(str::to_string))
                .stop(Reason::ConnectionClosed, "no connection");
        };
        let outcome = until(deadline, &self.plan.cancel, conn.read_reply()).await;
        let silent = conn.buf.is_empty();
        let (reason, detail) = match outcome {
            Ok(Ok(reply)) => return Ok(reply),
            Err(_) if step == StepName::Greeting && silent => (
                Reason::Timeout,
                "no greeting before the deadline: the server accepted the connection and said \
                 nothing (a server that speaks implicit TLS, SMTPS, waits like this for the \
                 client to start TLS)"
                    .to_string(),
            ),
            Err(_) => (
                Reason::Timeout,
                format!("no complete reply in {step} before the deadline"),
            ),
            Ok(Err(ReadError::Closed { partial: false })) => (
                Reason::ConnectionClosed,
                "the server closed the connection".into(),
            ),
            Ok(Err(ReadError::Closed { partial: true })) => (
                Reason::ConnectionClosed,
                "the server closed the connection in the middle of a reply".into(),
            ),
            Ok(Err(ReadError::Io(e))) => (Reason::ConnectionClosed, format!("read failed: {e}")),
            Ok(Err(ReadError::Invalid(e))) => (Reason::ProtocolError, e.to_string()),
        };
        self.step(step, began)
            .sent(shown.map(str::to_string))
            .stop(reason, detail)
    }

    /// Starts recording a step of this session's transcript.
    fn step(&mut self, name: StepName, began: Instant) -> StepRecord<'_> {
        self.report.transcript.record(name, began)
    }
}

/// Ends a step that failed, which ends the session.
trait Stops {
    /// Records the failure for `reason`; the session stops.
    fn stop<T>(self, reason: Reason, detail: impl Into<String>) -> StepResult<T>;
}

impl Stops for StepRecord<'_> {
    fn stop<T>(self, reason: Reason, detail: impl Into<String>) -> StepResult<T> {
        self.fail(reason, detail);
        Err(Stop)
    }
}

/// The deadline came, or the probe was cancelled.
#[derive(Debug)]
struct Stopped;

/// Runs `fut` until it completes, the deadline passes or `cancel` fires, whichever is first.
async fn until<F: std::future::Future>(
    deadline: Instant,
    cancel: &Cancel,
    fut: F,
) -> Result<F::Output, Stopped> {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(Stopped),
        outcome = timeout_at(deadline.into(), fut) => outcome.map_err(|_| Stopped),
    }
}

/// Whether an error is the exporter's own: its process (`EMFILE`) or the system (`ENFILE`)
/// has no file descriptor left. Such a failure is never the target's.
pub(crate) fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Why no reply could be read.
#[derive(Debug)]
enum ReadError {
    /// EOF; `partial` when part of a reply had arrived.
    Closed { partial: bool },
    /// A socket or TLS error.
    Io(io::Error),
    /// The bytes are not a valid reply, or exceed a bound.
    Invalid(ReplyError),
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// A buffered connection that reads whole replies. The buffer holds at most one reply's bytes
/// plus one read's worth; bytes past a reply are kept for the next one (pipelined servers).
struct Connection {
    stream: Stream,
    buf: ReplyBuffer,
}

impl Connection {
    fn new(stream: Stream, limits: ReplyLimits) -> Connection {
        Connection {
            stream,
            buf: ReplyBuffer::new(limits),
        }
    }

    async fn read_reply(&mut self) -> Result<Reply, ReadError> {
        let mut chunk = [0u8; 4096];
        loop {
            match self.buf.next_reply() {
                Ok(Some(reply)) => return Ok(reply),
                Ok(None) => {}
                Err(e) => return Err(ReadError::Invalid(e)),
            }
            let n = match &mut self.stream {
                Stream::Plain(s) => read_some(s, &mut chunk).await,
                Stream::Tls(s) => read_some(s.as_mut(), &mut chunk).await,
            }
            .map_err(ReadError::Io)?;
            if n == 0 {
                return Err(ReadError::Closed {
                    partial: !self.buf.is_empty(),
                });
            }
            self.buf.extend(&chunk[..n]);
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.stream {
            Stream::Plain(s) => write_all(s, bytes).await?,
            Stream::Tls(s) => write_all(s.as_mut(), bytes).await?,
        }
        self.ack_at_once();
        Ok(())
    }

    /// Asks the kernel to acknowledge what the server sends next as soon as it is read
    /// (`TCP_QUICKACK`), instead of delaying the ACK. A server may answer a command in two
    /// writes: OpenSSL sends its TLS 1.3 session tickets when it reads our Finished, then the
    /// reply to the EHLO that followed. With Nagle's algorithm on (Postfix leaves it on), the
    /// reply waits until the tickets are acknowledged, and Linux delays that ACK by up to 40 ms
    /// on a connection that looks interactive (we wrote soon after reading) when we have nothing
    /// more to send. Writing puts the socket back into that delayed mode, so this follows every
    /// command.
    fn ack_at_once(&self) {
        // Only a hint: a socket that refuses it merely acknowledges later.
        #[cfg(target_os = "linux")]
        let _ = self.tcp().set_quickack(true);
    }

    /// The TCP connection under the stream.
    fn tcp(&self) -> &TcpStream {
        match &self.stream {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }

    async fn shutdown(&mut self) {
        let _ = match &mut self.stream {
            Stream::Plain(s) => s.shutdown().await,
            Stream::Tls(s) => s.shutdown().await,
        };
    }
}

async fn read_some<S: AsyncRead + Unpin>(s: &mut S, buf: &mut [u8]) -> io::Result<usize> {
    s.read(buf).await
}

async fn write_all<S: AsyncWrite + Unpin>(s: &mut S, bytes: &[u8]) -> io::Result<()> {
    s.write_all(bytes).await?;
    s.flush().await
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::sync::Arc;

    use super::*;
    use rustls::pki_types::ServerName;

    use crate::demo::{DemoPki, Sent};

    /// A connected loopback pair: the client's end and the server's.
    async fn tcp_pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (client.unwrap(), accepted.unwrap().0)
    }

    /// The socket is in Linux's delayed-ACK mode, as a quick read-then-write turn leaves it;
    /// writing a command must switch it to acknowledging at once (`TCP_QUICKACK` reads 1), or a
    /// server with Nagle on waits up to 40 ms for our ACK before sending the rest of its answer.
    async fn assert_command_asks_for_quick_acks(conn: &mut Connection) {
        conn.tcp().set_quickack(false).unwrap();
        assert!(
            !conn.tcp().quickack().unwrap(),
            "delayed-ACK mode not entered"
        );
        conn.write(b"EHLO probe.test\r\n").await.unwrap();
        assert!(
            conn.tcp().quickack().unwrap(),
            "after a command the socket still delays its ACKs"
        );
    }

    #[tokio::test]
    async fn a_plain_command_asks_for_quick_acks() {
        let (client, _server) = tcp_pair().await;
        let mut conn = Connection::new(Stream::Plain(client), ReplyLimits::default());
        assert_command_asks_for_quick_acks(&mut conn).await;
    }

    #[tokio::test]
    async fn a_command_over_tls_asks_for_quick_acks() {
        let pki = DemoPki::localhost();
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(pki.chain(&Sent::Full), pki.leaf_key())
        .unwrap();
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(pki.root_store())
        .with_no_client_auth();
        let (client_tcp, server_tcp) = tcp_pair().await;
        let name = ServerName::try_from("localhost").unwrap();
        let (client_tls, server_tls) = tokio::join!(
            tokio_rustls::TlsConnector::from(Arc::new(client)).connect(name, client_tcp),
            tokio_rustls::TlsAcceptor::from(Arc::new(server)).accept(server_tcp),
        );
        let _server_tls = server_tls.unwrap();
        let stream = Stream::Tls(Box::new(client_tls.unwrap()));
        let mut conn = Connection::new(stream, ReplyLimits::default());
        assert_command_asks_for_quick_acks(&mut conn).await;
    }
}
