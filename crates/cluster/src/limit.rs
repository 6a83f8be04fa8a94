//! Per-user send rates across nodes. Every node keeps its own bucket at the
//! full rate (so one node alone never lets more through than one server
//! would); a user with sessions on several nodes also takes from one shared
//! allowance in Redis (GCRA, one script call per message), so using two
//! nodes does not double their rate. Which users are on several nodes the
//! node learns as a side effect of routing: the REPLACED check a login
//! publishes finds the user's other nodes, and those nodes receive it.

use crate::{bounded, Shared};
use async_trait::async_trait;
use natter_runtime::limits::SendBuckets;
use natter_service::model::UserId;
use natter_service::Limiter;
use std::sync::Arc;
use std::time::Duration;

/// Users tracked as being on several nodes, at most.
const MAX_SPREAD: usize = 100_000;

/// GCRA over a theoretical arrival time kept in the key, in Redis's own
/// clock: 0 when the message may go, else the milliseconds to wait.
const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if tat - now > tolerance then
  return math.ceil(tat - now - tolerance)
end
redis.call('SET', KEYS[1], tostring(tat + interval), 'PX', math.ceil(tolerance + interval) + 1000)
return 0
"#;

pub(crate) struct SharedLimiter {
    local: SendBuckets,
    shared: Arc<Shared>,
    script: redis::Script,
    interval_ms: f64,
    tolerance_ms: f64,
}

impl SharedLimiter {
    pub(crate) fn new(shared: Arc<Shared>, rate_per_sec: f64, burst: f64) -> SharedLimiter {
        let interval_ms = 1000.0 / rate_per_sec.max(f64::MIN_POSITIVE);
        SharedLimiter {
            local: SendBuckets::new(rate_per_sec, burst),
            shared,
            script: redis::Script::new(GCRA),
            interval_ms,
            tolerance_ms: interval_ms * (burst - 1.0).max(0.0),
        }
    }
}

#[async_trait]
impl Limiter for SharedLimiter {
    async fn take_send(&self, user: UserId) -> Result<(), Duration> {
        self.local.take(user)?;
        if !self.shared.is_spread(user) {
            return Ok(());
        }
        let mut conn = self.shared.conn();
        let mut invocation = self.script.key(self.shared.keys.rate(user));
        invocation.arg(self.interval_ms).arg(self.tolerance_ms);
        let call = invocation.invoke_async::<i64>(&mut conn);
        match bounded(call).await {
            Ok(0) => Ok(()),
            Ok(wait) => Err(Duration::from_millis(wait.max(1) as u64)),
            Err(e) => {
                // The node's own bucket still holds; Redis being away must
                // not stop anyone from sending.
                metrics::counter!("natter_bus_errors_total", "op" => "limit").increment(1);
                tracing::debug!(error = %e, "shared rate limit unavailable");
                Ok(())
            }
        }
    }

    /// The node's own bucket only: the shared one is a rate (GCRA) that
    /// forgets a spent message within one interval anyway.
    fn give_back_send(&self, user: UserId) {
        self.local.give_back(user)
    }
}

impl Shared {
    pub(crate) fn is_spread(&self, user: UserId) -> bool {
        self.directory
            .spread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&user)
    }

    /// `user` has sessions here and on another node.
    pub(crate) fn mark_spread(&self, user: UserId) {
        let mut spread = self
            .directory
            .spread
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if spread.len() < MAX_SPREAD {
            spread.insert(user);
        }
    }

    pub(crate) fn unmark_spread(&self, user: UserId) {
        self.directory
            .spread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&user);
    }
}
