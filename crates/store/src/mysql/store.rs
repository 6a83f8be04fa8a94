//! [`MyStore`]: the [`Store`] on MariaDB/MySQL. Appends from every session
//! are group-committed by one writer task per node (`writer.rs`), with
//! seqs from the locked conversation rows in the same transaction, so
//! several nodes can append to one conversation; other writes and all
//! reads use a bounded pool. Every request is bounded in time, and the
//! circuit breaker turns an unreachable server into quick UNAVAILABLE
//! answers.

use super::engine::connect::MyOptions;
use super::engine::dialect::My;
use super::engine::faults::collided;
use super::sync;
use super::writer::{self, timed_out, Job, Writer};
use crate::sql::{accounts, codes, friends, lists as shared, messages as shared_messages};
use crate::{
    Before, Breaker, BreakerOptions, CodeTry, CodeVerdict, CommitFeedSender, ConversationId,
    ConversationSummary, Delivered, FriendList, FriendRequestOutcome, FriendRequestPage,
    FriendRequestRecord, GroupAction, GroupLimits, GroupRecord, HistoryPage, JoinOutcome,
    JoinRequestRecord, MemberRecord, NewEmailCode, NewGroup, NewMessage, NewSession,
    NewVerifiedUser, Page, PendingAppend, ReadMoved, Result, SessionGrant, SessionId,
    SessionRecord, Store, StoreError, SyncPage, UserId, UserRecord,
};
use async_trait::async_trait;
use mysql_async::{Conn, Pool, TxOpts};
use natter_runtime::clock::Instant;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long past a job's deadline its caller still waits for the writer's
/// own answer (which comes at the deadline) before giving up on it.
const ANSWER_GRACE: Duration = Duration::from_millis(250);

/// The writer's and the requests' bounds and sizes.
#[derive(Clone, Debug)]
pub struct MyStoreOptions {
    pub db: MyOptions,
    /// A request's whole bound from when the store gets it.
    pub request_timeout: Duration,
    /// The most appends one transaction carries.
    pub max_batch: usize,
    /// Writes queued for the writer before callers wait.
    pub queue_depth: usize,
    pub breaker: BreakerOptions,
    /// Start even when the server would not keep what it acknowledges
    /// (warning loudly) instead of refusing to.
    pub allow_unsafe_durability: bool,
}

impl MyStoreOptions {
    pub fn new(url: impl Into<String>) -> Self {
        MyStoreOptions {
            db: MyOptions::new(url),
            request_timeout: Duration::from_secs(2),
            max_batch: 512,
            queue_depth: 8192,
            breaker: BreakerOptions::default(),
            allow_unsafe_durability: false,
        }
    }

    /// The longest anything may wait on the server: a statement, plus a
    /// connection.
    fn op_timeout(&self) -> Duration {
        self.db.statement_timeout + self.db.connect_timeout
    }
}

pub struct MyStore {
    writer: mpsc::Sender<Job>,
    writer_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    pool: Pool,
    breaker: Arc<Breaker>,
    refusing: Arc<AtomicBool>,
    /// A Send's whole time bound.
    bound: Duration,
    /// Any other request's: a statement plus a connection.
    op_bound: Duration,
}

/// The server would not keep what it acknowledges, and the configuration
/// does not allow that.
#[derive(Debug, thiserror::Error)]
#[error("{0} (set store.mysql_allow_unsafe_durability to start anyway)")]
struct NotDurable(String);

impl MyStore {
    /// Connects, migrates (refusing a newer schema), checks durability and
    /// starts the writer. Newly committed messages are published on `feed`.
    pub async fn open(opts: MyStoreOptions, feed: CommitFeedSender) -> Result<Self> {
        let (flavor, not_durable) = super::prepare(&opts.db).await?;
        if let Some(why) = not_durable {
            if !opts.allow_unsafe_durability {
                return Err(StoreError::backend(
                    "the database would lose acknowledged messages in a crash",
                    NotDurable(why),
                ));
            }
            tracing::warn!(%why, "the MySQL server does not keep every acknowledged commit");
        }
        tracing::debug!(?flavor, "MySQL store open");
        // Every connection of the pool and the writer's starts bounded.
        let driver = opts.db.opts(Some(flavor))?;
        let pool = Pool::new(driver.clone());
        let breaker = Arc::new(Breaker::new(opts.breaker));
        let refusing = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel(opts.queue_depth.max(1));
        // The writer ends on `Job::Close` or when its queue closes; `close`
        // awaits it.
        #[allow(clippy::disallowed_methods)]
        let task = tokio::spawn(
            Writer {
                rx,
                opts: driver,
                op_timeout: opts.op_timeout(),
                max_batch: opts.max_batch.max(1),
                feed,
                breaker: breaker.clone(),
                refusing: refusing.clone(),
            }
            .run(),
        );
        Ok(MyStore {
            writer: tx,
            writer_task: Mutex::new(Some(task)),
            pool,
            breaker,
            refusing,
            bound: opts.request_timeout.min(opts.op_timeout()),
            op_bound: opts.op_timeout(),
        })
    }

    /// Runs `f` on a pooled connection, through the breaker and within the
    /// time bound.
    pub(super) async fn with<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.breaker.admit()?;
        let run = async { f(self.pool.get_conn().await?).await };
        let out = match tokio::time::timeout(self.op_bound, run).await {
            Ok(r) => r,
            Err(_) => Err(timed_out()),
        };
        self.breaker.record(&out);
        out
    }

    pub(super) async fn change<C: writer::Change>(&self, change: C) -> Result<C::Out> {
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

/// Runs a read (or a write of one statement) on a pooled connection as
/// `db`.
macro_rules! read {
    ($store:expr, |$db:ident| $body:expr) => {
        $store
            .with(|mut c| async move {
                let $db = &My::new(&mut c);
                $body
            })
            .await
    };
}
pub(super) use read;

/// Runs a write transaction on a pooled connection as `db`, again (a few
/// times) when the server picked it as a deadlock's victim.
macro_rules! transaction {
    ($store:expr, |$db:ident| $body:expr) => {{
        let mut attempt = 0;
        loop {
            attempt += 1;
            let out = $store
                .with(|mut c| async move {
                    let mut tx = c.start_transaction(TxOpts::default()).await?;
                    let out = {
                        let $db = &My::new(&mut tx);
                        $body
                    };
                    tx.commit().await?;
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
pub(super) use transaction;

#[async_trait]
impl Store for MyStore {
    async fn create_user(&self, username: &str, hash: &str, now_ms: i64) -> Result<UserId> {
        read!(self, |db| accounts::create_user(db, username, hash, now_ms)
            .await)
    }

    async fn user_by_name(&self, username: &str) -> Result<Option<UserRecord>> {
        read!(self, |db| accounts::user_by_name(db, username).await)
    }

    async fn user_by_id(&self, id: UserId) -> Result<Option<UserRecord>> {
        read!(self, |db| accounts::user_by_id(db, id).await)
    }

    async fn users(&self, ids: &[UserId], names: &[String]) -> Result<Vec<UserRecord>> {
        read!(self, |db| accounts::users(db, ids, names).await)
    }

    async fn set_password(
        &self,
        id: UserId,
        hash: &str,
        keep: Option<SessionId>,
    ) -> Result<Vec<SessionId>> {
        transaction!(self, |db| accounts::set_password(db, id, hash, keep)
            .await?)
    }

    async fn create_user_with_email(&self, new: NewVerifiedUser) -> Result<UserId> {
        let new = &new;
        read!(self, |db| accounts::create_user_with_email(db, new).await)
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>> {
        read!(self, |db| accounts::user_by_email(db, email).await)
    }

    async fn put_email_code(&self, code: NewEmailCode, now_ms: i64) -> Result<()> {
        let code = &code;
        transaction!(self, |db| codes::put_email_code(db, code, now_ms).await?)
    }

    async fn use_email_code(&self, code: CodeTry) -> Result<CodeVerdict> {
        let code = &code;
        transaction!(self, |db| codes::use_email_code(db, code).await?)
    }

    async fn create_session(&self, new: NewSession) -> Result<SessionGrant> {
        let new = &new;
        transaction!(self, |db| accounts::create_session(db, new).await?)
    }

    async fn session_by_token(&self, token_hash: [u8; 32]) -> Result<Option<SessionRecord>> {
        let token_hash = &token_hash;
        read!(self, |db| accounts::session_by_token(db, token_hash).await)
    }

    async fn revoke_session(&self, id: SessionId) -> Result<()> {
        read!(self, |db| accounts::revoke_session(db, id).await)
    }

    async fn queue_append(&self, new: NewMessage) -> Result<PendingAppend> {
        let deadline = Instant::now() + self.bound;
        let (reply, rx) = oneshot::channel();
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
        read!(self, |db| sync::sync(db, user, cursors, after, page).await)
    }

    async fn history(
        &self,
        user: UserId,
        conversation: ConversationId,
        before_seq: u64,
        page: Page,
    ) -> Result<HistoryPage> {
        read!(self, |db| shared_messages::history(
            db,
            user,
            conversation,
            before_seq,
            page
        )
        .await)
    }

    async fn mark_delivered(
        &self,
        user: UserId,
        conversation: ConversationId,
        seq: u64,
    ) -> Result<Option<Delivered>> {
        let moved = read!(self, |db| sync::raise_cursor(
            db,
            user,
            conversation,
            seq,
            false
        )
        .await)?;
        Ok(moved.map(|(seq, members)| Delivered { seq, members }))
    }

    async fn mark_read(
        &self,
        user: UserId,
        conversation: ConversationId,
        seq: u64,
    ) -> Result<Option<ReadMoved>> {
        let moved = read!(self, |db| sync::raise_cursor(
            db,
            user,
            conversation,
            seq,
            true
        )
        .await)?;
        Ok(moved.map(|(seq, notify)| ReadMoved { seq, notify }))
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
        read!(self, |db| shared_messages::audience(db, user, conversation)
            .await)
    }

    async fn conversations(
        &self,
        user: UserId,
        before: Option<Before>,
        page: Page,
    ) -> Result<(Vec<ConversationSummary>, bool)> {
        read!(self, |db| shared::conversations(db, user, before, page)
            .await)
    }

    async fn send_friend_request(
        &self,
        from: UserId,
        to: UserId,
        message: &str,
        now_ms: i64,
    ) -> Result<FriendRequestOutcome> {
        transaction!(self, |db| friends::send_friend_request(
            db, from, to, message, now_ms
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
        transaction!(self, |db| friends::respond_friend_request(
            db, me, request, accept, reply, now_ms
        )
        .await?)
    }

    async fn friend_requests(
        &self,
        me: UserId,
        before_id: u64,
        page: Page,
    ) -> Result<FriendRequestPage> {
        read!(self, |db| friends::friend_requests(db, me, before_id, page)
            .await)
    }

    async fn friends(&self, me: UserId, after: &str, page: Page) -> Result<FriendList> {
        read!(self, |db| friends::friends(db, me, after, page).await)
    }

    async fn friend_ids(&self, me: UserId) -> Result<Vec<UserId>> {
        read!(self, |db| friends::friend_ids(db, me).await)
    }

    async fn set_remark(&self, me: UserId, friend: UserId, remark: &str) -> Result<()> {
        read!(self, |db| friends::set_remark(db, me, friend, remark).await)
    }

    async fn remove_friend(&self, me: UserId, other: UserId) -> Result<()> {
        transaction!(self, |db| friends::remove_friend(db, me, other).await?)
    }

    async fn set_blocked(
        &self,
        me: UserId,
        other: UserId,
        blocked: bool,
        max_blocked: usize,
    ) -> Result<()> {
        transaction!(self, |db| friends::set_blocked(
            db,
            me,
            other,
            blocked,
            max_blocked
        )
        .await?)
    }

    async fn search_users(&self, prefix: &str, limit: usize) -> Result<Vec<UserRecord>> {
        read!(self, |db| friends::search_users(db, prefix, limit).await)
    }

    async fn create_group(&self, new: NewGroup, limits: GroupLimits) -> Result<GroupRecord> {
        self.change(writer::CreateGroup(new, limits)).await
    }

    async fn group(&self, id: ConversationId, viewer: UserId) -> Result<GroupRecord> {
        read!(self, |db| shared::group(db, id, viewer).await)
    }

    async fn groups_of(
        &self,
        user: UserId,
        after: ConversationId,
        page: Page,
    ) -> Result<(Vec<GroupRecord>, bool)> {
        read!(self, |db| shared::groups_of(db, user, after, page).await)
    }

    async fn rooms(
        &self,
        viewer: UserId,
        prefix: &str,
        after: ConversationId,
        page: Page,
    ) -> Result<(Vec<GroupRecord>, bool)> {
        read!(self, |db| shared::rooms(db, viewer, prefix, after, page)
            .await)
    }

    async fn members(
        &self,
        id: ConversationId,
        viewer: UserId,
        after: UserId,
        page: Page,
    ) -> Result<(Vec<MemberRecord>, bool)> {
        read!(self, |db| shared::members(db, id, viewer, after, page)
            .await)
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
        read!(self, |db| shared::join_requests_for(
            db, actor, id, after, page
        )
        .await)
    }

    async fn check(&self) -> Result<()> {
        read!(self, |db| {
            crate::sql::Db::one(db, "SELECT 1", &[]).await?;
            Ok(())
        })?;
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
        let _ = self.pool.clone().disconnect().await;
    }
}
