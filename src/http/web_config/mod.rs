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

mod auth;
mod tls;

pub(crate) use tls::TlsServer;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue};
use axum::Router;
use serde::Deserialize;

use crate::config::raw::{At, HumanDuration};
use crate::config::yaml;
use crate::config::{ConfigError, Problem};
use crate::local_file::FileError;
use auth::{guard, BasicAuth, Gate, RateLimiter, BCRYPT_MAX_PASSWORD};
use tls::{client_verifier, load_certified_key, ClientVerify, PemOrigin, PemSource, ServerCert};

/// A web configuration file (or a PEM file it names) larger than this is refused.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

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
pub(crate) struct WebConfig {
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
    pub(crate) fn load(path: &Path) -> Result<WebConfig, ConfigError> {
        let file = path.display().to_string();
        let bytes = read_bounded(path).map_err(|why| ConfigError {
            file: file.clone(),
            problems: vec![Problem {
                line: None,
                column: None,
                field: String::new(),
                message: format!("cannot read: {why}"),
            }],
        })?;
        let text = String::from_utf8(bytes).map_err(|e| ConfigError {
            file: file.clone(),
            problems: vec![Problem {
                line: None,
                column: None,
                field: String::new(),
                message: format!("not UTF-8 text (at byte {})", e.utf8_error().valid_up_to()),
            }],
        })?;
        WebConfig::parse(&text, &file, path.parent())
    }

    /// Decodes and validates web configuration text; `file` names it in errors, `base_dir`
    /// resolves relative paths (the working directory when `None`).
    pub(crate) fn parse(
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
    pub(crate) fn tls_enabled(&self) -> bool {
        self.tls.is_some()
    }

    /// How many users basic authentication knows (0: no authentication).
    pub(crate) fn basic_auth_users(&self) -> usize {
        self.auth.as_ref().map_or(0, |a| a.users.len())
    }

    /// What a person should know about the file although it is valid, one sentence each, for
    /// `check-config` and the start-up log.
    pub(crate) fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.basic_auth_users() > 0 {
            out.push(format!(
                "basic_auth_users: bcrypt reads only the first {BCRYPT_MAX_PASSWORD} bytes of a \
                 password, and the hash does not tell how long the password was; a password of \
                 {BCRYPT_MAX_PASSWORD} bytes or more is refused at login (every password \
                 sharing those bytes would pass), so keep every password under \
                 {BCRYPT_MAX_PASSWORD} bytes"
            ));
        }
        out
    }

    /// One line saying what is in force, for `check-config` and the start-up log.
    pub(crate) fn summary(&self) -> String {
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
    pub(crate) fn protect(&self, router: Router) -> Router {
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

    /// The TLS side when the file configures TLS; `None` serves plain HTTP.
    pub(crate) fn tls_server(&self) -> Option<Arc<TlsServer>> {
        self.tls.clone()
    }
}

/// Reads a file the web configuration names, of at most [`MAX_FILE_BYTES`].
pub(super) fn read_bounded(path: &Path) -> Result<Vec<u8>, FileError> {
    crate::local_file::read(path, MAX_FILE_BYTES)
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
    yaml::decode(text, field_path)
}

/// A field path like `tls_server_config.min_version` from the tracked serde path. Located
/// values add a `value` key of their own, which is dropped, except as a user or header name.
fn field_path(path: &serde_path_to_error::Path) -> String {
    yaml::render_path(path.iter(), |so_far, key| {
        (so_far.is_empty() && key == "basic_auth_users") || key == "headers"
    })
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
            column: None,
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
        let (verify, allowed_sans) = self.client_auth(tls);
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
        provider.cipher_suites = suites.unwrap_or(provider.cipher_suites);
        provider.kx_groups = groups.unwrap_or(provider.kx_groups);
        let provider = Arc::new(provider);
        let certified = match load_certified_key(&cert, &key, &provider) {
            Ok(k) => k,
            Err(why) => {
                self.problem(cert.line, &cert.field, why.to_string());
                return None;
            }
        };
        let client_verifier = match (&verify, &client_ca) {
            (ClientVerify::None, _) | (_, None) => None,
            (_, Some(ca)) => match client_verifier(ca, verify, &allowed_sans, &provider) {
                Ok(v) => Some(v),
                Err(why) => {
                    self.problem(ca.line, &ca.field, why.to_string());
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

    /// `client_auth_type` and `client_allowed_sans`: how client certificates are verified, and
    /// the names one must carry. Policies that accept unverified certificates are refused.
    fn client_auth(&mut self, tls: &RawTlsServer) -> (ClientVerify, Vec<String>) {
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
        (verify, allowed_sans)
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

#[cfg(test)]
mod tests;
