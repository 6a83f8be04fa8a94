//! The one clock. Deadlines, expiries, rate limits and timestamps all read
//! tokio's clock, so a test that pauses tokio's time moves every one of them
//! together, and production reads the system's monotonic clock through it.

use std::sync::OnceLock;
use std::time::Duration;

pub use tokio::time::Instant;

struct Anchor {
    wall_ms: i64,
    at: Instant,
}

static ANCHOR: OnceLock<Anchor> = OnceLock::new();

/// Milliseconds since the Unix epoch: the system's wall time when the clock
/// was first read, plus tokio's monotonic time since. Timestamps therefore
/// never go backwards while the process runs, and a paused test clock moves
/// them too. (A step of the system clock after start-up is not followed;
/// NTP's gradual corrections are, as they also steer the monotonic clock.)
pub fn now_ms() -> i64 {
    let a = ANCHOR.get_or_init(|| Anchor {
        #[allow(clippy::disallowed_methods)] // the one place that reads the wall clock
        wall_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
        at: Instant::now(),
    });
    a.wall_ms + Instant::now().saturating_duration_since(a.at).as_millis() as i64
}

/// Tokio's "now"; the same clock as [`now_ms`].
pub fn now() -> Instant {
    Instant::now()
}

/// A duration in whole milliseconds, saturating, for `retry_after_ms`.
pub fn millis(d: Duration) -> u32 {
    d.as_millis().clamp(1, u32::MAX as u128) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn wall_time_follows_a_paused_clock() {
        let t0 = now_ms();
        tokio::time::advance(Duration::from_secs(3600)).await;
        let t1 = now_ms();
        assert!((3_600_000..3_600_100).contains(&(t1 - t0)), "{}", t1 - t0);
    }
}
