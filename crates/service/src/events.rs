//! What the service announces to whoever holds sessions: on one node the
//! gateway's session registry, in a cluster a bus in front of it. Three
//! interfaces, so a cluster can put Redis behind each: [`EventSink`] routes
//! events to sessions wherever they are, [`Presence`] is told of every
//! session that attaches or detaches here and answers who is online, and
//! [`Limiter`] keeps per-user rates across nodes.

use async_trait::async_trait;
use natter_domain::{
    Committed, ConversationId, FriendRequestRecord, JoinRequestRecord, SessionId, StoredMessage,
    UserId,
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
    /// These sessions of `user` are no longer valid: close their connections.
    Revoked {
        user: UserId,
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
    /// The user logged the session out (from another connection).
    LoggedOut,
    /// An administrator disabled or banned the account.
    Disabled,
    /// An administrator ended the account's sessions (or reset its password).
    Admin,
}

/// What one session hears, as data: the pushes of the frame protocol for
/// an edge that does not speak it (HTTP's event stream), in the order the
/// session's queue received them.
#[derive(Clone, Debug, PartialEq)]
pub enum Push {
    Message(StoredMessage),
    /// `user_id` has every message of the conversation up to `seq`.
    Delivered {
        conversation_id: ConversationId,
        user_id: UserId,
        seq: u64,
    },
    /// `user_id` has read the conversation up to `seq`.
    Read {
        conversation_id: ConversationId,
        user_id: UserId,
        seq: u64,
    },
    Typing {
        conversation_id: ConversationId,
        user_id: UserId,
    },
    Presence {
        user_id: UserId,
        online: bool,
    },
    FriendRequest(FriendRequestRecord),
    JoinRequest(JoinRequestRecord),
    /// Pushes may have been lost (a cluster's bus was away): sync now.
    Sync,
    /// The last push: the session is detached here, and why (the frame
    /// protocol's Disconnect reason without its prefix, e.g. `LOGGED_OUT`).
    Disconnect {
        reason: &'static str,
        message: String,
        reconnect_after_ms: u32,
    },
}

/// Receives events. Must not block: implementations queue or drop.
pub trait EventSink: Send + Sync + 'static {
    fn publish(&self, event: Event);
}

/// The directory of attached sessions.
#[async_trait]
pub trait Presence: Send + Sync + 'static {
    /// A session of `user` attached on this node; `first_here` when the user
    /// had no other session on this node. Any other connection of the same
    /// session, here or on another node, is closed as REPLACED.
    async fn attached(&self, user: UserId, session: SessionId, first_here: bool);
    /// A connection of `user` closed; `last_here` when it was their last on
    /// this node.
    async fn detached(&self, user: UserId, last_here: bool);
    /// Which of `users` have a session attached anywhere. A directory it
    /// cannot reach is an error; callers fall back to "offline".
    async fn online(&self, users: &[UserId]) -> Result<Vec<bool>, PresenceUnknown>;
}

/// Per-user allowances that hold wherever the user's sessions are: on one
/// node a local token bucket, in a cluster one shared through Redis for
/// users with sessions on several nodes.
#[async_trait]
pub trait Limiter: Send + Sync + 'static {
    /// Takes one message from `user`'s send allowance; `Err(wait)` when it
    /// is spent.
    async fn take_send(&self, user: UserId) -> Result<(), std::time::Duration>;
    /// Gives back what `take_send` took, for a Send the store refused
    /// (UNAVAILABLE): it will be sent again, and must not cost twice.
    fn give_back_send(&self, user: UserId);
}

/// On one node, each user's own bucket here is the whole send limit.
#[async_trait]
impl Limiter for natter_runtime::limits::SendBuckets {
    async fn take_send(&self, user: UserId) -> Result<(), std::time::Duration> {
        self.take(user)
    }

    fn give_back_send(&self, user: UserId) {
        self.give_back(user)
    }
}

/// The presence directory could not be asked (a cluster's Redis is away).
#[derive(Debug, thiserror::Error)]
#[error("presence is unknown: {0}")]
pub struct PresenceUnknown(pub String);
