//! Rows to records, and the one way ids cross into SQL: PostgreSQL's
//! BIGINT is signed, the model's ids are not.

use crate::{
    BadValue, Body, ConversationKind, FriendRequestRecord, GroupRecord, JoinRequestRecord,
    MemberRecord, Page, Result, StoredMessage, UserRecord,
};
use tokio_postgres::Row;

/// An id or seq as a query parameter. Nothing stored is above i64::MAX, so
/// a larger one is clamped: no row has it, and nothing comes after it.
pub fn key(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

pub fn keys(v: &[u64]) -> Vec<i64> {
    v.iter().map(|&v| key(v)).collect()
}

/// A column the store wrote from a u64.
pub fn id(r: &Row, i: usize) -> u64 {
    r.get::<_, i64>(i) as u64
}

pub const MESSAGE_COLUMNS: &str = "m.conversation_id, m.seq, m.id, m.sender_id, m.client_msg_id, \
    m.created_at_ms, m.body_kind, m.body, m.mentions, m.mention_all";

/// An enum column (SMALLINT): a number no variant has is a corrupt row,
/// never another variant.
pub fn stored<T: TryFrom<i64, Error = BadValue>>(r: &Row, i: usize) -> Result<T> {
    Ok(T::try_from(r.get::<_, i16>(i) as i64)?)
}

/// A message read with [`MESSAGE_COLUMNS`] starting at column `at`.
pub fn message_at(r: &Row, at: usize) -> Result<StoredMessage> {
    let mentions: Vec<i64> = r.get(at + 8);
    Ok(StoredMessage {
        conversation_id: id(r, at),
        seq: id(r, at + 1),
        msg_id: id(r, at + 2),
        sender_id: id(r, at + 3),
        client_msg_id: r.get(at + 4),
        server_ts_ms: r.get(at + 5),
        body: Body {
            kind: stored(r, at + 6)?,
            content: r.get(at + 7),
        },
        mentions: mentions.into_iter().map(|u| u as u64).collect(),
        mention_all: r.get(at + 9),
    })
}

pub fn message(r: &Row) -> Result<StoredMessage> {
    message_at(r, 0)
}

pub const USER_COLUMNS: &str = "id, username, password_hash, disabled";

pub fn user(r: &Row) -> UserRecord {
    UserRecord {
        id: id(r, 0),
        username: r.get(1),
        password_hash: r.get(2),
        disabled: r.get(3),
    }
}

pub fn kind(v: i16) -> Result<ConversationKind> {
    Ok(ConversationKind::try_from(v as i64)?)
}

/// Reads a group with [`group_select`]'s columns.
pub fn group(r: &Row) -> Result<GroupRecord> {
    let role: Option<i16> = r.get(11);
    Ok(GroupRecord {
        id: id(r, 0),
        kind: stored(r, 1)?,
        name: r.get(2),
        notice: r.get(3),
        owner_id: id(r, 4),
        join_policy: stored(r, 5)?,
        muted_all: r.get(6),
        dismissed: r.get(7),
        member_count: r.get::<_, i32>(8).max(0) as u32,
        last_seq: id(r, 9),
        created_at_ms: r.get(10),
        my_role: role.map(|v| v as i64).map(TryFrom::try_from).transpose()?,
        invite_code: r.get(12),
    })
}

/// The select a group is read with; `$1` is the viewer (for `my_role`).
pub const GROUP_SELECT: &str = "SELECT g.conversation_id, c.kind, g.name, g.notice, g.owner_id,
    g.join_policy, g.muted_all, g.dismissed, g.member_count, c.last_seq, c.created_at_ms,
    (SELECT m.role FROM members m WHERE m.user_id = $1 AND m.conversation_id = g.conversation_id
        AND m.left_seq = 0), g.invite_code
    FROM groups g JOIN conversations c ON c.id = g.conversation_id";

pub const REQUEST_SELECT: &str =
    "SELECT r.id, r.from_id, f.username, r.to_id, t.username, r.message,
    r.status, r.reply, r.created_at_ms, r.decided_at_ms
    FROM friend_requests r JOIN users f ON f.id = r.from_id JOIN users t ON t.id = r.to_id";

pub fn request(r: &Row) -> Result<FriendRequestRecord> {
    Ok(FriendRequestRecord {
        id: id(r, 0),
        from: id(r, 1),
        from_name: r.get(2),
        to: id(r, 3),
        to_name: r.get(4),
        message: r.get(5),
        status: stored(r, 6)?,
        reply: r.get(7),
        created_at_ms: r.get(8),
        decided_at_ms: r.get(9),
    })
}

pub const JOIN_REQUEST_SELECT: &str =
    "SELECT j.conversation_id, j.user_id, u.username, j.message, j.created_at_ms
     FROM join_requests j JOIN users u ON u.id = j.user_id";

pub fn join_request(r: &Row) -> JoinRequestRecord {
    JoinRequestRecord {
        conversation_id: id(r, 0),
        user_id: id(r, 1),
        username: r.get(2),
        message: r.get(3),
        created_at_ms: r.get(4),
    }
}

pub fn member(r: &Row) -> Result<MemberRecord> {
    Ok(MemberRecord {
        user_id: id(r, 0),
        username: r.get(1),
        role: stored(r, 2)?,
        muted_until_ms: r.get(3),
        joined_at_ms: r.get(4),
    })
}

/// A row count as a LIMIT: a page larger than BIGINT is as good as unbounded.
pub fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// One row more than the page may hold, to know whether more follow.
pub fn fetch(page: Page) -> i64 {
    limit(page.items).saturating_add(1)
}

/// PostgreSQL text cannot hold NUL, and no stored name does: an argument
/// with one matches nothing, where sending it would fail the statement.
pub fn has_nul(s: &str) -> bool {
    s.contains('\0')
}
