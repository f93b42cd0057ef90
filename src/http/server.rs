//! The accept loop of the HTTP server: what a connection may cost us before and around the
//! router. A slow or hostile client holds at most one connection slot, for a bounded time:
//! - a cap on open connections ([`ServerLimits::max_connections`], sized from the file
//!   descriptor limit); when it is reached, new connections wait in the kernel's backlog instead
//!   of taking descriptors, and one client address may hold at most half of the slots (its
//!   further connections are answered 503 at once), so that a single flooding address leaves
//!   room for Prometheus and health checks;
//! - the request head must arrive within [`ServerLimits::header_timeout`] (hyper's header read
//!   timeout, which also closes a kept-alive connection that sends no new request: the idle
//!   timeout of HTTP/1.1 keep-alive);
//! - a response the client stops reading for [`ServerLimits::send_timeout`] ends the connection
//!   (a client that never reads `/metrics` must not hold its writer forever);
//! - TLS handshakes run inside the connection's slot, with their own timeout.
//!
//! The client's address reaches the router as [`ConnectInfo`], for the per-client rate limit.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tower::ServiceExt as _;

use super::web_config::WebConfig;

/// What one connection may cost.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServerLimits {
    /// Open connections at most (TLS handshakes included).
    pub(crate) max_connections: usize,
    /// Time to receive a request head, from the connection's start or the previous response.
    pub(crate) header_timeout: Duration,
    /// Time a response may wait for the client to read it.
    pub(crate) send_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: default_max_connections(open_files_limit()),
            header_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(30),
        }
    }
}

/// The soft limit on open file descriptors (`ulimit -n`), read from `/proc/self/limits`;
/// 1,024 (the usual default) where it cannot be read.
pub(crate) fn open_files_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("Max open files"))?;
            let soft = line["Max open files".len()..].split_whitespace().next()?;
            match soft {
                "unlimited" => Some(u64::MAX),
                n => n.parse().ok(),
            }
        })
        .unwrap_or(1024)
}

/// A quarter of the descriptors for HTTP connections (the rest for probes, scheduled and
/// `/probe`, and files), between 16 and 16,384.
pub(crate) fn default_max_connections(fd_limit: u64) -> usize {
    (fd_limit / 4).clamp(16, 16_384) as usize
}

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections of a client over its share being answered 503 at once; more are closed
/// without a word.
const MAX_REFUSALS: usize = 64;

/// Answers a connection the server will not serve with a plain 503 (HTTP/1.0 and 1.1 clients
/// read it; a TLS client sees a failed handshake), reading what the client already sent so
/// that closing does not reset the connection before the answer is read. A second at most.
async fn refuse(mut tcp: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        tcp.write_all(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
              Content-Length: 70\r\nConnection: close\r\n\r\n\
              too many connections from your address at once; try again in a moment\n",
        )
        .await?;
        tcp.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut read = 0;
        while read < 64 * 1024 {
            match tcp.read(&mut sink).await? {
                0 => break,
                n => read += n,
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// Serves `router` on `listener` (HTTPS when `web` configures TLS) until `shutdown` resolves,
/// then stops accepting and lets open requests finish for at most `grace`.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    web: &WebConfig,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let router = web.protect(router);
    let tls = web.tls_server();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let clients = Arc::new(Clients {
        open: Mutex::new(HashMap::new()),
        max_each: (limits.max_connections / 2).max(1),
    });
    let refusals = Arc::new(tokio::sync::Semaphore::new(MAX_REFUSALS));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
                    if !matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
                        // Out of file descriptors, most likely: give the system a moment.
                        tracing::error!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(client) = Clients::enter(&clients, peer.ip()) else {
            tracing::debug!(peer = %peer, "refusing a connection: the client holds half of the connection slots");
            // The connection slot goes back at once; the refusal has slots of its own.
            drop(slot);
            if let Ok(refusing) = refusals.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    let _refusing = refusing;
                    refuse(tcp).await;
                });
            }
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let router = router.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _held = (slot, client);
            match tls {
                None => serve_connection(tcp, peer, router, limits, watcher).await,
                Some(tls) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.handshake(tcp)).await {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, peer, router, limits, watcher).await
                        }
                        Ok(Err(why)) => {
                            tracing::debug!(peer = %peer, error = %why, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(peer = %peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!("requests still open after the grace period; closing them");
        }
    }
    Ok(())
}

/// One HTTP/1.1 connection, its requests carrying the client's address.
async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    router: Router,
    limits: ServerLimits,
    watcher: hyper_util::server::graceful::Watcher,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        router.clone().oneshot(request.map(axum::body::Body::new))
    });
    let io = TokioIo::new(SendTimeout::new(stream, limits.send_timeout));
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(io, service);
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!(peer = %peer, error = %e, "connection ended");
    }
}

/// Connections open per client address.
struct Clients {
    open: Mutex<HashMap<IpAddr, usize>>,
    max_each: usize,
}

/// One connection of a client, counted until dropped.
struct ClientSlot {
    clients: Arc<Clients>,
    ip: IpAddr,
}

impl Clients {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot for one more connection of `ip`, unless it holds its share already.
    fn enter(clients: &Arc<Clients>, ip: IpAddr) -> Option<ClientSlot> {
        let mut open = clients.lock();
        let count = open.entry(ip).or_insert(0);
        if *count >= clients.max_each {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            clients: clients.clone(),
            ip,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.clients.lock();
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// A stream whose writes fail once one has waited for the client longer than the timeout.
struct SendTimeout<S> {
    inner: S,
    timeout: Duration,
    /// Set while a write waits for the client.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> SendTimeout<S> {
    fn new(inner: S, timeout: Duration) -> SendTimeout<S> {
        SendTimeout {
            inner,
            timeout,
            stalled: None,
        }
    }

    /// Tracks a pending write: an error once it has been pending for the timeout.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let timeout = self.timeout;
        let stall = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stall.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client did not read the response in time",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SendTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SendTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_cap_follows_the_descriptor_limit() {
        assert_eq!(default_max_connections(1024), 256);
        assert_eq!(default_max_connections(20), 16);
        assert_eq!(default_max_connections(1 << 20), 16_384);
        assert!(open_files_limit() >= 16);
    }

    #[test]
    fn one_client_holds_at_most_its_share() {
        let clients = Arc::new(Clients {
            open: Mutex::new(HashMap::new()),
            max_each: 2,
        });
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let first = Clients::enter(&clients, a).expect("first");
        let _second = Clients::enter(&clients, a).expect("second");
        assert!(Clients::enter(&clients, a).is_none());
        assert!(Clients::enter(&clients, b).is_some());
        drop(first);
        assert!(Clients::enter(&clients, a).is_some());
    }
}
