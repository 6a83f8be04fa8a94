//! What operating a deployment reads and writes: administrators and
//! their sessions, the audit log, and accounts as administrators see and
//! change them. Every [`crate::Store`] is one too; the SQL is written once
//! in `sql/admin.rs`.

use crate::{
    AccountDetail, AccountSummary, AdminId, AdminRecord, AdminRole, AdminSessionRecord,
    AuditRecord, Bar, ConversationId, GroupAction, GroupLimits, GroupRecord, MemberRecord,
    NewAudit, Result, SessionId, UserId,
};
use async_trait::async_trait;

#[async_trait]
pub trait AdminStore: Send + Sync + 'static {
    /// Makes an administrator; with `replace` one of that name gets the new
    /// password and role and loses its sessions; `Conflict` without it.
    /// Whether it was made new.
    async fn put_admin(
        &self,
        name: &str,
        password_hash: &str,
        role: AdminRole,
        now_ms: i64,
        replace: bool,
    ) -> Result<bool>;
    async fn admin_by_name(&self, name: &str) -> Result<Option<AdminRecord>>;
    async fn admins(&self) -> Result<Vec<AdminRecord>>;
    async fn create_admin_session(
        &self,
        admin: AdminId,
        token_hash: [u8; 32],
        now_ms: i64,
        expires_at_ms: i64,
    ) -> Result<()>;
    async fn admin_session(&self, token_hash: [u8; 32]) -> Result<Option<AdminSessionRecord>>;
    async fn end_admin_session(&self, token_hash: [u8; 32]) -> Result<()>;
    async fn audit(&self, entry: NewAudit) -> Result<()>;
    /// The audit log newest first, before line `before` (0: the newest).
    async fn audit_log(&self, before: u64, limit: usize) -> Result<Vec<AuditRecord>>;
    /// Accounts whose name or address contains `text`, by id after `after`.
    async fn accounts(
        &self,
        text: &str,
        after: UserId,
        limit: usize,
    ) -> Result<Vec<AccountSummary>>;
    async fn account(&self, id: UserId, now_ms: i64) -> Result<Option<AccountDetail>>;
    /// Sets whether the account is barred; barring ends its sessions (those
    /// ended are returned).
    async fn set_bar(&self, id: UserId, bar: Bar) -> Result<Vec<SessionId>>;
    /// Ends every session of the account; those ended.
    async fn end_sessions(&self, id: UserId) -> Result<Vec<SessionId>>;
    /// Deletes an account's data (`sql/admin.rs` says what); the sessions
    /// that were still valid.
    async fn delete_account(&self, id: UserId) -> Result<Vec<SessionId>>;
    /// Lifts the bans that ended by `now_ms`; the accounts let back in.
    async fn lift_ended_bans(&self, now_ms: i64) -> Result<Vec<UserId>>;
    /// Groups and rooms (dismissed ones too) whose name contains `text`,
    /// by id after `after`; `my_role` is `None`.
    async fn admin_groups(
        &self,
        text: &str,
        after: ConversationId,
        limit: usize,
    ) -> Result<Vec<GroupRecord>>;
    /// A group or room, dismissed or not, with up to `limit` of its members
    /// by user id after `after`.
    async fn admin_group(
        &self,
        id: ConversationId,
        after: UserId,
        limit: usize,
    ) -> Result<Option<(GroupRecord, Vec<MemberRecord>)>>;
    /// Changes a group as the server's operators (`rules::GroupActor::Operator`):
    /// the rules and the write of a member's change.
    async fn operate_group(
        &self,
        id: ConversationId,
        action: GroupAction,
        limits: GroupLimits,
        now_ms: i64,
    ) -> Result<()>;
}
