//! The embedded SQLite backend: WAL, one writer thread that group-commits
//! (new messages and cursor raises through the message log, `log.rs`), and a
//! small pool of reader connections.

mod admin;
mod engine;
mod groups;
mod jobs;
mod messages;
pub(crate) mod schema;
mod sync;

use crate::sql::{accounts, codes, friends, lists as shared, messages as shared_messages};
use crate::{
    Before, CommitFeedSender, ConversationId, ConversationSummary, Delivered, FriendList,
    FriendRequestOutcome, FriendRequestPage, FriendRequestRecord, GroupAction, GroupLimits,
    GroupRecord, HistoryPage, JoinOutcome, JoinRequestRecord, MemberRecord, NewGroup, NewMessage,
    NewSession, Page, PendingAppend, ReadMoved, Result, SessionGrant, SessionId, SessionRecord,
    Store, StoreError, SyncPage, UserId, UserRecord,
};
use crate::{CodeTry, CodeVerdict, NewEmailCode, NewVerifiedUser};
use async_trait::async_trait;
use engine::dialect::{now, Lite};
use engine::faults::io_fault;
pub(crate) use engine::os::lock_database;
use engine::writer::{self, AppendJob, Health, Job};
use engine::{checkpoint, chunk, copier, log, os, pending, round};
use jobs::Scope;
use rusqlite::Connection;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot, Semaphore};

/// How hard the store works to make a write survive power loss
/// (`store.synchronous`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Synchronous {
    /// Sync the message log (and the WAL, for other writes) before every
    /// answer: an ACKed message survives power loss.
    Full,
    /// Sync only now and then: survives a process crash, not power loss.
    Normal,
}

#[derive(Clone, Debug)]
pub struct SqliteOptions {
    pub path: PathBuf,
    pub synchronous: Synchronous,
    /// The most writes one transaction carries.
    pub max_batch: usize,
    /// Writes queued for the writer before callers wait.
    pub queue_depth: usize,
    /// Reader connections (sync, history, lookups).
    pub readers: usize,
    /// Under load, how long a round's oldest write waits for company before
    /// the round syncs (`store.commit_delay_us`).
    pub commit_delay: std::time::Duration,
}

impl SqliteOptions {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteOptions {
            path: path.into(),
            synchronous: Synchronous::Full,
            max_batch: 512,
            queue_depth: 8192,
            readers: 4,
            commit_delay: std::time::Duration::from_micros(300),
        }
    }
}

/// The writer connection's page cache.
const WRITER_CACHE_KIB: i64 = 64 * 1024;
/// The copy connection's page cache: enough for the pages copies go back to
/// (each busy conversation's last pages, the upper levels). Every commit
/// whose B-tree balancing swapped two pages' numbers walks the whole cache
/// (SQLite swaps through the lock-byte page's number, past any database
/// under 1 GiB, and ends the transaction by dropping pages past the end),
/// so a larger cache costs a little at every commit: at 64 MiB the copy
/// thread spent a fifth of its time there under peerbench's 1:1 load, and
/// the process held ~50 MB more (docs/BENCHMARKS.md).
const COPY_CACHE_KIB: i64 = 16 * 1024;

pub struct SqliteStore {
    /// The exclusive lock on `<db>.lock`, held until the store is closed
    /// (or dropped): the writer's caches assume it is the only writer.
    /// Let go at the close, once the writer has stopped, so that a store
    /// opened on the same database right after (a restart in the same
    /// process) does not find it held by a handle someone still keeps.
    lock: Mutex<Option<std::fs::File>>,
    writer: mpsc::Sender<Job>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    readers: Arc<ReadPool>,
    health: Arc<Health>,
    /// Records in the message log that the database does not have yet: a
    /// read of messages or cursors first copies in those of its
    /// conversations (`fresh`).
    pending: Arc<AtomicUsize>,
    /// The waiting records and the copy gate, shared with the writer.
    shared: Arc<copier::Shared>,
}

struct ReadPool {
    conns: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

fn open_conn(opts: &SqliteOptions) -> rusqlite::Result<Connection> {
    let conn = Connection::open(&opts.path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // Commits are not synced by SQLite: the writer syncs the message log,
    // and the WAL after a transaction that must be durable (`round.rs`).
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// Decodes an enum column inside a row closure: a number no variant has is
/// an error naming the column (a corrupt row), never another variant.
pub(crate) fn stored<T: TryFrom<i64, Error = crate::BadValue>>(
    r: &rusqlite::Row<'_>,
    column: usize,
) -> rusqlite::Result<T> {
    let v: i64 = r.get(column)?;
    T::try_from(v).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(
            column,
            rusqlite::types::Type::Integer,
            Box::new(e),
        )
    })
}

/// Brings the database up to date with the message log left by the last
/// run (a crash, or a kill, leaves records the database lacks), syncs it,
/// and deletes the log's segments. Returns the number of the last segment
/// there was, so a new log numbers on from it.
pub(crate) fn recover(conn: &mut Connection, db: &std::path::Path) -> Result<Option<u64>> {
    let dir = log::dir_of(db);
    let replay = log::replay(&dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData => StoreError::Fault {
            fault: crate::Fault::Corrupt,
            source: Arc::new(e),
        },
        _ => io_fault(e),
    })?;
    if !replay.records.is_empty() {
        let tx = conn.transaction()?;
        let applied = chunk::replay(&tx, &replay.records)?;
        tx.commit()?;
        os::sync_wal(db).map_err(io_fault)?;
        tracing::info!(
            records = replay.records.len(),
            applied,
            "brought the database up to date from the message log"
        );
    }
    log::delete(&dir, &replay.segments).map_err(io_fault)?;
    Ok(replay.segments.last().copied())
}

impl SqliteStore {
    /// Opens (creating and migrating as needed) the database at `opts.path`.
    /// Newly committed messages are published on `feed`.
    ///
    /// Fails with [`StoreError::Locked`] while another store (in this
    /// process or another) has the same database open.
    pub fn open(opts: SqliteOptions, feed: CommitFeedSender) -> Result<Self> {
        let lock = lock_database(&opts.path)?;
        // The writer thread holds the lock too (the same open file, so the
        // same lock): a store dropped without `close` leaves its writer
        // finishing the queue, and nobody else may write until it has.
        let writer_lock = lock.try_clone().map_err(io_fault)?;
        let mut conn = open_conn(&opts)?;
        // The writer copies records in chunks that touch a page per message
        // in each index: a cache that holds the hot pages keeps it from
        // spilling mid-transaction and from reading them back.
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        schema::migrate(&mut conn)?;
        let log_dir = log::dir_of(&opts.path);
        let last_segment = recover(&mut conn, &opts.path)?;
        let synced = opts.synchronous == Synchronous::Full;
        // Segments written ahead save each round's sync a write of the
        // file's size; without syncs there is nothing to save.
        let log = log::Log::start(&log_dir, last_segment, synced)
            .and_then(|l| if synced { l.with_spares() } else { Ok(l) })
            .map_err(io_fault)?;
        let next_id = schema::next_message_id(&conn)?;
        let next_conversation = schema::next_conversation_id(&conn)?;
        let readers = (0..opts.readers.max(1))
            .map(|_| open_conn(&opts))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        conn.pragma_update(None, "wal_autocheckpoint", checkpoint::BACKSTOP_PAGES)?;
        let checkpointer = checkpoint::Checkpointer::spawn(open_conn(&opts)?)
            .map_err(|e| StoreError::backend("cannot start the checkpoint thread", e))?;
        let (tx, rx) = mpsc::channel(opts.queue_depth.max(1));
        let health = Arc::new(Health::default());
        let pending = Arc::new(AtomicUsize::new(0));
        let copy_conn = open_conn(&opts)?;
        copy_conn.pragma_update(None, "cache_size", -COPY_CACHE_KIB)?;
        // Its commits must not checkpoint at SQLite's default 1,000 WAL
        // pages either: that ran a checkpoint and its fsync inside the
        // copy's COMMIT, under the copy gate, at 10,000 msg/s about as often
        // as the checkpoint thread (a fifth of the copy thread's time).
        copy_conn.pragma_update(None, "wal_autocheckpoint", checkpoint::BACKSTOP_PAGES)?;
        let shared = Arc::new(copier::Shared::new(
            pending::Pending::new(pending.clone()),
            log.segment(),
            copy_conn,
            health.clone(),
            checkpointer.nudger(),
        ));
        let writer = round::Writer::new(round::Start {
            conn,
            shared: shared.clone(),
            db: opts.path.clone(),
            log,
            next_id,
            next_conversation,
            sync: opts.synchronous == Synchronous::Full,
            max_batch: opts.max_batch.max(1),
            commit_delay: opts.commit_delay,
            feed,
            checkpointer,
            health: health.clone(),
        });
        let thread = std::thread::Builder::new()
            .name("natter-sqlite-writer".into())
            .spawn(move || {
                let _lock = writer_lock;
                writer.run(rx)
            })
            .map_err(|e| StoreError::backend("cannot start the writer thread", e))?;
        Ok(SqliteStore {
            lock: Mutex::new(Some(lock)),
            writer: tx,
            writer_thread: Mutex::new(Some(thread)),
            readers: Arc::new(ReadPool {
                permits: Arc::new(Semaphore::new(readers.len())),
                conns: Mutex::new(readers),
            }),
            health,
            pending,
            shared,
        })
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<UserId> {
        let (u, h) = (username.to_owned(), password_hash.to_owned());
        self.write_apart(move |t| now(accounts::create_user(&Lite(t.conn), &u, &h, now_ms)))
            .await
    }

    async fn user_by_name(&self, username: &str) -> Result<Option<UserRecord>> {
        let u = username.to_owned();
        self.read(move |c| now(accounts::user_by_name(&Lite(c), &u)))
            .await
    }

    async fn user_by_id(&self, id: UserId) -> Result<Option<UserRecord>> {
        self.read(move |c| now(accounts::user_by_id(&Lite(c), id)))
            .await
    }

    async fn users(&self, ids: &[UserId], names: &[String]) -> Result<Vec<UserRecord>> {
        let (ids, names) = (ids.to_vec(), names.to_vec());
        self.read(move |c| now(accounts::users(&Lite(c), &ids, &names)))
            .await
    }

    async fn set_password(
        &self,
        id: UserId,
        password_hash: &str,
        keep: Option<SessionId>,
    ) -> Result<Vec<SessionId>> {
        let h = password_hash.to_owned();
        self.write_apart(move |t| now(accounts::set_password(&Lite(t.conn), id, &h, keep)))
            .await
    }

    async fn create_user_with_email(&self, new: NewVerifiedUser) -> Result<UserId> {
        self.write_apart(move |t| now(accounts::create_user_with_email(&Lite(t.conn), &new)))
            .await
    }
    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>> {
        let e = email.to_owned();
        self.read(move |c| now(accounts::user_by_email(&Lite(c), &e)))
            .await
    }
    async fn put_email_code(&self, code: NewEmailCode, now_ms: i64) -> Result<()> {
        self.write_apart(move |t| now(codes::put_email_code(&Lite(t.conn), &code, now_ms)))
            .await
    }
    async fn use_email_code(&self, code: CodeTry) -> Result<CodeVerdict> {
        self.write_apart(move |t| now(codes::use_email_code(&Lite(t.conn), &code)))
            .await
    }

    async fn create_session(&self, new: NewSession) -> Result<SessionGrant> {
        self.write_apart(move |t| now(accounts::create_session(&Lite(t.conn), &new)))
            .await
    }

    async fn session_by_token(&self, token_hash: [u8; 32]) -> Result<Option<SessionRecord>> {
        self.read(move |c| now(accounts::session_by_token(&Lite(c), &token_hash)))
            .await
    }

    async fn revoke_session(&self, id: SessionId) -> Result<()> {
        self.write_apart(move |t| now(accounts::revoke_session(&Lite(t.conn), id)))
            .await
    }

    async fn queue_append(&self, new: NewMessage) -> Result<PendingAppend> {
        let (reply, rx) = oneshot::channel();
        // The writer's queue is FIFO and applies jobs in order, so queueing
        // order is storing order.
        self.submit(Box::new(AppendJob::new(new, reply))).await?;
        Ok(PendingAppend::new(rx))
    }

    async fn sync(
        &self,
        user: UserId,
        cursors: &HashMap<ConversationId, u64>,
        after: ConversationId,
        page: Page,
    ) -> Result<SyncPage> {
        let cursors = cursors.clone();
        self.fresh(Scope::User(user), move |c| {
            sync::sync(c, user, &cursors, after, page)
        })
        .await
    }

    async fn history(
        &self,
        user: UserId,
        conversation: ConversationId,
        before_seq: u64,
        page: Page,
    ) -> Result<HistoryPage> {
        self.fresh(Scope::Conversation(conversation), move |c| {
            now(shared_messages::history(
                &Lite(c),
                user,
                conversation,
                before_seq,
                page,
            ))
        })
        .await
    }

    async fn mark_delivered(
        &self,
        user: UserId,
        conversation: ConversationId,
        seq: u64,
    ) -> Result<Option<Delivered>> {
        self.staged(move |t| messages::mark_delivered(t, user, conversation, seq))
            .await
    }

    async fn mark_read(
        &self,
        user: UserId,
        conversation: ConversationId,
        seq: u64,
    ) -> Result<Option<ReadMoved>> {
        self.staged(move |t| messages::mark_read(t, user, conversation, seq))
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
        self.write_in(conversation, move |t| {
            messages::recall(t, actor, conversation, seq, window_ms, now_ms)
        })
        .await
    }

    async fn audience(&self, user: UserId, conversation: ConversationId) -> Result<Vec<UserId>> {
        self.fresh(Scope::Conversation(conversation), move |c| {
            now(shared_messages::audience(&Lite(c), user, conversation))
        })
        .await
    }

    async fn conversations(
        &self,
        user: UserId,
        before: Option<Before>,
        page: Page,
    ) -> Result<(Vec<ConversationSummary>, bool)> {
        self.fresh(Scope::User(user), move |c| {
            now(shared::conversations(&Lite(c), user, before, page))
        })
        .await
    }

    async fn send_friend_request(
        &self,
        from: UserId,
        to: UserId,
        message: &str,
        now_ms: i64,
    ) -> Result<FriendRequestOutcome> {
        let m = message.to_owned();
        // Requests and friends are rows of their own: apart from the
        // messages, like remarks and blocks below.
        self.write_apart(move |t| {
            t.convs.social_changed();
            now(friends::send_friend_request(
                &Lite(t.conn),
                from,
                to,
                &m,
                now_ms,
            ))
        })
        .await
    }

    async fn respond_friend_request(
        &self,
        me: UserId,
        request: u64,
        accept: bool,
        reply: &str,
        now_ms: i64,
    ) -> Result<FriendRequestRecord> {
        let r = reply.to_owned();
        self.write_apart(move |t| {
            t.convs.social_changed();
            now(friends::respond_friend_request(
                &Lite(t.conn),
                me,
                request,
                accept,
                &r,
                now_ms,
            ))
        })
        .await
    }

    async fn friend_requests(
        &self,
        me: UserId,
        before_id: u64,
        page: Page,
    ) -> Result<FriendRequestPage> {
        self.read(move |c| now(friends::friend_requests(&Lite(c), me, before_id, page)))
            .await
    }

    async fn friends(&self, me: UserId, after: &str, page: Page) -> Result<FriendList> {
        let after = after.to_owned();
        self.read(move |c| now(friends::friends(&Lite(c), me, &after, page)))
            .await
    }

    async fn friend_ids(&self, me: UserId) -> Result<Vec<UserId>> {
        self.read(move |c| now(friends::friend_ids(&Lite(c), me)))
            .await
    }

    // Remarks, friends and blocks are rows of their own, apart from the
    // messages: a user's change to them does not copy every waiting record
    // in first (which held every send up for as long as that took).
    async fn set_remark(&self, me: UserId, friend: UserId, remark: &str) -> Result<()> {
        let r = remark.to_owned();
        self.write_apart(move |t| now(friends::set_remark(&Lite(t.conn), me, friend, &r)))
            .await
    }

    async fn remove_friend(&self, me: UserId, other: UserId) -> Result<()> {
        self.write_apart(move |t| {
            t.convs.social_changed();
            now(friends::remove_friend(&Lite(t.conn), me, other))
        })
        .await
    }

    async fn set_blocked(
        &self,
        me: UserId,
        other: UserId,
        blocked: bool,
        max_blocked: usize,
    ) -> Result<()> {
        self.write_apart(move |t| {
            t.convs.social_changed();
            now(friends::set_blocked(
                &Lite(t.conn),
                me,
                other,
                blocked,
                max_blocked,
            ))
        })
        .await
    }

    async fn search_users(&self, prefix: &str, limit: usize) -> Result<Vec<UserRecord>> {
        let p = prefix.to_owned();
        self.read(move |c| now(friends::search_users(&Lite(c), &p, limit)))
            .await
    }

    async fn create_group(&self, new: NewGroup, limits: GroupLimits) -> Result<GroupRecord> {
        // A new conversation only: nothing waiting in the log is its.
        self.write_apart(move |t| groups::create(t, &new, limits))
            .await
    }

    async fn group(&self, id: ConversationId, viewer: UserId) -> Result<GroupRecord> {
        self.fresh(Scope::Conversation(id), move |c| {
            now(shared::group(&Lite(c), id, viewer))
        })
        .await
    }

    async fn groups_of(
        &self,
        user: UserId,
        after: ConversationId,
        page: Page,
    ) -> Result<(Vec<GroupRecord>, bool)> {
        self.fresh(Scope::User(user), move |c| {
            now(shared::groups_of(&Lite(c), user, after, page))
        })
        .await
    }

    async fn rooms(
        &self,
        viewer: UserId,
        prefix: &str,
        after: ConversationId,
        page: Page,
    ) -> Result<(Vec<GroupRecord>, bool)> {
        let p = prefix.to_owned();
        self.fresh(Scope::All, move |c| {
            now(shared::rooms(&Lite(c), viewer, &p, after, page))
        })
        .await
    }

    async fn members(
        &self,
        id: ConversationId,
        viewer: UserId,
        after: UserId,
        page: Page,
    ) -> Result<(Vec<MemberRecord>, bool)> {
        self.fresh(Scope::Conversation(id), move |c| {
            now(shared::members(&Lite(c), id, viewer, after, page))
        })
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
        let (m, code) = (message.to_owned(), invite_code.to_owned());
        self.write_in(id, move |t| {
            groups::join(t, user, id, &m, &code, limits, now_ms)
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
        self.write_in(id, move |t| {
            groups::act(t, actor.into(), id, &action, limits, now_ms)
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
        self.fresh(Scope::Conversation(id), move |c| {
            now(shared::join_requests_for(&Lite(c), actor, id, after, page))
        })
        .await
    }

    async fn check(&self) -> Result<()> {
        self.read(|c| Ok(c.query_row("SELECT 1", [], |_| Ok(()))?))
            .await?;
        match self.health.fault() {
            // A write of a large message's size that reaches the disk: it
            // clears the fault if it commits.
            Some(_) => {
                let now = natter_runtime::clock::now_ms();
                self.write(move |t| {
                    t.conn
                        .prepare_cached(
                            "INSERT INTO health (id, checked_at_ms, probe) VALUES (1, ?1, zeroblob(65536))
                             ON CONFLICT (id) DO UPDATE SET checked_at_ms = ?1, probe = zeroblob(65536)",
                        )?
                        .execute([now])?;
                    t.conn
                        .prepare_cached("UPDATE health SET probe = NULL WHERE id = 1")?
                        .execute([])?;
                    Ok(())
                })
                .await
            }
            // Writer alive, queue moving: a staged job that stages nothing (a
            // database job would first copy the whole log on the writer's thread).
            None => self.staged(|_| Ok(())).await,
        }
    }

    fn queue(&self) -> (usize, usize) {
        let max = self.writer.max_capacity();
        (max - self.writer.capacity(), max)
    }

    fn stop_writes(&self) {
        self.health
            .refusing
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    async fn close(&self) {
        let (reply, rx) = oneshot::channel();
        if self
            .submit(Box::new(writer::CloseJob(Some(reply))))
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
        let thread = self
            .writer_thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(t) = thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        // This store writes nothing more. (While its writer thread runs,
        // the thread's own handle on the same open file keeps the lock.)
        self.lock.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

#[cfg(test)]
mod tests;
