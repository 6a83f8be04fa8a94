//! The gateway: accepts TCP and WebSocket connections (plain or TLS), speaks the frame
//! protocol, holds sessions, enforces limits and heartbeats, and drains on
//! shutdown. It knows nothing of SQL; it calls the service.
#![forbid(unsafe_code)]

mod addresses;
mod config;
mod connection;
mod convert;
pub mod delivery;
mod dispatch;
mod live;
mod outbound;
mod pipeline;
mod registry;
mod requests;
mod serve;
mod transport;
mod writer;

pub use config::{GatewayConfig, ShutdownConfig};
pub use live::Live;
pub use registry::Registry;

use natter_runtime::load::Load;
use natter_runtime::tls::Acceptor;
use natter_service::Service;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Picks the node a closing connection is sent to: its frame and WebSocket
/// addresses.
pub type ReconnectTarget = dyn Fn() -> Option<(String, String)> + Send + Sync;

/// One gateway serves any number of listeners; connections are tracked so
/// shutdown can wait for them.
pub struct Gateway {
    pub(crate) service: Service,
    pub(crate) registry: Arc<Registry>,
    pub(crate) config: GatewayConfig,
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) unauth: Arc<addresses::Unauthenticated>,
    pub(crate) load: Arc<Load>,
    active: AtomicUsize,
    /// Where GOING_AWAY sends clients (a cluster's choice of another node).
    reconnect_to: Mutex<Option<Arc<ReconnectTarget>>>,
    pub(crate) tracker: TaskTracker,
    pub(crate) shutdown: CancellationToken,
}

impl Gateway {
    /// `shutdown` tells every connection to say GOING_AWAY and close.
    pub fn new(
        service: Service,
        registry: Arc<Registry>,
        config: GatewayConfig,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Gateway {
            slots: Arc::new(Semaphore::new(config.max_connections)),
            unauth: Arc::default(),
            load: service.load_handle(),
            active: AtomicUsize::new(0),
            reconnect_to: Mutex::new(None),
            service,
            registry,
            config,
            tracker: TaskTracker::new(),
            shutdown,
        })
    }

    // The gauge moves by steps rather than being set from the counter: two
    // threads setting it could land out of order and leave it off by one.
    fn connection_opened(&self) {
        self.active.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!("natter_connections").increment(1.0);
    }

    fn connection_closed(&self) {
        self.active.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!("natter_connections").decrement(1.0);
    }

    /// Connections open now (authenticated or not).
    pub fn connections(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Names the node GOING_AWAY sends each client to (its frame and
    /// WebSocket addresses), asked once per connection as it closes.
    pub fn set_reconnect_target(&self, target: Arc<ReconnectTarget>) {
        *self.reconnect_to.lock().unwrap_or_else(|p| p.into_inner()) = Some(target);
    }

    pub(crate) fn reconnect_target(&self) -> Option<Arc<(String, String)>> {
        let target = self
            .reconnect_to
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        target().map(Arc::new)
    }

    /// Accepts raw TCP connections until shutdown; with `tls`, each one
    /// completes a TLS handshake first.
    pub async fn serve_tcp(self: Arc<Self>, listener: TcpListener, tls: Option<Acceptor>) {
        self.accept_loop(listener, transport::Kind::Tcp, tls).await
    }

    /// Accepts WebSocket connections (binary messages carry frames) until
    /// shutdown; with `tls`, WebSocket over TLS (wss).
    pub async fn serve_ws(self: Arc<Self>, listener: TcpListener, tls: Option<Acceptor>) {
        self.accept_loop(listener, transport::Kind::WebSocket, tls)
            .await
    }

    async fn accept_loop(
        self: Arc<Self>,
        listener: TcpListener,
        kind: transport::Kind,
        tls: Option<Acceptor>,
    ) {
        loop {
            let accepted = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                r = listener.accept() => r,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if tls.is_some() {
                // This one waits here; those behind it in the listen queue.
                tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    _ = self.room_to_handshake() => {}
                }
            }
            let _ = stream.set_nodelay(true);
            let admitted = self.admit(peer);
            let this = self.clone();
            match (&tls, kind) {
                (None, transport::Kind::Tcp) => {
                    self.tracker
                        .spawn(serve::serve_tcp(this, stream, peer, admitted));
                }
                (None, transport::Kind::WebSocket) => {
                    self.tracker
                        .spawn(serve::serve_ws(this, stream, peer, admitted));
                }
                (Some(tls), kind) => {
                    let tls = tls.clone();
                    self.tracker
                        .spawn(serve::serve_tls(this, stream, peer, kind, tls, admitted));
                }
            }
        }
    }

    /// Returns once a TLS listener may serve the connection it just took.
    /// While the node sheds load and as many connections as it then admits are
    /// waiting to log in, a new one would be refused; over TLS that refusal
    /// costs a whole handshake, as much as serving it, and a storm of
    /// refusals keeps the node overloaded. So a TLS listener stops
    /// accepting instead, and new connections wait in the kernel's listen
    /// queue (costing nothing here) until there is room. Plain listeners
    /// refuse at once: there a refusal is nearly free and tells the client
    /// when to come back.
    async fn room_to_handshake(&self) {
        let full = || {
            !self.load.accepts_new()
                && self.unauth.total() >= self.config.max_unauthenticated_shedding
        };
        if !full() {
            return;
        }
        metrics::counter!("natter_tls_accept_pauses_total").increment(1);
        tracing::debug!("TLS listener paused: shedding load, logins at their limit");
        while full() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits up to `grace` for every connection to finish closing.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.tracker.close();
        tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
    }
}
