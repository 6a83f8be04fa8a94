//! Sync and read/delivery cursors on MariaDB/MySQL: what a member may see
//! of their conversations, paged by items and bytes (the page is put
//! together by `rules::assemble_sync`), and cursors that only move up.

use super::engine::dialect::{Link, My};
use crate::rules::{self, SyncRow, SYNC_CONVERSATIONS};
use crate::sql::friends::pending_incoming;
use crate::sql::messages::{members_of_up_to, message_columns, message_row, visible_range};
use crate::sql::{args, each, Db};
use crate::{
    ConversationId, ConversationKind, MemberState, Page, Result, StoreError, StoredMessage,
    SyncPage, UserId, SYNC_FRIEND_REQUESTS,
};
use std::collections::HashMap;

/// One sync page; see [`crate::Store::sync`].
pub async fn sync<L: Link>(
    db: &My<'_, L>,
    user: UserId,
    cursors: &HashMap<ConversationId, u64>,
    after: ConversationId,
    page: Page,
) -> Result<SyncPage> {
    let found = db
        .rows(
            "SELECT c.id, c.kind, c.last_seq, m.joined_seq, m.left_seq
             FROM members m JOIN conversations c ON c.id = m.conversation_id
             WHERE m.user_id = $1 AND m.conversation_id > $2
             ORDER BY m.conversation_id LIMIT $3",
            args![user, after, SYNC_CONVERSATIONS + 1],
        )
        .await?;
    let rows: Vec<SyncRow> = each(found, |r| {
        Ok(SyncRow {
            id: r.get(0)?,
            kind: r.stored(1)?,
            last_seq: r.get(2)?,
            joined_seq: r.get(3)?,
            left_seq: r.get(4)?,
        })
    })?;
    let direct = rules::direct_ids(&rows);
    let ranges = rules::due_ranges(&rows, cursors);
    let members = direct_states(db, &direct).await?;
    let messages = due_messages(db, &ranges, page.items).await?;
    // Only a pass's last page lists the requests (see `assemble_sync`).
    let pending = if rows.len() <= SYNC_CONVERSATIONS {
        pending_incoming(db, user, SYNC_FRIEND_REQUESTS).await?
    } else {
        Vec::new()
    };
    rules::assemble_sync(rows, cursors, members, messages, after, page, || {
        Ok(pending)
    })
}

/// Both members' delivered cursors of each 1:1.
async fn direct_states<L: Link>(
    db: &My<'_, L>,
    direct: &[ConversationId],
) -> Result<HashMap<ConversationId, Vec<MemberState>>> {
    let mut out: HashMap<ConversationId, Vec<MemberState>> = HashMap::new();
    if direct.is_empty() {
        return Ok(out);
    }
    let found = db
        .rows(
            "SELECT conversation_id, user_id, delivered_seq FROM members
             WHERE conversation_id = ANY($1) ORDER BY conversation_id, user_id",
            args![direct],
        )
        .await?;
    for r in &found {
        out.entry(r.get(0)?).or_default().push(MemberState {
            user_id: r.get(1)?,
            delivered_seq: r.get(2)?,
        });
    }
    Ok(out)
}

/// The first `items` messages of all `ranges`, in range order and then seq
/// order, in one statement.
async fn due_messages<L: Link>(
    db: &My<'_, L>,
    ranges: &[(ConversationId, u64, u64)],
    items: usize,
) -> Result<Vec<StoredMessage>> {
    if ranges.is_empty() || items == 0 {
        return Ok(Vec::new());
    }
    let ranges = serde_json::to_string(ranges).map_err(|e| StoreError::backend("ranges", e))?;
    let found = db
        .rows(
            concat!(
                "SELECT ",
                message_columns!(),
                " FROM JSON_TABLE($1, '$[*]' COLUMNS (ord FOR ORDINALITY, cid BIGINT PATH '$[0]',
                     lo BIGINT PATH '$[1]', hi BIGINT PATH '$[2]')) AS d
                 JOIN messages m ON m.conversation_id = d.cid AND m.seq > d.lo AND m.seq <= d.hi
                 ORDER BY d.ord, m.seq LIMIT $2"
            ),
            args![ranges.as_str(), items],
        )
        .await?;
    each(found, message_row)
}

/// Raises a member's read (or delivered) cursor to `seq`, clamped to what
/// the user may see; `None` when it did not move, else the new cursor and
/// who hears of it. One conditional UPDATE, so racing raises from several
/// nodes only ever move it up.
pub async fn raise_cursor<L: Link>(
    db: &My<'_, L>,
    user: UserId,
    conversation: ConversationId,
    seq: u64,
    read: bool,
) -> Result<Option<(u64, Vec<UserId>)>> {
    let Some((_, upto)) = visible_range(db, user, conversation).await? else {
        return Err(StoreError::NotMember(conversation));
    };
    let seq = seq.min(upto);
    let sql = if read {
        "UPDATE members SET read_seq = $3
         WHERE user_id = $1 AND conversation_id = $2 AND read_seq < $3"
    } else {
        "UPDATE members SET delivered_seq = $3
         WHERE user_id = $1 AND conversation_id = $2 AND delivered_seq < $3"
    };
    if db.exec(sql, args![user, conversation, seq]).await? == 0 {
        return Ok(None);
    }
    let kind: ConversationKind = db
        .one(
            "SELECT kind FROM conversations WHERE id = $1",
            args![conversation],
        )
        .await?
        .stored(0)?;
    let members = if rules::cursor_needs_members(kind, read) {
        members_of_up_to(db, conversation, rules::READ_RECEIPTS_MAX_MEMBERS + 1).await?
    } else {
        Vec::new()
    };
    Ok(Some((
        seq,
        rules::cursor_audience(kind, read, user, &members),
    )))
}
