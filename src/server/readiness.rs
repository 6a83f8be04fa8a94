//! What the HTTP API reports about this node: whether it is ready (not
//! draining, not shedding load, the store answering in time, the cluster's
//! bus connected) and which node a client should use.

use crate::config::Config;
use natter_api::{ClusterView, ReadinessCheck};
use natter_cluster::{Bound, Cluster, NodeView};
use natter_gateway::Gateway;
use natter_runtime::load::Load;
use natter_store::Store;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The readiness answer: not while draining or shedding load, and only when
/// the store completes a round trip in time. The store's answer is reused for
/// a second, and one check runs at a time, so polling /readyz cannot load
/// the writer.
pub(super) fn readiness(
    draining: Arc<AtomicBool>,
    load: Arc<Load>,
    store: Arc<dyn Store>,
    cluster: Option<Cluster>,
) -> ReadinessCheck {
    type Checked = Option<(natter_runtime::clock::Instant, Result<(), String>)>;
    let last: Arc<tokio::sync::Mutex<Checked>> = Arc::default();
    Arc::new(move || {
        let (draining, load, store, last, cluster) = (
            draining.clone(),
            load.clone(),
            store.clone(),
            last.clone(),
            cluster.clone(),
        );
        Box::pin(async move {
            if draining.load(Ordering::Acquire) {
                return Err("draining".into());
            }
            if cluster.as_ref().is_some_and(|c| !c.connected()) {
                return Err("cluster: no subscription to the bus (Redis)".into());
            }
            if !load.accepts_new() {
                return Err(format!("shedding load (stage {})", load.stage().name()));
            }
            let mut last = last.lock().await;
            if let Some((at, answer)) = last.as_ref() {
                if at.elapsed() < Duration::from_secs(1) {
                    return answer.clone();
                }
            }
            let answer = match tokio::time::timeout(Duration::from_secs(2), store.check()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(format!("storage: {e}")),
                Err(_) => Err("storage: no answer within 2 s".into()),
            };
            *last = Some((natter_runtime::clock::Instant::now(), answer.clone()));
            answer
        })
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
