//! Greeting, registration, login and resume, logout, password change.

use super::{done, Reply};
use crate::GatewayConfig;
use natter_proto::{pb, ServerFrame, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
use natter_service::{Service, ServiceError, SessionInfo};
use std::net::IpAddr;

/// HelloOk for a client whose versions overlap the server's, else why not.
pub(crate) fn hello(
    cfg: &GatewayConfig,
    svc: &Service,
    h: pb::Hello,
) -> Result<ServerFrame, String> {
    let top = h.max_version.min(PROTOCOL_VERSION);
    if top < MIN_PROTOCOL_VERSION.max(h.min_version) {
        return Err(format!(
            "this server speaks protocol versions {MIN_PROTOCOL_VERSION}..={PROTOCOL_VERSION}; the client asked for {}..={}",
            h.min_version, h.max_version
        ));
    }
    Ok(ServerFrame::HelloOk(pb::HelloOk {
        version: top,
        server_name: cfg.server_name.clone(),
        max_frame_bytes: cfg.max_frame_bytes as u32,
        max_message_bytes: svc.config().max_message_bytes as u32,
        auth_timeout_ms: cfg.auth_timeout.as_millis() as u32,
    }))
}

pub(crate) fn ping(p: pb::Ping) -> ServerFrame {
    ServerFrame::Pong(pb::Pong {
        client_time_ms: p.client_time_ms,
        server_time_ms: natter_service::now_ms(),
    })
}

pub(crate) async fn register(svc: &Service, r: pb::Register, from: IpAddr) -> Reply {
    done(
        svc.register(&r.username, &r.password, from)
            .await
            .map(|_| ()),
    )
}

pub(crate) async fn login(
    svc: &Service,
    l: pb::Login,
    from: IpAddr,
) -> Result<SessionInfo, ServiceError> {
    svc.login(&l.username, &l.password, &l.device_id, from)
        .await
}

pub(crate) async fn resume(svc: &Service, r: pb::Resume) -> Result<SessionInfo, ServiceError> {
    svc.resume(&r.token, &r.device_id).await
}

/// The answer to a login or resume, with the heartbeat the client keeps.
pub(crate) fn login_ok(cfg: &GatewayConfig, s: &SessionInfo) -> ServerFrame {
    ServerFrame::LoginOk(pb::LoginOk {
        user_id: s.user_id,
        username: s.username.clone(),
        session_id: s.session_id,
        token: s.token.clone(),
        token_expires_at_ms: s.expires_at_ms,
        heartbeat_interval_ms: cfg.heartbeat_interval.as_millis() as u32,
        heartbeat_timeout_ms: cfg.heartbeat_timeout.as_millis() as u32,
    })
}

pub(crate) async fn logout(svc: &Service, s: &SessionInfo, l: pb::Logout) -> Reply {
    done(svc.logout(s, &l.tokens).await)
}

pub(crate) async fn change_password(
    svc: &Service,
    s: &SessionInfo,
    c: pb::ChangePassword,
) -> Reply {
    done(
        svc.change_password(s, &c.old_password, &c.new_password)
            .await,
    )
}
