//! The PostgreSQL backend: the production store, for one node or several on
//! one database. Appends from every session are group-committed by one
//! writer task per node, with seqs taken from the locked conversation rows
//! in the same transaction, so several nodes can append to one
//! conversation; other writes and all reads use a bounded pool. Every
//! request is bounded in time, and a circuit breaker turns an unreachable
//! database into quick UNAVAILABLE answers instead of piled-up waits.

pub(crate) mod engine;
mod messages;
mod rows;
mod sync;
#[cfg(test)]
mod tests;

use crate::sql::{accounts, codes, friends, lists as shared, messages as shared_messages};
use engine::dialect::Pg;
use engine::faults::collided;
pub use engine::faults::pool_error;
use engine::partitions;
pub use engine::partitions::Partitioning;
use engine::schema;

use crate::{
    Before, Breaker, BreakerOptions, CommitFeedSender, ConversationId, ConversationSummary,
    Delivered, FriendList, FriendRequestOutcome, FriendRequestPage, FriendRequestRecord,
    GroupAction, GroupLimits, GroupRecord, HistoryPage, JoinOutcome, JoinRequestRecord,
    MemberRecord, NewGroup, NewMessage, NewSession, Page, PendingAppend, ReadMoved, Result,
    SessionGrant, SessionId, SessionRecord, Store, StoreError, SyncPage, UserId, UserRecord,
};
use crate::{CodeTry, CodeVerdict, NewEmailCode, NewVerifiedUser};
use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use engine::writer::{self, timed_out, Job, Writer};
use natter_runtime::clock::Instant;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{IsolationLevel, NoTls};

#[derive(Clone, Debug)]
pub struct PgOptions {
    /// `postgres://user@host:port/db?options=...` (libpq's URL form).
    pub url: String,
    /// Pooled connections for reads and writes other than appends; the
    /// writer has one more of its own.
    pub pool_size: usize,
    pub connect_timeout: Duration,
    /// How long one statement may run on the server (statement_timeout).
    pub statement_timeout: Duration,
    /// A request's whole bound from when the store gets it: a Send's
    /// queueing, connecting and committing.
    pub request_timeout: Duration,
    /// How long a request waits for a free pooled connection.
    pub pool_wait: Duration,
    /// The most appends one transaction carries.
    pub max_batch: usize,
    /// Writes queued for the writer before callers wait.
    pub queue_depth: usize,
    pub breaker: BreakerOptions,
    /// How the message table is partitioned (fixed when it is made).
    pub partitioning: Partitioning,
}

impl PgOptions {
    pub fn new(url: impl Into<String>) -> Self {
        PgOptions {
            url: url.into(),
            pool_size: 16,
            connect_timeout: Duration::from_secs(3),
            statement_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(2),
            pool_wait: Duration::from_secs(2),
            max_batch: 512,
            queue_depth: 8192,
            breaker: BreakerOptions::default(),
            partitioning: Partitioning::None,
        }
    }

    fn config(&self) -> Result<tokio_postgres::Config> {
        let mut c: tokio_postgres::Config = self
            .url
            .parse()
            .map_err(|e| StoreError::backend("the PostgreSQL URL is not valid", e))?;
        let mut options = c.get_options().unwrap_or("").to_owned();
        options.push_str(&format!(
            " -c statement_timeout={}",
            self.statement_timeout.as_millis()
        ));
        c.options(options.trim())
            .connect_timeout(self.connect_timeout)
            .application_name("natter");
        Ok(c)
    }

    /// The longest anything may wait on the server: a statement, plus a
    /// connection.
    fn op_timeout(&self) -> Duration {
        self.statement_timeout + self.connect_timeout
    }

    /// A request's whole time bound.
    fn request_bound(&self) -> Duration {
        self.request_timeout.min(self.op_timeout())
    }
}

pub struct PgStore {
    writer: mpsc::Sender<Job>,
    writer_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    pool: Pool,
    breaker: Arc<Breaker>,
    refusing: Arc<AtomicBool>,
    /// A Send's whole time bound (see [`PgOptions::request_bound`]).
    bound: Duration,
    /// Any other request's: a statement plus a connection. A group of
    /// thousands created on a busy machine may take longer than a Send
    /// may wait, and is no sign of a database down.
    op_bound: Duration,
    /// Partition upkeep (monthly partitioning only), stopped by `close`.
    upkeep: Mutex<Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>>,
}

/// How long past a job's deadline its caller still waits for the writer's
/// own answer (which comes at the deadline) before giving up on it: the
/// writer is stuck somewhere unbounded, which would be a bug.
const ANSWER_GRACE: Duration = Duration::from_millis(250);

impl PgStore {
    /// Connects, migrates (refusing a newer schema) and starts the writer.
    /// Newly committed messages are published on `feed`.
    pub async fn open(opts: PgOptions, feed: CommitFeedSender) -> Result<Self> {
        let config = opts.config()?;
        let (mut client, connection) =
            match tokio::time::timeout(opts.connect_timeout, config.connect(NoTls)).await {
                Ok(r) => r?,
                Err(_) => return Err(timed_out()),
            };
        // The migration connection's driver, awaited just below once the
        // client is dropped.
        #[allow(clippy::disallowed_methods)]
        let conn_task = tokio::spawn(connection);
        schema::migrate(&mut client, opts.partitioning).await?;
        // Partitions for this month and the next exist before any write.
        partitions::maintain(&client, opts.partitioning, natter_runtime::clock::now_ms()).await?;
        drop(client);
        let _ = conn_task.await;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(opts.pool_size.max(1))
            .wait_timeout(Some(opts.pool_wait))
            .create_timeout(Some(opts.connect_timeout))
            .recycle_timeout(Some(opts.connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::backend("cannot build the connection pool", e))?;
        let breaker = Arc::new(Breaker::new(opts.breaker));
        let refusing = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel(opts.queue_depth.max(1));
        // The writer ends on `Job::Close` or when its queue closes; `close`
        // awaits it.
        #[allow(clippy::disallowed_methods)]
        let task = tokio::spawn(
            Writer {
                rx,
                config,
                op_timeout: opts.op_timeout(),
                max_batch: opts.max_batch.max(1),
                feed,
                breaker: breaker.clone(),
                refusing: refusing.clone(),
            }
            .run(),
        );
        let upkeep = match opts.partitioning {
            Partitioning::Monthly { .. } => {
                let (stop, stopped) = oneshot::channel();
                // Stopped and awaited by `close`.
                #[allow(clippy::disallowed_methods)]
                let task =
                    tokio::spawn(partitions::upkeep(pool.clone(), opts.partitioning, stopped));
                Some((stop, task))
            }
            _ => None,
        };
        Ok(PgStore {
            writer: tx,
            writer_task: Mutex::new(Some(task)),
            pool,
            breaker,
            refusing,
            bound: opts.request_bound(),
            op_bound: opts.op_timeout(),
            upkeep: Mutex::new(upkeep),
        })
    }

    /// Makes and drops message partitions as of `now_ms` (the upkeep task
    /// does this hourly); returns the partitions dropped.
    pub async fn maintain_partitions(&self, p: Partitioning, now_ms: i64) -> Result<Vec<String>> {
        self.with(|c| async move { partitions::maintain(&**c, p, now_ms).await })
            .await
    }

    /// Runs `f` on a pooled connection, through the breaker and within the
    /// time bound.
    async fn with<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: FnOnce(deadpool_postgres::Object) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.breaker.admit()?;
        let run = async {
            let c = self.pool.get().await.map_err(pool_error)?;
            f(c).await
        };
        let out = match tokio::time::timeout(self.op_bound, run).await {
            Ok(r) => r,
            Err(_) => Err(timed_out()),
        };
        self.breaker.record(&out);
        out
    }

    async fn change<C: writer::Change>(&self, change: C) -> Result<C::Out> {
        let by = Instant::now() + self.op_bound;
        let (reply, rx) = oneshot::channel();
        self.submit(
            Job::Change(Box::new(writer::Typed { change, reply }), by),
            by,
        )
        .await?;
        PendingAppend::new(rx).until(by + ANSWER_GRACE).await
    }

    /// Queues a job for the writer, waiting for room no later than `by`.
    async fn submit(&self, job: Job, by: Instant) -> Result<()> {
        if self.refusing.load(Ordering::Relaxed) {
            return Err(StoreError::Unavailable);
        }
        match tokio::time::timeout_at(by, self.writer.send(job)).await {
            Ok(sent) => sent.map_err(|_| StoreError::Unavailable),
            Err(_) => Err(timed_out()),
        }
    }
}

/// Runs a write transaction on a pooled connection, again (a few times)
/// when the server picked it as a deadlock's victim.
macro_rules! transaction {
    ($store:expr, $level:expr, |$tx:ident| $body:expr) => {{
        let mut attempt = 0;
        loop {
            attempt += 1;
            let out = $store
                .with(|mut c| async move {
                    let txn = c
                        .build_transaction()
                        .isolation_level($level)
                        .start()
                        .await?;
                    let $tx: &tokio_postgres::Transaction<'_> = &txn;
                    let out = $body;
                    txn.commit().await?;
                    Ok(out)
                })
                .await;
            match out {
                Err(e) if collided(&e) && attempt < 4 => continue,
                out => break out,
            }
        }
    }};
}

const COMMITTED: IsolationLevel = IsolationLevel::ReadCommitted;

mod admin;

#[async_trait]
impl Store for PgStore {
    async fn create_user(&self, username: &str, hash: &str, now_ms: i64) -> Result<UserId> {
        self.with(|c| async move { accounts::create_user(&Pg(&**c), username, hash, now_ms).await })
            .await
    }

    async fn user_by_name(&self, username: &str) -> Result<Option<UserRecord>> {
        self.with(|c| async move { accounts::user_by_name(&Pg(&**c), username).await })
            .await
    }

    async fn user_by_id(&self, id: UserId) -> Result<Option<UserRecord>> {
        self.with(|c| async move { accounts::user_by_id(&Pg(&**c), id).await })
            .await
    }

    async fn users(&self, ids: &[UserId], names: &[String]) -> Result<Vec<UserRecord>> {
        self.with(|c| async move { accounts::users(&Pg(&**c), ids, names).await })
            .await
    }

    async fn set_password(
        &self,
        id: UserId,
        hash: &str,
        keep: Option<SessionId>,
    ) -> Result<Vec<SessionId>> {
        transaction!(self, COMMITTED, |tx| accounts::set_password(
            &Pg(tx),
            id,
            hash,
            keep
        )
        .await?)
    }

    async fn create_user_with_email(&self, new: NewVerifiedUser) -> Result<UserId> {
        let new = &new;
        self.with(|c| async move { accounts::create_user_with_email(&Pg(&**c), new).await })
            .await
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>> {
        self.with(|c| async move { accounts::user_by_email(&Pg(&**c), email).await })
            .await
    }

    async fn put_email_code(&self, code: NewEmailCode, now_ms: i64) -> Result<()> {
        let code = &code;
        transaction!(self, COMMITTED, |tx| codes::put_email_code(
            &Pg(tx),
            code,
            now_ms
        )
        .await?)
    }

    async fn use_email_code(&self, code: CodeTry) -> Result<CodeVerdict> {
        let code = &code;
        transaction!(self, COMMITTED, |tx| codes::use_email_code(&Pg(tx), code)
            .await?)
    }

    async fn create_session(&self, new: NewSession) -> Result<SessionGrant> {
        let new = &new;
        transaction!(self, COMMITTED, |tx| accounts::create_session(&Pg(tx), new)
            .await?)
    }

    async fn session_by_token(&self, token_hash: [u8; 32]) -> Result<Option<SessionRecord>> {
        self.with(|c| async move { accounts::session_by_token(&Pg(&**c), &token_hash).await })
            .await
    }

    async fn revoke_session(&self, id: SessionId) -> Result<()> {
        self.with(|c| async move { accounts::revoke_session(&Pg(&**c), id).await })
            .await
    }

    async fn queue_append(&self, new: NewMessage) -> Result<PendingAppend> {
        // The one deadline of this Send, from its arrival: the writer
        // answers by then, stored or not.
        let deadline = Instant::now() + self.bound;
        let (reply, rx) = oneshot::channel();
        // The writer's queue is FIFO and its rounds keep queue order, so
        // queueing order is storing order.
        let append = writer::Append {
            new,
            reply,
            deadline,
        };
        self.submit(Job::Append(append), deadline).await?;
        Ok(PendingAppend::new(rx).until(deadline + ANSWER_GRACE))
    }

    async fn sync(
        &self,
        user: UserId,
        cursors: &HashMap<ConversationId, u64>,
        after: ConversationId,
        page: Page,
    ) -> Result<SyncPage> {
        self.with(|c| async move { sync::sync(&**c, user, cursors, after, page).await })
            .await
    }

    async fn history(
        &self,
        user: UserId,
        conversation: ConversationId,
        before_seq: u64,
        page: Page,
    ) -> Result<HistoryPage> {
        self.with(|c| async move {
            shared_messages::history(&Pg(&**c), user, conversation, before_seq, page).await
        })
        .await
    }

    async fn mark_delivered(
        &self,
        user: UserId,
        conversation: ConversationId,
        seq: u64,
    ) -> Result<Option<Delivered>> {
        self.with(|c| async move { messages::mark_delivered(&**c, user, conversation, seq).await })
            .await
    }

    async fn mark_read(
        &self,
        user: UserId,
        conversation: ConversationId,
        seq: u64,
    ) -> Result<Option<ReadMoved>> {
        self.with(|c| async move { messages::mark_read(&**c, user, conversation, seq).await })
            .await
    }

    async fn recall(
        &self,
        actor: UserId,
        conversation: ConversationId,
        seq: u64,
        window_ms: i64,
        now_ms: i64,
    ) -> Result<()> {
        self.change(writer::Recall {
            actor,
            id: conversation,
            seq,
            window_ms,
            now_ms,
        })
        .await
    }

    async fn audience(&self, user: UserId, conversation: ConversationId) -> Result<Vec<UserId>> {
        self.with(|c| async move { shared_messages::audience(&Pg(&**c), user, conversation).await })
            .await
    }

    async fn conversations(
        &self,
        user: UserId,
        before: Option<Before>,
        page: Page,
    ) -> Result<(Vec<ConversationSummary>, bool)> {
        self.with(|c| async move { shared::conversations(&Pg(&**c), user, before, page).await })
            .await
    }

    async fn send_friend_request(
        &self,
        from: UserId,
        to: UserId,
        message: &str,
        now_ms: i64,
    ) -> Result<FriendRequestOutcome> {
        transaction!(self, COMMITTED, |tx| friends::send_friend_request(
            &Pg(tx),
            from,
            to,
            message,
            now_ms
        )
        .await?)
    }

    async fn respond_friend_request(
        &self,
        me: UserId,
        request: u64,
        accept: bool,
        reply: &str,
        now_ms: i64,
    ) -> Result<FriendRequestRecord> {
        transaction!(self, COMMITTED, |tx| friends::respond_friend_request(
            &Pg(tx),
            me,
            request,
            accept,
            reply,
            now_ms
        )
        .await?)
    }

    async fn friend_requests(
        &self,
        me: UserId,
        before_id: u64,
        page: Page,
    ) -> Result<FriendRequestPage> {
        self.with(|c| async move { friends::friend_requests(&Pg(&**c), me, before_id, page).await })
            .await
    }

    async fn friends(&self, me: UserId, after: &str, page: Page) -> Result<FriendList> {
        self.with(|c| async move { friends::friends(&Pg(&**c), me, after, page).await })
            .await
    }

    async fn friend_ids(&self, me: UserId) -> Result<Vec<UserId>> {
        self.with(|c| async move { friends::friend_ids(&Pg(&**c), me).await })
            .await
    }

    async fn set_remark(&self, me: UserId, friend: UserId, remark: &str) -> Result<()> {
        self.with(|c| async move { friends::set_remark(&Pg(&**c), me, friend, remark).await })
            .await
    }

    async fn remove_friend(&self, me: UserId, other: UserId) -> Result<()> {
        transaction!(self, COMMITTED, |tx| friends::remove_friend(
            &Pg(tx),
            me,
            other
        )
        .await?)
    }

    async fn set_blocked(
        &self,
        me: UserId,
        other: UserId,
        blocked: bool,
        max_blocked: usize,
    ) -> Result<()> {
        transaction!(self, COMMITTED, |tx| friends::set_blocked(
            &Pg(tx),
            me,
            other,
            blocked,
            max_blocked
        )
        .await?)
    }

    async fn search_users(&self, prefix: &str, limit: usize) -> Result<Vec<UserRecord>> {
        self.with(|c| async move { friends::search_users(&Pg(&**c), prefix, limit).await })
            .await
    }

    async fn create_group(&self, new: NewGroup, limits: GroupLimits) -> Result<GroupRecord> {
        self.change(writer::CreateGroup(new, limits)).await
    }

    async fn group(&self, id: ConversationId, viewer: UserId) -> Result<GroupRecord> {
        self.with(|c| async move { shared::group(&Pg(&**c), id, viewer).await })
            .await
    }

    async fn groups_of(
        &self,
        user: UserId,
        after: ConversationId,
        page: Page,
    ) -> Result<(Vec<GroupRecord>, bool)> {
        self.with(|c| async move { shared::groups_of(&Pg(&**c), user, after, page).await })
            .await
    }

    async fn rooms(
        &self,
        viewer: UserId,
        prefix: &str,
        after: ConversationId,
        page: Page,
    ) -> Result<(Vec<GroupRecord>, bool)> {
        self.with(|c| async move { shared::rooms(&Pg(&**c), viewer, prefix, after, page).await })
            .await
    }

    async fn members(
        &self,
        id: ConversationId,
        viewer: UserId,
        after: UserId,
        page: Page,
    ) -> Result<(Vec<MemberRecord>, bool)> {
        self.with(|c| async move { shared::members(&Pg(&**c), id, viewer, after, page).await })
            .await
    }

    async fn join_group(
        &self,
        user: UserId,
        id: ConversationId,
        message: &str,
        invite_code: &str,
        limits: GroupLimits,
        now_ms: i64,
    ) -> Result<JoinOutcome> {
        let (message, code) = (message.to_owned(), invite_code.to_owned());
        self.change(writer::Join {
            user,
            id,
            message,
            code,
            limits,
            now_ms,
        })
        .await
    }

    async fn group_action(
        &self,
        actor: UserId,
        id: ConversationId,
        action: GroupAction,
        limits: GroupLimits,
        now_ms: i64,
    ) -> Result<()> {
        self.change(writer::Act {
            actor: actor.into(),
            id,
            action,
            limits,
            now_ms,
        })
        .await
    }

    async fn join_requests(
        &self,
        actor: UserId,
        id: ConversationId,
        after: UserId,
        page: Page,
    ) -> Result<(Vec<JoinRequestRecord>, bool)> {
        self.with(
            |c| async move { shared::join_requests_for(&Pg(&**c), actor, id, after, page).await },
        )
        .await
    }

    async fn check(&self) -> Result<()> {
        self.with(|c| async move {
            c.query_one("SELECT 1", &[]).await?;
            Ok(())
        })
        .await?;
        self.change(writer::Probe).await
    }

    fn known_down(&self) -> Option<String> {
        self.breaker
            .is_open()
            .then(|| "the database is unreachable (circuit breaker open)".into())
    }

    fn queue(&self) -> (usize, usize) {
        let max = self.writer.max_capacity();
        (max - self.writer.capacity(), max)
    }

    fn stop_writes(&self) {
        self.refusing.store(true, Ordering::Relaxed);
    }

    async fn close(&self) {
        let (reply, rx) = oneshot::channel();
        if self.writer.send(Job::Close(reply)).await.is_ok() {
            let _ = rx.await;
        }
        let task = self
            .writer_task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(t) = task {
            let _ = t.await;
        }
        let upkeep = self.upkeep.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((stop, task)) = upkeep {
            let _ = stop.send(());
            let _ = task.await;
        }
        self.pool.close();
    }
}
