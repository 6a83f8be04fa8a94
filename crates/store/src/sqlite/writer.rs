//! The writer thread: takes queued writes, applies as many as are waiting in
//! one transaction, commits once, and only then answers each caller. One
//! write's failure never undoes the others: most writes run in their own
//! savepoint; a message append, the hot path, checks everything before it
//! writes anything and so needs none (if it fails after writing, the whole
//! transaction is rolled back and every caller in it is told).

use super::checkpoint::Checkpointer;
use super::convs::ConvCache;
use super::messages;
use crate::{Appended, CommitFeedSender, Committed, NewMessage, Result, StoreError};
use natter_runtime::clock::Instant;
use rusqlite::Connection;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// What the writer tells the rest of the store about its health.
#[derive(Default)]
pub struct Health {
    /// Set by `stop_writes`: refuse everything still queued.
    pub refusing: AtomicBool,
    /// The last storage fault, until a transaction with writes commits.
    pub fault: Mutex<Option<StoreError>>,
}

impl Health {
    pub fn fault(&self) -> Option<StoreError> {
        self.fault.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_fault(&self, f: Option<StoreError>) {
        *self.fault.lock().unwrap_or_else(|p| p.into_inner()) = f;
    }
}

pub type Job = Box<dyn Work>;

/// What a write sees: the connection inside the open transaction, the
/// conversation cache, and the messages to publish once the commit is done.
pub struct Tx<'a> {
    pub conn: &'a Connection,
    pub convs: &'a mut ConvCache,
    publish: &'a mut Vec<Committed>,
}

impl Tx<'_> {
    /// Queues a newly stored message for the commit feed. It is published
    /// after the commit, in order, and dropped if this write rolls back.
    pub fn publish(&mut self, committed: Committed) {
        self.publish.push(committed);
    }
}

/// One queued write.
pub trait Work: Send {
    /// Applies the write inside the open transaction; an error means it
    /// failed and its savepoint must be rolled back.
    fn apply(&mut self, tx: &mut Tx<'_>) -> Result<()>;
    /// Answers the caller once the transaction's fate is known.
    fn finish(self: Box<Self>, commit: Result<()>);
    /// True for the job that asks the writer to stop.
    fn is_close(&self) -> bool {
        false
    }
    /// False for a write that, when it fails, has written nothing, so it
    /// needs no savepoint to be undone.
    fn isolated(&self) -> bool {
        true
    }
}

/// A write whose result goes straight back to the caller.
pub struct WriteJob<F, T> {
    f: Option<F>,
    out: Option<Result<T>>,
    reply: Option<oneshot::Sender<Result<T>>>,
}

impl<F, T> WriteJob<F, T> {
    pub fn new(f: F, reply: oneshot::Sender<Result<T>>) -> Self {
        WriteJob {
            f: Some(f),
            out: None,
            reply: Some(reply),
        }
    }
}

impl<F, T> Work for WriteJob<F, T>
where
    F: FnOnce(&mut Tx<'_>) -> Result<T> + Send,
    T: Send,
{
    fn apply(&mut self, tx: &mut Tx<'_>) -> Result<()> {
        let out = match self.f.take() {
            Some(f) => f(tx),
            None => Err(StoreError::bug("write applied twice")),
        };
        let r = out.as_ref().map(|_| ()).map_err(Clone::clone);
        self.out = Some(out);
        r
    }

    fn finish(mut self: Box<Self>, commit: Result<()>) {
        let out = match (commit, self.out.take()) {
            (Ok(()), Some(out)) => out,
            (Err(e), _) => Err(e),
            (Ok(()), None) => Err(StoreError::bug("write never applied")),
        };
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(out);
        }
    }
}

/// A message append: the hot path, so it has its own job type rather than a
/// boxed closure. The new message is published on the commit feed.
pub struct AppendJob {
    new: NewMessage,
    out: Option<Result<Appended>>,
    reply: Option<oneshot::Sender<Result<Appended>>>,
}

impl AppendJob {
    pub fn new(new: NewMessage, reply: oneshot::Sender<Result<Appended>>) -> Self {
        AppendJob {
            new,
            out: None,
            reply: Some(reply),
        }
    }
}

impl Work for AppendJob {
    fn apply(&mut self, tx: &mut Tx<'_>) -> Result<()> {
        let out = messages::append(tx, &self.new).map(|o| {
            let message = Arc::new(o.message);
            if let Some(members) = o.members {
                tx.publish(Committed {
                    message: message.clone(),
                    members,
                    origin: self.new.origin,
                });
            }
            Appended {
                message,
                duplicate: o.duplicate,
            }
        });
        let r = out.as_ref().map(|_| ()).map_err(Clone::clone);
        self.out = Some(out);
        r
    }

    fn isolated(&self) -> bool {
        false
    }

    fn finish(mut self: Box<Self>, commit: Result<()>) {
        let out = match (commit, self.out.take()) {
            (Ok(()), Some(Ok(appended))) => Ok(appended),
            (Ok(()), Some(Err(e))) | (Err(e), _) => Err(e),
            (Ok(()), None) => Err(StoreError::bug("append never applied")),
        };
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(out);
        }
    }
}

/// Asks the writer to finish what is queued before it and stop.
pub struct CloseJob(pub Option<oneshot::Sender<()>>);

impl Work for CloseJob {
    fn apply(&mut self, _tx: &mut Tx<'_>) -> Result<()> {
        Ok(())
    }
    fn finish(mut self: Box<Self>, _commit: Result<()>) {
        if let Some(reply) = self.0.take() {
            let _ = reply.send(());
        }
    }
    fn is_close(&self) -> bool {
        true
    }
}

pub fn run(
    conn: Connection,
    mut rx: mpsc::Receiver<Job>,
    max_batch: usize,
    feed: CommitFeedSender,
    mut checkpointer: Checkpointer,
    health: Arc<Health>,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(max_batch);
    let mut convs = ConvCache::default();
    let mut publish = Vec::new();
    let mut closing = false;
    while !closing {
        let Some(first) = rx.blocking_recv() else {
            break;
        };
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        closing = batch.iter().any(|j| j.is_close());
        metrics::gauge!("natter_store_queue_depth").set(rx.len() as f64);
        if health.refusing.load(Ordering::Relaxed) {
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
        let size = batch.len();
        let mut seen = Seen::default();
        // A panic in a write rolls back this batch alone; its callers hear an
        // error and the writer carries on with the next.
        let commit = natter_runtime::panics::catch("store_writer", || {
            apply_batch(&conn, &mut convs, &mut publish, &mut batch, &mut seen)
        })
        .unwrap_or_else(|| {
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            Err(StoreError::bug("the write failed inside the store"))
        });
        match &commit {
            // Published before the callers hear back, in commit order.
            Ok(()) => {
                publish.drain(..).for_each(|c| feed.publish(c));
                checkpointer.nudge();
                // A write refused by the storage keeps the node unhealthy
                // even when its neighbours committed; only a committed
                // write shows the storage works again.
                match seen.fault.take() {
                    Some(f) => health.set_fault(Some(f)),
                    None if seen.wrote => health.set_fault(None),
                    None => {}
                }
            }
            Err(e) => {
                tracing::error!(error = %e, size, "store transaction failed");
                publish.clear();
                convs.clear();
                if e.fault().is_some() {
                    health.set_fault(Some(e.clone()));
                }
            }
        }
        metrics::histogram!("natter_store_batch_size").record(size as f64);
        metrics::histogram!("natter_store_commit_seconds").record(started.elapsed().as_secs_f64());
        for job in batch.drain(..) {
            job.finish(commit.clone());
        }
    }
    rx.close();
    // Anything that raced the close request is refused, not dropped silently.
    while let Ok(job) = rx.try_recv() {
        job.finish(Err(StoreError::Unavailable));
    }
    checkpointer.stop();
    if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
        tracing::warn!(error = %e, "final checkpoint failed");
    }
}

/// What a batch showed of the storage.
#[derive(Default)]
struct Seen {
    /// The first storage fault a write hit.
    fault: Option<StoreError>,
    /// Some write that succeeded changed rows.
    wrote: bool,
}

fn apply_batch(
    conn: &Connection,
    convs: &mut ConvCache,
    publish: &mut Vec<Committed>,
    batch: &mut [Job],
    seen: &mut Seen,
) -> Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let applied = (|| -> Result<()> {
        // Cached statements: parsing these three per write was a measurable
        // share of the writer's time.
        let mut savepoint = conn.prepare_cached("SAVEPOINT job")?;
        let mut rollback = conn.prepare_cached("ROLLBACK TO job")?;
        let mut release = conn.prepare_cached("RELEASE job")?;
        for job in batch.iter_mut() {
            let isolated = job.isolated();
            if isolated {
                // The savepoint's write sees, and on rollback returns to,
                // the true last seqs.
                convs.flush_seqs(conn)?;
                savepoint.execute([])?;
                convs.begin_write();
            }
            let mark = publish.len();
            let changes = (conn.total_changes(), convs.seqs_taken());
            let mut tx = Tx {
                conn,
                convs: &mut *convs,
                publish: &mut *publish,
            };
            let applied = job.apply(&mut tx);
            match &applied {
                Ok(()) => seen.wrote |= (conn.total_changes(), convs.seqs_taken()) != changes,
                Err(e) if e.fault().is_some() && seen.fault.is_none() => {
                    seen.fault = Some(e.clone())
                }
                Err(_) => {}
            }
            if isolated {
                if applied.is_err() {
                    rollback.execute([])?;
                    convs.undo_write();
                }
                release.execute([])?;
                convs.end_write();
            } else if let Err(e) = &applied {
                if (conn.total_changes(), convs.seqs_taken()) != changes {
                    // A storage fault says so to every caller in the batch;
                    // anything else here is a bug.
                    return Err(match e.fault() {
                        Some(_) => e.clone(),
                        None => StoreError::bug("a write failed after changing rows or taking a seq; its transaction is rolled back"),
                    });
                }
            }
            if applied.is_err() {
                publish.truncate(mark);
            }
        }
        drop((savepoint, rollback, release));
        convs.flush_seqs(conn)?;
        conn.execute_batch("COMMIT")?;
        Ok(())
    })();
    if applied.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    applied
}
