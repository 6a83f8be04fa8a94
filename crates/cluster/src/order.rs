//! Push order across nodes. On one node a conversation's messages reach the
//! registry in commit order; in a cluster they come from several writers
//! (this node's own commits at once, other nodes' through Redis a moment
//! later), so a session could get seq 11 before seq 10 and have to Sync the
//! gap. The sequencer holds a message that arrives ahead of the one before
//! it, per conversation, until that one arrives — at most `HOLD`, then lets
//! it go anyway (the client's cursor rule still fills the gap: a publish
//! that was lost must not stall a conversation).

use natter_gateway::delivery::Routed;
use natter_service::model::ConversationId;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// The longest a message waits for the one before it: long enough for a
/// loaded node's publish to arrive (the one before it is almost always on
/// its way), short enough that a publish Redis lost costs little.
pub(crate) const HOLD: Duration = Duration::from_millis(250);
/// Messages held per conversation before they all go.
const MAX_HELD: usize = 1024;
/// Conversations tracked; past it, messages go as they come.
const MAX_CONVERSATIONS: usize = 200_000;
/// A conversation without messages this long is forgotten.
const IDLE: Duration = Duration::from_secs(60);

#[derive(Default)]
pub(crate) struct Sequencer {
    conversations: Mutex<HashMap<ConversationId, Conversation>>,
}

struct Conversation {
    /// The highest seq let through.
    last: u64,
    held: BTreeMap<u64, Routed>,
    /// When the oldest held message came.
    held_since: Option<Instant>,
    touched: Instant,
}

impl Conversation {
    /// Lets every held message go, in order.
    fn release(&mut self, out: &mut Vec<Routed>) {
        while let Some((seq, r)) = self.held.pop_first() {
            self.last = self.last.max(seq);
            out.push(r);
        }
        self.held_since = None;
    }
}

impl Sequencer {
    /// Offers message `seq` of `conversation`; returns what may be
    /// delivered now, in order.
    pub(crate) fn offer(
        &self,
        conversation: ConversationId,
        seq: u64,
        routed: Routed,
        now: Instant,
    ) -> Vec<Routed> {
        let mut map = self.conversations.lock().unwrap_or_else(|p| p.into_inner());
        if !map.contains_key(&conversation) && map.len() >= MAX_CONVERSATIONS {
            return vec![routed];
        }
        // The first message seen of a conversation is taken as the next.
        let c = map.entry(conversation).or_insert_with(|| Conversation {
            last: seq.saturating_sub(1),
            held: BTreeMap::new(),
            held_since: None,
            touched: now,
        });
        c.touched = now;
        let mut out = Vec::new();
        if seq <= c.last {
            // Late (already let past) or a duplicate: the client sorts it out.
            out.push(routed);
        } else if seq == c.last + 1 {
            c.last = seq;
            out.push(routed);
            while let Some(r) = c.held.remove(&(c.last + 1)) {
                c.last += 1;
                out.push(r);
            }
            if c.held.is_empty() {
                c.held_since = None;
            }
        } else {
            c.held.insert(seq, routed);
            c.held_since.get_or_insert(now);
            if c.held.len() > MAX_HELD {
                metrics::counter!("natter_bus_order_released_total").increment(1);
                c.release(&mut out);
            }
        }
        out
    }

    /// Messages held longer than `HOLD`, released in order; forgets idle
    /// conversations.
    pub(crate) fn due(&self, now: Instant) -> Vec<Routed> {
        let mut out = Vec::new();
        let mut map = self.conversations.lock().unwrap_or_else(|p| p.into_inner());
        for c in map.values_mut() {
            if c.held_since.is_some_and(|t| now.duration_since(t) >= HOLD) {
                metrics::counter!("natter_bus_order_released_total").increment(1);
                c.release(&mut out);
            }
        }
        map.retain(|_, c| !c.held.is_empty() || now.duration_since(c.touched) < IDLE);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn msg(seq: u64) -> Routed {
        Routed::Push {
            users: vec![1].into(),
            frame: Bytes::from(seq.to_string()),
            skip: None,
            order: Some((7, seq)),
        }
    }

    fn seqs(v: &[Routed]) -> Vec<u64> {
        v.iter()
            .map(|r| match r {
                Routed::Push { order, .. } => order.map_or(0, |o| o.1),
                Routed::Revoke { .. } => 0,
            })
            .collect()
    }

    #[test]
    fn a_message_ahead_waits_for_the_one_before() {
        let s = Sequencer::default();
        let t = Instant::now();
        assert_eq!(seqs(&s.offer(7, 10, msg(10), t)), [10]);
        assert_eq!(seqs(&s.offer(7, 12, msg(12), t)), Vec::<u64>::new());
        assert_eq!(seqs(&s.offer(7, 13, msg(13), t)), Vec::<u64>::new());
        assert_eq!(seqs(&s.offer(7, 11, msg(11), t)), [11, 12, 13]);
        assert_eq!(
            seqs(&s.offer(7, 11, msg(11), t)),
            [11],
            "a duplicate goes on"
        );
        assert!(s.due(t + HOLD).is_empty());
    }

    #[test]
    fn a_message_that_never_comes_stalls_nothing_past_the_hold() {
        let s = Sequencer::default();
        let t = Instant::now();
        s.offer(7, 1, msg(1), t);
        assert!(s.offer(7, 3, msg(3), t).is_empty());
        assert!(s.offer(7, 4, msg(4), t + HOLD / 2).is_empty());
        assert!(s.due(t + HOLD / 2).is_empty());
        assert_eq!(seqs(&s.due(t + HOLD)), [3, 4]);
        assert_eq!(seqs(&s.offer(7, 5, msg(5), t + HOLD)), [5]);
        assert_eq!(
            seqs(&s.offer(7, 2, msg(2), t + HOLD)),
            [2],
            "late, let through"
        );
    }

    #[test]
    fn idle_conversations_are_forgotten() {
        let s = Sequencer::default();
        let t = Instant::now();
        s.offer(7, 5, msg(5), t);
        s.due(t + IDLE);
        assert!(s
            .conversations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty());
        assert_eq!(seqs(&s.offer(7, 9, msg(9), t + IDLE)), [9], "starts afresh");
    }
}
