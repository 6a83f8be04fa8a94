//! natter's cluster: any number of `natter serve` processes on one database
//! (the truth: seqs, messages, cursors) and one Redis (the doorbell: who is
//! online where, load reports, and pub/sub between nodes).
//!
//! [`Cluster`] stands in front of the gateway's local sessions (seen only
//! through `natter_gateway::delivery`'s [`LocalSessions`]): it is the
//! service's [`EventSink`] and [`Presence`]. An event is delivered to the
//! sessions here at once and queued for the router, which looks up which
//! other nodes hold a recipient (`natter:presence:{user}`) and publishes one
//! batch per node; that node hands it to its own registry. Anything
//! published may be lost, so a node whose subscription broke resubscribes,
//! re-asserts its presence, and tells every session here to Sync
//! (`SyncHintPush`): clients fill from the database, exactly once and in
//! order by their cursors.
#![forbid(unsafe_code)]

mod bus;
mod config;
mod envelope;
mod keys;
mod limit;
mod nodes;
mod order;
mod presence;

pub use config::{Bound, ClusterSection};
pub use nodes::{status, NodeView, Strategy};

use async_trait::async_trait;
use futures_util::future::BoxFuture;
use natter_gateway::delivery::{route, sync_hint, LocalSessions, Routed};
use natter_service::model::{SessionId, UserId};
use natter_service::{Event, EventSink, Limiter, Presence, PresenceUnknown, RevokeReason};
use redis::aio::ConnectionManager;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub redis_url: String,
    /// Prefixes every key and channel, so clusters can share a Redis.
    pub name: String,
    /// This node's name in the cluster; stable across restarts.
    pub node_id: String,
    /// Addresses clients are sent to for this node.
    pub advertise_tcp: String,
    pub advertise_ws: String,
    pub advertise_http: String,
    /// The same over TLS (empty: this node has no such listener).
    pub advertise_tcp_tls: String,
    pub advertise_wss: String,
    pub advertise_https: String,
    /// How often the node reports its load and liveness.
    pub report_interval: Duration,
    /// How long a node's presence entries live without a refresh.
    pub presence_ttl: Duration,
    pub strategy: Strategy,
    /// Events waiting for the router before new ones are dropped (and the
    /// nodes told to resync).
    pub bus_queue: usize,
    /// The node's connection limit (its load is connections / this).
    pub max_connections: usize,
    /// Connections above the cluster's average before this node asks some
    /// of its clients to move (0: never).
    pub rebalance_min_excess: usize,
    /// Clients asked to move per second while above it.
    pub rebalance_per_sec: usize,
    /// Told to moved clients.
    pub reconnect_after: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster.redis_url is not a Redis URL: {0}")]
    Url(redis::RedisError),
    #[error("cannot reach Redis at cluster.redis_url: {0}")]
    Unreachable(String),
}

/// A node's part in the cluster; cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    shared: Arc<Shared>,
}

/// What a node's tasks share: its identity and Redis connection, and one
/// part per concern (the bus, the presence directory, the node table, the
/// sequencer), each kept beside the code that uses it.
pub(crate) struct Shared {
    pub config: ClusterConfig,
    pub keys: keys::Keys,
    /// A fresh id for every start: a restarted node is a new incarnation.
    pub incarnation: u64,
    /// The sessions attached here.
    pub sessions: Arc<dyn LocalSessions>,
    pub client: redis::Client,
    pub redis: ConnectionManager,
    /// Routing to the other nodes (`bus.rs`).
    pub bus: bus::Bus,
    /// Who is online where (`presence.rs`).
    pub directory: presence::Directory,
    /// The node table and this node's standing in it (`nodes.rs`).
    pub nodes: nodes::Nodes,
    /// Puts each conversation's pushes back in seq order (`order.rs`).
    pub order: order::Sequencer,
    /// Messages committed on this node (its messages/s).
    pub messages: AtomicU64,
    /// Told the users of a node found dead (their friends hear of it).
    pub on_gone: std::sync::OnceLock<Arc<UsersGone>>,
    /// Every task the node starts, so shutdown waits for it.
    tasks: TaskTracker,
    /// Fires when the node stops: every task started here ends then.
    stop: CancellationToken,
}

/// Called with the users a dead node held, once it has been cleared; the
/// work it returns runs on the node's tracker until the node stops.
pub type UsersGone = dyn Fn(Vec<UserId>) -> BoxFuture<'static, ()> + Send + Sync;

/// Bounds every Redis round trip: a Redis that hangs is a Redis that is away.
pub(crate) const REDIS_TIMEOUT: Duration = Duration::from_secs(1);

pub(crate) async fn bounded<T>(
    f: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(REDIS_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("Redis did not answer within 1 s".into()),
    }
}

impl Cluster {
    /// Joins the cluster: purges what a previous incarnation of this node
    /// left in Redis, subscribes to the node's channel, reports, and starts
    /// the router, presence and report tasks on `tracker` until `stop`.
    pub async fn join(
        config: ClusterConfig,
        sessions: Arc<dyn LocalSessions>,
        tracker: &TaskTracker,
        stop: CancellationToken,
    ) -> Result<Cluster, ClusterError> {
        let client = redis::Client::open(config.redis_url.as_str()).map_err(ClusterError::Url)?;
        let manager = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let redis = tokio::time::timeout(
            Duration::from_secs(5),
            client.get_connection_manager_with_config(manager),
        )
        .await
        .map_err(|_| ClusterError::Unreachable("no answer within 5 s".into()))?
        .map_err(|e| ClusterError::Unreachable(e.to_string()))?;
        let (outbox, routed) = mpsc::channel(config.bus_queue.max(1));
        let (presence, ops) = mpsc::channel(65_536);
        let mut seed = [0u8; 8];
        getrandom::fill(&mut seed).map_err(|e| ClusterError::Unreachable(e.to_string()))?;
        let shared = Arc::new(Shared {
            incarnation: u64::from_le_bytes(seed) >> 1,
            keys: keys::Keys::new(&config.name),
            config,
            sessions,
            client,
            redis,
            bus: bus::Bus::new(outbox),
            directory: presence::Directory::new(presence),
            nodes: nodes::Nodes::default(),
            order: order::Sequencer::default(),
            messages: AtomicU64::new(0),
            on_gone: std::sync::OnceLock::new(),
            tasks: tracker.clone(),
            stop: stop.clone(),
        });
        shared
            .purge_own()
            .await
            .map_err(ClusterError::Unreachable)?;
        let subscription = bus::subscribe(&shared)
            .await
            .map_err(ClusterError::Unreachable)?;
        shared
            .report(nodes::Load::default())
            .await
            .map_err(ClusterError::Unreachable)?;
        tracing::info!(
            node = %shared.config.node_id,
            incarnation = shared.incarnation,
            "joined the cluster"
        );
        tracker.spawn(bus::listen(shared.clone(), subscription, stop.clone()));
        tracker.spawn(bus::route_loop(shared.clone(), routed, stop.clone()));
        tracker.spawn(presence::write_loop(shared.clone(), ops, stop.clone()));
        tracker.spawn(presence::refresh_loop(shared.clone(), stop.clone()));
        tracker.spawn(nodes::report_loop(shared.clone(), stop.clone()));
        tracker.spawn(release_loop(shared.clone(), stop));
        Ok(Cluster { shared })
    }

    /// Per-user send rates that hold across the cluster, at `rate_per_sec`
    /// after a burst of `burst`.
    pub fn limiter(&self, rate_per_sec: f64, burst: f64) -> Arc<dyn Limiter> {
        Arc::new(limit::SharedLimiter::new(
            self.shared.clone(),
            rate_per_sec,
            burst,
        ))
    }

    /// What to do with the users of a node found dead, after this node
    /// cleared their presence (their friends should hear they went).
    pub fn on_users_gone(&self, f: Arc<UsersGone>) {
        let _ = self.shared.on_gone.set(f);
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.shared.config.node_id
    }

    /// The node clients should connect to, never one of `avoid`; `user`
    /// (an id or name) keys the sticky strategy. `None` when no live node
    /// is left.
    pub fn assign(&self, user: Option<&str>, avoid: &[&str]) -> Option<NodeView> {
        self.shared.assign(user, avoid)
    }

    /// The node table as last read (every ~report interval).
    pub fn nodes(&self) -> Vec<NodeView> {
        self.shared
            .nodes
            .table
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether this node can reach the others: its subscription is up.
    pub fn connected(&self) -> bool {
        self.shared.bus.subscribed.load(Ordering::Acquire)
    }

    /// Stops taking new clients: the node reports itself draining, so
    /// assignment sends nobody here.
    pub async fn drain(&self) {
        self.shared.nodes.draining.store(true, Ordering::Release);
        if let Err(e) = self.shared.report(self.shared.last_load()).await {
            tracing::warn!(error = %e, "cannot report draining");
        }
    }

    /// Leaves the cluster: removes this node's report, liveness and presence
    /// entries (its sessions are gone).
    pub async fn leave(&self) {
        if let Err(e) = self.shared.leave().await {
            tracing::warn!(error = %e, "cannot leave the cluster cleanly; survivors will clear it");
        }
    }
}

impl EventSink for Cluster {
    fn publish(&self, event: Event) {
        if matches!(event, Event::Message(_)) {
            self.shared.messages.fetch_add(1, Ordering::Relaxed);
        }
        let routed = route(event);
        self.shared.deliver_here(routed.clone());
        self.shared.forward(routed);
    }
}

#[async_trait]
impl Presence for Cluster {
    async fn attached(&self, user: UserId, session: SessionId, first_here: bool) {
        // The connections this attach replaces are the ones before it.
        let attached_by_ms = natter_runtime::clock::now_ms();
        // Wait for the directory to know: a message committed after this
        // returns is routed here, and the client's Sync (its next request)
        // finds anything committed before.
        if first_here {
            self.shared.presence_changed(user).await;
        }
        // The same session may be on a connection of another node.
        self.shared.forward(Routed::Revoke {
            user,
            sessions: vec![session],
            reason: RevokeReason::Replaced,
            attached_by_ms: Some(attached_by_ms),
        });
    }

    async fn detached(&self, user: UserId, last_here: bool) {
        if last_here {
            self.shared.unmark_spread(user);
            self.shared.presence_changed(user).await;
        }
    }

    async fn online(&self, users: &[UserId]) -> Result<Vec<bool>, PresenceUnknown> {
        self.shared.online(users).await
    }
}

/// Waits for the next item (or `stop`), then takes whatever else is queued,
/// up to `max` in all, into `batch` (emptied first). False once the queue
/// has closed or the node stops.
pub(crate) async fn next_batch<T>(
    rx: &mut mpsc::Receiver<T>,
    batch: &mut Vec<T>,
    max: usize,
    stop: &CancellationToken,
) -> bool {
    batch.clear();
    let first = tokio::select! {
        r = rx.recv() => r,
        _ = stop.cancelled() => None,
    };
    let Some(first) = first else { return false };
    batch.push(first);
    while batch.len() < max {
        match rx.try_recv() {
            Ok(item) => batch.push(item),
            Err(_) => break,
        }
    }
    true
}

/// Lets go of pushes held for order once they have waited long enough.
async fn release_loop(shared: Arc<Shared>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(order::HOLD / 5);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        for r in shared.order.due(tokio::time::Instant::now()) {
            shared.sessions.deliver(&r);
        }
    }
}

impl Shared {
    /// Runs `work` on the node's tracker until it ends or the node stops:
    /// shutdown waits for it, and never for longer than it takes to stop.
    pub(crate) fn spawn(&self, work: impl std::future::Future<Output = ()> + Send + 'static) {
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = work => {}
                _ = stop.cancelled() => {}
            }
        });
    }

    /// Delivers to the sessions here; a message in its conversation's seq
    /// order (see `order`).
    pub(crate) fn deliver_here(&self, routed: Routed) {
        let order = match &routed {
            Routed::Push { order, .. } => *order,
            Routed::Revoke { .. } => None,
        };
        match order {
            Some((conversation, seq)) => {
                let now = tokio::time::Instant::now();
                for r in self.order.offer(conversation, seq, routed, now) {
                    self.sessions.deliver(&r);
                }
            }
            None => self.sessions.deliver(&routed),
        }
    }

    /// Queues a routed event for the other nodes; never waits.
    pub(crate) fn forward(&self, routed: Routed) {
        if let Err(e) = self.bus.outbox.try_send(routed) {
            metrics::counter!("natter_bus_dropped_total").increment(1);
            self.bus.lost.store(true, Ordering::Release);
            if matches!(e, mpsc::error::TrySendError::Full(_)) {
                tracing::debug!("bus queue full: dropped an event, nodes will resync");
            }
        }
    }

    pub(crate) fn conn(&self) -> ConnectionManager {
        self.redis.clone()
    }

    /// Asks every session here to Sync, once: requests while a pass runs
    /// make one more pass after it, never several at once.
    pub(crate) fn request_resync(self: &Arc<Self>) {
        self.bus.resync_again.store(true, Ordering::Release);
        if self.bus.resyncing.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        self.spawn(async move {
            while this.bus.resync_again.swap(false, Ordering::AcqRel) {
                this.resync_local().await;
            }
            this.bus.resyncing.store(false, Ordering::Release);
            // A request that came between the last pass and now.
            if this.bus.resync_again.load(Ordering::Acquire) {
                this.request_resync();
            }
        });
    }

    /// Tells every session here to Sync, a few thousand users at a time so
    /// a node of 19,000 does not send them all to the database at once.
    async fn resync_local(&self) {
        let users = self.sessions.users();
        let frame = sync_hint();
        metrics::counter!("natter_bus_resyncs_total").increment(1);
        tracing::info!(users = users.len(), "asking every session here to sync");
        for chunk in users.chunks(2000) {
            self.sessions.deliver(&Routed::Push {
                users: chunk.into(),
                frame: frame.clone(),
                skip: None,
                order: None,
            });
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
