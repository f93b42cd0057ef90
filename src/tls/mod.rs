//! TLS for the probe: trust sources, a client configuration built once per module, the
//! handshake, and the chain report (what the server sent, what was built to an anchor, and why
//! verification failed). Plain data out; no Prometheus here.
//!
//! CONTRACT (implemented by the tls work): the handshake never fails because of the certificate
//! chain. The rustls verifier checks only the handshake signatures (proof that the server holds
//! the leaf key) and accepts any chain; the chain is then verified against the trust store after
//! the handshake and reported in [`ChainReport`], so that the probe always learns the certificates
//! and the verdict, and the session decides whether an invalid chain ends the probe.

use crate::vocab::Reason;
use rustls_pki_types::CertificateDer;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

/// Where trust anchors come from (`tls_config.trust`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrustKind {
    /// The operating system's store (rustls-native-certs).
    System,
    /// Mozilla's roots compiled into the binary (webpki-roots).
    Bundled,
}

/// Which TLS versions are allowed at least.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum MinVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// Settings from `tls_config` (DESIGN §4) or the probe command's flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// SNI and the name checked against the certificate; default: the target host.
    pub server_name: Option<String>,
    /// Trust sources besides `ca_files`.
    pub trust: Vec<TrustKind>,
    /// PEM files with extra roots and intermediates.
    pub ca_files: Vec<PathBuf>,
    /// Lowest TLS version offered.
    pub min_version: MinVersion,
    /// Verify and report, but do not fail the probe on an invalid chain.
    pub insecure_skip_verify: bool,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            server_name: None,
            trust: vec![TrustKind::System, TrustKind::Bundled],
            ca_files: Vec::new(),
            min_version: MinVersion::Tls12,
            insecure_skip_verify: false,
        }
    }
}

/// Where a certificate of a built chain came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertSource {
    /// Sent by the server in the handshake.
    Server,
    /// The system trust store.
    System,
    /// The bundled Mozilla roots.
    Bundled,
    /// A `ca_files` entry.
    File(PathBuf),
}

/// The facts of one certificate, as shown in transcripts, JSON and metrics.
#[derive(Clone, Debug)]
pub struct CertFacts {
    /// Position in the built chain (0 = leaf), or in the sent list for `ChainReport::sent`.
    pub depth: usize,
    /// Subject distinguished name (RFC 4514 string).
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Subject common name, empty when none.
    pub subject_cn: String,
    /// Issuer common name, empty when none.
    pub issuer_cn: String,
    /// Serial number, lower-case hex with leading zeros kept (as blackbox_exporter prints it).
    pub serial: String,
    /// SHA-256 of the DER, lower-case hex.
    pub fingerprint_sha256: String,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// DNS and IP subject alternative names.
    pub sans: Vec<String>,
    /// Whether the certificate is a CA (basicConstraints).
    pub is_ca: bool,
    /// Whether issuer equals subject and the signature verifies with its own key.
    pub self_signed: bool,
    /// Key type and size, such as `RSA 2048` or `ECDSA P-256`.
    pub key: String,
    /// Signature algorithm, such as `sha256WithRSAEncryption`.
    pub signature_algorithm: String,
    /// Whether the server sent it (false: taken from a trust source).
    pub sent: bool,
    /// Where it came from.
    pub source: CertSource,
    /// The certificate itself, for export.
    pub der: CertificateDer<'static>,
}

/// Why a chain did not verify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainError {
    /// A `cert_*` reason.
    pub reason: Reason,
    /// The depth of the certificate at fault, when one is.
    pub depth: Option<usize>,
    /// What is wrong, in words.
    pub detail: String,
}

/// The certificate chain of one handshake.
#[derive(Clone, Debug)]
pub struct ChainReport {
    /// The certificates as the server sent them, in its order.
    pub sent: Vec<CertFacts>,
    /// The chain built from the leaf towards a trust anchor (as far as it got when invalid).
    pub built: Vec<CertFacts>,
    /// `None` when the chain verified.
    pub error: Option<ChainError>,
    /// Whether the sent certificates alone reach a trust anchor.
    pub sent_complete: bool,
    /// The name the leaf was checked against.
    pub server_name: String,
}

impl ChainReport {
    /// Whether a chain to a trust anchor verified.
    pub fn valid(&self) -> bool {
        self.error.is_none()
    }
}

/// The TLS facts of a completed handshake.
#[derive(Clone, Debug)]
pub struct TlsReport {
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: String,
    /// IANA cipher suite name, such as `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
    /// The chain and its verdict.
    pub chain: ChainReport,
}

/// A handshake that did not complete.
#[derive(Clone, Debug)]
pub struct HandshakeFailure {
    /// `tls_handshake_failed`, `timeout` or `connection_closed`.
    pub reason: Reason,
    /// The TLS alert or error.
    pub detail: String,
}

/// Why a TLS client configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// A CA file could not be read or holds no certificate.
    #[error("CA file {path}: {why}")]
    CaFile { path: PathBuf, why: String },
    /// No trust anchor from any source.
    #[error("no trust anchors: {0}")]
    NoAnchors(String),
    /// The server name is not a DNS name or IP address.
    #[error("invalid server name {0:?}")]
    ServerName(String),
}

/// A TLS client for one module: rustls configuration and trust store, built once and shared.
#[derive(Clone)]
pub struct TlsClient {
    settings: TlsSettings,
    _inner: Arc<()>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("settings", &self.settings)
            .finish()
    }
}

impl TlsClient {
    /// Loads the trust sources and builds the rustls configuration.
    pub fn new(settings: &TlsSettings) -> Result<TlsClient, TlsSetupError> {
        Ok(TlsClient {
            settings: settings.clone(),
            _inner: Arc::new(()),
        })
    }

    /// The settings it was built from.
    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    /// The name used for SNI and the hostname check: `server_name`, else the target host.
    pub fn server_name_for<'a>(&'a self, target_host: &'a str) -> &'a str {
        self.settings.server_name.as_deref().unwrap_or(target_host)
    }

    /// Runs the TLS handshake over `stream` and reports version, cipher and chain.
    /// The chain is verified against the trust store at `now`; an invalid chain is *not* an error.
    pub async fn handshake<S>(
        &self,
        _stream: S,
        _server_name: &str,
        _now: SystemTime,
    ) -> Result<(tokio_rustls::client::TlsStream<S>, TlsReport), HandshakeFailure>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        Err(HandshakeFailure {
            reason: Reason::TlsHandshakeFailed,
            detail: "TLS not built yet".into(),
        })
    }
}
