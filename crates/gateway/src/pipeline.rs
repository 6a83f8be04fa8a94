//! Send pipelining: a connection may have several Sends waiting for their
//! commit at once, so one client's messages can share a group commit instead
//! of each waiting for the previous one's. Answers still leave in request
//! order, and each Send is queued in the store (`Service::queue_send`)
//! before the next request is read, so a connection's messages are stored in
//! the order it sent them.

use crate::connection::{Conn, Flow};
use crate::convert;
use futures_util::stream::FuturesOrdered;
use natter_proto::{pb, ServerFrame};
use natter_service::{SendInput, SessionInfo};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Sends one connection may have in flight; past this the connection stops
/// reading until the oldest is answered.
pub(crate) const MAX_IN_FLIGHT: usize = 64;

/// A request's answer, once it is known.
pub(crate) type Answer = Pin<Box<dyn Future<Output = (u32, ServerFrame)> + Send>>;

/// The answers a connection still owes, oldest first.
pub(crate) type InFlight = FuturesOrdered<Answer>;

fn ack(a: natter_service::model::Appended) -> ServerFrame {
    ServerFrame::SendAck(pb::SendAck {
        conversation_id: a.message.conversation_id,
        seq: a.message.seq,
        msg_id: a.message.msg_id,
        server_ts_ms: a.message.server_ts_ms,
        duplicate: a.duplicate,
    })
}

impl Conn {
    /// Queues a Send and keeps its answer in line behind the ones before
    /// it. The Send is in the store's queue when this returns, ahead of
    /// anything this connection sends next, so a connection's messages are
    /// stored in the order it sent them; while the queue is full the
    /// connection reads nothing more.
    pub(crate) async fn pipeline_send(
        &mut self,
        id: u32,
        s: Arc<SessionInfo>,
        m: pb::Send,
    ) -> Flow {
        let input = match (convert::target(m.target), convert::body(m.body)) {
            (Ok(target), Ok(body)) => Ok(SendInput {
                client_msg_id: m.client_msg_id,
                target,
                body,
                mentions: m.mention_user_ids,
                mention_all: m.mention_all,
            }),
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        match self.gw.service.queue_send(&s, input).await {
            Ok(pending) => self.in_flight.push_back(Box::pin(async move {
                let frame = match pending.await {
                    Ok(a) => ack(a),
                    Err(e) => convert::error(&e),
                };
                (id, frame)
            })),
            Err(e) => self.answer_in_order(id, convert::error(&e)),
        }
        Flow::Continue
    }

    /// Answers now if nothing is owed, else after everything owed.
    pub(crate) fn answer_in_order(&mut self, id: u32, frame: ServerFrame) {
        if self.in_flight.is_empty() {
            self.reply(id, frame);
        } else {
            self.in_flight
                .push_back(Box::pin(std::future::ready((id, frame))));
        }
    }

    /// Waits for and sends every owed answer.
    pub(crate) async fn finish_in_flight(&mut self) {
        use futures_util::StreamExt;
        while let Some((id, frame)) = self.in_flight.next().await {
            self.reply(id, frame);
        }
    }
}
