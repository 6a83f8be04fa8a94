//! The `[log]` section of the server's configuration: where log lines go,
//! how the file rotates, and how repeated warnings are held back, with the
//! defaults and the rules (which name the bad key).

use natter_runtime::config::{check, Invalid};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `log.ring_bytes` holds at least a few of the longest lines.
const MIN_RING_BYTES: u64 = 64 * 1024;
const MAX_RING_BYTES: u64 = 1024 * 1024 * 1024;

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Log {
    /// A tracing filter, e.g. `info` or `natter_gateway=debug,info`.
    pub level: String,
    pub format: LogFormat,
    /// Log lines to stdout (with or without a file).
    pub stdout: bool,
    /// A log file; empty: none. A relative path is under `data_dir`.
    pub file: PathBuf,
    /// Lines queued for the writer; past that they are dropped and counted.
    pub buffer_lines: usize,
    /// The file is rotated before a line would take it past this size.
    pub rotate_bytes: u64,
    /// And when this much time has passed: never, hourly, daily, or e.g. 6h.
    pub rotate_every: String,
    /// Log files kept, the current one included.
    pub max_files: u32,
    /// Bytes of log files kept, the current one included.
    pub max_total_bytes: u64,
    /// Warnings and errors let through per callsite per window; 0: all.
    pub repeat_burst: u32,
    pub repeat_window_ms: u64,
    /// Recent lines kept in memory for the admin console; 0: none.
    pub ring_lines: usize,
    /// And at most this many bytes of them.
    pub ring_bytes: u64,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            level: "info".into(),
            format: LogFormat::Text,
            stdout: true,
            file: PathBuf::new(),
            buffer_lines: 8192,
            rotate_bytes: 64 * 1024 * 1024,
            rotate_every: "daily".into(),
            max_files: 10,
            max_total_bytes: 1024 * 1024 * 1024,
            repeat_burst: 10,
            repeat_window_ms: 10_000,
            ring_lines: 10_000,
            ring_bytes: 8 * 1024 * 1024,
        }
    }
}

impl Log {
    pub fn validate(&self) -> Result<(), Invalid> {
        let g = self;
        check(
            g.level.parse::<tracing_subscriber::EnvFilter>().is_ok(),
            "log.level",
            || format!("`{}` is not a valid log filter", g.level),
        )?;
        check(
            g.stdout || !g.file.as_os_str().is_empty(),
            "log.stdout",
            || "with no log.file, logs would go nowhere (log.level = \"off\" silences them)".into(),
        )?;
        check(
            (1..=1_000_000).contains(&g.buffer_lines),
            "log.buffer_lines",
            || "must be between 1 and 1000000".into(),
        )?;
        check(g.rotate_bytes >= 1024, "log.rotate_bytes", || {
            "must be at least 1024".into()
        })?;
        if let Err(why) = super::rotate::parse_every(&g.rotate_every) {
            check(false, "log.rotate_every", || why)?;
        }
        check(g.max_files >= 1, "log.max_files", || {
            "must be at least 1".into()
        })?;
        check(
            g.max_total_bytes >= g.rotate_bytes,
            "log.max_total_bytes",
            || "must be at least log.rotate_bytes".into(),
        )?;
        check(
            g.repeat_burst == 0 || g.repeat_window_ms >= 1,
            "log.repeat_window_ms",
            || "must be at least 1".into(),
        )?;
        check(g.ring_lines <= 1_000_000, "log.ring_lines", || {
            "must be at most 1000000 (0 turns the ring off)".into()
        })?;
        // The longest line always fits.
        check(
            g.ring_lines == 0 || (MIN_RING_BYTES..=MAX_RING_BYTES).contains(&g.ring_bytes),
            "log.ring_bytes",
            || format!("must be between {MIN_RING_BYTES} and {MAX_RING_BYTES}"),
        )
    }
}
