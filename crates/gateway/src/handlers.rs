//! Request handlers: each parses its payload, calls one service method and
//! maps the result to a frame.

use crate::connection::{Conn, Flow, Phase};
use crate::convert;
use natter_proto::pb::{self, DisconnectReason, ErrorCode};
use natter_proto::{ClientFrame, ServerFrame, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
use natter_service::{ServiceError, SessionInfo};
use std::collections::HashMap;
use std::sync::Arc;

impl Conn {
    pub(crate) async fn dispatch(&mut self, id: u32, request: ClientFrame) -> Flow {
        // Anything but a Send waits for the Sends before it, so answers and
        // their effects stay in request order.
        if !matches!(request, ClientFrame::Send(_)) {
            self.finish_in_flight().await;
        }
        let session = match (&self.phase, request) {
            (Phase::New, ClientFrame::Hello(h)) => return self.hello(id, h),
            (Phase::New, _) => {
                self.reply(
                    id,
                    ServerFrame::error(ErrorCode::Protocol, "the first frame must be Hello"),
                );
                self.close(
                    DisconnectReason::ProtocolError,
                    "the first frame must be Hello",
                );
                return Flow::Stop;
            }
            (_, ClientFrame::Hello(_)) => {
                self.reply(
                    id,
                    ServerFrame::error(ErrorCode::Protocol, "Hello was already received"),
                );
                return Flow::Continue;
            }
            (_, ClientFrame::Ping(p)) => {
                self.reply(
                    id,
                    ServerFrame::Pong(pb::Pong {
                        client_time_ms: p.client_time_ms,
                        server_time_ms: natter_service::now_ms(),
                    }),
                );
                return Flow::Continue;
            }
            (_, ClientFrame::Register(r)) => {
                let from = self.peer.ip();
                let done = Box::pin(self.gw.service.register(&r.username, &r.password, from)).await;
                self.answer(id, done.map(|_| ServerFrame::Done(pb::Done {})));
                return Flow::Continue;
            }
            (Phase::Greeted, ClientFrame::Login(l)) => {
                let login =
                    self.gw
                        .service
                        .login(&l.username, &l.password, &l.device_id, self.peer.ip());
                let r = Box::pin(login).await;
                return Box::pin(self.authenticated(id, r)).await;
            }
            (Phase::Greeted, ClientFrame::Resume(r)) => {
                let r = Box::pin(self.gw.service.resume(&r.token, &r.device_id)).await;
                return Box::pin(self.authenticated(id, r)).await;
            }
            (Phase::Authed(_), ClientFrame::Login(_) | ClientFrame::Resume(_)) => {
                self.reply(
                    id,
                    ServerFrame::error(
                        ErrorCode::AlreadyAuthenticated,
                        "this connection is already logged in",
                    ),
                );
                return Flow::Continue;
            }
            (Phase::Greeted, _) => {
                self.reply(
                    id,
                    ServerFrame::error(ErrorCode::NotAuthenticated, "log in first"),
                );
                return Flow::Continue;
            }
            (Phase::Authed(s), request) => (s.clone(), request),
        };
        // A Send, the hot path, runs inline. Every other request is boxed:
        // an idle connection's task waits in the read loop, and would
        // otherwise reserve room for the largest handler's state.
        match session.1 {
            ClientFrame::Send(m) => self.pipeline_send(id, session.0, m).await,
            request => Box::pin(self.authed(id, session.0, request)).await,
        }
    }

    fn hello(&mut self, id: u32, h: pb::Hello) -> Flow {
        let top = h.max_version.min(PROTOCOL_VERSION);
        if top < MIN_PROTOCOL_VERSION.max(h.min_version) {
            let why = format!(
                "this server speaks protocol versions {MIN_PROTOCOL_VERSION}..={PROTOCOL_VERSION}; the client asked for {}..={}",
                h.min_version, h.max_version
            );
            self.reply(
                id,
                ServerFrame::error(ErrorCode::UnsupportedVersion, why.clone()),
            );
            self.close(DisconnectReason::ProtocolError, &why);
            return Flow::Stop;
        }
        let cfg = &self.gw.config;
        self.phase = Phase::Greeted;
        self.reply(
            id,
            ServerFrame::HelloOk(pb::HelloOk {
                version: top,
                server_name: cfg.server_name.clone(),
                max_frame_bytes: cfg.max_frame_bytes as u32,
                max_message_bytes: self.gw.service.config().max_message_bytes as u32,
                auth_timeout_ms: cfg.auth_timeout.as_millis() as u32,
            }),
        );
        Flow::Continue
    }

    async fn authenticated(&mut self, id: u32, result: Result<SessionInfo, ServiceError>) -> Flow {
        let s = match result {
            Ok(s) => s,
            Err(e) => {
                self.answer(id, Err(e));
                return Flow::Continue;
            }
        };
        let cfg = &self.gw.config;
        self.reply(
            id,
            ServerFrame::LoginOk(pb::LoginOk {
                user_id: s.user_id,
                username: s.username.clone(),
                session_id: s.session_id,
                token: s.token.clone(),
                token_expires_at_ms: s.expires_at_ms,
                heartbeat_interval_ms: cfg.heartbeat_interval.as_millis() as u32,
                heartbeat_timeout_ms: cfg.heartbeat_timeout.as_millis() as u32,
            }),
        );
        // No longer one of the connections waiting to log in.
        self.unauth = None;
        // Attach after the answer is queued: pushes start after LoginOk, and
        // anything committed before is found by the client's first Sync.
        let first =
            self.gw
                .registry
                .attach(s.user_id, s.session_id, self.conn_id, self.out.clone());
        self.gw.service.attached(&s, first).await;
        tracing::debug!(peer = %self.peer, user = s.user_id, session = s.session_id, "authenticated");
        self.phase = Phase::Authed(Arc::new(s));
        Flow::Continue
    }

    async fn authed(&mut self, id: u32, s: Arc<SessionInfo>, request: ClientFrame) -> Flow {
        let svc = &self.gw.service;
        let answer = match request {
            ClientFrame::Send(m) => return self.pipeline_send(id, s, m).await,
            ClientFrame::Sync(q) => {
                let cursors: HashMap<u64, u64> = q
                    .cursors
                    .iter()
                    .map(|c| (c.conversation_id, c.seq))
                    .collect();
                let limit = if q.limit == 0 {
                    usize::MAX
                } else {
                    q.limit as usize
                };
                svc.sync(&s, cursors, q.after_conversation_id, limit)
                    .await
                    .map(|p| ServerFrame::SyncPage(convert::sync_page(&p)))
            }
            ClientFrame::History(q) => {
                let limit = if q.limit == 0 {
                    usize::MAX
                } else {
                    q.limit as usize
                };
                svc.history(&s, q.conversation_id, q.before_seq, limit)
                    .await
                    .map(|p| ServerFrame::HistoryPage(convert::history_page(&p)))
            }
            ClientFrame::DeliveryAck(a) => svc
                .delivery_ack(&s, a.conversation_id, a.seq)
                .await
                .map(|_| ServerFrame::Done(pb::Done {})),
            ClientFrame::GetUsers(q) => svc.users(&q.user_ids, &q.usernames).await.map(|users| {
                ServerFrame::Users(pb::Users {
                    users: users
                        .into_iter()
                        .map(|(user_id, username)| pb::User { user_id, username })
                        .collect(),
                })
            }),
            ClientFrame::ChangePassword(c) => svc
                .change_password(&s, &c.old_password, &c.new_password)
                .await
                .map(|_| ServerFrame::Done(pb::Done {})),
            ClientFrame::Logout(_) => {
                let r = svc.logout(&s).await;
                let ok = r.is_ok();
                self.answer(id, r.map(|_| ServerFrame::Done(pb::Done {})));
                if ok {
                    self.close(DisconnectReason::LoggedOut, "logged out");
                    return Flow::Stop;
                }
                return Flow::Continue;
            }
            // Handled before a session exists.
            ClientFrame::Hello(_)
            | ClientFrame::Ping(_)
            | ClientFrame::Register(_)
            | ClientFrame::Login(_)
            | ClientFrame::Resume(_) => return Flow::Continue,
            other => self.social(&s, other).await,
        };
        self.answer(id, answer);
        Flow::Continue
    }

    fn answer(&self, id: u32, result: Result<ServerFrame, ServiceError>) {
        let frame = result.unwrap_or_else(|e| convert::error(&e));
        self.reply(id, frame);
    }
}
