//! Conversations and messages: seq assignment, idempotent append, sync,
//! history and delivery cursors.

use crate::{
    Body, BodyKind, ConversationId, ConversationKind, ConversationState, Delivered, HistoryPage,
    MemberState, NewMessage, Page, Result, StoreError, StoredMessage, SyncPage, Target, UserId,
};
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::collections::HashMap;

macro_rules! select_messages {
    ($($rest:literal),*) => {
        concat!(
            "SELECT conversation_id, seq, id, sender_id, client_msg_id, created_at_ms, body_kind, body FROM messages ",
            $($rest),*
        )
    };
}

fn message_row(r: &Row<'_>) -> rusqlite::Result<StoredMessage> {
    let kind: i64 = r.get(6)?;
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
    })
}

/// The outcome of an append inside the writer's transaction.
pub struct AppendOutcome {
    pub message: StoredMessage,
    pub duplicate: bool,
    pub members: Vec<UserId>,
}

pub fn append(conn: &Connection, new: &NewMessage) -> Result<AppendOutcome> {
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
            members: Vec::new(),
        });
    }
    let (conversation_id, members) = match new.target {
        Target::Peer(peer) => {
            let id = direct_conversation(conn, new.sender_id, peer, new.now_ms)?;
            (id, vec![new.sender_id.min(peer), new.sender_id.max(peer)])
        }
        Target::Conversation(id) => {
            let members = members_of(conn, id)?;
            if !members.contains(&new.sender_id) {
                return Err(StoreError::NotMember(id));
            }
            (id, members)
        }
    };
    // The seq is taken in the same transaction that stores the message: a
    // rollback returns it, a commit makes it permanent, so seqs stay dense.
    let seq: u64 = conn
        .prepare_cached(
            "UPDATE conversations SET last_seq = last_seq + 1, last_activity_ms = ?2
             WHERE id = ?1 RETURNING last_seq",
        )?
        .query_row(params![conversation_id, new.now_ms], |r| r.get(0))?;
    conn.prepare_cached(
        "INSERT INTO messages (conversation_id, seq, sender_id, client_msg_id, created_at_ms, body_kind, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        conversation_id,
        seq,
        new.sender_id,
        new.client_msg_id,
        new.now_ms,
        new.body.kind as i64,
        new.body.content
    ])?;
    Ok(AppendOutcome {
        message: StoredMessage {
            conversation_id,
            seq,
            msg_id: conn.last_insert_rowid() as u64,
            sender_id: new.sender_id,
            client_msg_id: new.client_msg_id.clone(),
            server_ts_ms: new.now_ms,
            body: new.body.clone(),
        },
        duplicate: false,
        members,
    })
}

/// The 1:1 conversation of two users, created on first use.
fn direct_conversation(
    conn: &Connection,
    a: UserId,
    b: UserId,
    now_ms: i64,
) -> Result<ConversationId> {
    if a == b {
        return Err(StoreError::Invalid(
            "cannot start a conversation with yourself",
        ));
    }
    let (lo, hi) = (a.min(b), a.max(b));
    let existing: Option<ConversationId> = conn
        .prepare_cached(
            "SELECT conversation_id FROM direct_pairs WHERE user_lo = ?1 AND user_hi = ?2",
        )?
        .query_row([lo, hi], |r| r.get(0))
        .optional()?;
    if let Some(id) = existing {
        return Ok(id);
    }
    let peer_ok: Option<bool> = conn
        .prepare_cached("SELECT disabled FROM users WHERE id = ?1")?
        .query_row([b], |r| r.get(0))
        .optional()?;
    if peer_ok != Some(false) {
        return Err(StoreError::NotFound("user"));
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
    let mut member =
        conn.prepare_cached("INSERT INTO members (user_id, conversation_id) VALUES (?1, ?2)")?;
    member.execute(params![lo, id])?;
    member.execute(params![hi, id])?;
    Ok(id)
}

fn members_of(conn: &Connection, conversation: ConversationId) -> Result<Vec<UserId>> {
    Ok(conn
        .prepare_cached("SELECT user_id FROM members WHERE conversation_id = ?1 ORDER BY user_id")?
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

fn is_member(conn: &Connection, user: UserId, conversation: ConversationId) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM members WHERE user_id = ?1 AND conversation_id = ?2")?
        .query_row([user, conversation], |_| Ok(()))
        .optional()?
        .is_some())
}

pub fn sync(
    conn: &Connection,
    user: UserId,
    cursors: &HashMap<ConversationId, u64>,
    limit: Page,
) -> Result<SyncPage> {
    let convs: Vec<(ConversationId, u64)> = conn
        .prepare_cached(
            "SELECT c.id, c.last_seq FROM members m JOIN conversations c ON c.id = m.conversation_id
             WHERE m.user_id = ?1 ORDER BY c.id",
        )?
        .query_map([user], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let sql = select_messages!("WHERE conversation_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3");
    let mut page = SyncPage::default();
    let mut bytes = 0;
    let mut full = false;
    for (id, last_seq) in convs {
        let cursor = cursors.get(&id).copied().unwrap_or(0);
        if last_seq > cursor && full {
            page.has_more = true;
        } else if last_seq > cursor {
            let room = limit.messages.saturating_sub(page.messages.len());
            let mut stmt = conn.prepare_cached(sql)?;
            let mut reached = cursor;
            for row in stmt.query_map(params![id, cursor, room as i64], message_row)? {
                let m = row?;
                if !page.messages.is_empty() && bytes + m.size_hint() > limit.bytes {
                    full = true;
                    break;
                }
                bytes += m.size_hint();
                reached = m.seq;
                page.messages.push(m);
            }
            full |= page.messages.len() >= limit.messages;
            page.has_more |= reached < last_seq;
        }
        page.conversations.push(ConversationState {
            id,
            kind: ConversationKind::Direct,
            last_seq,
            members: member_states(conn, id)?,
        });
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
    if !is_member(conn, user, conversation)? {
        return Err(StoreError::NotMember(conversation));
    }
    let before = if before_seq == 0 {
        i64::MAX
    } else {
        before_seq as i64
    };
    let sql =
        select_messages!("WHERE conversation_id = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3");
    let mut page = HistoryPage::default();
    let mut bytes = 0;
    let mut stmt = conn.prepare_cached(sql)?;
    for row in stmt.query_map(
        params![conversation, before, limit.messages as i64 + 1],
        message_row,
    )? {
        let m = row?;
        let over = !page.messages.is_empty() && bytes + m.size_hint() > limit.bytes;
        if over || page.messages.len() == limit.messages {
            page.has_more = true;
            break;
        }
        bytes += m.size_hint();
        page.messages.push(m);
    }
    Ok(page)
}

pub fn mark_delivered(
    conn: &Connection,
    user: UserId,
    conversation: ConversationId,
    seq: u64,
) -> Result<Option<Delivered>> {
    let last_seq: Option<u64> = conn
        .prepare_cached(
            "SELECT c.last_seq FROM conversations c JOIN members m ON m.conversation_id = c.id
             WHERE c.id = ?1 AND m.user_id = ?2",
        )?
        .query_row([conversation, user], |r| r.get(0))
        .optional()?;
    let Some(last_seq) = last_seq else {
        return Err(StoreError::NotMember(conversation));
    };
    let seq = seq.min(last_seq);
    let moved = conn
        .prepare_cached(
            "UPDATE members SET delivered_seq = ?3
             WHERE user_id = ?1 AND conversation_id = ?2 AND delivered_seq < ?3",
        )?
        .execute(params![user, conversation, seq])?;
    if moved == 0 {
        return Ok(None);
    }
    Ok(Some(Delivered {
        seq,
        members: members_of(conn, conversation)?,
    }))
}
