//! The gateway's one face to the cluster: what an event becomes for the
//! sessions that receive it (`Routed`, encoded once by `route`), and the
//! narrow view of this node's sessions a router needs (`LocalSessions`).
//! The cluster imports nothing else from the gateway, so it depends on this
//! interface rather than on the registry's implementation.

use crate::convert;
use bytes::Bytes;
use natter_proto::{pb, ServerFrame};
use natter_service::model::{ConversationId, SessionId, UserId};
use natter_service::{Event, RevokeReason};
use std::sync::{Arc, LazyLock};

/// Recorded per message: a handle, not a registry lookup per message (see
/// `src/server/metrics.rs`).
static DELIVERY: LazyLock<metrics::Histogram> =
    LazyLock::new(|| metrics::histogram!("natter_delivery_seconds"));

/// The sessions attached to this node, as the cluster sees them.
pub trait LocalSessions: Send + Sync + 'static {
    /// Hands a routed event to the sessions here.
    fn deliver(&self, routed: &Routed);

    /// Every user with a connection here.
    fn users(&self) -> Vec<UserId>;

    /// Whether `user` has a connection here.
    fn has(&self, user: UserId) -> bool;

    /// Connections attached here.
    fn connections(&self) -> usize;

    /// Asks up to `n` connections with nothing queued to reconnect to
    /// another node (GOING_AWAY naming `target()`, asked per connection);
    /// returns how many were asked.
    fn move_some(
        &self,
        n: usize,
        reconnect_after_ms: u32,
        target: &(dyn Fn() -> Option<(String, String)> + Sync),
    ) -> usize;
}

/// An event turned into what sessions receive: frames are encoded once,
/// here, whichever node's sessions they end up on.
#[derive(Clone, Debug)]
pub enum Routed {
    /// Queue `frame` on every session of `users`, except `skip`.
    Push {
        users: Arc<[UserId]>,
        frame: Bytes,
        skip: Option<SessionId>,
        /// A message's conversation and seq (pushes in a conversation
        /// should reach each session in seq order).
        order: Option<(ConversationId, u64)>,
    },
    /// Close the connections of these sessions of `user`.
    Revoke {
        user: UserId,
        sessions: Vec<SessionId>,
        reason: RevokeReason,
        /// Only connections attached at or before this time (ms since the
        /// epoch): a session attached on another node replaces the
        /// connections it had before, never one that attached after (a
        /// resume elsewhere that overtook the news of this attach on the
        /// bus). `None`: every connection of these sessions.
        attached_by_ms: Option<i64>,
    },
}

impl Routed {
    /// The users whose sessions this concerns.
    pub fn users(&self) -> &[UserId] {
        match self {
            Routed::Push { users, .. } => users,
            Routed::Revoke { user, .. } => std::slice::from_ref(user),
        }
    }
}

/// The frame telling a session that pushes may have been lost: Sync now.
pub fn sync_hint() -> Bytes {
    ServerFrame::SyncHintPush(pb::SyncHintPush {}).to_bytes(0)
}

/// Turns a service event into frames and their recipients.
pub fn route(event: Event) -> Routed {
    let push = |to: Vec<UserId>, frame: ServerFrame| Routed::Push {
        users: to.into(),
        frame: frame.to_bytes(0),
        skip: None,
        order: None,
    };
    match event {
        Event::Message(c) => {
            // From the message's timestamp (its arrival) to its push made
            // for the recipients: what a recipient waits beyond the network.
            let waited = natter_runtime::clock::now_ms() - c.message.server_ts_ms;
            DELIVERY.record(waited.max(0) as f64 / 1000.0);
            Routed::Push {
                frame: ServerFrame::MessagePush(pb::MessagePush {
                    message: Some(convert::message(&c.message)),
                })
                .to_bytes(0),
                order: Some((c.message.conversation_id, c.message.seq)),
                users: c.members,
                skip: c.origin,
            }
        }
        Event::Receipt {
            conversation_id,
            user_id,
            seq,
            to,
        } => push(
            to,
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
        } => push(
            to,
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
        } => push(
            to,
            ServerFrame::TypingPush(pb::TypingPush {
                conversation_id,
                user_id,
            }),
        ),
        Event::Presence {
            user_id,
            online,
            to,
        } => push(
            to,
            ServerFrame::PresencePush(pb::PresencePush { user_id, online }),
        ),
        Event::FriendRequest { request, to } => push(
            to,
            ServerFrame::FriendRequestPush(pb::FriendRequestPush {
                request: Some(convert::friend_request(&request)),
            }),
        ),
        Event::JoinRequest { request, to } => push(
            to,
            ServerFrame::JoinRequestPush(pb::JoinRequestPush {
                request: Some(convert::join_request(&request)),
            }),
        ),
        Event::Revoked {
            user,
            sessions,
            reason,
        } => Routed::Revoke {
            user,
            sessions,
            reason,
            attached_by_ms: None,
        },
    }
}
