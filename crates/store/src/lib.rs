//! Storage for natter: one [`Store`] trait, and the backends behind it.
//!
//! Only this crate knows SQL. The message write path is batched: a single
//! writer applies queued writes in one transaction (group commit) and answers
//! each caller only after the commit is durable, so an ACK always means
//! "stored". Newly committed messages are also published, in commit order, on
//! the commit feed, from which the service fans them out.
#![forbid(unsafe_code)]

mod admin;
pub mod config;
mod error;
mod feed;
pub mod migrate;
pub mod mysql;
pub mod postgres;
mod sql;
pub mod sqlite;

use async_trait::async_trait;
use std::collections::HashMap;

pub use admin::AdminStore;
pub use config::{Backend, Partition, StoreConfig};
pub use error::{Fault, StoreError};
pub use feed::{commit_feed, CommitFeed, CommitFeedSender};
pub use natter_domain::model::*;
pub use natter_domain::{model, rules, DomainError};
pub use postgres::engine::breaker::{Breaker, BreakerOptions};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A queued write's outcome, once its transaction is over (see
/// [`Store::queue_append`]), or a time-out once its caller's deadline has
/// passed without one.
pub struct PendingAppend<T = Appended> {
    rx: tokio::sync::oneshot::Receiver<Result<T>>,
    deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<T> PendingAppend<T> {
    pub fn new(rx: tokio::sync::oneshot::Receiver<Result<T>>) -> Self {
        PendingAppend { rx, deadline: None }
    }

    /// Stops waiting at `at`: the answer is then "no answer in time" (the
    /// database down), whatever the writer does later.
    pub fn until(mut self, at: natter_runtime::clock::Instant) -> Self {
        self.deadline = Some(Box::pin(tokio::time::sleep_until(at)));
        self
    }
}

impl<T> std::future::Future for PendingAppend<T> {
    type Output = Result<T>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        use std::task::Poll;
        // A writer that went away without answering stored nothing it
        // could still report: the caller hears "not taking writes".
        if let Poll::Ready(r) = std::pin::Pin::new(&mut self.rx).poll(cx) {
            return Poll::Ready(r.unwrap_or(Err(StoreError::Unavailable)));
        }
        match self.deadline.as_mut().map(|d| d.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(Err(postgres::engine::writer::timed_out())),
            _ => Poll::Pending,
        }
    }
}

#[async_trait]
pub trait Store: AdminStore + Send + Sync + 'static {
    // ---- accounts
    /// Fails with [`StoreError::Conflict`] when the name is taken.
    async fn create_user(&self, username: &str, password_hash: &str, now_ms: i64)
        -> Result<UserId>;
    async fn user_by_name(&self, username: &str) -> Result<Option<UserRecord>>;
    async fn user_by_id(&self, id: UserId) -> Result<Option<UserRecord>>;
    /// Users named by id or by name; unknown ones are left out.
    async fn users(&self, ids: &[UserId], names: &[String]) -> Result<Vec<UserRecord>>;
    /// Sets the password and, in the same transaction, revokes every live
    /// session of the user but `keep`; returns the revoked sessions.
    async fn set_password(
        &self,
        id: UserId,
        password_hash: &str,
        keep: Option<SessionId>,
    ) -> Result<Vec<SessionId>>;

    // ---- email
    /// Creates a user with a verified address (normalized by the caller);
    /// fails with [`StoreError::Conflict`] naming `username` or `email`,
    /// whichever is taken.
    async fn create_user_with_email(&self, new: NewVerifiedUser) -> Result<UserId>;
    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>>;
    /// Stores a code for its purpose and address, replacing the one that
    /// waited (its tries start afresh); forgets codes whose time ran out.
    async fn put_email_code(&self, code: NewEmailCode, now_ms: i64) -> Result<()>;
    /// Tries a code (its hash) on the address's pending one, under
    /// [`rules::judge_code`]: a right one is used up, a wrong one counts
    /// toward `max_attempts`, after which the code is dead.
    async fn use_email_code(&self, code: CodeTry) -> Result<CodeVerdict>;

    // ---- sessions
    /// Creates a session under the device policy. A previous session of the
    /// same device is always replaced; the grant lists every revoked session.
    async fn create_session(&self, new: NewSession) -> Result<SessionGrant>;
    async fn session_by_token(&self, token_hash: [u8; 32]) -> Result<Option<SessionRecord>>;
    async fn revoke_session(&self, id: SessionId) -> Result<()>;

    // ---- messages
    /// Queues a message append and returns as soon as it is queued. Appends
    /// are stored in the order they were queued: a caller that awaits one
    /// `queue_append` before calling the next has its messages stored in
    /// call order, even though it waits for their commits together. The
    /// append assigns the next seq of its conversation in its transaction;
    /// a (sender, client_msg_id) seen before resolves to the original
    /// message with `duplicate = true` and stores nothing. The returned
    /// future resolves once the outcome is durable.
    async fn queue_append(&self, new: NewMessage) -> Result<PendingAppend>;
    /// Queues an append and waits for its commit.
    async fn append_message(&self, new: NewMessage) -> Result<Appended> {
        self.queue_append(new).await?.await
    }
    /// One page of everything `user` has not seen: messages with seq above the
    /// cursor (0 when absent) in every conversation with an id above
    /// `after`, ascending by conversation and seq, with each covered
    /// conversation's state. The page is cut so that, encoded, it fits in a
    /// frame (see `SyncPage::next_after` for where the next one starts).
    async fn sync(
        &self,
        user: UserId,
        cursors: &HashMap<ConversationId, u64>,
        after: ConversationId,
        page: Page,
    ) -> Result<SyncPage>;
    /// A page of messages with seq below `before_seq` (0: from the newest),
    /// newest first.
    async fn history(
        &self,
        user: UserId,
        conversation: ConversationId,
        before_seq: u64,
        page: Page,
    ) -> Result<HistoryPage>;
    /// Raises `user`'s delivered cursor; `None` when it did not move.
    async fn mark_delivered(
        &self,
        user: UserId,
        conversation: ConversationId,
        seq: u64,
    ) -> Result<Option<Delivered>>;

    /// Moves `user`'s read cursor up; `None` when it did not move.
    async fn mark_read(
        &self,
        user: UserId,
        conversation: ConversationId,
        seq: u64,
    ) -> Result<Option<ReadMoved>>;
    /// Makes a message a tombstone if `actor` may (sender, or a group admin)
    /// and it is younger than `window_ms`; appends a "recalled" event.
    async fn recall(
        &self,
        actor: UserId,
        conversation: ConversationId,
        seq: u64,
        window_ms: i64,
        now_ms: i64,
    ) -> Result<()>;
    /// Current members of a conversation `user` belongs to.
    async fn audience(&self, user: UserId, conversation: ConversationId) -> Result<Vec<UserId>>;
    /// A page of the user's conversation list, most recent activity first,
    /// starting after `before`; previews are cut short. Says whether more follow.
    async fn conversations(
        &self,
        user: UserId,
        before: Option<Before>,
        page: Page,
    ) -> Result<(Vec<ConversationSummary>, bool)>;

    // ---- friends
    async fn send_friend_request(
        &self,
        from: UserId,
        to: UserId,
        message: &str,
        now_ms: i64,
    ) -> Result<FriendRequestOutcome>;
    async fn respond_friend_request(
        &self,
        me: UserId,
        request: u64,
        accept: bool,
        reply: &str,
        now_ms: i64,
    ) -> Result<FriendRequestRecord>;
    /// A page of requests to and from `me` with an id below `before_id`
    /// (0: from the newest), newest first.
    async fn friend_requests(
        &self,
        me: UserId,
        before_id: u64,
        page: Page,
    ) -> Result<FriendRequestPage>;
    /// A page of friends with a username after `after` ("" from the first),
    /// by username; the blocked list comes with the first page.
    async fn friends(&self, me: UserId, after: &str, page: Page) -> Result<FriendList>;
    async fn friend_ids(&self, me: UserId) -> Result<Vec<UserId>>;
    async fn set_remark(&self, me: UserId, friend: UserId, remark: &str) -> Result<()>;
    async fn remove_friend(&self, me: UserId, other: UserId) -> Result<()>;
    /// Blocks or unblocks; a user may block at most `max_blocked` others.
    async fn set_blocked(
        &self,
        me: UserId,
        other: UserId,
        blocked: bool,
        max_blocked: usize,
    ) -> Result<()>;
    async fn search_users(&self, prefix: &str, limit: usize) -> Result<Vec<UserRecord>>;

    // ---- groups and rooms
    async fn create_group(&self, new: NewGroup, limits: GroupLimits) -> Result<GroupRecord>;
    async fn group(&self, id: ConversationId, viewer: UserId) -> Result<GroupRecord>;
    /// A page of the user's groups and rooms by id after `after`.
    async fn groups_of(
        &self,
        user: UserId,
        after: ConversationId,
        page: Page,
    ) -> Result<(Vec<GroupRecord>, bool)>;
    async fn rooms(
        &self,
        viewer: UserId,
        prefix: &str,
        after: ConversationId,
        page: Page,
    ) -> Result<(Vec<GroupRecord>, bool)>;
    /// A page of members by user id, and whether more follow.
    async fn members(
        &self,
        id: ConversationId,
        viewer: UserId,
        after: UserId,
        page: Page,
    ) -> Result<(Vec<MemberRecord>, bool)>;
    /// Joins a room, or a group with its invite code.
    async fn join_group(
        &self,
        user: UserId,
        id: ConversationId,
        message: &str,
        invite_code: &str,
        limits: GroupLimits,
        now_ms: i64,
    ) -> Result<JoinOutcome>;
    async fn group_action(
        &self,
        actor: UserId,
        id: ConversationId,
        action: GroupAction,
        limits: GroupLimits,
        now_ms: i64,
    ) -> Result<()>;
    /// A page of a group's join requests by user id after `after`.
    async fn join_requests(
        &self,
        actor: UserId,
        id: ConversationId,
        after: UserId,
        page: Page,
    ) -> Result<(Vec<JoinRequestRecord>, bool)>;

    // ---- life and health
    /// A cheap round trip through the write path and a read: `Ok` when the
    /// store can take writes now. After a storage fault it tries a small
    /// write, so it turns healthy again once the fault has cleared.
    async fn check(&self) -> Result<()>;
    /// What the store already knows to be wrong, without asking the
    /// database (the PostgreSQL breaker open): for readiness, which must
    /// not wait on it.
    fn known_down(&self) -> Option<String> {
        None
    }
    /// Queued writes and the queue's capacity.
    fn queue(&self) -> (usize, usize);
    /// From now on, refuses queued and new writes with
    /// [`StoreError::Unavailable`]; the batch being applied finishes. Used
    /// when shutdown's grace period runs out, so that every caller hears
    /// whether its write was done.
    fn stop_writes(&self);
    /// Finishes queued writes and makes everything durable.
    async fn close(&self);
}
