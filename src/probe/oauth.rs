//! OAuth 2.0 bearer tokens for SASL XOAUTH2 / OAUTHBEARER: the client-credentials grant
//! (RFC 6749 §4.4) against a token endpoint such as Microsoft's
//! `https://login.microsoftonline.com/TENANT/oauth2/v2.0/token`.
//!
//! One [`TokenSource`] per module, shared by all its probes: a token is fetched over HTTPS with
//! the module's trust settings (through our own TLS client, so a broken chain on the token
//! endpoint is reported like any other), cached until a minute before it expires, and dropped
//! when the mail server rejects it so the next attempt fetches a fresh one. Tokens and the client
//! secret are secrets: never logged, never in a transcript.

use std::time::{Duration, Instant, SystemTime};

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Bytes;
use tokio::net::TcpStream;
use tokio::time::timeout_at;

use super::module::OAuth2Settings;
use crate::secret::Secret;
use crate::smtp::reply::Reply;
use crate::smtp::transcript::Failure;
use crate::tls::{TlsClient, TlsSettings, TlsSetupError};
use crate::vocab::{Reason, StepName};

/// Tokens are refreshed this long before the endpoint says they expire.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);
/// The largest token response we read.
const MAX_RESPONSE: usize = 64 * 1024;

/// A record of one token fetch, for the transcript's `oauth_token` step.
#[derive(Clone, Debug)]
pub(crate) struct TokenFetch {
    /// When it began.
    pub(crate) began: Instant,
    /// How long it took.
    pub(crate) duration: Duration,
    /// The HTTP status, when a response came (kept as the step's reply code).
    pub(crate) status: Option<u16>,
    /// Why it failed.
    pub(crate) failure: Option<Failure>,
}

impl TokenFetch {
    /// The HTTP status as a reply, so the step shows its code like the SMTP steps do.
    pub(crate) fn as_reply(&self) -> Option<Reply> {
        self.status
            .filter(|s| (200..600).contains(s))
            .map(|code| Reply {
                code,
                enhanced: None,
                lines: vec![format!("HTTP {code}")],
            })
    }
}

struct Cached {
    token: Secret,
    refresh_at: Instant,
}

/// The token cache and fetcher of one module.
pub(crate) struct TokenSource {
    settings: OAuth2Settings,
    tls: TlsClient,
    cache: tokio::sync::Mutex<Option<Cached>>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("token_url", &self.settings.token_url)
            .finish()
    }
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    /// A number, or (older Azure AD v1 endpoints) a string of digits.
    expires_in: Option<serde_json::Value>,
    error: Option<String>,
    error_description: Option<String>,
}

impl TokenSource {
    /// Builds the source; its TLS client is built once, here.
    pub(crate) fn new(
        settings: OAuth2Settings,
        tls: &TlsSettings,
    ) -> Result<TokenSource, TlsSetupError> {
        Ok(TokenSource {
            settings,
            tls: TlsClient::new(tls)?,
            cache: tokio::sync::Mutex::new(None),
        })
    }

    /// A valid token: the cached one, or a fresh one fetched now (then `TokenFetch` says how
    /// that went). Probes that need a token at the same moment wait for one fetch.
    pub(crate) async fn token(&self, deadline: Instant) -> (Option<Secret>, Option<TokenFetch>) {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref() {
            if Instant::now() < c.refresh_at {
                return (Some(c.token.clone()), None);
            }
        }
        let began = Instant::now();
        match self.fetch(deadline).await {
            Ok((status, token, lifetime)) => {
                let refresh_at = began + lifetime.saturating_sub(EXPIRY_MARGIN);
                *cache = Some(Cached {
                    token: token.clone(),
                    refresh_at,
                });
                let fetch = TokenFetch {
                    began,
                    duration: began.elapsed(),
                    status: Some(status),
                    failure: None,
                };
                (Some(token), Some(fetch))
            }
            Err((status, detail)) => {
                *cache = None;
                let failure = Failure::new(StepName::OauthToken, Reason::OauthTokenFailed, detail);
                let fetch = TokenFetch {
                    began,
                    duration: began.elapsed(),
                    status,
                    failure: Some(failure),
                };
                (None, Some(fetch))
            }
        }
    }

    /// Forgets the cached token if it is still `rejected` (the server refused it). Probes that
    /// all had the same token refused at once thus cause one fetch: the first drops the token
    /// and fetches, the others find the fresh one.
    pub(crate) async fn invalidate_rejected(&self, rejected: &Secret) {
        let mut cache = self.cache.lock().await;
        if cache.as_ref().is_some_and(|c| c.token == *rejected) {
            *cache = None;
        }
    }

    async fn fetch(
        &self,
        deadline: Instant,
    ) -> Result<(u16, Secret, Duration), (Option<u16>, String)> {
        let url: hyper::Uri = self
            .settings
            .token_url
            .parse()
            .map_err(|e| (None, format!("token_url: {e}")))?;
        let host = url_host(&url);
        // Plain HTTP only to a token service on this machine (a local proxy or test double), as
        // the configuration allows: the client secret crosses no network in clear text.
        let tls = match url.scheme_str() {
            Some("https") => true,
            Some("http") if is_loopback(&host) => false,
            _ => {
                return Err((
                    None,
                    "token_url must be an https:// URL (http:// only on loopback)".into(),
                ))
            }
        };
        let port = url.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let work = async {
            let tcp = TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| {
                    (
                        None,
                        format!("connecting to the token endpoint {host}:{port}: {e}"),
                    )
                })?;
            let (status, body) = if tls {
                let (stream, report) = self
                    .tls
                    .handshake(tcp, &host, SystemTime::now())
                    .await
                    .map_err(|f| (None, format!("TLS to the token endpoint: {}", f.detail)))?;
                // The client secret goes to a verified endpoint only, even when the module
                // tolerates a broken chain on the mail server (insecure_skip_verify).
                if let Some(e) = &report.chain.error {
                    return Err((
                        None,
                        format!("token endpoint certificate: {} ({})", e.reason, e.detail),
                    ));
                }
                self.post(stream, &url, &host).await?
            } else {
                self.post(tcp, &url, &host).await?
            };
            parse_response(status, &body)
        };
        timeout_at(deadline.into(), work).await.unwrap_or_else(|_| {
            Err((
                None,
                "the token endpoint did not answer before the deadline".into(),
            ))
        })
    }

    /// Sends the client-credentials request over `io` and reads the response (bounded).
    async fn post<S>(
        &self,
        io: S,
        url: &hyper::Uri,
        host: &str,
    ) -> Result<(u16, Bytes), (Option<u16>, String)>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
                .await
                .map_err(|e| (None, format!("HTTP to the token endpoint: {e}")))?;
        tokio::spawn(conn);
        let form = serde_urlencoded::to_string([
            ("grant_type", "client_credentials"),
            ("client_id", self.settings.client_id.as_str()),
            ("client_secret", self.settings.client_secret.expose()),
            ("scope", self.settings.scope.as_str()),
        ])
        .map_err(|e| (None, format!("encoding the token request: {e}")))?;
        let authority = url
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_else(|| host.to_string());
        let request = hyper::Request::post(url.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
            .header(hyper::header::HOST, authority)
            .header(
                hyper::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(hyper::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| (None, format!("building the token request: {e}")))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| (None, format!("token request: {e}")))?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| (Some(status), format!("reading the token response: {e}")))?
            .to_bytes();
        Ok((status, body))
    }
}

/// The host of a URL, an IPv6 address without its brackets (as a connect takes it).
pub(crate) fn url_host(url: &hyper::Uri) -> String {
    url.host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

/// Whether a URL host names this machine.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The token, or the endpoint's error (RFC 6749 §5.1 and §5.2), from a response.
fn parse_response(
    status: u16,
    body: &[u8],
) -> Result<(u16, Secret, Duration), (Option<u16>, String)> {
    let parsed: TokenResponse = serde_json::from_slice(body).map_err(|e| {
        (
            Some(status),
            format!("token endpoint answered HTTP {status} with no JSON token response: {e}"),
        )
    })?;
    match parsed {
        TokenResponse {
            access_token: Some(token),
            expires_in,
            ..
        } if (200..300).contains(&status) && !token.is_empty() => Ok((
            status,
            Secret::new(token),
            Duration::from_secs(expires_in.as_ref().and_then(seconds).unwrap_or(3600)),
        )),
        TokenResponse {
            error,
            error_description,
            ..
        } => {
            // error and error_description are the endpoint's words about our request,
            // never the secret itself.
            let mut detail = format!("token endpoint answered HTTP {status}");
            if let Some(e) = error {
                detail.push_str(&format!(": {e}"));
            }
            if let Some(d) = error_description {
                let first_line = d.lines().next().unwrap_or_default();
                detail.push_str(&format!(
                    " ({})",
                    first_line.chars().take(200).collect::<String>()
                ));
            }
            Err((Some(status), detail))
        }
    }
}

/// `expires_in` as seconds, whether sent as a number or a string.
fn seconds(value: &serde_json::Value) -> Option<u64> {
    match value {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}
