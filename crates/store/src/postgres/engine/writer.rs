//! The node's writer task: takes queued appends, runs as many as are
//! waiting as one round in one transaction (group commit), commits, and
//! only then answers each caller and publishes the new messages on the
//! commit feed, in commit order. Changes that append a system event run
//! through it too, one transaction each, so the feed stays in commit order.
//! A round that raced another node's runs again; a round whose COMMIT's
//! fate is unknown fails, and its callers' resends resolve by
//! (conversation, sender, client_msg_id) to exactly one message.
//!
//! Every job carries its caller's deadline: one still queued when it
//! passes is answered at once and never sent to the database, and a round
//! is given up at the earliest deadline among its jobs, so nothing waits
//! behind a stuck commit longer than its own bound.

use super::super::messages::append::{PgRound, Statements};
use super::dialect::Pg;
use super::faults::collided;
use crate::sql::changes::{self as changes, Published};
use crate::sql::round::{self as rounds, Pairs, Round};
use crate::{
    Appended, Breaker, CommitFeedSender, ConversationId, Fault, GroupAction, GroupLimits,
    GroupRecord, JoinOutcome, NewGroup, NewMessage, Result, StoreError, UserId,
};
use async_trait::async_trait;
use natter_runtime::clock::Instant;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{Client, NoTls, Transaction};

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
/// again after a collision), answered with its own result type.
#[async_trait]
pub trait Change: Send + Sync + 'static {
    type Out: Send + 'static;
    async fn run(&self, tx: &Transaction<'_>, publish: &mut Published) -> Result<Self::Out>;
}

/// A queued change with where its answer goes; the writer sees only this.
#[async_trait]
pub trait Queued: Send {
    async fn execute(self: Box<Self>, writer: &Writer, client: &mut Option<Conn>, by: Instant);
    /// Answers without running: the store is closing, or the deadline passed.
    fn refuse(self: Box<Self>, why: StoreError);
}

/// A change and its caller's reply channel, typed together, so an answer
/// can only be the change's own.
pub struct Typed<C: Change> {
    pub change: C,
    pub reply: oneshot::Sender<Result<C::Out>>,
}

#[async_trait]
impl<C: Change> Queued for Typed<C> {
    async fn execute(self: Box<Self>, writer: &Writer, client: &mut Option<Conn>, by: Instant) {
        let out = writer.change(client, &self.change, by).await;
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
    async fn run(&self, tx: &Transaction<'_>, publish: &mut Published) -> Result<GroupRecord> {
        changes::create_group(&Pg(tx), &self.0, self.1, publish).await
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
    async fn run(&self, tx: &Transaction<'_>, publish: &mut Published) -> Result<JoinOutcome> {
        let j = self;
        changes::join(
            &Pg(tx),
            j.user,
            j.id,
            &j.message,
            &j.code,
            j.limits,
            j.now_ms,
            publish,
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
    async fn run(&self, tx: &Transaction<'_>, publish: &mut Published) -> Result<()> {
        let a = self;
        changes::act(
            &Pg(tx),
            a.actor,
            a.id,
            &a.action,
            a.limits,
            a.now_ms,
            publish,
        )
        .await
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
    async fn run(&self, tx: &Transaction<'_>, publish: &mut Published) -> Result<()> {
        let r = self;
        changes::recall(
            &Pg(tx),
            r.actor,
            r.id,
            r.seq,
            r.window_ms,
            r.now_ms,
            publish,
        )
        .await
    }
}

/// A round trip on the writer's connection (readiness).
pub struct Probe;

#[async_trait]
impl Change for Probe {
    type Out = ();
    async fn run(&self, tx: &Transaction<'_>, _publish: &mut Published) -> Result<()> {
        tx.query_one("SELECT 1", &[]).await?;
        Ok(())
    }
}

pub struct Writer {
    pub rx: mpsc::Receiver<Job>,
    pub config: tokio_postgres::Config,
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

/// The writer's connection and what it has prepared.
pub struct Conn {
    client: Client,
    statements: Statements,
}

/// The writer's connection, made when missing (its caller has passed the
/// breaker).
async fn connected<'c>(
    client: &'c mut Option<Conn>,
    config: &tokio_postgres::Config,
    timeout: Duration,
) -> Result<&'c mut Conn> {
    if client.as_ref().is_some_and(|c| c.client.is_closed()) {
        *client = None;
    }
    if client.is_none() {
        let made = match tokio::time::timeout(timeout, config.connect(NoTls)).await {
            Ok(Ok((c, connection))) => {
                // The connection's driver ends when the writer drops its
                // client: when the writer ends, which `PgStore::close` awaits.
                #[allow(clippy::disallowed_methods)]
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "writer connection ended");
                    }
                });
                Ok(c)
            }
            Ok(Err(e)) => Err(StoreError::from(e)),
            Err(_) => Err(timed_out()),
        };
        // A failure is recorded on the breaker by the caller, with the
        // outcome of what it was connecting for.
        *client = Some(Conn {
            client: made?,
            statements: Statements::default(),
        });
    }
    client
        .as_mut()
        .ok_or(StoreError::bug("the writer's connection vanished"))
}

impl Writer {
    pub async fn run(mut self) {
        let mut client: Option<Conn> = None;
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
                        c.execute(&self, &mut client, by).await;
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
                    // Their callers have been answered (or are being):
                    // sending them now could store what was refused.
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
                        self.appends(&mut client, &mut pairs, batch).await;
                    }
                }
            }
        }
        self.rx.close();
        // Anything that raced the close is refused, not dropped silently.
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
    }

    async fn appends(&self, client: &mut Option<Conn>, pairs: &mut Pairs, batch: Vec<Append>) {
        let started = Instant::now();
        let by = batch
            .iter()
            .map(|a| a.deadline)
            .min()
            .unwrap_or(started)
            .min(started + self.op_timeout);
        let (news, replies): (Vec<NewMessage>, Vec<_>) =
            batch.into_iter().map(|a| (a.new, a.reply)).unzip();
        // A refusal is the breaker's own answer, not news of the server:
        // recorded, it would reopen the breaker while its probe is out.
        if let Err(refused) = self.breaker.admit() {
            for r in replies {
                let _ = r.send(Err(refused.clone()));
            }
            return;
        }
        let mut outcome = Err(StoreError::Unavailable);
        let rounds = async {
            for attempt in 0..ATTEMPTS {
                let c = match connected(client, &self.config, self.op_timeout).await {
                    Ok(c) => c,
                    Err(e) => {
                        outcome = Err(e);
                        break;
                    }
                };
                let look_first = attempt > 0;
                let round = async {
                    let tx = c.client.transaction().await?;
                    let mut db = PgRound {
                        tx: &tx,
                        st: &mut c.statements,
                    };
                    let out = rounds::round(&mut db, &news, pairs, look_first).await?;
                    tx.commit().await?;
                    Ok::<_, Round>(out)
                };
                let r = match tokio::time::timeout(self.op_timeout, round).await {
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
                        // Pairs found or made in a rolled-back round may not exist.
                        pairs.clear();
                        if e.fault() == Some(Fault::Down) {
                            *client = None;
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
            // Given up mid-round: the connection may be anywhere in the
            // transaction, and pairs found in it may be rolled back.
            *client = None;
            pairs.clear();
            outcome = Err(timed_out());
        }
        self.breaker.record(&outcome);
        metrics::histogram!("natter_store_batch_size").record(news.len() as f64);
        metrics::histogram!("natter_store_commit_seconds").record(started.elapsed().as_secs_f64());
        match outcome {
            Ok((answers, publish)) => {
                // Published before the callers hear back, in commit order.
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
        client: &mut Option<Conn>,
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
                let c = match connected(client, &self.config, self.op_timeout).await {
                    Ok(c) => c,
                    Err(e) => {
                        outcome = Err(e);
                        break;
                    }
                };
                let run = async {
                    let tx = c.client.transaction().await?;
                    let out = change.run(&tx, &mut publish).await?;
                    tx.commit().await?;
                    Ok::<_, StoreError>(out)
                };
                let r = match tokio::time::timeout(self.op_timeout, run).await {
                    Ok(r) => r,
                    Err(_) => Err(timed_out()),
                };
                let again = matches!(&r, Err(e) if collided(e));
                if let Err(e) = &r {
                    if e.fault() == Some(Fault::Down) {
                        *client = None;
                    }
                }
                outcome = r;
                if !again {
                    break;
                }
            }
        };
        if tokio::time::timeout_at(by, runs).await.is_err() {
            *client = None;
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
