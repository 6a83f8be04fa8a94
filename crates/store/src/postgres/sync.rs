//! Sync and history: what a member may see of their conversations, paged by
//! items and bytes; the statements of one page that do not depend on each
//! other are sent together (pipelined on the connection).

use super::engine::dialect::Pg;
use super::rows::{self, id, key, keys, limit, MESSAGE_COLUMNS};
use crate::rules::{self, SyncRow, SYNC_CONVERSATIONS};
use crate::sql::friends::pending_incoming;
use crate::{
    ConversationId, MemberState, Page, Result, StoredMessage, SyncPage, UserId,
    SYNC_FRIEND_REQUESTS,
};
use std::collections::HashMap;
use tokio_postgres::GenericClient;

/// One sync page; see [`crate::Store::sync`] and [`rules::assemble_sync`].
/// Four statements at most: the memberships, then, sent together, the 1:1
/// member states, the due messages and the pending friend requests. The
/// requests are read with the others unless the memberships alone show
/// that more pages follow (only a pass's last page lists them), so a page
/// that turns out not to be last has read up to [`SYNC_FRIEND_REQUESTS`]
/// rows it does not use; waiting for the messages to know would make the
/// last page, and so every sync that fits in one page, wait for the server
/// once more.
pub async fn sync(
    c: &(impl GenericClient + Sync),
    user: UserId,
    cursors: &HashMap<ConversationId, u64>,
    after: ConversationId,
    page: Page,
) -> Result<SyncPage> {
    let rows: Vec<SyncRow> = c
        .query(
            "SELECT c.id, c.kind, c.last_seq, m.joined_seq, m.left_seq
             FROM members m JOIN conversations c ON c.id = m.conversation_id
             WHERE m.user_id = $1 AND m.conversation_id > $2
             ORDER BY m.conversation_id LIMIT $3",
            &[&key(user), &key(after), &limit(SYNC_CONVERSATIONS + 1)],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(SyncRow {
                id: id(r, 0),
                kind: rows::kind(r.get(1))?,
                last_seq: id(r, 2),
                joined_seq: id(r, 3),
                left_seq: id(r, 4),
            })
        })
        .collect::<Result<_>>()?;
    let direct = rules::direct_ids(&rows);
    let ranges = rules::due_ranges(&rows, cursors);
    let maybe_last = rows.len() <= SYNC_CONVERSATIONS;
    let (members, messages, pending) = tokio::try_join!(
        direct_states(c, &direct),
        due_messages(c, &ranges, page.items),
        async {
            if maybe_last {
                pending_incoming(&Pg(c), user, SYNC_FRIEND_REQUESTS).await
            } else {
                Ok(Vec::new())
            }
        },
    )?;
    rules::assemble_sync(rows, cursors, members, messages, after, page, || {
        Ok(pending)
    })
}

/// Both members' delivered cursors of each 1:1, in one statement.
async fn direct_states(
    c: &impl GenericClient,
    direct: &[ConversationId],
) -> Result<HashMap<ConversationId, Vec<MemberState>>> {
    let mut out: HashMap<ConversationId, Vec<MemberState>> = HashMap::new();
    if direct.is_empty() {
        return Ok(out);
    }
    let found = c
        .query(
            "SELECT conversation_id, user_id, delivered_seq FROM members
             WHERE conversation_id = ANY($1) ORDER BY conversation_id, user_id",
            &[&keys(direct)],
        )
        .await?;
    for r in &found {
        out.entry(id(r, 0)).or_default().push(MemberState {
            user_id: id(r, 1),
            delivered_seq: id(r, 2),
        });
    }
    Ok(out)
}

/// The first `items` messages of all `ranges`, in range order and then seq
/// order, in one statement that stops reading there: the ordinality of
/// `unnest` is known to come sorted, so the planner sorts incrementally
/// range by range under the limit, and each range's own LIMIT keeps one
/// long backlog from being read whole before the sort may stop.
async fn due_messages(
    c: &impl GenericClient,
    ranges: &[(ConversationId, u64, u64)],
    items: usize,
) -> Result<Vec<StoredMessage>> {
    if ranges.is_empty() || items == 0 {
        return Ok(Vec::new());
    }
    let mut ids = Vec::with_capacity(ranges.len());
    let mut lo = Vec::with_capacity(ranges.len());
    let mut hi = Vec::with_capacity(ranges.len());
    for &(cid, a, u) in ranges {
        ids.push(key(cid));
        lo.push(key(a));
        hi.push(key(u));
    }
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS}
         FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) WITH ORDINALITY AS d(cid, lo, hi, ord)
         CROSS JOIN LATERAL (
            SELECT {MESSAGE_COLUMNS} FROM messages m
            WHERE m.conversation_id = d.cid AND m.seq > d.lo AND m.seq <= d.hi
            ORDER BY m.seq LIMIT $4
         ) AS m
         ORDER BY d.ord, m.seq LIMIT $4"
    );
    c.query(&sql, &[&ids, &lo, &hi, &limit(items)])
        .await?
        .iter()
        .map(rows::message)
        .collect()
}
