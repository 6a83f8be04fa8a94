//! The recent log in memory, for the admin console: a layer that keeps the
//! last lines in a ring bounded by lines and by bytes (`log.ring_lines`,
//! `log.ring_bytes`; the oldest go first), tells live subscribers of each
//! new one, and keeps a separate, smaller buffer of each traced user's
//! lines, debug ones included (see [`super::control`]). An event costs one
//! short lock of the ring; with the ring off there is no layer at all.

use serde::{Serialize, Serializer};
use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter, Layer};
use tracing_subscriber::{reload, EnvFilter};

/// A line's message and fields past this many bytes are cut.
pub const MAX_LINE_BYTES: usize = 8 * 1024;
/// The most lines one query answers.
pub const MAX_QUERY: usize = 5_000;
/// Lines a live subscriber may fall behind before it is told it lagged.
pub const LIVE_CAPACITY: usize = 1024;
/// What a line costs beyond its text, counted against `log.ring_bytes`.
const LINE_OVERHEAD: usize = std::mem::size_of::<Line>() + 2 * std::mem::size_of::<usize>();

/// One log line as the console shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Line {
    /// Increasing over the process's life, across the ring and the traces.
    pub seq: u64,
    /// Wall-clock milliseconds since the Unix epoch.
    pub ts_ms: i64,
    #[serde(serialize_with = "lowercase")]
    pub level: Level,
    pub target: &'static str,
    pub message: String,
    /// The other fields, `key=value` separated by spaces.
    pub fields: String,
    /// The `user` or `user_id` field, when the event has one.
    pub user: Option<u64>,
}

fn lowercase<S: Serializer>(level: &Level, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match *level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    })
}

impl Line {
    /// What the line counts for against the byte cap.
    fn cost(&self) -> usize {
        LINE_OVERHEAD + self.target.len() + self.message.len() + self.fields.len()
    }

    /// Target, message or fields hold `needle`, ignoring case.
    fn holds(&self, needle: &str) -> bool {
        [self.target, &self.message, &self.fields]
            .iter()
            .any(|hay| contains_ignoring_case(hay, needle))
    }
}

/// `needle` is already lowercase.
fn contains_ignoring_case(hay: &str, needle: &str) -> bool {
    if needle.is_ascii() {
        let n = needle.as_bytes();
        n.is_empty()
            || hay
                .as_bytes()
                .windows(n.len())
                .any(|w| w.eq_ignore_ascii_case(n))
    } else {
        hay.to_lowercase().contains(needle)
    }
}

/// Which lines [`Ring::lines`] answers; every condition must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// This level and the more severe ones (`WARN` is warnings and errors).
    pub min_level: Level,
    /// In the target, message or fields, ignoring case.
    pub contains: Option<String>,
    /// Only lines after this one.
    pub after_seq: Option<u64>,
    pub user: Option<u64>,
    /// The newest lines that match, at most this many (and at most
    /// [`MAX_QUERY`]).
    pub limit: usize,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            min_level: Level::TRACE,
            contains: None,
            after_seq: None,
            user: None,
            limit: MAX_QUERY,
        }
    }
}

/// A traced user's lines and until when they are kept.
pub(super) struct Trace {
    pub until_ms: i64,
    pub lines: VecDeque<Arc<Line>>,
}

/// The ring, the live channel and the traces; shared by the layer, its
/// filter and the control handle.
pub struct Ring {
    max_lines: usize,
    max_bytes: usize,
    seq: AtomicU64,
    lines: Mutex<Lines>,
    live: broadcast::Sender<Arc<Line>>,
    /// How many traces are on: the hot path's check, without a lock.
    tracing: AtomicUsize,
    traces: Mutex<HashMap<u64, Trace>>,
    /// The most lines one user's trace keeps.
    trace_lines: usize,
}

#[derive(Default)]
struct Lines {
    lines: VecDeque<Arc<Line>>,
    bytes: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Ring {
    /// A ring of at most `max_lines` lines and `max_bytes` bytes; each
    /// trace keeps at most `trace_lines`.
    pub fn new(max_lines: usize, max_bytes: usize, trace_lines: usize) -> Ring {
        Ring {
            max_lines: max_lines.max(1),
            max_bytes,
            seq: AtomicU64::new(1),
            lines: Mutex::default(),
            live: broadcast::channel(LIVE_CAPACITY).0,
            tracing: AtomicUsize::new(0),
            traces: Mutex::default(),
            trace_lines: trace_lines.max(1),
        }
    }

    /// Keeps `line` as the newest, letting the oldest go past either cap,
    /// and tells live subscribers.
    pub fn keep(&self, mut line: Line) -> Arc<Line> {
        let cost = line.cost();
        let mut ring = lock(&self.lines);
        // Numbered under the lock, so the ring is in seq order.
        line.seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let line = Arc::new(line);
        while !ring.lines.is_empty()
            && (ring.lines.len() >= self.max_lines || ring.bytes + cost > self.max_bytes)
        {
            if let Some(old) = ring.lines.pop_front() {
                ring.bytes -= old.cost();
            }
        }
        ring.lines.push_back(line.clone());
        ring.bytes += cost;
        // No receiver is not an error; a slow one lags, never blocks.
        let _ = self.live.send(line.clone());
        line
    }

    /// The newest lines matching `q`, oldest first.
    pub fn lines(&self, q: &Query) -> Vec<Arc<Line>> {
        let candidates: Vec<Arc<Line>> = {
            let ring = lock(&self.lines);
            let from = match q.after_seq {
                Some(after) => ring.lines.partition_point(|l| l.seq <= after),
                None => 0,
            };
            ring.lines.range(from..).cloned().collect()
        };
        select(candidates.into_iter().rev(), q)
    }

    /// Every new line of the ring, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Line>> {
        self.live.subscribe()
    }

    /// A trace is on: debug events are worth looking at.
    pub fn tracing(&self) -> bool {
        self.tracing.load(Ordering::Relaxed) > 0
    }

    pub(super) fn traces(&self) -> MutexGuard<'_, HashMap<u64, Trace>> {
        lock(&self.traces)
    }

    /// After the traces changed: the count the hot path reads.
    pub(super) fn set_tracing(&self, traces: &HashMap<u64, Trace>) {
        self.tracing.store(traces.len(), Ordering::Relaxed);
    }

    /// Keeps `line` in its user's trace if one is on; true if it was.
    fn keep_traced(&self, line: &Arc<Line>) -> bool {
        let Some(user) = line.user else {
            return false;
        };
        let mut traces = self.traces();
        let Some(trace) = traces.get_mut(&user) else {
            return false;
        };
        if line.ts_ms > trace.until_ms {
            // Over: forgotten here; the control handle forgets the others.
            traces.remove(&user);
            self.set_tracing(&traces);
            return false;
        }
        if trace.lines.len() >= self.trace_lines {
            trace.lines.pop_front();
        }
        trace.lines.push_back(line.clone());
        true
    }

    /// A traced user's line the configured level would not keep: numbered
    /// and kept in the trace only.
    fn keep_only_traced(&self, mut line: Line) {
        let Some(user) = line.user else {
            return;
        };
        let mut traces = self.traces();
        let Some(trace) = traces.get_mut(&user) else {
            return;
        };
        if line.ts_ms > trace.until_ms {
            traces.remove(&user);
            self.set_tracing(&traces);
            return;
        }
        line.seq = self.seq.fetch_add(1, Ordering::Relaxed);
        if trace.lines.len() >= self.trace_lines {
            trace.lines.pop_front();
        }
        trace.lines.push_back(Arc::new(line));
    }
}

/// The first `q.limit` lines of `newest_first` that match, oldest first.
pub(super) fn select(newest_first: impl Iterator<Item = Arc<Line>>, q: &Query) -> Vec<Arc<Line>> {
    let needle = q.contains.as_deref().map(str::to_lowercase);
    let mut out: Vec<Arc<Line>> = newest_first
        .filter(|l| l.level <= q.min_level)
        .filter(|l| q.after_seq.is_none_or(|after| l.seq > after))
        .filter(|l| q.user.is_none_or(|u| l.user == Some(u)))
        .filter(|l| needle.as_deref().is_none_or(|n| l.holds(n)))
        .take(q.limit.min(MAX_QUERY))
        .collect();
    out.reverse();
    out
}

/// An event's fields as text, and its user.
#[derive(Default)]
struct Render {
    message: String,
    fields: String,
    user: Option<u64>,
}

fn is_user(field: &Field) -> bool {
    matches!(field.name(), "user" | "user_id")
}

impl Visit for Render {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if is_user(field) {
            self.user = Some(value);
        }
        self.record_debug(field, &value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if is_user(field) {
            self.user = u64::try_from(value).ok();
        }
        self.record_debug(field, &value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
            return;
        }
        if !self.fields.is_empty() {
            self.fields.push(' ');
        }
        let _ = write!(self.fields, "{}=", field.name());
        let start = self.fields.len();
        let _ = write!(self.fields, "{value:?}");
        if self.user.is_none() && is_user(field) {
            // `user = %id` and the like: the id as text.
            self.user = self.fields[start..].trim_matches('"').parse().ok();
        }
    }
}

/// Only the event's user, for deciding whether a traced line is wanted
/// before rendering it.
struct UserOf(Option<u64>);

impl Visit for UserOf {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if is_user(field) {
            self.0 = Some(value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if is_user(field) {
            self.0 = u64::try_from(value).ok();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if self.0.is_none() && is_user(field) {
            self.0 = format!("{value:?}").trim_matches('"').parse().ok();
        }
    }
}

/// Cuts a line whose message and fields are longer than `max` bytes, and
/// says so in its message.
fn cut(message: &mut String, fields: &mut String, max: usize) {
    let total = message.len() + fields.len();
    if total <= max {
        return;
    }
    let keep_message = message.len().min(max);
    message.truncate(floor_char_boundary(message, keep_message));
    let keep_fields = max - message.len();
    fields.truncate(floor_char_boundary(fields, keep_fields));
    let _ = write!(message, " [line cut: {total} bytes, {max} kept]");
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Renders an event as a line (not yet numbered).
pub fn render(event: &Event<'_>, ts_ms: i64) -> Line {
    let meta = event.metadata();
    let mut r = Render::default();
    event.record(&mut r);
    cut(&mut r.message, &mut r.fields, MAX_LINE_BYTES);
    Line {
        seq: 0,
        ts_ms,
        level: *meta.level(),
        target: meta.target(),
        message: r.message,
        fields: r.fields,
        user: r.user,
    }
}

/// The layer that fills the ring. It sees what the configured level lets
/// through, and while a trace is on, debug events too ([`TraceFilter`]); it
/// asks the level's filter (`env`, the same directives as its own filter's)
/// which of those the ring itself may keep.
pub struct RingLayer<S> {
    pub ring: Arc<Ring>,
    pub env: reload::Handle<EnvFilter, S>,
}

impl<S: Subscriber> Layer<S> for RingLayer<S> {
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let ts_ms = natter_runtime::clock::now_ms();
        if !self.ring.tracing() {
            self.ring.keep(render(event, ts_ms));
            return;
        }
        let level_allows = self
            .env
            .with_current(|env| <EnvFilter as Filter<S>>::enabled(env, event.metadata(), &ctx))
            .unwrap_or(true);
        if level_allows {
            let line = self.ring.keep(render(event, ts_ms));
            self.ring.keep_traced(&line);
            return;
        }
        let mut user = UserOf(None);
        event.record(&mut user);
        let Some(user) = user.0 else {
            return;
        };
        if !self.ring.traces().contains_key(&user) {
            return;
        }
        self.ring.keep_only_traced(render(event, ts_ms));
    }
}

/// Lets debug events through to the ring while at least one trace is on
/// (and nothing, at no cost, while none is). Combined with the level's
/// filter by `or`.
pub struct TraceFilter(pub Arc<Ring>);

fn traceable(meta: &Metadata<'_>) -> bool {
    *meta.level() <= Level::DEBUG
}

impl<S> Filter<S> for TraceFilter {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        traceable(meta) && self.0.tracing()
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        // Read again when a trace starts (the control handle rebuilds the
        // interest cache).
        if traceable(meta) && self.0.tracing() {
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(if self.0.tracing() {
            LevelFilter::DEBUG
        } else {
            LevelFilter::OFF
        })
    }
}

#[cfg(test)]
mod tests;
