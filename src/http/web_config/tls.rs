//! The TLS side of `--web.config.file` (RFC 8446, RFC 5246 with rustls' ring provider): the
//! server certificate, re-read when its files change; client certificates verified against a CA
//! (RFC 5280), optionally narrowed to some subject alternative names; and the listener that runs
//! handshakes off the accept path.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::read_bounded;
use crate::local_file::FileError;
use crate::tls::{alt_names_of_der, AltName};

/// Certificate files are checked for changes at most this often.
pub(super) const CERT_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// PEM text named by the web configuration, with the line and field that named it.
#[derive(Debug)]
pub(super) struct PemSource {
    pub(super) origin: PemOrigin,
    pub(super) line: Option<u64>,
    pub(super) field: String,
}

/// A file's modification time and size.
type FileStamp = (SystemTime, u64);

/// Where PEM text comes from.
#[derive(Debug)]
pub(super) enum PemOrigin {
    /// Inline in the web configuration.
    Inline(Vec<u8>),
    /// A file.
    File(PathBuf),
}

/// Why a certificate, key or CA named by the web configuration cannot be used. The messages
/// name the file (or the inline field), never key material.
#[derive(Debug, thiserror::Error)]
pub(super) enum PemError {
    /// The file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: FileError,
    },
    /// The text is not PEM certificates.
    #[error("{0}: not PEM certificates: {1}")]
    NotCertificates(String, std::io::Error),
    /// No certificate in the text.
    #[error("{0}: no certificate in it")]
    NoCertificate(String),
    /// The text is not a PEM private key.
    #[error("{0}: not a PEM private key")]
    NotKey(String),
    /// No private key in the text.
    #[error("{0}: no private key in it")]
    NoKey(String),
    /// The key belongs to another certificate.
    #[error("the key ({key}) does not belong to the certificate ({cert})")]
    KeyMismatch {
        /// The key's source.
        key: String,
        /// The certificate's source.
        cert: String,
    },
    /// rustls refuses the pair.
    #[error("the certificate ({cert}) and the key ({key}) cannot be used: {error}")]
    Unusable {
        /// The certificate's source.
        cert: String,
        /// The key's source.
        key: String,
        /// What rustls said.
        error: rustls::Error,
    },
    /// A CA certificate rustls cannot use.
    #[error("{0}: unusable CA certificate: {1}")]
    UnusableCa(String, rustls::Error),
    /// The client verifier cannot be built from the CA.
    #[error("{0}: {1}")]
    Verifier(String, rustls::server::VerifierBuilderError),
}

impl PemSource {
    fn read(&self) -> Result<Vec<u8>, PemError> {
        match &self.origin {
            PemOrigin::Inline(bytes) => Ok(bytes.clone()),
            PemOrigin::File(path) => read_bounded(path).map_err(|source| PemError::Read {
                path: path.clone(),
                source,
            }),
        }
    }

    /// The file's modification time and size, to notice a replacement.
    fn stamp(&self) -> Option<FileStamp> {
        match &self.origin {
            PemOrigin::Inline(_) => None,
            PemOrigin::File(path) => {
                let meta = std::fs::metadata(path).ok()?;
                Some((meta.modified().ok()?, meta.len()))
            }
        }
    }

    fn is_inline(&self) -> bool {
        matches!(self.origin, PemOrigin::Inline(_))
    }

    fn describe(&self) -> String {
        match &self.origin {
            PemOrigin::Inline(_) => format!("inline {}", self.field),
            PemOrigin::File(path) => path.display().to_string(),
        }
    }
}

/// Loads a certificate chain and its private key, checking that they belong together.
pub(super) fn load_certified_key(
    cert: &PemSource,
    key: &PemSource,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, PemError> {
    let cert_pem = cert.read()?;
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| PemError::NotCertificates(cert.describe(), e))?;
    if chain.is_empty() {
        return Err(PemError::NoCertificate(cert.describe()));
    }
    let key_pem = key.read()?;
    // Key errors never quote the key.
    let private: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|_| PemError::NotKey(key.describe()))?
        .ok_or_else(|| PemError::NoKey(key.describe()))?;
    CertifiedKey::from_der(chain, private, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => PemError::KeyMismatch {
            key: key.describe(),
            cert: cert.describe(),
        },
        error => PemError::Unusable {
            cert: cert.describe(),
            key: key.describe(),
            error,
        },
    })
}

/// Builds the verifier of client certificates from the CA PEM.
pub(super) fn client_verifier(
    ca: &PemSource,
    verify: ClientVerify,
    allowed_sans: &[String],
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, PemError> {
    let pem = ca.read()?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| PemError::NotCertificates(ca.describe(), e))?;
        roots
            .add(cert)
            .map_err(|e| PemError::UnusableCa(ca.describe(), e))?;
    }
    if roots.is_empty() {
        return Err(PemError::NoCertificate(ca.describe()));
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    let builder = match verify {
        ClientVerify::IfGiven => builder.allow_unauthenticated(),
        _ => builder,
    };
    let verifier = builder
        .build()
        .map_err(|e| PemError::Verifier(ca.describe(), e))?;
    if allowed_sans.is_empty() {
        return Ok(verifier);
    }
    Ok(Arc::new(SanCheck {
        inner: verifier,
        allowed: allowed_sans.to_vec(),
    }))
}

/// `client_allowed_sans`: a client certificate that verifies must also carry one of these
/// subject alternative names. Checked inside the handshake, so a refused client gets a TLS
/// alert rather than a connection closed after a handshake that seemed to succeed.
#[derive(Debug)]
struct SanCheck {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<String>,
}

/// Why [`SanCheck`] refused a certificate (shown in the debug log of the failed handshake).
#[derive(Clone, Debug, thiserror::Error)]
#[error("client certificate SANs {0:?} are not in client_allowed_sans")]
pub(crate) struct SanNotAllowed(Vec<String>);

impl ClientCertVerifier for SanCheck {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let sans = cert_sans(end_entity.as_ref());
        if sans
            .iter()
            .any(|san| self.allowed.iter().any(|a| san_matches(san, a)))
        {
            Ok(verified)
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(SanNotAllowed(sans)))),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// How client certificates are treated.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) enum ClientVerify {
    /// Not asked for.
    None,
    /// Verified when sent; a client without one is served.
    IfGiven,
    /// Required and verified.
    Required,
}

/// The server certificate and key in service, re-read when their files change.
#[derive(Debug)]
pub(super) struct ServerCert {
    cert: PemSource,
    key: PemSource,
    provider: Arc<CryptoProvider>,
    state: Mutex<CertState>,
}

#[derive(Debug)]
struct CertState {
    current: Arc<CertifiedKey>,
    /// The stamps of the files as last looked at (whether they loaded or not).
    stamps: (Option<FileStamp>, Option<FileStamp>),
    checked: Instant,
}

impl ServerCert {
    pub(super) fn new(
        cert: PemSource,
        key: PemSource,
        current: CertifiedKey,
        provider: Arc<CryptoProvider>,
    ) -> ServerCert {
        let stamps = (cert.stamp(), key.stamp());
        ServerCert {
            cert,
            key,
            provider,
            state: Mutex::new(CertState {
                current: Arc::new(current),
                stamps,
                checked: Instant::now(),
            }),
        }
    }

    /// The pair to present, after re-reading the files when they changed.
    pub(super) fn current(&self) -> Arc<CertifiedKey> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let inline = self.cert.is_inline() && self.key.is_inline();
        if inline || state.checked.elapsed() < CERT_CHECK_INTERVAL {
            return state.current.clone();
        }
        state.checked = Instant::now();
        let stamps = (self.cert.stamp(), self.key.stamp());
        if stamps == state.stamps {
            return state.current.clone();
        }
        // Remembered whatever happens, so that a broken pair is reported once, not per second.
        state.stamps = stamps;
        match load_certified_key(&self.cert, &self.key, &self.provider) {
            Ok(fresh) => {
                tracing::info!(cert = %self.cert.describe(), "TLS certificate reloaded");
                state.current = Arc::new(fresh);
            }
            Err(why) => tracing::warn!(
                error = %why,
                "TLS certificate changed but cannot be loaded; the previous one stays in service"
            ),
        }
        state.current.clone()
    }
}

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The TLS side of the server.
pub(crate) struct TlsServer {
    pub(super) config: Arc<rustls::ServerConfig>,
    /// The certificate in service (also inside `config`, as its resolver).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(super) server_cert: Arc<ServerCert>,
    pub(super) verify: ClientVerify,
    /// When not empty, a client certificate must carry one of these SANs (for the summary:
    /// [`SanCheck`] enforces them).
    pub(super) allowed_sans: Vec<String>,
}

impl TlsServer {
    pub(super) fn client_auth_summary(&self) -> String {
        match self.verify {
            ClientVerify::None => "no client certificates".to_string(),
            ClientVerify::IfGiven => "client certificates verified when sent".to_string(),
            ClientVerify::Required if self.allowed_sans.is_empty() => {
                "client certificates required".to_string()
            }
            ClientVerify::Required => format!(
                "client certificates required, SANs {}",
                self.allowed_sans.join(", ")
            ),
        }
    }

    /// Takes a new connection through the handshake. A client speaking plain HTTP gets a 400
    /// that says so, as Go's server does, rather than a connection closed without a word.
    pub(crate) async fn handshake(
        &self,
        mut tcp: TcpStream,
    ) -> Result<TlsStream<TcpStream>, HandshakeError> {
        let mut first = [0u8; 1];
        let n = tcp.peek(&mut first).await?;
        if n == 0 {
            return Err(HandshakeError::Closed);
        }
        // 22 is the record type of a TLS handshake (RFC 8446 §5.1).
        if first[0] != 22 {
            if first[0].is_ascii_uppercase() {
                answer_plain_http(&mut tcp).await;
                return Err(HandshakeError::PlainHttp);
            }
            return Err(HandshakeError::NotTls);
        }
        tokio_rustls::TlsAcceptor::from(self.config.clone())
            .accept(tcp)
            .await
            .map_err(HandshakeError::from)
    }
}

/// Why a client's connection did not become a TLS session (logged at debug level).
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    /// The connection closed before the client sent anything.
    #[error("closed before the handshake")]
    Closed,
    /// A plain HTTP request on the HTTPS port (answered 400).
    #[error("plain HTTP request on the HTTPS port")]
    PlainHttp,
    /// Something else than a TLS handshake.
    #[error("not a TLS handshake")]
    NotTls,
    /// Our own refusal of the client certificate.
    #[error("{0}")]
    Refused(SanNotAllowed),
    /// The handshake failed.
    #[error("{0}")]
    Io(std::io::Error),
}

impl From<std::io::Error> for HandshakeError {
    /// Our own refusals ([`SanNotAllowed`]) keep their message rather than rustls' debug form
    /// of them.
    fn from(e: std::io::Error) -> HandshakeError {
        let own = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .and_then(|tls| match tls {
                rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => {
                    other.0.downcast_ref::<SanNotAllowed>()
                }
                _ => None,
            });
        match own {
            Some(refusal) => HandshakeError::Refused(refusal.clone()),
            None => HandshakeError::Io(e),
        }
    }
}

/// Reads what the plain-HTTP client sent (so closing does not reset the connection before it
/// reads the answer), then answers 400.
async fn answer_plain_http(tcp: &mut TcpStream) {
    let mut request = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while request.len() < 8192 && !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let _ = tcp
        .write_all(
            b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
              Connection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n",
        )
        .await;
    let _ = tcp.shutdown().await;
}

/// The subject alternative names of a certificate as text (IP addresses in their usual form):
/// DNS names, email addresses, URIs and IP addresses, as exporter-toolkit compares them.
pub(super) fn cert_sans(der: &[u8]) -> Vec<String> {
    alt_names_of_der(der)
        .into_iter()
        .filter_map(|name| match name {
            AltName::Dns(s) | AltName::Email(s) | AltName::Uri(s) => Some(s),
            AltName::Ip(ip) => Some(ip.to_string()),
            AltName::MalformedIp(_) => None,
        })
        .collect()
}

/// Exact match, except that IP addresses compare as addresses (`::1` = `0:0:0:0:0:0:0:1`).
pub(super) fn san_matches(san: &str, allowed: &str) -> bool {
    match (san.parse::<IpAddr>(), allowed.parse::<IpAddr>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => san == allowed,
    }
}
