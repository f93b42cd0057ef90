//! `--web.config.file` (DESIGN §3, §8): TLS, client certificates, HTTP basic authentication,
//! extra response headers and a request rate limit for the exporter's own HTTP server, in the
//! Prometheus exporter-toolkit web configuration format, so that one file can serve
//! node_exporter, blackbox_exporter and smtp-prober alike.
//!
//! Standards: TLS 1.2 and 1.3 (RFC 5246, RFC 8446) with rustls and its ring provider; client
//! certificates verified against a CA (RFC 5280); Basic authentication (RFC 7617) against bcrypt
//! hashes; `429 Too Many Requests` (RFC 6585).
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt            # or cert: inline PEM
//!   key_file: server.key             # or key: inline PEM
//!   client_auth_type: RequireAndVerifyClientCert
//!   client_ca_file: clients-ca.pem   # or client_ca: inline PEM
//!   client_allowed_sans: [prometheus.example.com]
//!   min_version: TLS12               # TLS12 | TLS13
//!   max_version: TLS13
//!   cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]   # TLS 1.2 suites
//!   curve_preferences: [X25519, CurveP256]
//!   prefer_server_cipher_suites: true
//! http_server_config:
//!   http2: true                      # accepted; the exporter speaks HTTP/1.1
//!   headers: {Strict-Transport-Security: max-age=31536000}
//! basic_auth_users:
//!   prometheus: $2y$10$...           # bcrypt, e.g. `htpasswd -nBC 10 "" | tr -d ':\n'`
//! rate_limit: {interval: 100ms, burst: 20}
//! ```
//!
//! Differences from exporter-toolkit, each one deliberate:
//! - The file is read once, at start: users, headers, the client CA and the TLS settings need a
//!   restart to change. The server certificate and key are the exception: their files are
//!   checked for changes at most once a second, on new connections, and re-read when they change
//!   (a rotation by cert-manager or certbot needs no restart); a pair that does not load keeps
//!   the previous one in service and is logged.
//! - `RequestClientCert` and `RequireAnyClientCert` are refused: they accept certificates nobody
//!   verified. `TLS10` and `TLS11` are refused: rustls implements TLS 1.2 and 1.3 only.
//! - HTTP/2 is not served (`http2` is accepted and ignored; ALPN offers `http/1.1`).
//! - Unknown keys are errors, and every error names the file, the line and the field, like the
//!   main configuration.
//!
//! Basic authentication covers every endpoint. bcrypt is slow by design (tens of milliseconds
//! at cost 10), so a successful check is remembered by a SHA-256 of user, hash and password:
//! Prometheus scraping every few seconds costs one bcrypt run, not one per scrape. An unknown
//! user is checked against another user's hash anyway, so the answer takes as long as for a
//! known user with a wrong password, and the bcrypt runs are capped at one per CPU so that a
//! flood of wrong passwords cannot take every blocking thread. Neither the `Authorization`
//! header nor a password is ever logged; the header is removed before a handler sees the request.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine as _;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

use crate::config::raw::{At, HumanDuration};
use crate::config::{yaml_message, ConfigError, Problem};

/// A web configuration file (or a PEM file it names) larger than this is refused.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The `WWW-Authenticate` challenge of a 401 (RFC 7617 §2).
const CHALLENGE: &str = "Basic realm=\"smtp-prober\"";

/// At most this many successful credential checks are remembered.
const MAX_VERIFIED: usize = 1024;

/// A `Basic` credential longer than this (base64) is refused unread.
const MAX_CREDENTIAL_BYTES: usize = 4096;

/// A client must finish its TLS handshake within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// At most this many TLS handshakes run at once; more connections wait to be accepted.
const MAX_HANDSHAKES: usize = 256;

/// Certificate files are checked for changes at most this often.
const CERT_CHECK_INTERVAL: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------------
// The file as written.

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawWebConfig {
    tls_server_config: Option<At<RawTlsServer>>,
    http_server_config: Option<RawHttpServer>,
    basic_auth_users: Option<BTreeMap<String, At<String>>>,
    rate_limit: Option<At<RawRateLimit>>,
}

/// `tls_server_config:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTlsServer {
    cert: Option<At<String>>,
    key: Option<At<String>>,
    client_ca: Option<At<String>>,
    cert_file: Option<At<String>>,
    key_file: Option<At<String>>,
    client_auth_type: Option<At<ClientAuthType>>,
    client_ca_file: Option<At<String>>,
    client_allowed_sans: Option<At<Vec<String>>>,
    min_version: Option<At<TlsVersionName>>,
    max_version: Option<At<TlsVersionName>>,
    cipher_suites: Option<Vec<At<String>>>,
    prefer_server_cipher_suites: Option<bool>,
    curve_preferences: Option<Vec<At<String>>>,
}

/// `client_auth_type:` values, Go's `crypto/tls` names.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize)]
enum ClientAuthType {
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    /// exporter-toolkit's older spelling of `RequireAnyClientCert`.
    RequireClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

/// `min_version:` / `max_version:` values.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
enum TlsVersionName {
    TLS10,
    TLS11,
    TLS12,
    TLS13,
}

/// `http_server_config:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawHttpServer {
    http2: Option<bool>,
    headers: Option<BTreeMap<String, At<String>>>,
}

/// `rate_limit:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRateLimit {
    interval: Option<At<HumanDuration>>,
    burst: Option<At<u64>>,
}

// ---------------------------------------------------------------------------------------------
// The validated configuration.

/// A validated web configuration: what the HTTP server enforces. The default is plain HTTP
/// without authentication (no `--web.config.file`).
#[derive(Clone, Default)]
pub struct WebConfig {
    tls: Option<Arc<TlsServer>>,
    auth: Option<Arc<BasicAuth>>,
    headers: Vec<(HeaderName, HeaderValue)>,
    rate_limit: Option<Arc<RateLimiter>>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary())
    }
}

impl WebConfig {
    /// Reads and validates a web configuration file; relative paths in it are taken from the
    /// file's directory, as exporter-toolkit does.
    pub fn load(path: &Path) -> Result<WebConfig, ConfigError> {
        let file = path.display().to_string();
        let bytes = read_bounded(path).map_err(|why| ConfigError {
            file: file.clone(),
            problems: vec![Problem {
                line: None,
                field: String::new(),
                message: format!("cannot read: {why}"),
            }],
        })?;
        let text = String::from_utf8(bytes).map_err(|e| ConfigError {
            file: file.clone(),
            problems: vec![Problem {
                line: None,
                field: String::new(),
                message: format!("not UTF-8 text (at byte {})", e.utf8_error().valid_up_to()),
            }],
        })?;
        WebConfig::parse(&text, &file, path.parent())
    }

    /// Decodes and validates web configuration text; `file` names it in errors, `base_dir`
    /// resolves relative paths (the working directory when `None`).
    pub fn parse(
        text: &str,
        file: &str,
        base_dir: Option<&Path>,
    ) -> Result<WebConfig, ConfigError> {
        let fail = |problems| ConfigError {
            file: file.to_string(),
            problems,
        };
        let raw = decode(text).map_err(|p| fail(vec![p]))?;
        let base_dir = base_dir.filter(|dir| !dir.as_os_str().is_empty());
        let mut check = Checker {
            base_dir,
            problems: Vec::new(),
        };
        let tls = raw
            .tls_server_config
            .as_ref()
            .and_then(|tls| check.tls(tls));
        let auth = raw
            .basic_auth_users
            .as_ref()
            .and_then(|users| check.users(users));
        let headers = raw
            .http_server_config
            .as_ref()
            .and_then(|h| h.headers.as_ref())
            .map(|h| check.headers(h))
            .unwrap_or_default();
        let rate_limit = raw
            .rate_limit
            .as_ref()
            .and_then(|limit| check.rate_limit(limit));
        if !check.problems.is_empty() {
            return Err(fail(check.problems));
        }
        Ok(WebConfig {
            tls: tls.map(Arc::new),
            auth: auth.map(Arc::new),
            headers,
            rate_limit: rate_limit.map(Arc::new),
        })
    }

    /// Whether the server speaks HTTPS.
    pub fn tls_enabled(&self) -> bool {
        self.tls.is_some()
    }

    /// How many users basic authentication knows (0: no authentication).
    pub fn basic_auth_users(&self) -> usize {
        self.auth.as_ref().map_or(0, |a| a.users.len())
    }

    /// One line saying what is in force, for `check-config` and the start-up log.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        match &self.tls {
            Some(tls) => parts.push(format!("TLS ({})", tls.client_auth_summary())),
            None => parts.push("plain HTTP".to_string()),
        }
        match self.basic_auth_users() {
            0 => parts.push("no basic auth".to_string()),
            1 => parts.push("basic auth (1 user)".to_string()),
            n => parts.push(format!("basic auth ({n} users)")),
        }
        if !self.headers.is_empty() {
            parts.push(format!("{} extra headers", self.headers.len()));
        }
        if let Some(limit) = &self.rate_limit {
            parts.push(format!(
                "rate limit 1 per {} (burst {})",
                humantime::format_duration(limit.every),
                limit.burst
            ));
        }
        parts.join(", ")
    }

    /// Wraps `router` so that every request passes the rate limit and basic authentication,
    /// and every response carries the configured headers. Without any of them, `router` itself.
    pub fn protect(&self, router: Router) -> Router {
        if self.auth.is_none() && self.headers.is_empty() && self.rate_limit.is_none() {
            return router;
        }
        let gate = Gate {
            auth: self.auth.clone(),
            headers: Arc::from(self.headers.clone()),
            rate_limit: self.rate_limit.clone(),
        };
        router.layer(axum::middleware::from_fn_with_state(gate, guard))
    }

    /// The TLS listener over `listener`, when the file configures TLS.
    pub fn tls_listener(&self, listener: TcpListener) -> Result<TlsListener, TcpListener> {
        match &self.tls {
            Some(tls) => Ok(TlsListener::new(listener, tls.clone())),
            None => Err(listener),
        }
    }
}

/// Reads at most [`MAX_FILE_BYTES`].
fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    Ok(bytes)
}

/// Decodes the YAML into the raw structs; on failure, the problem with its line and field.
fn decode(text: &str) -> Result<RawWebConfig, Problem> {
    // An empty file (or one of comments only) configures nothing: plain HTTP, as in
    // exporter-toolkit.
    let blank = text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l == "---"
    });
    if blank {
        return Ok(RawWebConfig::default());
    }
    let options = serde_saphyr::options! { with_snippet: false, strict_booleans: true };
    let mut failed_at = None;
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        let mut track = serde_path_to_error::Track::new();
        let result =
            RawWebConfig::deserialize(serde_path_to_error::Deserializer::new(de, &mut track));
        if result.is_err() {
            failed_at = Some(track.path());
        }
        result
    });
    result.map_err(|e| Problem {
        line: e.location().map(|l| l.line()).filter(|&l| l > 0),
        field: failed_at.map(|path| field_path(&path)).unwrap_or_default(),
        message: yaml_message(&e),
    })
}

/// A field path like `tls_server_config.min_version` from the tracked serde path. Located
/// values add a `value` key of their own, which is dropped, except as a user or header name.
fn field_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    let mut user_key_next = false;
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => {
                out.push_str(&format!("[{index}]"));
                user_key_next = false;
            }
            Segment::Map { key } if user_key_next => {
                out.push('.');
                out.push_str(key);
                user_key_next = false;
            }
            Segment::Map { key } if key == "value" => {}
            Segment::Map { key } => {
                user_key_next = (out.is_empty() && key == "basic_auth_users") || key == "headers";
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    out
}

/// The line of a located value, `None` when the parser could not tell.
fn line<T>(at: &At<T>) -> Option<u64> {
    let line = at.referenced.line();
    (line > 0).then_some(line)
}

/// Walks the raw file, collecting problems.
struct Checker<'a> {
    base_dir: Option<&'a Path>,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn problem(&mut self, line: Option<u64>, field: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            line,
            field: field.to_string(),
            message: message.into(),
        });
    }

    fn path(&self, written: &str) -> PathBuf {
        let path = PathBuf::from(written);
        match self.base_dir {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path,
        }
    }

    /// PEM text, inline (`inline`) or from a file (`file`): exactly one of them. `None` with a
    /// problem recorded when neither, both, or the file cannot be read.
    fn pem_source(
        &mut self,
        section: Option<u64>,
        inline: (&str, &Option<At<String>>),
        file: (&str, &Option<At<String>>),
        required: bool,
    ) -> Option<PemSource> {
        let field = |name: &str| format!("tls_server_config.{name}");
        match (inline.1, file.1) {
            (Some(text), Some(_)) => {
                self.problem(
                    line(text),
                    &field(inline.0),
                    format!("give {} or {}, not both", inline.0, file.0),
                );
                None
            }
            (Some(text), None) => Some(PemSource {
                origin: PemOrigin::Inline(text.value.clone().into_bytes()),
                line: line(text),
                field: field(inline.0),
            }),
            (None, Some(path)) => {
                if path.value.trim().is_empty() {
                    self.problem(line(path), &field(file.0), "is empty");
                    return None;
                }
                let resolved = self.path(&path.value);
                match read_bounded(&resolved) {
                    Ok(_) => Some(PemSource {
                        origin: PemOrigin::File(resolved),
                        line: line(path),
                        field: field(file.0),
                    }),
                    Err(why) => {
                        self.problem(
                            line(path),
                            &field(file.0),
                            format!("cannot read {}: {why}", resolved.display()),
                        );
                        None
                    }
                }
            }
            (None, None) => {
                if required {
                    self.problem(
                        section,
                        "tls_server_config",
                        format!("missing {} (or {})", file.0, inline.0),
                    );
                }
                None
            }
        }
    }

    fn tls(&mut self, raw: &At<RawTlsServer>) -> Option<TlsServer> {
        let section = line(raw);
        let tls = &raw.value;
        let problems_before = self.problems.len();
        let cert = self.pem_source(
            section,
            ("cert", &tls.cert),
            ("cert_file", &tls.cert_file),
            true,
        );
        let key = self.pem_source(
            section,
            ("key", &tls.key),
            ("key_file", &tls.key_file),
            true,
        );
        let client_ca = self.pem_source(
            section,
            ("client_ca", &tls.client_ca),
            ("client_ca_file", &tls.client_ca_file),
            false,
        );
        let auth_type = tls
            .client_auth_type
            .as_ref()
            .map_or(ClientAuthType::NoClientCert, |a| a.value);
        let auth_line = tls.client_auth_type.as_ref().and_then(line);
        let auth_field = "tls_server_config.client_auth_type";
        let verify = match auth_type {
            ClientAuthType::NoClientCert => {
                if let Some(ca) = tls.client_ca_file.as_ref().or(tls.client_ca.as_ref()) {
                    self.problem(
                        line(ca),
                        auth_field,
                        "a client CA is configured without a client auth policy: set \
                         client_auth_type to RequireAndVerifyClientCert (or \
                         VerifyClientCertIfGiven), or remove the CA",
                    );
                }
                ClientVerify::None
            }
            ClientAuthType::RequestClientCert
            | ClientAuthType::RequireAnyClientCert
            | ClientAuthType::RequireClientCert => {
                self.problem(
                    auth_line,
                    auth_field,
                    format!(
                        "{auth_type:?} is not supported: it accepts client certificates that \
                         nobody verified; use RequireAndVerifyClientCert with client_ca_file"
                    ),
                );
                ClientVerify::None
            }
            ClientAuthType::VerifyClientCertIfGiven => ClientVerify::IfGiven,
            ClientAuthType::RequireAndVerifyClientCert => ClientVerify::Required,
        };
        if verify != ClientVerify::None && tls.client_ca_file.is_none() && tls.client_ca.is_none() {
            self.problem(
                auth_line,
                auth_field,
                format!("{auth_type:?} needs client_ca_file (or client_ca) to verify against"),
            );
        }
        let allowed_sans = match &tls.client_allowed_sans {
            Some(sans) if verify != ClientVerify::Required => {
                self.problem(
                    line(sans),
                    "tls_server_config.client_allowed_sans",
                    "needs client_auth_type RequireAndVerifyClientCert: other policies let a \
                     client connect without a certificate, leaving no SAN to check",
                );
                Vec::new()
            }
            Some(sans) => sans.value.clone(),
            None => Vec::new(),
        };
        let versions = self.versions(tls);
        let suites = self.cipher_suites(tls.cipher_suites.as_deref());
        let groups = self.curves(tls.curve_preferences.as_deref());
        if self.problems.len() > problems_before {
            return None;
        }
        let (Some(cert), Some(key)) = (cert, key) else {
            return None;
        };
        let mut provider = rustls::crypto::ring::default_provider();
        if let Some(suites) = suites {
            provider.cipher_suites = suites;
        }
        if let Some(groups) = groups {
            provider.kx_groups = groups;
        }
        let provider = Arc::new(provider);
        let certified = match load_certified_key(&cert, &key, &provider) {
            Ok(k) => k,
            Err(why) => {
                self.problem(cert.line, &cert.field, why);
                return None;
            }
        };
        let client_verifier = match (&verify, &client_ca) {
            (ClientVerify::None, _) | (_, None) => None,
            (_, Some(ca)) => match client_verifier(ca, verify, &allowed_sans, &provider) {
                Ok(v) => Some(v),
                Err(why) => {
                    self.problem(ca.line, &ca.field, why);
                    return None;
                }
            },
        };
        let builder = match rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
        {
            Ok(b) => b,
            Err(e) => {
                self.problem(
                    section,
                    "tls_server_config",
                    format!("no cipher suite is left for the TLS versions chosen: {e}"),
                );
                return None;
            }
        };
        let builder = match client_verifier {
            Some(v) => builder.with_client_cert_verifier(v),
            None => builder.with_no_client_auth(),
        };
        let server_cert = Arc::new(ServerCert::new(cert, key, certified, provider));
        let mut config = builder.with_cert_resolver(server_cert.clone());
        config.ignore_client_order = tls.prefer_server_cipher_suites.unwrap_or(true);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Some(TlsServer {
            config: Arc::new(config),
            server_cert,
            verify,
            allowed_sans,
        })
    }

    /// `min_version` and `max_version` as the rustls versions between them.
    fn versions(&mut self, tls: &RawTlsServer) -> Vec<&'static rustls::SupportedProtocolVersion> {
        let mut bound = |at: &Option<At<TlsVersionName>>, name: &str, default| match at {
            Some(v) if v.value < TlsVersionName::TLS12 => {
                self.problem(
                    line(v),
                    &format!("tls_server_config.{name}"),
                    format!(
                        "{:?} is not supported (rustls implements TLS 1.2 and 1.3): use TLS12 \
                         or TLS13",
                        v.value
                    ),
                );
                default
            }
            Some(v) => v.value,
            None => default,
        };
        let min = bound(&tls.min_version, "min_version", TlsVersionName::TLS12);
        let max = bound(&tls.max_version, "max_version", TlsVersionName::TLS13);
        if min > max {
            self.problem(
                tls.max_version.as_ref().and_then(line),
                "tls_server_config.max_version",
                format!("{max:?} is below min_version {min:?}"),
            );
        }
        let mut versions = Vec::new();
        if min <= TlsVersionName::TLS12 && max >= TlsVersionName::TLS12 {
            versions.push(&rustls::version::TLS12);
        }
        if max >= TlsVersionName::TLS13 {
            versions.push(&rustls::version::TLS13);
        }
        versions
    }

    /// `cipher_suites`: Go's (IANA) names of TLS 1.2 suites, in preference order. TLS 1.3
    /// suites cannot be chosen (as in Go): all of them stay enabled, and naming one is allowed.
    fn cipher_suites(
        &mut self,
        names: Option<&[At<String>]>,
    ) -> Option<Vec<rustls::SupportedCipherSuite>> {
        let names = names?;
        if names.is_empty() {
            return None;
        }
        let all = rustls::crypto::ring::default_provider().cipher_suites;
        let iana = |s: &rustls::SupportedCipherSuite| {
            let name = s.suite().as_str().unwrap_or_default();
            // rustls names the TLS 1.3 suites `TLS13_…`; IANA and Go name them `TLS_…`.
            match name.strip_prefix("TLS13_") {
                Some(rest) => format!("TLS_{rest}"),
                None => name.to_string(),
            }
        };
        let mut chosen: Vec<rustls::SupportedCipherSuite> = all
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS13)
            .copied()
            .collect();
        for (i, name) in names.iter().enumerate() {
            // Go also accepts its older names of the ChaCha20 suites, without `_SHA256`.
            let wanted = if name.value.ends_with("_POLY1305") {
                format!("{}_SHA256", name.value)
            } else {
                name.value.clone()
            };
            match all.iter().find(|s| iana(s) == wanted) {
                Some(suite) if !chosen.iter().any(|c| c.suite() == suite.suite()) => {
                    chosen.push(*suite)
                }
                Some(_) => {}
                None => {
                    let known: Vec<String> = all.iter().map(iana).collect();
                    self.problem(
                        line(name),
                        &format!("tls_server_config.cipher_suites[{i}]"),
                        format!(
                            "unknown or unavailable cipher suite {:?}; available: {}",
                            name.value,
                            known.join(", ")
                        ),
                    );
                }
            }
        }
        Some(chosen)
    }

    /// `curve_preferences`: Go's curve names, in preference order.
    fn curves(
        &mut self,
        names: Option<&[At<String>]>,
    ) -> Option<Vec<&'static dyn rustls::crypto::SupportedKxGroup>> {
        let names = names?;
        if names.is_empty() {
            return None;
        }
        use rustls::crypto::ring::kx_group;
        let mut groups: Vec<&'static dyn rustls::crypto::SupportedKxGroup> = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let group = match name.value.as_str() {
                "X25519" => kx_group::X25519,
                "CurveP256" => kx_group::SECP256R1,
                "CurveP384" => kx_group::SECP384R1,
                other => {
                    self.problem(
                        line(name),
                        &format!("tls_server_config.curve_preferences[{i}]"),
                        format!(
                            "unknown or unavailable curve {other:?}; available: X25519, \
                             CurveP256, CurveP384"
                        ),
                    );
                    continue;
                }
            };
            if !groups.iter().any(|g| g.name() == group.name()) {
                groups.push(group);
            }
        }
        Some(groups)
    }

    fn users(&mut self, raw: &BTreeMap<String, At<String>>) -> Option<BasicAuth> {
        let mut users = HashMap::with_capacity(raw.len());
        for (user, hash) in raw {
            let field = format!("basic_auth_users.{user}");
            if user.contains(':') {
                // RFC 7617 §2: the user-id ends at the first colon.
                self.problem(line(hash), &field, "a user name cannot contain ':'");
                continue;
            }
            match hash.value.parse::<bcrypt::HashParts>() {
                Ok(_) => {
                    users.insert(user.clone(), hash.value.clone());
                }
                // The hash is not secret, but a mistyped password pasted here might be: the
                // message never quotes the value.
                Err(e) => self.problem(
                    line(hash),
                    &field,
                    format!("not a bcrypt hash ({e}); make one with htpasswd -nBC 10 \"\" | tr -d ':\\n'"),
                ),
            }
        }
        BasicAuth::new(users)
    }

    fn headers(&mut self, raw: &BTreeMap<String, At<String>>) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::new();
        for (name, value) in raw {
            let field = format!("http_server_config.headers.{name}");
            let Some(allowed) = ALLOWED_HEADERS
                .iter()
                .find(|(known, _)| known.eq_ignore_ascii_case(name))
            else {
                let known: Vec<&str> = ALLOWED_HEADERS.iter().map(|(n, _)| *n).collect();
                self.problem(
                    line(value),
                    &field,
                    format!("not a header that can be set; one of {}", known.join(", ")),
                );
                continue;
            };
            let text = value.value.trim();
            // An empty value leaves the header unset, as in exporter-toolkit.
            if text.is_empty() {
                continue;
            }
            if let Some(values) = allowed.1 {
                if !values.iter().any(|v| v.eq_ignore_ascii_case(text)) {
                    self.problem(
                        line(value),
                        &field,
                        format!("{text:?} is not one of {}", values.join(", ")),
                    );
                    continue;
                }
            }
            match (
                HeaderName::from_bytes(allowed.0.as_bytes()),
                HeaderValue::from_str(text),
            ) {
                (Ok(name), Ok(value)) => out.push((name, value)),
                _ => self.problem(line(value), &field, "not a valid header value"),
            }
        }
        out
    }

    fn rate_limit(&mut self, raw: &At<RawRateLimit>) -> Option<RateLimiter> {
        let every = raw
            .value
            .interval
            .as_ref()
            .map_or(Duration::ZERO, |i| i.value.0);
        if every.is_zero() {
            // exporter-toolkit: an interval of 0 turns the limiter off.
            return None;
        }
        let burst = match &raw.value.burst {
            Some(b) if b.value == 0 => {
                self.problem(
                    line(b),
                    "rate_limit.burst",
                    "must be at least 1 (0 would refuse every request)",
                );
                return None;
            }
            Some(b) => u32::try_from(b.value).unwrap_or(u32::MAX),
            None => {
                self.problem(line(raw), "rate_limit", "missing burst");
                return None;
            }
        };
        Some(RateLimiter::new(every, burst))
    }
}

/// Headers `http_server_config.headers` may set and, for some, the only values allowed
/// (exporter-toolkit's list). Names compare without regard to case, as HTTP's do.
const ALLOWED_HEADERS: &[(&str, Option<&[&str]>)] = &[
    ("Content-Security-Policy", None),
    ("X-Frame-Options", Some(&["deny", "sameorigin"])),
    ("X-Content-Type-Options", Some(&["nosniff"])),
    ("X-XSS-Protection", None),
    ("Strict-Transport-Security", None),
];

// ---------------------------------------------------------------------------------------------
// Basic authentication, rate limit and headers.

/// What the middleware enforces.
#[derive(Clone)]
struct Gate {
    auth: Option<Arc<BasicAuth>>,
    headers: Arc<[(HeaderName, HeaderValue)]>,
    rate_limit: Option<Arc<RateLimiter>>,
}

/// The middleware: rate limit, then credentials, then the handler; headers on every answer.
async fn guard(State(gate): State<Gate>, mut request: Request, next: Next) -> Response {
    let mut response = if gate.rate_limit.as_ref().is_some_and(|l| !l.allow()) {
        plain(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests\n")
    } else if let Some(auth) = &gate.auth {
        // Nothing after this point needs the credentials, so nothing can log them by mistake.
        let credential = request.headers_mut().remove(header::AUTHORIZATION);
        if auth.check(credential.as_ref()).await {
            next.run(request).await
        } else {
            let mut r = plain(StatusCode::UNAUTHORIZED, "Unauthorized\n");
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(CHALLENGE),
            );
            r
        }
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    for (name, value) in gate.headers.iter() {
        headers.insert(name.clone(), value.clone());
    }
    response
}

fn plain(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        Body::from(body),
    )
        .into_response()
}

/// Users and their bcrypt hashes, with the memory of credentials that passed.
struct BasicAuth {
    users: HashMap<String, String>,
    /// The hash an unknown user is checked against, so that the answer takes as long as for a
    /// known one.
    decoy: String,
    /// SHA-256 of (user, hash, password) of every successful check, at most [`MAX_VERIFIED`].
    verified: Mutex<HashSet<[u8; 32]>>,
    /// bcrypt runs at most one per CPU at a time.
    bcrypt_slots: tokio::sync::Semaphore,
}

impl BasicAuth {
    /// `None` when there are no users (no authentication).
    fn new(users: HashMap<String, String>) -> Option<BasicAuth> {
        let decoy = users.values().min()?.clone();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Some(BasicAuth {
            users,
            decoy,
            verified: Mutex::new(HashSet::new()),
            bcrypt_slots: tokio::sync::Semaphore::new(cpus),
        })
    }

    /// Whether the `Authorization` header holds the credentials of a configured user.
    async fn check(&self, header: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = header.and_then(parse_basic) else {
            return false;
        };
        let (hash, known) = match self.users.get(&user) {
            Some(hash) => (hash.clone(), true),
            None => (self.decoy.clone(), false),
        };
        let key = verified_key(&user, &hash, &password);
        // The key is a SHA-256 digest: how long the lookup takes says nothing about the
        // password.
        if known && self.lock_verified().contains(&key) {
            return true;
        }
        let Ok(_slot) = self.bcrypt_slots.acquire().await else {
            return false;
        };
        let matches = tokio::task::spawn_blocking(move || {
            // bcrypt compares the digests in constant time.
            bcrypt::verify(&password, &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        if !(known && matches) {
            tracing::debug!(user = %user, "basic authentication failed");
            return false;
        }
        let mut verified = self.lock_verified();
        if verified.len() >= MAX_VERIFIED {
            // Only credentials that passed get here, so this takes many users or rotations:
            // forgetting one costs one bcrypt run later.
            if let Some(old) = verified.iter().next().copied() {
                verified.remove(&old);
            }
        }
        verified.insert(key);
        true
    }

    fn lock_verified(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        // A panic while holding the lock cannot leave the set inconsistent.
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The user and password of a `Basic` `Authorization` header (RFC 7617 §2).
fn parse_basic(value: &HeaderValue) -> Option<(String, Vec<u8>)> {
    let text = value.to_str().ok()?.trim();
    let (scheme, credential) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let credential = credential.trim();
    if credential.len() > MAX_CREDENTIAL_BYTES {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credential)
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = std::str::from_utf8(&decoded[..colon]).ok()?.to_string();
    Some((user, decoded[colon + 1..].to_vec()))
}

/// The memory key of a successful check: lengths first, so no two inputs run together.
fn verified_key(user: &str, hash: &str, password: &[u8]) -> [u8; 32] {
    let mut digest = Sha256::new();
    for part in [user.as_bytes(), hash.as_bytes(), password] {
        digest.update((part.len() as u64).to_be_bytes());
        digest.update(part);
    }
    digest.finalize().into()
}

/// A token bucket: `burst` requests at once, then one per `every`; the rest get 429.
struct RateLimiter {
    every: Duration,
    burst: u32,
    bucket: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    fn new(every: Duration, burst: u32) -> RateLimiter {
        RateLimiter {
            every,
            burst,
            bucket: Mutex::new((f64::from(burst), Instant::now())),
        }
    }

    fn allow(&self) -> bool {
        let now = Instant::now();
        let mut bucket = self
            .bucket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (tokens, last) = *bucket;
        let refill = now.duration_since(last).as_secs_f64() / self.every.as_secs_f64();
        let tokens = (tokens + refill).min(f64::from(self.burst));
        let (left, allowed) = if tokens >= 1.0 {
            (tokens - 1.0, true)
        } else {
            (tokens, false)
        };
        *bucket = (left, now);
        allowed
    }
}

// ---------------------------------------------------------------------------------------------
// TLS.

/// PEM text named by the web configuration, with the line and field that named it.
#[derive(Debug)]
struct PemSource {
    origin: PemOrigin,
    line: Option<u64>,
    field: String,
}

/// A file's modification time and size.
type FileStamp = (SystemTime, u64);

/// Where PEM text comes from.
#[derive(Debug)]
enum PemOrigin {
    /// Inline in the web configuration.
    Inline(Vec<u8>),
    /// A file.
    File(PathBuf),
}

impl PemSource {
    fn read(&self) -> Result<Vec<u8>, String> {
        match &self.origin {
            PemOrigin::Inline(bytes) => Ok(bytes.clone()),
            PemOrigin::File(path) => {
                read_bounded(path).map_err(|why| format!("cannot read {}: {why}", path.display()))
            }
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
fn load_certified_key(
    cert: &PemSource,
    key: &PemSource,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, String> {
    let cert_pem = cert.read()?;
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not PEM certificates: {e}", cert.describe()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate in it", cert.describe()));
    }
    let key_pem = key.read()?;
    // Key errors never quote the key.
    let private: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|_| format!("{}: not a PEM private key", key.describe()))?
        .ok_or_else(|| format!("{}: no private key in it", key.describe()))?;
    CertifiedKey::from_der(chain, private, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => format!(
            "the key ({}) does not belong to the certificate ({})",
            key.describe(),
            cert.describe()
        ),
        other => format!(
            "the certificate ({}) and the key ({}) cannot be used: {other}",
            cert.describe(),
            key.describe()
        ),
    })
}

/// Builds the verifier of client certificates from the CA PEM.
fn client_verifier(
    ca: &PemSource,
    verify: ClientVerify,
    allowed_sans: &[String],
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let pem = ca.read()?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| format!("{}: not PEM certificates: {e}", ca.describe()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: unusable CA certificate: {e}", ca.describe()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no certificate in it", ca.describe()));
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    let builder = match verify {
        ClientVerify::IfGiven => builder.allow_unauthenticated(),
        _ => builder,
    };
    let verifier = builder
        .build()
        .map_err(|e| format!("{}: {e}", ca.describe()))?;
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
#[derive(Debug, thiserror::Error)]
#[error("client certificate SANs {0:?} are not in client_allowed_sans")]
struct SanNotAllowed(Vec<String>);

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
enum ClientVerify {
    /// Not asked for.
    None,
    /// Verified when sent; a client without one is served.
    IfGiven,
    /// Required and verified.
    Required,
}

/// The server certificate and key in service, re-read when their files change.
#[derive(Debug)]
struct ServerCert {
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
    fn new(
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
    fn current(&self) -> Arc<CertifiedKey> {
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
struct TlsServer {
    config: Arc<rustls::ServerConfig>,
    /// The certificate in service (also inside `config`, as its resolver).
    #[cfg_attr(not(test), allow(dead_code))]
    server_cert: Arc<ServerCert>,
    verify: ClientVerify,
    /// When not empty, a client certificate must carry one of these SANs (for the summary:
    /// [`SanCheck`] enforces them).
    allowed_sans: Vec<String>,
}

impl TlsServer {
    fn client_auth_summary(&self) -> String {
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
    async fn handshake(&self, mut tcp: TcpStream) -> Result<TlsStream<TcpStream>, String> {
        let mut first = [0u8; 1];
        let n = tcp.peek(&mut first).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed before the handshake".into());
        }
        // 22 is the record type of a TLS handshake (RFC 8446 §5.1).
        if first[0] != 22 {
            if first[0].is_ascii_uppercase() {
                answer_plain_http(&mut tcp).await;
                return Err("plain HTTP request on the HTTPS port".into());
            }
            return Err("not a TLS handshake".into());
        }
        tokio_rustls::TlsAcceptor::from(self.config.clone())
            .accept(tcp)
            .await
            .map_err(|e| handshake_error(&e))
    }
}

/// A failed handshake in words; our own refusals ([`SanNotAllowed`]) with their message
/// rather than rustls' debug form of them.
fn handshake_error(e: &std::io::Error) -> String {
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
        Some(refusal) => refusal.to_string(),
        None => e.to_string(),
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

/// The subject alternative names of a certificate as text (IP addresses in their usual form).
fn cert_sans(der: &[u8]) -> Vec<String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => {
                Some((*s).to_string())
            }
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes)
                    .ok()
                    .map(|b| IpAddr::from(b).to_string()),
                16 => <[u8; 16]>::try_from(*bytes)
                    .ok()
                    .map(|b| IpAddr::from(b).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Exact match, except that IP addresses compare as addresses (`::1` = `0:0:0:0:0:0:0:1`).
fn san_matches(san: &str, allowed: &str) -> bool {
    match (san.parse::<IpAddr>(), allowed.parse::<IpAddr>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => san == allowed,
    }
}

/// A listener that hands axum connections which finished their TLS handshake. Handshakes run
/// in their own tasks, so a slow or silent client never holds up the next one.
pub struct TlsListener {
    local: SocketAddr,
    ready: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    fn new(listener: TcpListener, tls: Arc<TlsServer>) -> TlsListener {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        let accepting = tokio::spawn(accept_loop(listener, tls, tx));
        TlsListener {
            local,
            ready,
            accepting,
        }
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        // Stop accepting (and close the socket) when the server lets go of the listener.
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept loop ended (it only does when aborted): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Arc<TlsServer>,
    ready: tokio::sync::mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
                if !matches!(
                    e.kind(),
                    ConnectionAborted | ConnectionRefused | ConnectionReset
                ) {
                    // Out of file descriptors, most likely: give the system a moment.
                    tracing::error!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                continue;
            }
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let tls = tls.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.handshake(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = ready.send((stream, peer)).await;
                }
                Ok(Err(why)) => {
                    tracing::debug!(peer = %peer, error = %why, "TLS handshake failed");
                }
                Err(_) => tracing::debug!(peer = %peer, "TLS handshake timed out"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::DemoPki;

    /// A directory with a server certificate (leaf and intermediate), its key, the demo root as
    /// a client CA, and the key of another PKI.
    struct Dir(tempfile::TempDir);

    impl Dir {
        fn new() -> Dir {
            let dir = tempfile::tempdir().expect("temp dir");
            let pki = DemoPki::localhost();
            let write = |name: &str, text: &str| {
                std::fs::write(dir.path().join(name), text).expect("writing a test file")
            };
            write(
                "server.crt",
                &format!("{}{}", pki.leaf.pem, pki.intermediate_pem()),
            );
            write("server.key", pki.leaf_key_pem());
            write("ca.pem", pki.root_pem());
            let other = DemoPki::generate(&[]).expect("another PKI");
            write("other.key", other.leaf_key_pem());
            Dir(dir)
        }

        fn parse(&self, text: &str) -> Result<WebConfig, String> {
            WebConfig::parse(text, "web.yml", Some(self.0.path())).map_err(|e| e.to_string())
        }
    }

    const TLS: &str = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";

    #[test]
    fn empty_file_is_plain_http() {
        let dir = Dir::new();
        for text in ["", "# nothing yet\n", "---\n"] {
            let web = dir.parse(text).expect("valid");
            assert!(!web.tls_enabled());
            assert_eq!(web.basic_auth_users(), 0);
            assert_eq!(web.summary(), "plain HTTP, no basic auth");
        }
    }

    #[test]
    fn full_file_is_accepted() {
        let dir = Dir::new();
        let hash = bcrypt::hash("pw", 4).expect("hash");
        let text = format!(
            "{TLS}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  \
             client_allowed_sans: [prometheus.example]\n  min_version: TLS12\n  \
             max_version: TLS13\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, \
             TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305, TLS_AES_128_GCM_SHA256]\n  \
             curve_preferences: [X25519, CurveP256]\n  prefer_server_cipher_suites: false\n\
             http_server_config:\n  http2: true\n  headers:\n    \
             Strict-Transport-Security: max-age=31536000\n    X-Frame-Options: DENY\n    \
             X-XSS-Protection: \"\"\n\
             basic_auth_users:\n  alice: '{hash}'\n  bob: '{hash}'\n\
             rate_limit: {{interval: 100ms, burst: 20}}\n"
        );
        let web = dir.parse(&text).expect("valid");
        assert_eq!(
            web.summary(),
            "TLS (client certificates required, SANs prometheus.example), basic auth (2 users), \
             2 extra headers, rate limit 1 per 100ms (burst 20)"
        );
        let tls = web.tls.as_ref().expect("tls");
        assert!(!tls.config.ignore_client_order);
        assert_eq!(tls.config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        // The three TLS 1.3 suites, then the two TLS 1.2 ones named, in the order named.
        let suites: Vec<String> = tls
            .config
            .crypto_provider()
            .cipher_suites
            .iter()
            .map(|s| format!("{:?}", s.suite()))
            .collect();
        assert_eq!(suites.len(), 5, "{suites:?}");
        assert_eq!(suites[3], "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256");
        assert_eq!(suites[4], "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256");
        let groups: Vec<String> = tls
            .config
            .crypto_provider()
            .kx_groups
            .iter()
            .map(|g| format!("{:?}", g.name()))
            .collect();
        assert_eq!(groups, ["X25519", "secp256r1"]);
    }

    #[test]
    fn invalid_files_name_file_line_and_field() {
        let dir = Dir::new();
        let hash = bcrypt::hash("pw", 4).expect("hash");
        let cases: &[(String, &str)] = &[
            (
                "tls_server_config:\n  cert_fil: server.crt\n".into(),
                "web.yml:2: tls_server_config.cert_fil: unknown key \"cert_fil\", expected one of \
                 cert, key, client_ca, cert_file, key_file, client_auth_type, client_ca_file, \
                 client_allowed_sans, min_version, max_version, cipher_suites, \
                 prefer_server_cipher_suites, curve_preferences",
            ),
            (
                "tls_config: {}\n".into(),
                "web.yml:1: tls_config: unknown key \"tls_config\", expected one of tls_server_config, \
                 http_server_config, basic_auth_users, rate_limit",
            ),
            (
                "tls_server_config:\n  cert_file: server.crt\n".into(),
                "web.yml:2: tls_server_config: missing key_file (or key)",
            ),
            (
                "tls_server_config:\n  cert_file: missing.crt\n  key_file: server.key\n".into(),
                "web.yml:2: tls_server_config.cert_file: cannot read ",
            ),
            (
                "tls_server_config:\n  cert_file: server.crt\n  cert: x\n  key_file: server.key\n"
                    .into(),
                "web.yml:3: tls_server_config.cert: give cert or cert_file, not both",
            ),
            (
                "tls_server_config:\n  cert_file: server.key\n  key_file: server.key\n".into(),
                "web.yml:2: tls_server_config.cert_file: ",
            ),
            (
                "tls_server_config:\n  cert_file: server.crt\n  key_file: other.key\n".into(),
                "web.yml:2: tls_server_config.cert_file: the key (",
            ),
            (
                format!("{TLS}  client_auth_type: RequireAndVerifyClientCert\n"),
                "web.yml:4: tls_server_config.client_auth_type: RequireAndVerifyClientCert \
                 needs client_ca_file (or client_ca) to verify against",
            ),
            (
                format!("{TLS}  client_auth_type: RequestClientCert\n  client_ca_file: ca.pem\n"),
                "web.yml:4: tls_server_config.client_auth_type: RequestClientCert is not \
                 supported: it accepts client certificates that nobody verified",
            ),
            (
                format!("{TLS}  client_auth_type: Maybe\n"),
                "web.yml:4: tls_server_config.client_auth_type: unknown variant \"Maybe\", \
                 expected one of NoClientCert, RequestClientCert",
            ),
            (
                format!("{TLS}  client_ca_file: ca.pem\n"),
                "web.yml:4: tls_server_config.client_auth_type: a client CA is configured \
                 without a client auth policy",
            ),
            (
                format!(
                    "{TLS}  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.pem\n  \
                     client_allowed_sans: [a]\n"
                ),
                "web.yml:6: tls_server_config.client_allowed_sans: needs client_auth_type \
                 RequireAndVerifyClientCert",
            ),
            (
                format!("{TLS}  min_version: TLS11\n"),
                "web.yml:4: tls_server_config.min_version: TLS11 is not supported (rustls \
                 implements TLS 1.2 and 1.3): use TLS12 or TLS13",
            ),
            (
                format!("{TLS}  min_version: TLS14\n"),
                "web.yml:4: tls_server_config.min_version: unknown variant \"TLS14\", expected \
                 one of TLS10, TLS11, TLS12, TLS13",
            ),
            (
                format!("{TLS}  min_version: TLS13\n  max_version: TLS12\n"),
                "web.yml:5: tls_server_config.max_version: TLS12 is below min_version TLS13",
            ),
            (
                format!("{TLS}  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n"),
                "web.yml:4: tls_server_config.cipher_suites[0]: unknown or unavailable cipher \
                 suite \"TLS_RSA_WITH_RC4_128_SHA\"; available: ",
            ),
            (
                format!("{TLS}  curve_preferences: [X25519, CurveP521]\n"),
                "web.yml:4: tls_server_config.curve_preferences[1]: unknown or unavailable \
                 curve \"CurveP521\"; available: X25519, CurveP256, CurveP384",
            ),
            (
                format!("{TLS}  prefer_server_cipher_suites: yes\n"),
                "web.yml:4: tls_server_config.prefer_server_cipher_suites: ",
            ),
            (
                "http_server_config:\n  http3: true\n".into(),
                "web.yml:2: http_server_config.http3: unknown key \"http3\", expected one of http2, \
                 headers",
            ),
            (
                "http_server_config:\n  headers:\n    X-Frame-Options: allow\n".into(),
                "web.yml:3: http_server_config.headers.X-Frame-Options: \"allow\" is not one of \
                 deny, sameorigin",
            ),
            (
                "http_server_config:\n  headers:\n    X-Custom: a\n".into(),
                "web.yml:3: http_server_config.headers.X-Custom: not a header that can be set; \
                 one of Content-Security-Policy, X-Frame-Options",
            ),
            (
                "basic_auth_users:\n  alice: secret\n".into(),
                "web.yml:2: basic_auth_users.alice: not a bcrypt hash (",
            ),
            (
                format!("basic_auth_users:\n  'a:b': '{hash}'\n"),
                "web.yml:2: basic_auth_users.a:b: a user name cannot contain ':'",
            ),
            (
                "basic_auth_users:\n  value: [1]\n".into(),
                "web.yml:2: basic_auth_users.value: ",
            ),
            (
                "rate_limit: {interval: 1s, burst: 0}\n".into(),
                "web.yml:1: rate_limit.burst: must be at least 1 (0 would refuse every request)",
            ),
            (
                "rate_limit: {interval: soon, burst: 1}\n".into(),
                "web.yml:1: rate_limit.interval: invalid duration \"soon\"",
            ),
        ];
        let mut wrong = Vec::new();
        for (text, expected) in cases {
            match dir.parse(text) {
                Ok(_) => wrong.push(format!("accepted:\n{text}")),
                Err(message) if message.starts_with(expected) => {
                    if std::env::var_os("SHOW_WEB_CONFIG_ERRORS").is_some() {
                        eprintln!("{message}");
                    }
                }
                Err(message) => wrong.push(format!(
                    "file:\n{text}\nexpected: {expected}\n     got: {message}"
                )),
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
    }

    #[test]
    fn every_problem_is_reported() {
        let dir = Dir::new();
        let text = "tls_server_config:\n  cert_file: server.crt\n  min_version: TLS10\n\
                    basic_auth_users:\n  alice: nope\n";
        let message = dir.parse(text).expect_err("invalid");
        let lines: Vec<&str> = message.lines().collect();
        assert_eq!(lines.len(), 3, "{message}");
        assert!(lines[0].starts_with("web.yml:2: tls_server_config: missing key_file"));
        assert!(lines[1].starts_with("web.yml:3: tls_server_config.min_version: TLS10"));
        assert!(lines[2].starts_with("web.yml:5: basic_auth_users.alice: not a bcrypt hash"));
    }

    #[test]
    fn relative_paths_are_taken_from_the_file_directory() {
        let dir = Dir::new();
        let path = dir.0.path().join("web.yml");
        std::fs::write(&path, TLS).expect("write");
        let web = WebConfig::load(&path).expect("valid");
        assert!(web.tls_enabled());
        let missing = WebConfig::load(&dir.0.path().join("absent.yml")).expect_err("missing");
        assert!(
            missing.to_string().contains("absent.yml: cannot read: "),
            "{missing}"
        );
    }

    fn basic(user: &str, password: &str) -> HeaderValue {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderValue::from_str(&format!("Basic {encoded}")).expect("header")
    }

    #[test]
    fn basic_credentials_parse() {
        assert_eq!(
            parse_basic(&basic("alice", "pa:ss")),
            Some(("alice".to_string(), b"pa:ss".to_vec()))
        );
        let lower = HeaderValue::from_static("basic YWxpY2U6cHc=");
        assert_eq!(
            parse_basic(&lower),
            Some(("alice".to_string(), b"pw".to_vec()))
        );
        for bad in [
            "Bearer YWxpY2U6cHc=",
            "Basic !!!",
            "Basic YWxpY2U=",
            "Basic",
        ] {
            assert_eq!(parse_basic(&HeaderValue::from_static(bad)), None, "{bad}");
        }
        let huge = format!("Basic {}", "A".repeat(MAX_CREDENTIAL_BYTES + 4));
        assert_eq!(
            parse_basic(&HeaderValue::from_str(&huge).expect("header")),
            None
        );
    }

    #[tokio::test]
    async fn basic_auth_checks_and_remembers_successes_only() {
        let hash = bcrypt::hash("right", 4).expect("hash");
        let users = HashMap::from([("alice".to_string(), hash.clone())]);
        let auth = BasicAuth::new(users).expect("users");
        assert!(!auth.check(None).await);
        assert!(!auth.check(Some(&basic("alice", "wrong"))).await);
        assert!(!auth.check(Some(&basic("mallory", "right"))).await);
        assert!(auth.lock_verified().is_empty());
        assert!(auth.check(Some(&basic("alice", "right"))).await);
        assert_eq!(auth.lock_verified().len(), 1);
        assert!(auth
            .lock_verified()
            .contains(&verified_key("alice", &hash, b"right")));
        // Served from memory: still exactly one entry.
        assert!(auth.check(Some(&basic("alice", "right"))).await);
        assert_eq!(auth.lock_verified().len(), 1);
        // No users: no authentication at all.
        assert!(BasicAuth::new(HashMap::new()).is_none());
    }

    #[test]
    fn verified_keys_keep_their_parts_apart() {
        assert_ne!(verified_key("ab", "h", b"c"), verified_key("a", "h", b"bc"));
    }

    #[test]
    fn rate_limit_allows_the_burst_then_one_per_interval() {
        let limiter = RateLimiter::new(Duration::from_secs(3600), 2);
        assert!(limiter.allow());
        assert!(limiter.allow());
        assert!(!limiter.allow());
        let fast = RateLimiter::new(Duration::from_millis(10), 1);
        assert!(fast.allow());
        assert!(!fast.allow());
        std::thread::sleep(Duration::from_millis(25));
        assert!(fast.allow());
    }

    #[test]
    fn a_replaced_certificate_is_picked_up_and_a_broken_one_is_not() {
        let dir = Dir::new();
        let web = dir.parse(TLS).expect("valid");
        let server_cert = &web.tls.as_ref().expect("tls").server_cert;
        let first = DemoPki::localhost();
        assert_eq!(server_cert.current().cert[0], first.leaf.der);

        let next = DemoPki::generate(&["rotated.example"]).expect("PKI");
        std::fs::write(dir.0.path().join("server.crt"), &next.leaf.pem).expect("write");
        std::fs::write(dir.0.path().join("server.key"), next.leaf_key_pem()).expect("write");
        // Files are looked at no more than once per CERT_CHECK_INTERVAL.
        assert_eq!(server_cert.current().cert[0], first.leaf.der);
        std::thread::sleep(CERT_CHECK_INTERVAL + Duration::from_millis(100));
        assert_eq!(server_cert.current().cert[0], next.leaf.der);

        // A key that does not match: the rotated pair stays in service.
        std::fs::write(dir.0.path().join("server.key"), first.leaf_key_pem()).expect("write");
        std::thread::sleep(CERT_CHECK_INTERVAL + Duration::from_millis(100));
        assert_eq!(server_cert.current().cert[0], next.leaf.der);
    }

    #[test]
    fn sans_compare_ip_addresses_as_addresses() {
        assert!(san_matches("::1", "0:0:0:0:0:0:0:1"));
        assert!(san_matches("prometheus.example", "prometheus.example"));
        assert!(!san_matches(
            "prometheus.example",
            "Prometheus.example.evil"
        ));
        let pki = DemoPki::localhost();
        let sans = cert_sans(pki.leaf.der.as_ref());
        assert_eq!(sans, ["localhost", "127.0.0.1", "::1"]);
    }
}
