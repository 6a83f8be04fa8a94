//! Records the store reads and writes. These are domain types, not wire types:
//! the gateway converts them to protobuf at the edge.

use std::sync::Arc;

pub use crate::admin::*;
pub use crate::email::*;

/// A stored number no variant has: the database is damaged, or was
/// written by something else. Reading it is an error, never another kind.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("corrupt {what} in the database: {value}")]
pub struct BadValue {
    pub what: &'static str,
    pub value: i64,
}

/// The one decoding of an enum column: each number its variant, any other a
/// [`BadValue`].
macro_rules! stored_enum {
    ($ty:ident, $what:literal, { $($n:literal => $variant:ident),+ $(,)? }) => {
        impl TryFrom<i64> for $ty {
            type Error = BadValue;
            fn try_from(v: i64) -> Result<Self, BadValue> {
                match v {
                    $($n => Ok($ty::$variant),)+
                    _ => Err(BadValue { what: $what, value: v }),
                }
            }
        }
    };
}

pub type UserId = u64;
pub type SessionId = u64;
pub type ConversationId = u64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    pub id: UserId,
    pub username: String,
    pub password_hash: String,
    pub disabled: bool,
    /// When a ban ends (with `disabled`); `None`: disabled until enabled.
    pub banned_until_ms: Option<i64>,
}

/// What a login beyond `session.max_devices` does (the setting
/// `session.device_policy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
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
    pub user_banned_until_ms: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    Text = 1,
    Custom = 2,
    /// A reference to an uploaded file: JSON metadata.
    File = 3,
    /// Written by the store: a membership change or other event, as JSON.
    System = 4,
    /// A recalled message's tombstone; its content is empty.
    Recalled = 5,
}

stored_enum!(BodyKind, "body kind", {
    1 => Text,
    2 => Custom,
    3 => File,
    4 => System,
    5 => Recalled,
});

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

/// The start of every system event's client_msg_id; refused in clients'
/// ids, so no client can take the id of an event before it is written.
pub const SYSTEM_ID_PREFIX: &str = "system-";

#[derive(Clone, Debug)]
pub struct NewMessage {
    pub sender_id: UserId,
    pub target: Target,
    pub client_msg_id: String,
    pub body: Body,
    /// Group and room members to flag as mentioned (others are ignored).
    pub mentions: Vec<UserId>,
    /// Mention everyone; owner and admins only.
    pub mention_all: bool,
    /// Whether a 1:1 message needs the two to be friends.
    pub friends_only: bool,
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
    pub mentions: Vec<UserId>,
    pub mention_all: bool,
}

impl StoredMessage {
    /// Roughly the bytes this message takes on the wire; pages are cut by it.
    pub fn size_hint(&self) -> usize {
        self.body.content.len() + self.client_msg_id.len() + 10 * self.mentions.len() + 64
    }
}

/// How much one page may hold: at most `items` items (messages, summaries,
/// friends, groups, ...) and about `bytes` bytes on the wire, whichever
/// bound is hit first. A page always holds at least one item if any is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    pub items: usize,
    pub bytes: usize,
}

impl Page {
    /// Cuts `rows`, fetched as up to `items + 1` in order, to this page;
    /// says whether more follow.
    pub fn cut<T>(&self, rows: Vec<T>, size: impl Fn(&T) -> usize) -> (Vec<T>, bool) {
        let mut out = Vec::with_capacity(rows.len().min(self.items));
        let mut bytes = 0;
        for r in rows {
            let s = size(&r);
            if out.len() >= self.items || (!out.is_empty() && bytes + s > self.bytes) {
                return (out, true);
            }
            bytes += s;
            out.push(r);
        }
        (out, false)
    }
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
    Group = 2,
    Room = 3,
}

stored_enum!(ConversationKind, "conversation kind", {
    1 => Direct,
    2 => Group,
    3 => Room,
});

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberState {
    pub user_id: UserId,
    pub delivered_seq: u64,
}

impl ConversationState {
    pub fn size_hint(&self) -> usize {
        48 + 24 * self.members.len()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConversationState {
    pub id: ConversationId,
    pub kind: ConversationKind,
    pub last_seq: u64,
    /// 1:1 only: both members and their delivered cursors.
    pub members: Vec<MemberState>,
    /// The user sees messages after this seq only.
    pub joined_seq: u64,
    /// Non-zero once the user left: nothing after it is theirs.
    pub left_seq: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncPage {
    /// The conversations this page covered, in id order.
    pub conversations: Vec<ConversationState>,
    pub messages: Vec<StoredMessage>,
    pub has_more: bool,
    /// With `has_more`: every conversation up to this id is complete; the
    /// next page starts after it.
    pub next_after: ConversationId,
    /// On the last page of a pass (`has_more` false), as many as fit.
    pub pending_friend_requests: Vec<FriendRequestRecord>,
}

impl SyncPage {
    /// The `after_conversation_id` of the next request: `next_after` while
    /// more is waiting, else 0 (the next sync starts a new pass). What
    /// every edge answers as `next_after_conversation_id`.
    pub fn resume_after(&self) -> ConversationId {
        if self.has_more {
            self.next_after
        } else {
            0
        }
    }
}

/// Friend requests listed on one sync page at most.
pub const SYNC_FRIEND_REQUESTS: usize = 50;

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

// ---- friends

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestStatus {
    Pending = 1,
    Accepted = 2,
    Rejected = 3,
}

stored_enum!(RequestStatus, "friend request status", {
    1 => Pending,
    2 => Accepted,
    3 => Rejected,
});

impl FriendRequestRecord {
    pub fn size_hint(&self) -> usize {
        self.from_name.len() + self.to_name.len() + self.message.len() + self.reply.len() + 64
    }
}

/// One page of a user's friend requests, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FriendRequestPage {
    pub incoming: Vec<FriendRequestRecord>,
    pub outgoing: Vec<FriendRequestRecord>,
    pub has_more: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FriendRequestRecord {
    pub id: u64,
    pub from: UserId,
    pub from_name: String,
    pub to: UserId,
    pub to_name: String,
    pub message: String,
    pub status: RequestStatus,
    pub reply: String,
    pub created_at_ms: i64,
    pub decided_at_ms: i64,
}

/// What became of a friend request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FriendRequestOutcome {
    pub request: FriendRequestRecord,
    /// Tell both users. False when the recipient has blocked the sender: the
    /// request then waits unseen, and the sender is not told why.
    pub notify: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FriendRecord {
    pub user_id: UserId,
    pub username: String,
    pub remark: String,
    pub since_ms: i64,
    pub blocked: bool,
}

impl FriendRecord {
    pub fn size_hint(&self) -> usize {
        self.username.len() + self.remark.len() + 40
    }
}

/// One page of a user's friends, by username.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FriendList {
    pub friends: Vec<FriendRecord>,
    /// Users this user has blocked: (id, name); on the first page only.
    pub blocked: Vec<(UserId, String)>,
    pub has_more: bool,
}

// ---- groups and rooms

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Member = 1,
    Admin = 2,
    Owner = 3,
}

stored_enum!(Role, "role", {
    1 => Member,
    2 => Admin,
    3 => Owner,
});

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinPolicy {
    Open = 1,
    Approval = 2,
}

stored_enum!(JoinPolicy, "join policy", {
    1 => Open,
    2 => Approval,
});

impl GroupRecord {
    pub fn size_hint(&self) -> usize {
        self.name.len() + self.notice.len() + 96
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRecord {
    pub id: ConversationId,
    pub kind: ConversationKind,
    pub name: String,
    pub notice: String,
    pub owner_id: UserId,
    pub join_policy: JoinPolicy,
    pub muted_all: bool,
    pub dismissed: bool,
    pub member_count: u32,
    pub last_seq: u64,
    pub created_at_ms: i64,
    /// The asking user's role, if a member.
    pub my_role: Option<Role>,
    /// What a group's joiners must present (rooms need none). The store
    /// returns it always; who may see it is `invite_code_visible`.
    pub invite_code: String,
}

impl GroupRecord {
    /// Owners and admins see a group's invite code, and so do the members
    /// of an OPEN group (who may invite anyway). Nobody else does.
    pub fn invite_code_visible(&self) -> bool {
        match self.my_role {
            Some(Role::Owner | Role::Admin) => true,
            Some(Role::Member) => self.join_policy == JoinPolicy::Open,
            None => false,
        }
    }
}

#[derive(Clone, Debug)]
pub struct NewGroup {
    pub creator: UserId,
    pub kind: ConversationKind,
    pub name: String,
    pub notice: String,
    pub join_policy: JoinPolicy,
    pub members: Vec<UserId>,
    /// The group's invite code (see `GroupRecord::invite_code`).
    pub invite_code: String,
    pub now_ms: i64,
}

/// Limits the service sets on group changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupLimits {
    pub max_members: u32,
    /// Messages before the join point a new room member may read.
    pub room_history: u32,
}

impl MemberRecord {
    pub fn size_hint(&self) -> usize {
        self.username.len() + 40
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberRecord {
    pub user_id: UserId,
    pub username: String,
    pub role: Role,
    pub muted_until_ms: i64,
    pub joined_at_ms: i64,
}

impl JoinRequestRecord {
    pub fn size_hint(&self) -> usize {
        self.username.len() + self.message.len() + 40
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinRequestRecord {
    pub conversation_id: ConversationId,
    pub user_id: UserId,
    pub username: String,
    pub message: String,
    pub created_at_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JoinOutcome {
    Joined,
    /// Approval needed: the request, and the owner and admins to tell.
    Pending {
        request: JoinRequestRecord,
        approvers: Vec<UserId>,
    },
}

/// A change to a group or room made by one of its members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupAction {
    Invite(Vec<UserId>),
    Leave,
    Kick(UserId),
    SetRole(UserId, Role),
    Transfer(UserId),
    /// Muted until this time; 0 unmutes.
    Mute(UserId, i64),
    Update {
        name: Option<String>,
        notice: Option<String>,
        join_policy: Option<JoinPolicy>,
        muted_all: Option<bool>,
        /// A new invite code: the old one stops working.
        invite_code: Option<String>,
    },
    Dismiss,
    RespondJoin(UserId, bool),
}

// ---- conversation list and read state

/// Bytes of a last message kept in a conversation summary.
pub const PREVIEW_BYTES: usize = 200;

impl ConversationSummary {
    pub fn size_hint(&self) -> usize {
        self.title.len() + self.last_message.as_ref().map_or(0, |m| m.size_hint()) + 96
    }

    /// Cuts the last message down to a preview: text to its first
    /// [`PREVIEW_BYTES`] (at a character boundary), other kinds to nothing
    /// when longer (their JSON would not survive a cut).
    pub fn truncate_preview(&mut self) {
        let Some(m) = self.last_message.as_mut() else {
            return;
        };
        let content = &mut m.body.content;
        if content.len() <= PREVIEW_BYTES {
            return;
        }
        let mut end = match m.body.kind {
            BodyKind::Text => PREVIEW_BYTES,
            _ => 0,
        };
        while !content.is_char_boundary(end) {
            end -= 1;
        }
        content.truncate(end);
        self.preview_truncated = true;
    }
}

/// Where a page of the conversation list starts: before this activity time
/// and id (the list runs newest first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Before {
    pub activity_ms: i64,
    pub id: ConversationId,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConversationSummary {
    pub id: ConversationId,
    pub kind: ConversationKind,
    pub title: String,
    pub peer: Option<UserId>,
    pub last_seq: u64,
    pub read_seq: u64,
    pub unread: u32,
    pub mentioned: bool,
    pub last_message: Option<StoredMessage>,
    /// The last message is a preview cut short (see `truncate_preview`).
    pub preview_truncated: bool,
    pub last_activity_ms: i64,
}

/// A read cursor that moved, and who hears of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadMoved {
    pub seq: u64,
    /// The user (for their other devices) and, in a 1:1, the peer.
    pub notify: Vec<UserId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_enums_decode_every_variant_and_refuse_anything_else() {
        for k in [
            BodyKind::Text,
            BodyKind::Custom,
            BodyKind::File,
            BodyKind::System,
            BodyKind::Recalled,
        ] {
            assert_eq!(BodyKind::try_from(k as i64), Ok(k));
        }
        for k in [
            ConversationKind::Direct,
            ConversationKind::Group,
            ConversationKind::Room,
        ] {
            assert_eq!(ConversationKind::try_from(k as i64), Ok(k));
        }
        for k in [
            RequestStatus::Pending,
            RequestStatus::Accepted,
            RequestStatus::Rejected,
        ] {
            assert_eq!(RequestStatus::try_from(k as i64), Ok(k));
        }
        for k in [Role::Member, Role::Admin, Role::Owner] {
            assert_eq!(Role::try_from(k as i64), Ok(k));
        }
        for k in [JoinPolicy::Open, JoinPolicy::Approval] {
            assert_eq!(JoinPolicy::try_from(k as i64), Ok(k));
        }
        // Values that used to fall back to a default kind.
        fn bad<T>(what: &'static str, value: i64) -> Result<T, BadValue> {
            Err(BadValue { what, value })
        }
        assert_eq!(BodyKind::try_from(0), bad("body kind", 0));
        assert_eq!(BodyKind::try_from(6), bad("body kind", 6));
        assert_eq!(ConversationKind::try_from(9), bad("conversation kind", 9));
        assert_eq!(RequestStatus::try_from(0), bad("friend request status", 0));
        assert_eq!(Role::try_from(-1), bad("role", -1));
        assert_eq!(JoinPolicy::try_from(0), bad("join policy", 0));
        assert_eq!(
            BodyKind::try_from(7).unwrap_err().to_string(),
            "corrupt body kind in the database: 7"
        );
    }

    #[test]
    fn pages_cut_by_count_and_bytes_and_keep_one() {
        let p = Page {
            items: 3,
            bytes: 10,
        };
        let size = |n: &usize| *n;
        // (rows fetched, kept, more)
        let table: &[(&[usize], &[usize], bool)] = &[
            (&[], &[], false),
            (&[1, 2], &[1, 2], false),
            (&[1, 2, 3, 4], &[1, 2, 3], true),
            (&[4, 4, 4], &[4, 4], true),
            (&[50, 1], &[50], true),
            (&[5, 5], &[5, 5], false),
        ];
        for (rows, kept, more) in table {
            assert_eq!(
                p.cut(rows.to_vec(), size),
                (kept.to_vec(), *more),
                "{rows:?}"
            );
        }
    }

    #[test]
    fn previews_are_cut_at_characters_and_json_is_dropped() {
        let summary = |kind, content: String| ConversationSummary {
            id: 1,
            kind: ConversationKind::Direct,
            title: String::new(),
            peer: None,
            last_seq: 1,
            read_seq: 0,
            unread: 1,
            mentioned: false,
            last_message: Some(StoredMessage {
                conversation_id: 1,
                seq: 1,
                msg_id: 1,
                sender_id: 1,
                client_msg_id: "c".into(),
                server_ts_ms: 0,
                body: Body { kind, content },
                mentions: vec![],
                mention_all: false,
            }),
            preview_truncated: false,
            last_activity_ms: 0,
        };
        let mut s = summary(BodyKind::Text, "é".repeat(150));
        s.truncate_preview();
        let c = &s.last_message.as_ref().unwrap().body.content;
        assert!(c.len() <= PREVIEW_BYTES && c.len() >= PREVIEW_BYTES - 1 && s.preview_truncated);
        let mut s = summary(
            BodyKind::Custom,
            format!("{{\"x\":\"{}\"}}", "y".repeat(300)),
        );
        s.truncate_preview();
        assert_eq!(s.last_message.as_ref().unwrap().body.content, "");
        let mut s = summary(BodyKind::Text, "short".into());
        s.truncate_preview();
        assert!(!s.preview_truncated);
    }
}
