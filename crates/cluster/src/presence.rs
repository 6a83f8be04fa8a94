//! Who is online where: `natter:presence:{user}` holds the nodes with a
//! session of the user, `natter:node:{id}:users` the users of a node (what a
//! survivor clears when the node dies). Writes go through one task that
//! reads the registry when it applies them, so an attach and a detach that
//! race can never leave the directory saying the opposite of the registry.

use crate::{bounded, next_batch, Shared};
use natter_service::model::UserId;
use natter_service::PresenceUnknown;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// A user whose sessions here changed; answered once the directory knows.
pub(crate) struct Op {
    user: UserId,
    done: oneshot::Sender<()>,
}

/// Who is online where, as this node keeps it: the queue of changes for the
/// writer, and what it knows of its users' other nodes.
pub(crate) struct Directory {
    /// Users whose sessions here changed, for the writer.
    pub queue: mpsc::Sender<Op>,
    /// Users with sessions here and on another node (shared rate limits).
    pub spread: Mutex<HashSet<UserId>>,
    /// A presence write failed: re-assert every local user soon.
    pub stale: AtomicBool,
}

impl Directory {
    pub(crate) fn new(queue: mpsc::Sender<Op>) -> Directory {
        Directory {
            queue,
            spread: Mutex::default(),
            stale: AtomicBool::new(false),
        }
    }
}

const CHUNK: usize = 1000;

pub(crate) async fn write_loop(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Op>,
    stop: CancellationToken,
) {
    let mut ops = Vec::with_capacity(CHUNK);
    while next_batch(&mut rx, &mut ops, CHUNK, &stop).await {
        let users: HashSet<UserId> = ops.iter().map(|o| o.user).collect();
        let here: Vec<(UserId, bool)> = users
            .into_iter()
            .map(|u| (u, shared.sessions.has(u)))
            .collect();
        if let Err(e) = shared.write_presence(&here).await {
            metrics::counter!("natter_bus_errors_total", "op" => "presence").increment(1);
            tracing::warn!(error = %e, "cannot update presence; it is re-asserted when Redis answers");
            shared.directory.stale.store(true, Ordering::Release);
        }
        for op in ops.drain(..) {
            let _ = op.done.send(());
        }
    }
}

/// Re-asserts every local user's presence every third of its lifetime, and
/// soon after a write failed.
pub(crate) async fn refresh_loop(shared: Arc<Shared>, stop: CancellationToken) {
    let every = (shared.config.presence_ttl / 3).max(Duration::from_secs(1));
    let mut last = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let stale = shared.directory.stale.swap(false, Ordering::AcqRel);
        if !stale && last.elapsed() < every {
            continue;
        }
        last = tokio::time::Instant::now();
        if let Err(e) = shared.assert_presence().await {
            tracing::debug!(error = %e, "cannot re-assert presence yet");
            shared.directory.stale.store(true, Ordering::Release);
        }
    }
}

impl Shared {
    /// Tells the directory that `user`'s sessions here changed and waits
    /// (at most a second) until it has been told.
    pub(crate) async fn presence_changed(&self, user: UserId) {
        let (done, wait) = oneshot::channel();
        if self.directory.queue.try_send(Op { user, done }).is_err() {
            self.directory.stale.store(true, Ordering::Release);
            return;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), wait).await;
    }

    async fn write_presence(&self, users: &[(UserId, bool)]) -> Result<(), String> {
        let me = self.config.node_id.as_str();
        let ttl = self.config.presence_ttl.as_millis() as u64;
        let mut pipe = redis::pipe();
        for (u, here) in users {
            let key = self.keys.presence(*u);
            if *here {
                pipe.cmd("SADD").arg(&key).arg(me).ignore();
                pipe.cmd("PEXPIRE").arg(&key).arg(ttl).ignore();
                pipe.cmd("SADD")
                    .arg(self.keys.node_users(me))
                    .arg(*u)
                    .ignore();
            } else {
                pipe.cmd("SREM").arg(&key).arg(me).ignore();
                pipe.cmd("SREM")
                    .arg(self.keys.node_users(me))
                    .arg(*u)
                    .ignore();
            }
        }
        let mut conn = self.conn();
        bounded(pipe.query_async::<()>(&mut conn)).await
    }

    /// Writes every local user's presence again (after Redis lost it, or to
    /// keep it from expiring) and removes entries of users no longer here.
    pub(crate) async fn assert_presence(&self) -> Result<(), String> {
        let me = self.config.node_id.as_str();
        let local = self.sessions.users();
        for chunk in local.chunks(CHUNK) {
            let here: Vec<(UserId, bool)> = chunk.iter().map(|u| (*u, true)).collect();
            self.write_presence(&here).await?;
        }
        let mut conn = self.conn();
        let listed: Vec<UserId> = bounded(
            redis::cmd("SMEMBERS")
                .arg(self.keys.node_users(me))
                .query_async(&mut conn),
        )
        .await?;
        let gone: Vec<(UserId, bool)> = listed
            .into_iter()
            .filter(|u| !self.sessions.has(*u))
            .map(|u| (u, false))
            .collect();
        for chunk in gone.chunks(CHUNK) {
            self.write_presence(chunk).await?;
        }
        Ok(())
    }

    /// Which of `users` have a session anywhere: here without asking, the
    /// rest from the directory.
    pub(crate) async fn online(&self, users: &[UserId]) -> Result<Vec<bool>, PresenceUnknown> {
        let mut out: Vec<bool> = users.iter().map(|u| self.sessions.has(*u)).collect();
        let ask: Vec<usize> = (0..users.len()).filter(|i| !out[*i]).collect();
        if ask.is_empty() {
            return Ok(out);
        }
        let mut pipe = redis::pipe();
        for i in &ask {
            pipe.cmd("SCARD").arg(self.keys.presence(users[*i]));
        }
        let mut conn = self.conn();
        let counts: Vec<u64> = bounded(pipe.query_async(&mut conn))
            .await
            .map_err(PresenceUnknown)?;
        for (i, n) in ask.into_iter().zip(counts) {
            out[i] = n > 0;
        }
        Ok(out)
    }

    /// Clears what a node (this one in an earlier life, or a dead one) left
    /// in the directory. Returns the users it listed.
    pub(crate) async fn clear_node(&self, node: &str) -> Result<Vec<UserId>, String> {
        let mut conn = self.conn();
        let listed: Vec<UserId> = bounded(
            redis::cmd("SMEMBERS")
                .arg(self.keys.node_users(node))
                .query_async(&mut conn),
        )
        .await?;
        for chunk in listed.chunks(CHUNK) {
            let mut pipe = redis::pipe();
            for u in chunk {
                pipe.cmd("SREM")
                    .arg(self.keys.presence(*u))
                    .arg(node)
                    .ignore();
            }
            bounded(pipe.query_async::<()>(&mut conn)).await?;
        }
        bounded(
            redis::cmd("DEL")
                .arg(self.keys.node_users(node))
                .query_async::<()>(&mut conn),
        )
        .await?;
        Ok(listed)
    }

    /// A restarted node first purges its own stale entries.
    pub(crate) async fn purge_own(&self) -> Result<(), String> {
        let n = self.clear_node(&self.config.node_id).await?.len();
        if n > 0 {
            tracing::info!(
                users = n,
                "cleared presence left by this node's previous run"
            );
        }
        Ok(())
    }

    pub(crate) async fn leave(&self) -> Result<(), String> {
        let me = self.config.node_id.as_str();
        let mut conn = self.conn();
        let mut pipe = redis::pipe();
        pipe.cmd("HDEL").arg(self.keys.nodes()).arg(me).ignore();
        pipe.cmd("DEL").arg(self.keys.alive(me)).ignore();
        bounded(pipe.query_async::<()>(&mut conn)).await?;
        self.clear_node(me).await.map(|_| ())
    }
}
