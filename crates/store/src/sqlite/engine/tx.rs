//! What a write sees: the connection, the writer's cache, the round's stage
//! (its log records, its next message id, its transactions) and the messages
//! to publish once the round is durable. The topic files write through it;
//! the jobs in `writer.rs` hand it to them.

use super::cache::ConvCache;
use super::keys::NewKeys;
use super::log::{self, CursorKind, NewDirect};
use super::pending::Pending;
use crate::{Committed, ConversationId, Result, StoredMessage, UserId};
use rusqlite::Connection;
use std::sync::Arc;

/// The round's state a job can reach beyond the connection and the caches.
pub struct Stage {
    /// The round's records, for the log.
    pub records: Vec<u8>,
    /// The log segment the round's records go to.
    pub segment: u64,
    /// The next message id.
    pub next_id: u64,
    /// The next id for a conversation made in the log: past every id in
    /// the database (brought up after each write there, which may have made
    /// a group) and every one made before.
    pub next_conversation: u64,
    /// The keys staged in conversations made since the writer started.
    pub keys: NewKeys,
    /// The round has opened its database transaction.
    pub open: bool,
    /// ... and written something that must be synced before the answers.
    pub durable: bool,
}

impl Stage {
    /// Opens the round's database transaction (ending its read
    /// transaction first).
    pub(crate) fn write(&mut self, conn: &Connection) -> Result<()> {
        if !self.open {
            self.end_read(conn)?;
            conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
            self.open = true;
        }
        Ok(())
    }

    /// Makes the round's reads share one read transaction: each read
    /// outside a transaction takes and drops SQLite's shared lock (two
    /// `fcntl` calls) on its own. Safe while the round holds the waiting
    /// records' lock: whatever the copy thread commits after the snapshot
    /// is still among the waiting records, where the writer looks first.
    pub(crate) fn read(&self, conn: &Connection) -> Result<()> {
        if conn.is_autocommit() {
            conn.prepare_cached("BEGIN DEFERRED")?.execute([])?;
        }
        Ok(())
    }

    /// Ends the read transaction, if one is open (any transaction open
    /// before the round's own write transaction is the read one).
    pub(crate) fn end_read(&self, conn: &Connection) -> Result<()> {
        if !self.open && !conn.is_autocommit() {
            conn.prepare_cached("COMMIT")?.execute([])?;
        }
        Ok(())
    }
}

/// What a write sees: the connection, the conversation cache, the round's
/// stage, and the messages to publish once the round is durable.
pub struct Tx<'a> {
    pub conn: &'a Connection,
    pub convs: &'a mut ConvCache,
    pub(crate) stage: &'a mut Stage,
    /// Records in the log that the database does not have yet.
    pub(crate) pending: &'a mut Pending,
    publish: &'a mut Vec<Committed>,
}

impl<'a> Tx<'a> {
    pub(crate) fn new(
        conn: &'a Connection,
        convs: &'a mut ConvCache,
        stage: &'a mut Stage,
        pending: &'a mut Pending,
        publish: &'a mut Vec<Committed>,
    ) -> Tx<'a> {
        Tx {
            conn,
            convs,
            stage,
            pending,
            publish,
        }
    }

    /// Queues a newly stored message for the commit feed. It is published
    /// once the round is durable, in order, and dropped if this write fails.
    pub fn publish(&mut self, committed: Committed) {
        self.publish.push(committed);
    }

    /// An id for a new message.
    pub fn next_msg_id(&mut self) -> u64 {
        let id = self.stage.next_id;
        self.stage.next_id += 1;
        id
    }

    /// Fails while the writer takes no more staged writes.
    pub(crate) fn may_stage(&self) -> Result<()> {
        match &self.pending.refuse {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// The id of a new conversation: past every one in the database and
    /// every 1:1 made in the log (whose rows the database may not have yet).
    pub(crate) fn next_conversation(&mut self) -> ConversationId {
        let id = self.stage.next_conversation;
        self.stage.next_conversation += 1;
        id
    }

    /// Makes the 1:1 conversation of users `lo` < `hi` in the log, for its
    /// first message: its record goes before the message's, and the
    /// database gets it with the first copy of either.
    pub(crate) fn stage_direct(&mut self, lo: UserId, hi: UserId, at_ms: i64) -> ConversationId {
        let id = self.next_conversation();
        let c = NewDirect { id, lo, hi, at_ms };
        log::encode_direct(&c, &mut self.stage.records);
        let segment = self.stage.segment;
        self.pending.push_direct(c, segment);
        id
    }

    /// Stages a new message for the log.
    pub(crate) fn stage_message(&mut self, m: Arc<StoredMessage>) {
        log::encode_message(&m, &mut self.stage.records);
        self.stage.keys.add(
            m.conversation_id,
            m.sender_id,
            &m.client_msg_id,
            self.stage.next_conversation,
        );
        let segment = self.stage.segment;
        self.pending.push_message(m, segment);
    }

    /// Stages a cursor raise for the log.
    pub(crate) fn stage_cursor(
        &mut self,
        user: UserId,
        conversation: ConversationId,
        kind: CursorKind,
        seq: u64,
    ) {
        log::encode_cursor(user, conversation, kind, seq, &mut self.stage.records);
        let segment = self.stage.segment;
        self.pending
            .push_cursor(user, conversation, kind, seq, segment);
    }
}
