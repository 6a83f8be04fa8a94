//! Send pipelining: a connection may have several Sends waiting for their
//! commit at once, so one client's messages can share a group commit instead
//! of each waiting for the previous one's. Answers still leave in request
//! order, and each Send is queued in the store (`Service::queue_send`)
//! before the next request is read, so a connection's messages are stored in
//! the order it sent them.

use crate::convert;
use crate::requests::messages;
use futures_util::stream::FuturesOrdered;
use natter_proto::ServerFrame;
use natter_service::PendingSend;
use std::future::Future;
use std::pin::Pin;

/// Sends one connection may have in flight; past this the connection stops
/// reading until the oldest is answered.
pub(crate) const MAX_IN_FLIGHT: usize = 64;

/// A request's answer, once it is known.
pub(crate) type Answer = Pin<Box<dyn Future<Output = (u32, ServerFrame)> + Send>>;

/// The answers a connection still owes, oldest first.
pub(crate) type InFlight = FuturesOrdered<Answer>;

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
