//! What is durable in the message log but not yet in the database: new
//! messages per conversation, cursor raises and the 1:1 conversations their
//! first messages made, with what the writer must answer from them meanwhile
//! (a resend's original message, a cursor's current value, a pair's
//! conversation). A made conversation goes into the database with the first
//! copy that takes any of its records, ahead of them in the same
//! transaction.
//!
//! Records wait a few seconds before they are copied into the database, a
//! conversation at a time: the message table is clustered by conversation,
//! so a conversation's messages copied together land on its own last pages
//! and cost a page write per page filled instead of one each. A cursor raised several times while
//! it waits is copied once. A read that must see a conversation's messages
//! or cursors first has that conversation's waiting records copied in
//! (`SqliteStore::fresh`, [`Pending::take_these`]).

pub use super::chunk::Chunk;
use super::log::{CursorKind, NewDirect};
use super::{IdMap, IdSet};
use crate::{ConversationId, StoredMessage, UserId};
use hashbrown::HashTable;
use natter_runtime::clock::Instant;
use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long records wait before they are copied ... With messages spread
/// over many conversations, the longer they wait the more records of each
/// conversation share each page a copy dirties: 10 s rather than 5 took
/// the 1:1 p99 at 5,000 msg/s from 8.3 / 7.6 to 5.1 / 4.1 ms; 30 s rather
/// than 10, once the copy's commits no longer checkpointed, the copy
/// threads' CPU per message from ~16 to ~4-7 µs and the p99 at 10,000
/// msg/s from ~9 to ~2-5 ms under peerbench's 1:1 load, for ~65 MB more
/// memory (docs/BENCHMARKS.md).
pub const COPY_AGE: Duration = Duration::from_secs(30);
/// ... unless this many wait: then the oldest are copied at once.
pub const COPY_HIGH: usize = 300_000;
/// ... or their messages hold this many bytes (texts, keys and the record
/// itself): what waits is bounded in memory whatever the messages' size
/// (300,000 of the largest would be gigabytes).
pub const COPY_HIGH_BYTES: usize = 96 << 20;

pub type CursorKey = (UserId, ConversationId, CursorKind);

struct Waiting {
    /// In seq order, each with the log segment that holds it.
    messages: Vec<(Arc<StoredMessage>, u64)>,
    /// When the oldest came.
    since: Instant,
    /// How many from the front the open transaction has copied.
    copied: usize,
}

struct Raise {
    seq: u64,
    segment: u64,
    since: Instant,
    /// The value the open transaction has copied.
    copied: Option<u64>,
}

/// A 1:1 conversation made in the log.
struct Made {
    c: NewDirect,
    segment: u64,
    /// Taken by the open transaction.
    copying: bool,
}

/// How to take back one record of a failed round.
enum Undo {
    Direct(ConversationId),
    Message(ConversationId),
    Cursor(CursorKey, Option<Raise>),
}

pub struct Pending {
    convs: IdMap<ConversationId, Waiting>,
    /// Conversations by the time their oldest record came (an entry whose
    /// time no longer matches its conversation's is stale).
    order: VecDeque<(Instant, ConversationId)>,
    cursors: IdMap<CursorKey, Raise>,
    /// The waiting cursors by conversation, for a read of a few.
    cursor_convs: IdMap<ConversationId, IdSet<(UserId, CursorKind)>>,
    cursor_order: VecDeque<(Instant, CursorKey)>,
    /// The waiting messages by their idempotency key (conversation,
    /// sender, client_msg_id), hashed with `key_hasher`: one pointer per
    /// message, looked up without making a key.
    keys: HashTable<Arc<StoredMessage>>,
    key_hasher: RandomState,
    /// 1:1 conversations made in the log, by id, by pair and by member.
    made: IdMap<ConversationId, Made>,
    made_pairs: IdMap<(UserId, UserId), ConversationId>,
    made_of: IdMap<UserId, Vec<ConversationId>>,
    /// Records not yet copied, per log segment.
    segments: BTreeMap<u64, usize>,
    /// Records waiting, shared with readers deciding whether to wait.
    count: Arc<AtomicUsize>,
    len: usize,
    /// What the waiting messages hold ([`weight`]).
    bytes: usize,
    /// The current round's records, to take back if it fails.
    journal: Vec<Undo>,
    /// What the open transaction has copied from.
    copied_convs: Vec<ConversationId>,
    copied_cursors: Vec<CursorKey>,
    copied_made: Vec<ConversationId>,
    /// Why nothing more is staged for now: the database has fallen far
    /// behind the log and keeps failing to take the records.
    pub refuse: Option<crate::StoreError>,
}

impl Pending {
    pub fn new(count: Arc<AtomicUsize>) -> Pending {
        Pending {
            convs: IdMap::default(),
            order: VecDeque::new(),
            cursors: IdMap::default(),
            cursor_convs: IdMap::default(),
            cursor_order: VecDeque::new(),
            keys: HashTable::new(),
            key_hasher: RandomState::new(),
            made: IdMap::default(),
            made_pairs: IdMap::default(),
            made_of: IdMap::default(),
            segments: BTreeMap::new(),
            count,
            len: 0,
            bytes: 0,
            journal: Vec::new(),
            copied_convs: Vec::new(),
            copied_cursors: Vec::new(),
            copied_made: Vec::new(),
            refuse: None,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// What the waiting messages hold in memory, in bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// When the oldest record comes due for copying.
    pub fn next_due(&self) -> Option<Instant> {
        let a = self.order.front().map(|f| f.0);
        let b = self.cursor_order.front().map(|f| f.0);
        a.into_iter().chain(b).min().map(|t| t + COPY_AGE)
    }

    /// The oldest log segment still holding a record the database lacks.
    pub fn oldest_segment(&self) -> Option<u64> {
        self.segments.keys().next().copied()
    }

    /// The stored message a resend of `client_msg_id` by `sender` to
    /// `conversation` stands for.
    pub fn original(
        &self,
        conversation: ConversationId,
        sender: UserId,
        client_msg_id: &str,
    ) -> Option<Arc<StoredMessage>> {
        let hash = key_hash(&self.key_hasher, conversation, sender, client_msg_id);
        self.keys
            .find(hash, |m| has_key(m, conversation, sender, client_msg_id))
            .cloned()
    }

    /// The value a cursor has been raised to here, if it has.
    pub fn cursor(
        &self,
        user: UserId,
        conversation: ConversationId,
        kind: CursorKind,
    ) -> Option<u64> {
        self.cursors.get(&(user, conversation, kind)).map(|c| c.seq)
    }

    /// The 1:1 conversation of users `lo` < `hi`, if it was made in the log
    /// and the database lacks it.
    pub fn direct(&self, lo: UserId, hi: UserId) -> Option<ConversationId> {
        self.made_pairs.get(&(lo, hi)).copied()
    }

    /// Conversation `id`, if it is a 1:1 made in the log that the database
    /// lacks.
    pub fn made(&self, id: ConversationId) -> Option<NewDirect> {
        self.made.get(&id).map(|m| m.c)
    }

    /// The 1:1 conversations of `user` made in the log that the database
    /// lacks.
    pub fn made_of(&self, user: UserId) -> &[ConversationId] {
        self.made_of.get(&user).map_or(&[], |v| &v[..])
    }

    /// Whether any of `ids` has a record waiting or being copied.
    pub fn any_waiting(&self, ids: &[ConversationId]) -> bool {
        ids.iter().any(|id| {
            self.convs.contains_key(id)
                || self.cursor_convs.contains_key(id)
                || self.made.contains_key(id)
        })
    }

    /// Adds a 1:1 conversation the current round makes in the log in
    /// `segment` (before its first message).
    pub fn push_direct(&mut self, c: NewDirect, segment: u64) {
        self.made_pairs.insert((c.lo, c.hi), c.id);
        for user in [c.lo, c.hi] {
            self.made_of.entry(user).or_default().push(c.id);
        }
        self.made.insert(
            c.id,
            Made {
                c,
                segment,
                copying: false,
            },
        );
        *self.segments.entry(segment).or_default() += 1;
        self.journal.push(Undo::Direct(c.id));
        self.grew(1);
    }

    /// The made conversation `id` is in the database, or never was made.
    fn unmake(&mut self, id: ConversationId) {
        let Some(m) = self.made.remove(&id) else {
            return;
        };
        self.made_pairs.remove(&(m.c.lo, m.c.hi));
        for user in [m.c.lo, m.c.hi] {
            if let Some(of) = self.made_of.get_mut(&user) {
                of.retain(|&c| c != id);
                if of.is_empty() {
                    self.made_of.remove(&user);
                }
            }
        }
        self.release(m.segment);
        self.grew(-1);
    }

    /// Adds a message the current round writes to the log in `segment`.
    pub fn push_message(&mut self, m: Arc<StoredMessage>, segment: u64) {
        let now = Instant::now();
        let (keys, hasher) = (&mut self.keys, &self.key_hasher);
        let hash = |k: &Arc<StoredMessage>| message_key_hash(hasher, k);
        let same =
            |k: &Arc<StoredMessage>| has_key(k, m.conversation_id, m.sender_id, &m.client_msg_id);
        match keys.entry(hash(&m), same, hash) {
            hashbrown::hash_table::Entry::Occupied(mut e) => *e.get_mut() = m.clone(),
            hashbrown::hash_table::Entry::Vacant(e) => {
                e.insert(m.clone());
            }
        }
        let id = m.conversation_id;
        let w = self.convs.entry(id).or_insert_with(|| Waiting {
            messages: Vec::new(),
            since: now,
            copied: 0,
        });
        if w.messages.is_empty() {
            w.since = now;
            self.order.push_back((now, id));
        }
        self.bytes += weight(&m);
        w.messages.push((m, segment));
        *self.segments.entry(segment).or_default() += 1;
        self.journal.push(Undo::Message(id));
        self.grew(1);
    }

    /// Adds a cursor raise the current round writes to the log in `segment`.
    pub fn push_cursor(
        &mut self,
        user: UserId,
        conversation: ConversationId,
        kind: CursorKind,
        seq: u64,
        segment: u64,
    ) {
        let key = (user, conversation, kind);
        let now = Instant::now();
        *self.segments.entry(segment).or_default() += 1;
        let before = self.cursor_in(
            key,
            Raise {
                seq,
                segment,
                since: now,
                copied: None,
            },
        );
        match &before {
            // The new raise stands for the old one, which no longer pins
            // its segment.
            Some(old) => {
                self.release(old.segment);
                if let Some(r) = self.cursors.get_mut(&key) {
                    r.since = old.since;
                }
            }
            None => {
                self.cursor_order.push_back((now, key));
                self.grew(1);
            }
        }
        self.journal.push(Undo::Cursor(key, before));
    }

    /// The current round is durable: its records stay.
    pub fn round_done(&mut self) {
        self.journal.clear();
    }

    /// The current round failed: takes its records back.
    pub fn round_failed(&mut self) {
        while let Some(u) = self.journal.pop() {
            match u {
                Undo::Direct(id) => self.unmake(id),
                Undo::Message(id) => {
                    let Some(w) = self.convs.get_mut(&id) else {
                        continue;
                    };
                    let Some((m, segment)) = w.messages.pop() else {
                        continue;
                    };
                    w.copied = w.copied.min(w.messages.len());
                    if w.messages.is_empty() {
                        self.convs.remove(&id);
                    }
                    self.bytes -= weight(&m);
                    self.forget_key(&m);
                    self.release(segment);
                    self.grew(-1);
                }
                Undo::Cursor(key, before) => {
                    if let Some(now) = self.cursor_out(&key) {
                        self.release(now.segment);
                    }
                    match before {
                        Some(old) => {
                            *self.segments.entry(old.segment).or_default() += 1;
                            self.cursor_in(key, old);
                        }
                        None => self.grew(-1),
                    }
                }
            }
        }
    }

    /// Every conversation with a record waiting.
    pub fn waiting_ids(&self) -> Vec<ConversationId> {
        let mut ids: Vec<ConversationId> = self.convs.keys().copied().collect();
        ids.extend(
            self.cursor_convs
                .keys()
                .chain(self.made.keys())
                .filter(|id| !self.convs.contains_key(id)),
        );
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Whether conversation `id` has messages waiting, or was made in the
    /// log (its seqs are held only by the writer).
    pub fn waiting(&self, id: ConversationId) -> bool {
        self.convs.contains_key(&id) || self.made.contains_key(&id)
    }

    /// Whether a copy is due: something waited [`COPY_AGE`], or more than
    /// [`COPY_HIGH`] records or [`COPY_HIGH_BYTES`] wait.
    pub fn due(&self, now: Instant) -> bool {
        self.len > COPY_HIGH
            || self.bytes > COPY_HIGH_BYTES
            || self.next_due().is_some_and(|d| d <= now)
    }

    /// Takes every waiting record to copy (marked as being copied until
    /// [`Pending::copied_committed`] or [`Pending::copied_rolled_back`]).
    pub fn take_all(&mut self) -> Chunk {
        let ids: Vec<ConversationId> = self.convs.keys().copied().collect();
        let keys: Vec<CursorKey> = self.cursors.keys().copied().collect();
        self.take(&ids, &keys)
    }

    /// Takes the records that waited longest, a conversation at a time,
    /// about `max` of them. (A whole chunk once anything is due, not just
    /// what is due, keeps each transaction large enough to be worth its
    /// commit.)
    pub fn take_oldest(&mut self, max: usize) -> Chunk {
        let mut ids = Vec::new();
        let mut taking = 0;
        for &(since, id) in &self.order {
            if taking >= max {
                break;
            }
            let Some(w) = self.convs.get(&id).filter(|w| w.since == since) else {
                continue;
            };
            taking += w.messages.len() - w.copied;
            ids.push(id);
        }
        let mut keys = Vec::new();
        for &(since, key) in &self.cursor_order {
            if keys.len() >= max {
                break;
            }
            if self.cursors.get(&key).is_some_and(|r| r.since == since) {
                keys.push(key);
            }
        }
        self.take(&ids, &keys)
    }

    /// Takes every waiting record (messages and cursors) of the first of
    /// `ids`, whole conversations, until about `max` records are taken;
    /// returns them and how many of `ids` they cover. For a read that must
    /// see those conversations: it need not wait for anyone else's.
    pub fn take_these(&mut self, ids: &[ConversationId], max: usize) -> (Chunk, usize) {
        let (mut convs, mut keys) = (Vec::new(), Vec::new());
        let (mut taking, mut covered) = (0, 0);
        for id in ids {
            if taking >= max {
                break;
            }
            covered += 1;
            if let Some(w) = self.convs.get(id) {
                taking += w.messages.len() - w.copied;
                convs.push(*id);
            }
            if let Some(of) = self.cursor_convs.get(id) {
                taking += of.len();
                keys.extend(of.iter().map(|&(user, kind)| (user, *id, kind)));
            }
        }
        (self.take(&convs, &keys), covered)
    }

    fn take(&mut self, ids: &[ConversationId], keys: &[CursorKey]) -> Chunk {
        let mut chunk = Chunk::default();
        // A made conversation goes in with the first of its records taken.
        for id in ids.iter().chain(keys.iter().map(|k| &k.1)) {
            if let Some(m) = self.made.get_mut(id).filter(|m| !m.copying) {
                m.copying = true;
                chunk.made.push(m.c);
                self.copied_made.push(*id);
            }
        }
        for id in ids {
            let Some(w) = self.convs.get_mut(id) else {
                continue;
            };
            if w.copied == w.messages.len() {
                continue;
            }
            chunk
                .messages
                .extend(w.messages[w.copied..].iter().map(|(m, _)| m.clone()));
            if w.copied == 0 {
                self.copied_convs.push(*id);
            }
            w.copied = w.messages.len();
        }
        for key in keys {
            let Some(r) = self.cursors.get_mut(key) else {
                continue;
            };
            if r.copied == Some(r.seq) {
                continue;
            }
            chunk.cursors.push((*key, r.seq));
            if r.copied.is_none() {
                self.copied_cursors.push(*key);
            }
            r.copied = Some(r.seq);
        }
        chunk
    }

    /// The open transaction committed: what it copied is the database's now.
    pub fn copied_committed(&mut self) {
        if self.copied_convs.is_empty()
            && self.copied_cursors.is_empty()
            && self.copied_made.is_empty()
        {
            return;
        }
        let now = Instant::now();
        for id in std::mem::take(&mut self.copied_made) {
            self.unmake(id);
        }
        for id in std::mem::take(&mut self.copied_convs) {
            let Some(w) = self.convs.get_mut(&id) else {
                continue;
            };
            let copied: Vec<(Arc<StoredMessage>, u64)> = w.messages.drain(..w.copied).collect();
            w.copied = 0;
            let left = !w.messages.is_empty();
            if left {
                w.since = now;
                self.order.push_back((now, id));
            } else {
                self.convs.remove(&id);
            }
            for (m, segment) in &copied {
                self.bytes -= weight(m);
                self.forget_key(m);
                self.release(*segment);
            }
            self.grew(-(copied.len() as isize));
        }
        for key in std::mem::take(&mut self.copied_cursors) {
            let Some(r) = self.cursors.get_mut(&key) else {
                continue;
            };
            if r.copied == Some(r.seq) {
                let segment = r.segment;
                self.cursor_out(&key);
                self.release(segment);
                self.grew(-1);
            } else {
                // Raised again since: the newer value waits its turn.
                r.copied = None;
                r.since = now;
                self.cursor_order.push_back((now, key));
            }
        }
        self.tidy_order();
    }

    /// The open transaction rolled back: nothing it copied counts.
    pub fn copied_rolled_back(&mut self) {
        for id in std::mem::take(&mut self.copied_made) {
            if let Some(m) = self.made.get_mut(&id) {
                m.copying = false;
            }
        }
        for id in std::mem::take(&mut self.copied_convs) {
            if let Some(w) = self.convs.get_mut(&id) {
                w.copied = 0;
            }
        }
        for key in std::mem::take(&mut self.copied_cursors) {
            if let Some(r) = self.cursors.get_mut(&key) {
                r.copied = None;
            }
        }
    }

    fn cursor_in(&mut self, key: CursorKey, raise: Raise) -> Option<Raise> {
        let (user, conversation, kind) = key;
        self.cursor_convs
            .entry(conversation)
            .or_default()
            .insert((user, kind));
        self.cursors.insert(key, raise)
    }

    fn cursor_out(&mut self, key: &CursorKey) -> Option<Raise> {
        let out = self.cursors.remove(key)?;
        let (user, conversation, kind) = *key;
        if let Some(of) = self.cursor_convs.get_mut(&conversation) {
            of.remove(&(user, kind));
            if of.is_empty() {
                self.cursor_convs.remove(&conversation);
            }
        }
        Some(out)
    }

    /// Drops stale entries from the front of the orders.
    fn tidy_order(&mut self) {
        while let Some(&(since, id)) = self.order.front() {
            if self.convs.get(&id).is_some_and(|w| w.since == since) {
                break;
            }
            self.order.pop_front();
        }
        while let Some(&(since, key)) = self.cursor_order.front() {
            if self.cursors.get(&key).is_some_and(|r| r.since == since) {
                break;
            }
            self.cursor_order.pop_front();
        }
    }

    fn forget_key(&mut self, m: &Arc<StoredMessage>) {
        let hash = message_key_hash(&self.key_hasher, m);
        if let Ok(e) = self.keys.find_entry(hash, |k| Arc::ptr_eq(k, m)) {
            e.remove();
        }
    }

    fn release(&mut self, segment: u64) {
        if let Some(c) = self.segments.get_mut(&segment) {
            *c -= 1;
            if *c == 0 {
                self.segments.remove(&segment);
            }
        }
    }

    fn grew(&mut self, by: isize) {
        self.len = self.len.saturating_add_signed(by);
        self.count.store(self.len, Ordering::Release);
    }
}

/// What a waiting message holds in memory: its record, texts and mentions
/// (and its share of the tables that find it).
fn weight(m: &StoredMessage) -> usize {
    std::mem::size_of::<StoredMessage>()
        + 64
        + m.body.content.len()
        + m.client_msg_id.len()
        + m.mentions.len() * std::mem::size_of::<UserId>()
}

/// The hash of an idempotency key in [`Pending`]'s table: the same for a
/// key looked up and for the waiting message that holds it.
fn key_hash(
    hasher: &RandomState,
    conversation: ConversationId,
    sender: UserId,
    client_msg_id: &str,
) -> u64 {
    hasher.hash_one((conversation, sender, client_msg_id))
}

fn message_key_hash(hasher: &RandomState, m: &StoredMessage) -> u64 {
    key_hash(hasher, m.conversation_id, m.sender_id, &m.client_msg_id)
}

/// Whether `m` holds the idempotency key (conversation, sender, id).
fn has_key(
    m: &StoredMessage,
    conversation: ConversationId,
    sender: UserId,
    client_msg_id: &str,
) -> bool {
    m.conversation_id == conversation && m.sender_id == sender && m.client_msg_id == client_msg_id
}

#[cfg(test)]
mod tests;
