//! The one clock. Deadlines, expiries, rate limits and timestamps all read
//! tokio's clock, so a test that pauses tokio's time moves every one of them
//! together, and production reads the system's monotonic clock through it.

use std::time::Duration;

pub use tokio::time::Instant;

/// Milliseconds since the Unix epoch: the system's wall time, moved by as
/// much as tokio's clock is away from the real monotonic clock. In a server
/// the two are the same and this is plain wall time (following NTP steps and
/// suspends); in a test that pauses and advances tokio's time, timestamps
/// stand still and advance with it.
#[allow(clippy::disallowed_methods)] // the one place that reads the std clocks
pub fn now_ms() -> i64 {
    let tokio_now = Instant::now().into_std();
    let real_now = std::time::Instant::now();
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let skew = match tokio_now.checked_duration_since(real_now) {
        Some(ahead) => ahead.as_millis() as i64,
        None => -(real_now.saturating_duration_since(tokio_now).as_millis() as i64),
    };
    wall + skew
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
        assert!((3_599_990..3_600_100).contains(&(t1 - t0)), "{}", t1 - t0);
    }
}
