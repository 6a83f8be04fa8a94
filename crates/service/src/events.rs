//! What the service announces to whoever holds sessions: on one node the
//! gateway's session registry, in a cluster a bus in front of it.

use natter_store::{Committed, ConversationId, SessionId, UserId};

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
}
