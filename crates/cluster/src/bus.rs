//! The bus: the router that publishes each batch of routed events to the
//! nodes holding its recipients, and the listener of this node's channel.
//!
//! Redis pub/sub delivers at most once. A batch whose publish fails is
//! retried for a few seconds, then dropped with every node told to resync;
//! a listener whose subscription broke resubscribes, re-asserts this node's
//! presence, and asks every session here to Sync.

use crate::envelope::{self, Batch, Envelope};
use crate::{bounded, next_batch, Shared};
use futures_util::StreamExt;
use natter_gateway::delivery::Routed;
use natter_service::model::UserId;
use natter_service::RevokeReason;
use redis::aio::{PubSubSink, PubSubStream};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Getting events to the other nodes: the router's queue, and whether this
/// node may have missed some (its subscription, a dropped batch, a resync
/// pass under way).
pub(crate) struct Bus {
    /// Events waiting for the router.
    pub outbox: mpsc::Sender<Routed>,
    /// The subscription to this node's channel is up.
    pub subscribed: AtomicBool,
    /// The router dropped something: tell every node to resync once it can.
    pub lost: AtomicBool,
    /// A resync pass is running; another was asked for meanwhile.
    pub resyncing: AtomicBool,
    pub resync_again: AtomicBool,
}

impl Bus {
    pub(crate) fn new(outbox: mpsc::Sender<Routed>) -> Bus {
        Bus {
            outbox,
            subscribed: AtomicBool::new(false),
            lost: AtomicBool::new(false),
            resyncing: AtomicBool::new(false),
            resync_again: AtomicBool::new(false),
        }
    }
}

/// Events taken into one batch (one presence lookup, one publish per node).
const MAX_BATCH: usize = 512;
/// How long a failing batch is retried before it is dropped.
const RETRY_FOR: Duration = Duration::from_secs(5);

pub(crate) async fn route_loop(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Routed>,
    stop: CancellationToken,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while next_batch(&mut rx, &mut batch, MAX_BATCH, &stop).await {
        let started = tokio::time::Instant::now();
        let mut backoff = Duration::from_millis(50);
        loop {
            match publish(&shared, &batch).await {
                Ok(()) => break,
                Err(e) if started.elapsed() < RETRY_FOR && !stop.is_cancelled() => {
                    metrics::counter!("natter_bus_errors_total", "op" => "publish").increment(1);
                    tracing::warn!(error = %e, "cannot publish to the cluster; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(e) => {
                    metrics::counter!("natter_bus_dropped_total").increment(batch.len() as u64);
                    tracing::warn!(error = %e, events = batch.len(), "dropped a batch: nodes will resync");
                    shared.bus.lost.store(true, Ordering::Release);
                    break;
                }
            }
        }
        if shared.bus.lost.load(Ordering::Acquire) {
            match resync_everyone(&shared).await {
                Ok(()) => shared.bus.lost.store(false, Ordering::Release),
                Err(e) => tracing::debug!(error = %e, "cannot ask the nodes to resync yet"),
            }
        }
    }
}

/// One presence lookup for every recipient in the batch, then one publish
/// per node that holds any of them (never to a node that holds none).
async fn publish(shared: &Shared, batch: &[Routed]) -> Result<(), String> {
    let me = shared.config.node_id.as_str();
    let mut users: Vec<UserId> = batch.iter().flat_map(|r| r.users()).copied().collect();
    users.sort_unstable();
    users.dedup();
    let mut pipe = redis::pipe();
    for u in &users {
        pipe.cmd("SMEMBERS").arg(shared.keys.presence(*u));
    }
    let mut conn = shared.conn();
    let sets: Vec<Vec<String>> = bounded(pipe.query_async(&mut conn)).await?;
    let mut where_: HashMap<UserId, Vec<String>> = HashMap::new();
    for (u, nodes) in users.iter().zip(sets) {
        let nodes: Vec<String> = nodes.into_iter().filter(|n| n != me).collect();
        if !nodes.is_empty() {
            where_.insert(*u, nodes);
        }
    }
    if where_.is_empty() {
        return Ok(());
    }
    let mut per_node: BTreeMap<&str, Batch> = BTreeMap::new();
    for routed in batch {
        if let Routed::Revoke {
            user,
            reason: RevokeReason::Replaced,
            ..
        } = routed
        {
            // A login here found the user on other nodes too.
            if where_.contains_key(user) {
                shared.mark_spread(*user);
            }
        }
        let mut by_node: BTreeMap<&str, Vec<UserId>> = BTreeMap::new();
        for u in routed.users() {
            for n in where_.get(u).into_iter().flatten() {
                by_node.entry(n.as_str()).or_default().push(*u);
            }
        }
        for (node, users) in by_node {
            per_node
                .entry(node)
                .or_default()
                .items
                .push(Envelope::of(routed, users));
        }
    }
    let mut pipe = redis::pipe();
    let mut bytes = 0;
    for (node, batch) in &per_node {
        let payload = envelope::encode(batch);
        bytes += payload.len();
        pipe.cmd("PUBLISH")
            .arg(shared.keys.bus(node))
            .arg(payload)
            .ignore();
    }
    bounded(pipe.query_async::<()>(&mut conn)).await?;
    metrics::counter!("natter_bus_publishes_total").increment(per_node.len() as u64);
    metrics::counter!("natter_bus_published_bytes_total").increment(bytes as u64);
    Ok(())
}

/// Something this node routed may not have arrived: every other node asks
/// its sessions to Sync.
async fn resync_everyone(shared: &Shared) -> Result<(), String> {
    let me = &shared.config.node_id;
    let mut conn = shared.conn();
    let nodes: Vec<String> = bounded(
        redis::cmd("HKEYS")
            .arg(shared.keys.nodes())
            .query_async(&mut conn),
    )
    .await?;
    let payload = envelope::encode(&Batch {
        items: vec![Envelope::resync()],
    });
    let mut pipe = redis::pipe();
    for n in nodes.iter().filter(|n| *n != me) {
        pipe.cmd("PUBLISH")
            .arg(shared.keys.bus(n))
            .arg(&payload)
            .ignore();
    }
    bounded(pipe.query_async::<()>(&mut conn)).await
}

pub(crate) struct Subscription {
    sink: PubSubSink,
    stream: PubSubStream,
}

/// Opens a pub/sub connection and subscribes to this node's channel.
pub(crate) async fn subscribe(shared: &Shared) -> Result<Subscription, String> {
    let pubsub = bounded(shared.client.get_async_pubsub()).await?;
    let (mut sink, stream) = pubsub.split();
    bounded(sink.subscribe(shared.keys.bus(&shared.config.node_id))).await?;
    shared.bus.subscribed.store(true, Ordering::Release);
    Ok(Subscription { sink, stream })
}

/// Hands what arrives on this node's channel to the registry; when the
/// subscription breaks, resubscribes first, then brings every session here
/// up to date.
pub(crate) async fn listen(shared: Arc<Shared>, first: Subscription, stop: CancellationToken) {
    let mut current = Some(first);
    let mut backoff = Duration::from_millis(50);
    loop {
        let sub = match current.take() {
            Some(s) => s,
            None => match subscribe(&shared).await {
                Ok(s) => {
                    backoff = Duration::from_millis(50);
                    metrics::counter!("natter_bus_resubscribes_total").increment(1);
                    tracing::info!("resubscribed to the cluster bus");
                    // In this order: the directory knows this node's users
                    // again before they are told to Sync, so whatever they
                    // miss in between is in the database when they ask.
                    reassert(&shared).await;
                    shared.request_resync();
                    s
                }
                Err(e) => {
                    metrics::counter!("natter_bus_errors_total", "op" => "subscribe").increment(1);
                    tracing::warn!(error = %e, "cannot subscribe to the cluster bus; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        let ended = receive(&shared, sub, &stop).await;
        shared.bus.subscribed.store(false, Ordering::Release);
        if !ended {
            return;
        }
        tracing::warn!("lost the cluster bus subscription");
    }
}

/// Re-asserts this node's presence, trying for a few seconds (the command
/// connection may still be reconnecting); then the refresh loop takes over.
pub(crate) async fn reassert(shared: &Shared) {
    for _ in 0..30 {
        match shared.assert_presence().await {
            Ok(()) => return,
            Err(e) => tracing::debug!(error = %e, "cannot re-assert presence yet"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::warn!("cannot re-assert presence; retrying in the background");
    shared.directory.stale.store(true, Ordering::Release);
}

/// Runs one subscription until it breaks (true) or the node stops (false).
async fn receive(shared: &Arc<Shared>, sub: Subscription, stop: &CancellationToken) -> bool {
    let Subscription {
        mut sink,
        mut stream,
    } = sub;
    let mut ping = tokio::time::interval(Duration::from_secs(2));
    ping.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return false,
            m = stream.next() => {
                let Some(m) = m else { return true };
                match envelope::decode(m.get_payload_bytes()) {
                    Ok(batch) => deliver(shared, batch),
                    Err(e) => {
                        metrics::counter!("natter_bus_errors_total", "op" => "decode").increment(1);
                        tracing::warn!(error = %e, "undecodable bus message");
                    }
                }
            }
            _ = ping.tick() => {
                // A half-open connection yields nothing: a ping finds it.
                if bounded(sink.ping::<redis::Value>()).await.is_err() {
                    return true;
                }
            }
        }
    }
}

fn deliver(shared: &Arc<Shared>, batch: Batch) {
    metrics::counter!("natter_bus_received_total").increment(batch.items.len() as u64);
    for env in batch.items {
        match env.into_routed() {
            Some(routed) => {
                if let Routed::Revoke {
                    user,
                    reason: RevokeReason::Replaced,
                    ..
                } = &routed
                {
                    // The user logged in on another node while here.
                    if shared.sessions.has(*user) {
                        shared.mark_spread(*user);
                    }
                }
                shared.deliver_here(routed)
            }
            None => shared.request_resync(),
        }
    }
}
