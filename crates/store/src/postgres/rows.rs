//! Rows to records, and the one way ids cross into SQL: PostgreSQL's
//! BIGINT is signed, the model's ids are not.

use crate::{BadValue, Body, ConversationKind, Result, StoredMessage};
use tokio_postgres::Row;

/// An id or seq as a query parameter. Nothing stored is above i64::MAX, so
/// a larger one is clamped: no row has it, and nothing comes after it.
pub fn key(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

pub fn keys(v: &[u64]) -> Vec<i64> {
    v.iter().map(|&v| key(v)).collect()
}

/// A column the store wrote from a u64.
pub fn id(r: &Row, i: usize) -> u64 {
    r.get::<_, i64>(i) as u64
}

pub const MESSAGE_COLUMNS: &str = "m.conversation_id, m.seq, m.id, m.sender_id, m.client_msg_id, \
    m.created_at_ms, m.body_kind, m.body, m.mentions, m.mention_all";

/// An enum column (SMALLINT): a number no variant has is a corrupt row,
/// never another variant.
pub fn stored<T: TryFrom<i64, Error = BadValue>>(r: &Row, i: usize) -> Result<T> {
    Ok(T::try_from(r.get::<_, i16>(i) as i64)?)
}

/// A message read with [`MESSAGE_COLUMNS`] starting at column `at`.
pub fn message_at(r: &Row, at: usize) -> Result<StoredMessage> {
    let mentions: Vec<i64> = r.get(at + 8);
    Ok(StoredMessage {
        conversation_id: id(r, at),
        seq: id(r, at + 1),
        msg_id: id(r, at + 2),
        sender_id: id(r, at + 3),
        client_msg_id: r.get(at + 4),
        server_ts_ms: r.get(at + 5),
        body: Body {
            kind: stored(r, at + 6)?,
            content: r.get(at + 7),
        },
        mentions: mentions.into_iter().map(|u| u as u64).collect(),
        mention_all: r.get(at + 9),
    })
}

pub fn message(r: &Row) -> Result<StoredMessage> {
    message_at(r, 0)
}

pub fn kind(v: i16) -> Result<ConversationKind> {
    Ok(ConversationKind::try_from(v as i64)?)
}

/// A row count as a LIMIT: a page larger than BIGINT is as good as unbounded.
pub fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
