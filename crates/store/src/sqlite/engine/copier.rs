//! The copy thread: brings records that wait in the message log into the
//! database, a chunk of the longest-waiting ones at a time, on a connection
//! of its own. Copying is most of the database's work; on its own thread it
//! never holds up a write round, and it runs while the writer waits for its
//! log sync. Once every record of a log segment is in the database and the
//! database is synced, the segment is deleted.
//!
//! The writer, this thread and the readers share [`Shared`]: the waiting
//! records (locked briefly: to take a chunk, and to settle it after its
//! commit) and the gate, which a copy holds from taking its chunk until it
//! is settled, so that the writer, holding it, can copy everything itself
//! inside a transaction of its own. The gate holds the copy connection: a
//! read that must see some conversations copies their waiting records
//! itself (`Shared::copy_for_read`), at the reader's priority, without
//! holding up the writer's rounds.

use super::checkpoint::Nudge;
use super::log;
use super::pending::{Chunk, Pending, COPY_HIGH, COPY_HIGH_BYTES};
use super::writer::Health;
use crate::{ConversationId, Result, StoreError};
use natter_runtime::clock::Instant;
use rusqlite::Connection;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Records copied per transaction (whole conversations, so at least one
/// conversation's backlog): a round that needs the database waits for the
/// chunk in hand, so it stays short. While the copy's commits checkpointed
/// inside (see `wal_autocheckpoint` in `SqliteStore::open`), 1,024 records
/// took 30-80 ms a chunk and the 1:1 p99 was 22-27 ms (64: 7-13 ms). Without
/// that, 256 records cost the copy thread ~15 % less CPU than 64 under
/// peerbench's 1:1 load (fewer commits, each with its walk of the page
/// cache) and the same p99 (docs/BENCHMARKS.md).
const CHUNK: usize = 256;
/// After a failed copy, the next try waits this long.
const RETRY: Duration = Duration::from_millis(500);
/// Past this many waiting records, or four times [`COPY_HIGH_BYTES`] of
/// them (and copying failing), staged writes are refused until the database
/// takes them again.
pub(crate) const BEHIND: usize = 4 * COPY_HIGH;
/// How often an idle copier looks for segments it may delete.
const IDLE: Duration = Duration::from_secs(1);

pub(crate) struct Shared {
    pub pending: Mutex<Pending>,
    /// Rung when records come or the thread must stop.
    pub wake: Condvar,
    /// Held by a copy from taking its chunk until it is settled; holds the
    /// copy connection.
    pub gate: Mutex<Connection>,
    pub stop: AtomicBool,
    /// The segment the writer appends to now.
    pub segment: AtomicU64,
    health: Arc<Health>,
    /// Tells the checkpoint thread of a copy's new WAL frames; let go (so
    /// that the thread can stop) when the writer closes.
    pub nudge: Mutex<Option<Nudge>>,
}

impl Shared {
    pub fn new(
        pending: Pending,
        segment: u64,
        copy_conn: Connection,
        health: Arc<Health>,
        nudge: Option<Nudge>,
    ) -> Shared {
        Shared {
            pending: Mutex::new(pending),
            wake: Condvar::new(),
            gate: Mutex::new(copy_conn),
            health,
            stop: AtomicBool::new(false),
            segment: AtomicU64::new(segment),
            nudge: Mutex::new(nudge),
        }
    }

    pub fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn gate(&self) -> MutexGuard<'_, Connection> {
        self.gate.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Copies `chunk`, taken under the gate `conn` comes from, in one
    /// transaction and settles it: committed, it is the database's; failed,
    /// it waits again (and past [`BEHIND`] waiting records, staged writes
    /// are refused until a copy succeeds).
    pub fn copy_chunk(&self, conn: &Connection, chunk: &Chunk) -> Result<()> {
        let written = (|| -> Result<()> {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            chunk.write(conn)?;
            conn.execute_batch("COMMIT")?;
            Ok(())
        })();
        let mut p = self.pending();
        match &written {
            Ok(()) => {
                p.copied_committed();
                if p.refuse.take().is_some() {
                    self.health.set_fault(None);
                }
                if let Some(n) = &*self.nudge.lock().unwrap_or_else(|p| p.into_inner()) {
                    n.nudge();
                }
            }
            Err(e) => {
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                p.copied_rolled_back();
                if e.fault().is_some() {
                    self.health.set_fault(Some(e.clone()));
                }
                if p.len() >= BEHIND || p.bytes() >= 4 * COPY_HIGH_BYTES {
                    p.refuse = Some(match e.fault() {
                        Some(_) => e.clone(),
                        None => StoreError::Unavailable,
                    });
                }
            }
        }
        metrics::gauge!("natter_store_log_waiting").set(p.len() as f64);
        written
    }

    /// For a read that must see every write answered before it in the
    /// conversations `ids` (all of them for `None`): copies their waiting
    /// records into the database, a chunk at a time so that a round which
    /// needs the gate waits for one chunk at most. The writer's rounds that
    /// only log go on meanwhile.
    pub fn copy_for_read(&self, ids: Option<&[ConversationId]>) -> Result<()> {
        if self.stop.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable);
        }
        let all;
        let mut ids = match ids {
            // Nothing of theirs waits, nor is being copied: no gate to wait
            // for.
            Some(ids) if !self.pending().any_waiting(ids) => return Ok(()),
            Some(ids) => ids,
            None => {
                all = self.pending().waiting_ids();
                &all[..]
            }
        };
        while !ids.is_empty() {
            let conn = self.gate();
            let (chunk, covered) = self.pending().take_these(ids, READ_CHUNK);
            ids = &ids[covered..];
            if chunk.len() > 0 {
                self.copy_chunk(&conn, &chunk)?;
            }
        }
        Ok(())
    }
}

/// Records a read copies per transaction (whole conversations).
const READ_CHUNK: usize = 256;

pub(crate) struct Copier {
    pub db: PathBuf,
    pub log_dir: PathBuf,
    /// The oldest log segment still on disk.
    pub first_segment: u64,
    pub shared: Arc<Shared>,
    /// No copy before this (the last one failed).
    retry_at: Option<Instant>,
}

impl Copier {
    pub fn new(db: PathBuf, first_segment: u64, shared: Arc<Shared>) -> Copier {
        Copier {
            log_dir: log::dir_of(&db),
            db,
            first_segment,
            shared,
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
        let conn = shared.gate();
        let chunk = shared.pending().take_oldest(CHUNK);
        if chunk.len() == 0 {
            return;
        }
        let started = Instant::now();
        match shared.copy_chunk(&conn, &chunk) {
            Ok(()) => {
                metrics::histogram!("natter_store_copy_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::histogram!("natter_store_copy_size").record(chunk.len() as f64);
                self.retry_at = None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "copying log records into the database failed; retrying");
                self.retry_at = Some(Instant::now() + RETRY);
            }
        }
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
