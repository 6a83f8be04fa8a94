//! Messages beyond the append round (`append.rs`): delivery and read
//! cursors, and the rows of the system events that record changes in a
//! conversation's own sequence (the changes themselves are the shared
//! `sql::changes`).

use super::engine::dialect::Pg;
use super::rows::{self, key};
use crate::rules;
use crate::sql::changes::Writes;
use crate::sql::messages::{members_of_up_to, visible_range};
use crate::{
    BodyKind, ConversationId, Delivered, ReadMoved, Result, StoreError, StoredMessage, UserId,
};
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

/// The message rows of a change's system events, in PostgreSQL's form:
/// the idempotency key in `message_ids`, the row through the append
/// round's insert.
impl Writes for Pg<'_, Transaction<'_>> {
    async fn insert_messages(&self, messages: &[&StoredMessage]) -> Result<Vec<u64>> {
        for m in messages {
            self.0
                .execute(
                    "INSERT INTO message_ids (sender_id, client_msg_id, conversation_id, seq,
                        created_at_ms) VALUES ($1, $2, $3, $4, $5)",
                    &[
                        &key(m.sender_id),
                        &m.client_msg_id,
                        &key(m.conversation_id),
                        &key(m.seq),
                        &m.server_ts_ms,
                    ],
                )
                .await?;
        }
        append::insert(self.0, &mut append::Statements::default(), messages).await
    }

    async fn blank_message(&self, conversation: ConversationId, seq: u64) -> Result<()> {
        self.0
            .execute(
                "UPDATE messages SET body_kind = $3, body = '', mentions = '{}', mention_all = false
                 WHERE conversation_id = $1 AND seq = $2",
                &[&key(conversation), &key(seq), &(BodyKind::Recalled as i16)],
            )
            .await?;
        Ok(())
    }
}
