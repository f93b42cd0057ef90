//! The HTTP server (DESIGN §2, §8): `/probe` (one probe per request, blackbox style),
//! `/metrics` (scheduled results, histograms, self and process metrics), `/` (status page),
//! `/logs`, `/config` (redacted), `/-/healthy`, `/-/ready`, `/-/reload` (POST).
//!
//! Handlers are thin: the probe engine does the work, [`Exporter`] holds the state, and
//! [`crate::exposition`] keeps `/metrics` a matter of copying pre-rendered text.

mod server;
mod status;
pub(crate) mod web_config;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use regex::Regex;

use crate::exporter::{Exporter, Reloaded};
use crate::exposition::Sink;
use crate::networks::NetworkPolicy;
use crate::probe::target::{parse_target, Target};
use crate::probe::Budget;
use crate::report;
pub(crate) use server::{open_files_limit, serve, ServerLimits};

/// The header Prometheus sends with its scrape timeout.
pub(crate) const SCRAPE_TIMEOUT_HEADER: &str = "X-Prometheus-Scrape-Timeout-Seconds";

/// Content type of the Prometheus text exposition format.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";

/// How `/probe` treats requests.
#[derive(Clone, Debug)]
pub(crate) struct ProbeSettings {
    /// Subtracted from the scrape timeout header so the answer arrives before Prometheus gives up.
    pub(crate) timeout_offset: Duration,
    /// When set, only targets this regex matches in full may be probed (SSRF guard).
    pub(crate) allowed_targets: Option<Regex>,
    /// Whether `/probe` may run modules that send a token mail.
    pub(crate) allow_send: bool,
    /// When set, where `/probe` may connect, checked on the resolved addresses (SSRF guard).
    pub(crate) networks: Option<Arc<NetworkPolicy>>,
    /// `/probe` requests running at once at most; more are answered 503.
    pub(crate) max_concurrency: usize,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        ProbeSettings {
            timeout_offset: Duration::from_millis(500),
            allowed_targets: None,
            allow_send: false,
            networks: None,
            max_concurrency: default_probe_concurrency(open_files_limit()),
        }
    }
}

/// An eighth of the file descriptors for `/probe` (each holds its HTTP connection, the SMTP
/// connection and at times a token request), between 4 and 4,096.
pub(crate) fn default_probe_concurrency(fd_limit: u64) -> usize {
    (fd_limit / 8).clamp(4, 4096) as usize
}

/// Compiles `--probe.allowed-targets`: the pattern must match the whole target string.
pub(crate) fn allowed_targets(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{pattern})$"))
}

/// What the handlers share.
#[derive(Clone)]
struct App {
    exporter: Arc<Exporter>,
    probe: Arc<ProbeSettings>,
    /// One permit per `/probe` request running.
    probe_slots: Arc<tokio::sync::Semaphore>,
}

/// The router with every endpoint.
pub(crate) fn router(exporter: Arc<Exporter>, probe: ProbeSettings) -> Router {
    let app = App {
        exporter,
        probe_slots: Arc::new(tokio::sync::Semaphore::new(probe.max_concurrency)),
        probe: Arc::new(probe),
    };
    Router::new()
        .route("/", get(status_page))
        .route("/target", get(target_page))
        .route("/probe", get(probe_handler))
        .route("/metrics", get(metrics))
        .route("/logs", get(logs))
        .route("/config", get(config))
        .route(
            "/-/healthy",
            get(|| async { text_response(StatusCode::OK, "Healthy\n") }),
        )
        .route("/-/ready", get(ready))
        .route("/-/reload", post(reload))
        .with_state(app)
}

/// Binds `--web.listen-address`. `:PORT` means every address: IPv6 and IPv4 where the host has
/// IPv6, IPv4 alone where it has not.
pub(crate) async fn bind(address: &str) -> std::io::Result<tokio::net::TcpListener> {
    match address.strip_prefix(':') {
        Some(port) => {
            let port: u16 = port.parse().map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("invalid port in listen address {address:?}"),
                )
            })?;
            match tokio::net::TcpListener::bind(SocketAddr::from((
                std::net::Ipv6Addr::UNSPECIFIED,
                port,
            )))
            .await
            {
                Ok(l) => Ok(l),
                Err(_) => {
                    tokio::net::TcpListener::bind(SocketAddr::from((
                        std::net::Ipv4Addr::UNSPECIFIED,
                        port,
                    )))
                    .await
                }
            }
        }
        None => tokio::net::TcpListener::bind(address).await,
    }
}

fn text_response(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(TEXT))],
        body.into(),
    )
        .into_response()
}

/// Why the scrape timeout header cannot be used (a 400 answer).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum ScrapeTimeoutError {
    /// Not visible ASCII.
    #[error("{SCRAPE_TIMEOUT_HEADER} is not text")]
    NotText,
    /// Not a positive number.
    #[error("{SCRAPE_TIMEOUT_HEADER}: {0:?} is not a positive number of seconds")]
    NotSeconds(String),
}

/// The probe deadline (DESIGN §2.1): the scrape timeout minus the offset, capped by the
/// module's timeout. Without the header, the module's timeout. An offset larger than the scrape
/// timeout leaves the scrape timeout itself.
fn probe_timeout(
    headers: &HeaderMap,
    offset: Duration,
    module_timeout: Duration,
) -> Result<Duration, ScrapeTimeoutError> {
    let Some(value) = headers.get(SCRAPE_TIMEOUT_HEADER) else {
        return Ok(module_timeout);
    };
    let text = value.to_str().map_err(|_| ScrapeTimeoutError::NotText)?;
    let scrape = text
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| ScrapeTimeoutError::NotSeconds(text.to_string()))?;
    let budget = scrape
        .checked_sub(offset)
        .filter(|d| !d.is_zero())
        .unwrap_or(scrape);
    Ok(budget.min(module_timeout))
}

async fn probe_handler(
    State(app): State<App>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let param = |name: &str| params.get(name).filter(|v| !v.is_empty());
    let Some(module_name) = param("module") else {
        return text_response(StatusCode::BAD_REQUEST, "module parameter is missing\n");
    };
    let Some(target_text) = param("target") else {
        return text_response(StatusCode::BAD_REQUEST, "target parameter is missing\n");
    };
    let loaded = app.exporter.loaded();
    let Some(prepared) = loaded.modules.get(module_name).cloned() else {
        return text_response(
            StatusCode::BAD_REQUEST,
            format!("unknown module {module_name:?}\n"),
        );
    };
    drop(loaded);
    if let Some(allowed) = &app.probe.allowed_targets {
        if !allowed.is_match(target_text) {
            return text_response(
                StatusCode::FORBIDDEN,
                format!("target {target_text:?} is not allowed by --probe.allowed-targets\n"),
            );
        }
    }
    if prepared.module.message.is_some() && !app.probe.allow_send {
        return text_response(
            StatusCode::FORBIDDEN,
            format!(
                "module {module_name:?} sends a token mail; /probe runs sending modules only \
                 with --probe.allow-send, since every request would send a mail (schedule it as \
                 a target instead)\n"
            ),
        );
    }
    let target = match parse_target(target_text, prepared.module.port) {
        Ok(t) => t,
        Err(why) => return text_response(StatusCode::BAD_REQUEST, format!("{why}\n")),
    };
    let timeout = match probe_timeout(&headers, app.probe.timeout_offset, prepared.module.timeout) {
        Ok(t) => t,
        Err(why) => return text_response(StatusCode::BAD_REQUEST, format!("{why}\n")),
    };
    // Full: answer at once rather than queue work the scrape will have given up on, and
    // rather than open sockets past the descriptor limit and blame the targets for it.
    let Ok(_slot) = app.probe_slots.clone().try_acquire_owned() else {
        return text_response(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "too many /probe requests at once: {} are running \
                 (--probe.max-concurrency); try again later\n",
                app.probe.max_concurrency
            ),
        );
    };
    let deadline = std::time::Instant::now() + timeout;
    if let Some(networks) = &app.probe.networks {
        if let Err(why) = check_networks(&target, networks, deadline).await {
            return text_response(StatusCode::FORBIDDEN, format!("{why}\n"));
        }
    }
    // The delivery check, too, must end before Prometheus gives up on the scrape.
    let budget = Budget::new(timeout)
        .capped(deadline)
        .within(app.probe.networks.clone());
    let outcome = app.exporter.probe(&prepared, &target, budget).await;
    tracing::debug!(
        target = %outcome.target,
        module = %outcome.module,
        success = outcome.success(),
        duration_seconds = outcome.duration.as_secs_f64(),
        "probe done"
    );
    let metrics = report::metrics::render(&outcome);
    if param("debug").is_some_and(|d| d == "true") {
        let body = format!(
            "Logs for the probe:\n{}\n\nMetrics that would have been returned:\n{}\n\
             Module configuration:\n{}",
            report::text::render(&outcome),
            metrics,
            crate::config::module_yaml(&prepared.module)
        );
        return text_response(StatusCode::OK, body);
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(METRICS_CONTENT_TYPE),
        )],
        metrics,
    )
        .into_response()
}

/// A `/probe` target that resolves to an address the network policy keeps probes from.
#[derive(Debug, thiserror::Error)]
#[error("target {target:?} is not allowed: {why}")]
struct TargetNotAllowed {
    target: String,
    why: crate::networks::Unreachable,
}

/// Checks every address `target` resolves to against `networks`, so that `/probe` answers 403
/// before probing; the session checks the address it connects to again (a name may resolve
/// differently a moment later).
async fn check_networks(
    target: &Target,
    networks: &NetworkPolicy,
    deadline: std::time::Instant,
) -> Result<(), TargetNotAllowed> {
    let host = target.host.as_str();
    let lookup = tokio::time::timeout_at(
        deadline.into(),
        tokio::net::lookup_host((host, target.port)),
    )
    .await;
    let Ok(Ok(addrs)) = lookup else {
        // Not resolvable now: the probe reports that as its own failure.
        return Ok(());
    };
    for addr in addrs {
        networks.check(addr.ip()).map_err(|why| TargetNotAllowed {
            target: target.to_string(),
            why,
        })?;
    }
    Ok(())
}

/// Size of the pieces `/metrics` is sent in.
const METRICS_PIECE: usize = 256 * 1024;

/// `/metrics` text on its way to the client: handed on in pieces as it is written, so that a
/// page of many megabytes (10,000 targets) is never held whole in memory.
struct Streamed {
    piece: Vec<u8>,
    tx: tokio::sync::mpsc::Sender<Bytes>,
    closed: bool,
}

/// Piece buffers that were sent, back from the HTTP layer once written: a scrape of 10,000
/// targets fills hundreds of pieces, and a fresh 256 KiB allocation for each costs page faults
/// and zeroing (a sixth of the page's CPU). A few are kept (4 queued, 1 being written, 1 being
/// filled), 1.5 MiB.
static SPARE_PIECES: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());
const SPARE_PIECES_KEPT: usize = 6;

/// A sent piece: returns its buffer to [`SPARE_PIECES`] when the HTTP layer drops it.
struct SentPiece(Vec<u8>);

impl AsRef<[u8]> for SentPiece {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for SentPiece {
    fn drop(&mut self) {
        let mut spare = SPARE_PIECES.lock().unwrap_or_else(|p| p.into_inner());
        if spare.len() < SPARE_PIECES_KEPT {
            let mut buffer = std::mem::take(&mut self.0);
            buffer.clear();
            spare.push(buffer);
        }
    }
}

/// An empty piece buffer: a spare one, or a new one.
fn piece_buffer() -> Vec<u8> {
    SPARE_PIECES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .pop()
        .unwrap_or_else(|| Vec::with_capacity(METRICS_PIECE))
}

impl Streamed {
    fn flush(&mut self) {
        if self.closed || self.piece.is_empty() {
            return;
        }
        let piece = std::mem::replace(&mut self.piece, piece_buffer());
        // Fails only when the client went away: stop sending.
        let piece = Bytes::from_owner(SentPiece(piece));
        self.closed = self.tx.blocking_send(piece).is_err();
    }

    /// Sends the piece first when `more` bytes would not fit in it: a piece is never
    /// reallocated (and copied) while it is written.
    fn room_for(&mut self, more: usize) {
        if self.piece.len() + more > METRICS_PIECE {
            self.flush();
        }
    }
}

impl Sink for Streamed {
    fn put(&mut self, text: &str) {
        if self.closed {
            return;
        }
        self.room_for(text.len());
        self.piece.extend_from_slice(text.as_bytes());
    }

    fn put_line(&mut self, name: &str, leading: &str, rest: &str) {
        if self.closed {
            return;
        }
        self.room_for(name.len() + leading.len() + rest.len());
        self.piece.extend_from_slice(name.as_bytes());
        self.piece.extend_from_slice(leading.as_bytes());
        self.piece.extend_from_slice(rest.as_bytes());
    }
}

async fn metrics(State(app): State<App>) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let exporter = app.exporter.clone();
    // Writing copies megabytes for thousands of targets: keep it off the async worker threads.
    tokio::task::spawn_blocking(move || {
        let mut out = Streamed {
            piece: piece_buffer(),
            tx,
            closed: false,
        };
        exporter.render_metrics(&mut out);
        out.flush();
    });
    let pieces = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|piece| (Ok::<_, std::convert::Infallible>(piece), rx))
    });
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(METRICS_CONTENT_TYPE),
        )],
        Body::from_stream(pieces),
    )
        .into_response()
}

async fn logs(State(app): State<App>, Query(params): Query<HashMap<String, String>>) -> Response {
    let Some(name) = params.get("target").filter(|n| !n.is_empty()) else {
        return text_response(StatusCode::BAD_REQUEST, "target parameter is missing\n");
    };
    let Some(target) = app.exporter.scheduler().target(name) else {
        return text_response(
            StatusCode::NOT_FOUND,
            format!("no scheduled target named {name:?}\n"),
        );
    };
    let logs = target.logs();
    if logs.is_empty() {
        return text_response(
            StatusCode::OK,
            format!("{name}: no probe has finished yet\n"),
        );
    }
    let mut body = String::with_capacity(logs.iter().map(|l| l.len() + 2).sum());
    for (i, entry) in logs.iter().enumerate() {
        if i > 0 {
            body.push_str("\n----------------------------------------\n\n");
        }
        body.push_str(entry);
    }
    text_response(StatusCode::OK, body)
}

async fn config(State(app): State<App>) -> Response {
    text_response(
        StatusCode::OK,
        app.exporter.loaded().config.redacted_yaml().to_string(),
    )
}

async fn ready(State(app): State<App>) -> Response {
    if app.exporter.ready() {
        text_response(StatusCode::OK, "Ready\n")
    } else {
        text_response(StatusCode::SERVICE_UNAVAILABLE, "Not ready\n")
    }
}

async fn reload(State(app): State<App>) -> Response {
    match app.exporter.reload().await {
        Ok(Reloaded::Unchanged) => text_response(StatusCode::OK, "configuration unchanged\n"),
        Ok(Reloaded::Applied(r)) => text_response(
            StatusCode::OK,
            format!(
                "configuration reloaded: {} targets added, {} changed, {} removed, {} unchanged\n",
                r.added, r.changed, r.removed, r.unchanged
            ),
        ),
        Err(e) => text_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reload failed, the running configuration is kept:\n{e}\n"),
        ),
    }
}

async fn status_page(State(app): State<App>) -> Response {
    let exporter = app.exporter.clone();
    html_page(move || Some(status::overview(&exporter)))
        .await
        .unwrap_or_else(|| text_response(StatusCode::INTERNAL_SERVER_ERROR, "no page\n"))
}

async fn target_page(
    State(app): State<App>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let Some(name) = params.get("name").filter(|n| !n.is_empty()).cloned() else {
        return text_response(StatusCode::BAD_REQUEST, "name parameter is missing\n");
    };
    let exporter = app.exporter.clone();
    let shown = name.clone();
    match html_page(move || status::target(&exporter, &name)).await {
        Some(response) => response,
        None => text_response(
            StatusCode::NOT_FOUND,
            format!("no scheduled target named {shown:?}\n"),
        ),
    }
}

/// A status page rendered off the async threads (thousands of targets take a moment).
async fn html_page<F>(render: F) -> Option<Response>
where
    F: FnOnce() -> Option<String> + Send + 'static,
{
    let body = match tokio::task::spawn_blocking(render).await {
        Ok(body) => body?,
        Err(_) => {
            return Some(text_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "status page failed\n",
            ))
        }
    };
    Some(
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, HeaderValue::from_static(HTML))],
            body,
        )
            .into_response(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            SCRAPE_TIMEOUT_HEADER,
            HeaderValue::from_str(v).expect("header"),
        );
        h
    }

    #[test]
    fn timeout_from_header_minus_offset_capped_by_module() {
        let half = Duration::from_millis(500);
        let module = Duration::from_secs(15);
        assert_eq!(probe_timeout(&HeaderMap::new(), half, module), Ok(module));
        assert_eq!(
            probe_timeout(&headers("10"), half, module),
            Ok(Duration::from_millis(9500))
        );
        assert_eq!(probe_timeout(&headers("60"), half, module), Ok(module));
        assert_eq!(
            probe_timeout(&headers("0.3"), half, module),
            Ok(Duration::from_millis(300))
        );
        assert!(probe_timeout(&headers("soon"), half, module).is_err());
        assert!(probe_timeout(&headers("-1"), half, module).is_err());
    }

    #[test]
    fn allowed_targets_match_in_full() {
        let re = allowed_targets(r"127\.0\.0\.1:\d+|localhost").expect("regex");
        assert!(re.is_match("127.0.0.1:2525"));
        assert!(re.is_match("localhost"));
        assert!(!re.is_match("localhost.evil.example"));
        assert!(!re.is_match("10.127.0.0.1:25"));
    }
}
