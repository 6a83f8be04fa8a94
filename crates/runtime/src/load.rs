//! Overload stages. The node watches its memory (RSS against a budget), its
//! event-loop lag and its store queue, and sheds load in steps instead of
//! falling over:
//!
//! - `Normal`: everything is served.
//! - `Shed`: new connections, logins and registrations are refused with a
//!   retry-after; sessions that resume with a token are still let in.
//! - `Essential`: also typing, presence and large sync pages pause. Sending,
//!   ACKs, delivery and small syncs always go on.
//!
//! A stage is entered as soon as any signal crosses its threshold and left
//! once every signal has stayed below 80 % of that threshold for the calm
//! period. Every change is logged and counted.

use crate::clock::Instant;
use crate::config::{check, Invalid};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Normal = 0,
    Shed = 1,
    Essential = 2,
}

impl Stage {
    /// Every stage, lowest first.
    pub const ALL: [Stage; 3] = [Stage::Normal, Stage::Shed, Stage::Essential];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Normal => "normal",
            Stage::Shed => "shed",
            Stage::Essential => "essential",
        }
    }

    fn from_u8(v: u8) -> Stage {
        match v {
            2 => Stage::Essential,
            1 => Stage::Shed,
            _ => Stage::Normal,
        }
    }
}

/// The stage the node is in, read on every accept and login.
#[derive(Debug, Default)]
pub struct Load {
    stage: AtomicU8,
}

impl Load {
    pub fn stage(&self) -> Stage {
        Stage::from_u8(self.stage.load(Ordering::Relaxed))
    }

    /// New connections, logins and registrations are welcome.
    pub fn accepts_new(&self) -> bool {
        self.stage() == Stage::Normal
    }

    /// Typing, presence and large sync pages are served.
    pub fn serves_extras(&self) -> bool {
        self.stage() < Stage::Essential
    }

    /// Sets the stage directly (tests, and the monitor).
    pub fn set(&self, stage: Stage) {
        self.stage.store(stage as u8, Ordering::Relaxed);
    }
}

/// Where each stage begins; see docs/CONFIG.md `[overload]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Thresholds {
    pub memory_budget_bytes: u64,
    /// Fractions of the budget.
    pub shed_memory: f64,
    pub essential_memory: f64,
    pub shed_lag: Duration,
    pub essential_lag: Duration,
    /// Fractions of the store's queue.
    pub shed_queue: f64,
    pub essential_queue: f64,
    /// How long every signal must stay low before a stage is left.
    pub calm: Duration,
    /// How often the signals are read.
    pub interval: Duration,
}

/// The `[overload]` section: where the stages begin.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OverloadConfig {
    /// 0: three quarters of the memory the machine (or its cgroup) has.
    pub memory_budget_mb: u64,
    pub shed_memory_pct: u32,
    pub essential_memory_pct: u32,
    pub shed_lag_ms: u64,
    pub essential_lag_ms: u64,
    pub shed_queue_pct: u32,
    pub essential_queue_pct: u32,
    pub calm_ms: u64,
    pub interval_ms: u64,
    /// Connections that may wait to log in, in all, while shedding.
    pub max_unauthenticated: usize,
}

impl Default for OverloadConfig {
    fn default() -> Self {
        OverloadConfig {
            memory_budget_mb: 0,
            shed_memory_pct: 80,
            essential_memory_pct: 90,
            shed_lag_ms: 250,
            essential_lag_ms: 1_000,
            shed_queue_pct: 50,
            essential_queue_pct: 90,
            calm_ms: 5_000,
            interval_ms: 250,
            max_unauthenticated: 1_000,
        }
    }
}

impl OverloadConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        let o = self;
        for (lo, hi, key) in [
            (
                o.shed_memory_pct,
                o.essential_memory_pct,
                "overload.essential_memory_pct",
            ),
            (
                o.shed_queue_pct,
                o.essential_queue_pct,
                "overload.essential_queue_pct",
            ),
        ] {
            check(lo >= 1 && lo <= hi && hi <= 100, key, || {
                "the shed and essential percentages must satisfy 1 <= shed <= essential <= 100"
                    .into()
            })?;
        }
        check(
            o.shed_lag_ms >= 1 && o.shed_lag_ms <= o.essential_lag_ms,
            "overload.essential_lag_ms",
            || "must be at least overload.shed_lag_ms (itself at least 1)".into(),
        )?;
        check(o.interval_ms >= 10, "overload.interval_ms", || {
            "must be at least 10".into()
        })?;
        check(
            o.max_unauthenticated >= 1,
            "overload.max_unauthenticated",
            || "must be at least 1".into(),
        )
    }

    /// The thresholds the monitor works with; a `memory_budget_mb` of 0
    /// is three quarters of the memory the machine (or its cgroup) has.
    pub fn thresholds(&self) -> Thresholds {
        let budget = match self.memory_budget_mb {
            0 => memory_available().map_or(u64::MAX / 4, |m| m / 4 * 3),
            mb => mb << 20,
        };
        let ms = Duration::from_millis;
        Thresholds {
            memory_budget_bytes: budget,
            shed_memory: self.shed_memory_pct as f64 / 100.0,
            essential_memory: self.essential_memory_pct as f64 / 100.0,
            shed_lag: ms(self.shed_lag_ms),
            essential_lag: ms(self.essential_lag_ms),
            shed_queue: self.shed_queue_pct as f64 / 100.0,
            essential_queue: self.essential_queue_pct as f64 / 100.0,
            calm: ms(self.calm_ms),
            interval: ms(self.interval_ms),
        }
    }
}

/// One reading of the signals.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Signals {
    pub rss_bytes: u64,
    pub lag: Duration,
    /// Queued store writes as a fraction of the queue's capacity.
    pub queue_fill: f64,
}

impl Thresholds {
    /// How far into `stage` the signals are: 1.0 or more means at or past
    /// its threshold.
    fn pressure(&self, s: &Signals, stage: Stage) -> f64 {
        let (mem, lag, queue) = match stage {
            Stage::Normal => return 0.0,
            Stage::Shed => (self.shed_memory, self.shed_lag, self.shed_queue),
            Stage::Essential => (
                self.essential_memory,
                self.essential_lag,
                self.essential_queue,
            ),
        };
        let mem = s.rss_bytes as f64 / (self.memory_budget_bytes as f64 * mem).max(1.0);
        let lag = s.lag.as_secs_f64() / lag.as_secs_f64().max(1e-6);
        let queue = s.queue_fill / queue.max(1e-6);
        mem.max(lag).max(queue)
    }
}

/// The stage machine, fed one reading at a time.
#[derive(Debug)]
pub struct Stages {
    pub current: Stage,
    calm_since: Option<Instant>,
}

impl Default for Stages {
    fn default() -> Self {
        Stages {
            current: Stage::Normal,
            calm_since: None,
        }
    }
}

impl Stages {
    /// Takes a reading; returns the new stage when it changed.
    pub fn observe(&mut self, t: &Thresholds, s: &Signals, now: Instant) -> Option<Stage> {
        let target = if t.pressure(s, Stage::Essential) >= 1.0 {
            Stage::Essential
        } else if t.pressure(s, Stage::Shed) >= 1.0 {
            Stage::Shed
        } else {
            Stage::Normal
        };
        if target > self.current {
            self.current = target;
            self.calm_since = None;
            return Some(target);
        }
        if self.current == Stage::Normal || t.pressure(s, self.current) >= 0.8 {
            self.calm_since = None;
            return None;
        }
        let since = *self.calm_since.get_or_insert(now);
        if now.saturating_duration_since(since) < t.calm {
            return None;
        }
        // Step down one stage at a time, each with its own calm period.
        self.current = Stage::from_u8(self.current as u8 - 1);
        self.calm_since = None;
        Some(self.current)
    }
}

/// This process's resident memory, from /proc (0 where there is none).
pub fn rss_bytes() -> u64 {
    proc_kib("/proc/self/status", "VmRSS:").unwrap_or(0) * 1024
}

fn proc_kib(path: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// The memory this process may use: the smaller of the machine's memory and
/// its cgroup's limit (None when neither can be read).
pub fn memory_available() -> Option<u64> {
    let total = proc_kib("/proc/meminfo", "MemTotal:").map(|k| k * 1024);
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    match (total, cgroup) {
        (Some(t), Some(c)) => Some(t.min(c)),
        (t, c) => t.or(c),
    }
}

/// Reads the signals every `interval` and moves `load` between stages until
/// `stop`. The event-loop lag is this task's own lateness waking up.
pub async fn monitor(
    load: std::sync::Arc<Load>,
    t: Thresholds,
    queue_fill: impl Fn() -> f64 + Send,
    stop: CancellationToken,
) {
    let mut stages = Stages::default();
    metrics::gauge!("natter_memory_budget_bytes").set(t.memory_budget_bytes as f64);
    metrics::gauge!("natter_overload_stage").set(0.0);
    // Known from the start, not one interval later.
    metrics::gauge!("natter_memory_rss_bytes").set(rss_bytes() as f64);
    metrics::gauge!("natter_event_loop_lag_seconds").set(0.0);
    loop {
        let asked = Instant::now();
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(t.interval) => {}
        }
        let lag = asked.elapsed().saturating_sub(t.interval);
        let s = Signals {
            rss_bytes: rss_bytes(),
            lag,
            queue_fill: queue_fill(),
        };
        metrics::gauge!("natter_memory_rss_bytes").set(s.rss_bytes as f64);
        metrics::gauge!("natter_event_loop_lag_seconds").set(lag.as_secs_f64());
        let before = stages.current;
        if let Some(stage) = stages.observe(&t, &s, Instant::now()) {
            load.set(stage);
            metrics::gauge!("natter_overload_stage").set(stage as u8 as f64);
            metrics::counter!("natter_overload_transitions_total", "to" => stage.name())
                .increment(1);
            let (rss_mib, lag_ms) = (s.rss_bytes >> 20, lag.as_millis());
            let queue_pct = (s.queue_fill * 100.0).round();
            if stage > before {
                tracing::warn!(
                    from = before.name(),
                    to = stage.name(),
                    rss_mib,
                    lag_ms,
                    queue_pct,
                    "overload: entering a stage"
                );
            } else {
                tracing::info!(
                    from = before.name(),
                    to = stage.name(),
                    rss_mib,
                    lag_ms,
                    queue_pct,
                    "overload: leaving a stage"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thresholds() -> Thresholds {
        Thresholds {
            memory_budget_bytes: 1000,
            shed_memory: 0.8,
            essential_memory: 0.9,
            shed_lag: Duration::from_millis(200),
            essential_lag: Duration::from_millis(1000),
            shed_queue: 0.5,
            essential_queue: 0.9,
            calm: Duration::from_secs(2),
            interval: Duration::from_millis(250),
        }
    }

    fn sig(rss: u64, lag_ms: u64, queue: f64) -> Signals {
        Signals {
            rss_bytes: rss,
            lag: Duration::from_millis(lag_ms),
            queue_fill: queue,
        }
    }

    #[test]
    fn each_signal_alone_enters_its_stage() {
        let t = thresholds();
        let now = Instant::now();
        // (reading, the stage it puts a calm node in)
        let table = [
            (sig(0, 0, 0.0), Stage::Normal),
            (sig(799, 199, 0.49), Stage::Normal),
            (sig(800, 0, 0.0), Stage::Shed),
            (sig(0, 200, 0.0), Stage::Shed),
            (sig(0, 0, 0.5), Stage::Shed),
            (sig(900, 0, 0.0), Stage::Essential),
            (sig(0, 1000, 0.0), Stage::Essential),
            (sig(0, 0, 0.95), Stage::Essential),
        ];
        for (s, want) in table {
            let mut st = Stages::default();
            st.observe(&t, &s, now);
            assert_eq!(st.current, want, "{s:?}");
        }
    }

    #[test]
    fn stages_are_left_one_at_a_time_after_a_calm_period() {
        let t = thresholds();
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut st = Stages::default();
        assert_eq!(
            st.observe(&t, &sig(950, 0, 0.0), at(0)),
            Some(Stage::Essential)
        );
        // Just below the threshold is not calm (hysteresis at 80 %).
        assert_eq!(st.observe(&t, &sig(800, 0, 0.0), at(100)), None);
        assert_eq!(st.observe(&t, &sig(800, 0, 0.0), at(5000)), None);
        // Calm, but not for long enough yet.
        assert_eq!(st.observe(&t, &sig(100, 0, 0.0), at(5100)), None);
        assert_eq!(st.observe(&t, &sig(100, 0, 0.0), at(6000)), None);
        assert_eq!(
            st.observe(&t, &sig(100, 0, 0.0), at(7100)),
            Some(Stage::Shed)
        );
        assert_eq!(st.observe(&t, &sig(100, 0, 0.0), at(8000)), None);
        assert_eq!(st.observe(&t, &sig(100, 0, 0.0), at(9200)), None);
        assert_eq!(
            st.observe(&t, &sig(100, 0, 0.0), at(10_100)),
            Some(Stage::Normal)
        );
        // A spike interrupts the calm period.
        st.observe(&t, &sig(0, 300, 0.0), at(11_000));
        assert_eq!(st.current, Stage::Shed);
        st.observe(&t, &sig(0, 0, 0.0), at(11_100));
        st.observe(&t, &sig(0, 190, 0.0), at(12_000));
        assert_eq!(st.observe(&t, &sig(0, 0, 0.0), at(13_500)), None);
        assert_eq!(
            st.observe(&t, &sig(0, 0, 0.0), at(15_600)),
            Some(Stage::Normal)
        );
    }

    #[test]
    fn rss_is_read_on_linux() {
        if std::path::Path::new("/proc/self/status").exists() {
            assert!(rss_bytes() > 0);
            assert!(memory_available().unwrap_or(0) > 0);
        }
    }
}
