//! The drain, in order: stop accepting, tell the cluster, answer what
//! clients already sent, flush within the grace period (then refuse the
//! writes still queued), leave the cluster, close the store, let fan-out and
//! the background work finish, and stop the HTTP API last, so /readyz says
//! "draining" to the end.

use super::assemble::FLUSH;
use natter_cluster::Cluster;
use natter_gateway::Gateway;
use natter_store::Store;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What a running server holds that the drain stops.
pub(super) struct Running {
    /// Read by /readyz.
    pub draining: Arc<AtomicBool>,
    pub cluster: Option<Cluster>,
    /// The chat listeners' accept loops (they end on the shutdown signal).
    pub accept: Vec<JoinHandle<()>>,
    pub gateway: Arc<Gateway>,
    pub store: Arc<dyn Store>,
    /// Fan-out, the cluster's tasks, the load monitor, TLS reload.
    pub background: TaskTracker,
    pub background_stop: CancellationToken,
    /// The HTTP and HTTPS servers.
    pub api: Vec<JoinHandle<()>>,
    pub api_stop: CancellationToken,
}

impl Running {
    pub(super) async fn drain(self, grace: Duration) {
        tracing::info!("shutting down: draining connections");
        self.draining.store(true, Ordering::Release);
        if let Some(c) = &self.cluster {
            c.drain().await;
        }
        for a in self.accept {
            let _ = a.await;
        }
        if !self.gateway.drain(grace).await {
            // Whatever is still queued will not be written: its callers hear
            // UNAVAILABLE (not stored) and resend after reconnecting.
            tracing::warn!(?grace, "grace period over: refusing queued writes");
            self.store.stop_writes();
            if !self.gateway.drain(FLUSH).await {
                tracing::warn!("connections still open after the grace period");
            }
        }
        if let Some(c) = &self.cluster {
            c.leave().await;
        }
        self.store.close().await;
        // The store has closed its feed: fan-out finishes what it holds and ends.
        self.background_stop.cancel();
        self.background.close();
        if tokio::time::timeout(Duration::from_secs(2), self.background.wait())
            .await
            .is_err()
        {
            tracing::warn!("fan-out did not finish within 2 s");
        }
        self.api_stop.cancel();
        for api in self.api {
            let _ = api.await;
        }
    }
}
