//! Nodes, their load and assignment. Every node reports its load to
//! `natter:nodes` every `report_interval` and renews `natter:node:{id}:alive`,
//! which expires after three missed reports: that node is dead, and the first
//! survivor to take `natter:reap:{id}` clears its presence entries. Every
//! node keeps the table it read last, so assignment never waits on Redis.

use crate::keys::Keys;
use crate::{bounded, Shared};
use natter_runtime::procstat;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The cluster's nodes as this one knows them, and this node's own standing
/// among them: its reports, its load, whether it is draining or far above
/// the average.
#[derive(Default)]
pub(crate) struct Nodes {
    /// The node table as last read, live nodes first.
    pub table: RwLock<Vec<NodeView>>,
    /// Reports sent since the start.
    pub reports: AtomicU64,
    pub last_load: Mutex<Load>,
    /// Reports in a row that found this node far above the average.
    pub over_average: AtomicU64,
    pub round_robin: AtomicUsize,
    pub draining: AtomicBool,
}

/// A node as the cluster sees it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    pub node_id: String,
    pub incarnation: u64,
    /// Where clients connect: the frame port, WebSocket, HTTP.
    pub tcp: String,
    pub ws: String,
    pub http: String,
    /// The same over TLS: `tls://`, `wss://`, `https://` (empty: none;
    /// also in reports of nodes from before they were carried).
    #[serde(default)]
    pub tcp_tls: String,
    #[serde(default)]
    pub wss: String,
    #[serde(default)]
    pub https: String,
    /// Authenticated connections.
    pub connections: u64,
    pub max_connections: u64,
    /// CPU used since the last report, in cores (1.0: one core busy).
    pub cpu: f64,
    /// Cores the node may use.
    #[serde(default)]
    pub cpus: u32,
    /// Messages committed through this node per second.
    pub messages_per_sec: f64,
    pub reported_at_ms: i64,
    /// "up", "draining" (shutting down: assign sends nobody) or "dead"
    /// (three reports missed).
    pub state: String,
}

impl NodeView {
    fn takes_clients(&self) -> bool {
        self.state == "up"
    }

    /// What least-loaded compares: the share of its connection capacity in
    /// use, or full while its CPU is nearly saturated. Clients hold their
    /// connections for hours, so their number is what spreads the work;
    /// CPU read up to a report ago is too stale and too noisy to steer a
    /// ramp of logins by (one busy moment would send every login
    /// elsewhere), so it only keeps a struggling node out of the running.
    fn load(&self) -> f64 {
        let conns = self.connections as f64 / self.max_connections.max(1) as f64;
        if self.cpu >= 0.9 * self.cpus.max(1) as f64 {
            1.0 + conns
        } else {
            conns
        }
    }
}

/// How `/v1/cluster/assign` picks a node (`cluster.assign`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Power of two choices over the reported load.
    LeastLoaded,
    /// Each live node in turn.
    RoundRobin,
    /// The same node for the same user while it lives (rendezvous hash).
    Sticky,
}

/// What a node measured of itself since its last report.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Load {
    pub cpu: f64,
    pub messages_per_sec: f64,
}

/// Reports every `report_interval`, and reads the table four times as
/// often, so a dead node is noticed within a quarter interval of its
/// liveness lapsing.
pub(crate) async fn report_loop(shared: Arc<Shared>, stop: CancellationToken) {
    let every = shared.config.report_interval;
    let mut tick = tokio::time::interval(every / 4);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut ticks = 0u64;
    let mut last_at = tokio::time::Instant::now();
    let mut last_cpu = procstat::sample(std::process::id()).map(|s| s.cpu).ok();
    let mut last_messages = shared.messages.load(Ordering::Relaxed);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        ticks += 1;
        if !ticks.is_multiple_of(4) {
            if let Err(e) = shared.refresh_table().await {
                tracing::debug!(error = %e, "cannot read the node table");
            }
            continue;
        }
        let now = tokio::time::Instant::now();
        let secs = now.duration_since(last_at).as_secs_f64().max(0.001);
        let cpu_now = procstat::sample(std::process::id()).map(|s| s.cpu).ok();
        let messages = shared.messages.load(Ordering::Relaxed);
        let load = Load {
            cpu: match (last_cpu, cpu_now) {
                (Some(a), Some(b)) => b.saturating_sub(a).as_secs_f64() / secs,
                _ => 0.0,
            },
            messages_per_sec: messages.saturating_sub(last_messages) as f64 / secs,
        };
        (last_at, last_cpu, last_messages) = (now, cpu_now, messages);
        shared.set_last_load(load);
        if let Err(e) = shared.report(load).await {
            metrics::counter!("natter_bus_errors_total", "op" => "report").increment(1);
            tracing::warn!(error = %e, "cannot report to the cluster");
            continue;
        }
        shared.rebalance();
    }
}

impl Shared {
    fn view(&self, load: Load) -> NodeView {
        let c = &self.config;
        NodeView {
            node_id: c.node_id.clone(),
            incarnation: self.incarnation,
            tcp: c.advertise_tcp.clone(),
            ws: c.advertise_ws.clone(),
            http: c.advertise_http.clone(),
            tcp_tls: c.advertise_tcp_tls.clone(),
            wss: c.advertise_wss.clone(),
            https: c.advertise_https.clone(),
            connections: self.sessions.connections() as u64,
            max_connections: c.max_connections as u64,
            cpu: load.cpu,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            messages_per_sec: load.messages_per_sec,
            reported_at_ms: natter_runtime::clock::now_ms(),
            state: if self.nodes.draining.load(Ordering::Acquire) {
                "draining".into()
            } else {
                "up".into()
            },
        }
    }

    pub(crate) fn set_last_load(&self, load: Load) {
        *self
            .nodes
            .last_load
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = load;
    }

    pub(crate) fn last_load(&self) -> Load {
        *self
            .nodes
            .last_load
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Reports this node, reads the table, and clears nodes found dead.
    pub(crate) async fn report(self: &Arc<Self>, load: Load) -> Result<(), String> {
        let me = self.config.node_id.as_str();
        let view = self.view(load);
        let json = serde_json::to_string(&view).map_err(|e| e.to_string())?;
        let dead_after = self.dead_after().as_millis() as u64;
        let mut conn = self.conn();
        let mut pipe = redis::pipe();
        pipe.cmd("HSET")
            .arg(self.keys.nodes())
            .arg(me)
            .arg(json)
            .ignore();
        pipe.cmd("SET")
            .arg(self.keys.alive(me))
            .arg(self.incarnation)
            .arg("PX")
            .arg(dead_after)
            .arg("GET");
        let (before,): (Option<u64>,) = bounded(pipe.query_async(&mut conn)).await?;
        let first = self.nodes.reports.fetch_add(1, Ordering::AcqRel) == 0;
        match before {
            Some(i) if i != self.incarnation => {
                tracing::error!(
                    node = me,
                    other = i,
                    "another process reports as this node: give each node its own cluster.node_id"
                );
            }
            None if !first => {
                // Counted dead (or Redis lost everything): this node's
                // presence may be gone and pushes to it lost.
                tracing::warn!("this node's liveness had lapsed: re-asserting presence");
                self.bus.lost.store(true, Ordering::Release);
                // As after a lost subscription: presence first, then Sync.
                let this = self.clone();
                self.spawn(async move {
                    crate::bus::reassert(&this).await;
                    this.request_resync();
                });
            }
            _ => {}
        }
        self.refresh_table().await
    }

    /// Reads the node table, clears nodes found dead, and keeps it for
    /// assignment.
    pub(crate) async fn refresh_table(self: &Arc<Self>) -> Result<(), String> {
        let mut conn = self.conn();
        let table = read_table(&self.keys, &mut conn).await?;
        for dead in table.iter().filter(|n| n.state == "dead") {
            // Clearing a node of 19,000 users takes a while: never in the
            // way of this node's own reports (a late report would make it
            // look dead in turn).
            let (this, node) = (self.clone(), dead.node_id.clone());
            self.spawn(async move {
                if let Err(e) = this.reap(&node).await {
                    tracing::debug!(error = %e, node, "cannot clear a dead node yet");
                }
            });
        }
        let mut nodes = self.nodes.table.write().unwrap_or_else(|p| p.into_inner());
        // Clients this node sent to a node since its last report count
        // until the next one (see `assign`).
        let mut table = table;
        for n in table.iter_mut() {
            if let Some(o) = nodes
                .iter()
                .find(|o| o.node_id == n.node_id && o.reported_at_ms == n.reported_at_ms)
            {
                n.connections = n.connections.max(o.connections);
            }
        }
        *nodes = table;
        Ok(())
    }

    /// A node is dead once three reports are missing: its liveness key
    /// lives three intervals less the quarter interval the table is read
    /// at, so survivors see it within three intervals of its last report.
    pub(crate) fn dead_after(&self) -> Duration {
        self.config.report_interval * 3 - self.config.report_interval / 4
    }

    /// Clears a dead node's entries, if no other survivor is doing it.
    async fn reap(&self, node: &str) -> Result<(), String> {
        let mut conn = self.conn();
        let took: Option<String> = bounded(
            redis::cmd("SET")
                .arg(self.keys.reaper(node))
                .arg(&self.config.node_id)
                .arg("NX")
                .arg("PX")
                .arg(10_000)
                .query_async(&mut conn),
        )
        .await?;
        if took.is_none() {
            return Ok(());
        }
        // A node restarted under the same id reports before it takes any
        // session: if it is alive again, what it holds is its own.
        let back: Option<u64> = bounded(
            redis::cmd("GET")
                .arg(self.keys.alive(node))
                .query_async(&mut conn),
        )
        .await?;
        if back.is_some() {
            return Ok(());
        }
        let users = self.clear_node(node).await?;
        bounded(
            redis::cmd("HDEL")
                .arg(self.keys.nodes())
                .arg(node)
                .query_async::<()>(&mut conn),
        )
        .await?;
        metrics::counter!("natter_cluster_nodes_dead_total").increment(1);
        tracing::warn!(
            node,
            users = users.len(),
            "node is dead: cleared its presence"
        );
        if let Some(gone) = self.on_gone.get() {
            self.spawn(gone(users));
        }
        Ok(())
    }

    /// Well above the cluster's average (after a rolling restart, say), asks
    /// a trickle of idle clients to reconnect to less loaded nodes.
    fn rebalance(&self) {
        let c = &self.config;
        if c.rebalance_min_excess == 0 || self.nodes.draining.load(Ordering::Acquire) {
            return;
        }
        // Every figure from the same table (reports of about the same age),
        // this node's included: live counts against stale ones would make
        // every node that is still filling up look overloaded.
        let (total, live, mine) = {
            let nodes = self.nodes.table.read().unwrap_or_else(|p| p.into_inner());
            let up: Vec<&NodeView> = nodes.iter().filter(|n| n.takes_clients()).collect();
            let mine = up
                .iter()
                .find(|n| n.node_id == c.node_id)
                .map_or(0, |n| n.connections as usize);
            (
                up.iter().map(|n| n.connections).sum::<u64>(),
                up.len(),
                mine,
            )
        };
        let average = (total as usize).div_ceil(live.max(1));
        let excess = mine.saturating_sub(average);
        let over = live >= 2 && excess >= c.rebalance_min_excess && mine * 10 >= average * 12;
        // Two reports in a row, so a ramp-up is not taken for an imbalance.
        let streak = if over {
            self.nodes.over_average.fetch_add(1, Ordering::AcqRel) + 1
        } else {
            self.nodes.over_average.store(0, Ordering::Release);
            0
        };
        if streak < 2 {
            return;
        }
        let per_report =
            (c.rebalance_per_sec as f64 * c.report_interval.as_secs_f64()).ceil() as usize;
        let n = (excess / 2).clamp(1, per_report.max(1));
        let moved = self
            .sessions
            .move_some(n, c.reconnect_after.as_millis() as u32, &|| {
                self.assign(None, &[self.config.node_id.as_str()])
                    .map(|n| (n.tcp, n.ws))
            });
        if moved > 0 {
            metrics::counter!("natter_cluster_moved_total").increment(moved as u64);
            tracing::info!(
                moved,
                mine,
                average,
                "asked clients to move to less loaded nodes"
            );
        }
    }

    /// Picks a node for one client. Reports come every couple of seconds
    /// and a ramp of logins is faster than that, so the node picked counts
    /// one more connection in this node's copy of the table until its next
    /// report: a burst is spread, not sent to whichever node looked
    /// emptiest two seconds ago.
    pub(crate) fn assign(&self, user: Option<&str>, avoid: &[&str]) -> Option<NodeView> {
        let mut nodes = self.nodes.table.write().unwrap_or_else(|p| p.into_inner());
        let live: Vec<usize> = (0..nodes.len())
            .filter(|&i| nodes[i].takes_clients() && !avoid.contains(&nodes[i].node_id.as_str()))
            .collect();
        if live.is_empty() {
            return None;
        }
        let pick = match (self.config.strategy, user) {
            (Strategy::Sticky, Some(user)) => live
                .iter()
                .copied()
                .max_by_key(|&i| rendezvous(user, &nodes[i].node_id)),
            (Strategy::RoundRobin, _) => {
                let i = self.nodes.round_robin.fetch_add(1, Ordering::Relaxed);
                live.get(i % live.len()).copied()
            }
            _ => {
                let (a, b) = two_choices(live.len());
                let (a, b) = (live[a], live[b]);
                Some(if nodes[b].load() < nodes[a].load() {
                    b
                } else {
                    a
                })
            }
        }?;
        nodes[pick].connections += 1;
        Some(nodes[pick].clone())
    }
}

/// The node table with each node's state: "dead" when its liveness key is gone.
async fn read_table(
    keys: &Keys,
    conn: &mut redis::aio::ConnectionManager,
) -> Result<Vec<NodeView>, String> {
    let raw: HashMap<String, String> =
        bounded(redis::cmd("HGETALL").arg(keys.nodes()).query_async(conn)).await?;
    let mut nodes: Vec<NodeView> = raw
        .into_iter()
        .filter_map(|(id, json)| {
            let mut v: NodeView = serde_json::from_str(&json).ok()?;
            v.node_id = id;
            Some(v)
        })
        .collect();
    nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    if nodes.is_empty() {
        return Ok(nodes);
    }
    let mut pipe = redis::pipe();
    for n in &nodes {
        pipe.cmd("GET").arg(keys.alive(&n.node_id));
    }
    let alive: Vec<Option<u64>> = bounded(pipe.query_async(conn)).await?;
    for (n, a) in nodes.iter_mut().zip(alive) {
        if a != Some(n.incarnation) {
            n.state = "dead".into();
        }
    }
    Ok(nodes)
}

/// The node table of cluster `name` as Redis holds it now (`natter cluster
/// status`).
pub async fn status(redis_url: &str, name: &str) -> Result<Vec<NodeView>, String> {
    let client = redis::Client::open(redis_url).map_err(|e| e.to_string())?;
    let mut conn = bounded(client.get_connection_manager()).await?;
    read_table(&Keys::new(name), &mut conn).await
}

fn rendezvous(user: &str, node: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (user, node).hash(&mut h);
    h.finish()
}

/// Two distinct indices below `n` (the same one when n is 1).
fn two_choices(n: usize) -> (usize, usize) {
    let mut seed = [0u8; 16];
    let _ = getrandom::fill(&mut seed);
    let a = u64::from_le_bytes(seed[..8].try_into().unwrap_or_default()) as usize % n;
    if n == 1 {
        return (a, a);
    }
    let step = 1 + u64::from_le_bytes(seed[8..].try_into().unwrap_or_default()) as usize % (n - 1);
    (a, (a + step) % n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_carry_tls_addresses_and_older_ones_still_decode() {
        let n = NodeView {
            node_id: "n1".into(),
            tcp_tls: "h:7443".into(),
            wss: "h:7444".into(),
            https: "h:7843".into(),
            ..NodeView::default()
        };
        let json = serde_json::to_string(&n).unwrap();
        assert_eq!(serde_json::from_str::<NodeView>(&json).unwrap(), n);
        let mut old: serde_json::Value = serde_json::from_str(&json).unwrap();
        for k in ["tcp_tls", "wss", "https"] {
            old.as_object_mut().unwrap().remove(k);
        }
        let old: NodeView = serde_json::from_value(old).unwrap();
        assert_eq!((old.tcp_tls, old.wss, old.https), Default::default());
    }

    #[test]
    fn two_choices_are_distinct_and_in_range() {
        for n in 1..6 {
            for _ in 0..200 {
                let (a, b) = two_choices(n);
                assert!(a < n && b < n);
                assert!(n == 1 || a != b, "n={n}: {a} {b}");
            }
        }
    }

    #[test]
    fn rendezvous_moves_only_the_users_of_a_node_that_goes() {
        let nodes = ["a", "b", "c"];
        fn pick(user: &str, nodes: &[&'static str]) -> &'static str {
            nodes
                .iter()
                .max_by_key(|n| rendezvous(user, n))
                .copied()
                .unwrap_or("")
        }
        let mut moved = 0;
        for u in 0..1000 {
            let user = u.to_string();
            let before = pick(&user, &nodes);
            let after = pick(&user, &["a", "b"]);
            if before != "c" {
                assert_eq!(before, after, "user {user} moved off a node that stayed");
            } else {
                moved += 1;
            }
        }
        assert!((200..500).contains(&moved), "{moved} of 1000 were on c");
    }
}
