//! Lists: the conversation list (every conversation of a user with its
//! last message, read cursor, unread count and mention flag, newest first),
//! the groups of a user, the rooms to discover, and a group's members.

use super::rows::{self, fetch, id, key, MESSAGE_COLUMNS};
use crate::rules::ListRow;
use crate::{
    Before, BodyKind, ConversationId, ConversationKind, ConversationSummary, Page, Result,
    StoredMessage, UserId,
};
use std::collections::HashMap;
use tokio_postgres::GenericClient;

/// Unread counts stop here; a client shows "9999+".
const MAX_UNREAD: i64 = 9999;

/// A page of the list in two statements whatever its length: the
/// memberships with their titles and counts, then the last messages. The
/// counts are select-list subqueries rather than joins so that PostgreSQL
/// evaluates them after the sort and limit, for the page's rows only.
pub async fn conversations(
    c: &impl GenericClient,
    user: UserId,
    before: Option<Before>,
    page: Page,
) -> Result<(Vec<ConversationSummary>, bool)> {
    let before = before.unwrap_or(Before {
        activity_ms: i64::MAX,
        id: u64::MAX,
    });
    let sql = format!(
        "SELECT c.id, c.kind, c.last_seq, c.last_activity_ms, m.read_seq, m.joined_seq, g.name,
                p.user_id, pu.username,
                (SELECT count(*) FROM (SELECT 1 FROM messages x
                    WHERE x.conversation_id = c.id AND x.seq > greatest(m.read_seq, m.joined_seq)
                      AND x.sender_id <> $1 AND x.body_kind NOT IN ({system}, {recalled})
                    LIMIT $5) AS y),
                EXISTS (SELECT 1 FROM mentions x WHERE x.user_id = $1
                    AND x.conversation_id = c.id AND x.seq > greatest(m.read_seq, m.joined_seq))
                OR EXISTS (SELECT 1 FROM messages x WHERE x.conversation_id = c.id
                    AND x.seq > greatest(m.read_seq, m.joined_seq) AND x.mention_all
                    AND x.sender_id <> $1)
         FROM members m JOIN conversations c ON c.id = m.conversation_id
         LEFT JOIN groups g ON g.conversation_id = c.id
         LEFT JOIN members p ON c.kind = {direct} AND p.conversation_id = c.id AND p.user_id <> $1
         LEFT JOIN users pu ON pu.id = p.user_id
         WHERE m.user_id = $1 AND m.left_seq = 0
           AND (c.last_activity_ms < $2 OR (c.last_activity_ms = $2 AND c.id < $3))
         ORDER BY c.last_activity_ms DESC, c.id DESC LIMIT $4",
        system = BodyKind::System as i16,
        recalled = BodyKind::Recalled as i16,
        direct = ConversationKind::Direct as i16,
    );
    let listed: Vec<ListRow> = c
        .query(
            &sql,
            &[
                &key(user),
                &before.activity_ms,
                &key(before.id),
                &fetch(page),
                &MAX_UNREAD,
            ],
        )
        .await?
        .iter()
        .map(|r| {
            let peer: Option<i64> = r.get(7);
            let peer_name: Option<String> = r.get(8);
            Ok(ListRow {
                id: id(r, 0),
                kind: rows::kind(r.get(1))?,
                last_seq: id(r, 2),
                last_activity_ms: r.get(3),
                read_seq: id(r, 4),
                joined_seq: id(r, 5),
                name: r.get(6),
                peer: peer.map(|p| (p as UserId, peer_name.unwrap_or_default())),
                unread: r.get::<_, i64>(9).clamp(0, MAX_UNREAD) as u32,
                mentioned: r.get(10),
            })
        })
        .collect::<Result<_>>()?;
    let (ids, seqs): (Vec<i64>, Vec<i64>) = listed
        .iter()
        .filter(|r| r.last_seq > r.joined_seq)
        .map(|r| (key(r.id), key(r.last_seq)))
        .unzip();
    let mut last: HashMap<ConversationId, StoredMessage> = HashMap::new();
    if !ids.is_empty() {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM unnest($1::bigint[], $2::bigint[]) AS d(cid, seq)
             JOIN messages m ON m.conversation_id = d.cid AND m.seq = d.seq"
        );
        for r in c.query(&sql, &[&ids, &seqs]).await? {
            let m = rows::message(&r)?;
            last.insert(m.conversation_id, m);
        }
    }
    let out = listed
        .into_iter()
        .map(|r| {
            let last = last.remove(&r.id);
            crate::rules::summarize(r, last)
        })
        .collect();
    Ok(page.cut(out, ConversationSummary::size_hint))
}
