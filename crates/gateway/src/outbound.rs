//! A connection's outbound side: a bounded queue of encoded frames and the
//! close signal with the last frame to send. The connection's own task
//! writes them (`writer.rs`), coalescing whatever is queued into one write.
//!
//! Anything may push; nobody waits. A full queue means the client is not
//! reading: the connection is closed as a slow consumer and the client
//! resyncs from the store when it returns, so nothing is lost.
//!
//! The queue is a deque under a lock beside the close signal, in the one
//! allocation every handle shares: an idle connection's queue holds no
//! memory of its own (a channel would keep a block of slots and padded
//! wakers for each connection, ~1.5 KB, whether anything is queued or not).

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use natter_proto::{pb::DisconnectReason, LENGTH_LEN};
use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use tokio::sync::Notify;

/// The Disconnect a connection was closed with, said again by a WebSocket
/// in its close frame.
pub struct Farewell {
    pub reason: DisconnectReason,
    pub message: String,
    pub too_large: bool,
}

/// How a connection ends.
#[derive(Clone, Debug)]
pub struct Close {
    pub reason: DisconnectReason,
    pub message: String,
    /// Write what is already queued before the last frame.
    pub flush: bool,
    /// For a frame too large: a WebSocket's close code is 1009, not 1008.
    pub too_large: bool,
    pub reconnect_after_ms: u32,
    /// GOING_AWAY in a cluster: the frame and WebSocket addresses of the
    /// node to reconnect to (empty: anywhere).
    pub reconnect_to: Option<Arc<(String, String)>>,
}

pub(crate) struct Closer {
    /// Set once the connection is closing; `ready` wakes the queue's reader
    /// and `ended` whoever else waits for that (a flag and a list of
    /// waiters in this allocation, where a cancellation token would be one
    /// more of its own per connection).
    closing: AtomicBool,
    ended: Notify,
    /// Boxed: set once, at the end, and not worth its room before.
    close: Mutex<Option<Box<Close>>>,
    /// Frames queued and not yet taken by the writer.
    queue: Mutex<Queue>,
    /// The one reader of the queue (the connection's task, or a live
    /// stream), woken by each push.
    ready: AtomicWaker,
    max_frames: u32,
    /// Bytes queued and not yet written.
    pub(crate) queued: AtomicUsize,
    max_queued: usize,
    max_frame: u32,
}

#[derive(Default)]
struct Queue {
    frames: VecDeque<Bytes>,
    /// The writer takes no more: pushes are refused as Gone.
    shut: bool,
}

enum Refused {
    Full,
    Shut,
}

impl Closer {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn enqueue(&self, frame: Bytes) -> Result<(), Refused> {
        let mut q = self.queue();
        if q.shut {
            return Err(Refused::Shut);
        }
        if q.frames.len() >= self.max_frames as usize {
            return Err(Refused::Full);
        }
        q.frames.push_back(frame);
        drop(q);
        self.ready.wake();
        Ok(())
    }

    /// Moves up to `max` queued frames to `batch`; when there are none, the
    /// task polling with `cx` is woken by the next push.
    pub(crate) fn poll_take(&self, cx: &mut Context<'_>, batch: &mut Vec<Bytes>, max: usize) {
        // Registered first, so that a push after the take wakes the task
        // (the one lock a poll of an idle connection's queue costs).
        self.ready.register(cx.waker());
        self.take(batch, max);
    }

    /// Moves up to `max` queued frames to `batch`.
    pub(crate) fn take(&self, batch: &mut Vec<Bytes>, max: usize) {
        let mut q = self.queue();
        let n = q.frames.len().min(max);
        batch.extend(q.frames.drain(..n));
        // A burst's room is given back once the connection is idle again.
        if q.frames.is_empty() && q.frames.capacity() > 0 {
            q.frames = VecDeque::new();
        }
    }

    /// Takes no more; moves what is queued to `batch` if given, else drops it.
    pub(crate) fn shut(&self, batch: Option<&mut Vec<Bytes>>) {
        let mut q = self.queue();
        q.shut = true;
        let frames = std::mem::take(&mut q.frames);
        drop(q);
        if let Some(batch) = batch {
            batch.extend(frames);
        }
    }
}

/// The handle others hold to push to a connection or close it.
#[derive(Clone)]
pub struct Outbound {
    pub(crate) closer: Arc<Closer>,
}

pub enum Pushed {
    Queued,
    /// The queue was full; the connection is being closed.
    SlowConsumer,
    /// The connection is already closing.
    Gone,
    /// Larger than the frame limit the client was promised: not sent.
    TooLarge,
}

impl Outbound {
    /// Frames queued and not yet written, and how many the queue holds.
    pub fn backlog(&self) -> (usize, usize) {
        (
            self.closer.queue().frames.len(),
            self.closer.max_frames as usize,
        )
    }

    /// Whether a frame (as encoded, length prefix included) is within the
    /// frame limit told to the client.
    pub fn fits(&self, frame: &Bytes) -> bool {
        frame.len() <= self.closer.max_frame as usize + LENGTH_LEN
    }

    pub fn push(&self, frame: Bytes) -> Pushed {
        if !self.fits(&frame) {
            metrics::counter!("natter_oversized_frames_total").increment(1);
            tracing::error!(
                bytes = frame.len(),
                "a frame above the frame limit was not sent"
            );
            return Pushed::TooLarge;
        }
        let len = frame.len();
        let queued = self.closer.queued.fetch_add(len, Ordering::Relaxed) + len;
        let sent = if queued > self.closer.max_queued {
            Err(Refused::Full)
        } else {
            self.closer.enqueue(frame)
        };
        match sent {
            Ok(()) => Pushed::Queued,
            Err(e) => {
                self.closer.queued.fetch_sub(len, Ordering::Relaxed);
                match e {
                    Refused::Full => {
                        metrics::counter!("natter_limit_hits_total", "limit" => "outbound_queue")
                            .increment(1);
                        self.close(Close {
                            reason: DisconnectReason::SlowConsumer,
                            message: "outbound queue full: reconnect and sync".into(),
                            flush: false,
                            too_large: false,
                            reconnect_after_ms: 0,
                            reconnect_to: None,
                        });
                        Pushed::SlowConsumer
                    }
                    Refused::Shut => Pushed::Gone,
                }
            }
        }
    }

    /// Closes the connection; the first reason given wins.
    pub fn close(&self, close: Close) {
        {
            let mut slot = self.closer.close.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                *slot = Some(Box::new(close));
            }
        }
        self.abort();
    }

    /// Whether the connection is closing already.
    pub fn is_closing(&self) -> bool {
        self.closer.closing.load(Ordering::Acquire)
    }

    /// Ends the connection without a last frame (the peer is gone, or the
    /// close was already decided).
    pub fn abort(&self) {
        if !self.closer.closing.swap(true, Ordering::AcqRel) {
            self.closer.ended.notify_waiters();
            self.closer.ready.wake();
        }
    }

    /// `Ready` once the connection is closing; until then the task polling
    /// with `cx` is woken when it does. For the queue's one reader (the
    /// connection's task): it costs no future of its own, where
    /// [`Outbound::closed`] holds a place in the list of waiters.
    pub(crate) fn poll_closing(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.closer.ready.register(cx.waker());
        if self.is_closing() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Resolves when the connection is closing. The future owns what it
    /// waits on, so a loop makes it once and polls it every turn.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let closer = self.closer.clone();
        async move {
            let ended = closer.ended.notified();
            tokio::pin!(ended);
            // Waiting before the flag is read: a close after the read
            // wakes it.
            ended.as_mut().enable();
            if !closer.closing.load(Ordering::Acquire) {
                ended.await;
            }
        }
    }
}

/// For a reader that is not a socket writer (`live`): the same queue, taken
/// by whoever serves the session.
impl Outbound {
    /// Moves up to `max` queued frames to `batch`; they no longer count
    /// against the queue's bytes.
    pub(crate) fn take_queued(&self, batch: &mut Vec<Bytes>, max: usize) {
        let from = batch.len();
        self.closer.take(batch, max);
        let bytes: usize = batch[from..].iter().map(Bytes::len).sum();
        self.closer.queued.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Resolves once something is queued.
    pub(crate) async fn pushed(&self) {
        std::future::poll_fn(|cx| {
            self.closer.ready.register(cx.waker());
            if self.closer.queue().frames.is_empty() {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await
    }

    /// Why the connection closes, once it does (`None`: aborted).
    pub(crate) fn ending(&self) -> Option<Close> {
        self.closer
            .close
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_deref()
            .cloned()
    }

    /// Takes no more pushes; moves what is queued to `batch` if given.
    pub(crate) fn shut_into(&self, batch: Option<&mut Vec<Bytes>>) {
        self.closer.shut(batch)
    }
}

/// How much a connection's queue may hold.
#[derive(Clone, Copy, Debug)]
pub struct QueueLimits {
    pub frames: usize,
    pub bytes: usize,
    /// The largest frame (the length field) the client accepts.
    pub max_frame: usize,
}

/// Creates the queue and the handle; `writer` is then run as a task.
pub fn channel(limits: QueueLimits) -> Outbound {
    Outbound {
        closer: Arc::new(Closer {
            closing: AtomicBool::new(false),
            ended: Notify::new(),
            close: Mutex::new(None),
            queue: Mutex::default(),
            ready: AtomicWaker::new(),
            max_frames: limits.frames.clamp(1, u32::MAX as usize) as u32,
            queued: AtomicUsize::new(0),
            max_queued: limits.bytes,
            max_frame: limits.max_frame.min(u32::MAX as usize) as u32,
        }),
    }
}
