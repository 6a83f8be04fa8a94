//! Logging: tracing events formatted as text or JSON, rate-limited when the
//! same warning or error repeats ([`suppress`]), queued without blocking
//! to one writer thread ([`sink`]) that writes them to stdout and/or a
//! rotating file ([`rotate`]). A log line is either written or counted as
//! dropped; nothing is lost silently. The recent lines are also kept in
//! memory ([`ring`]), and [`Control`] changes the level while running and
//! traces one user's debug lines, for the admin console.

pub mod config;
pub mod control;
pub mod ring;
pub mod rotate;
pub mod sink;
pub mod suppress;
pub mod view;

pub use control::Control;

use crate::config::{Config, LogFormat};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tracing_subscriber::filter::FilterExt;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer};

/// How long closing waits for queued lines to be written.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// Running logging; dropping it writes what is queued (waiting at most a
/// few seconds) and stops the writer.
pub struct Logging {
    control: Control,
    writer: Arc<sink::Writer>,
    suppress: suppress::Suppress,
    window: Duration,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The running logging's handle, set by [`init`]; None in a process that
/// did not call it (in-process tests).
static CONTROL: OnceLock<Control> = OnceLock::new();

/// The handle on the logging [`init`] installed, if it did.
pub fn control() -> Option<Control> {
    CONTROL.get().cloned()
}

/// The in-memory ring's caps; `lines` 0 turns it off.
#[derive(Clone, Copy, Debug)]
pub struct RingSize {
    pub lines: usize,
    pub bytes: usize,
}

/// Where formatted lines go, and how they look.
pub struct Output<W> {
    pub writer: W,
    pub json: bool,
    pub ansi: bool,
}

/// The subscriber [`init`] installs, and its handle: the formatted output
/// and the ring, each with its own reloadable copy of the level filter
/// (`level`, tracing's directive syntax), the ring's also letting debug
/// events through while a user is traced. Built apart from `init` so tests
/// can run it as a local subscriber.
pub fn subscriber<W>(
    level: &str,
    ring: RingSize,
    suppress: suppress::Suppress,
    output: Output<W>,
) -> Result<(impl tracing::Subscriber + Send + Sync + 'static, Control), String>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let parse = || {
        EnvFilter::builder()
            .parse(level)
            .map_err(|e| format!("`{level}` is not a valid log filter: {e}"))
    };
    let (out_filter, out_handle) = reload::Layer::new(parse()?);
    let (ring_filter, ring_handle) = reload::Layer::new(parse()?);
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(output.ansi)
        // A line that cannot be written is counted by the writer.
        .log_internal_errors(false)
        .with_writer(output.writer);
    let fmt = if output.json {
        fmt.json().boxed()
    } else {
        fmt.boxed()
    };
    let kept = (ring.lines > 0).then(|| {
        Arc::new(ring::Ring::new(
            ring.lines,
            ring.bytes,
            control::TRACE_LINES,
        ))
    });
    let mut reloads: Vec<control::Reload> = vec![Box::new(move |f| {
        out_handle.reload(f).map_err(|e| e.to_string())
    })];
    let ring_layer = kept.clone().map(|kept| {
        let env = ring_handle.clone();
        reloads.push(Box::new(move |f| {
            ring_handle.reload(f).map_err(|e| e.to_string())
        }));
        ring::RingLayer {
            ring: kept.clone(),
            env,
        }
        .with_filter(ring_filter.or(ring::TraceFilter(kept)))
    });
    let subscriber = tracing_subscriber::registry()
        .with(suppress)
        .with(fmt.with_filter(out_filter))
        .with(ring_layer);
    Ok((subscriber, Control::new(kept, level.to_owned(), reloads)))
}

/// Tests that install a subscriber of their own take this first: tracing's
/// callsite interest is process-wide, so two such tests at once can turn
/// each other's events off (a trace test kept 91 of 2,000 lines so).
#[cfg(test)]
pub(crate) static SUBSCRIBER_TESTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Takes [`SUBSCRIBER_TESTS`] and starts from fresh callsite interest.
#[cfg(test)]
pub(crate) async fn one_subscriber_test() -> tokio::sync::MutexGuard<'static, ()> {
    let guard = SUBSCRIBER_TESTS.lock().await;
    tracing_core::callsite::rebuild_interest_cache();
    guard
}

/// [`one_subscriber_test`] for a test outside a runtime.
#[cfg(test)]
pub(crate) fn one_subscriber_test_now() -> tokio::sync::MutexGuard<'static, ()> {
    let guard = SUBSCRIBER_TESTS.blocking_lock();
    tracing_core::callsite::rebuild_interest_cache();
    guard
}

/// Where `log.file` lives: a relative path is under `data_dir`.
pub fn file_path(config: &Config) -> Option<PathBuf> {
    let file = &config.log.file;
    if file.as_os_str().is_empty() {
        None
    } else if file.is_absolute() {
        Some(file.clone())
    } else {
        Some(config.data_dir.join(file))
    }
}

/// Installs the global subscriber. Call inside the tokio runtime: the
/// SIGHUP listener (reopen the file) and the summary ticker are tasks.
pub fn init(config: &Config) -> std::io::Result<Logging> {
    use std::io::IsTerminal;
    let log = &config.log;
    // Counters count from the first line.
    super::metrics::handle();
    let file = match file_path(config) {
        Some(path) => {
            let caps = rotate::Caps {
                rotate_bytes: log.rotate_bytes,
                every_secs: rotate::parse_every(&log.rotate_every)
                    .map_err(std::io::Error::other)?,
                max_files: log.max_files,
                max_total_bytes: log.max_total_bytes,
            };
            let now_secs = (natter_runtime::clock::now_ms().max(0) / 1000) as u64;
            Some(
                rotate::RotatingFile::open(&path, caps, now_secs).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("log file {}: {e}", path.display()))
                })?,
            )
        }
        None => None,
    };
    let ansi = log.stdout && file.is_none() && std::io::stdout().is_terminal();
    let outputs = sink::Outputs {
        stdout: log
            .stdout
            .then(|| Box::new(std::io::stdout()) as Box<dyn std::io::Write + Send>),
        file,
        json: log.format == LogFormat::Json,
    };
    let (queue, writer) = sink::start(log.buffer_lines, outputs)?;
    let writer = Arc::new(writer);
    let window = Duration::from_millis(log.repeat_window_ms);
    let suppress = suppress::Suppress::new(log.repeat_burst, window);
    // RUST_LOG overrides log.level, when it parses.
    let level = std::env::var("RUST_LOG")
        .ok()
        .filter(|l| l.parse::<tracing_subscriber::EnvFilter>().is_ok())
        .unwrap_or_else(|| log.level.clone());
    let ring = RingSize {
        lines: log.ring_lines,
        bytes: log.ring_bytes as usize,
    };
    let output = Output {
        writer: queue,
        json: log.format == LogFormat::Json,
        ansi,
    };
    let (subscriber, control) =
        subscriber(&level, ring, suppress.clone(), output).map_err(std::io::Error::other)?;
    // try_init, not set_global_default: it also brings the `log` crate's
    // records (from dependencies) into tracing.
    subscriber.try_init().map_err(std::io::Error::other)?;
    let _ = CONTROL.set(control.clone());
    // Owned by the `Logging` guard, which outlives the drain (so the drain
    // is logged) and aborts them when dropped.
    #[allow(clippy::disallowed_methods)]
    let mut tasks = vec![tokio::spawn(report_suppressed(suppress.clone(), window))];
    #[cfg(unix)]
    #[allow(clippy::disallowed_methods)]
    tasks.push(tokio::spawn(reopen_on_sighup(writer.clone())));
    Ok(Logging {
        control,
        writer,
        suppress,
        window,
        tasks,
    })
}

/// Says what was suppressed soon after each window ends.
async fn report_suppressed(suppress: suppress::Suppress, window: Duration) {
    let mut tick = tokio::time::interval(window.min(Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        suppress.report(natter_runtime::clock::now());
    }
}

/// Opens the log file again on each SIGHUP, for an external logrotate.
/// Tokio delivers a signal to every listener, so others may listen too.
#[cfg(unix)]
async fn reopen_on_sighup(writer: Arc<sink::Writer>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!(
            target: sink::TARGET,
            "cannot listen for SIGHUP: the log file is not reopened on it");
        return;
    };
    while hup.recv().await.is_some() {
        writer.reopen();
    }
}

impl Logging {
    /// The handle on this logging (the same as [`control`]'s).
    pub fn control(&self) -> Control {
        self.control.clone()
    }
}

impl Drop for Logging {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        // Windows still open are reported as if they had ended.
        self.suppress
            .report(natter_runtime::clock::now() + self.window);
        self.writer.close(CLOSE_WAIT);
    }
}
