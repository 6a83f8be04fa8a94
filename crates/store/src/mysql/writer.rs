//! The node's writer task on MariaDB/MySQL, as on PostgreSQL: queued
//! appends run as one round in one transaction (group commit, the round
//! of `sql::round`), committed before anyone hears back and published on
//! the commit feed in commit order; changes that append a system event run
//! through it too, one transaction each. A round that raced another
//! node's runs again, looking; a round whose COMMIT's fate is unknown
//! fails, and its callers' resends resolve by (conversation, sender,
//! client_msg_id) to one message. Every job carries its caller's deadline: one still queued
//! when it passes is answered at once, and a round is given up at the
//! earliest deadline among its jobs.

use super::engine::dialect::My;
use super::engine::faults::collided;
use crate::sql::changes::{self, Published};
use crate::sql::round::{self, Pairs, Round};
use crate::{
    Appended, Breaker, CommitFeedSender, ConversationId, Fault, GroupAction, GroupLimits,
    GroupRecord, JoinOutcome, NewGroup, NewMessage, Result, StoreError, UserId,
};
use async_trait::async_trait;
use mysql_async::{Conn, Opts, Transaction, TxOpts};
use natter_runtime::clock::Instant;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Times a round runs again after racing another transaction.
const ATTEMPTS: usize = 4;

pub enum Job {
    Append(Append),
    Change(Box<dyn Queued>, Instant),
    Close(oneshot::Sender<()>),
}

/// A queued append: the message, where its answer goes, and when its
/// caller stops waiting.
pub struct Append {
    pub new: NewMessage,
    pub reply: oneshot::Sender<Result<Appended>>,
    pub deadline: Instant,
}

/// A change that appends a system event: one transaction of its own (run
/// again after a deadlock), answered with its own result type.
#[async_trait]
pub trait Change: Send + Sync + 'static {
    type Out: Send + 'static;
    async fn run(&self, db: &My<'_, Transaction<'_>>, publish: &mut Published)
        -> Result<Self::Out>;
}

/// A queued change with where its answer goes; the writer sees only this.
#[async_trait]
pub trait Queued: Send {
    async fn execute(self: Box<Self>, writer: &Writer, conn: &mut Option<Conn>, by: Instant);
    /// Answers without running: the store is closing, or the deadline passed.
    fn refuse(self: Box<Self>, why: StoreError);
}

/// A change and its caller's reply channel, typed together.
pub struct Typed<C: Change> {
    pub change: C,
    pub reply: oneshot::Sender<Result<C::Out>>,
}

#[async_trait]
impl<C: Change> Queued for Typed<C> {
    async fn execute(self: Box<Self>, writer: &Writer, conn: &mut Option<Conn>, by: Instant) {
        let out = writer.change(conn, &self.change, by).await;
        let _ = self.reply.send(out);
    }

    fn refuse(self: Box<Self>, why: StoreError) {
        let _ = self.reply.send(Err(why));
    }
}

pub struct CreateGroup(pub NewGroup, pub GroupLimits);

#[async_trait]
impl Change for CreateGroup {
    type Out = GroupRecord;
    async fn run(
        &self,
        db: &My<'_, Transaction<'_>>,
        publish: &mut Published,
    ) -> Result<GroupRecord> {
        changes::create_group(db, &self.0, self.1, publish).await
    }
}

pub struct Join {
    pub user: UserId,
    pub id: ConversationId,
    pub message: String,
    pub code: String,
    pub limits: GroupLimits,
    pub now_ms: i64,
}

#[async_trait]
impl Change for Join {
    type Out = JoinOutcome;
    async fn run(
        &self,
        db: &My<'_, Transaction<'_>>,
        publish: &mut Published,
    ) -> Result<JoinOutcome> {
        let j = self;
        changes::join(
            db, j.user, j.id, &j.message, &j.code, j.limits, j.now_ms, publish,
        )
        .await
    }
}

pub struct Act {
    pub actor: crate::rules::GroupActor,
    pub id: ConversationId,
    pub action: GroupAction,
    pub limits: GroupLimits,
    pub now_ms: i64,
}

#[async_trait]
impl Change for Act {
    type Out = ();
    async fn run(&self, db: &My<'_, Transaction<'_>>, publish: &mut Published) -> Result<()> {
        let a = self;
        changes::act(db, a.actor, a.id, &a.action, a.limits, a.now_ms, publish).await
    }
}

pub struct Recall {
    pub actor: UserId,
    pub id: ConversationId,
    pub seq: u64,
    pub window_ms: i64,
    pub now_ms: i64,
}

#[async_trait]
impl Change for Recall {
    type Out = ();
    async fn run(&self, db: &My<'_, Transaction<'_>>, publish: &mut Published) -> Result<()> {
        let r = self;
        changes::recall(db, r.actor, r.id, r.seq, r.window_ms, r.now_ms, publish).await
    }
}

/// A round trip on the writer's connection (readiness).
pub struct Probe;

#[async_trait]
impl Change for Probe {
    type Out = ();
    async fn run(&self, db: &My<'_, Transaction<'_>>, _publish: &mut Published) -> Result<()> {
        use crate::sql::Db;
        db.one("SELECT 1", &[]).await?;
        Ok(())
    }
}

pub struct Writer {
    pub rx: mpsc::Receiver<Job>,
    /// The connection's options, its session included.
    pub opts: Opts,
    /// The longest a round may take before the connection is given up,
    /// whatever its jobs' deadlines.
    pub op_timeout: Duration,
    pub max_batch: usize,
    pub feed: CommitFeedSender,
    pub breaker: Arc<Breaker>,
    pub refusing: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
#[error("the database did not answer in time")]
struct TimedOut;

pub fn timed_out() -> StoreError {
    StoreError::Fault {
        fault: Fault::Down,
        source: Arc::new(TimedOut),
    }
}

/// Counts jobs answered without running because their deadline passed
/// while they were queued.
fn expired(n: usize) {
    metrics::counter!("natter_store_expired_total").increment(n as u64);
}

impl Writer {
    /// The writer's connection, made when missing (its caller has passed
    /// the breaker).
    async fn connected<'c>(&self, conn: &'c mut Option<Conn>) -> Result<&'c mut Conn> {
        if conn.is_none() {
            let made = Conn::new(self.opts.clone());
            *conn = Some(match tokio::time::timeout(self.op_timeout, made).await {
                Ok(c) => c?,
                Err(_) => return Err(timed_out()),
            });
        }
        conn.as_mut()
            .ok_or(StoreError::bug("the writer's connection vanished"))
    }

    pub async fn run(mut self) {
        let mut conn: Option<Conn> = None;
        let mut pairs = Pairs::new();
        let mut carry: Option<Job> = None;
        loop {
            let job = match carry.take() {
                Some(j) => j,
                None => match self.rx.recv().await {
                    Some(j) => j,
                    None => break,
                },
            };
            metrics::gauge!("natter_store_queue_depth").set(self.rx.len() as f64);
            match job {
                Job::Close(reply) => {
                    let _ = reply.send(());
                    break;
                }
                Job::Change(c, by) => {
                    if self.refusing.load(Ordering::Relaxed) {
                        c.refuse(StoreError::Unavailable);
                    } else if Instant::now() >= by {
                        expired(1);
                        c.refuse(timed_out());
                    } else {
                        c.execute(&self, &mut conn, by).await;
                    }
                }
                Job::Append(first) => {
                    let mut batch = vec![first];
                    while batch.len() < self.max_batch {
                        match self.rx.try_recv() {
                            Ok(Job::Append(a)) => batch.push(a),
                            Ok(other) => {
                                carry = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    if self.refusing.load(Ordering::Relaxed) {
                        for a in batch {
                            let _ = a.reply.send(Err(StoreError::Unavailable));
                        }
                        continue;
                    }
                    let now = Instant::now();
                    let (batch, late): (Vec<Append>, Vec<Append>) =
                        batch.into_iter().partition(|a| a.deadline > now);
                    if !late.is_empty() {
                        expired(late.len());
                        for a in late {
                            let _ = a.reply.send(Err(timed_out()));
                        }
                    }
                    if !batch.is_empty() {
                        self.appends(&mut conn, &mut pairs, batch).await;
                    }
                }
            }
        }
        self.rx.close();
        while let Ok(job) = self.rx.try_recv() {
            match job {
                Job::Append(a) => {
                    let _ = a.reply.send(Err(StoreError::Unavailable));
                }
                Job::Change(c, _) => c.refuse(StoreError::Unavailable),
                Job::Close(r) => {
                    let _ = r.send(());
                }
            }
        }
        if let Some(c) = conn {
            let _ = c.disconnect().await;
        }
    }

    async fn appends(&self, conn: &mut Option<Conn>, pairs: &mut Pairs, batch: Vec<Append>) {
        let started = Instant::now();
        let by = batch
            .iter()
            .map(|a| a.deadline)
            .min()
            .unwrap_or(started)
            .min(started + self.op_timeout);
        let (news, replies): (Vec<NewMessage>, Vec<_>) =
            batch.into_iter().map(|a| (a.new, a.reply)).unzip();
        if let Err(refused) = self.breaker.admit() {
            for r in replies {
                let _ = r.send(Err(refused.clone()));
            }
            return;
        }
        let mut outcome = Err(StoreError::Unavailable);
        let rounds = async {
            for attempt in 0..ATTEMPTS {
                let c = match self.connected(conn).await {
                    Ok(c) => c,
                    Err(e) => {
                        outcome = Err(e);
                        break;
                    }
                };
                let look_first = attempt > 0;
                let run = async {
                    let mut tx = c
                        .start_transaction(TxOpts::default())
                        .await
                        .map_err(StoreError::from)?;
                    let out = round::round(&mut My::new(&mut tx), &news, pairs, look_first).await?;
                    tx.commit().await.map_err(StoreError::from)?;
                    Ok::<_, Round>(out)
                };
                let r = match tokio::time::timeout(self.op_timeout, run).await {
                    Ok(r) => r,
                    Err(_) => Err(Round::Failed(timed_out())),
                };
                match r {
                    Ok(out) => {
                        outcome = Ok(out);
                        break;
                    }
                    Err(Round::Raced) => {
                        pairs.clear();
                        continue;
                    }
                    Err(Round::Failed(e)) => {
                        pairs.clear();
                        if e.fault() == Some(Fault::Down) {
                            *conn = None;
                        }
                        let again = collided(&e);
                        outcome = Err(e);
                        if !again {
                            break;
                        }
                    }
                }
            }
        };
        if tokio::time::timeout_at(by, rounds).await.is_err() {
            *conn = None;
            pairs.clear();
            outcome = Err(timed_out());
        }
        self.breaker.record(&outcome);
        metrics::histogram!("natter_store_batch_size").record(news.len() as f64);
        metrics::histogram!("natter_store_commit_seconds").record(started.elapsed().as_secs_f64());
        match outcome {
            Ok((answers, publish)) => {
                for c in publish {
                    self.feed.publish(c);
                }
                for (a, r) in answers.into_iter().zip(replies) {
                    let _ = r.send(a);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, size = news.len(), "append round failed");
                for r in replies {
                    let _ = r.send(Err(e.clone()));
                }
            }
        }
    }

    async fn change<C: Change>(
        &self,
        conn: &mut Option<Conn>,
        change: &C,
        by: Instant,
    ) -> Result<C::Out> {
        let by = by.min(Instant::now() + self.op_timeout);
        self.breaker.admit()?;
        let mut outcome = Err(StoreError::Unavailable);
        let mut publish = Vec::new();
        let runs = async {
            for _ in 0..ATTEMPTS {
                publish.clear();
                let c = match self.connected(conn).await {
                    Ok(c) => c,
                    Err(e) => {
                        outcome = Err(e);
                        break;
                    }
                };
                let run = async {
                    let mut tx = c.start_transaction(TxOpts::default()).await?;
                    let out = change.run(&My::new(&mut tx), &mut publish).await?;
                    tx.commit().await?;
                    Ok::<_, StoreError>(out)
                };
                let r = match tokio::time::timeout(self.op_timeout, run).await {
                    Ok(r) => r,
                    Err(_) => Err(timed_out()),
                };
                match r {
                    Ok(out) => {
                        outcome = Ok(out);
                        break;
                    }
                    Err(e) => {
                        if e.fault() == Some(Fault::Down) {
                            *conn = None;
                        }
                        let again = collided(&e);
                        outcome = Err(e);
                        if !again {
                            break;
                        }
                    }
                }
            }
        };
        if tokio::time::timeout_at(by, runs).await.is_err() {
            *conn = None;
            outcome = Err(timed_out());
        }
        self.breaker.record(&outcome);
        if outcome.is_ok() {
            for c in publish {
                self.feed.publish(c);
            }
        }
        outcome
    }
}
