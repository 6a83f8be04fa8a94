//! The writer's jobs and what a job sees. One thread (`round.rs`) takes
//! queued jobs, applies as many as are waiting as one round, makes the round
//! durable once, and only then answers each caller.
//!
//! A job goes one of two ways:
//! - **log**: new messages and cursor raises. The job checks what it must
//!   against the writer's caches and the database, takes its seq, and stages
//!   a record for the message log; the round appends its records with one
//!   write and one fdatasync. The records reach the database later, in large
//!   batches (`pending.rs`).
//! - **database**: everything else, in the round's transaction. Before
//!   each such job the round copies the waiting records the job sees
//!   ([`Sees`]: none, one conversation's, or all) into the database, so
//!   it orders itself after every message before it that it may read.
//!   Most run in their own savepoint; one that fails leaves no trace.

use super::tx::Tx;
use crate::{Appended, Committed, ConversationId, NewMessage, Result, StoreError};
use natter_runtime::clock::Instant;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use tokio::sync::oneshot;

/// What the writer tells the rest of the store about its health.
#[derive(Default)]
pub struct Health {
    /// Set by `stop_writes`: refuse everything still queued.
    pub refusing: AtomicBool,
    /// The last storage fault, until a write that reached the disk succeeds.
    pub fault: Mutex<Option<StoreError>>,
}

impl Health {
    pub fn fault(&self) -> Option<StoreError> {
        self.fault.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn set_fault(&self, f: Option<StoreError>) {
        *self.fault.lock().unwrap_or_else(|p| p.into_inner()) = f;
    }
}

pub type Job = Box<dyn Work>;

/// What a write in the database must see of the records waiting in the log
/// (and follow): the round copies those in before it runs, and only those,
/// since every send waits for that copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sees {
    /// No message, seq, cursor or conversation that exists yet (accounts,
    /// sessions, friends, bans; a group's creation, whose id the writer
    /// hands out past every 1:1 made in the log).
    Nothing,
    /// One conversation's (a group's change, a recall): its messages, seq
    /// and cursors, and the conversation itself if it was made in the log.
    Conversation(ConversationId),
    /// Every conversation's (a write that may touch any of a user's).
    All,
}

/// How a job is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Staged for the message log.
    Log,
    /// In the round's database transaction.
    Database,
    /// Copies every staged record into the database (before the writer
    /// stops).
    Flush,
}

/// One queued write.
pub trait Work: Send {
    fn route(&self) -> Route {
        Route::Database
    }
    /// Applies the write; an error means it failed (and, if isolated, its
    /// savepoint is rolled back).
    fn apply(&mut self, tx: &mut Tx<'_>) -> Result<()>;
    /// Answers the caller once the round's fate is known.
    fn finish(self: Box<Self>, outcome: Result<()>);
    /// True for the job that asks the writer to stop.
    fn is_close(&self) -> bool {
        false
    }
    /// False for a write that, when it fails, has written nothing, so it
    /// needs no savepoint to be undone.
    fn isolated(&self) -> bool {
        self.route() == Route::Database
    }
    /// What of the waiting log records a write in the database must see
    /// (and follow), so the round first copies them in. Copying everything
    /// for a write that touches little held every send up behind the copy.
    fn sees(&self) -> Sees {
        Sees::All
    }
    /// When it was queued (`natter_store_wait_seconds`: how long the
    /// oldest write of a round waited for it).
    fn queued_at(&self) -> Option<Instant> {
        None
    }
}

/// A write whose result goes straight back to the caller.
pub struct WriteJob<F, T> {
    f: Option<F>,
    route: Route,
    sees: Sees,
    queued: Instant,
    out: Option<Result<T>>,
    reply: Option<oneshot::Sender<Result<T>>>,
}

impl<F, T> WriteJob<F, T> {
    /// A write in the round's database transaction.
    pub fn new(f: F, reply: oneshot::Sender<Result<T>>) -> Self {
        WriteJob {
            f: Some(f),
            route: Route::Database,
            sees: Sees::All,
            queued: Instant::now(),
            out: None,
            reply: Some(reply),
        }
    }

    /// A write in the round's database transaction that sees only what
    /// `sees` says of the records waiting in the log (see [`Work::sees`]).
    pub fn seeing(f: F, reply: oneshot::Sender<Result<T>>, sees: Sees) -> Self {
        WriteJob {
            sees,
            ..WriteJob::new(f, reply)
        }
    }

    /// A write that stages log records (and checks before it stages).
    pub fn staged(f: F, reply: oneshot::Sender<Result<T>>) -> Self {
        WriteJob {
            route: Route::Log,
            ..WriteJob::new(f, reply)
        }
    }
}

impl<F, T> Work for WriteJob<F, T>
where
    F: FnOnce(&mut Tx<'_>) -> Result<T> + Send,
    T: Send,
{
    fn route(&self) -> Route {
        self.route
    }

    fn sees(&self) -> Sees {
        self.sees
    }

    fn queued_at(&self) -> Option<Instant> {
        Some(self.queued)
    }

    fn apply(&mut self, tx: &mut Tx<'_>) -> Result<()> {
        let out = match self.f.take() {
            Some(f) => f(tx),
            None => Err(StoreError::bug("write applied twice")),
        };
        let r = out.as_ref().map(|_| ()).map_err(Clone::clone);
        self.out = Some(out);
        r
    }

    fn finish(mut self: Box<Self>, outcome: Result<()>) {
        let out = match (outcome, self.out.take()) {
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
    queued: Instant,
    out: Option<Result<Appended>>,
    reply: Option<oneshot::Sender<Result<Appended>>>,
}

impl AppendJob {
    pub fn new(new: NewMessage, reply: oneshot::Sender<Result<Appended>>) -> Self {
        AppendJob {
            new,
            queued: Instant::now(),
            out: None,
            reply: Some(reply),
        }
    }
}

impl Work for AppendJob {
    fn route(&self) -> Route {
        Route::Log
    }

    fn queued_at(&self) -> Option<Instant> {
        Some(self.queued)
    }

    fn apply(&mut self, tx: &mut Tx<'_>) -> Result<()> {
        let out = crate::sqlite::messages::append(tx, &mut self.new).map(|o| {
            if let Some(members) = o.members {
                tx.publish(Committed {
                    message: o.message.clone(),
                    members,
                    origin: self.new.origin,
                });
            }
            Appended {
                message: o.message,
                duplicate: o.duplicate,
            }
        });
        let r = out.as_ref().map(|_| ()).map_err(Clone::clone);
        self.out = Some(out);
        r
    }

    fn finish(mut self: Box<Self>, outcome: Result<()>) {
        let out = match (outcome, self.out.take()) {
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
    fn route(&self) -> Route {
        Route::Flush
    }
    fn apply(&mut self, _tx: &mut Tx<'_>) -> Result<()> {
        Ok(())
    }
    fn finish(mut self: Box<Self>, _outcome: Result<()>) {
        if let Some(reply) = self.0.take() {
            let _ = reply.send(());
        }
    }
    fn is_close(&self) -> bool {
        true
    }
}
