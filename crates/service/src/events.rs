//! What the service announces to whoever holds sessions: on one node the
//! gateway's session registry, in a cluster a bus in front of it.

use natter_store::{
    Committed, ConversationId, FriendRequestRecord, JoinRequestRecord, SessionId, UserId,
};

#[derive(Clone, Debug)]
pub enum Event {
    /// A newly stored message: push it to every session of every member,
    /// except the session that sent it (it has the ACK).
    Message(Committed),
    /// `user_id` has every message of the conversation up to `seq`.
    Receipt {
        conversation_id: ConversationId,
        user_id: UserId,
        seq: u64,
        to: Vec<UserId>,
    },
    /// `user_id` has read the conversation up to `seq`: their own sessions
    /// move the cursor, a 1:1 peer shows "read".
    Read {
        conversation_id: ConversationId,
        user_id: UserId,
        seq: u64,
        to: Vec<UserId>,
    },
    /// Ephemeral: `user_id` is typing.
    Typing {
        conversation_id: ConversationId,
        user_id: UserId,
        to: Vec<UserId>,
    },
    /// Ephemeral: a user came online or went offline; `to` are their friends.
    Presence {
        user_id: UserId,
        online: bool,
        to: Vec<UserId>,
    },
    /// A friend request was made or answered.
    FriendRequest {
        request: FriendRequestRecord,
        to: Vec<UserId>,
    },
    /// Someone asks to join a group; `to` are its owner and admins.
    JoinRequest {
        request: JoinRequestRecord,
        to: Vec<UserId>,
    },
    /// These sessions are no longer valid: close their connections.
    Revoked {
        sessions: Vec<SessionId>,
        reason: RevokeReason,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevokeReason {
    /// The same device logged in again.
    Replaced,
    /// The device policy or a password change ended the session.
    Kicked,
}

/// Receives events. Must not block: implementations queue or drop.
pub trait EventSink: Send + Sync + 'static {
    fn publish(&self, event: Event);
    /// Whether the user has a session attached right now.
    fn is_online(&self, user: UserId) -> bool;
}
