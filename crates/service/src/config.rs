//! Settings the service enforces. The `[password]`, `[social]` and
//! `[session]` sections (and `[throttle]`, in `throttle.rs`) are defined
//! here, with their defaults and rules; `ServiceConfig::new` makes the
//! service's settings from them and the runtime's `[limits]`.

use crate::{EmailConfig, ThrottleConfig};
use natter_domain::DevicePolicy;
use natter_runtime::config::{check, Invalid, LimitsConfig};
use serde::{Deserialize, Serialize};

/// The `[password]` section.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordConfig {
    pub min_length: usize,
    /// argon2id memory cost in KiB.
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    /// Password hashes computed at once, each on its own thread with its
    /// own reused argon2 memory: memory for hashing is bounded by
    /// `max_concurrent_hashes` × `argon2_memory_kib`.
    pub max_concurrent_hashes: usize,
    /// Hashes that may wait for a free thread; more are answered UNAVAILABLE.
    pub max_queued_hashes: usize,
}

impl Default for PasswordConfig {
    fn default() -> Self {
        // OWASP's argon2id baseline: 19 MiB, 2 iterations, 1 lane.
        PasswordConfig {
            min_length: 8,
            argon2_memory_kib: 19 * 1024,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            max_concurrent_hashes: 4,
            max_queued_hashes: 256,
        }
    }
}

impl PasswordConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        let p = self;
        check(p.min_length >= 1, "password.min_length", || {
            "must be at least 1".into()
        })?;
        check(
            p.argon2_parallelism >= 1,
            "password.argon2_parallelism",
            || "must be at least 1".into(),
        )?;
        check(
            p.argon2_iterations >= 1,
            "password.argon2_iterations",
            || "must be at least 1".into(),
        )?;
        check(
            p.argon2_memory_kib >= 8 * p.argon2_parallelism,
            "password.argon2_memory_kib",
            || "must be at least 8 × password.argon2_parallelism".into(),
        )?;
        check(
            (1..=256).contains(&p.max_concurrent_hashes),
            "password.max_concurrent_hashes",
            || "must be between 1 and 256".into(),
        )
    }
}

/// Who may start a 1:1 conversation.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DirectMessages {
    Friends,
    Anyone,
}

/// The `[social]` section: friends, groups, rooms and message features.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SocialConfig {
    /// Who may start a 1:1 conversation: "friends" or "anyone" (anyone who
    /// has not blocked the sender).
    pub direct_messages: DirectMessages,
    /// The most members a group or room may have.
    pub max_group_members: u32,
    /// Messages before the join point that a new room member can read.
    pub room_history: u32,
    /// How long after sending a message may be recalled.
    pub recall_window_secs: u64,
    /// Typing is passed on only in conversations with at most this many members.
    pub typing_max_members: usize,
    /// Users one user may block.
    pub max_blocked: usize,
}

impl Default for SocialConfig {
    fn default() -> Self {
        SocialConfig {
            direct_messages: DirectMessages::Friends,
            max_group_members: 5000,
            room_history: 50,
            recall_window_secs: 120,
            typing_max_members: 500,
            max_blocked: 500,
        }
    }
}

impl SocialConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        check(
            (2..=100_000).contains(&self.max_group_members),
            "social.max_group_members",
            || "must be between 2 and 100000".into(),
        )
    }
}

/// The `[session]` section: logging in, tokens, devices and heartbeats.
///
/// The service owns it: tokens and the device policy are its rules. The
/// gateway, which depends on the service, reads the connection timings
/// (`auth_timeout_ms`, `heartbeat_interval_ms`, `heartbeat_timeout_ms`)
/// from it when it makes its own settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    pub auth_timeout_ms: u64,
    pub heartbeat_interval_ms: u64,
    pub heartbeat_timeout_ms: u64,
    pub token_ttl_secs: u64,
    pub device_policy: DevicePolicy,
    pub max_devices: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            auth_timeout_ms: 10_000,
            heartbeat_interval_ms: 30_000,
            heartbeat_timeout_ms: 90_000,
            token_ttl_secs: 30 * 24 * 3600,
            device_policy: DevicePolicy::ReplaceOldest,
            max_devices: 5,
        }
    }
}

impl SessionConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        let s = self;
        let at_least_1 = || "must be at least 1".to_owned();
        check(
            s.auth_timeout_ms >= 1,
            "session.auth_timeout_ms",
            at_least_1,
        )?;
        check(
            s.heartbeat_interval_ms >= 1,
            "session.heartbeat_interval_ms",
            at_least_1,
        )?;
        check(
            s.heartbeat_timeout_ms > s.heartbeat_interval_ms,
            "session.heartbeat_timeout_ms",
            || {
                format!(
                    "must exceed session.heartbeat_interval_ms ({})",
                    s.heartbeat_interval_ms
                )
            },
        )?;
        check(s.token_ttl_secs >= 1, "session.token_ttl_secs", at_least_1)?;
        check(s.max_devices >= 1, "session.max_devices", at_least_1)
    }
}

#[derive(Clone, Debug)]
pub struct ServiceConfig {
    pub password: PasswordConfig,
    pub token_ttl_secs: u64,
    pub device_policy: DevicePolicy,
    pub max_sessions_per_user: usize,
    pub max_message_bytes: usize,
    pub max_sync_page: usize,
    pub max_history_page: usize,
    /// Bytes of messages in one sync or history page, kept well below the
    /// frame limit so a page always fits in one frame.
    pub max_page_bytes: usize,
    /// 1:1 messages only between friends (false: anyone may message anyone
    /// who has not blocked them).
    pub friends_only_dm: bool,
    pub max_group_members: u32,
    /// Messages before the join point a new room member can read.
    pub room_history: u32,
    /// How long after sending a message may be recalled.
    pub recall_window_secs: u64,
    /// Typing signals are passed on only in conversations this small.
    pub typing_max_members: usize,
    /// Users one user may block.
    pub max_blocked: usize,
    pub throttle: ThrottleConfig,
    pub email: EmailConfig,
}

impl ServiceConfig {
    /// The service's settings from the sections it enforces: its own
    /// `[password]`, `[social]`, `[throttle]`, `[session]` and `[email]`
    /// (in `email.rs`), and the message and page sizes of `[limits]`.
    pub fn new(
        password: &PasswordConfig,
        social: &SocialConfig,
        throttle: &ThrottleConfig,
        session: &SessionConfig,
        limits: &LimitsConfig,
        email: &EmailConfig,
    ) -> Self {
        ServiceConfig {
            password: password.clone(),
            token_ttl_secs: session.token_ttl_secs,
            device_policy: session.device_policy,
            max_sessions_per_user: session.max_devices,
            max_message_bytes: limits.max_message_bytes,
            max_sync_page: limits.max_sync_page,
            max_history_page: limits.max_history_page,
            max_page_bytes: limits.max_frame_bytes / 2,
            friends_only_dm: social.direct_messages == DirectMessages::Friends,
            max_group_members: social.max_group_members,
            room_history: social.room_history,
            recall_window_secs: social.recall_window_secs,
            typing_max_members: social.typing_max_members,
            max_blocked: social.max_blocked,
            throttle: throttle.clone(),
            email: email.clone(),
        }
    }
}
