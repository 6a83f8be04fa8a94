//! Sending, sync, history and delivery receipts.

use super::{all_if_zero, done, Reply};
use crate::convert;
use natter_proto::{pb, ServerFrame};
use natter_service::model::Appended;
use natter_service::{PendingSend, SendInput, Service, ServiceError, SessionInfo};
use std::collections::HashMap;

/// Queues a Send; its answer comes with the commit ([`ack`]). What could
/// not be parsed goes to the service too: the Send still costs the sender
/// one from their allowance.
pub(crate) async fn send(
    svc: &Service,
    s: &SessionInfo,
    m: pb::Send,
) -> Result<PendingSend, ServiceError> {
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
    svc.queue_send(s, input).await
}

/// The answer to a Send once it is stored.
pub(crate) fn ack(a: Appended) -> ServerFrame {
    ServerFrame::SendAck(pb::SendAck {
        conversation_id: a.message.conversation_id,
        seq: a.message.seq,
        msg_id: a.message.msg_id,
        server_ts_ms: a.message.server_ts_ms,
        duplicate: a.duplicate,
    })
}

pub(crate) async fn sync(svc: &Service, s: &SessionInfo, q: pb::Sync) -> Reply {
    let cursors: HashMap<u64, u64> = q
        .cursors
        .iter()
        .map(|c| (c.conversation_id, c.seq))
        .collect();
    svc.sync(s, cursors, q.after_conversation_id, all_if_zero(q.limit))
        .await
        .map(|p| ServerFrame::SyncPage(convert::sync_page(&p)))
}

pub(crate) async fn history(svc: &Service, s: &SessionInfo, q: pb::History) -> Reply {
    svc.history(s, q.conversation_id, q.before_seq, all_if_zero(q.limit))
        .await
        .map(|p| ServerFrame::HistoryPage(convert::history_page(&p)))
}

pub(crate) async fn delivery_ack(svc: &Service, s: &SessionInfo, a: pb::DeliveryAck) -> Reply {
    done(svc.delivery_ack(s, a.conversation_id, a.seq).await)
}
