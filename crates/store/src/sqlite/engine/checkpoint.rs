//! Copies committed WAL frames into the database file on a thread of its
//! own, so the writer thread spends its time on writes. The writer nudges it
//! after each commit; it checkpoints at most a few times a second (passive:
//! it never blocks the writer or readers). The writer keeps SQLite's own
//! automatic checkpoint as a backstop with a higher threshold, in case this
//! thread falls behind.

use natter_runtime::clock::Instant;
use rusqlite::Connection;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::Duration;

/// Least time between two checkpoints.
const PAUSE: Duration = Duration::from_millis(200);

/// WAL pages after which the writer checkpoints by itself (32 MiB at 4 KiB
/// pages), should this thread fall behind.
pub const BACKSTOP_PAGES: u32 = 8192;

pub struct Checkpointer {
    nudge: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub fn spawn(conn: Connection) -> std::io::Result<Self> {
        let (nudge, rx) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("natter-sqlite-checkpoint".into())
            .spawn(move || run(conn, rx))?;
        Ok(Checkpointer {
            nudge: Some(nudge),
            thread: Some(thread),
        })
    }

    /// Says that there are new frames; never blocks.
    pub fn nudge(&self) {
        if let Some(n) = &self.nudge {
            Nudge(n.clone()).nudge();
        }
    }

    /// A handle another thread can nudge with.
    pub fn nudger(&self) -> Option<Nudge> {
        self.nudge.clone().map(Nudge)
    }

    /// Stops the thread after its current checkpoint.
    pub fn stop(&mut self) {
        self.nudge = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Nudges the checkpoint thread from elsewhere.
#[derive(Clone)]
pub struct Nudge(SyncSender<()>);

impl Nudge {
    pub fn nudge(&self) {
        match self.0.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(conn: Connection, rx: Receiver<()>) {
    // Background work: whatever else wants the core goes first.
    let me = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(me), super::os::COPY_NICE) {
        tracing::debug!(error = %e, "cannot lower the checkpoint thread's priority");
    }
    let mut nudged = false;
    loop {
        if !nudged && rx.recv().is_err() {
            return;
        }
        let started = Instant::now();
        let mut short = false;
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        }) {
            Ok((wal_pages, copied)) => {
                metrics::histogram!("natter_store_checkpoint_seconds")
                    .record(started.elapsed().as_secs_f64());
                tracing::trace!(wal_pages, copied, "checkpoint");
                // A reader on an older snapshot keeps the frames after it
                // from being copied: try again after the pause even if no
                // commit nudges (the last burst before a quiet spell would
                // otherwise stay in the WAL until the next write).
                short = copied < wal_pages;
            }
            Err(e) => tracing::warn!(error = %e, "checkpoint failed"),
        }
        // Pause, remembering any nudge, but stop at once when told.
        nudged = short;
        let until = started + PAUSE;
        loop {
            match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                Ok(()) => nudged = true,
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(path: &std::path::Path) -> Connection {
        let conn = Connection::open(path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        conn
    }

    /// A checkpoint a reader cut short is tried again without another
    /// nudge: the last burst before a quiet spell reaches the database file.
    #[tokio::test]
    async fn a_checkpoint_cut_short_by_a_reader_is_tried_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let writer = open(&path);
        writer
            .execute_batch("CREATE TABLE t (b BLOB); INSERT INTO t VALUES (x'00')")
            .unwrap();
        let mut checkpointer = Checkpointer::spawn(open(&path)).unwrap();
        checkpointer.nudge();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let db_len = || std::fs::metadata(&path).unwrap().len();
        let before = db_len();

        // A reader holds a snapshot from before the burst.
        let reader = open(&path);
        reader.execute_batch("BEGIN").unwrap();
        let n: i64 = reader
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
        for _ in 0..100 {
            writer
                .execute("INSERT INTO t VALUES (zeroblob(4000))", [])
                .unwrap();
        }
        checkpointer.nudge();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(db_len(), before, "the reader's snapshot was overwritten");
        // The reader goes; nothing nudges any more.
        reader.execute_batch("COMMIT").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while db_len() < before + 100 * 4000 {
            assert!(
                Instant::now() < deadline,
                "the database file stayed at {} bytes",
                db_len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        checkpointer.stop();
    }
}
