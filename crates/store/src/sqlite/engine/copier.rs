//! The copy thread: brings records that wait in the message log into the
//! database, a chunk of the longest-waiting ones at a time, on a connection
//! of its own. Copying is most of the database's work; on its own thread it
//! never holds up a write round, and it runs while the writer waits for its
//! log sync. Once every record of a log segment is in the database and the
//! database is synced, the segment is deleted.
//!
//! The writer and this thread share [`Shared`]: the waiting records (locked
//! briefly: to take a chunk, and to settle it after its commit) and the
//! gate, which a copy holds from taking its chunk until it is settled, so
//! that the writer, holding it, can copy everything itself inside a
//! transaction of its own.

use super::checkpoint::Nudge;
use super::log;
use super::pending::{Pending, COPY_HIGH};
use super::writer::Health;
use crate::{Result, StoreError};
use natter_runtime::clock::Instant;
use rusqlite::Connection;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Records copied per transaction (whole conversations, so at least one
/// conversation's backlog): a round that needs the database waits for the
/// chunk in hand, so it stays short. Each chunk's commit also holds up the
/// log's next sync about as long as the chunk took: at 1,024 records
/// (30-80 ms a chunk at this thread's priority) the 1:1 p99 was 22-27 ms,
/// at 256 9-29 ms, at 64 7-13 ms, for the same CPU (docs/BENCHMARKS.md).
const CHUNK: usize = 64;
/// After a failed copy, the next try waits this long.
const RETRY: Duration = Duration::from_millis(500);
/// Past this many waiting records (and copying failing), staged writes are
/// refused until the database takes them again.
pub(crate) const BEHIND: usize = 4 * COPY_HIGH;
/// How often an idle copier looks for segments it may delete.
const IDLE: Duration = Duration::from_secs(1);

pub(crate) struct Shared {
    pub pending: Mutex<Pending>,
    /// Rung when records come or the thread must stop.
    pub wake: Condvar,
    /// Held by a copy from taking its chunk until it is settled.
    pub gate: Mutex<()>,
    pub stop: AtomicBool,
    /// The segment the writer appends to now.
    pub segment: AtomicU64,
}

impl Shared {
    pub fn new(pending: Pending, segment: u64) -> Shared {
        Shared {
            pending: Mutex::new(pending),
            wake: Condvar::new(),
            gate: Mutex::new(()),
            stop: AtomicBool::new(false),
            segment: AtomicU64::new(segment),
        }
    }

    pub fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn gate(&self) -> MutexGuard<'_, ()> {
        self.gate.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(crate) struct Copier {
    pub conn: Connection,
    pub db: PathBuf,
    pub log_dir: PathBuf,
    /// The oldest log segment still on disk.
    pub first_segment: u64,
    pub shared: Arc<Shared>,
    pub health: Arc<Health>,
    pub nudge: Option<Nudge>,
    /// No copy before this (the last one failed).
    retry_at: Option<Instant>,
}

impl Copier {
    pub fn new(
        conn: Connection,
        db: PathBuf,
        first_segment: u64,
        shared: Arc<Shared>,
        health: Arc<Health>,
        nudge: Option<Nudge>,
    ) -> Copier {
        Copier {
            conn,
            log_dir: log::dir_of(&db),
            db,
            first_segment,
            shared,
            health,
            nudge,
            retry_at: None,
        }
    }

    pub fn run(mut self) {
        // Copying is background work: whenever the writer or a connection
        // has work on the same core, it goes first.
        let me = rustix::thread::gettid();
        if let Err(e) = rustix::process::setpriority_process(Some(me), super::os::COPY_NICE) {
            tracing::debug!(error = %e, "cannot lower the copy thread's priority");
        }
        while self.wait() {
            self.copy();
            self.drop_segments();
        }
    }

    /// Waits until a copy is due; false once told to stop.
    fn wait(&mut self) -> bool {
        let shared = self.shared.clone();
        let mut p = shared.pending();
        loop {
            if shared.stop.load(Ordering::Acquire) {
                return false;
            }
            let now = Instant::now();
            let retry = self.retry_at.filter(|t| *t > now);
            if retry.is_none() && p.due(now) {
                return true;
            }
            let until = match (retry, p.next_due()) {
                (Some(r), Some(d)) => r.max(d),
                (Some(r), None) => r,
                (None, Some(d)) => d,
                (None, None) => now + IDLE,
            };
            let wait = until.saturating_duration_since(now).min(IDLE);
            let (guard, timeout) = shared
                .wake
                .wait_timeout(p, wait)
                .unwrap_or_else(|p| p.into_inner());
            p = guard;
            if timeout.timed_out() && wait == IDLE {
                // Idle: the writer may have copied everything itself.
                drop(p);
                self.drop_segments();
                p = shared.pending();
            }
        }
    }

    /// Copies one chunk of the longest-waiting records.
    fn copy(&mut self) {
        let shared = self.shared.clone();
        let _gate = shared.gate();
        let chunk = shared.pending().take_oldest(CHUNK);
        if chunk.len() == 0 {
            return;
        }
        let started = Instant::now();
        let written = (|| -> Result<()> {
            self.conn.execute_batch("BEGIN IMMEDIATE")?;
            chunk.write(&self.conn)?;
            self.conn.execute_batch("COMMIT")?;
            Ok(())
        })();
        let mut p = shared.pending();
        match written {
            Ok(()) => {
                metrics::histogram!("natter_store_copy_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::histogram!("natter_store_copy_size").record(chunk.len() as f64);
                p.copied_committed();
                self.retry_at = None;
                if p.refuse.take().is_some() {
                    self.health.set_fault(None);
                }
                if let Some(n) = &self.nudge {
                    n.nudge();
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "copying log records into the database failed; retrying");
                if !self.conn.is_autocommit() {
                    let _ = self.conn.execute_batch("ROLLBACK");
                }
                p.copied_rolled_back();
                self.retry_at = Some(Instant::now() + RETRY);
                if e.fault().is_some() {
                    self.health.set_fault(Some(e.clone()));
                }
                if p.len() >= BEHIND {
                    p.refuse = Some(match e.fault() {
                        Some(_) => e,
                        None => StoreError::Unavailable,
                    });
                }
            }
        }
        metrics::gauge!("natter_store_log_waiting").set(p.len() as f64);
    }

    /// Deletes the log segments whose records are all in the database, once
    /// the database is synced.
    fn drop_segments(&mut self) {
        let needed = {
            let p = self.shared.pending();
            p.oldest_segment()
                .unwrap_or_else(|| self.shared.segment.load(Ordering::Acquire))
        };
        if needed <= self.first_segment {
            return;
        }
        let old: Vec<u64> = (self.first_segment..needed).collect();
        match super::os::sync_wal(&self.db).and_then(|()| log::delete(&self.log_dir, &old)) {
            Ok(()) => self.first_segment = needed,
            Err(e) => tracing::warn!(error = %e, "cannot let go of old message log segments yet"),
        }
    }
}
