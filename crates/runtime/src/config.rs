//! What every crate's configuration section shares: the answer its
//! `validate` gives when a setting is wrong, naming the key (as conduwuit's
//! `check.rs` does), so the binary can report it without knowing the rule;
//! and the one section no single crate owns, `[limits]`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A setting that fails its section's rule: the dotted key
/// (`section.key`) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub key: &'static str,
    pub reason: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "configuration key `{}`: {}", self.key, self.reason)
    }
}

impl std::error::Error for Invalid {}

/// `Ok` when `ok`, else the key and the reason (made only when needed).
pub fn check(ok: bool, key: &'static str, reason: impl FnOnce() -> String) -> Result<(), Invalid> {
    if ok {
        Ok(())
    } else {
        Err(Invalid {
            key,
            reason: reason(),
        })
    }
}

/// The `[limits]` section: how much one connection, user, page and the
/// fan-out may take.
///
/// It is defined here, in the runtime, because no one crate owns it: the
/// gateway enforces the frame, queue, connection and rate limits, the
/// service the message size and the page sizes, and the store's commit
/// feed is sized by the fan-out keys. The runtime is the one crate all of
/// them already depend on, so each reads the keys it needs from this plain
/// settings struct without depending on another for its numbers.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    pub max_connections: usize,
    pub max_unauthenticated_per_address: usize,
    /// Connections waiting to log in, in all, always; 0 means half of
    /// `max_connections` (see [`LimitsConfig::unauthenticated_bound`]).
    pub max_unauthenticated: usize,
    pub max_frame_bytes: usize,
    pub max_preauth_frame_bytes: usize,
    pub max_message_bytes: usize,
    pub outbound_queue: usize,
    pub outbound_queue_bytes: usize,
    pub fanout_workers: usize,
    pub fanout_queue: usize,
    pub send_rate_per_sec: f64,
    pub send_burst: f64,
    pub request_rate_per_sec: f64,
    pub request_burst: f64,
    pub max_sync_page: usize,
    pub max_history_page: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections: 19_000,
            max_unauthenticated_per_address: 256,
            max_unauthenticated: 0,
            max_frame_bytes: 256 * 1024,
            max_preauth_frame_bytes: 4096,
            max_message_bytes: 64 * 1024,
            outbound_queue: 1024,
            outbound_queue_bytes: 2 * 1024 * 1024,
            fanout_workers: 4,
            fanout_queue: 65_536,
            send_rate_per_sec: 100.0,
            send_burst: 200.0,
            request_rate_per_sec: 500.0,
            request_burst: 1000.0,
            max_sync_page: 500,
            max_history_page: 200,
        }
    }
}

impl LimitsConfig {
    /// How many of a node's `max_connections` connections may be waiting to
    /// log in at once: `max_unauthenticated`, or half when it is 0, and
    /// never all of them, so that logins always find room.
    pub fn unauthenticated_bound(&self, max_connections: usize) -> usize {
        let bound = match self.max_unauthenticated {
            0 => max_connections / 2,
            n => n,
        };
        bound.min(max_connections.saturating_sub(1)).max(1)
    }

    pub fn validate(&self) -> Result<(), Invalid> {
        let l = self;
        let at_least_1 = || "must be at least 1".to_owned();
        check(l.max_connections >= 1, "limits.max_connections", at_least_1)?;
        check(
            l.max_frame_bytes >= 65_536,
            "limits.max_frame_bytes",
            || "must be at least 65536".into(),
        )?;
        check(
            (1024..=l.max_frame_bytes).contains(&l.max_preauth_frame_bytes),
            "limits.max_preauth_frame_bytes",
            || "must be between 1024 and limits.max_frame_bytes".into(),
        )?;
        check(
            l.max_unauthenticated_per_address >= 1,
            "limits.max_unauthenticated_per_address",
            at_least_1,
        )?;
        check(
            l.outbound_queue_bytes >= 2 * l.max_frame_bytes,
            "limits.outbound_queue_bytes",
            || "must hold at least two frames (2 × limits.max_frame_bytes)".into(),
        )?;
        check(l.fanout_workers >= 1, "limits.fanout_workers", at_least_1)?;
        check(l.fanout_queue >= 1, "limits.fanout_queue", at_least_1)?;
        check(
            l.max_frame_bytes <= 64 * 1024 * 1024,
            "limits.max_frame_bytes",
            || "must be at most 64 MiB".into(),
        )?;
        check(
            l.max_message_bytes >= 1,
            "limits.max_message_bytes",
            at_least_1,
        )?;
        check(
            l.max_message_bytes + 4096 <= l.max_frame_bytes,
            "limits.max_message_bytes",
            || {
                format!(
                    "must leave 4096 bytes of room below limits.max_frame_bytes ({})",
                    l.max_frame_bytes
                )
            },
        )?;
        check(l.outbound_queue >= 1, "limits.outbound_queue", at_least_1)?;
        check(
            l.send_rate_per_sec > 0.0,
            "limits.send_rate_per_sec",
            || "must be positive".into(),
        )?;
        check(l.send_burst >= 1.0, "limits.send_burst", at_least_1)?;
        check(
            l.request_rate_per_sec > 0.0,
            "limits.request_rate_per_sec",
            || "must be positive".into(),
        )?;
        check(l.request_burst >= 1.0, "limits.request_burst", at_least_1)?;
        check(l.max_sync_page >= 1, "limits.max_sync_page", at_least_1)?;
        check(
            l.max_history_page >= 1,
            "limits.max_history_page",
            at_least_1,
        )
    }
}
