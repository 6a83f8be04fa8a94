//! Conversations and messages: seq assignment, idempotent append, sync,
//! history, delivery and read cursors, recall, and the system events that
//! record changes in a conversation's own sequence.

use super::convs::{ConvCache, ConvInfo};
use super::writer::Tx;
use crate::{
    Body, BodyKind, Committed, ConversationId, ConversationKind, ConversationState, Delivered,
    FriendRequestRecord, HistoryPage, MemberState, NewMessage, Page, ReadMoved, Result, Role,
    StoreError, StoredMessage, SyncPage, Target, UserId, SYNC_FRIEND_REQUESTS, SYSTEM_ID_PREFIX,
};
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::collections::HashMap;
use std::sync::Arc;

macro_rules! select_messages {
    ($($rest:literal),*) => {
        concat!(
            "SELECT conversation_id, seq, id, sender_id, client_msg_id, created_at_ms, body_kind, body, mentions, mention_all FROM messages ",
            $($rest),*
        )
    };
}
pub(crate) use select_messages;

pub(crate) fn message_row(r: &Row<'_>) -> rusqlite::Result<StoredMessage> {
    let kind: i64 = r.get(6)?;
    let mentions: String = r.get(8)?;
    Ok(StoredMessage {
        conversation_id: r.get(0)?,
        seq: r.get(1)?,
        msg_id: r.get(2)?,
        sender_id: r.get(3)?,
        client_msg_id: r.get(4)?,
        server_ts_ms: r.get(5)?,
        body: Body {
            // Only this crate writes body_kind, from a BodyKind.
            kind: BodyKind::from_i64(kind).unwrap_or(BodyKind::Custom),
            content: r.get(7)?,
        },
        mentions: mentions.split(' ').filter_map(|s| s.parse().ok()).collect(),
        mention_all: r.get(9)?,
    })
}

/// The outcome of an append inside the writer's transaction.
pub struct AppendOutcome {
    pub message: StoredMessage,
    pub duplicate: bool,
    /// Who hears of a new message; `None` for a duplicate.
    pub members: Option<Arc<[UserId]>>,
}

pub fn append(tx: &mut Tx<'_>, new: &NewMessage) -> Result<AppendOutcome> {
    let conn = tx.conn;
    if let Some(message) = conn
        .prepare_cached(select_messages!(
            "WHERE sender_id = ?1 AND client_msg_id = ?2"
        ))?
        .query_row(params![new.sender_id, new.client_msg_id], message_row)
        .optional()?
    {
        return Ok(AppendOutcome {
            message,
            duplicate: true,
            members: None,
        });
    }
    let (conversation_id, members, mentions) = match new.target {
        Target::Peer(peer) => {
            no_mentions(new)?;
            may_message(tx.convs, conn, new.sender_id, peer, new.friends_only)?;
            let id = direct_conversation(tx.convs, conn, new.sender_id, peer, new.now_ms)?;
            let members: Arc<[UserId]> =
                Arc::new([new.sender_id.min(peer), new.sender_id.max(peer)]);
            (id, members, Vec::new())
        }
        Target::Conversation(id) => {
            let info = tx.convs.get(conn, id).map_err(|e| match e {
                StoreError::NotFound(_) => StoreError::NotMember(id),
                e => e,
            })?;
            let mentions = may_send(tx.convs, conn, &info, id, new)?;
            (id, info.members.clone(), mentions)
        }
    };
    let seq = tx.convs.next_seq(conn, conversation_id, new.now_ms)?;
    let message = StoredMessage {
        conversation_id,
        seq,
        msg_id: 0,
        sender_id: new.sender_id,
        client_msg_id: new.client_msg_id.clone(),
        server_ts_ms: new.now_ms,
        body: new.body.clone(),
        mentions,
        mention_all: new.mention_all,
    };
    let message = insert(conn, message)?;
    if !message.mentions.is_empty() {
        let mut flag = conn.prepare_cached(
            "INSERT OR IGNORE INTO mentions (user_id, conversation_id, seq) VALUES (?1, ?2, ?3)",
        )?;
        for u in &message.mentions {
            flag.execute(params![u, conversation_id, seq])?;
        }
    }
    Ok(AppendOutcome {
        message,
        duplicate: false,
        members: Some(members),
    })
}

/// Stores a message whose seq the caller has taken; returns it with its id.
fn insert(conn: &Connection, mut m: StoredMessage) -> Result<StoredMessage> {
    let mentions = m
        .mentions
        .iter()
        .map(|u| u.to_string())
        .collect::<Vec<_>>()
        .join(" ");
    conn.prepare_cached(
        "INSERT INTO messages (conversation_id, seq, sender_id, client_msg_id, created_at_ms, body_kind, body, mentions, mention_all)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        m.conversation_id,
        m.seq,
        m.sender_id,
        m.client_msg_id,
        m.server_ts_ms,
        m.body.kind as i64,
        m.body.content,
        mentions,
        m.mention_all
    ])?;
    m.msg_id = conn.last_insert_rowid() as u64;
    Ok(m)
}

/// Why one user may not send a 1:1 message to another, if they may not. A
/// block and the friends-only rule give the same answer, so a blocked
/// sender cannot tell that they are blocked.
///
/// A yes is remembered in the writer's cache until friends, blocks or
/// accounts change.
fn may_message(
    convs: &mut ConvCache,
    conn: &Connection,
    from: UserId,
    to: UserId,
    friends_only: bool,
) -> Result<()> {
    if from == to {
        return Err(StoreError::Invalid(
            "cannot start a conversation with yourself",
        ));
    }
    if convs.is_allowed(from, to, friends_only) {
        return Ok(());
    }
    let row: Option<(bool, bool, bool)> = conn
        .prepare_cached(
            "SELECT u.disabled,
                    EXISTS (SELECT 1 FROM friends WHERE user_id = ?1 AND friend_id = ?2),
                    EXISTS (SELECT 1 FROM blocks WHERE user_id = ?1 AND blocked_id = ?2)
             FROM users u WHERE u.id = ?1",
        )?
        .query_row([to, from], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    match row {
        None | Some((true, _, _)) => Err(StoreError::NotFound("user")),
        Some((_, friends, blocked)) if blocked || (friends_only && !friends) => Err(
            StoreError::Forbidden("this user accepts messages from friends only".into()),
        ),
        Some(_) => {
            convs.set_allowed(from, to, friends_only);
            Ok(())
        }
    }
}

/// Mentions flag group and room members; a 1:1 has none.
fn no_mentions(new: &NewMessage) -> Result<()> {
    if !new.mentions.is_empty() || new.mention_all {
        return Err(StoreError::Invalid("mentions are for groups and rooms"));
    }
    Ok(())
}

/// Checks a send into an existing conversation and returns the mentions to
/// flag (members only).
fn may_send(
    convs: &mut ConvCache,
    conn: &Connection,
    info: &ConvInfo,
    id: ConversationId,
    new: &NewMessage,
) -> Result<Vec<UserId>> {
    let Some(&(role, muted_until)) = info.roles.get(&new.sender_id) else {
        return Err(StoreError::NotMember(id));
    };
    if info.kind == ConversationKind::Direct {
        let peer = info
            .members
            .iter()
            .copied()
            .find(|u| *u != new.sender_id)
            .unwrap_or(new.sender_id);
        no_mentions(new)?;
        may_message(convs, conn, new.sender_id, peer, new.friends_only)?;
        return Ok(Vec::new());
    }
    if info.dismissed {
        return Err(StoreError::Forbidden("the group has been dismissed".into()));
    }
    if muted_until > new.now_ms {
        return Err(StoreError::Muted(format!(
            "you are muted in this conversation until {muted_until} (ms since the epoch)"
        )));
    }
    if info.muted_all && role == Role::Member {
        return Err(StoreError::Muted(
            "only the owner and admins may send while the group is muted".into(),
        ));
    }
    if new.mention_all && role == Role::Member {
        return Err(StoreError::Forbidden(
            "only the owner and admins may mention everyone".into(),
        ));
    }
    let mut mentions: Vec<UserId> = new
        .mentions
        .iter()
        .copied()
        .filter(|u| info.roles.contains_key(u))
        .collect();
    mentions.sort_unstable();
    mentions.dedup();
    Ok(mentions)
}

/// Appends a server-written event (JSON) to a conversation in the caller's
/// transaction and queues it for `to`: the members after the change plus
/// anyone the change removed, so they see it too.
pub fn system_event(
    tx: &mut Tx<'_>,
    conversation: ConversationId,
    actor: UserId,
    event: serde_json::Value,
    now_ms: i64,
    to: Arc<[UserId]>,
) -> Result<StoredMessage> {
    let conn = tx.conn;
    let seq = tx.convs.next_seq(conn, conversation, now_ms)?;
    // Events are rare and the changes that make them read the conversation
    // row afterwards, so the row is brought up to date at once.
    tx.convs.flush_seqs(conn)?;
    let message = insert(
        conn,
        StoredMessage {
            conversation_id: conversation,
            seq,
            msg_id: 0,
            sender_id: actor,
            // (sender, client_msg_id) is unique; (conversation, seq) makes it so.
            client_msg_id: format!("{SYSTEM_ID_PREFIX}{conversation}-{seq}"),
            server_ts_ms: now_ms,
            body: Body {
                kind: BodyKind::System,
                content: event.to_string(),
            },
            mentions: Vec::new(),
            mention_all: false,
        },
    )?;
    tx.publish(Committed {
        message: Arc::new(message.clone()),
        members: to,
        origin: None,
    });
    Ok(message)
}

/// The 1:1 conversation of two users, created on first use. The caller has
/// checked that the peer exists and accepts the message.
fn direct_conversation(
    convs: &mut ConvCache,
    conn: &Connection,
    a: UserId,
    b: UserId,
    now_ms: i64,
) -> Result<ConversationId> {
    let (lo, hi) = (a.min(b), a.max(b));
    if let Some(id) = convs.pair(lo, hi) {
        return Ok(id);
    }
    let existing: Option<ConversationId> = conn
        .prepare_cached(
            "SELECT conversation_id FROM direct_pairs WHERE user_lo = ?1 AND user_hi = ?2",
        )?
        .query_row([lo, hi], |r| r.get(0))
        .optional()?;
    if let Some(id) = existing {
        convs.set_pair(lo, hi, id);
        return Ok(id);
    }
    conn.prepare_cached(
        "INSERT INTO conversations (kind, created_at_ms, last_activity_ms) VALUES (?1, ?2, ?2)",
    )?
    .execute(params![ConversationKind::Direct as i64, now_ms])?;
    let id = conn.last_insert_rowid() as ConversationId;
    conn.prepare_cached(
        "INSERT INTO direct_pairs (user_lo, user_hi, conversation_id) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![lo, hi, id])?;
    let mut member = conn.prepare_cached(
        "INSERT INTO members (user_id, conversation_id, joined_at_ms) VALUES (?1, ?2, ?3)",
    )?;
    member.execute(params![lo, id, now_ms])?;
    member.execute(params![hi, id, now_ms])?;
    convs.set_pair(lo, hi, id);
    Ok(id)
}

pub(crate) fn members_of(conn: &Connection, conversation: ConversationId) -> Result<Vec<UserId>> {
    Ok(conn
        .prepare_cached(
            "SELECT user_id FROM members WHERE conversation_id = ?1 AND left_seq = 0 ORDER BY user_id",
        )?
        .query_map([conversation], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?)
}

fn member_states(conn: &Connection, conversation: ConversationId) -> Result<Vec<MemberState>> {
    Ok(conn
        .prepare_cached(
            "SELECT user_id, delivered_seq FROM members WHERE conversation_id = ?1 ORDER BY user_id",
        )?
        .query_map([conversation], |r| {
            Ok(MemberState {
                user_id: r.get(0)?,
                delivered_seq: r.get(1)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?)
}

/// The seqs a member may see: after `joined_seq`, up to `left_seq` if they
/// left. `None` when the user was never a member.
fn visible_range(
    conn: &Connection,
    user: UserId,
    conversation: ConversationId,
) -> Result<Option<(u64, u64)>> {
    Ok(conn
        .prepare_cached(
            "SELECT m.joined_seq, CASE WHEN m.left_seq > 0 THEN m.left_seq ELSE c.last_seq END
             FROM members m JOIN conversations c ON c.id = m.conversation_id
             WHERE m.user_id = ?1 AND m.conversation_id = ?2",
        )?
        .query_row([user, conversation], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// One sync page; see [`crate::Store::sync`]. Everything on the page counts
/// against `limit.bytes` (states, messages, friend requests), except that a
/// conversation whose next message alone is larger than the budget gets a
/// page of its own holding just that message (one message always fits a
/// frame). A conversation is passed (`next_after`) only once all its due
/// messages are on a page.
pub fn sync(
    conn: &Connection,
    user: UserId,
    cursors: &HashMap<ConversationId, u64>,
    after: ConversationId,
    limit: Page,
) -> Result<SyncPage> {
    let convs: Vec<(ConversationId, i64, u64, u64, u64)> = conn
        .prepare_cached(
            "SELECT c.id, c.kind, c.last_seq, m.joined_seq, m.left_seq
             FROM members m JOIN conversations c ON c.id = m.conversation_id
             WHERE m.user_id = ?1 AND c.id > ?2 ORDER BY c.id",
        )?
        // A cursor past every id SQLite can store: nothing is after it.
        .query_map(params![user, after.min(i64::MAX as u64)], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let sql = select_messages!(
        "WHERE conversation_id = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq LIMIT ?4"
    );
    let mut page = SyncPage {
        next_after: after,
        ..SyncPage::default()
    };
    let mut used = 0;
    for (id, kind, last_seq, joined_seq, left_seq) in convs {
        let kind = ConversationKind::from_i64(kind).unwrap_or(ConversationKind::Direct);
        let state = ConversationState {
            id,
            kind,
            last_seq,
            members: if kind == ConversationKind::Direct {
                member_states(conn, id)?
            } else {
                Vec::new()
            },
            joined_seq,
            left_seq,
        };
        let state_bytes = state.size_hint();
        let alone = page.conversations.is_empty();
        if !alone && used + state_bytes > limit.bytes {
            page.has_more = true;
            break;
        }
        let cursor = cursors.get(&id).copied().unwrap_or(0).max(joined_seq);
        let upto = if left_seq > 0 { left_seq } else { last_seq };
        let mut msgs = Vec::new();
        let mut msg_bytes = 0;
        let mut reached = cursor;
        if upto > cursor {
            let room = limit.items.saturating_sub(page.messages.len());
            if room == 0 {
                page.has_more = true;
                break;
            }
            let mut stmt = conn.prepare_cached(sql)?;
            for row in stmt.query_map(params![id, cursor, upto, room as i64], message_row)? {
                let m = row?;
                let over = used + state_bytes + msg_bytes + m.size_hint() > limit.bytes;
                if over && !(alone && msgs.is_empty()) {
                    break;
                }
                msg_bytes += m.size_hint();
                reached = m.seq;
                msgs.push(m);
            }
        }
        let complete = reached >= upto;
        if msgs.is_empty() && !complete && !alone {
            // Nothing of it fits here: the next page starts with it.
            page.has_more = true;
            break;
        }
        // (A lone message above the budget has the page to itself.)
        used += state_bytes + msg_bytes;
        page.conversations.push(state);
        page.messages.extend(msgs);
        if !complete {
            page.has_more = true;
            break;
        }
        page.next_after = id;
    }
    if !page.has_more && used < limit.bytes {
        // The last page of a pass carries the friend requests waiting for
        // an answer, as many as fit.
        let pending = super::friends::pending_incoming(conn, user, SYNC_FRIEND_REQUESTS)?;
        let room = Page {
            items: SYNC_FRIEND_REQUESTS,
            bytes: (limit.bytes - used).min(limit.bytes / 4),
        };
        let (fit, _) = room.cut(pending, FriendRequestRecord::size_hint);
        // `cut` keeps one even when it is over the room: not here.
        if fit
            .iter()
            .map(FriendRequestRecord::size_hint)
            .sum::<usize>()
            <= room.bytes
        {
            page.pending_friend_requests = fit;
        }
    }
    Ok(page)
}

pub fn history(
    conn: &Connection,
    user: UserId,
    conversation: ConversationId,
    before_seq: u64,
    limit: Page,
) -> Result<HistoryPage> {
    let Some((joined, upto)) = visible_range(conn, user, conversation)? else {
        return Err(StoreError::NotMember(conversation));
    };
    let before = if before_seq == 0 {
        upto + 1
    } else {
        before_seq.min(upto + 1)
    };
    let sql = select_messages!(
        "WHERE conversation_id = ?1 AND seq < ?2 AND seq > ?3 ORDER BY seq DESC LIMIT ?4"
    );
    let mut page = HistoryPage::default();
    let mut bytes = 0;
    let mut stmt = conn.prepare_cached(sql)?;
    for row in stmt.query_map(
        params![conversation, before, joined, limit.items as i64 + 1],
        message_row,
    )? {
        let m = row?;
        let over = !page.messages.is_empty() && bytes + m.size_hint() > limit.bytes;
        if over || page.messages.len() == limit.items {
            page.has_more = true;
            break;
        }
        bytes += m.size_hint();
        page.messages.push(m);
    }
    Ok(page)
}

/// A per-member cursor into a conversation.
#[derive(Clone, Copy)]
enum Cursor {
    Delivered,
    Read,
}

/// Raises one of `user`'s cursors to `seq` (clamped to what they may see).
/// Returns the new value and who hears of it: in a 1:1 both members, in a
/// group the user alone (their other devices); `None` if it did not move.
fn raise_cursor(
    conn: &Connection,
    user: UserId,
    conversation: ConversationId,
    seq: u64,
    cursor: Cursor,
) -> Result<Option<(u64, Vec<UserId>)>> {
    let Some((_, upto)) = visible_range(conn, user, conversation)? else {
        return Err(StoreError::NotMember(conversation));
    };
    let seq = seq.min(upto);
    let sql = match cursor {
        Cursor::Delivered => {
            "UPDATE members SET delivered_seq = ?3
             WHERE user_id = ?1 AND conversation_id = ?2 AND delivered_seq < ?3"
        }
        Cursor::Read => {
            "UPDATE members SET read_seq = ?3
             WHERE user_id = ?1 AND conversation_id = ?2 AND read_seq < ?3"
        }
    };
    if conn
        .prepare_cached(sql)?
        .execute(params![user, conversation, seq])?
        == 0
    {
        return Ok(None);
    }
    let kind: i64 = conn
        .prepare_cached("SELECT kind FROM conversations WHERE id = ?1")?
        .query_row([conversation], |r| r.get(0))?;
    // In a group, telling every member of every member's cursor would be one
    // push per member per member.
    let notify = if kind == ConversationKind::Direct as i64 {
        members_of(conn, conversation)?
    } else {
        vec![user]
    };
    Ok(Some((seq, notify)))
}

pub fn mark_delivered(
    conn: &Connection,
    user: UserId,
    conversation: ConversationId,
    seq: u64,
) -> Result<Option<Delivered>> {
    Ok(
        raise_cursor(conn, user, conversation, seq, Cursor::Delivered)?
            .map(|(seq, members)| Delivered { seq, members }),
    )
}

pub fn mark_read(
    conn: &Connection,
    user: UserId,
    conversation: ConversationId,
    seq: u64,
) -> Result<Option<ReadMoved>> {
    Ok(raise_cursor(conn, user, conversation, seq, Cursor::Read)?
        .map(|(seq, notify)| ReadMoved { seq, notify }))
}

/// Turns a message into a tombstone and appends a "recalled" event.
pub fn recall(
    tx: &mut Tx<'_>,
    actor: UserId,
    conversation: ConversationId,
    seq: u64,
    window_ms: i64,
    now_ms: i64,
) -> Result<()> {
    let conn = tx.conn;
    let info = tx.convs.get(conn, conversation).map_err(|e| match e {
        StoreError::NotFound(_) => StoreError::NotMember(conversation),
        e => e,
    })?;
    let Some(&(role, _)) = info.roles.get(&actor) else {
        return Err(StoreError::NotMember(conversation));
    };
    let message = conn
        .prepare_cached(select_messages!("WHERE conversation_id = ?1 AND seq = ?2"))?
        .query_row(params![conversation, seq], message_row)
        .optional()?
        .ok_or(StoreError::NotFound("message"))?;
    match message.body.kind {
        BodyKind::Recalled => return Ok(()),
        BodyKind::System => return Err(StoreError::Invalid("system events cannot be recalled")),
        _ => {}
    }
    let moderator = info.kind != ConversationKind::Direct && role >= Role::Admin;
    if message.sender_id != actor && !moderator {
        return Err(StoreError::Forbidden(
            "only the sender or a group admin may recall a message".into(),
        ));
    }
    if now_ms - message.server_ts_ms > window_ms {
        return Err(StoreError::Forbidden(format!(
            "the recall window ({} s) has passed",
            window_ms / 1000
        )));
    }
    conn.prepare_cached(
        "UPDATE messages SET body_kind = ?3, body = '', mentions = '', mention_all = 0
         WHERE conversation_id = ?1 AND seq = ?2",
    )?
    .execute(params![conversation, seq, BodyKind::Recalled as i64])?;
    conn.prepare_cached("DELETE FROM mentions WHERE conversation_id = ?1 AND seq = ?2")?
        .execute(params![conversation, seq])?;
    let event = serde_json::json!({"type": "recalled", "actor_id": actor, "seq": seq});
    system_event(tx, conversation, actor, event, now_ms, info.members.clone())?;
    Ok(())
}

/// Current members of a conversation the user belongs to (for ephemeral
/// signals such as typing).
pub fn audience(
    conn: &Connection,
    user: UserId,
    conversation: ConversationId,
) -> Result<Vec<UserId>> {
    let members = members_of(conn, conversation)?;
    if members.binary_search(&user).is_err() {
        return Err(StoreError::NotMember(conversation));
    }
    Ok(members)
}
