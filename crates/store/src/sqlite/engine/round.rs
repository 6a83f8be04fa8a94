//! The writer thread: takes whatever jobs are queued (up to
//! `store.max_batch`) as one round, applies them in queue order, makes the
//! round durable once, and only then publishes its messages and answers.
//!
//! A round is durable when its log records are fdatasynced (one write, one
//! sync) and, if it opened a database transaction for anything but copying
//! records, that transaction is committed and the WAL synced. The log is
//! appended before the commit, so a failed append rolls the whole round
//! back. The copy thread (`copier.rs`) brings logged records into the
//! database behind; a round that writes the database itself holds the copy
//! gate, and before a write that must see messages it copies the waiting
//! records of the conversations it sees in (`writer::Sees`).
//!
//! **Group commit under load.** A round's sync costs about the same for
//! one write or fifty, and it is most of a write's CPU (the device's
//! notifications, three waits for the disk, the switches around them): at
//! 10,000 msg/s, rounds that start as soon as the last one ended carry ~5.5
//! writes each, ~1,800 syncs a second. When writes arrive fast enough that
//! at least one more is expected within `store.commit_delay_us` (300 µs;
//! the rate is averaged over the last ~10 ms), a round lets its oldest
//! write wait that long from its queueing, then takes what came meanwhile
//! and syncs: ~10.5 writes a round and 13-17 % less CPU per message at
//! 10,000 msg/s, at the same p50 (docs/BENCHMARKS.md). At 1,000 msg/s
//! nothing waits.

use super::cache::ConvCache;
use super::checkpoint::Checkpointer;
use super::copier::{Copier, Shared};
use super::faults::io_fault;
use super::keys::NewKeys;
use super::log::{self, Log};
use super::pending::Pending;
use super::tx::{Stage, Tx};
use super::writer::{Health, Job, Route, Sees};
use crate::{CommitFeedSender, Committed, Result, StoreError};
use natter_runtime::clock::Instant;
use rusqlite::Connection;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How far back the arrival rate looks: the time constant of its average.
const RATE_MEMORY: Duration = Duration::from_millis(10);

pub(crate) struct Writer {
    conn: Connection,
    /// The database file (its WAL is synced beside it).
    db: PathBuf,
    convs: ConvCache,
    stage: Stage,
    log: Log,
    /// `synchronous = "full"`: sync before answering.
    sync: bool,
    max_batch: usize,
    /// `store.commit_delay_us`: see the module's header.
    commit_delay: Duration,
    /// Writes arriving per second, averaged over the last ~10 ms, and when
    /// the last round started: a round gathers only when the delay is
    /// likely to bring company.
    arrivals: f64,
    last_start: Option<Instant>,
    feed: CommitFeedSender,
    checkpointer: Checkpointer,
    health: Arc<Health>,
    shared: Arc<Shared>,
    /// The copy thread, until the writer stops it; its connection until then.
    copier: Option<Copier>,
    publish: Vec<Committed>,
}

/// What a round showed of the storage.
#[derive(Default)]
struct Seen {
    /// The first storage fault a write hit.
    fault: Option<StoreError>,
    /// Something reached the disk.
    wrote: bool,
}

/// How a round ended.
enum Outcome {
    /// Durable; answer as each job said.
    Done,
    /// Nothing of it happened.
    RolledBack(StoreError),
    /// Committed, but the sync after it failed: nothing is undone (a caller
    /// that retries finds its write), but nobody is told it is durable.
    NotSynced(StoreError),
}

/// How the writer starts.
pub(crate) struct Start {
    pub conn: Connection,
    /// The waiting records and the copy gate (with the copy connection),
    /// shared with the copy thread and the readers.
    pub shared: Arc<Shared>,
    pub db: PathBuf,
    pub log: Log,
    pub next_id: u64,
    pub next_conversation: u64,
    pub sync: bool,
    pub max_batch: usize,
    pub commit_delay: Duration,
    pub feed: CommitFeedSender,
    pub checkpointer: Checkpointer,
    pub health: Arc<Health>,
}

impl Writer {
    pub(crate) fn new(s: Start) -> Writer {
        let shared = s.shared;
        let copier = Copier::new(s.db.clone(), s.log.segment(), shared.clone());
        Writer {
            conn: s.conn,
            db: s.db,
            convs: ConvCache::default(),
            stage: Stage {
                records: Vec::new(),
                segment: s.log.segment(),
                next_id: s.next_id,
                next_conversation: s.next_conversation,
                keys: NewKeys::new(s.next_conversation),
                open: false,
                durable: false,
            },
            log: s.log,
            sync: s.sync,
            max_batch: s.max_batch,
            commit_delay: s.commit_delay,
            arrivals: 0.0,
            last_start: None,
            feed: s.feed,
            checkpointer: s.checkpointer,
            health: s.health,
            shared,
            copier: Some(copier),
            publish: Vec::new(),
        }
    }

    pub(crate) fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let copier = self.copier.take().and_then(|c| {
            std::thread::Builder::new()
                .name("natter-sqlite-copy".into())
                .spawn(move || c.run())
                .map_err(|e| tracing::error!(error = %e, "cannot start the copy thread"))
                .ok()
        });
        let mut batch: Vec<Job> = Vec::with_capacity(self.max_batch);
        let mut closing = false;
        while !closing {
            let Some(first) = rx.blocking_recv() else {
                break;
            };
            batch.push(first);
            self.take_queued(&mut rx, &mut batch);
            self.count_arrivals(batch.len());
            if self.gathers(&batch) {
                // The queue is busy: let its oldest write wait out the
                // delay, then take what came meanwhile (see the header).
                // A short, bounded pause on the writer's own thread, below
                // tokio's 1 ms timer granularity.
                let oldest = batch.iter().filter_map(|j| j.queued_at()).min();
                let waited = oldest.map(|t| Instant::now().saturating_duration_since(t));
                if let Some(left) = waited.and_then(|w| self.commit_delay.checked_sub(w)) {
                    #[allow(clippy::disallowed_methods)]
                    std::thread::sleep(left);
                    self.take_queued(&mut rx, &mut batch);
                }
            }
            closing = batch.iter().any(|j| j.is_close());
            metrics::gauge!("natter_store_queue_depth").set(rx.len() as f64);
            if self.health.refusing.load(Ordering::Relaxed) {
                for job in batch.drain(..) {
                    let refused = if job.is_close() {
                        Ok(())
                    } else {
                        Err(StoreError::Unavailable)
                    };
                    job.finish(refused);
                }
                continue;
            }
            let started = Instant::now();
            if let Some(oldest) = batch.iter().filter_map(|j| j.queued_at()).min() {
                metrics::histogram!("natter_store_wait_seconds")
                    .record(started.saturating_duration_since(oldest).as_secs_f64());
            }
            let size = batch.len();
            let outcome = self.round(&mut batch);
            metrics::histogram!("natter_store_batch_size").record(size as f64);
            metrics::histogram!("natter_store_commit_seconds")
                .record(started.elapsed().as_secs_f64());
            let answer = match outcome {
                Outcome::Done => Ok(()),
                Outcome::RolledBack(e) | Outcome::NotSynced(e) => Err(e),
            };
            for job in batch.drain(..) {
                job.finish(answer.clone());
            }
        }
        rx.close();
        // Anything that raced the close request is refused, not dropped silently.
        while let Ok(job) = rx.try_recv() {
            job.finish(Err(StoreError::Unavailable));
        }
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake.notify_all();
        if let Some(t) = copier {
            let _ = t.join();
        }
        self.close();
    }

    /// Adds to `batch` the jobs already queued, up to `store.max_batch`.
    fn take_queued(&self, rx: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>) {
        while batch.len() < self.max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
    }

    /// Folds the writes a round found (those that came since the last one
    /// started) into the arrival rate, weighted by the time they took:
    /// what came within the last ~10 ms counts most, so after a burst ends
    /// the first lone write finds the rate already low and is answered at
    /// once.
    fn count_arrivals(&mut self, found: usize) {
        let now = Instant::now();
        if let Some(last) = self.last_start.replace(now) {
            self.arrivals = folded_rate(self.arrivals, found, now.saturating_duration_since(last));
        }
    }

    /// Whether the round waits for company before it syncs: only when at
    /// least one more write is expected within the delay (at 1,000 writes
    /// a second and 300 µs, a lone write is answered at once), it has
    /// room, and it is not the last.
    fn gathers(&self, batch: &[Job]) -> bool {
        expects_company(self.arrivals, self.commit_delay)
            && batch.len() < self.max_batch
            && !batch.iter().any(|j| j.is_close())
    }

    /// At the end: everything waiting goes into the database, which is
    /// checkpointed and synced; then the log has nothing left to hold.
    fn close(&mut self) {
        let shared = self.shared.clone();
        // No read copies anything meanwhile.
        let _gate = shared.gate();
        let mut pending = shared.pending();
        let copied = (|| -> Result<()> {
            let chunk = pending.take_all();
            if chunk.len() > 0 {
                self.conn.execute_batch("BEGIN IMMEDIATE")?;
                chunk.write(&self.conn)?;
                self.conn.execute_batch("COMMIT")?;
            }
            Ok(())
        })();
        match copied {
            Ok(()) => pending.copied_committed(),
            Err(e) => {
                tracing::error!(error = %e, "cannot copy the message log into the database at the close; the next start will");
                if !self.conn.is_autocommit() {
                    let _ = self.conn.execute_batch("ROLLBACK");
                }
                pending.copied_rolled_back();
            }
        }
        // The checkpoint thread stops once nobody can nudge it.
        *shared.nudge.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.checkpointer.stop();
        if let Err(e) = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
            tracing::warn!(error = %e, "final checkpoint failed");
        }
        if pending.is_empty() {
            // Everything is in the (checkpointed, synced) database file.
            let all = log::all_segments(self.log.dir()).unwrap_or_default();
            if let Err(e) = sync_file(&self.db).and_then(|()| log::delete(self.log.dir(), &all)) {
                tracing::warn!(error = %e, "cannot remove the message log after the final checkpoint");
            }
        }
    }

    /// Applies a round and makes it durable; on failure undoes all of it.
    fn round(&mut self, batch: &mut [Job]) -> Outcome {
        let shared = self.shared.clone();
        // A round that writes the database holds the copy gate, so no copy
        // is half done meanwhile and its transaction does not wait on the
        // copy thread's; one that writes messages copies the waiting
        // records it sees first (`apply`). A round that only logs (new messages, even
        // the first between two users, and cursors) takes no gate.
        let gate = batch
            .iter()
            .any(|j| j.route() != Route::Log)
            .then(|| shared.gate());
        let mut pending = shared.pending();
        let mark = self.convs.seqs.mark();
        self.stage.records.clear();
        self.stage.segment = self.log.segment();
        let mut seen = Seen::default();
        // A panic in a write fails this round alone; its callers hear an
        // error and the writer carries on with the next.
        let applied = natter_runtime::panics::catch("store_writer", || {
            self.apply(batch, &mut pending, &mut seen)
        })
        .unwrap_or_else(|| Err(StoreError::bug("the write failed inside the store")));
        // The reads are done: the snapshot is let go before the sync.
        let applied = applied.and_then(|()| self.stage.end_read(&self.conn));
        let outcome = match applied {
            Ok(()) => self.make_durable(&mut seen),
            Err(e) => Outcome::RolledBack(e),
        };
        self.shared
            .segment
            .store(self.log.segment(), Ordering::Release);
        // What is being copied is settled by whoever holds the gate: a
        // round without it copied nothing, and must not settle a copy in
        // flight on another thread.
        let copied = gate.is_some();
        match &outcome {
            Outcome::Done => {
                if copied {
                    pending.copied_committed();
                }
                pending.round_done();
                self.convs.seqs.settle(|id| pending.waiting(id));
                // Published before the callers hear back, in commit order.
                self.publish.drain(..).for_each(|c| self.feed.publish(c));
            }
            Outcome::NotSynced(_) => {
                if copied {
                    pending.copied_committed();
                }
                pending.round_done();
                self.convs.seqs.settle(|id| pending.waiting(id));
                self.publish.clear();
            }
            Outcome::RolledBack(e) => {
                tracing::error!(error = %e, size = batch.len(), "store round failed");
                if !self.conn.is_autocommit() {
                    let _ = self.conn.execute_batch("ROLLBACK");
                }
                if copied {
                    pending.copied_rolled_back();
                }
                pending.round_failed();
                self.convs.seqs.undo(mark);
                self.convs.clear(|id| pending.waiting(id));
                self.publish.clear();
            }
        }
        if pending.due(Instant::now()) {
            shared.wake.notify_one();
        }
        drop(pending);
        self.stage.open = false;
        self.stage.durable = false;
        match (&outcome, seen.fault) {
            (Outcome::Done, Some(f)) => self.health.set_fault(Some(f)),
            (Outcome::Done, None) if seen.wrote => self.health.set_fault(None),
            (Outcome::Done, None) => {}
            (Outcome::RolledBack(e) | Outcome::NotSynced(e), _) => {
                if e.fault().is_some() {
                    self.health.set_fault(Some(e.clone()));
                }
            }
        }
        outcome
    }

    fn apply(&mut self, batch: &mut [Job], pending: &mut Pending, seen: &mut Seen) -> Result<()> {
        for job in batch.iter_mut() {
            let route = job.route();
            if route != Route::Log {
                self.open()?;
                // The database first sees every message before this job
                // that the job may read or follow, and no more: every send
                // waits for this copy.
                match (route, job.sees()) {
                    (Route::Flush, _) | (_, Sees::All) => pending.take_all().write(&self.conn)?,
                    (_, Sees::Conversation(id)) => {
                        pending.take_these(&[id], usize::MAX).0.write(&self.conn)?
                    }
                    (_, Sees::Nothing) => {}
                }
            }
            if route == Route::Flush {
                continue;
            }
            if route == Route::Log {
                self.stage.read(&self.conn)?;
            }
            let isolated = job.isolated();
            if isolated {
                // The savepoint's write sees, and on rollback returns to,
                // the true last seqs.
                self.convs.seqs.flush(&self.conn)?;
                self.conn.prepare_cached("SAVEPOINT job")?.execute([])?;
                self.convs.begin_write();
                self.stage.durable = true;
            }
            let mark = self.publish.len();
            let before = self.footprint();
            let applied = {
                let mut tx = Tx::new(
                    &self.conn,
                    &mut self.convs,
                    &mut self.stage,
                    pending,
                    &mut self.publish,
                );
                job.apply(&mut tx)
            };
            match &applied {
                Ok(()) => seen.wrote |= self.footprint() != before,
                Err(e) if e.fault().is_some() && seen.fault.is_none() => {
                    seen.fault = Some(e.clone())
                }
                Err(_) => {}
            }
            if isolated {
                if applied.is_err() {
                    self.conn.prepare_cached("ROLLBACK TO job")?.execute([])?;
                    self.convs.undo_write();
                }
                self.conn.prepare_cached("RELEASE job")?.execute([])?;
                self.convs.end_write();
            } else if let Err(e) = &applied {
                if self.footprint() != before {
                    // A storage fault says so to every caller in the round;
                    // anything else here is a bug.
                    return Err(match e.fault() {
                        Some(_) => e.clone(),
                        None => StoreError::bug("a write failed after changing rows, taking a seq or staging a record; its round is rolled back"),
                    });
                }
            }
            if applied.is_err() {
                self.publish.truncate(mark);
            }
        }
        Ok(())
    }

    /// What a job has done so far: rows changed, seqs taken, bytes staged.
    fn footprint(&self) -> (u64, u64, usize) {
        (
            self.conn.total_changes(),
            self.convs.seqs.taken(),
            self.stage.records.len(),
        )
    }

    fn open(&mut self) -> Result<()> {
        self.stage.write(&self.conn)
    }

    /// Appends the round's records to the log, then commits its
    /// transaction (and syncs the WAL if it holds more than copies).
    fn make_durable(&mut self, seen: &mut Seen) -> Outcome {
        if !self.stage.records.is_empty() {
            if let Err(e) = self.log.append(&self.stage.records) {
                return Outcome::RolledBack(io_fault(e));
            }
            seen.wrote = true;
        }
        if !self.stage.open {
            return Outcome::Done;
        }
        let committed = self
            .convs
            .seqs
            .flush(&self.conn)
            .and_then(|()| Ok(self.conn.execute_batch("COMMIT")?));
        if let Err(e) = committed {
            return Outcome::RolledBack(e);
        }
        self.checkpointer.nudge();
        if self.stage.durable && self.sync {
            if let Err(e) = super::os::sync_wal(&self.db) {
                return Outcome::NotSynced(io_fault(e));
            }
        }
        Outcome::Done
    }
}

/// The arrival rate after `found` writes came in `since`: the last rate
/// and the new one weighted by how long each covers, the old forgotten with
/// a time constant of [`RATE_MEMORY`].
fn folded_rate(rate: f64, found: usize, since: Duration) -> f64 {
    let secs = since.as_secs_f64().max(1e-6);
    let weight = 1.0 - (-secs / RATE_MEMORY.as_secs_f64()).exp();
    rate + weight * (found as f64 / secs - rate)
}

/// Whether, at `rate` writes a second, at least one more is expected
/// within `delay`.
fn expects_company(rate: f64, delay: Duration) -> bool {
    rate * delay.as_secs_f64() >= 1.0
}

fn sync_file(path: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a round with this rate waits 300 µs for company.
    fn gathers(rate: f64) -> bool {
        expects_company(rate, Duration::from_micros(300))
    }

    #[test]
    fn the_rate_follows_a_steady_load_and_forgets_a_burst_at_once() {
        // 10,000 writes a second in rounds of 10 a millisecond apart.
        let mut rate = 0.0;
        for _ in 0..200 {
            rate = folded_rate(rate, 10, Duration::from_millis(1));
        }
        assert!((rate - 10_000.0).abs() < 1.0, "{rate}");
        assert!(gathers(rate));
        // The burst ends: the next write comes 50 ms later, alone, and is
        // answered at once rather than waiting for writes that do not come.
        let after = folded_rate(rate, 1, Duration::from_millis(50));
        assert!(!gathers(after), "{after}");
        // 1,000 writes a second, one per round, never gather.
        let mut slow = rate;
        for _ in 0..100 {
            slow = folded_rate(slow, 1, Duration::from_millis(1));
        }
        assert!(!gathers(slow), "{slow}");
        // A round that found many after a short gap counts them at once.
        assert!(gathers(folded_rate(0.0, 40, Duration::from_millis(2))));
    }
}
