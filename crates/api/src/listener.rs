//! The HTTP listener: at most `max_connections` at once (more are answered
//! 503 and closed without being read), each closed when its request headers
//! do not arrive within `header_timeout` (which also bounds how long an idle
//! keep-alive connection waits for its next request) or when no byte moves
//! either way for `idle_timeout` (a stalled body or a client that stopped
//! reading). HTTP/1.1 and HTTP/2 (h2c by its preface, h2 by ALPN), at most
//! `MAX_STREAMS` requests at once on one HTTP/2 connection. Connections are
//! tracked and drained at shutdown.
//!
//! Past the cap, `HEALTH_SLOTS` more connections are served, for
//! `/healthz`, `/readyz` and `/metrics` only (anything else is answered
//! 503), one request each with a short header deadline; when they are all
//! taken a newcomer closes the oldest of them. So clients holding every
//! slot cannot make a load balancer or an orchestrator see a healthy node
//! as down.

use axum::body::Body;
use axum::extract::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use natter_runtime::clock::Instant;
use natter_runtime::config::{check, Invalid};
use natter_runtime::tls::Acceptor;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Connections past the cap kept for the health endpoints.
pub const HEALTH_SLOTS: usize = 8;
/// The paths those connections serve.
const HEALTH_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];
/// How long a connection in a health slot may take to send its request.
const HEALTH_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

/// The `[http]` section: the HTTP listeners' own limits.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Connections at once, before the descriptor budget may lower it.
    pub max_connections: usize,
    /// A request's headers must arrive within this; it also bounds how long
    /// an idle keep-alive connection waits for its next request.
    pub header_timeout_ms: u64,
    /// A connection on which no byte moves this long is closed.
    pub idle_timeout_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_connections: 512,
            header_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
        }
    }
}

impl HttpConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        let at_least_1 = || "must be at least 1".to_owned();
        check(
            self.max_connections >= 1,
            "http.max_connections",
            at_least_1,
        )?;
        check(
            self.header_timeout_ms >= 1,
            "http.header_timeout_ms",
            at_least_1,
        )?;
        check(
            self.idle_timeout_ms >= 1,
            "http.idle_timeout_ms",
            at_least_1,
        )
    }

    /// The limits a listener serves with, given the connections it may
    /// have (its share of the descriptor budget).
    pub fn limits(&self, max_connections: usize) -> HttpLimits {
        HttpLimits {
            max_connections,
            header_timeout: Duration::from_millis(self.header_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
        }
    }
}

/// HTTP/2 requests in flight on one connection.
const MAX_STREAMS: u32 = 64;
/// The most header bytes an HTTP/2 request may carry (HTTP/1.1's are
/// bounded by hyper's read buffer).
const MAX_HEADERS: u32 = 16 * 1024;

/// Serves `router` until `shutdown`, then lets open requests finish (for at
/// most a couple of seconds). With `tls`, HTTPS: the handshake must finish
/// within `header_timeout`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    tls: Option<Acceptor>,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let health = HealthSlots::default();
    let health_router = router.clone().layer(axum::middleware::from_fn(health_only));
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics::counter!("natter_limit_hits_total", "limit" => "http_connections")
                .increment(1);
            let (router, stop, tls) = (health_router.clone(), shutdown.clone(), tls.clone());
            let slot = health.take();
            tracker.spawn(async move {
                let limits = HttpLimits {
                    header_timeout: limits.header_timeout.min(HEALTH_HEADER_TIMEOUT),
                    idle_timeout: limits.idle_timeout.min(HEALTH_HEADER_TIMEOUT),
                    ..limits
                };
                let serve = async {
                    match tls {
                        None => one(stream, peer, router, limits, stop, None).await,
                        Some(tls) => {
                            if let Some(s) = tls.accept(stream, limits.header_timeout).await {
                                one(s, peer, router, limits, stop, None).await;
                            }
                        }
                    }
                };
                tokio::select! {
                    _ = slot.closed.cancelled() => {}
                    _ = serve => {}
                }
            });
            continue;
        };
        // By steps, not set from the permits: sets from several threads
        // could land out of order.
        metrics::gauge!("natter_http_connections").increment(1.0);
        let (router, stop, tls) = (router.clone(), shutdown.clone(), tls.clone());
        tracker.spawn(async move {
            match tls {
                None => one(stream, peer, router, limits, stop, Some(permit)).await,
                Some(tls) => {
                    if let Some(stream) = tls.accept(stream, limits.header_timeout).await {
                        one(stream, peer, router, limits, stop, Some(permit)).await;
                    }
                }
            }
            metrics::gauge!("natter_http_connections").decrement(1.0);
        });
    }
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(2), tracker.wait()).await;
}

/// The connections in health slots, oldest first, each closed by its token.
#[derive(Default)]
struct HealthSlots {
    open: Arc<Mutex<VecDeque<(u64, CancellationToken)>>>,
    next: AtomicU64,
}

/// One connection's health slot; given back when dropped.
struct HealthSlot {
    open: Arc<Mutex<VecDeque<(u64, CancellationToken)>>>,
    id: u64,
    closed: CancellationToken,
}

impl HealthSlots {
    /// A slot, closing the oldest connection in one when all are taken:
    /// one that holds a slot without asking for anything cannot keep a
    /// health check out.
    fn take(&self) -> HealthSlot {
        let (id, closed) = (
            self.next.fetch_add(1, Ordering::Relaxed),
            CancellationToken::new(),
        );
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        while open.len() >= HEALTH_SLOTS {
            if let Some((_, oldest)) = open.pop_front() {
                metrics::counter!("natter_http_health_slot_evictions_total").increment(1);
                oldest.cancel();
            }
        }
        open.push_back((id, closed.clone()));
        HealthSlot {
            open: self.open.clone(),
            id,
            closed,
        }
    }
}

impl Drop for HealthSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|(id, _)| *id != self.id);
    }
}

/// In a health slot: the health endpoints, and 503 for anything else.
async fn health_only(request: Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse;
    let http1 = request.version() < axum::http::Version::HTTP_2;
    let mut response = if HEALTH_PATHS.contains(&request.uri().path()) {
        next.run(request).await
    } else {
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "the server holds its maximum of HTTP connections\n",
        )
            .into_response()
    };
    // One request per connection: the slot is free for the next check
    // (HTTP/2 has no such header; its connection ends at the deadline).
    if http1 {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

async fn one<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    peer: std::net::SocketAddr,
    router: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
    // `None` in a health slot, which its caller holds.
    _permit: Option<OwnedSemaphorePermit>,
) {
    let base = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let io = TokioIo::new(Watched {
        inner: stream,
        base,
        last: last.clone(),
    });
    // Every request carries the address it came from (for the per-address
    // limits of logins and registrations).
    let service = TowerToHyperService::new(router.map_request(move |r: Request<Incoming>| {
        let mut r = r.map(Body::new);
        r.extensions_mut().insert(axum::extract::ConnectInfo(peer));
        r
    }));
    // HTTP/1.1, or HTTP/2 when the client opens with its preface (h2c, or
    // h2 that TLS's ALPN chose).
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(MAX_HEADERS);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let tick = (limits.idle_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut check = tokio::time::interval(tick);
    let mut closing = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "HTTP connection ended");
                }
                return;
            }
            _ = shutdown.cancelled(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = check.tick() => {
                let idle = base.elapsed().saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
                if idle >= limits.idle_timeout {
                    metrics::counter!("natter_http_idle_closed_total").increment(1);
                    return;
                }
            }
        }
    }
}

/// A socket that notes when bytes last moved.
struct Watched<S> {
    inner: S,
    base: Instant,
    last: Arc<AtomicU64>,
}

impl<S> Watched<S> {
    fn moved(&self) {
        self.last
            .store(self.base.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.moved();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            if n > 0 {
                self.moved();
            }
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            if n > 0 {
                self.moved();
            }
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
