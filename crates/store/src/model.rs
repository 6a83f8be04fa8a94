//! Records the store reads and writes. These are domain types, not wire types:
//! the gateway converts them to protobuf at the edge.

use std::sync::Arc;

pub type UserId = u64;
pub type SessionId = u64;
pub type ConversationId = u64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    pub id: UserId,
    pub username: String,
    pub password_hash: String,
    pub disabled: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DevicePolicy {
    /// Refuse a login beyond the limit.
    Reject,
    /// Revoke the oldest sessions to make room.
    ReplaceOldest,
}

#[derive(Clone, Debug)]
pub struct NewSession {
    pub user_id: UserId,
    pub device_id: String,
    pub token_hash: [u8; 32],
    pub now_ms: i64,
    pub expires_at_ms: i64,
    pub policy: DevicePolicy,
    pub max_sessions: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionGrant {
    pub session_id: SessionId,
    /// Sessions revoked to make room (same device, or oldest under the policy).
    pub revoked: Vec<SessionId>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: SessionId,
    pub user_id: UserId,
    pub username: String,
    pub device_id: String,
    pub expires_at_ms: i64,
    pub revoked: bool,
    pub user_disabled: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    Text = 1,
    Custom = 2,
}

impl BodyKind {
    pub fn from_i64(v: i64) -> Option<Self> {
        match v {
            1 => Some(BodyKind::Text),
            2 => Some(BodyKind::Custom),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Body {
    pub kind: BodyKind,
    pub content: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The 1:1 conversation with this user, created on first use.
    Peer(UserId),
    Conversation(ConversationId),
}

#[derive(Clone, Debug)]
pub struct NewMessage {
    pub sender_id: UserId,
    pub target: Target,
    pub client_msg_id: String,
    pub body: Body,
    pub now_ms: i64,
    /// Passed through to the commit feed untouched (the sending session), so
    /// fan-out can skip the session that already has the ACK.
    pub origin: Option<SessionId>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    pub conversation_id: ConversationId,
    pub seq: u64,
    pub msg_id: u64,
    pub sender_id: UserId,
    pub client_msg_id: String,
    pub server_ts_ms: i64,
    pub body: Body,
}

impl StoredMessage {
    /// Roughly the bytes this message takes on the wire; pages are cut by it.
    pub fn size_hint(&self) -> usize {
        self.body.content.len() + self.client_msg_id.len() + 64
    }
}

/// How much one page of messages may hold: whichever bound is hit first.
/// A page always holds at least one message if any is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    pub messages: usize,
    pub bytes: usize,
}

#[derive(Clone, Debug)]
pub struct Appended {
    pub message: Arc<StoredMessage>,
    pub duplicate: bool,
}

/// A newly committed message and who should hear of it.
#[derive(Clone, Debug)]
pub struct Committed {
    pub message: Arc<StoredMessage>,
    pub members: Arc<[UserId]>,
    pub origin: Option<SessionId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConversationKind {
    Direct = 1,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberState {
    pub user_id: UserId,
    pub delivered_seq: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConversationState {
    pub id: ConversationId,
    pub kind: ConversationKind,
    pub last_seq: u64,
    pub members: Vec<MemberState>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncPage {
    pub conversations: Vec<ConversationState>,
    pub messages: Vec<StoredMessage>,
    pub has_more: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryPage {
    pub messages: Vec<StoredMessage>,
    pub has_more: bool,
}

/// A delivered cursor that moved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    pub seq: u64,
    pub members: Vec<UserId>,
}
