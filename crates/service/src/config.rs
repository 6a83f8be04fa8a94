//! Settings the service enforces. Built by the binary from the layered
//! configuration; tests build them directly.

use crate::ThrottleConfig;
use natter_domain::DevicePolicy;

#[derive(Clone, Debug)]
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
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            password: PasswordConfig::default(),
            token_ttl_secs: 30 * 24 * 3600,
            device_policy: DevicePolicy::ReplaceOldest,
            max_sessions_per_user: 5,
            max_message_bytes: 64 * 1024,
            max_sync_page: 500,
            max_history_page: 200,
            max_page_bytes: 128 * 1024,
            friends_only_dm: true,
            max_group_members: 5000,
            room_history: 50,
            recall_window_secs: 120,
            typing_max_members: 500,
            max_blocked: 500,
            throttle: ThrottleConfig::default(),
        }
    }
}
