//! The commit feed: every newly stored message, in commit order per
//! conversation, split over a few shards so fan-out runs on several workers.
//! A conversation always maps to the same shard, so its messages stay in
//! order.
//!
//! Each shard's queue is bounded. When a worker falls that far behind, the
//! store never waits for it: the message goes to the shard's overflow
//! instead, which keeps only the newest message of each conversation (one
//! that replaces an older one makes the older one a dropped push, counted in
//! `natter_pushes_dropped_total`). The worker pushes the overflow once its
//! queue is empty, so every online member still receives the newest message
//! of the conversation, sees the gap before it, and fills it with Sync: no
//! message is lost to anyone. Only when the overflow also holds as many
//! conversations as the queue holds messages is a push dropped outright
//! (`reason="fanout_overflow_full"`); its members find it at their next
//! message in that conversation or their next Sync.

use crate::{Committed, ConversationId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::mpsc;

struct Overflow {
    newest: Mutex<HashMap<ConversationId, Committed>>,
    /// Entries in `newest`, read without the lock on the hot path.
    len: AtomicUsize,
    cap: usize,
}

impl Overflow {
    fn lock(&self) -> MutexGuard<'_, HashMap<ConversationId, Committed>> {
        self.newest.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take_one(&self) -> Option<Committed> {
        if self.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut map = self.lock();
        let id = *map.keys().next()?;
        let c = map.remove(&id);
        self.len.store(map.len(), Ordering::Release);
        c
    }
}

fn dropped(reason: &'static str) {
    metrics::counter!("natter_pushes_dropped_total", "reason" => reason).increment(1);
}

/// One shard's receiving end, for its fan-out worker.
pub struct CommitFeed {
    rx: mpsc::Receiver<Committed>,
    overflow: Arc<Overflow>,
}

impl CommitFeed {
    /// The next message to fan out; `None` once the store has closed the
    /// feed and everything in it has been taken.
    pub async fn recv(&mut self) -> Option<Committed> {
        if let Ok(c) = self.rx.try_recv() {
            return Some(c);
        }
        // The queue is empty: the overflow's turn, then wait for more.
        if let Some(c) = self.overflow.take_one() {
            return Some(c);
        }
        match self.rx.recv().await {
            Some(c) => Some(c),
            None => self.overflow.take_one(),
        }
    }

    /// A message already queued, without waiting (tests).
    pub fn try_recv(&mut self) -> Option<Committed> {
        self.rx.try_recv().ok().or_else(|| self.overflow.take_one())
    }
}

/// The sending end, held by a store.
#[derive(Clone)]
pub struct CommitFeedSender {
    shards: Arc<[(mpsc::Sender<Committed>, Arc<Overflow>)]>,
}

impl CommitFeedSender {
    /// Hands a committed message to its conversation's shard; never waits.
    pub fn publish(&self, c: Committed) {
        let id = c.message.conversation_id;
        let (tx, overflow) = &self.shards[(id % self.shards.len() as u64) as usize];
        match tx.try_send(c) {
            Ok(()) => {
                // A newer message of the conversation is queued: it makes
                // any older one waiting in the overflow redundant.
                if overflow.len.load(Ordering::Acquire) > 0 {
                    let mut map = overflow.lock();
                    if map.remove(&id).is_some() {
                        dropped("fanout_queue_full");
                    }
                    overflow.len.store(map.len(), Ordering::Release);
                }
            }
            Err(mpsc::error::TrySendError::Full(c)) => {
                let mut map = overflow.lock();
                if map.len() < overflow.cap || map.contains_key(&id) {
                    if map.insert(id, c).is_some() {
                        dropped("fanout_queue_full");
                    }
                    overflow.len.store(map.len(), Ordering::Release);
                } else {
                    dropped("fanout_overflow_full");
                }
            }
            // The receivers live as long as the service; if they are gone
            // the server is stopping and nobody is left to push to.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// A feed of `shards` shards (at least one), each queueing up to `depth`
/// messages with an overflow of as many conversations.
pub fn commit_feed(shards: usize, depth: usize) -> (CommitFeedSender, Vec<CommitFeed>) {
    let depth = depth.max(1);
    let (senders, feeds) = (0..shards.max(1))
        .map(|_| {
            let (tx, rx) = mpsc::channel(depth);
            let overflow = Arc::new(Overflow {
                newest: Mutex::new(HashMap::new()),
                len: AtomicUsize::new(0),
                cap: depth,
            });
            ((tx, overflow.clone()), CommitFeed { rx, overflow })
        })
        .unzip::<_, _, Vec<_>, Vec<_>>();
    (
        CommitFeedSender {
            shards: senders.into(),
        },
        feeds,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Body, BodyKind, StoredMessage};

    fn msg(conversation_id: u64, seq: u64) -> Committed {
        Committed {
            message: Arc::new(StoredMessage {
                conversation_id,
                seq,
                msg_id: seq,
                sender_id: 1,
                client_msg_id: format!("{conversation_id}-{seq}"),
                server_ts_ms: 0,
                body: Body {
                    kind: BodyKind::Text,
                    content: String::new(),
                },
                mentions: vec![],
                mention_all: false,
            }),
            members: Arc::new([1, 2]),
            origin: None,
        }
    }

    fn drain(feed: &mut CommitFeed) -> Vec<(u64, u64)> {
        std::iter::from_fn(|| feed.try_recv())
            .map(|c| (c.message.conversation_id, c.message.seq))
            .collect()
    }

    #[test]
    fn a_full_queue_keeps_the_newest_message_of_each_conversation() {
        let (tx, mut feeds) = commit_feed(1, 2);
        let feed = &mut feeds[0];
        // Queue: 1#1, 1#2; then 1#3, 1#4 and 2#1 overflow; 1#4 replaces 1#3.
        for (c, s) in [(1, 1), (1, 2), (1, 3), (2, 1), (1, 4)] {
            tx.publish(msg(c, s));
        }
        let mut got = drain(feed);
        got[2..].sort_unstable();
        assert_eq!(got, vec![(1, 1), (1, 2), (1, 4), (2, 1)]);
    }

    #[test]
    fn a_queued_newer_message_retires_the_overflowed_older_one() {
        let (tx, mut feeds) = commit_feed(1, 1);
        let feed = &mut feeds[0];
        tx.publish(msg(1, 1));
        tx.publish(msg(1, 2)); // overflows
        assert_eq!(drain(feed), vec![(1, 1), (1, 2)]);
        tx.publish(msg(1, 3));
        tx.publish(msg(2, 1)); // overflows
        tx.publish(msg(3, 1)); // the overflow holds one conversation: dropped
        assert_eq!(drain(feed), vec![(1, 3), (2, 1)]);
    }
}
