//! One bounded queue of formatted lines and one thread that writes them, so
//! logging never blocks the async runtime. Invariant: a log line is either
//! written or counted — `natter_log_dropped_lines_total` when the queue was
//! full, `natter_log_write_errors_total` when a sink refused it. After
//! drops, the writer also says how many in the log itself.

use super::rotate::RotatingFile;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

/// The target of the lines the logging machinery writes about itself.
pub const TARGET: &str = "natter::logging";

enum Msg {
    Line(Vec<u8>),
    /// Look at the flags (reopen, close) now.
    Wake,
}

/// What the producers and the writer thread share.
#[derive(Default)]
pub struct Shared {
    /// Lines dropped since the writer last said so.
    unreported: AtomicU64,
    reopen: AtomicBool,
    closing: AtomicBool,
}

/// Where the writer thread puts lines.
pub struct Outputs {
    pub stdout: Option<Box<dyn Write + Send>>,
    pub file: Option<RotatingFile>,
    pub json: bool,
}

/// The producer side: a `MakeWriter` for tracing-subscriber's fmt layer.
#[derive(Clone)]
pub struct Queue {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
}

/// The writer thread's handle: reopen the file, or close down.
pub struct Writer {
    queue: Queue,
    done: std::sync::Mutex<Receiver<()>>,
}

/// Starts the writer thread over `outputs` with room for `capacity` lines.
pub fn start(capacity: usize, outputs: Outputs) -> io::Result<(Queue, Writer)> {
    let (tx, rx) = mpsc::sync_channel(capacity);
    let shared = Arc::new(Shared::default());
    let (done_tx, done) = mpsc::channel();
    let thread_shared = shared.clone();
    std::thread::Builder::new()
        .name("natter-log".into())
        .spawn(move || {
            run(rx, &thread_shared, outputs);
            let _ = done_tx.send(());
        })?;
    let queue = Queue { tx, shared };
    Ok((
        queue.clone(),
        Writer {
            queue,
            done: std::sync::Mutex::new(done),
        },
    ))
}

impl Queue {
    fn push(&self, line: Vec<u8>) {
        match self.tx.try_send(Msg::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                // Counted before the writer can report it, so the log never
                // says more than the counter.
                metrics::counter!("natter_log_dropped_lines_total").increment(1);
                self.shared.unreported.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn wake(&self) {
        // A full queue means the writer is busy and sees the flags soon.
        let _ = self.tx.try_send(Msg::Wake);
    }
}

impl Writer {
    /// Has the file opened again (after an external logrotate).
    pub fn reopen(&self) {
        self.queue.shared.reopen.store(true, Ordering::Relaxed);
        self.queue.wake();
    }

    /// Writes what is queued, then stops; waits at most `wait` (a sink
    /// nobody reads must not hold the process).
    pub fn close(&self, wait: Duration) {
        self.queue.shared.closing.store(true, Ordering::Relaxed);
        self.queue.wake();
        let done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        let _ = done.recv_timeout(wait);
    }
}

/// One formatted line on its way to the queue.
pub struct LineWriter {
    queue: Queue,
    buf: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.queue.push(std::mem::take(&mut self.buf));
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Queue {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            queue: self.clone(),
            buf: Vec::with_capacity(256),
        }
    }
}

fn run(rx: Receiver<Msg>, shared: &Shared, mut out: Outputs) {
    loop {
        let closing = shared.closing.load(Ordering::Relaxed);
        let msg = if closing {
            rx.try_recv().ok()
        } else {
            match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(m) => Some(m),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        };
        if shared.reopen.swap(false, Ordering::Relaxed) {
            if let Some(file) = out.file.as_mut() {
                if file.reopen().is_err() {
                    write_error("file");
                }
            }
        }
        if let Some(Msg::Line(line)) = &msg {
            write_line(&mut out, line);
        }
        let dropped = shared.unreported.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let notice = notice(dropped, out.json);
            write_line(&mut out, notice.as_bytes());
        }
        if closing && msg.is_none() {
            for w in out.stdout.iter_mut() {
                let _ = w.flush();
            }
            return;
        }
    }
}

fn write_line(out: &mut Outputs, line: &[u8]) {
    if let Some(w) = out.stdout.as_mut() {
        if w.write_all(line).and_then(|()| w.flush()).is_err() {
            write_error("stdout");
        }
    }
    if let Some(f) = out.file.as_mut() {
        let now_secs = (natter_runtime::clock::now_ms().max(0) / 1000) as u64;
        if f.write_line(line, now_secs).is_err() {
            write_error("file");
        }
    }
}

/// A sink that refused a line: counted. Not logged, as the log is what failed.
fn write_error(sink: &'static str) {
    metrics::counter!("natter_log_write_errors_total", "sink" => sink).increment(1);
}

/// The line that says lines were dropped, in the log's own format.
fn notice(dropped: u64, json: bool) -> String {
    use tracing_subscriber::fmt::{format::Writer, time::FormatTime};
    let mut ts = String::new();
    let _ = tracing_subscriber::fmt::time::SystemTime.format_time(&mut Writer::new(&mut ts));
    let message = format!("{dropped} log lines dropped: the log queue was full");
    if json {
        let v = serde_json::json!({
            "timestamp": ts,
            "level": "WARN",
            "fields": { "message": message, "dropped": dropped },
            "target": TARGET,
        });
        format!("{v}\n")
    } else {
        format!("{ts}  WARN {TARGET}: {message} dropped={dropped}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::fmt::MakeWriter;

    /// A sink that takes nothing until the test opens its gate.
    struct Gated {
        gate: Receiver<()>,
        open: bool,
        lines: mpsc::Sender<Vec<u8>>,
    }

    impl Write for Gated {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if !self.open {
                let _ = self.gate.recv();
                self.open = true;
            }
            let _ = self.lines.send(b.to_vec());
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_written_or_counted_in_a_notice() {
        let (open, gate) = mpsc::channel();
        let (lines_tx, lines) = mpsc::channel();
        let outputs = Outputs {
            stdout: Some(Box::new(Gated {
                gate,
                open: false,
                lines: lines_tx,
            })),
            file: None,
            json: false,
        };
        let (queue, writer) = start(8, outputs).unwrap();
        let produced = 1000;
        for i in 0..produced {
            writeln!(queue.make_writer(), "line {i}").unwrap();
        }
        open.send(()).unwrap();
        writer.close(Duration::from_secs(10));
        let (mut written, mut dropped) = (0, 0);
        for line in lines.try_iter() {
            let line = String::from_utf8(line).unwrap();
            if let Some(n) = line.split("dropped=").nth(1) {
                dropped += n.trim().parse::<u64>().unwrap();
            } else {
                assert!(line.starts_with("line "), "{line}");
                written += 1;
            }
        }
        // The writer held one line, the queue 8: the rest were dropped.
        assert!(written <= 9, "{written}");
        assert!(dropped > 0);
        assert_eq!(written + dropped, produced);
    }

    #[test]
    fn a_notice_is_a_log_line_in_either_format() {
        let text = notice(7, false);
        assert!(
            text.contains(" WARN natter::logging: 7 log lines dropped"),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(&notice(7, true)).unwrap();
        assert_eq!(json["fields"]["dropped"], 7);
        assert_eq!(json["level"], "WARN");
    }
}
