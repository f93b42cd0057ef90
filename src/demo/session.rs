//! One SMTP conversation of the demo server: reading commands (bounded), the state machine of
//! RFC 5321 with STARTTLS and AUTH, the faults configured at each verb, and the replies,
//! batched so that pipelined commands get theirs in one write.

use super::faults::{FaultAction, Verb};
use super::server::{ReceivedMessage, ServerConfig, Shared, TlsMode};
use super::wire::{multiline, parse_bearer, parse_path, trim_line_end, wire_reply, Mechanism};
use base64::Engine as _;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// Longest command line, CRLF included. RFC 5321 allows 512 octets, but RFC 4954 §4 lets an
/// AUTH line with its initial response reach 12288, and OAuth tokens get close to that.
const MAX_COMMAND_LINE: usize = 12 * 1024;
/// Longest line of message data we keep; a longer one makes the message too big. RFC 5322 says
/// 1000, but real clients send longer lines and real servers take them.
const MAX_DATA_LINE: usize = 64 * 1024;
/// Most recipients of one transaction (RFC 5321 §4.5.3.1.8 asks servers to take at least 100).
const MAX_RECIPIENTS: usize = 100;
/// Syntax and sequence errors after which a session is cut off, like a real MTA does with a
/// client that sends garbage.
const MAX_ERRORS: u32 = 20;
/// Bytes asked for per read.
const READ_CHUNK: usize = 8 * 1024;

/// The connection, plaintext or after the TLS handshake.
enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while the plaintext stream is being handed to the TLS acceptor.
    Gone,
}

impl Conn {
    async fn read_buf(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        buf.reserve(READ_CHUNK);
        match self {
            Conn::Plain(s) => s.read_buf(buf).await,
            Conn::Tls(s) => s.read_buf(buf).await,
            Conn::Gone => Ok(0),
        }
    }

    async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.write_all(data).await,
            Conn::Tls(s) => {
                s.write_all(data).await?;
                // rustls buffers plaintext until flushed into records.
                s.flush().await
            }
            Conn::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Ends politely: FIN, and close_notify under TLS.
    async fn shutdown(&mut self) {
        let _ = match self {
            Conn::Plain(s) => s.shutdown().await,
            Conn::Tls(s) => s.shutdown().await,
            Conn::Gone => Ok(()),
        };
    }
}

/// One line from the client.
enum Line {
    /// A whole line, line end included.
    Complete(Vec<u8>),
    /// A line longer than allowed; it was read to its end and thrown away.
    TooLong,
}

/// What the session does after a command.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    /// Send what is pending and close politely (QUIT).
    Quit,
    /// Close at once (a fault, a failed handshake).
    Drop,
}

/// What a fault left to do at a verb.
enum Plan {
    /// Run the verb (perhaps with a scripted final reply in `Session::scripted`).
    Normal,
    /// The fault answered (refusal, raw bytes, drip): the verb does not run.
    Answered,
    /// The fault refused with a 4xx/5xx reply: the verb does not run.
    Refused,
    /// End the session without another word.
    Close,
}

/// Result of one SASL response.
enum Answer {
    Given(Vec<u8>),
    Aborted,
    Malformed,
}

/// Result of a SASL exchange.
enum AuthOutcome {
    Success(String),
    Invalid,
    Aborted,
    Malformed,
}

/// Decrements the open-session count however the session ends, cancellation included.
struct ActiveGuard(Arc<Shared>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One SMTP conversation.
pub(super) struct Session {
    shared: Arc<Shared>,
    _active: ActiveGuard,
    conn: Conn,
    /// Bytes read and not yet taken as lines.
    input: Vec<u8>,
    /// Replies not yet written: pipelined commands get their replies in one write, sent when
    /// the session would otherwise wait.
    output: Vec<u8>,
    /// A positive scripted reply replacing the final reply of the current verb.
    scripted: Option<String>,
    tls: bool,
    after_starttls: bool,
    /// The greeting was a scripted refusal: RFC 5321 §3.1 then allows only QUIT.
    greeting_refused: bool,
    helo: Option<String>,
    esmtp: bool,
    auth_user: Option<String>,
    mail_from: Option<String>,
    rcpts: Vec<String>,
    errors: u32,
}

impl Session {
    pub(super) fn new(shared: Arc<Shared>, tcp: TcpStream) -> Session {
        shared.active.fetch_add(1, Ordering::Relaxed);
        Session {
            _active: ActiveGuard(Arc::clone(&shared)),
            shared,
            conn: Conn::Plain(tcp),
            input: Vec::new(),
            output: Vec::new(),
            scripted: None,
            tls: false,
            after_starttls: false,
            greeting_refused: false,
            helo: None,
            esmtp: false,
            auth_user: None,
            mail_from: None,
            rcpts: Vec::new(),
            errors: 0,
        }
    }

    fn config(&self) -> &ServerConfig {
        &self.shared.config
    }

    pub(super) async fn run(mut self) -> io::Result<()> {
        if self.config().tls == TlsMode::Implicit && self.handshake().await? == Flow::Drop {
            return Ok(());
        }
        let mut flow = self.greet().await?;
        while flow == Flow::Continue {
            flow = match self.read_line(MAX_COMMAND_LINE).await? {
                Line::TooLong => {
                    self.refuse("500 5.5.2 Error: line too long");
                    Flow::Continue
                }
                Line::Complete(line) => self.command(&line).await?,
            };
            if flow == Flow::Continue && self.errors >= MAX_ERRORS {
                self.send("421 4.7.0 Error: too many errors");
                flow = Flow::Quit;
            }
        }
        if flow == Flow::Quit {
            self.flush().await?;
            self.conn.shutdown().await;
        }
        Ok(())
    }

    // ---- I/O ----------------------------------------------------------------------------

    /// Queues one reply (lines already joined by CRLF) and its final CRLF.
    fn send(&mut self, reply: &str) {
        self.output.extend_from_slice(reply.as_bytes());
        self.output.extend_from_slice(b"\r\n");
    }

    /// Queues the final reply of the current verb: the scripted one if a fault set one.
    fn finish(&mut self, reply: &str) {
        match self.scripted.take() {
            Some(scripted) => self.output.extend_from_slice(scripted.as_bytes()),
            None => self.send(reply),
        }
    }

    /// Like [`Session::finish`], counting a client error.
    fn refuse(&mut self, reply: &str) {
        self.errors += 1;
        self.finish(reply);
    }

    async fn flush(&mut self) -> io::Result<()> {
        if !self.output.is_empty() {
            self.conn.write_all(&self.output).await?;
            self.output.clear();
        }
        Ok(())
    }

    /// Reads one line of at most `max` bytes. Pending replies are sent before waiting for
    /// input; a closed connection or the idle timeout is an error that ends the session.
    async fn read_line(&mut self, max: usize) -> io::Result<Line> {
        let mut scanned = 0;
        let mut discarding = false;
        loop {
            if let Some(i) = self.input[scanned..].iter().position(|&b| b == b'\n') {
                let end = scanned + i + 1;
                let line: Vec<u8> = self.input.drain(..end).collect();
                if discarding || line.len() > max {
                    return Ok(Line::TooLong);
                }
                return Ok(Line::Complete(line));
            }
            if self.input.len() > max {
                // Keep reading to the end of the line, but not keeping it.
                discarding = true;
                self.input.clear();
            }
            scanned = self.input.len();
            self.flush().await?;
            let idle = self.config().idle_timeout;
            let read = tokio::time::timeout(idle, self.conn.read_buf(&mut self.input)).await;
            match read {
                Ok(Ok(0)) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(Ok(_)) => {}
                Ok(Err(err)) => return Err(err),
                Err(_) => {
                    self.send("421 4.4.2 Error: timeout exceeded");
                    let _ = self.flush().await;
                    return Err(io::ErrorKind::TimedOut.into());
                }
            }
        }
    }

    /// Reads and throws away input until the client closes (or the idle timeout).
    async fn stall(&mut self) {
        let idle = self.config().idle_timeout;
        let _ = tokio::time::timeout(idle, async {
            loop {
                self.input.clear();
                match self.conn.read_buf(&mut self.input).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
    }

    /// Applies the fault configured at `verb`, if any.
    async fn fault(&mut self, verb: Verb) -> io::Result<Plan> {
        self.scripted = None;
        let shared = Arc::clone(&self.shared);
        let Some(fault) = shared.config.faults.get(&verb) else {
            return Ok(Plan::Normal);
        };
        if !fault.delay.is_zero() {
            self.flush().await?;
            tokio::time::sleep(fault.delay).await;
        }
        match &fault.action {
            FaultAction::Normal => Ok(Plan::Normal),
            FaultAction::Reply(text) => {
                let wire = wire_reply(text);
                if matches!(text.as_bytes().first(), Some(b'2' | b'3')) {
                    self.scripted = Some(wire);
                    Ok(Plan::Normal)
                } else {
                    self.output.extend_from_slice(wire.as_bytes());
                    Ok(Plan::Refused)
                }
            }
            FaultAction::Close => {
                self.flush().await?;
                Ok(Plan::Close)
            }
            FaultAction::Stall => {
                self.flush().await?;
                self.stall().await;
                Ok(Plan::Close)
            }
            FaultAction::Raw(bytes) => {
                self.output.extend_from_slice(bytes);
                self.flush().await?;
                Ok(Plan::Answered)
            }
            FaultAction::EndlessReply => {
                self.flush().await?;
                let block = b"250-this reply never ends\r\n".repeat(64);
                // Ends when the client closes; the write waits while the client does not read.
                while self.conn.write_all(&block).await.is_ok() {}
                Ok(Plan::Close)
            }
            FaultAction::Drip { reply, interval } => {
                self.flush().await?;
                for byte in wire_reply(reply).bytes() {
                    self.conn.write_all(&[byte]).await?;
                    tokio::time::sleep(*interval).await;
                }
                Ok(Plan::Answered)
            }
        }
    }

    // ---- the conversation -----------------------------------------------------------------

    async fn greet(&mut self) -> io::Result<Flow> {
        match self.fault(Verb::Greeting).await? {
            Plan::Close => return Ok(Flow::Drop),
            Plan::Refused => self.greeting_refused = true,
            Plan::Answered => {}
            Plan::Normal => {
                let host = &self.config().hostname;
                let greeting = if self.config().multiline_greeting {
                    format!(
                        "220-{host} ESMTP smtp-prober demo\r\n\
                         220-This server keeps mail in memory for tests only\r\n\
                         220 {host} ready"
                    )
                } else {
                    format!("220 {host} ESMTP smtp-prober demo")
                };
                self.finish(&greeting);
            }
        }
        Ok(Flow::Continue)
    }

    /// The TLS handshake, unless a fault replaces it. Plaintext left in the input buffer is
    /// thrown away: pipelined behind STARTTLS it must not count as said under TLS (RFC 3207
    /// §4.2, the command injection of CVE-2011-0411).
    async fn handshake(&mut self) -> io::Result<Flow> {
        match self.fault(Verb::TlsHandshake).await? {
            Plan::Normal if self.scripted.is_none() => {}
            _ => {
                // A reply where the server's hello belongs is as broken as any other bytes.
                if let Some(scripted) = self.scripted.take() {
                    self.output.extend_from_slice(scripted.as_bytes());
                }
                self.flush().await?;
                return Ok(Flow::Drop);
            }
        }
        self.flush().await?;
        self.input.clear();
        let shared = Arc::clone(&self.shared);
        let Some(acceptor) = &shared.acceptor else {
            return Ok(Flow::Drop);
        };
        let Conn::Plain(tcp) = std::mem::replace(&mut self.conn, Conn::Gone) else {
            return Ok(Flow::Drop);
        };
        let idle = self.config().idle_timeout;
        match tokio::time::timeout(idle, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => {
                self.conn = Conn::Tls(Box::new(tls));
                self.tls = true;
                Ok(Flow::Continue)
            }
            Ok(Err(err)) => {
                tracing::trace!(%err, "demo TLS handshake failed");
                Ok(Flow::Drop)
            }
            Err(_) => Ok(Flow::Drop),
        }
    }

    async fn command(&mut self, raw: &[u8]) -> io::Result<Flow> {
        let text = String::from_utf8_lossy(trim_line_end(raw)).into_owned();
        let (word, args) = match text.split_once(' ') {
            Some((word, args)) => (word, args.trim()),
            None => (text.as_str(), ""),
        };
        let word = word.to_ascii_uppercase();
        let verb = match word.as_str() {
            "EHLO" | "HELO" if self.after_starttls => Verb::EhloTls,
            "EHLO" | "HELO" => Verb::Ehlo,
            "STARTTLS" => Verb::Starttls,
            "AUTH" => Verb::Auth,
            "MAIL" => Verb::Mail,
            "RCPT" => Verb::Rcpt,
            "DATA" => Verb::Data,
            "RSET" => Verb::Rset,
            "NOOP" => Verb::Noop,
            "QUIT" => Verb::Quit,
            "VRFY" => {
                self.send("252 2.0.0 Cannot VRFY user, but will accept message");
                return Ok(Flow::Continue);
            }
            _ => {
                self.scripted = None;
                self.refuse("500 5.5.2 Error: command not recognized");
                return Ok(Flow::Continue);
            }
        };
        if self.greeting_refused && verb != Verb::Quit {
            self.scripted = None;
            self.refuse("503 5.5.1 Error: no service, only QUIT");
            return Ok(Flow::Continue);
        }
        match self.fault(verb).await? {
            Plan::Close => return Ok(Flow::Drop),
            Plan::Answered | Plan::Refused => return Ok(Flow::Continue),
            Plan::Normal => {}
        }
        match verb {
            Verb::Ehlo | Verb::EhloTls => self.ehlo(word == "EHLO", args),
            Verb::Starttls => return self.starttls(args).await,
            Verb::Auth => self.auth(args).await?,
            Verb::Mail => self.mail(args),
            Verb::Rcpt => self.rcpt(args),
            Verb::Data => return self.data(args).await,
            Verb::Rset => {
                self.reset();
                self.finish("250 2.0.0 Ok");
            }
            Verb::Noop => self.finish("250 2.0.0 Ok"),
            Verb::Quit => {
                self.finish("221 2.0.0 Bye");
                return Ok(Flow::Quit);
            }
            Verb::Greeting | Verb::TlsHandshake | Verb::EndOfData => {}
        }
        Ok(Flow::Continue)
    }

    /// Forgets the mail transaction (RSET, EHLO, end of data).
    fn reset(&mut self) {
        self.mail_from = None;
        self.rcpts.clear();
    }

    fn auth_offered(&self) -> bool {
        let config = self.config();
        !config.auth_mechanisms.is_empty() && (self.tls || config.auth_before_tls)
    }

    fn ehlo(&mut self, extended: bool, args: &str) {
        if args.is_empty() {
            let syntax = if extended { "EHLO" } else { "HELO" };
            self.refuse(&format!("501 5.5.4 Syntax: {syntax} hostname"));
            return;
        }
        self.reset();
        self.helo = Some(args.to_string());
        self.esmtp = extended;
        let config = &self.shared.config;
        if !extended {
            let reply = format!("250 {}", config.hostname);
            self.finish(&reply);
            return;
        }
        let mut lines = vec![
            format!("{} Hello {args}", config.hostname),
            "PIPELINING".to_string(),
            format!("SIZE {}", config.max_message_bytes),
        ];
        if config.tls == TlsMode::Starttls && config.advertise_starttls && !self.tls {
            lines.push("STARTTLS".to_string());
        }
        if self.auth_offered() {
            let names: Vec<&str> = config.auth_mechanisms.iter().map(|m| m.as_str()).collect();
            lines.push(format!("AUTH {}", names.join(" ")));
        }
        lines.extend(
            ["ENHANCEDSTATUSCODES", "8BITMIME", "SMTPUTF8"]
                .iter()
                .map(|s| s.to_string()),
        );
        lines.extend(config.extra_ehlo_lines.iter().cloned());
        let reply = multiline("250", &lines);
        self.finish(&reply);
    }

    async fn starttls(&mut self, args: &str) -> io::Result<Flow> {
        if self.config().tls != TlsMode::Starttls {
            self.refuse("502 5.5.1 Error: command not implemented");
            return Ok(Flow::Continue);
        }
        if self.tls {
            self.refuse("503 5.5.1 Error: TLS already active");
            return Ok(Flow::Continue);
        }
        if !args.is_empty() {
            self.refuse("501 5.5.4 Syntax: STARTTLS");
            return Ok(Flow::Continue);
        }
        self.finish("220 2.0.0 Ready to start TLS");
        let flow = self.handshake().await?;
        if flow == Flow::Continue {
            // RFC 3207 §4.2: everything learned before TLS is forgotten; the client EHLOs again.
            self.after_starttls = true;
            self.helo = None;
            self.esmtp = false;
            self.auth_user = None;
            self.reset();
        }
        Ok(flow)
    }

    async fn auth(&mut self, args: &str) -> io::Result<()> {
        if self.auth_user.is_some() {
            self.refuse("503 5.5.1 Error: already authenticated");
            return Ok(());
        }
        if !self.esmtp {
            self.refuse("503 5.5.1 Error: send EHLO first");
            return Ok(());
        }
        if !self.auth_offered() {
            self.refuse("503 5.5.1 Error: authentication not enabled");
            return Ok(());
        }
        if self.mail_from.is_some() {
            self.refuse("503 5.5.1 Error: MAIL transaction in progress");
            return Ok(());
        }
        let (name, initial) = match args.split_once(' ') {
            Some((name, initial)) => (name, Some(initial.trim())),
            None => (args, None),
        };
        let mechanism =
            Mechanism::from_name(name).filter(|m| self.shared.config.auth_mechanisms.contains(m));
        let Some(mechanism) = mechanism else {
            self.refuse("504 5.5.4 Unrecognized authentication type");
            return Ok(());
        };
        match self.authenticate(mechanism, initial).await? {
            AuthOutcome::Success(user) => {
                self.auth_user = Some(user);
                self.finish("235 2.7.0 Authentication successful");
            }
            AuthOutcome::Invalid => self.finish("535 5.7.8 Authentication credentials invalid"),
            AuthOutcome::Aborted => self.refuse("501 5.7.0 Authentication aborted"),
            AuthOutcome::Malformed => self.refuse("501 5.5.2 Cannot decode response"),
        }
        Ok(())
    }

    /// Runs the SASL exchange of `mechanism` (the place to add a mechanism).
    async fn authenticate(
        &mut self,
        mechanism: Mechanism,
        initial: Option<&str>,
    ) -> io::Result<AuthOutcome> {
        match mechanism {
            Mechanism::Plain => {
                let message = match self.sasl_response(initial, "").await? {
                    Answer::Given(message) => message,
                    Answer::Aborted => return Ok(AuthOutcome::Aborted),
                    Answer::Malformed => return Ok(AuthOutcome::Malformed),
                };
                // authzid NUL authcid NUL passwd; we act for no one else than who logs in.
                let parts: Vec<&[u8]> = message.split(|&b| b == 0).collect();
                let [authzid, authcid, password] = parts.as_slice() else {
                    return Ok(AuthOutcome::Malformed);
                };
                if !authzid.is_empty() && authzid != authcid {
                    return Ok(AuthOutcome::Invalid);
                }
                Ok(self.check_password(authcid, password))
            }
            Mechanism::Login => {
                let user = match self.sasl_response(initial, "VXNlcm5hbWU6").await? {
                    Answer::Given(user) => user,
                    Answer::Aborted => return Ok(AuthOutcome::Aborted),
                    Answer::Malformed => return Ok(AuthOutcome::Malformed),
                };
                let password = match self.sasl_response(None, "UGFzc3dvcmQ6").await? {
                    Answer::Given(password) => password,
                    Answer::Aborted => return Ok(AuthOutcome::Aborted),
                    Answer::Malformed => return Ok(AuthOutcome::Malformed),
                };
                Ok(self.check_password(&user, &password))
            }
            Mechanism::Xoauth2 | Mechanism::Oauthbearer => {
                let message = match self.sasl_response(initial, "").await? {
                    Answer::Given(message) => message,
                    Answer::Aborted => return Ok(AuthOutcome::Aborted),
                    Answer::Malformed => return Ok(AuthOutcome::Malformed),
                };
                let Some(bearer) = parse_bearer(mechanism, &message) else {
                    return Ok(AuthOutcome::Malformed);
                };
                let owner = self.config().bearer_tokens.user_of(bearer.token);
                match owner {
                    Some(owner) if bearer.user.is_none_or(|u| u == owner) => {
                        Ok(AuthOutcome::Success(owner))
                    }
                    _ => {
                        // A refused token is not a final reply yet: the server sends its JSON
                        // error as a challenge, the client answers it (an empty line, or ^A for
                        // OAUTHBEARER, RFC 7628 §3.2.3), and only then comes the 535.
                        let challenge = base64::engine::general_purpose::STANDARD
                            .encode(mechanism.error_challenge());
                        self.send(&format!("334 {challenge}"));
                        self.read_line(MAX_COMMAND_LINE).await?;
                        Ok(AuthOutcome::Invalid)
                    }
                }
            }
        }
    }

    /// One client response: the initial response if given (`=` is an empty one, RFC 4954 §4),
    /// otherwise the line after a `334 prompt` challenge (`*` cancels).
    async fn sasl_response(&mut self, initial: Option<&str>, prompt: &str) -> io::Result<Answer> {
        let encoded = match initial {
            Some("=") => return Ok(Answer::Given(Vec::new())),
            Some(initial) => initial.to_string(),
            None => {
                self.send(&format!("334 {prompt}"));
                match self.read_line(MAX_COMMAND_LINE).await? {
                    Line::TooLong => return Ok(Answer::Malformed),
                    Line::Complete(line) => {
                        let line = trim_line_end(&line);
                        if line == b"*" {
                            return Ok(Answer::Aborted);
                        }
                        String::from_utf8_lossy(line).into_owned()
                    }
                }
            }
        };
        Ok(base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_or(Answer::Malformed, Answer::Given))
    }

    fn check_password(&self, user: &[u8], password: &[u8]) -> AuthOutcome {
        let (Ok(user), Ok(password)) = (std::str::from_utf8(user), std::str::from_utf8(password))
        else {
            return AuthOutcome::Invalid;
        };
        match self.config().users.get(user) {
            Some(expected) if expected.expose() == password => {
                AuthOutcome::Success(user.to_string())
            }
            _ => AuthOutcome::Invalid,
        }
    }

    fn mail(&mut self, args: &str) {
        if self.helo.is_none() {
            self.refuse("503 5.5.1 Error: send HELO/EHLO first");
            return;
        }
        if self.config().require_auth && self.auth_user.is_none() {
            self.finish("530 5.7.0 Authentication required");
            return;
        }
        if self.mail_from.is_some() {
            self.refuse("503 5.5.1 Error: nested MAIL command");
            return;
        }
        let Some((address, params)) = parse_path(args, "FROM:") else {
            self.refuse("501 5.5.4 Syntax: MAIL FROM:<address>");
            return;
        };
        for param in params.split_whitespace() {
            let Some((key, value)) = param.split_once('=') else {
                continue;
            };
            if key.eq_ignore_ascii_case("SIZE") {
                match value.parse::<u64>() {
                    Ok(size) if size > self.config().max_message_bytes as u64 => {
                        self.finish("552 5.3.4 Error: message size exceeds fixed limit");
                        return;
                    }
                    Ok(_) => {}
                    Err(_) => {
                        self.refuse("501 5.5.4 Bad SIZE parameter");
                        return;
                    }
                }
            }
        }
        self.mail_from = Some(address.to_string());
        self.finish("250 2.1.0 Ok");
    }

    fn rcpt(&mut self, args: &str) {
        if self.mail_from.is_none() {
            self.refuse("503 5.5.1 Error: need MAIL command");
            return;
        }
        let Some((address, _params)) = parse_path(args, "TO:") else {
            self.refuse("501 5.5.4 Syntax: RCPT TO:<address>");
            return;
        };
        if address.is_empty() {
            self.refuse("501 5.1.3 Bad recipient address syntax");
            return;
        }
        if self.rcpts.len() >= MAX_RECIPIENTS {
            self.finish("452 4.5.3 Error: too many recipients");
            return;
        }
        self.rcpts.push(address.to_string());
        self.finish("250 2.1.5 Ok");
    }

    async fn data(&mut self, args: &str) -> io::Result<Flow> {
        if !args.is_empty() {
            self.refuse("501 5.5.4 Syntax: DATA");
            return Ok(Flow::Continue);
        }
        if self.mail_from.is_none() {
            self.refuse("503 5.5.1 Error: need MAIL command");
            return Ok(Flow::Continue);
        }
        if self.rcpts.is_empty() {
            self.refuse("503 5.5.1 Error: need RCPT command");
            return Ok(Flow::Continue);
        }
        self.finish("354 End data with <CR><LF>.<CR><LF>");

        let max = self.config().max_message_bytes;
        let mut data = Vec::new();
        let mut too_big = false;
        loop {
            match self.read_line(MAX_DATA_LINE).await? {
                Line::TooLong => too_big = true,
                Line::Complete(line) => {
                    // Only CRLF.CRLF ends the data: a bare-LF dot is data, so that this server
                    // cannot be used to smuggle a second message past a stricter one.
                    if line == b".\r\n" {
                        break;
                    }
                    // RFC 5321 §4.5.2: a leading dot was doubled by the client.
                    let content = line.strip_prefix(b".").unwrap_or(&line);
                    if data.len() + content.len() > max {
                        too_big = true;
                    } else {
                        data.extend_from_slice(content);
                    }
                }
            }
        }

        match self.fault(Verb::EndOfData).await? {
            Plan::Close => return Ok(Flow::Drop),
            Plan::Answered | Plan::Refused => {
                self.reset();
                return Ok(Flow::Continue);
            }
            Plan::Normal => {}
        }
        if too_big {
            self.reset();
            self.finish("552 5.3.4 Error: message too big");
            return Ok(Flow::Continue);
        }
        let queue_id = format!(
            "{:010X}",
            self.shared.queue_ids.fetch_add(1, Ordering::Relaxed)
        );
        self.shared.store(ReceivedMessage {
            queue_id: queue_id.clone(),
            helo: self.helo.clone().unwrap_or_default(),
            from: self.mail_from.take().unwrap_or_default(),
            rcpts: std::mem::take(&mut self.rcpts),
            data,
            auth_user: self.auth_user.clone(),
            tls: self.tls,
        });
        self.reset();
        self.finish(&format!("250 2.0.0 Ok: queued as {queue_id}"));
        Ok(Flow::Continue)
    }
}
