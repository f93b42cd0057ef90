//! TLS for the probe: trust sources, a client configuration built once per module, the
//! handshake, and the chain report (what the server sent, what was built to an anchor, and why
//! verification failed). Plain data out; no Prometheus here.
//!
//! CONTRACT (implemented by the tls work): the handshake never fails because of the certificate
//! chain. The rustls verifier checks only the handshake signatures (proof that the server holds
//! the leaf key) and accepts any chain; the chain is then verified against the trust store after
//! the handshake and reported in [`ChainReport`], so that the probe always learns the certificates
//! and the verdict, and the session decides whether an invalid chain ends the probe.

mod cert;
mod chain;
pub mod export;
pub mod flags;
pub(crate) mod kept;
mod ocsp;
mod trust;
mod verifier;

#[cfg(test)]
mod tests;

use crate::vocab::Reason;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls_pki_types::{CertificateDer, InvalidDnsNameError, ServerName, UnixTime};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio_rustls::TlsConnector;
use trust::TrustStore;
use verifier::ChainDeferringVerifier;

pub(crate) use cert::{alt_names_of_der, AltName};
pub use export::{export_missing, missing_issuer, MissingIssuer};
pub use flags::ChainFlags;
pub use ocsp::{OcspCertStatus, OcspStaple};
pub(crate) use trust::MAX_CA_FILE_BYTES;

/// Where trust anchors come from (`tls_config.trust`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrustKind {
    /// The operating system's store (rustls-native-certs).
    System,
    /// Mozilla's roots compiled into the binary (webpki-root-certs: the webpki-roots set as
    /// whole certificates, so their dates and fingerprints can be shown and exported).
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
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
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
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
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
    /// Start of validity, Unix seconds (0 only for a certificate that does not parse).
    pub not_before: i64,
    /// End of validity, Unix seconds (0 only for a certificate that does not parse).
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
    /// The certificate itself, for export. Anchors from every source (the bundled roots
    /// included, see `trust.rs`) keep their whole certificate.
    pub der: CertificateDer<'static>,
}

/// Why a chain did not verify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainError {
    /// A `cert_*` reason.
    pub reason: Reason,
    /// The depth of the certificate at fault, when one is (expired, not yet valid, bad
    /// signature, self-signed, hostname); `None` when a certificate is missing
    /// (incomplete chain, unknown issuer).
    pub depth: Option<usize>,
    /// What is wrong, in words.
    pub detail: String,
    /// The error OpenSSL's verifier reports for the same chain (`openssl s_client
    /// -verify_return_error`, `openssl verify`): 20 for a missing issuer, 19 for an untrusted
    /// root sent along, 10 expired, 62 hostname mismatch, ... `None` where OpenSSL has no
    /// single equivalent. See [`openssl_verify_text`].
    pub openssl_code: Option<u32>,
}

/// OpenSSL's words for a verify error code (`X509_verify_cert_error_string`, OpenSSL 3), as an
/// admin finds them quoted in vendor knowledge-base articles.
pub fn openssl_verify_text(code: u32) -> &'static str {
    match code {
        0 => "ok",
        2 => "unable to get issuer certificate",
        7 => "certificate signature failure",
        9 => "certificate is not yet valid",
        10 => "certificate has expired",
        18 => "self-signed certificate",
        19 => "self-signed certificate in certificate chain",
        20 => "unable to get local issuer certificate",
        21 => "unable to verify the first certificate",
        24 => "invalid CA certificate",
        25 => "path length constraint exceeded",
        26 => "unsupported certificate purpose",
        47 => "permitted subtree violation",
        62 => "hostname mismatch",
        _ => "unknown verify error",
    }
}

/// The certificate chain of one handshake.
#[derive(Clone, Debug)]
pub struct ChainReport {
    /// The certificates as the server sent them, in its order.
    pub sent: Vec<Arc<CertFacts>>,
    /// The chain built from the leaf towards a trust anchor (as far as it got when invalid).
    pub built: Vec<Arc<CertFacts>>,
    /// `None` when the chain verified.
    pub error: Option<ChainError>,
    /// Whether the sent certificates alone reach a trust anchor, by issuer name and signature:
    /// no intermediate had to come from `ca_files`. It says which certificates the server sent,
    /// nothing about their dates or the hostname: an expired leaf sent with its intermediate is
    /// complete, a leaf sent alone is not, and neither is a chain no trust source anchors.
    pub sent_complete: bool,
    /// The name the leaf was checked against.
    pub server_name: String,
}

impl ChainReport {
    /// The certificates a report lists: the chain built to a trust anchor, or what the server
    /// sent when building did not even start.
    pub fn listed(&self) -> &[Arc<CertFacts>] {
        if self.built.is_empty() {
            &self.sent
        } else {
            &self.built
        }
    }

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
    /// rustls's name of the cipher suite, such as `TLS13_AES_256_GCM_SHA384`; see
    /// [`iana_cipher_name`] for the IANA spelling.
    pub cipher: String,
    /// The key exchange group, such as `X25519` or `secp256r1`.
    pub key_exchange_group: Option<String>,
    /// The scheme of the server's handshake signature (IANA TLS SignatureScheme name, such as
    /// `ecdsa_secp256r1_sha256` or `rsa_pss_rsae_sha256`).
    pub signature_scheme: Option<String>,
    /// The stapled OCSP response; `None` when the server stapled none.
    pub ocsp: Option<OcspStaple>,
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
    /// Whether the server's first bytes were not TLS at all (a record of no TLS content type
    /// or version): a plain-text SMTP greeting where a TLS handshake was expected.
    pub not_tls: bool,
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
    /// rustls refused the configuration (protocol versions the provider cannot serve).
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// A TLS client for one module: rustls configuration and trust store, built once and shared.
#[derive(Clone)]
pub struct TlsClient {
    settings: TlsSettings,
    inner: Arc<Inner>,
}

/// What a module's handshakes share.
struct Inner {
    connector: TlsConnector,
    store: TrustStore,
    algorithms: WebPkiSupportedAlgorithms,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("settings", &self.settings)
            .field("anchors", &self.inner.store.anchors.len())
            .field("intermediates", &self.inner.store.intermediates.len())
            .finish()
    }
}

/// The client's cryptography: rustls's ring provider with AES-128-GCM first among the cipher
/// suites, in the order Go's crypto/tls (and so blackbox_exporter) offers them. A server that
/// follows the client's order (OpenSSL's default, Postfix's `tls_preempt_cipherlist = no`) then
/// negotiates what blackbox_exporter reports, and the TLS 1.3 key schedule runs on SHA-256,
/// which processors accelerate, instead of SHA-384: a twentieth of a probe's CPU.
fn client_provider() -> rustls::crypto::CryptoProvider {
    use rustls::CipherSuite as S;
    let mut provider = rustls::crypto::ring::default_provider();
    // Stable: the other suites keep rustls's order.
    provider.cipher_suites.sort_by_key(|s| {
        !matches!(
            s.suite(),
            S::TLS13_AES_128_GCM_SHA256
                | S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    });
    provider
}

impl TlsClient {
    /// Loads the trust sources and builds the rustls configuration.
    pub fn new(settings: &TlsSettings) -> Result<TlsClient, TlsSetupError> {
        if let Some(name) = &settings.server_name {
            parse_server_name(name).map_err(|_| TlsSetupError::ServerName(name.clone()))?;
        }
        let store = TrustStore::load(&settings.trust, &settings.ca_files)?;
        let provider = Arc::new(client_provider());
        let algorithms = provider.signature_verification_algorithms;
        let versions: &[&'static rustls::SupportedProtocolVersion] = match settings.min_version {
            MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            MinVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            // Only fails when the provider lacks every suite of the versions, a build mistake.
            .map_err(|e| TlsSetupError::Config(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainDeferringVerifier::new(algorithms)))
            .with_no_client_auth();
        // Every probe must see a full handshake: a resumed session presents no certificates and
        // would hide the chain, and its timing is not what a new client experiences.
        config.resumption = rustls::client::Resumption::disabled();
        Ok(TlsClient {
            settings: settings.clone(),
            inner: Arc::new(Inner {
                connector: TlsConnector::from(Arc::new(config)),
                store,
                algorithms,
            }),
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

    /// How many trust anchors and local intermediates the store holds.
    pub fn trust_counts(&self) -> (usize, usize) {
        (
            self.inner.store.anchors.len(),
            self.inner.store.intermediates.len(),
        )
    }

    /// The first flight of a handshake with `server_name`: a ClientHello as this client sends
    /// it, to ask a silent server whether it waits for TLS. `None` for an invalid name.
    pub(crate) fn client_hello(&self, server_name: &str) -> Option<Vec<u8>> {
        let name = parse_server_name(server_name).ok()?;
        let config = self.inner.connector.config().clone();
        let mut connection = rustls::ClientConnection::new(config, name).ok()?;
        let mut hello = Vec::new();
        connection.write_tls(&mut hello).ok()?;
        Some(hello)
    }

    /// Verifies a chain (leaf first, as a server sends it) against this client's trust store at
    /// `now` and checks it covers `server_name`. [`TlsClient::handshake`] does this with the
    /// certificates of the handshake.
    pub fn verify_chain(
        &self,
        sent: &[CertificateDer<'static>],
        server_name: &str,
        now: SystemTime,
    ) -> ChainReport {
        chain::analyze(
            &self.inner.store,
            self.inner.algorithms.all,
            sent,
            server_name,
            unix_time(now),
        )
    }

    /// Runs the TLS handshake over `stream` and reports version, cipher and chain.
    /// The chain is verified against the trust store at `now`; an invalid chain is *not* an error.
    /// SNI is `server_name` when it is a DNS name; an IP literal (IPv6 with or without brackets)
    /// sends no SNI and is checked against the certificate's IP addresses.
    pub async fn handshake<S>(
        &self,
        stream: S,
        server_name: &str,
        now: SystemTime,
    ) -> Result<(tokio_rustls::client::TlsStream<S>, TlsReport), HandshakeFailure>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let name = parse_server_name(server_name).map_err(|e| HandshakeFailure {
            reason: Reason::TlsHandshakeFailed,
            detail: format!("invalid server name {server_name:?}: {e}"),
            not_tls: false,
        })?;
        let checked_name = match &name {
            ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
            _ => server_name.to_owned(),
        };
        // The client's last flight (its Finished) is sent on its own, not held back to leave
        // with the first request: that saves a write per handshake, but Postfix (OpenSSL 3)
        // then answered the EHLO sent with it about 40 ms late, every time: its session tickets
        // waited for our delayed ACK (see the SMTP session's `Connection::ack_at_once`).
        let (connected, observed) =
            verifier::observing(self.inner.connector.connect(name, stream)).await;
        let tls = connected.map_err(handshake_failure)?;
        let (_, connection) = tls.get_ref();
        let key_exchange_group = connection
            .negotiated_key_exchange_group()
            .map(|g| named_group(g.name()));
        let signature_scheme = observed.signature_scheme.map(signature_scheme_name);
        let version = match connection.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_owned(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_owned(),
            Some(other) => format!("{other:?}"),
            None => String::new(),
        };
        let cipher = connection
            .negotiated_cipher_suite()
            .map(|suite| {
                let id = suite.suite();
                id.as_str().map_or_else(|| format!("{id:?}"), str::to_owned)
            })
            .unwrap_or_default();
        let sent = connection.peer_certificates().unwrap_or(&[]);
        let chain = chain::analyze(
            &self.inner.store,
            self.inner.algorithms.all,
            sent,
            &checked_name,
            unix_time(now),
        );
        let ocsp = (!observed.ocsp_response.is_empty()).then(|| {
            let leaf_serial = sent
                .first()
                .and_then(|leaf| cert::parse(leaf).map(|c| c.raw_serial().to_vec()))
                .unwrap_or_default();
            OcspStaple::parse(&observed.ocsp_response, &leaf_serial)
        });
        Ok((
            tls,
            TlsReport {
                version,
                cipher,
                key_exchange_group,
                signature_scheme,
                ocsp,
                chain,
            },
        ))
    }
}

/// The IANA name of a cipher suite (`TLS_AES_256_GCM_SHA384`, as OpenSSL and blackbox_exporter
/// print it) from rustls's name, which prefixes TLS 1.3 suites with `TLS13_`.
pub fn iana_cipher_name(rustls_name: &str) -> String {
    match rustls_name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => rustls_name.to_owned(),
    }
}

/// A TLS version as blackbox_exporter spells it in `probe_tls_version_info` (`TLS 1.3`), from
/// the `TLSv1.3` spelling of transcripts.
pub fn blackbox_version_name(version: &str) -> String {
    match version.strip_prefix("TLSv") {
        Some(number) => format!("TLS {number}"),
        None => version.to_owned(),
    }
}

/// The name of a key exchange group (rustls spells them as the IANA registry does).
fn named_group(group: rustls::NamedGroup) -> String {
    group
        .as_str()
        .map_or_else(|| format!("{group:?}"), str::to_owned)
}

/// The IANA TLS SignatureScheme name (RFC 8446 §4.2.3), which OpenSSL prints too.
fn signature_scheme_name(scheme: rustls::SignatureScheme) -> String {
    use rustls::SignatureScheme as S;
    let name = match scheme {
        S::RSA_PKCS1_SHA1 => "rsa_pkcs1_sha1",
        S::ECDSA_SHA1_Legacy => "ecdsa_sha1",
        S::RSA_PKCS1_SHA256 => "rsa_pkcs1_sha256",
        S::ECDSA_NISTP256_SHA256 => "ecdsa_secp256r1_sha256",
        S::RSA_PKCS1_SHA384 => "rsa_pkcs1_sha384",
        S::ECDSA_NISTP384_SHA384 => "ecdsa_secp384r1_sha384",
        S::RSA_PKCS1_SHA512 => "rsa_pkcs1_sha512",
        S::ECDSA_NISTP521_SHA512 => "ecdsa_secp521r1_sha512",
        S::RSA_PSS_SHA256 => "rsa_pss_rsae_sha256",
        S::RSA_PSS_SHA384 => "rsa_pss_rsae_sha384",
        S::RSA_PSS_SHA512 => "rsa_pss_rsae_sha512",
        S::ED25519 => "ed25519",
        S::ED448 => "ed448",
        other => return format!("{other:?}"),
    };
    name.to_owned()
}

/// A server name for rustls: an IP literal (brackets around IPv6 allowed) or a DNS name.
fn parse_server_name(name: &str) -> Result<ServerName<'static>, InvalidDnsNameError> {
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    ServerName::try_from(bare.to_owned())
}

/// The handshake error as a failure: an EOF or reset before the handshake completed means the
/// server closed the connection; anything else (an alert, a protocol error) is a TLS failure.
fn handshake_failure(error: std::io::Error) -> HandshakeFailure {
    use std::io::ErrorKind;
    let reason = match error.kind() {
        ErrorKind::UnexpectedEof
        | ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::BrokenPipe => Reason::ConnectionClosed,
        _ => Reason::TlsHandshakeFailed,
    };
    let not_tls = matches!(
        error
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::InvalidMessage(
            rustls::InvalidMessage::InvalidContentType
                | rustls::InvalidMessage::UnknownProtocolVersion
        ))
    );
    HandshakeFailure {
        reason,
        detail: error.to_string(),
        not_tls,
    }
}

/// `now` for webpki; a clock before 1970 counts as 1970.
fn unix_time(now: SystemTime) -> UnixTime {
    UnixTime::since_unix_epoch(now.duration_since(UNIX_EPOCH).unwrap_or_default())
}
