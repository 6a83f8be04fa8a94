//! Each busy conversation's last seq, held by the writer ahead of the
//! database. The writer is the only one that takes seqs, so what it holds is
//! the truth; the conversation row catches up:
//!
//! - a write in the database transaction (a system event) takes its seq
//!   with [`Seqs::next`], and the row is written by [`Seqs::flush`] before
//!   the commit and before any write that runs in a savepoint;
//! - a message staged in the message log takes its seq with
//!   [`Seqs::stage`]; the row is brought up when the message is copied into
//!   the database, and until then the entry must stay (the caller says
//!   which conversations still have messages waiting), since reloading it
//!   from the row would hand the same seq out again;
//! - a 1:1 conversation made in the log has no row until it is copied: its
//!   entry starts at 0 ([`Seqs::made`]) and stays while it waits.
//!
//! Every change is journaled, so a savepoint rolled back or a round that
//! failed puts the seqs back exactly as they were.

use super::IdMap;
use crate::{ConversationId, Result, StoreError};
use rusqlite::{Connection, OptionalExtension};

/// Entries kept before the idle ones are dropped.
const MAX_ENTRIES: usize = 20_000;

#[derive(Clone, Copy, Debug)]
struct Seq {
    last: u64,
    activity_ms: i64,
    /// Taken by a write in the open transaction, not yet on the row.
    dirty: bool,
}

#[derive(Default)]
pub struct Seqs {
    map: IdMap<ConversationId, Seq>,
    dirty: Vec<ConversationId>,
    /// Each entry as it was before a change (`None`: it was not there).
    journal: Vec<(ConversationId, Option<Seq>)>,
    /// Seqs ever taken, so the writer can tell whether a failed write took one.
    taken: u64,
}

/// A point in the journal to go back to.
#[derive(Clone, Copy)]
pub struct Mark(usize);

impl Seqs {
    fn entry(&mut self, conn: &Connection, id: ConversationId, now_ms: i64) -> Result<&mut Seq> {
        if !self.map.contains_key(&id) {
            let last: u64 = conn
                .prepare_cached("SELECT last_seq FROM conversations WHERE id = ?1")?
                .query_row([id], |r| r.get(0))
                .optional()?
                .ok_or(StoreError::NotFound("conversation"))?;
            self.journal.push((id, None));
            self.map.insert(
                id,
                Seq {
                    last,
                    activity_ms: now_ms,
                    dirty: false,
                },
            );
        } else if let Some(s) = self.map.get(&id) {
            self.journal.push((id, Some(*s)));
        }
        self.map
            .get_mut(&id)
            .ok_or_else(|| StoreError::bug("a seq entry vanished"))
    }

    /// Conversation `id` was just made in the log: nothing taken yet.
    pub fn made(&mut self, id: ConversationId, now_ms: i64) {
        let before = self.map.insert(
            id,
            Seq {
                last: 0,
                activity_ms: now_ms,
                dirty: false,
            },
        );
        self.journal.push((id, before));
    }

    /// The next seq of `id` for a write in the database transaction.
    pub fn next(&mut self, conn: &Connection, id: ConversationId, now_ms: i64) -> Result<u64> {
        let s = self.entry(conn, id, now_ms)?;
        s.last += 1;
        s.activity_ms = s.activity_ms.max(now_ms);
        let (seq, was_dirty) = (s.last, s.dirty);
        s.dirty = true;
        if !was_dirty {
            self.dirty.push(id);
        }
        self.taken += 1;
        Ok(seq)
    }

    /// The next seq of `id` for a message staged in the log.
    pub fn stage(&mut self, conn: &Connection, id: ConversationId, now_ms: i64) -> Result<u64> {
        let s = self.entry(conn, id, now_ms)?;
        s.last += 1;
        s.activity_ms = s.activity_ms.max(now_ms);
        let seq = s.last;
        self.taken += 1;
        Ok(seq)
    }

    /// The last seq of `id` taken so far (the row's, if the writer holds
    /// none ahead of it).
    pub fn last(&self, conn: &Connection, id: ConversationId) -> Result<u64> {
        if let Some(s) = self.map.get(&id) {
            return Ok(s.last);
        }
        conn.prepare_cached("SELECT last_seq FROM conversations WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?
            .ok_or(StoreError::NotFound("conversation"))
    }

    /// Writes the rows of seqs taken in the transaction.
    pub fn flush(&mut self, conn: &Connection) -> Result<()> {
        if self.dirty.is_empty() {
            return Ok(());
        }
        let mut update = conn.prepare_cached(super::chunk::BUMP_ROW)?;
        for id in std::mem::take(&mut self.dirty) {
            if let Some(s) = self.map.get_mut(&id).filter(|s| s.dirty) {
                update.execute(rusqlite::params![id, s.last, s.activity_ms])?;
                s.dirty = false;
            }
        }
        Ok(())
    }

    pub fn taken(&self) -> u64 {
        self.taken
    }

    pub fn mark(&self) -> Mark {
        Mark(self.journal.len())
    }

    /// Puts every entry back as it was at `mark`.
    pub fn undo(&mut self, mark: Mark) {
        while self.journal.len() > mark.0 {
            let Some((id, before)) = self.journal.pop() else {
                break;
            };
            match before {
                Some(s) => {
                    if s.dirty {
                        self.dirty.push(id);
                    }
                    self.map.insert(id, s);
                }
                None => {
                    self.map.remove(&id);
                }
            }
        }
    }

    /// Forgets the journal (the round committed) and, if the map is full,
    /// the entries nothing depends on (`waiting`: conversations with
    /// messages only in the log).
    pub fn settle(&mut self, waiting: impl Fn(ConversationId) -> bool) {
        self.journal.clear();
        if self.map.len() >= MAX_ENTRIES {
            self.map.retain(|id, s| s.dirty || waiting(*id));
        }
    }

    /// Drops every entry that the database can give back: after a failed
    /// commit, all but those of conversations with messages only in the log.
    pub fn reload(&mut self, waiting: impl Fn(ConversationId) -> bool) {
        self.journal.clear();
        self.dirty.clear();
        self.map.retain(|id, s| {
            s.dirty = false;
            waiting(*id)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE conversations (id INTEGER PRIMARY KEY, last_seq INTEGER NOT NULL,
                 last_activity_ms INTEGER NOT NULL);
             INSERT INTO conversations VALUES (1, 5, 0), (2, 0, 0);",
        )
        .unwrap();
        c
    }

    fn row(c: &Connection, id: u64) -> u64 {
        c.query_row(
            "SELECT last_seq FROM conversations WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .unwrap()
    }

    #[test]
    fn staged_seqs_follow_on_and_stay_while_their_messages_wait() {
        let c = conn();
        let mut s = Seqs::default();
        assert_eq!(s.stage(&c, 1, 10).unwrap(), 6);
        assert_eq!(s.stage(&c, 1, 11).unwrap(), 7);
        assert_eq!(s.next(&c, 1, 12).unwrap(), 8);
        s.flush(&c).unwrap();
        assert_eq!(row(&c, 1), 8);
        s.settle(|_| true);
        s.reload(|id| id == 1);
        // Messages still only in the log: the entry stays.
        assert_eq!(s.stage(&c, 1, 13).unwrap(), 9);
        s.settle(|_| false);
        s.reload(|_| false);
        // Nothing waits now: read again from the row.
        assert_eq!(s.next(&c, 1, 14).unwrap(), 9);
    }

    #[test]
    fn undo_puts_seqs_back_as_they_were() {
        let c = conn();
        let mut s = Seqs::default();
        s.stage(&c, 1, 0).unwrap();
        s.settle(|_| true);
        let m = s.mark();
        s.stage(&c, 1, 0).unwrap();
        s.next(&c, 2, 0).unwrap();
        s.undo(m);
        assert_eq!(s.stage(&c, 1, 0).unwrap(), 7, "seq 7 again, not 8");
        assert_eq!(s.next(&c, 2, 0).unwrap(), 1);
        assert!(s.stage(&c, 3, 0).is_err(), "no such conversation");
    }
}
