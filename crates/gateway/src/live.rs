//! A session served by an HTTP event stream instead of a socket: attached
//! in the same registry as a connection (so presence, the cluster's
//! directory and every push treat it as one), fed through the same bounded
//! outbound queue (a stream that falls behind is ended as SLOW_CONSUMER
//! and the client syncs), counted against the node's connection cap, and
//! detached when the stream is dropped, the session is revoked or the node
//! shuts down. The frames queued for it are read back here as `Push`es,
//! since only the gateway knows the wire format.

use crate::connection::NEXT_CONN_ID;
use crate::outbound::{self, Close, Outbound, QueueLimits};
use crate::{convert, Gateway};
use bytes::{Bytes, BytesMut};
use natter_proto::pb::DisconnectReason;
use natter_proto::{FrameDecoder, ServerFrame};
use natter_service::{Push, ServiceError, SessionInfo, Unavailable};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// One session's pushes, read by whoever serves the stream. Dropping it
/// detaches the session.
pub struct Live {
    out: Outbound,
    taken: VecDeque<Bytes>,
    state: State,
}

enum State {
    Open,
    /// Closing: what was queued is in `taken`, then this last push.
    Ending(Option<Push>),
    Done,
}

impl Gateway {
    /// Attaches `session` here for an event stream, as a login attaches a
    /// connection: another connection or stream holding the same session
    /// is closed as REPLACED. Refused while the node holds its maximum of
    /// connections, all logged in (one that is not is evicted instead), or
    /// is shutting down.
    pub async fn open_live(self: &Arc<Self>, session: SessionInfo) -> Result<Live, ServiceError> {
        if self.shutdown.is_cancelled() {
            return Err(ServiceError::Unavailable(Unavailable::ShuttingDown));
        }
        // A full node makes room by evicting a connection that has not
        // logged in, as for a login over a socket.
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) if self.unauth.evict_one(None) => self.evicted_place().await,
            Err(_) => None,
        };
        let Some(permit) = permit else {
            metrics::counter!("natter_limit_hits_total", "limit" => "connections").increment(1);
            return Err(ServiceError::Unavailable(Unavailable::Overloaded));
        };
        let out = outbound::channel(QueueLimits {
            frames: self.config.outbound_queue,
            bytes: self.config.outbound_queue_bytes,
            max_frame: self.config.max_frame_bytes,
        });
        metrics::counter!("natter_connections_total", "transport" => "sse").increment(1);
        self.connection_opened();
        let s = Arc::new(session);
        let conn_id = NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed);
        let first = self
            .registry
            .attach(s.user_id, s.session_id, conn_id, out.clone());
        // The stream's life on the node: it ends when the stream is closed
        // (revoked, slow, dropped) or the node shuts down, then detaches.
        let (gw, o, session) = (self.clone(), out.clone(), s.clone());
        self.tracker.spawn(async move {
            tokio::select! {
                _ = o.closed() => {}
                _ = gw.shutdown.cancelled() => o.close(Close {
                    reason: DisconnectReason::GoingAway,
                    message: "the server is shutting down".into(),
                    flush: true,
                    too_large: false,
                    reconnect_after_ms: gw.config.reconnect_after.as_millis() as u32,
                    reconnect_to: gw.reconnect_target(),
                }),
            }
            let last = gw.registry.detach(session.user_id, conn_id);
            let draining = gw.shutdown.is_cancelled();
            gw.service.detached(&session, last, draining).await;
            gw.connection_closed();
            drop(permit);
        });
        // Made before the directory is told, so a caller that goes away
        // meanwhile still detaches the session (by dropping it).
        let live = Live {
            out,
            taken: VecDeque::new(),
            state: State::Open,
        };
        self.service.attached(&s, first).await;
        Ok(live)
    }
}

impl Live {
    /// The next push, in the order the session's queue received them; the
    /// last one is a `Push::Disconnect` saying why the stream ends, after
    /// which `None`. (`None` without it: the node dropped the session.)
    pub async fn next(&mut self) -> Option<Push> {
        loop {
            if let Some(frame) = self.taken.pop_front() {
                if let Some(push) = decode(&frame) {
                    return Some(push);
                }
                continue;
            }
            match &mut self.state {
                State::Done => return None,
                State::Ending(last) => {
                    let last = last.take();
                    self.state = State::Done;
                    if last.is_some() {
                        return last;
                    }
                    continue;
                }
                State::Open => {}
            }
            if self.out.is_closing() {
                let close = self.out.ending();
                let flush = close.as_ref().is_none_or(|c| c.flush);
                let mut rest = Vec::new();
                self.out.shut_into(flush.then_some(&mut rest));
                self.taken.extend(rest);
                self.state = State::Ending(close.map(disconnect));
                continue;
            }
            let mut batch = Vec::new();
            self.out.take_queued(&mut batch, 64);
            if batch.is_empty() {
                tokio::select! {
                    biased;
                    _ = self.out.closed() => {}
                    _ = self.out.pushed() => {}
                }
            }
            self.taken.extend(batch);
        }
    }
}

impl Live {
    /// The pushes as a stream, for a server that takes one.
    pub fn into_stream(self) -> impl futures_util::Stream<Item = Push> + Send + 'static {
        futures_util::stream::unfold(self, |mut live| async move {
            live.next().await.map(|push| (push, live))
        })
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.out.abort();
    }
}

/// The last push of a stream, counted as a frame connection's Disconnect is.
fn disconnect(c: Close) -> Push {
    let name = c.reason.as_str_name();
    metrics::counter!("natter_disconnects_total", "reason" => name).increment(1);
    Push::Disconnect {
        reason: name.strip_prefix("DISCONNECT_REASON_").unwrap_or(name),
        message: c.message,
        reconnect_after_ms: c.reconnect_after_ms,
    }
}

/// A queued frame as a push; `None` for a frame that is not one (nothing
/// but pushes is queued for a stream, so that would be a bug, logged).
fn decode(frame: &Bytes) -> Option<Push> {
    let mut buf = BytesMut::from(&frame[..]);
    let decoded = FrameDecoder::new(usize::MAX)
        .decode(&mut buf)
        .ok()
        .flatten()
        .and_then(|f| ServerFrame::decode(&f).ok());
    let push = match decoded {
        Some(ServerFrame::MessagePush(m)) => {
            m.message.and_then(convert::message_from).map(Push::Message)
        }
        Some(ServerFrame::ReceiptPush(r)) => Some(Push::Delivered {
            conversation_id: r.conversation_id,
            user_id: r.user_id,
            seq: r.seq,
        }),
        Some(ServerFrame::ReadPush(r)) => Some(Push::Read {
            conversation_id: r.conversation_id,
            user_id: r.user_id,
            seq: r.seq,
        }),
        Some(ServerFrame::TypingPush(t)) => Some(Push::Typing {
            conversation_id: t.conversation_id,
            user_id: t.user_id,
        }),
        Some(ServerFrame::PresencePush(p)) => Some(Push::Presence {
            user_id: p.user_id,
            online: p.online,
        }),
        Some(ServerFrame::FriendRequestPush(f)) => f
            .request
            .and_then(convert::friend_request_from)
            .map(Push::FriendRequest),
        Some(ServerFrame::JoinRequestPush(j)) => j
            .request
            .map(convert::join_request_from)
            .map(Push::JoinRequest),
        Some(ServerFrame::SyncHintPush(_)) => Some(Push::Sync),
        _ => None,
    };
    if push.is_none() {
        tracing::error!(
            bytes = frame.len(),
            "a frame queued for an event stream is not a push"
        );
    }
    push
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::{route, sync_hint, Routed};
    use natter_service::model::{
        Body, BodyKind, Committed, FriendRequestRecord, JoinRequestRecord, RequestStatus,
        StoredMessage,
    };
    use natter_service::{Event, RevokeReason};

    fn frame(event: Event) -> Bytes {
        match route(event) {
            Routed::Push { frame, .. } => frame,
            Routed::Revoke { .. } => unreachable!("a push, not a revocation"),
        }
    }

    /// Every push a session's queue can hold reads back as what it said.
    #[test]
    fn every_push_reads_back_from_its_frame() {
        let message = StoredMessage {
            conversation_id: 7,
            seq: 3,
            msg_id: 11,
            sender_id: 2,
            client_msg_id: "c1".into(),
            server_ts_ms: 1_700_000_000_000,
            body: Body {
                kind: BodyKind::Recalled,
                content: String::new(),
            },
            mentions: vec![1, 5],
            mention_all: true,
        };
        let request = FriendRequestRecord {
            id: 4,
            from: 1,
            from_name: "alice".into(),
            to: 2,
            to_name: "bob".into(),
            message: "hi".into(),
            status: RequestStatus::Accepted,
            reply: "hello".into(),
            created_at_ms: 5,
            decided_at_ms: 6,
        };
        let join = JoinRequestRecord {
            conversation_id: 9,
            user_id: 3,
            username: "carol".into(),
            message: "let me in".into(),
            created_at_ms: 8,
        };
        let (c, u, to) = (7, 2, vec![1]);
        let table = [
            (
                frame(Event::Message(Committed {
                    message: Arc::new(message.clone()),
                    members: vec![1, 2].into(),
                    origin: None,
                })),
                Push::Message(message),
            ),
            (
                frame(Event::Receipt {
                    conversation_id: c,
                    user_id: u,
                    seq: 3,
                    to: to.clone(),
                }),
                Push::Delivered {
                    conversation_id: c,
                    user_id: u,
                    seq: 3,
                },
            ),
            (
                frame(Event::Read {
                    conversation_id: c,
                    user_id: u,
                    seq: 2,
                    to: to.clone(),
                }),
                Push::Read {
                    conversation_id: c,
                    user_id: u,
                    seq: 2,
                },
            ),
            (
                frame(Event::Typing {
                    conversation_id: c,
                    user_id: u,
                    to: to.clone(),
                }),
                Push::Typing {
                    conversation_id: c,
                    user_id: u,
                },
            ),
            (
                frame(Event::Presence {
                    user_id: u,
                    online: true,
                    to: to.clone(),
                }),
                Push::Presence {
                    user_id: u,
                    online: true,
                },
            ),
            (
                frame(Event::FriendRequest {
                    request: request.clone(),
                    to: to.clone(),
                }),
                Push::FriendRequest(request),
            ),
            (
                frame(Event::JoinRequest {
                    request: join.clone(),
                    to,
                }),
                Push::JoinRequest(join),
            ),
            (sync_hint(), Push::Sync),
        ];
        for (frame, want) in table {
            assert_eq!(decode(&frame), Some(want));
        }
        // A revocation is a close, never a queued frame.
        assert!(matches!(
            route(Event::Revoked {
                user: 1,
                sessions: vec![2],
                reason: RevokeReason::LoggedOut,
            }),
            Routed::Revoke { .. }
        ));
    }

    #[test]
    fn a_close_becomes_the_last_push_with_its_reason() {
        let push = disconnect(Close {
            reason: DisconnectReason::SlowConsumer,
            message: "outbound queue full".into(),
            flush: false,
            too_large: false,
            reconnect_after_ms: 0,
            reconnect_to: None,
        });
        assert_eq!(
            push,
            Push::Disconnect {
                reason: "SLOW_CONSUMER",
                message: "outbound queue full".into(),
                reconnect_after_ms: 0,
            }
        );
    }
}
