//! A local OAuth 2.0 token endpoint: the client-credentials grant (RFC 6749 §4.4, errors as in
//! §5.2) and token introspection (RFC 7662), over HTTPS with a [`DemoPki`] certificate or over
//! plain HTTP on loopback.
//!
//! It stands in for Microsoft's `login.microsoftonline.com/TENANT/oauth2/v2.0/token` in tests,
//! the `demo` command and benchmarks. The tokens it issues go into a [`BearerTokens`] registry;
//! hand the same registry to a [`DemoServer`](super::DemoServer) and the SMTP server accepts them
//! for XOAUTH2 and OAUTHBEARER, for as long as `expires_in` promised. Introspection answers from
//! the same registry, so a real Dovecot (`passdb { driver = oauth2 }` with
//! `introspection_mode = post`) can check them too.
//!
//! Tests steer it while it runs: how long tokens live ([`TokenEndpoint::set_expires_in`]), and
//! whether it is up, answering every request with an HTTP error, or not listening at all
//! ([`TokenEndpoint::set_mode`]). It counts the requests it gets.

use crate::demo::bearer::BearerTokens;
use crate::demo::pki::{DemoPki, Sent};
use crate::secret::Secret;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

/// The path of the token endpoint.
pub const TOKEN_PATH: &str = "/token";
/// The path of the introspection endpoint.
pub const INTROSPECTION_PATH: &str = "/introspect";
/// The largest request body read; a form with a client secret and a scope is far smaller.
const MAX_BODY: usize = 16 * 1024;
/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything about a [`TokenEndpoint`]. `Default`: HTTPS with the shared localhost PKI on
/// 127.0.0.1, client `smtp-prober-demo` with secret `demo-client-secret`, any scope, tokens for
/// user `probe` living an hour.
#[derive(Clone, Debug)]
pub struct TokenEndpointConfig {
    /// Where to listen; default 127.0.0.1 on a free port.
    pub listen: SocketAddr,
    /// Serve HTTPS with this PKI's leaf (sent with its intermediate); `None` serves plain HTTP,
    /// for a local introspection client.
    pub pki: Option<Arc<DemoPki>>,
    /// The client id that is accepted.
    pub client_id: String,
    /// The client secret that is accepted.
    pub client_secret: Secret,
    /// The scope a request must ask for; `None` accepts any.
    pub scope: Option<String>,
    /// The user (mailbox) issued tokens are valid for.
    pub user: String,
    /// Token lifetime in seconds, as sent in `expires_in` and enforced by the registry.
    pub expires_in: u64,
    /// Where issued tokens go; share it with the SMTP server.
    pub tokens: BearerTokens,
}

impl Default for TokenEndpointConfig {
    fn default() -> Self {
        TokenEndpointConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            pki: Some(DemoPki::localhost()),
            client_id: "smtp-prober-demo".into(),
            client_secret: Secret::new("demo-client-secret"),
            scope: None,
            user: "probe".into(),
            expires_in: 3600,
            tokens: BearerTokens::new(),
        }
    }
}

/// How the endpoint behaves right now.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum EndpointMode {
    /// Issues tokens.
    #[default]
    Up,
    /// Answers every token request with this HTTP status and an OAuth error body (a 500 from
    /// an identity provider having a bad day). The request is still counted.
    Failing(u16),
    /// Not listening: connections are refused.
    Refusing,
}

/// State the connections share.
struct State {
    config: TokenEndpointConfig,
    expires_in: AtomicU64,
    mode: Mutex<EndpointMode>,
    requests: AtomicU64,
    issued: AtomicU64,
    introspections: AtomicU64,
    last_token: Mutex<Option<Secret>>,
}

impl State {
    fn mode(&self) -> EndpointMode {
        *self.mode.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running token endpoint; dropping it (or [`TokenEndpoint::shutdown`]) stops it.
pub struct TokenEndpoint {
    addr: SocketAddr,
    tls: bool,
    acceptor: Option<TlsAcceptor>,
    state: Arc<State>,
    /// The accept loop; `None` while [`EndpointMode::Refusing`].
    task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for TokenEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenEndpoint")
            .field("url", &self.url())
            .finish_non_exhaustive()
    }
}

impl TokenEndpoint {
    /// Binds `config.listen` and starts serving on the current tokio runtime.
    pub async fn start(config: TokenEndpointConfig) -> io::Result<TokenEndpoint> {
        let acceptor = match &config.pki {
            Some(pki) => Some(tls_acceptor(pki)?),
            None => None,
        };
        let listener = bind(config.listen)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            expires_in: AtomicU64::new(config.expires_in),
            config,
            mode: Mutex::new(EndpointMode::Up),
            requests: AtomicU64::new(0),
            issued: AtomicU64::new(0),
            introspections: AtomicU64::new(0),
            last_token: Mutex::new(None),
        });
        let task = tokio::spawn(accept_loop(listener, acceptor.clone(), Arc::clone(&state)));
        Ok(TokenEndpoint {
            addr,
            tls: acceptor.is_some(),
            acceptor,
            state,
            task: Mutex::new(Some(task)),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The token endpoint URL, such as `https://127.0.0.1:40123/token`.
    pub fn url(&self) -> String {
        self.url_of(TOKEN_PATH)
    }

    /// The introspection endpoint URL (RFC 7662).
    pub fn introspection_url(&self) -> String {
        self.url_of(INTROSPECTION_PATH)
    }

    fn url_of(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// The registry issued tokens go to.
    pub fn tokens(&self) -> &BearerTokens {
        &self.state.config.tokens
    }

    /// How many token requests it received, whatever it answered.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }

    /// How many tokens it issued.
    pub fn issued(&self) -> u64 {
        self.state.issued.load(Ordering::Relaxed)
    }

    /// How many introspection requests it received.
    pub fn introspections(&self) -> u64 {
        self.state.introspections.load(Ordering::Relaxed)
    }

    /// The last token issued (a test revokes it, or hands it out as a static bearer token).
    pub fn last_token(&self) -> Option<Secret> {
        self.state
            .last_token
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sets the lifetime of tokens issued from now on, in seconds.
    pub fn set_expires_in(&self, seconds: u64) {
        self.state.expires_in.store(seconds, Ordering::Relaxed);
    }

    /// Switches the behaviour. Going to [`EndpointMode::Refusing`] closes the port (when this
    /// returns, connections are refused); leaving it binds the same address again.
    pub async fn set_mode(&self, mode: EndpointMode) -> io::Result<()> {
        let running = self.take_task();
        *self.state.mode.lock().unwrap_or_else(|e| e.into_inner()) = mode;
        match (mode, running) {
            (EndpointMode::Refusing, Some(task)) => {
                task.abort();
                // Waiting for the cancelled task makes sure the listener is dropped.
                let _ = task.await;
            }
            (EndpointMode::Refusing, None) => {}
            (_, Some(task)) => self.put_task(task),
            (_, None) => {
                let listener = bind(self.addr)?;
                let task = tokio::spawn(accept_loop(
                    listener,
                    self.acceptor.clone(),
                    Arc::clone(&self.state),
                ));
                self.put_task(task);
            }
        }
        Ok(())
    }

    fn take_task(&self) -> Option<JoinHandle<()>> {
        self.task.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn put_task(&self, task: JoinHandle<()>) {
        *self.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
    }

    /// Stops listening and ends every connection; when it returns, the port is closed.
    pub async fn shutdown(self) {
        if let Some(task) = self.take_task() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for TokenEndpoint {
    fn drop(&mut self) {
        if let Some(task) = self.take_task() {
            task.abort();
        }
    }
}

/// A listener with SO_REUSEADDR, so that the port can be bound again after
/// [`EndpointMode::Refusing`] while old connections linger in TIME_WAIT.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(128)
}

fn tls_acceptor(pki: &DemoPki) -> io::Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| {
            b.with_no_client_auth()
                .with_single_cert(pki.chain(&Sent::Full), pki.leaf_key())
        })
        .map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("token endpoint TLS: {e}"),
            )
        })?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(tls)))
}

/// Accepts connections until cancelled; connections live in a `JoinSet` owned by this task, so
/// cancelling it ends them all.
async fn accept_loop(listener: TcpListener, acceptor: Option<TlsAcceptor>, state: Arc<State>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _peer)) => {
                    let _ = tcp.set_nodelay(true);
                    let state = Arc::clone(&state);
                    let acceptor = acceptor.clone();
                    connections.spawn(async move {
                        match acceptor {
                            Some(acceptor) => {
                                let handshake =
                                    tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
                                if let Ok(Ok(tls)) = handshake.await {
                                    serve(tls, state).await;
                                }
                            }
                            None => serve(tcp, state).await,
                        }
                    });
                }
                Err(err) => {
                    tracing::debug!(%err, "token endpoint accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Serves HTTP/1.1 on one connection.
async fn serve<S>(io: S, state: Arc<State>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let state = Arc::clone(&state);
        async move { Ok::<_, std::convert::Infallible>(handle(request, &state).await) }
    });
    if let Err(err) = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await
    {
        tracing::trace!(%err, "token endpoint connection ended");
    }
}

async fn handle(request: Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_string();
    let post = request.method() == Method::POST;
    match path.as_str() {
        TOKEN_PATH if post => {
            state.requests.fetch_add(1, Ordering::Relaxed);
            if let EndpointMode::Failing(code) = state.mode() {
                let status =
                    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                return oauth_error(
                    status,
                    "temporarily_unavailable",
                    "the demo token endpoint is switched to fail",
                );
            }
            match read_form(request).await {
                Ok(form) => grant(&form, state),
                Err(response) => response,
            }
        }
        INTROSPECTION_PATH if post => {
            state.introspections.fetch_add(1, Ordering::Relaxed);
            match read_form(request).await {
                Ok(form) => introspect(&form, state),
                Err(response) => response,
            }
        }
        TOKEN_PATH | INTROSPECTION_PATH => oauth_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            "use POST",
        ),
        _ => oauth_error(StatusCode::NOT_FOUND, "invalid_request", "no such endpoint"),
    }
}

/// A form body's fields, in order.
type Form = Vec<(String, String)>;

fn field<'a>(form: &'a Form, name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// Reads an `application/x-www-form-urlencoded` body of bounded size.
async fn read_form(request: Request<Incoming>) -> Result<Form, Response<Full<Bytes>>> {
    let form_type = request
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form_type {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let body = Limited::new(request.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|_| {
            oauth_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "the body is too large",
            )
        })?
        .to_bytes();
    serde_urlencoded::from_bytes(&body).map_err(|_| {
        oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body is not a form",
        )
    })
}

/// The client-credentials grant (RFC 6749 §4.4.2, §5.1, §5.2).
fn grant(form: &Form, state: &State) -> Response<Full<Bytes>> {
    let config = &state.config;
    match field(form, "grant_type") {
        Some("client_credentials") => {}
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only client_credentials is supported",
            )
        }
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is missing",
            )
        }
    }
    let client_ok = field(form, "client_id") == Some(config.client_id.as_str())
        && field(form, "client_secret") == Some(config.client_secret.expose());
    if !client_ok {
        // Like Microsoft's identity platform: a wrong id or secret is a 401.
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed: unknown client or wrong secret",
        );
    }
    if let Some(scope) = &config.scope {
        if field(form, "scope") != Some(scope.as_str()) {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                "the requested scope is not granted to this client",
            );
        }
    }
    let token = Secret::new(format!(
        "demo-at-{}",
        hex::encode(rand::random::<[u8; 24]>())
    ));
    let expires_in = state.expires_in.load(Ordering::Relaxed);
    config
        .tokens
        .insert_expiring(config.user.clone(), &token, Duration::from_secs(expires_in));
    *state.last_token.lock().unwrap_or_else(|e| e.into_inner()) = Some(token.clone());
    state.issued.fetch_add(1, Ordering::Relaxed);
    json(
        StatusCode::OK,
        serde_json::json!({
            "token_type": "Bearer",
            "expires_in": expires_in,
            "access_token": token.expose(),
        }),
    )
}

/// Token introspection (RFC 7662 §2.2): active tokens name their user in `sub`, `username`
/// and `email` (Dovecot's default `username_attribute`).
fn introspect(form: &Form, state: &State) -> Response<Full<Bytes>> {
    let Some(token) = field(form, "token") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "token is missing",
        );
    };
    let body = match state.config.tokens.user_of(token) {
        Some(user) => serde_json::json!({
            "active": true,
            "token_type": "Bearer",
            "sub": user,
            "username": user,
            "email": user,
        }),
        None => serde_json::json!({"active": false}),
    };
    json(StatusCode::OK, body)
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response<Full<Bytes>> {
    json(
        status,
        serde_json::json!({"error": error, "error_description": description}),
    )
}

fn json(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    // RFC 6749 §5.1: token responses must not be cached.
    headers.insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One HTTP/1.1 request over plain TCP; the status and the body as JSON.
    async fn request(
        endpoint: &TokenEndpoint,
        method: &str,
        path: &str,
        content_type: &str,
        body: &str,
    ) -> (u16, serde_json::Value) {
        let mut tcp = tokio::net::TcpStream::connect(endpoint.addr())
            .await
            .unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            endpoint.addr(),
            body.len()
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        tcp.write_all(body.as_bytes()).await.unwrap();
        let mut response = String::new();
        tokio::time::timeout(Duration::from_secs(5), tcp.read_to_string(&mut response))
            .await
            .unwrap()
            .unwrap();
        let status = response
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .unwrap_or_default();
        let (_, body) = response.split_once("\r\n\r\n").unwrap_or_default();
        (status, serde_json::from_str(body).unwrap_or_default())
    }

    const FORM: &str = "application/x-www-form-urlencoded";

    async fn plain_endpoint() -> TokenEndpoint {
        TokenEndpoint::start(TokenEndpointConfig {
            pki: None,
            scope: Some("smtp.send".into()),
            expires_in: 120,
            ..TokenEndpointConfig::default()
        })
        .await
        .unwrap()
    }

    fn grant_form(secret: &str, scope: &str) -> String {
        format!(
            "grant_type=client_credentials&client_id=smtp-prober-demo&client_secret={secret}\
             &scope={scope}"
        )
    }

    #[tokio::test]
    async fn issues_a_bearer_token_into_the_registry() {
        let endpoint = plain_endpoint().await;
        assert!(endpoint.url().starts_with("http://127.0.0.1:"));
        let (status, body) = request(
            &endpoint,
            "POST",
            TOKEN_PATH,
            FORM,
            &grant_form("demo-client-secret", "smtp.send"),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 120);
        let token = body["access_token"].as_str().unwrap();
        assert_eq!(
            Some(token),
            endpoint.last_token().as_ref().map(Secret::expose)
        );
        assert_eq!(endpoint.tokens().user_of(token).as_deref(), Some("probe"));
        assert_eq!((endpoint.requests(), endpoint.issued()), (1, 1));

        // RFC 7662 introspection answers from the same registry.
        let (status, body) = request(
            &endpoint,
            "POST",
            INTROSPECTION_PATH,
            FORM,
            &format!("token={token}"),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(body["active"], true);
        assert_eq!(body["username"], "probe");
        let (_, body) = request(&endpoint, "POST", INTROSPECTION_PATH, FORM, "token=nope").await;
        assert_eq!(body, serde_json::json!({"active": false}));
        assert_eq!(endpoint.introspections(), 2);
    }

    #[tokio::test]
    async fn refuses_bad_requests_with_oauth_errors() {
        let endpoint = plain_endpoint().await;
        let cases = [
            (
                "POST",
                TOKEN_PATH,
                FORM,
                grant_form("wrong", "smtp.send"),
                401,
                "invalid_client",
            ),
            (
                "POST",
                TOKEN_PATH,
                FORM,
                grant_form("demo-client-secret", "other"),
                400,
                "invalid_scope",
            ),
            (
                "POST",
                TOKEN_PATH,
                FORM,
                "grant_type=password".to_string(),
                400,
                "unsupported_grant_type",
            ),
            (
                "POST",
                TOKEN_PATH,
                FORM,
                "client_id=x".to_string(),
                400,
                "invalid_request",
            ),
            (
                "POST",
                TOKEN_PATH,
                "application/json",
                "{}".to_string(),
                400,
                "invalid_request",
            ),
            (
                "GET",
                TOKEN_PATH,
                FORM,
                String::new(),
                405,
                "invalid_request",
            ),
            (
                "POST",
                "/elsewhere",
                FORM,
                String::new(),
                404,
                "invalid_request",
            ),
        ];
        for (method, path, content_type, body, status, error) in cases {
            let (got, json) = request(&endpoint, method, path, content_type, &body).await;
            assert_eq!(
                (got, json["error"].as_str()),
                (status, Some(error)),
                "{method} {path} {body}"
            );
        }
        assert_eq!(endpoint.issued(), 0);
        assert!(endpoint.tokens().is_empty());
        // Every POST to the token path counts, refused or not.
        assert_eq!(endpoint.requests(), 5);
    }

    #[tokio::test]
    async fn failing_and_refusing_modes() {
        let endpoint = plain_endpoint().await;
        endpoint.set_mode(EndpointMode::Failing(503)).await.unwrap();
        let form = grant_form("demo-client-secret", "smtp.send");
        let (status, body) = request(&endpoint, "POST", TOKEN_PATH, FORM, &form).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (503, Some("temporarily_unavailable"))
        );

        endpoint.set_mode(EndpointMode::Refusing).await.unwrap();
        let refused = tokio::net::TcpStream::connect(endpoint.addr()).await;
        assert_eq!(
            refused.map_err(|e| e.kind()).err(),
            Some(io::ErrorKind::ConnectionRefused)
        );

        endpoint.set_mode(EndpointMode::Up).await.unwrap();
        let (status, _) = request(&endpoint, "POST", TOKEN_PATH, FORM, &form).await;
        assert_eq!(status, 200);
        assert_eq!((endpoint.requests(), endpoint.issued()), (2, 1));
    }
}
