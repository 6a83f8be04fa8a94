//! Who is online here: user -> attached connections, sharded by user id so
//! fan-out to different users does not contend on one lock. The registry
//! queues a routed event (see `delivery`) on every target connection here.
//! On one node the registry is the whole event sink and presence directory;
//! in a cluster the bus routes to other nodes and hands the registry, as
//! its `LocalSessions`, what is local.

use crate::delivery::{route, LocalSessions, Routed};
use crate::outbound::{Close, Outbound, Pushed};
use async_trait::async_trait;
use bytes::Bytes;
use natter_proto::pb;
use natter_service::model::{SessionId, UserId};
use natter_service::{Event, EventSink, Presence, PresenceUnknown, RevokeReason};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

const SHARDS: usize = 64;

/// Counted once per push: a handle, not a registry lookup per push (see
/// `src/server/metrics.rs`).
static PUSHES: LazyLock<metrics::Counter> =
    LazyLock::new(|| metrics::counter!("natter_pushes_total"));

pub struct Registry {
    shards: Box<[Mutex<Shard>]>,
}

#[derive(Default)]
struct Shard {
    users: HashMap<UserId, UserEntry>,
}

struct UserEntry {
    conns: Vec<Attached>,
}

struct Attached {
    session_id: SessionId,
    conn_id: u64,
    out: Outbound,
    /// When it attached (ms since the epoch).
    at_ms: i64,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
        }
    }
}

impl Registry {
    fn shard(&self, user: UserId) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[(user as usize) % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Attaches a connection to its user. Another connection holding the same
    /// session is closed as REPLACED: a session lives on one connection.
    /// Returns true when this is the user's only connection (they came online).
    pub(crate) fn attach(
        &self,
        user: UserId,
        session_id: SessionId,
        conn_id: u64,
        out: Outbound,
    ) -> bool {
        let mut shard = self.shard(user);
        let entry = shard
            .users
            .entry(user)
            // Most users are online on one connection: room for one (a
            // vector's first growth would make room for four).
            .or_insert_with(|| UserEntry {
                conns: Vec::with_capacity(1),
            });
        entry.conns.retain(|a| {
            if a.session_id == session_id {
                a.out.close(replaced(RevokeReason::Replaced));
                false
            } else {
                true
            }
        });
        entry.conns.push(Attached {
            session_id,
            conn_id,
            out,
            at_ms: natter_runtime::clock::now_ms(),
        });
        let first = entry.conns.len() == 1;
        if first {
            metrics::gauge!("natter_users_online").increment(1.0);
        }
        first
    }

    /// Returns true when the user has no connection left (they went offline).
    pub(crate) fn detach(&self, user: UserId, conn_id: u64) -> bool {
        let mut shard = self.shard(user);
        if let Some(entry) = shard.users.get_mut(&user) {
            let before = entry.conns.len();
            entry.conns.retain(|a| a.conn_id != conn_id);
            if entry.conns.is_empty() {
                shard.users.remove(&user);
                if before > 0 {
                    metrics::gauge!("natter_users_online").decrement(1.0);
                }
                return before > 0;
            }
        }
        false
    }

    /// Queues `frame` on every session of `users` here, except `skip`.
    fn push(&self, users: &[UserId], frame: &Bytes, skip: Option<SessionId>) {
        for user in users {
            self.push_to(*user, frame, skip);
        }
    }

    fn push_to(&self, user: UserId, frame: &Bytes, skip_session: Option<SessionId>) {
        let shard = self.shard(user);
        let Some(entry) = shard.users.get(&user) else {
            return;
        };
        for a in &entry.conns {
            if Some(a.session_id) == skip_session {
                continue;
            }
            match a.out.push(frame.clone()) {
                Pushed::Queued => PUSHES.increment(1),
                Pushed::SlowConsumer => {
                    tracing::info!(user, session = a.session_id, "slow consumer disconnected")
                }
                Pushed::Gone | Pushed::TooLarge => {}
            }
        }
    }

    /// Closes the connections holding any of `sessions` here.
    fn revoke(&self, sessions: &[SessionId], reason: RevokeReason, attached_by_ms: Option<i64>) {
        // Revocations are rare (logins past the device limit, password
        // changes), so a scan of every shard is fine.
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            for entry in shard.users.values_mut() {
                entry.conns.retain(|a| {
                    let covered = attached_by_ms.is_none_or(|by| a.at_ms <= by);
                    if covered && sessions.contains(&a.session_id) {
                        a.out.close(replaced(reason));
                        false
                    } else {
                        true
                    }
                });
            }
            let before = shard.users.len();
            shard.users.retain(|_, e| !e.conns.is_empty());
            let gone = before - shard.users.len();
            if gone > 0 {
                metrics::gauge!("natter_users_online").decrement(gone as f64);
            }
        }
    }
}

impl LocalSessions for Registry {
    /// Whether `user` has a connection here.
    fn has(&self, user: UserId) -> bool {
        self.shard(user).users.contains_key(&user)
    }

    /// Every user with a connection here, one shard at a time.
    fn users(&self) -> Vec<UserId> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            out.extend(shard.users.keys().copied());
        }
        out
    }

    /// Connections attached here.
    fn connections(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = s.lock().unwrap_or_else(|p| p.into_inner());
                s.users.values().map(|e| e.conns.len()).sum::<usize>()
            })
            .sum()
    }

    /// Asks up to `n` connections with nothing queued to reconnect to
    /// another node (GOING_AWAY naming `target()`, asked per connection);
    /// returns how many were asked.
    fn move_some(
        &self,
        n: usize,
        reconnect_after_ms: u32,
        target: &(dyn Fn() -> Option<(String, String)> + Sync),
    ) -> usize {
        let mut moved = 0;
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            for a in shard.users.values().flat_map(|e| e.conns.iter()) {
                if moved >= n {
                    return moved;
                }
                if a.out.is_closing() || a.out.backlog().0 > 0 {
                    continue;
                }
                let Some(to) = target() else {
                    return moved;
                };
                a.out.close(Close {
                    reason: pb::DisconnectReason::GoingAway,
                    message: "rebalancing: reconnect to the node named".into(),
                    flush: true,
                    too_large: false,
                    reconnect_after_ms,
                    reconnect_to: Some(Arc::new(to)),
                });
                moved += 1;
            }
        }
        moved
    }

    /// Hands a routed event to the sessions here.
    fn deliver(&self, routed: &Routed) {
        match routed {
            Routed::Push {
                users, frame, skip, ..
            } => self.push(users, frame, *skip),
            Routed::Revoke {
                sessions,
                reason,
                attached_by_ms,
                ..
            } => self.revoke(sessions, *reason, *attached_by_ms),
        }
    }
}

fn replaced(reason: RevokeReason) -> Close {
    let (reason, message) = match reason {
        RevokeReason::Replaced => (
            pb::DisconnectReason::Replaced,
            "this session connected again elsewhere",
        ),
        RevokeReason::Kicked => (pb::DisconnectReason::Kicked, "this session was ended"),
        RevokeReason::Disabled => (
            pb::DisconnectReason::Kicked,
            "the account was disabled by an administrator",
        ),
        RevokeReason::Admin => (
            pb::DisconnectReason::Kicked,
            "an administrator ended this session",
        ),
        RevokeReason::LoggedOut => (
            pb::DisconnectReason::LoggedOut,
            "this session was logged out",
        ),
    };
    Close {
        reason,
        message: message.into(),
        flush: true,
        too_large: false,
        reconnect_after_ms: 0,
        reconnect_to: None,
    }
}

impl EventSink for Registry {
    fn publish(&self, event: Event) {
        self.deliver(&route(event));
    }
}

/// On one node the registry is the whole directory.
#[async_trait]
impl Presence for Registry {
    async fn attached(&self, _user: UserId, _session: SessionId, _first_here: bool) {}

    async fn detached(&self, _user: UserId, _last_here: bool) {}

    async fn online(&self, users: &[UserId]) -> Result<Vec<bool>, PresenceUnknown> {
        Ok(users.iter().map(|u| self.has(*u)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::{channel, QueueLimits};

    fn out() -> Outbound {
        channel(QueueLimits {
            frames: 4,
            bytes: 1 << 16,
            max_frame: 1 << 16,
        })
    }

    /// A revocation from another node's attach closes the connections of
    /// that session attached before it, never one attached after (a resume
    /// here that overtook the news of the attach on the bus).
    #[test]
    fn a_replacing_attach_closes_only_the_connections_before_it() {
        let registry = Registry::default();
        let (old, new, other) = (out(), out(), out());
        registry.attach(1, 10, 1, old.clone());
        registry.attach(2, 20, 2, other.clone());
        let attached = natter_runtime::clock::now_ms();
        let revoke = |by: Option<i64>| Routed::Revoke {
            user: 1,
            sessions: vec![10],
            reason: RevokeReason::Replaced,
            attached_by_ms: by,
        };
        // An attach elsewhere before this connection's: it stays.
        registry.deliver(&revoke(Some(attached - 1_000)));
        assert!(!old.is_closing());
        // One after it: it is replaced; another session is not.
        registry.deliver(&revoke(Some(attached + 1)));
        assert!(old.is_closing());
        assert!(!other.is_closing());
        // A resume here after that attach stays, while a revocation of
        // every connection (a logout) still reaches it.
        registry.attach(1, 10, 3, new.clone());
        registry.deliver(&revoke(Some(attached - 1)));
        assert!(!new.is_closing());
        registry.deliver(&revoke(None));
        assert!(new.is_closing());
        assert_eq!(registry.users(), vec![2]);
    }
}
