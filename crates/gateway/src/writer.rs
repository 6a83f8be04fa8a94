//! A connection's writing side, driven by the connection's own task beside
//! its reads: one task per connection, not a reader and a writer task. A
//! push wakes that one task, which writes whatever is queued in one write;
//! an idle connection keeps no second task, future or join handle.
//!
//! The write in flight lives in the transport (`FrameWrite::start`, then
//! `poll_written`), not in a future, so the connection may stop polling it
//! between any two polls (to handle a request) and carry on where it was.

use crate::outbound::{Farewell, Outbound};
use crate::transport::FrameWrite;
use bytes::Bytes;
use natter_proto::ServerFrame;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

/// Frames taken from the queue into one write at most.
const BATCH: usize = 64;

pub(crate) struct Writer<W> {
    io: W,
    out: Outbound,
    batch: Vec<Bytes>,
    /// Bytes of the write in flight (0: none); they leave the queue's count
    /// once written.
    writing: usize,
    /// The socket failed (or the writer panicked): nothing more is written.
    broken: bool,
}

impl<W: FrameWrite> Writer<W> {
    pub(crate) fn new(io: W, out: Outbound) -> Self {
        Writer {
            io,
            out,
            batch: Vec::new(),
            writing: 0,
            broken: false,
        }
    }

    /// Writes what is queued until nothing is. `Ready` once it writes no
    /// more: the socket failed (the connection is then ended) or the
    /// connection is closing (`finish` writes the rest).
    fn poll_drive(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.broken {
                return Poll::Ready(());
            }
            if self.writing > 0 {
                let written = std::task::ready!(self.io.poll_written(cx));
                self.done_writing();
                if written.is_err() {
                    self.broken = true;
                    self.out.abort();
                    return Poll::Ready(());
                }
            }
            if self.out.is_closing() {
                return Poll::Ready(());
            }
            self.out.closer.poll_take(cx, &mut self.batch, BATCH);
            if self.batch.is_empty() {
                // Idle: keep no room from the last burst.
                if self.batch.capacity() > 0 {
                    self.batch = Vec::new();
                }
                return Poll::Pending;
            }
            self.start();
        }
    }

    fn start(&mut self) {
        self.writing = self.batch.iter().map(Bytes::len).sum();
        self.io.start(&self.batch);
        self.batch.clear();
    }

    fn done_writing(&mut self) {
        let bytes = std::mem::take(&mut self.writing);
        self.out.closer.queued.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Writes the write in flight to its end.
    async fn complete(&mut self) -> std::io::Result<()> {
        if self.writing == 0 {
            return Ok(());
        }
        let r = std::future::poll_fn(|cx| self.io.poll_written(cx)).await;
        self.done_writing();
        r
    }

    /// Drives `fut` and, beside it, this writer, until `fut` is done: what
    /// the connection's handlers push is written while they await. A panic
    /// in the writer ends the writing only (the connection is then ended);
    /// `fut` carries on.
    pub(crate) async fn alongside<F: Future>(&mut self, mut fut: Pin<&mut F>) -> F::Output {
        std::future::poll_fn(|cx| {
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                return Poll::Ready(v);
            }
            if !self.broken
                && natter_runtime::panics::catch("connection_writer", || self.poll_drive(cx))
                    .is_none()
            {
                self.broken = true;
                self.out.abort();
            }
            Poll::Pending
        })
        .await
    }

    /// Once the connection is closing: completes the write in flight (within
    /// `flush_timeout`; past it the connection is cut with half a frame on
    /// the wire), then writes what is queued when the close says so, the
    /// Disconnect frame, and ends the stream.
    pub(crate) async fn finish(mut self, flush_timeout: Duration) {
        let mut clean = !self.broken;
        if clean && self.writing > 0 {
            // Closing mid-write (typically a slow consumer: the write waits
            // for a client that stopped reading) gives the write a bounded
            // time, so the last frame can follow whole frames.
            clean = matches!(
                tokio::time::timeout(flush_timeout, self.complete()).await,
                Ok(Ok(()))
            );
        }
        let close = self.out.ending();
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
            self.batch.clear();
            self.out.closer.shut(flush.then_some(&mut self.batch));
            self.batch.extend(last);
            if !self.batch.is_empty() {
                // The queue is shut: its byte count no longer matters.
                self.io.start(&self.batch);
                self.batch.clear();
                let io = &mut self.io;
                let written = std::future::poll_fn(|cx| io.poll_written(cx));
                let _ = tokio::time::timeout(flush_timeout, written).await;
            }
        }
        self.out.closer.shut(None);
        let _ = tokio::time::timeout(flush_timeout, self.io.shutdown(farewell.as_ref())).await;
    }
}
