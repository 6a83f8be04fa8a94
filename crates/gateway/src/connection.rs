//! One connection's life: admission, authentication, the request loop with
//! its deadlines, and an orderly close (its handshakes are in `serve`).

use crate::addresses::{Refused, Slot};
use crate::outbound::{self, Close, Outbound, QueueLimits};
use crate::pipeline::{self, InFlight, MAX_IN_FLIGHT};
use crate::requests::auth;
use crate::transport::{FrameRead, FrameWrite, Kind, ReadError};
use crate::writer::Writer;
use crate::{convert, Gateway};
use futures_util::future::OptionFuture;
use natter_proto::pb::{DisconnectReason, ErrorCode};
use natter_proto::{ClientFrame, DecodeError, Frame, ServerFrame};
use natter_runtime::clock::Instant;
use natter_runtime::limits::TokenBucket;
use natter_service::{PendingSend, ServiceError, SessionInfo};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::sleep_until;

/// Counted per frame: a handle, not a registry lookup per frame (see
/// `src/server/metrics.rs`).
static FRAMES_IN: LazyLock<metrics::Counter> =
    LazyLock::new(|| metrics::counter!("natter_frames_in_total"));

pub(crate) static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// Frames answered at most from what a client had already sent when the
/// server began to shut down, how long the socket may stay quiet before
/// nothing more is taken to be waiting, and how long it all may take.
const MAX_ANSWERED_AT_SHUTDOWN: usize = 4096;
const QUIET_AT_SHUTDOWN: std::time::Duration = std::time::Duration::from_millis(50);
const ANSWERING_AT_SHUTDOWN: std::time::Duration = std::time::Duration::from_millis(500);

pub(crate) enum Phase {
    /// Nothing received yet: only Hello is accepted.
    New,
    /// Hello done: Register, Login, Resume and Ping are accepted.
    Greeted,
    /// Logged in: the session, shared by reference with every request
    /// rather than copied for each.
    Authed(Arc<SessionInfo>),
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
    /// Held until login: this connection's place among the unauthenticated
    /// (boxed: a logged-in connection keeps no room for it).
    pub(crate) unauth: Option<Box<Slot>>,
    /// The reader's pre-login limits have been lifted.
    lifted: bool,
}

/// What a new connection is let in with, or the close that refuses it.
pub(crate) struct Admitted {
    /// `None` while it waits for the place of the connection it evicted.
    permit: Option<OwnedSemaphorePermit>,
    pub(crate) unauth: Slot,
}

impl Gateway {
    /// Lets a connection in, or says why not; called as it is accepted, so
    /// that the counts the accept loop reads are up to date. Connections
    /// waiting to log in never take the room logins need: past
    /// `max_unauthenticated` of them, or when the node is full, a new one
    /// evicts one of them instead of being refused.
    pub(crate) fn admit(&self, peer: SocketAddr) -> Result<Admitted, Close> {
        let cfg = &self.config;
        let permit = self.slots.clone().try_acquire_owned().ok();
        // While the node sheds load, only a few connections may wait to log
        // in at once: enough for sessions to resume, not for a flood.
        let refuse_at = if self.load.accepts_new() {
            usize::MAX
        } else {
            cfg.max_unauthenticated_shedding
        };
        let admission = match self.unauth.admit(
            peer.ip(),
            cfg.max_unauthenticated_per_address,
            refuse_at,
            cfg.max_unauthenticated,
        ) {
            Ok(a) => a,
            Err(Refused::Address) => {
                return Err(self.full(
                    "unauthenticated_per_address",
                    format!(
                        "{} connections from this address are already waiting to log in",
                        cfg.max_unauthenticated_per_address
                    ),
                ))
            }
            Err(Refused::Total) => {
                return Err(self.full(
                    "overload",
                    "the server is overloaded; reconnect later".into(),
                ))
            }
        };
        let unauth = admission.slot;
        // Full: the place of one waiting to log in is taken, unless one was
        // evicted above already, whose place this is.
        if permit.is_none() && !admission.evicted && !self.unauth.evict_one(Some(&unauth)) {
            return Err(self.full(
                "connections",
                format!(
                    "the server holds its maximum of {} connections",
                    cfg.max_connections
                ),
            ));
        }
        Ok(Admitted { permit, unauth })
    }

    /// The close that turns a connection away, counted by `what` limit.
    fn full(&self, what: &str, message: String) -> Close {
        metrics::counter!("natter_limit_hits_total", "limit" => what.to_owned()).increment(1);
        Close {
            reason: DisconnectReason::ServerFull,
            message,
            flush: true,
            too_large: false,
            reconnect_after_ms: self.config.reconnect_after.as_millis() as u32,
            // In a cluster: try another node.
            reconnect_to: self.reconnect_target(),
        }
    }

    /// Waits, when the node was full, for the place of the connection this
    /// one evicted: it is given back as soon as that one has said why it
    /// is closed. A refusal passes through. Owns the gateway, so that the
    /// wait can run as a future of its own, before the connection's.
    pub(crate) async fn take_place(
        self: Arc<Self>,
        admitted: Result<Admitted, Close>,
    ) -> Result<Admitted, Close> {
        let mut a = admitted?;
        if a.permit.is_none() {
            match self.evicted_place().await {
                Some(p) => a.permit = Some(p),
                None => {
                    return Err(self.full(
                        "connections",
                        format!(
                            "the server holds its maximum of {} connections",
                            self.config.max_connections
                        ),
                    ))
                }
            }
        }
        Ok(a)
    }
}

impl Gateway {
    /// The place of a connection just evicted, once it has said why it is
    /// closed (`None` if that takes too long).
    pub(crate) async fn evicted_place(&self) -> Option<OwnedSemaphorePermit> {
        let wait = self.config.flush_timeout + std::time::Duration::from_secs(1);
        tokio::time::timeout(wait, self.slots.clone().acquire_owned())
            .await
            .ok()?
            .ok()
    }
}

/// Serves a connection from its first frame to its close. Made ready
/// before the task first waits in it: the returned future holds the
/// connection's state once, not also the arguments it was made from (an
/// `async fn` keeps both).
pub(crate) fn run<R: FrameRead, W: FrameWrite>(
    gw: Arc<Gateway>,
    reader: R,
    writer: W,
    peer: SocketAddr,
    kind: Kind,
    admitted: Result<Admitted, Close>,
) -> impl std::future::Future<Output = ()> + Send {
    use futures_util::future::Either;
    let out = outbound::channel(QueueLimits {
        frames: gw.config.outbound_queue,
        bytes: gw.config.outbound_queue_bytes,
        max_frame: gw.config.max_frame_bytes,
    });
    let flush = gw.config.flush_timeout;
    // This task writes too, beside its reads: one task per connection.
    let writer = Writer::new(writer, out.clone());
    let admitted = match admitted {
        Ok(a) => a,
        Err(refusal) => {
            out.close(refusal);
            return Either::Left(writer.finish(flush));
        }
    };
    metrics::counter!("natter_connections_total", "transport" => kind.as_str()).increment(1);
    gw.connection_opened();
    let conn = Conn {
        requests: TokenBucket::new(
            gw.config.request_rate_per_sec,
            gw.config.request_burst,
            Instant::now(),
        ),
        gw,
        out,
        phase: Phase::New,
        conn_id: NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed),
        peer,
        in_flight: InFlight::new(),
        unauth: Some(Box::new(admitted.unauth)),
        lifted: false,
    };
    let (mut conn, mut reader, mut writer, permit) = (conn, reader, writer, admitted.permit);
    // A block, not an `async fn`: it holds what it captured in place, where
    // an `async fn` would keep a second copy of its arguments.
    Either::Right(async move {
        // A panic ends this connection only; what follows still cleans up.
        {
            let read = std::pin::pin!(conn.read_loop(&mut reader));
            let guarded = std::pin::pin!(natter_runtime::panics::guard("connection", read));
            writer.alongside(guarded).await;
        }
        // Whatever ended the loop, the writer now finishes (with the close
        // frame when one was set, silently when the peer just went away)
        // while the session is detached. Boxed: it runs once, at the end.
        Box::pin(conn.closed(writer)).await;
        drop(permit);
    })
}

impl Conn {
    /// After the read loop: detaches the session while the writer writes
    /// its last frames.
    async fn closed<W: FrameWrite>(self, writer: Writer<W>) {
        self.out.abort();
        let flush = self.gw.config.flush_timeout;
        let detach = async {
            if let Phase::Authed(s) = &self.phase {
                let last = self.gw.registry.detach(s.user_id, self.conn_id);
                let draining = self.gw.shutdown.is_cancelled();
                tracing::debug!(
                    peer = %self.peer,
                    user = s.user_id,
                    session = s.session_id,
                    conn = self.conn_id,
                    last,
                    draining,
                    "disconnected"
                );
                self.gw.service.detached(s, last, draining).await;
            }
        };
        tokio::join!(detach, writer.finish(flush));
        self.gw.connection_closed();
    }

    async fn read_loop<R: FrameRead>(&mut self, reader: &mut R) {
        let cfg = &self.gw.config;
        let mut deadline = Instant::now() + cfg.auth_timeout;
        // Made once, not per frame: each of these registers with a lock or
        // the timer wheel. The timer is moved only when it fires early.
        let shutdown = self.gw.shutdown.clone().cancelled_owned();
        // Dropped at login, with the token it holds; boxed, so that a
        // logged-in connection keeps no room for it.
        let evicted: OptionFuture<_> = self
            .unauth
            .as_ref()
            .map(|slot| Box::pin(slot.evicted().cancelled_owned()))
            .into();
        let timer = sleep_until(deadline);
        tokio::pin!(shutdown, evicted, timer);
        loop {
            // Each branch only says what happened; what may wait happens
            // after the select, so its output is not kept while it does.
            let read = tokio::select! {
                biased;
                _ = std::future::poll_fn(|cx| self.out.poll_closing(cx)) => return,
                _ = &mut shutdown => None,
                // A newer connection took its place before it logged in.
                _ = &mut evicted, if self.unauth.is_some() => {
                    self.close(
                        DisconnectReason::ServerFull,
                        "the server is full: this connection had not logged in and made \
                         room for a newer one; reconnect and log in",
                    );
                    return;
                }
                Some((id, frame)) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    self.reply(id, frame);
                    continue;
                }
                _ = &mut timer => {
                    if Instant::now() < deadline {
                        timer.as_mut().reset(deadline);
                        continue;
                    }
                    let (reason, msg) = match self.phase {
                        Phase::Authed(_) => (DisconnectReason::HeartbeatTimeout, "no frame within the heartbeat timeout"),
                        _ => (DisconnectReason::AuthTimeout, "not authenticated in time"),
                    };
                    self.close(reason, msg);
                    return;
                }
                r = reader.read_frame(), if self.in_flight.len() < MAX_IN_FLIGHT => Some(r),
            };
            let Some(read) = read else {
                // Boxed: it runs once, at shutdown.
                Box::pin(self.going_away(reader)).await;
                return;
            };
            let frame = match read {
                Ok(Some(frame)) => frame,
                Ok(None) => return,
                // Too much before login over WebSocket is a frame too large
                // over the whole budget: the same answer and close.
                Err(e @ (ReadError::Frame(_) | ReadError::OverBudget { .. })) => {
                    let code = match e {
                        ReadError::Frame(natter_proto::FrameError::TooShort { .. }) => {
                            ErrorCode::Malformed
                        }
                        _ => ErrorCode::FrameTooLarge,
                    };
                    let why = match &self.phase {
                        Phase::Authed(_) => e.to_string(),
                        _ => format!("{e} (before login)"),
                    };
                    metrics::counter!("natter_limit_hits_total", "limit" => "frame_size")
                        .increment(1);
                    self.reply(0, ServerFrame::error(code, why.clone()));
                    self.out.close(Close {
                        reason: DisconnectReason::ProtocolError,
                        message: why,
                        flush: true,
                        // Over WebSocket: 1009, message too big.
                        too_large: code == ErrorCode::FrameTooLarge,
                        reconnect_after_ms: 0,
                        reconnect_to: None,
                    });
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
            };
            FRAMES_IN.increment(1);
            if let Flow::Stop = self.handle(frame).await {
                return;
            }
            if let Phase::Authed(_) = self.phase {
                if !self.lifted {
                    evicted.set(None.into());
                }
                self.lift_limits(reader);
                deadline = Instant::now() + self.gw.config.heartbeat_timeout;
                // Logging in can bring the deadline forward.
                if deadline < timer.deadline() {
                    timer.as_mut().reset(deadline);
                }
            }
        }
    }

    /// At shutdown: answers what the client sent before it, then says
    /// GOING_AWAY.
    async fn going_away<R: FrameRead>(&mut self, reader: &mut R) {
        self.answer_what_was_sent(reader).await;
        self.finish_in_flight().await;
        self.close(
            DisconnectReason::GoingAway,
            "server shutting down; reconnect",
        );
    }

    /// At shutdown: handles every request the client sent before the server
    /// said it was going (whole frames already received or waiting in the
    /// socket), so each gets its answer before GOING_AWAY.
    async fn answer_what_was_sent<R: FrameRead>(&mut self, reader: &mut R) {
        let until = Instant::now() + ANSWERING_AT_SHUTDOWN;
        for _ in 0..MAX_ANSWERED_AT_SHUTDOWN {
            if self.in_flight.len() >= MAX_IN_FLIGHT {
                self.finish_in_flight().await;
            }
            // Answers come faster than the socket takes them here (nothing
            // waits for a commit any more): let the queue drain rather than
            // close a client that is reading as a slow consumer.
            while self.out.backlog().0 > self.out.backlog().1 / 2 && Instant::now() < until {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            // Bytes already in the socket may not have been seen by the
            // runtime yet: wait a moment for them, never long.
            let wait = QUIET_AT_SHUTDOWN.min(until.saturating_duration_since(Instant::now()));
            match tokio::time::timeout(wait, reader.read_frame()).await {
                Ok(Ok(Some(frame))) => {
                    if let Flow::Stop = self.handle(frame).await {
                        return;
                    }
                    self.lift_limits(reader);
                }
                _ => return,
            }
        }
    }

    /// Once logged in, frames may be as large as the frame limit.
    fn lift_limits<R: FrameRead>(&mut self, reader: &mut R) {
        if !self.lifted && matches!(self.phase, Phase::Authed(_)) {
            reader.authenticated(self.gw.config.max_frame_bytes);
            self.lifted = true;
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
        // Boxed: a connection's task waits in the read loop between frames
        // and would otherwise reserve room for the dispatch's state all its
        // life (it moves the request three times: 416 bytes).
        Box::pin(crate::dispatch::dispatch(self, id, request)).await
    }

    fn stop_if_new(&mut self, why: &str) -> Flow {
        if let Phase::New = self.phase {
            self.close(DisconnectReason::ProtocolError, why);
            Flow::Stop
        } else {
            Flow::Continue
        }
    }

    /// Answers with a handler's result: its frame, or its error's.
    pub(crate) fn answer(&self, id: u32, result: Result<ServerFrame, ServiceError>) {
        let frame = result.unwrap_or_else(|e| convert::error(&e));
        self.reply(id, frame);
    }

    /// Answers with an error and reads on.
    pub(crate) fn error(&self, id: u32, code: ErrorCode, message: &str) -> Flow {
        self.reply(id, ServerFrame::error(code, message));
        Flow::Continue
    }

    /// Answers with an error and closes: the client broke the protocol.
    pub(crate) fn refuse(&self, id: u32, code: ErrorCode, why: &str) -> Flow {
        self.reply(id, ServerFrame::error(code, why));
        self.close(DisconnectReason::ProtocolError, why);
        Flow::Stop
    }

    /// After a login or resume: answers, and on success attaches the
    /// session here. Attached after the answer is queued: pushes start
    /// after LoginOk, and anything committed before is found by the
    /// client's first Sync.
    pub(crate) async fn logged_in(
        &mut self,
        id: u32,
        via: &'static str,
        result: Result<SessionInfo, ServiceError>,
    ) -> Flow {
        let mut s = match result {
            Ok(s) => s,
            Err(e) => {
                self.answer(id, Err(e));
                return Flow::Continue;
            }
        };
        self.reply(id, auth::login_ok(&self.gw.config, &s));
        // The client has its token; the connection does not keep the secret.
        s.token = String::new();
        let s = Arc::new(s);
        // No longer one of the connections waiting to log in.
        self.unauth = None;
        let first =
            self.gw
                .registry
                .attach(s.user_id, s.session_id, self.conn_id, self.out.clone());
        self.gw.service.attached(&s, first).await;
        tracing::debug!(
            peer = %self.peer,
            user = s.user_id,
            session = s.session_id,
            conn = self.conn_id,
            via,
            "authenticated"
        );
        self.phase = Phase::Authed(s);
        Flow::Continue
    }

    /// Keeps a queued Send's answer in line behind the ones before it (or
    /// answers its refusal in line). The Send is in the store's queue
    /// already, ahead of anything this connection sends next; while the
    /// in-flight answers are at their limit the connection reads nothing
    /// more.
    pub(crate) fn owe(&mut self, id: u32, queued: Result<PendingSend, ServiceError>) {
        match queued {
            Ok(pending) => self.in_flight.push_back(pipeline::owed(id, pending)),
            Err(e) => self.answer_in_order(id, convert::error(&e)),
        }
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
        while let Some((id, frame)) = self.in_flight.next().await {
            self.reply(id, frame);
        }
    }

    /// Queues an answer. One that would exceed the frame limit the client
    /// was promised is replaced by an INTERNAL error (and counted): every
    /// list the server sends pages within the limit, so this is a bug.
    pub(crate) fn reply(&self, request_id: u32, frame: ServerFrame) {
        let bytes = frame.to_bytes(request_id);
        if self.out.fits(&bytes) {
            self.out.push(bytes);
        } else {
            metrics::counter!("natter_oversized_frames_total").increment(1);
            tracing::error!(
                request_id,
                bytes = bytes.len(),
                "an answer exceeded the frame limit"
            );
            let e = ServerFrame::error(ErrorCode::Internal, "the answer exceeded the frame limit");
            self.out.push(e.to_bytes(request_id));
        }
    }

    pub(crate) fn close(&self, reason: DisconnectReason, message: &str) {
        let (reconnect_after_ms, reconnect_to) = match reason {
            DisconnectReason::GoingAway => (
                self.gw.config.reconnect_after.as_millis() as u32,
                self.gw.reconnect_target(),
            ),
            _ => (0, None),
        };
        self.out.close(Close {
            reason,
            message: message.into(),
            flush: true,
            too_large: false,
            reconnect_after_ms,
            reconnect_to,
        });
    }
}

pub(crate) fn rate_limited(what: &'static str, retry_after: std::time::Duration) -> ServerFrame {
    convert::error(&ServiceError::RateLimited { what, retry_after })
}
