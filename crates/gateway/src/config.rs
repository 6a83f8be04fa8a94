//! The gateway's settings: the `[shutdown]` section, which it owns, and
//! `GatewayConfig`, made from the sections it enforces.

use natter_runtime::config::LimitsConfig;
use natter_runtime::load::OverloadConfig;
use natter_service::SessionConfig;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The `[shutdown]` section: how the node drains.
///
/// The gateway owns it: it drains its connections within `grace_ms` and
/// tells clients `reconnect_after_ms` in GOING_AWAY. The cluster, which
/// depends on the gateway, tells the clients it moves away from a busy
/// node the same pause. Any value is accepted (a grace of 0 drains at
/// once), so the section has no rules to check.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    pub grace_ms: u64,
    pub reconnect_after_ms: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            grace_ms: 10_000,
            reconnect_after_ms: 1_000,
        }
    }
}

impl ShutdownConfig {
    /// How long the drain may take.
    pub fn grace(&self) -> Duration {
        Duration::from_millis(self.grace_ms)
    }

    /// The pause clients sent elsewhere are told to wait.
    pub fn reconnect_after(&self) -> Duration {
        Duration::from_millis(self.reconnect_after_ms)
    }
}

#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub server_name: String,
    /// Largest accepted frame (the length field), both directions.
    pub max_frame_bytes: usize,
    /// Largest frame accepted before login.
    pub max_preauth_frame_bytes: usize,
    /// Bytes a WebSocket client may send before login, the upgrade included.
    pub max_preauth_bytes: usize,
    pub max_connections: usize,
    /// Connections from one address that have not logged in yet.
    pub max_unauthenticated_per_address: usize,
    /// Connections waiting to log in, in all: past it a new one evicts one.
    pub max_unauthenticated: usize,
    /// Connections waiting to log in, in all, while the node sheds load.
    pub max_unauthenticated_shedding: usize,
    /// Frames queued for one connection before it counts as a slow consumer.
    pub outbound_queue: usize,
    /// Bytes queued for one connection before it counts as a slow consumer.
    pub outbound_queue_bytes: usize,
    /// Time a new connection has to log in.
    pub auth_timeout: Duration,
    /// How often an authenticated client should send something.
    pub heartbeat_interval: Duration,
    /// Silence after which an authenticated connection is closed.
    pub heartbeat_timeout: Duration,
    /// Per-user message rate (token bucket), shared by the user's sessions.
    pub send_rate_per_sec: f64,
    pub send_burst: f64,
    /// Per-connection request rate for every frame type.
    pub request_rate_per_sec: f64,
    pub request_burst: f64,
    /// How long closing a connection may spend flushing its queue.
    pub flush_timeout: Duration,
    /// Told to clients in GOING_AWAY.
    pub reconnect_after: Duration,
}

impl GatewayConfig {
    /// The gateway's settings from the sections it enforces: the frame,
    /// queue, connection and rate keys of `[limits]`, the timings of
    /// `[session]`, `[shutdown]`'s reconnect pause and `[overload]`'s cap
    /// on logins waiting while the node sheds load. `max_connections` is
    /// what this node can serve (the file-descriptor budget may allow fewer
    /// than `limits.max_connections`); `flush_timeout` is how long closing
    /// a connection may spend flushing its queue.
    pub fn new(
        limits: &LimitsConfig,
        session: &SessionConfig,
        shutdown: &ShutdownConfig,
        overload: &OverloadConfig,
        max_connections: usize,
        flush_timeout: Duration,
    ) -> Self {
        let ms = Duration::from_millis;
        GatewayConfig {
            server_name: format!("natter/{}", env!("CARGO_PKG_VERSION")),
            max_frame_bytes: limits.max_frame_bytes,
            max_preauth_frame_bytes: limits.max_preauth_frame_bytes,
            max_preauth_bytes: 8 * limits.max_preauth_frame_bytes,
            max_connections,
            max_unauthenticated_per_address: limits.max_unauthenticated_per_address,
            max_unauthenticated: limits.unauthenticated_bound(max_connections),
            max_unauthenticated_shedding: overload.max_unauthenticated,
            outbound_queue: limits.outbound_queue,
            outbound_queue_bytes: limits.outbound_queue_bytes,
            auth_timeout: ms(session.auth_timeout_ms),
            heartbeat_interval: ms(session.heartbeat_interval_ms),
            heartbeat_timeout: ms(session.heartbeat_timeout_ms),
            send_rate_per_sec: limits.send_rate_per_sec,
            send_burst: limits.send_burst,
            request_rate_per_sec: limits.request_rate_per_sec,
            request_burst: limits.request_burst,
            flush_timeout,
            reconnect_after: shutdown.reconnect_after(),
        }
    }
}
