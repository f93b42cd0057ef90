//! The demo SMTP server: real SMTP on loopback with faults on demand.
//!
//! It speaks what a submission server speaks (RFC 5321 greeting, EHLO/HELO, MAIL, RCPT, DATA with
//! dot-unstuffing, RSET, NOOP, QUIT; PIPELINING RFC 2920; SIZE RFC 1870; STARTTLS RFC 3207;
//! AUTH RFC 4954 with PLAIN RFC 4616, LOGIN, XOAUTH2 and OAUTHBEARER RFC 7628; enhanced status
//! codes RFC 2034/3463) and keeps
//! the last accepted messages for tests to read. Each step can be told to misbehave — another
//! reply, a delay, a closed connection, silence, garbage, an endless or drip-fed reply — so that
//! every failure a server can cause a probe is reproducible ([`ServerConfig::reply_to`] and
//! friends).
//!
//! It is also the benchmarks' sink, so a session costs little: the rustls configuration is built
//! once at start, replies to pipelined commands go out in one write, and there is no lock on the
//! path of a session except the one that stores an accepted message.

use crate::demo::pki::{DemoPki, Sent};
use crate::secret::Secret;
use base64::Engine as _;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

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

/// How the server uses TLS.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// Plaintext only; STARTTLS is answered 502.
    None,
    /// Plaintext first, TLS after the STARTTLS command (port 587 and 25).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465, RFC 8314).
    Implicit,
}

/// Which TLS versions the server accepts (a client that insists on another fails its handshake).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum TlsVersions {
    /// TLS 1.2 and 1.3.
    #[default]
    Any,
    /// TLS 1.2 only.
    Tls12Only,
    /// TLS 1.3 only.
    Tls13Only,
}

/// A SASL mechanism the server can run. Adding one means a variant here and its exchange in
/// `Session::authenticate`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// RFC 4616: one response `authzid NUL authcid NUL password`.
    Plain,
    /// The de-facto LOGIN mechanism: user name and password, each after a 334 prompt.
    Login,
    /// Google's and Microsoft's XOAUTH2: `user=U ^A auth=Bearer T ^A ^A`, checked against
    /// [`ServerConfig::bearer_tokens`].
    Xoauth2,
    /// RFC 7628 OAUTHBEARER: a GS2 header `n,a=U,` then `^A`-separated `key=value` pairs with
    /// `auth=Bearer T`, checked against [`ServerConfig::bearer_tokens`].
    Oauthbearer,
}

impl Mechanism {
    /// The name as advertised in EHLO and given in AUTH.
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::Xoauth2 => "XOAUTH2",
            Mechanism::Oauthbearer => "OAUTHBEARER",
        }
    }

    fn from_name(name: &str) -> Option<Mechanism> {
        match name.to_ascii_uppercase().as_str() {
            "PLAIN" => Some(Mechanism::Plain),
            "LOGIN" => Some(Mechanism::Login),
            "XOAUTH2" => Some(Mechanism::Xoauth2),
            "OAUTHBEARER" => Some(Mechanism::Oauthbearer),
            _ => None,
        }
    }

    /// The JSON error challenge sent before the final failure of a bearer mechanism, as
    /// Dovecot 2.3 sends it (Google and Microsoft send the same shape for XOAUTH2; RFC 7628
    /// §3.2.2 names the OAUTHBEARER status `invalid_token`).
    fn error_challenge(self) -> &'static str {
        match self {
            Mechanism::Oauthbearer => r#"{"status":"invalid_token"}"#,
            _ => r#"{"status":"401","schemes":"bearer","scope":"mail"}"#,
        }
    }
}

/// The bearer tokens the server accepts for XOAUTH2 and OAUTHBEARER, each valid for one user
/// and perhaps only for a while. A handle: clones share one registry, so that a
/// [`TokenEndpoint`](super::TokenEndpoint) issues tokens the server then accepts, and a test can
/// revoke a token the prober still has cached.
#[derive(Clone, Default)]
pub struct BearerTokens {
    inner: Arc<Mutex<HashMap<String, BearerGrant>>>,
}

/// Who a token is for and until when.
#[derive(Clone)]
struct BearerGrant {
    user: String,
    expires: Option<Instant>,
}

impl BearerTokens {
    /// An empty registry: every bearer token is refused.
    pub fn new() -> BearerTokens {
        BearerTokens::default()
    }

    /// Accepts `token` for `user` until revoked.
    pub fn insert(&self, user: impl Into<String>, token: &Secret) {
        self.grant(user.into(), token, None);
    }

    /// Accepts `token` for `user` for `lifetime` from now (what a token endpoint's `expires_in`
    /// promises), then refuses it.
    pub fn insert_expiring(&self, user: impl Into<String>, token: &Secret, lifetime: Duration) {
        self.grant(user.into(), token, Instant::now().checked_add(lifetime));
    }

    fn grant(&self, user: String, token: &Secret, expires: Option<Instant>) {
        let mut map = self.lock();
        // Expired grants go when new ones come, so a long demo run does not grow the map.
        let now = Instant::now();
        map.retain(|_, g| g.expires.is_none_or(|e| e > now));
        map.insert(token.expose().to_string(), BearerGrant { user, expires });
    }

    /// Stops accepting `token`; whether it was known.
    pub fn revoke(&self, token: &Secret) -> bool {
        self.lock().remove(token.expose()).is_some()
    }

    /// Stops accepting every token (a key rollover at the identity provider).
    pub fn revoke_all(&self) {
        self.lock().clear();
    }

    /// How many tokens are known (expired ones included until the next insert).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no token is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The user `token` is valid for now, if it is.
    pub fn user_of(&self, token: &str) -> Option<String> {
        let map = self.lock();
        let grant = map.get(token)?;
        grant
            .expires
            .is_none_or(|e| Instant::now() < e)
            .then(|| grant.user.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, BearerGrant>> {
        // A panic elsewhere while holding the lock leaves the map usable still.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for BearerTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The tokens are secrets: only their number shows.
        f.debug_struct("BearerTokens")
            .field("len", &self.len())
            .finish()
    }
}

/// A point of the conversation where a fault can be injected: the server's answer to it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Verb {
    /// The 220 greeting on connect.
    Greeting,
    /// EHLO or HELO before any STARTTLS (also the one over implicit TLS).
    Ehlo,
    /// EHLO or HELO after STARTTLS.
    EhloTls,
    /// The STARTTLS command.
    Starttls,
    /// The TLS handshake itself (after the 220 to STARTTLS, or on connect with implicit TLS):
    /// a reply, raw bytes or a close here replace the handshake.
    TlsHandshake,
    /// The AUTH command; a scripted reply replaces the whole SASL exchange.
    Auth,
    /// MAIL FROM.
    Mail,
    /// RCPT TO (every recipient).
    Rcpt,
    /// DATA (the 354).
    Data,
    /// The end of the message data (the reply after the final dot).
    EndOfData,
    /// RSET.
    Rset,
    /// NOOP.
    Noop,
    /// QUIT.
    Quit,
}

/// What the server does instead of (or besides) its normal answer at a [`Verb`].
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum FaultAction {
    /// Answer normally (with [`Fault::delay`], a slow server).
    #[default]
    Normal,
    /// Send this reply. Lines are separated by `\n`; CRLFs are added. A 4xx or 5xx reply
    /// refuses the verb: nothing changes. A 2xx or 3xx reply lets the verb run as usual and
    /// replaces the text of its final reply (custom banners, queue ids, EHLO keywords).
    Reply(String),
    /// Close the connection without answering.
    Close,
    /// Never answer: read and discard until the client gives up (or the idle timeout).
    Stall,
    /// Send these bytes instead of a reply (garbage, a giant line without CRLF, …), then carry
    /// on reading commands.
    Raw(Vec<u8>),
    /// Start a multiline reply (`250-…`) that never ends.
    EndlessReply,
    /// Send this reply one byte at a time, `interval` apart (a drip-feeding server defeats a
    /// timeout that is only per read). Nothing changes, as for a refusal.
    Drip {
        /// The reply, as for [`FaultAction::Reply`].
        reply: String,
        /// Pause after each byte.
        interval: Duration,
    },
}

/// A fault at one verb: an optional delay, then an action.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Fault {
    /// Wait this long before acting (pending replies are sent first).
    pub delay: Duration,
    /// What to do then.
    pub action: FaultAction,
}

/// Everything about a [`DemoServer`]. `Default` is a healthy STARTTLS submission server with
/// the shared localhost PKI, AUTH PLAIN and LOGIN after STARTTLS for user `probe` with password
/// `secret`. Office 365 style is `auth_mechanisms: vec![Mechanism::Login, Mechanism::Xoauth2]`
/// with the accepted tokens in `bearer_tokens`.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where to listen; default 127.0.0.1 on a free port.
    pub listen: SocketAddr,
    /// The server's name in the greeting and the EHLO reply.
    pub hostname: String,
    /// How TLS is used.
    pub tls: TlsMode,
    /// Whether EHLO lists STARTTLS (in [`TlsMode::Starttls`]; the command works either way).
    pub advertise_starttls: bool,
    /// TLS versions accepted.
    pub tls_versions: TlsVersions,
    /// The PKI whose leaf key signs handshakes and whose certificates are sent.
    pub pki: Arc<DemoPki>,
    /// Which certificates are sent.
    pub sent: Sent,
    /// Accepted user names and their passwords.
    pub users: BTreeMap<String, Secret>,
    /// Accepted bearer tokens (XOAUTH2, OAUTHBEARER); shared with whoever issues them.
    pub bearer_tokens: BearerTokens,
    /// AUTH mechanisms advertised and accepted, in this order; empty: no AUTH at all.
    pub auth_mechanisms: Vec<Mechanism>,
    /// Offer AUTH on a plaintext connection too (by default only after TLS, as servers do).
    pub auth_before_tls: bool,
    /// Refuse MAIL with 530 until the client has authenticated.
    pub require_auth: bool,
    /// SIZE limit of a message, in bytes.
    pub max_message_bytes: usize,
    /// Greet with a three-line 220 reply instead of one line.
    pub multiline_greeting: bool,
    /// More EHLO keywords, each a line after the standard ones.
    pub extra_ehlo_lines: Vec<String>,
    /// Faults by verb.
    pub faults: HashMap<Verb, Fault>,
    /// How many accepted messages [`DemoServer::received`] keeps (the latest).
    pub max_received: usize,
    /// A session silent this long is closed with 421.
    pub idle_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            hostname: "localhost".to_string(),
            tls: TlsMode::Starttls,
            advertise_starttls: true,
            tls_versions: TlsVersions::Any,
            pki: DemoPki::localhost(),
            sent: Sent::Full,
            users: BTreeMap::from([("probe".to_string(), Secret::new("secret"))]),
            bearer_tokens: BearerTokens::new(),
            auth_mechanisms: vec![Mechanism::Plain, Mechanism::Login],
            auth_before_tls: false,
            require_auth: false,
            max_message_bytes: 10 * 1024 * 1024,
            multiline_greeting: false,
            extra_ehlo_lines: Vec::new(),
            faults: HashMap::new(),
            max_received: 1000,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

impl ServerConfig {
    fn fault_mut(&mut self, verb: Verb) -> &mut Fault {
        self.faults.entry(verb).or_default()
    }

    /// Answers `verb` with `reply` (see [`FaultAction::Reply`]), e.g.
    /// `reply_to(Verb::Rcpt, "550 5.1.1 <x>: Recipient address rejected")`.
    pub fn reply_to(mut self, verb: Verb, reply: impl Into<String>) -> Self {
        self.fault_mut(verb).action = FaultAction::Reply(reply.into());
        self
    }

    /// Waits `delay` before answering `verb` (combines with the other faults).
    pub fn delay(mut self, verb: Verb, delay: Duration) -> Self {
        self.fault_mut(verb).delay = delay;
        self
    }

    /// Closes the connection instead of answering `verb`.
    pub fn close_at(mut self, verb: Verb) -> Self {
        self.fault_mut(verb).action = FaultAction::Close;
        self
    }

    /// Never answers `verb`.
    pub fn stall_at(mut self, verb: Verb) -> Self {
        self.fault_mut(verb).action = FaultAction::Stall;
        self
    }

    /// Sends `bytes` instead of answering `verb`.
    pub fn raw_at(mut self, verb: Verb, bytes: impl Into<Vec<u8>>) -> Self {
        self.fault_mut(verb).action = FaultAction::Raw(bytes.into());
        self
    }

    /// Answers `verb` with a multiline reply that never ends.
    pub fn endless_at(mut self, verb: Verb) -> Self {
        self.fault_mut(verb).action = FaultAction::EndlessReply;
        self
    }

    /// Answers `verb` with `reply`, one byte every `interval`.
    pub fn drip_at(mut self, verb: Verb, reply: impl Into<String>, interval: Duration) -> Self {
        self.fault_mut(verb).action = FaultAction::Drip {
            reply: reply.into(),
            interval,
        };
        self
    }
}

/// A message the server accepted (a 250 after its data).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The queue id given in the 250 reply.
    pub queue_id: String,
    /// The name given in EHLO/HELO.
    pub helo: String,
    /// The reverse path of MAIL FROM (empty for `<>`).
    pub from: String,
    /// The forward paths of RCPT TO.
    pub rcpts: Vec<String>,
    /// The message as the client meant it: dot-unstuffed, CRLF line ends, without the final dot.
    pub data: Vec<u8>,
    /// The user that authenticated, if one did.
    pub auth_user: Option<String>,
    /// Whether the message came over TLS.
    pub tls: bool,
}

/// State every session shares: the configuration and what the server has seen.
struct Shared {
    config: ServerConfig,
    /// Built once at start: a handshake costs no configuration work.
    acceptor: Option<TlsAcceptor>,
    received: Mutex<VecDeque<ReceivedMessage>>,
    sessions: AtomicU64,
    active: AtomicUsize,
    queue_ids: AtomicU64,
}

impl Shared {
    fn store(&self, message: ReceivedMessage) {
        let max = self.config.max_received;
        if max == 0 {
            return;
        }
        // A panic elsewhere while holding the lock leaves the queue usable still.
        let mut received = self.received.lock().unwrap_or_else(|e| e.into_inner());
        while received.len() >= max {
            received.pop_front();
        }
        received.push_back(message);
    }
}

/// A running demo server; dropping it (or [`DemoServer::shutdown`]) stops it and its sessions.
pub struct DemoServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for DemoServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl DemoServer {
    /// Binds `config.listen` and starts serving on the current tokio runtime.
    pub async fn start(config: ServerConfig) -> io::Result<DemoServer> {
        let acceptor = tls_acceptor(&config)?;
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            config,
            acceptor,
            received: Mutex::new(VecDeque::new()),
            sessions: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            queue_ids: AtomicU64::new(1),
        });
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(DemoServer { addr, shared, task })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &ServerConfig {
        &self.shared.config
    }

    /// The PKI it serves (a test client trusts its root).
    pub fn pki(&self) -> &DemoPki {
        &self.shared.config.pki
    }

    /// The latest accepted messages, oldest first (at most `max_received`).
    pub fn received(&self) -> Vec<ReceivedMessage> {
        let received = self
            .shared
            .received
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        received.iter().cloned().collect()
    }

    /// How many connections it has accepted.
    pub fn sessions(&self) -> u64 {
        self.shared.sessions.load(Ordering::Relaxed)
    }

    /// How many sessions are open now.
    pub fn active_sessions(&self) -> usize {
        self.shared.active.load(Ordering::Relaxed)
    }

    /// Stops listening and ends every session; when it returns, the port is closed.
    pub async fn shutdown(mut self) {
        self.task.abort();
        // Waiting for the cancelled task makes sure the listener and the sessions are dropped.
        let _ = (&mut self.task).await;
    }
}

impl Drop for DemoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sends one fixed chain whatever the client asks, without checking that the key matches the
/// first certificate: a test may send a wrong order on purpose.
#[derive(Debug)]
struct FixedChain(Arc<CertifiedKey>);

impl ResolvesServerCert for FixedChain {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

fn invalid_input(what: &str, err: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("{what}: {err}"))
}

/// The TLS acceptor for `config`, or none for a plaintext server.
fn tls_acceptor(config: &ServerConfig) -> io::Result<Option<TlsAcceptor>> {
    if config.tls == TlsMode::None {
        return Ok(None);
    }
    let chain = config.pki.chain(&config.sent);
    if chain.is_empty() {
        return Err(invalid_input("demo server TLS", "no certificate to send"));
    }
    let key = rustls::crypto::ring::sign::any_supported_type(&config.pki.leaf_key())
        .map_err(|e| invalid_input("demo server key", e))?;
    let versions: &[&'static rustls::SupportedProtocolVersion] = match config.tls_versions {
        TlsVersions::Any => rustls::ALL_VERSIONS,
        TlsVersions::Tls12Only => &[&rustls::version::TLS12],
        TlsVersions::Tls13Only => &[&rustls::version::TLS13],
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| invalid_input("demo server TLS", e))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(FixedChain(Arc::new(CertifiedKey::new(
            chain, key,
        )))));
    Ok(Some(TlsAcceptor::from(Arc::new(tls))))
}

/// Accepts connections until cancelled. Sessions live in a `JoinSet` owned by this task, so
/// cancelling it cancels them all.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _peer)) => {
                    // Replies are small and latency is what probes measure: no Nagle delay.
                    let _ = tcp.set_nodelay(true);
                    shared.sessions.fetch_add(1, Ordering::Relaxed);
                    let session = Session::new(Arc::clone(&shared), tcp);
                    sessions.spawn(async move {
                        if let Err(err) = session.run().await {
                            tracing::trace!(%err, "demo session ended");
                        }
                    });
                }
                Err(err) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::debug!(%err, "demo server accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            // Reap finished sessions so the set stays as small as the open sessions.
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
}

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
struct Session {
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
    fn new(shared: Arc<Shared>, tcp: TcpStream) -> Session {
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

    async fn run(mut self) -> io::Result<()> {
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

/// What a bearer mechanism's client response says.
#[derive(Debug, PartialEq, Eq)]
struct Bearer<'a> {
    /// The user it logs in as; OAUTHBEARER may leave it to the token.
    user: Option<String>,
    token: &'a str,
}

/// Parses an XOAUTH2 (`user=U^Aauth=Bearer T^A^A`) or OAUTHBEARER (`n,a=U,^Ahost=H^Aport=P^A
/// auth=Bearer T^A^A`, RFC 7628 §3.1) client response; `None` when it is malformed.
fn parse_bearer(mechanism: Mechanism, message: &[u8]) -> Option<Bearer<'_>> {
    let text = std::str::from_utf8(message).ok()?;
    let body = text.strip_suffix("\x01\x01")?;
    let (mut user, pairs) = match mechanism {
        Mechanism::Oauthbearer => {
            let (gs2, pairs) = body.split_once('\x01')?;
            // gs2-header: no channel binding ("n" or "y"), then an optional authzid.
            let mut fields = gs2.split(',');
            if !matches!(fields.next(), Some("n" | "y")) {
                return None;
            }
            let authzid = fields.next()?;
            let user = match authzid.strip_prefix("a=") {
                Some(name) => Some(name.replace("=2C", ",").replace("=3D", "=")),
                None if authzid.is_empty() => None,
                None => return None,
            };
            (user, pairs)
        }
        _ => (None, body),
    };
    let mut token = None;
    for pair in pairs.split('\x01') {
        let (key, value) = pair.split_once('=')?;
        match key {
            "user" if mechanism == Mechanism::Xoauth2 => user = Some(value.to_string()),
            "auth" => {
                let (scheme, credentials) = value.split_once(' ')?;
                if !scheme.eq_ignore_ascii_case("bearer") {
                    return None;
                }
                token = Some(credentials.trim());
            }
            _ => {}
        }
    }
    if mechanism == Mechanism::Xoauth2 && user.is_none() {
        return None;
    }
    Some(Bearer {
        user,
        token: token.filter(|t| !t.is_empty())?,
    })
}

/// A line without its CRLF (or bare LF).
fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A scripted reply as it goes on the wire: `\n`-separated lines joined by CRLF, CRLF at the end.
fn wire_reply(text: &str) -> String {
    let mut wire = String::with_capacity(text.len() + 4);
    for line in text.trim_end_matches(['\r', '\n']).split('\n') {
        wire.push_str(line.trim_end_matches('\r'));
        wire.push_str("\r\n");
    }
    wire
}

/// `code-line` … `code line`, joined by CRLF without the final one.
fn multiline(code: &str, lines: &[String]) -> String {
    let last = lines.len().saturating_sub(1);
    let mut reply = String::new();
    for (i, line) in lines.iter().enumerate() {
        let sep = if i == last { ' ' } else { '-' };
        reply.push_str(&format!("{code}{sep}{line}"));
        if i != last {
            reply.push_str("\r\n");
        }
    }
    reply
}

/// Splits `FROM:<a@b> PARAMS` (keyword case-insensitive, spaces after the colon tolerated)
/// into the address and the parameters.
fn parse_path<'a>(args: &'a str, keyword: &str) -> Option<(&'a str, &'a str)> {
    let head = args.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = args[keyword.len()..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    Some((&rest[..end], rest[end + 1..].trim()))
}
