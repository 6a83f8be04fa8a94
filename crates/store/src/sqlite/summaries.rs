//! The conversation list: every conversation of a user with its last
//! message, read cursor, unread count and mention flag, newest first.

use super::messages::{message_row, select_messages};
use crate::{Before, ConversationKind, ConversationSummary, Page, Result, UserId};
use rusqlite::{params, Connection, OptionalExtension};

/// Unread counts stop here; a client shows "9999+".
const MAX_UNREAD: i64 = 9999;

/// One membership row: id, kind, last seq, last activity, read, joined, name.
type Row = (u64, i64, u64, i64, u64, u64, Option<String>);

pub fn conversations(
    conn: &Connection,
    user: UserId,
    before: Option<Before>,
    page: Page,
) -> Result<(Vec<ConversationSummary>, bool)> {
    let before = before.unwrap_or(Before {
        activity_ms: i64::MAX,
        id: u64::MAX,
    });
    let rows: Vec<Row> = conn
        .prepare_cached(
            "SELECT c.id, c.kind, c.last_seq, c.last_activity_ms, m.read_seq, m.joined_seq, g.name
             FROM members m JOIN conversations c ON c.id = m.conversation_id
             LEFT JOIN groups g ON g.conversation_id = c.id
             WHERE m.user_id = ?1 AND m.left_seq = 0
               AND (c.last_activity_ms < ?2 OR (c.last_activity_ms = ?2 AND c.id < ?3))
             ORDER BY c.last_activity_ms DESC, c.id DESC LIMIT ?4",
        )?
        .query_map(
            params![
                user,
                before.activity_ms,
                before.id.min(i64::MAX as u64),
                page.items as i64 + 1
            ],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            },
        )?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, kind, last_seq, last_activity_ms, read_seq, joined_seq, name) in rows {
        let kind = ConversationKind::from_i64(kind).unwrap_or(ConversationKind::Direct);
        let read = read_seq.max(joined_seq);
        let (title, peer) = match (kind, name) {
            (ConversationKind::Direct, _) => {
                let peer: Option<(UserId, String)> = conn
                    .prepare_cached(
                        "SELECT u.id, u.username FROM members m JOIN users u ON u.id = m.user_id
                         WHERE m.conversation_id = ?1 AND m.user_id != ?2",
                    )?
                    .query_row([id, user], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                match peer {
                    Some((p, name)) => (name, Some(p)),
                    None => (String::new(), None),
                }
            }
            (_, name) => (name.unwrap_or_default(), None),
        };
        let unread: u32 = conn
            .prepare_cached(
                "SELECT COUNT(*) FROM (SELECT 1 FROM messages
                 WHERE conversation_id = ?1 AND seq > ?2 AND sender_id != ?3 AND body_kind NOT IN (4, 5)
                 LIMIT ?4)",
            )?
            .query_row(params![id, read, user, MAX_UNREAD], |r| r.get(0))?;
        let mentioned = unread > 0
            && conn
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM mentions WHERE user_id = ?3 AND conversation_id = ?1 AND seq > ?2)
                         OR EXISTS (SELECT 1 FROM messages WHERE conversation_id = ?1 AND seq > ?2
                                    AND mention_all = 1 AND sender_id != ?3)",
                )?
                .query_row(params![id, read, user], |r| r.get::<_, bool>(0))?;
        let last_message = if last_seq > joined_seq {
            conn.prepare_cached(select_messages!("WHERE conversation_id = ?1 AND seq = ?2"))?
                .query_row(params![id, last_seq], message_row)
                .optional()?
        } else {
            None
        };
        let mut summary = ConversationSummary {
            id,
            kind,
            title,
            peer,
            last_seq,
            read_seq: read,
            unread,
            mentioned,
            last_message,
            preview_truncated: false,
            last_activity_ms,
        };
        summary.truncate_preview();
        out.push(summary);
    }
    Ok(page.cut(out, ConversationSummary::size_hint))
}
