//! The commit feed: every newly stored message, once, in commit order per
//! conversation, split over a few shards so fan-out runs on several workers.
//! A conversation always maps to the same shard, so its messages stay in
//! order. Each shard's queue is bounded: when a worker falls that far behind,
//! the store drops the push (and counts it) rather than hold memory without
//! limit; the message is stored, and clients fill the gap with Sync.

use crate::Committed;
use tokio::sync::mpsc;

/// One shard's receiving end.
pub type CommitFeed = mpsc::Receiver<Committed>;

/// The sending end, held by a store.
#[derive(Clone)]
pub struct CommitFeedSender {
    shards: Vec<mpsc::Sender<Committed>>,
}

impl CommitFeedSender {
    /// Queues a committed message on its conversation's shard; never waits.
    pub fn publish(&self, c: Committed) {
        let i = (c.message.conversation_id % self.shards.len() as u64) as usize;
        match self.shards[i].try_send(c) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::counter!("natter_pushes_dropped_total", "reason" => "fanout_queue_full")
                    .increment(1);
            }
            // The receivers live as long as the service; if they are gone
            // the server is stopping and nobody is left to push to.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Messages queued for fan-out, over all shards.
    pub fn queued(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.max_capacity() - s.capacity())
            .sum()
    }
}

/// A feed of `shards` shards (at least one), each holding up to `depth`
/// messages.
pub fn commit_feed(shards: usize, depth: usize) -> (CommitFeedSender, Vec<CommitFeed>) {
    let (txs, rxs) = (0..shards.max(1))
        .map(|_| mpsc::channel(depth.max(1)))
        .unzip();
    (CommitFeedSender { shards: txs }, rxs)
}
