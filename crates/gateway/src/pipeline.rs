//! Send pipelining: a connection may have several Sends waiting for their
//! commit at once, so one client's messages can share a group commit instead
//! of each waiting for the previous one's. Answers still leave in request
//! order, and each Send is queued in the store (`Service::queue_send`)
//! before the next request is read, so a connection's messages are stored in
//! the order it sent them.

use crate::convert;
use crate::requests::messages;
use natter_proto::ServerFrame;
use natter_service::PendingSend;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

/// Sends one connection may have in flight; past this the connection stops
/// reading until the oldest is answered.
pub(crate) const MAX_IN_FLIGHT: usize = 64;

/// A request's answer, once it is known.
pub(crate) type Answer = Pin<Box<dyn Future<Output = (u32, ServerFrame)> + Send>>;

/// The answers a connection still owes, oldest first. Only the oldest is
/// polled: answers leave in order anyway, and a Send's answer is settled
/// by the store whether it is polled or not. An idle connection's queue
/// holds no memory (a `FuturesOrdered` keeps a shared queue and a stub
/// task from the start, and a task node per push).
#[derive(Default)]
pub(crate) struct InFlight {
    owed: VecDeque<Answer>,
}

impl InFlight {
    pub(crate) fn new() -> Self {
        InFlight::default()
    }

    pub(crate) fn len(&self) -> usize {
        self.owed.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.owed.is_empty()
    }

    pub(crate) fn push_back(&mut self, answer: Answer) {
        self.owed.push_back(answer);
    }

    /// The oldest answer, once it is known; `None` when nothing is owed.
    pub(crate) fn next(&mut self) -> impl Future<Output = Option<(u32, ServerFrame)>> + '_ {
        std::future::poll_fn(move |cx| {
            let Some(oldest) = self.owed.front_mut() else {
                return Poll::Ready(None);
            };
            let answer = std::task::ready!(oldest.as_mut().poll(cx));
            self.owed.pop_front();
            if self.owed.is_empty() {
                self.owed = VecDeque::new();
            }
            Poll::Ready(Some(answer))
        })
    }
}

/// The answer to queued Send `id`: its ACK once committed, or the error.
pub(crate) fn owed(id: u32, pending: PendingSend) -> Answer {
    Box::pin(async move {
        let frame = match pending.await {
            Ok(a) => messages::ack(a),
            Err(e) => convert::error(&e),
        };
        (id, frame)
    })
}
