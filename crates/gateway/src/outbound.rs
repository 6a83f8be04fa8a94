//! A connection's outbound side: a bounded queue of encoded frames, the task
//! that writes them (coalescing whatever is queued into one write), and the
//! close signal with the last frame to send.
//!
//! Anything may push; nobody waits. A full queue means the client is not
//! reading: the connection is closed as a slow consumer and the client
//! resyncs from the store when it returns, so nothing is lost.
//!
//! The queue is a deque under a lock beside the close signal, in the one
//! allocation every handle shares: an idle connection's queue holds no
//! memory of its own (a channel would keep a block of slots and padded
//! wakers for each connection, ~1.5 KB, whether anything is queued or not).

use crate::transport::FrameWrite;
use bytes::Bytes;
use natter_proto::{pb::DisconnectReason, ServerFrame, LENGTH_LEN};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

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

struct Closer {
    token: CancellationToken,
    close: Mutex<Option<Close>>,
    /// Frames queued and not yet taken by the writer.
    queue: Mutex<Queue>,
    /// Woken by each push; holds one wake-up while the writer is busy.
    ready: Notify,
    max_frames: usize,
    /// Bytes queued and not yet written.
    queued: AtomicUsize,
    max_queued: usize,
    max_frame: usize,
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
        if q.frames.len() >= self.max_frames {
            return Err(Refused::Full);
        }
        q.frames.push_back(frame);
        drop(q);
        self.ready.notify_one();
        Ok(())
    }

    /// Moves up to `max` queued frames to `batch`.
    fn take(&self, batch: &mut Vec<Bytes>, max: usize) {
        let mut q = self.queue();
        let n = q.frames.len().min(max);
        batch.extend(q.frames.drain(..n));
        // A burst's room is given back once the connection is idle again.
        if q.frames.is_empty() && q.frames.capacity() > 64 {
            q.frames = VecDeque::new();
        }
    }

    /// Takes no more; moves what is queued to `batch` if given, else drops it.
    fn shut(&self, batch: Option<&mut Vec<Bytes>>) {
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
    closer: Arc<Closer>,
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
        (self.closer.queue().frames.len(), self.closer.max_frames)
    }

    /// Whether a frame (as encoded, length prefix included) is within the
    /// frame limit told to the client.
    pub fn fits(&self, frame: &Bytes) -> bool {
        frame.len() <= self.closer.max_frame + LENGTH_LEN
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
                *slot = Some(close);
            }
        }
        self.closer.token.cancel();
    }

    /// Whether the connection is closing already.
    pub fn is_closing(&self) -> bool {
        self.closer.token.is_cancelled()
    }

    /// Ends the connection without a last frame (the peer is gone, or the
    /// close was already decided).
    pub fn abort(&self) {
        self.closer.token.cancel();
    }

    /// Resolves when the connection is closing. The future owns what it
    /// waits on, so a loop makes it once and polls it every turn.
    pub fn closed(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.closer.token.clone().cancelled_owned()
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

    /// Resolves once something was pushed since the last time it resolved.
    pub(crate) async fn pushed(&self) {
        self.closer.ready.notified().await
    }

    /// Why the connection closes, once it does (`None`: aborted).
    pub(crate) fn ending(&self) -> Option<Close> {
        self.closer
            .close
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
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
            token: CancellationToken::new(),
            close: Mutex::new(None),
            queue: Mutex::default(),
            ready: Notify::new(),
            max_frames: limits.frames.max(1),
            queued: AtomicUsize::new(0),
            max_queued: limits.bytes,
            max_frame: limits.max_frame,
        }),
    }
}

/// Writes queued frames until the connection closes, then the last frame.
pub async fn writer<W: FrameWrite>(mut io: W, out: Outbound, flush_timeout: Duration) {
    let mut batch: Vec<Bytes> = Vec::new();
    let mut clean = true;
    let closed = out.closed();
    tokio::pin!(closed);
    loop {
        if out.is_closing() {
            break;
        }
        out.closer.take(&mut batch, 64);
        if batch.is_empty() {
            // Idle: keep no room from the last burst.
            if batch.capacity() > 16 {
                batch = Vec::new();
            }
            tokio::select! {
                biased;
                _ = &mut closed => break,
                _ = out.closer.ready.notified() => continue,
            }
        }
        let written = {
            let write = io.write_frames(&batch);
            tokio::pin!(write);
            tokio::select! {
                biased;
                r = &mut write => r,
                // Closing mid-write (typically a slow consumer: the
                // write waits for a client that stopped reading)
                // gives the write a bounded time to finish, so the
                // last frame can follow whole frames; past it the
                // connection is cut with half a frame on the wire.
                _ = &mut closed => match tokio::time::timeout(flush_timeout, &mut write).await {
                    Ok(r) => r,
                    Err(_) => { clean = false; break }
                },
            }
        };
        let bytes: usize = batch.iter().map(Bytes::len).sum();
        out.closer.queued.fetch_sub(bytes, Ordering::Relaxed);
        batch.clear();
        if written.is_err() {
            clean = false;
            break;
        }
    }
    let close = out
        .closer
        .close
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    // The Disconnect sent, for a WebSocket's close frame.
    let mut farewell = None;
    if clean {
        farewell = close.as_ref().map(|c| Farewell {
            reason: c.reason,
            message: c.message.clone(),
            too_large: c.too_large,
        });
        // Without a reason (the peer went away) what is queued is still
        // flushed, in case the peer only closed its sending side.
        let flush = close.as_ref().is_none_or(|c| c.flush);
        let last = close.map(|close| {
            metrics::counter!("natter_disconnects_total", "reason" => close.reason.as_str_name())
                .increment(1);
            let (reconnect_tcp, reconnect_ws) = close
                .reconnect_to
                .map(|t| t.as_ref().clone())
                .unwrap_or_default();
            ServerFrame::Disconnect(natter_proto::pb::Disconnect {
                reason: close.reason as i32,
                message: close.message,
                reconnect_after_ms: close.reconnect_after_ms,
                reconnect_tcp,
                reconnect_ws,
            })
            .to_bytes(0)
        });
        out.closer.shut(flush.then_some(&mut batch));
        let _ = tokio::time::timeout(flush_timeout, async {
            batch.extend(last);
            if batch.is_empty() {
                Ok(())
            } else {
                io.write_frames(&batch).await
            }
        })
        .await;
    }
    out.closer.shut(None);
    let _ = tokio::time::timeout(flush_timeout, io.shutdown(farewell.as_ref())).await;
}
