//! What the HTTP API reports about this node: whether it is ready (not
//! draining, not shedding load, the store answering in time, the cluster's
//! bus connected) and which node a client should use. Readiness is read
//! from memory, kept fresh by a background check of the store.

use crate::config::Config;
use natter_api::{ClusterView, ReadinessCheck};
use natter_cluster::{Bound, Cluster, NodeView};
use natter_gateway::Gateway;
use natter_runtime::load::Load;
use natter_store::Store;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the store's round trip is checked, and how long one may take.
const CHECK_EVERY: Duration = Duration::from_secs(1);
const CHECK_BOUND: Duration = Duration::from_secs(2);

/// The store's last checked answer, kept by [`watch_store`] and read by
/// the readiness answer, which so never waits on the database.
pub(super) struct StoreHealth(Mutex<Result<(), String>>);

impl StoreHealth {
    /// Ready until the first check says otherwise: the store was opened
    /// (and migrated) just before.
    pub(super) fn new() -> Arc<StoreHealth> {
        Arc::new(StoreHealth(Mutex::new(Ok(()))))
    }

    fn get(&self) -> Result<(), String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, answer: Result<(), String>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = answer;
    }
}

/// Checks the store's round trip every second (each check bounded) until
/// `stop`, keeping the answer in `health`. One check at a time, whatever
/// polls /readyz, so polling cannot load the writer.
pub(super) async fn watch_store(
    store: Arc<dyn Store>,
    health: Arc<StoreHealth>,
    stop: CancellationToken,
) {
    loop {
        let checked = tokio::select! {
            _ = stop.cancelled() => return,
            r = tokio::time::timeout(CHECK_BOUND, store.check()) => r,
        };
        health.set(match checked {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("storage: {e}")),
            Err(_) => Err(format!("storage: no answer within {CHECK_BOUND:?}")),
        });
        tokio::select! {
            _ = stop.cancelled() => return,
            () = tokio::time::sleep(CHECK_EVERY) => {}
        }
    }
}

/// The readiness answer: not while draining or shedding load, not while
/// the store knows the database is down (its breaker open), and only when
/// the store's last round trip (see [`watch_store`]) completed in time.
/// Everything it reads is in memory: it answers at once, whatever the
/// database does.
pub(super) fn readiness(
    draining: Arc<AtomicBool>,
    load: Arc<Load>,
    store: Arc<dyn Store>,
    health: Arc<StoreHealth>,
    cluster: Option<Cluster>,
) -> ReadinessCheck {
    Arc::new(move || {
        let answer = (|| {
            if draining.load(Ordering::Acquire) {
                return Err("draining".into());
            }
            if cluster.as_ref().is_some_and(|c| !c.connected()) {
                return Err("cluster: no subscription to the bus (Redis)".into());
            }
            if !load.accepts_new() {
                return Err(format!("shedding load (stage {})", load.stage().name()));
            }
            if let Some(why) = store.known_down() {
                return Err(format!("storage: {why}"));
            }
            health.get()
        })();
        Box::pin(std::future::ready(answer))
    })
}

/// A node outside a cluster, as the cluster endpoints describe it.
pub(super) fn single_node(config: &Config, bound: &Bound) -> NodeView {
    let a = config.cluster.advertised(bound);
    NodeView {
        node_id: "local".into(),
        tcp: a.tcp,
        ws: a.ws,
        http: a.http,
        tcp_tls: a.tcp_tls,
        wss: a.wss,
        https: a.https,
        max_connections: config.limits.max_connections as u64,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        // New at every start, as a cluster node's is: the start's wall
        // clock in ms.
        incarnation: natter_runtime::clock::now_ms().max(1) as u64,
        state: "up".into(),
        ..NodeView::default()
    }
}

/// What `/v1/cluster/*` answers: the cluster's table, or this node alone.
pub(super) struct NodeTable {
    pub(super) cluster: Option<Cluster>,
    pub(super) me: NodeView,
    pub(super) gateway: Arc<Gateway>,
}

fn assignment(n: &NodeView) -> serde_json::Value {
    serde_json::json!({
        "node_id": n.node_id, "tcp": n.tcp, "ws": n.ws, "http": n.http,
        "tcp_tls": n.tcp_tls, "wss": n.wss, "https": n.https,
    })
}

impl ClusterView for NodeTable {
    fn assign(&self, user: Option<&str>, avoid: &[&str]) -> Option<serde_json::Value> {
        match &self.cluster {
            // Nodes a client could not reach are passed over while another
            // is live (its view may be older than this node's table).
            Some(c) => c
                .assign(user, avoid)
                .or_else(|| c.assign(user, &[]))
                .as_ref()
                .map(assignment),
            None => Some(assignment(&self.me)),
        }
    }

    fn nodes(&self) -> serde_json::Value {
        let nodes = match &self.cluster {
            Some(c) => c.nodes(),
            None => vec![NodeView {
                connections: self.gateway.connections() as u64,
                reported_at_ms: natter_runtime::clock::now_ms(),
                ..self.me.clone()
            }],
        };
        serde_json::to_value(nodes).unwrap_or_default()
    }
}
