//! Which idempotency keys (conversation, sender, `client_msg_id`) a send
//! need not look up. Every send asks whether its key was stored before (a
//! resend gets the original's ACK); the answer is nearly always no, and
//! finding that out in the database is a B-tree descent whose pages the
//! writer's cache often no longer holds (a copy thread's commit empties
//! that cache): 9 % of the server's CPU with the 1:1 messages of 200
//! clients spread over their 19,900 conversations.
//!
//! A conversation made in this run (a 1:1 made in the log, a new group)
//! has had every message staged by this writer since it was made, so a
//! filter of the keys staged since then knows every key it has: a key the
//! filter has not seen was never stored, and the lookup is skipped. The
//! filter is a Bloom filter: it may say "perhaps" of a key never stored
//! (then the database is asked, as before), never "no" of one stored.
//! Conversations made before the filter began (before this run) are always
//! looked up. Keys of a round that failed stay in the filter: a "perhaps"
//! too many.
//!
//! Memory is bounded: a filter takes [`CAPACITY`] keys in [`BITS`] bits
//! (2 MiB, ~2 % false "perhaps" when full); then a new one starts and the
//! one before it is kept, so keys are known for the last 2-4 million
//! messages, and conversations made before the older filter began are
//! looked up again.

use crate::{ConversationId, UserId};
use natter_domain::model::SYSTEM_ID_PREFIX;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

/// Keys one filter takes before the next one starts.
const CAPACITY: usize = 1 << 21;
/// Bits per filter (a power of two): 8 per key.
const BITS: usize = 1 << 24;
/// Bits set per key.
const HASHES: u64 = 6;

struct Filter {
    bits: Box<[u64]>,
    keys: usize,
    /// The first conversation made while this filter was the newest.
    first_conversation: u64,
}

impl Filter {
    fn new(first_conversation: u64) -> Self {
        Filter {
            bits: vec![0u64; BITS / 64].into_boxed_slice(),
            keys: 0,
            first_conversation,
        }
    }

    fn positions(hash: u64) -> impl Iterator<Item = usize> {
        // Double hashing: the i-th position is h1 + i * h2.
        let step = hash.rotate_left(32) | 1;
        (0..HASHES).map(move |i| (hash.wrapping_add(i.wrapping_mul(step)) as usize) & (BITS - 1))
    }

    fn add(&mut self, hash: u64) {
        for p in Self::positions(hash) {
            self.bits[p / 64] |= 1 << (p % 64);
        }
        self.keys += 1;
    }

    fn has(&self, hash: u64) -> bool {
        Self::positions(hash).all(|p| self.bits[p / 64] & (1 << (p % 64)) != 0)
    }
}

pub(crate) struct NewKeys {
    hasher: RandomState,
    newest: Filter,
    older: Option<Filter>,
}

impl NewKeys {
    /// Knows the conversations from `next_conversation` on: those made from
    /// now.
    pub(crate) fn new(next_conversation: u64) -> Self {
        NewKeys {
            hasher: RandomState::new(),
            newest: Filter::new(next_conversation),
            older: None,
        }
    }

    fn hash(&self, conversation: ConversationId, sender: UserId, client_msg_id: &str) -> u64 {
        self.hasher.hash_one((conversation, sender, client_msg_id))
    }

    /// Records the key of a staged message; `next_conversation` is the id
    /// the next conversation made will get.
    pub(crate) fn add(
        &mut self,
        conversation: ConversationId,
        sender: UserId,
        client_msg_id: &str,
        next_conversation: u64,
    ) {
        if self.newest.keys >= CAPACITY {
            let newest = std::mem::replace(&mut self.newest, Filter::new(next_conversation));
            self.older = Some(newest);
        }
        let hash = self.hash(conversation, sender, client_msg_id);
        self.newest.add(hash);
    }

    /// Whether no message of `conversation` was ever stored with this key:
    /// true only for a conversation made since the oldest filter began,
    /// whose every key the filters have seen, and a key they have not.
    pub(crate) fn surely_new(
        &self,
        conversation: ConversationId,
        sender: UserId,
        client_msg_id: &str,
    ) -> bool {
        let known_from = self
            .older
            .as_ref()
            .unwrap_or(&self.newest)
            .first_conversation;
        // System events are stored apart from the staged messages (and
        // their keys are never a client's).
        if conversation < known_from || client_msg_id.starts_with(SYSTEM_ID_PREFIX) {
            return false;
        }
        let hash = self.hash(conversation, sender, client_msg_id);
        !self.newest.has(hash) && !self.older.as_ref().is_some_and(|f| f.has(hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_staged_is_never_surely_new() {
        let mut keys = NewKeys::new(100);
        for i in 0..50_000u64 {
            keys.add(100 + i % 500, i % 7, &format!("m{i}"), 600);
        }
        for i in 0..50_000u64 {
            assert!(
                !keys.surely_new(100 + i % 500, i % 7, &format!("m{i}")),
                "{i}"
            );
        }
        // Keys never staged are nearly all known to be new.
        let new = (0..10_000u64)
            .filter(|i| keys.surely_new(100 + i % 500, i % 7, &format!("other{i}")))
            .count();
        assert!(new > 9_900, "{new}");
    }

    #[test]
    fn conversations_from_before_are_always_looked_up() {
        let keys = NewKeys::new(100);
        assert!(!keys.surely_new(99, 1, "m1"));
        assert!(keys.surely_new(100, 1, "m1"));
        // A system event's key is never taken as new.
        assert!(!keys.surely_new(100, 1, &format!("{SYSTEM_ID_PREFIX}100-1")));
    }

    /// How many of 1,000 keys never staged in `conversation` are taken
    /// as surely new (a full filter says "perhaps" of ~2 % of them).
    fn new_of(keys: &NewKeys, conversation: ConversationId) -> usize {
        (0..1_000)
            .filter(|i| keys.surely_new(conversation, 9, &format!("never{i}")))
            .count()
    }

    #[test]
    fn a_full_filter_gives_way_and_the_conversations_it_alone_knew_are_looked_up() {
        // Each message is added as the writer does: after its conversation
        // took its id (the next one is past it).
        let mut keys = NewKeys::new(10);
        keys.add(10, 1, "first", 11);
        for i in 1..CAPACITY {
            keys.add(20, 2, &i.to_string(), 21);
        }
        // The first filter is full: conversation 30's first message starts
        // the second, which knows the conversations from 31 on; the first
        // is kept, so every key so far is still known.
        keys.add(30, 3, "second", 31);
        assert!(!keys.surely_new(10, 1, "first"));
        assert!(!keys.surely_new(20, 2, "5"));
        assert!(!keys.surely_new(30, 3, "second"));
        for conversation in [10, 30] {
            let new = new_of(&keys, conversation);
            assert!(new > 900, "{conversation}: {new}");
        }
        keys.add(31, 4, "a", 32);
        for i in 2..CAPACITY {
            keys.add(31, 4, &format!("x{i}"), 32);
        }
        assert!(keys.older.is_some() && keys.newest.keys == CAPACITY);
        // The second is full: a third starts and the first is dropped, so
        // conversations made before the second began are looked up again.
        keys.add(40, 5, "third", 41);
        assert_eq!(keys.newest.first_conversation, 41);
        for conversation in [10, 20, 30] {
            assert_eq!(new_of(&keys, conversation), 0, "{conversation}");
        }
        assert!(!keys.surely_new(31, 4, "a"));
        assert!(!keys.surely_new(40, 5, "third"));
        for conversation in [31, 40] {
            let new = new_of(&keys, conversation);
            assert!(new > 900, "{conversation}: {new}");
        }
    }
}
