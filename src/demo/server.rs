//! The demo SMTP server: real SMTP on loopback with faults on demand.
//!
//! It speaks what a submission server speaks (RFC 5321 greeting, EHLO/HELO, MAIL, RCPT, DATA with
//! dot-unstuffing, RSET, NOOP, QUIT; PIPELINING RFC 2920; SIZE RFC 1870; STARTTLS RFC 3207;
//! AUTH RFC 4954 with PLAIN RFC 4616, LOGIN, XOAUTH2 and OAUTHBEARER RFC 7628; enhanced status
//! codes RFC 2034/3463) and keeps the last accepted messages for tests to read. Each step can be
//! told to misbehave (`super::faults`) so that every failure a server can cause a probe is
//! reproducible.
//!
//! It is also the benchmarks' sink, so a session costs little: the rustls configuration is built
//! once at start, replies to pipelined commands go out in one write, and there is no lock on the
//! path of a session except the one that stores an accepted message.
//!
//! This file holds the server (configuration, listener, TLS acceptor, what it received);
//! `super::session` is one conversation, `super::faults` the misbehaviour,
//! `super::bearer` the tokens it accepts and `super::wire` its parsers.

use super::bearer::BearerTokens;
use super::faults::{Fault, Verb};
use super::ocsp::OcspCertStatus;
use super::pki::{DemoPki, Sent};
use super::session::Session;
use super::wire::Mechanism;
use crate::secret::Secret;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

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
    /// Staple an OCSP response with this status for the leaf to every handshake (produced when
    /// the server starts, valid a day); `None`: staple nothing.
    pub ocsp: Option<OcspCertStatus>,
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
            ocsp: None,
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
pub(super) struct Shared {
    pub(super) config: ServerConfig,
    /// Built once at start: a handshake costs no configuration work.
    pub(super) acceptor: Option<TlsAcceptor>,
    pub(super) received: Mutex<VecDeque<ReceivedMessage>>,
    pub(super) sessions: AtomicU64,
    pub(super) active: AtomicUsize,
    pub(super) queue_ids: AtomicU64,
}

impl Shared {
    pub(super) fn store(&self, message: ReceivedMessage) {
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
    let mut certified = CertifiedKey::new(chain, key);
    if let Some(status) = config.ocsp {
        let staple = super::ocsp::for_certificate(&config.pki.leaf.der, status, SystemTime::now());
        certified.ocsp = Some(staple);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| invalid_input("demo server TLS", e))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(FixedChain(Arc::new(certified))));
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
