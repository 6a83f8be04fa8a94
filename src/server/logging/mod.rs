//! Logging: tracing events formatted as text or JSON, rate-limited when the
//! same warning or error repeats ([`suppress`]), queued without blocking
//! to one writer thread ([`sink`]) that writes them to stdout and/or a
//! rotating file ([`rotate`]). A log line is either written or counted as
//! dropped; nothing is lost silently.

pub mod config;
pub mod rotate;
pub mod sink;
pub mod suppress;

use crate::config::{Config, LogFormat};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// How long closing waits for queued lines to be written.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// Running logging; dropping it writes what is queued (waiting at most a
/// few seconds) and stops the writer.
pub struct Logging {
    writer: Arc<sink::Writer>,
    suppress: suppress::Suppress,
    window: Duration,
    tasks: Vec<tokio::task::JoinHandle<()>>,
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
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&log.level));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        // A line that cannot be written is counted by the writer.
        .log_internal_errors(false)
        .with_writer(queue);
    let fmt = match log.format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    };
    tracing_subscriber::registry()
        .with(fmt)
        .with(suppress.clone())
        .with(filter)
        .try_init()
        .map_err(std::io::Error::other)?;
    // Owned by the `Logging` guard, which outlives the drain (so the drain
    // is logged) and aborts them when dropped.
    #[allow(clippy::disallowed_methods)]
    let mut tasks = vec![tokio::spawn(report_suppressed(suppress.clone(), window))];
    #[cfg(unix)]
    #[allow(clippy::disallowed_methods)]
    tasks.push(tokio::spawn(reopen_on_sighup(writer.clone())));
    Ok(Logging {
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
