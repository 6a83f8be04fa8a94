//! Messages beyond the append round (`append.rs`): delivery and read
//! cursors, recall, who hears a conversation, and the system events that
//! record changes in a conversation's own sequence.

use super::engine::dialect::Pg;
use super::rows::{self, key};
use crate::rules::{self, ConversationView, RecallStep, Recallable, SystemEvent};
use crate::sql::messages::{members_of_up_to, visible_range};
use crate::{
    BodyKind, Committed, ConversationId, Delivered, ReadMoved, Result, StoreError, StoredMessage,
    UserId,
};
use std::collections::HashMap;
use std::sync::Arc;
use tokio_postgres::{GenericClient, Transaction};

pub(crate) mod append;

/// Which cursor of a member.
#[derive(Clone, Copy)]
pub enum Cursor {
    Delivered,
    Read,
}

/// Raises a cursor to `seq`, clamped to what the user may see; `None` when
/// it did not move. One conditional UPDATE, so racing raises from several
/// nodes only ever move it up.
pub async fn raise_cursor(
    c: &(impl GenericClient + Sync),
    user: UserId,
    conversation: ConversationId,
    seq: u64,
    cursor: Cursor,
) -> Result<Option<(u64, Vec<UserId>)>> {
    let Some((_, upto)) = visible_range(&Pg(c), user, conversation).await? else {
        return Err(StoreError::NotMember(conversation));
    };
    let seq = seq.min(upto);
    let sql = match cursor {
        Cursor::Delivered => {
            "UPDATE members m SET delivered_seq = $3 FROM conversations c
             WHERE m.user_id = $1 AND m.conversation_id = $2 AND m.delivered_seq < $3
               AND c.id = m.conversation_id RETURNING c.kind"
        }
        Cursor::Read => {
            "UPDATE members m SET read_seq = $3 FROM conversations c
             WHERE m.user_id = $1 AND m.conversation_id = $2 AND m.read_seq < $3
               AND c.id = m.conversation_id RETURNING c.kind"
        }
    };
    let Some(row) = c
        .query_opt(sql, &[&key(user), &key(conversation), &key(seq)])
        .await?
    else {
        return Ok(None);
    };
    let kind = rows::kind(row.get(0))?;
    let read = matches!(cursor, Cursor::Read);
    let members = if rules::cursor_needs_members(kind, read) {
        let enough = rules::READ_RECEIPTS_MAX_MEMBERS + 1;
        members_of_up_to(&Pg(c), conversation, enough).await?
    } else {
        Vec::new()
    };
    Ok(Some((
        seq,
        rules::cursor_audience(kind, read, user, &members),
    )))
}

pub async fn mark_delivered(
    c: &(impl GenericClient + Sync),
    user: UserId,
    conversation: ConversationId,
    seq: u64,
) -> Result<Option<Delivered>> {
    Ok(raise_cursor(c, user, conversation, seq, Cursor::Delivered)
        .await?
        .map(|(seq, members)| Delivered { seq, members }))
}

pub async fn mark_read(
    c: &(impl GenericClient + Sync),
    user: UserId,
    conversation: ConversationId,
    seq: u64,
) -> Result<Option<ReadMoved>> {
    Ok(raise_cursor(c, user, conversation, seq, Cursor::Read)
        .await?
        .map(|(seq, notify)| ReadMoved { seq, notify }))
}

/// What a change leaves to publish once it commits.
pub type Published = Vec<Committed>;

/// Locks a conversation row; its last seq, or `None` when there is none.
pub(super) async fn lock(tx: &Transaction<'_>, id: ConversationId) -> Result<Option<u64>> {
    Ok(tx
        .query_opt(
            "SELECT last_seq FROM conversations WHERE id = $1 FOR UPDATE",
            &[&key(id)],
        )
        .await?
        .map(|r| rows::id(&r, 0)))
}

pub(super) async fn view(tx: &Transaction<'_>, id: ConversationId) -> Result<ConversationView> {
    let head = tx
        .query_opt(
            "SELECT c.kind, COALESCE(g.dismissed, false), COALESCE(g.muted_all, false)
             FROM conversations c LEFT JOIN groups g ON g.conversation_id = c.id WHERE c.id = $1",
            &[&key(id)],
        )
        .await?
        .ok_or(StoreError::NotFound("conversation"))?;
    let mut members = Vec::new();
    let mut roles = HashMap::new();
    for r in tx
        .query(
            "SELECT user_id, role, muted_until_ms FROM members
             WHERE conversation_id = $1 AND left_seq = 0 ORDER BY user_id",
            &[&key(id)],
        )
        .await?
    {
        let u = rows::id(&r, 0);
        members.push(u);
        roles.insert(u, (rows::stored(&r, 1)?, r.get(2)));
    }
    Ok(ConversationView {
        kind: rows::kind(head.get(0))?,
        dismissed: head.get(1),
        muted_all: head.get(2),
        members: members.into(),
        roles,
    })
}

/// Appends a system event after `last_seq` and queues it for `to`.
pub(super) async fn system_event(
    tx: &Transaction<'_>,
    conversation: ConversationId,
    last_seq: u64,
    event: &SystemEvent,
    now_ms: i64,
    to: Arc<[UserId]>,
    publish: &mut Published,
) -> Result<StoredMessage> {
    let seq = last_seq + 1;
    let mut m = event.message(conversation, seq, now_ms);
    tx.execute(
        "INSERT INTO message_ids (sender_id, client_msg_id, conversation_id, seq, created_at_ms)
         VALUES ($1, $2, $3, $4, $5)",
        &[
            &key(m.sender_id),
            &m.client_msg_id,
            &key(conversation),
            &key(seq),
            &now_ms,
        ],
    )
    .await?;
    m.msg_id = append::insert(tx, &mut append::Statements::default(), &[&m])
        .await?
        .first()
        .copied()
        .unwrap_or(0);
    tx.execute(
        "UPDATE conversations SET last_seq = $2, last_activity_ms = GREATEST(last_activity_ms, $3)
         WHERE id = $1",
        &[&key(conversation), &key(seq), &now_ms],
    )
    .await?;
    publish.push(Committed {
        message: Arc::new(m.clone()),
        members: to,
        origin: None,
    });
    Ok(m)
}

#[allow(clippy::too_many_arguments)]
pub async fn recall(
    tx: &Transaction<'_>,
    actor: UserId,
    conversation: ConversationId,
    seq: u64,
    window_ms: i64,
    now_ms: i64,
    publish: &mut Published,
) -> Result<()> {
    let last_seq = lock(tx, conversation)
        .await?
        .ok_or(StoreError::NotMember(conversation))?;
    let v = view(tx, conversation).await?;
    let message = tx
        .query_opt(
            "SELECT sender_id, body_kind, created_at_ms FROM messages
             WHERE conversation_id = $1 AND seq = $2",
            &[&key(conversation), &key(seq)],
        )
        .await?
        .map(|r| {
            Ok::<_, StoreError>(Recallable {
                sender: rows::id(&r, 0),
                kind: rows::stored(&r, 1)?,
                server_ts_ms: r.get(2),
            })
        })
        .transpose()?;
    let plan = match rules::recall(&v, conversation, seq, actor, message, window_ms, now_ms)? {
        RecallStep::Done => return Ok(()),
        RecallStep::Recall(plan) => plan,
    };
    tx.execute(
        "UPDATE messages SET body_kind = $3, body = '', mentions = '{}', mention_all = false
         WHERE conversation_id = $1 AND seq = $2",
        &[
            &key(conversation),
            &key(plan.seq),
            &(BodyKind::Recalled as i16),
        ],
    )
    .await?;
    tx.execute(
        "DELETE FROM mentions WHERE conversation_id = $1 AND seq = $2",
        &[&key(conversation), &key(plan.seq)],
    )
    .await?;
    system_event(
        tx,
        conversation,
        last_seq,
        &plan.event,
        now_ms,
        plan.audience,
        publish,
    )
    .await?;
    Ok(())
}
