//! One handle on running logging for the admin console: the recent lines
//! and their live feed ([`super::ring`]), the level changed while running
//! (for the ring, stdout and the file alike), and per-user traces: a
//! user's debug lines kept for a while, whatever the level.

use super::ring::{Line, Query, Ring};
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;
use tracing_subscriber::EnvFilter;

/// The longest a trace runs.
pub const MAX_TRACE: Duration = Duration::from_secs(10 * 60);
/// The most users traced at once.
pub const MAX_TRACED: usize = 16;
/// The most lines one user's trace keeps (the oldest go first).
pub const TRACE_LINES: usize = 2_000;

/// Puts a new level filter in place of one of the subscriber's.
pub(super) type Reload = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

/// Cheap to clone: every clone is the same logging.
#[derive(Clone)]
pub struct Control {
    inner: Arc<Inner>,
}

struct Inner {
    /// None when `log.ring_lines` is 0.
    ring: Option<Arc<Ring>>,
    /// Subscribers of a ring that is off wait on this, which never sends.
    idle: broadcast::Sender<Arc<Line>>,
    level: Mutex<String>,
    /// One per level filter (the output's and the ring's).
    reloads: Vec<Reload>,
}

/// One user's trace.
#[derive(Debug, Clone, Serialize)]
pub struct TraceInfo {
    pub user: u64,
    /// When it ends, wall-clock ms.
    pub until_ms: i64,
    /// Oldest first.
    pub lines: Vec<Arc<Line>>,
}

/// A trace on, without its lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceSummary {
    pub user: u64,
    pub until_ms: i64,
    pub lines: usize,
}

impl Control {
    pub(super) fn new(ring: Option<Arc<Ring>>, level: String, reloads: Vec<Reload>) -> Control {
        Control {
            inner: Arc::new(Inner {
                ring,
                idle: broadcast::channel(1).0,
                level: Mutex::new(level),
                reloads,
            }),
        }
    }

    /// The ring's newest lines matching `q`, oldest first; none when the
    /// ring is off.
    pub fn lines(&self, q: &Query) -> Vec<Arc<Line>> {
        self.inner
            .ring
            .as_ref()
            .map(|r| r.lines(q))
            .unwrap_or_default()
    }

    /// Each line the ring keeps from now on. A receiver that falls more
    /// than [`super::ring::LIVE_CAPACITY`] lines behind gets `Lagged`.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Line>> {
        match &self.inner.ring {
            Some(r) => r.subscribe(),
            None => self.inner.idle.subscribe(),
        }
    }

    /// The level filter in force, e.g. `info` or `natter_gateway=debug,info`.
    pub fn level(&self) -> String {
        self.inner
            .level
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Sets the level filter for every output. A filter that does not
    /// parse changes nothing, and the error says why.
    pub fn set_level(&self, directives: &str) -> Result<(), String> {
        let parse = || {
            EnvFilter::builder()
                .parse(directives)
                .map_err(|e| format!("`{directives}` is not a valid log filter: {e}"))
        };
        // It parses before any filter is replaced; one filter each.
        let mut filters = vec![parse()?];
        for _ in 1..self.inner.reloads.len() {
            filters.push(parse()?);
        }
        let mut level = self.inner.level.lock().unwrap_or_else(|p| p.into_inner());
        for (reload, filter) in self.inner.reloads.iter().zip(filters) {
            reload(filter)?;
        }
        *level = directives.to_owned();
        Ok(())
    }

    /// Keeps `user`'s lines, debug ones included, for `for_` (at most
    /// [`MAX_TRACE`]); a trace already on runs for `for_` from now and
    /// keeps its lines. Answers when it ends (wall-clock ms).
    pub fn trace_user(&self, user: u64, for_: Duration) -> Result<i64, String> {
        let Some(ring) = &self.inner.ring else {
            return Err("the log ring is off (log.ring_lines = 0)".into());
        };
        if for_.is_zero() {
            return Err("a trace must last more than 0 ms".into());
        }
        let now_ms = natter_runtime::clock::now_ms();
        let until_ms = now_ms + for_.min(MAX_TRACE).as_millis() as i64;
        let started = {
            let mut traces = ring.traces();
            traces.retain(|_, t| t.until_ms >= now_ms);
            let was = traces.len();
            if !traces.contains_key(&user) && traces.len() >= MAX_TRACED {
                ring.set_tracing(&traces);
                return Err(format!(
                    "{MAX_TRACED} users are traced already: stop one first"
                ));
            }
            traces
                .entry(user)
                .or_insert_with(|| super::ring::Trace {
                    until_ms,
                    lines: Default::default(),
                })
                .until_ms = until_ms;
            ring.set_tracing(&traces);
            was == 0
        };
        if started {
            // Debug callsites were told the ring wants none of them.
            tracing_core::callsite::rebuild_interest_cache();
        }
        Ok(until_ms)
    }

    /// Ends `user`'s trace, dropping its lines; false if none was on.
    pub fn stop_trace(&self, user: u64) -> bool {
        let Some(ring) = &self.inner.ring else {
            return false;
        };
        let mut traces = ring.traces();
        let was = traces.remove(&user).is_some();
        ring.set_tracing(&traces);
        let none_left = traces.is_empty();
        drop(traces);
        if was && none_left {
            tracing_core::callsite::rebuild_interest_cache();
        }
        was
    }

    /// `user`'s trace, if one is on.
    pub fn trace(&self, user: u64) -> Option<TraceInfo> {
        let ring = self.inner.ring.as_ref()?;
        self.forget_ended(ring);
        let traces = ring.traces();
        traces.get(&user).map(|t| TraceInfo {
            user,
            until_ms: t.until_ms,
            lines: t.lines.iter().cloned().collect(),
        })
    }

    /// The traces on, by user.
    pub fn traces(&self) -> Vec<TraceSummary> {
        let Some(ring) = &self.inner.ring else {
            return Vec::new();
        };
        self.forget_ended(ring);
        let mut out: Vec<TraceSummary> = ring
            .traces()
            .iter()
            .map(|(&user, t)| TraceSummary {
                user,
                until_ms: t.until_ms,
                lines: t.lines.len(),
            })
            .collect();
        out.sort_by_key(|t| t.user);
        out
    }

    fn forget_ended(&self, ring: &Ring) {
        let now_ms = natter_runtime::clock::now_ms();
        let mut traces = ring.traces();
        let before = traces.len();
        traces.retain(|_, t| t.until_ms >= now_ms);
        ring.set_tracing(&traces);
        let none_left = before > 0 && traces.is_empty();
        drop(traces);
        if none_left {
            tracing_core::callsite::rebuild_interest_cache();
        }
    }
}
