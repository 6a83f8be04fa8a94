//! Sync and history: what a member may see of their conversations, paged
//! by items and bytes, with the messages still waiting in the log.

use super::messages::{json_list, message_row};
use crate::rules::{self, SyncRow, SYNC_CONVERSATIONS};
use crate::{ConversationId, MemberState, Page, Result, SyncPage, UserId, SYNC_FRIEND_REQUESTS};
use rusqlite::{params, Connection};
use std::collections::HashMap;

/// One sync page; see [`crate::Store::sync`] and [`rules::assemble_sync`].
/// Four queries at most, whatever the number of conversations: the
/// memberships, the 1:1 member states, the due messages and, on a last
/// page, the friend requests.
pub fn sync(
    conn: &Connection,
    user: UserId,
    cursors: &HashMap<ConversationId, u64>,
    after: ConversationId,
    limit: Page,
) -> Result<SyncPage> {
    let rows: Vec<SyncRow> = conn
        .prepare_cached(
            "SELECT c.id, c.kind, c.last_seq, m.joined_seq, m.left_seq
             FROM members m JOIN conversations c ON c.id = m.conversation_id
             WHERE m.user_id = ?1 AND m.conversation_id > ?2
             ORDER BY m.conversation_id LIMIT ?3",
        )?
        // A cursor past every id SQLite can store: nothing is after it.
        .query_map(
            params![
                user,
                after.min(i64::MAX as u64),
                SYNC_CONVERSATIONS as i64 + 1
            ],
            |r| {
                Ok(SyncRow {
                    id: r.get(0)?,
                    kind: super::stored(r, 1)?,
                    last_seq: r.get(2)?,
                    joined_seq: r.get(3)?,
                    left_seq: r.get(4)?,
                })
            },
        )?
        .collect::<rusqlite::Result<_>>()?;
    let mut members: HashMap<ConversationId, Vec<MemberState>> = HashMap::new();
    let direct = rules::direct_ids(&rows);
    if !direct.is_empty() {
        let mut stmt = conn.prepare_cached(
            "SELECT conversation_id, user_id, delivered_seq FROM members
             WHERE conversation_id IN (SELECT value FROM json_each(?1))
             ORDER BY conversation_id, user_id",
        )?;
        let found = stmt.query_map([json_list(&direct)], |r| {
            Ok((
                r.get::<_, ConversationId>(0)?,
                MemberState {
                    user_id: r.get(1)?,
                    delivered_seq: r.get(2)?,
                },
            ))
        })?;
        for row in found {
            let (id, state) = row?;
            members.entry(id).or_default().push(state);
        }
    }
    let ranges = rules::due_ranges(&rows, cursors);
    let messages =
        if ranges.is_empty() {
            Vec::new()
        } else {
            let list = ranges
                .iter()
                .map(|(c, a, u)| format!("[{c},{a},{u}]"))
                .collect::<Vec<_>>()
                .join(",");
            // CROSS JOIN keeps the ranges as the outer loop, in their order, and
            // each range is read along the (conversation_id, seq) index, so the
            // rows come in page order and the read stops at the limit.
            conn.prepare_cached(
            "SELECT m.conversation_id, m.seq, m.id, m.sender_id, m.client_msg_id, m.created_at_ms,
                    m.body_kind, m.body, m.mentions, m.mention_all
             FROM json_each(?1) AS d CROSS JOIN messages m
             ON m.conversation_id = d.value ->> 0 AND m.seq > d.value ->> 1
                AND m.seq <= d.value ->> 2
             LIMIT ?2",
        )?
        .query_map(params![format!("[{list}]"), limit.items as i64], message_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?
        };
    rules::assemble_sync(rows, cursors, members, messages, after, limit, || {
        super::engine::dialect::now(crate::sql::friends::pending_incoming(
            &super::engine::dialect::Lite(conn),
            user,
            SYNC_FRIEND_REQUESTS,
        ))
    })
}
