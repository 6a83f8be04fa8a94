//! Reads the message paths share: who a conversation's members are, what
//! part of it a member may see, and a page of its history. (Storing a
//! message, raising cursors and sync stay in each backend: they are its
//! write path and its hottest read, tuned to its engine.)

use super::{args, each, Db, Row};
use crate::rules;
use crate::{Body, ConversationId, HistoryPage, Page, Result, StoreError, StoredMessage, UserId};

/// The columns a message is read with, from `messages m`.
macro_rules! message_columns {
    () => {
        "m.conversation_id, m.seq, m.id, m.sender_id, m.client_msg_id, m.created_at_ms, \
         m.body_kind, m.body, m.mentions, m.mention_all"
    };
}
pub(crate) use message_columns;

/// A message read with [`message_columns`].
pub(crate) fn message_row(r: &Row) -> Result<StoredMessage> {
    Ok(StoredMessage {
        conversation_id: r.get(0)?,
        seq: r.get(1)?,
        msg_id: r.get(2)?,
        sender_id: r.get(3)?,
        client_msg_id: r.get(4)?,
        server_ts_ms: r.get(5)?,
        body: Body {
            kind: r.stored(6)?,
            content: r.get(7)?,
        },
        mentions: r.get(8)?,
        mention_all: r.get(9)?,
    })
}

/// A conversation's current members, by id.
pub(crate) async fn members_of(db: &impl Db, conversation: ConversationId) -> Result<Vec<UserId>> {
    let found = db
        .rows(
            "SELECT user_id FROM members WHERE conversation_id = $1 AND left_seq = 0
             ORDER BY user_id",
            args![conversation],
        )
        .await?;
    each(found, |r| r.get(0))
}

/// At most `limit` current members of a conversation, by id.
pub(crate) async fn members_of_up_to(
    db: &impl Db,
    conversation: ConversationId,
    limit: usize,
) -> Result<Vec<UserId>> {
    let found = db
        .rows(
            "SELECT user_id FROM members WHERE conversation_id = $1 AND left_seq = 0
             ORDER BY user_id LIMIT $2",
            args![conversation, limit],
        )
        .await?;
    each(found, |r| r.get(0))
}

/// Current members of a conversation the user belongs to (for ephemeral
/// signals such as typing).
pub(crate) async fn audience(
    db: &impl Db,
    user: UserId,
    conversation: ConversationId,
) -> Result<Vec<UserId>> {
    let members = members_of(db, conversation).await?;
    if members.binary_search(&user).is_err() {
        return Err(StoreError::NotMember(conversation));
    }
    Ok(members)
}

/// The seqs a member may see: after `joined_seq`, up to what
/// [`rules::visible_upto`] says. `None` when the user was never a member.
pub(crate) async fn visible_range(
    db: &impl Db,
    user: UserId,
    conversation: ConversationId,
) -> Result<Option<(u64, u64)>> {
    db.opt(
        "SELECT m.joined_seq, m.left_seq, c.last_seq
         FROM members m JOIN conversations c ON c.id = m.conversation_id
         WHERE m.user_id = $1 AND m.conversation_id = $2",
        args![user, conversation],
    )
    .await?
    .map(|r| Ok((r.get(0)?, rules::visible_upto(r.get(1)?, r.get(2)?))))
    .transpose()
}

/// A page of messages below `before_seq` (0: from the newest), newest
/// first, within what the user may see: two statements.
pub(crate) async fn history(
    db: &impl Db,
    user: UserId,
    conversation: ConversationId,
    before_seq: u64,
    page: Page,
) -> Result<HistoryPage> {
    let Some((joined, upto)) = visible_range(db, user, conversation).await? else {
        return Err(StoreError::NotMember(conversation));
    };
    let newest = upto.saturating_add(1);
    let before = if before_seq == 0 {
        newest
    } else {
        before_seq.min(newest)
    };
    let found = db
        .rows(
            concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages m
                 WHERE m.conversation_id = $1 AND m.seq < $2 AND m.seq > $3
                 ORDER BY m.seq DESC LIMIT $4"
            ),
            args![conversation, before, joined, page.items.saturating_add(1)],
        )
        .await?;
    let (messages, has_more) = page.cut(each(found, message_row)?, StoredMessage::size_hint);
    Ok(HistoryPage { messages, has_more })
}
