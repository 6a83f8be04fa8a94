//! One connection's life: handshake, authentication, the request loop with
//! its deadlines, and an orderly close.

use crate::limits::TokenBucket;
use crate::outbound::{self, Close, Outbound};
use crate::pipeline::{InFlight, MAX_IN_FLIGHT};
use crate::transport::{self, FrameRead, FrameWrite, Kind, ReadError};
use crate::Gateway;
use futures_util::StreamExt;
use natter_proto::pb::{DisconnectReason, ErrorCode};
use natter_proto::{ClientFrame, DecodeError, Frame, ServerFrame};
use natter_service::SessionInfo;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpStream;
use tokio::time::sleep_until;

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) enum Phase {
    /// Nothing received yet: only Hello is accepted.
    New,
    /// Hello done: Register, Login, Resume and Ping are accepted.
    Greeted,
    Authed(SessionInfo),
}

/// What the request loop does after a frame.
pub(crate) enum Flow {
    Continue,
    Stop,
}

pub(crate) struct Conn {
    pub gw: Arc<Gateway>,
    pub out: Outbound,
    pub phase: Phase,
    pub conn_id: u64,
    pub peer: SocketAddr,
    requests: TokenBucket,
    /// Answers owed to pipelined Sends, oldest first.
    pub(crate) in_flight: InFlight,
}

pub(crate) async fn serve(gw: Arc<Gateway>, stream: TcpStream, peer: SocketAddr, kind: Kind) {
    let max = gw.config.max_frame_bytes;
    let permit = gw.slots.clone().try_acquire_owned();
    match kind {
        Kind::Tcp => {
            let (r, w) = transport::tcp(stream, max);
            run(gw, r, w, peer, kind, permit.ok()).await
        }
        Kind::WebSocket => {
            let upgraded =
                tokio::time::timeout(gw.config.auth_timeout, transport::websocket(stream, max))
                    .await;
            match upgraded {
                Ok(Ok((r, w))) => run(gw, r, w, peer, kind, permit.ok()).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "websocket handshake failed"),
                Err(_) => tracing::debug!(%peer, "websocket handshake timed out"),
            }
        }
    }
}

async fn run<R: FrameRead, W: FrameWrite>(
    gw: Arc<Gateway>,
    mut reader: R,
    writer: W,
    peer: SocketAddr,
    kind: Kind,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) {
    let (out, rx) = outbound::channel(gw.config.outbound_queue);
    let writer = gw.tracker.spawn(outbound::writer(
        writer,
        rx,
        out.clone(),
        gw.config.flush_timeout,
    ));
    let Some(_permit) = permit else {
        metrics::counter!("natter_limit_hits_total", "limit" => "connections").increment(1);
        out.close(Close {
            reason: DisconnectReason::ServerFull,
            message: format!(
                "the server holds its maximum of {} connections",
                gw.config.max_connections
            ),
            flush: true,
            reconnect_after_ms: gw.config.reconnect_after.as_millis() as u32,
        });
        let _ = writer.await;
        return;
    };
    metrics::counter!("natter_connections_total", "transport" => kind.as_str()).increment(1);
    metrics::gauge!("natter_connections").increment(1.0);
    let mut conn = Conn {
        requests: TokenBucket::new(gw.config.request_rate_per_sec, gw.config.request_burst),
        gw,
        out,
        phase: Phase::New,
        conn_id: NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed),
        peer,
        in_flight: InFlight::new(),
    };
    conn.read_loop(&mut reader).await;
    if let Phase::Authed(s) = &conn.phase {
        let last = conn.gw.registry.detach(s.user_id, conn.conn_id);
        // Friends hear of the last session going; not during a drain, when
        // everyone goes at once and nobody is left to tell.
        if last && !conn.gw.shutdown.is_cancelled() {
            conn.gw.service.presence_changed(s.user_id).await;
        }
    }
    // Whatever ended the loop, the writer now finishes: with the close frame
    // when one was set, silently when the peer just went away.
    conn.out.abort();
    let _ = writer.await;
    metrics::gauge!("natter_connections").decrement(1.0);
}

impl Conn {
    async fn read_loop<R: FrameRead>(&mut self, reader: &mut R) {
        let cfg = &self.gw.config;
        let mut deadline = Instant::now() + cfg.auth_timeout;
        // Made once, not per frame: each of these registers with a lock or
        // the timer wheel. The timer is moved only when it fires early.
        let closed = self.out.closed();
        let shutdown = self.gw.shutdown.clone().cancelled_owned();
        let timer = sleep_until(deadline.into());
        tokio::pin!(closed, shutdown, timer);
        loop {
            let read = tokio::select! {
                biased;
                _ = &mut closed => return,
                _ = &mut shutdown => {
                    self.finish_in_flight().await;
                    self.close(DisconnectReason::GoingAway, "server shutting down; reconnect");
                    return;
                }
                Some((id, frame)) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    self.reply(id, frame);
                    continue;
                }
                _ = &mut timer => {
                    if Instant::now() < deadline {
                        timer.as_mut().reset(deadline.into());
                        continue;
                    }
                    let (reason, msg) = match self.phase {
                        Phase::Authed(_) => (DisconnectReason::HeartbeatTimeout, "no frame within the heartbeat timeout"),
                        _ => (DisconnectReason::AuthTimeout, "not authenticated in time"),
                    };
                    self.close(reason, msg);
                    return;
                }
                r = reader.read_frame(), if self.in_flight.len() < MAX_IN_FLIGHT => r,
            };
            match read {
                Ok(Some(frame)) => {
                    metrics::counter!("natter_frames_in_total").increment(1);
                    if let Flow::Stop = self.handle(frame).await {
                        return;
                    }
                    if let Phase::Authed(_) = self.phase {
                        deadline = Instant::now() + self.gw.config.heartbeat_timeout;
                        // Logging in can bring the deadline forward.
                        if tokio::time::Instant::from(deadline) < timer.deadline() {
                            timer.as_mut().reset(deadline.into());
                        }
                    }
                }
                Ok(None) => return,
                Err(ReadError::Frame(e)) => {
                    let code = match e {
                        natter_proto::FrameError::TooLarge { .. } => ErrorCode::FrameTooLarge,
                        natter_proto::FrameError::TooShort { .. } => ErrorCode::Malformed,
                    };
                    metrics::counter!("natter_limit_hits_total", "limit" => "frame_size")
                        .increment(1);
                    self.reply(0, ServerFrame::error(code, e.to_string()));
                    self.close(DisconnectReason::ProtocolError, &e.to_string());
                    return;
                }
                Err(ReadError::TextMessage) => {
                    self.close(
                        DisconnectReason::ProtocolError,
                        "send frames in binary WebSocket messages",
                    );
                    return;
                }
                Err(e @ (ReadError::Truncated | ReadError::Io(_))) => {
                    tracing::debug!(peer = %self.peer, error = %e, "connection ended");
                    return;
                }
            }
        }
    }

    async fn handle(&mut self, frame: Frame) -> Flow {
        let id = frame.request_id;
        if let Err(wait) = self.requests.take(Instant::now()) {
            metrics::counter!("natter_limit_hits_total", "limit" => "request_rate").increment(1);
            self.answer_in_order(id, rate_limited("too many requests", wait));
            return Flow::Continue;
        }
        let request = match ClientFrame::decode(&frame) {
            Ok(r) => r,
            Err(e) => {
                let code = match e {
                    DecodeError::UnknownType(_) => ErrorCode::UnknownType,
                    DecodeError::Malformed { .. } => ErrorCode::Malformed,
                };
                self.answer_in_order(id, ServerFrame::error(code, e.to_string()));
                return self.stop_if_new("the first frame must be a valid Hello");
            }
        };
        self.dispatch(id, request).await
    }

    fn stop_if_new(&mut self, why: &str) -> Flow {
        if let Phase::New = self.phase {
            self.close(DisconnectReason::ProtocolError, why);
            Flow::Stop
        } else {
            Flow::Continue
        }
    }

    pub(crate) fn reply(&self, request_id: u32, frame: ServerFrame) {
        self.out.push(frame.to_bytes(request_id));
    }

    pub(crate) fn close(&self, reason: DisconnectReason, message: &str) {
        let reconnect_after_ms = match reason {
            DisconnectReason::GoingAway => self.gw.config.reconnect_after.as_millis() as u32,
            _ => 0,
        };
        self.out.close(Close {
            reason,
            message: message.into(),
            flush: true,
            reconnect_after_ms,
        });
    }
}

pub(crate) fn rate_limited(what: &str, wait: std::time::Duration) -> ServerFrame {
    ServerFrame::Error(natter_proto::pb::Error {
        code: ErrorCode::RateLimited as i32,
        message: format!("{what}; retry later"),
        retry_after_ms: wait.as_millis().max(1) as u32,
    })
}
