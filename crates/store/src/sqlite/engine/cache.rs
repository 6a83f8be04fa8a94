//! The writer's cache of what every send to a conversation needs: its kind,
//! its flags and its members with their roles, which conversation two users
//! share, and each busy conversation's last seq. Only the writer thread uses
//! it. A change to a conversation drops its entry at the end of the change;
//! a failed commit drops every entry, so the cache never holds state that
//! did not commit.
//!
//! Seqs are the one thing the cache holds ahead of the database: see
//! `seqs.rs`.

use super::seqs::{Mark, Seqs};
use super::IdMap;
use crate::rules::{ConversationView, PeerFacts};
use crate::{ConversationId, ConversationKind, Result, Role, StoreError, UserId};
use rusqlite::{Connection, OptionalExtension};
use std::collections::HashMap;
use std::sync::Arc;

/// Entries kept before the cache starts over; each is small next to the
/// work of a send, and a reload is one indexed range scan.
const MAX_ENTRIES: usize = 20_000;

#[derive(Default)]
pub struct ConvCache {
    map: IdMap<ConversationId, Arc<ConversationView>>,
    /// The 1:1 conversation of each (lower, higher) user pair seen; a pair's
    /// conversation never changes once created.
    pairs: IdMap<(UserId, UserId), ConversationId>,
    pub seqs: Seqs,
    /// What a 1:1 from sender to recipient was allowed on, kept to judge
    /// their next sends without a lookup; every change to friends or blocks
    /// empties it.
    peers: IdMap<(UserId, UserId), PeerFacts>,
    /// Entries loaded since the current savepointed write began (None
    /// outside one): a write that is rolled back may have loaded state it
    /// had itself changed.
    loaded: Option<Vec<ConversationId>>,
    /// Where the seqs stood when the current savepointed write began.
    savepoint: Option<Mark>,
}

impl ConvCache {
    pub fn get(&mut self, conn: &Connection, id: ConversationId) -> Result<Arc<ConversationView>> {
        if let Some(info) = self.map.get(&id) {
            return Ok(info.clone());
        }
        let info = Arc::new(load(conn, id)?);
        if self.map.len() >= MAX_ENTRIES {
            self.map.clear();
        }
        self.map.insert(id, info.clone());
        if let Some(loaded) = &mut self.loaded {
            loaded.push(id);
        }
        Ok(info)
    }

    /// A write that runs in its own savepoint begins.
    pub fn begin_write(&mut self) {
        self.loaded = Some(Vec::new());
        self.savepoint = Some(self.seqs.mark());
    }

    /// That write's savepoint was rolled back: drop what it loaded (which
    /// may show its own uncommitted changes) and put back the seqs it took.
    pub fn undo_write(&mut self) {
        for id in self.loaded.take().unwrap_or_default() {
            self.map.remove(&id);
        }
        if let Some(m) = self.savepoint.take() {
            self.seqs.undo(m);
        }
    }

    /// The savepointed write is over (kept or undone).
    pub fn end_write(&mut self) {
        self.loaded = None;
        self.savepoint = None;
    }

    pub fn forget(&mut self, id: ConversationId) {
        self.map.remove(&id);
    }

    pub fn pair(&self, lo: UserId, hi: UserId) -> Option<ConversationId> {
        self.pairs.get(&(lo, hi)).copied()
    }

    /// Remembers a pair's conversation; only after it is known to exist in
    /// the transaction that will commit (a failed commit clears the cache).
    pub fn set_pair(&mut self, lo: UserId, hi: UserId, id: ConversationId) {
        if self.pairs.len() >= MAX_ENTRIES * 5 {
            self.pairs.clear();
        }
        self.pairs.insert((lo, hi), id);
    }

    /// The next seq of a conversation. Dense and never reused because only
    /// the writer takes seqs, the row is written before the commit, and a
    /// rolled-back transaction clears the cache.
    pub fn peer(&self, from: UserId, to: UserId) -> Option<PeerFacts> {
        self.peers.get(&(from, to)).copied()
    }

    pub fn remember_peer(&mut self, from: UserId, to: UserId, facts: PeerFacts) {
        if self.peers.len() >= MAX_ENTRIES * 5 {
            self.peers.clear();
        }
        self.peers.insert((from, to), facts);
    }

    /// Called by every write to friends or blocks (and any future one that
    /// disables an account) before it changes anything.
    pub fn social_changed(&mut self) {
        self.peers.clear();
    }

    /// After a failed commit: drops everything the database can give back
    /// (the seqs of conversations whose messages wait in the log stay).
    pub fn clear(&mut self, waiting: impl Fn(ConversationId) -> bool) {
        self.loaded = None;
        self.savepoint = None;
        self.map.clear();
        self.pairs.clear();
        self.seqs.reload(waiting);
        self.peers.clear();
    }
}

pub fn load(conn: &Connection, id: ConversationId) -> Result<ConversationView> {
    let head: Option<(i64, bool, bool)> = conn
        .prepare_cached(
            "SELECT c.kind, COALESCE(g.dismissed, 0), COALESCE(g.muted_all, 0)
             FROM conversations c LEFT JOIN groups g ON g.conversation_id = c.id WHERE c.id = ?1",
        )?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((kind, dismissed, muted_all)) = head else {
        return Err(StoreError::NotFound("conversation"));
    };
    let mut members = Vec::new();
    let mut roles = HashMap::new();
    let mut stmt = conn.prepare_cached(
        "SELECT user_id, role, muted_until_ms FROM members
         WHERE conversation_id = ?1 AND left_seq = 0 ORDER BY user_id",
    )?;
    let rows = stmt.query_map([id], |r| {
        Ok((
            r.get::<_, UserId>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    for row in rows {
        let (user, role, muted) = row?;
        members.push(user);
        roles.insert(user, (Role::try_from(role)?, muted));
    }
    Ok(ConversationView {
        kind: ConversationKind::try_from(kind)?,
        dismissed,
        muted_all,
        members: members.into(),
        roles,
    })
}
