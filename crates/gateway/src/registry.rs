//! Who is online where: user -> attached connections, sharded by user id so
//! fan-out to different users does not contend on one lock. The registry is
//! the in-process event sink: it turns service events into frames, encodes
//! each once, and queues it on every target connection.

use crate::convert;
use crate::outbound::{Close, Outbound, Pushed};
use bytes::Bytes;
use natter_proto::{pb, ServerFrame};
use natter_service::model::{SessionId, UserId};
use natter_service::{Event, EventSink, RevokeReason};
use std::collections::HashMap;
use std::sync::Mutex;

const SHARDS: usize = 64;

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
            .or_insert_with(|| UserEntry { conns: Vec::new() });
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
        });
        entry.conns.len() == 1
    }

    /// Returns true when the user has no connection left (they went offline).
    pub(crate) fn detach(&self, user: UserId, conn_id: u64) -> bool {
        let mut shard = self.shard(user);
        if let Some(entry) = shard.users.get_mut(&user) {
            let before = entry.conns.len();
            entry.conns.retain(|a| a.conn_id != conn_id);
            if entry.conns.is_empty() {
                shard.users.remove(&user);
                return before > 0;
            }
        }
        false
    }

    fn push_all(&self, users: &[UserId], frame: ServerFrame) {
        let frame = frame.to_bytes(0);
        for user in users {
            self.push_to(*user, &frame, None);
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
                Pushed::Queued => metrics::counter!("natter_pushes_total").increment(1),
                Pushed::SlowConsumer => {
                    tracing::info!(user, session = a.session_id, "slow consumer disconnected")
                }
                Pushed::Gone | Pushed::TooLarge => {}
            }
        }
    }

    fn revoke(&self, sessions: &[SessionId], reason: RevokeReason) {
        // Revocations are rare (logins past the device limit, password
        // changes), so a scan of every shard is fine.
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            for entry in shard.users.values_mut() {
                entry.conns.retain(|a| {
                    if sessions.contains(&a.session_id) {
                        a.out.close(replaced(reason));
                        false
                    } else {
                        true
                    }
                });
            }
            shard.users.retain(|_, e| !e.conns.is_empty());
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
    };
    Close {
        reason,
        message: message.into(),
        flush: true,
        reconnect_after_ms: 0,
    }
}

impl EventSink for Registry {
    fn publish(&self, event: Event) {
        match event {
            Event::Message(c) => {
                let frame = ServerFrame::MessagePush(pb::MessagePush {
                    message: Some(convert::message(&c.message)),
                })
                .to_bytes(0);
                for user in c.members.iter() {
                    self.push_to(*user, &frame, c.origin);
                }
            }
            Event::Receipt {
                conversation_id,
                user_id,
                seq,
                to,
            } => self.push_all(
                &to,
                ServerFrame::ReceiptPush(pb::ReceiptPush {
                    conversation_id,
                    user_id,
                    seq,
                }),
            ),
            Event::Read {
                conversation_id,
                user_id,
                seq,
                to,
            } => self.push_all(
                &to,
                ServerFrame::ReadPush(pb::ReadPush {
                    conversation_id,
                    user_id,
                    seq,
                }),
            ),
            Event::Typing {
                conversation_id,
                user_id,
                to,
            } => self.push_all(
                &to,
                ServerFrame::TypingPush(pb::TypingPush {
                    conversation_id,
                    user_id,
                }),
            ),
            Event::Presence {
                user_id,
                online,
                to,
            } => self.push_all(
                &to,
                ServerFrame::PresencePush(pb::PresencePush { user_id, online }),
            ),
            Event::FriendRequest { request, to } => self.push_all(
                &to,
                ServerFrame::FriendRequestPush(pb::FriendRequestPush {
                    request: Some(convert::friend_request(&request)),
                }),
            ),
            Event::JoinRequest { request, to } => self.push_all(
                &to,
                ServerFrame::JoinRequestPush(pb::JoinRequestPush {
                    request: Some(convert::join_request(&request)),
                }),
            ),
            Event::Revoked { sessions, reason } => self.revoke(&sessions, reason),
        }
    }

    fn is_online(&self, user: UserId) -> bool {
        self.shard(user).users.contains_key(&user)
    }
}
