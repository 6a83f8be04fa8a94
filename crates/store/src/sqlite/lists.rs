//! Lists: the conversation list (every conversation of a user with its last
//! message, read cursor, unread count and mention flag, newest first), the
//! groups of a user, the rooms to discover, and a group's members.

use super::messages::message_row;
use crate::rules::{self, ListRow};
use crate::{Before, ConversationId, ConversationSummary, Page, Result, StoredMessage, UserId};
use rusqlite::{params, Connection};
use std::collections::HashMap;

/// Unread counts stop here; a client shows "9999+".
const MAX_UNREAD: i64 = 9999;

/// A page of the list in two statements whatever its length: the
/// memberships with their titles and counts, then the last messages.
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
    let rows: Vec<ListRow> = conn
        .prepare_cached(
            "SELECT c.id, c.kind, c.last_seq, c.last_activity_ms, m.read_seq, m.joined_seq, g.name,
                    p.user_id, pu.username,
                    (SELECT COUNT(*) FROM (SELECT 1 FROM messages x
                        WHERE x.conversation_id = c.id AND x.seq > max(m.read_seq, m.joined_seq)
                          AND x.sender_id != ?1 AND x.body_kind NOT IN (4, 5) LIMIT ?5)),
                    EXISTS (SELECT 1 FROM mentions x WHERE x.user_id = ?1
                        AND x.conversation_id = c.id AND x.seq > max(m.read_seq, m.joined_seq))
                    OR EXISTS (SELECT 1 FROM messages x WHERE x.conversation_id = c.id
                        AND x.seq > max(m.read_seq, m.joined_seq) AND x.mention_all = 1
                        AND x.sender_id != ?1)
             FROM members m JOIN conversations c ON c.id = m.conversation_id
             LEFT JOIN groups g ON g.conversation_id = c.id
             LEFT JOIN members p ON c.kind = 1 AND p.conversation_id = c.id AND p.user_id != ?1
             LEFT JOIN users pu ON pu.id = p.user_id
             WHERE m.user_id = ?1 AND m.left_seq = 0
               AND (c.last_activity_ms < ?2 OR (c.last_activity_ms = ?2 AND c.id < ?3))
             ORDER BY c.last_activity_ms DESC, c.id DESC LIMIT ?4",
        )?
        .query_map(
            params![
                user,
                before.activity_ms,
                before.id.min(i64::MAX as u64),
                page.items as i64 + 1,
                MAX_UNREAD
            ],
            |r| {
                let peer: Option<UserId> = r.get(7)?;
                Ok(ListRow {
                    id: r.get(0)?,
                    kind: super::stored(r, 1)?,
                    last_seq: r.get(2)?,
                    last_activity_ms: r.get(3)?,
                    read_seq: r.get(4)?,
                    joined_seq: r.get(5)?,
                    name: r.get(6)?,
                    peer: match peer {
                        Some(p) => Some((p, r.get(8)?)),
                        None => None,
                    },
                    unread: r.get(9)?,
                    mentioned: r.get(10)?,
                })
            },
        )?
        .collect::<rusqlite::Result<_>>()?;
    let wanted: Vec<String> = rows
        .iter()
        .filter(|r| r.last_seq > r.joined_seq)
        .map(|r| format!("[{},{}]", r.id, r.last_seq))
        .collect();
    let mut last: HashMap<ConversationId, StoredMessage> = HashMap::new();
    if !wanted.is_empty() {
        let mut stmt = conn.prepare_cached(
            "SELECT m.conversation_id, m.seq, m.id, m.sender_id, m.client_msg_id, m.created_at_ms,
                    m.body_kind, m.body, m.mentions, m.mention_all
             FROM json_each(?1) AS d CROSS JOIN messages m
             ON m.conversation_id = d.value ->> 0 AND m.seq = d.value ->> 1",
        )?;
        for m in stmt.query_map([format!("[{}]", wanted.join(","))], message_row)? {
            let m = m?;
            last.insert(m.conversation_id, m);
        }
    }
    let out = rows
        .into_iter()
        .map(|r| {
            let last = last.remove(&r.id);
            rules::summarize(r, last)
        })
        .collect();
    Ok(page.cut(out, ConversationSummary::size_hint))
}
