//! What a copy writes: the records taken from the waiting ones
//! (`pending.rs`) and the SQL that puts each kind into the database, in the
//! copy's transaction or, at start-up, when the log is replayed.

use super::log::{CursorKind, NewDirect, Record};
use super::pending::CursorKey;
use crate::{ConversationId, Result, StoredMessage, UserId};
use rusqlite::{params, CachedStatement, Connection, OptionalExtension};
use std::sync::Arc;

/// A stored message's row; `INSERT` or `INSERT OR IGNORE` goes in front.
macro_rules! into_messages {
    () => {
        " INTO messages (id, conversation_id, seq, sender_id, client_msg_id,
             created_at_ms, body_kind, body, mentions, mention_all)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    };
}

/// Brings a conversation's row up to a seq and activity it has reached (it
/// never goes back).
pub(crate) const BUMP_ROW: &str = "UPDATE conversations SET last_seq = max(last_seq, ?2),
         last_activity_ms = max(last_activity_ms, ?3) WHERE id = ?1";

/// Records taken to be copied into the database.
#[derive(Default)]
pub struct Chunk {
    /// 1:1 conversations made in the log, written first.
    pub made: Vec<NewDirect>,
    /// Each conversation's in seq order.
    pub messages: Vec<Arc<StoredMessage>>,
    pub cursors: Vec<(CursorKey, u64)>,
}

impl Chunk {
    pub fn len(&self) -> usize {
        self.made.len() + self.messages.len() + self.cursors.len()
    }

    /// Writes the records into the database, inside the open transaction.
    pub fn write(&self, conn: &Connection) -> Result<()> {
        for c in &self.made {
            make_direct(conn, c)?;
        }
        let mut w = MessageWrites::prepare(conn, false)?;
        let mut i = 0;
        while i < self.messages.len() {
            // One conversation's run: its messages, then its row once.
            let id = self.messages[i].conversation_id;
            let (mut seq, mut ts) = (0, 0);
            while let Some(m) = self.messages.get(i).filter(|m| m.conversation_id == id) {
                w.message(m)?;
                (seq, ts) = (m.seq, ts.max(m.server_ts_ms));
                i += 1;
            }
            w.row.execute(params![id, seq, ts])?;
        }
        for ((user, conversation, kind), seq) in &self.cursors {
            raise(conn, *user, *conversation, *kind, *seq)?;
        }
        Ok(())
    }
}

/// The statements a copy or a replay puts messages in with.
struct MessageWrites<'c> {
    insert: CachedStatement<'c>,
    mention: CachedStatement<'c>,
    row: CachedStatement<'c>,
}

impl<'c> MessageWrites<'c> {
    /// `again`: the database may have some of the messages already (a
    /// replay); those are left alone.
    fn prepare(conn: &'c Connection, again: bool) -> Result<Self> {
        let insert = match again {
            true => concat!("INSERT OR IGNORE", into_messages!()),
            false => concat!("INSERT", into_messages!()),
        };
        Ok(MessageWrites {
            insert: conn.prepare_cached(insert)?,
            mention: conn.prepare_cached(
                "INSERT OR IGNORE INTO mentions (user_id, conversation_id, seq) VALUES (?1, ?2, ?3)",
            )?,
            row: conn.prepare_cached(BUMP_ROW)?,
        })
    }

    /// Inserts `m` and its mentions; false if it was there already.
    fn message(&mut self, m: &StoredMessage) -> Result<bool> {
        if put_message(&mut self.insert, m)? == 0 {
            return Ok(false);
        }
        for u in &m.mentions {
            self.mention.execute(params![u, m.conversation_id, m.seq])?;
        }
        Ok(true)
    }
}

/// Inserts a message (without its mentions) in the open transaction: a
/// system event the writer makes in the database.
pub(crate) fn insert_message(conn: &Connection, m: &StoredMessage) -> Result<()> {
    put_message(
        &mut conn.prepare_cached(concat!("INSERT", into_messages!()))?,
        m,
    )?;
    Ok(())
}

fn put_message(stmt: &mut CachedStatement<'_>, m: &StoredMessage) -> Result<usize> {
    Ok(stmt.execute(params![
        m.msg_id,
        m.conversation_id,
        m.seq,
        m.sender_id,
        m.client_msg_id,
        m.server_ts_ms,
        m.body.kind as i64,
        m.body.content,
        mentions_text(&m.mentions),
        m.mention_all
    ])?)
}

/// Mentioned user ids as the messages table keeps them.
pub(crate) fn mentions_text(mentions: &[UserId]) -> String {
    let mut s = String::new();
    for (i, u) in mentions.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(&u.to_string());
    }
    s
}

/// Writes a 1:1 conversation made in the log: its row, its pair and its two
/// members (each left alone if there already, as after a replay).
pub(crate) fn make_direct(conn: &Connection, c: &NewDirect) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO conversations (id, kind, created_at_ms, last_activity_ms)
         VALUES (?1, ?2, ?3, ?3)",
    )?
    .execute(params![
        c.id,
        crate::ConversationKind::Direct as i64,
        c.at_ms
    ])?;
    conn.prepare_cached(
        "INSERT OR IGNORE INTO direct_pairs (user_lo, user_hi, conversation_id)
         VALUES (?1, ?2, ?3)",
    )?
    .execute(params![c.lo, c.hi, c.id])?;
    let mut member = conn.prepare_cached(
        "INSERT OR IGNORE INTO members (user_id, conversation_id, joined_at_ms)
         VALUES (?1, ?2, ?3)",
    )?;
    member.execute(params![c.lo, c.id, c.at_ms])?;
    member.execute(params![c.hi, c.id, c.at_ms])?;
    Ok(())
}

fn raise(
    conn: &Connection,
    user: UserId,
    conversation: ConversationId,
    kind: CursorKind,
    seq: u64,
) -> Result<()> {
    let sql = match kind {
        CursorKind::Delivered => {
            "UPDATE members SET delivered_seq = ?3
             WHERE user_id = ?1 AND conversation_id = ?2 AND delivered_seq < ?3"
        }
        CursorKind::Read => {
            "UPDATE members SET read_seq = ?3
             WHERE user_id = ?1 AND conversation_id = ?2 AND read_seq < ?3"
        }
    };
    conn.prepare_cached(sql)?
        .execute(params![user, conversation, seq])?;
    Ok(())
}

/// Applies records read back from the log at start-up, inside the open
/// transaction. Records the database already has are left alone, and so are
/// records of conversations that never committed (nothing of those was
/// acknowledged).
pub fn replay(conn: &Connection, records: &[Record]) -> Result<usize> {
    let mut applied = 0;
    let mut exists = conn.prepare_cached("SELECT 1 FROM conversations WHERE id = ?1")?;
    let mut w = MessageWrites::prepare(conn, true)?;
    for r in records {
        match r {
            Record::Direct(c) => make_direct(conn, c)?,
            Record::Message(m) => {
                let known: Option<i64> = exists
                    .query_row([m.conversation_id], |r| r.get(0))
                    .optional()?;
                if known.is_none() {
                    continue;
                }
                if w.message(m)? {
                    applied += 1;
                    w.row
                        .execute(params![m.conversation_id, m.seq, m.server_ts_ms])?;
                }
            }
            Record::Cursor {
                user,
                conversation,
                kind,
                seq,
            } => raise(conn, *user, *conversation, *kind, *seq)?,
        }
    }
    Ok(applied)
}
